//! `lightbox-test-s3`: the test S3 server (s3s-fs with SigV4) as a standalone process, for
//! multi-process tests and benchmarks. Prints its URL on one stdout line once it accepts
//! connections; stops on SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "An S3-compatible test server over a directory (a bucket is a subdirectory)")]
struct Args {
    /// Directory holding the buckets (created if missing).
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Access key id clients must sign with.
    #[arg(long, default_value = lightbox_testkit::DEFAULT_ACCESS_KEY)]
    access_key: String,
    /// Secret access key clients must sign with.
    #[arg(long, default_value = lightbox_testkit::DEFAULT_SECRET_KEY, hide_default_value = true)]
    secret_key: String,
    /// Buckets to create before serving (repeatable).
    #[arg(long = "bucket")]
    buckets: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("creating {}", args.root.display()))?;
    for b in &args.buckets {
        anyhow::ensure!(
            !b.is_empty() && !b.contains(['/', '\\']) && b != "." && b != "..",
            "invalid bucket name {b:?}"
        );
        std::fs::create_dir_all(args.root.join(b))?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let server = lightbox_testkit::serve(
        listener,
        &args.root,
        &args.access_key,
        &args.secret_key,
        stop_signal(),
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}")?;
    out.flush()?;
    drop(out);
    server.await
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
