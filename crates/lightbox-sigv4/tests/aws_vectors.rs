//! AWS's published SigV4 test-suite vectors (aws-c-auth / aws-sigv4 `v4` suite), verified server-side.

mod support;

use lightbox_sigv4::AuthError;
use support::{Owned, SUITE, at};

const DATE: &str = "20150830T123600Z";
const EMPTY: &str = "";

fn suite_request(method: &str, target: &str, signature: &str) -> Owned {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={signature}"
    );
    Owned::new(
        method,
        target,
        &[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", DATE),
            ("authorization", &auth),
        ],
        EMPTY.as_bytes(),
    )
}

fn assert_verifies(req: &Owned) {
    let v = req
        .verify(&SUITE, "service", at(DATE))
        .unwrap_or_else(|e| panic!("{req:?}: {e:?}"));
    assert_eq!(v.access_key_id, "AKIDEXAMPLE");
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "service");
}

const GET_VANILLA: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

#[test]
fn get_vanilla() {
    assert_verifies(&suite_request("GET", "/", GET_VANILLA));
}

#[test]
fn post_vanilla() {
    assert_verifies(&suite_request(
        "POST",
        "/",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ));
    // The GET signature must not verify a POST.
    assert_eq!(
        suite_request("POST", "/", GET_VANILLA).verify(&SUITE, "service", at(DATE)),
        Err(AuthError::SignatureDoesNotMatch)
    );
}

#[test]
fn get_vanilla_query_order_key_case() {
    assert_verifies(&suite_request(
        "GET",
        "/?Param2=value2&Param1=value1",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ));
}

#[test]
fn get_query_plus_is_a_literal_plus() {
    // `?c+d` canonicalises to `c%2Bd=`: '+' is not a space in SigV4.
    assert_verifies(&suite_request(
        "GET",
        "/?c+d",
        "ae684ce3aadc299e3ac7d9216fcc039c7edf40dea57cf5b3005821dd2f176654",
    ));
}

#[test]
fn normalize_path_vectors_share_get_vanilla_signature() {
    // get-relative-relative, get-slash, get-slash-dot-slash, get-relative: every one of
    // these canonicalises to "/" and so carries the get-vanilla signature.
    for target in [
        "/example1/example2/../..",
        "//",
        "/./",
        "/example/..",
        "/./.",
    ] {
        assert_verifies(&suite_request("GET", target, GET_VANILLA));
    }
    // A path that does not normalise to "/" must fail with that signature.
    assert_eq!(
        suite_request("GET", "/example", GET_VANILLA).verify(&SUITE, "service", at(DATE)),
        Err(AuthError::SignatureDoesNotMatch)
    );
}

#[test]
fn presigned_get_query_plus() {
    let req = Owned::new(
        "GET",
        "/?c+d=&X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
         &X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600\
         &X-Amz-Signature=0eab864b028f58edbf5290cbe84acc5db34e5f92786a96fe01434e515f9342b8",
        &[("host", "example.amazonaws.com")],
        b"",
    );
    assert_verifies(&req);
    // Valid until X-Amz-Date + X-Amz-Expires, inclusive.
    assert!(
        req.verify(&SUITE, "service", at(DATE) + support::secs(3600))
            .is_ok()
    );
    assert!(matches!(
        req.verify(&SUITE, "service", at(DATE) + support::secs(3601)),
        Err(AuthError::SignatureExpired(_))
    ));
}

#[test]
fn authorization_separators_are_flexible() {
    for (sep, lead) in [(",", " "), (", ", "  "), (" ", " "), (" ,\t", "\t")] {
        let auth = format!(
            "AWS4-HMAC-SHA256{lead}Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request{sep}\
             SignedHeaders=host;x-amz-date{sep}Signature={GET_VANILLA}"
        );
        let req = Owned::new(
            "GET",
            "/",
            &[
                ("host", "example.amazonaws.com"),
                ("x-amz-date", DATE),
                ("authorization", &auth),
            ],
            b"",
        );
        assert_verifies(&req);
    }
}
