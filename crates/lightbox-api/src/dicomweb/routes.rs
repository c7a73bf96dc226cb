//! The DICOMweb route table (notes §11.1): method + path under `/datastore/{datastoreId}` →
//! `DicomwebRoute`, before the rest-json model's routes (their paths never overlap).

/// One DICOMweb request's action and path parameters. UIDs are as they appear in the path
/// (digits and dots; anything else is left for the handler to reject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DicomwebRoute {
    /// `GET /studies` (SearchDICOMStudies).
    SearchStudies { datastore_id: String },
    /// `GET /studies/{s}/series` and `GET /series` (SearchDICOMSeries, SearchDICOMAllSeries).
    SearchSeries {
        datastore_id: String,
        study: Option<String>,
    },
    /// `GET /studies/{s}/series/{se}/instances`, `/studies/{s}/instances` and `/instances`.
    SearchInstances {
        datastore_id: String,
        study: Option<String>,
        series: Option<String>,
    },
    /// `GET /studies/{s}/series/{se}/metadata` (GetDICOMSeriesMetadata).
    SeriesMetadata {
        datastore_id: String,
        study: String,
        series: String,
    },
    /// `GET /studies/{s}/series/{se}/instances/{i}` (GetDICOMInstance).
    Instance {
        datastore_id: String,
        study: String,
        series: String,
        instance: String,
    },
    /// `GET …/instances/{i}/metadata` (GetDICOMInstanceMetadata).
    InstanceMetadata {
        datastore_id: String,
        study: String,
        series: String,
        instance: String,
    },
    /// `GET …/instances/{i}/frames/{list}` (GetDICOMInstanceFrames); `frames` as in the path.
    InstanceFrames {
        datastore_id: String,
        study: String,
        series: String,
        instance: String,
        frames: String,
    },
    /// `GET …/instances/{i}/bulkdata/{hash}` (GetDICOMBulkdata).
    Bulkdata {
        datastore_id: String,
        study: String,
        series: String,
        instance: String,
        hash: String,
    },
    /// `POST /studies` and `POST /studies/{s}` (StoreDICOM, StoreDICOMStudy).
    Store {
        datastore_id: String,
        study: Option<String>,
    },
}

impl DicomwebRoute {
    /// The IAM action name, used as the operation in logs.
    pub fn action(&self) -> &'static str {
        match self {
            Self::SearchStudies { .. } => "SearchDICOMStudies",
            Self::SearchSeries { .. } => "SearchDICOMSeries",
            Self::SearchInstances { .. } => "SearchDICOMInstances",
            Self::SeriesMetadata { .. } => "GetDICOMSeriesMetadata",
            Self::Instance { .. } => "GetDICOMInstance",
            Self::InstanceMetadata { .. } => "GetDICOMInstanceMetadata",
            Self::InstanceFrames { .. } => "GetDICOMInstanceFrames",
            Self::Bulkdata { .. } => "GetDICOMBulkdata",
            Self::Store { study: None, .. } => "StoreDICOM",
            Self::Store { study: Some(_), .. } => "StoreDICOMStudy",
        }
    }

    pub fn datastore_id(&self) -> &str {
        match self {
            Self::SearchStudies { datastore_id }
            | Self::SearchSeries { datastore_id, .. }
            | Self::SearchInstances { datastore_id, .. }
            | Self::SeriesMetadata { datastore_id, .. }
            | Self::Instance { datastore_id, .. }
            | Self::InstanceMetadata { datastore_id, .. }
            | Self::InstanceFrames { datastore_id, .. }
            | Self::Bulkdata { datastore_id, .. }
            | Self::Store { datastore_id, .. } => datastore_id,
        }
    }
}

/// The DICOMweb route of a request, if its path is a DICOMweb path. `Err(())` when the path is
/// a DICOMweb path but the method is not allowed on it.
pub fn match_route(method: &str, path: &str) -> Option<Result<DicomwebRoute, ()>> {
    let rest = path.strip_prefix("/datastore/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) || segments.len() < 2 {
        return None;
    }
    let ds = segments[0].to_string();
    let s = |i: usize| segments[i].to_string();
    let route = match &segments[1..] {
        ["studies"] => {
            if method == "POST" {
                DicomwebRoute::Store {
                    datastore_id: ds,
                    study: None,
                }
            } else {
                DicomwebRoute::SearchStudies { datastore_id: ds }
            }
        }
        ["studies", _] => DicomwebRoute::Store {
            datastore_id: ds,
            study: Some(s(2)),
        },
        ["series"] => DicomwebRoute::SearchSeries {
            datastore_id: ds,
            study: None,
        },
        ["instances"] => DicomwebRoute::SearchInstances {
            datastore_id: ds,
            study: None,
            series: None,
        },
        ["studies", _, "series"] => DicomwebRoute::SearchSeries {
            datastore_id: ds,
            study: Some(s(2)),
        },
        ["studies", _, "instances"] => DicomwebRoute::SearchInstances {
            datastore_id: ds,
            study: Some(s(2)),
            series: None,
        },
        ["studies", _, "series", _, "instances"] => DicomwebRoute::SearchInstances {
            datastore_id: ds,
            study: Some(s(2)),
            series: Some(s(4)),
        },
        ["studies", _, "series", _, "metadata"] => DicomwebRoute::SeriesMetadata {
            datastore_id: ds,
            study: s(2),
            series: s(4),
        },
        ["studies", _, "series", _, "instances", _] => DicomwebRoute::Instance {
            datastore_id: ds,
            study: s(2),
            series: s(4),
            instance: s(6),
        },
        ["studies", _, "series", _, "instances", _, "metadata"] => {
            DicomwebRoute::InstanceMetadata {
                datastore_id: ds,
                study: s(2),
                series: s(4),
                instance: s(6),
            }
        }
        ["studies", _, "series", _, "instances", _, "frames", _] => DicomwebRoute::InstanceFrames {
            datastore_id: ds,
            study: s(2),
            series: s(4),
            instance: s(6),
            frames: s(8),
        },
        ["studies", _, "series", _, "instances", _, "bulkdata", _] => DicomwebRoute::Bulkdata {
            datastore_id: ds,
            study: s(2),
            series: s(4),
            instance: s(6),
            hash: s(8),
        },
        _ => return None,
    };
    let allowed = match &route {
        DicomwebRoute::Store { .. } => method == "POST",
        _ => method == "GET" || method == "HEAD",
    };
    Some(if allowed { Ok(route) } else { Err(()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let ds = "0123456789abcdef0123456789abcdef";
        let r = |m: &str, p: &str| match_route(m, &format!("/datastore/{ds}{p}"));
        assert!(matches!(
            r("GET", "/studies"),
            Some(Ok(DicomwebRoute::SearchStudies { .. }))
        ));
        assert!(matches!(
            r("POST", "/studies"),
            Some(Ok(DicomwebRoute::Store { study: None, .. }))
        ));
        assert!(matches!(
            r("POST", "/studies/1.2"),
            Some(Ok(DicomwebRoute::Store { study: Some(_), .. }))
        ));
        assert_eq!(r("GET", "/studies/1.2"), Some(Err(())));
        assert_eq!(
            r(
                "GET",
                "/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/1,3"
            ),
            Some(Ok(DicomwebRoute::InstanceFrames {
                datastore_id: ds.into(),
                study: "1.2".into(),
                series: "1.2.3".into(),
                instance: "1.2.3.4".into(),
                frames: "1,3".into(),
            }))
        );
        assert_eq!(
            r("GET", "/series").map(|r| r.map(|r| r.action())),
            Some(Ok("SearchDICOMSeries"))
        );
        assert_eq!(r("DELETE", "/studies/1/series/2/metadata"), Some(Err(())));
        // Rest-json paths are not DICOMweb paths.
        assert_eq!(r("POST", "/imageSet/abc/getImageSet"), None);
        assert_eq!(r("POST", "/searchImageSets"), None);
        assert_eq!(match_route("GET", "/datastore"), None);
        assert_eq!(r("GET", "/studies//series"), None);
    }
}
