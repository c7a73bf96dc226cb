//! Tells S3 requests from HealthImaging requests on the shared listener, by the service named in
//! the SigV4 credential scope.

use http::HeaderMap;

/// True when the request is SigV4-signed for service `s3`: the credential scope
/// (`AKID/DATE/REGION/s3/aws4_request`) of the `Authorization: AWS4-HMAC-SHA256 Credential=…`
/// header or of a presigned URL's `X-Amz-Credential` query parameter names `s3`.
pub fn is_s3_request(headers: &HeaderMap, raw_query: Option<&str>) -> bool {
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return auth
            .trim_start()
            .strip_prefix("AWS4-HMAC-SHA256")
            .and_then(|rest| {
                rest.split(',')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix("Credential="))
            })
            .is_some_and(scope_names_s3);
    }
    let Some(query) = raw_query else {
        return false;
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.eq_ignore_ascii_case("X-Amz-Credential"))
        .is_some_and(|(_, value)| {
            let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            scope_names_s3(&decoded)
        })
}

/// `AKID/DATE/REGION/SERVICE/aws4_request` with SERVICE = `s3`.
fn scope_names_s3(credential: &str) -> bool {
    let mut parts = credential.trim().rsplit('/');
    parts.next() == Some("aws4_request") && parts.next() == Some("s3")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn recognises_s3_header_signatures() {
        assert!(is_s3_request(
            &auth(
                "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc"
            ),
            None
        ));
        assert!(!is_s3_request(
            &auth(
                "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/medical-imaging/aws4_request, \
                 SignedHeaders=host, Signature=abc"
            ),
            None
        ));
        assert!(!is_s3_request(&auth("AWS AKID:sig"), None));
        assert!(!is_s3_request(&HeaderMap::new(), None));
        assert!(!is_s3_request(
            &HeaderMap::new(),
            Some("prefix=s3/aws4_request")
        ));
    }

    #[test]
    fn recognises_presigned_urls() {
        assert!(is_s3_request(
            &HeaderMap::new(),
            Some(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x"
            )
        ));
        assert!(!is_s3_request(
            &HeaderMap::new(),
            Some("X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fmedical-imaging%2Faws4_request")
        ));
    }
}
