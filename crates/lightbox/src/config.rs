//! Server configuration: defaults, and parsing of the credential list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The listener when none is given: loopback only, port 8899.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8899";

/// Everything a server needs to start. Build it with `Config::new` and adjust fields.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Region named in ARNs (clients may sign for any region).
    pub region: String,
    /// Account id named in ARNs.
    pub account_id: String,
    /// (access key id, secret access key) pairs; empty means the development default
    /// `test`/`test`, which is only accepted on a loopback listener.
    pub credentials: Vec<(String, String)>,
    /// Maximum number of data stores that are not DELETED.
    pub max_datastores: u32,
    /// How long a data store stays CREATING / DELETING.
    pub transition_delay: Duration,
    /// Largest accepted request body, in bytes.
    pub max_request_body: usize,
    /// How long background work stays leased to this node without a heartbeat; after a crash,
    /// other nodes take the work over once it expires.
    pub job_lease: Duration,
}

impl Config {
    /// Defaults for tests and embedding: an ephemeral loopback port.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: data_dir.into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            credentials: Vec::new(),
            max_datastores: 100,
            transition_delay: Duration::from_millis(500),
            max_request_body: 16 * 1024 * 1024,
            job_lease: Duration::from_secs(30),
        }
    }
}

/// Parses `AKID:SECRET[,AKID2:SECRET2…]`.
pub fn parse_credentials(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, s) = pair.split_once(':').ok_or_else(|| {
                "credentials must be AKID:SECRET pairs separated by commas".to_string()
            })?;
            if k.is_empty() || s.is_empty() {
                return Err("access key id and secret must both be non-empty".into());
            }
            Ok((k.to_owned(), s.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credential_lists() {
        assert_eq!(
            parse_credentials("a:b, c:d:e").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        assert!(parse_credentials("nocolon").is_err());
        assert!(parse_credentials(":secret").is_err());
        assert!(parse_credentials("").unwrap().is_empty());
    }
}
