-- Lightbox catalog schema v1 (PostgreSQL): settings, data stores, image sets, tags.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE datastores (
    seq                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- creation order
    id                      TEXT NOT NULL UNIQUE,
    name                    TEXT NOT NULL,
    status                  TEXT NOT NULL,
    kms_key_arn             TEXT,
    lambda_authorizer_arn   TEXT,
    lossless_storage_format TEXT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    client_token            TEXT NOT NULL UNIQUE,
    request_fingerprint     TEXT NOT NULL
);
CREATE INDEX datastores_by_status ON datastores (status, seq);

CREATE TABLE image_sets (
    datastore_id    TEXT NOT NULL REFERENCES datastores (id),
    id              TEXT NOT NULL,
    version         BIGINT NOT NULL,
    state           TEXT NOT NULL,
    workflow_status TEXT NOT NULL,
    is_primary      BIGINT NOT NULL, -- 0 or 1 (portable across SQLite and PostgreSQL)
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    PRIMARY KEY (datastore_id, id)
);

CREATE TABLE tags (
    resource  TEXT NOT NULL,
    tag_key   TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (resource, tag_key)
);
