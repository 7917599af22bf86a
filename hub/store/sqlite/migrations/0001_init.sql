-- Core schema: teams, hosts, policies, latest results, history, counts,
-- enroll secrets, API tokens and a key/value meta table.
-- CHECKs spell out equality instead of IN (...): SQLite builds an ephemeral
-- table for a constant IN list on every row written.
-- Times are INTEGER microseconds since the Unix epoch (UTC), the precision
-- PostgreSQL keeps; durations are INTEGER nanoseconds.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE teams (
    name                 TEXT PRIMARY KEY,
    conditional_access   INTEGER NOT NULL DEFAULT 0,
    max_allowed_severity TEXT NOT NULL DEFAULT ''
        CHECK (max_allowed_severity = '' OR max_allowed_severity = 'low' OR max_allowed_severity = 'medium' OR max_allowed_severity = 'high'),
    errors_as_failures   INTEGER NOT NULL DEFAULT 0,
    stale_after_ns       INTEGER NOT NULL DEFAULT 0 CHECK (stale_after_ns >= 0),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
) STRICT;

-- hosts.team is deliberately no foreign key: a team may hold hosts (through
-- its enroll secrets) before its settings are ever applied.
CREATE TABLE hosts (
    id                       TEXT PRIMARY KEY,
    team                     TEXT NOT NULL,
    hostname                 TEXT NOT NULL DEFAULT '',
    platform                 TEXT NOT NULL DEFAULT '',
    os_platform              TEXT NOT NULL DEFAULT '',
    os_name                  TEXT NOT NULL DEFAULT '',
    os_version               TEXT NOT NULL DEFAULT '',
    osquery_version          TEXT NOT NULL DEFAULT '',
    hardware_serial          TEXT NOT NULL DEFAULT '',
    hardware_uuid            TEXT NOT NULL DEFAULT '',
    hardware_model           TEXT NOT NULL DEFAULT '',
    ext_version              TEXT NOT NULL DEFAULT '',
    entra_device_id          TEXT NOT NULL DEFAULT '',
    entra_device_id_override TEXT NOT NULL DEFAULT '',
    user_principal_name      TEXT NOT NULL DEFAULT '',
    enrolled_at              INTEGER NOT NULL,
    last_seen_at             INTEGER NOT NULL,
    cert_serial              TEXT NOT NULL DEFAULT '',
    cert_not_after           INTEGER,
    revoked_at               INTEGER
) STRICT;
CREATE UNIQUE INDEX hosts_hardware_uuid ON hosts (hardware_uuid) WHERE hardware_uuid <> '';
CREATE INDEX hosts_team ON hosts (team);

CREATE TABLE policies (
    id                 TEXT PRIMARY KEY CHECK (id <> ''),
    name               TEXT NOT NULL DEFAULT '',
    query              TEXT NOT NULL CHECK (query <> ''),
    description        TEXT NOT NULL DEFAULT '',
    resolution         TEXT NOT NULL DEFAULT '',
    platforms          TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    severity           TEXT NOT NULL CHECK (severity = 'low' OR severity = 'medium' OR severity = 'high' OR severity = 'critical'),
    conditional_access INTEGER NOT NULL DEFAULT 0,
    grace_period_ns    INTEGER NOT NULL DEFAULT 0 CHECK (grace_period_ns >= 0),
    team               TEXT NOT NULL DEFAULT '',
    revision           INTEGER NOT NULL CHECK (revision >= 1),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

-- Latest result per (host, policy). Rows of a policy's old revision are
-- deleted by the apply that bumps it.
CREATE TABLE results (
    host_id      TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    policy_id    TEXT NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    revision     INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status = 'PASS' OR status = 'FAIL' OR status = 'ERROR'),
    error        TEXT NOT NULL DEFAULT '',
    evaluated_at INTEGER NOT NULL,
    duration_ns  INTEGER NOT NULL DEFAULT 0,
    status_since INTEGER NOT NULL,
    PRIMARY KEY (host_id, policy_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX results_policy ON results (policy_id);

-- One row per status change. policy_id has no foreign key: history outlives
-- a removed policy.
CREATE TABLE result_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id      TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    policy_id    TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status = 'PASS' OR status = 'FAIL' OR status = 'ERROR'),
    error        TEXT NOT NULL DEFAULT '',
    evaluated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX result_history_host_policy ON result_history (host_id, policy_id, id);

-- Per-policy host counts, maintained by RecordResults, ApplyPolicies and
-- DeleteHost in their transactions.
CREATE TABLE policy_counts (
    policy_id TEXT PRIMARY KEY REFERENCES policies (id) ON DELETE CASCADE,
    passing   INTEGER NOT NULL DEFAULT 0,
    failing   INTEGER NOT NULL DEFAULT 0,
    errors    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE enroll_secrets (
    id           TEXT PRIMARY KEY CHECK (id <> ''),
    team         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    hash         BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY CHECK (id <> ''),
    name         TEXT NOT NULL DEFAULT '',
    role         TEXT NOT NULL CHECK (role = 'observer' OR role = 'maintainer' OR role = 'admin'),
    hash         BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;
