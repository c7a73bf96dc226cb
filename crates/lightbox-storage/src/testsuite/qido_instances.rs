//! Conformance of QIDO-RS instance searches (DICOMweb) and the index behind them: instances of
//! live primary image sets only, written with every version's content in the same transaction
//! (replaced by a new version, kept by a failed one, gone with a deleted image set), each scope's
//! order (InstanceNumber with absent numbers last, ties by SOPInstanceUID then image set; a
//! study's most recently updated series first), offset paging, the instance attributes and the
//! study / series attributes QIDO-RS returns and matches, and the start-up backfill of image sets
//! written before the index existed (compare-and-set on the version and document). Panics on any
//! deviation.

use std::collections::{BTreeSet, HashMap};

use lightbox_domain::{
    DatastoreId, ImageSet, ImageSetId, ImageSetState, ImageSetWorkflowStatus, Millis,
    QidoAttributes, QidoIndex, QidoInstance,
};

use super::changes::{job, lock};
use super::imports::{active_datastore, new_set};
use super::qido::{one, q};
use crate::{
    BeginChangeOutcome, BeginVersionOutcome, Catalog, ChangeEnd, ChangeLock, CreateImageSetOutcome,
    DicomAttribute, DicomInstance, DicomMatch, DicomQuery, ImageSetChange, ImageSetContent,
    InstanceScope, NewImageSet, NewLockedImageSet, UnindexedImageSet, VersionCompletion,
};

pub async fn run(c: &dyn Catalog) {
    let f = fixture(c).await;
    records(c, &f).await;
    order(c, &f).await;
    paging(c, &f).await;
    instance_matching(c, &f).await;
    study_and_series_attributes(c, &f).await;
    versions(c).await;
    many_and_moved(c).await;
    index_compare_and_set(c).await;
}

const S: &str = "1.2.840.10.1";
const S1: &str = "1.2.840.10.1.1";
const S2: &str = "1.2.840.10.1.2";
const T: &str = "1.2.840.10.2";
const T1: &str = "1.2.840.10.2.1";
const T2: &str = "1.2.840.10.2.2";
const T9: &str = "1.2.840.10.2.9";
const E: &str = "1.2.840.10.3";
const E1: &str = "1.2.840.10.3.1";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";

fn attrs(
    referring: Option<&str>,
    description: Option<&str>,
    date: Option<&str>,
    time: Option<&str>,
) -> QidoAttributes {
    QidoAttributes {
        referring_physician_name: referring.map(Into::into),
        series_description: description.map(Into::into),
        series_date: date.map(Into::into),
        series_time: time.map(Into::into),
    }
}

fn instance(series: &str, sop: &str, class: Option<&str>, number: Option<i64>) -> QidoInstance {
    QidoInstance {
        series_instance_uid: series.into(),
        sop_instance_uid: sop.into(),
        sop_class_uid: class.map(Into::into),
        instance_number: number,
        rows: Some(512),
        columns: Some(256),
        bits_allocated: Some(16),
        number_of_frames: Some(1),
    }
}

fn index(attributes: QidoAttributes, instances: Vec<QidoInstance>) -> QidoIndex {
    QidoIndex {
        attributes,
        instances,
    }
}

/// A new image set updated at `updated` whose content has `qido` as its QIDO-RS index.
#[allow(clippy::too_many_arguments)]
fn image_set(
    ds: &DatastoreId,
    primary: bool,
    study: &str,
    series: &str,
    key: &str,
    updated: i64,
    number: Option<i64>,
    qido: QidoIndex,
) -> NewImageSet {
    let mut new = new_set(ds, primary, study, series, key);
    new.image_set.created_at = Millis(updated);
    new.image_set.updated_at = Millis(updated);
    new.image_set.last_accessed_at = Millis(updated);
    new.frames.clear();
    new.content.instance_count = qido.instances.len() as i64;
    new.content.tags.series_number = number;
    new.content.qido = qido;
    new
}

/// `content` as a later version: another document and index.
fn next_content(content: &ImageSetContent, key: &str, qido: QidoIndex) -> ImageSetContent {
    ImageSetContent {
        metadata_key: key.into(),
        instance_count: qido.instances.len() as i64,
        qido,
        ..content.clone()
    }
}

fn change(ds: &DatastoreId, locks: Vec<ChangeLock>, name: &str, now: i64) -> ImageSetChange {
    ImageSetChange {
        datastore_id: ds.clone(),
        locks,
        create: None,
        job: job(&format!("qido-instances-{name}")),
        now: Millis(now),
    }
}

/// Locks an ACTIVE image set at version `expected` for deletion (a live LOCKED image set).
async fn begin_delete(c: &dyn Catalog, ds: &DatastoreId, id: &ImageSetId, expected: i64) {
    let ch = change(
        ds,
        vec![lock(id, expected, ImageSetWorkflowStatus::Deleting, false)],
        &format!("delete-{id}"),
        900,
    );
    assert!(matches!(
        c.begin_image_set_change(&ch).await.unwrap(),
        BeginChangeOutcome::Begun(_)
    ));
}

async fn delete(c: &dyn Catalog, ds: &DatastoreId, id: &ImageSetId, expected: i64) {
    begin_delete(c, ds, id, expected).await;
    assert!(
        c.finish_delete_image_set(ds, id, "qido-instances-gc", Millis(900))
            .await
            .unwrap()
    );
}

/// Runs a change of one image set from `expected` to `expected + 1` ending with `completion`.
async fn change_version(
    c: &dyn Catalog,
    ds: &DatastoreId,
    id: &ImageSetId,
    expected: i64,
    completion: VersionCompletion,
    now: i64,
) {
    let ch = change(
        ds,
        vec![lock(id, expected, ImageSetWorkflowStatus::Updating, true)],
        &format!("update-{id}-{expected}"),
        now,
    );
    assert!(matches!(
        c.begin_image_set_change(&ch).await.unwrap(),
        BeginChangeOutcome::Begun(_)
    ));
    let end = ChangeEnd {
        versions: vec![(id.clone(), expected + 1, completion)],
        unlock: vec![],
        now: Millis(now),
    };
    assert!(c.finish_image_set_change(ds, &end).await.unwrap());
}

struct Fixture {
    ds: DatastoreId,
    /// Image sets by name ("x", "y", ...).
    sets: HashMap<&'static str, NewImageSet>,
    /// Instance labels ("x1" = the first instance of "x") by image set and SOPInstanceUID.
    labels: HashMap<(ImageSetId, String), String>,
}

impl Fixture {
    fn id(&self, name: &str) -> &ImageSetId {
        &self.sets[name].image_set.id
    }

    /// The labels of instances that share a number and a SOPInstanceUID, in image set order.
    fn by_id(&self, a: &'static str, b: &'static str) -> [&'static str; 2] {
        let set = |l: &str| self.id(&l[..1]).as_str().to_owned();
        if set(a) < set(b) { [a, b] } else { [b, a] }
    }
}

fn label(labels: &HashMap<(ImageSetId, String), String>, i: &DicomInstance) -> String {
    labels
        .get(&(i.image_set_id.clone(), i.instance.sop_instance_uid.clone()))
        .cloned()
        .unwrap_or_else(|| format!("?{}/{}", i.image_set_id, i.instance.sop_instance_uid))
}

async fn found(
    c: &dyn Catalog,
    f: &Fixture,
    scope: InstanceScope<'_>,
    query: &DicomQuery,
    offset: u64,
    limit: u32,
) -> Vec<String> {
    c.search_dicom_instances(&f.ds, scope, query, offset, limit)
        .await
        .unwrap()
        .iter()
        .map(|i| label(&f.labels, i))
        .collect()
}

/// Study S: primary series S1 (x, CT, #1, updated 100; InstanceNumbers 2, 1, absent, 2 again,
/// 10) and S2 (y, MR, #2, updated 300; 1 and absent), and a later non-primary image set of S2
/// (z) with y's first SOPInstanceUID. Study T: primary series T1 (w, #1) and T2 (v, #2) both
/// updated at 200, sharing a SOPInstanceUID at InstanceNumber 1, and a deleted series T9 (d).
/// Study E: one primary series without instances or attributes (e, updated 50). Another data
/// store holds a copy of x.
async fn fixture(c: &dyn Catalog) -> Fixture {
    let ds = active_datastore(c, "qido-instances").await;
    let other = active_datastore(c, "qido-instances-other").await;
    let x_attrs = attrs(
        Some("Ref^Alice"),
        Some("Axial"),
        Some("20200101"),
        Some("101010"),
    );
    let y_attrs = attrs(Some("Ref^Bob"), Some("Sagittal T1"), Some("20200202"), None);
    let t_attrs = attrs(
        Some("Ref^Carol"),
        Some("Scout"),
        Some("20210303"),
        Some("0800"),
    );
    type Spec = (
        &'static str,
        bool,
        &'static str,
        &'static str,
        i64,
        Option<i64>,
        &'static str,
        QidoAttributes,
        Vec<(&'static str, Option<&'static str>, Option<i64>)>,
    );
    let specs: Vec<Spec> = vec![
        (
            "x",
            true,
            S,
            S1,
            100,
            Some(1),
            "CT",
            x_attrs,
            vec![
                ("1.2.840.10.1.1.1", Some(CT), Some(2)),
                ("1.2.840.10.1.1.2", Some(CT), Some(1)),
                ("1.2.840.10.1.1.3", Some(CT), None),
                ("1.2.840.10.1.1.0", Some(CT), Some(2)),
                ("1.2.840.10.1.1.10", Some(CT), Some(10)),
            ],
        ),
        (
            "y",
            true,
            S,
            S2,
            300,
            Some(2),
            "MR",
            y_attrs,
            vec![
                ("1.2.840.10.1.2.1", Some(MR), Some(1)),
                ("1.2.840.10.1.2.2", None, None),
            ],
        ),
        (
            "z",
            false,
            S,
            S2,
            500,
            Some(2),
            "MR",
            attrs(Some("Ref^Zed"), Some("Sagittal T1"), None, None),
            vec![
                ("1.2.840.10.1.2.1", Some(MR), Some(1)),
                ("1.2.840.10.1.2.5", Some(MR), Some(5)),
            ],
        ),
        (
            "w",
            true,
            T,
            T1,
            200,
            Some(1),
            "CT",
            t_attrs.clone(),
            vec![
                ("1.2.840.10.2.1.1", Some(CT), Some(1)),
                ("1.2.840.10.2.1.3", Some(CT), Some(3)),
            ],
        ),
        (
            "v",
            true,
            T,
            T2,
            200,
            Some(2),
            "CT",
            t_attrs.clone(),
            vec![
                ("1.2.840.10.2.1.1", Some(CT), Some(1)),
                ("1.2.840.10.2.2.2", Some(CT), Some(2)),
            ],
        ),
        (
            "d",
            true,
            T,
            T9,
            150,
            Some(9),
            "CT",
            t_attrs,
            vec![("1.2.840.10.2.9.1", Some(CT), Some(1))],
        ),
        (
            "e",
            true,
            E,
            E1,
            50,
            None,
            "OT",
            QidoAttributes::default(),
            vec![],
        ),
    ];
    let mut sets = HashMap::new();
    let mut labels = HashMap::new();
    for (name, primary, study, series, updated, number, modality, attributes, instances) in specs {
        let qido = index(
            attributes,
            instances
                .iter()
                .map(|(sop, class, n)| instance(series, sop, *class, *n))
                .collect(),
        );
        let mut new = image_set(
            &ds,
            primary,
            study,
            series,
            &format!("qi-{name}"),
            updated,
            number,
            qido,
        );
        let t = &mut new.content.tags;
        t.series_modality = Some(modality.into());
        let (patient, patient_name) = if study == T {
            ("PID-T", "Smith^Anna")
        } else {
            ("PID-S", "Doe^John")
        };
        t.patient_id = Some(patient.into());
        t.patient_name = Some(patient_name.into());
        t.study_description = Some(format!("study {study}"));
        for (n, (sop, _, _)) in instances.iter().enumerate() {
            labels.insert(
                (new.image_set.id.clone(), (*sop).to_owned()),
                format!("{name}{}", n + 1),
            );
        }
        assert_eq!(
            c.create_image_set(&new).await.unwrap(),
            CreateImageSetOutcome::Created
        );
        if name == "x" {
            let mut copy = new.clone();
            copy.image_set.datastore_id = other.clone();
            copy.image_set.id = ImageSetId::generate();
            c.create_image_set(&copy).await.unwrap();
        }
        sets.insert(name, new);
    }
    let f = Fixture { ds, sets, labels };
    delete(c, &f.ds, f.id("d"), 1).await;
    // A second primary image set of S1 is refused, and none of its instances is written.
    let dup = image_set(
        &f.ds,
        true,
        S,
        S1,
        "qi-dup",
        700,
        Some(1),
        index(
            QidoAttributes::default(),
            vec![instance(S1, "1.2.840.10.1.1.99", Some(CT), Some(1))],
        ),
    );
    assert!(matches!(
        c.create_image_set(&dup).await.unwrap(),
        CreateImageSetOutcome::PrimaryExists { .. }
    ));
    f
}

/// What one instance record holds: the image set's own tags, attributes, document and time.
async fn records(c: &dyn Catalog, f: &Fixture) {
    let x = &f.sets["x"];
    let got = c
        .search_dicom_instances(
            &f.ds,
            InstanceScope::Series(S, S1),
            &one(
                DicomAttribute::SopInstanceUid,
                DicomMatch::Exact("1.2.840.10.1.1.1".into()),
            ),
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let i = &got[0];
    assert_eq!(&i.image_set_id, f.id("x"));
    assert_eq!(i.metadata_key.as_deref(), Some("qi-x"));
    assert_eq!(i.tags, x.content.tags);
    assert_eq!(i.attributes, x.content.qido.attributes);
    assert_eq!(i.instance, x.content.qido.instances[0]);
    assert_eq!(i.updated_at, Millis(100));
    // Absent values come back absent.
    let got = c
        .search_dicom_instances(
            &f.ds,
            InstanceScope::Series(S, S2),
            &DicomQuery::default(),
            0,
            10,
        )
        .await
        .unwrap();
    let y2 = got
        .iter()
        .find(|i| i.instance.sop_instance_uid == "1.2.840.10.1.2.2")
        .expect("y2 listed");
    assert_eq!(y2.instance, f.sets["y"].content.qido.instances[1]);
    assert_eq!(y2.instance.sop_class_uid, None);
    assert_eq!(y2.instance.instance_number, None);
    assert_eq!(y2.metadata_key.as_deref(), Some("qi-y"));
    assert_eq!(y2.attributes.series_time, None);
}

async fn order(c: &dyn Catalog, f: &Fixture) {
    let all = DicomQuery::default();
    let [t1, t2] = f.by_id("w1", "v1");
    // Whole data store: InstanceNumber (as a number), absent last, ties by SOPInstanceUID then
    // image set; the non-primary z, the deleted d and the other data store's copy never appear.
    assert_eq!(
        found(c, f, InstanceScope::Datastore, &all, 0, 1000).await,
        ["x2", "y1", t1, t2, "x4", "x1", "v2", "w2", "x5", "x3", "y2"]
    );
    // A study: its most recently updated series first, then by InstanceNumber.
    assert_eq!(
        found(c, f, InstanceScope::Study(S), &all, 0, 1000).await,
        ["y1", "y2", "x2", "x4", "x1", "x5", "x3"]
    );
    // Series updated at the same time: series by series (by image set id), each by
    // InstanceNumber.
    let sibling = |t: &'static str| if t == "w1" { "w2" } else { "v2" };
    assert_eq!(
        found(c, f, InstanceScope::Study(T), &all, 0, 1000).await,
        [t1, sibling(t1), t2, sibling(t2)]
    );
    assert_eq!(
        found(c, f, InstanceScope::Series(S, S1), &all, 0, 1000).await,
        ["x2", "x4", "x1", "x5", "x3"]
    );
    assert_eq!(
        found(c, f, InstanceScope::Series(S, S2), &all, 0, 1000).await,
        ["y1", "y2"]
    );
    assert_eq!(
        found(c, f, InstanceScope::Series(T, T2), &all, 0, 1000).await,
        ["v1", "v2"]
    );
    for scope in [
        InstanceScope::Study(E),
        InstanceScope::Series(E, E1),
        InstanceScope::Series(T, T9),
        InstanceScope::Series(S, T1),
        InstanceScope::Series(T, S1),
        InstanceScope::Study("1.2.3.404"),
    ] {
        assert_eq!(
            found(c, f, scope, &all, 0, 1000).await,
            Vec::<String>::new(),
            "{scope:?}"
        );
    }
}

async fn paging(c: &dyn Catalog, f: &Fixture) {
    let all = DicomQuery::default();
    let [t1, t2] = f.by_id("w1", "v1");
    let everything = ["x2", "y1", t1, t2, "x4", "x1", "v2", "w2", "x5", "x3", "y2"];
    for (offset, limit) in [
        (0, 3),
        (3, 4),
        (7, 100),
        (10, 5),
        (11, 5),
        (1, 1),
        (u64::MAX, 5),
    ] {
        let want: Vec<&str> = everything
            .iter()
            .copied()
            .skip(offset.min(100) as usize)
            .take(limit as usize)
            .collect();
        assert_eq!(
            found(c, f, InstanceScope::Datastore, &all, offset, limit).await,
            want,
            "offset {offset} limit {limit}"
        );
    }
    assert_eq!(
        found(c, f, InstanceScope::Study(S), &all, 1, 3).await,
        ["y2", "x2", "x4"]
    );
    assert_eq!(
        found(c, f, InstanceScope::Series(S, S1), &all, 4, 10).await,
        ["x3"]
    );
    assert_eq!(
        found(c, f, InstanceScope::Series(S, S1), &all, 5, 10).await,
        Vec::<String>::new()
    );
}

async fn instance_matching(c: &dyn Catalog, f: &Fixture) {
    use DicomAttribute as At;
    use DicomMatch as M;
    let [t1, t2] = f.by_id("w1", "v1");
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let x_all = s(&["x2", "x4", "x1", "x5", "x3"]);
    let t_all = s(&[t1, t2, "v2", "w2"]);
    let cases: Vec<(InstanceScope<'_>, DicomQuery, Vec<String>)> = vec![
        // SOPInstanceUID: exact, lists, wildcards; z's own instance is not found.
        (
            InstanceScope::Datastore,
            one(At::SopInstanceUid, M::Exact("1.2.840.10.1.1.1".into())),
            s(&["x1"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SopInstanceUid, M::Exact("1.2.840.10.2.1.1".into())),
            s(&[t1, t2]),
        ),
        (
            InstanceScope::Datastore,
            one(
                At::SopInstanceUid,
                M::AnyOf(vec![
                    "1.2.840.10.1.2.2".into(),
                    "1.2.840.10.1.1.2".into(),
                    "1.2.840.10.2.9.1".into(),
                    "9.9".into(),
                ]),
            ),
            s(&["x2", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SopInstanceUid, M::AnyOf(vec![])),
            vec![],
        ),
        (
            InstanceScope::Datastore,
            one(At::SopInstanceUid, M::Wildcard("1.2.840.10.1.1.?".into())),
            s(&["x2", "x4", "x1", "x3"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SopInstanceUid, M::Exact("1.2.840.10.1.2.5".into())),
            vec![],
        ),
        (
            InstanceScope::Datastore,
            one(At::SopInstanceUid, M::Exact("1.2.840.10.1.1.99".into())),
            vec![],
        ),
        // SOPClassUID; an absent class matches no value.
        (
            InstanceScope::Datastore,
            one(At::SopClassUid, M::Exact(MR.into())),
            s(&["y1"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SopClassUid, M::Wildcard("*.4".into())),
            s(&["y1"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SopClassUid, M::AnyOf(vec![CT.into(), MR.into()])),
            s(&["x2", "y1", t1, t2, "x4", "x1", "v2", "w2", "x5", "x3"]),
        ),
        // InstanceNumber is an integer.
        (
            InstanceScope::Datastore,
            one(At::InstanceNumber, M::Exact("2".into())),
            s(&["x4", "x1", "v2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::InstanceNumber, M::Exact("10".into())),
            s(&["x5"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::InstanceNumber, M::Exact("x".into())),
            vec![],
        ),
        (
            InstanceScope::Datastore,
            one(
                At::InstanceNumber,
                M::AnyOf(vec!["3".into(), "10".into(), "y".into()]),
            ),
            s(&["w2", "x5"]),
        ),
        (
            InstanceScope::Study(S),
            one(At::InstanceNumber, M::Exact("1".into())),
            s(&["y1", "x2"]),
        ),
        (
            InstanceScope::Series(T, T2),
            one(At::SopInstanceUid, M::Exact("1.2.840.10.2.1.1".into())),
            s(&["v1"]),
        ),
        // Study attributes, on each image set's own values.
        (
            InstanceScope::Datastore,
            one(At::StudyInstanceUid, M::Exact(T.into())),
            t_all.clone(),
        ),
        (
            InstanceScope::Datastore,
            one(At::PatientName, M::Fuzzy("ann".into())),
            t_all.clone(),
        ),
        (
            InstanceScope::Datastore,
            one(At::PatientId, M::Exact("PID-S".into())),
            s(&["x2", "y1", "x4", "x1", "x5", "x3", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::ReferringPhysicianName, M::Exact("Ref^Alice".into())),
            x_all.clone(),
        ),
        (
            InstanceScope::Study(S),
            one(At::ReferringPhysicianName, M::Fuzzy("bob".into())),
            s(&["y1", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::ReferringPhysicianName, M::Wildcard("Ref^?a*".into())),
            t_all.clone(),
        ),
        (
            InstanceScope::Datastore,
            one(At::ReferringPhysicianName, M::Exact("Ref^Zed".into())),
            vec![],
        ),
        (
            InstanceScope::Datastore,
            one(At::ModalitiesInStudy, M::Exact("MR".into())),
            s(&["x2", "y1", "x4", "x1", "x5", "x3", "y2"]),
        ),
        // Series attributes.
        (
            InstanceScope::Datastore,
            one(At::Modality, M::Exact("MR".into())),
            s(&["y1", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SeriesInstanceUid, M::Exact(S2.into())),
            s(&["y1", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SeriesNumber, M::Exact("2".into())),
            s(&["y1", "v1", "v2", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SeriesDescription, M::Wildcard("*T1".into())),
            s(&["y1", "y2"]),
        ),
        (
            InstanceScope::Study(S),
            one(At::SeriesDescription, M::Exact("Axial".into())),
            x_all.clone(),
        ),
        (
            InstanceScope::Datastore,
            one(
                At::SeriesDate,
                M::Range(Some("20200102".into()), Some("20201231".into())),
            ),
            s(&["y1", "y2"]),
        ),
        (
            InstanceScope::Datastore,
            one(At::SeriesDate, M::Range(None, Some("20200101".into()))),
            x_all.clone(),
        ),
        (
            InstanceScope::Datastore,
            one(At::SeriesDate, M::Exact("20210303".into())),
            t_all.clone(),
        ),
        // Every condition holds.
        (
            InstanceScope::Datastore,
            q(vec![
                (At::Modality, M::Exact("CT".into())),
                (At::InstanceNumber, M::Exact("1".into())),
            ]),
            s(&["x2", t1, t2]),
        ),
        (
            InstanceScope::Datastore,
            q(vec![
                (At::StudyInstanceUid, M::Exact(S.into())),
                (At::SopClassUid, M::Exact(CT.into())),
                (At::InstanceNumber, M::AnyOf(vec!["1".into(), "2".into()])),
            ]),
            s(&["x2", "x4", "x1"]),
        ),
        (
            InstanceScope::Series(S, S1),
            q(vec![
                (At::ReferringPhysicianName, M::Fuzzy("ali".into())),
                (At::SopInstanceUid, M::Wildcard("*.1?".into())),
            ]),
            s(&["x5"]),
        ),
    ];
    for (scope, query, want) in cases {
        assert_eq!(
            found(c, f, scope, &query, 0, 1000).await,
            want,
            "{scope:?} {query:?}"
        );
    }
}

/// Studies return (and match ReferringPhysicianName on) their most recently updated primary
/// image set's attributes; series their own.
async fn study_and_series_attributes(c: &dyn Catalog, f: &Fixture) {
    use DicomAttribute as At;
    use DicomMatch as M;
    let attributes_of = |name: &str| f.sets[name].content.qido.attributes.clone();
    let all = c
        .search_dicom_studies(&f.ds, &DicomQuery::default(), 0, 100)
        .await
        .unwrap();
    let got: Vec<(Option<String>, QidoAttributes)> = all
        .into_iter()
        .map(|s| (s.tags.study_instance_uid, s.attributes))
        .collect();
    assert_eq!(
        got,
        [
            (Some(S.to_owned()), attributes_of("y")),
            (Some(T.to_owned()), attributes_of("w")),
            (Some(E.to_owned()), QidoAttributes::default()),
        ]
    );
    for (query, want) in [
        (
            one(At::ReferringPhysicianName, M::Exact("Ref^Bob".into())),
            vec![S],
        ),
        (
            one(At::ReferringPhysicianName, M::Exact("Ref^Alice".into())),
            vec![],
        ),
        (
            one(At::ReferringPhysicianName, M::Fuzzy("carol".into())),
            vec![T],
        ),
        (
            one(At::ReferringPhysicianName, M::Fuzzy("ref".into())),
            vec![S, T],
        ),
        (
            one(At::ReferringPhysicianName, M::Wildcard("Ref^*".into())),
            vec![S, T],
        ),
        (
            one(At::ReferringPhysicianName, M::Wildcard("ref^*".into())),
            vec![],
        ),
        (
            one(
                At::ReferringPhysicianName,
                M::AnyOf(vec!["Ref^Alice".into(), "Ref^Carol".into()]),
            ),
            vec![T],
        ),
    ] {
        let got: Vec<String> = c
            .search_dicom_studies(&f.ds, &query, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.tags.study_instance_uid.unwrap())
            .collect();
        assert_eq!(got, want, "{query:?}");
    }

    let series = c
        .search_dicom_series(&f.ds, None, &DicomQuery::default(), 0, 100)
        .await
        .unwrap();
    let got: Vec<(ImageSetId, QidoAttributes)> = series
        .into_iter()
        .map(|s| (s.image_set_id, s.attributes))
        .collect();
    let want: Vec<(ImageSetId, QidoAttributes)> = ["x", "w", "y", "v", "e"]
        .into_iter()
        .map(|n| (f.id(n).clone(), attributes_of(n)))
        .collect();
    assert_eq!(got, want);
    for (study, query, want) in [
        (
            None,
            one(At::ReferringPhysicianName, M::Exact("Ref^Alice".into())),
            vec!["x"],
        ),
        (
            None,
            one(At::ReferringPhysicianName, M::Fuzzy("carol".into())),
            vec!["w", "v"],
        ),
        (
            None,
            one(At::SeriesDescription, M::Exact("Sagittal T1".into())),
            vec!["y"],
        ),
        (
            None,
            one(At::SeriesDescription, M::Wildcard("*a*".into())),
            vec!["x", "y"],
        ),
        (
            None,
            one(At::SeriesDescription, M::Wildcard("axial".into())),
            vec![],
        ),
        (
            None,
            one(At::SeriesDate, M::Range(Some("20200201".into()), None)),
            vec!["w", "y", "v"],
        ),
        (
            None,
            one(At::SeriesDate, M::Exact("20200101".into())),
            vec!["x"],
        ),
        (
            Some(S),
            one(
                At::SeriesDate,
                M::AnyOf(vec!["20200202".into(), "20210303".into()]),
            ),
            vec!["y"],
        ),
        (
            Some(T),
            one(At::SeriesDescription, M::Exact("Scout".into())),
            vec!["w", "v"],
        ),
    ] {
        let got: Vec<ImageSetId> = c
            .search_dicom_series(&f.ds, study, &query, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.image_set_id)
            .collect();
        let want: Vec<ImageSetId> = want.into_iter().map(|n| f.id(n).clone()).collect();
        assert_eq!(got, want, "{study:?} {query:?}");
    }
}

/// `(SOPInstanceUID, InstanceNumber)` of a series' instances, the document they come from, and
/// the attributes they carry.
async fn series_state(
    c: &dyn Catalog,
    ds: &DatastoreId,
    study: &str,
    series: &str,
) -> (
    Vec<(String, Option<i64>)>,
    BTreeSet<Option<String>>,
    BTreeSet<Option<String>>,
) {
    let got = c
        .search_dicom_instances(
            ds,
            InstanceScope::Series(study, series),
            &DicomQuery::default(),
            0,
            1000,
        )
        .await
        .unwrap();
    (
        got.iter()
            .map(|i| {
                (
                    i.instance.sop_instance_uid.clone(),
                    i.instance.instance_number,
                )
            })
            .collect(),
        got.iter().map(|i| i.metadata_key.clone()).collect(),
        got.iter()
            .map(|i| i.attributes.series_description.clone())
            .collect(),
    )
}

fn listed(v: &[(&str, Option<i64>)]) -> Vec<(String, Option<i64>)> {
    v.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

fn one_of(v: Option<&str>) -> BTreeSet<Option<String>> {
    [v.map(str::to_owned)].into_iter().collect()
}

async fn series_attributes(c: &dyn Catalog, ds: &DatastoreId, study: &str) -> Vec<QidoAttributes> {
    c.search_dicom_series(ds, Some(study), &DicomQuery::default(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.attributes)
        .collect()
}

const R: &str = "1.2.840.11.1";
const R1: &str = "1.2.840.11.1.1";
const R2: &str = "1.2.840.11.1.2";

fn r_index(description: &str, instances: &[(&str, Option<i64>)]) -> QidoIndex {
    index(
        attrs(Some("Ref^R"), Some(description), Some("20220101"), None),
        instances
            .iter()
            .map(|(sop, n)| instance(R1, sop, Some(CT), *n))
            .collect(),
    )
}

/// Every write of a version's content replaces the instances and attributes; a failed version,
/// a refused completion and a lock keep them; a deletion removes them.
async fn versions(c: &dyn Catalog) {
    let ds = active_datastore(c, "qido-instances-versions").await;
    let new = image_set(
        &ds,
        true,
        R,
        R1,
        "r-doc-1",
        10,
        Some(1),
        r_index(
            "v1",
            &[("1.9.1", Some(1)), ("1.9.2", Some(2)), ("1.9.3", Some(3))],
        ),
    );
    let id = new.image_set.id.clone();
    c.create_image_set(&new).await.unwrap();
    let v1 = listed(&[("1.9.1", Some(1)), ("1.9.2", Some(2)), ("1.9.3", Some(3))]);
    assert_eq!(
        series_state(c, &ds, R, R1).await,
        (v1.clone(), one_of(Some("r-doc-1")), one_of(Some("v1")))
    );

    // While version 2 is written (LOCKED) the image set shows version 1's instances.
    assert_eq!(
        c.begin_image_set_version(
            &ds,
            &id,
            1,
            ImageSetWorkflowStatus::Importing,
            "qido-instances-r2",
            Millis(20)
        )
        .await
        .unwrap(),
        BeginVersionOutcome::Begun(2)
    );
    assert_eq!(
        series_state(c, &ds, R, R1).await,
        (v1.clone(), one_of(Some("r-doc-1")), one_of(Some("v1")))
    );
    // Version 2 removes 1.9.2, renumbers 1.9.3 and adds 1.9.4.
    let v2_index = r_index(
        "v2",
        &[("1.9.1", Some(1)), ("1.9.3", Some(2)), ("1.9.4", Some(3))],
    );
    assert!(
        c.complete_image_set_version(
            &ds,
            &id,
            2,
            &VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Imported,
                content: Box::new(next_content(&new.content, "r-doc-2", v2_index.clone())),
                added_frames: vec![],
                removed_frame_ids: vec![],
            },
            Millis(30),
        )
        .await
        .unwrap()
    );
    let v2 = listed(&[("1.9.1", Some(1)), ("1.9.3", Some(2)), ("1.9.4", Some(3))]);
    assert_eq!(
        series_state(c, &ds, R, R1).await,
        (v2.clone(), one_of(Some("r-doc-2")), one_of(Some("v2")))
    );
    let got = c
        .search_dicom_instances(
            &ds,
            InstanceScope::Datastore,
            &DicomQuery::default(),
            0,
            100,
        )
        .await
        .unwrap();
    assert!(got.iter().all(|i| i.updated_at == Millis(30)), "{got:?}");
    assert_eq!(
        series_attributes(c, &ds, R).await,
        std::slice::from_ref(&v2_index.attributes)
    );
    for (sop, want) in [("1.9.2", 0), ("1.9.4", 1)] {
        let n = c
            .search_dicom_instances(
                &ds,
                InstanceScope::Datastore,
                &one(
                    DicomAttribute::SopInstanceUid,
                    DicomMatch::Exact(sop.into()),
                ),
                0,
                10,
            )
            .await
            .unwrap()
            .len();
        assert_eq!(n, want, "{sop}");
    }
    let n = c
        .search_dicom_instances(
            &ds,
            InstanceScope::Datastore,
            &one(
                DicomAttribute::SeriesDescription,
                DicomMatch::Exact("v1".into()),
            ),
            0,
            10,
        )
        .await
        .unwrap()
        .len();
    assert_eq!(n, 0, "version 1's attributes are gone");

    // Version 3 (a change): one instance left and one without a number.
    let v3_index = r_index("v3", &[("1.9.4", Some(1)), ("1.9.5", None)]);
    change_version(
        c,
        &ds,
        &id,
        2,
        VersionCompletion::Succeeded {
            status: ImageSetWorkflowStatus::Updated,
            content: Box::new(next_content(&new.content, "r-doc-3", v3_index.clone())),
            added_frames: vec![],
            removed_frame_ids: vec![],
        },
        40,
    )
    .await;
    let v3 = listed(&[("1.9.4", Some(1)), ("1.9.5", None)]);
    let v3_state = (v3, one_of(Some("r-doc-3")), one_of(Some("v3")));
    assert_eq!(series_state(c, &ds, R, R1).await, v3_state);
    assert_eq!(
        series_attributes(c, &ds, R).await,
        std::slice::from_ref(&v3_index.attributes)
    );

    // Failed versions (a change, then an import) keep version 3's instances and attributes.
    change_version(
        c,
        &ds,
        &id,
        3,
        VersionCompletion::Failed {
            status: ImageSetWorkflowStatus::UpdateFailed,
            message: "no".into(),
        },
        50,
    )
    .await;
    assert_eq!(series_state(c, &ds, R, R1).await, v3_state);
    c.begin_image_set_version(
        &ds,
        &id,
        4,
        ImageSetWorkflowStatus::Importing,
        "qido-instances-r5",
        Millis(60),
    )
    .await
    .unwrap();
    assert!(
        c.complete_image_set_version(
            &ds,
            &id,
            5,
            &VersionCompletion::Failed {
                status: ImageSetWorkflowStatus::ImportFailed,
                message: "no".into(),
            },
            Millis(60),
        )
        .await
        .unwrap()
    );
    assert_eq!(series_state(c, &ds, R, R1).await, v3_state);
    assert_eq!(series_attributes(c, &ds, R).await, [v3_index.attributes]);
    // A completion that does not apply (version 5 is not LOCKED) writes no instance either.
    let stray = VersionCompletion::Succeeded {
        status: ImageSetWorkflowStatus::Imported,
        content: Box::new(next_content(
            &new.content,
            "r-doc-x",
            r_index("x", &[("1.9.9", Some(1))]),
        )),
        added_frames: vec![],
        removed_frame_ids: vec![],
    };
    assert!(
        !c.complete_image_set_version(&ds, &id, 5, &stray, Millis(61))
            .await
            .unwrap()
    );
    let end = ChangeEnd {
        versions: vec![(id.clone(), 6, stray)],
        unlock: vec![],
        now: Millis(61),
    };
    assert!(!c.finish_image_set_change(&ds, &end).await.unwrap());
    assert_eq!(series_state(c, &ds, R, R1).await, v3_state);

    // A primary copy into a new series: nothing before its document, its instances after.
    let mut copy = image_set(
        &ds,
        true,
        R,
        R2,
        "k-doc-1",
        70,
        Some(2),
        QidoIndex::default(),
    );
    copy.image_set.state = ImageSetState::Locked;
    copy.image_set.workflow_status = ImageSetWorkflowStatus::Copying;
    let copy_id = copy.image_set.id.clone();
    let mut ch = change(
        &ds,
        vec![lock(
            &id,
            5,
            ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
            false,
        )],
        "copy",
        70,
    );
    ch.create = Some(NewLockedImageSet {
        image_set: copy.image_set.clone(),
        tags: copy.content.tags.clone(),
        grouping: copy.content.grouping.clone(),
        instance_count: 2,
    });
    assert!(matches!(
        c.begin_image_set_change(&ch).await.unwrap(),
        BeginChangeOutcome::Begun(_)
    ));
    assert_eq!(
        series_state(c, &ds, R, R2).await,
        (vec![], BTreeSet::new(), BTreeSet::new())
    );
    let k_index = index(
        attrs(Some("Ref^K"), Some("copy"), None, None),
        vec![
            instance(R2, "1.9.4", Some(CT), Some(2)),
            instance(R2, "1.9.6", Some(CT), Some(1)),
        ],
    );
    let end = ChangeEnd {
        versions: vec![(
            copy_id.clone(),
            1,
            VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Copied,
                content: Box::new(next_content(&copy.content, "k-doc-1", k_index)),
                added_frames: vec![],
                removed_frame_ids: vec![],
            },
        )],
        unlock: vec![(
            id.clone(),
            ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
            ImageSetWorkflowStatus::ImportFailed,
        )],
        now: Millis(80),
    };
    assert!(c.finish_image_set_change(&ds, &end).await.unwrap());
    assert_eq!(
        series_state(c, &ds, R, R2).await,
        (
            listed(&[("1.9.6", Some(1)), ("1.9.4", Some(2))]),
            one_of(Some("k-doc-1")),
            one_of(Some("copy"))
        )
    );
    assert_eq!(series_state(c, &ds, R, R1).await, v3_state);
    // The study: the copy (updated at 80) before the source (60).
    let study: Vec<(ImageSetId, String)> = c
        .search_dicom_instances(&ds, InstanceScope::Study(R), &DicomQuery::default(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.image_set_id, i.instance.sop_instance_uid))
        .collect();
    assert_eq!(
        study,
        [
            (copy_id.clone(), "1.9.6".to_owned()),
            (copy_id.clone(), "1.9.4".to_owned()),
            (id.clone(), "1.9.4".to_owned()),
            (id.clone(), "1.9.5".to_owned()),
        ]
    );

    // Deleting: still found while DELETING (live), gone once DELETED, in every scope.
    begin_delete(c, &ds, &id, 5).await;
    assert_eq!(series_state(c, &ds, R, R1).await, v3_state);
    assert!(
        c.finish_delete_image_set(&ds, &id, "qido-instances-gc", Millis(90))
            .await
            .unwrap()
    );
    assert_eq!(
        series_state(c, &ds, R, R1).await,
        (vec![], BTreeSet::new(), BTreeSet::new())
    );
    let left: Vec<ImageSetId> = c
        .search_dicom_instances(
            &ds,
            InstanceScope::Datastore,
            &DicomQuery::default(),
            0,
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.image_set_id)
        .collect();
    assert_eq!(left, [copy_id.clone(), copy_id.clone()]);
    let in_study: Vec<ImageSetId> = c
        .search_dicom_instances(&ds, InstanceScope::Study(R), &DicomQuery::default(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.image_set_id)
        .collect();
    assert_eq!(in_study, [copy_id.clone(), copy_id]);
    // The index of a deleted image set cannot be written again.
    let stale = UnindexedImageSet {
        datastore_id: ds.clone(),
        id: id.clone(),
        version: 5,
        metadata_key: "r-doc-3".into(),
    };
    assert!(
        !c.write_qido_index(&stale, &r_index("late", &[("1.9.7", Some(1))]))
            .await
            .unwrap()
    );
    assert_eq!(
        series_state(c, &ds, R, R1).await,
        (vec![], BTreeSet::new(), BTreeSet::new())
    );
    assert!(
        !c.unindexed_image_sets(1000)
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == id),
        "a deleted image set is not listed for indexing"
    );
}

const M: &str = "1.2.840.13.1";
const M1: &str = "1.2.840.13.1.1";
const M2: &str = "1.2.840.13.2";

/// Many instances (several write batches) by number, zero and negative numbers included; a new
/// version that moves the image set to another study takes its instances along.
async fn many_and_moved(c: &dyn Catalog) {
    let ds = active_datastore(c, "qido-instances-many").await;
    let n: i64 = 1000;
    // Instance k is numbered n - 2 - k: 998 down to -1.
    let qido = index(
        QidoAttributes::default(),
        (0..n)
            .map(|k| instance(M1, &format!("1.5.{k}"), Some(CT), Some(n - 2 - k)))
            .collect(),
    );
    let new = image_set(&ds, true, M, M1, "m-doc-1", 10, Some(1), qido);
    let id = new.image_set.id.clone();
    c.create_image_set(&new).await.unwrap();
    let sops = |v: Vec<DicomInstance>| -> Vec<String> {
        v.into_iter().map(|i| i.instance.sop_instance_uid).collect()
    };
    let all = DicomQuery::default();
    let want: Vec<String> = (0..n).rev().map(|k| format!("1.5.{k}")).collect();
    for scope in [
        InstanceScope::Series(M, M1),
        InstanceScope::Study(M),
        InstanceScope::Datastore,
    ] {
        let got = sops(
            c.search_dicom_instances(&ds, scope, &all, 0, 5000)
                .await
                .unwrap(),
        );
        assert_eq!(got, want, "{scope:?}");
    }
    assert_eq!(
        sops(
            c.search_dicom_instances(&ds, InstanceScope::Series(M, M1), &all, 500, 3)
                .await
                .unwrap()
        ),
        ["1.5.499", "1.5.498", "1.5.497"]
    );
    for (number, sop) in [("-1", "1.5.999"), ("0", "1.5.998"), ("998", "1.5.0")] {
        let got = sops(
            c.search_dicom_instances(
                &ds,
                InstanceScope::Datastore,
                &one(
                    DicomAttribute::InstanceNumber,
                    DicomMatch::Exact(number.into()),
                ),
                0,
                10,
            )
            .await
            .unwrap(),
        );
        assert_eq!(got, [sop], "InstanceNumber {number}");
    }

    // Version 2 belongs to study M2: the instances move with it.
    let mut content = next_content(
        &new.content,
        "m-doc-2",
        index(
            QidoAttributes::default(),
            vec![
                instance(M1, "1.5.2", Some(CT), Some(2)),
                instance(M1, "1.5.1", Some(CT), Some(1)),
            ],
        ),
    );
    content.tags.study_instance_uid = Some(M2.into());
    change_version(
        c,
        &ds,
        &id,
        1,
        VersionCompletion::Succeeded {
            status: ImageSetWorkflowStatus::Updated,
            content: Box::new(content),
            added_frames: vec![],
            removed_frame_ids: vec![],
        },
        20,
    )
    .await;
    for scope in [InstanceScope::Series(M, M1), InstanceScope::Study(M)] {
        assert!(
            c.search_dicom_instances(&ds, scope, &all, 0, 5000)
                .await
                .unwrap()
                .is_empty(),
            "{scope:?}"
        );
    }
    for scope in [
        InstanceScope::Series(M2, M1),
        InstanceScope::Study(M2),
        InstanceScope::Datastore,
    ] {
        let got = c
            .search_dicom_instances(&ds, scope, &all, 0, 5000)
            .await
            .unwrap();
        assert!(
            got.iter()
                .all(|i| i.tags.study_instance_uid.as_deref() == Some(M2)),
            "{got:?}"
        );
        assert_eq!(sops(got), ["1.5.1", "1.5.2"], "{scope:?}");
    }
    let in_m = c
        .search_dicom_instances(
            &ds,
            InstanceScope::Datastore,
            &one(
                DicomAttribute::StudyInstanceUid,
                DicomMatch::Exact(M.into()),
            ),
            0,
            10,
        )
        .await
        .unwrap();
    assert!(in_m.is_empty(), "{in_m:?}");
}

const B: &str = "1.2.840.12.1";
const B1: &str = "1.2.840.12.1.1";
const B2: &str = "1.2.840.12.1.2";

fn b_index(description: &str, series: &str, sops: &[&str]) -> QidoIndex {
    index(
        attrs(None, Some(description), None, None),
        sops.iter()
            .enumerate()
            .map(|(n, sop)| instance(series, sop, None, Some(n as i64 + 1)))
            .collect(),
    )
}

/// What the service's backfill relies on, through the Catalog alone: content written through
/// the catalog is indexed (never listed); a bare record without a document is not listed; the
/// index is written only while the version and document it was read from are still the latest.
async fn index_compare_and_set(c: &dyn Catalog) {
    let listed = c.unindexed_image_sets(1000).await.unwrap();
    assert!(
        listed.is_empty(),
        "every image set written so far was indexed with its content: {listed:?}"
    );
    let ds = active_datastore(c, "qido-instances-index").await;
    // A bare record (no document) is not listed; its first content is indexed.
    let bare = ImageSet {
        datastore_id: ds.clone(),
        id: ImageSetId::generate(),
        version: 1,
        state: ImageSetState::Active,
        workflow_status: ImageSetWorkflowStatus::Created,
        is_primary: true,
        created_at: Millis(10),
        updated_at: Millis(10),
        deleted_at: None,
        last_accessed_at: Millis(10),
    };
    c.insert_image_set(&bare).await.unwrap();
    assert!(
        !c.unindexed_image_sets(1000)
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == bare.id),
        "an image set without a document is not listed"
    );
    assert_eq!(
        c.begin_image_set_version(
            &ds,
            &bare.id,
            1,
            ImageSetWorkflowStatus::Importing,
            "qido-instances-bare",
            Millis(20)
        )
        .await
        .unwrap(),
        BeginVersionOutcome::Begun(2)
    );
    let template = new_set(&ds, true, B, B1, "b-doc-2");
    assert!(
        c.complete_image_set_version(
            &ds,
            &bare.id,
            2,
            &VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Imported,
                content: Box::new(next_content(
                    &template.content,
                    "b-doc-2",
                    b_index("bare", B1, &["1.8.1", "1.8.2"])
                )),
                added_frames: vec![],
                removed_frame_ids: vec![],
            },
            Millis(30),
        )
        .await
        .unwrap()
    );
    assert_eq!(
        series_state(c, &ds, B, B1).await,
        (
            listed_of(&["1.8.1", "1.8.2"]),
            one_of(Some("b-doc-2")),
            one_of(Some("bare"))
        )
    );
    assert!(c.unindexed_image_sets(1000).await.unwrap().is_empty());

    // Rewriting the index of the latest content replaces it (no duplicate rows).
    let new = image_set(
        &ds,
        true,
        B,
        B2,
        "k-doc-1",
        40,
        Some(2),
        b_index("k", B2, &["1.7.1", "1.7.2"]),
    );
    let id = new.image_set.id.clone();
    c.create_image_set(&new).await.unwrap();
    let current = UnindexedImageSet {
        datastore_id: ds.clone(),
        id: id.clone(),
        version: 1,
        metadata_key: "k-doc-1".into(),
    };
    let rewritten = b_index("k-again", B2, &["1.7.2", "1.7.3"]);
    assert!(c.write_qido_index(&current, &rewritten).await.unwrap());
    let k_again = (
        listed_of(&["1.7.2", "1.7.3"]),
        one_of(Some("k-doc-1")),
        one_of(Some("k-again")),
    );
    assert_eq!(series_state(c, &ds, B, B2).await, k_again);
    assert!(c.write_qido_index(&current, &rewritten).await.unwrap());
    assert_eq!(series_state(c, &ds, B, B2).await, k_again);
    let series: Vec<QidoAttributes> = c
        .search_dicom_series(
            &ds,
            Some(B),
            &one(
                DicomAttribute::SeriesInstanceUid,
                DicomMatch::Exact(B2.into()),
            ),
            0,
            10,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.attributes)
        .collect();
    assert_eq!(series, std::slice::from_ref(&rewritten.attributes));
    assert!(c.unindexed_image_sets(1000).await.unwrap().is_empty());

    // Refused: another document, another version, another image set or data store.
    let other = b_index("other", B2, &["1.7.9"]);
    for stale in [
        UnindexedImageSet {
            metadata_key: "k-doc-0".into(),
            ..current.clone()
        },
        UnindexedImageSet {
            version: 2,
            ..current.clone()
        },
        UnindexedImageSet {
            id: ImageSetId::generate(),
            ..current.clone()
        },
        UnindexedImageSet {
            datastore_id: DatastoreId::generate(),
            ..current.clone()
        },
    ] {
        assert!(
            !c.write_qido_index(&stale, &other).await.unwrap(),
            "{stale:?}"
        );
        assert_eq!(series_state(c, &ds, B, B2).await, k_again, "{stale:?}");
    }
    // The version moved on (LOCKED for version 2): refused.
    c.begin_image_set_version(
        &ds,
        &id,
        1,
        ImageSetWorkflowStatus::Importing,
        "qido-instances-k2",
        Millis(50),
    )
    .await
    .unwrap();
    assert!(!c.write_qido_index(&current, &other).await.unwrap());
    assert_eq!(series_state(c, &ds, B, B2).await, k_again);
    c.complete_image_set_version(
        &ds,
        &id,
        2,
        &VersionCompletion::Failed {
            status: ImageSetWorkflowStatus::ImportFailed,
            message: "no".into(),
        },
        Millis(55),
    )
    .await
    .unwrap();
    assert!(!c.write_qido_index(&current, &other).await.unwrap());
    assert_eq!(series_state(c, &ds, B, B2).await, k_again);
    // Version 2 (failed) still shows version 1's document: its index may be written.
    let at_2 = UnindexedImageSet {
        version: 2,
        ..current.clone()
    };
    assert!(c.write_qido_index(&at_2, &new.content.qido).await.unwrap());
    assert_eq!(
        series_state(c, &ds, B, B2).await,
        (
            listed_of(&["1.7.1", "1.7.2"]),
            one_of(Some("k-doc-1")),
            one_of(Some("k"))
        )
    );
    // A new document (version 3): the index read from the old one is refused.
    change_version(
        c,
        &ds,
        &id,
        2,
        VersionCompletion::Succeeded {
            status: ImageSetWorkflowStatus::Updated,
            content: Box::new(next_content(
                &new.content,
                "k-doc-3",
                b_index("k3", B2, &["1.7.4"]),
            )),
            added_frames: vec![],
            removed_frame_ids: vec![],
        },
        60,
    )
    .await;
    let k3 = (
        listed_of(&["1.7.4"]),
        one_of(Some("k-doc-3")),
        one_of(Some("k3")),
    );
    assert_eq!(series_state(c, &ds, B, B2).await, k3);
    for stale in [
        at_2.clone(),
        UnindexedImageSet {
            version: 3,
            ..current.clone()
        },
    ] {
        assert!(
            !c.write_qido_index(&stale, &other).await.unwrap(),
            "{stale:?}"
        );
        assert_eq!(series_state(c, &ds, B, B2).await, k3, "{stale:?}");
    }
    assert!(c.unindexed_image_sets(1000).await.unwrap().is_empty());
}

async fn instances(
    c: &dyn Catalog,
    ds: &DatastoreId,
    scope: InstanceScope<'_>,
) -> Vec<(ImageSetId, String)> {
    c.search_dicom_instances(ds, scope, &DicomQuery::default(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.image_set_id, i.instance.sop_instance_uid))
        .collect()
}

fn listed_of(sops: &[&str]) -> Vec<(String, Option<i64>)> {
    sops.iter()
        .enumerate()
        .map(|(n, s)| ((*s).to_owned(), Some(n as i64 + 1)))
        .collect()
}

/// Image sets written before the index existed (simulated on `raw_url`, the same database as
/// `c`: index rows and attributes removed, `qido_indexed = 0`) are listed until their index is
/// written; deleted ones and ones without a document are not; an image set whose version moved
/// on is refused, and indexed by its new content instead.
pub async fn backfill(c: &dyn Catalog, raw_url: &str) {
    use sqlx::Connection;
    let ds = active_datastore(c, "qido-backfill").await;
    let p = image_set(
        &ds,
        true,
        B,
        B1,
        "p-doc",
        10,
        Some(1),
        index(
            attrs(Some("Ref^P"), Some("p"), Some("20200101"), Some("1200")),
            vec![
                instance(B1, "1.6.1", Some(CT), Some(1)),
                instance(B1, "1.6.2", Some(CT), Some(2)),
            ],
        ),
    );
    let n = image_set(
        &ds,
        false,
        B,
        B1,
        "n-doc",
        11,
        Some(1),
        b_index("n", B1, &["1.6.1"]),
    );
    let r = image_set(
        &ds,
        true,
        B,
        B2,
        "r-doc",
        12,
        Some(2),
        b_index("r", B2, &["1.6.5"]),
    );
    let g = image_set(
        &ds,
        true,
        "1.2.840.12.2",
        "1.2.840.12.2.1",
        "g-doc",
        13,
        Some(1),
        b_index("g", "1.2.840.12.2.1", &["1.6.9"]),
    );
    for s in [&p, &n, &r, &g] {
        c.create_image_set(s).await.unwrap();
    }
    delete(c, &ds, &g.image_set.id, 1).await;
    let mut bare = p.image_set.clone();
    bare.id = ImageSetId::generate();
    bare.is_primary = false;
    c.insert_image_set(&bare).await.unwrap();

    let mut raw = sqlx::AnyConnection::connect(raw_url)
        .await
        .expect("raw connection to the catalog database");
    // Rows as written: every image set's (primary or not) instances, none of a deleted one.
    for (s, want) in [(&p, 2), (&n, 1), (&r, 1), (&g, 0)] {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM dicom_instances WHERE datastore_id = $1 \
             AND image_set_id = $2",
        )
        .bind(ds.as_str())
        .bind(s.image_set.id.as_str())
        .fetch_one(&mut raw)
        .await
        .unwrap();
        let count: i64 = sqlx::Row::try_get(&row, "n").unwrap();
        assert_eq!(count, want, "instance rows of {}", s.content.metadata_key);
    }
    for sql in [
        "UPDATE image_sets SET qido_indexed = 0, referring_physician_name = NULL, \
         series_description = NULL, series_date = NULL, series_time = NULL",
        "DELETE FROM dicom_instances",
    ] {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();

    let all = DicomQuery::default();
    let ds = &ds;
    assert!(instances(c, ds, InstanceScope::Datastore).await.is_empty());
    let unindexed = |p: &NewImageSet, version: i64| UnindexedImageSet {
        datastore_id: p.image_set.datastore_id.clone(),
        id: p.image_set.id.clone(),
        version,
        metadata_key: p.content.metadata_key.clone(),
    };
    let sorted = |mut v: Vec<UnindexedImageSet>| {
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let listed = c.unindexed_image_sets(100).await.unwrap();
    assert_eq!(
        sorted(listed),
        sorted(vec![unindexed(&p, 1), unindexed(&n, 1), unindexed(&r, 1)]),
        "not DELETED, with a document"
    );
    assert_eq!(c.unindexed_image_sets(2).await.unwrap().len(), 2);
    assert_eq!(c.unindexed_image_sets(1).await.unwrap().len(), 1);

    // r moves on (version 2 LOCKED, same document): the index read at version 1 is refused,
    // r is listed at version 2.
    let r_id = r.image_set.id.clone();
    c.begin_image_set_version(
        ds,
        &r_id,
        1,
        ImageSetWorkflowStatus::Importing,
        "qido-backfill-r2",
        Millis(20),
    )
    .await
    .unwrap();
    assert!(
        !c.write_qido_index(&unindexed(&r, 1), &r.content.qido)
            .await
            .unwrap()
    );
    assert!(instances(c, ds, InstanceScope::Datastore).await.is_empty());
    assert!(
        c.unindexed_image_sets(100)
            .await
            .unwrap()
            .contains(&unindexed(&r, 2))
    );
    // Its new content is indexed with it: no longer listed.
    assert!(
        c.complete_image_set_version(
            ds,
            &r_id,
            2,
            &VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Imported,
                content: Box::new(next_content(
                    &r.content,
                    "r-doc-2",
                    b_index("r2", B2, &["1.6.6"])
                )),
                added_frames: vec![],
                removed_frame_ids: vec![],
            },
            Millis(30),
        )
        .await
        .unwrap()
    );
    assert_eq!(
        instances(c, ds, InstanceScope::Datastore).await,
        [(r_id.clone(), "1.6.6".to_owned())]
    );
    assert_eq!(
        sorted(c.unindexed_image_sets(100).await.unwrap()),
        sorted(vec![unindexed(&p, 1), unindexed(&n, 1)])
    );

    // p and n are indexed by the backfill: found (p; n is not primary), no longer listed.
    let p_id = p.image_set.id.clone();
    assert!(
        c.write_qido_index(&unindexed(&p, 1), &p.content.qido)
            .await
            .unwrap()
    );
    assert!(
        c.write_qido_index(&unindexed(&n, 1), &n.content.qido)
            .await
            .unwrap()
    );
    assert!(c.unindexed_image_sets(100).await.unwrap().is_empty());
    assert_eq!(
        instances(c, ds, InstanceScope::Series(B, B1)).await,
        [
            (p_id.clone(), "1.6.1".to_owned()),
            (p_id.clone(), "1.6.2".to_owned())
        ]
    );
    let series: Vec<(ImageSetId, QidoAttributes)> = c
        .search_dicom_series(ds, Some(B), &all, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.image_set_id, s.attributes))
        .collect();
    assert_eq!(
        series,
        [
            (p_id, p.content.qido.attributes.clone()),
            (r_id, attrs(None, Some("r2"), None, None)),
        ]
    );
    let found: Vec<String> = c
        .search_dicom_instances(
            ds,
            InstanceScope::Datastore,
            &one(
                DicomAttribute::ReferringPhysicianName,
                DicomMatch::Fuzzy("p".into()),
            ),
            0,
            10,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.instance.sop_instance_uid)
        .collect();
    assert_eq!(found, ["1.6.1", "1.6.2"]);
}

#[cfg(test)]
mod tests {
    use crate::SqlCatalog;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_backfill_of_image_sets_written_before_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let catalog = SqlCatalog::open_sqlite_file(&path).await.unwrap();
        super::backfill(&catalog, &format!("sqlite://{}", path.display())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_backfill_of_image_sets_written_before_the_index() {
        let Ok(url) = std::env::var("LIGHTBOX_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL conformance suite: set LIGHTBOX_TEST_POSTGRES_URL"
            );
            eprintln!("skipped: LIGHTBOX_TEST_POSTGRES_URL is not set");
            return;
        };
        let url = super::super::fresh_postgres_database(&url).await;
        let catalog = SqlCatalog::connect(&url).await.unwrap();
        super::backfill(&catalog, &url).await;
    }
}
