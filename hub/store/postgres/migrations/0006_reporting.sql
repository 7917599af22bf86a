-- Reporting health of each host, kept apart from hosts so its frequent
-- writes (every batch, every heartbeat) never touch the host row:
--   * cadence: the policy interval the hub last sent the host and when its
--     last result batch was committed (a host silent for a team's
--     missed_reports intervals is UNKNOWN, connected or not);
--   * health: what the agent last said about itself (AgentHealth);
--   * stream: which replica holds the host's stream; hub_replicas holds one
--     heartbeat per replica, so every replica can tell connected hosts and
--     the streams of a dead replica expire with its heartbeat.
CREATE TABLE host_reporting (
    host_id            TEXT PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    report_interval_ns BIGINT NOT NULL DEFAULT 0 CHECK (report_interval_ns >= 0),
    last_report_at     TIMESTAMPTZ,
    health_at          TIMESTAMPTZ,
    osquery_ok         BOOLEAN NOT NULL DEFAULT TRUE,
    spool_ok           BOOLEAN NOT NULL DEFAULT TRUE,
    health_detail      TEXT NOT NULL DEFAULT '',
    spool_depth        BIGINT NOT NULL DEFAULT 0,
    stream_replica     TEXT NOT NULL DEFAULT '',
    stream_since       TIMESTAMPTZ
);
CREATE INDEX host_reporting_replica ON host_reporting (stream_replica) WHERE stream_replica <> '';

-- Hosts known before this migration count as having reported when last seen.
INSERT INTO host_reporting (host_id, last_report_at) SELECT id, last_seen_at FROM hosts;

-- 0 = the default (3): a host is silent after this many missed intervals.
ALTER TABLE teams ADD COLUMN missed_reports INTEGER NOT NULL DEFAULT 0 CHECK (missed_reports >= 0);

CREATE TABLE hub_replicas (
    id           TEXT PRIMARY KEY,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
