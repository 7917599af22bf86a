-- The portal's "my devices" looks hosts up by their effective user principal
-- name (the admin's override, else the reported one), ignoring ASCII case
-- (lower() under "C" folds ASCII only, as on SQLite). The expression is
-- written exactly as sqlrow.Postgres.UserKey so the planner uses this index.
CREATE INDEX hosts_user_key ON hosts (lower((CASE WHEN user_principal_name_override <> '' THEN user_principal_name_override ELSE user_principal_name END) COLLATE "C"));
