//! `lightbox import DIR --datastore-id ID`: uploads a local folder to a running Lightbox's
//! built-in S3, starts a DICOM import job, shows progress, and prints the job's summary (image
//! sets created, files that failed and why). It is an ordinary client of the public APIs
//! (aws-sdk-s3 and aws-sdk-medicalimaging over plain HTTP), so it works against any Lightbox.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_medicalimaging::types::JobStatus;
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Arguments of `lightbox import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// Folder of DICOM P10 files (searched recursively).
    pub dir: PathBuf,
    /// The ACTIVE data store to import into.
    #[arg(long)]
    pub datastore_id: String,
    /// The running Lightbox.
    #[arg(
        long,
        env = "LIGHTBOX_ENDPOINT",
        default_value = "http://127.0.0.1:8899"
    )]
    pub endpoint: String,
    /// Access key id (default: the development credentials test/test).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "test")]
    pub access_key_id: String,
    /// Secret access key.
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "test",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub secret_access_key: String,
    /// Region to sign for.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Bucket of the built-in S3 to stage the files in (created if missing).
    #[arg(long, default_value = "lightbox-import")]
    pub bucket: String,
    /// Name of the import job.
    #[arg(long)]
    pub job_name: Option<String>,
}

fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn credentials(args: &ImportArgs) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        &args.access_key_id,
        &args.secret_access_key,
        None,
        None,
        "lightbox-import",
    )
}

/// Runs `lightbox import`; returns an error (exit code 1) if the job FAILED.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let files = files_under(&args.dir)?;
    if files.is_empty() {
        bail!("{} holds no files", args.dir.display());
    }
    let http = aws_smithy_http_client::Builder::new().build_http();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(args.region.clone()))
            .endpoint_url(&args.endpoint)
            .force_path_style(true)
            .credentials_provider(credentials(&args))
            .http_client(http.clone())
            .build(),
    );
    let mi = aws_sdk_medicalimaging::Client::from_conf(
        aws_sdk_medicalimaging::Config::builder()
            .behavior_version(aws_sdk_medicalimaging::config::BehaviorVersion::latest())
            .region(aws_sdk_medicalimaging::config::Region::new(
                args.region.clone(),
            ))
            .endpoint_url(&args.endpoint)
            .credentials_provider(credentials(&args))
            .http_client(http)
            .build(),
    );

    // Stage the files in the built-in S3.
    match s3.head_bucket().bucket(&args.bucket).send().await {
        Ok(_) => {}
        Err(_) => {
            s3.create_bucket()
                .bucket(&args.bucket)
                .send()
                .await
                .context("cannot create the staging bucket (is the built-in S3 enabled?)")?;
        }
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("import-{run_id}/");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "uploading {pos:>7}/{len:7} bytes [{bar:40}] {binary_bytes_per_sec} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let uploads = futures::stream::iter(files.iter().map(|path| {
        let s3 = s3.clone();
        let bar = bar.clone();
        let rel = path
            .strip_prefix(&args.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let key = format!("{prefix}in/{rel}");
        let bucket = args.bucket.clone();
        async move {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let body = ByteStream::from_path(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body)
                .send()
                .await
                .with_context(|| format!("upload of {} failed", path.display()))?;
            bar.inc(len);
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    bar.finish_and_clear();
    for u in uploads {
        u?;
    }
    eprintln!("uploaded {} files ({total} bytes)", files.len());

    // Start the job and follow it.
    let input = format!("s3://{}/{prefix}in/", args.bucket);
    let output = format!("s3://{}/{prefix}out/", args.bucket);
    let started = mi
        .start_dicom_import_job()
        .datastore_id(&args.datastore_id)
        .set_job_name(args.job_name.clone())
        .data_access_role_arn("arn:aws:iam::000000000000:role/lightbox-import")
        .client_token(&run_id)
        .input_s3_uri(&input)
        .output_s3_uri(&output)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("StartDICOMImportJob failed: {}", describe(&e)))?;
    let job_id = started.job_id().to_owned();
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} import job {msg} {elapsed}").expect("template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    let props = loop {
        let props = mi
            .get_dicom_import_job()
            .datastore_id(&args.datastore_id)
            .job_id(&job_id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetDICOMImportJob failed: {}", describe(&e)))?
            .job_properties
            .context("GetDICOMImportJob returned no jobProperties")?;
        spinner.set_message(format!("{job_id} {}", props.job_status().as_str()));
        if matches!(props.job_status(), JobStatus::Completed | JobStatus::Failed) {
            break props;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    spinner.finish_and_clear();

    // Summary from the job's outputs.
    let out = props.output_s3_uri().to_owned();
    let read = |name: &'static str| {
        let s3 = s3.clone();
        let out = out.clone();
        async move {
            let rest = out.strip_prefix("s3://").unwrap_or(&out);
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let obj = s3
                .get_object()
                .bucket(bucket)
                .key(format!("{key}{name}"))
                .send()
                .await
                .ok()?;
            let bytes = obj.body.collect().await.ok()?.into_bytes();
            String::from_utf8(bytes.to_vec()).ok()
        }
    };
    println!("import job {job_id}: {}", props.job_status().as_str());
    if let Some(m) = props.message() {
        println!("  message: {m}");
    }
    if let Some(manifest) = read("job-output-manifest.json").await
        && let Ok(v) = serde_json::from_str::<Value>(&manifest)
    {
        let s = &v["jobSummary"];
        println!(
            "  files: {} scanned, {} imported, {} failed (file problems), {} failed (server errors)",
            s["numberOfScannedFiles"],
            s["numberOfImportedFiles"],
            s["numberOfFilesWithCustomerError"],
            s["numberOfFilesWithServerError"]
        );
        let sets = s["imageSetsSummary"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!("  image sets: {}", sets.len());
        for set in sets {
            println!(
                "    {} version {} {} ({} instances)",
                set["imageSetId"].as_str().unwrap_or(""),
                set["imageSetVersion"],
                if set["isPrimary"] == Value::Bool(true) {
                    "primary"
                } else {
                    "non-primary"
                },
                set["numberOfMatchedSOPInstances"]
            );
        }
    }
    if let Some(failures) = read("FAILURE/failure.ndjson").await {
        let lines: Vec<Value> = failures
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if !lines.is_empty() {
            println!("  failed files:");
            for l in lines {
                let file = l["inputFile"].as_str().unwrap_or("");
                let file = file.strip_prefix(&format!("{prefix}in/")).unwrap_or(file);
                println!(
                    "    {file}: {}",
                    l["exception"]["message"].as_str().unwrap_or("")
                );
            }
        }
    }
    println!("  outputs: {out}");
    if props.job_status() == &JobStatus::Failed {
        bail!("the import job FAILED");
    }
    Ok(())
}

fn describe<E: aws_sdk_medicalimaging::error::ProvideErrorMetadata>(
    e: &aws_sdk_medicalimaging::error::SdkError<
        E,
        aws_sdk_medicalimaging::config::http::HttpResponse,
    >,
) -> String {
    match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("")
        ),
        None => format!("{e}"),
    }
}
