//! Control-plane benchmark: request rate and latency of a GetDatastore / ListDatastores /
//! TagResource mix through the official SDK, for one embedded node, one PostgreSQL + S3 node and
//! two PostgreSQL + S3 nodes, with `pgbench -S` on the same PostgreSQL in the same run as the
//! reference (ratios, not absolute numbers, are what compare across machines).
//!
//! Run it with `scripts/bench-control-plane.sh` (starts PostgreSQL, builds release binaries).
//! Environment: LIGHTBOX_BIN (release `lightbox`), LIGHTBOX_TEST_POSTGRES_URL (admin URL),
//! BENCH_SECONDS (default 8), BENCH_CLIENTS (default 16).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lightbox_sdk_tests::{HostMode, SharedStorage, ready_url, sdk_client, wait_active};
use tokio::process::{Child, Command};

struct Node {
    _child: Child,
    url: String,
}

async fn start_node(bin: &str, dir: &Path, storage: Option<&SharedStorage>) -> Result<Node> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("LIGHTBOX_LOG", "warn")
        .env("LIGHTBOX_TRANSITION_DELAY_MS", "50")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if let Some(s) = storage {
        cmd.env("LIGHTBOX_CATALOG", &s.catalog_url)
            .env("LIGHTBOX_BLOB_STORE", format!("s3://{}/blobs", s.bucket))
            .env("LIGHTBOX_S3_ENDPOINT", s.s3.endpoint_url())
            .env("LIGHTBOX_S3_ACCESS_KEY_ID", &s.s3.access_key)
            .env("LIGHTBOX_S3_SECRET_ACCESS_KEY", &s.s3.secret_key);
    }
    let mut child = cmd.spawn().context("spawn lightbox")?;
    let url = ready_url(&mut child, Duration::from_secs(60)).await?;
    Ok(Node { _child: child, url })
}

struct Measured {
    requests: usize,
    errors: usize,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

async fn load(urls: &[String], clients: usize, seconds: u64) -> Result<Measured> {
    // Seed: data stores to read and tag.
    let seed_client = sdk_client(&urls[0], "test", "test", HostMode::StripPrefix);
    let mut ids = vec![];
    for i in 0..20 {
        let out = seed_client
            .create_datastore()
            .datastore_name(format!("bench-{i}"))
            .send()
            .await?;
        ids.push(out.datastore_id().to_string());
    }
    for id in &ids {
        wait_active(&seed_client, id).await?;
    }
    let ids = Arc::new(ids);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = vec![];
    for c in 0..clients {
        let client = sdk_client(&urls[c % urls.len()], "test", "test", HostMode::StripPrefix);
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut errors = 0usize;
            let mut n = c;
            while Instant::now() < deadline {
                n += 1;
                let id = &ids[n % ids.len()];
                let t = Instant::now();
                let ok = match n % 10 {
                    0..=6 => client.get_datastore().datastore_id(id).send().await.is_ok(),
                    7 | 8 => client
                        .list_datastores()
                        .max_results(10)
                        .send()
                        .await
                        .is_ok(),
                    _ => client
                        .tag_resource()
                        .resource_arn(format!(
                            "arn:aws:medical-imaging:us-east-1:000000000000:datastore/{id}"
                        ))
                        .tags("n", (n % 7).to_string())
                        .send()
                        .await
                        .is_ok(),
                };
                lat.push(t.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = vec![];
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies_us.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Ok(Measured {
        requests: latencies_us.len(),
        errors,
        seconds,
        latencies_us,
    })
}

async fn pgbench(admin_url: &str, clients: usize, seconds: u64) -> Result<f64> {
    let url = lightbox_storage::testsuite::fresh_postgres_database(admin_url).await;
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", &url])
        .output()
        .await
        .context("pgbench -i (install postgresql-contrib / postgresql client)")?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let run = Command::new("pgbench")
        .args([
            "-S",
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            &url,
        ])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&run.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .with_context(|| format!("no tps in pgbench output: {text}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let bin = std::env::var("LIGHTBOX_BIN").context("LIGHTBOX_BIN (release lightbox binary)")?;
    let admin =
        std::env::var("LIGHTBOX_TEST_POSTGRES_URL").context("LIGHTBOX_TEST_POSTGRES_URL")?;
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir()?;

    let mut rows = vec![];
    {
        let node = start_node(&bin, &dir.path().join("embedded"), None).await?;
        rows.push((
            "1 node, embedded (SQLite + files)",
            load(std::slice::from_ref(&node.url), clients, seconds).await?,
        ));
    }
    {
        let storage = SharedStorage::create(&dir.path().join("s3-1")).await?;
        let node = start_node(&bin, &dir.path().join("pg1"), Some(&storage)).await?;
        rows.push((
            "1 node, PostgreSQL + S3",
            load(std::slice::from_ref(&node.url), clients, seconds).await?,
        ));
    }
    {
        let storage = SharedStorage::create(&dir.path().join("s3-2")).await?;
        let a = start_node(&bin, &dir.path().join("pg2a"), Some(&storage)).await?;
        let b = start_node(&bin, &dir.path().join("pg2b"), Some(&storage)).await?;
        rows.push((
            "2 nodes, PostgreSQL + S3",
            load(&[a.url.clone(), b.url.clone()], clients, seconds).await?,
        ));
    }
    let reference = pgbench(&admin, clients, seconds).await?;

    println!("| configuration | requests/s | p50 ms | p99 ms | errors | ÷ pgbench -S |");
    println!("|---|---|---|---|---|---|");
    for (name, m) in &rows {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.3} |",
            m.rate(),
            m.percentile(0.5),
            m.percentile(0.99),
            m.errors,
            m.rate() / reference
        );
    }
    println!(
        "| reference: `pgbench -S` ({clients} clients, same PostgreSQL) | {reference:.0} tps | | | | 1 |"
    );
    println!();
    println!(
        "{clients} concurrent SDK clients, {seconds} s per configuration; mix: 70% GetDatastore, 20% ListDatastores (10 per page), 10% TagResource."
    );
    Ok(())
}
