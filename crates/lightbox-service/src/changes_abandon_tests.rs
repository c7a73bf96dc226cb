//! `abandon_change`: an `image_set.change` job taken over more than `MAX_WORK_ATTEMPTS` times
//! ends its versions FAILED with the previous documents kept and its read-only locks released,
//! instead of redoing the work. The job queue is driven by hand (claims whose leases expire),
//! then the job is run the way the worker runs it (`run_image_set_change`, what `execute`
//! dispatches `image_set.change` jobs to).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use lightbox_dicom::{FrameEntry, InstanceMetadata, MetadataDocument, StoredInstance};
use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetId, ImageSetState,
    ImageSetWorkflowStatus, LosslessStorageFormat, Millis,
};
use lightbox_storage::{
    BlobStore, Catalog, CreateDatastoreOutcome, CreateImageSetOutcome, ImageSetSearch,
    ImageSetSortField, Job, JobOutcome, Lease, NewDatastore, NewImageSet, ObjectBlobStore,
    SqlCatalog,
};
use serde_json::{Map, Value, json};

use super::{
    CopyInput, IMAGE_SET_CHANGE, MAX_WORK_ATTEMPTS, MetadataUpdates, UpdateInput, content_of,
};
use crate::{OffsetClock, Service, ServiceConfig, ServiceError};

const STUDY_UID: &str = "2.25.1000";
/// The series of the image set that is updated.
const UPDATED_SERIES: &str = "2.25.1001";
/// The series of the image set that is copied.
const COPIED_SERIES: &str = "2.25.1002";
const UPDATE: &[u8] = br#"{"SchemaVersion":1.1,"Study":{"DICOM":{"StudyDescription":"CHANGED"}}}"#;
const NODE: &str = "changes-abandon-test-node";
/// Each claim's lease; the next claim comes `CLAIM_STEP` later, after it expired.
const LEASE: Duration = Duration::from_secs(1);
const CLAIM_STEP: i64 = 10_000;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! object literal"),
    }
}

/// A one-instance document (one frame entry) of series `series` of `STUDY_UID`.
fn document(ds: &DatastoreId, id: &ImageSetId, series: &str, n: u32) -> MetadataDocument {
    let mut doc = MetadataDocument::new(ds.as_str(), id.as_str());
    let sop = format!("{series}.{n}");
    let meta = InstanceMetadata {
        patient: obj(json!({"PatientID": "PAT-ABANDON", "PatientName": "DOE^JANE"})),
        study: obj(json!({
            "AccessionNumber": "ACC-ABANDON",
            "StudyDate": "20240102",
            "StudyDescription": "ORIGINAL",
            "StudyID": "7",
            "StudyInstanceUID": STUDY_UID,
        })),
        series: obj(json!({
            "Modality": "CT",
            "SeriesInstanceUID": series,
            "SeriesNumber": n.to_string(),
        })),
        instance: obj(json!({
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
            "SOPInstanceUID": sop,
            "InstanceNumber": "1",
            "Rows": 16,
            "Columns": 16,
            "BitsAllocated": 16,
            "PixelData": null,
        })),
        dicom_vrs: Map::new(),
    };
    let stored = StoredInstance {
        stored_transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
        frames: vec![FrameEntry {
            id: format!("{:032x}", u128::from(n) + 0xabc0),
            checksums: vec![(16, 16, 12345)],
            min_pixel_value: Some(0),
            max_pixel_value: Some(4095),
            frame_size_in_bytes: 100,
        }],
    };
    doc.put_instance(&meta, series, &sop, &stored);
    doc
}

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Service,
    catalog: Arc<SqlCatalog>,
    ds: DatastoreId,
    /// Updated: version 1 -> 2.
    updated: ImageSetId,
    /// The copy's source (read-only while the copy runs).
    source: ImageSetId,
    /// The copy's destination, created LOCKED / COPYING at version 1.
    destination: ImageSetId,
    /// Version 1's documents (compact JSON) of `updated` and `source`.
    updated_doc: Vec<u8>,
    source_doc: Vec<u8>,
}

/// An ACTIVE data store holding two primary image sets (version 1, CREATED, a real gzip
/// document each, written straight through the catalog and blob store), one being updated
/// (StudyDescription) and one being copied into a new image set, both begun through the
/// service methods the API calls.
async fn setup() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(
        SqlCatalog::open_sqlite_file(&dir.path().join("catalog.db"))
            .await
            .unwrap(),
    );
    let blobs = Arc::new(ObjectBlobStore::local(&dir.path().join("blobs")).unwrap());
    let config = ServiceConfig {
        node_id: NODE.into(),
        ..ServiceConfig::default()
    };
    let svc = Service::new(
        catalog.clone(),
        blobs.clone(),
        config,
        Arc::new(OffsetClock::default()),
    )
    .await
    .unwrap();

    let ds = DatastoreId::generate();
    let t = svc.clock.now();
    let created = catalog
        .create_datastore(NewDatastore {
            datastore: Datastore {
                id: ds.clone(),
                name: "abandon".into(),
                status: DatastoreStatus::Active,
                kms_key_arn: None,
                lambda_authorizer_arn: None,
                lossless_storage_format: LosslessStorageFormat::default(),
                created_at: t,
                updated_at: t,
                client_token: "abandon".into(),
                request_fingerprint: "abandon".into(),
            },
            quota: 10,
            tags: vec![],
            job: None,
        })
        .await
        .unwrap();
    assert!(matches!(created, CreateDatastoreOutcome::Created(_)));

    let mut made = Vec::new();
    for (n, series) in [(1, UPDATED_SERIES), (2, COPIED_SERIES)] {
        let id = ImageSetId::generate();
        let doc = document(&ds, &id, series, n);
        let gz = doc.to_gzip();
        let key = format!(
            "datastores/{}/metadata/{}.json.gz",
            ds.as_str(),
            uuid::Uuid::new_v4().simple()
        );
        let size = gz.len() as u64;
        blobs.put(&key, Bytes::from(gz)).await.unwrap();
        let new = NewImageSet {
            image_set: ImageSet {
                datastore_id: ds.clone(),
                id: id.clone(),
                version: 1,
                state: ImageSetState::Active,
                workflow_status: ImageSetWorkflowStatus::Created,
                is_primary: true,
                created_at: t,
                updated_at: t,
                deleted_at: None,
                last_accessed_at: t,
            },
            content: content_of(&doc, key, size),
            frames: Vec::new(),
            job_id: "changes-abandon-test".into(),
        };
        let outcome = catalog.create_image_set(&new).await.unwrap();
        assert_eq!(outcome, CreateImageSetOutcome::Created);
        made.push((id, doc.to_json_bytes()));
    }
    let (source, source_doc) = made.pop().unwrap();
    let (updated, updated_doc) = made.pop().unwrap();

    let locked = svc
        .update_image_set_metadata(
            &ds,
            &updated,
            UpdateInput {
                latest_version: "1".into(),
                force: false,
                include_study_image_sets: false,
                updates: MetadataUpdates::Dicom {
                    updatable: Some(UPDATE.to_vec()),
                    removable: None,
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (locked.version, locked.state, locked.workflow_status),
        (2, ImageSetState::Locked, ImageSetWorkflowStatus::Updating)
    );
    let copy = svc
        .copy_image_set(
            &ds,
            &source,
            CopyInput {
                source_latest_version: "1".into(),
                copiable_attributes: Some(format!(
                    r#"{{"SchemaVersion":1.1,"Study":{{"Series":{{"{COPIED_SERIES}":{{}}}}}}}}"#
                )),
                destination: None,
                force: false,
                promote_to_primary: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (copy.source.state, copy.source.workflow_status),
        (
            ImageSetState::Locked,
            ImageSetWorkflowStatus::CopyingWithReadOnlyAccess
        )
    );
    assert_eq!(
        (
            copy.destination.version,
            copy.destination.state,
            copy.destination.workflow_status
        ),
        (1, ImageSetState::Locked, ImageSetWorkflowStatus::Copying)
    );

    Fixture {
        _dir: dir,
        svc,
        catalog,
        ds,
        updated,
        source,
        destination: copy.destination.id,
        updated_doc,
        source_doc,
    }
}

impl Fixture {
    /// Claims both `image_set.change` jobs `rounds` times, each round after the previous
    /// round's leases expired (a node that claimed them and died), and returns them as the last
    /// round claimed them: `(update job, copy job)`.
    async fn claim_rounds(&self, rounds: i64) -> (Job, Job) {
        let base = self.svc.clock.now().0;
        let mut last = Vec::new();
        for round in 0..rounds {
            let lease = Lease {
                owner: NODE,
                now: Millis(base + round * CLAIM_STEP),
                duration: LEASE,
                max_attempts: self.svc.config.job_max_attempts,
            };
            let mut claimed = Vec::new();
            while let Some(job) = self
                .catalog
                .claim_job(&[IMAGE_SET_CHANGE], &lease)
                .await
                .unwrap()
            {
                claimed.push(job);
            }
            assert_eq!(
                claimed.len(),
                2,
                "round {round}: both change jobs are claimed"
            );
            for job in &claimed {
                assert_eq!(job.kind, IMAGE_SET_CHANGE);
                assert_eq!(job.attempts, round + 1);
            }
            last = claimed;
        }
        last.sort_by_key(|j| !j.payload.contains(r#""op":"update""#));
        let copy = last.pop().unwrap();
        let update = last.pop().unwrap();
        assert!(
            update.payload.contains(r#""op":"update""#),
            "{}",
            update.payload
        );
        assert!(copy.payload.contains(r#""op":"copy""#), "{}", copy.payload);
        (update, copy)
    }

    /// Runs a claimed job as the worker does and records its outcome.
    async fn run(&self, job: &Job) -> String {
        let result = self.svc.run_image_set_change(job).await;
        let outcome = match &result {
            Ok(r) => JobOutcome::Succeeded(r.clone()),
            Err(r) => JobOutcome::Failed(r.clone()),
        };
        let recorded = self
            .catalog
            .finish_job(&job.id, NODE, &outcome, self.svc.clock.now())
            .await
            .unwrap();
        assert!(recorded, "the job's lease is still held");
        result.unwrap_or_else(|e| panic!("job {} failed: {e}", job.id))
    }

    /// GetImageSet of the latest version: `(latestVersionId, image set, version record)`.
    async fn latest(&self, id: &ImageSetId) -> (String, crate::ImageSetView) {
        let view = self.svc.get_image_set(&self.ds, id, None).await.unwrap();
        (view.image_set.version.to_string(), view)
    }

    /// GetImageSetMetadata of the latest version, inflated.
    async fn metadata(&self, id: &ImageSetId) -> Result<MetadataDocument, ServiceError> {
        let (body, _) = self.svc.get_image_set_metadata(&self.ds, id, None).await?;
        let chunks: Vec<Bytes> = body.try_collect().await.unwrap();
        Ok(MetadataDocument::from_gzip(&chunks.concat()).unwrap())
    }

    /// Every image set of the data store (SearchImageSets) is ACTIVE.
    async fn assert_nothing_locked(&self) {
        let all = self
            .catalog
            .search_image_sets(
                &self.ds,
                &ImageSetSearch {
                    filters: vec![],
                    sort: ImageSetSortField::UpdatedAt,
                    descending: true,
                },
                None,
                50,
            )
            .await
            .unwrap();
        assert_eq!(all.items.len(), 3);
        for s in &all.items {
            assert_eq!(
                s.image_set.state,
                ImageSetState::Active,
                "{} is {:?} / {:?}",
                s.image_set.id,
                s.image_set.state,
                s.image_set.workflow_status
            );
        }
        for id in [&self.updated, &self.source, &self.destination] {
            let s = self.catalog.get_image_set(&self.ds, id).await.unwrap();
            assert_eq!(s.unwrap().state, ImageSetState::Active, "{id}");
        }
    }
}

fn study_description(doc: &MetadataDocument) -> &Value {
    &doc.as_json()["Study"]["DICOM"]["StudyDescription"]
}

#[tokio::test]
async fn changes_abandon_ends_versions_failed_after_repeated_takeovers() {
    let f = setup().await;
    let (update, copy) = f.claim_rounds(MAX_WORK_ATTEMPTS + 1).await;
    assert!(update.attempts > MAX_WORK_ATTEMPTS && copy.attempts > MAX_WORK_ATTEMPTS);

    assert_eq!(f.run(&update).await, "ended FAILED after interruptions");
    assert_eq!(f.run(&copy).await, "ended FAILED after interruptions");

    // The update: version 2 UPDATE_FAILED with a message, holding version 1's document.
    let (latest, view) = f.latest(&f.updated).await;
    assert_eq!(latest, "2");
    assert_eq!(view.image_set.state, ImageSetState::Active);
    assert_eq!(
        view.image_set.workflow_status,
        ImageSetWorkflowStatus::UpdateFailed
    );
    assert_eq!(view.version.version, 2);
    assert_eq!(view.version.state, ImageSetState::Active);
    assert_eq!(
        view.version.workflow_status,
        ImageSetWorkflowStatus::UpdateFailed
    );
    let message = view.version.message.clone().expect("a failure message");
    assert!(message.contains("interrupted"), "{message}");
    let v1 = f
        .catalog
        .get_image_set_version(&f.ds, &f.updated, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.version.metadata_key, v1.metadata_key);
    assert_eq!(v1.workflow_status, ImageSetWorkflowStatus::Created);
    let doc = f.metadata(&f.updated).await.unwrap();
    assert_eq!(doc.to_json_bytes(), f.updated_doc);
    assert_eq!(study_description(&doc), &json!("ORIGINAL"));

    // The copy: the new image set ends COPY_FAILED (version 1, no document: it never had
    // one), the source is ACTIVE again with its previous status and document.
    let (latest, view) = f.latest(&f.destination).await;
    assert_eq!(latest, "1");
    assert_eq!(view.image_set.state, ImageSetState::Active);
    assert_eq!(
        view.image_set.workflow_status,
        ImageSetWorkflowStatus::CopyFailed
    );
    assert_eq!(
        view.version.workflow_status,
        ImageSetWorkflowStatus::CopyFailed
    );
    let message = view.version.message.clone().expect("a failure message");
    assert!(message.contains("interrupted"), "{message}");
    assert_eq!(view.version.metadata_key, None);
    assert!(matches!(
        f.metadata(&f.destination).await,
        Err(ServiceError::NotFound(_))
    ));
    // A destination without a document takes no update or copy: a conflict, not an internal
    // error.
    let update_it = f
        .svc
        .update_image_set_metadata(
            &f.ds,
            &f.destination,
            UpdateInput {
                latest_version: "1".into(),
                force: false,
                include_study_image_sets: false,
                updates: MetadataUpdates::Dicom {
                    updatable: Some(UPDATE.to_vec()),
                    removable: None,
                },
            },
        )
        .await;
    assert!(
        matches!(&update_it, Err(ServiceError::Conflict(m)) if m.contains("DeleteImageSet")),
        "{update_it:?}"
    );

    let (latest, view) = f.latest(&f.source).await;
    assert_eq!(latest, "1");
    assert_eq!(view.image_set.state, ImageSetState::Active);
    assert_eq!(
        view.image_set.workflow_status,
        ImageSetWorkflowStatus::Created
    );
    assert_eq!(
        view.version.workflow_status,
        ImageSetWorkflowStatus::Created
    );
    assert_eq!(view.version.message, None);
    assert_eq!(
        f.metadata(&f.source).await.unwrap().to_json_bytes(),
        f.source_doc
    );

    f.assert_nothing_locked().await;

    // A redelivery of the same abandoned job changes nothing more.
    let again = f.svc.run_image_set_change(&update).await.unwrap();
    assert_eq!(again, "already ended");
    assert_eq!(f.latest(&f.updated).await.0, "2");
}

/// Control: a job taken over once (attempts ≤ `MAX_WORK_ATTEMPTS`) redoes the work.
#[tokio::test]
async fn changes_abandon_not_before_max_attempts() {
    let f = setup().await;
    let (update, copy) = f.claim_rounds(MAX_WORK_ATTEMPTS).await;
    assert!(update.attempts <= MAX_WORK_ATTEMPTS && copy.attempts <= MAX_WORK_ATTEMPTS);

    assert_eq!(f.run(&update).await, "UPDATED");
    assert_eq!(f.run(&copy).await, "COPIED");

    let (latest, view) = f.latest(&f.updated).await;
    assert_eq!(latest, "2");
    assert_eq!(
        view.image_set.workflow_status,
        ImageSetWorkflowStatus::Updated
    );
    assert_eq!(view.version.message, None);
    let doc = f.metadata(&f.updated).await.unwrap();
    assert_eq!(study_description(&doc), &json!("CHANGED"));
    assert_ne!(doc.to_json_bytes(), f.updated_doc);

    let (latest, view) = f.latest(&f.destination).await;
    assert_eq!(latest, "1");
    assert_eq!(
        view.image_set.workflow_status,
        ImageSetWorkflowStatus::Copied
    );
    let doc = f.metadata(&f.destination).await.unwrap();
    assert_eq!(doc.image_set_id(), f.destination.as_str());
    assert_eq!(doc.instance_count(), 1);

    let (latest, view) = f.latest(&f.source).await;
    assert_eq!(latest, "1");
    assert_eq!(
        view.image_set.workflow_status,
        ImageSetWorkflowStatus::Created
    );
    assert_eq!(
        f.metadata(&f.source).await.unwrap().to_json_bytes(),
        f.source_doc
    );

    f.assert_nothing_locked().await;
}
