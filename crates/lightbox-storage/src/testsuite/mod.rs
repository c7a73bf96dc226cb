//! Conformance suites that every Catalog and every BlobStore backend must pass. Backends' test
//! files call `catalog::run` / `blob::run` on a fresh, empty instance.

pub mod blob;
pub mod catalog;
pub mod changes;
pub mod imports;
pub mod qido;
pub mod qido_instances;
pub mod reads;

/// Creates an empty PostgreSQL database next to the one `admin_url` names and returns its URL,
/// so every test run (and every test) starts from a clean catalog.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("lbtest_{}", uuid_like());
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .expect("connect to the PostgreSQL test server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("URL has a database path");
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}
