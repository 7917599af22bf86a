-- Issue 8: the Graph resource of a custom cloud (apart from its base URL),
-- per-team session revocation on a qualifying transition to NONCOMPLIANT,
-- and outbox rows of another kind than the device attribute.

ALTER TABLE integrations ADD COLUMN graph_resource TEXT NOT NULL DEFAULT '';

ALTER TABLE teams ADD COLUMN revoke_sessions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN revoke_sessions_min_severity TEXT NOT NULL DEFAULT ''
    CHECK (revoke_sessions_min_severity = '' OR revoke_sessions_min_severity = 'low' OR revoke_sessions_min_severity = 'medium'
        OR revoke_sessions_min_severity = 'high' OR revoke_sessions_min_severity = 'critical');

-- kind '' is the device attribute write; 'revoke_sessions' revokes the
-- sign-in sessions of the user named by subject (a UPN).
ALTER TABLE sync_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '' CHECK (kind = '' OR kind = 'revoke_sessions');
ALTER TABLE sync_outbox ADD COLUMN subject TEXT NOT NULL DEFAULT '';

-- What Graph said about a host's Entra device the last time reconcile read
-- it, and how that disagrees with the host's own facts ('' = agrees).
CREATE TABLE entra_device_checks (
    host_id          TEXT PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    integration_id   TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    display_name     TEXT NOT NULL DEFAULT '',
    operating_system TEXT NOT NULL DEFAULT '',
    mismatch         TEXT NOT NULL DEFAULT '',
    checked_at       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
