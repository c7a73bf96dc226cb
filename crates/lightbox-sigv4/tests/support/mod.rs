//! Shared helpers for the integration tests: credential stores, request building, times.
#![allow(dead_code)]

use lightbox_sigv4::{AuthError, Credentials, Request, Verified, verify};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A credential store with exactly one key pair.
pub struct One(pub &'static str, pub &'static str);

impl Credentials for One {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == self.0).then(|| self.1.to_owned())
    }
}

/// AWS's example key pair used by the SigV4 test suite.
pub const SUITE: One = One("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");

/// An owned request; [`Owned::as_request`] borrows it as a [`Request`].
#[derive(Clone, Debug)]
pub struct Owned {
    pub method: String,
    pub raw_path: String,
    pub raw_query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Owned {
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Owned {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        Owned {
            method: method.to_owned(),
            raw_path: path.to_owned(),
            raw_query: query,
            headers: map,
            body: body.to_vec(),
        }
    }

    pub fn as_request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            raw_path: &self.raw_path,
            raw_query: self.raw_query.as_deref(),
            headers: &self.headers,
            body: &self.body,
        }
    }

    pub fn verify(
        &self,
        creds: &dyn Credentials,
        service: &str,
        now: SystemTime,
    ) -> Result<Verified, AuthError> {
        verify(&self.as_request(), creds, service, now)
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
}

/// `YYYYMMDDTHHMMSSZ` (UTC) as a [`SystemTime`].
pub fn at(amz: &str) -> SystemTime {
    let n = |r: std::ops::Range<usize>| amz[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    // Days from civil (Howard Hinnant), independent of the crate's own conversion.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
