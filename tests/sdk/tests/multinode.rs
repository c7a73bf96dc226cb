//! Several `lightbox serve` processes on one PostgreSQL catalog and one S3 bucket: requests are
//! spread across nodes, one clientToken yields one data store across nodes, and work leased by
//! a node that is SIGKILLed is finished by another node once the lease expires.
//!
//! Needs `LIGHTBOX_TEST_POSTGRES_URL` (scripts/test starts a throwaway PostgreSQL and sets it)
//! and the `lightbox` binary (`$LIGHTBOX_BIN`, default `target/debug/lightbox`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_medicalimaging::types::DatastoreStatus;
use lightbox_sdk_tests::{
    HostMode, SharedStorage, ready_url, sdk_client, wait_active, wait_status,
};
use lightbox_storage::{Catalog, JobState, SqlCatalog};
use tokio::process::{Child, Command};

fn lightbox_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LIGHTBOX_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/lightbox")
}

/// `false` (test skipped) outside CI when no PostgreSQL is configured.
fn postgres_configured() -> bool {
    if std::env::var_os("LIGHTBOX_TEST_POSTGRES_URL").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the multi-node tests: set LIGHTBOX_TEST_POSTGRES_URL"
    );
    eprintln!("skipped: LIGHTBOX_TEST_POSTGRES_URL is not set (scripts/test sets it)");
    false
}

struct Node {
    child: Child,
    url: String,
}

impl Node {
    async fn start(
        storage: &SharedStorage,
        dir: &Path,
        lease_ms: u64,
        delay_ms: u64,
    ) -> Result<Node> {
        let bin = lightbox_bin();
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build -p lightbox`",
                bin.display()
            );
        }
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("LIGHTBOX_CATALOG", &storage.catalog_url)
            .env(
                "LIGHTBOX_BLOB_STORE",
                format!("s3://{}/blobs", storage.bucket),
            )
            .env("LIGHTBOX_S3_ENDPOINT", storage.s3.endpoint_url())
            .env("LIGHTBOX_S3_REGION", &storage.s3.region)
            .env("LIGHTBOX_S3_ACCESS_KEY_ID", &storage.s3.access_key)
            .env("LIGHTBOX_S3_SECRET_ACCESS_KEY", &storage.s3.secret_key)
            .env("LIGHTBOX_JOB_LEASE_MS", lease_ms.to_string())
            .env("LIGHTBOX_TRANSITION_DELAY_MS", delay_ms.to_string())
            .env("LIGHTBOX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn lightbox serve")?;
        let url = ready_url(&mut child, Duration::from_secs(60)).await?;
        Ok(Node { child, url })
    }

    fn client(&self) -> aws_sdk_medicalimaging::Client {
        sdk_client(&self.url, "test", "test", HostMode::StripPrefix)
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_spread_across_nodes_share_one_state() -> Result<()> {
    if !postgres_configured() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let storage = SharedStorage::create(&dir.path().join("s3")).await?;
    let mut nodes = vec![];
    for i in 0..3 {
        nodes.push(Node::start(&storage, &dir.path().join(format!("n{i}")), 30_000, 200).await?);
    }
    let clients: Vec<_> = nodes.iter().map(Node::client).collect();

    // Creates round-robin across nodes; every node lists all of them, newest first.
    let mut ids = vec![];
    for i in 0..6 {
        let out = clients[i % 3]
            .create_datastore()
            .datastore_name(format!("spread-{i}"))
            .send()
            .await?;
        ids.push(out.datastore_id().to_string());
    }
    for c in &clients {
        let listed = c.list_datastores().send().await?;
        let got: Vec<_> = listed
            .datastore_summaries()
            .iter()
            .map(|d| d.datastore_id().to_string())
            .collect();
        let mut want = ids.clone();
        want.reverse();
        assert_eq!(got, want, "every node sees every data store, newest first");
    }
    // A page token issued by one node is honoured by another.
    let first = clients[0].list_datastores().max_results(4).send().await?;
    let token = first.next_token().context("more pages")?.to_string();
    let rest = clients[2]
        .list_datastores()
        .max_results(4)
        .next_token(token)
        .send()
        .await?;
    assert_eq!(rest.datastore_summaries().len(), 2);
    assert!(rest.next_token().is_none());
    // Background work (activation) is done by whichever node claims it; all agree.
    for id in &ids {
        wait_active(&clients[1], id).await?;
    }
    // Tags written through one node are read through another.
    let arn = format!(
        "arn:aws:medical-imaging:us-east-1:000000000000:datastore/{}",
        ids[0]
    );
    clients[0]
        .tag_resource()
        .resource_arn(&arn)
        .tags("team", "imaging")
        .send()
        .await?;
    let tags = clients[2]
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await?;
    assert_eq!(tags.tags().get("team").map(String::as_str), Some("imaging"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_token_yields_one_datastore_across_nodes() -> Result<()> {
    if !postgres_configured() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let storage = SharedStorage::create(&dir.path().join("s3")).await?;
    let mut nodes = vec![];
    for i in 0..3 {
        nodes.push(Node::start(&storage, &dir.path().join(format!("n{i}")), 30_000, 200).await?);
    }
    let mut tasks = vec![];
    for round in 0..4 {
        for node in &nodes {
            let client = node.client();
            tasks.push(tokio::spawn(async move {
                client
                    .create_datastore()
                    .datastore_name("raced")
                    .client_token("one-token-for-all-nodes")
                    .send()
                    .await
                    .map(|o| o.datastore_id().to_string())
                    .map_err(|e| format!("round {round}: {e:?}"))
            }));
        }
    }
    let mut ids = vec![];
    for t in tasks {
        ids.push(t.await?.map_err(anyhow::Error::msg)?);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one data store for one clientToken: {ids:?}");
    let listed = nodes[1].client().list_datastores().send().await?;
    assert_eq!(listed.datastore_summaries().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_of_a_killed_node_is_finished_by_another() -> Result<()> {
    if !postgres_configured() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let storage = SharedStorage::create(&dir.path().join("s3")).await?;
    let lease_ms = 1_500;
    let mut a = Node::start(&storage, &dir.path().join("a"), lease_ms, 100).await?;
    let client_a = a.client();
    let id = client_a
        .create_datastore()
        .datastore_name("doomed")
        .send()
        .await?
        .datastore_id()
        .to_string();
    wait_active(&client_a, &id).await?;

    // Give the data store many blobs, so deleting it takes a while.
    let blob_dir = storage
        .s3
        .root()
        .join(&storage.bucket)
        .join("blobs/datastores")
        .join(&id)
        .join("frames");
    std::fs::create_dir_all(&blob_dir)?;
    let blobs = 20_000;
    for n in 0..blobs {
        std::fs::write(blob_dir.join(format!("{n:06}")), b"frame bytes")?;
    }

    client_a.delete_datastore().datastore_id(&id).send().await?;
    let catalog = SqlCatalog::connect(&storage.catalog_url).await?;
    let job_id = format!("datastore.delete/{id}");
    let a_pid = a.pid();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = catalog
            .get_job(&job_id)
            .await?
            .context("delete job exists")?;
        if job.state == JobState::Running
            && job
                .lease_owner
                .as_deref()
                .is_some_and(|o| o.contains(&format!("-{a_pid}-")))
        {
            break;
        }
        assert_ne!(
            job.state,
            JobState::Succeeded,
            "node A finished before it could be killed"
        );
        if Instant::now() > deadline {
            bail!("node A never claimed the delete job: {job:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Node B starts while A holds the lease, then A dies without a word.
    let b = Node::start(&storage, &dir.path().join("b"), lease_ms, 100).await?;
    a.child.start_kill()?; // SIGKILL
    a.child.wait().await?;
    let killed_at = Instant::now();

    let client_b = b.client();
    wait_status(
        &client_b,
        &id,
        DatastoreStatus::Deleted,
        Duration::from_secs(120),
    )
    .await?;
    let job = catalog.get_job(&job_id).await?.context("job")?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(
        job.attempts, 2,
        "claimed by A, then taken over by B: {job:?}"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "takeover happened within a few leases"
    );
    let left = std::fs::read_dir(&blob_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "every blob of the deleted data store is gone");
    let status = client_b.get_datastore().datastore_id(&id).send().await?;
    assert_eq!(
        status
            .datastore_properties()
            .map(|p| p.datastore_status().as_str()),
        Some("DELETED")
    );
    Ok(())
}
