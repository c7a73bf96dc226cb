//! Extraction of the signature parameters from the Authorization header or a presigned query.

use crate::error::{AuthError, shown};
use crate::timestamp::{format_amz_date, parse_amz_date, parse_http_date};
use http::HeaderMap;
use percent_encoding::percent_decode_str;

pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Longest lifetime of a presigned URL (7 days), as for every AWS service.
pub(crate) const MAX_EXPIRES: u64 = 604_800;

/// The signature parameters of a request, independent of where they were carried.
#[derive(Debug)]
pub(crate) struct SignatureParams {
    pub access_key_id: String,
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    /// The lower-cased `SignedHeaders` value as it goes into the canonical request.
    pub signed_headers_line: String,
    pub signature: String,
    /// Request time, Unix seconds.
    pub request_time: i64,
    /// Request time as `YYYYMMDDTHHMMSSZ` (the string-to-sign form).
    pub amz_date: String,
    /// `Some(seconds)` for presigned URLs.
    pub expires: Option<u64>,
}

fn incomplete(msg: impl Into<String>) -> AuthError {
    AuthError::IncompleteSignature(msg.into())
}

/// Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` plus the
/// request date header.
pub(crate) fn from_authorization(
    value: &[u8],
    headers: &HeaderMap,
) -> Result<SignatureParams, AuthError> {
    let value = std::str::from_utf8(value)
        .map_err(|_| incomplete("Authorization header is not valid UTF-8."))?
        .trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported Authorization algorithm '{}'; only '{ALGORITHM}' is supported.",
            shown(algorithm)
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    // Parameters are separated by ", " in practice; bare "," and bare whitespace are
    // accepted too (no parameter value can contain either).
    for part in rest
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
    {
        let Some((key, val)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header: '{}'.",
                shown(part)
            )));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(val.trim()).is_some() {
            return Err(incomplete(format!(
                "Authorization header has more than one '{}' parameter.",
                key.trim()
            )));
        }
    }
    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            if !missing.is_empty() {
                missing.push(' ');
            }
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter."
            ));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing));
    };

    let (request_time, amz_date) = header_date(headers)?;
    build(
        credential,
        signed_headers,
        signature,
        request_time,
        amz_date,
        None,
    )
}

/// Reads `x-amz-date` (ISO 8601 basic) or, failing that, `date` (basic or IMF-fixdate).
fn header_date(headers: &HeaderMap) -> Result<(i64, String), AuthError> {
    if let Some(v) = headers.get("x-amz-date") {
        let s = v.to_str().unwrap_or("");
        let t = parse_amz_date(s).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z'); got '{}'.",
                shown(&String::from_utf8_lossy(v.as_bytes()))
            ))
        })?;
        return Ok((t, s.to_owned()));
    }
    if let Some(v) = headers.get("date") {
        let s = v.to_str().unwrap_or("");
        let t = parse_amz_date(s)
            .or_else(|| parse_http_date(s))
            .ok_or_else(|| {
                incomplete(format!(
                    "Date header must be an HTTP date or ISO 8601 basic format; got '{}'.",
                    shown(&String::from_utf8_lossy(v.as_bytes()))
                ))
            })?;
        return Ok((t, format_amz_date(t)));
    }
    Err(incomplete(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ))
}

/// Parses the `X-Amz-*` parameters of a presigned URL.
pub(crate) fn from_query(raw_query: &str) -> Result<SignatureParams, AuthError> {
    const NAMES: [&str; 6] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ];
    let mut found: [Option<String>; 6] = Default::default();
    for pair in raw_query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode_str(name).decode_utf8_lossy();
        if let Some(i) = NAMES.iter().position(|n| *n == name) {
            let value = percent_decode_str(value).decode_utf8_lossy().into_owned();
            if found[i].replace(value).is_some() {
                return Err(incomplete(format!(
                    "Query-string authentication has more than one '{}' parameter.",
                    NAMES[i]
                )));
            }
        }
    }
    let [
        Some(algorithm),
        Some(credential),
        Some(date),
        Some(expires),
        Some(signed),
        Some(signature),
    ] = found
    else {
        return Err(incomplete(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "X-Amz-Algorithm only supports '{ALGORITHM}'; got '{}'.",
            shown(&algorithm)
        )));
    }
    let request_time = parse_amz_date(&date).ok_or_else(|| {
        incomplete(format!(
            "X-Amz-Date must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z'); got '{}'.",
            shown(&date)
        ))
    })?;
    let expires = match expires.parse::<u64>() {
        Ok(n) if (1..=MAX_EXPIRES).contains(&n) && expires.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return Err(incomplete(format!(
                "X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES}; got '{}'.",
                shown(&expires)
            )));
        }
    };
    build(
        &credential,
        &signed,
        &signature,
        request_time,
        date.clone(),
        Some(expires),
    )
}

/// A region as botocore accepts it: `[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?`.
fn valid_region(region: &str) -> bool {
    let b = region.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn build(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    request_time: i64,
    amz_date: String,
    expires: Option<u64>,
) -> Result<SignatureParams, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, scope_date, region, service, terminator] = parts.as_slice() else {
        return Err(incomplete(format!(
            "Credential must have the form '<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request'; got '{}'.",
            shown(credential)
        )));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential must contain an access key id."));
    }
    if scope_date.len() != 8 || !scope_date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential scope date must be in YYYYMMDD format; got '{}'.",
            shown(scope_date)
        )));
    }
    if !valid_region(region) {
        return Err(incomplete("Credential should be scoped to a valid region."));
    }
    if service.is_empty() {
        return Err(incomplete(
            "Credential should be scoped to a valid service.",
        ));
    }
    if *terminator != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            shown(terminator)
        )));
    }
    let list: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    for name in &list {
        if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(incomplete(format!(
                "SignedHeaders contains an invalid header name: '{}'.",
                shown(signed_headers)
            )));
        }
    }
    if !list.iter().any(|h| h.eq_ignore_ascii_case("host")) {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(SignatureParams {
        access_key_id: (*access_key_id).to_owned(),
        scope_date: (*scope_date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers: list.iter().map(|h| h.to_ascii_lowercase()).collect(),
        signed_headers_line: signed_headers.to_ascii_lowercase(),
        signature: signature.to_owned(),
        request_time,
        amz_date,
        expires,
    })
}
