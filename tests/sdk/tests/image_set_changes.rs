//! Image set changes through aws-sdk-medicalimaging (raw signed requests where the SDK will not
//! send the input): UpdateImageSetMetadata, CopyImageSet and DeleteImageSet on image sets imported
//! from pydicom corpus files — synchronous responses, background outcomes, versions, documents,
//! frames, search, tags, conflicts, crash recovery of a SIGKILLed `lightbox serve`, and input
//! validation (docs/compatibility.md, "Image set changes").
//! Runs on the backend `LIGHTBOX_TEST_BACKEND` names.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lightbox_sdk_tests::aws_sdk_medicalimaging::Client;
use lightbox_sdk_tests::aws_sdk_medicalimaging::config::http::HttpResponse;
use lightbox_sdk_tests::aws_sdk_medicalimaging::error::{ProvideErrorMetadata, SdkError};
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::copy_image_set::{
    CopyImageSetError, CopyImageSetOutput,
};
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::get_image_set::GetImageSetOutput;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::update_image_set_metadata::{
    UpdateImageSetMetadataError, UpdateImageSetMetadataOutput,
};
use lightbox_sdk_tests::aws_sdk_medicalimaging::primitives::Blob;
use lightbox_sdk_tests::aws_sdk_medicalimaging::types::{
    CopyDestinationImageSet, CopyImageSetInformation, CopySourceImageSetInformation, DicomUpdates,
    ImageFrameInformation, ImageSetProperties, ImageSetState, ImageSetWorkflowStatus,
    MetadataCopies, MetadataUpdates, Operator, SearchByAttributeValue, SearchCriteria,
    SearchFilter,
};
use lightbox_sdk_tests::*;
use serde_json::{Value, json};

const BUCKET: &str = "changes";
/// The four instances of one CT series (16×16, one frame each).
const CT_SERIES: [&str; 4] = ["17106", "17136", "17166", "17196"];
const CT_STUDY: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.1";
const CT_SERIES_UID: &str = "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2";
/// SOP instance UIDs of CT_SERIES, in order.
const CT_SOPS: [&str; 4] = [
    "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.93",
    "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.94",
    "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.95",
    "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.96",
];
/// One MR study with two series (4919: series 1, one instance; 4950/4981/5011: series 2).
const MR_STUDY_FILES: [&str; 4] = ["4919", "4950", "4981", "5011"];
const DUPLICATE_SOP: &str =
    "INVALID_REQUEST: SOP Instance UIDs must be unique within the destination image set.";
const SERIES_MISMATCH: &str =
    "INVALID_REQUEST: Series of SourceImageSet and DestinationImageSet don't match.";

type Sdk<T, E> = Result<T, SdkError<E, HttpResponse>>;

// --- imports (as in image_set_reads.rs) ---------------------------------------------------------

/// The CT series with another PatientID: conflicts with the primary image set of the series.
fn conflicting_ct_series() -> Vec<(String, Vec<u8>)> {
    corpus_files(&CT_SERIES)
        .into_iter()
        .map(|(n, b)| (n, patch_bytes(b, b"77654033", b"77654099")))
        .collect()
}

async fn import_at(
    url: &str,
    client: &Client,
    ds: &str,
    prefix: &str,
    files: &[(String, Vec<u8>)],
) -> Vec<Imported> {
    import_files(url, client, ds, BUCKET, prefix, files).await
}

async fn import(
    srv: &TestServer,
    client: &Client,
    ds: &str,
    prefix: &str,
    files: &[(String, Vec<u8>)],
) -> Vec<Imported> {
    import_at(&srv.url(), client, ds, prefix, files).await
}

/// The one image set all `lines` went to.
#[track_caller]
fn one_set(lines: &[Imported], primary: bool) -> String {
    let id = lines[0].image_set_id.clone();
    assert!(
        lines
            .iter()
            .all(|l| l.image_set_id == id && l.is_primary == primary),
        "{lines:?}"
    );
    id
}

fn id_of(lines: &[Imported], name: &str) -> String {
    lines
        .iter()
        .find(|l| l.input.ends_with(name))
        .unwrap_or_else(|| panic!("{name} in {lines:?}"))
        .image_set_id
        .clone()
}

// --- reads --------------------------------------------------------------------------------------

fn gunzip(bytes: &[u8]) -> Value {
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .expect("metadata gunzips");
    serde_json::from_str(&s).expect("metadata is JSON")
}

async fn try_doc(
    c: &Client,
    ds: &str,
    id: &str,
    version: Option<&str>,
) -> Sdk<
    Value,
    lightbox_sdk_tests::aws_sdk_medicalimaging::operation::get_image_set_metadata::GetImageSetMetadataError,
>{
    let out = c
        .get_image_set_metadata()
        .datastore_id(ds)
        .image_set_id(id)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await?;
    assert_eq!(out.content_encoding(), Some("gzip"));
    let bytes = out
        .image_set_metadata_blob
        .collect()
        .await
        .unwrap()
        .into_bytes();
    Ok(gunzip(&bytes))
}

/// The gunzipped metadata document of a version (latest with `None`).
async fn doc(c: &Client, ds: &str, id: &str, version: Option<&str>) -> Value {
    let d = try_doc(c, ds, id, version)
        .await
        .unwrap_or_else(|e| panic!("GetImageSetMetadata {id} {version:?}: {e:?}"));
    assert_eq!(d["DatastoreID"], ds);
    assert_eq!(d["ImageSetID"], id);
    d
}

async fn get(c: &Client, ds: &str, id: &str, version: Option<&str>) -> GetImageSetOutput {
    c.get_image_set()
        .datastore_id(ds)
        .image_set_id(id)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetImageSet {id} {version:?}: {e:?}"))
}

/// Polls GetImageSet until the image set is not LOCKED (30 s).
async fn settle(c: &Client, ds: &str, id: &str) -> GetImageSetOutput {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = get(c, ds, id, None).await;
        if got.image_set_state() != &ImageSetState::Locked {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{id} still LOCKED after 30 s: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every version (all pages, newest first as listed).
async fn versions(c: &Client, ds: &str, id: &str) -> Vec<ImageSetProperties> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_image_set_versions()
            .datastore_id(ds)
            .image_set_id(id)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListImageSetVersions {id}: {e:?}"));
        out.extend(page.image_set_properties_list().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// Asserts the version list: (versionId, status, forced), newest first, all ACTIVE.
#[track_caller]
fn assert_versions(
    list: &[ImageSetProperties],
    want: &[(&str, ImageSetWorkflowStatus, bool)],
    what: &str,
) {
    let got: Vec<(String, Option<ImageSetWorkflowStatus>, bool)> = list
        .iter()
        .map(|p| {
            (
                p.version_id().to_owned(),
                p.image_set_workflow_status().cloned(),
                p.overrides().and_then(|o| o.forced()) == Some(true),
            )
        })
        .collect();
    let want: Vec<(String, Option<ImageSetWorkflowStatus>, bool)> = want
        .iter()
        .map(|(v, s, f)| (v.to_string(), Some(s.clone()), *f))
        .collect();
    assert_eq!(got, want, "{what}: versions (id, status, forced)");
    for p in list {
        assert_eq!(p.image_set_state(), &ImageSetState::Active, "{what}: {p:?}");
        assert!(
            p.overrides().is_none() || p.overrides().and_then(|o| o.forced()) == Some(true),
            "{what}: overrides only on forced versions: {p:?}"
        );
    }
}

async fn try_frame(
    c: &Client,
    ds: &str,
    id: &str,
    frame: &str,
) -> Sdk<
    Vec<u8>,
    lightbox_sdk_tests::aws_sdk_medicalimaging::operation::get_image_frame::GetImageFrameError,
> {
    let out = c
        .get_image_frame()
        .datastore_id(ds)
        .image_set_id(id)
        .image_frame_information(
            ImageFrameInformation::builder()
                .image_frame_id(frame)
                .build()
                .unwrap(),
        )
        .send()
        .await?;
    Ok(out
        .image_frame_blob
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec())
}

async fn frame(c: &Client, ds: &str, id: &str, f: &str) -> Vec<u8> {
    let bytes = try_frame(c, ds, id, f)
        .await
        .unwrap_or_else(|e| panic!("GetImageFrame {id} {f}: {e:?}"));
    assert!(bytes.len() > 4, "frame {f} of {id} is empty");
    bytes
}

/// Every (series UID, SOP instance UID, frame id) of a document.
fn frames_of(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (series_uid, series) in doc["Study"]["Series"].as_object().expect("Study.Series") {
        for (sop, inst) in series["Instances"].as_object().expect("Instances") {
            for f in inst["ImageFrames"].as_array().into_iter().flatten() {
                out.push((
                    series_uid.clone(),
                    sop.clone(),
                    f["ID"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

fn frame_ids_of(doc: &Value, sop: &str) -> Vec<String> {
    frames_of(doc)
        .into_iter()
        .filter(|(_, s, _)| s == sop)
        .map(|(_, _, f)| f)
        .collect()
}

fn sops_of(doc: &Value) -> BTreeSet<String> {
    frames_of(doc).into_iter().map(|(_, s, _)| s).collect()
}

fn series_uids(doc: &Value) -> BTreeSet<String> {
    doc["Study"]["Series"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn instance<'a>(doc: &'a mut Value, series: &str, sop: &str) -> &'a mut Value {
    &mut doc["Study"]["Series"][series]["Instances"][sop]
}

/// `doc` with another ImageSetID (for comparing a copy with its source).
fn with_id(doc: &Value, id: &str) -> Value {
    let mut d = doc.clone();
    d["ImageSetID"] = json!(id);
    d
}

async fn search_all(c: &Client, ds: &str, criteria: Option<SearchCriteria>) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .search_image_sets()
            .datastore_id(ds)
            .set_search_criteria(criteria.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("SearchImageSets: {e:?}"));
        for s in page.image_sets_metadata_summaries() {
            out.push((s.image_set_id().to_owned(), s.version().unwrap_or(-1)));
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

fn eq_filter(v: SearchByAttributeValue) -> SearchCriteria {
    SearchCriteria::builder()
        .filters(
            SearchFilter::builder()
                .operator(Operator::Equal)
                .values(v)
                .build()
                .unwrap(),
        )
        .build()
}

// --- writes -------------------------------------------------------------------------------------

fn blob(v: &Value) -> Blob {
    Blob::new(serde_json::to_vec(v).unwrap())
}

async fn update(
    c: &Client,
    ds: &str,
    id: &str,
    latest: &str,
    updatable: Option<&Value>,
    removable: Option<&Value>,
    force: bool,
) -> Sdk<UpdateImageSetMetadataOutput, UpdateImageSetMetadataError> {
    let updates = DicomUpdates::builder()
        .set_updatable_attributes(updatable.map(blob))
        .set_removable_attributes(removable.map(blob))
        .build();
    c.update_image_set_metadata()
        .datastore_id(ds)
        .image_set_id(id)
        .latest_version_id(latest)
        .set_force(force.then_some(true))
        .update_image_set_metadata_updates(MetadataUpdates::DicomUpdates(updates))
        .send()
        .await
}

async fn revert(
    c: &Client,
    ds: &str,
    id: &str,
    latest: &str,
    to: &str,
) -> Sdk<UpdateImageSetMetadataOutput, UpdateImageSetMetadataError> {
    c.update_image_set_metadata()
        .datastore_id(ds)
        .image_set_id(id)
        .latest_version_id(latest)
        .update_image_set_metadata_updates(MetadataUpdates::RevertToVersionId(to.into()))
        .send()
        .await
}

fn next(v: &str) -> String {
    (v.parse::<u64>().unwrap() + 1).to_string()
}

/// Checks an accepted update's synchronous response (LOCKED / UPDATING, the next version).
#[track_caller]
fn assert_updating(out: &UpdateImageSetMetadataOutput, ds: &str, id: &str, latest: &str) {
    assert_eq!(
        (
            out.datastore_id(),
            out.image_set_id(),
            out.latest_version_id(),
            out.image_set_state(),
            out.image_set_workflow_status()
        ),
        (
            ds,
            id,
            next(latest).as_str(),
            &ImageSetState::Locked,
            Some(&ImageSetWorkflowStatus::Updating)
        ),
        "UpdateImageSetMetadata response: {out:?}"
    );
    assert!(out.created_at().is_some() && out.updated_at().is_some());
}

/// Settles and checks the outcome of an accepted update: ACTIVE / UPDATED, the next version,
/// `overrides.forced` as given; returns the new version id.
async fn assert_updated(c: &Client, ds: &str, id: &str, latest: &str, forced: bool) -> String {
    let got = settle(c, ds, id).await;
    let want = next(latest);
    assert_eq!(
        (
            got.version_id(),
            got.image_set_state(),
            got.image_set_workflow_status()
        ),
        (
            want.as_str(),
            &ImageSetState::Active,
            Some(&ImageSetWorkflowStatus::Updated)
        ),
        "after the update of {id}: {got:?}"
    );
    assert!(got.message().is_none(), "{got:?}");
    assert_eq!(
        got.overrides().and_then(|o| o.forced()),
        forced.then_some(true),
        "overrides.forced of {id} v{want}"
    );
    // The version itself reads the same.
    let v = get(c, ds, id, Some(&want)).await;
    assert_eq!(v.version_id(), want);
    assert_eq!(
        v.image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::Updated)
    );
    want
}

/// An update that must be accepted and succeed; returns the new version id.
#[allow(clippy::too_many_arguments)]
async fn updated(
    c: &Client,
    ds: &str,
    id: &str,
    latest: &str,
    updatable: Option<&Value>,
    removable: Option<&Value>,
    force: bool,
) -> String {
    let out = update(c, ds, id, latest, updatable, removable, force)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "UpdateImageSetMetadata {id} {updatable:?} {removable:?}: {}",
                lightbox_sdk_tests::aws_sdk_medicalimaging::error::DisplayErrorContext(&e)
            )
        });
    assert_updating(&out, ds, id, latest);
    assert_updated(c, ds, id, latest, force).await
}

#[track_caller]
fn assert_err<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Sdk<T, E>,
    code: &str,
    status: u16,
    what: &str,
) -> String {
    let err = match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}), expected {code} ({status})"),
        Err(e) => e,
    };
    assert_eq!(
        (err.code(), err.raw_response().map(|r| r.status().as_u16())),
        (Some(code), Some(status)),
        "{what}: {err:?}"
    );
    err.message().unwrap_or_default().to_owned()
}

/// A ValidationException whose message names every one of `needles` and none of `secrets`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Sdk<T, E>,
    needles: &[&str],
    secrets: &[&str],
    what: &str,
) {
    let msg = assert_err(r, "ValidationException", 400, what);
    eprintln!("{what}: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{what}: message {msg:?} does not name {n}");
    }
    for s in secrets {
        assert!(!msg.contains(s), "{what}: message {msg:?} echoes {s}");
    }
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Sdk<T, E>,
    what: &str,
) {
    assert_err(r, "ConflictException", 409, what);
}

fn copy_info(
    latest: &str,
    copiable: Option<&str>,
    dest: Option<(&str, &str)>,
) -> CopyImageSetInformation {
    let mut src = CopySourceImageSetInformation::builder().latest_version_id(latest);
    if let Some(c) = copiable {
        src = src.dicom_copies(
            MetadataCopies::builder()
                .copiable_attributes(c)
                .build()
                .unwrap(),
        );
    }
    CopyImageSetInformation::builder()
        .source_image_set(src.build().unwrap())
        .set_destination_image_set(dest.map(|(id, v)| {
            CopyDestinationImageSet::builder()
                .image_set_id(id)
                .latest_version_id(v)
                .build()
                .unwrap()
        }))
        .build()
}

#[allow(clippy::too_many_arguments)]
async fn copy(
    c: &Client,
    ds: &str,
    src: &str,
    latest: &str,
    copiable: Option<&str>,
    dest: Option<(&str, &str)>,
    force: bool,
    promote: bool,
) -> Sdk<CopyImageSetOutput, CopyImageSetError> {
    c.copy_image_set()
        .datastore_id(ds)
        .source_image_set_id(src)
        .copy_image_set_information(copy_info(latest, copiable, dest))
        .set_force(force.then_some(true))
        .set_promote_to_primary(promote.then_some(true))
        .send()
        .await
}

/// Checks an accepted copy's response: source LOCKED / COPYING_WITH_READ_ONLY_ACCESS at its
/// version, destination LOCKED / COPYING at `dest_version` (its id unless `dest` is `None`).
/// Returns the destination id.
#[track_caller]
fn assert_copying(
    out: &CopyImageSetOutput,
    ds: &str,
    src: &str,
    src_version: &str,
    dest: Option<&str>,
    dest_version: &str,
) -> String {
    assert_eq!(out.datastore_id(), ds);
    let s = out
        .source_image_set_properties()
        .expect("source properties");
    assert_eq!(
        (
            s.image_set_id(),
            s.latest_version_id(),
            s.image_set_state(),
            s.image_set_workflow_status()
        ),
        (
            src,
            src_version,
            Some(&ImageSetState::Locked),
            Some(&ImageSetWorkflowStatus::CopyingWithReadOnlyAccess)
        ),
        "CopyImageSet source properties: {out:?}"
    );
    assert!(
        s.created_at().is_some() && s.updated_at().is_some(),
        "{out:?}"
    );
    let d = out
        .destination_image_set_properties()
        .expect("destination properties");
    if let Some(dest) = dest {
        assert_eq!(d.image_set_id(), dest, "{out:?}");
    } else {
        assert_ne!(d.image_set_id(), src, "a new image set: {out:?}");
        assert_eq!(d.image_set_id().len(), 32);
    }
    assert_eq!(
        (
            d.latest_version_id(),
            d.image_set_state(),
            d.image_set_workflow_status()
        ),
        (
            dest_version,
            Some(&ImageSetState::Locked),
            Some(&ImageSetWorkflowStatus::Copying)
        ),
        "CopyImageSet destination properties: {out:?}"
    );
    assert!(
        d.created_at().is_some() && d.updated_at().is_some(),
        "{out:?}"
    );
    assert_eq!(
        d.image_set_arn(),
        Some(
            format!(
                "arn:aws:medical-imaging:{REGION}:{ACCOUNT}:datastore/{ds}/imageset/{}",
                d.image_set_id()
            )
            .as_str()
        )
    );
    d.image_set_id().to_owned()
}

/// Waits for a copy's source to be ACTIVE again at the same version and status.
async fn assert_source_back(c: &Client, ds: &str, src: &str, before: &GetImageSetOutput) {
    let got = settle(c, ds, src).await;
    assert_eq!(
        (
            got.version_id(),
            got.image_set_state(),
            got.image_set_workflow_status()
        ),
        (
            before.version_id(),
            &ImageSetState::Active,
            before.image_set_workflow_status()
        ),
        "copy source {src} afterwards"
    );
}

/// Settles a copy destination and checks its final status (and message).
async fn assert_copy_outcome(
    c: &Client,
    ds: &str,
    dest: &str,
    version: &str,
    status: ImageSetWorkflowStatus,
    message: Option<&str>,
) -> GetImageSetOutput {
    let got = settle(c, ds, dest).await;
    assert_eq!(
        (
            got.version_id(),
            got.image_set_state(),
            got.image_set_workflow_status(),
            got.message()
        ),
        (version, &ImageSetState::Active, Some(&status), message),
        "copy destination {dest}: {got:?}"
    );
    got
}

/// A signed raw POST with `Host: runtime-127.0.0.1:PORT` and a raw body.
async fn raw_post(srv: &TestServer, path: &str, body: &[u8]) -> RawResponse {
    srv.raw("POST", path)
        .host(&format!("runtime-{}", srv.addr()))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .signed()
        .send()
        .await
        .unwrap()
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Files under `dir` (recursively); 0 if it does not exist.
fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

/// Polls `f` until it is true (10 s), then asserts it.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(f(), "{what}");
}

// --- tests --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_image_set_metadata_examples() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let ds = create_active(&c, "changes-update").await.unwrap();
    let mut files = corpus_files(&CT_SERIES);
    files.extend(corpus_files(&MR_STUDY_FILES));
    let job1 = import(&srv, &c, &ds, "primary", &files).await;
    let p = one_set(&job1[..4], true);
    let (s1, s2) = (id_of(&job1, "4919"), id_of(&job1, "4950"));
    assert_ne!(s1, s2);
    assert_eq!(id_of(&job1, "5011"), s2);
    let n = one_set(
        &import(&srv, &c, &ds, "conflict", &conflicting_ct_series()).await,
        false,
    );
    assert_ne!(n, p);
    let n_arn = format!("arn:aws:medical-imaging:{REGION}:{ACCOUNT}:datastore/{ds}/imageset/{n}");
    c.tag_resource()
        .resource_arn(&n_arn)
        .tags("owner", "radiology")
        .send()
        .await
        .expect("TagResource on an image set");

    let v1 = doc(&rc, &ds, &n, None).await;
    assert_eq!(sops_of(&v1).len(), 4);
    assert_eq!(v1["Patient"]["DICOM"]["PatientID"], "77654099");
    assert_eq!(v1["Study"]["DICOM"]["StudyInstanceUID"], CT_STUDY);
    assert_eq!(series_uids(&v1), BTreeSet::from([CT_SERIES_UID.to_owned()]));
    let created = get(&c, &ds, &n, None).await;
    assert_eq!(created.is_primary(), Some(false));

    // 1. Patient rename on a non-primary image set.
    let upd = json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "MX^MX"}}});
    let out = update(&c, &ds, &n, "1", Some(&upd), None, false)
        .await
        .expect("rename");
    assert_updating(&out, &ds, &n, "1");
    assert_eq!(
        out.created_at(),
        created.created_at(),
        "createdAt is the image set's"
    );
    // Reads stay allowed while LOCKED, and show the previous document until the new one.
    let during = doc(&rc, &ds, &n, None).await;
    let pn = during["Patient"]["DICOM"]["PatientName"].clone();
    assert!(pn == v1["Patient"]["DICOM"]["PatientName"] || pn == "MX^MX");
    let v = assert_updated(&c, &ds, &n, "1", false).await;
    assert_eq!(v, "2");
    let v2 = doc(&rc, &ds, &n, None).await;
    let mut want = v1.clone();
    want["Patient"]["DICOM"]["PatientName"] = json!("MX^MX");
    assert_eq!(v2, want, "version 2 = version 1 with the new PatientName");
    assert_eq!(
        doc(&rc, &ds, &n, Some("1")).await,
        v1,
        "version 1 unchanged"
    );
    assert_eq!(doc(&rc, &ds, &n, Some("2")).await, v2);
    let old = get(&c, &ds, &n, Some("1")).await;
    assert_eq!(
        (old.version_id(), old.image_set_workflow_status()),
        ("1", Some(&ImageSetWorkflowStatus::Created))
    );
    let latest = get(&c, &ds, &n, None).await;
    assert_eq!(
        latest.created_at(),
        created.created_at(),
        "createdAt is the image set's"
    );
    assert!(latest.updated_at() > created.updated_at());
    assert_eq!(latest.is_primary(), Some(false));
    // The updated image set is now the most recently updated one.
    let all = search_all(&c, &ds, None).await;
    assert_eq!(all[0], (n.clone(), 2), "updatedAt DESC by default: {all:?}");
    // Search follows: DICOMTags of the new document.
    let found = c
        .search_image_sets()
        .datastore_id(&ds)
        .search_criteria(eq_filter(SearchByAttributeValue::DicomPatientId(
            "77654099".into(),
        )))
        .send()
        .await
        .unwrap();
    let items = found.image_sets_metadata_summaries();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].image_set_id(), items[0].version()),
        (n.as_str(), Some(2))
    );
    assert_eq!(
        items[0].dicom_tags().and_then(|t| t.dicom_patient_name()),
        Some("MX^MX")
    );

    // 2. Attribute removal (StudyDescription; the value given is ignored).
    assert!(v2["Study"]["DICOM"]["StudyDescription"].is_string());
    let rem = json!({"SchemaVersion": "1.1", "Study": {"DICOM": {"StudyDescription": "CHEST"}}});
    let v = updated(&c, &ds, &n, "2", None, Some(&rem), false).await;
    let v3 = doc(&rc, &ds, &n, None).await;
    let mut want = v2.clone();
    want["Study"]["DICOM"]
        .as_object_mut()
        .unwrap()
        .remove("StudyDescription");
    assert_eq!(v3, want, "version {v} = version 2 without StudyDescription");
    let found = search_all(
        &c,
        &ds,
        Some(eq_filter(SearchByAttributeValue::DicomPatientId(
            "77654099".into(),
        ))),
    )
    .await;
    assert_eq!(found, vec![(n.clone(), 3)]);
    let s = c
        .search_image_sets()
        .datastore_id(&ds)
        .search_criteria(eq_filter(SearchByAttributeValue::DicomPatientId(
            "77654099".into(),
        )))
        .send()
        .await
        .unwrap();
    let tags = s.image_sets_metadata_summaries()[0].dicom_tags().unwrap();
    assert_eq!(
        tags.dicom_study_description(),
        None,
        "removed from DICOMTags"
    );

    // 3. Instance removal: its frames are gone from the latest version only.
    let gone = CT_SOPS[3];
    let gone_frames = frame_ids_of(&v3, gone);
    assert_eq!(gone_frames.len(), 1);
    let gone_bytes = frame(&rc, &ds, &n, &gone_frames[0]).await;
    let rem = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {gone: {}}}}}});
    let v = updated(&c, &ds, &n, "3", None, Some(&rem), false).await;
    assert_eq!(v, "4");
    let v4 = doc(&rc, &ds, &n, None).await;
    let mut want = v3.clone();
    want["Study"]["Series"][CT_SERIES_UID]["Instances"]
        .as_object_mut()
        .unwrap()
        .remove(gone);
    assert_eq!(v4, want, "version 4 = version 3 without the instance");
    assert_err(
        try_frame(&rc, &ds, &n, &gone_frames[0]).await,
        "ResourceNotFoundException",
        404,
        "a removed instance's frame",
    );
    assert!(sops_of(&doc(&rc, &ds, &n, Some("3")).await).contains(gone));
    for (_, _, f) in frames_of(&v4) {
        frame(&rc, &ds, &n, &f).await;
    }

    // 4. A private element: rejected without force, added with force (overrides.forced).
    let private = CT_SOPS[0];
    let upd = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {private: {"DICOM": {"001910F9": "97"}, "DICOMVRs": {"001910F9": "DS"}}}}}}});
    assert_invalid(
        update(&c, &ds, &n, "4", Some(&upd), None, false).await,
        &["001910F9"],
        &[CT_SERIES_UID, private],
        "private element without force",
    );
    let v = updated(&c, &ds, &n, "4", Some(&upd), None, true).await;
    assert_eq!(v, "5");
    let v5 = doc(&rc, &ds, &n, None).await;
    let mut want = v4.clone();
    let inst = instance(&mut want, CT_SERIES_UID, private);
    inst["DICOM"]["001910F9"] = json!("97");
    inst["DICOMVRs"]["001910F9"] = json!("DS");
    assert_eq!(
        v5["Study"]["Series"][CT_SERIES_UID]["Instances"][private]["DICOM"]["001910F9"],
        json!("97")
    );
    assert_eq!(
        v5["Study"]["Series"][CT_SERIES_UID]["Instances"][private]["DICOMVRs"]["001910F9"],
        json!("DS")
    );
    // (Key order inside the instance aside, nothing else changed.)
    assert_eq!(v5, want, "version 5 = version 4 plus the private element");

    // 5. SOPInstanceUID change: rejected without force, done with force on a non-primary,
    // rejected on a primary even with force.
    let renamed = CT_SOPS[2];
    let new_uid = "1.2.826.0.1.3680043.10.543.777";
    let upd = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {renamed: {"DICOM": {"SOPInstanceUID": new_uid}}}}}}});
    assert_invalid(
        update(&c, &ds, &n, "5", Some(&upd), None, false).await,
        &["SOPInstanceUID"],
        &[new_uid, renamed],
        "SOPInstanceUID without force",
    );
    assert_invalid(
        update(&c, &ds, &p, "1", Some(&upd), None, true).await,
        &["SOPInstanceUID"],
        &[new_uid],
        "SOPInstanceUID on a primary image set with force",
    );
    let v = updated(&c, &ds, &n, "5", Some(&upd), None, true).await;
    assert_eq!(v, "6");
    let v6 = doc(&rc, &ds, &n, None).await;
    let sops = sops_of(&v6);
    assert!(
        sops.contains(new_uid) && !sops.contains(renamed),
        "{sops:?}"
    );
    assert_eq!(
        frame_ids_of(&v6, new_uid),
        frame_ids_of(&v5, renamed),
        "the renamed instance keeps its frames"
    );
    let node = &v6["Study"]["Series"][CT_SERIES_UID]["Instances"][new_uid]["DICOM"];
    if let Some(uid) = node.get("SOPInstanceUID") {
        assert_eq!(uid, new_uid);
    }
    for (_, _, f) in frames_of(&v6) {
        frame(&rc, &ds, &n, &f).await;
    }

    // 6. Revert to version 3: the document equals version 3's; the removed frames live again.
    let out = revert(&c, &ds, &n, "6", "3").await.expect("revert");
    assert_updating(&out, &ds, &n, "6");
    let v = assert_updated(&c, &ds, &n, "6", false).await;
    assert_eq!(v, "7");
    let v7 = doc(&rc, &ds, &n, None).await;
    assert_eq!(v7, v3, "revert to version 3");
    assert_eq!(
        frame(&rc, &ds, &n, &gone_frames[0]).await,
        gone_bytes,
        "the removed instance's frame is served again"
    );
    for (_, _, f) in frames_of(&v7) {
        frame(&rc, &ds, &n, &f).await;
    }

    // 7. Search follows AccessionNumber and StudyDescription updates.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"AccessionNumber": "ACC-7788", "StudyDescription": "HEAD CT"}}});
    let v = updated(&c, &ds, &n, "7", Some(&upd), None, false).await;
    assert_eq!(v, "8");
    let found = c
        .search_image_sets()
        .datastore_id(&ds)
        .search_criteria(eq_filter(SearchByAttributeValue::DicomAccessionNumber(
            "ACC-7788".into(),
        )))
        .send()
        .await
        .unwrap();
    let items = found.image_sets_metadata_summaries();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].image_set_id(), n);
    assert_eq!(items[0].version(), Some(8));
    let tags = items[0].dicom_tags().unwrap();
    assert_eq!(tags.dicom_accession_number(), Some("ACC-7788"));
    assert_eq!(tags.dicom_study_description(), Some("HEAD CT"));
    assert_eq!(tags.dicom_patient_name(), Some("MX^MX"));
    let old_acc = search_all(
        &c,
        &ds,
        Some(eq_filter(SearchByAttributeValue::DicomAccessionNumber(
            "2".into(),
        ))),
    )
    .await;
    assert!(
        !old_acc.iter().any(|(id, _)| id == &n),
        "the old AccessionNumber no longer finds it: {old_acc:?}"
    );
    assert!(old_acc.iter().any(|(id, _)| id == &p));

    // Revert to version 1: its document, and search finds it by the old values again.
    let out = revert(&c, &ds, &n, "8", "1").await.expect("revert to 1");
    assert_updating(&out, &ds, &n, "8");
    assert_eq!(assert_updated(&c, &ds, &n, "8", false).await, "9");
    assert_eq!(doc(&rc, &ds, &n, None).await, v1, "revert to version 1");
    let acc = |v: &str| {
        let (c, ds) = (c.clone(), ds.clone());
        let v = v.to_owned();
        async move {
            search_all(
                &c,
                &ds,
                Some(eq_filter(SearchByAttributeValue::DicomAccessionNumber(v))),
            )
            .await
        }
    };
    assert!(acc("ACC-7788").await.is_empty(), "found-by tags recomputed");
    assert!(acc("2").await.contains(&(n.clone(), 9)));
    for (_, _, f) in frames_of(&v1) {
        frame(&rc, &ds, &n, &f).await;
    }

    // The whole history, newest first.
    use ImageSetWorkflowStatus::{Created, Updated};
    let list = versions(&c, &ds, &n).await;
    assert_versions(
        &list,
        &[
            ("9", Updated, false),
            ("8", Updated, false),
            ("7", Updated, false),
            ("6", Updated, true),
            ("5", Updated, true),
            ("4", Updated, false),
            ("3", Updated, false),
            ("2", Updated, false),
            ("1", Created, false),
        ],
        "non-primary image set",
    );
    for pv in &list {
        assert_eq!(pv.created_at(), created.created_at());
        assert_eq!(pv.is_primary(), Some(false));
        let g = get(&c, &ds, &n, Some(pv.version_id())).await;
        assert_eq!(
            g.image_set_workflow_status(),
            pv.image_set_workflow_status()
        );
        assert_eq!(g.overrides(), pv.overrides());
    }
    let updated_at: Vec<_> = list.iter().map(|p| *p.updated_at().unwrap()).collect();
    assert!(
        updated_at.windows(2).all(|w| w[0] >= w[1]),
        "{updated_at:?}"
    );

    // Tags on the image set ARN survive the versions.
    let tags = c
        .list_tags_for_resource()
        .resource_arn(&n_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags.tags().clone(),
        [("owner".to_string(), "radiology".to_string())].into()
    );

    // Primary image sets: Patient- and Series-level attributes cannot change.
    let upd = json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "NO^NO"}}});
    assert_invalid(
        update(&c, &ds, &p, "1", Some(&upd), None, false).await,
        &["PatientName"],
        &["NO^NO"],
        "Patient attribute of a primary image set",
    );
    let upd = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"DICOM": {"SeriesDescription": "X"}}}}});
    assert_invalid(
        update(&c, &ds, &p, "1", Some(&upd), None, false).await,
        &["SeriesDescription"],
        &[CT_SERIES_UID],
        "Series attribute of a primary image set",
    );
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "X"}}});
    assert_invalid(
        c.update_image_set_metadata()
            .datastore_id(&ds)
            .image_set_id(&n)
            .latest_version_id("9")
            .include_study_image_sets(true)
            .update_image_set_metadata_updates(MetadataUpdates::DicomUpdates(
                DicomUpdates::builder()
                    .updatable_attributes(blob(&upd))
                    .build(),
            ))
            .send()
            .await,
        &["includeStudyImageSets"],
        &[],
        "includeStudyImageSets on a non-primary image set",
    );
    assert_invalid(
        c.update_image_set_metadata()
            .datastore_id(&ds)
            .image_set_id(&n)
            .latest_version_id("9")
            .include_study_image_sets(true)
            .update_image_set_metadata_updates(MetadataUpdates::RevertToVersionId("1".into()))
            .send()
            .await,
        &[],
        &[],
        "includeStudyImageSets with revertToVersionId",
    );
    assert_eq!(versions(&c, &ds, &p).await.len(), 1, "nothing allocated");

    // includeStudyImageSets on a primary image set: the other primary image set of the study
    // gets a new version too (UPDATING_FOR_STUDY_CONSISTENCY, then UPDATED).
    let s2_before = doc(&rc, &ds, &s2, None).await;
    let s1_before = doc(&rc, &ds, &s1, None).await;
    // The update also names an instance of s1: only its Study-level part reaches s2.
    let (s1_series, s1_sop) = frames_of(&s1_before)
        .into_iter()
        .map(|(series, sop, _)| (series, sop))
        .next()
        .unwrap();
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "CONSISTENT"}, "Series": {&s1_series: {"Instances": {&s1_sop: {"DICOM": {"ImageComments": "S1 ONLY"}}}}}}});
    let out = c
        .update_image_set_metadata()
        .datastore_id(&ds)
        .image_set_id(&s1)
        .latest_version_id("1")
        .include_study_image_sets(true)
        .update_image_set_metadata_updates(MetadataUpdates::DicomUpdates(
            DicomUpdates::builder()
                .updatable_attributes(blob(&upd))
                .build(),
        ))
        .send()
        .await
        .expect("includeStudyImageSets");
    assert_updating(&out, &ds, &s1, "1");
    let other = get(&c, &ds, &s2, None).await;
    assert_eq!(other.version_id(), "2", "allocated in the same transaction");
    if other.image_set_state() == &ImageSetState::Locked {
        assert_eq!(
            other.image_set_workflow_status(),
            Some(&ImageSetWorkflowStatus::UpdatingForStudyConsistency)
        );
    }
    assert_updated(&c, &ds, &s1, "1", false).await;
    assert_updated(&c, &ds, &s2, "1", false).await;
    for (id, before) in [(&s1, &s1_before), (&s2, &s2_before)] {
        let mut want = before.clone();
        want["Study"]["DICOM"]["StudyDescription"] = json!("CONSISTENT");
        if id == &s1 {
            instance(&mut want, &s1_series, &s1_sop)["DICOM"]["ImageComments"] = json!("S1 ONLY");
        }
        assert_eq!(doc(&rc, &ds, id, None).await, want, "{id} version 2");
        assert_eq!(&doc(&rc, &ds, id, Some("1")).await, before);
        assert_versions(
            &versions(&c, &ds, id).await,
            &[("2", Updated, false), ("1", Created, false)],
            id,
        );
        assert_eq!(get(&c, &ds, id, None).await.is_primary(), Some(true));
    }
    assert_eq!(versions(&c, &ds, &p).await.len(), 1, "another study");
    let s2_summary = |c: Client, ds: String, s2: String| async move {
        let found = c
            .search_image_sets()
            .datastore_id(&ds)
            .search_criteria(eq_filter(SearchByAttributeValue::DicomStudyInstanceUid(
                doc(&c, &ds, &s2, None).await["Study"]["DICOM"]["StudyInstanceUID"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )))
            .send()
            .await
            .unwrap();
        found
            .image_sets_metadata_summaries()
            .iter()
            .find(|x| x.image_set_id() == s2)
            .cloned()
            .expect("s2 found by its study")
    };
    let summary = s2_summary(c.clone(), ds.clone(), s2.clone()).await;
    let tags = summary.dicom_tags().unwrap();
    assert_eq!(summary.version(), Some(2));
    assert_eq!(tags.dicom_study_description(), Some("CONSISTENT"));
    assert_eq!(
        (
            tags.dicom_number_of_study_related_series(),
            tags.dicom_number_of_study_related_instances()
        ),
        (2, 4),
        "two primary image sets in the study"
    );
    // A study-level update of a primary without includeStudyImageSets: only that one.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "ONLY S2"}}});
    updated(&c, &ds, &s2, "2", Some(&upd), None, false).await;
    assert_eq!(get(&c, &ds, &s1, None).await.version_id(), "2");
    // The study counts of a primary image set follow a deletion in its study.
    c.delete_image_set()
        .datastore_id(&ds)
        .image_set_id(&s1)
        .send()
        .await
        .expect("delete s1");
    assert_eq!(
        settle(&c, &ds, &s1).await.image_set_state(),
        &ImageSetState::Deleted
    );
    let summary = s2_summary(c.clone(), ds.clone(), s2.clone()).await;
    let tags = summary.dicom_tags().unwrap();
    assert_eq!(summary.version(), Some(3));
    assert_eq!(tags.dicom_study_description(), Some("ONLY S2"));
    assert_eq!(
        (
            tags.dicom_number_of_study_related_series(),
            tags.dicom_number_of_study_related_instances()
        ),
        (1, 3),
        "one live primary image set left in the study"
    );
    let again = import(&srv, &c, &ds, "after-delete", &corpus_files(&["4919"])).await;
    assert!(
        again[0].is_primary && again[0].image_set_id != s1,
        "a deleted primary image set is no longer the series' primary: {again:?}"
    );

    // The grouping elements deciding primary membership of later imports follow the document:
    // after AccessionNumber 2 → 9 on the primary image set, the original file conflicts (a new
    // non-primary image set) and a file saying 9 goes into the primary image set.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"AccessionNumber": "9"}}});
    updated(&c, &ds, &p, "1", Some(&upd), None, false).await;
    let original = corpus_files(&CT_SERIES[..1]);
    let again = import(&srv, &c, &ds, "accession-2", &original).await;
    assert!(
        !again[0].is_primary && again[0].image_set_id != p,
        "the old AccessionNumber now conflicts: {again:?}"
    );
    let nine: Vec<(String, Vec<u8>)> = original
        .into_iter()
        .map(|(k, b)| {
            (
                k,
                patch_bytes(
                    b,
                    b"\x08\x00\x50\x00SH\x02\x002 ",
                    b"\x08\x00\x50\x00SH\x02\x009 ",
                ),
            )
        })
        .collect();
    let again = import(&srv, &c, &ds, "accession-9", &nine).await;
    assert!(
        again[0].is_primary && again[0].image_set_id == p,
        "the new AccessionNumber matches the primary image set: {again:?}"
    );
    let got = get(&c, &ds, &p, None).await;
    assert_eq!(
        (got.version_id(), got.image_set_workflow_status()),
        ("3", Some(&ImageSetWorkflowStatus::Imported))
    );
    let d = doc(&rc, &ds, &p, None).await;
    assert_eq!(d["Study"]["DICOM"]["AccessionNumber"], "9");
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_image_sets() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let ds = create_active(&c, "changes-copy").await.unwrap();
    let mut files = corpus_files(&CT_SERIES);
    files.extend(corpus_files(&["CT_small.dcm"]));
    let job1 = import(&srv, &c, &ds, "primary", &files).await;
    let p = one_set(&job1[..4], true);
    let small = id_of(&job1, "CT_small.dcm");
    let n = one_set(
        &import(&srv, &c, &ds, "conflict", &conflicting_ct_series()).await,
        false,
    );
    let n_doc = doc(&rc, &ds, &n, None).await;
    let n_before = get(&c, &ds, &n, None).await;

    // 1. A whole copy into a new image set.
    let out = copy(&c, &ds, &n, "1", None, None, false, false)
        .await
        .expect("copy to a new image set");
    let d1 = assert_copying(&out, &ds, &n, "1", None, "1");
    // The source reads LOCKED / COPYING_WITH_READ_ONLY_ACCESS meanwhile (if still copying), and
    // its document stays readable.
    let src_now = get(&c, &ds, &n, None).await;
    assert_eq!(src_now.version_id(), "1");
    if src_now.image_set_state() == &ImageSetState::Locked {
        assert_eq!(
            src_now.image_set_workflow_status(),
            Some(&ImageSetWorkflowStatus::CopyingWithReadOnlyAccess)
        );
    }
    assert_eq!(doc(&rc, &ds, &n, None).await, n_doc);
    let got = assert_copy_outcome(&c, &ds, &d1, "1", ImageSetWorkflowStatus::Copied, None).await;
    assert_eq!(got.is_primary(), Some(false), "copies are non-primary");
    assert_source_back(&c, &ds, &n, &n_before).await;
    assert_versions(
        &versions(&c, &ds, &n).await,
        &[("1", ImageSetWorkflowStatus::Created, false)],
        "copy source",
    );
    assert_versions(
        &versions(&c, &ds, &d1).await,
        &[("1", ImageSetWorkflowStatus::Copied, false)],
        "copy",
    );
    let d1_doc = doc(&rc, &ds, &d1, None).await;
    assert_eq!(
        d1_doc,
        with_id(&n_doc, &d1),
        "the copy's document is the source's"
    );
    for (_, sop, f) in frames_of(&n_doc) {
        assert_eq!(
            frame(&rc, &ds, &d1, &f).await,
            frame(&rc, &ds, &n, &f).await,
            "frame {f} of {sop} through the copy"
        );
    }

    // 2. A subset copy (two instances) into a new image set.
    let subset = json!({"SchemaVersion": "1.1", "Study": {"Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[0]: {}, CT_SOPS[1]: {}}}}}}).to_string();
    let out = copy(&c, &ds, &n, "1", Some(&subset), None, false, false)
        .await
        .expect("subset copy");
    let d2 = assert_copying(&out, &ds, &n, "1", None, "1");
    assert_copy_outcome(&c, &ds, &d2, "1", ImageSetWorkflowStatus::Copied, None).await;
    assert_source_back(&c, &ds, &n, &n_before).await;
    let d2_v1 = doc(&rc, &ds, &d2, None).await;
    assert_eq!(
        sops_of(&d2_v1),
        BTreeSet::from([CT_SOPS[0].to_owned(), CT_SOPS[1].to_owned()])
    );
    let mut want = with_id(&n_doc, &d2);
    for sop in &CT_SOPS[2..] {
        want["Study"]["Series"][CT_SERIES_UID]["Instances"]
            .as_object_mut()
            .unwrap()
            .remove(*sop);
    }
    assert_eq!(
        d2_v1, want,
        "the subset copy holds the two instances as they are"
    );
    let found = c
        .search_image_sets()
        .datastore_id(&ds)
        .search_criteria(eq_filter(SearchByAttributeValue::DicomSeriesInstanceUid(
            CT_SERIES_UID.into(),
        )))
        .send()
        .await
        .unwrap();
    let summary = found
        .image_sets_metadata_summaries()
        .iter()
        .find(|x| x.image_set_id() == d2)
        .expect("the subset copy is found by its series");
    assert_eq!(summary.is_primary(), Some(false));
    assert_eq!(summary.version(), Some(1));
    let tags = summary.dicom_tags().unwrap();
    assert_eq!(
        (
            tags.dicom_number_of_study_related_series(),
            tags.dicom_number_of_study_related_instances(),
            tags.dicom_patient_id()
        ),
        (1, 2, Some("77654099")),
        "a non-primary copy counts its own series and instances"
    );

    // 3. A copy into an existing image set: instances merged, destination version + 1.
    let rest = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[2]: {}, CT_SOPS[3]: {}}}}}}).to_string();
    let out = copy(
        &c,
        &ds,
        &n,
        "1",
        Some(&rest),
        Some((&d2, "1")),
        false,
        false,
    )
    .await
    .expect("copy into an existing image set");
    assert_copying(&out, &ds, &n, "1", Some(&d2), "2");
    assert_copy_outcome(&c, &ds, &d2, "2", ImageSetWorkflowStatus::Copied, None).await;
    assert_source_back(&c, &ds, &n, &n_before).await;
    let d2_v2 = doc(&rc, &ds, &d2, None).await;
    assert_eq!(d2_v2, with_id(&n_doc, &d2), "all four instances again");
    assert_eq!(doc(&rc, &ds, &d2, Some("1")).await, d2_v1);
    for (_, _, f) in frames_of(&d2_v2) {
        frame(&rc, &ds, &d2, &f).await;
    }

    // 4. A SOP instance already in the destination: COPY_FAILED, previous document kept.
    let dup = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[0]: {}}}}}}).to_string();
    let out = copy(&c, &ds, &n, "1", Some(&dup), Some((&d2, "2")), false, false)
        .await
        .expect("duplicate copy is accepted, fails later");
    assert_copying(&out, &ds, &n, "1", Some(&d2), "3");
    assert_copy_outcome(
        &c,
        &ds,
        &d2,
        "3",
        ImageSetWorkflowStatus::CopyFailed,
        Some(DUPLICATE_SOP),
    )
    .await;
    assert_source_back(&c, &ds, &n, &n_before).await;
    assert_eq!(
        doc(&rc, &ds, &d2, None).await,
        d2_v2,
        "a failed version keeps the previous document"
    );

    // 5. Another series without force: COPY_FAILED with the exact message; with force: a new
    // series, the destination's Patient and Study unchanged.
    let small_doc = doc(&rc, &ds, &small, None).await;
    let small_before = get(&c, &ds, &small, None).await;
    let out = copy(&c, &ds, &small, "1", None, Some((&d2, "3")), false, false)
        .await
        .expect("mismatching copy is accepted, fails later");
    assert_copying(&out, &ds, &small, "1", Some(&d2), "4");
    let failed = assert_copy_outcome(
        &c,
        &ds,
        &d2,
        "4",
        ImageSetWorkflowStatus::CopyFailed,
        Some(SERIES_MISMATCH),
    )
    .await;
    assert!(failed.overrides().is_none());
    assert_source_back(&c, &ds, &small, &small_before).await;
    assert_eq!(doc(&rc, &ds, &d2, None).await, d2_v2);
    let out = copy(&c, &ds, &small, "1", None, Some((&d2, "4")), true, false)
        .await
        .expect("forced copy");
    assert_copying(&out, &ds, &small, "1", Some(&d2), "5");
    assert_copy_outcome(&c, &ds, &d2, "5", ImageSetWorkflowStatus::Copied, None).await;
    assert_source_back(&c, &ds, &small, &small_before).await;
    let d2_v5 = doc(&rc, &ds, &d2, None).await;
    let (small_series, small_node) = small_doc["Study"]["Series"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(
        series_uids(&d2_v5),
        BTreeSet::from([CT_SERIES_UID.to_owned(), small_series.clone()])
    );
    assert_eq!(
        d2_v5["Patient"], d2_v2["Patient"],
        "Patient unchanged with force"
    );
    assert_eq!(
        d2_v5["Study"]["DICOM"], d2_v2["Study"]["DICOM"],
        "Study unchanged with force"
    );
    assert_eq!(
        d2_v5["Study"]["Series"][CT_SERIES_UID],
        d2_v2["Study"]["Series"][CT_SERIES_UID]
    );
    assert_eq!(
        &d2_v5["Study"]["Series"][small_series], small_node,
        "the new series as the source has it"
    );
    for (_, _, f) in frames_of(&d2_v5) {
        frame(&rc, &ds, &d2, &f).await;
    }
    use ImageSetWorkflowStatus::{Copied, CopyFailed};
    let list = versions(&c, &ds, &d2).await;
    assert_eq!(
        list.iter()
            .map(|p| (
                p.version_id(),
                p.image_set_workflow_status().cloned(),
                p.message()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("5", Some(Copied), None),
            ("4", Some(CopyFailed), Some(SERIES_MISMATCH)),
            ("3", Some(CopyFailed), Some(DUPLICATE_SOP)),
            ("2", Some(Copied), None),
            ("1", Some(Copied), None),
        ]
    );
    assert_eq!(doc(&rc, &ds, &d2, Some("3")).await, d2_v2);
    assert_eq!(doc(&rc, &ds, &d2, Some("4")).await, d2_v2);

    // 6. promoteToPrimary: a non-primary image set whose series has no primary image set
    // becomes a new primary image set.
    let new_series = "1.2.826.0.1.3680043.10.543.1001";
    let upd = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"DICOM": {"SeriesInstanceUID": new_series}}}}});
    updated(&c, &ds, &d1, "1", Some(&upd), None, true).await;
    let d1_v2 = doc(&rc, &ds, &d1, None).await;
    assert_eq!(series_uids(&d1_v2), BTreeSet::from([new_series.to_owned()]));
    let d1_before = get(&c, &ds, &d1, None).await;
    assert_invalid(
        copy(&c, &ds, &d1, "2", None, Some((&d2, "5")), false, true).await,
        &[],
        &[],
        "promoteToPrimary with a destination",
    );
    let out = copy(&c, &ds, &d1, "2", None, None, false, true)
        .await
        .expect("promoteToPrimary");
    let promoted = assert_copying(&out, &ds, &d1, "2", None, "1");
    assert!(![&n, &d1, &d2, &p, &small].contains(&&promoted));
    let got = assert_copy_outcome(&c, &ds, &promoted, "1", Copied, None).await;
    assert_eq!(got.is_primary(), Some(true), "a new primary image set");
    assert_source_back(&c, &ds, &d1, &d1_before).await;
    let promoted_doc = doc(&rc, &ds, &promoted, None).await;
    assert_eq!(promoted_doc, with_id(&d1_v2, &promoted));
    for (_, _, f) in frames_of(&promoted_doc) {
        frame(&rc, &ds, &promoted, &f).await;
    }
    let primaries = search_all(
        &c,
        &ds,
        Some(eq_filter(SearchByAttributeValue::DicomSeriesInstanceUid(
            new_series.into(),
        ))),
    )
    .await;
    let ids: BTreeSet<&str> = primaries.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from([d1.as_str(), promoted.as_str()]));
    // promoteToPrimary into the series' existing primary image set (equal grouping elements):
    // a copy of one instance of the primary, removed from the primary, promoted back.
    let one = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[0]: {}}}}}}).to_string();
    let out = copy(&c, &ds, &p, "1", Some(&one), None, false, false)
        .await
        .expect("copy of a primary");
    let d3 = assert_copying(&out, &ds, &p, "1", None, "1");
    let got = assert_copy_outcome(&c, &ds, &d3, "1", Copied, None).await;
    assert_eq!(got.is_primary(), Some(false));
    let p_v1 = doc(&rc, &ds, &p, None).await;
    let rem = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[0]: {}}}}}});
    updated(&c, &ds, &p, "1", None, Some(&rem), false).await;
    assert_eq!(sops_of(&doc(&rc, &ds, &p, None).await).len(), 3);
    let out = copy(&c, &ds, &d3, "1", None, None, false, true)
        .await
        .expect("promote into the primary image set");
    let dest = assert_copying(&out, &ds, &d3, "1", Some(&p), "3");
    assert_eq!(dest, p);
    let got = assert_copy_outcome(&c, &ds, &p, "3", Copied, None).await;
    assert_eq!(got.is_primary(), Some(true));
    let p_v3 = doc(&rc, &ds, &p, None).await;
    assert_eq!(sops_of(&p_v3), sops_of(&p_v1));
    assert_eq!(
        frame_ids_of(&p_v3, CT_SOPS[0]),
        frame_ids_of(&p_v1, CT_SOPS[0])
    );
    for (_, _, f) in frames_of(&p_v3) {
        frame(&rc, &ds, &p, &f).await;
    }
    // A primary source cannot be promoted.
    assert_invalid(
        copy(&c, &ds, &p, "3", None, None, false, true).await,
        &[],
        &[],
        "promoteToPrimary of a primary image set",
    );
    // … nor one holding two series.
    assert_invalid(
        copy(&c, &ds, &d2, "5", None, None, false, true).await,
        &[],
        &[],
        "promoteToPrimary of an image set with two series",
    );
    // Grouping elements that differ from the series' primary image set: a new version of the
    // primary image set that ends COPY_FAILED, its document unchanged.
    let out = copy(&c, &ds, &n, "1", None, None, false, true)
        .await
        .expect("promote with other grouping elements is accepted, fails later");
    assert_copying(&out, &ds, &n, "1", Some(&p), "4");
    let failed = settle(&c, &ds, &p).await;
    assert_eq!(
        (failed.version_id(), failed.image_set_workflow_status()),
        ("4", Some(&CopyFailed)),
        "{failed:?}"
    );
    assert!(failed.message().is_some_and(|m| !m.is_empty()));
    assert_source_back(&c, &ds, &n, &n_before).await;
    assert_eq!(doc(&rc, &ds, &p, None).await, p_v3);
    // A primary destination keeps one series, even with force.
    let out = copy(&c, &ds, &small, "1", None, Some((&p, "4")), true, false)
        .await
        .expect("forced copy of another series into a primary is accepted, fails later");
    assert_copying(&out, &ds, &small, "1", Some(&p), "5");
    assert_copy_outcome(
        &c,
        &ds,
        &p,
        "5",
        CopyFailed,
        Some("INVALID_REQUEST: A primary image set holds one series."),
    )
    .await;
    assert_eq!(doc(&rc, &ds, &p, None).await, p_v3);

    // copiableAttributes naming a series as {} copies all its instances.
    let whole = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {}}}}).to_string();
    let out = copy(&c, &ds, &n, "1", Some(&whole), None, false, false)
        .await
        .expect("a whole series by {}");
    let d4 = assert_copying(&out, &ds, &n, "1", None, "1");
    assert_copy_outcome(&c, &ds, &d4, "1", Copied, None).await;
    assert_eq!(doc(&rc, &ds, &d4, None).await, with_id(&n_doc, &d4));

    // Renaming a series onto another series of the image set is refused, even with force.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"DICOM": {"SeriesInstanceUID": small_series}}}}});
    assert_invalid(
        update(&c, &ds, &d2, "5", Some(&upd), None, true).await,
        &["SeriesInstanceUID"],
        &[small_series.as_str(), CT_SERIES_UID],
        "a SeriesInstanceUID that is already a series of the image set",
    );

    // Removing a whole series (not the last) from the merged image set: back to version 2's
    // document, and the removed series' frames are no longer served through it.
    let rem = json!({"SchemaVersion": 1.1, "Study": {"Series": {small_series: {}}}});
    let v = updated(&c, &ds, &d2, "5", None, Some(&rem), false).await;
    assert_eq!(v, "6");
    assert_eq!(doc(&rc, &ds, &d2, None).await, d2_v2);
    for (_, _, f) in frames_of(&small_doc) {
        assert_err(
            try_frame(&rc, &ds, &d2, &f).await,
            "ResourceNotFoundException",
            404,
            "a frame of a removed series",
        );
        frame(&rc, &ds, &small, &f).await;
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_frame_quota() {
    let srv = TestServer::start_with(|c| c.max_copy_frames = 3)
        .await
        .unwrap();
    let c = srv.client();
    let ds = create_active(&c, "changes-copy-quota").await.unwrap();
    let n = one_set(
        &import(&srv, &c, &ds, "series", &corpus_files(&CT_SERIES)).await,
        true,
    );
    assert_err(
        copy(&c, &ds, &n, "1", None, None, false, false).await,
        "ServiceQuotaExceededException",
        402,
        "a copy of 4 frames with a quota of 3",
    );
    let three = json!({"SchemaVersion": 1.1, "Study": {"Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[0]: {}, CT_SOPS[1]: {}, CT_SOPS[2]: {}}}}}}).to_string();
    let out = copy(&c, &ds, &n, "1", Some(&three), None, false, false)
        .await
        .expect("3 frames fit");
    let d = assert_copying(&out, &ds, &n, "1", None, "1");
    assert_copy_outcome(&c, &ds, &d, "1", ImageSetWorkflowStatus::Copied, None).await;
    assert_eq!(sops_of(&doc(&c, &ds, &d, None).await).len(), 3);
    assert_versions(
        &versions(&c, &ds, &n).await,
        &[("1", ImageSetWorkflowStatus::Created, false)],
        "the source after a refused copy",
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_image_sets_then_the_datastore() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let rc = srv.runtime_host_client();
    let ds = create_active(&c, "changes-delete").await.unwrap();
    let mut files = corpus_files(&CT_SERIES);
    files.extend(corpus_files(&["CT_small.dcm"]));
    let job = import(&srv, &c, &ds, "delete", &files).await;
    let p = one_set(&job[..4], true);
    let small = id_of(&job, "CT_small.dcm");
    let small_doc = doc(&rc, &ds, &small, None).await;
    let small_frames: Vec<String> = frames_of(&small_doc).into_iter().map(|x| x.2).collect();
    let small_bytes = frame(&rc, &ds, &small, &small_frames[0]).await;
    let out = copy(&c, &ds, &small, "1", None, None, false, false)
        .await
        .unwrap();
    let twin = assert_copying(&out, &ds, &small, "1", None, "1");
    assert_copy_outcome(&c, &ds, &twin, "1", ImageSetWorkflowStatus::Copied, None).await;
    settle(&c, &ds, &small).await;
    let arn = |id: &str| format!("arn:aws:medical-imaging:{REGION}:{ACCOUNT}:datastore/{id}");
    c.tag_resource()
        .resource_arn(format!("{}/imageset/{small}", arn(&ds)))
        .tags("k", "v")
        .send()
        .await
        .unwrap();

    let embedded = backend() == "embedded";
    let blobs = srv.data_dir().join("blobs/datastores").join(&ds);
    let (frames_dir, docs_dir) = (blobs.join("frames"), blobs.join("metadata"));
    if embedded {
        assert_eq!(count_files(&frames_dir), 5, "one frame blob per instance");
        assert!(count_files(&docs_dir) >= 3, "documents of p, small, twin");
    }
    let docs_before = count_files(&docs_dir);

    // Delete the source of the copy: LOCKED / DELETING, then DELETED / DELETED.
    let out = c
        .delete_image_set()
        .datastore_id(&ds)
        .image_set_id(&small)
        .send()
        .await
        .expect("DeleteImageSet");
    assert_eq!(
        (
            out.datastore_id(),
            out.image_set_id(),
            out.image_set_state(),
            out.image_set_workflow_status()
        ),
        (
            ds.as_str(),
            small.as_str(),
            &ImageSetState::Locked,
            &ImageSetWorkflowStatus::Deleting
        )
    );
    let got = settle(&c, &ds, &small).await;
    assert_eq!(
        (
            got.version_id(),
            got.image_set_state(),
            got.image_set_workflow_status()
        ),
        (
            "1",
            &ImageSetState::Deleted,
            Some(&ImageSetWorkflowStatus::Deleted)
        ),
        "{got:?}"
    );
    let deleted_at = got.deleted_at().expect("deletedAt");
    assert!(deleted_at >= got.created_at().unwrap());
    let list = versions(&c, &ds, &small).await;
    assert_eq!(list.len(), 1, "no new version: {list:?}");
    assert_eq!(list[0].image_set_state(), &ImageSetState::Deleted);
    assert_eq!(
        list[0].image_set_workflow_status(),
        Some(&ImageSetWorkflowStatus::Deleted)
    );
    assert!(list[0].deleted_at().is_some());
    let v1 = get(&c, &ds, &small, Some("1")).await;
    assert_eq!(v1.image_set_state(), &ImageSetState::Deleted);
    for v in [None, Some("1")] {
        assert_err(
            try_doc(&rc, &ds, &small, v).await,
            "ResourceNotFoundException",
            404,
            "the document of a deleted image set",
        );
    }
    assert_err(
        try_frame(&rc, &ds, &small, &small_frames[0]).await,
        "ResourceNotFoundException",
        404,
        "a frame of a deleted image set",
    );
    let all = search_all(&c, &ds, None).await;
    let ids: BTreeSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([p.as_str(), twin.as_str()]),
        "search hides it"
    );
    // The copy still serves the shared frame.
    assert_eq!(frame(&rc, &ds, &twin, &small_frames[0]).await, small_bytes);
    if embedded {
        assert!(
            frames_dir.join(&small_frames[0]).exists(),
            "shared frame kept"
        );
        eventually("the deleted image set's document is collected", || {
            count_files(&docs_dir) == docs_before - 1
        })
        .await;
    }
    // Writes to a DELETED image set are conflicts; its tags are gone.
    assert_conflict(
        c.delete_image_set()
            .datastore_id(&ds)
            .image_set_id(&small)
            .send()
            .await,
        "delete a DELETED image set",
    );
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "X"}}});
    assert_conflict(
        update(&c, &ds, &small, "1", Some(&upd), None, false).await,
        "update a DELETED image set",
    );
    assert_conflict(
        copy(&c, &ds, &small, "1", None, None, false, false).await,
        "copy from a DELETED image set",
    );
    assert_conflict(
        copy(&c, &ds, &p, "1", None, Some((&small, "1")), true, false).await,
        "copy into a DELETED image set",
    );
    match c
        .list_tags_for_resource()
        .resource_arn(format!("{}/imageset/{small}", arn(&ds)))
        .send()
        .await
    {
        Ok(t) => assert!(t.tags().is_empty(), "tags gone with the image set: {t:?}"),
        Err(e) => assert_eq!(e.code(), Some("ResourceNotFoundException"), "{e:?}"),
    }

    // The data store cannot go while image sets live; then every image set, then it can.
    assert_conflict(
        c.delete_datastore().datastore_id(&ds).send().await,
        "DeleteDatastore with live image sets",
    );
    // p gets a second version first: its whole history stays listed, no document is served.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "V2"}}});
    updated(&c, &ds, &p, "1", Some(&upd), None, false).await;
    for id in [&twin, &p] {
        let out = c
            .delete_image_set()
            .datastore_id(&ds)
            .image_set_id(id)
            .send()
            .await
            .unwrap();
        assert_eq!(out.image_set_state(), &ImageSetState::Locked);
        let got = settle(&c, &ds, id).await;
        assert_eq!(got.image_set_state(), &ImageSetState::Deleted);
        assert!(got.deleted_at().is_some());
    }
    assert_err(
        try_frame(&rc, &ds, &twin, &small_frames[0]).await,
        "ResourceNotFoundException",
        404,
        "the shared frame after both are deleted",
    );
    let list = versions(&c, &ds, &p).await;
    let listed: Vec<(&str, &ImageSetState, Option<&ImageSetWorkflowStatus>)> = list
        .iter()
        .map(|v| {
            (
                v.version_id(),
                v.image_set_state(),
                v.image_set_workflow_status(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "2",
                &ImageSetState::Deleted,
                Some(&ImageSetWorkflowStatus::Deleted)
            ),
            (
                "1",
                &ImageSetState::Active,
                Some(&ImageSetWorkflowStatus::Created)
            ),
        ],
        "the latest version record shows the deletion"
    );
    assert_eq!(get(&c, &ds, &p, Some("1")).await.version_id(), "1");
    for v in [None, Some("1"), Some("2")] {
        assert_err(
            try_doc(&rc, &ds, &p, v).await,
            "ResourceNotFoundException",
            404,
            &format!("document {v:?} of a deleted image set"),
        );
    }
    assert!(search_all(&c, &ds, None).await.is_empty());
    if embedded {
        eventually("every frame blob is collected", || {
            count_files(&frames_dir) == 0
        })
        .await;
        eventually("every document blob is collected", || {
            count_files(&docs_dir) == 0
        })
        .await;
    }
    c.delete_datastore()
        .datastore_id(&ds)
        .send()
        .await
        .expect("DeleteDatastore once every image set is DELETED");
    wait_deleted(&c, &ds).await.unwrap();
    if embedded {
        assert_eq!(count_files(&blobs), 0);
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_and_conflicting_writes() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let ds = create_active(&c, "changes-race").await.unwrap();
    let job = import(
        &srv,
        &c,
        &ds,
        "race",
        &corpus_files(&["CT_small.dcm", "MR_small.dcm"]),
    )
    .await;
    let (x, y) = (id_of(&job, "CT_small.dcm"), id_of(&job, "MR_small.dcm"));

    // 12 clients, one latestVersion: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = srv.client();
        let (ds, x) = (ds.clone(), x.clone());
        tasks.push(tokio::spawn(async move {
            let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": format!("RACE {i}")}}});
            (i, update(&client, &ds, &x, "1", Some(&upd), None, false).await)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(out) => {
                assert_updating(&out, &ds, &x, "1");
                winners.push(i);
            }
            Err(e) => {
                assert_eq!(
                    (e.code(), e.raw_response().map(|r| r.status().as_u16())),
                    (Some("ConflictException"), Some(409)),
                    "loser {i}: {e:?}"
                );
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    assert_updated(&c, &ds, &x, "1", false).await;
    assert_versions(
        &versions(&c, &ds, &x).await,
        &[
            ("2", ImageSetWorkflowStatus::Updated, false),
            ("1", ImageSetWorkflowStatus::Created, false),
        ],
        "after the race",
    );
    assert_eq!(
        doc(&c, &ds, &x, None).await["Study"]["DICOM"]["StudyDescription"],
        json!(format!("RACE {}", winners[0]))
    );

    // Stale latestVersionId: conflicts for update, copy source and copy destination.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "STALE"}}});
    assert_conflict(
        update(&c, &ds, &x, "1", Some(&upd), None, false).await,
        "stale latestVersion",
    );
    assert_conflict(
        update(&c, &ds, &x, "3", Some(&upd), None, false).await,
        "a future latestVersion",
    );
    assert_conflict(
        revert(&c, &ds, &x, "1", "1").await,
        "stale latestVersion with a revert",
    );
    assert_conflict(
        copy(&c, &ds, &x, "1", None, None, false, false).await,
        "stale source latestVersionId",
    );
    assert_conflict(
        copy(&c, &ds, &y, "1", None, Some((&x, "1")), true, false).await,
        "stale destination latestVersionId",
    );
    assert_eq!(versions(&c, &ds, &x).await.len(), 2, "nothing allocated");
    assert_eq!(versions(&c, &ds, &y).await.len(), 1);

    // Updates, copies and deletes of one image set on one version at once: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = srv.client();
        let (ds, y) = (ds.clone(), y.clone());
        tasks.push(tokio::spawn(async move {
            let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": format!("MIXED {i}")}}});
            let r = match i % 3 {
                0 => update(&client, &ds, &y, "1", Some(&upd), None, false)
                    .await
                    .map(|_| "update")
                    .map_err(|e| e.code().map(str::to_owned)),
                1 => copy(&client, &ds, &y, "1", None, None, false, false)
                    .await
                    .map(|_| "copy")
                    .map_err(|e| e.code().map(str::to_owned)),
                _ => client
                    .delete_image_set()
                    .datastore_id(&ds)
                    .image_set_id(&y)
                    .send()
                    .await
                    .map(|_| "delete")
                    .map_err(|e| e.code().map(str::to_owned)),
            };
            (i, r)
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(kind) => won.push(kind),
            Err(code) => assert_eq!(code.as_deref(), Some("ConflictException"), "writer {i}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one write wins: {won:?}");
    let got = settle(&c, &ds, &y).await;
    let list = versions(&c, &ds, &y).await;
    match won[0] {
        "update" => assert_eq!((got.version_id(), list.len()), ("2", 2)),
        "copy" => assert_eq!((got.version_id(), list.len()), ("1", 1)),
        _ => assert_eq!(
            (got.image_set_state(), list.len()),
            (&ImageSetState::Deleted, 1)
        ),
    }

    // A write to a LOCKED image set: an update immediately followed by another on the new
    // version (retried: the first may already be done when the second arrives).
    let mut latest = "2".to_owned();
    let mut conflicts = 0;
    for round in 0..20 {
        let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": format!("ROUND {round}")}}});
        let out = update(&c, &ds, &x, &latest, Some(&upd), None, false)
            .await
            .expect("update");
        assert_updating(&out, &ds, &x, &latest);
        let locked = next(&latest);
        let (second, third) = tokio::join!(
            update(&c, &ds, &x, &locked, Some(&upd), None, false),
            copy(&c, &ds, &x, &locked, None, None, false, false),
        );
        let mut settled = locked.clone();
        match second {
            Err(e) => {
                assert_eq!(e.code(), Some("ConflictException"), "{e:?}");
                conflicts += 1;
            }
            Ok(o) => {
                assert_eq!(o.latest_version_id(), next(&locked));
                settled = next(&locked);
            }
        }
        // At most one of the two writes on the same version wins.
        if let Ok(o) = third {
            assert_eq!(settled, locked, "round {round}: both writes won");
            let d = o
                .destination_image_set_properties()
                .unwrap()
                .image_set_id()
                .to_owned();
            settle(&c, &ds, &d).await;
        }
        let got = settle(&c, &ds, &x).await;
        assert_eq!(got.image_set_state(), &ImageSetState::Active);
        latest = got.version_id().to_owned();
        if conflicts >= 3 {
            break;
        }
    }
    assert!(conflicts > 0, "no write ever met the LOCKED image set");
    // The history has no gap or duplicate.
    let list = versions(&c, &ds, &x).await;
    let ids: Vec<u64> = list
        .iter()
        .map(|p| p.version_id().parse().unwrap())
        .collect();
    let n = ids.len() as u64;
    assert_eq!(ids, (1..=n).rev().collect::<Vec<_>>());
    assert_eq!(latest, n.to_string());
    srv.shutdown().await.unwrap();
}

// --- crash recovery -----------------------------------------------------------------------------

fn lightbox_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LIGHTBOX_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/lightbox")
}

struct Node {
    child: tokio::process::Child,
    url: String,
}

async fn spawn_node(dir: &Path, storage: Option<&SharedStorage>) -> Node {
    let bin = lightbox_bin();
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p lightbox`",
        bin.display()
    );
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--job-lease-ms", "2000", "--transition-delay-ms", "100"])
        .env("LIGHTBOX_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(s) = storage {
        cmd.env("LIGHTBOX_CATALOG", &s.catalog_url)
            .env("LIGHTBOX_BLOB_STORE", format!("s3://{}/blobs", s.bucket))
            .env("LIGHTBOX_S3_ENDPOINT", s.s3.endpoint_url())
            .env("LIGHTBOX_S3_REGION", &s.s3.region)
            .env("LIGHTBOX_S3_ACCESS_KEY_ID", &s.s3.access_key)
            .env("LIGHTBOX_S3_SECRET_ACCESS_KEY", &s.s3.secret_key);
    }
    let mut child = cmd.spawn().expect("spawn lightbox serve");
    let url = ready_url(&mut child, Duration::from_secs(60))
        .await
        .expect("ready");
    Node { child, url }
}

impl Node {
    fn client(&self) -> Client {
        sdk_client(&self.url, "test", "test", HostMode::StripPrefix)
    }
}

/// Checks an image set found LOCKED (work of a killed node not yet taken over): reads are
/// served — an update in progress shows the previous document — and a write is a
/// ConflictException while it stays LOCKED. Returns the id of a copy that got through because
/// the image set was unlocked meanwhile.
async fn check_locked(c: &Client, ds: &str, id: &str, got: &GetImageSetOutput) -> Option<String> {
    use ImageSetWorkflowStatus as S;
    let status = got.image_set_workflow_status().cloned();
    assert!(
        matches!(
            status,
            Some(
                S::Updating
                    | S::UpdatingForStudyConsistency
                    | S::Copying
                    | S::CopyingWithReadOnlyAccess
                    | S::Deleting
            )
        ),
        "{id}: LOCKED with {status:?}"
    );
    let version: u64 = got.version_id().parse().unwrap();
    // A new copy destination has no document before its first version is written (the
    // contract does not say what GetImageSetMetadata answers then); a deletion hides them.
    let new_copy = status == Some(S::Copying) && version == 1;
    if status != Some(S::Deleting) && !new_copy {
        let latest = try_doc(c, ds, id, None).await;
        let changing = matches!(
            status,
            Some(S::Updating | S::UpdatingForStudyConsistency | S::Copying)
        );
        let previous = if changing && version > 1 {
            Some(doc(c, ds, id, Some(&(version - 1).to_string())).await)
        } else {
            None
        };
        let still = get(c, ds, id, None).await;
        if still.image_set_state() == &ImageSetState::Locked
            && still.version_id() == got.version_id()
        {
            let latest = latest.unwrap_or_else(|e| panic!("{id} LOCKED: document: {e:?}"));
            if let Some(previous) = previous {
                assert_eq!(
                    latest, previous,
                    "{id}: LOCKED by a change ({status:?}), reads show the previous document"
                );
            }
            for (_, _, f) in frames_of(&latest) {
                frame(c, ds, id, &f).await;
            }
        }
    }
    match copy(c, ds, id, got.version_id(), None, None, false, false).await {
        Err(e) => {
            assert_eq!(
                e.code(),
                Some("ConflictException"),
                "{id} LOCKED: copy: {e:?}"
            );
            None
        }
        Ok(out) => {
            // Only possible if the work was finished in between.
            let d = out.destination_image_set_properties().unwrap();
            Some(d.image_set_id().to_owned())
        }
    }
}

/// A write whose synchronous answer came back before the kill.
#[derive(Debug, Clone)]
enum Accepted {
    Update { id: String, version: String },
    Copy { dest: String, version: String },
    Delete { id: String },
}

/// When a crash round kills the server: after the first answer, after all answers (+ ms), or
/// ms after sending.
#[derive(Debug, Clone, Copy)]
enum Kill {
    FirstAnswer,
    AllAnswers(u64),
    Sending(u64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_leaves_whole_versions() {
    let dir = tempfile::tempdir().unwrap();
    let storage = match backend().as_str() {
        "postgres-s3" => Some(SharedStorage::create(&dir.path().join("s3")).await.unwrap()),
        _ => None,
    };
    let data = dir.path().join("data");
    let mut node = spawn_node(&data, storage.as_ref()).await;
    let c = node.client();
    let ds = create_active(&c, "changes-crash").await.unwrap();
    let mut files = corpus_files(&CT_SERIES);
    let deletable = ["6154", "6247", "6278", "MR_small.dcm", "4919", "SC_rgb.dcm"];
    files.extend(corpus_files(&["CT_small.dcm", "emri_small.dcm"]));
    files.extend(corpus_files(&deletable));
    let job = import_at(&node.url, &c, &ds, "crash", &files).await;
    let p = one_set(&job[..4], true);
    let n = one_set(
        &import_at(&node.url, &c, &ds, "crash2", &conflicting_ct_series()).await,
        false,
    );
    let (small, emri) = (id_of(&job, "CT_small.dcm"), id_of(&job, "emri_small.dcm"));
    let mut doomed: Vec<String> = deletable.iter().map(|f| id_of(&job, f)).collect();
    // Where the frame blobs of the image sets to delete live, to see them collected.
    let frames_root = match &storage {
        Some(s) => s.s3.root().join(&s.bucket).join("blobs"),
        None => data.join("blobs"),
    }
    .join("datastores")
    .join(&ds)
    .join("frames");
    let mut doomed_frames = BTreeMap::new();
    for id in &doomed {
        let d = doc(&c, &ds, id, None).await;
        let frames: Vec<PathBuf> = frames_of(&d)
            .into_iter()
            .map(|(_, _, f)| frames_root.join(f))
            .collect();
        assert!(
            frames.iter().all(|f| f.exists()),
            "frame blobs of {id} under {}",
            frames_root.display()
        );
        doomed_frames.insert(id.clone(), frames);
    }
    let mut known: BTreeSet<String> = job.iter().map(|l| l.image_set_id.clone()).collect();
    known.insert(n.clone());
    let mut accepted_total = 0;

    let rounds = [
        Kill::FirstAnswer,
        Kill::AllAnswers(0),
        Kill::AllAnswers(5),
        Kill::Sending(2),
        Kill::Sending(6),
        Kill::Sending(12),
    ];
    for (round, kill) in rounds.into_iter().enumerate() {
        let c = node.client();
        let latest = |id: &String| {
            let (c, ds, id) = (c.clone(), ds.clone(), id.clone());
            async move { get(&c, &ds, &id, None).await.version_id().to_owned() }
        };
        let (p_v, n_v) = (latest(&p).await, latest(&n).await);
        // A burst of updates, copies and a delete.
        type Work = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Accepted>> + Send>>;
        let mut work: Vec<Work> = Vec::new();
        {
            let (c, ds, n) = (c.clone(), ds.clone(), n.clone());
            let upd = json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": format!("CRASH^{round}")}}});
            work.push(Box::pin(async move {
                let out = update(&c, &ds, &n, &n_v, Some(&upd), None, false)
                    .await
                    .ok()?;
                Some(Accepted::Update {
                    id: n,
                    version: out.latest_version_id().to_owned(),
                })
            }));
        }
        {
            // Two places of one document: both change or neither.
            let (c, ds, p) = (c.clone(), ds.clone(), p.clone());
            let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": format!("CRASH {round}")}, "Series": {CT_SERIES_UID: {"Instances": {CT_SOPS[0]: {"DICOM": {"ImageComments": format!("CRASH {round}")}}}}}}});
            work.push(Box::pin(async move {
                let out = update(&c, &ds, &p, &p_v, Some(&upd), None, false)
                    .await
                    .ok()?;
                Some(Accepted::Update {
                    id: p,
                    version: out.latest_version_id().to_owned(),
                })
            }));
        }
        for src in [&small, &emri] {
            let (c, ds, s) = (c.clone(), ds.clone(), src.clone());
            work.push(Box::pin(async move {
                let out = copy(&c, &ds, &s, "1", None, None, false, false)
                    .await
                    .ok()?;
                let d = out.destination_image_set_properties()?;
                Some(Accepted::Copy {
                    dest: d.image_set_id().to_owned(),
                    version: d.latest_version_id().to_owned(),
                })
            }));
        }
        {
            let (c, ds, id) = (c.clone(), ds.clone(), doomed.pop().unwrap());
            work.push(Box::pin(async move {
                c.delete_image_set()
                    .datastore_id(&ds)
                    .image_set_id(&id)
                    .send()
                    .await
                    .ok()?;
                Some(Accepted::Delete { id })
            }));
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<Accepted>>();
        let mut tasks = Vec::new();
        let count = work.len();
        for w in work {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = tx.send(w.await);
            }));
        }
        drop(tx);
        let mut answers = Vec::new();
        match kill {
            Kill::FirstAnswer => {
                answers.push(rx.recv().await.expect("an answer"));
            }
            Kill::AllAnswers(ms) => {
                while answers.len() < count {
                    answers.push(rx.recv().await.expect("an answer"));
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Kill::Sending(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        node.child.start_kill().unwrap(); // SIGKILL
        node.child.wait().await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        while let Ok(a) = rx.try_recv() {
            answers.push(a);
        }
        let accepted: Vec<Accepted> = answers.into_iter().flatten().collect();
        if !matches!(kill, Kill::Sending(_)) {
            assert!(!accepted.is_empty(), "round {round}: nothing was accepted");
        }
        accepted_total += accepted.len();

        // Restart on the same storage: every image set ends unlocked within 60 s.
        node = spawn_node(&data, storage.as_ref()).await;
        let c = node.client();
        for a in &accepted {
            if let Accepted::Copy { dest, .. } = a {
                known.insert(dest.clone());
            }
        }
        for (id, _) in search_all(&c, &ds, None).await {
            known.insert(id);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut states = BTreeMap::new();
        let mut locked_at_restart = BTreeSet::new();
        let mut extra_copies = Vec::new();
        for id in &known {
            loop {
                let got = get(&c, &ds, id, None).await;
                if got.image_set_state() == &ImageSetState::Locked {
                    if locked_at_restart.insert(id.clone())
                        && let Some(dest) = check_locked(&c, &ds, id, &got).await
                    {
                        extra_copies.push(dest);
                    }
                } else {
                    states.insert(id.clone(), got);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round} ({kill:?}): {id} still LOCKED 60 s after the restart: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for dest in extra_copies {
            settle(&c, &ds, &dest).await;
            let got = get(&c, &ds, &dest, None).await;
            known.insert(dest.clone());
            states.insert(dest, got);
        }
        let what = format!("round {round} ({kill:?})");
        for (id, got) in &states {
            let status = got.image_set_workflow_status().cloned();
            let list = versions(&c, &ds, id).await;
            let ids: Vec<u64> = list
                .iter()
                .map(|p| p.version_id().parse().unwrap())
                .collect();
            let latest: u64 = got.version_id().parse().unwrap();
            assert_eq!(
                ids,
                (1..=latest).rev().collect::<Vec<_>>(),
                "{what}: {id}: versions contiguous"
            );
            for pv in &list[1..] {
                assert_eq!(
                    pv.image_set_state(),
                    &ImageSetState::Active,
                    "{what}: {id}: {pv:?}"
                );
            }
            match got.image_set_state() {
                ImageSetState::Deleted => {
                    assert_eq!(
                        status,
                        Some(ImageSetWorkflowStatus::Deleted),
                        "{what}: {id}"
                    );
                    assert!(got.deleted_at().is_some(), "{what}: {id}");
                    assert_err(
                        try_doc(&c, &ds, id, None).await,
                        "ResourceNotFoundException",
                        404,
                        &format!("{what}: the document of deleted {id}"),
                    );
                    let frames = doomed_frames[id].clone();
                    eventually(
                        &format!("{what}: frame blobs of deleted {id} collected"),
                        || frames.iter().all(|f| !f.exists()),
                    )
                    .await;
                }
                ImageSetState::Active => {
                    use ImageSetWorkflowStatus as S;
                    assert!(
                        matches!(
                            status,
                            Some(
                                S::Created
                                    | S::Imported
                                    | S::Updated
                                    | S::UpdateFailed
                                    | S::Copied
                                    | S::CopyFailed
                            )
                        ),
                        "{what}: {id}: final status {status:?}"
                    );
                    let d = doc(&c, &ds, id, None).await;
                    for (_, _, f) in frames_of(&d) {
                        frame(&c, &ds, id, &f).await;
                    }
                    if id == &p {
                        let study = d["Study"]["DICOM"]["StudyDescription"].clone();
                        let comments = d["Study"]["Series"][CT_SERIES_UID]["Instances"][CT_SOPS[0]]
                            ["DICOM"]["ImageComments"]
                            .clone();
                        if study.as_str().is_some_and(|s| s.starts_with("CRASH")) {
                            assert_eq!(study, comments, "{what}: {id}: half an update: {d}");
                        } else {
                            assert!(
                                comments.as_str().is_none_or(|c| !c.starts_with("CRASH")),
                                "{what}: {id}: half an update: {d}"
                            );
                        }
                    }
                }
                other => panic!("{what}: {id}: state {other:?}"),
            }
        }
        // Work answered before the kill was not lost: redone after the lease, it succeeded.
        for a in &accepted {
            match a {
                Accepted::Update { id, version } => {
                    let v = get(&c, &ds, id, Some(version)).await;
                    assert_eq!(
                        (v.image_set_workflow_status(), v.message()),
                        (Some(&ImageSetWorkflowStatus::Updated), None),
                        "{what}: accepted update of {id} (version {version})"
                    );
                    let d = doc(&c, &ds, id, Some(version)).await;
                    if id == &n {
                        assert_eq!(
                            d["Patient"]["DICOM"]["PatientName"],
                            json!(format!("CRASH^{round}"))
                        );
                    } else {
                        assert_eq!(
                            d["Study"]["DICOM"]["StudyDescription"],
                            json!(format!("CRASH {round}"))
                        );
                    }
                }
                Accepted::Copy { dest, version } => {
                    let v = get(&c, &ds, dest, Some(version)).await;
                    assert_eq!(
                        (v.image_set_workflow_status(), v.message()),
                        (Some(&ImageSetWorkflowStatus::Copied), None),
                        "{what}: accepted copy to {dest}"
                    );
                }
                Accepted::Delete { id } => {
                    assert_eq!(
                        states[id].image_set_state(),
                        &ImageSetState::Deleted,
                        "{what}: accepted delete of {id}"
                    );
                }
            }
        }
        eprintln!("{what}: accepted {accepted:?}; LOCKED after the restart: {locked_at_restart:?}");
    }
    assert!(
        accepted_total >= 5,
        "{accepted_total} writes accepted in all rounds"
    );
    node.child.start_kill().unwrap();
    node.child.wait().await.unwrap();
}

// --- bad input ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_changes_are_rejected() {
    let srv = TestServer::start().await.unwrap();
    let c = srv.client();
    let ds = create_active(&c, "changes-invalid").await.unwrap();
    let p = one_set(
        &import(&srv, &c, &ds, "primary", &corpus_files(&CT_SERIES)).await,
        true,
    );
    let n = one_set(
        &import(&srv, &c, &ds, "conflict", &conflicting_ct_series()).await,
        false,
    );
    let sop = CT_SOPS[0];
    let path = |id: &str, query: &str| {
        format!("/datastore/{ds}/imageSet/{id}/updateImageSetMetadata{query}")
    };
    let good = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "OK"}}});
    let good_b64 = b64(&serde_json::to_vec(&good).unwrap());

    // Raw bodies the SDK would not send.
    /// (what, query, body, status, error code, words the message names)
    type RawCase<'a> = (&'a str, String, Vec<u8>, u16, &'a str, Vec<&'a str>);
    let raw_cases: Vec<RawCase> = vec![
        (
            "both union members",
            "?latestVersion=1".into(),
            serde_json::to_vec(&json!({"DICOMUpdates": {"updatableAttributes": good_b64}, "revertToVersionId": "1"})).unwrap(),
            400,
            "ValidationException",
            vec![],
        ),
        (
            "neither union member",
            "?latestVersion=1".into(),
            b"{}".to_vec(),
            400,
            "ValidationException",
            vec![],
        ),
        (
            "malformed base64",
            "?latestVersion=1".into(),
            serde_json::to_vec(&json!({"DICOMUpdates": {"updatableAttributes": "%%%not base64%%%"}})).unwrap(),
            400,
            "ValidationException",
            vec!["updatableAttributes"],
        ),
        (
            "malformed base64 (removable)",
            "?latestVersion=1".into(),
            serde_json::to_vec(&json!({"DICOMUpdates": {"removableAttributes": "!!!!"}})).unwrap(),
            400,
            "ValidationException",
            vec!["removableAttributes"],
        ),
        (
            "request body not JSON",
            "?latestVersion=1".into(),
            b"{\"DICOMUpdates\": ".to_vec(),
            400,
            "SerializationException",
            vec![],
        ),
        (
            "no latestVersion",
            "".into(),
            serde_json::to_vec(&json!({"DICOMUpdates": {"updatableAttributes": good_b64}})).unwrap(),
            400,
            "ValidationException",
            vec!["latestVersion"],
        ),
        (
            "non-numeric latestVersion",
            "?latestVersion=v1".into(),
            serde_json::to_vec(&json!({"DICOMUpdates": {"updatableAttributes": good_b64}})).unwrap(),
            400,
            "ValidationException",
            vec!["latestVersion"],
        ),
    ];
    for (what, query, body, status, code, needles) in raw_cases {
        let r = raw_post(&srv, &path(&n, &query), &body).await;
        let msg = r.assert_error(status, code);
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{what}: {msg:?} does not name {needle}"
            );
        }
    }

    // Decoded documents that break a rule (SDK; the blob is base64-encoded by the SDK).
    let series = CT_SERIES_UID;
    let inst = |dicom: Value| json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop: {"DICOM": dicom}}}}}});
    type Case<'a> = (&'a str, Option<Value>, Option<Value>, bool, Vec<&'a str>);
    let not_json = Value::String("\u{0}not json".into());
    let cases: Vec<Case> = vec![
        (
            "SchemaVersion missing",
            Some(json!({"Study": {"DICOM": {"StudyDescription": "X"}}})),
            None,
            false,
            vec!["SchemaVersion"],
        ),
        (
            "SchemaVersion 2",
            Some(json!({"SchemaVersion": 2, "Study": {"DICOM": {"StudyDescription": "X"}}})),
            None,
            false,
            vec!["SchemaVersion"],
        ),
        (
            "not an object",
            Some(json!([1, 2])),
            None,
            false,
            vec!["updatableAttributes"],
        ),
        (
            "unknown top-level member",
            Some(json!({"SchemaVersion": 1.1, "Patients": {"DICOM": {"PatientName": "X"}}})),
            None,
            false,
            vec!["Patients"],
        ),
        (
            "unknown nested member",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "X"}, "Extra": {}}}),
            ),
            None,
            false,
            vec!["Extra"],
        ),
        (
            "PixelData",
            Some(inst(json!({"PixelData": "AAAA"}))),
            None,
            true,
            vec!["PixelData"],
        ),
        (
            "ImageFrames",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop: {"ImageFrames": []}}}}}}),
            ),
            None,
            true,
            vec!["ImageFrames"],
        ),
        (
            "ImageSetID",
            Some(json!({"SchemaVersion": 1.1, "ImageSetID": "00000000000000000000000000000000"})),
            None,
            true,
            vec!["ImageSetID"],
        ),
        (
            "PatientName under Study.DICOM",
            Some(json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"PatientName": "X^Y"}}})),
            None,
            false,
            vec!["PatientName", "Patient", "Study"],
        ),
        (
            "StudyDescription under Patient.DICOM",
            Some(json!({"SchemaVersion": 1.1, "Patient": {"DICOM": {"StudyDescription": "X"}}})),
            None,
            false,
            vec!["StudyDescription"],
        ),
        (
            "unknown series",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"Series": {"1.2.3.4.5.6.7": {"DICOM": {"SeriesDescription": "X"}}}}}),
            ),
            None,
            false,
            vec![],
        ),
        (
            "unknown instance",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {"1.2.3.4.5.6.8": {"DICOM": {"InstanceNumber": "3"}}}}}}}),
            ),
            None,
            false,
            vec![],
        ),
        (
            "unknown instance (removal)",
            None,
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {"1.2.3.4.5.6.8": {}}}}}}),
            ),
            false,
            vec![],
        ),
        (
            "unknown keyword",
            Some(json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"NoSuchKeywordAtAll": "X"}}})),
            None,
            false,
            vec!["NoSuchKeywordAtAll"],
        ),
        (
            "multi-valued",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": ["A", "B"]}}}),
            ),
            None,
            false,
            vec!["StudyDescription"],
        ),
        (
            "bad DA",
            Some(json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDate": "2024-13-45"}}})),
            None,
            false,
            vec!["StudyDate"],
        ),
        (
            "bad TM",
            Some(json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyTime": "noon"}}})),
            None,
            false,
            vec!["StudyTime"],
        ),
        (
            "bad IS",
            Some(inst(json!({"InstanceNumber": "twelve"}))),
            None,
            false,
            vec!["InstanceNumber"],
        ),
        (
            "LO too long",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyDescription": "x".repeat(65)}}}),
            ),
            None,
            false,
            vec!["StudyDescription"],
        ),
        (
            "StudyInstanceUID without force",
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyInstanceUID": "1.2.3.4"}}}),
            ),
            None,
            false,
            vec!["StudyInstanceUID"],
        ),
        (
            "StudyID without force",
            Some(json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyID": "77"}}})),
            None,
            false,
            vec!["StudyID"],
        ),
        (
            "removing an identifier",
            None,
            Some(inst(json!({"SOPInstanceUID": ""}))),
            true,
            vec!["SOPInstanceUID"],
        ),
        (
            "removing every instance",
            None,
            Some(
                json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {CT_SOPS[0]: {}, CT_SOPS[1]: {}, CT_SOPS[2]: {}, CT_SOPS[3]: {}}}}}}),
            ),
            false,
            vec![],
        ),
        (
            "removing the only series",
            None,
            Some(json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {}}}})),
            false,
            vec![],
        ),
        (
            "renaming onto an existing SOP instance",
            Some(inst(json!({"SOPInstanceUID": CT_SOPS[1]}))),
            None,
            true,
            vec!["SOPInstanceUID"],
        ),
        (
            "a new private element without its VR",
            Some(inst(json!({"00191001": "X"}))),
            None,
            true,
            vec!["00191001"],
        ),
        (
            "a private element at the study level",
            Some(json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"00191001": "X"}}})),
            None,
            true,
            vec!["00191001"],
        ),
        (
            "malformed JSON",
            Some(not_json),
            None,
            false,
            vec!["updatableAttributes"],
        ),
    ];
    for (what, upd, rem, force, needles) in cases {
        let r = if what == "malformed JSON" {
            // Not JSON at all: bytes the SDK base64-encodes as they are.
            c.update_image_set_metadata()
                .datastore_id(&ds)
                .image_set_id(&n)
                .latest_version_id("1")
                .update_image_set_metadata_updates(MetadataUpdates::DicomUpdates(
                    DicomUpdates::builder()
                        .updatable_attributes(Blob::new(b"{\"SchemaVersion\": 1.1,".to_vec()))
                        .build(),
                ))
                .send()
                .await
        } else {
            update(&c, &ds, &n, "1", upd.as_ref(), rem.as_ref(), force).await
        };
        assert_invalid(r, &needles, &[sop, "1.2.3.4.5.6.7", "1.2.3.4.5.6.8"], what);
    }
    let r = c
        .update_image_set_metadata()
        .datastore_id(&ds)
        .image_set_id(&n)
        .latest_version_id("1")
        .update_image_set_metadata_updates(MetadataUpdates::DicomUpdates(
            DicomUpdates::builder()
                .removable_attributes(Blob::new(b"not json".to_vec()))
                .build(),
        ))
        .send()
        .await;
    assert_invalid(
        r,
        &["removableAttributes"],
        &[],
        "malformed JSON (removable)",
    );
    // PixelData even with force on a non-primary.
    let r = update(
        &c,
        &ds,
        &n,
        "1",
        Some(&inst(json!({"PixelData": null}))),
        None,
        true,
    )
    .await;
    assert_invalid(r, &["PixelData"], &[], "PixelData with force");

    // Revert to a version that does not exist, or to the latest one.
    assert_invalid(
        revert(&c, &ds, &n, "1", "99").await,
        &["revertToVersionId"],
        &[],
        "revert to version 99",
    );
    assert_invalid(
        revert(&c, &ds, &n, "1", "1").await,
        &["revertToVersionId"],
        &[],
        "revert to the latest version",
    );

    // Payload quota: the decoded documents together over 10,240 bytes → 402.
    let comments = |len: usize| inst(json!({"ImageComments": "c".repeat(len)}));
    let big = comments(10_240);
    assert!(serde_json::to_vec(&big).unwrap().len() > 10_240);
    assert_err(
        update(&c, &ds, &n, "1", Some(&big), None, false).await,
        "ServiceQuotaExceededException",
        402,
        "one document over 10,240 bytes",
    );
    let half = comments(6_000);
    assert_err(
        update(&c, &ds, &n, "1", Some(&half), Some(&half), false).await,
        "ServiceQuotaExceededException",
        402,
        "two documents together over 10,240 bytes",
    );
    // The boundary: exactly 10,240 bytes is fine, one more is not.
    let overhead = serde_json::to_vec(&comments(0)).unwrap().len();
    let over = comments(10_241 - overhead);
    assert_eq!(serde_json::to_vec(&over).unwrap().len(), 10_241);
    assert_err(
        update(&c, &ds, &n, "1", Some(&over), None, false).await,
        "ServiceQuotaExceededException",
        402,
        "10,241 bytes",
    );
    let exact = comments(10_240 - overhead);
    assert_eq!(serde_json::to_vec(&exact).unwrap().len(), 10_240);
    assert_eq!(
        updated(&c, &ds, &n, "1", Some(&exact), None, false).await,
        "2"
    );
    // Removals apply first, then updates (the same attribute in both: the update stays).
    let fits = comments(9_000);
    let v = updated(
        &c,
        &ds,
        &n,
        "2",
        Some(&fits),
        Some(&inst(json!({"ImageComments": null}))),
        false,
    )
    .await;
    assert_eq!(v, "3");
    let d = doc(&c, &ds, &n, None).await;
    assert_eq!(
        d["Study"]["Series"][series]["Instances"][sop]["DICOM"]["ImageComments"],
        json!("c".repeat(9_000))
    );
    // Removing an absent attribute is no error.
    let v = updated(
        &c,
        &ds,
        &n,
        "3",
        None,
        Some(&json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"AdmittingDiagnosesDescription": "x"}}})),
        false,
    )
    .await;
    assert_eq!(v, "4");
    assert_eq!(doc(&c, &ds, &n, None).await, with_id(&d, &n));

    // Private elements with force: added, updated, removed (removal without force rejected).
    let private = |value: &str| json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop: {"DICOM": {"00291010": value}, "DICOMVRs": {"00291010": "LO"}}}}}}});
    assert_eq!(
        updated(&c, &ds, &n, "4", Some(&private("ONE")), None, true).await,
        "5"
    );
    let p_of =
        |d: &Value| d["Study"]["Series"][series]["Instances"][sop]["DICOM"]["00291010"].clone();
    assert_eq!(p_of(&doc(&c, &ds, &n, None).await), json!("ONE"));
    let upd = json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop: {"DICOM": {"00291010": "TWO"}}}}}}});
    assert_eq!(updated(&c, &ds, &n, "5", Some(&upd), None, true).await, "6");
    assert_eq!(p_of(&doc(&c, &ds, &n, None).await), json!("TWO"));
    let rem = json!({"SchemaVersion": 1.1, "Study": {"Series": {series: {"Instances": {sop: {"DICOM": {"00291010": null}}}}}}});
    assert_invalid(
        update(&c, &ds, &n, "6", None, Some(&rem), false).await,
        &["00291010"],
        &[sop],
        "removing a private element without force",
    );
    assert_eq!(updated(&c, &ds, &n, "6", None, Some(&rem), true).await, "7");
    let d = doc(&c, &ds, &n, None).await;
    assert_eq!(p_of(&d), Value::Null);
    assert!(
        d["Study"]["Series"][series]["Instances"][sop]["DICOM"]
            .get("00291010")
            .is_none()
    );
    // StudyID with force on a non-primary image set; StudyInstanceUID never on a primary.
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyID": "77"}}});
    assert_eq!(updated(&c, &ds, &n, "7", Some(&upd), None, true).await, "8");
    assert_eq!(
        doc(&c, &ds, &n, None).await["Study"]["DICOM"]["StudyID"],
        "77"
    );
    let upd = json!({"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyInstanceUID": "1.2.826.0.1.3680043.10.543.9"}}});
    assert_invalid(
        update(&c, &ds, &p, "1", Some(&upd), None, true).await,
        &["StudyInstanceUID"],
        &["1.2.826.0.1.3680043.10.543.9"],
        "StudyInstanceUID of a primary image set with force",
    );
    let n_latest = "8";

    // CopyImageSet input errors.
    let sel = |s: &str, i: &str| {
        json!({"SchemaVersion": "1.1", "Study": {"Series": {s: {"Instances": {i: {}}}}}})
            .to_string()
    };
    type CopyCase<'a> = (&'a str, Option<String>, Option<(String, String)>);
    let copy_cases: Vec<CopyCase> = vec![
        (
            "malformed copiableAttributes",
            Some("{\"SchemaVersion\": ".into()),
            None,
        ),
        ("copiableAttributes not an object", Some("[]".into()), None),
        (
            "unknown series to copy",
            Some(sel("1.2.3.4.5.6.7", sop)),
            None,
        ),
        (
            "unknown instance to copy",
            Some(sel(series, "1.2.3.4.5.6.8")),
            None,
        ),
        ("copy to itself", None, Some((n.clone(), n_latest.into()))),
    ];
    for (what, attrs, dest) in copy_cases {
        let r = copy(
            &c,
            &ds,
            &n,
            n_latest,
            attrs.as_deref(),
            dest.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            false,
            false,
        )
        .await;
        let needles: &[&str] = if what.contains("copiableAttributes") {
            &["copiableAttributes"]
        } else {
            &[]
        };
        assert_invalid(r, needles, &["1.2.3.4.5.6.7", "1.2.3.4.5.6.8"], what);
    }

    // Unknown image sets and data stores.
    let nf = "ResourceNotFoundException";
    let other = random_id();
    assert_err(
        update(&c, &ds, &other, "1", Some(&good), None, false).await,
        nf,
        404,
        "update an unknown image set",
    );
    assert_err(
        update(&c, &random_id(), &n, n_latest, Some(&good), None, false).await,
        nf,
        404,
        "update in an unknown data store",
    );
    assert_err(
        copy(&c, &ds, &other, "1", None, None, false, false).await,
        nf,
        404,
        "copy an unknown image set",
    );
    assert_err(
        copy(
            &c,
            &ds,
            &n,
            n_latest,
            None,
            Some((&other, "1")),
            false,
            false,
        )
        .await,
        nf,
        404,
        "copy into an unknown image set",
    );
    assert_err(
        c.delete_image_set()
            .datastore_id(&ds)
            .image_set_id(&other)
            .send()
            .await,
        nf,
        404,
        "delete an unknown image set",
    );
    assert_err(
        c.delete_image_set()
            .datastore_id(random_id())
            .image_set_id(&p)
            .send()
            .await,
        nf,
        404,
        "delete in an unknown data store",
    );

    // Nothing above allocated a version.
    assert_eq!(versions(&c, &ds, &n).await.len(), 8);
    assert_eq!(versions(&c, &ds, &p).await.len(), 1);
    assert_eq!(
        get(&c, &ds, &p, None).await.image_set_state(),
        &ImageSetState::Active
    );
    srv.shutdown().await.unwrap();
}
