-- The client directory: per client, the identity billing needs, keyed by our guid and by partner
-- keys (Shop Application's sa_key, later Simplébo's client_id), with the source and time of each
-- field so that a newer value wins field by field whoever sends it.
CREATE TABLE clients (
    id            {{id}},
    created_at_ms BIGINT NOT NULL
);
-- A key names one client; a client may have several keys, of several kinds.
CREATE TABLE client_keys (
    kind      TEXT   NOT NULL, -- guid, sa_key, client_id, …
    key_value TEXT   NOT NULL,
    client_id BIGINT NOT NULL,
    PRIMARY KEY (kind, key_value)
);
CREATE INDEX client_keys_client ON client_keys (client_id);
CREATE TABLE client_fields (
    client_id   BIGINT NOT NULL,
    field       TEXT   NOT NULL, -- company, last_name, first_name, email, phone, address, …
    field_value TEXT   NOT NULL,
    source      TEXT   NOT NULL, -- who said it: "shopapp create", "import clients.csv", …
    at_ms       BIGINT NOT NULL, -- when the source knew it
    PRIMARY KEY (client_id, field)
);
