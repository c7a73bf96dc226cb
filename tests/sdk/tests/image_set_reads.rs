//! Image set reads through aws-sdk-medicalimaging: GetImageSet, GetImageSetMetadata,
//! GetImageFrame, SearchImageSets and ListImageSetVersions on image sets made by real import
//! jobs of pydicom corpus files (and re-imports for versions), with every expectation derived
//! from the image sets' own metadata documents and GetImageSet, never from the search code;
//! every member, filter, sort order, page boundary and error; CORS headers with raw requests.
//! Runs on the backend `LIGHTBOX_TEST_BACKEND` names.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightbox_sdk_tests::aws_sdk_medicalimaging::Client;
use lightbox_sdk_tests::aws_sdk_medicalimaging::config::http::HttpResponse;
use lightbox_sdk_tests::aws_sdk_medicalimaging::error::{ProvideErrorMetadata, SdkError};
use lightbox_sdk_tests::aws_sdk_medicalimaging::primitives::DateTime;
use lightbox_sdk_tests::aws_sdk_medicalimaging::types::{
    DicomStudyDateAndTime, DicomTags, ImageFrameInformation, ImageSetState, ImageSetWorkflowStatus,
    ImageSetsMetadataSummary, Operator, SearchByAttributeValue, SearchCriteria, SearchFilter, Sort,
    SortField, SortOrder, StorageTier,
};
use lightbox_sdk_tests::*;
use serde_json::{Value, json};

const BUCKET: &str = "reads";
const HTJ2K: &str = "1.2.840.10008.1.2.4.202";

/// pydicom-data DICOMDIR test files (16×16 images): two patients, six studies (three on
/// 2003-05-05 at different times, two on 2001-01-01 at midnight), thirteen series.
const DICOMDIR_FILES: [&str; 31] = [
    "15820", "15970", "17106", "17136", "17166", "17196", "2062", "2392", "2693", "3023", "3353",
    "4467", "4528", "4558", "4588", "4618", "4648", "4678", "4919", "4950", "4981", "5011", "5641",
    "6154", "6247", "6273", "6278", "6293", "6605", "6924", "6935",
];
/// Single-series pydicom files: other patients and dates; MR_small and JPEG2000 share a study
/// date and time (a sort tie); emri has no PatientID and 10 frames; image_dfl has no StudyDate;
/// JPEG2000 is JPEG 2000 lossy (.91), kept as it is.
const NAMED_FILES: [&str; 6] = [
    "CT_small.dcm",
    "MR_small.dcm",
    "emri_small.dcm",
    "SC_rgb.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
];
/// The four instances of one CT series (study 1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1).
const CT_SERIES: [&str; 4] = ["17106", "17136", "17166", "17196"];

// --- imports ------------------------------------------------------------------------------------

async fn bucket(srv: &TestServer) {
    srv.s3_client()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
}

/// Uploads `files` under `s3://reads/{prefix}/in/` and runs one import job to completion.
async fn import(
    srv: &TestServer,
    client: &Client,
    ds: &str,
    prefix: &str,
    files: &[(String, Vec<u8>)],
) -> Vec<Imported> {
    import_files(&srv.url(), client, ds, BUCKET, prefix, files).await
}

// --- expectations from the metadata documents --------------------------------------------------

/// The DICOMTags members an image set's document implies (values trimmed, empty = absent,
/// several values joined by `\`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tags {
    patient_id: Option<String>,
    patient_name: Option<String>,
    patient_birth_date: Option<String>,
    patient_sex: Option<String>,
    study_instance_uid: Option<String>,
    study_id: Option<String>,
    study_description: Option<String>,
    accession_number: Option<String>,
    series_instance_uid: Option<String>,
    series_modality: Option<String>,
    series_body_part: Option<String>,
    series_number: Option<i32>,
    study_date: Option<String>,
    study_time: Option<String>,
}

impl Tags {
    fn from_sdk(t: &DicomTags) -> Tags {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Tags {
            patient_id: s(t.dicom_patient_id()),
            patient_name: s(t.dicom_patient_name()),
            patient_birth_date: s(t.dicom_patient_birth_date()),
            patient_sex: s(t.dicom_patient_sex()),
            study_instance_uid: s(t.dicom_study_instance_uid()),
            study_id: s(t.dicom_study_id()),
            study_description: s(t.dicom_study_description()),
            accession_number: s(t.dicom_accession_number()),
            series_instance_uid: s(t.dicom_series_instance_uid()),
            series_modality: s(t.dicom_series_modality()),
            series_body_part: s(t.dicom_series_body_part()),
            series_number: t.dicom_series_number(),
            study_date: s(t.dicom_study_date()),
            study_time: s(t.dicom_study_time()),
        }
    }
}

fn text(level: Option<&Value>, key: &str) -> Option<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let s = match level?.get("DICOM")?.get(key)? {
        Value::Array(a) => a.iter().filter_map(one).collect::<Vec<_>>().join("\\"),
        v => one(v)?,
    };
    let s = s.trim_matches([' ', '\0']);
    (!s.is_empty()).then(|| s.to_owned())
}

/// One frame of a document: (SOP instance UID, frame id, stored transfer syntax).
type Frame = (String, String, String);

#[derive(Debug, Clone)]
struct Set {
    id: String,
    is_primary: bool,
    version: i32,
    created: i64,
    updated: i64,
    last_accessed: i64,
    tags: Tags,
    instances: usize,
    frames: Vec<Frame>,
}

impl Set {
    /// `YYYYMMDDHHMMSSFFFFFF` of the study date and time, or "" without a valid date.
    fn study_key(&self) -> String {
        study_key(
            self.tags.study_date.as_deref().unwrap_or(""),
            self.tags.study_time.as_deref(),
        )
    }
}

fn study_key(date: &str, time: Option<&str>) -> String {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return String::new();
    }
    let t = time.unwrap_or("");
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    format!("{date}{whole:0<6}{fraction:0<6}")
}

fn series_of(doc: &Value) -> (&String, &Value) {
    let series = doc["Study"]["Series"].as_object().expect("Study.Series");
    assert_eq!(series.len(), 1, "one series per image set");
    series.iter().next().unwrap()
}

fn frames_of(doc: &Value) -> Vec<Frame> {
    let (_, series) = series_of(doc);
    let mut out = Vec::new();
    for (sop, inst) in series["Instances"].as_object().expect("Instances") {
        let ts = inst["StoredTransferSyntaxUID"]
            .as_str()
            .unwrap_or(HTJ2K)
            .to_owned();
        for f in inst["ImageFrames"].as_array().into_iter().flatten() {
            out.push((
                sop.clone(),
                f["ID"].as_str().unwrap().to_owned(),
                ts.clone(),
            ));
        }
    }
    out
}

fn tags_of(doc: &Value) -> Tags {
    let patient = doc.get("Patient");
    let study = doc.get("Study");
    let (series_uid, series) = series_of(doc);
    Tags {
        patient_id: text(patient, "PatientID"),
        patient_name: text(patient, "PatientName"),
        patient_birth_date: text(patient, "PatientBirthDate"),
        patient_sex: text(patient, "PatientSex"),
        study_instance_uid: text(study, "StudyInstanceUID"),
        study_id: text(study, "StudyID"),
        study_description: text(study, "StudyDescription"),
        accession_number: text(study, "AccessionNumber"),
        series_instance_uid: text(Some(series), "SeriesInstanceUID").or(Some(series_uid.clone())),
        series_modality: text(Some(series), "Modality"),
        series_body_part: text(Some(series), "BodyPartExamined"),
        series_number: text(Some(series), "SeriesNumber").and_then(|n| n.parse().ok()),
        study_date: text(study, "StudyDate"),
        study_time: text(study, "StudyTime"),
    }
}

/// Milliseconds of a timestamp (rounded: the wire has millisecond precision).
fn ms(t: Option<&DateTime>) -> i64 {
    let t = t.expect("timestamp present");
    t.secs() * 1000 + i64::from((t.subsec_nanos() + 500_000) / 1_000_000)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Reads a version's metadata document, checking the response headers and the gzip bytes.
async fn metadata(client: &Client, ds: &str, id: &str, version: Option<&str>) -> Value {
    let out = client
        .get_image_set_metadata()
        .datastore_id(ds)
        .image_set_id(id)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetImageSetMetadata {id} {version:?}: {e:?}"));
    assert_eq!(out.content_type(), Some("application/json"));
    assert_eq!(out.content_encoding(), Some("gzip"));
    let bytes = out
        .image_set_metadata_blob
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    let mut s = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut s)
        .expect("metadata gunzips");
    let doc: Value = serde_json::from_str(&s).expect("metadata is JSON");
    assert_eq!(doc["DatastoreID"], ds);
    assert_eq!(doc["ImageSetID"], id);
    assert!(doc["SchemaVersion"].is_string());
    doc
}

/// GetImageSet (latest version) and the metadata document of one image set.
async fn load_set(client: &Client, meta_client: &Client, ds: &str, id: &str) -> Set {
    let got = client
        .get_image_set()
        .datastore_id(ds)
        .image_set_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetImageSet {id}: {e:?}"));
    assert_eq!(got.datastore_id(), ds);
    assert_eq!(got.image_set_id(), id);
    assert_eq!(got.image_set_state(), &ImageSetState::Active);
    assert_eq!(
        got.image_set_arn(),
        Some(
            format!("arn:aws:medical-imaging:{REGION}:{ACCOUNT}:datastore/{ds}/imageset/{id}")
                .as_str()
        )
    );
    assert_eq!(got.storage_tier(), Some(&StorageTier::FrequentAccess));
    assert!(got.deleted_at().is_none() && got.message().is_none() && got.overrides().is_none());
    let created = ms(got.created_at());
    let updated = ms(got.updated_at());
    let last_accessed = ms(got.last_accessed_at());
    assert!(created <= updated, "createdAt after updatedAt");
    assert!(
        created <= last_accessed && last_accessed <= now_ms() + 1000,
        "lastAccessedAt {last_accessed} (created {created})"
    );
    let doc = metadata(meta_client, ds, id, None).await;
    let (_, series) = series_of(&doc);
    Set {
        id: id.to_owned(),
        is_primary: got.is_primary().expect("isPrimary"),
        version: got.version_id().parse().expect("versionId is a number"),
        created,
        updated,
        last_accessed,
        tags: tags_of(&doc),
        instances: series["Instances"].as_object().unwrap().len(),
        frames: frames_of(&doc),
    }
}

// --- searching ----------------------------------------------------------------------------------

#[track_caller]
fn assert_err<T, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
    code: &str,
    status: u16,
    what: &str,
) {
    let Err(err) = r else {
        panic!("{what}: succeeded, expected {code} ({status})");
    };
    assert_eq!(
        (err.code(), err.raw_response().map(|r| r.status().as_u16())),
        (Some(code), Some(status)),
        "{what}: {err:?}"
    );
}

fn sort(field: SortField, order: SortOrder) -> Sort {
    Sort::builder()
        .sort_field(field)
        .sort_order(order)
        .build()
        .unwrap()
}

fn eq(v: SearchByAttributeValue) -> SearchFilter {
    SearchFilter::builder()
        .operator(Operator::Equal)
        .values(v)
        .build()
        .unwrap()
}

fn between(lo: SearchByAttributeValue, hi: SearchByAttributeValue) -> SearchFilter {
    SearchFilter::builder()
        .operator(Operator::Between)
        .values(lo)
        .values(hi)
        .build()
        .unwrap()
}

fn day(date: &str, time: Option<&str>) -> SearchByAttributeValue {
    SearchByAttributeValue::DicomStudyDateAndTime(
        DicomStudyDateAndTime::builder()
            .dicom_study_date(date)
            .set_dicom_study_time(time.map(str::to_owned))
            .build()
            .unwrap(),
    )
}

fn at(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

fn criteria(filters: &[SearchFilter], sort: Option<Sort>) -> SearchCriteria {
    SearchCriteria::builder()
        .set_filters((!filters.is_empty()).then(|| filters.to_vec()))
        .set_sort(sort)
        .build()
}

/// Every page of a search, checking page sizes, `nextToken` only when more follows and the
/// echoed sort on each page.
async fn search_all(
    client: &Client,
    ds: &str,
    criteria: Option<SearchCriteria>,
    page: Option<i32>,
    what: &str,
) -> (Vec<ImageSetsMetadataSummary>, Sort) {
    let want_sort = criteria
        .as_ref()
        .and_then(|c| c.sort().cloned())
        .unwrap_or_else(|| sort(SortField::UpdatedAt, SortOrder::Desc));
    let size = page.unwrap_or(50) as usize;
    let mut all = Vec::new();
    let mut token = None;
    for _ in 0..200 {
        let out = client
            .search_image_sets()
            .datastore_id(ds)
            .set_search_criteria(criteria.clone())
            .set_max_results(page)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: SearchImageSets: {e:?}"));
        assert_eq!(out.sort(), Some(&want_sort), "{what}: echoed sort");
        let items = out.image_sets_metadata_summaries();
        assert!(
            token.is_none() || !items.is_empty(),
            "{what}: a nextToken led to an empty page"
        );
        token = out.next_token().map(str::to_owned);
        if token.is_some() {
            assert_eq!(items.len(), size, "{what}: a page before the last is full");
        } else {
            assert!(items.len() <= size, "{what}: page too long");
        }
        all.extend(items.iter().cloned());
        if token.is_none() {
            return (all, want_sort);
        }
    }
    panic!("{what}: too many pages");
}

/// The ids of the `sets` kept by `keep`, in `sort` order (ties by image set id, same direction).
fn expected_order(sets: &[Set], keep: &dyn Fn(&Set) -> bool, sort: &Sort) -> Vec<String> {
    let mut v: Vec<&Set> = sets.iter().filter(|s| keep(s)).collect();
    v.sort_by(|a, b| {
        let by = match sort.sort_field() {
            SortField::UpdatedAt => a.updated.cmp(&b.updated),
            SortField::CreatedAt => a.created.cmp(&b.created),
            SortField::DicomStudyDateAndTime => a.study_key().cmp(&b.study_key()),
            other => panic!("sort field {other:?}"),
        };
        by.then_with(|| a.id.cmp(&b.id))
    });
    if sort.sort_order() == &SortOrder::Desc {
        v.reverse();
    }
    v.into_iter().map(|s| s.id.clone()).collect()
}

/// One filter case: its filters and which sets its documents say it matches.
struct Case {
    label: String,
    filters: Vec<SearchFilter>,
    keep: Box<dyn Fn(&Set) -> bool>,
}

fn case(
    label: impl Into<String>,
    filters: Vec<SearchFilter>,
    keep: impl Fn(&Set) -> bool + 'static,
) -> Case {
    Case {
        label: label.into(),
        filters,
        keep: Box::new(keep),
    }
}

/// Runs `case` with the default sort and others, at page sizes 1, 2 and 50, and compares the
/// ids with the expected order. Returns how many image sets matched.
async fn check_case(client: &Client, ds: &str, sets: &[Set], c: &Case) -> usize {
    let runs: [(Option<Sort>, Option<i32>); 6] = [
        (None, Some(1)),
        (None, Some(2)),
        (None, Some(50)),
        (None, None),
        (
            Some(sort(SortField::DicomStudyDateAndTime, SortOrder::Asc)),
            Some(2),
        ),
        (Some(sort(SortField::CreatedAt, SortOrder::Desc)), Some(3)),
    ];
    let mut n = 0;
    for (s, page) in runs {
        let what = format!("{} (sort {s:?}, maxResults {page:?})", c.label);
        let (got, used) = search_all(client, ds, Some(criteria(&c.filters, s)), page, &what).await;
        let got: Vec<String> = got.iter().map(|x| x.image_set_id().to_owned()).collect();
        let want = expected_order(sets, &*c.keep, &used);
        assert_eq!(got, want, "{what}");
        n = want.len();
    }
    n
}

/// Checks a summary against the image set's GetImageSet and document.
fn check_summary(s: &ImageSetsMetadataSummary, want: &Set, all: &[Set]) {
    let id = &want.id;
    assert_eq!(s.version(), Some(want.version), "{id} version");
    assert_eq!(ms(s.created_at()), want.created, "{id} createdAt");
    assert_eq!(ms(s.updated_at()), want.updated, "{id} updatedAt");
    assert!(
        ms(s.last_accessed_at()) >= want.last_accessed,
        "{id} lastAccessedAt went backwards"
    );
    assert_eq!(s.storage_tier(), Some(&StorageTier::FrequentAccess), "{id}");
    assert_eq!(s.is_primary(), Some(want.is_primary), "{id} isPrimary");
    let tags = s.dicom_tags().expect("DICOMTags");
    assert_eq!(Tags::from_sdk(tags), want.tags, "{id} DICOMTags");
    let (series, instances) = if want.is_primary {
        let study: Vec<&Set> = all
            .iter()
            .filter(|o| o.is_primary && o.tags.study_instance_uid == want.tags.study_instance_uid)
            .collect();
        (study.len(), study.iter().map(|o| o.instances).sum())
    } else {
        (1, want.instances)
    };
    assert_eq!(
        (
            tags.dicom_number_of_study_related_series(),
            tags.dicom_number_of_study_related_instances()
        ),
        (series as i32, instances as i32),
        "{id} study counts"
    );
}

/// A signed raw POST with `Host: runtime-127.0.0.1:PORT`.
async fn raw_post(srv: &TestServer, path: &str, body: Option<&Value>) -> RawResponse {
    let mut r = srv
        .raw("POST", path)
        .host(&format!("runtime-{}", srv.addr()));
    if let Some(b) = body {
        r = r.json(b);
    }
    r.signed().send().await.unwrap()
}

fn tamper(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

// --- tests --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_image_sets_filters_sorts_and_pages() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let ds = create_active(&c, "reads-search").await.unwrap();
    bucket(&srv).await;

    // Job 1: 37 corpus files, 19 series, all primary. Job 2: one instance of a series with
    // another PatientID (a conflict): a non-primary image set.
    let names: Vec<&str> = DICOMDIR_FILES.iter().chain(&NAMED_FILES).copied().collect();
    let job1 = import(&srv, &c, &ds, "corpus", &corpus_files(&names)).await;
    assert!(job1.iter().all(|l| l.is_primary), "{job1:?}");
    let other = patch_bytes(
        corpus_files(&["4919"]).remove(0).1,
        b"98890234",
        b"98890299",
    );
    let job2 = import(&srv, &c, &ds, "conflict", &[("4919".into(), other)]).await;
    assert!(!job2[0].is_primary, "{job2:?}");
    let ids: BTreeSet<String> = job1
        .iter()
        .chain(&job2)
        .map(|l| l.image_set_id.clone())
        .collect();
    assert_eq!(
        ids.len(),
        20,
        "image sets: one per series, plus the conflict"
    );

    let before = RUNTIME_HOST_REQUESTS.load(std::sync::atomic::Ordering::SeqCst);
    let mut sets = Vec::new();
    for id in &ids {
        sets.push(load_set(&c, &rc, &ds, id).await);
    }
    assert!(RUNTIME_HOST_REQUESTS.load(std::sync::atomic::Ordering::SeqCst) >= before + 20);
    assert!(sets.iter().all(|s| s.version == 1));
    let other_id = &job2[0].image_set_id;
    let other_set = sets.iter().find(|s| &s.id == other_id).unwrap().clone();
    assert_eq!(other_set.tags.patient_id.as_deref(), Some("98890299"));
    // The corpus as the documents describe it (sanity of the data the cases rely on).
    let count = |f: &dyn Fn(&Set) -> bool| sets.iter().filter(|s| f(s)).count();
    assert_eq!(
        count(&|s| s.tags.patient_id.as_deref() == Some("98890234")),
        9
    );
    assert_eq!(
        count(&|s| s.tags.study_date.as_deref() == Some("20030505")),
        8
    );
    assert_eq!(count(&|s| s.tags.study_date.is_none()), 1);
    assert_eq!(count(&|s| s.tags.patient_id.is_none()), 2);

    // Everything, every sort order, pages of 1, 2 and 50; summaries member by member.
    let (all, used) = search_all(&rc, &ds, None, None, "no criteria").await;
    assert_eq!(used, sort(SortField::UpdatedAt, SortOrder::Desc));
    let got: Vec<String> = all.iter().map(|s| s.image_set_id().to_owned()).collect();
    assert_eq!(
        got,
        expected_order(&sets, &|_| true, &used),
        "updatedAt DESC by default"
    );
    for s in &all {
        check_summary(
            s,
            sets.iter().find(|x| x.id == s.image_set_id()).unwrap(),
            &sets,
        );
    }
    let (empty, _) = search_all(
        &rc,
        &ds,
        Some(SearchCriteria::builder().build()),
        Some(7),
        "{}",
    )
    .await;
    assert_eq!(empty.len(), 20);
    for field in [
        SortField::UpdatedAt,
        SortField::CreatedAt,
        SortField::DicomStudyDateAndTime,
    ] {
        for order in [SortOrder::Asc, SortOrder::Desc] {
            for page in [1, 2, 19, 20, 21, 50] {
                let s = sort(field.clone(), order.clone());
                let what = format!("sort {s:?} maxResults {page}");
                let (got, _) = search_all(
                    &rc,
                    &ds,
                    Some(criteria(&[], Some(s.clone()))),
                    Some(page),
                    &what,
                )
                .await;
                let got: Vec<String> = got.iter().map(|x| x.image_set_id().to_owned()).collect();
                assert_eq!(got, expected_order(&sets, &|_| true, &s), "{what}");
            }
        }
    }

    // Filters: every value of every text attribute, each alone and ANDed with another.
    let mut cases = Vec::new();
    type Get = fn(&Tags) -> Option<String>;
    type Make = fn(String) -> SearchByAttributeValue;
    let texts: [(&str, Get, Make); 5] = [
        (
            "DICOMPatientId",
            |t| t.patient_id.clone(),
            SearchByAttributeValue::DicomPatientId,
        ),
        (
            "DICOMAccessionNumber",
            |t| t.accession_number.clone(),
            SearchByAttributeValue::DicomAccessionNumber,
        ),
        (
            "DICOMStudyId",
            |t| t.study_id.clone(),
            SearchByAttributeValue::DicomStudyId,
        ),
        (
            "DICOMStudyInstanceUID",
            |t| t.study_instance_uid.clone(),
            SearchByAttributeValue::DicomStudyInstanceUid,
        ),
        (
            "DICOMSeriesInstanceUID",
            |t| t.series_instance_uid.clone(),
            SearchByAttributeValue::DicomSeriesInstanceUid,
        ),
    ];
    for (name, get, make) in texts {
        let values: BTreeSet<String> = sets.iter().filter_map(|s| get(&s.tags)).collect();
        assert!(!values.is_empty(), "{name}");
        for v in values {
            let want = v.clone();
            cases.push(case(format!("{name} = {v}"), vec![eq(make(v))], move |s| {
                get(&s.tags).as_deref() == Some(want.as_str())
            }));
        }
        cases.push(case(
            format!("{name} unknown"),
            vec![eq(make(if name.ends_with("UID") {
                "1.2.3.999".into()
            } else {
                "no-such-value".into()
            }))],
            |_| false,
        ));
    }
    // Text matches are exact: no prefixes, no case folding.
    cases.push(case(
        "patient prefix",
        vec![eq(SearchByAttributeValue::DicomPatientId("9889".into()))],
        |_| false,
    ));
    cases.push(case(
        "study UID prefix",
        vec![eq(SearchByAttributeValue::DicomStudyInstanceUid(
            "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0".into(),
        ))],
        |_| false,
    ));
    cases.push(case(
        "study id case",
        vec![eq(SearchByAttributeValue::DicomStudyId("1ct1".into()))],
        |_| false,
    ));
    cases.push(case(
        "isPrimary true",
        vec![eq(SearchByAttributeValue::IsPrimary(true))],
        |s| s.is_primary,
    ));
    cases.push(case(
        "isPrimary false",
        vec![eq(SearchByAttributeValue::IsPrimary(false))],
        |s| !s.is_primary,
    ));
    // Study date and time: a whole day, an instant, ranges with inclusive bounds (a bound
    // without a time is midnight), image sets without a date never match.
    cases.push(case(
        "study day 20030505",
        vec![eq(day("20030505", None))],
        |s| s.study_key().starts_with("20030505"),
    ));
    cases.push(case(
        "study instant 20030505 045357",
        vec![eq(day("20030505", Some("045357")))],
        |s| s.study_key() == "20030505045357000000",
    ));
    cases.push(case(
        "study instant 20030505 0453",
        vec![eq(day("20030505", Some("0453")))],
        |s| s.study_key() == "20030505045300000000",
    ));
    cases.push(case(
        "study instant 20030505 045357.0",
        vec![eq(day("20030505", Some("045357.0")))],
        |s| s.study_key() == "20030505045357000000",
    ));
    cases.push(case(
        "study between 20030505 0250 and 0454 (HHMM bounds)",
        vec![between(
            day("20030505", Some("0250")),
            day("20030505", Some("0454")),
        )],
        |s| {
            let k = s.study_key();
            k.as_str() >= "20030505025000000000" && k.as_str() <= "20030505045400000000"
        },
    ));
    cases.push(case(
        "study day 20010101 (sets at midnight)",
        vec![eq(day("20010101", None))],
        |s| s.study_key().starts_with("20010101"),
    ));
    cases.push(case(
        "study day 20040826 (a tie)",
        vec![eq(day("20040826", None))],
        |s| s.study_key().starts_with("20040826"),
    ));
    cases.push(case(
        "study day without sets",
        vec![eq(day("19991122", None))],
        |_| false,
    ));
    cases.push(case(
        "study between 20030505 030000 and 050743 (inclusive)",
        vec![between(
            day("20030505", Some("030000")),
            day("20030505", Some("050743")),
        )],
        |s| {
            let k = s.study_key();
            k.as_str() >= "20030505030000000000" && k.as_str() <= "20030505050743000000"
        },
    ));
    cases.push(case(
        "study between 20010101 and 20030505 (midnight)",
        vec![between(day("20010101", None), day("20030505", None))],
        |s| {
            let k = s.study_key();
            !k.is_empty()
                && k.as_str() >= "20010101000000000000"
                && k.as_str() <= "20030505000000000000"
        },
    ));
    cases.push(case(
        "study between 19000101 and 20991231",
        vec![between(
            day("19000101", None),
            day("20991231", Some("235959.999999")),
        )],
        |s| !s.study_key().is_empty(),
    ));
    cases.push(case(
        "study between equal bounds",
        vec![between(
            day("20040826", Some("185059")),
            day("20040826", Some("185059")),
        )],
        |s| s.study_key() == "20040826185059000000",
    ));
    // createdAt / updatedAt: exact milliseconds and inclusive ranges.
    let mut by_updated: Vec<&Set> = sets.iter().collect();
    by_updated.sort_by_key(|s| (s.updated, s.id.clone()));
    let (u_lo, u_hi) = (by_updated[4].updated, by_updated[12].updated);
    cases.push(case(
        format!("updatedAt between {u_lo} and {u_hi}"),
        vec![between(
            SearchByAttributeValue::UpdatedAt(at(u_lo)),
            SearchByAttributeValue::UpdatedAt(at(u_hi)),
        )],
        move |s| s.updated >= u_lo && s.updated <= u_hi,
    ));
    let u = by_updated[7].updated;
    cases.push(case(
        format!("updatedAt = {u}"),
        vec![eq(SearchByAttributeValue::UpdatedAt(at(u)))],
        move |s| s.updated == u,
    ));
    cases.push(case(
        "updatedAt = 1 ms off",
        vec![eq(SearchByAttributeValue::UpdatedAt(at(by_updated[0]
            .updated
            - 1)))],
        |_| false,
    ));
    let job1_ids: BTreeSet<String> = job1.iter().map(|l| l.image_set_id.clone()).collect();
    let c_lo = sets
        .iter()
        .filter(|s| job1_ids.contains(&s.id))
        .map(|s| s.created)
        .min()
        .unwrap();
    let c_hi = sets
        .iter()
        .filter(|s| job1_ids.contains(&s.id))
        .map(|s| s.created)
        .max()
        .unwrap();
    cases.push(case(
        "createdAt between job 1",
        vec![between(
            SearchByAttributeValue::CreatedAt(at(c_lo)),
            SearchByAttributeValue::CreatedAt(at(c_hi)),
        )],
        move |s| s.created >= c_lo && s.created <= c_hi,
    ));
    let oc = other_set.created;
    cases.push(case(
        "createdAt = job 2's",
        vec![eq(SearchByAttributeValue::CreatedAt(at(oc)))],
        move |s| s.created == oc,
    ));
    // Two filters are ANDed.
    cases.push(case(
        "patient 98890234 on 20030505",
        vec![
            eq(SearchByAttributeValue::DicomPatientId("98890234".into())),
            eq(day("20030505", None)),
        ],
        |s| {
            s.tags.patient_id.as_deref() == Some("98890234")
                && s.study_key().starts_with("20030505")
        },
    ));
    cases.push(case(
        "primary sets of study .133",
        vec![
            eq(SearchByAttributeValue::IsPrimary(true)),
            eq(SearchByAttributeValue::DicomStudyInstanceUid(
                "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.133".into(),
            )),
        ],
        |s| {
            s.is_primary
                && s.tags.study_instance_uid.as_deref()
                    == Some("1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.133")
        },
    ));
    cases.push(case(
        "accession 2 updated in a range",
        vec![
            between(
                SearchByAttributeValue::UpdatedAt(at(u_lo)),
                SearchByAttributeValue::UpdatedAt(at(u_hi)),
            ),
            eq(SearchByAttributeValue::DicomAccessionNumber("2".into())),
        ],
        move |s| {
            s.updated >= u_lo
                && s.updated <= u_hi
                && s.tags.accession_number.as_deref() == Some("2")
        },
    ));
    cases.push(case(
        "patient 77654033 in 1995",
        vec![
            eq(SearchByAttributeValue::DicomPatientId("77654033".into())),
            between(day("19950101", None), day("19960101", None)),
        ],
        |s| s.tags.patient_id.as_deref() == Some("77654033") && s.study_key().starts_with("1995"),
    ));
    for c in &cases {
        check_case(&rc, &ds, &sets, c).await;
    }

    // DICOMTags as JSON: `version` and the integer members are JSON integers, the rest strings.
    for body in [None, Some(json!({}))] {
        let r = raw_post(
            &srv,
            &format!("/datastore/{ds}/searchImageSets"),
            body.as_ref(),
        )
        .await;
        let v = r.assert_ok();
        assert_eq!(
            v["sort"],
            json!({"sortField": "updatedAt", "sortOrder": "DESC"})
        );
        assert!(v.get("nextToken").is_none());
        let items = v["imageSetsMetadataSummaries"].as_array().unwrap();
        assert_eq!(items.len(), 20);
        for item in items {
            assert!(item["version"].is_i64(), "{item}");
            assert!(item["createdAt"].is_number() && item["lastAccessedAt"].is_number());
            assert_eq!(item["storageTier"], "FREQUENT_ACCESS");
            assert!(item["isPrimary"].is_boolean());
            for (k, t) in item["DICOMTags"].as_object().unwrap() {
                match k.as_str() {
                    "DICOMSeriesNumber"
                    | "DICOMNumberOfStudyRelatedSeries"
                    | "DICOMNumberOfStudyRelatedInstances" => assert!(t.is_i64(), "{k}: {t}"),
                    "DICOMPatientId"
                    | "DICOMPatientName"
                    | "DICOMPatientBirthDate"
                    | "DICOMPatientSex"
                    | "DICOMStudyInstanceUID"
                    | "DICOMStudyId"
                    | "DICOMStudyDescription"
                    | "DICOMAccessionNumber"
                    | "DICOMSeriesInstanceUID"
                    | "DICOMSeriesModality"
                    | "DICOMSeriesBodyPart"
                    | "DICOMStudyDate"
                    | "DICOMStudyTime" => {
                        assert!(t.as_str().is_some_and(|s| !s.is_empty()), "{k}: {t}")
                    }
                    other => panic!("unexpected DICOMTags member {other}"),
                }
            }
        }
    }

    // Validation errors.
    let bad = |filters: Vec<SearchFilter>| Some(criteria(&filters, None));
    let invalid: Vec<(&str, Option<SearchCriteria>)> = vec![
        (
            "EQUAL with two values",
            bad(vec![
                SearchFilter::builder()
                    .operator(Operator::Equal)
                    .values(SearchByAttributeValue::DicomPatientId("a".into()))
                    .values(SearchByAttributeValue::DicomPatientId("b".into()))
                    .build()
                    .unwrap(),
            ]),
        ),
        (
            "BETWEEN with one value",
            bad(vec![
                SearchFilter::builder()
                    .operator(Operator::Between)
                    .values(SearchByAttributeValue::UpdatedAt(at(0)))
                    .build()
                    .unwrap(),
            ]),
        ),
        (
            "BETWEEN on DICOMPatientId",
            bad(vec![between(
                SearchByAttributeValue::DicomPatientId("a".into()),
                SearchByAttributeValue::DicomPatientId("b".into()),
            )]),
        ),
        (
            "BETWEEN on isPrimary",
            bad(vec![between(
                SearchByAttributeValue::IsPrimary(false),
                SearchByAttributeValue::IsPrimary(true),
            )]),
        ),
        (
            "BETWEEN of mixed attributes",
            bad(vec![between(
                SearchByAttributeValue::UpdatedAt(at(0)),
                SearchByAttributeValue::CreatedAt(at(now_ms())),
            )]),
        ),
        (
            "updatedAt lower > upper",
            bad(vec![between(
                SearchByAttributeValue::UpdatedAt(at(u_hi + 1)),
                SearchByAttributeValue::UpdatedAt(at(u_hi)),
            )]),
        ),
        (
            "study date lower > upper",
            bad(vec![between(
                day("20030506", None),
                day("20030505", Some("235959")),
            )]),
        ),
        (
            "a study instance UID that is not one",
            bad(vec![eq(SearchByAttributeValue::DicomStudyInstanceUid(
                "abc".into(),
            ))]),
        ),
        (
            "study date with dashes",
            bad(vec![eq(day("2003-05-05", None))]),
        ),
        ("study date yyMMdd", bad(vec![eq(day("030505", None))])),
        ("empty study date", bad(vec![eq(day("", None))])),
        (
            "study time of odd length",
            bad(vec![eq(day("20030505", Some("04535")))]),
        ),
        (
            "study time not digits",
            bad(vec![eq(day("20030505", Some("ab")))]),
        ),
        (
            "three filters",
            bad(vec![
                eq(SearchByAttributeValue::IsPrimary(true)),
                eq(SearchByAttributeValue::DicomPatientId("a".into())),
                eq(SearchByAttributeValue::DicomStudyId("b".into())),
            ]),
        ),
    ];
    for (what, crit) in invalid {
        let r = rc
            .search_image_sets()
            .datastore_id(&ds)
            .set_search_criteria(crit)
            .send()
            .await;
        assert_err(r, "ValidationException", 400, what);
    }
    for body in [
        json!({"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "a", "DICOMStudyId": "b"}]}]}),
        json!({"filters": [{"operator": "EQUAL", "values": [{}]}]}),
        json!({"filters": [{"operator": "LIKE", "values": [{"DICOMPatientId": "a"}]}]}),
        json!({"sort": {"sortField": "patientName", "sortOrder": "ASC"}}),
        json!({"sort": {"sortField": "createdAt"}}),
        json!({"filters": [{"values": [{"DICOMPatientId": "a"}]}]}),
        json!({"filters": [{"operator": "EQUAL", "values": [{"isPrimary": "yes"}]}]}),
        json!({"filters": [{"operator": "EQUAL", "values": [{"updatedAt": "yesterday"}]}]}),
    ] {
        let r = raw_post(
            &srv,
            &format!("/datastore/{ds}/searchImageSets"),
            Some(&body),
        )
        .await;
        r.assert_error(400, "ValidationException");
    }
    for q in ["maxResults=abc", "maxResults=", "maxResults=1.5"] {
        let r = raw_post(
            &srv,
            &format!("/datastore/{ds}/searchImageSets?{q}"),
            Some(&json!({})),
        )
        .await;
        r.assert_error(400, "ValidationException");
    }
    for n in [0, 51, -1] {
        let r = rc
            .search_image_sets()
            .datastore_id(&ds)
            .max_results(n)
            .send()
            .await;
        assert_err(r, "ValidationException", 400, &format!("maxResults {n}"));
    }
    // nextToken: tampered, or reused with other filters or another sort order.
    let first = rc
        .search_image_sets()
        .datastore_id(&ds)
        .max_results(1)
        .send()
        .await
        .unwrap();
    let token = first.next_token().expect("more than one page").to_owned();
    let page2 = rc
        .search_image_sets()
        .datastore_id(&ds)
        .max_results(1)
        .next_token(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page2.image_sets_metadata_summaries().len(), 1);
    assert_ne!(
        page2.image_sets_metadata_summaries()[0].image_set_id(),
        first.image_sets_metadata_summaries()[0].image_set_id()
    );
    // The page size may change from page to page: the token holds the position.
    let rest = rc
        .search_image_sets()
        .datastore_id(&ds)
        .max_results(50)
        .next_token(&token)
        .send()
        .await
        .unwrap();
    let mut joined = vec![
        first.image_sets_metadata_summaries()[0]
            .image_set_id()
            .to_owned(),
    ];
    joined.extend(
        rest.image_sets_metadata_summaries()
            .iter()
            .map(|s| s.image_set_id().to_owned()),
    );
    assert!(rest.next_token().is_none());
    assert_eq!(
        joined,
        expected_order(
            &sets,
            &|_| true,
            &sort(SortField::UpdatedAt, SortOrder::Desc)
        )
    );
    let reuse: Vec<(&str, String, Option<SearchCriteria>)> = vec![
        ("tampered", tamper(&token), None),
        ("garbage", "not-a-token".into(), None),
        (
            "other filters",
            token.clone(),
            Some(criteria(
                &[eq(SearchByAttributeValue::IsPrimary(true))],
                None,
            )),
        ),
        (
            "other sort",
            token.clone(),
            Some(criteria(
                &[],
                Some(sort(SortField::UpdatedAt, SortOrder::Asc)),
            )),
        ),
    ];
    for (what, t, crit) in reuse {
        let r = rc
            .search_image_sets()
            .datastore_id(&ds)
            .set_search_criteria(crit)
            .max_results(1)
            .next_token(t)
            .send()
            .await;
        assert_err(r, "ValidationException", 400, &format!("nextToken {what}"));
    }
    let r = c
        .list_image_set_versions()
        .datastore_id(&ds)
        .image_set_id(&sets[0].id)
        .next_token(&token)
        .send()
        .await;
    assert_err(
        r,
        "ValidationException",
        400,
        "a search token listing versions",
    );
    // Data stores: unknown → 404, malformed → 400.
    assert_err(
        rc.search_image_sets()
            .datastore_id(random_id())
            .send()
            .await,
        "ResourceNotFoundException",
        404,
        "unknown data store",
    );
    for bad in ["ABCDEF0123456789ABCDEF0123456789", "0123", "x"] {
        assert_err(
            rc.search_image_sets().datastore_id(bad).send().await,
            "ValidationException",
            400,
            &format!("data store id {bad}"),
        );
    }

    // Reading the metadata was a touch, search and GetImageSet are not: lastAccessedAt never
    // goes backwards, the tier stays FREQUENT_ACCESS.
    let (after, _) = search_all(&rc, &ds, None, Some(50), "after reads").await;
    for s in &after {
        let was = sets.iter().find(|x| x.id == s.image_set_id()).unwrap();
        assert!(ms(s.last_accessed_at()) >= was.last_accessed);
        assert!(ms(s.last_accessed_at()) <= now_ms() + 1000);
        assert_eq!(s.storage_tier(), Some(&StorageTier::FrequentAccess));
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_image_set_metadata_frames_errors_and_cors() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let ds = create_active(&c, "reads-get").await.unwrap();
    bucket(&srv).await;
    let files = corpus_files(&[
        "CT_small.dcm",
        "emri_small.dcm",
        "JPEG2000.dcm",
        "SC_rgb.dcm",
    ]);
    let lines = import(&srv, &c, &ds, "get", &files).await;
    let id_of = |name: &str| {
        lines
            .iter()
            .find(|l| l.input.ends_with(name))
            .unwrap()
            .image_set_id
            .clone()
    };
    let (ct, emri, nm) = (
        id_of("CT_small.dcm"),
        id_of("emri_small.dcm"),
        id_of("JPEG2000.dcm"),
    );

    let mut sets = BTreeMap::new();
    for l in &lines {
        // GetImageSet through the runtime- host, the document through the plain client.
        let set = load_set(&rc, &c, &ds, &l.image_set_id).await;
        assert!(set.is_primary && set.version == 1);
        let got = c
            .get_image_set()
            .datastore_id(&ds)
            .image_set_id(&l.image_set_id)
            .version_id("1")
            .send()
            .await
            .unwrap();
        assert_eq!(got.version_id(), "1");
        assert_eq!(
            got.image_set_workflow_status(),
            Some(&ImageSetWorkflowStatus::Created)
        );
        assert_eq!(ms(got.created_at()), set.created);
        assert_eq!(ms(got.updated_at()), set.updated);
        // Version 1 explicitly is the same document.
        let v1 = metadata(&rc, &ds, &l.image_set_id, Some("1")).await;
        assert_eq!(frames_of(&v1), set.frames);
        sets.insert(l.image_set_id.clone(), set);
    }
    assert_eq!(sets[&emri].frames.len(), 10);
    assert_eq!(sets[&ct].frames.len(), 1);
    assert_eq!(sets[&emri].tags.patient_id, None);

    // Every frame: bytes as stored, typed by the stored transfer syntax, J2K codestreams.
    for (id, set) in &sets {
        for (sop, frame, ts) in &set.frames {
            let out = rc
                .get_image_frame()
                .datastore_id(&ds)
                .image_set_id(id)
                .image_frame_information(
                    ImageFrameInformation::builder()
                        .image_frame_id(frame)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetImageFrame {id} {frame}: {e:?}"));
            let want = match ts.as_str() {
                HTJ2K => "image/jph",
                "1.2.840.10008.1.2.4.91" => "image/j2c",
                other => panic!("unexpected stored transfer syntax {other} ({sop})"),
            };
            assert_eq!(out.content_type(), Some(want), "{sop}");
            let bytes = out.image_frame_blob.collect().await.unwrap().into_bytes();
            assert_eq!(&bytes[..4], &[0xff, 0x4f, 0xff, 0x51], "SOC + SIZ of {sop}");
            assert_eq!(&bytes[bytes.len() - 2..], &[0xff, 0xd9], "EOC of {sop}");
        }
    }
    assert_eq!(
        sets[&nm].frames[0].2, "1.2.840.10008.1.2.4.91",
        "JPEG 2000 lossy kept"
    );
    assert_eq!(sets[&ct].frames[0].2, HTJ2K);

    // Frame reads are touches: lastAccessedAt never goes backwards, the tier stays frequent.
    for (id, set) in &sets {
        let got = c
            .get_image_set()
            .datastore_id(&ds)
            .image_set_id(id)
            .send()
            .await
            .unwrap();
        let now = ms(got.last_accessed_at());
        assert!(now >= set.last_accessed && now <= now_ms() + 1000, "{id}");
        assert_eq!(got.storage_tier(), Some(&StorageTier::FrequentAccess));
        assert_eq!(ms(got.updated_at()), set.updated, "reads do not update");
    }

    // Frame ids that are not this image set's: 404; malformed: 400.
    let frame = |id: &str| -> String { sets[id].frames[0].1.clone() };
    assert_err(
        get_frame_on(&c, &ds, &emri, &frame(&ct)).await,
        "ResourceNotFoundException",
        404,
        "another image set's frame",
    );
    assert_err(
        get_frame_on(&c, &ds, &ct, &random_id()).await,
        "ResourceNotFoundException",
        404,
        "a made-up frame id",
    );
    for bad in ["xyz", "ABCDEF0123456789ABCDEF0123456789"] {
        assert_err(
            get_frame_on(&c, &ds, &ct, bad).await,
            "ValidationException",
            400,
            &format!("frame id {bad}"),
        );
    }

    // Unknown data store / image set / version: 404. Malformed ids and versions: 400.
    let nf = "ResourceNotFoundException";
    let ve = "ValidationException";
    for (dsid, isid, code, status) in [
        (random_id(), ct.clone(), nf, 404),
        (ds.clone(), random_id(), nf, 404),
        ("NOT-AN-ID".to_owned(), ct.clone(), ve, 400),
        (ds.clone(), "0123456789abcdef".to_owned(), ve, 400),
        (
            ds.clone(),
            "0123456789ABCDEF0123456789ABCDEF".to_owned(),
            ve,
            400,
        ),
    ] {
        let what = format!("{dsid}/{isid}");
        let r = c
            .get_image_set()
            .datastore_id(&dsid)
            .image_set_id(&isid)
            .send()
            .await;
        assert_err(r, code, status, &format!("GetImageSet {what}"));
        let r = c
            .get_image_set_metadata()
            .datastore_id(&dsid)
            .image_set_id(&isid)
            .send()
            .await;
        assert_err(r, code, status, &format!("GetImageSetMetadata {what}"));
        let r = get_frame_on(&c, &dsid, &isid, &frame(&ct)).await;
        assert_err(r, code, status, &format!("GetImageFrame {what}"));
        let r = c
            .list_image_set_versions()
            .datastore_id(&dsid)
            .image_set_id(&isid)
            .send()
            .await;
        assert_err(r, code, status, &format!("ListImageSetVersions {what}"));
    }
    for (v, code, status) in [
        ("2", nf, 404),
        ("99", nf, 404),
        ("0", nf, 404),
        ("v1", ve, 400),
        ("-1", ve, 400),
        ("1.0", ve, 400),
    ] {
        let r = c
            .get_image_set()
            .datastore_id(&ds)
            .image_set_id(&ct)
            .version_id(v)
            .send()
            .await;
        assert_err(r, code, status, &format!("GetImageSet version {v}"));
        let r = c
            .get_image_set_metadata()
            .datastore_id(&ds)
            .image_set_id(&ct)
            .version_id(v)
            .send()
            .await;
        assert_err(r, code, status, &format!("GetImageSetMetadata version {v}"));
    }

    // Another data store: empty, and it does not hold the first one's image sets; tokens are
    // bound to their data store.
    let ds2 = create_active(&c, "reads-empty").await.unwrap();
    let out = rc
        .search_image_sets()
        .datastore_id(&ds2)
        .search_criteria(criteria(
            &[],
            Some(sort(SortField::CreatedAt, SortOrder::Asc)),
        ))
        .send()
        .await
        .unwrap();
    assert!(out.image_sets_metadata_summaries().is_empty() && out.next_token().is_none());
    assert_eq!(
        out.sort(),
        Some(&sort(SortField::CreatedAt, SortOrder::Asc))
    );
    let r = c
        .get_image_set()
        .datastore_id(&ds2)
        .image_set_id(&ct)
        .send()
        .await;
    assert_err(r, nf, 404, "GetImageSet in another data store");
    let r = c
        .get_image_set_metadata()
        .datastore_id(&ds2)
        .image_set_id(&ct)
        .send()
        .await;
    assert_err(r, nf, 404, "GetImageSetMetadata in another data store");
    let r = get_frame_on(&c, &ds2, &ct, &frame(&ct)).await;
    assert_err(r, nf, 404, "GetImageFrame in another data store");
    let r = c
        .list_image_set_versions()
        .datastore_id(&ds2)
        .image_set_id(&ct)
        .send()
        .await;
    assert_err(r, nf, 404, "ListImageSetVersions in another data store");
    let token = rc
        .search_image_sets()
        .datastore_id(&ds)
        .max_results(1)
        .send()
        .await
        .unwrap()
        .next_token()
        .expect("a second page")
        .to_owned();
    let r = rc
        .search_image_sets()
        .datastore_id(&ds2)
        .max_results(1)
        .next_token(token)
        .send()
        .await;
    assert_err(r, ve, 400, "another data store's nextToken");

    // CORS: a preflight before authentication, and the headers on every read response.
    let path = format!("/datastore/{ds}/imageSet/{ct}/getImageFrame");
    let pre = srv
        .raw("OPTIONS", &path)
        .host(&format!("runtime-{}", srv.addr()))
        .header("Origin", "http://viewer.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-amz-date,x-amz-content-sha256",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status, 204, "{:?}", pre.headers);
    assert_eq!(pre.header("Access-Control-Allow-Origin"), Some("*"));
    let methods = pre
        .header("Access-Control-Allow-Methods")
        .unwrap_or_default();
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert_eq!(
        pre.header("Access-Control-Allow-Headers"),
        Some("authorization,content-type,x-amz-date,x-amz-content-sha256")
    );
    assert_eq!(pre.header("Access-Control-Max-Age"), Some("86400"));
    let expose = |r: &RawResponse| {
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{:?}",
            r.headers
        );
        let e = r
            .header("Access-Control-Expose-Headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for h in [
            "x-amzn-requestid",
            "x-amzn-errortype",
            "x-amz-request-id",
            "content-encoding",
            "content-length",
            "content-type",
        ] {
            assert!(e.split(',').any(|x| x.trim() == h), "{h} not exposed: {e}");
        }
    };
    let base = format!("/datastore/{ds}/imageSet/{ct}");
    let r = raw_post(&srv, &format!("{base}/getImageSet"), None).await;
    assert_eq!(r.assert_ok()["versionId"], "1");
    expose(&r);
    let r = raw_post(&srv, &format!("{base}/getImageSetMetadata?version=1"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    expose(&r);
    let r = raw_post(&srv, &path, Some(&json!({"imageFrameId": frame(&ct)}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("image/jph"));
    assert_eq!(&r.body[..2], &[0xff, 0x4f]);
    expose(&r);
    let r = raw_post(&srv, &format!("{base}/listImageSetVersions"), None).await;
    r.assert_ok();
    expose(&r);
    let r = raw_post(
        &srv,
        &format!("/datastore/{ds}/searchImageSets"),
        Some(&json!({})),
    )
    .await;
    r.assert_ok();
    expose(&r);
    let r = raw_post(
        &srv,
        &format!("/datastore/{ds}/imageSet/{}/getImageSet", random_id()),
        None,
    )
    .await;
    r.assert_error(404, "ResourceNotFoundException");
    expose(&r);
    let r = raw_post(&srv, &format!("{base}/getImageSet?version=v1"), None).await;
    r.assert_error(400, "ValidationException");
    expose(&r);
    // Errors before the operation runs (no signature) carry them too.
    let r = srv
        .raw("POST", &format!("{base}/getImageSet"))
        .header("Origin", "http://viewer.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{:?} {}", r.headers, r.text());
    expose(&r);
    srv.shutdown().await.unwrap();
}

async fn get_frame_on(
    c: &Client,
    ds: &str,
    id: &str,
    frame: &str,
) -> Result<
    lightbox_sdk_tests::aws_sdk_medicalimaging::operation::get_image_frame::GetImageFrameOutput,
    SdkError<
        lightbox_sdk_tests::aws_sdk_medicalimaging::operation::get_image_frame::GetImageFrameError,
        HttpResponse,
    >,
> {
    c.get_image_frame()
        .datastore_id(ds)
        .image_set_id(id)
        .image_frame_information(
            ImageFrameInformation::builder()
                .image_frame_id(frame)
                .build()
                .unwrap(),
        )
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_of_a_reimported_series() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let ds = create_active(&c, "reads-versions").await.unwrap();
    bucket(&srv).await;
    // v1: the four instances of a CT series; v2: its first instance re-imported; v3: its second.
    let files = corpus_files(&CT_SERIES);
    let v1 = import(&srv, &c, &ds, "v1", &files).await;
    let id = v1[0].image_set_id.clone();
    assert!(v1.iter().all(|l| l.image_set_id == id && l.is_primary));
    let other = import(&srv, &c, &ds, "other", &corpus_files(&["CT_small.dcm"])).await;
    let other_id = other[0].image_set_id.clone();
    for (prefix, file) in [("v2", &files[0]), ("v3", &files[1])] {
        let again = import(&srv, &c, &ds, prefix, std::slice::from_ref(file)).await;
        assert_eq!(
            again[0].image_set_id, id,
            "a re-import goes to the primary image set"
        );
    }

    // Versions newest first, in pages of 1, 2, 50 and the default.
    let mut listed = Vec::new();
    for page in [Some(1), Some(2), Some(3), Some(4), Some(50), None] {
        let mut token: Option<String> = None;
        let mut got = Vec::new();
        loop {
            let out = rc
                .list_image_set_versions()
                .datastore_id(&ds)
                .image_set_id(&id)
                .set_max_results(page)
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap();
            let items = out.image_set_properties_list();
            token = out.next_token().map(str::to_owned);
            let size = page.unwrap_or(50) as usize;
            if token.is_some() {
                assert_eq!(items.len(), size, "page {page:?}");
            } else {
                assert!(!items.is_empty() && items.len() <= size, "page {page:?}");
            }
            got.extend(items.iter().cloned());
            if token.is_none() {
                break;
            }
            assert!(got.len() < 10);
        }
        let versions: Vec<&str> = got.iter().map(|p| p.version_id()).collect();
        assert_eq!(versions, ["3", "2", "1"], "page {page:?}");
        listed = got;
    }
    let statuses: Vec<_> = listed
        .iter()
        .map(|p| p.image_set_workflow_status().cloned())
        .collect();
    assert_eq!(
        statuses,
        [
            Some(ImageSetWorkflowStatus::Imported),
            Some(ImageSetWorkflowStatus::Imported),
            Some(ImageSetWorkflowStatus::Created)
        ]
    );
    let created = ms(listed[0].created_at());
    for p in &listed {
        assert_eq!(p.image_set_id(), id);
        assert_eq!(p.image_set_state(), &ImageSetState::Active);
        assert_eq!(ms(p.created_at()), created, "createdAt is the image set's");
        assert_eq!(p.is_primary(), Some(true));
        assert!(p.deleted_at().is_none() && p.message().is_none() && p.overrides().is_none());
    }
    let updated: Vec<i64> = listed.iter().map(|p| ms(p.updated_at())).collect();
    assert!(
        updated[0] > updated[1] && updated[1] > updated[2],
        "{updated:?}"
    );
    assert!(updated[2] >= created);

    // Every version through GetImageSet and GetImageSetMetadata with ?version=.
    let mut docs = BTreeMap::new();
    for p in &listed {
        let v = p.version_id();
        let got = rc
            .get_image_set()
            .datastore_id(&ds)
            .image_set_id(&id)
            .version_id(v)
            .send()
            .await
            .unwrap();
        assert_eq!(got.version_id(), v);
        assert_eq!(got.image_set_state(), p.image_set_state());
        assert_eq!(
            got.image_set_workflow_status(),
            p.image_set_workflow_status()
        );
        assert_eq!(ms(got.created_at()), created);
        assert_eq!(ms(got.updated_at()), ms(p.updated_at()));
        assert_eq!(got.is_primary(), Some(true));
        assert_eq!(got.storage_tier(), Some(&StorageTier::FrequentAccess));
        docs.insert(v.to_owned(), metadata(&rc, &ds, &id, Some(v)).await);
    }
    let latest = load_set(&c, &rc, &ds, &id).await;
    assert_eq!(latest.version, 3);
    assert_eq!(latest.updated, updated[0]);
    assert_eq!(latest.instances, 4);
    assert_eq!(
        frames_of(&docs["3"]),
        latest.frames,
        "the default is the latest version"
    );
    let by_sop = |v: &str| -> BTreeMap<String, String> {
        frames_of(&docs[v])
            .into_iter()
            .map(|(sop, f, _)| (sop, f))
            .collect()
    };
    let (f1, f2, f3) = (by_sop("1"), by_sop("2"), by_sop("3"));
    assert_eq!(f1.len(), 4);
    let sop = |file: &str| -> String {
        let doc = &docs["3"];
        let (_, series) = series_of(doc);
        series["Instances"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, inst)| {
                inst["DICOM"]["InstanceNumber"].as_str().map(str::trim)
                    == Some(match file {
                        "17106" => "18",
                        "17136" => "180",
                        _ => unreachable!(),
                    })
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("instance of {file}"))
    };
    let (a, b) = (sop("17106"), sop("17136"));
    for (s, f) in &f1 {
        let changed_in_2 = s == &a;
        let changed_in_3 = s == &a || s == &b;
        assert_eq!(f2[s] != *f, changed_in_2, "{s} in version 2");
        assert_eq!(f3[s] != *f, changed_in_3, "{s} in version 3");
    }
    assert_eq!(f3[&a], f2[&a], "untouched in version 3");

    // Frames are served from the latest version only: replaced ones are gone.
    let live: BTreeSet<&String> = f3.values().collect();
    for f in f1.values().chain(f2.values()).chain(f3.values()) {
        let r = get_frame_on(&c, &ds, &id, f).await;
        if live.contains(f) {
            let out = r.unwrap_or_else(|e| panic!("live frame {f}: {e:?}"));
            assert_eq!(out.content_type(), Some("image/jph"));
            let bytes = out.image_frame_blob.collect().await.unwrap().into_bytes();
            assert_eq!(&bytes[..2], &[0xff, 0x4f]);
        } else {
            assert_err(r, "ResourceNotFoundException", 404, "a replaced frame");
        }
    }
    let ct_frame = load_set(&c, &c, &ds, &other_id).await.frames[0].1.clone();
    assert_err(
        get_frame_on(&c, &ds, &id, &ct_frame).await,
        "ResourceNotFoundException",
        404,
        "another image set's frame",
    );

    // The re-imported image set was updated last: first in the default order.
    let (all, _) = search_all(&rc, &ds, None, Some(1), "after re-imports").await;
    let order: Vec<&str> = all.iter().map(|s| s.image_set_id()).collect();
    assert_eq!(order, [id.as_str(), other_id.as_str()]);
    // Search shows the latest version as an integer.
    let found = rc
        .search_image_sets()
        .datastore_id(&ds)
        .search_criteria(criteria(
            &[eq(SearchByAttributeValue::DicomSeriesInstanceUid(
                latest.tags.series_instance_uid.clone().unwrap(),
            ))],
            None,
        ))
        .send()
        .await
        .unwrap();
    let items = found.image_sets_metadata_summaries();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].image_set_id(), id);
    assert_eq!(items[0].version(), Some(3));
    assert_eq!(ms(items[0].updated_at()), updated[0]);
    assert_eq!(ms(items[0].created_at()), created);
    let tags = items[0].dicom_tags().unwrap();
    assert_eq!(
        (
            tags.dicom_number_of_study_related_series(),
            tags.dicom_number_of_study_related_instances()
        ),
        (1, 4)
    );
    // The other image set has its one version.
    let one = c
        .list_image_set_versions()
        .datastore_id(&ds)
        .image_set_id(&other_id)
        .send()
        .await
        .unwrap();
    assert_eq!(one.image_set_properties_list().len(), 1);
    assert_eq!(one.image_set_properties_list()[0].version_id(), "1");
    assert!(one.next_token().is_none());

    // Unknown versions: 404; bad versions, page sizes and tokens: 400.
    for (v, code, status) in [
        ("4", "ResourceNotFoundException", 404),
        ("v1", "ValidationException", 400),
    ] {
        let r = c
            .get_image_set()
            .datastore_id(&ds)
            .image_set_id(&id)
            .version_id(v)
            .send()
            .await;
        assert_err(r, code, status, &format!("GetImageSet version {v}"));
        let r = c
            .get_image_set_metadata()
            .datastore_id(&ds)
            .image_set_id(&id)
            .version_id(v)
            .send()
            .await;
        assert_err(r, code, status, &format!("GetImageSetMetadata version {v}"));
    }
    for n in [0, 51] {
        let r = c
            .list_image_set_versions()
            .datastore_id(&ds)
            .image_set_id(&id)
            .max_results(n)
            .send()
            .await;
        assert_err(r, "ValidationException", 400, &format!("maxResults {n}"));
    }
    let first = c
        .list_image_set_versions()
        .datastore_id(&ds)
        .image_set_id(&id)
        .max_results(1)
        .send()
        .await
        .unwrap();
    let token = first.next_token().unwrap().to_owned();
    for (what, image_set, t) in [
        ("tampered", id.clone(), tamper(&token)),
        ("garbage", id.clone(), "###".to_owned()),
        ("another image set's", other_id.clone(), token.clone()),
    ] {
        let r = c
            .list_image_set_versions()
            .datastore_id(&ds)
            .image_set_id(&image_set)
            .next_token(t)
            .send()
            .await;
        assert_err(r, "ValidationException", 400, &format!("nextToken {what}"));
    }
    let r = rc
        .search_image_sets()
        .datastore_id(&ds)
        .next_token(&token)
        .send()
        .await;
    assert_err(r, "ValidationException", 400, "a versions token searching");

    // The raw JSON of ListImageSetVersions: `ImageSetWorkflowStatus`, string versionIds.
    let r = raw_post(
        &srv,
        &format!("/datastore/{ds}/imageSet/{id}/listImageSetVersions?maxResults=2"),
        None,
    )
    .await;
    let v = r.assert_ok();
    let list = v["imageSetPropertiesList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["versionId"], "3");
    assert_eq!(list[0]["ImageSetWorkflowStatus"], "IMPORTED");
    assert!(list[0].get("imageSetWorkflowStatus").is_none());
    assert!(v["nextToken"].is_string());
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_tiers_follow_touches() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const DAY: u64 = 86_400;
    let offset = Arc::new(AtomicU64::new(0));
    let o = offset.clone();
    let mut srv = TestServer::start_with(move |c| {
        c.clock_offset = Duration::from_secs(o.load(Ordering::SeqCst));
    })
    .await
    .unwrap();
    let c = srv.client();
    let ds = create_active(&c, "reads-tiers").await.unwrap();
    bucket(&srv).await;
    let lines = import(
        &srv,
        &c,
        &ds,
        "tiers",
        &corpus_files(&["CT_small.dcm", "MR_small.dcm"]),
    )
    .await;
    let (a, b) = (lines[0].image_set_id.clone(), lines[1].image_set_id.clone());
    let before = load_set(&c, &c, &ds, &a).await;
    let before_b = load_set(&c, &c, &ds, &b).await;

    // 31 days later (the service clock only: signatures still use the real time).
    offset.store(31 * DAY, Ordering::SeqCst);
    srv.restart().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let tier = |id: String| {
        let c = c.clone();
        let ds = ds.clone();
        async move {
            let got = c
                .get_image_set()
                .datastore_id(&ds)
                .image_set_id(&id)
                .send()
                .await
                .unwrap();
            (got.storage_tier().cloned(), ms(got.last_accessed_at()))
        }
    };
    for (id, set) in [(&a, &before), (&b, &before_b)] {
        assert_eq!(
            tier(id.clone()).await,
            (Some(StorageTier::ArchiveInstantAccess), set.last_accessed),
            "{id} untouched for 31 days"
        );
    }
    // Search, GetImageSet and ListImageSetVersions are not touches.
    let (found, _) = search_all(&rc, &ds, None, None, "31 days later").await;
    assert_eq!(found.len(), 2);
    for s in &found {
        assert_eq!(s.storage_tier(), Some(&StorageTier::ArchiveInstantAccess));
    }
    c.list_image_set_versions()
        .datastore_id(&ds)
        .image_set_id(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tier(a.clone()).await.0,
        Some(StorageTier::ArchiveInstantAccess)
    );
    // GetImageFrame touches `a`, GetImageSetMetadata touches `b`: back to FREQUENT_ACCESS,
    // lastAccessedAt moves forward to the (offset) service time.
    let r = get_frame_on(&rc, &ds, &a, &before.frames[0].1).await;
    r.unwrap();
    metadata(&rc, &ds, &b, None).await;
    let shifted_now = now_ms() + (31 * DAY * 1000) as i64;
    for id in [&a, &b] {
        let (t, last) = tier(id.clone()).await;
        assert_eq!(t, Some(StorageTier::FrequentAccess), "{id} touched");
        assert!(
            last > before.last_accessed + (30 * DAY * 1000) as i64 && last <= shifted_now + 1000,
            "{id} lastAccessedAt {last}"
        );
    }
    // Another touch within the minute is not written.
    let (_, last_a) = tier(a.clone()).await;
    get_frame_on(&rc, &ds, &a, &before.frames[0].1)
        .await
        .unwrap();
    assert_eq!(
        tier(a.clone()).await.1,
        last_a,
        "touches are written once a minute"
    );
    let (found, _) = search_all(&rc, &ds, None, None, "after touches").await;
    for s in &found {
        assert_eq!(s.storage_tier(), Some(&StorageTier::FrequentAccess));
        // A touch is not an update.
        let was = if s.image_set_id() == a {
            &before
        } else {
            &before_b
        };
        assert_eq!(ms(s.updated_at()), was.updated);
    }
    srv.shutdown().await.unwrap();
}
