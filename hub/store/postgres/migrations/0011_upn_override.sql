-- Issue 10 (user mapping): an admin can set a host's user principal name;
-- when not empty it wins over the one the host's fact query reports.
ALTER TABLE hosts ADD COLUMN user_principal_name_override TEXT NOT NULL DEFAULT '';
