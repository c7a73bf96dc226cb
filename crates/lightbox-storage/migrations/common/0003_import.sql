-- Lightbox catalog schema v3 (SQLite and PostgreSQL): DICOM import jobs, image set versions,
-- image frames, what image sets are found and grouped by, and blobs written but not yet owned.
CREATE TABLE import_jobs (
    datastore_id           TEXT NOT NULL REFERENCES datastores (id),
    id                     TEXT NOT NULL,
    name                   TEXT,
    status                 TEXT NOT NULL, -- SUBMITTED | IN_PROGRESS | COMPLETED | FAILED
    data_access_role_arn   TEXT NOT NULL,
    input_s3_uri           TEXT NOT NULL,
    output_s3_uri          TEXT NOT NULL, -- job-specific: <outputS3Uri><ds>-DicomImport-<job>/
    input_owner_account_id TEXT,
    import_configuration   TEXT,          -- JSON as received
    message                TEXT,
    submitted_at           BIGINT NOT NULL,
    ended_at               BIGINT,
    updated_at             BIGINT NOT NULL,
    client_token           TEXT NOT NULL,
    request_fingerprint    TEXT NOT NULL,
    PRIMARY KEY (datastore_id, id),
    UNIQUE (datastore_id, client_token)
);
CREATE INDEX import_jobs_listing ON import_jobs (datastore_id, submitted_at, id);

-- What the latest version of an image set is found and grouped by.
ALTER TABLE image_sets ADD COLUMN grouping TEXT;            -- the 7 grouping elements (JSON)
ALTER TABLE image_sets ADD COLUMN patient_id TEXT;
ALTER TABLE image_sets ADD COLUMN patient_name TEXT;
ALTER TABLE image_sets ADD COLUMN patient_birth_date TEXT;
ALTER TABLE image_sets ADD COLUMN patient_sex TEXT;
ALTER TABLE image_sets ADD COLUMN accession_number TEXT;
ALTER TABLE image_sets ADD COLUMN study_id TEXT;
ALTER TABLE image_sets ADD COLUMN study_instance_uid TEXT;
ALTER TABLE image_sets ADD COLUMN study_date TEXT;
ALTER TABLE image_sets ADD COLUMN study_time TEXT;
ALTER TABLE image_sets ADD COLUMN study_description TEXT;
ALTER TABLE image_sets ADD COLUMN series_instance_uid TEXT;
ALTER TABLE image_sets ADD COLUMN series_modality TEXT;
ALTER TABLE image_sets ADD COLUMN series_body_part TEXT;
ALTER TABLE image_sets ADD COLUMN series_number BIGINT;
ALTER TABLE image_sets ADD COLUMN instance_count BIGINT;
-- At most one live primary image set per series.
CREATE UNIQUE INDEX image_sets_primary_series ON image_sets (datastore_id, study_instance_uid, series_instance_uid)
    WHERE is_primary = 1 AND state <> 'DELETED';

-- Every version of every image set; image_sets mirrors the latest one.
CREATE TABLE image_set_versions (
    datastore_id    TEXT NOT NULL,
    image_set_id    TEXT NOT NULL,
    version         BIGINT NOT NULL,
    state           TEXT NOT NULL,
    workflow_status TEXT NOT NULL,
    is_primary      BIGINT NOT NULL,
    message         TEXT,
    forced          BIGINT NOT NULL,
    metadata_key    TEXT,          -- blob key of the gzip metadata document
    metadata_size   BIGINT,
    job_id          TEXT,          -- the import job (or operation) that wrote this version
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    PRIMARY KEY (datastore_id, image_set_id, version)
);
CREATE INDEX image_set_versions_by_job ON image_set_versions (job_id);

-- Frames of an image set, live in versions [from_version, until_version).
CREATE TABLE image_frames (
    datastore_id    TEXT NOT NULL,
    image_set_id    TEXT NOT NULL,
    frame_id        TEXT NOT NULL,
    from_version    BIGINT NOT NULL,
    until_version   BIGINT,
    blob_key        TEXT NOT NULL,
    size            BIGINT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    PRIMARY KEY (datastore_id, image_set_id, frame_id)
);
CREATE INDEX image_frames_by_blob ON image_frames (blob_key);

-- Blobs written by unfinished work: deleted (with their rows) if that work is abandoned.
CREATE TABLE pending_blobs (
    blob_key   TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pending_blobs_by_owner ON pending_blobs (owner);
