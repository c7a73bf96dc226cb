//! The storage flags shared by `lightbox serve` and `lightbox generate-image-sets`: where the
//! data directory, catalog and blob store are, and how to reach an S3 blob store.

use std::path::PathBuf;

use lightbox::S3Options;

#[derive(clap::Args)]
pub struct StorageArgs {
    /// Directory holding the catalog (SQLite) and blobs.
    #[arg(long, env = "LIGHTBOX_DATA_DIR", default_value = "./lightbox-data")]
    pub data_dir: PathBuf,
    /// Catalog database URL, e.g. postgres://user:pass@host/db (default: SQLite in --data-dir).
    #[arg(long, env = "LIGHTBOX_CATALOG", hide_env_values = true)]
    pub catalog: Option<String>,
    /// Blob store: s3://bucket/prefix, file:///dir or a path (default: --data-dir/blobs).
    #[arg(long, env = "LIGHTBOX_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// S3 endpoint URL for MinIO, Ceph, Garage… (default: AWS S3).
    #[arg(long, env = "LIGHTBOX_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "LIGHTBOX_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id (default: the AWS credential chain).
    #[arg(long, env = "LIGHTBOX_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "LIGHTBOX_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Use virtual-hosted-style S3 addressing (bucket.host) instead of path style.
    #[arg(long, env = "LIGHTBOX_S3_VIRTUAL_HOSTED_STYLE")]
    pub s3_virtual_hosted_style: bool,
}

impl StorageArgs {
    /// The blob store's S3 settings.
    pub fn s3(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            virtual_hosted_style: self.s3_virtual_hosted_style,
        }
    }
}
