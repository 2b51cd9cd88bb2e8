-- The billing rule table in force for each period (YYYY-MM), in its canonical text, frozen the first
-- time the period is built: like the frozen catalogue prices, it makes a period yield the same bytes
-- whatever the rules file says later. The primary key makes the first writer win across replicas.
CREATE TABLE billing_rules (
    period       TEXT   NOT NULL PRIMARY KEY,
    rules        TEXT   NOT NULL,
    frozen_at_ms BIGINT NOT NULL
);
