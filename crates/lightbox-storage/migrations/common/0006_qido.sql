-- Lightbox catalog schema v6 (SQLite and PostgreSQL): QIDO-RS (DICOMweb search) over live
-- primary image sets. Studies are walked in last-update order (one representative image set per
-- study, checked through image_sets_by_study_primary); series in SeriesNumber order, absent
-- numbers last (the expression is the one the query orders by).
CREATE INDEX image_sets_qido_studies ON image_sets (datastore_id, updated_at, id)
    WHERE is_primary = 1 AND state <> 'DELETED';
CREATE INDEX image_sets_qido_series ON image_sets (datastore_id,
    (CASE WHEN series_number IS NULL THEN 1 ELSE 0 END), series_number, series_instance_uid, id)
    WHERE is_primary = 1 AND state <> 'DELETED';
