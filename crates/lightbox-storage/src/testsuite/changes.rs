//! Conformance of image set changes: locks and versions begun atomically with their job
//! (compare-and-set, all or nothing), frames live again after a revert, read-only locks released
//! with the previous status, copies sharing frame blobs, and deletion that hands back exactly the
//! blobs no other image set refers to. Panics (assertions) on any deviation.

use std::collections::HashSet;

use lightbox_domain::{
    DatastoreId, ImageSet, ImageSetId, ImageSetState, ImageSetWorkflowStatus, Millis, ResourceRef,
};

use super::imports::{active_datastore, new_set};
use crate::{
    BeginChangeOutcome, Catalog, ChangeEnd, ChangeLock, DeleteDatastoreOutcome, ImageSetChange,
    ImageSetSearch, ImageSetSortField, NewJob, NewLockedImageSet, TagOutcome, VersionCompletion,
};

pub async fn run(c: &dyn Catalog) {
    update_and_revert(c).await;
    all_or_nothing(c).await;
    copy_and_delete(c).await;
}

pub(super) fn job(name: &str) -> NewJob {
    NewJob {
        id: format!("test.change/{name}"),
        kind: "test.change".into(),
        payload: "{}".into(),
        not_before: Millis(0),
    }
}

pub(super) fn lock(
    id: &ImageSetId,
    expected: i64,
    status: ImageSetWorkflowStatus,
    new: bool,
) -> ChangeLock {
    ChangeLock {
        id: id.clone(),
        expected_latest: expected,
        status,
        new_version: new,
        forced: false,
    }
}

fn change(ds: &DatastoreId, locks: Vec<ChangeLock>, name: &str) -> ImageSetChange {
    ImageSetChange {
        datastore_id: ds.clone(),
        locks,
        create: None,
        job: job(name),
        now: Millis(50),
    }
}

/// The image set, after checking that its latest version row mirrors it.
async fn latest(c: &dyn Catalog, ds: &DatastoreId, id: &ImageSetId) -> ImageSet {
    let s = c.get_image_set(ds, id).await.unwrap().unwrap();
    let v = c
        .get_image_set_version(ds, id, s.version)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.state, v.workflow_status, v.deleted_at),
        (s.state, s.workflow_status, s.deleted_at),
        "latest version row mirrors the image set"
    );
    s
}

async fn frame_ids(
    c: &dyn Catalog,
    ds: &DatastoreId,
    id: &ImageSetId,
    version: i64,
) -> Vec<String> {
    c.list_image_frames(ds, id, version)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.frame_id)
        .collect()
}

async fn update_and_revert(c: &dyn Catalog) {
    let ds = active_datastore(c, "changes-update").await;
    let new = new_set(&ds, true, "7.1", "7.1.1", "u-doc-1");
    let id = new.image_set.id.clone();
    let (f1, f2) = (new.frames[0].clone(), new.frames[1].clone());
    c.create_image_set(&new).await.unwrap();

    // Version 2 begins LOCKED, forced, with its job.
    let mut l = lock(&id, 1, ImageSetWorkflowStatus::Updating, true);
    l.forced = true;
    let BeginChangeOutcome::Begun(sets) = c
        .begin_image_set_change(&change(&ds, vec![l], "u2"))
        .await
        .unwrap()
    else {
        panic!("update not begun")
    };
    assert_eq!(
        (sets[0].version, sets[0].state, sets[0].workflow_status),
        (2, ImageSetState::Locked, ImageSetWorkflowStatus::Updating)
    );
    assert!(c.get_job("test.change/u2").await.unwrap().is_some());
    let v2 = c.get_image_set_version(&ds, &id, 2).await.unwrap().unwrap();
    assert!(v2.forced);
    assert_eq!(v2.job_id.as_deref(), Some("test.change/u2"));
    // While LOCKED the previous document is shown.
    assert_eq!(v2.metadata_key.as_deref(), Some("u-doc-1"));
    assert_eq!(latest(c, &ds, &id).await.state, ImageSetState::Locked);
    // Any other write conflicts.
    for expected in [1, 2] {
        let again = lock(&id, expected, ImageSetWorkflowStatus::Deleting, false);
        assert!(matches!(
            c.begin_image_set_change(&change(&ds, vec![again], "u-x"))
                .await
                .unwrap(),
            BeginChangeOutcome::Conflict(s) if s.state == ImageSetState::Locked
        ));
    }

    // Version 2 removes f1.
    let mut content = new.content.clone();
    content.metadata_key = "u-doc-2".into();
    let end = ChangeEnd {
        versions: vec![(
            id.clone(),
            2,
            VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Updated,
                content: Box::new(content),
                added_frames: vec![],
                removed_frame_ids: vec![f1.frame_id.clone()],
            },
        )],
        unlock: vec![],
        now: Millis(60),
    };
    assert!(c.finish_image_set_change(&ds, &end).await.unwrap());
    assert!(
        !c.finish_image_set_change(&ds, &end).await.unwrap(),
        "a version ends once"
    );
    let s = latest(c, &ds, &id).await;
    assert_eq!(
        (s.version, s.state, s.workflow_status, s.last_accessed_at),
        (
            2,
            ImageSetState::Active,
            ImageSetWorkflowStatus::Updated,
            Millis(60)
        )
    );
    assert_eq!(
        frame_ids(c, &ds, &id, 2).await,
        std::slice::from_ref(&f2.frame_id)
    );
    let (_, frame) = c
        .get_image_frame(&ds, &id, &f1.frame_id)
        .await
        .unwrap()
        .unwrap();
    assert!(frame.is_none(), "a removed frame is not served");

    // A stale expected version conflicts.
    let stale = lock(&id, 1, ImageSetWorkflowStatus::Updating, true);
    assert!(matches!(
        c.begin_image_set_change(&change(&ds, vec![stale], "u-stale"))
            .await
            .unwrap(),
        BeginChangeOutcome::Conflict(s) if s.version == 2
    ));

    // Version 3 reverts to version 1: f1 is live again (a second range of the same frame).
    let BeginChangeOutcome::Begun(_) = c
        .begin_image_set_change(&change(
            &ds,
            vec![lock(&id, 2, ImageSetWorkflowStatus::Updating, true)],
            "u3",
        ))
        .await
        .unwrap()
    else {
        panic!("revert not begun")
    };
    let end = ChangeEnd {
        versions: vec![(
            id.clone(),
            3,
            VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Updated,
                content: Box::new(new.content.clone()),
                added_frames: vec![f1.clone()],
                removed_frame_ids: vec![],
            },
        )],
        unlock: vec![],
        now: Millis(70),
    };
    assert!(c.finish_image_set_change(&ds, &end).await.unwrap());
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let both = sorted(vec![f1.frame_id.clone(), f2.frame_id.clone()]);
    assert_eq!(sorted(frame_ids(c, &ds, &id, 3).await), both);
    assert_eq!(
        frame_ids(c, &ds, &id, 2).await,
        std::slice::from_ref(&f2.frame_id)
    );
    assert_eq!(sorted(frame_ids(c, &ds, &id, 1).await), both);
    let (_, frame) = c
        .get_image_frame(&ds, &id, &f1.frame_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame, Some(f1.clone()));
    let v3 = c.get_image_set_version(&ds, &id, 3).await.unwrap().unwrap();
    assert_eq!(v3.metadata_key.as_deref(), Some("u-doc-1"));

    // A failed version keeps the previous document and frames.
    let BeginChangeOutcome::Begun(_) = c
        .begin_image_set_change(&change(
            &ds,
            vec![lock(&id, 3, ImageSetWorkflowStatus::Updating, true)],
            "u4",
        ))
        .await
        .unwrap()
    else {
        panic!("version 4 not begun")
    };
    let end = ChangeEnd {
        versions: vec![(
            id.clone(),
            4,
            VersionCompletion::Failed {
                status: ImageSetWorkflowStatus::UpdateFailed,
                message: "too large".into(),
            },
        )],
        unlock: vec![],
        now: Millis(80),
    };
    assert!(c.finish_image_set_change(&ds, &end).await.unwrap());
    let v4 = c.get_image_set_version(&ds, &id, 4).await.unwrap().unwrap();
    assert_eq!(
        (
            v4.workflow_status,
            v4.message.as_deref(),
            v4.metadata_key.as_deref()
        ),
        (
            ImageSetWorkflowStatus::UpdateFailed,
            Some("too large"),
            Some("u-doc-1")
        )
    );
    assert_eq!(sorted(frame_ids(c, &ds, &id, 4).await), both);
}

/// A change that cannot lock everything locks nothing and enqueues nothing.
async fn all_or_nothing(c: &dyn Catalog) {
    let ds = active_datastore(c, "changes-atomic").await;
    let a = new_set(&ds, true, "7.2", "7.2.1", "a-doc");
    let b = new_set(&ds, true, "7.2", "7.2.2", "b-doc");
    let other = new_set(&ds, true, "7.3", "7.3.1", "o-doc");
    for n in [&a, &b, &other] {
        c.create_image_set(n).await.unwrap();
    }
    let (a, b) = (a.image_set.id, b.image_set.id);
    let mut study: Vec<ImageSetId> = c
        .primary_image_sets_of_study(&ds, "7.2")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    study.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(study, want);

    let out = c
        .begin_image_set_change(&change(
            &ds,
            vec![
                lock(&a, 1, ImageSetWorkflowStatus::Updating, true),
                lock(
                    &b,
                    7,
                    ImageSetWorkflowStatus::UpdatingForStudyConsistency,
                    true,
                ),
            ],
            "atomic",
        ))
        .await
        .unwrap();
    assert!(matches!(out, BeginChangeOutcome::Conflict(s) if s.id == b));
    let s = latest(c, &ds, &a).await;
    assert_eq!((s.version, s.state), (1, ImageSetState::Active));
    assert!(c.get_job("test.change/atomic").await.unwrap().is_none());
    let missing = ImageSetId::generate();
    assert_eq!(
        c.begin_image_set_change(&change(
            &ds,
            vec![lock(&missing, 1, ImageSetWorkflowStatus::Deleting, false)],
            "missing",
        ))
        .await
        .unwrap(),
        BeginChangeOutcome::NotFound(missing)
    );

    // Both versions of a study-wide update begin and end together.
    let BeginChangeOutcome::Begun(sets) = c
        .begin_image_set_change(&change(
            &ds,
            vec![
                lock(&a, 1, ImageSetWorkflowStatus::Updating, true),
                lock(
                    &b,
                    1,
                    ImageSetWorkflowStatus::UpdatingForStudyConsistency,
                    true,
                ),
            ],
            "study",
        ))
        .await
        .unwrap()
    else {
        panic!("study update not begun")
    };
    assert_eq!(sets.len(), 2);
    assert_eq!(
        latest(c, &ds, &b).await.workflow_status,
        ImageSetWorkflowStatus::UpdatingForStudyConsistency
    );
    let done = |status| VersionCompletion::Failed {
        status,
        message: "m".into(),
    };
    // An end naming a version that is not LOCKED applies nothing.
    let wrong = ChangeEnd {
        versions: vec![
            (a.clone(), 2, done(ImageSetWorkflowStatus::UpdateFailed)),
            (b.clone(), 3, done(ImageSetWorkflowStatus::UpdateFailed)),
        ],
        unlock: vec![],
        now: Millis(90),
    };
    assert!(!c.finish_image_set_change(&ds, &wrong).await.unwrap());
    assert_eq!(latest(c, &ds, &a).await.state, ImageSetState::Locked);
    let right = ChangeEnd {
        versions: vec![
            (a.clone(), 2, done(ImageSetWorkflowStatus::UpdateFailed)),
            (b.clone(), 2, done(ImageSetWorkflowStatus::UpdateFailed)),
        ],
        unlock: vec![],
        now: Millis(90),
    };
    assert!(c.finish_image_set_change(&ds, &right).await.unwrap());
    for id in [&a, &b] {
        let s = latest(c, &ds, id).await;
        assert_eq!(
            (s.version, s.state, s.workflow_status),
            (
                2,
                ImageSetState::Active,
                ImageSetWorkflowStatus::UpdateFailed
            )
        );
    }
}

async fn copy_and_delete(c: &dyn Catalog) {
    let ds = active_datastore(c, "changes-copy").await;
    let src = new_set(&ds, true, "7.4", "7.4.1", "c-doc-1");
    let source = src.image_set.id.clone();
    c.create_image_set(&src).await.unwrap();
    c.tag_resource(
        &ResourceRef::ImageSet(ds.clone(), source.clone()),
        &[("team".into(), "x".into())],
        50,
    )
    .await
    .unwrap();

    // A primary copy of a series that has a primary image set is refused.
    let mut created = new_set(&ds, true, "7.4", "7.4.1", "c-doc-2");
    created.image_set.state = ImageSetState::Locked;
    created.image_set.workflow_status = ImageSetWorkflowStatus::Copying;
    let locked_new = |s: &crate::NewImageSet| NewLockedImageSet {
        image_set: s.image_set.clone(),
        tags: s.content.tags.clone(),
        grouping: s.content.grouping.clone(),
        instance_count: s.content.instance_count,
    };
    let mut ch = change(
        &ds,
        vec![lock(
            &source,
            1,
            ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
            false,
        )],
        "copy-primary",
    );
    ch.create = Some(locked_new(&created));
    assert_eq!(
        c.begin_image_set_change(&ch).await.unwrap(),
        BeginChangeOutcome::PrimaryExists
    );
    assert_eq!(latest(c, &ds, &source).await.state, ImageSetState::Active);

    // A non-primary copy: the source is locked read-only (no new version).
    created.image_set.is_primary = false;
    let dest = created.image_set.id.clone();
    ch.create = Some(locked_new(&created));
    ch.job = job("copy");
    let BeginChangeOutcome::Begun(sets) = c.begin_image_set_change(&ch).await.unwrap() else {
        panic!("copy not begun")
    };
    assert_eq!(
        (sets[0].version, sets[0].workflow_status),
        (1, ImageSetWorkflowStatus::CopyingWithReadOnlyAccess)
    );
    assert_eq!(
        (sets[1].id.clone(), sets[1].version, sets[1].state),
        (dest.clone(), 1, ImageSetState::Locked)
    );
    let s = latest(c, &ds, &source).await;
    assert_eq!(
        (s.state, s.workflow_status),
        (
            ImageSetState::Locked,
            ImageSetWorkflowStatus::CopyingWithReadOnlyAccess
        )
    );
    let mut content = src.content.clone();
    content.metadata_key = "c-doc-2".into();
    let end = ChangeEnd {
        versions: vec![(
            dest.clone(),
            1,
            VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Copied,
                content: Box::new(content),
                added_frames: src.frames.clone(),
                removed_frame_ids: vec![],
            },
        )],
        unlock: vec![(
            source.clone(),
            ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
            ImageSetWorkflowStatus::Created,
        )],
        now: Millis(100),
    };
    assert!(c.finish_image_set_change(&ds, &end).await.unwrap());
    let s = latest(c, &ds, &source).await;
    assert_eq!(
        (s.version, s.state, s.workflow_status),
        (1, ImageSetState::Active, ImageSetWorkflowStatus::Created)
    );
    let d = latest(c, &ds, &dest).await;
    assert_eq!(
        (d.version, d.state, d.workflow_status, d.is_primary),
        (
            1,
            ImageSetState::Active,
            ImageSetWorkflowStatus::Copied,
            false
        )
    );
    let keys = |frames: Vec<crate::FrameRecord>| -> HashSet<String> {
        frames.into_iter().map(|f| f.blob_key).collect()
    };
    assert_eq!(
        keys(c.list_image_frames(&ds, &dest, 1).await.unwrap()),
        keys(src.frames.clone()),
        "copies share frame blobs"
    );

    // The destination gets a frame of its own in version 2.
    let BeginChangeOutcome::Begun(_) = c
        .begin_image_set_change(&change(
            &ds,
            vec![lock(&dest, 1, ImageSetWorkflowStatus::Updating, true)],
            "dest-v2",
        ))
        .await
        .unwrap()
    else {
        panic!("dest v2 not begun")
    };
    let mut own = src.frames[0].clone();
    own.frame_id = "c-own".into();
    own.blob_key = "blob/c-own".into();
    let mut content = src.content.clone();
    content.metadata_key = "c-doc-3".into();
    let end = ChangeEnd {
        versions: vec![(
            dest.clone(),
            2,
            VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Updated,
                content: Box::new(content),
                added_frames: vec![own],
                removed_frame_ids: vec![],
            },
        )],
        unlock: vec![],
        now: Millis(110),
    };
    assert!(c.finish_image_set_change(&ds, &end).await.unwrap());

    // Deleting the destination hands back its own frame and its documents, not the shared
    // frames; its tags, frames and documents are gone; the source still serves its frames.
    let BeginChangeOutcome::Begun(sets) = c
        .begin_image_set_change(&change(
            &ds,
            vec![lock(&dest, 2, ImageSetWorkflowStatus::Deleting, false)],
            "delete",
        ))
        .await
        .unwrap()
    else {
        panic!("delete not begun")
    };
    assert_eq!(
        (sets[0].version, sets[0].workflow_status),
        (2, ImageSetWorkflowStatus::Deleting)
    );
    c.tag_resource(
        &ResourceRef::ImageSet(ds.clone(), dest.clone()),
        &[("k".into(), "v".into())],
        50,
    )
    .await
    .unwrap();
    assert!(
        c.finish_delete_image_set(&ds, &dest, "gc-owner", Millis(120))
            .await
            .unwrap()
    );
    assert!(
        !c.finish_delete_image_set(&ds, &dest, "gc-owner", Millis(121))
            .await
            .unwrap()
    );
    let d = latest(c, &ds, &dest).await;
    assert_eq!(
        (d.state, d.workflow_status, d.deleted_at, d.version),
        (
            ImageSetState::Deleted,
            ImageSetWorkflowStatus::Deleted,
            Some(Millis(120)),
            2
        )
    );
    let mut pending = c.pending_blobs("gc-owner").await.unwrap();
    pending.sort();
    assert_eq!(pending, ["blob/c-own", "c-doc-2", "c-doc-3"]);
    assert!(c.list_image_frames(&ds, &dest, 2).await.unwrap().is_empty());
    for v in 1..=2 {
        let row = c
            .get_image_set_version(&ds, &dest, v)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.metadata_key, None);
    }
    assert_eq!(
        c.list_tags(&ResourceRef::ImageSet(ds.clone(), dest.clone()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        c.tag_resource(
            &ResourceRef::ImageSet(ds.clone(), dest.clone()),
            &[("k".into(), "v".into())],
            50
        )
        .await
        .unwrap(),
        TagOutcome::NotFound
    );
    let deleted_again = lock(&dest, 2, ImageSetWorkflowStatus::Deleting, false);
    assert!(matches!(
        c.begin_image_set_change(&change(&ds, vec![deleted_again], "delete-2"))
            .await
            .unwrap(),
        BeginChangeOutcome::Conflict(s) if s.state == ImageSetState::Deleted
    ));
    assert_eq!(c.list_image_frames(&ds, &source, 1).await.unwrap().len(), 2);
    let search = ImageSetSearch {
        filters: vec![],
        sort: ImageSetSortField::UpdatedAt,
        descending: true,
    };
    let found: Vec<ImageSetId> = c
        .search_image_sets(&ds, &search, None, 50)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.image_set.id)
        .collect();
    assert_eq!(found, std::slice::from_ref(&source));
    assert_eq!(
        c.list_tags(&ResourceRef::ImageSet(ds.clone(), source.clone()))
            .await
            .unwrap()
            .map(|t| t.len()),
        Some(1)
    );

    // Deleting the source too: now its frames are nobody's.
    let BeginChangeOutcome::Begun(_) = c
        .begin_image_set_change(&change(
            &ds,
            vec![lock(&source, 1, ImageSetWorkflowStatus::Deleting, false)],
            "delete-src",
        ))
        .await
        .unwrap()
    else {
        panic!("source delete not begun")
    };
    assert!(matches!(
        c.begin_delete_datastore(&ds, Millis(125), job("ds-delete-early"))
            .await
            .unwrap(),
        DeleteDatastoreOutcome::NotEmpty
    ));
    assert!(
        c.finish_delete_image_set(&ds, &source, "gc-src", Millis(130))
            .await
            .unwrap()
    );
    let mut pending = c.pending_blobs("gc-src").await.unwrap();
    pending.sort();
    let mut want: Vec<String> = src.frames.iter().map(|f| f.blob_key.clone()).collect();
    want.push("c-doc-1".into());
    want.sort();
    assert_eq!(pending, want);
    assert!(matches!(
        c.begin_delete_datastore(&ds, Millis(140), job("ds-delete"))
            .await
            .unwrap(),
        DeleteDatastoreOutcome::Deleting(_)
    ));
}
