-- Core schema: teams, hosts, policies, latest results, history, counts,
-- enroll secrets, API tokens and a key/value meta table.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE teams (
    name                 TEXT PRIMARY KEY,
    conditional_access   BOOLEAN NOT NULL DEFAULT FALSE,
    max_allowed_severity TEXT NOT NULL DEFAULT ''
        CHECK (max_allowed_severity IN ('', 'low', 'medium', 'high')),
    errors_as_failures   BOOLEAN NOT NULL DEFAULT FALSE,
    stale_after_ns       BIGINT NOT NULL DEFAULT 0 CHECK (stale_after_ns >= 0),
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

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
    enrolled_at              TIMESTAMPTZ NOT NULL,
    last_seen_at             TIMESTAMPTZ NOT NULL,
    cert_serial              TEXT NOT NULL DEFAULT '',
    cert_not_after           TIMESTAMPTZ,
    revoked_at               TIMESTAMPTZ
);
CREATE UNIQUE INDEX hosts_hardware_uuid ON hosts (hardware_uuid) WHERE hardware_uuid <> '';
CREATE INDEX hosts_team ON hosts (team);

CREATE TABLE policies (
    id                 TEXT PRIMARY KEY CHECK (id <> ''),
    name               TEXT NOT NULL DEFAULT '',
    query              TEXT NOT NULL CHECK (query <> ''),
    description        TEXT NOT NULL DEFAULT '',
    resolution         TEXT NOT NULL DEFAULT '',
    platforms          TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    severity           TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    conditional_access BOOLEAN NOT NULL DEFAULT FALSE,
    grace_period_ns    BIGINT NOT NULL DEFAULT 0 CHECK (grace_period_ns >= 0),
    team               TEXT NOT NULL DEFAULT '',
    revision           BIGINT NOT NULL CHECK (revision >= 1),
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

-- Latest result per (host, policy). Rows of a policy's old revision are
-- deleted by the apply that bumps it.
CREATE TABLE results (
    host_id      TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    policy_id    TEXT NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    revision     BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('PASS', 'FAIL', 'ERROR')),
    error        TEXT NOT NULL DEFAULT '',
    evaluated_at TIMESTAMPTZ NOT NULL,
    duration_ns  BIGINT NOT NULL DEFAULT 0,
    status_since TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (host_id, policy_id)
);
CREATE INDEX results_policy ON results (policy_id);

-- One row per status change. policy_id has no foreign key: history outlives
-- a removed policy.
CREATE TABLE result_history (
    id           BIGSERIAL PRIMARY KEY,
    host_id      TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    policy_id    TEXT NOT NULL,
    revision     BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('PASS', 'FAIL', 'ERROR')),
    error        TEXT NOT NULL DEFAULT '',
    evaluated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX result_history_host_policy ON result_history (host_id, policy_id, id);

-- Per-policy host counts, maintained by RecordResults, ApplyPolicies and
-- DeleteHost in their transactions.
CREATE TABLE policy_counts (
    policy_id TEXT PRIMARY KEY REFERENCES policies (id) ON DELETE CASCADE,
    passing   BIGINT NOT NULL DEFAULT 0,
    failing   BIGINT NOT NULL DEFAULT 0,
    errors    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE enroll_secrets (
    id           TEXT PRIMARY KEY CHECK (id <> ''),
    team         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    hash         BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY CHECK (id <> ''),
    name         TEXT NOT NULL DEFAULT '',
    role         TEXT NOT NULL CHECK (role IN ('observer', 'maintainer', 'admin')),
    hash         BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
