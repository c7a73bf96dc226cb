//! Model-driven request decoding: path labels, query string and JSON body become one JSON object
//! keyed by the input shape's member names, validated against every constraint of the model
//! (required, patterns, lengths, ranges, enums, unions). Unknown query parameters and JSON
//! members are ignored, as are bodies sent to operations that take none.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use base64::Engine;
use percent_encoding::percent_decode_str;
use regex::Regex;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::model::{MODEL, Shape};

/// Decodes and validates the input of `operation`.
pub fn decode(
    operation: &str,
    labels: &BTreeMap<String, String>,
    raw_query: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let op = &MODEL.operations[operation];
    let Some(input) = &op.input else {
        return Ok(Map::new());
    };
    let shape = MODEL.shape(&input.shape);
    let query = parse_query(raw_query.unwrap_or(""));
    let mut out = Map::new();
    let mut errors = Vec::new();

    let has_body_members = shape.members.values().any(|m| m.location.is_none());
    let body_json: Option<Value> = if has_body_members && !body.iter().all(u8::is_ascii_whitespace)
    {
        Some(serde_json::from_slice(body).map_err(|e| {
            ApiError::serialization(format!("The request body is not valid JSON: {e}"))
        })?)
    } else {
        None
    };

    for (name, member) in &shape.members {
        let target = MODEL.shape(&member.shape);
        let wire_name = member.location_name.as_deref().unwrap_or(name);
        let value = match member.location.as_deref() {
            Some("uri") => labels
                .get(wire_name)
                .map(|v| coerce_text(v, target, name, &mut errors)),
            Some("querystring") => {
                let values = query.get(wire_name);
                match (target.kind.as_str(), values) {
                    (_, None) => None,
                    ("list", Some(vs)) => {
                        let element =
                            MODEL.shape(&target.member.as_ref().expect("list member").shape);
                        Some(Value::Array(
                            vs.iter()
                                .map(|v| coerce_text(v, element, name, &mut errors))
                                .collect(),
                        ))
                    }
                    (_, Some(vs)) => Some(coerce_text(&vs[0], target, name, &mut errors)),
                }
            }
            Some(_) => None,
            None if shape.payload.as_deref() == Some(name.as_str()) => body_json.clone(),
            None => match &body_json {
                Some(Value::Object(o)) => o.get(name).cloned(),
                Some(_) => {
                    return Err(ApiError::serialization(
                        "The request body must be a JSON object".into(),
                    ));
                }
                None => None,
            },
        };
        if let Some(v) = value
            && !v.is_null()
        {
            out.insert(name.clone(), v);
        }
    }
    if shape.payload.is_none()
        && let Some(b) = &body_json
        && !b.is_object()
    {
        return Err(ApiError::serialization(
            "The request body must be a JSON object".into(),
        ));
    }
    if errors.is_empty() {
        validate_structure(&out, shape, "", false, &mut errors);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::validation_errors(&errors))
    }
}

fn parse_query(raw: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode_str(k).decode_utf8_lossy().into_owned();
        let v = percent_decode_str(v).decode_utf8_lossy().into_owned();
        out.entry(k).or_default().push(v);
    }
    out
}

/// Turns a label or query value into the JSON type of its shape.
fn coerce_text(text: &str, shape: &Shape, member: &str, errors: &mut Vec<String>) -> Value {
    match shape.kind.as_str() {
        "integer" | "long" => match text.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => {
                errors.push(format!(
                    "Value '{}' at '{member}' failed to satisfy constraint: Member must be an integer",
                    shown(text, shape.sensitive)
                ));
                Value::Null
            }
        },
        "boolean" => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                errors.push(format!(
                    "Value '{}' at '{member}' failed to satisfy constraint: Member must be true or false",
                    shown(text, shape.sensitive)
                ));
                Value::Null
            }
        },
        _ => Value::String(text.to_owned()),
    }
}

/// How a value appears in an error message: never for sensitive members, and shortened.
fn shown(text: &str, sensitive: bool) -> String {
    if sensitive {
        return "***".into();
    }
    let mut s: String = text.chars().take(128).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn value_phrase(v: &Value, sensitive: bool) -> String {
    match v {
        Value::String(s) => format!("Value '{}'", shown(s, sensitive)),
        Value::Number(n) if !sensitive => format!("Value '{n}'"),
        _ => "Value".into(),
    }
}

fn validate_structure(
    obj: &Map<String, Value>,
    shape: &Shape,
    path: &str,
    sensitive: bool,
    errors: &mut Vec<String>,
) {
    for req in &shape.required {
        if obj.get(req).is_none_or(Value::is_null) {
            errors.push(format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                join(path, req)
            ));
        }
    }
    if shape.union {
        let set = shape
            .members
            .keys()
            .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
            .count();
        if set != 1 {
            errors.push(format!(
                "Value at '{}' failed to satisfy constraint: Member must have exactly one of [{}] set, but {set} were set",
                if path.is_empty() { "input" } else { path },
                shape.members.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for (name, member) in &shape.members {
        if let Some(v) = obj.get(name)
            && !v.is_null()
        {
            validate_value(v, &member.shape, &join(path, name), sensitive, errors);
        }
    }
}

fn validate_value(
    v: &Value,
    shape_name: &str,
    path: &str,
    sensitive: bool,
    errors: &mut Vec<String>,
) {
    let shape = MODEL.shape(shape_name);
    let sensitive = sensitive || shape.sensitive;
    let type_error = |errors: &mut Vec<String>, what: &str| {
        errors.push(format!(
            "Value at '{path}' failed to satisfy constraint: Member must be {what}"
        ));
    };
    match shape.kind.as_str() {
        "structure" => match v {
            Value::Object(o) => validate_structure(o, shape, path, sensitive, errors),
            _ => type_error(errors, "a JSON object"),
        },
        "list" => {
            let Value::Array(items) = v else {
                return type_error(errors, "a JSON array");
            };
            check_length(v, items.len(), shape, path, sensitive, errors);
            let element = &shape.member.as_ref().expect("list member").shape;
            for (i, item) in items.iter().enumerate() {
                validate_value(
                    item,
                    element,
                    &format!("{path}.{}.member", i + 1),
                    sensitive,
                    errors,
                );
            }
        }
        "map" => {
            let Value::Object(entries) = v else {
                return type_error(errors, "a JSON object");
            };
            check_length(v, entries.len(), shape, path, sensitive, errors);
            let key = &shape.key.as_ref().expect("map key").shape;
            let value = &shape.value.as_ref().expect("map value").shape;
            for (k, item) in entries {
                validate_value(
                    &Value::String(k.clone()),
                    key,
                    &format!("{path}.key"),
                    sensitive,
                    errors,
                );
                validate_value(
                    item,
                    value,
                    &format!("{path}.{}", shown(k, sensitive)),
                    sensitive,
                    errors,
                );
            }
        }
        "string" => {
            let Value::String(s) = v else {
                return type_error(errors, "a string");
            };
            check_length(v, s.chars().count(), shape, path, sensitive, errors);
            if let Some(values) = &shape.enum_values
                && !values.iter().any(|e| e == s)
            {
                errors.push(format!(
                    "{} at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                    value_phrase(v, sensitive),
                    values.join(", ")
                ));
            }
            if let Some(p) = &shape.pattern
                && !pattern_matches(p, s)
            {
                errors.push(format!(
                    "{} at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {p}",
                    value_phrase(v, sensitive)
                ));
            }
        }
        "blob" => {
            let Value::String(s) = v else {
                return type_error(errors, "a base64-encoded string");
            };
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(bytes) => check_length(v, bytes.len(), shape, path, true, errors),
                Err(_) => type_error(errors, "valid base64"),
            }
        }
        "integer" | "long" => {
            let Some(n) = v.as_i64().filter(|_| v.is_i64() || v.is_u64()) else {
                return type_error(errors, "an integer");
            };
            if let Some(min) = shape.min
                && (n as f64) < min
            {
                errors.push(format!(
                    "{} at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {min}",
                    value_phrase(v, sensitive)
                ));
            }
            if let Some(max) = shape.max
                && (n as f64) > max
            {
                errors.push(format!(
                    "{} at '{path}' failed to satisfy constraint: Member must have value less than or equal to {max}",
                    value_phrase(v, sensitive)
                ));
            }
        }
        "boolean" if !v.is_boolean() => type_error(errors, "a boolean"),
        "timestamp" if !v.is_number() => type_error(errors, "a timestamp in epoch seconds"),
        "double" | "float" if !v.is_number() => type_error(errors, "a number"),
        _ => {}
    }
}

fn check_length(
    v: &Value,
    len: usize,
    shape: &Shape,
    path: &str,
    sensitive: bool,
    errors: &mut Vec<String>,
) {
    if let Some(min) = shape.min
        && (len as f64) < min
    {
        errors.push(format!(
            "{} at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {min}",
            value_phrase(v, sensitive)
        ));
    }
    if let Some(max) = shape.max
        && (len as f64) > max
    {
        errors.push(format!(
            "{} at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}",
            value_phrase(v, sensitive)
        ));
    }
}

/// A compiled model pattern: anchored (the whole value must match), with a leading negative
/// lookahead `(?!prefix)` turned into a prefix check, since the regex crate has no lookaround.
struct Pattern {
    forbidden_prefix: Option<String>,
    regex: Regex,
}

static PATTERNS: LazyLock<Mutex<BTreeMap<String, &'static Pattern>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn compile(p: &str) -> Pattern {
    let (forbidden_prefix, rest) = match p.strip_prefix("(?!") {
        Some(r) => {
            let end = r.find(')').expect("lookahead closes");
            (Some(r[..end].to_owned()), &r[end + 1..])
        }
        None => (None, p),
    };
    let regex = Regex::new(&format!("^(?:{rest})$"))
        .unwrap_or_else(|e| panic!("model pattern {p} does not compile: {e}"));
    Pattern {
        forbidden_prefix,
        regex,
    }
}

fn pattern_matches(p: &str, s: &str) -> bool {
    let compiled = {
        let mut cache = PATTERNS.lock().unwrap_or_else(|e| e.into_inner());
        *cache
            .entry(p.to_owned())
            .or_insert_with(|| Box::leak(Box::new(compile(p))))
    };
    if let Some(prefix) = &compiled.forbidden_prefix
        && s.starts_with(prefix.as_str())
    {
        return false;
    }
    compiled.regex.is_match(s)
}

/// Checks a JSON response body against the operation's output shape (required members, enums,
/// patterns, lengths). Used in debug builds so tests catch a response that breaks the model.
pub fn validate_output(operation: &str, body: &Value) -> Vec<String> {
    let op = &MODEL.operations[operation];
    let mut errors = Vec::new();
    let Some(output) = &op.output else {
        return errors;
    };
    let shape = MODEL.shape(&output.shape);
    if shape.payload.is_some() {
        return errors;
    }
    match body {
        Value::Object(o) => validate_structure(o, shape, "", true, &mut errors),
        _ => errors.push("response body is not a JSON object".into()),
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_pattern_compiles() {
        for shape in MODEL.shapes.values() {
            if let Some(p) = &shape.pattern {
                compile(p);
            }
        }
    }

    #[test]
    fn patterns_are_anchored_and_lookaheads_apply() {
        assert!(pattern_matches(
            "[0-9a-z]{32}",
            "0123456789abcdef0123456789abcdef"
        ));
        assert!(!pattern_matches(
            "[0-9a-z]{32}",
            "0123456789abcdef0123456789abcdef!"
        ));
        assert!(pattern_matches("(?!aws:)[a-zA-Z+-=._:/]+", "Deployment"));
        assert!(!pattern_matches("(?!aws:)[a-zA-Z+-=._:/]+", "aws:reserved"));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(e: ApiError) -> String {
        assert_eq!(e.code, "ValidationException");
        e.message
    }

    #[test]
    fn decodes_query_members_with_types() {
        let out = decode(
            "ListDatastores",
            &labels(&[]),
            Some("maxResults=5&datastoreStatus=ACTIVE&junk=1"),
            b"",
        )
        .unwrap();
        assert_eq!(out["maxResults"], 5);
        assert_eq!(out["datastoreStatus"], "ACTIVE");
        assert!(!out.contains_key("junk"));
        let out = decode(
            "UntagResource",
            &labels(&[("resourceArn", "arn:aws:medical-imaging:us-east-1:000000000000:datastore/0123456789abcdef0123456789abcdef")]),
            Some("tagKeys=a&tagKeys=b%3Ac"),
            b"ignored",
        )
        .unwrap();
        assert_eq!(out["tagKeys"], serde_json::json!(["a", "b:c"]));
    }

    #[test]
    fn reports_each_constraint_class_naming_the_member() {
        let m =
            message(decode("ListDatastores", &labels(&[]), Some("maxResults=0"), b"").unwrap_err());
        assert!(
            m.contains("at 'maxResults'") && m.contains("greater than or equal to 1"),
            "{m}"
        );
        let m = message(
            decode("ListDatastores", &labels(&[]), Some("maxResults=51"), b"").unwrap_err(),
        );
        assert!(m.contains("less than or equal to 50"), "{m}");
        let m =
            message(decode("ListDatastores", &labels(&[]), Some("maxResults=x"), b"").unwrap_err());
        assert!(m.contains("must be an integer"), "{m}");
        let m = message(
            decode(
                "ListDatastores",
                &labels(&[]),
                Some("datastoreStatus=NOPE"),
                b"",
            )
            .unwrap_err(),
        );
        assert!(m.contains("enum value set"), "{m}");
        let m = message(
            decode(
                "CreateDatastore",
                &labels(&[]),
                None,
                br#"{"datastoreName":"bad name!"}"#,
            )
            .unwrap_err(),
        );
        assert!(m.starts_with("2 validation errors detected"), "{m}");
        assert!(
            m.contains(
                "Value null at 'clientToken' failed to satisfy constraint: Member must not be null"
            ),
            "{m}"
        );
        assert!(m.contains("Value 'bad name!' at 'datastoreName' failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9._/#-]+"), "{m}");
        let long = "a".repeat(257);
        let m = message(
            decode(
                "CreateDatastore",
                &labels(&[]),
                None,
                format!(r#"{{"datastoreName":"{long}","clientToken":"t"}}"#).as_bytes(),
            )
            .unwrap_err(),
        );
        assert!(m.contains("length less than or equal to 256"), "{m}");
        let m = message(
            decode(
                "GetDatastore",
                &labels(&[("datastoreId", "short")]),
                None,
                b"",
            )
            .unwrap_err(),
        );
        assert!(m.contains("at 'datastoreId'"), "{m}");
    }

    #[test]
    fn unions_need_exactly_one_member() {
        let l = labels(&[("datastoreId", "0123456789abcdef0123456789abcdef")]);
        let both = br#"{"filters":[{"values":[{"DICOMPatientId":"a","DICOMStudyId":"b"}],"operator":"EQUAL"}]}"#;
        let m = message(decode("SearchImageSets", &l, None, both).unwrap_err());
        assert!(m.contains("exactly one of"), "{m}");
        assert!(!m.contains("'a'"), "sensitive values are never echoed: {m}");
        let ok = br#"{"filters":[{"values":[{"DICOMPatientId":"a"}],"operator":"EQUAL"}]}"#;
        assert!(decode("SearchImageSets", &l, None, ok).is_ok());
        assert!(
            decode("SearchImageSets", &l, None, b"").is_ok(),
            "missing criteria"
        );
    }

    #[test]
    fn malformed_bodies_are_serialization_errors() {
        for body in [&b"{not json"[..], b"[1,2]", b"\"str\""] {
            let e = decode("CreateDatastore", &labels(&[]), None, body).unwrap_err();
            assert_eq!(e.code, "SerializationException");
            assert_eq!(e.status, 400);
        }
        let e = decode(
            "CreateDatastore",
            &labels(&[]),
            None,
            br#"{"clientToken":5}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(e.message.contains("'clientToken'") && e.message.contains("must be a string"));
    }
}
