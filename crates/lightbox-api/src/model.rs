//! The pinned AWS service model (botocore's `medical-imaging` 2023-07-19), loaded once: the wire
//! truth for operations, URIs, member locations and constraints.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// The model file as shipped in `spec/`.
pub const MODEL_JSON: &str =
    include_str!("../../../spec/medical-imaging-2023-07-19.service-2.json");

#[derive(Debug, Deserialize)]
pub struct Model {
    pub operations: BTreeMap<String, Operation>,
    pub shapes: BTreeMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
pub struct Operation {
    pub name: String,
    pub http: Http,
    pub input: Option<ShapeRef>,
    pub output: Option<ShapeRef>,
    #[serde(default)]
    pub errors: Vec<ShapeRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http {
    pub method: String,
    pub request_uri: String,
}

#[derive(Debug, Deserialize)]
pub struct ShapeRef {
    pub shape: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub shape: String,
    pub location: Option<String>,
    pub location_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
    #[serde(default)]
    pub required: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub pattern: Option<String>,
    #[serde(rename = "enum")]
    pub enum_values: Option<Vec<String>>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub union: bool,
    pub payload: Option<String>,
    /// List element.
    pub member: Option<Member>,
    /// Map key and value.
    pub key: Option<Member>,
    pub value: Option<Member>,
    pub error: Option<ErrorTrait>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTrait {
    pub http_status_code: u16,
}

impl Model {
    pub fn shape(&self, name: &str) -> &Shape {
        self.shapes
            .get(name)
            .unwrap_or_else(|| panic!("model shape {name} is referenced but not defined"))
    }
}

/// The parsed model.
pub static MODEL: LazyLock<Model> =
    LazyLock::new(|| serde_json::from_str(MODEL_JSON).expect("the pinned service model parses"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_eighteen_operations_and_their_error_codes() {
        assert_eq!(MODEL.operations.len(), 18);
        let quota = MODEL.shape("ServiceQuotaExceededException");
        assert_eq!(quota.error.as_ref().unwrap().http_status_code, 402);
        for op in MODEL.operations.values() {
            for e in &op.errors {
                assert!(MODEL.shape(&e.shape).error.is_some(), "{}", e.shape);
            }
        }
    }
}
