//! The Catalog on SQL: one implementation over sqlx's `Any` driver for SQLite (embedded default)
//! and PostgreSQL (scale-out), with the same statements wherever the two dialects agree.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetDicomTags, ImageSetId,
    ImageSetState, ImageSetWorkflowStatus, ImportJob, ImportJobStatus, LosslessStorageFormat,
    Millis, QidoAttributes, QidoIndex, QidoInstance, ResourceRef, study_date_time_key,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Row, SqlSafeStr};

use crate::StorageError;
use crate::catalog::{
    BeginChangeOutcome, BeginVersionOutcome, Catalog, ChangeEnd, ChangeLock,
    CreateDatastoreOutcome, CreateImageSetOutcome, CreateImportJobOutcome, Cursor,
    DeleteDatastoreOutcome, DicomAttribute, DicomCondition, DicomInstance, DicomMatch, DicomQuery,
    DicomSeries, DicomStudy, DicomStudyCounts, FrameRecord, ImageSetChange, ImageSetContent,
    ImageSetFilter, ImageSetSearch, ImageSetSortField, ImageSetSummary, ImageSetTextField,
    ImageSetVersion, InstanceScope, Job, JobOutcome, JobState, Lease, NewDatastore, NewImageSet,
    NewJob, Page, PrimaryImageSet, TagOutcome, UnindexedImageSet, VersionCompletion,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// Migrations per dialect. Where the two dialects agree, both use the file in `common/`.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../migrations/common/0002_jobs.sql"),
    ),
    (
        3,
        "import",
        include_str!("../migrations/common/0003_import.sql"),
    ),
    (
        4,
        "reads",
        include_str!("../migrations/common/0004_reads.sql"),
    ),
    (
        5,
        "changes",
        include_str!("../migrations/common/0005_changes.sql"),
    ),
    (
        6,
        "qido",
        include_str!("../migrations/common/0006_qido.sql"),
    ),
    (
        7,
        "qido_instances",
        include_str!("../migrations/common/0007_qido_instances.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../migrations/common/0002_jobs.sql"),
    ),
    (
        3,
        "import",
        include_str!("../migrations/common/0003_import.sql"),
    ),
    (
        4,
        "reads",
        include_str!("../migrations/common/0004_reads.sql"),
    ),
    (
        5,
        "changes",
        include_str!("../migrations/common/0005_changes.sql"),
    ),
    (
        6,
        "qido",
        include_str!("../migrations/common/0006_qido.sql"),
    ),
    (
        7,
        "qido_instances",
        include_str!("../migrations/common/0007_qido_instances.sql"),
    ),
];

/// Advisory lock key serialising data store creation on PostgreSQL (quota + token checks).
const PG_DATASTORE_LOCK: i64 = 0x4c42_4453; // "LBDS"

/// A Catalog backed by SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    dialect: Dialect,
}

const DATASTORE_COLUMNS: &str = "id, name, status, kms_key_arn, lambda_authorizer_arn, \
     lossless_storage_format, created_at, updated_at, client_token, request_fingerprint";
const JOB_COLUMNS: &str = "id, kind, payload, state, attempts, not_before, lease_owner, \
     lease_expires_at, result, created_at, updated_at";
const IMAGE_SET_COLUMNS: &str = "datastore_id, id, version, state, workflow_status, is_primary, \
     created_at, updated_at, deleted_at, last_accessed_at";
const IMPORT_JOB_COLUMNS: &str = "datastore_id, id, name, status, data_access_role_arn, \
     input_s3_uri, output_s3_uri, input_owner_account_id, import_configuration, message, \
     submitted_at, ended_at, updated_at, client_token, request_fingerprint";
const VERSION_COLUMNS: &str = "datastore_id, image_set_id, version, state, workflow_status, \
     is_primary, message, forced, metadata_key, metadata_size, job_id, created_at, updated_at, \
     deleted_at";

impl SqlCatalog {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…` and applies pending
    /// migrations. Several processes may call this at once: migrations run once.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StorageError::Backend(
                "catalog URL must start with sqlite: or postgres://".into(),
            ));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| StorageError::Backend(format!("invalid catalog URL: {e}")))?;
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        pool_options = match dialect {
            Dialect::Sqlite => pool_options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=15000; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            }),
            Dialect::Postgres => pool_options.max_connections(16),
        };
        // One direct connection first, so an unreachable or misconfigured database reports its
        // real cause (refused, unknown host, bad password) instead of a pool timeout.
        {
            use sqlx::Connection;
            let probe = tokio::time::timeout(
                Duration::from_secs(15),
                sqlx::AnyConnection::connect_with(&options),
            )
            .await
            .map_err(|_| {
                StorageError::Backend("timed out connecting to the catalog database".into())
            })?
            .map_err(|e| {
                StorageError::Backend(format!("cannot connect to the catalog database: {e}"))
            })?;
            probe.close().await?;
        }
        let pool = pool_options.connect_with(options).await?;
        let catalog = SqlCatalog { pool, dialect };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Opens (creating if needed) the embedded SQLite catalog file at `path`. Processes that
    /// open the same file at once apply migrations one after the other (SQLite has no advisory
    /// lock, so an exclusive lock on `PATH.lock` serialises them).
    pub async fn open_sqlite_file(path: &std::path::Path) -> Result<Self, StorageError> {
        let lock_path = path.with_extension("lock");
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(|e| StorageError::Backend(format!("catalog lock task failed: {e}")))?
        .map_err(|e| StorageError::Backend(format!("cannot lock the catalog file: {e}")))?;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let result = Self::connect(&url).await;
        drop(lock);
        result
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        let list = match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|e| StorageError::Backend(format!("catalog migration failed: {e}")))?;
        self.backfill_study_date_time().await
    }

    /// Image sets written before migration 4 have no sortable study date-time (SQL cannot
    /// normalise DICOM TM portably): computed here, once per catalog. Idempotent, so nodes
    /// starting together may both run it.
    async fn backfill_study_date_time(&self) -> Result<(), StorageError> {
        const DONE: &str = "backfill.0004.study_date_time";
        let done = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(DONE)
            .fetch_optional(&self.pool)
            .await?;
        if done.is_some() {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT datastore_id, id, study_date, study_time FROM image_sets \
             WHERE study_date IS NOT NULL AND study_date_time = ''",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let date: String = r.try_get("study_date")?;
            let time: Option<String> = r.try_get("study_time")?;
            let Some(key) = study_date_time_key(&date, time.as_deref()) else {
                continue;
            };
            sqlx::query(
                "UPDATE image_sets SET study_date_time = $1 WHERE datastore_id = $2 AND id = $3 \
                 AND study_date_time = ''",
            )
            .bind(key)
            .bind(r.try_get::<String, _>("datastore_id")?)
            .bind(r.try_get::<String, _>("id")?)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, 'done') ON CONFLICT (name) DO NOTHING",
        )
        .bind(DONE)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Begins a transaction that will write. SQLite takes its write lock up front so that two
    /// writers never deadlock upgrading read locks; PostgreSQL relies on row locks.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StorageError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// `FOR UPDATE` where the dialect has it (SQLite's write lock already covers the database).
    fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    fn sql(text: String) -> AssertSqlSafe<String> {
        AssertSqlSafe(text)
    }
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(what.to_owned())
}

fn datastore_from_row(row: &AnyRow) -> Result<Datastore, StorageError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let format: String = row.try_get("lossless_storage_format")?;
    Ok(Datastore {
        id: DatastoreId::parse(&id).map_err(|_| corrupt("datastores.id"))?,
        name: row.try_get("name")?,
        status: DatastoreStatus::parse(&status).ok_or_else(|| corrupt("datastores.status"))?,
        kms_key_arn: row.try_get("kms_key_arn")?,
        lambda_authorizer_arn: row.try_get("lambda_authorizer_arn")?,
        lossless_storage_format: LosslessStorageFormat::parse(&format)
            .ok_or_else(|| corrupt("datastores.lossless_storage_format"))?,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
        client_token: row.try_get("client_token")?,
        request_fingerprint: row.try_get("request_fingerprint")?,
    })
}

fn image_set_from_row(row: &AnyRow) -> Result<ImageSet, StorageError> {
    let ds: String = row.try_get("datastore_id")?;
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let workflow: String = row.try_get("workflow_status")?;
    let deleted_at: Option<i64> = row.try_get("deleted_at")?;
    Ok(ImageSet {
        datastore_id: DatastoreId::parse(&ds).map_err(|_| corrupt("image_sets.datastore_id"))?,
        id: ImageSetId::parse(&id).map_err(|_| corrupt("image_sets.id"))?,
        version: row.try_get("version")?,
        state: ImageSetState::parse(&state).ok_or_else(|| corrupt("image_sets.state"))?,
        workflow_status: ImageSetWorkflowStatus::parse(&workflow)
            .ok_or_else(|| corrupt("image_sets.workflow_status"))?,
        is_primary: row.try_get::<i64, _>("is_primary")? != 0,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
        deleted_at: deleted_at.map(Millis),
        last_accessed_at: Millis(row.try_get("last_accessed_at")?),
    })
}

fn job_from_row(row: &AnyRow) -> Result<Job, StorageError> {
    let state: String = row.try_get("state")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("jobs.state"))?,
        attempts: row.try_get("attempts")?,
        not_before: Millis(row.try_get("not_before")?),
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row
            .try_get::<Option<i64>, _>("lease_expires_at")?
            .map(Millis),
        result: row.try_get("result")?,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
    })
}

/// Inserts a job inside an open transaction; `false` if the id exists.
async fn insert_job(
    conn: &mut sqlx::AnyConnection,
    job: &NewJob,
    now: Millis,
) -> Result<bool, StorageError> {
    let done = sqlx::query(
        "INSERT INTO jobs (id, kind, payload, state, attempts, not_before, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(job.id.as_str())
    .bind(job.kind.as_str())
    .bind(job.payload.as_str())
    .bind(JobState::Queued.as_str())
    .bind(job.not_before.0)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn lease_end(lease: &Lease<'_>) -> i64 {
    lease.now.plus(lease.duration).0
}

/// Cursor of the data store listing: the creation sequence number of the last item returned.
fn decode_datastore_cursor(c: &Cursor) -> Result<i64, StorageError> {
    c.0.strip_prefix("ds:")
        .and_then(|n| n.parse().ok())
        .ok_or(StorageError::InvalidCursor)
}

fn import_job_from_row(row: &AnyRow) -> Result<ImportJob, StorageError> {
    let ds: String = row.try_get("datastore_id")?;
    let status: String = row.try_get("status")?;
    Ok(ImportJob {
        datastore_id: DatastoreId::parse(&ds).map_err(|_| corrupt("import_jobs.datastore_id"))?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        status: ImportJobStatus::parse(&status).ok_or_else(|| corrupt("import_jobs.status"))?,
        data_access_role_arn: row.try_get("data_access_role_arn")?,
        input_s3_uri: row.try_get("input_s3_uri")?,
        output_s3_uri: row.try_get("output_s3_uri")?,
        input_owner_account_id: row.try_get("input_owner_account_id")?,
        import_configuration: row.try_get("import_configuration")?,
        message: row.try_get("message")?,
        submitted_at: Millis(row.try_get("submitted_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Millis),
        updated_at: Millis(row.try_get("updated_at")?),
        client_token: row.try_get("client_token")?,
        request_fingerprint: row.try_get("request_fingerprint")?,
    })
}

fn version_from_row(row: &AnyRow) -> Result<(DatastoreId, ImageSetVersion), StorageError> {
    let ds: String = row.try_get("datastore_id")?;
    let id: String = row.try_get("image_set_id")?;
    let state: String = row.try_get("state")?;
    let workflow: String = row.try_get("workflow_status")?;
    Ok((
        DatastoreId::parse(&ds).map_err(|_| corrupt("image_set_versions.datastore_id"))?,
        ImageSetVersion {
            image_set_id: ImageSetId::parse(&id)
                .map_err(|_| corrupt("image_set_versions.image_set_id"))?,
            version: row.try_get("version")?,
            state: ImageSetState::parse(&state)
                .ok_or_else(|| corrupt("image_set_versions.state"))?,
            workflow_status: ImageSetWorkflowStatus::parse(&workflow)
                .ok_or_else(|| corrupt("image_set_versions.workflow_status"))?,
            is_primary: row.try_get::<i64, _>("is_primary")? != 0,
            message: row.try_get("message")?,
            forced: row.try_get::<i64, _>("forced")? != 0,
            metadata_key: row.try_get("metadata_key")?,
            metadata_size: row
                .try_get::<Option<i64>, _>("metadata_size")?
                .map(|n| n as u64),
            job_id: row.try_get("job_id")?,
            created_at: Millis(row.try_get("created_at")?),
            updated_at: Millis(row.try_get("updated_at")?),
            deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(Millis),
        },
    ))
}

fn frame_from_row(row: &AnyRow) -> Result<FrameRecord, StorageError> {
    Ok(FrameRecord {
        frame_id: row.try_get("frame_id")?,
        blob_key: row.try_get("blob_key")?,
        size: row.try_get::<i64, _>("size")? as u64,
        transfer_syntax: row.try_get("transfer_syntax")?,
    })
}

/// Cursor of the import job listing: submission time and id of the last item returned.
fn decode_import_job_cursor(c: &Cursor) -> Result<(i64, String), StorageError> {
    let rest = c.0.strip_prefix("ij:").ok_or(StorageError::InvalidCursor)?;
    let (at, id) = rest.split_once(':').ok_or(StorageError::InvalidCursor)?;
    let at = at.parse().map_err(|_| StorageError::InvalidCursor)?;
    Ok((at, id.to_owned()))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// The found-by columns of `image_sets` that search summaries return.
const TAG_COLUMNS: &str = "patient_id, patient_name, patient_birth_date, patient_sex, \
     accession_number, study_id, study_instance_uid, study_date, study_time, study_description, \
     series_instance_uid, series_modality, series_body_part, series_number, instance_count, \
     study_date_time";

fn tags_from_row(row: &AnyRow) -> Result<ImageSetDicomTags, StorageError> {
    Ok(ImageSetDicomTags {
        patient_id: row.try_get("patient_id")?,
        patient_name: row.try_get("patient_name")?,
        patient_birth_date: row.try_get("patient_birth_date")?,
        patient_sex: row.try_get("patient_sex")?,
        accession_number: row.try_get("accession_number")?,
        study_id: row.try_get("study_id")?,
        study_instance_uid: row.try_get("study_instance_uid")?,
        study_date: row.try_get("study_date")?,
        study_time: row.try_get("study_time")?,
        study_description: row.try_get("study_description")?,
        series_instance_uid: row.try_get("series_instance_uid")?,
        series_modality: row.try_get("series_modality")?,
        series_body_part: row.try_get("series_body_part")?,
        series_number: row.try_get("series_number")?,
    })
}

/// The QIDO-RS-only attribute columns of `image_sets` (migration 7).
const QIDO_COLUMNS: &str = "referring_physician_name, series_description, series_date, series_time";

fn attributes_from_row(row: &AnyRow) -> Result<QidoAttributes, StorageError> {
    Ok(QidoAttributes {
        referring_physician_name: row.try_get("referring_physician_name")?,
        series_description: row.try_get("series_description")?,
        series_date: row.try_get("series_date")?,
        series_time: row.try_get("series_time")?,
    })
}

/// The columns of `dicom_instances` an instance is written with, in `write_qido`'s order.
const INSTANCE_COLUMNS: &str = "datastore_id, image_set_id, sop_instance_uid, \
     study_instance_uid, series_instance_uid, sop_class_uid, instance_number, rows_count, \
     columns_count, bits_allocated, number_of_frames";

/// Instances written per INSERT statement (11 parameters each).
const INSTANCE_BATCH: usize = 64;

/// A value bound to a dynamically built statement.
enum Param {
    Text(String),
    Int(i64),
}

/// Appends `value` to `params` and returns its placeholder.
fn param(params: &mut Vec<Param>, value: Param) -> String {
    params.push(value);
    format!("${}", params.len())
}

fn text_column(field: ImageSetTextField) -> &'static str {
    match field {
        ImageSetTextField::PatientId => "patient_id",
        ImageSetTextField::AccessionNumber => "accession_number",
        ImageSetTextField::StudyId => "study_id",
        ImageSetTextField::StudyInstanceUid => "study_instance_uid",
        ImageSetTextField::SeriesInstanceUid => "series_instance_uid",
    }
}

/// The index (migration 4) serving an exact-match filter.
fn text_index(field: ImageSetTextField) -> &'static str {
    match field {
        ImageSetTextField::PatientId => "image_sets_by_patient",
        ImageSetTextField::AccessionNumber => "image_sets_by_accession",
        ImageSetTextField::StudyId => "image_sets_by_study_id",
        ImageSetTextField::StudyInstanceUid => "image_sets_by_study",
        ImageSetTextField::SeriesInstanceUid => "image_sets_by_series",
    }
}

/// The sort column of a search.
fn sort_column(field: ImageSetSortField) -> &'static str {
    match field {
        ImageSetSortField::UpdatedAt => "updated_at",
        ImageSetSortField::CreatedAt => "created_at",
        ImageSetSortField::StudyDateTime => "study_date_time",
    }
}

/// Cursor of a search: the sort value and image set id of the last item returned.
fn decode_search_cursor(
    c: &Cursor,
    field: ImageSetSortField,
) -> Result<(Param, String), StorageError> {
    let rest = c.0.strip_prefix("is:").ok_or(StorageError::InvalidCursor)?;
    let (value, id) = rest.rsplit_once(':').ok_or(StorageError::InvalidCursor)?;
    let value = match field {
        ImageSetSortField::StudyDateTime => Param::Text(value.to_owned()),
        _ => Param::Int(value.parse().map_err(|_| StorageError::InvalidCursor)?),
    };
    Ok((value, id.to_owned()))
}

/// Inserts the latest-version record of a new image set inside an open transaction.
async fn insert_image_set_row(
    tx: &mut sqlx::AnyConnection,
    s: &ImageSet,
) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO image_sets ({IMAGE_SET_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )))
    .bind(s.datastore_id.as_str())
    .bind(s.id.as_str())
    .bind(s.version)
    .bind(s.state.as_str())
    .bind(s.workflow_status.as_str())
    .bind(i64::from(s.is_primary))
    .bind(s.created_at.0)
    .bind(s.updated_at.0)
    .bind(s.deleted_at.map(|m| m.0))
    .bind(s.last_accessed_at.0)
    .execute(&mut *tx)
    .await
}

/// A pending blob is now referred to by a record (or forgotten): it is no longer deleted by
/// the cleanup of its owner.
async fn take_over_blob(tx: &mut sqlx::AnyConnection, key: &str) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM pending_blobs WHERE blob_key = $1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Inserts frame rows live from `version` and forgets their pending blobs.
async fn insert_frames(
    tx: &mut sqlx::AnyConnection,
    ds: &DatastoreId,
    id: &ImageSetId,
    version: i64,
    frames: &[FrameRecord],
) -> Result<(), StorageError> {
    for f in frames {
        sqlx::query(
            "INSERT INTO image_frames (datastore_id, image_set_id, frame_id, from_version, \
             until_version, blob_key, size, transfer_syntax) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7)",
        )
        .bind(ds.as_str())
        .bind(id.as_str())
        .bind(f.frame_id.as_str())
        .bind(version)
        .bind(f.blob_key.as_str())
        .bind(f.size as i64)
        .bind(f.transfer_syntax.as_str())
        .execute(&mut *tx)
        .await?;
        take_over_blob(tx, &f.blob_key).await?;
    }
    Ok(())
}

/// Writes the found-by / grouped-by columns of an image set's latest version and takes its
/// document out of the pending blobs.
async fn write_content(
    tx: &mut sqlx::AnyConnection,
    ds: &DatastoreId,
    id: &ImageSetId,
    c: &ImageSetContent,
) -> Result<(), StorageError> {
    write_found_by(tx, ds, id, &c.tags, &c.grouping, c.instance_count).await?;
    let study = c.tags.study_instance_uid.as_deref().unwrap_or("");
    write_qido(tx, ds, id, study, &c.qido).await?;
    take_over_blob(tx, &c.metadata_key).await
}

/// Writes what QIDO-RS finds an image set by beyond its tags (its study's UID is `study`):
/// the attribute columns, and its instance rows, replaced; marks the image set indexed.
async fn write_qido(
    tx: &mut sqlx::AnyConnection,
    ds: &DatastoreId,
    id: &ImageSetId,
    study: &str,
    q: &QidoIndex,
) -> Result<(), StorageError> {
    let a = &q.attributes;
    sqlx::query(
        "UPDATE image_sets SET referring_physician_name = $1, series_description = $2, \
         series_date = $3, series_time = $4, qido_indexed = 1 WHERE datastore_id = $5 AND id = $6",
    )
    .bind(a.referring_physician_name.clone())
    .bind(a.series_description.clone())
    .bind(a.series_date.clone())
    .bind(a.series_time.clone())
    .bind(ds.as_str())
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?;
    delete_instances(tx, ds, id).await?;
    for batch in q.instances.chunks(INSTANCE_BATCH) {
        let rows: Vec<String> = (0..batch.len())
            .map(|r| {
                let p: Vec<String> = (1..=11).map(|c| format!("${}", r * 11 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO dicom_instances ({INSTANCE_COLUMNS}) VALUES {} \
             ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for i in batch {
            query = query
                .bind(ds.as_str())
                .bind(id.as_str())
                .bind(i.sop_instance_uid.as_str())
                .bind(study)
                .bind(i.series_instance_uid.as_str())
                .bind(i.sop_class_uid.clone())
                .bind(i.instance_number)
                .bind(i.rows)
                .bind(i.columns)
                .bind(i.bits_allocated)
                .bind(i.number_of_frames);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

async fn delete_instances(
    tx: &mut sqlx::AnyConnection,
    ds: &DatastoreId,
    id: &ImageSetId,
) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM dicom_instances WHERE datastore_id = $1 AND image_set_id = $2")
        .bind(ds.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Writes what an image set is found and grouped by.
async fn write_found_by(
    tx: &mut sqlx::AnyConnection,
    ds: &DatastoreId,
    id: &ImageSetId,
    t: &ImageSetDicomTags,
    grouping: &str,
    instance_count: i64,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE image_sets SET grouping = $1, patient_id = $2, patient_name = $3, \
         patient_birth_date = $4, patient_sex = $5, accession_number = $6, study_id = $7, \
         study_instance_uid = $8, study_date = $9, study_time = $10, study_description = $11, \
         series_instance_uid = $12, series_modality = $13, series_body_part = $14, \
         series_number = $15, instance_count = $16, study_date_time = $17 \
         WHERE datastore_id = $18 AND id = $19",
    )
    .bind(grouping)
    .bind(t.patient_id.clone())
    .bind(t.patient_name.clone())
    .bind(t.patient_birth_date.clone())
    .bind(t.patient_sex.clone())
    .bind(t.accession_number.clone())
    .bind(t.study_id.clone())
    .bind(t.study_instance_uid.clone())
    .bind(t.study_date.clone())
    .bind(t.study_time.clone())
    .bind(t.study_description.clone())
    .bind(t.series_instance_uid.clone())
    .bind(t.series_modality.clone())
    .bind(t.series_body_part.clone())
    .bind(t.series_number)
    .bind(instance_count)
    .bind(
        t.study_date
            .as_deref()
            .and_then(|d| study_date_time_key(d, t.study_time.as_deref()))
            .unwrap_or_default(),
    )
    .bind(ds.as_str())
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl SqlCatalog {
    /// Reads a data store inside an open write transaction, locking its row where the dialect
    /// has row locks (SQLite's write transaction already excludes other writers).
    async fn lock_datastore(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &DatastoreId,
    ) -> Result<Option<Datastore>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {DATASTORE_COLUMNS} FROM datastores WHERE id = $1{}",
            self.for_update()
        )))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        row.as_ref().map(datastore_from_row).transpose()
    }

    /// Reads a data store inside an open write transaction with a shared lock where the
    /// dialect has row locks: it cannot be deleted meanwhile, yet other changes of its image sets
    /// go on. (An exclusive lock here deadlocks with a transaction that holds an image set row and
    /// whose foreign-key check of `image_sets.datastore_id` needs a key-share lock on this row.)
    async fn share_datastore(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &DatastoreId,
    ) -> Result<Option<Datastore>, StorageError> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        };
        let row = sqlx::query(Self::sql(format!(
            "SELECT {DATASTORE_COLUMNS} FROM datastores WHERE id = $1{lock}"
        )))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        row.as_ref().map(datastore_from_row).transpose()
    }

    /// Whether a resource exists and is live (its data store and, for image sets, the image set
    /// itself are not DELETED), inside an open transaction.
    async fn resource_is_live(
        &self,
        tx: &mut sqlx::AnyConnection,
        resource: &ResourceRef,
    ) -> Result<bool, StorageError> {
        let row = sqlx::query("SELECT status FROM datastores WHERE id = $1")
            .bind(resource.datastore_id().as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let status: String = row.try_get("status")?;
        if status == DatastoreStatus::Deleted.as_str() {
            return Ok(false);
        }
        if let ResourceRef::ImageSet(ds, is) = resource {
            let row =
                sqlx::query("SELECT state FROM image_sets WHERE datastore_id = $1 AND id = $2")
                    .bind(ds.as_str())
                    .bind(is.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(row) = row else { return Ok(false) };
            let state: String = row.try_get("state")?;
            return Ok(state != ImageSetState::Deleted.as_str());
        }
        Ok(true)
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    async fn setting_or_init(&self, name: &str, init: &str) -> Result<String, StorageError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(init)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    async fn create_datastore(
        &self,
        new: NewDatastore,
    ) -> Result<CreateDatastoreOutcome, StorageError> {
        let d = new.datastore;
        let mut tx = self.begin_write().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_DATASTORE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let existing = sqlx::query(Self::sql(format!(
            "SELECT {DATASTORE_COLUMNS} FROM datastores WHERE client_token = $1"
        )))
        .bind(d.client_token.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let found = datastore_from_row(&row)?;
            tx.rollback().await?;
            return Ok(CreateDatastoreOutcome::ExistingToken(found));
        }
        let live: i64 = sqlx::query("SELECT COUNT(*) AS n FROM datastores WHERE status <> $1")
            .bind(DatastoreStatus::Deleted.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if live >= i64::from(new.quota) {
            tx.rollback().await?;
            return Ok(CreateDatastoreOutcome::QuotaExceeded);
        }
        sqlx::query(Self::sql(format!(
            "INSERT INTO datastores ({DATASTORE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(d.id.as_str())
        .bind(d.name.as_str())
        .bind(d.status.as_str())
        .bind(d.kms_key_arn.clone())
        .bind(d.lambda_authorizer_arn.clone())
        .bind(d.lossless_storage_format.as_str())
        .bind(d.created_at.0)
        .bind(d.updated_at.0)
        .bind(d.client_token.as_str())
        .bind(d.request_fingerprint.as_str())
        .execute(&mut *tx)
        .await?;
        let resource = ResourceRef::Datastore(d.id.clone()).path();
        for (k, v) in &new.tags {
            sqlx::query("INSERT INTO tags (resource, tag_key, tag_value) VALUES ($1, $2, $3)")
                .bind(resource.as_str())
                .bind(k.as_str())
                .bind(v.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(job) = &new.job {
            insert_job(&mut tx, job, d.created_at).await?;
        }
        tx.commit().await?;
        Ok(CreateDatastoreOutcome::Created(d))
    }

    async fn get_datastore(&self, id: &DatastoreId) -> Result<Option<Datastore>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {DATASTORE_COLUMNS} FROM datastores WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(datastore_from_row).transpose()
    }

    async fn list_datastores(
        &self,
        status: Option<DatastoreStatus>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Datastore>, StorageError> {
        let after = after.map(decode_datastore_cursor).transpose()?;
        let mut sql = format!("SELECT seq, {DATASTORE_COLUMNS} FROM datastores WHERE 1 = 1");
        let mut n = 0;
        if status.is_some() {
            n += 1;
            sql.push_str(&format!(" AND status = ${n}"));
        }
        if after.is_some() {
            n += 1;
            sql.push_str(&format!(" AND seq < ${n}"));
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", n + 1));
        let mut q = sqlx::query(Self::sql(sql));
        if let Some(s) = status {
            q = q.bind(s.as_str());
        }
        if let Some(seq) = after {
            q = q.bind(seq);
        }
        let rows = q.bind(i64::from(limit) + 1).fetch_all(&self.pool).await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last_seq = 0i64;
        for row in rows.iter().take(limit as usize) {
            items.push(datastore_from_row(row)?);
            last_seq = row.try_get("seq")?;
        }
        let next = (rows.len() > limit as usize).then(|| Cursor(format!("ds:{last_seq}")));
        Ok(Page { items, next })
    }

    async fn transition_datastore(
        &self,
        id: &DatastoreId,
        from: &[DatastoreStatus],
        to: DatastoreStatus,
        now: Millis,
    ) -> Result<Option<Datastore>, StorageError> {
        let mut tx = self.begin_write().await?;
        let Some(mut d) = self.lock_datastore(&mut tx, id).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        if !from.contains(&d.status) {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE datastores SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
        )
        .bind(to.as_str())
        .bind(now.0)
        .bind(id.as_str())
        .bind(d.status.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        d.status = to;
        d.updated_at = now;
        Ok(Some(d))
    }

    async fn begin_delete_datastore(
        &self,
        id: &DatastoreId,
        now: Millis,
        job: NewJob,
    ) -> Result<DeleteDatastoreOutcome, StorageError> {
        let mut tx = self.begin_write().await?;
        let Some(mut d) = self.lock_datastore(&mut tx, id).await? else {
            tx.rollback().await?;
            return Ok(DeleteDatastoreOutcome::NotFound);
        };
        match d.status {
            DatastoreStatus::Deleting | DatastoreStatus::Deleted => {
                tx.rollback().await?;
                return Ok(DeleteDatastoreOutcome::Deleting(d));
            }
            DatastoreStatus::Creating => {
                tx.rollback().await?;
                return Ok(DeleteDatastoreOutcome::WrongStatus(d.status));
            }
            DatastoreStatus::Active | DatastoreStatus::CreateFailed => {}
        }
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM image_sets WHERE datastore_id = $1 AND state <> $2",
        )
        .bind(id.as_str())
        .bind(ImageSetState::Deleted.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if live > 0 {
            tx.rollback().await?;
            return Ok(DeleteDatastoreOutcome::NotEmpty);
        }
        sqlx::query("UPDATE datastores SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(DatastoreStatus::Deleting.as_str())
            .bind(now.0)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_job(&mut tx, &job, now).await?;
        tx.commit().await?;
        d.status = DatastoreStatus::Deleting;
        d.updated_at = now;
        Ok(DeleteDatastoreOutcome::Deleting(d))
    }

    async fn enqueue_job(&self, job: NewJob) -> Result<bool, StorageError> {
        let mut conn = self.pool.acquire().await?;
        let now = job.not_before;
        insert_job(&mut conn, &job, now).await
    }

    async fn start_leased_job(&self, job: &NewJob, lease: &Lease<'_>) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO jobs (id, kind, payload, state, attempts, not_before, lease_owner, \
             lease_expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $8)",
        )
        .bind(job.id.as_str())
        .bind(job.kind.as_str())
        .bind(job.payload.as_str())
        .bind(JobState::Running.as_str())
        .bind(job.not_before.0)
        .bind(lease.owner)
        .bind(lease_end(lease))
        .bind(lease.now.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_job(
        &self,
        kinds: &[&str],
        lease: &Lease<'_>,
    ) -> Result<Option<Job>, StorageError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let kind_params: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 4)).collect();
        let skip_locked = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let select = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE kind IN ({}) AND \
             ((state = $1 AND not_before <= $3) OR (state = $2 AND lease_expires_at < $3)) \
             ORDER BY created_at, id LIMIT 1{skip_locked}",
            kind_params.join(", ")
        );
        loop {
            let mut tx = self.begin_write().await?;
            let mut q = sqlx::query(Self::sql(select.clone()))
                .bind(JobState::Queued.as_str())
                .bind(JobState::Running.as_str())
                .bind(lease.now.0);
            for k in kinds {
                q = q.bind(*k);
            }
            let Some(row) = q.fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(None);
            };
            let mut job = job_from_row(&row)?;
            if job.state == JobState::Running && job.attempts >= lease.max_attempts {
                let message = format!(
                    "abandoned: the lease expired after {} attempts",
                    job.attempts
                );
                sqlx::query(
                    "UPDATE jobs SET state = $1, result = $2, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $3 WHERE id = $4",
                )
                .bind(JobState::Failed.as_str())
                .bind(message.as_str())
                .bind(lease.now.0)
                .bind(job.id.as_str())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::warn!(job_id = %job.id, kind = %job.kind, "job failed after repeated lease expiry");
                continue;
            }
            let expires = lease_end(lease);
            sqlx::query(
                "UPDATE jobs SET state = $1, attempts = attempts + 1, lease_owner = $2, \
                 lease_expires_at = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(JobState::Running.as_str())
            .bind(lease.owner)
            .bind(expires)
            .bind(lease.now.0)
            .bind(job.id.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            job.state = JobState::Running;
            job.attempts += 1;
            job.lease_owner = Some(lease.owner.to_owned());
            job.lease_expires_at = Some(Millis(expires));
            job.updated_at = lease.now;
            return Ok(Some(job));
        }
    }

    async fn renew_job_lease(&self, id: &str, lease: &Lease<'_>) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
             WHERE id = $3 AND state = $4 AND lease_owner = $5 AND lease_expires_at >= $2",
        )
        .bind(lease_end(lease))
        .bind(lease.now.0)
        .bind(id)
        .bind(JobState::Running.as_str())
        .bind(lease.owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        outcome: &JobOutcome,
        now: Millis,
    ) -> Result<bool, StorageError> {
        let (state, result) = match outcome {
            JobOutcome::Succeeded(r) => (JobState::Succeeded, r),
            JobOutcome::Failed(r) => (JobState::Failed, r),
        };
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, result = $2, lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = $3 WHERE id = $4 AND state = $5 AND lease_owner = $6",
        )
        .bind(state.as_str())
        .bind(result.as_str())
        .bind(now.0)
        .bind(id)
        .bind(JobState::Running.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_finished_jobs(
        &self,
        finished_before: Millis,
        limit: u32,
    ) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
             WHERE state IN ('SUCCEEDED', 'FAILED') AND updated_at < $1 LIMIT $2)",
        )
        .bind(finished_before.0)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn insert_image_set(&self, s: &ImageSet) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(Self::sql(format!(
            "SELECT status FROM datastores WHERE id = $1{}",
            self.for_update()
        )))
        .bind(s.datastore_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let status: Option<String> = row.map(|r| r.try_get("status")).transpose()?;
        if status.as_deref() != Some(DatastoreStatus::Active.as_str()) {
            tx.rollback().await?;
            return Err(StorageError::Backend(
                "image sets can only be added to an ACTIVE data store".into(),
            ));
        }
        insert_image_set_row(&mut tx, s).await?;
        self.insert_version(&mut tx, s, None, None, None, false)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
    ) -> Result<Option<ImageSet>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {IMAGE_SET_COLUMNS} FROM image_sets WHERE datastore_id = $1 AND id = $2"
        )))
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(image_set_from_row).transpose()
    }

    async fn tag_resource(
        &self,
        resource: &ResourceRef,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<TagOutcome, StorageError> {
        let mut tx = self.begin_write().await?;
        if !self.resource_is_live(&mut tx, resource).await? {
            tx.rollback().await?;
            return Ok(TagOutcome::NotFound);
        }
        let key = resource.path();
        for (k, v) in tags {
            sqlx::query(
                "INSERT INTO tags (resource, tag_key, tag_value) VALUES ($1, $2, $3) \
                 ON CONFLICT (resource, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
            )
            .bind(key.as_str())
            .bind(k.as_str())
            .bind(v.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tags WHERE resource = $1")
            .bind(key.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count as usize > max_tags {
            tx.rollback().await?;
            return Ok(TagOutcome::TooManyTags);
        }
        tx.commit().await?;
        Ok(TagOutcome::Done)
    }

    async fn untag_resource(
        &self,
        resource: &ResourceRef,
        keys: &[String],
    ) -> Result<TagOutcome, StorageError> {
        let mut tx = self.begin_write().await?;
        if !self.resource_is_live(&mut tx, resource).await? {
            tx.rollback().await?;
            return Ok(TagOutcome::NotFound);
        }
        let path = resource.path();
        for k in keys {
            sqlx::query("DELETE FROM tags WHERE resource = $1 AND tag_key = $2")
                .bind(path.as_str())
                .bind(k.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(TagOutcome::Done)
    }

    async fn list_tags(
        &self,
        resource: &ResourceRef,
    ) -> Result<Option<Vec<(String, String)>>, StorageError> {
        let mut conn = self.pool.acquire().await?;
        if !self.resource_is_live(&mut conn, resource).await? {
            return Ok(None);
        }
        let rows =
            sqlx::query("SELECT tag_key, tag_value FROM tags WHERE resource = $1 ORDER BY tag_key")
                .bind(resource.path())
                .fetch_all(&mut *conn)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tag_key")?, r.try_get("tag_value")?)))
            .collect::<Result<Vec<_>, StorageError>>()
            .map(Some)
    }

    async fn create_import_job(
        &self,
        job: &ImportJob,
        work: NewJob,
        max_running: u32,
    ) -> Result<CreateImportJobOutcome, StorageError> {
        let mut tx = self.begin_write().await?;
        let Some(d) = self.lock_datastore(&mut tx, &job.datastore_id).await? else {
            tx.rollback().await?;
            return Ok(CreateImportJobOutcome::DatastoreNotFound);
        };
        let existing = sqlx::query(Self::sql(format!(
            "SELECT {IMPORT_JOB_COLUMNS} FROM import_jobs WHERE datastore_id = $1 AND client_token = $2"
        )))
        .bind(job.datastore_id.as_str())
        .bind(job.client_token.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let found = import_job_from_row(&row)?;
            tx.rollback().await?;
            return Ok(CreateImportJobOutcome::ExistingToken(found));
        }
        if d.status != DatastoreStatus::Active {
            tx.rollback().await?;
            return Ok(CreateImportJobOutcome::DatastoreNotActive(d.status));
        }
        let running: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM import_jobs WHERE datastore_id = $1 AND status IN ($2, $3)",
        )
        .bind(job.datastore_id.as_str())
        .bind(ImportJobStatus::Submitted.as_str())
        .bind(ImportJobStatus::InProgress.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if running >= i64::from(max_running) {
            tx.rollback().await?;
            return Ok(CreateImportJobOutcome::TooManyJobs(max_running));
        }
        sqlx::query(Self::sql(format!(
            "INSERT INTO import_jobs ({IMPORT_JOB_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(job.datastore_id.as_str())
        .bind(job.id.as_str())
        .bind(job.name.clone())
        .bind(job.status.as_str())
        .bind(job.data_access_role_arn.as_str())
        .bind(job.input_s3_uri.as_str())
        .bind(job.output_s3_uri.as_str())
        .bind(job.input_owner_account_id.clone())
        .bind(job.import_configuration.clone())
        .bind(job.message.clone())
        .bind(job.submitted_at.0)
        .bind(job.ended_at.map(|m| m.0))
        .bind(job.updated_at.0)
        .bind(job.client_token.as_str())
        .bind(job.request_fingerprint.as_str())
        .execute(&mut *tx)
        .await?;
        insert_job(&mut tx, &work, job.submitted_at).await?;
        tx.commit().await?;
        Ok(CreateImportJobOutcome::Created(job.clone()))
    }

    async fn get_import_job(
        &self,
        datastore_id: &DatastoreId,
        id: &str,
    ) -> Result<Option<ImportJob>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {IMPORT_JOB_COLUMNS} FROM import_jobs WHERE datastore_id = $1 AND id = $2"
        )))
        .bind(datastore_id.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(import_job_from_row).transpose()
    }

    async fn list_import_jobs(
        &self,
        datastore_id: &DatastoreId,
        status: Option<ImportJobStatus>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<ImportJob>, StorageError> {
        let after = after.map(decode_import_job_cursor).transpose()?;
        let mut sql =
            format!("SELECT {IMPORT_JOB_COLUMNS} FROM import_jobs WHERE datastore_id = $1");
        let mut n = 1;
        if status.is_some() {
            n += 1;
            sql.push_str(&format!(" AND status = ${n}"));
        }
        if after.is_some() {
            sql.push_str(&format!(
                " AND (submitted_at < ${} OR (submitted_at = ${} AND id < ${}))",
                n + 1,
                n + 1,
                n + 2
            ));
            n += 2;
        }
        sql.push_str(&format!(
            " ORDER BY submitted_at DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut q = sqlx::query(Self::sql(sql)).bind(datastore_id.as_str());
        if let Some(s) = status {
            q = q.bind(s.as_str());
        }
        if let Some((at, id)) = &after {
            q = q.bind(*at).bind(id.as_str());
        }
        let rows = q.bind(i64::from(limit) + 1).fetch_all(&self.pool).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit as usize) {
            items.push(import_job_from_row(row)?);
        }
        let next = (rows.len() > limit as usize)
            .then(|| items.last())
            .flatten()
            .map(|j| Cursor(format!("ij:{}:{}", j.submitted_at.0, j.id)));
        Ok(Page { items, next })
    }

    async fn transition_import_job(
        &self,
        datastore_id: &DatastoreId,
        id: &str,
        from: &[ImportJobStatus],
        to: ImportJobStatus,
        message: Option<&str>,
        now: Millis,
    ) -> Result<Option<ImportJob>, StorageError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(Self::sql(format!(
            "SELECT {IMPORT_JOB_COLUMNS} FROM import_jobs WHERE datastore_id = $1 AND id = $2{}",
            self.for_update()
        )))
        .bind(datastore_id.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut job) = row.as_ref().map(import_job_from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(None);
        };
        if !from.contains(&job.status) {
            tx.rollback().await?;
            return Ok(None);
        }
        let ended = to.is_final().then_some(now.0);
        sqlx::query(
            "UPDATE import_jobs SET status = $1, message = $2, ended_at = $3, updated_at = $4 \
             WHERE datastore_id = $5 AND id = $6",
        )
        .bind(to.as_str())
        .bind(message)
        .bind(ended)
        .bind(now.0)
        .bind(datastore_id.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        job.status = to;
        job.message = message.map(str::to_owned);
        job.ended_at = ended.map(Millis);
        job.updated_at = now;
        Ok(Some(job))
    }

    async fn register_pending_blobs(
        &self,
        owner: &str,
        keys: &[String],
        now: Millis,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO pending_blobs (blob_key, owner, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (blob_key) DO NOTHING",
            )
            .bind(k.as_str())
            .bind(owner)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn pending_blobs(&self, owner: &str) -> Result<Vec<String>, StorageError> {
        let rows =
            sqlx::query("SELECT blob_key FROM pending_blobs WHERE owner = $1 ORDER BY blob_key")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get("blob_key")?)).collect()
    }

    async fn forget_pending_blobs(&self, keys: &[String]) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for k in keys {
            take_over_blob(&mut tx, k).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_image_set(
        &self,
        new: &NewImageSet,
    ) -> Result<CreateImageSetOutcome, StorageError> {
        let s = &new.image_set;
        let c = &new.content;
        let mut tx = self.begin_write().await?;
        let d = self.lock_datastore(&mut tx, &s.datastore_id).await?;
        if d.map(|d| d.status) != Some(DatastoreStatus::Active) {
            tx.rollback().await?;
            return Ok(CreateImageSetOutcome::DatastoreNotActive);
        }
        if s.is_primary {
            let (study, series) = (
                c.tags.study_instance_uid.as_deref().unwrap_or(""),
                c.tags.series_instance_uid.as_deref().unwrap_or(""),
            );
            if let Some(p) = self
                .primary_of(&mut tx, &s.datastore_id, study, series)
                .await?
            {
                tx.rollback().await?;
                return Ok(CreateImageSetOutcome::PrimaryExists {
                    image_set: p.image_set,
                    grouping: p.grouping,
                });
            }
        }
        let inserted = insert_image_set_row(&mut tx, s).await;
        if let Err(e) = &inserted
            && is_unique_violation(e)
            && s.is_primary
        {
            // Another writer created the series' primary image set between our check and
            // this insert (PostgreSQL): report it like the check would have.
            tx.rollback().await?;
            let p = self
                .find_primary_image_set(
                    &s.datastore_id,
                    c.tags.study_instance_uid.as_deref().unwrap_or(""),
                    c.tags.series_instance_uid.as_deref().unwrap_or(""),
                )
                .await?
                .ok_or_else(|| StorageError::Backend("primary image set vanished".into()))?;
            return Ok(CreateImageSetOutcome::PrimaryExists {
                image_set: p.image_set,
                grouping: p.grouping,
            });
        }
        inserted?;
        write_content(&mut tx, &s.datastore_id, &s.id, c).await?;
        self.insert_version(&mut tx, s, None, Some(&new.job_id), Some(c), false)
            .await?;
        insert_frames(&mut tx, &s.datastore_id, &s.id, s.version, &new.frames).await?;
        tx.commit().await?;
        Ok(CreateImageSetOutcome::Created)
    }

    async fn find_primary_image_set(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: &str,
        series_instance_uid: &str,
    ) -> Result<Option<PrimaryImageSet>, StorageError> {
        let mut conn = self.pool.acquire().await?;
        self.primary_of(
            &mut conn,
            datastore_id,
            study_instance_uid,
            series_instance_uid,
        )
        .await
    }

    async fn begin_image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        expected_latest: i64,
        status: ImageSetWorkflowStatus,
        job_id: &str,
        now: Millis,
    ) -> Result<BeginVersionOutcome, StorageError> {
        let lock = ChangeLock {
            id: id.clone(),
            expected_latest,
            status,
            new_version: true,
            forced: false,
        };
        let mut tx = self.begin_write().await?;
        match self
            .lock_for_change(&mut tx, datastore_id, &lock, job_id, now)
            .await?
        {
            Ok(next) => {
                tx.commit().await?;
                Ok(BeginVersionOutcome::Begun(next.version))
            }
            Err(outcome) => {
                tx.rollback().await?;
                Ok(match outcome {
                    BeginChangeOutcome::Conflict(s) => BeginVersionOutcome::Conflict(s),
                    _ => BeginVersionOutcome::NotFound,
                })
            }
        }
    }

    async fn complete_image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
        completion: &VersionCompletion,
        now: Millis,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        if !self
            .complete_version_in(&mut tx, datastore_id, id, version, completion, now)
            .await?
        {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn begin_image_set_change(
        &self,
        change: &ImageSetChange,
    ) -> Result<BeginChangeOutcome, StorageError> {
        let ds = &change.datastore_id;
        let mut tx = self.begin_write().await?;
        let d = self.share_datastore(&mut tx, ds).await?;
        if d.map(|d| d.status) != Some(DatastoreStatus::Active) {
            tx.rollback().await?;
            return Ok(BeginChangeOutcome::DatastoreNotActive);
        }
        self.lock_in_order(&mut tx, ds, change.locks.iter().map(|l| &l.id))
            .await?;
        let mut out = Vec::with_capacity(change.locks.len() + 1);
        for lock in &change.locks {
            match self
                .lock_for_change(&mut tx, ds, lock, &change.job.id, change.now)
                .await?
            {
                Ok(s) => out.push(s),
                Err(outcome) => {
                    tx.rollback().await?;
                    return Ok(outcome);
                }
            }
        }
        if let Some(c) = &change.create {
            let s = &c.image_set;
            let (study, series) = (
                c.tags.study_instance_uid.as_deref().unwrap_or(""),
                c.tags.series_instance_uid.as_deref().unwrap_or(""),
            );
            if s.is_primary && self.primary_of(&mut tx, ds, study, series).await?.is_some() {
                tx.rollback().await?;
                return Ok(BeginChangeOutcome::PrimaryExists);
            }
            let inserted = insert_image_set_row(&mut tx, s).await;
            if let Err(e) = &inserted
                && is_unique_violation(e)
                && s.is_primary
            {
                tx.rollback().await?;
                return Ok(BeginChangeOutcome::PrimaryExists);
            }
            inserted?;
            write_found_by(&mut tx, ds, &s.id, &c.tags, &c.grouping, c.instance_count).await?;
            self.insert_version(&mut tx, s, None, Some(&change.job.id), None, false)
                .await?;
            out.push(s.clone());
        }
        insert_job(&mut tx, &change.job, change.now).await?;
        tx.commit().await?;
        Ok(BeginChangeOutcome::Begun(out))
    }

    async fn finish_image_set_change(
        &self,
        datastore_id: &DatastoreId,
        end: &ChangeEnd,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let ids = end.versions.iter().map(|(id, _, _)| id);
        self.lock_in_order(
            &mut tx,
            datastore_id,
            ids.chain(end.unlock.iter().map(|(id, _, _)| id)),
        )
        .await?;
        for (id, version, completion) in &end.versions {
            if !self
                .complete_version_in(&mut tx, datastore_id, id, *version, completion, end.now)
                .await?
            {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for (id, locked, restored) in &end.unlock {
            let Some(current) = self.lock_image_set(&mut tx, datastore_id, id).await? else {
                continue;
            };
            if current.state != ImageSetState::Locked || current.workflow_status != *locked {
                continue;
            }
            let next = ImageSet {
                state: ImageSetState::Active,
                workflow_status: *restored,
                ..current
            };
            self.set_latest_state(&mut tx, &next).await?;
            sqlx::query(
                "UPDATE image_sets SET last_accessed_at = $1 WHERE datastore_id = $2 AND id = $3",
            )
            .bind(end.now.0)
            .bind(datastore_id.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_delete_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        owner: &str,
        now: Millis,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let current = self.lock_image_set(&mut tx, datastore_id, id).await?;
        let Some(current) = current.filter(|c| {
            c.state == ImageSetState::Locked
                && c.workflow_status == ImageSetWorkflowStatus::Deleting
        }) else {
            tx.rollback().await?;
            return Ok(false);
        };
        let next = ImageSet {
            state: ImageSetState::Deleted,
            workflow_status: ImageSetWorkflowStatus::Deleted,
            updated_at: now,
            deleted_at: Some(now),
            ..current
        };
        self.set_latest_state(&mut tx, &next).await?;
        // Blobs only this image set refers to become pending: the caller deletes them.
        sqlx::query(
            "INSERT INTO pending_blobs (blob_key, owner, created_at) \
             SELECT DISTINCT f.blob_key, $3, $4 FROM image_frames f \
             WHERE f.datastore_id = $1 AND f.image_set_id = $2 AND NOT EXISTS ( \
               SELECT 1 FROM image_frames o WHERE o.blob_key = f.blob_key \
               AND NOT (o.datastore_id = $1 AND o.image_set_id = $2)) \
             ON CONFLICT (blob_key) DO NOTHING",
        )
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(owner)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO pending_blobs (blob_key, owner, created_at) \
             SELECT DISTINCT v.metadata_key, $3, $4 FROM image_set_versions v \
             WHERE v.datastore_id = $1 AND v.image_set_id = $2 AND v.metadata_key IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM image_set_versions o \
               WHERE o.metadata_key = v.metadata_key \
               AND NOT (o.datastore_id = $1 AND o.image_set_id = $2)) \
             ON CONFLICT (blob_key) DO NOTHING",
        )
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(owner)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM image_frames WHERE datastore_id = $1 AND image_set_id = $2")
            .bind(datastore_id.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        delete_instances(&mut tx, datastore_id, id).await?;
        sqlx::query(
            "UPDATE image_set_versions SET metadata_key = NULL, metadata_size = NULL \
             WHERE datastore_id = $1 AND image_set_id = $2",
        )
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let resource = ResourceRef::ImageSet(datastore_id.clone(), id.clone()).path();
        sqlx::query("DELETE FROM tags WHERE resource = $1")
            .bind(resource.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn primary_image_sets_of_study(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: &str,
    ) -> Result<Vec<ImageSet>, StorageError> {
        let rows = sqlx::query(Self::sql(format!(
            "SELECT {IMAGE_SET_COLUMNS} FROM image_sets WHERE datastore_id = $1 \
             AND study_instance_uid = $2 AND is_primary = 1 AND state <> $3 ORDER BY id"
        )))
        .bind(datastore_id.as_str())
        .bind(study_instance_uid)
        .bind(ImageSetState::Deleted.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(image_set_from_row).collect()
    }

    async fn image_set_versions_by_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<(DatastoreId, ImageSetVersion)>, StorageError> {
        let rows = sqlx::query(Self::sql(format!(
            "SELECT {VERSION_COLUMNS} FROM image_set_versions WHERE job_id = $1 \
             ORDER BY created_at, image_set_id, version"
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn get_image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
    ) -> Result<Option<ImageSetVersion>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {VERSION_COLUMNS} FROM image_set_versions \
             WHERE datastore_id = $1 AND image_set_id = $2 AND version = $3"
        )))
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .as_ref()
            .map(version_from_row)
            .transpose()?
            .map(|(_, v)| v))
    }

    async fn list_image_frames(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
    ) -> Result<Vec<FrameRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT frame_id, blob_key, size, transfer_syntax FROM image_frames \
             WHERE datastore_id = $1 AND image_set_id = $2 AND from_version <= $3 \
             AND (until_version IS NULL OR until_version > $3) ORDER BY frame_id",
        )
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(frame_from_row).collect()
    }

    async fn search_image_sets(
        &self,
        datastore_id: &DatastoreId,
        search: &ImageSetSearch,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<ImageSetSummary>, StorageError> {
        let mut params = vec![Param::Text(datastore_id.as_str().to_owned())];
        // An exact-match filter is far more selective than any sort order: without statistics
        // SQLite's planner would rather walk the sort index and filter, a scan of the whole
        // data store for a rare patient. PostgreSQL's planner has statistics.
        let index = match (
            self.dialect,
            search.filters.iter().find_map(|f| match f {
                ImageSetFilter::Text(field, _) => Some(*field),
                _ => None,
            }),
        ) {
            (Dialect::Sqlite, Some(field)) => format!(" INDEXED BY {}", text_index(field)),
            _ => String::new(),
        };
        let mut sql = format!(
            "SELECT {IMAGE_SET_COLUMNS}, {TAG_COLUMNS} FROM image_sets{index} \
             WHERE datastore_id = $1 AND state <> 'DELETED'"
        );
        for f in &search.filters {
            let cond = match f {
                ImageSetFilter::Text(field, v) => {
                    let column = text_column(*field);
                    format!("{column} = {}", param(&mut params, Param::Text(v.clone())))
                }
                ImageSetFilter::CreatedAt(lo, hi) | ImageSetFilter::UpdatedAt(lo, hi) => {
                    let column = if matches!(f, ImageSetFilter::CreatedAt(..)) {
                        "created_at"
                    } else {
                        "updated_at"
                    };
                    let lo = param(&mut params, Param::Int(lo.0));
                    let hi = param(&mut params, Param::Int(hi.0));
                    format!("{column} BETWEEN {lo} AND {hi}")
                }
                ImageSetFilter::StudyDateTime(lo, hi) => {
                    let lo = param(&mut params, Param::Text(lo.clone()));
                    let hi = param(&mut params, Param::Text(hi.clone()));
                    format!("study_date_time BETWEEN {lo} AND {hi}")
                }
                ImageSetFilter::IsPrimary(p) => {
                    format!(
                        "is_primary = {}",
                        param(&mut params, Param::Int(i64::from(*p)))
                    )
                }
            };
            sql.push_str(" AND ");
            sql.push_str(&cond);
        }
        let column = sort_column(search.sort);
        let (cmp, dir) = if search.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(c) = after {
            let (value, id) = decode_search_cursor(c, search.sort)?;
            let v = param(&mut params, value);
            let i = param(&mut params, Param::Text(id));
            sql.push_str(&format!(
                " AND ({column} {cmp} {v} OR ({column} = {v} AND id {cmp} {i}))"
            ));
        }
        let l = param(&mut params, Param::Int(i64::from(limit) + 1));
        sql.push_str(&format!(" ORDER BY {column} {dir}, id {dir} LIMIT {l}"));
        let mut q = sqlx::query(Self::sql(sql));
        for p in params {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut items = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last_key = None;
        for row in rows.iter().take(limit as usize) {
            let image_set = image_set_from_row(row)?;
            let tags = tags_from_row(row)?;
            let instances: Option<i64> = row.try_get("instance_count")?;
            last_key = Some(match search.sort {
                ImageSetSortField::UpdatedAt => image_set.updated_at.0.to_string(),
                ImageSetSortField::CreatedAt => image_set.created_at.0.to_string(),
                ImageSetSortField::StudyDateTime => row.try_get::<String, _>("study_date_time")?,
            });
            items.push(ImageSetSummary {
                image_set,
                tags,
                study_series: 1,
                study_instances: instances.unwrap_or(0),
            });
        }
        self.fill_study_counts(datastore_id, &mut items).await?;
        let next = (rows.len() > limit as usize)
            .then(|| items.last().zip(last_key))
            .flatten()
            .map(|(s, key)| Cursor(format!("is:{key}:{}", s.image_set.id)));
        Ok(Page { items, next })
    }

    async fn list_image_set_versions(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<ImageSetVersion>, StorageError> {
        let before = match after {
            Some(c) => {
                c.0.strip_prefix("v:")
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or(StorageError::InvalidCursor)?
            }
            None => i64::MAX,
        };
        let rows = sqlx::query(Self::sql(format!(
            "SELECT {VERSION_COLUMNS} FROM image_set_versions WHERE datastore_id = $1 \
             AND image_set_id = $2 AND version < $3 ORDER BY version DESC LIMIT $4"
        )))
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit as usize) {
            items.push(version_from_row(row)?.1);
        }
        let next = (rows.len() > limit as usize)
            .then(|| items.last())
            .flatten()
            .map(|v| Cursor(format!("v:{}", v.version)));
        Ok(Page { items, next })
    }

    async fn search_dicom_studies(
        &self,
        datastore_id: &DatastoreId,
        query: &DicomQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<DicomStudy>, StorageError> {
        // A study is represented by its most recently updated live primary image set (ties by
        // id): walking those in updated_at order is the study order, and a page stops early.
        let params = vec![Param::Text(datastore_id.as_str().to_owned())];
        let columns = qualified("r", &format!("{TAG_COLUMNS}, {QIDO_COLUMNS}"));
        let sql = format!(
            "SELECT {columns}, r.updated_at FROM image_sets r \
             WHERE r.datastore_id = $1 AND r.is_primary = 1 AND r.state <> 'DELETED' \
             AND r.study_instance_uid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM image_sets n \
             WHERE n.datastore_id = r.datastore_id AND n.study_instance_uid = r.study_instance_uid \
             AND n.is_primary = 1 AND n.state <> 'DELETED' AND (n.updated_at > r.updated_at \
             OR (n.updated_at = r.updated_at AND n.id > r.id)))"
        );
        let order = "r.updated_at DESC, r.study_instance_uid ASC";
        let rows = self
            .qido_rows(sql, params, query, order, offset, limit)
            .await?;
        let mut studies = Vec::with_capacity(rows.len());
        for row in &rows {
            studies.push(DicomStudy {
                tags: tags_from_row(row)?,
                attributes: attributes_from_row(row)?,
                modalities: Vec::new(),
                series: 0,
                instances: 0,
                updated_at: Millis(row.try_get("updated_at")?),
            });
        }
        self.fill_dicom_study_counts(datastore_id, &mut studies)
            .await?;
        Ok(studies)
    }

    async fn search_dicom_series(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: Option<&str>,
        query: &DicomQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<DicomSeries>, StorageError> {
        let mut params = vec![Param::Text(datastore_id.as_str().to_owned())];
        let columns = qualified("r", &format!("{TAG_COLUMNS}, {QIDO_COLUMNS}"));
        // Within a study, its few rows are sorted; over the data store, the series index (migration
        // 6) is walked in order. SQLite's planner, without statistics, needs telling.
        let index = match (self.dialect, study_instance_uid) {
            (Dialect::Sqlite, Some(_)) => " INDEXED BY image_sets_by_study_primary",
            _ => "",
        };
        let mut sql = format!(
            "SELECT r.id, r.updated_at, {columns} FROM image_sets r{index} \
             WHERE r.datastore_id = $1 AND r.is_primary = 1 AND r.state <> 'DELETED'"
        );
        if let Some(study) = study_instance_uid {
            let p = param(&mut params, Param::Text(study.to_owned()));
            sql.push_str(&format!(" AND r.study_instance_uid = {p}"));
        }
        // Both dialects put absent series numbers last this way (their NULL orders differ).
        let order = "CASE WHEN r.series_number IS NULL THEN 1 ELSE 0 END, r.series_number, \
                     r.series_instance_uid, r.id";
        let rows = self
            .qido_rows(sql, params, query, order, offset, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let instances: Option<i64> = row.try_get("instance_count")?;
            out.push(DicomSeries {
                image_set_id: ImageSetId::parse(&id).map_err(|_| corrupt("image_sets.id"))?,
                tags: tags_from_row(row)?,
                attributes: attributes_from_row(row)?,
                instances: instances.unwrap_or(0),
                updated_at: Millis(row.try_get("updated_at")?),
            });
        }
        Ok(out)
    }

    async fn search_dicom_instances(
        &self,
        datastore_id: &DatastoreId,
        scope: InstanceScope<'_>,
        query: &DicomQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<DicomInstance>, StorageError> {
        let mut params = vec![Param::Text(datastore_id.as_str().to_owned())];
        let columns = qualified("r", &format!("{TAG_COLUMNS}, {QIDO_COLUMNS}"));
        let from = match self.dialect {
            // PostgreSQL's planner has statistics.
            Dialect::Postgres => "dicom_instances i CROSS JOIN image_sets r".to_owned(),
            Dialect::Sqlite => sqlite_instance_plan(scope, query),
        };
        let mut sql = format!(
            "SELECT r.id, r.updated_at, {columns}, v.metadata_key, \
             i.series_instance_uid AS instance_series_uid, i.sop_instance_uid, i.sop_class_uid, \
             i.instance_number, i.rows_count, i.columns_count, i.bits_allocated, \
             i.number_of_frames \
             FROM {from} \
             LEFT JOIN image_set_versions v ON v.datastore_id = r.datastore_id \
             AND v.image_set_id = r.id AND v.version = r.version \
             WHERE i.datastore_id = $1 AND r.datastore_id = $1 AND r.id = i.image_set_id \
             AND r.is_primary = 1 AND r.state <> 'DELETED'"
        );
        let by_number = "CASE WHEN i.instance_number IS NULL THEN 1 ELSE 0 END, \
                         i.instance_number, i.sop_instance_uid, i.image_set_id";
        let order = match scope {
            InstanceScope::Datastore => by_number.to_owned(),
            InstanceScope::Study(study) => {
                let p = param(&mut params, Param::Text(study.to_owned()));
                sql.push_str(&format!(" AND i.study_instance_uid = {p}"));
                format!("r.updated_at DESC, r.id, {by_number}")
            }
            InstanceScope::Series(study, series) => {
                let p = param(&mut params, Param::Text(study.to_owned()));
                let q = param(&mut params, Param::Text(series.to_owned()));
                sql.push_str(&format!(
                    " AND i.study_instance_uid = {p} AND i.series_instance_uid = {q}"
                ));
                by_number.to_owned()
            }
        };
        let rows = self
            .qido_rows(sql, params, query, &order, offset, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let series_instances: Option<i64> = row.try_get("instance_count")?;
            out.push(DicomInstance {
                image_set_id: ImageSetId::parse(&id).map_err(|_| corrupt("image_sets.id"))?,
                metadata_key: row.try_get("metadata_key")?,
                tags: tags_from_row(row)?,
                attributes: attributes_from_row(row)?,
                instance: QidoInstance {
                    series_instance_uid: row.try_get("instance_series_uid")?,
                    sop_instance_uid: row.try_get("sop_instance_uid")?,
                    sop_class_uid: row.try_get("sop_class_uid")?,
                    instance_number: row.try_get("instance_number")?,
                    rows: row.try_get("rows_count")?,
                    columns: row.try_get("columns_count")?,
                    bits_allocated: row.try_get("bits_allocated")?,
                    number_of_frames: row.try_get("number_of_frames")?,
                },
                series_instances: series_instances.unwrap_or(0),
                study: DicomStudyCounts::default(),
                updated_at: Millis(row.try_get("updated_at")?),
            });
        }
        let mut uids: Vec<&str> = out
            .iter()
            .filter_map(|i| i.tags.study_instance_uid.as_deref())
            .collect();
        uids.sort_unstable();
        uids.dedup();
        let counts = self.dicom_study_counts(datastore_id, &uids).await?;
        for i in &mut out {
            if let Some(c) = i
                .tags
                .study_instance_uid
                .as_ref()
                .and_then(|u| counts.get(u))
            {
                i.study = c.clone();
            }
        }
        Ok(out)
    }

    async fn unindexed_image_sets(
        &self,
        limit: u32,
    ) -> Result<Vec<UnindexedImageSet>, StorageError> {
        let rows = sqlx::query(
            "SELECT r.datastore_id, r.id, r.version, v.metadata_key FROM image_sets r \
             JOIN image_set_versions v ON v.datastore_id = r.datastore_id \
             AND v.image_set_id = r.id AND v.version = r.version \
             WHERE r.qido_indexed = 0 AND r.state <> 'DELETED' AND v.metadata_key IS NOT NULL \
             ORDER BY r.datastore_id, r.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let ds: String = r.try_get("datastore_id")?;
                let id: String = r.try_get("id")?;
                Ok(UnindexedImageSet {
                    datastore_id: DatastoreId::parse(&ds)
                        .map_err(|_| corrupt("image_sets.datastore_id"))?,
                    id: ImageSetId::parse(&id).map_err(|_| corrupt("image_sets.id"))?,
                    version: r.try_get("version")?,
                    metadata_key: r.try_get("metadata_key")?,
                })
            })
            .collect()
    }

    async fn write_qido_index(
        &self,
        u: &UnindexedImageSet,
        index: &QidoIndex,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let current = self.lock_image_set(&mut tx, &u.datastore_id, &u.id).await?;
        if !current.is_some_and(|c| c.version == u.version && c.state != ImageSetState::Deleted) {
            tx.rollback().await?;
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT v.metadata_key, r.study_instance_uid FROM image_sets r \
             JOIN image_set_versions v ON v.datastore_id = r.datastore_id \
             AND v.image_set_id = r.id AND v.version = r.version \
             WHERE r.datastore_id = $1 AND r.id = $2",
        )
        .bind(u.datastore_id.as_str())
        .bind(u.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let key: Option<String> = row.try_get("metadata_key")?;
        if key.as_deref() != Some(u.metadata_key.as_str()) {
            tx.rollback().await?;
            return Ok(false);
        }
        let study: Option<String> = row.try_get("study_instance_uid")?;
        write_qido(
            &mut tx,
            &u.datastore_id,
            &u.id,
            study.as_deref().unwrap_or(""),
            index,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_image_frame(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        frame_id: &str,
    ) -> Result<Option<(ImageSet, Option<FrameRecord>)>, StorageError> {
        // GetImageFrame's one query, built once.
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let columns: Vec<String> = IMAGE_SET_COLUMNS
                .split(',')
                .map(|c| format!("s.{}", c.trim()))
                .collect();
            format!(
                "SELECT {}, f.frame_id, f.blob_key, f.size, f.transfer_syntax FROM image_sets s \
                 LEFT JOIN image_frames f ON f.datastore_id = s.datastore_id \
                 AND f.image_set_id = s.id AND f.frame_id = $3 AND f.from_version <= s.version \
                 AND (f.until_version IS NULL OR f.until_version > s.version) \
                 WHERE s.datastore_id = $1 AND s.id = $2",
                columns.join(", ")
            )
        });
        let row = sqlx::query(AssertSqlSafe(SQL.as_str()))
            .bind(datastore_id.as_str())
            .bind(id.as_str())
            .bind(frame_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let image_set = image_set_from_row(&row)?;
        let frame = match row.try_get::<Option<String>, _>("frame_id")? {
            Some(_) => Some(frame_from_row(&row)?),
            None => None,
        };
        Ok(Some((image_set, frame)))
    }

    async fn touch_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        now: Millis,
        granularity: Duration,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE image_sets SET last_accessed_at = $1 WHERE datastore_id = $2 AND id = $3 \
             AND last_accessed_at < $4",
        )
        .bind(now.0)
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(now.0 - granularity.as_millis() as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl SqlCatalog {
    /// Runs a QIDO-RS query: `sql` (a SELECT … WHERE with `params` bound) with `query`'s
    /// conditions, ordered by `order`, `limit` rows after `offset`.
    async fn qido_rows(
        &self,
        mut sql: String,
        mut params: Vec<Param>,
        query: &DicomQuery,
        order: &str,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<AnyRow>, StorageError> {
        for c in &query.conditions {
            sql.push_str(" AND ");
            sql.push_str(&dicom_condition(self.dialect, c, &mut params));
        }
        let l = param(&mut params, Param::Int(i64::from(limit)));
        let o = param(&mut params, Param::Int(offset.min(i64::MAX as u64) as i64));
        sql.push_str(&format!(" ORDER BY {order} LIMIT {l} OFFSET {o}"));
        Ok(bind_all(sqlx::query(Self::sql(sql)), params)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Series and instance counts and modalities of QIDO-RS studies (their live primary image
    /// sets), by StudyInstanceUID.
    async fn dicom_study_counts(
        &self,
        datastore_id: &DatastoreId,
        uids: &[&str],
    ) -> Result<std::collections::HashMap<String, DicomStudyCounts>, StorageError> {
        let mut by_study: std::collections::HashMap<String, DicomStudyCounts> =
            std::collections::HashMap::new();
        if uids.is_empty() {
            return Ok(by_study);
        }
        let placeholders: Vec<String> = (0..uids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT study_instance_uid, series_modality, COUNT(*) AS series, \
             CAST(COALESCE(SUM(instance_count), 0) AS BIGINT) AS instances FROM image_sets \
             WHERE datastore_id = $1 AND is_primary = 1 AND state <> 'DELETED' \
             AND study_instance_uid IN ({}) GROUP BY study_instance_uid, series_modality",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(Self::sql(sql)).bind(datastore_id.as_str());
        for u in uids {
            q = q.bind(*u);
        }
        let rows = q.fetch_all(&self.pool).await?;
        for r in &rows {
            let study: String = r.try_get("study_instance_uid")?;
            let modality: Option<String> = r.try_get("series_modality")?;
            let e = by_study.entry(study).or_default();
            e.series += r.try_get::<i64, _>("series")?;
            e.instances += r.try_get::<i64, _>("instances")?;
            // Multi-valued modalities (`CT\PT`) count as each of their values.
            for m in modality.iter().flat_map(|m| m.split('\\')) {
                let m = m.trim();
                if !m.is_empty() && !e.modalities.iter().any(|x| x == m) {
                    e.modalities.push(m.to_owned());
                }
            }
        }
        for e in by_study.values_mut() {
            e.modalities.sort();
        }
        Ok(by_study)
    }

    /// Fills the counts and modalities of QIDO-RS studies.
    async fn fill_dicom_study_counts(
        &self,
        datastore_id: &DatastoreId,
        studies: &mut [DicomStudy],
    ) -> Result<(), StorageError> {
        let uids: Vec<&str> = studies
            .iter()
            .filter_map(|s| s.tags.study_instance_uid.as_deref())
            .collect();
        let by_study = self.dicom_study_counts(datastore_id, &uids).await?;
        for s in studies.iter_mut() {
            if let Some(c) = s
                .tags
                .study_instance_uid
                .as_deref()
                .and_then(|u| by_study.get(u))
            {
                s.series = c.series;
                s.instances = c.instances;
                s.modalities = c.modalities.clone();
            }
        }
        Ok(())
    }

    /// Study-wide series and instance counts of the primary image sets in `items`.
    async fn fill_study_counts(
        &self,
        datastore_id: &DatastoreId,
        items: &mut [ImageSetSummary],
    ) -> Result<(), StorageError> {
        let mut studies: Vec<&str> = items
            .iter()
            .filter(|s| s.image_set.is_primary)
            .filter_map(|s| s.tags.study_instance_uid.as_deref())
            .collect();
        studies.sort_unstable();
        studies.dedup();
        if studies.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (0..studies.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT study_instance_uid, COUNT(*) AS series, \
             CAST(COALESCE(SUM(instance_count), 0) AS BIGINT) AS instances FROM image_sets \
             WHERE datastore_id = $1 AND is_primary = 1 AND state <> 'DELETED' \
             AND study_instance_uid IN ({}) GROUP BY study_instance_uid",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(Self::sql(sql)).bind(datastore_id.as_str());
        for s in &studies {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut counts = std::collections::HashMap::new();
        for r in &rows {
            let study: String = r.try_get("study_instance_uid")?;
            counts.insert(
                study,
                (
                    r.try_get::<i64, _>("series")?,
                    r.try_get::<i64, _>("instances")?,
                ),
            );
        }
        for item in items.iter_mut().filter(|s| s.image_set.is_primary) {
            if let Some((series, instances)) = item
                .tags
                .study_instance_uid
                .as_deref()
                .and_then(|s| counts.get(s))
            {
                item.study_series = *series;
                item.study_instances = *instances;
            }
        }
        Ok(())
    }

    /// Locks image set rows in id order (PostgreSQL; SQLite's write transaction already
    /// excludes other writers): transactions that lock several image sets — a copy's source and
    /// destination, a study-wide update — then never wait on each other in a cycle.
    async fn lock_in_order<'a>(
        &self,
        tx: &mut sqlx::AnyConnection,
        ds: &DatastoreId,
        ids: impl Iterator<Item = &'a ImageSetId>,
    ) -> Result<(), StorageError> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        let mut ids: Vec<&str> = ids.map(ImageSetId::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            sqlx::query("SELECT id FROM image_sets WHERE datastore_id = $1 AND id = $2 FOR UPDATE")
                .bind(ds.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Applies one lock of a change inside an open write transaction: `Ok` with the image set
    /// as it is now, or `Err` with the outcome that aborts the change.
    async fn lock_for_change(
        &self,
        tx: &mut sqlx::AnyConnection,
        ds: &DatastoreId,
        lock: &ChangeLock,
        job_id: &str,
        now: Millis,
    ) -> Result<Result<ImageSet, BeginChangeOutcome>, StorageError> {
        let Some(current) = self.lock_image_set(&mut *tx, ds, &lock.id).await? else {
            return Ok(Err(BeginChangeOutcome::NotFound(lock.id.clone())));
        };
        if current.state != ImageSetState::Active || current.version != lock.expected_latest {
            return Ok(Err(BeginChangeOutcome::Conflict(current)));
        }
        if !lock.new_version {
            let next = ImageSet {
                state: ImageSetState::Locked,
                workflow_status: lock.status,
                ..current
            };
            self.set_latest_state(&mut *tx, &next).await?;
            return Ok(Ok(next));
        }
        let next = ImageSet {
            version: lock.expected_latest + 1,
            state: ImageSetState::Locked,
            workflow_status: lock.status,
            updated_at: now,
            ..current
        };
        sqlx::query(
            "UPDATE image_sets SET version = $1, state = $2, workflow_status = $3, updated_at = $4 \
             WHERE datastore_id = $5 AND id = $6",
        )
        .bind(next.version)
        .bind(next.state.as_str())
        .bind(next.workflow_status.as_str())
        .bind(now.0)
        .bind(ds.as_str())
        .bind(lock.id.as_str())
        .execute(&mut *tx)
        .await?;
        self.insert_version(
            &mut *tx,
            &next,
            Some(lock.expected_latest),
            Some(job_id),
            None,
            lock.forced,
        )
        .await?;
        Ok(Ok(next))
    }

    /// Ends version `version` of an image set inside an open write transaction; `false` (and
    /// nothing written) unless it is the LOCKED latest version.
    async fn complete_version_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
        completion: &VersionCompletion,
        now: Millis,
    ) -> Result<bool, StorageError> {
        let current = self.lock_image_set(&mut *tx, datastore_id, id).await?;
        if !current.is_some_and(|c| c.version == version && c.state == ImageSetState::Locked) {
            return Ok(false);
        }
        let (status, message) = match completion {
            VersionCompletion::Succeeded {
                status,
                content,
                added_frames,
                removed_frame_ids,
            } => {
                write_content(&mut *tx, datastore_id, id, content).await?;
                sqlx::query(
                    "UPDATE image_set_versions SET metadata_key = $1, metadata_size = $2 \
                     WHERE datastore_id = $3 AND image_set_id = $4 AND version = $5",
                )
                .bind(content.metadata_key.as_str())
                .bind(content.metadata_size as i64)
                .bind(datastore_id.as_str())
                .bind(id.as_str())
                .bind(version)
                .execute(&mut *tx)
                .await?;
                for f in removed_frame_ids {
                    sqlx::query(
                        "UPDATE image_frames SET until_version = $1 WHERE datastore_id = $2 \
                         AND image_set_id = $3 AND frame_id = $4 AND until_version IS NULL",
                    )
                    .bind(version)
                    .bind(datastore_id.as_str())
                    .bind(id.as_str())
                    .bind(f.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                insert_frames(&mut *tx, datastore_id, id, version, added_frames).await?;
                (*status, None)
            }
            VersionCompletion::Failed { status, message } => (*status, Some(message.as_str())),
        };
        sqlx::query(
            "UPDATE image_set_versions SET state = $1, workflow_status = $2, message = $3, \
             updated_at = $4 WHERE datastore_id = $5 AND image_set_id = $6 AND version = $7",
        )
        .bind(ImageSetState::Active.as_str())
        .bind(status.as_str())
        .bind(message)
        .bind(now.0)
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .bind(version)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE image_sets SET state = $1, workflow_status = $2, updated_at = $3, \
             last_accessed_at = $3 WHERE datastore_id = $4 AND id = $5",
        )
        .bind(ImageSetState::Active.as_str())
        .bind(status.as_str())
        .bind(now.0)
        .bind(datastore_id.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        Ok(true)
    }

    /// Sets the state and workflow status of an image set and of its latest version record
    /// (which mirrors it), inside an open write transaction.
    async fn set_latest_state(
        &self,
        tx: &mut sqlx::AnyConnection,
        s: &ImageSet,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE image_sets SET state = $1, workflow_status = $2, updated_at = $3, \
             deleted_at = $4 WHERE datastore_id = $5 AND id = $6",
        )
        .bind(s.state.as_str())
        .bind(s.workflow_status.as_str())
        .bind(s.updated_at.0)
        .bind(s.deleted_at.map(|m| m.0))
        .bind(s.datastore_id.as_str())
        .bind(s.id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE image_set_versions SET state = $1, workflow_status = $2, updated_at = $3, \
             deleted_at = $4 WHERE datastore_id = $5 AND image_set_id = $6 AND version = $7",
        )
        .bind(s.state.as_str())
        .bind(s.workflow_status.as_str())
        .bind(s.updated_at.0)
        .bind(s.deleted_at.map(|m| m.0))
        .bind(s.datastore_id.as_str())
        .bind(s.id.as_str())
        .bind(s.version)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Reads an image set's latest-version record inside an open write transaction, locking its
    /// row where the dialect has row locks.
    async fn lock_image_set(
        &self,
        tx: &mut sqlx::AnyConnection,
        ds: &DatastoreId,
        id: &ImageSetId,
    ) -> Result<Option<ImageSet>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {IMAGE_SET_COLUMNS} FROM image_sets WHERE datastore_id = $1 AND id = $2{}",
            self.for_update()
        )))
        .bind(ds.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        row.as_ref().map(image_set_from_row).transpose()
    }

    /// The live primary image set of a series, inside an open transaction or connection.
    async fn primary_of(
        &self,
        conn: &mut sqlx::AnyConnection,
        ds: &DatastoreId,
        study: &str,
        series: &str,
    ) -> Result<Option<PrimaryImageSet>, StorageError> {
        let row = sqlx::query(Self::sql(format!(
            "SELECT {IMAGE_SET_COLUMNS}, grouping FROM image_sets WHERE datastore_id = $1 \
             AND study_instance_uid = $2 AND series_instance_uid = $3 AND is_primary = 1 \
             AND state <> $4"
        )))
        .bind(ds.as_str())
        .bind(study)
        .bind(series)
        .bind(ImageSetState::Deleted.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let image_set = image_set_from_row(&row)?;
        let grouping: Option<String> = row.try_get("grouping")?;
        // The document of the latest *completed* version (a LOCKED latest has none yet).
        let key = sqlx::query(
            "SELECT metadata_key FROM image_set_versions WHERE datastore_id = $1 \
             AND image_set_id = $2 AND metadata_key IS NOT NULL ORDER BY version DESC LIMIT 1",
        )
        .bind(ds.as_str())
        .bind(image_set.id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<String, _>("metadata_key"))
        .transpose()?;
        Ok(Some(PrimaryImageSet {
            image_set,
            grouping: grouping.unwrap_or_default(),
            metadata_key: key.unwrap_or_default(),
        }))
    }

    /// Records a version row mirroring `s` (written by `job_id`, if any); its document is
    /// `content`'s, or (for a version still being written) the previous version's until it
    /// completes.
    async fn insert_version(
        &self,
        tx: &mut sqlx::AnyConnection,
        s: &ImageSet,
        previous: Option<i64>,
        job_id: Option<&str>,
        content: Option<&ImageSetContent>,
        forced: bool,
    ) -> Result<(), StorageError> {
        let (key, size) = match (content, previous) {
            (Some(c), _) => (Some(c.metadata_key.clone()), Some(c.metadata_size as i64)),
            (None, Some(prev)) => {
                let row = sqlx::query(
                    "SELECT metadata_key, metadata_size FROM image_set_versions \
                     WHERE datastore_id = $1 AND image_set_id = $2 AND version = $3",
                )
                .bind(s.datastore_id.as_str())
                .bind(s.id.as_str())
                .bind(prev)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    Some(r) => (r.try_get("metadata_key")?, r.try_get("metadata_size")?),
                    None => (None, None),
                }
            }
            (None, None) => (None, None),
        };
        sqlx::query(
            "INSERT INTO image_set_versions (datastore_id, image_set_id, version, state, \
             workflow_status, is_primary, message, forced, metadata_key, metadata_size, job_id, \
             created_at, updated_at, deleted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $12, $7, $8, $9, $10, $10, $11)",
        )
        .bind(s.datastore_id.as_str())
        .bind(s.id.as_str())
        .bind(s.version)
        .bind(s.state.as_str())
        .bind(s.workflow_status.as_str())
        .bind(i64::from(s.is_primary))
        .bind(key)
        .bind(size)
        .bind(job_id)
        .bind(s.updated_at.0)
        .bind(s.deleted_at.map(|m| m.0))
        .bind(i64::from(forced))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// `columns` (a comma-separated list) qualified with `alias`.
fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds dynamically collected parameters in order.
fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for p in params {
        q = match p {
            Param::Text(t) => q.bind(t),
            Param::Int(i) => q.bind(i),
        };
    }
    q
}

/// The tables of a SQLite instance search, in join order (SQLite's planner has no statistics:
/// it would walk the order index through the whole data store even for one patient). A
/// SOPInstanceUID or an indexed image set attribute matched exactly drives the search; else
/// the scope's index is walked in result order.
fn sqlite_instance_plan(scope: InstanceScope<'_>, query: &DicomQuery) -> String {
    let exact = |a: DicomAttribute| {
        query.conditions.iter().any(|c| {
            c.attribute == a && matches!(c.matching, DicomMatch::Exact(_) | DicomMatch::AnyOf(_))
        })
    };
    let instances =
        |index: &str| format!("dicom_instances i INDEXED BY {index} CROSS JOIN image_sets r");
    if exact(DicomAttribute::SopInstanceUid) {
        return instances("dicom_instances_by_sop");
    }
    if scope != InstanceScope::Datastore {
        return instances("dicom_instances_by_series");
    }
    let by_image_set = [
        (DicomAttribute::SeriesInstanceUid, "image_sets_by_series"),
        (DicomAttribute::StudyInstanceUid, "image_sets_by_study"),
        (DicomAttribute::AccessionNumber, "image_sets_by_accession"),
        (DicomAttribute::PatientId, "image_sets_by_patient"),
        (DicomAttribute::StudyId, "image_sets_by_study_id"),
    ];
    match by_image_set.iter().find(|(a, _)| exact(*a)) {
        Some((_, index)) => format!("image_sets r INDEXED BY {index} CROSS JOIN dicom_instances i"),
        None => instances("dicom_instances_by_number"),
    }
}

/// The expression a QIDO-RS attribute is matched on, on the image set row `a` (`None` for
/// ModalitiesInStudy, matched over the study's image sets).
fn dicom_column(a: &str, attribute: DicomAttribute) -> Option<String> {
    let column = match attribute {
        DicomAttribute::PatientName => "patient_name",
        DicomAttribute::PatientId => "patient_id",
        DicomAttribute::PatientBirthDate => "patient_birth_date",
        DicomAttribute::PatientSex => "patient_sex",
        DicomAttribute::AccessionNumber => "accession_number",
        DicomAttribute::StudyId => "study_id",
        DicomAttribute::StudyInstanceUid => "study_instance_uid",
        DicomAttribute::StudyDate => "study_date",
        // HHMMSSffffff, normalised (migration 4's key; '' when the study has no valid date).
        DicomAttribute::StudyTime => return Some(format!("SUBSTR({a}.study_date_time, 9, 12)")),
        DicomAttribute::StudyDescription => "study_description",
        DicomAttribute::SeriesInstanceUid => "series_instance_uid",
        DicomAttribute::Modality => "series_modality",
        DicomAttribute::SeriesNumber => "series_number",
        DicomAttribute::BodyPartExamined => "series_body_part",
        DicomAttribute::ReferringPhysicianName => "referring_physician_name",
        DicomAttribute::SeriesDescription => "series_description",
        DicomAttribute::SeriesDate => "series_date",
        // Instance attributes: only in instance searches (`dicom_instances i`).
        DicomAttribute::SopClassUid => return Some("i.sop_class_uid".into()),
        DicomAttribute::SopInstanceUid => return Some("i.sop_instance_uid".into()),
        DicomAttribute::InstanceNumber => return Some("i.instance_number".into()),
        DicomAttribute::ModalitiesInStudy => return None,
    };
    Some(format!("{a}.{column}"))
}

/// `value` as a LIKE pattern (escape `\`): DICOM `*` / `?` become `%` / `_`, literal `%`, `_`
/// and `\` are escaped.
fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for ch in value.chars() {
        match ch {
            '\\' | '%' | '_' => {
                out.push('\\');
                out.push(ch);
            }
            '*' => out.push('%'),
            '?' => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

/// One QIDO-RS condition as SQL on `image_sets r`, its values appended to `params`.
fn dicom_condition(dialect: Dialect, c: &DicomCondition, params: &mut Vec<Param>) -> String {
    dicom_condition_on(dialect, "r", c, params)
}

fn dicom_condition_on(
    dialect: Dialect,
    a: &str,
    c: &DicomCondition,
    params: &mut Vec<Param>,
) -> String {
    let Some(column) = dicom_column(a, c.attribute) else {
        let inner = DicomCondition {
            attribute: DicomAttribute::Modality,
            matching: c.matching.clone(),
        };
        let cond = dicom_condition_on(dialect, "m", &inner, params);
        return format!(
            "EXISTS (SELECT 1 FROM image_sets m WHERE m.datastore_id = r.datastore_id \
             AND m.study_instance_uid = r.study_instance_uid AND m.is_primary = 1 \
             AND m.state <> 'DELETED' AND {cond})"
        );
    };
    let integer = matches!(
        c.attribute,
        DicomAttribute::SeriesNumber | DicomAttribute::InstanceNumber
    );
    let value = |params: &mut Vec<Param>, v: &str| -> Option<String> {
        if integer {
            let n = v.trim().parse::<i64>().ok()?;
            Some(param(params, Param::Int(n)))
        } else {
            Some(param(params, Param::Text(v.to_owned())))
        }
    };
    match &c.matching {
        DicomMatch::Exact(v) => match value(params, v) {
            Some(p) => format!("{column} = {p}"),
            None => "1 = 0".into(),
        },
        DicomMatch::AnyOf(vs) => {
            let ps: Vec<String> = vs.iter().filter_map(|v| value(params, v)).collect();
            if ps.is_empty() {
                "1 = 0".into()
            } else {
                format!("{column} IN ({})", ps.join(", "))
            }
        }
        DicomMatch::Wildcard(v) if !integer => match dialect {
            // SQLite's LIKE ignores ASCII case; GLOB is case-sensitive, as DICOM matching is.
            Dialect::Sqlite => {
                let p = param(params, Param::Text(v.replace('[', "[[]")));
                format!("{column} GLOB {p}")
            }
            Dialect::Postgres => {
                let p = param(params, Param::Text(like_pattern(v)));
                format!("{column} LIKE {p} ESCAPE '\\'")
            }
        },
        DicomMatch::Range(lo, hi) if !integer => {
            let mut parts = Vec::new();
            if c.attribute == DicomAttribute::StudyTime {
                parts.push(format!("{a}.study_date_time <> ''"));
            }
            if let Some(lo) = lo {
                parts.push(format!(
                    "{column} >= {}",
                    param(params, Param::Text(lo.clone()))
                ));
            }
            if let Some(hi) = hi {
                parts.push(format!(
                    "{column} <= {}",
                    param(params, Param::Text(hi.clone()))
                ));
            }
            if parts.is_empty() {
                parts.push(format!("{column} IS NOT NULL"));
            }
            format!("({})", parts.join(" AND "))
        }
        DicomMatch::Fuzzy(v) if !integer => {
            // A name component starts with the value: at the start, or after `^`, `=` or a space.
            let p = like_pattern(v);
            let alternatives: Vec<String> = [
                format!("{p}%"),
                format!("%^{p}%"),
                format!("%={p}%"),
                format!("% {p}%"),
            ]
            .into_iter()
            .map(|pattern| {
                let p = param(params, Param::Text(pattern));
                format!("LOWER({column}) LIKE LOWER({p}) ESCAPE '\\'")
            })
            .collect();
            format!("({})", alternatives.join(" OR "))
        }
        // Wildcards, ranges and fuzzy matching on a number match nothing (the service rejects
        // them before they get here).
        _ => "1 = 0".into(),
    }
}
