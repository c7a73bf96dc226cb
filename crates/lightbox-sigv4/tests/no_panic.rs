//! Property tests: `verify` never panics, whatever the headers, path, query and body hold.

mod support;

use lightbox_sigv4::{Request, verify};
use proptest::prelude::*;
use support::{SUITE, at};

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Arbitrary bytes that HTTP allows in a value (including obs-text, i.e. non-UTF-8).
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff], 0..300),
        // Near-miss Authorization headers, to get past the first parsing steps.
        (
            prop_oneof![Just("AWS4-HMAC-SHA256".to_owned()), Just("".to_owned()), "[A-Z0-9-]{0,20}"],
            "[A-Za-z0-9/_-]{0,12}",
            prop_oneof![Just("20150830".to_owned()), "[0-9]{0,9}"],
            prop_oneof![Just("us-east-1".to_owned()), "[a-z0-9-]{0,8}"],
            prop_oneof![Just("service".to_owned()), "[a-z]{0,8}"],
            prop_oneof![Just("aws4_request".to_owned()), "[a-z_/]{0,14}"],
            prop_oneof![Just("host;x-amz-date".to_owned()), "[a-z;: -]{0,30}"],
            "[0-9a-fA-F=, ]{0,70}",
            "[ ,=]{0,3}",
        )
            .prop_map(|(alg, akid, date, region, svc, term, signed, sig, sep)| {
                format!(
                    "{alg} Credential=AKIDEXAMPLE{akid}/{date}/{region}/{svc}/{term},{sep}SignedHeaders={signed},{sep}Signature={sig}"
                )
                .into_bytes()
            }),
    ]
}

fn date_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"20150830T123600Z".to_vec()),
        "[0-9TZ]{0,18}".prop_map(String::into_bytes),
        "[A-Za-z0-9,: +-]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(0x20u8..=0xff, 0..40),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[/a-zA-Z0-9%.~_+=&-]{0,80}",
        any::<String>(),
        "(%[0-9a-fA-F]{0,2}|\\.\\.|/|&|=|X-Amz-Algorithm|X-Amz-Signature){0,20}",
    ]
}

fn build(name: &str, value: &[u8]) -> Option<(http::HeaderName, http::HeaderValue)> {
    Some((
        http::HeaderName::from_bytes(name.as_bytes()).ok()?,
        http::HeaderValue::from_bytes(value).ok()?,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn verify_never_panics(
        auth in header_value(),
        date in date_value(),
        use_date_header in any::<bool>(),
        extra in proptest::collection::vec(("[a-z-]{1,12}", header_value()), 0..4),
        content_sha in proptest::option::of("[0-9a-fUNSIGNED-]{0,64}"),
        path in text(),
        query in proptest::option::of(text()),
        method in "[A-Z]{0,7}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
        offset in -2_000_000i64..2_000_000,
    ) {
        let mut headers = http::HeaderMap::new();
        let date_name = if use_date_header { "date" } else { "x-amz-date" };
        for (name, value) in [("authorization", auth.as_slice()), (date_name, date.as_slice()), ("host", b"example.amazonaws.com")] {
            if let Some((n, v)) = build(name, value) {
                headers.insert(n, v);
            }
        }
        for (name, value) in &extra {
            if let Some((n, v)) = build(name, value) {
                headers.append(n, v);
            }
        }
        if let Some((n, v)) = content_sha
            .as_ref()
            .and_then(|c| build("x-amz-content-sha256", c.as_bytes()))
        {
            headers.insert(n, v);
        }
        let req = Request { method: &method, raw_path: &path, raw_query: query.as_deref(), headers: &headers, body: &body };
        let base = at("20150830T123600Z");
        let now = if offset >= 0 {
            base + std::time::Duration::from_secs(offset as u64)
        } else {
            base - std::time::Duration::from_secs(offset.unsigned_abs())
        };
        if let Err(e) = verify(&req, &SUITE, "service", now) {
            // Every error maps onto the table.
            prop_assert!(matches!(e.status(), 400 | 403));
            prop_assert!(e.code().ends_with("Exception"));
            prop_assert!(!e.message().is_empty());
        }
    }

    #[test]
    fn extreme_times_never_panic(secs in any::<u64>(), before in any::<bool>()) {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "h".parse().unwrap());
        headers.insert("x-amz-date", "99991231T235959Z".parse().unwrap());
        headers.insert("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/99991231/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00".parse().unwrap());
        let d = std::time::Duration::from_secs(secs);
        let now = if before {
            std::time::UNIX_EPOCH.checked_sub(d)
        } else {
            std::time::UNIX_EPOCH.checked_add(d)
        };
        if let Some(now) = now {
            let req = Request { method: "GET", raw_path: "/", raw_query: None, headers: &headers, body: b"" };
            let _ = verify(&req, &SUITE, "service", now);
        }
        // Presigned form with the largest expiry.
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F00000101%2Fr%2Fservice%2Faws4_request&X-Amz-Date=00000101T000000Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=0";
        if let Some(now) = now {
            let req = Request { method: "GET", raw_path: "/", raw_query: Some(q), headers: &headers, body: b"" };
            let _ = verify(&req, &SUITE, "service", now);
        }
    }
}

#[test]
fn huge_inputs_do_not_panic() {
    let big = "a".repeat(1 << 20);
    let mut headers = http::HeaderMap::new();
    headers.insert("host", big.parse().unwrap());
    headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
    headers.insert(
        "authorization",
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;{}, Signature=0", "x;".repeat(10_000) + "y")
            .parse()
            .unwrap(),
    );
    let path = format!("/{}", "../".repeat(100_000));
    let query = "a=%&".repeat(100_000);
    let req = Request {
        method: "GET",
        raw_path: &path,
        raw_query: Some(&query),
        headers: &headers,
        body: big.as_bytes(),
    };
    assert!(verify(&req, &SUITE, "service", at("20150830T123600Z")).is_err());
}
