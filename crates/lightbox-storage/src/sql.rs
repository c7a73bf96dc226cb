//! The Catalog on SQL: one implementation over sqlx's `Any` driver for SQLite (embedded default)
//! and PostgreSQL (scale-out), with the same statements wherever the two dialects agree.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetId, ImageSetState,
    ImageSetWorkflowStatus, LosslessStorageFormat, Millis, ResourceRef,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Row, SqlSafeStr};

use crate::StorageError;
use crate::catalog::{
    Catalog, CreateDatastoreOutcome, Cursor, DeleteDatastoreOutcome, Job, JobOutcome, JobState,
    Lease, NewDatastore, NewJob, Page, TagOutcome,
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
const IMAGE_SET_COLUMNS: &str = "datastore_id, id, version, state, workflow_status, is_primary, created_at, updated_at, deleted_at";

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
            .map_err(|e| StorageError::Backend(format!("catalog migration failed: {e}")))
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
        sqlx::query(Self::sql(format!(
            "INSERT INTO image_sets ({IMAGE_SET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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
        .execute(&mut *tx)
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
}
