//! The `lightbox` command: `lightbox serve` runs the HealthImaging-compatible server.

mod generate;
mod import_cli;
mod storage_args;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lightbox::{Config, DEFAULT_LISTEN, parse_credentials};

#[derive(Parser)]
#[command(
    name = "lightbox",
    version,
    about = "An AWS HealthImaging-compatible medical imaging store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the AWS HealthImaging API.
    Serve(Box<ServeArgs>),
    /// Import a local folder of DICOM files into a data store of a running Lightbox.
    Import(import_cli::ImportArgs),
    /// Write N synthetic image sets (patients, studies, series; metadata documents, no pixel
    /// data) straight into a data store's storage, for benchmarks. Stop the server first when
    /// it uses the embedded catalog; the data store must exist and be ACTIVE.
    GenerateImageSets(generate::GenerateArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "LIGHTBOX_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[command(flatten)]
    storage: storage_args::StorageArgs,
    /// Region named in ARNs.
    #[arg(long, env = "LIGHTBOX_REGION", default_value = "us-east-1")]
    region: String,
    /// Account id named in ARNs (12 digits).
    #[arg(long, env = "LIGHTBOX_ACCOUNT_ID", default_value = "000000000000", value_parser = parse_account_id)]
    account_id: String,
    /// Access keys as AKID:SECRET[,AKID2:SECRET2]. Without it, test/test works on loopback only.
    #[arg(long, env = "LIGHTBOX_CREDENTIALS", value_parser = parse_credential_list, hide_env_values = true)]
    credentials: Option<CredentialList>,
    /// Maximum number of data stores (not counting DELETED ones).
    #[arg(long, env = "LIGHTBOX_MAX_DATASTORES", default_value_t = 100)]
    max_datastores: u32,
    /// Milliseconds a data store stays CREATING or DELETING.
    #[arg(long, env = "LIGHTBOX_TRANSITION_DELAY_MS", default_value_t = 500)]
    transition_delay_ms: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "LIGHTBOX_MAX_REQUEST_BODY", default_value_t = 16 * 1024 * 1024)]
    max_request_body: usize,
    /// Seconds a client may take to send a request body.
    #[arg(long, env = "LIGHTBOX_BODY_TIMEOUT_SECS", default_value_t = 60)]
    body_timeout_secs: u64,
    /// Milliseconds background work stays leased to this node without a heartbeat.
    #[arg(long, env = "LIGHTBOX_JOB_LEASE_MS", default_value_t = 30_000)]
    job_lease_ms: u64,
    /// Serve the built-in S3 endpoint (buckets under --data-dir/s3) on the same listener.
    #[arg(long, env = "LIGHTBOX_BUILTIN_S3", default_value_t = true, action = clap::ArgAction::Set)]
    builtin_s3: bool,
    /// External S3 endpoint URL import jobs read and write s3:// URIs on (default: the built-in S3).
    #[arg(long, env = "LIGHTBOX_IMPORT_S3_ENDPOINT")]
    import_s3_endpoint: Option<String>,
    /// Region of --import-s3-endpoint (default us-east-1).
    #[arg(long, env = "LIGHTBOX_IMPORT_S3_REGION")]
    import_s3_region: Option<String>,
    /// Access key id for --import-s3-endpoint (default: AWS_ACCESS_KEY_ID).
    #[arg(long, env = "LIGHTBOX_IMPORT_S3_ACCESS_KEY_ID")]
    import_s3_access_key_id: Option<String>,
    /// Secret access key for --import-s3-endpoint.
    #[arg(
        long,
        env = "LIGHTBOX_IMPORT_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    import_s3_secret_access_key: Option<String>,
    /// Use virtual-hosted-style addressing (bucket.host) on --import-s3-endpoint.
    #[arg(long, env = "LIGHTBOX_IMPORT_S3_VIRTUAL_HOSTED_STYLE")]
    import_s3_virtual_hosted_style: bool,
    /// Files per import job.
    #[arg(long, env = "LIGHTBOX_IMPORT_MAX_FILES", default_value_t = 5000)]
    import_max_files: u64,
    /// Total input bytes per import job.
    #[arg(long, env = "LIGHTBOX_IMPORT_MAX_TOTAL_BYTES", default_value_t = 10 << 30)]
    import_max_total_bytes: u64,
    /// Bytes per DICOM P10 file.
    #[arg(long, env = "LIGHTBOX_IMPORT_MAX_FILE_BYTES", default_value_t = 10 << 30)]
    import_max_file_bytes: u64,
    /// Nested folders per import job.
    #[arg(
        long,
        env = "LIGHTBOX_IMPORT_MAX_NESTED_FOLDERS",
        default_value_t = 10_000
    )]
    import_max_nested_folders: u64,
    /// Bytes of one image set's metadata document.
    #[arg(long, env = "LIGHTBOX_IMPORT_MAX_METADATA_BYTES", default_value_t = 50 << 20)]
    import_max_metadata_bytes: u64,
    /// Import jobs SUBMITTED or IN_PROGRESS per data store.
    #[arg(long, env = "LIGHTBOX_IMPORT_MAX_RUNNING_JOBS", default_value_t = 100)]
    import_max_running_jobs: u32,
    /// UpdateImageSetMetadata: largest total size (bytes) of the decoded update documents.
    #[arg(long, env = "LIGHTBOX_MAX_UPDATE_PAYLOAD_BYTES", default_value_t = 10 * 1024)]
    max_update_payload_bytes: u64,
    /// CopyImageSet: most image frames one copy may select.
    #[arg(long, env = "LIGHTBOX_MAX_COPY_FRAMES", default_value_t = 1000)]
    max_copy_frames: usize,
    /// Days finished background jobs (changes, STOW-RS requests, import work) are kept before
    /// the hourly sweep deletes them (import jobs' own records are kept).
    #[arg(long, env = "LIGHTBOX_JOB_RETENTION_DAYS", default_value_t = 7)]
    job_retention_days: u64,
    /// Memory (bytes) the files being imported at once may take on this node (a file needs
    /// about three times its size).
    #[arg(long, env = "LIGHTBOX_IMPORT_MEMORY_BUDGET", default_value_t = 2 << 30)]
    import_memory_budget: u64,
    /// Largest STOW-RS request body in bytes (each part is at most --import-max-file-bytes).
    #[arg(long, env = "LIGHTBOX_STOW_MAX_BODY_BYTES", default_value_t = 1 << 30)]
    stow_max_body_bytes: u64,
    /// Files parsed and transcoded at once on this node (default: the number of cores).
    #[arg(long, env = "LIGHTBOX_IMPORT_CONCURRENCY")]
    import_concurrency: Option<usize>,
    /// Testing aid: seconds added to the service's clock (storage tiers after 30 days…).
    /// Request signatures are still checked against the real time.
    #[arg(
        long,
        env = "LIGHTBOX_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        hide = true
    )]
    clock_offset_secs: u64,
}

/// The whole `AKID:SECRET[,…]` list as one value (clap would otherwise treat a `Vec` as
/// repeated occurrences of the flag).
#[derive(Clone, Debug)]
struct CredentialList(Vec<(String, String)>);

fn parse_credential_list(s: &str) -> Result<CredentialList, String> {
    parse_credentials(s).map(CredentialList)
}

fn parse_account_id(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err("an account id is 12 digits".into())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIGHTBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
                // s3s and s3s-fs put keys, bucket names and paths in their events and spans.
                .add_directive("s3s=off".parse().expect("valid directive"))
                .add_directive("s3s_fs=off".parse().expect("valid directive")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Import(args) => import_cli::run(args).await,
        Command::GenerateImageSets(args) => generate::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lightbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config {
        listen: args.listen,
        data_dir: args.storage.data_dir.clone(),
        region: args.region,
        account_id: args.account_id,
        credentials: args.credentials.map(|c| c.0).unwrap_or_default(),
        max_datastores: args.max_datastores,
        transition_delay: Duration::from_millis(args.transition_delay_ms),
        max_request_body: args.max_request_body,
        job_lease: Duration::from_millis(args.job_lease_ms),
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        s3: args.storage.s3(),
        catalog: args.storage.catalog,
        blob_store: args.storage.blob_store,
        builtin_s3: args.builtin_s3,
        import_s3: lightbox::S3Options {
            endpoint: args.import_s3_endpoint,
            region: args.import_s3_region,
            access_key_id: args.import_s3_access_key_id,
            secret_access_key: args.import_s3_secret_access_key,
            virtual_hosted_style: args.import_s3_virtual_hosted_style,
        },
        import: lightbox_service::ImportConfig {
            max_running_jobs: args.import_max_running_jobs,
            max_files: args.import_max_files,
            max_total_bytes: args.import_max_total_bytes,
            max_file_bytes: args.import_max_file_bytes,
            max_nested_folders: args.import_max_nested_folders,
            max_metadata_bytes: args.import_max_metadata_bytes,
            memory_budget: args.import_memory_budget,
            file_concurrency: args
                .import_concurrency
                .unwrap_or_else(|| lightbox_service::ImportConfig::default().file_concurrency),
            stow_max_body_bytes: args.stow_max_body_bytes,
        },
        max_update_payload_bytes: args.max_update_payload_bytes,
        max_copy_frames: args.max_copy_frames,
        job_retention: Duration::from_secs(args.job_retention_days * 86_400),
        clock_offset: Duration::from_secs(args.clock_offset_secs),
    };
    let catalog = config
        .catalog
        .as_deref()
        .map(lightbox::redact_url)
        .unwrap_or_else(|| config.data_dir.join("catalog.db").display().to_string());
    let blobs = config
        .blob_store
        .clone()
        .unwrap_or_else(|| config.data_dir.join("blobs").display().to_string());
    let builtin_s3 = config.builtin_s3.then(|| config.data_dir.join("s3"));
    let server = lightbox::start(config).await?;
    // The ready line. Write errors are ignored: whoever started us may have stopped reading
    // stdout after it, and a server must not die of that.
    let mut ready = format!(
        "Lightbox is serving the AWS HealthImaging API at {} (catalog: {catalog}; blobs: {blobs})",
        server.endpoint_url(),
    );
    if let Some(buckets) = builtin_s3 {
        ready.push_str(&format!(
            "\nBuilt-in S3 at the same URL (path-style, same credentials; buckets in {})",
            buckets.display()
        ));
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ready}");
        let _ = out.flush();
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_including_credential_lists() {
        let cli = Cli::try_parse_from([
            "lightbox",
            "serve",
            "--credentials",
            "AKID1:s1,AKID2:s2",
            "--listen",
            "0.0.0.0:9000",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.credentials.unwrap().0.len(), 2);
        assert!(Cli::try_parse_from(["lightbox", "serve", "--credentials", "nocolon"]).is_err());
        assert!(Cli::try_parse_from(["lightbox", "serve", "--account-id", "12"]).is_err());
    }

    #[test]
    fn builtin_s3_is_on_by_default_and_can_be_turned_off() {
        let Command::Serve(args) = Cli::try_parse_from(["lightbox", "serve"]).unwrap().command
        else {
            panic!("not serve")
        };
        assert!(args.builtin_s3);
        assert!(args.import_s3_endpoint.is_none());
        let Command::Serve(args) = Cli::try_parse_from([
            "lightbox",
            "serve",
            "--builtin-s3",
            "false",
            "--import-s3-endpoint",
            "http://minio:9000",
            "--import-s3-virtual-hosted-style",
        ])
        .unwrap()
        .command
        else {
            panic!("not serve")
        };
        assert!(!args.builtin_s3);
        assert_eq!(
            args.import_s3_endpoint.as_deref(),
            Some("http://minio:9000")
        );
        assert!(args.import_s3_virtual_hosted_style);
    }
}
