//! Conformance of image set reads: every search filter and sort order with keyset pages,
//! DELETED image sets hidden, study-wide counts, version listing newest first, frames looked up
//! in the latest version only, and coarse touches. Panics (assertions) on any deviation.

use std::collections::HashSet;
use std::time::Duration;

use lightbox_domain::{DatastoreId, ImageSetId, ImageSetState, ImageSetWorkflowStatus, Millis};

use super::imports::{active_datastore, new_set};
use crate::{
    BeginVersionOutcome, Catalog, CreateImageSetOutcome, Cursor, ImageSetFilter, ImageSetSearch,
    ImageSetSortField, ImageSetTextField, NewImageSet, VersionCompletion,
};

/// A data store with one image set dated `date` / `time` (for upgrade tests).
pub async fn dated_image_set(
    c: &dyn Catalog,
    date: &str,
    time: Option<&str>,
) -> (DatastoreId, ImageSetId) {
    let ds = active_datastore(c, "reads-dated").await;
    let mut new = new_set(&ds, true, "4.1", "4.1.1", "dated-doc");
    new.content.tags.study_date = Some(date.into());
    new.content.tags.study_time = time.map(Into::into);
    let id = new.image_set.id.clone();
    c.create_image_set(&new).await.unwrap();
    (ds, id)
}

pub async fn run(c: &dyn Catalog) {
    search(c).await;
    versions_and_frames(c).await;
    touches(c).await;
}

/// Image set `n` of the search fixture: study `n % 3`, patient `n % 2`, created at `100 + n`,
/// updated at `1000 - n`, study date-time descending with `n` except for the last one (none).
fn fixture(ds: &DatastoreId, n: i64) -> NewImageSet {
    let study = format!("1.9.{}", n % 3);
    let series = format!("1.9.{}.{n}", n % 3);
    let mut new = new_set(ds, n % 5 != 4, &study, &series, &format!("search-doc-{n}"));
    new.image_set.created_at = Millis(100 + n);
    new.image_set.updated_at = Millis(1000 - n);
    new.image_set.last_accessed_at = Millis(1000 - n);
    let t = &mut new.content.tags;
    t.patient_id = Some(format!("P{}", n % 2));
    t.accession_number = Some(format!("A{n}"));
    t.study_id = Some(format!("S{}", n % 3));
    if n < 11 {
        t.study_date = Some(format!("2020{:02}15", 12 - n));
        t.study_time = Some("0930".into());
    }
    new.content.instance_count = n + 1;
    new.frames.clear();
    new
}

async fn page_all(c: &dyn Catalog, ds: &DatastoreId, s: &ImageSetSearch, limit: u32) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = c
            .search_image_sets(ds, s, cursor.as_ref(), limit)
            .await
            .unwrap();
        assert!(page.items.len() <= limit as usize);
        out.extend(page.items.iter().map(|i| i.image_set.created_at.0 - 100));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    out
}

fn query(
    filters: Vec<ImageSetFilter>,
    sort: ImageSetSortField,
    descending: bool,
) -> ImageSetSearch {
    ImageSetSearch {
        filters,
        sort,
        descending,
    }
}

async fn search(c: &dyn Catalog) {
    let ds = active_datastore(c, "reads-search").await;
    let other = active_datastore(c, "reads-search-other").await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let new = fixture(&ds, n);
        ids.push(new.image_set.id.clone());
        assert_eq!(
            c.create_image_set(&new).await.unwrap(),
            CreateImageSetOutcome::Created
        );
    }
    c.create_image_set(&fixture(&other, 0)).await.unwrap();
    let all: Vec<i64> = (0..12).collect();
    let by_updated = query(vec![], ImageSetSortField::UpdatedAt, true);

    // Default order (updatedAt DESC) across every page size, no duplicates or gaps.
    for limit in [1, 5, 12, 50] {
        assert_eq!(
            page_all(c, &ds, &by_updated, limit).await,
            all,
            "limit {limit}"
        );
    }
    let asc = query(vec![], ImageSetSortField::UpdatedAt, false);
    assert_eq!(
        page_all(c, &ds, &asc, 5).await,
        all.iter().rev().copied().collect::<Vec<_>>()
    );
    let created = query(vec![], ImageSetSortField::CreatedAt, false);
    assert_eq!(page_all(c, &ds, &created, 5).await, all);
    // Study date-time: n = 11 has none and sorts first ascending.
    let sdt = query(vec![], ImageSetSortField::StudyDateTime, false);
    let mut expected: Vec<i64> = vec![11];
    expected.extend((0..11).rev());
    assert_eq!(page_all(c, &ds, &sdt, 4).await, expected);

    // Ties on the sort value are broken by image set id, in the sort direction.
    let mut tied = Vec::new();
    for k in 0..4 {
        let mut new = fixture(&other, 20 + k);
        new.image_set.updated_at = Millis(5);
        tied.push(new.image_set.id.to_string());
        c.create_image_set(&new).await.unwrap();
    }
    tied.sort();
    let mut seen = Vec::new();
    let mut cursor = None;
    let f = query(
        vec![ImageSetFilter::UpdatedAt(Millis(5), Millis(5))],
        ImageSetSortField::UpdatedAt,
        true,
    );
    loop {
        let page = c
            .search_image_sets(&other, &f, cursor.as_ref(), 1)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|i| i.image_set.id.to_string()));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    tied.reverse();
    assert_eq!(seen, tied);

    // Filters.
    let ds_ref = &ds;
    let check = |filters: Vec<ImageSetFilter>, expected: Vec<i64>| {
        let s = query(filters, ImageSetSortField::CreatedAt, false);
        async move {
            let got = page_all(c, ds_ref, &s, 3).await;
            assert_eq!(got, expected, "{:?}", s.filters);
        }
    };
    let text = |f, v: &str| ImageSetFilter::Text(f, v.to_string());
    check(
        vec![text(ImageSetTextField::PatientId, "P1")],
        vec![1, 3, 5, 7, 9, 11],
    )
    .await;
    check(
        vec![text(ImageSetTextField::AccessionNumber, "A7")],
        vec![7],
    )
    .await;
    check(
        vec![text(ImageSetTextField::StudyId, "S2")],
        vec![2, 5, 8, 11],
    )
    .await;
    check(
        vec![text(ImageSetTextField::StudyInstanceUid, "1.9.0")],
        vec![0, 3, 6, 9],
    )
    .await;
    check(
        vec![text(ImageSetTextField::SeriesInstanceUid, "1.9.1.4")],
        vec![4],
    )
    .await;
    check(vec![text(ImageSetTextField::PatientId, "p1")], vec![]).await;
    check(vec![ImageSetFilter::IsPrimary(false)], vec![4, 9]).await;
    check(
        vec![ImageSetFilter::CreatedAt(Millis(102), Millis(104))],
        vec![2, 3, 4],
    )
    .await;
    check(
        vec![ImageSetFilter::UpdatedAt(Millis(990), Millis(992))],
        vec![8, 9, 10],
    )
    .await;
    check(
        vec![ImageSetFilter::StudyDateTime(
            "20201015000000000000".into(),
            "20201115235959999999".into(),
        )],
        vec![1, 2],
    )
    .await;
    check(
        vec![ImageSetFilter::StudyDateTime(
            "20201215093000000000".into(),
            "20201215093000000000".into(),
        )],
        vec![0],
    )
    .await;
    check(
        vec![
            text(ImageSetTextField::PatientId, "P0"),
            ImageSetFilter::CreatedAt(Millis(100), Millis(105)),
        ],
        vec![0, 2, 4],
    )
    .await;

    // Study-wide counts for primary image sets; a non-primary one counts itself.
    let page = c
        .search_image_sets(
            &ds,
            &query(
                vec![text(ImageSetTextField::StudyInstanceUid, "1.9.1")],
                ImageSetSortField::CreatedAt,
                false,
            ),
            None,
            50,
        )
        .await
        .unwrap();
    // Study 1.9.1 holds n = 1, 4 (non-primary), 7, 10: primaries 1, 7, 10 with 2 + 8 + 11.
    for s in &page.items {
        let n = s.image_set.created_at.0 - 100;
        if s.image_set.is_primary {
            assert_eq!((s.study_series, s.study_instances), (3, 21), "n = {n}");
        } else {
            assert_eq!((s.study_series, s.study_instances), (1, n + 1), "n = {n}");
        }
        assert_eq!(
            s.tags.patient_id.as_deref(),
            Some(if n % 2 == 0 { "P0" } else { "P1" })
        );
    }
    assert_eq!(page.items.len(), 4);

    // A cursor of another sort field, or garbage, is rejected.
    let page = c
        .search_image_sets(&ds, &by_updated, None, 2)
        .await
        .unwrap();
    let bad = Cursor("garbage".into());
    assert!(
        c.search_image_sets(&ds, &by_updated, Some(&bad), 2)
            .await
            .is_err()
    );
    assert!(page.next.is_some());

    // Unknown data store: empty.
    let page = c
        .search_image_sets(&DatastoreId::generate(), &by_updated, None, 50)
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next.is_none());
    let _: HashSet<ImageSetId> = ids.into_iter().collect();
}

async fn versions_and_frames(c: &dyn Catalog) {
    let ds = active_datastore(c, "reads-versions").await;
    let new = new_set(&ds, true, "2.1", "2.1.1", "v-doc-1");
    let id = new.image_set.id.clone();
    let old_frame = new.frames[0].frame_id.clone();
    let kept_frame = new.frames[1].frame_id.clone();
    c.create_image_set(&new).await.unwrap();

    // Versions 2 (replaces a frame) and 3 (fails).
    let BeginVersionOutcome::Begun(v2) = c
        .begin_image_set_version(
            &ds,
            &id,
            1,
            ImageSetWorkflowStatus::Importing,
            "job-2",
            Millis(20),
        )
        .await
        .unwrap()
    else {
        panic!("version 2 not begun")
    };
    let mut added = new.frames[0].clone();
    added.frame_id = "v-doc-2-f1".into();
    added.blob_key = "blob/v-doc-2-f1".into();
    let mut content = new.content.clone();
    content.metadata_key = "v-doc-2".into();
    assert!(
        c.complete_image_set_version(
            &ds,
            &id,
            v2,
            &VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Imported,
                content: Box::new(content),
                added_frames: vec![added.clone()],
                removed_frame_ids: vec![old_frame.clone()],
            },
            Millis(21),
        )
        .await
        .unwrap()
    );
    let BeginVersionOutcome::Begun(v3) = c
        .begin_image_set_version(
            &ds,
            &id,
            2,
            ImageSetWorkflowStatus::Importing,
            "job-3",
            Millis(30),
        )
        .await
        .unwrap()
    else {
        panic!("version 3 not begun")
    };
    c.complete_image_set_version(
        &ds,
        &id,
        v3,
        &VersionCompletion::Failed {
            status: ImageSetWorkflowStatus::ImportFailed,
            message: "broken".into(),
        },
        Millis(31),
    )
    .await
    .unwrap();

    // Newest first, across pages of one.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = c
            .list_image_set_versions(&ds, &id, cursor.as_ref(), 1)
            .await
            .unwrap();
        seen.extend(
            page.items
                .iter()
                .map(|v| (v.version, v.workflow_status, v.message.clone())),
        );
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            (
                3,
                ImageSetWorkflowStatus::ImportFailed,
                Some("broken".into())
            ),
            (2, ImageSetWorkflowStatus::Imported, None),
            (1, ImageSetWorkflowStatus::Created, None),
        ]
    );
    let page = c.list_image_set_versions(&ds, &id, None, 50).await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(page.next.is_none());
    assert!(
        c.list_image_set_versions(&ds, &id, Some(&Cursor("x".into())), 5)
            .await
            .is_err()
    );
    assert!(
        c.list_image_set_versions(&ds, &ImageSetId::generate(), None, 5)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Frames: only those live in the latest version.
    let (s, f) = c
        .get_image_frame(&ds, &id, &kept_frame)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.version, 3);
    assert_eq!(s.state, ImageSetState::Active);
    assert_eq!(f.unwrap().frame_id, kept_frame);
    let (_, f) = c
        .get_image_frame(&ds, &id, "v-doc-2-f1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f, Some(added));
    let (_, f) = c
        .get_image_frame(&ds, &id, &old_frame)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f, None, "a frame replaced in version 2 is not served");
    let (_, f) = c
        .get_image_frame(&ds, &id, "no-such-frame")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f, None);
    let other = new_set(&ds, false, "2.1", "2.1.1", "v-other");
    let other_frame = other.frames[0].frame_id.clone();
    c.create_image_set(&other).await.unwrap();
    let (_, f) = c
        .get_image_frame(&ds, &id, &other_frame)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f, None, "another image set's frame is not served");
    assert!(
        c.get_image_frame(&ds, &ImageSetId::generate(), &kept_frame)
            .await
            .unwrap()
            .is_none()
    );
}

async fn touches(c: &dyn Catalog) {
    let ds = active_datastore(c, "reads-touch").await;
    let new = new_set(&ds, true, "3.1", "3.1.1", "t-doc-1");
    let id = new.image_set.id.clone();
    c.create_image_set(&new).await.unwrap();
    let minute = Duration::from_secs(60);
    assert!(
        !c.touch_image_set(&ds, &id, Millis(30_000), minute)
            .await
            .unwrap()
    );
    assert!(
        c.touch_image_set(&ds, &id, Millis(70_011), minute)
            .await
            .unwrap()
    );
    assert!(
        !c.touch_image_set(&ds, &id, Millis(80_000), minute)
            .await
            .unwrap()
    );
    let s = c.get_image_set(&ds, &id).await.unwrap().unwrap();
    assert_eq!(s.last_accessed_at, Millis(70_011));
    // An import completing a version touches it too.
    let BeginVersionOutcome::Begun(v) = c
        .begin_image_set_version(
            &ds,
            &id,
            1,
            ImageSetWorkflowStatus::Importing,
            "job-t",
            Millis(90_000),
        )
        .await
        .unwrap()
    else {
        panic!("not begun")
    };
    // Reads take the latest version's state from its version row: it mirrors the image set.
    assert_eq!(latest_state(c, &ds, &id).await, ImageSetState::Locked);
    c.complete_image_set_version(
        &ds,
        &id,
        v,
        &VersionCompletion::Failed {
            status: ImageSetWorkflowStatus::ImportFailed,
            message: "x".into(),
        },
        Millis(95_000),
    )
    .await
    .unwrap();
    let s = c.get_image_set(&ds, &id).await.unwrap().unwrap();
    assert_eq!(s.last_accessed_at, Millis(95_000));
    assert_eq!(latest_state(c, &ds, &id).await, ImageSetState::Active);
}

/// The image set's state, after checking that its latest version row says the same.
async fn latest_state(c: &dyn Catalog, ds: &DatastoreId, id: &ImageSetId) -> ImageSetState {
    let s = c.get_image_set(ds, id).await.unwrap().unwrap();
    let v = c
        .get_image_set_version(ds, id, s.version)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.state, v.workflow_status, v.deleted_at),
        (s.state, s.workflow_status, s.deleted_at)
    );
    s.state
}
