-- What the host's spool dropped when it compacted at its byte cap, counted
-- since the spool was created (AgentHealth.spool_dropped_*): results in all,
-- and the status transitions among them (gaps in the host's history).
-- Shown to admins only; they never affect the verdict.
ALTER TABLE host_reporting ADD COLUMN spool_dropped_results INTEGER NOT NULL DEFAULT 0 CHECK (spool_dropped_results >= 0);
ALTER TABLE host_reporting ADD COLUMN spool_dropped_transitions INTEGER NOT NULL DEFAULT 0 CHECK (spool_dropped_transitions >= 0);
