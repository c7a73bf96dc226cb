//! The `lightbox-test-s3` binary: prints its URL when ready, requires SigV4, creates `--bucket`s,
//! and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn standalone_server_prints_url_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lightbox-test-s3"))
        .args(["--root"])
        .arg(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--access-key",
            "k",
            "--secret-key",
            "s",
        ])
        .args(["--bucket", "made-at-start"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim();
    let addr = url.strip_prefix("http://").expect(url);
    assert!(dir.path().join("made-at-start").is_dir());

    // An unsigned request is refused: authentication is on.
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET /made-at-start HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
