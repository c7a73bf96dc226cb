//! Typed access to a decoded, validated operation input (a JSON object keyed by member names).

use serde_json::{Map, Value};

use crate::error::ApiError;

pub struct Input(pub Map<String, Value>);

impl Input {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A member the model marks required (validation already guaranteed its presence).
    pub fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name)
            .ok_or_else(|| ApiError::internal(format!("validated input lacks {name}")))
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Value::as_i64)
    }

    pub fn string_list(&self, name: &str) -> Vec<String> {
        self.0
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string-to-string map member as sorted pairs.
    pub fn string_map(&self, name: &str) -> Vec<(String, String)> {
        self.0
            .get(name)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }
}
