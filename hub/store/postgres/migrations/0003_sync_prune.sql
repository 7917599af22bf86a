-- PruneSyncItems deletes old done outbox rows oldest first: this partial
-- index finds them without scanning pending, dead or recent rows.
CREATE INDEX sync_outbox_done ON sync_outbox (created_at, id) WHERE state = 'done';
