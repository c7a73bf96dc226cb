//! Conformance of QIDO-RS searches (DICOMweb): studies (the live primary image sets sharing a
//! StudyInstanceUID, attributes of the most recently updated one, counts, modalities) newest
//! first, series by SeriesNumber, every match kind on both dialects (case-sensitive exact and
//! wildcard matching with `%` / `_` taken literally, date and time ranges, UID lists, fuzzy
//! names), offset paging; non-primary and DELETED image sets never seen. Panics on any deviation.

use lightbox_domain::{DatastoreId, ImageSetId, ImageSetWorkflowStatus, Millis};

use super::imports::{active_datastore, new_set};
use crate::{
    BeginChangeOutcome, Catalog, ChangeLock, DicomAttribute, DicomCondition, DicomMatch,
    DicomQuery, ImageSetChange, NewImageSet, NewJob,
};

pub async fn run(c: &dyn Catalog) {
    let f = fixture(c).await;
    studies(c, &f).await;
    matching(c, &f).await;
    series(c, &f).await;
}

const A: &str = "1.2.840.9.1";
const B: &str = "1.2.840.9.2";
const C: &str = "1.2.840.9.3";
const D: &str = "1.2.840.9.4";

struct Fixture {
    ds: DatastoreId,
}

struct Row<'a> {
    primary: bool,
    study: &'a str,
    series: &'a str,
    updated: i64,
    patient: &'a str,
    name: &'a str,
    accession: &'a str,
    date: &'a str,
    time: &'a str,
    description: &'a str,
    modality: Option<&'a str>,
    number: Option<i64>,
    instances: i64,
}

fn image_set(ds: &DatastoreId, r: &Row<'_>) -> NewImageSet {
    let mut new = new_set(
        ds,
        r.primary,
        r.study,
        r.series,
        &format!("qido-{}", r.series),
    );
    new.image_set.updated_at = Millis(r.updated);
    new.image_set.created_at = Millis(r.updated);
    new.frames.clear();
    new.content.instance_count = r.instances;
    let t = &mut new.content.tags;
    t.patient_id = Some(r.patient.into());
    t.patient_name = Some(r.name.into());
    t.patient_birth_date = Some("19700101".into());
    t.patient_sex = Some("O".into());
    t.accession_number = Some(r.accession.into());
    t.study_id = Some("S1".into());
    t.study_date = Some(r.date.into());
    t.study_time = Some(r.time.into());
    t.study_description = Some(r.description.into());
    t.series_modality = r.modality.map(Into::into);
    t.series_body_part = Some("CHEST".into());
    t.series_number = r.number;
    new
}

/// Study A: two primary series (CT #2 updated at 100, MR #1 updated at 300, whose study
/// description is the study's) and a later non-primary US image set. Study B: one PT series
/// without a number (200). Study C: one CT series (400), accession with `%` and `_`. Study D:
/// deleted. Another data store holds a copy of study A.
async fn fixture(c: &dyn Catalog) -> Fixture {
    let ds = active_datastore(c, "qido").await;
    let other = active_datastore(c, "qido-other").await;
    let base = Row {
        primary: true,
        study: A,
        series: "1.2.840.9.1.1",
        updated: 100,
        patient: "PID1",
        name: "Doe^John",
        accession: "ACC1",
        date: "20130601",
        time: "101500",
        description: "Chest CT",
        modality: Some("CT"),
        number: Some(2),
        instances: 3,
    };
    let rows = [
        Row { ..base },
        Row {
            series: "1.2.840.9.1.2",
            updated: 300,
            description: "Chest CT v2",
            modality: Some("MR"),
            number: Some(1),
            instances: 4,
            ..base
        },
        Row {
            primary: false,
            series: "1.2.840.9.1.2",
            updated: 500,
            patient: "PID1-CONFLICT",
            description: "Other",
            modality: Some("US"),
            number: Some(1),
            instances: 7,
            ..base
        },
        Row {
            study: B,
            series: "1.2.840.9.2.1",
            updated: 200,
            patient: "PID2",
            name: "Smith^Anna^Marie",
            accession: "ACX_1",
            date: "20140102",
            time: "0830",
            description: "PET",
            modality: Some("PT"),
            number: None,
            instances: 5,
            ..base
        },
        Row {
            study: C,
            series: "1.2.840.9.3.1",
            updated: 400,
            patient: "PID3",
            name: "O'Brien^Sean",
            accession: "AC%_1",
            date: "20150101",
            time: "235959.5",
            description: "Chest CT",
            modality: Some("CT"),
            number: Some(1),
            instances: 1,
            ..base
        },
        Row {
            study: D,
            series: "1.2.840.9.4.1",
            updated: 600,
            patient: "PID4",
            ..base
        },
    ];
    let mut deleted = None;
    for r in &rows {
        let new = image_set(&ds, r);
        if r.study == D {
            deleted = Some(new.image_set.id.clone());
        }
        c.create_image_set(&new).await.unwrap();
    }
    c.create_image_set(&image_set(&other, &rows[0]))
        .await
        .unwrap();
    delete(c, &ds, &deleted.unwrap()).await;
    Fixture { ds }
}

async fn delete(c: &dyn Catalog, ds: &DatastoreId, id: &ImageSetId) {
    let change = ImageSetChange {
        datastore_id: ds.clone(),
        locks: vec![ChangeLock {
            id: id.clone(),
            expected_latest: 1,
            status: ImageSetWorkflowStatus::Deleting,
            new_version: false,
            forced: false,
        }],
        create: None,
        job: NewJob {
            id: "test.change/qido-delete".into(),
            kind: "test.change".into(),
            payload: "{}".into(),
            not_before: Millis(0),
        },
        now: Millis(700),
    };
    assert!(matches!(
        c.begin_image_set_change(&change).await.unwrap(),
        BeginChangeOutcome::Begun(_)
    ));
    assert!(
        c.finish_delete_image_set(ds, id, "qido-gc", Millis(700))
            .await
            .unwrap()
    );
}

pub(super) fn q(conditions: Vec<(DicomAttribute, DicomMatch)>) -> DicomQuery {
    DicomQuery {
        conditions: conditions
            .into_iter()
            .map(|(attribute, matching)| DicomCondition {
                attribute,
                matching,
            })
            .collect(),
    }
}

pub(super) fn one(attribute: DicomAttribute, matching: DicomMatch) -> DicomQuery {
    q(vec![(attribute, matching)])
}

async fn study_uids(c: &dyn Catalog, f: &Fixture, query: &DicomQuery) -> Vec<String> {
    c.search_dicom_studies(&f.ds, query, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.tags.study_instance_uid.unwrap())
        .collect()
}

async fn studies(c: &dyn Catalog, f: &Fixture) {
    let all = c
        .search_dicom_studies(&f.ds, &DicomQuery::default(), 0, 1000)
        .await
        .unwrap();
    let uids: Vec<&str> = all
        .iter()
        .map(|s| s.tags.study_instance_uid.as_deref().unwrap())
        .collect();
    // Last update (of primary image sets) descending; D is deleted, A's US set not primary.
    assert_eq!(uids, [C, A, B]);
    let a = &all[1];
    assert_eq!(a.updated_at, Millis(300));
    assert_eq!((a.series, a.instances), (2, 7));
    assert_eq!(a.modalities, ["CT", "MR"]);
    assert_eq!(a.tags.study_description.as_deref(), Some("Chest CT v2"));
    assert_eq!(a.tags.patient_name.as_deref(), Some("Doe^John"));
    assert_eq!(a.tags.patient_id.as_deref(), Some("PID1"));
    let b = &all[2];
    assert_eq!((b.series, b.instances), (1, 5));
    assert_eq!(b.modalities, ["PT"]);

    // Offset paging.
    for (offset, limit, want) in [
        (0, 1, vec![C]),
        (1, 1, vec![A]),
        (1, 5, vec![A, B]),
        (2, 2, vec![B]),
        (3, 2, vec![]),
        (u64::MAX, 2, vec![]),
    ] {
        let page: Vec<String> = c
            .search_dicom_studies(&f.ds, &DicomQuery::default(), offset, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.tags.study_instance_uid.unwrap())
            .collect();
        assert_eq!(page, want, "offset {offset} limit {limit}");
    }
}

async fn matching(c: &dyn Catalog, f: &Fixture) {
    use DicomAttribute as At;
    use DicomMatch as M;
    let cases: Vec<(DicomQuery, Vec<&str>)> = vec![
        // Exact, case-sensitive.
        (one(At::PatientId, M::Exact("PID1".into())), vec![A]),
        (one(At::PatientId, M::Exact("pid1".into())), vec![]),
        (one(At::PatientId, M::Exact("PID1-CONFLICT".into())), vec![]),
        (one(At::PatientId, M::Exact("PID4".into())), vec![]),
        // Study attributes are the most recently updated primary image set's.
        (
            one(At::StudyDescription, M::Exact("Chest CT".into())),
            vec![C],
        ),
        (
            one(At::StudyDescription, M::Exact("Chest CT v2".into())),
            vec![A],
        ),
        // Wildcards, case-sensitive; `%` and `_` are literal.
        (one(At::PatientName, M::Wildcard("Doe*".into())), vec![A]),
        (one(At::PatientName, M::Wildcard("doe*".into())), vec![]),
        (one(At::PatientName, M::Wildcard("?oe^J*".into())), vec![A]),
        (
            one(At::PatientName, M::Wildcard("*^*".into())),
            vec![C, A, B],
        ),
        (one(At::PatientName, M::Wildcard("O'*".into())), vec![C]),
        (
            one(At::AccessionNumber, M::Wildcard("AC%*".into())),
            vec![C],
        ),
        (
            one(At::AccessionNumber, M::Wildcard("AC?_1".into())),
            vec![C, B],
        ),
        (one(At::AccessionNumber, M::Wildcard("AC_*".into())), vec![]),
        (
            one(At::AccessionNumber, M::Wildcard("A[C]*".into())),
            vec![],
        ),
        (
            one(At::StudyDescription, M::Wildcard("*CT*".into())),
            vec![C, A],
        ),
        // Date and time ranges, open ends.
        (
            one(
                At::StudyDate,
                M::Range(Some("20130509".into()), Some("20140101".into())),
            ),
            vec![A],
        ),
        (
            one(
                At::StudyDate,
                M::Range(Some("20130601".into()), Some("20140102".into())),
            ),
            vec![A, B],
        ),
        (
            one(At::StudyDate, M::Range(None, Some("20140101".into()))),
            vec![A],
        ),
        (
            one(At::StudyDate, M::Range(Some("20140101".into()), None)),
            vec![C, B],
        ),
        (one(At::StudyDate, M::Exact("20150101".into())), vec![C]),
        (
            one(
                At::StudyTime,
                M::Range(Some("080000000000".into()), Some("101500999999".into())),
            ),
            vec![A, B],
        ),
        (
            one(At::StudyTime, M::Range(Some("235959000000".into()), None)),
            vec![C],
        ),
        (
            one(At::StudyTime, M::Range(None, Some("083000000000".into()))),
            vec![B],
        ),
        // UID lists.
        (
            one(
                At::StudyInstanceUid,
                M::AnyOf(vec![A.into(), B.into(), D.into()]),
            ),
            vec![A, B],
        ),
        (one(At::StudyInstanceUid, M::AnyOf(vec![])), vec![]),
        // Fuzzy names: a component's prefix, any case.
        (one(At::PatientName, M::Fuzzy("jo".into())), vec![A]),
        (one(At::PatientName, M::Fuzzy("DOE".into())), vec![A]),
        (one(At::PatientName, M::Fuzzy("oh".into())), vec![]),
        (one(At::PatientName, M::Fuzzy("mar".into())), vec![B]),
        (one(At::PatientName, M::Fuzzy("o'b".into())), vec![C]),
        (one(At::PatientName, M::Fuzzy("s".into())), vec![C, B]),
        // Modalities of any primary series of the study.
        (
            one(At::ModalitiesInStudy, M::Exact("CT".into())),
            vec![C, A],
        ),
        (one(At::ModalitiesInStudy, M::Exact("MR".into())), vec![A]),
        (one(At::ModalitiesInStudy, M::Exact("US".into())), vec![]),
        (
            one(
                At::ModalitiesInStudy,
                M::AnyOf(vec!["PT".into(), "MR".into()]),
            ),
            vec![A, B],
        ),
        (
            one(At::ModalitiesInStudy, M::Wildcard("?T".into())),
            vec![C, A, B],
        ),
        // Every condition holds.
        (
            q(vec![
                (At::ModalitiesInStudy, M::Exact("CT".into())),
                (At::PatientName, M::Wildcard("O*".into())),
            ]),
            vec![C],
        ),
    ];
    for (query, want) in cases {
        assert_eq!(study_uids(c, f, &query).await, want, "{query:?}");
    }
}

async fn series(c: &dyn Catalog, f: &Fixture) {
    let uids = |v: Vec<crate::DicomSeries>| -> Vec<String> {
        v.into_iter()
            .map(|s| s.tags.series_instance_uid.unwrap())
            .collect()
    };
    let all = DicomQuery::default();
    let in_a = c
        .search_dicom_series(&f.ds, Some(A), &all, 0, 1000)
        .await
        .unwrap();
    // By SeriesNumber; the non-primary image set of series 1.2 is not listed.
    assert_eq!(uids(in_a.clone()), ["1.2.840.9.1.2", "1.2.840.9.1.1"]);
    assert_eq!(in_a[0].instances, 4);
    assert_eq!(in_a[0].tags.series_modality.as_deref(), Some("MR"));
    assert_eq!(in_a[0].updated_at, Millis(300));
    // All series of the data store: absent numbers last, ties by SeriesInstanceUID.
    assert_eq!(
        uids(
            c.search_dicom_series(&f.ds, None, &all, 0, 1000)
                .await
                .unwrap()
        ),
        [
            "1.2.840.9.1.2",
            "1.2.840.9.3.1",
            "1.2.840.9.1.1",
            "1.2.840.9.2.1"
        ]
    );
    assert_eq!(
        uids(
            c.search_dicom_series(&f.ds, None, &all, 1, 2)
                .await
                .unwrap()
        ),
        ["1.2.840.9.3.1", "1.2.840.9.1.1"]
    );
    assert!(
        c.search_dicom_series(&f.ds, Some(D), &all, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.search_dicom_series(&f.ds, Some("1.2.3.404"), &all, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    use DicomAttribute as At;
    use DicomMatch as M;
    for (study, query, want) in [
        (
            None,
            one(At::Modality, M::Exact("CT".into())),
            vec!["1.2.840.9.3.1", "1.2.840.9.1.1"],
        ),
        (
            Some(A),
            one(At::Modality, M::Exact("CT".into())),
            vec!["1.2.840.9.1.1"],
        ),
        (None, one(At::Modality, M::Exact("US".into())), vec![]),
        (
            None,
            one(At::SeriesNumber, M::Exact("2".into())),
            vec!["1.2.840.9.1.1"],
        ),
        (None, one(At::SeriesNumber, M::Exact("x".into())), vec![]),
        (
            None,
            one(
                At::SeriesInstanceUid,
                M::AnyOf(vec!["1.2.840.9.2.1".into(), "1.2.840.9.4.1".into()]),
            ),
            vec!["1.2.840.9.2.1"],
        ),
        (
            None,
            one(At::PatientId, M::Exact("PID2".into())),
            vec!["1.2.840.9.2.1"],
        ),
        (
            None,
            one(At::BodyPartExamined, M::Wildcard("CH*".into())),
            vec![
                "1.2.840.9.1.2",
                "1.2.840.9.3.1",
                "1.2.840.9.1.1",
                "1.2.840.9.2.1",
            ],
        ),
        (
            Some(B),
            one(At::ModalitiesInStudy, M::Exact("PT".into())),
            vec!["1.2.840.9.2.1"],
        ),
    ] {
        let got = c
            .search_dicom_series(&f.ds, study, &query, 0, 1000)
            .await
            .unwrap();
        assert_eq!(uids(got), want, "{study:?} {query:?}");
    }
}
