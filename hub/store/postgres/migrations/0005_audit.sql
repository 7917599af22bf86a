-- The admin audit log (append only). Before/after hold redacted JSON.
CREATE TABLE audit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    actor_role TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL CHECK (action <> ''),
    target     TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL DEFAULT '',
    result     TEXT NOT NULL,
    error      TEXT NOT NULL DEFAULT '',
    before     TEXT NOT NULL DEFAULT '',
    after      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
