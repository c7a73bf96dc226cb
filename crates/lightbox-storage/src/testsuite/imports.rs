//! Conformance of import jobs and image set versions: job idempotency and listing, one primary
//! image set per series under concurrency, version compare-and-set, frames per version, and
//! pending-blob ownership. Panics (assertions) on any deviation.

use std::sync::Arc;

use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetDicomTags, ImageSetId,
    ImageSetState, ImageSetWorkflowStatus, ImportJob, ImportJobStatus, LosslessStorageFormat,
    Millis, new_import_job_id,
};

use crate::{
    BeginVersionOutcome, Catalog, CreateImageSetOutcome, CreateImportJobOutcome, FrameRecord,
    ImageSetContent, NewDatastore, NewImageSet, NewJob, VersionCompletion,
};

pub(super) async fn active_datastore(c: &dyn Catalog, token: &str) -> DatastoreId {
    let d = Datastore {
        id: DatastoreId::generate(),
        name: token.into(),
        status: DatastoreStatus::Active,
        kms_key_arn: None,
        lambda_authorizer_arn: None,
        lossless_storage_format: LosslessStorageFormat::Htj2k,
        created_at: Millis(1),
        updated_at: Millis(1),
        client_token: token.into(),
        request_fingerprint: "fp".into(),
    };
    let id = d.id.clone();
    c.create_datastore(NewDatastore {
        datastore: d,
        quota: 1000,
        tags: vec![],
        job: None,
    })
    .await
    .unwrap();
    id
}

fn import_job(ds: &DatastoreId, token: &str, at: i64) -> ImportJob {
    let id = new_import_job_id();
    ImportJob {
        datastore_id: ds.clone(),
        output_s3_uri: format!("s3://out/x/{ds}-DicomImport-{id}/"),
        id,
        name: Some("job".into()),
        status: ImportJobStatus::Submitted,
        data_access_role_arn: "arn:aws:iam::000000000000:role/r".into(),
        input_s3_uri: "s3://in/x/".into(),
        input_owner_account_id: None,
        import_configuration: None,
        message: None,
        submitted_at: Millis(at),
        ended_at: None,
        updated_at: Millis(at),
        client_token: token.into(),
        request_fingerprint: "fp".into(),
    }
}

fn work(job: &ImportJob) -> NewJob {
    NewJob {
        id: format!("test.import/{}", job.id),
        kind: "test.import".into(),
        payload: "{}".into(),
        not_before: Millis(0),
    }
}

/// Runs every check on a catalog (data stores are created by the suite).
pub async fn run(catalog: Arc<dyn Catalog>) {
    import_jobs(&*catalog).await;
    image_set_versions(&*catalog).await;
    one_primary_per_series(catalog.clone()).await;
    version_compare_and_set(catalog.clone()).await;
    super::reads::run(&*catalog).await;
    super::changes::run(&*catalog).await;
    super::qido::run(&*catalog).await;
    super::qido_instances::run(&*catalog).await;
}

async fn import_jobs(c: &dyn Catalog) {
    let ds = active_datastore(c, "imports-jobs").await;
    let a = import_job(&ds, "tok-a", 100);
    let out = c.create_import_job(&a, work(&a), 2).await.unwrap();
    assert_eq!(out, CreateImportJobOutcome::Created(a.clone()));
    assert!(
        c.get_job(&work(&a).id).await.unwrap().is_some(),
        "work enqueued with the job"
    );
    // Same token: the stored job comes back, nothing new is created.
    let again = import_job(&ds, "tok-a", 101);
    assert_eq!(
        c.create_import_job(&again, work(&again), 2).await.unwrap(),
        CreateImportJobOutcome::ExistingToken(a.clone())
    );
    assert!(c.get_import_job(&ds, &again.id).await.unwrap().is_none());
    let b = import_job(&ds, "tok-b", 200);
    c.create_import_job(&b, work(&b), 2).await.unwrap();
    let third = import_job(&ds, "tok-c", 300);
    assert_eq!(
        c.create_import_job(&third, work(&third), 2).await.unwrap(),
        CreateImportJobOutcome::TooManyJobs(2)
    );
    // Unknown data store / not active.
    let missing = import_job(&DatastoreId::generate(), "tok-x", 1);
    assert_eq!(
        c.create_import_job(&missing, work(&missing), 2)
            .await
            .unwrap(),
        CreateImportJobOutcome::DatastoreNotFound
    );
    // Transitions are compare-and-set; final states set ended_at.
    let moved = c
        .transition_import_job(
            &ds,
            &a.id,
            &[ImportJobStatus::Submitted],
            ImportJobStatus::InProgress,
            None,
            Millis(150),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.status, ImportJobStatus::InProgress);
    assert!(moved.ended_at.is_none());
    assert!(
        c.transition_import_job(
            &ds,
            &a.id,
            &[ImportJobStatus::Submitted],
            ImportJobStatus::Failed,
            Some("x"),
            Millis(151)
        )
        .await
        .unwrap()
        .is_none()
    );
    let done = c
        .transition_import_job(
            &ds,
            &a.id,
            &[ImportJobStatus::InProgress],
            ImportJobStatus::Completed,
            None,
            Millis(160),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.ended_at, Some(Millis(160)));
    assert_eq!(c.get_import_job(&ds, &a.id).await.unwrap().unwrap(), done);
    // A finished job frees a slot.
    assert!(matches!(
        c.create_import_job(&third, work(&third), 2).await.unwrap(),
        CreateImportJobOutcome::Created(_)
    ));
    // Listing: newest first, pages, status filter.
    let p1 = c.list_import_jobs(&ds, None, None, 2).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&third.id, &b.id]
    );
    let p2 = c
        .list_import_jobs(&ds, None, p1.next.as_ref(), 2)
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.items[0].id, a.id);
    assert!(p2.next.is_none());
    let completed = c
        .list_import_jobs(&ds, Some(ImportJobStatus::Completed), None, 50)
        .await
        .unwrap();
    assert_eq!(completed.items.len(), 1);
    // Tokens are per data store.
    let other = active_datastore(c, "imports-jobs-2").await;
    let same_token = import_job(&other, "tok-a", 5);
    assert!(matches!(
        c.create_import_job(&same_token, work(&same_token), 2)
            .await
            .unwrap(),
        CreateImportJobOutcome::Created(_)
    ));
}

fn tags(study: &str, series: &str) -> ImageSetDicomTags {
    ImageSetDicomTags {
        study_instance_uid: Some(study.into()),
        series_instance_uid: Some(series.into()),
        patient_id: Some("P".into()),
        series_number: Some(3),
        ..Default::default()
    }
}

fn content(study: &str, series: &str, key: &str) -> ImageSetContent {
    ImageSetContent {
        grouping: format!("[\"{study}\",\"{series}\"]"),
        tags: tags(study, series),
        qido: Default::default(),
        instance_count: 1,
        metadata_key: key.into(),
        metadata_size: 10,
    }
}

fn frame(id: &str) -> FrameRecord {
    FrameRecord {
        frame_id: id.into(),
        blob_key: format!("blob/{id}"),
        size: 7,
        transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
    }
}

pub(super) fn new_set(
    ds: &DatastoreId,
    primary: bool,
    study: &str,
    series: &str,
    key: &str,
) -> NewImageSet {
    NewImageSet {
        image_set: ImageSet {
            datastore_id: ds.clone(),
            id: ImageSetId::generate(),
            version: 1,
            state: ImageSetState::Active,
            workflow_status: ImageSetWorkflowStatus::Created,
            is_primary: primary,
            created_at: Millis(10),
            updated_at: Millis(10),
            deleted_at: None,
            last_accessed_at: Millis(10),
        },
        content: content(study, series, key),
        frames: vec![frame(&format!("{key}-f1")), frame(&format!("{key}-f2"))],
        job_id: "job-1".into(),
    }
}

async fn image_set_versions(c: &dyn Catalog) {
    let ds = active_datastore(c, "imports-versions").await;
    let new = new_set(&ds, true, "1.2", "1.2.3", "doc-1");
    let id = new.image_set.id.clone();
    c.register_pending_blobs(
        "job-1",
        &[
            "doc-1".into(),
            "blob/doc-1-f1".into(),
            "blob/doc-1-f2".into(),
            "orphan".into(),
        ],
        Millis(5),
    )
    .await
    .unwrap();
    assert_eq!(
        c.create_image_set(&new).await.unwrap(),
        CreateImageSetOutcome::Created
    );
    assert_eq!(
        c.pending_blobs("job-1").await.unwrap(),
        vec!["orphan".to_owned()],
        "committed records own their blobs"
    );
    c.forget_pending_blobs(&["orphan".into()]).await.unwrap();
    assert!(c.pending_blobs("job-1").await.unwrap().is_empty());

    let primary = c
        .find_primary_image_set(&ds, "1.2", "1.2.3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(primary.image_set.id, id);
    assert_eq!(primary.metadata_key, "doc-1");
    assert_eq!(primary.grouping, "[\"1.2\",\"1.2.3\"]");
    assert!(
        c.find_primary_image_set(&ds, "1.2", "other")
            .await
            .unwrap()
            .is_none()
    );

    // Version 2: LOCKED while written, readable as version 1's document until it completes.
    let begun = c
        .begin_image_set_version(
            &ds,
            &id,
            1,
            ImageSetWorkflowStatus::Importing,
            "job-2",
            Millis(20),
        )
        .await
        .unwrap();
    assert_eq!(begun, BeginVersionOutcome::Begun(2));
    let locked = c.get_image_set(&ds, &id).await.unwrap().unwrap();
    assert_eq!(
        (locked.version, locked.state, locked.workflow_status),
        (2, ImageSetState::Locked, ImageSetWorkflowStatus::Importing)
    );
    let v2 = c.get_image_set_version(&ds, &id, 2).await.unwrap().unwrap();
    assert_eq!(v2.metadata_key.as_deref(), Some("doc-1"));
    assert!(matches!(
        c.begin_image_set_version(
            &ds,
            &id,
            2,
            ImageSetWorkflowStatus::Importing,
            "j",
            Millis(21)
        )
        .await
        .unwrap(),
        BeginVersionOutcome::Conflict(_)
    ));
    let done = c
        .complete_image_set_version(
            &ds,
            &id,
            2,
            &VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Imported,
                content: Box::new(ImageSetContent {
                    instance_count: 2,
                    ..content("1.2", "1.2.3", "doc-2")
                }),
                added_frames: vec![frame("doc-2-f1")],
                removed_frame_ids: vec!["doc-1-f2".into()],
            },
            Millis(30),
        )
        .await
        .unwrap();
    assert!(done);
    assert!(
        !c.complete_image_set_version(
            &ds,
            &id,
            2,
            &VersionCompletion::Failed {
                status: ImageSetWorkflowStatus::ImportFailed,
                message: "late".into()
            },
            Millis(31)
        )
        .await
        .unwrap(),
        "a completed version cannot complete again"
    );
    let now = c.get_image_set(&ds, &id).await.unwrap().unwrap();
    assert_eq!(
        (now.version, now.state, now.workflow_status),
        (2, ImageSetState::Active, ImageSetWorkflowStatus::Imported)
    );
    let ids = |v: Vec<FrameRecord>| v.into_iter().map(|f| f.frame_id).collect::<Vec<_>>();
    assert_eq!(
        ids(c.list_image_frames(&ds, &id, 1).await.unwrap()),
        vec!["doc-1-f1", "doc-1-f2"]
    );
    assert_eq!(
        ids(c.list_image_frames(&ds, &id, 2).await.unwrap()),
        vec!["doc-1-f1", "doc-2-f1"]
    );

    // A failed version keeps the previous document and records its message.
    c.begin_image_set_version(
        &ds,
        &id,
        2,
        ImageSetWorkflowStatus::Importing,
        "job-3",
        Millis(40),
    )
    .await
    .unwrap();
    c.complete_image_set_version(
        &ds,
        &id,
        3,
        &VersionCompletion::Failed {
            status: ImageSetWorkflowStatus::ImportFailed,
            message: "interrupted".into(),
        },
        Millis(41),
    )
    .await
    .unwrap();
    let v3 = c.get_image_set_version(&ds, &id, 3).await.unwrap().unwrap();
    assert_eq!(v3.workflow_status, ImageSetWorkflowStatus::ImportFailed);
    assert_eq!(v3.message.as_deref(), Some("interrupted"));
    assert_eq!(v3.metadata_key.as_deref(), Some("doc-2"));
    assert_eq!(v3.state, ImageSetState::Active);
    let by_job = c.image_set_versions_by_job("job-3").await.unwrap();
    assert_eq!(by_job.len(), 1);
    assert_eq!(by_job[0].1.version, 3);
    // A second primary for the same series is refused; a non-primary one is fine.
    let dup = new_set(&ds, true, "1.2", "1.2.3", "doc-dup");
    assert!(matches!(
        c.create_image_set(&dup).await.unwrap(),
        CreateImageSetOutcome::PrimaryExists { .. }
    ));
    let side = new_set(&ds, false, "1.2", "1.2.3", "doc-side");
    assert_eq!(
        c.create_image_set(&side).await.unwrap(),
        CreateImageSetOutcome::Created
    );
}

async fn one_primary_per_series(c: Arc<dyn Catalog>) {
    let ds = active_datastore(&*c, "imports-race").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            c.create_image_set(&new_set(&ds, true, "9.9", "9.9.9", &format!("race-{i}")))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            CreateImageSetOutcome::Created => created += 1,
            CreateImageSetOutcome::PrimaryExists { image_set, .. } => {
                assert!(image_set.is_primary)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1, "exactly one primary image set per series");
}

async fn version_compare_and_set(c: Arc<dyn Catalog>) {
    let ds = active_datastore(&*c, "imports-cas").await;
    let new = new_set(&ds, false, "7.7", "7.7.7", "cas");
    let id = new.image_set.id.clone();
    c.create_image_set(&new).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (c, ds, id) = (c.clone(), ds.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            c.begin_image_set_version(
                &ds,
                &id,
                1,
                ImageSetWorkflowStatus::Importing,
                &format!("j{i}"),
                Millis(50),
            )
            .await
            .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() == BeginVersionOutcome::Begun(2) {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one writer gets version 2");
}
