-- Lightbox catalog schema v2 (SQLite and PostgreSQL): the job queue (background work claimed with leases).
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,   -- QUEUED | RUNNING | SUCCEEDED | FAILED
    attempts         BIGINT NOT NULL,
    not_before       BIGINT NOT NULL, -- epoch ms before which the job is not claimed
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    result           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX jobs_claimable ON jobs (state, kind, created_at);
