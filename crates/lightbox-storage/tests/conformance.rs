//! Runs the Catalog and BlobStore conformance suites on every backend available to the test run:
//! SQLite and the local filesystem always; PostgreSQL when LIGHTBOX_TEST_POSTGRES_URL is set.

use std::sync::Arc;

use lightbox_storage::{ObjectBlobStore, SqlCatalog, testsuite};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_catalog_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqlCatalog::open_sqlite_file(&dir.path().join("catalog.db"))
        .await
        .unwrap();
    testsuite::catalog::run(Arc::new(catalog)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_catalog_survives_reopen_and_concurrent_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let (a, b) = tokio::join!(
        SqlCatalog::open_sqlite_file(&path),
        SqlCatalog::open_sqlite_file(&path)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    use lightbox_storage::Catalog;
    let v = a.setting_or_init("k", "v1").await.unwrap();
    assert_eq!(b.setting_or_init("k", "v2").await.unwrap(), v);
    drop((a, b));
    let c = SqlCatalog::open_sqlite_file(&path).await.unwrap();
    assert_eq!(c.setting_or_init("k", "v3").await.unwrap(), "v1");
}

/// Image sets imported before migration 4 get their sortable study date-time when a node
/// upgraded to it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_catalog_backfills_study_date_times_of_older_image_sets() {
    use lightbox_storage::{Catalog, ImageSetFilter, ImageSetSearch, ImageSetSortField};
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let catalog = SqlCatalog::open_sqlite_file(&path).await.unwrap();
    let (ds, new) = testsuite::reads::dated_image_set(&catalog, "20201231", Some("2359")).await;
    drop(catalog);
    // What the catalog looked like before: no key, no backfill recorded.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE image_sets SET study_date_time = ''")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM settings WHERE name LIKE 'backfill.%'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let catalog = SqlCatalog::open_sqlite_file(&path).await.unwrap();
    let search = ImageSetSearch {
        filters: vec![ImageSetFilter::StudyDateTime(
            "20201231235900000000".into(),
            "20201231235900000000".into(),
        )],
        sort: ImageSetSortField::StudyDateTime,
        descending: false,
    };
    let page = catalog
        .search_image_sets(&ds, &search, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].image_set.id, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_catalog_conforms() {
    let Ok(url) = std::env::var("LIGHTBOX_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL conformance suite: set LIGHTBOX_TEST_POSTGRES_URL"
        );
        eprintln!("skipped: LIGHTBOX_TEST_POSTGRES_URL is not set (scripts/test sets it)");
        return;
    };
    let url = testsuite::fresh_postgres_database(&url).await;
    // Several processes starting at once apply migrations once.
    let (a, b) = tokio::join!(SqlCatalog::connect(&url), SqlCatalog::connect(&url));
    let (catalog, _other) = (a.unwrap(), b.unwrap());
    testsuite::catalog::run(Arc::new(catalog)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_blob_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = ObjectBlobStore::local(dir.path()).unwrap();
    testsuite::blob::run(Arc::new(store)).await;
}
