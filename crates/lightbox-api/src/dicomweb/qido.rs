//! QIDO-RS responses (SearchDICOMStudies, SearchDICOMSeries, SearchDICOMAllSeries,
//! SearchDICOMInstances, SearchDICOMStudyInstances, SearchDICOMAllInstances): a JSON array of
//! PS3.18 F.2 objects (`"GGGGEEEE": {"vr", "Value"}`, PN as `{"Alphabetic"}`, IS as numbers) in
//! `application/dicom+json`.
//!
//! Study objects carry PS3.18 Table 6.7.1-2's attributes (StudyDate, StudyTime,
//! AccessionNumber, InstanceAvailability, ModalitiesInStudy, ReferringPhysicianName,
//! PatientName, PatientID, PatientBirthDate, PatientSex, StudyInstanceUID, StudyID, the two
//! counts, RetrieveURL) and StudyDescription; series objects Table 6.7.1-2a's (Modality,
//! SeriesDescription, SeriesNumber, NumberOfSeriesRelatedInstances, RetrieveURL,
//! SeriesInstanceUID) with BodyPartExamined and StudyInstanceUID; instance objects Table
//! 6.7.1-2b's (SOPClassUID, SOPInstanceUID, InstanceAvailability, RetrieveURL, InstanceNumber,
//! Rows, Columns, BitsAllocated, NumberOfFrames) with the study and series UIDs, plus the
//! series attributes for a study's instances and the study and series attributes for all
//! instances (PS3.18 §10.6.3.3.3). Attributes named by `includefield` (or `all`) or matched on
//! are added: from the catalog at the study and series levels, from the instance's document
//! at the instance level. A required attribute without a value is sent empty (`{"vr"}`), as
//! F.2.5 allows; attributes the catalog does not store (PerformedProcedureStepStartDate, …)
//! are left out at the study and series levels.
//!
//! No match is `200 []`, as HealthImaging answers. PS3.18 §8.3.4.4.1 currently says 204 with
//! an empty payload; CP-2473 (2025, zero-result responses) moves it to 200, in line with RFC
//! 9110 and C-FIND's "Success"; `dicomweb-client` and OHIF read both. A limit above 1000 (or
//! none) with more results than fit gets PS3.18 §8.3.4.4's `Warning: 299` header.

use std::sync::Arc;

use axum::response::Response;
use http::{HeaderValue, header};
use lightbox_domain::{ImageSetDicomTags, QidoAttributes};
use lightbox_service::{DicomSeries, DicomStudy, InstanceResult, QidoInclude, QidoPage, Service};
use serde_json::{Map, Value, json};

use super::common::{DICOM_JSON, accept_header, check_uid, json_response, not_acceptable};
use super::{DicomwebRequest, datastore_id};
use crate::dicomweb::DicomwebRoute;
use crate::error::ApiError;

/// Runs SearchStudies / SearchSeries / SearchInstances.
pub async fn handle(
    svc: Arc<Service>,
    route: DicomwebRoute,
    req: DicomwebRequest<'_>,
) -> Result<Response, ApiError> {
    let ds = datastore_id(&route)?;
    let content_type = negotiate(&req)?;
    let params = req.params();
    let base = format!("{}/datastore/{ds}", req.base_url);
    let (body, truncated) = match &route {
        DicomwebRoute::SearchStudies { .. } => {
            let page = svc.search_dicom_studies(&ds, &params).await?;
            (render(&page, |s| study_json(s, &base)), page.truncated)
        }
        DicomwebRoute::SearchSeries { study, .. } => {
            if let Some(uid) = study {
                check_uid(uid, "StudyInstanceUID")?;
            }
            let page = svc
                .search_dicom_series(&ds, study.as_deref(), &params)
                .await?;
            (
                render(&page, |s| series_json(s, &page.include, &base)),
                page.truncated,
            )
        }
        DicomwebRoute::SearchInstances { study, series, .. } => {
            if let Some(uid) = study {
                check_uid(uid, "StudyInstanceUID")?;
            }
            if let Some(uid) = series {
                check_uid(uid, "SeriesInstanceUID")?;
            }
            let page = svc
                .search_dicom_instances(
                    &ds,
                    study.as_deref(),
                    series.as_deref(),
                    &params,
                    &base,
                    super::wado::BULK_DATA_THRESHOLD,
                )
                .await?;
            // PS3.18 §10.6.3.3.3: the levels above the one the path fixes.
            let levels = match (study, series) {
                (Some(_), Some(_)) => InstanceLevels::Instance,
                (Some(_), None) => InstanceLevels::SeriesAndInstance,
                _ => InstanceLevels::All,
            };
            (
                render(&page, |i| instance_json(i, levels, &page.include, &base)),
                page.truncated,
            )
        }
        _ => return Err(super::no_operation()),
    };
    let mut resp = json_response(&body, content_type)?;
    if truncated {
        let host = req
            .base_url
            .split_once("://")
            .map_or(req.base_url.as_str(), |(_, h)| h);
        let warning = format!(
            "299 {host} \"The number of results exceeded the maximum supported by the server. \
             Additional results can be requested.\""
        );
        if let Ok(v) = HeaderValue::from_str(&warning) {
            resp.headers_mut().insert(header::WARNING, v);
        }
    }
    Ok(resp)
}

fn render<T>(page: &QidoPage<T>, one: impl Fn(&T) -> Map<String, Value>) -> Value {
    Value::Array(page.items.iter().map(|i| Value::Object(one(i))).collect())
}

/// The response media type: `application/dicom+json`, or `application/json` when that is all
/// the client accepts; 406 for anything else (no XML, no multipart).
fn negotiate(req: &DicomwebRequest<'_>) -> Result<&'static str, ApiError> {
    let ranges = accept_header(req)?;
    if ranges.is_empty() {
        return Ok(DICOM_JSON);
    }
    let accepted = |t: &str| ranges.iter().any(|r| r.q > 0.0 && r.media_type == t);
    if accepted(DICOM_JSON) || accepted("application/*") || accepted("*/*") {
        Ok(DICOM_JSON)
    } else if accepted("application/json") {
        Ok("application/json")
    } else {
        Err(not_acceptable(
            "Search results are served as application/dicom+json only",
        ))
    }
}

/// `"GGGGEEEE": {"vr": vr, "Value": values}` (no `Value` when there are none).
fn put(m: &mut Map<String, Value>, tag: u32, vr: &str, values: Vec<Value>) {
    let mut element = Map::new();
    element.insert("vr".into(), Value::String(vr.into()));
    if !values.is_empty() {
        element.insert("Value".into(), Value::Array(values));
    }
    m.insert(format!("{tag:08X}"), Value::Object(element));
}

/// A stored text value as DICOM JSON values (`\` separates values; an empty one is `null`).
fn text(vr: &str, v: Option<&str>) -> Vec<Value> {
    let trim = |s: &str| s.trim_matches(|c: char| c == ' ' || c == '\0').to_owned();
    let Some(v) = v.map(trim).filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    v.split('\\')
        .map(|s| match trim(s) {
            s if s.is_empty() => Value::Null,
            s if vr == "PN" => json!({ "Alphabetic": s }),
            s => Value::String(s),
        })
        .collect()
}

fn put_text(m: &mut Map<String, Value>, tag: u32, vr: &str, v: Option<&str>) {
    put(m, tag, vr, text(vr, v));
}

fn put_int(m: &mut Map<String, Value>, tag: u32, v: Option<i64>) {
    put(
        m,
        tag,
        "IS",
        v.map(|n| vec![Value::from(n)]).unwrap_or_default(),
    );
}

/// Patient and study attributes of an image set's tags.
fn study_attributes(
    m: &mut Map<String, Value>,
    t: &ImageSetDicomTags,
    a: &QidoAttributes,
    only: Option<&QidoInclude>,
) {
    let wants = |tag: u32| only.is_none_or(|i| i.wants(tag));
    let texts: [(u32, &str, Option<&str>); 11] = [
        (0x0008_0020, "DA", t.study_date.as_deref()),
        (0x0008_0030, "TM", t.study_time.as_deref()),
        (0x0008_0050, "SH", t.accession_number.as_deref()),
        (0x0008_0090, "PN", a.referring_physician_name.as_deref()),
        (0x0008_1030, "LO", t.study_description.as_deref()),
        (0x0010_0010, "PN", t.patient_name.as_deref()),
        (0x0010_0020, "LO", t.patient_id.as_deref()),
        (0x0010_0030, "DA", t.patient_birth_date.as_deref()),
        (0x0010_0040, "CS", t.patient_sex.as_deref()),
        (0x0020_000D, "UI", t.study_instance_uid.as_deref()),
        (0x0020_0010, "SH", t.study_id.as_deref()),
    ];
    for (tag, vr, v) in texts {
        // The study UID is always part of a series object.
        if wants(tag) || tag == 0x0020_000D {
            put_text(m, tag, vr, v);
        }
    }
}

fn study_json(s: &DicomStudy, base: &str) -> Map<String, Value> {
    let mut m = Map::new();
    study_attributes(&mut m, &s.tags, &s.attributes, None);
    put(&mut m, 0x0008_0056, "CS", vec![Value::from("ONLINE")]);
    put(
        &mut m,
        0x0008_0061,
        "CS",
        s.modalities
            .iter()
            .map(|x| Value::from(x.as_str()))
            .collect(),
    );
    put_int(&mut m, 0x0020_1206, Some(s.series));
    put_int(&mut m, 0x0020_1208, Some(s.instances));
    if let Some(uid) = &s.tags.study_instance_uid {
        put(
            &mut m,
            0x0008_1190,
            "UR",
            vec![Value::from(format!("{base}/studies/{uid}"))],
        );
    }
    m
}

/// Series attributes of an image set (SeriesDate / SeriesTime only when asked for).
fn series_attributes(
    m: &mut Map<String, Value>,
    t: &ImageSetDicomTags,
    a: &QidoAttributes,
    include: &QidoInclude,
) {
    put_text(m, 0x0008_0060, "CS", t.series_modality.as_deref());
    put_text(m, 0x0008_103E, "LO", a.series_description.as_deref());
    put_text(m, 0x0018_0015, "CS", t.series_body_part.as_deref());
    put_text(m, 0x0020_000E, "UI", t.series_instance_uid.as_deref());
    put_int(m, 0x0020_0011, t.series_number);
    if include.wants(0x0008_0021) {
        put_text(m, 0x0008_0021, "DA", a.series_date.as_deref());
    }
    if include.wants(0x0008_0031) {
        put_text(m, 0x0008_0031, "TM", a.series_time.as_deref());
    }
}

fn series_json(s: &DicomSeries, include: &QidoInclude, base: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let t = &s.tags;
    study_attributes(&mut m, t, &s.attributes, Some(include));
    series_attributes(&mut m, t, &s.attributes, include);
    put_int(&mut m, 0x0020_1209, Some(s.instances));
    if let (Some(study), Some(series)) = (&t.study_instance_uid, &t.series_instance_uid) {
        put(
            &mut m,
            0x0008_1190,
            "UR",
            vec![Value::from(format!(
                "{base}/studies/{study}/series/{series}"
            ))],
        );
    }
    m
}

/// Which levels' attributes an instance object carries besides its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstanceLevels {
    /// `/studies/{s}/series/{se}/instances`.
    Instance,
    /// `/studies/{s}/instances`.
    SeriesAndInstance,
    /// `/instances`.
    All,
}

fn put_number(m: &mut Map<String, Value>, tag: u32, vr: &str, v: Option<i64>) {
    put(
        m,
        tag,
        vr,
        v.map(|n| vec![Value::from(n)]).unwrap_or_default(),
    );
}

fn instance_json(
    r: &InstanceResult,
    levels: InstanceLevels,
    include: &QidoInclude,
    base: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    let (t, a, i) = (
        &r.instance.tags,
        &r.instance.attributes,
        &r.instance.instance,
    );
    // Study attributes: all for `/instances`, else only those asked for (the UID always).
    let only = (levels != InstanceLevels::All).then_some(include);
    study_attributes(&mut m, t, a, only);
    let c = &r.instance.study;
    if only.is_none_or(|i| i.wants(0x0008_0061)) {
        let modalities = c.modalities.iter().map(|x| Value::from(x.as_str()));
        put(&mut m, 0x0008_0061, "CS", modalities.collect());
    }
    if only.is_none_or(|i| i.wants(0x0020_1206)) {
        put_int(&mut m, 0x0020_1206, Some(c.series));
    }
    if only.is_none_or(|i| i.wants(0x0020_1208)) {
        put_int(&mut m, 0x0020_1208, Some(c.instances));
    }
    if levels != InstanceLevels::Instance || include.all {
        series_attributes(&mut m, t, a, include);
    }
    if levels != InstanceLevels::Instance || include.wants(0x0020_1209) {
        put_int(&mut m, 0x0020_1209, Some(r.instance.series_instances));
    }
    put_text(&mut m, 0x0020_000E, "UI", Some(&i.series_instance_uid));
    put_text(&mut m, 0x0008_0016, "UI", i.sop_class_uid.as_deref());
    put_text(&mut m, 0x0008_0018, "UI", Some(&i.sop_instance_uid));
    put(&mut m, 0x0008_0056, "CS", vec![Value::from("ONLINE")]);
    put_int(&mut m, 0x0020_0013, i.instance_number);
    put_number(&mut m, 0x0028_0010, "US", i.rows);
    put_number(&mut m, 0x0028_0011, "US", i.columns);
    put_number(&mut m, 0x0028_0100, "US", i.bits_allocated);
    put_int(&mut m, 0x0028_0008, i.number_of_frames);
    if let Some(study) = &t.study_instance_uid {
        put(
            &mut m,
            0x0008_1190,
            "UR",
            vec![Value::from(format!(
                "{base}/studies/{study}/series/{}/instances/{}",
                i.series_instance_uid, i.sop_instance_uid
            ))],
        );
    }
    // Attributes from the document that the catalog did not give.
    for (tag, value) in &r.included {
        if !m.contains_key(tag) {
            m.insert(tag.clone(), value.clone());
        }
    }
    // Keys in tag order, as the other objects are written.
    let mut entries: Vec<(String, Value)> = m.into_iter().collect();
    entries.sort_by(|x, y| x.0.cmp(&y.0));
    entries.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightbox_domain::{ImageSetId, Millis};

    fn tags() -> ImageSetDicomTags {
        ImageSetDicomTags {
            patient_id: Some("P1".into()),
            patient_name: Some("Doe^John".into()),
            study_instance_uid: Some("1.2.3".into()),
            series_instance_uid: Some("1.2.3.4".into()),
            series_modality: Some("CT".into()),
            series_number: Some(7),
            study_date: Some("20130509".into()),
            ..Default::default()
        }
    }

    #[test]
    fn study_object() {
        let s = DicomStudy {
            tags: tags(),
            attributes: QidoAttributes::default(),
            modalities: vec!["CT".into(), "MR".into()],
            series: 2,
            instances: 9,
            updated_at: Millis(1),
        };
        let v = Value::Object(study_json(&s, "http://h/datastore/d"));
        assert_eq!(
            v["00100010"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]})
        );
        assert_eq!(v["00080061"], json!({"vr": "CS", "Value": ["CT", "MR"]}));
        assert_eq!(v["00201206"], json!({"vr": "IS", "Value": [2]}));
        assert_eq!(v["00201208"], json!({"vr": "IS", "Value": [9]}));
        assert_eq!(v["00080020"], json!({"vr": "DA", "Value": ["20130509"]}));
        assert_eq!(v["00080050"], json!({"vr": "SH"}));
        assert_eq!(
            v["00081190"],
            json!({"vr": "UR", "Value": ["http://h/datastore/d/studies/1.2.3"]})
        );
        // Series attributes are not the study's.
        assert!(v.get("00080060").is_none() && v.get("0020000E").is_none());
    }

    #[test]
    fn series_object() {
        let s = DicomSeries {
            image_set_id: ImageSetId::generate(),
            tags: tags(),
            attributes: QidoAttributes::default(),
            instances: 4,
            updated_at: Millis(1),
        };
        let mut include = QidoInclude::default();
        let v = Value::Object(series_json(&s, &include, "http://h/datastore/d"));
        assert_eq!(v["00200011"], json!({"vr": "IS", "Value": [7]}));
        assert_eq!(v["00201209"], json!({"vr": "IS", "Value": [4]}));
        assert_eq!(v["0020000D"], json!({"vr": "UI", "Value": ["1.2.3"]}));
        assert_eq!(v["00180015"], json!({"vr": "CS"}));
        assert!(v.get("00100010").is_none());
        include.tags.insert(0x0010_0010);
        let v = Value::Object(series_json(&s, &include, "http://h/datastore/d"));
        assert_eq!(v["00100010"]["Value"][0]["Alphabetic"], "Doe^John");
        assert!(v.get("00100020").is_none());
        include.all = true;
        let v = Value::Object(series_json(&s, &include, "http://h/datastore/d"));
        assert_eq!(v["00100020"]["Value"][0], "P1");
        assert_eq!(
            v["00081190"]["Value"][0],
            "http://h/datastore/d/studies/1.2.3/series/1.2.3.4"
        );
    }

    #[test]
    fn multi_valued_text() {
        assert_eq!(text("CS", Some("CT\\PT")), vec![json!("CT"), json!("PT")]);
        assert_eq!(text("PN", Some("A^B")), vec![json!({"Alphabetic": "A^B"})]);
        assert!(text("LO", None).is_empty());
    }
}
