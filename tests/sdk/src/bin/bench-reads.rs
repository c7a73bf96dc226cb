//! Image set reads benchmark (docs/performance.md, "Image set reads"): GetImageFrame latency
//! and throughput at 1, 16 and 64 concurrent `aws-sdk-medicalimaging` clients for 512×512 CT
//! frames and large radiograph frames, beside reading the same stored frame files straight
//! from disk with the same concurrency (the physical bound); then SearchImageSets and
//! GetImageSetMetadata latency with 100,000 image sets (`lightbox generate-image-sets`).
//!
//! Run it with `scripts/bench-reads.sh` (builds release binaries, generates the DICOM inputs).
//! Environment: LIGHTBOX_BIN (release `lightbox`), BENCH_WORK (scratch directory),
//! BENCH_CT_DIR and BENCH_RG_DIR (DICOM folders to import), BENCH_SECONDS (per measurement,
//! default 3), BENCH_IMAGE_SETS (default 100000).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use aws_sdk_medicalimaging::Client;
use aws_sdk_medicalimaging::error::DisplayErrorContext;
use aws_sdk_medicalimaging::primitives::DateTime;
use aws_sdk_medicalimaging::types::{
    DicomStudyDateAndTime, ImageFrameInformation, Operator, SearchByAttributeValue, SearchCriteria,
    SearchFilter, Sort, SortField, SortOrder,
};
use lightbox_sdk_tests::{HostMode, create_active, ready_url, sdk_client};
use serde_json::Value;
use tokio::process::{Child, Command};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Server {
    child: Child,
    url: String,
}

/// The running server's pid, for its CPU time (0: none).
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// CPU seconds (user + system) of a process so far, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `(server, this process)` CPU seconds so far.
fn cpu_now() -> (f64, f64) {
    let pid = SERVER_PID.load(std::sync::atomic::Ordering::SeqCst);
    let server = if pid == 0 {
        0.0
    } else {
        cpu_seconds(&pid.to_string())
    };
    (server, cpu_seconds("self"))
}

async fn start_server(bin: &str, dir: &Path) -> Result<Server> {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("LIGHTBOX_LOG", "warn")
        .env("LIGHTBOX_TRANSITION_DELAY_MS", "50")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn lightbox serve")?;
    let url = ready_url(&mut child, Duration::from_secs(120)).await?;
    SERVER_PID.store(child.id().unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
    Ok(Server { child, url })
}

impl Server {
    /// SIGTERM, then wait: the server finishes in-flight work and closes the catalog.
    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }
}

/// Latencies (µs, sorted) and volume of one measurement.
struct Measured {
    latencies_us: Vec<u64>,
    bytes: u64,
    errors: usize,
    seconds: f64,
    /// CPU seconds the server and this process (the clients) spent during the measurement.
    server_cpu: f64,
    client_cpu: f64,
}

impl Measured {
    fn count(&self) -> usize {
        self.latencies_us.len()
    }
    fn rate(&self) -> f64 {
        self.count() as f64 / self.seconds
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
    /// Server CPU microseconds per completed request.
    fn server_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.count().max(1) as f64
    }
    /// Client-side (this process) CPU microseconds per completed request.
    fn client_us(&self) -> f64 {
        self.client_cpu * 1e6 / self.count().max(1) as f64
    }
    fn ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Runs `clients` loops of `op(client index, iteration)` for `seconds`; `op` returns the bytes
/// it read.
async fn measure<F, Fut>(clients: usize, seconds: f64, op: F) -> Measured
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let cpu_before = cpu_now();
    let mut tasks = vec![];
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut bytes, mut errors, mut i) = (vec![], 0u64, 0usize, 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(c, i).await {
                    Ok(n) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        bytes += n;
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("bench-reads: request failed: {e:#}");
                        }
                        errors += 1;
                    }
                }
                i += 1;
            }
            (lat, bytes, errors)
        }));
    }
    let mut m = Measured {
        latencies_us: vec![],
        bytes: 0,
        errors: 0,
        seconds: 0.0,
        server_cpu: 0.0,
        client_cpu: 0.0,
    };
    for t in tasks {
        let (l, b, e) = t.await.expect("bench task");
        m.latencies_us.extend(l);
        m.bytes += b;
        m.errors += e;
    }
    m.seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_now();
    m.server_cpu = cpu_after.0 - cpu_before.0;
    m.client_cpu = cpu_after.1 - cpu_before.1;
    m.latencies_us.sort_unstable();
    m
}

fn sdk_err<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(
    aws_sdk_medicalimaging::error::SdkError<E, aws_sdk_medicalimaging::config::http::HttpResponse>,
) -> anyhow::Error {
    let what = what.to_string();
    move |e| anyhow::anyhow!("{what}: {}", DisplayErrorContext(&e))
}

/// One stored frame: its image set, id, size and file under the blob directory.
#[derive(Clone)]
struct Frame {
    image_set: String,
    id: String,
    path: PathBuf,
    size: u64,
}

/// The image set metadata document, whether the SDK handed us gzip or plain JSON.
fn parse_document(bytes: &[u8]) -> Result<Value> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
        Ok(serde_json::from_slice(&out)?)
    } else {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// `(rows, frames)` of every instance of a document.
fn document_frames(doc: &Value) -> Vec<(u64, String)> {
    let mut out = vec![];
    let series = doc["Study"]["Series"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for s in series.values() {
        for inst in s["Instances"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let rows = inst["DICOM"]["Rows"].as_u64().unwrap_or(0);
            for f in inst["ImageFrames"].as_array().into_iter().flatten() {
                if let Some(id) = f["ID"].as_str() {
                    out.push((rows, id.to_string()));
                }
            }
        }
    }
    out
}

async fn get_metadata(client: &Client, ds: &str, id: &str) -> Result<Vec<u8>> {
    let out = client
        .get_image_set_metadata()
        .datastore_id(ds)
        .image_set_id(id)
        .send()
        .await
        .map_err(sdk_err("GetImageSetMetadata"))?;
    Ok(out
        .image_set_metadata_blob
        .collect()
        .await
        .context("metadata body")?
        .into_bytes()
        .to_vec())
}

async fn get_frame(client: &Client, ds: &str, image_set: &str, frame: &str) -> Result<u64> {
    let out = client
        .get_image_frame()
        .datastore_id(ds)
        .image_set_id(image_set)
        .image_frame_information(
            ImageFrameInformation::builder()
                .image_frame_id(frame)
                .build()?,
        )
        .send()
        .await
        .map_err(sdk_err("GetImageFrame"))?;
    let body = out
        .image_frame_blob
        .collect()
        .await
        .context("frame body")?
        .into_bytes();
    Ok(body.len() as u64)
}

async fn search(
    client: &Client,
    ds: &str,
    criteria: Option<SearchCriteria>,
    token: Option<String>,
) -> Result<(
    Vec<aws_sdk_medicalimaging::types::ImageSetsMetadataSummary>,
    Option<String>,
)> {
    let out = client
        .search_image_sets()
        .datastore_id(ds)
        .set_search_criteria(criteria)
        .set_next_token(token)
        .max_results(50)
        .send()
        .await
        .map_err(sdk_err("SearchImageSets"))?;
    Ok((
        out.image_sets_metadata_summaries().to_vec(),
        out.next_token().map(str::to_string),
    ))
}

fn clients(url: &str, n: usize) -> Arc<Vec<Client>> {
    Arc::new(
        (0..n)
            .map(|_| sdk_client(url, "test", "test", HostMode::StripPrefix))
            .collect(),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = std::env::var("LIGHTBOX_BIN").context("LIGHTBOX_BIN")?;
    let work = PathBuf::from(std::env::var("BENCH_WORK").context("BENCH_WORK")?);
    let ct_dir = std::env::var("BENCH_CT_DIR").context("BENCH_CT_DIR")?;
    let rg_dir = std::env::var("BENCH_RG_DIR").context("BENCH_RG_DIR")?;
    let seconds: f64 = env_or("BENCH_SECONDS", "3").parse()?;
    let image_sets: usize = env_or("BENCH_IMAGE_SETS", "100000").parse()?;
    let data = work.join("data");

    // 1. A server, a data store, the two imports.
    let server = start_server(&bin, &data).await?;
    let admin = sdk_client(&server.url, "test", "test", HostMode::StripPrefix);
    let ds = create_active(&admin, "bench-reads").await?;
    for dir in [&ct_dir, &rg_dir] {
        let t = Instant::now();
        let status = Command::new(&bin)
            .args([
                "import",
                dir,
                "--datastore-id",
                &ds,
                "--endpoint",
                &server.url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("lightbox import {dir} failed: {status}");
        }
        println!("imported {dir} in {:.1} s", t.elapsed().as_secs_f64());
    }

    // 2. The stored frames, found through the API.
    let (summaries, _) = search(&admin, &ds, None, None).await?;
    let mut ct = vec![];
    let mut rg = vec![];
    let blob_dir = data.join("blobs");
    for s in &summaries {
        let doc = parse_document(&get_metadata(&admin, &ds, s.image_set_id()).await?)?;
        for (rows, id) in document_frames(&doc) {
            let path = blob_dir.join(format!("datastores/{ds}/frames/{id}"));
            let size = std::fs::metadata(&path)
                .with_context(|| format!("stored frame file {}", path.display()))?
                .len();
            let f = Frame {
                image_set: s.image_set_id().to_string(),
                id,
                path,
                size,
            };
            if rows == 512 { ct.push(f) } else { rg.push(f) }
        }
    }
    if ct.is_empty() || rg.is_empty() {
        bail!(
            "expected CT and radiograph frames, found {} and {}",
            ct.len(),
            rg.len()
        );
    }
    let avg = |v: &[Frame]| v.iter().map(|f| f.size).sum::<u64>() as f64 / v.len() as f64;
    println!(
        "frames: CT 512x512 x{} ({:.0} KB stored each), radiograph x{} ({:.0} KB stored each)",
        ct.len(),
        avg(&ct) / 1e3,
        rg.len(),
        avg(&rg) / 1e3
    );

    // 3. GetImageFrame through the SDK against the same files read from disk.
    println!();
    println!("## GetImageFrame vs. reading the stored frame file (same process, same concurrency)");
    println!();
    println!(
        "| frames | clients | API frames/s | API MB/s | API p50 ms | API p99 ms | disk frames/s | disk MB/s | disk p50 ms | disk p99 ms | API ÷ disk (throughput) | CPU µs/frame: server, SDK clients, disk reads | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, frames) in [("CT 512x512", &ct), ("radiograph", &rg)] {
        let frames = Arc::new(frames.clone());
        for &n in &[1usize, 16, 64] {
            let cs = clients(&server.url, n);
            // Warm-up: connections, page cache, lastAccessedAt touches.
            {
                let (cs, frames, ds) = (cs.clone(), frames.clone(), ds.clone());
                measure(n, 0.5, move |c, i| {
                    let (cs, frames, ds) = (cs.clone(), frames.clone(), ds.clone());
                    async move {
                        let f = &frames[(c * 7 + i) % frames.len()];
                        get_frame(&cs[c], &ds, &f.image_set, &f.id).await
                    }
                })
                .await;
            }
            let api = {
                let (cs, frames, ds) = (cs.clone(), frames.clone(), ds.clone());
                measure(n, seconds, move |c, i| {
                    let (cs, frames, ds) = (cs.clone(), frames.clone(), ds.clone());
                    async move {
                        let f = &frames[(c * 7 + i) % frames.len()];
                        get_frame(&cs[c], &ds, &f.image_set, &f.id).await
                    }
                })
                .await
            };
            let disk = {
                let frames = frames.clone();
                measure(n, seconds, move |c, i| {
                    let frames = frames.clone();
                    async move {
                        let f = &frames[(c * 7 + i) % frames.len()];
                        Ok(tokio::fs::read(&f.path).await?.len() as u64)
                    }
                })
                .await
            };
            println!(
                "| {name} | {n} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.0}, {:.0}, {:.0} | {} |",
                api.rate(),
                api.mb_per_s(),
                api.ms(0.5),
                api.ms(0.99),
                disk.rate(),
                disk.mb_per_s(),
                disk.ms(0.5),
                disk.ms(0.99),
                api.rate() / disk.rate(),
                api.server_us(),
                api.client_us(),
                disk.client_us(),
                api.errors + disk.errors,
            );
        }
    }

    // 4. 100,000 image sets: stop, generate, restart.
    server.stop().await?;
    let gen_start = SystemTime::now();
    let t = Instant::now();
    let out = Command::new(&bin)
        .args(["generate-image-sets", "--datastore-id", &ds, "--count"])
        .arg(image_sets.to_string())
        .arg("--data-dir")
        .arg(&data)
        .args(["--seed", "1"])
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        bail!("generate-image-sets failed: {}", out.status);
    }
    let gen_secs = t.elapsed().as_secs_f64();
    let gen_end = SystemTime::now();
    println!();
    println!(
        "generate-image-sets --count {image_sets}: {gen_secs:.1} s ({:.0} image sets/s); {}",
        image_sets as f64 / gen_secs,
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let server = start_server(&bin, &data).await?;
    let admin = sdk_client(&server.url, "test", "test", HostMode::StripPrefix);

    // Patient IDs and image set IDs to query, from a walk over the first pages.
    let (first, _) = search(&admin, &ds, None, None).await?;
    let patients: Arc<Vec<String>> = Arc::new(
        first
            .iter()
            .filter_map(|s| s.dicom_tags().and_then(|t| t.dicom_patient_id()))
            .map(str::to_string)
            .collect(),
    );
    // Walk every page once (default sort), timing it; keep the token of page 201.
    let t = Instant::now();
    let (mut pages, mut total, mut token, mut deep_token) = (0usize, 0usize, None, None);
    let mut ids = vec![];
    loop {
        let (items, next) = search(&admin, &ds, None, token.clone()).await?;
        pages += 1;
        total += items.len();
        if ids.len() < 2000 {
            ids.extend(items.iter().map(|s| s.image_set_id().to_string()));
        }
        if pages == 200 {
            deep_token = next.clone();
        }
        match next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    let walk_secs = t.elapsed().as_secs_f64();
    println!(
        "walked all {total} image sets in {pages} pages of 50 (default sort) in {walk_secs:.1} s ({:.2} ms/page)",
        walk_secs * 1000.0 / pages as f64
    );
    let ids = Arc::new(ids);
    let deep_token = deep_token.context("fewer than 201 pages")?;

    let between = |a: SystemTime, b: SystemTime| {
        let ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let span = ms(b) - ms(a);
        (
            DateTime::from_millis(ms(a) + span / 4),
            DateTime::from_millis(ms(a) + span / 2),
        )
    };
    let (lo, hi) = between(gen_start, gen_end);
    let updated_between = SearchCriteria::builder()
        .filters(
            SearchFilter::builder()
                .values(SearchByAttributeValue::UpdatedAt(lo))
                .values(SearchByAttributeValue::UpdatedAt(hi))
                .operator(Operator::Between)
                .build()?,
        )
        .build();
    let by_study_date = SearchCriteria::builder()
        .sort(
            Sort::builder()
                .sort_field(SortField::DicomStudyDateAndTime)
                .sort_order(SortOrder::Asc)
                .build()?,
        )
        .build();
    let study_dates_between = SearchCriteria::builder()
        .filters(
            SearchFilter::builder()
                .values(SearchByAttributeValue::DicomStudyDateAndTime(
                    DicomStudyDateAndTime::builder()
                        .dicom_study_date("20200101")
                        .build()?,
                ))
                .values(SearchByAttributeValue::DicomStudyDateAndTime(
                    DicomStudyDateAndTime::builder()
                        .dicom_study_date("20200131")
                        .dicom_study_time("235959")
                        .build()?,
                ))
                .operator(Operator::Between)
                .build()?,
        )
        .build();

    println!();
    println!("## SearchImageSets and GetImageSetMetadata with {total} image sets");
    println!();
    println!(
        "| request | clients | requests/s | p50 ms | p99 ms | results (first call) | CPU µs/request: server, SDK clients | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    type Query = (
        &'static str,
        Arc<dyn Fn(usize) -> (Option<SearchCriteria>, Option<String>) + Send + Sync>,
    );
    let queries: Vec<Query> = vec![
        (
            "`{}` first page (updatedAt DESC)",
            Arc::new(|_| (None, None)),
        ),
        (
            "EQUAL DICOMPatientId",
            Arc::new({
                let patients = patients.clone();
                move |i| {
                    let p = &patients[i % patients.len()];
                    (
                        Some(
                            SearchCriteria::builder()
                                .filters(
                                    SearchFilter::builder()
                                        .values(SearchByAttributeValue::DicomPatientId(p.clone()))
                                        .operator(Operator::Equal)
                                        .build()
                                        .expect("filter"),
                                )
                                .build(),
                        ),
                        None,
                    )
                }
            }),
        ),
        (
            "BETWEEN updatedAt (a quarter of the set)",
            Arc::new(move |_| (Some(updated_between.clone()), None)),
        ),
        (
            "BETWEEN DICOMStudyDateAndTime (one month)",
            Arc::new(move |_| (Some(study_dates_between.clone()), None)),
        ),
        (
            "sort DICOMStudyDateAndTime ASC",
            Arc::new(move |_| (Some(by_study_date.clone()), None)),
        ),
        (
            "page 201 (nextToken after 10,000)",
            Arc::new(move |_| (None, Some(deep_token.clone()))),
        ),
    ];
    for (name, q) in queries {
        let (c0, t0) = q(0);
        let (first, _) = search(&admin, &ds, c0, t0).await?;
        for &n in &[1usize, 16] {
            let cs = clients(&server.url, n);
            let (q2, ds2) = (q.clone(), ds.clone());
            let m = measure(n, seconds, move |c, i| {
                let (cs, q, ds) = (cs.clone(), q2.clone(), ds2.clone());
                async move {
                    let (criteria, token) = q(c * 1000 + i);
                    let (items, _) = search(&cs[c], &ds, criteria, token).await?;
                    Ok(items.len() as u64)
                }
            })
            .await;
            println!(
                "| SearchImageSets {name} | {n} | {:.0} | {:.2} | {:.2} | {} | {:.0}, {:.0} | {} |",
                m.rate(),
                m.ms(0.5),
                m.ms(0.99),
                first.len(),
                m.server_us(),
                m.client_us(),
                m.errors
            );
        }
    }
    // GetImageSetMetadata: generated image sets (small documents), then the imported CT series.
    // The generated documents' mean size and instance count, over the first 200.
    let (mut gen_bytes, mut gen_instances) = (0usize, 0usize);
    for id in ids.iter().take(200) {
        let gz = get_metadata(&admin, &ds, id).await?;
        gen_bytes += gz.len();
        gen_instances += document_frames(&parse_document(&gz)?).len();
    }
    let sampled = ids.len().clamp(1, 200) as f64;
    let ct_doc = get_metadata(&admin, &ds, &ct[0].image_set).await?;
    for (name, targets) in [
        (
            format!(
                "GetImageSetMetadata, 2000 generated image sets (mean {:.1} instances, {:.1} KB gzip)",
                gen_instances as f64 / sampled,
                gen_bytes as f64 / sampled / 1e3
            ),
            ids.clone(),
        ),
        (
            format!(
                "GetImageSetMetadata, imported CT series ({} instances, {:.1} KB gzip)",
                ct.len(),
                ct_doc.len() as f64 / 1e3
            ),
            Arc::new(vec![ct[0].image_set.clone()]),
        ),
    ] {
        for &n in &[1usize, 16] {
            let cs = clients(&server.url, n);
            let (targets, ds2) = (targets.clone(), ds.clone());
            let m = measure(n, seconds, move |c, i| {
                let (cs, targets, ds) = (cs.clone(), targets.clone(), ds2.clone());
                async move {
                    let id = &targets[(c * 997 + i) % targets.len()];
                    Ok(get_metadata(&cs[c], &ds, id).await?.len() as u64)
                }
            })
            .await;
            println!(
                "| {name} | {n} | {:.0} | {:.2} | {:.2} | | {:.0}, {:.0} | {} |",
                m.rate(),
                m.ms(0.5),
                m.ms(0.99),
                m.server_us(),
                m.client_us(),
                m.errors
            );
        }
    }
    server.stop().await?;
    Ok(())
}
