-- Issue 10: sink kinds beyond "graph" (webhook, intune-partner).
-- settings: the kind's own options as a JSON object (webhook URL, partner
-- portal URLs, platforms, group scope); sink_state: what the sink keeps
-- about Microsoft's side (partner activation, policies, heartbeat), written
-- by the sink alone so it never bumps updated_at (the sink cache key).
-- Graph-only columns (extension_attribute, values) keep their defaults on
-- other kinds and are ignored there.
ALTER TABLE integrations ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE integrations ADD COLUMN sink_state TEXT NOT NULL DEFAULT '{}';
