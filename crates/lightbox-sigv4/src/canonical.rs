//! Canonical-request building for SigV4 on non-S3 services (URI, query, headers).

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

/// Everything except the RFC 3986 unreserved set `A-Za-z0-9-_.~`.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// As [`QUERY_SET`], but `/` separates path segments and stays literal.
const PATH_SET: &AsciiSet = &QUERY_SET.remove(b'/');

/// The canonical URI candidates for a raw (still percent-encoded) request path.
///
/// The path is normalised (dot segments removed, `//` collapsed) and then every byte
/// outside the unreserved set is percent-encoded again, so `%3A` becomes `%253A`
/// ("double encoding", used by every service except S3).
///
/// Two signers disagree on one corner: after a trailing `.` or `..` segment the Rust SDK
/// (`aws-sigv4`) keeps a trailing slash (`/a/b/..` → `/a/`, per RFC 3986 §5.2.4) while
/// botocore drops it (`/a`). When the two readings differ both are returned; the first
/// is the aws-sigv4 one.
pub(crate) fn canonical_uris(raw_path: &str) -> Vec<String> {
    let rfc = normalize_rfc(raw_path);
    let boto = normalize_botocore(raw_path);
    let mut out = vec![encode_path(&rfc)];
    if boto != rfc {
        out.push(encode_path(&boto));
    }
    out
}

fn encode_path(path: &str) -> String {
    percent_encode(path.as_bytes(), PATH_SET).to_string()
}

/// aws-sigv4's `normalize_uri_path`.
fn normalize_rfc(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let absolute = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    if !(absolute.contains('.') || absolute.contains("//")) {
        return absolute;
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in absolute.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let mut result = format!("/{}", kept.join("/"));
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|s| absolute.ends_with(s));
    if ends_with_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

/// botocore's `normalize_url_path` / `remove_dot_segments`.
fn normalize_botocore(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !kept.is_empty() {
        "/"
    } else {
        ""
    };
    let joined = format!("{first}{}{last}", kept.join("/"));
    if joined.is_empty() {
        "/".to_owned()
    } else {
        joined
    }
}

/// The canonical query string: each `name=value` pair percent-decoded and re-encoded
/// with the unreserved set (a literal `+` is a plus sign, not a space, and becomes
/// `%2B`), a name without `=` gets an empty value, empty pairs are dropped, and pairs
/// are sorted by encoded name, then encoded value. Pairs whose decoded name is
/// `exclude` (the presigned `X-Amz-Signature`) are left out.
pub(crate) fn canonical_query(raw_query: Option<&str>, exclude: Option<&str>) -> String {
    let Some(raw) = raw_query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name_bytes: Vec<u8> = percent_decode(name.as_bytes()).collect();
        if exclude.is_some_and(|ex| ex.as_bytes() == name_bytes.as_slice()) {
            continue;
        }
        let value_bytes: Vec<u8> = percent_decode(value.as_bytes()).collect();
        pairs.push((
            percent_encode(&name_bytes, QUERY_SET).to_string(),
            percent_encode(&value_bytes, QUERY_SET).to_string(),
        ));
    }
    pairs.sort();
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Appends the canonical header block (`name:value\n` per signed header, in the order
/// of the SignedHeaders list). Values are trimmed, inner runs of whitespace fold to one
/// space, and repeated headers are joined with `,`. Works on raw bytes, so non-UTF-8
/// values are hashed exactly as received.
pub(crate) fn write_canonical_headers(out: &mut Vec<u8>, headers: &HeaderMap, signed: &[String]) {
    for name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut first = true;
            for word in value
                .as_bytes()
                .split(u8::is_ascii_whitespace)
                .filter(|w| !w.is_empty())
            {
                if !first {
                    out.push(b' ');
                }
                out.extend_from_slice(word);
                first = false;
            }
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_encodes_label_escapes() {
        assert_eq!(
            canonical_uris(
                "/tags/arn%3Aaws%3Amedical-imaging%3Aus-east-1%3A000000000000%3Adatastore%2Fabc"
            ),
            vec![
                "/tags/arn%253Aaws%253Amedical-imaging%253Aus-east-1%253A000000000000%253Adatastore%252Fabc"
            ]
        );
        assert_eq!(canonical_uris(""), vec!["/"]);
        assert_eq!(canonical_uris("/"), vec!["/"]);
        assert_eq!(canonical_uris("/a b/ü"), vec!["/a%20b/%C3%BC"]);
        assert_eq!(canonical_uris("/~a-b_c.d"), vec!["/~a-b_c.d"]);
    }

    #[test]
    fn normalises_dot_segments_and_slashes() {
        assert_eq!(canonical_uris("//example//"), vec!["/example/"]);
        assert_eq!(canonical_uris("/./example"), vec!["/example"]);
        assert_eq!(canonical_uris("/example1/example2/../.."), vec!["/"]);
        assert_eq!(canonical_uris("/a/b/c/./../../g"), vec!["/a/g"]);
        assert_eq!(canonical_uris("/../.."), vec!["/"]);
        // Encoded dots and slashes are data, not structure.
        assert_eq!(canonical_uris("/foo%2F.%2Fbar"), vec!["/foo%252F.%252Fbar"]);
        assert_eq!(canonical_uris("/%2E%2E/x"), vec!["/%252E%252E/x"]);
        // The one place aws-sigv4 and botocore differ.
        assert_eq!(canonical_uris("/a/b/.."), vec!["/a/", "/a"]);
        assert_eq!(canonical_uris("/a/b/."), vec!["/a/b/", "/a/b"]);
    }

    #[test]
    fn canonical_query_rules() {
        assert_eq!(canonical_query(None, None), "");
        assert_eq!(canonical_query(Some(""), None), "");
        assert_eq!(
            canonical_query(Some("Param2=value2&Param1=value1"), None),
            "Param1=value1&Param2=value2"
        );
        assert_eq!(
            canonical_query(Some("tagKeys=b&tagKeys=a&flag"), None),
            "flag=&tagKeys=a&tagKeys=b"
        );
        assert_eq!(canonical_query(Some("c+d"), None), "c%2Bd=");
        assert_eq!(canonical_query(Some("a=%7e%41 b"), None), "a=~A%20b");
        assert_eq!(canonical_query(Some("a=1&&b=x=y"), None), "a=1&b=x%3Dy");
        assert_eq!(canonical_query(Some("bad=%zz%"), None), "bad=%25zz%25");
        assert_eq!(
            canonical_query(
                Some("X-Amz-Signature=abc&b=1&X-Amz-%53ignature=d"),
                Some("X-Amz-Signature")
            ),
            "b=1"
        );
        // Sorting is by encoded bytes: upper case before lower case.
        assert_eq!(canonical_query(Some("b=1&B=2&a=3"), None), "B=2&a=3&b=1");
    }

    #[test]
    fn header_values_are_trimmed_folded_and_joined() {
        let mut h = HeaderMap::new();
        h.append("x-a", "  one   two\tthree ".parse().unwrap());
        h.append("x-a", "four".parse().unwrap());
        h.append("host", "example.com".parse().unwrap());
        let mut out = Vec::new();
        write_canonical_headers(
            &mut out,
            &h,
            &["host".into(), "x-a".into(), "x-missing".into()],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "host:example.com\nx-a:one two three,four\nx-missing:\n"
        );
    }
}
