-- Lightbox catalog schema v5 (SQLite and PostgreSQL): image set changes. A frame may be live in
-- several disjoint version ranges (a revert or a copy makes a removed frame live again), so the
-- frame table is keyed by the range's first version too.
CREATE TABLE image_frames_v5 (
    datastore_id    TEXT NOT NULL,
    image_set_id    TEXT NOT NULL,
    frame_id        TEXT NOT NULL,
    from_version    BIGINT NOT NULL,
    until_version   BIGINT,
    blob_key        TEXT NOT NULL,
    size            BIGINT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    PRIMARY KEY (datastore_id, image_set_id, frame_id, from_version)
);
INSERT INTO image_frames_v5 (datastore_id, image_set_id, frame_id, from_version, until_version,
    blob_key, size, transfer_syntax)
SELECT datastore_id, image_set_id, frame_id, from_version, until_version, blob_key, size,
    transfer_syntax FROM image_frames;
DROP TABLE image_frames;
ALTER TABLE image_frames_v5 RENAME TO image_frames;
CREATE INDEX image_frames_by_blob ON image_frames (blob_key);

-- The live primary image sets of a study (includeStudyImageSets, study-wide counts).
CREATE INDEX image_sets_by_study_primary ON image_sets (datastore_id, study_instance_uid, is_primary);
-- Versions by document: a document may be shared by versions (a revert reuses the document).
CREATE INDEX image_set_versions_by_metadata ON image_set_versions (metadata_key);
