//! The error table: every AuthError class with its AWS code, HTTP status and message.

mod support;

use lightbox_sigv4::AuthError;
use support::{Owned, SUITE, at};

const DATE: &str = "20150830T123600Z";
const SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn with_auth(auth: &str, extra: &[(&str, &str)]) -> Owned {
    let mut headers = vec![
        ("host", "example.amazonaws.com"),
        ("x-amz-date", DATE),
        ("authorization", auth),
    ];
    headers.extend_from_slice(extra);
    Owned::new("GET", "/", &headers, b"")
}

fn auth(credential: &str, signed: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={SIG}")
}

fn err(req: &Owned) -> AuthError {
    req.verify(&SUITE, "service", at(DATE)).unwrap_err()
}

fn incomplete(req: &Owned) -> String {
    let e = err(req);
    assert_eq!(
        (e.code(), e.status()),
        ("IncompleteSignatureException", 400),
        "{e:?}"
    );
    e.message()
}

#[test]
fn the_baseline_request_verifies() {
    let ok = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    assert!(ok.verify(&SUITE, "service", at(DATE)).is_ok());
}

#[test]
fn missing_authentication_token() {
    let req = Owned::new("GET", "/?a=b&X-Amz-Algorithmx=1", &[("host", "h")], b"");
    let e = err(&req);
    assert_eq!(e, AuthError::MissingAuthenticationToken);
    assert_eq!(
        (e.code(), e.status(), e.message().as_str()),
        (
            "MissingAuthenticationTokenException",
            403,
            "Missing Authentication Token"
        )
    );
}

#[test]
fn missing_authorization_parameters() {
    assert_eq!(
        incomplete(&with_auth(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date",
            &[]
        )),
        "Authorization header requires 'Signature' parameter."
    );
    assert_eq!(
        incomplete(&with_auth(
            &format!("AWS4-HMAC-SHA256 Signature={SIG}"),
            &[]
        )),
        "Authorization header requires 'Credential' parameter. Authorization header requires 'SignedHeaders' parameter."
    );
    assert_eq!(
        incomplete(&with_auth("AWS4-HMAC-SHA256", &[])),
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. \
         Authorization header requires 'SignedHeaders' parameter."
    );
}

#[test]
fn malformed_authorization() {
    assert!(
        incomplete(&with_auth("Bearer abc", &[]))
            .contains("Unsupported Authorization algorithm 'Bearer'")
    );
    assert!(
        incomplete(&with_auth("AWS4-HMAC-SHA512 Credential=a", &[])).contains("AWS4-HMAC-SHA512")
    );
    assert!(
        incomplete(&with_auth("AWS4-HMAC-SHA256 Credential", &[])).contains("missing equal-sign")
    );
    let dup = format!(
        "{}, Signature={SIG}",
        auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host"
        )
    );
    assert!(incomplete(&with_auth(&dup, &[])).contains("more than one 'Signature'"));
    // Two Authorization headers.
    let mut req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    req.headers.append("authorization", "x".parse().unwrap());
    assert!(incomplete(&req).contains("more than one Authorization header"));
    // Both auth mechanisms at once.
    let mut req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    req.raw_query = Some("X-Amz-Algorithm=AWS4-HMAC-SHA256".into());
    assert!(incomplete(&req).contains("Only one auth mechanism allowed"));
}

#[test]
fn bad_credential_scope_shapes() {
    let cases = [
        (
            "AKIDEXAMPLE/20150830/us-east-1/service",
            "Credential must have the form",
        ),
        (
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request/x",
            "Credential must have the form",
        ),
        ("/20150830/us-east-1/service/aws4_request", "access key id"),
        (
            "AKIDEXAMPLE/2015083/us-east-1/service/aws4_request",
            "YYYYMMDD",
        ),
        (
            "AKIDEXAMPLE/2015-08-30/us-east-1/service/aws4_request",
            "YYYYMMDD",
        ),
        ("AKIDEXAMPLE/20150830//service/aws4_request", "valid region"),
        (
            "AKIDEXAMPLE/20150830/us_east_1/service/aws4_request",
            "valid region",
        ),
        (
            "AKIDEXAMPLE/20150830/-us/service/aws4_request",
            "valid region",
        ),
        (
            "AKIDEXAMPLE/20150830/us-east-1//aws4_request",
            "valid service",
        ),
        (
            "AKIDEXAMPLE/20150830/us-east-1/service/aws5_request",
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.",
        ),
    ];
    for (credential, expected) in cases {
        let msg = incomplete(&with_auth(&auth(credential, "host;x-amz-date"), &[]));
        assert!(msg.contains(expected), "{credential}: {msg}");
    }
}

#[test]
fn host_must_be_signed_and_names_valid() {
    assert_eq!(
        incomplete(&with_auth(
            &auth(
                "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
                "x-amz-date"
            ),
            &[]
        )),
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    );
    for bad in ["host;;x-amz-date", "host;x(amz", "host;x\u{e9}", ""] {
        let msg = incomplete(&with_auth(
            &auth("AKIDEXAMPLE/20150830/us-east-1/service/aws4_request", bad),
            &[],
        ));
        assert!(
            msg.contains("SignedHeaders") || msg.contains("'Host'"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn bad_or_missing_date() {
    let a = auth(
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        "host;x-amz-date",
    );
    let no_date = Owned::new(
        "GET",
        "/",
        &[("host", "example.amazonaws.com"), ("authorization", &a)],
        b"",
    );
    assert_eq!(
        incomplete(&no_date),
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    );
    for bad in [
        "2015-08-30T12:36:00Z",
        "20150830T123600",
        "20150230T123600Z",
        "",
    ] {
        let mut req = with_auth(&a, &[]);
        req.set_header("x-amz-date", bad);
        assert!(incomplete(&req).contains("ISO 8601 basic format"), "{bad}");
    }
    let bad_date = Owned::new(
        "GET",
        "/",
        &[
            ("host", "example.amazonaws.com"),
            ("authorization", &a),
            ("date", "yesterday"),
        ],
        b"",
    );
    assert!(incomplete(&bad_date).contains("Date header"));
}

#[test]
fn scope_date_must_match_request_date() {
    let req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150831/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    let e = err(&req);
    assert_eq!((e.code(), e.status()), ("InvalidSignatureException", 403));
    assert_eq!(
        e.message(),
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
         '20150831' != '20150830', from '20150830T123600Z'."
    );
}

#[test]
fn wrong_service() {
    let req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    let e = req.verify(&SUITE, "medical-imaging", at(DATE)).unwrap_err();
    assert_eq!(
        e,
        AuthError::WrongService {
            expected: "medical-imaging".into()
        }
    );
    assert_eq!(
        e.message(),
        "Credential should be scoped to correct service: 'medical-imaging'."
    );
    assert_eq!((e.code(), e.status()), ("InvalidSignatureException", 403));
}

#[test]
fn unknown_access_key_and_bad_signature() {
    let req = with_auth(
        &auth(
            "AKIDOTHER/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    let e = err(&req);
    assert_eq!(
        e,
        AuthError::UnrecognizedClient {
            access_key_id: "AKIDOTHER".into()
        }
    );
    assert_eq!(e.code(), "UnrecognizedClientException");

    let mut req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    req.set_header("host", "example.amazonaws.com:443");
    let e = err(&req);
    assert_eq!(e, AuthError::SignatureDoesNotMatch);
    assert_eq!(
        (e.code(), e.status(), e.message().as_str()),
        (
            "InvalidSignatureException",
            403,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
             Access Key and signing method. Consult the service documentation for details."
        )
    );
    // Upper-case hex is not the signature AWS defines.
    let upper = with_auth(
        &format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={}",
            SIG.to_uppercase()
        ),
        &[],
    );
    assert_eq!(err(&upper), AuthError::SignatureDoesNotMatch);
}

#[test]
fn content_sha256_must_be_a_hash_or_unsigned() {
    let req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")],
    );
    let e = err(&req);
    assert_eq!(e, AuthError::ContentSha256Mismatch);
    assert_eq!(e.status(), 403);
}

#[test]
fn presigned_parameter_errors() {
    let base = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
        &X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
    let q = |extra: &str| {
        Owned::new(
            "GET",
            &format!("/?{base}{extra}"),
            &[("host", "example.amazonaws.com")],
            b"",
        )
    };
    assert!(incomplete(&q("")).contains("requires the X-Amz-Algorithm"));
    for bad in ["0", "604801", "-1", "+5", "1e3", ""] {
        assert!(
            incomplete(&q(&format!("&X-Amz-Expires={bad}"))).contains("X-Amz-Expires"),
            "{bad}"
        );
    }
    assert!(incomplete(&q("&X-Amz-Expires=60&X-Amz-Expires=60")).contains("more than one"));
    assert_eq!(
        err(&q("&X-Amz-Expires=604800")),
        AuthError::SignatureDoesNotMatch
    );
    let other_alg = Owned::new(
        "GET",
        &format!("/?{}&X-Amz-Expires=60", base.replace("SHA256", "SHA1")),
        &[("host", "h")],
        b"",
    );
    assert!(incomplete(&other_alg).contains("X-Amz-Algorithm only supports"));
}

#[test]
fn messages_do_not_echo_secrets_and_stay_short() {
    let secret = SUITE.1;
    let long = "x".repeat(100_000);
    let reqs = [
        with_auth(
            &format!(
                "AWS4-HMAC-SHA256 Credential={long}/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=0"
            ),
            &[],
        ),
        with_auth(&format!("{long} Credential=a"), &[]),
        with_auth(
            &auth(
                "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
                "host;x-amz-date",
            ),
            &[("x-amz-date", &long)],
        ),
        with_auth(
            &auth(
                "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
                "host;x-amz-date",
            ),
            &[],
        ),
    ];
    for mut req in reqs {
        if req.headers.get_all("x-amz-date").iter().count() > 1 {
            let v = req
                .headers
                .get_all("x-amz-date")
                .iter()
                .nth(1)
                .unwrap()
                .clone();
            req.headers.insert("x-amz-date", v);
        }
        for now in [at(DATE), at("20200101T000000Z")] {
            if let Err(e) = req.verify(&SUITE, "service", now) {
                let m = e.message();
                assert!(!m.contains(secret), "{m}");
                assert!(m.len() < 600, "{} bytes", m.len());
            }
        }
    }
}

#[test]
fn any_valid_region_is_accepted() {
    // The signature is over the region, so only the scope-shape check is exercised here:
    // unusual but valid regions get as far as signature comparison.
    for region in ["local", "us-gov-west-1", "X", "a1-b2-c3"] {
        let req = with_auth(
            &auth(
                &format!("AKIDEXAMPLE/20150830/{region}/service/aws4_request"),
                "host;x-amz-date",
            ),
            &[],
        );
        assert_eq!(err(&req), AuthError::SignatureDoesNotMatch, "{region}");
    }
}

#[test]
fn closures_and_maps_are_credential_stores() {
    let req = with_auth(
        &auth(
            "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "host;x-amz-date",
        ),
        &[],
    );
    let closure = |id: &str| (id == "AKIDEXAMPLE").then(|| SUITE.1.to_owned());
    assert!(req.verify(&closure, "service", at(DATE)).is_ok());
    let map: std::collections::HashMap<String, String> =
        [("AKIDEXAMPLE".to_owned(), SUITE.1.to_owned())].into();
    assert!(req.verify(&map, "service", at(DATE)).is_ok());
    let empty: std::collections::HashMap<String, String> = Default::default();
    assert!(matches!(
        req.verify(&empty, "service", at(DATE)),
        Err(AuthError::UnrecognizedClient { .. })
    ));
}
