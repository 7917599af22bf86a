-- Issue 8: the Graph resource of a custom cloud (apart from its base URL),
-- per-team session revocation on a qualifying transition to NONCOMPLIANT,
-- and outbox rows of another kind than the device attribute.

ALTER TABLE integrations ADD COLUMN graph_resource TEXT NOT NULL DEFAULT '';

ALTER TABLE teams ADD COLUMN revoke_sessions BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE teams ADD COLUMN revoke_sessions_min_severity TEXT NOT NULL DEFAULT ''
    CHECK (revoke_sessions_min_severity IN ('', 'low', 'medium', 'high', 'critical'));

-- kind '' is the device attribute write; 'revoke_sessions' revokes the
-- sign-in sessions of the user named by subject (a UPN).
ALTER TABLE sync_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '' CHECK (kind IN ('', 'revoke_sessions'));
ALTER TABLE sync_outbox ADD COLUMN subject TEXT NOT NULL DEFAULT '';
