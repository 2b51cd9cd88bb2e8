-- Initial schema. Written once for SQLite and PostgreSQL: {{bytes}} and {{id}} are the only
-- spellings that differ and are replaced per dialect at Open (see migrate.go). Times are BIGINT
-- Unix milliseconds UTC and booleans INTEGER 0/1, identical on both.

-- Dedupe keys: which event first claimed a key in a scope, and when it was last committed.
CREATE TABLE dedupe_keys (
    scope      TEXT   NOT NULL,
    dedupe_key TEXT   NOT NULL,
    event_id   TEXT   NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (scope, dedupe_key)
);
CREATE INDEX dedupe_keys_at ON dedupe_keys (at_ms);

-- Delivery log: one row per event and endpoint, attempts summed across records.
CREATE TABLE deliveries (
    event_id            TEXT    NOT NULL,
    endpoint            TEXT    NOT NULL,
    attempts            INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    last_error          TEXT    NOT NULL,
    delivered           INTEGER NOT NULL,
    first_attempt_at_ms BIGINT  NOT NULL,
    updated_at_ms       BIGINT  NOT NULL,
    PRIMARY KEY (event_id, endpoint)
);

-- Endpoints that answered 410 Gone (Standard Webhooks): not called again until enabled.
CREATE TABLE disabled_endpoints (
    endpoint       TEXT   NOT NULL PRIMARY KEY,
    reason         TEXT   NOT NULL,
    disabled_at_ms BIGINT NOT NULL
);

-- Dead-letter index. Ids are never reused, so an id printed by `dlq list` stays valid.
CREATE TABLE dead_letters (
    id            {{id}},
    pipeline      TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    payload       {{bytes}} NOT NULL,
    metadata      TEXT    NOT NULL, -- JSON object
    error         TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    retried_at_ms BIGINT            -- NULL while pending
);
CREATE INDEX dead_letters_pipeline ON dead_letters (pipeline, retried_at_ms);

-- Generic state: poller snapshots and cursors, one namespace per poller.
CREATE TABLE state (
    namespace TEXT      NOT NULL,
    name      TEXT      NOT NULL,
    data      {{bytes}} NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- Billing ledger: the upload that counts for each period, and every upload ever made.
CREATE TABLE billing_uploads (
    period         TEXT    NOT NULL PRIMARY KEY,
    remote_path    TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    row_count      INTEGER NOT NULL,
    size_bytes     BIGINT  NOT NULL,
    uploaded_at_ms BIGINT  NOT NULL
);
CREATE TABLE billing_upload_history (
    id             {{id}},
    period         TEXT    NOT NULL,
    remote_path    TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    row_count      INTEGER NOT NULL,
    size_bytes     BIGINT  NOT NULL,
    uploaded_at_ms BIGINT  NOT NULL
);
CREATE INDEX billing_upload_history_period ON billing_upload_history (period);

-- Billing runs that failed and must be tried again.
CREATE TABLE billing_pending (
    period     TEXT    NOT NULL PRIMARY KEY,
    last_error TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    since_ms   BIGINT  NOT NULL
);
