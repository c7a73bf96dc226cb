-- Lightbox catalog schema v4 (SQLite and PostgreSQL): image set reads. The last touch (storage
-- tiers), a sortable study date-time, and the indexes SearchImageSets is served from.
ALTER TABLE image_sets ADD COLUMN last_accessed_at BIGINT;
ALTER TABLE image_sets ADD COLUMN study_date_time TEXT NOT NULL DEFAULT ''; -- YYYYMMDDHHMMSSffffff or ''
UPDATE image_sets SET last_accessed_at = updated_at;

-- Sort orders (with the image set id as the tie-breaker of keyset pagination).
CREATE INDEX image_sets_by_updated ON image_sets (datastore_id, updated_at, id);
CREATE INDEX image_sets_by_created ON image_sets (datastore_id, created_at, id);
CREATE INDEX image_sets_by_study_date_time ON image_sets (datastore_id, study_date_time, id);
-- EQUAL filters, in the default order (updatedAt) so the usual query needs no sort step.
CREATE INDEX image_sets_by_patient ON image_sets (datastore_id, patient_id, updated_at, id);
CREATE INDEX image_sets_by_accession ON image_sets (datastore_id, accession_number, updated_at, id);
CREATE INDEX image_sets_by_study_id ON image_sets (datastore_id, study_id, updated_at, id);
CREATE INDEX image_sets_by_study ON image_sets (datastore_id, study_instance_uid, updated_at, id);
CREATE INDEX image_sets_by_series ON image_sets (datastore_id, series_instance_uid, updated_at, id);
