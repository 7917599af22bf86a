-- A host is its key: re-enrolls are counted and dated; an enroll for a
-- known hardware UUID with another team's secret makes a new host marked
-- as a duplicate of the existing one (so the UUID is unique only among
-- hosts that are not duplicates). Entra device id lookups find every host
-- claiming a device (conflicts, revoked devices).
ALTER TABLE hosts ADD COLUMN duplicate_of TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN reenrolled_at INTEGER;
ALTER TABLE hosts ADD COLUMN reenroll_count INTEGER NOT NULL DEFAULT 0;
DROP INDEX hosts_hardware_uuid;
CREATE UNIQUE INDEX hosts_hardware_uuid ON hosts (hardware_uuid) WHERE hardware_uuid <> '' AND duplicate_of = '';
CREATE INDEX hosts_hardware_uuid_all ON hosts (hardware_uuid) WHERE hardware_uuid <> '';
CREATE INDEX hosts_entra_device_id ON hosts (entra_device_id) WHERE entra_device_id <> '';
CREATE INDEX hosts_entra_device_id_override ON hosts (entra_device_id_override) WHERE entra_device_id_override <> '';
