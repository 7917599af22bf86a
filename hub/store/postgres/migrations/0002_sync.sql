-- Issue 3: identity report time, exemptions, verdicts, integrations, fact
-- queries and the sync outbox (see hub/sync/outbox.go for its semantics).

ALTER TABLE hosts ADD COLUMN identity_at TIMESTAMPTZ;

CREATE TABLE exemptions (
    id         TEXT PRIMARY KEY CHECK (id <> ''),
    host_id    TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    policy_id  TEXT NOT NULL DEFAULT '', -- '' = every policy
    reason     TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX exemptions_host ON exemptions (host_id, created_at);

CREATE TABLE verdicts (
    host_id         TEXT PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('COMPLIANT', 'NONCOMPLIANT', 'GRACE', 'UNKNOWN')),
    cause           TEXT NOT NULL DEFAULT '',
    desired         TEXT NOT NULL DEFAULT '' CHECK (desired IN ('', 'compliant', 'noncompliant')),
    reasons         BYTEA,
    next_transition TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL,
    version         BIGINT NOT NULL CHECK (version >= 1)
);
CREATE INDEX verdicts_due ON verdicts (next_transition) WHERE next_transition IS NOT NULL;

CREATE TABLE integrations (
    id                   TEXT PRIMARY KEY CHECK (id <> ''),
    name                 TEXT NOT NULL DEFAULT '',
    kind                 TEXT NOT NULL,
    cloud                TEXT NOT NULL,
    authority_host       TEXT NOT NULL DEFAULT '',
    graph_base_url       TEXT NOT NULL DEFAULT '',
    extra_ca_pem         TEXT NOT NULL DEFAULT '',
    tenant_id            TEXT NOT NULL,
    client_id            TEXT NOT NULL,
    credential_kind      TEXT NOT NULL CHECK (credential_kind IN ('secret', 'certificate')),
    sealed_credential    BYTEA NOT NULL,
    sealed_cert_password BYTEA,
    secret_expires_at    TIMESTAMPTZ,
    cert_not_after       TIMESTAMPTZ,
    extension_attribute  INTEGER NOT NULL CHECK (extension_attribute BETWEEN 1 AND 15),
    compliant_value      TEXT NOT NULL CHECK (compliant_value <> ''),
    noncompliant_value   TEXT NOT NULL CHECK (noncompliant_value <> ''),
    teams                TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    health               TEXT NOT NULL DEFAULT '',
    health_message       TEXT NOT NULL DEFAULT '',
    health_checked_at    TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

CREATE TABLE fact_queries (
    name     TEXT NOT NULL CHECK (name <> ''),
    platform TEXT NOT NULL DEFAULT '', -- '' = every platform
    query    TEXT NOT NULL CHECK (query <> ''),
    PRIMARY KEY (name, platform)
);

-- One row per desired device state to write. No foreign keys: rows are
-- history and outlive their host (and, dead-lettered, their integration).
-- Device keys use the "C" collation: byte order, as in Go and SQLite, so
-- paging by (integration, device) agrees with the worker's order.
CREATE TABLE sync_outbox (
    id             BIGSERIAL PRIMARY KEY,
    integration_id TEXT COLLATE "C" NOT NULL,
    tenant_id      TEXT NOT NULL DEFAULT '',
    device_id      TEXT COLLATE "C" NOT NULL,
    host_id        TEXT NOT NULL DEFAULT '',
    desired        TEXT NOT NULL CHECK (desired IN ('compliant', 'noncompliant')),
    verdict        TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL,
    force          BOOLEAN NOT NULL DEFAULT FALSE,
    low_priority   BOOLEAN NOT NULL DEFAULT FALSE,
    state          TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at        TIMESTAMPTZ NOT NULL,
    last_code      TEXT NOT NULL DEFAULT '',
    last_error     TEXT NOT NULL DEFAULT '',
    dead_reason    TEXT NOT NULL DEFAULT '',
    dead_at        TIMESTAMPTZ
);
CREATE INDEX sync_outbox_pending ON sync_outbox (integration_id, device_id, next_at) WHERE state = 'pending';
CREATE INDEX sync_outbox_due ON sync_outbox (next_at) WHERE state = 'pending';
CREATE INDEX sync_outbox_state ON sync_outbox (state, id);

-- One row per device: the lease (row-locked by Claim, which makes claiming
-- per device across replicas) and the last written and desired states.
CREATE TABLE sync_device (
    integration_id TEXT COLLATE "C" NOT NULL,
    device_id      TEXT COLLATE "C" NOT NULL,
    tenant_id      TEXT NOT NULL DEFAULT '',
    host_id        TEXT NOT NULL DEFAULT '',
    lease_owner    TEXT,
    lease_until    TIMESTAMPTZ,
    written        TEXT NOT NULL DEFAULT '',
    written_at     TIMESTAMPTZ,
    desired        TEXT NOT NULL DEFAULT '',
    desired_at     TIMESTAMPTZ,
    PRIMARY KEY (integration_id, device_id)
);
