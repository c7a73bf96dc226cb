-- Lightbox catalog schema v7 (SQLite and PostgreSQL): QIDO-RS at the instance level, and the
-- study / series attributes QIDO-RS returns that SearchImageSets does not. Written with every
-- version's content (same transaction); `qido_indexed` is 0 for image sets written before this
-- migration until the service has indexed their latest document (start-up backfill).
ALTER TABLE image_sets ADD COLUMN referring_physician_name TEXT;
ALTER TABLE image_sets ADD COLUMN series_description TEXT;
ALTER TABLE image_sets ADD COLUMN series_date TEXT;
ALTER TABLE image_sets ADD COLUMN series_time TEXT;
ALTER TABLE image_sets ADD COLUMN qido_indexed BIGINT NOT NULL DEFAULT 0;

-- The instances of each image set's latest content (rewritten with it), with the image set's
-- StudyInstanceUID and the instance's series UID so that a study's or series' instances are one
-- index range.
CREATE TABLE dicom_instances (
    datastore_id        TEXT NOT NULL,
    image_set_id        TEXT NOT NULL,
    sop_instance_uid    TEXT NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid       TEXT,
    instance_number     BIGINT,
    rows_count          BIGINT,
    columns_count       BIGINT,
    bits_allocated      BIGINT,
    number_of_frames    BIGINT,
    PRIMARY KEY (datastore_id, image_set_id, series_instance_uid, sop_instance_uid)
);
-- Instances of a series / of the data store in InstanceNumber order (absent numbers last; the
-- expression is the one the queries order by).
CREATE INDEX dicom_instances_by_series ON dicom_instances (datastore_id, study_instance_uid,
    series_instance_uid, (CASE WHEN instance_number IS NULL THEN 1 ELSE 0 END), instance_number,
    sop_instance_uid, image_set_id);
CREATE INDEX dicom_instances_by_number ON dicom_instances (datastore_id,
    (CASE WHEN instance_number IS NULL THEN 1 ELSE 0 END), instance_number, sop_instance_uid,
    image_set_id);
CREATE INDEX dicom_instances_by_sop ON dicom_instances (datastore_id, sop_instance_uid);
CREATE INDEX image_sets_qido_unindexed ON image_sets (qido_indexed) WHERE qido_indexed = 0;
