//! Routing on method and path only (never on Host), from the model's request URI templates.
//! Path labels are matched on the raw path, split on `/`, then percent-decoded, so an ARN label
//! with encoded `/` and `:` arrives whole.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use percent_encoding::percent_decode_str;

use crate::model::MODEL;

enum Segment {
    Literal(String),
    Label(String),
}

struct Route {
    operation: &'static str,
    method: &'static str,
    segments: Vec<Segment>,
}

static ROUTES: LazyLock<Vec<Route>> = LazyLock::new(|| {
    MODEL
        .operations
        .values()
        .map(|op| {
            let path = op.http.request_uri.split('?').next().unwrap_or("");
            let segments = path
                .trim_start_matches('/')
                .split('/')
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(label) => Segment::Label(label.trim_end_matches('+').to_owned()),
                        None => Segment::Literal(s.to_owned()),
                    },
                )
                .collect();
            Route {
                operation: op.name.as_str(),
                method: op.http.method.as_str(),
                segments,
            }
        })
        .collect()
});

/// A matched operation with its decoded path labels.
#[derive(Debug)]
pub struct Matched {
    pub operation: &'static str,
    pub labels: BTreeMap<String, String>,
}

/// Why no operation matched.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// The path matches an operation, but not with this method.
    MethodNotAllowed,
    NotFound,
}

/// Finds the operation for `method` and the raw (still percent-encoded) `path`.
pub fn route(method: &str, raw_path: &str) -> Result<Matched, NoRoute> {
    let trimmed = raw_path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let parts: Vec<&str> = trimmed.split('/').collect();
    let mut path_matched = false;
    for r in ROUTES.iter() {
        if r.segments.len() != parts.len() {
            continue;
        }
        let mut labels = BTreeMap::new();
        let ok = r.segments.iter().zip(&parts).all(|(seg, part)| match seg {
            Segment::Literal(l) => l == part,
            Segment::Label(name) => {
                if part.is_empty() {
                    return false;
                }
                match percent_decode_str(part).decode_utf8() {
                    Ok(v) => {
                        labels.insert(name.clone(), v.into_owned());
                        true
                    }
                    Err(_) => false,
                }
            }
        });
        if !ok {
            continue;
        }
        if r.method == method {
            return Ok(Matched {
                operation: r.operation,
                labels,
            });
        }
        path_matched = true;
    }
    Err(if path_matched {
        NoRoute::MethodNotAllowed
    } else {
        NoRoute::NotFound
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_operation_by_method_and_path() {
        let ds = "0123456789abcdef0123456789abcdef";
        let cases = [
            ("POST", "/datastore".to_string(), "CreateDatastore"),
            ("GET", "/datastore".to_string(), "ListDatastores"),
            ("GET", format!("/datastore/{ds}"), "GetDatastore"),
            ("DELETE", format!("/datastore/{ds}"), "DeleteDatastore"),
            (
                "POST",
                format!("/datastore/{ds}/imageSet/{ds}/getImageSet"),
                "GetImageSet",
            ),
            (
                "POST",
                format!("/datastore/{ds}/searchImageSets"),
                "SearchImageSets",
            ),
            (
                "POST",
                format!("/startDICOMImportJob/datastore/{ds}"),
                "StartDICOMImportJob",
            ),
            (
                "GET",
                format!("/getDICOMImportJob/datastore/{ds}/job/abc"),
                "GetDICOMImportJob",
            ),
            (
                "GET",
                format!("/listDICOMImportJobs/datastore/{ds}"),
                "ListDICOMImportJobs",
            ),
        ];
        for (m, p, op) in cases {
            assert_eq!(route(m, &p).unwrap().operation, op, "{m} {p}");
        }
    }

    #[test]
    fn decodes_arn_labels_after_splitting() {
        let m = route(
            "GET",
            "/tags/arn%3Aaws%3Amedical-imaging%3Aus-east-1%3A000000000000%3Adatastore%2Fabc",
        )
        .unwrap();
        assert_eq!(m.operation, "ListTagsForResource");
        assert_eq!(
            m.labels["resourceArn"],
            "arn:aws:medical-imaging:us-east-1:000000000000:datastore/abc"
        );
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(route("GET", "/nothing").unwrap_err(), NoRoute::NotFound);
        assert_eq!(
            route("PUT", "/datastore").unwrap_err(),
            NoRoute::MethodNotAllowed
        );
        assert_eq!(route("GET", "/datastore//").unwrap_err(), NoRoute::NotFound);
    }
}
