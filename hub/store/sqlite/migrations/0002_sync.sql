-- Issue 3: identity report time, exemptions, verdicts, integrations, fact
-- queries and the sync outbox (see hub/sync/outbox.go for its semantics).

ALTER TABLE hosts ADD COLUMN identity_at INTEGER;

CREATE TABLE exemptions (
    id         TEXT PRIMARY KEY CHECK (id <> ''),
    host_id    TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    policy_id  TEXT NOT NULL DEFAULT '', -- '' = every policy
    reason     TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX exemptions_host ON exemptions (host_id, created_at);

CREATE TABLE verdicts (
    host_id         TEXT PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    state           TEXT NOT NULL
        CHECK (state = 'COMPLIANT' OR state = 'NONCOMPLIANT' OR state = 'GRACE' OR state = 'UNKNOWN'),
    cause           TEXT NOT NULL DEFAULT '',
    desired         TEXT NOT NULL DEFAULT ''
        CHECK (desired = '' OR desired = 'compliant' OR desired = 'noncompliant'),
    reasons         BLOB,
    next_transition INTEGER,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1)
) STRICT, WITHOUT ROWID;
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
    credential_kind      TEXT NOT NULL CHECK (credential_kind = 'secret' OR credential_kind = 'certificate'),
    sealed_credential    BLOB NOT NULL,
    sealed_cert_password BLOB,
    secret_expires_at    INTEGER,
    cert_not_after       INTEGER,
    extension_attribute  INTEGER NOT NULL CHECK (extension_attribute >= 1 AND extension_attribute <= 15),
    compliant_value      TEXT NOT NULL CHECK (compliant_value <> ''),
    noncompliant_value   TEXT NOT NULL CHECK (noncompliant_value <> ''),
    teams                TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    health               TEXT NOT NULL DEFAULT '',
    health_message       TEXT NOT NULL DEFAULT '',
    health_checked_at    INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;

CREATE TABLE fact_queries (
    name     TEXT NOT NULL CHECK (name <> ''),
    platform TEXT NOT NULL DEFAULT '', -- '' = every platform
    query    TEXT NOT NULL CHECK (query <> ''),
    PRIMARY KEY (name, platform)
) STRICT, WITHOUT ROWID;

-- One row per desired device state to write. No foreign keys: rows are
-- history and outlive their host (and, dead-lettered, their integration).
CREATE TABLE sync_outbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id TEXT NOT NULL,
    tenant_id      TEXT NOT NULL DEFAULT '',
    device_id      TEXT NOT NULL,
    host_id        TEXT NOT NULL DEFAULT '',
    desired        TEXT NOT NULL CHECK (desired = 'compliant' OR desired = 'noncompliant'),
    verdict        TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    force          INTEGER NOT NULL DEFAULT 0,
    low_priority   INTEGER NOT NULL DEFAULT 0,
    state          TEXT NOT NULL DEFAULT 'pending' CHECK (state = 'pending' OR state = 'done' OR state = 'dead'),
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at        INTEGER NOT NULL,
    last_code      TEXT NOT NULL DEFAULT '',
    last_error     TEXT NOT NULL DEFAULT '',
    dead_reason    TEXT NOT NULL DEFAULT '',
    dead_at        INTEGER
) STRICT;
CREATE INDEX sync_outbox_pending ON sync_outbox (integration_id, device_id, next_at) WHERE state = 'pending';
CREATE INDEX sync_outbox_due ON sync_outbox (next_at) WHERE state = 'pending';
CREATE INDEX sync_outbox_state ON sync_outbox (state, id);

-- One row per device: the lease (which makes claiming per device) and the
-- last written and desired states.
CREATE TABLE sync_device (
    integration_id TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    tenant_id      TEXT NOT NULL DEFAULT '',
    host_id        TEXT NOT NULL DEFAULT '',
    lease_owner    TEXT,
    lease_until    INTEGER,
    written        TEXT NOT NULL DEFAULT '',
    written_at     INTEGER,
    desired        TEXT NOT NULL DEFAULT '',
    desired_at     INTEGER,
    PRIMARY KEY (integration_id, device_id)
) STRICT;
