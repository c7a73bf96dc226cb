//! The Catalog conformance suite: CRUD, idempotency, quota, pagination, compare-and-set under
//! concurrency, delete guards and tags. Panics (assertions) on any deviation.

use std::sync::Arc;

use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetId, ImageSetState,
    ImageSetWorkflowStatus, LosslessStorageFormat, Millis, ResourceRef,
};

use crate::{
    Catalog, CreateDatastoreOutcome, DeleteDatastoreOutcome, JobOutcome, JobState, Lease,
    NewDatastore, NewJob, TagOutcome,
};

fn delete_job(id: &DatastoreId) -> NewJob {
    NewJob {
        id: format!("delete-{id}"),
        kind: "test.delete".into(),
        payload: format!("{{\"datastoreId\":\"{id}\"}}"),
        not_before: Millis(0),
    }
}

fn datastore(name: &str, token: &str, at: i64) -> Datastore {
    Datastore {
        id: DatastoreId::generate(),
        name: name.into(),
        status: DatastoreStatus::Creating,
        kms_key_arn: None,
        lambda_authorizer_arn: Some("arn:aws:lambda:us-east-1:000000000000:function:f".into()),
        lossless_storage_format: LosslessStorageFormat::Jpeg2000Lossless,
        created_at: Millis(at),
        updated_at: Millis(at),
        client_token: token.into(),
        request_fingerprint: format!("fp-{name}"),
    }
}

async fn create(c: &dyn Catalog, d: Datastore, quota: u32) -> CreateDatastoreOutcome {
    c.create_datastore(NewDatastore {
        datastore: d,
        quota,
        tags: vec![],
        job: None,
    })
    .await
    .expect("create_datastore")
}

/// Runs every check on an empty catalog.
pub async fn run(catalog: Arc<dyn Catalog>) {
    settings(&*catalog).await;
    create_get_and_idempotency(&*catalog).await;
    pagination(&*catalog).await;
    compare_and_set_under_concurrency(catalog.clone()).await;
    concurrent_creates_with_one_token(catalog.clone()).await;
    delete_guards(&*catalog).await;
    tags(&*catalog).await;
    quota(&*catalog).await;
    jobs(catalog.clone()).await;
    super::imports::run(catalog.clone()).await;
}

async fn settings(c: &dyn Catalog) {
    let a = c.setting_or_init("secret", "first").await.unwrap();
    let b = c.setting_or_init("secret", "second").await.unwrap();
    assert_eq!(a, "first");
    assert_eq!(b, "first", "the first writer of a setting wins");
}

async fn create_get_and_idempotency(c: &dyn Catalog) {
    let d = datastore("alpha", "tok-alpha", 1_000);
    let CreateDatastoreOutcome::Created(created) = create(c, d.clone(), 100).await else {
        panic!("expected Created")
    };
    assert_eq!(created, d);
    assert_eq!(c.get_datastore(&d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(
        c.get_datastore(&DatastoreId::generate()).await.unwrap(),
        None
    );
    let again = datastore("other-name", "tok-alpha", 2_000);
    match create(c, again, 100).await {
        CreateDatastoreOutcome::ExistingToken(found) => assert_eq!(found, d),
        other => panic!("expected ExistingToken, got {other:?}"),
    }
    let moved = c
        .transition_datastore(
            &d.id,
            &[DatastoreStatus::Creating],
            DatastoreStatus::Active,
            Millis(1_500),
        )
        .await
        .unwrap()
        .expect("CREATING -> ACTIVE applies");
    assert_eq!(moved.status, DatastoreStatus::Active);
    assert_eq!(moved.updated_at, Millis(1_500));
    assert_eq!(
        c.get_datastore(&d.id).await.unwrap().unwrap().status,
        DatastoreStatus::Active
    );
    assert!(
        c.transition_datastore(
            &d.id,
            &[DatastoreStatus::Creating],
            DatastoreStatus::Active,
            Millis(1_600)
        )
        .await
        .unwrap()
        .is_none(),
        "a transition from a status the row is not in must not apply"
    );
}

async fn pagination(c: &dyn Catalog) {
    // 7 more data stores, some sharing a creation time: the listing follows creation order.
    let mut ids = vec![];
    for i in 0..7 {
        let d = datastore(
            &format!("page-{i}"),
            &format!("tok-page-{i}"),
            10_000 + (i / 2) * 10,
        );
        ids.push((d.created_at, d.id.clone()));
        create(c, d, 100).await;
    }
    let all = c.list_datastores(None, None, 50).await.unwrap();
    assert!(all.next.is_none());
    let listed: Vec<_> = all.items.iter().map(|d| d.id.clone()).collect();
    let mut created: Vec<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    created.reverse();
    assert_eq!(
        &listed[..7],
        &created[..],
        "newest first in creation order, even for equal creation times"
    );
    assert_eq!(all.items.len(), 8);

    for limit in [1u32, 2, 3, 7, 8] {
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let page = c
                .list_datastores(None, cursor.as_ref(), limit)
                .await
                .unwrap();
            assert!(page.items.len() <= limit as usize);
            seen.extend(page.items.iter().map(|d| d.id.clone()));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let expected: Vec<_> = all.items.iter().map(|d| d.id.clone()).collect();
        assert_eq!(
            seen, expected,
            "paging with limit {limit} visits every item once, in order"
        );
    }
    let active = c
        .list_datastores(Some(DatastoreStatus::Active), None, 50)
        .await
        .unwrap();
    assert_eq!(active.items.len(), 1);
    assert_eq!(active.items[0].name, "alpha");
    let bad = crate::Cursor("nonsense".into());
    assert!(c.list_datastores(None, Some(&bad), 5).await.is_err());
}

async fn compare_and_set_under_concurrency(c: Arc<dyn Catalog>) {
    let d = datastore("cas", "tok-cas", 50_000);
    create(&*c, d.clone(), 100).await;
    let mut tasks = vec![];
    for i in 0..12 {
        let c = c.clone();
        let id = d.id.clone();
        tasks.push(tokio::spawn(async move {
            c.transition_datastore(
                &id,
                &[DatastoreStatus::Creating],
                DatastoreStatus::Active,
                Millis(60_000 + i),
            )
            .await
            .unwrap()
            .is_some()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent compare-and-set wins");
}

async fn concurrent_creates_with_one_token(c: Arc<dyn Catalog>) {
    let mut tasks = vec![];
    for i in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            create(
                &*c,
                datastore(&format!("race-{i}"), "tok-race", 70_000 + i),
                100,
            )
            .await
        }));
    }
    let mut created = vec![];
    let mut existing = vec![];
    for t in tasks {
        match t.await.unwrap() {
            CreateDatastoreOutcome::Created(d) => created.push(d),
            CreateDatastoreOutcome::ExistingToken(d) => existing.push(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one data store per client token");
    assert!(existing.iter().all(|d| d.id == created[0].id));
}

async fn delete_guards(c: &dyn Catalog) {
    let d = datastore("guarded", "tok-guarded", 80_000);
    create(c, d.clone(), 100).await;
    assert_eq!(
        c.begin_delete_datastore(&d.id, Millis(80_001), delete_job(&d.id))
            .await
            .unwrap(),
        DeleteDatastoreOutcome::WrongStatus(DatastoreStatus::Creating)
    );
    c.transition_datastore(
        &d.id,
        &[DatastoreStatus::Creating],
        DatastoreStatus::Active,
        Millis(80_002),
    )
    .await
    .unwrap()
    .unwrap();
    let set = ImageSet {
        datastore_id: d.id.clone(),
        id: ImageSetId::generate(),
        version: 1,
        state: ImageSetState::Active,
        workflow_status: ImageSetWorkflowStatus::Created,
        is_primary: true,
        created_at: Millis(80_003),
        updated_at: Millis(80_003),
        deleted_at: None,
        last_accessed_at: Millis(80_003),
    };
    c.insert_image_set(&set).await.unwrap();
    assert_eq!(
        c.get_image_set(&d.id, &set.id).await.unwrap(),
        Some(set.clone())
    );
    assert_eq!(
        c.begin_delete_datastore(&d.id, Millis(80_004), delete_job(&d.id))
            .await
            .unwrap(),
        DeleteDatastoreOutcome::NotEmpty
    );
    assert_eq!(
        c.begin_delete_datastore(&DatastoreId::generate(), Millis(80_004), delete_job(&d.id))
            .await
            .unwrap(),
        DeleteDatastoreOutcome::NotFound
    );

    let empty = datastore("empty", "tok-empty", 81_000);
    create(c, empty.clone(), 100).await;
    c.transition_datastore(
        &empty.id,
        &[DatastoreStatus::Creating],
        DatastoreStatus::Active,
        Millis(81_001),
    )
    .await
    .unwrap()
    .unwrap();
    let DeleteDatastoreOutcome::Deleting(deleting) = c
        .begin_delete_datastore(&empty.id, Millis(81_002), delete_job(&empty.id))
        .await
        .unwrap()
    else {
        panic!("expected Deleting")
    };
    assert_eq!(deleting.status, DatastoreStatus::Deleting);
    let job = c.get_job(&format!("delete-{}", empty.id)).await.unwrap();
    assert!(
        job.is_some_and(|j| j.kind == "test.delete" && j.state == JobState::Queued),
        "the deletion's job is enqueued with the status change"
    );
    assert!(
        c.insert_image_set(&ImageSet {
            datastore_id: empty.id.clone(),
            id: ImageSetId::generate(),
            ..set.clone()
        })
        .await
        .is_err(),
        "no image set may enter a data store that is being deleted"
    );
    c.transition_datastore(
        &empty.id,
        &[DatastoreStatus::Deleting],
        DatastoreStatus::Deleted,
        Millis(81_003),
    )
    .await
    .unwrap()
    .unwrap();
    match c
        .begin_delete_datastore(&empty.id, Millis(81_004), delete_job(&empty.id))
        .await
        .unwrap()
    {
        DeleteDatastoreOutcome::Deleting(again) => {
            assert_eq!(again.status, DatastoreStatus::Deleted)
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn tags(c: &dyn Catalog) {
    let with_tags = datastore("born-tagged", "tok-born-tagged", 89_000);
    c.create_datastore(NewDatastore {
        datastore: with_tags.clone(),
        quota: 100,
        tags: vec![("env".into(), "dev".into())],
        job: Some(NewJob {
            id: "activate-born-tagged".into(),
            kind: "test.activate".into(),
            payload: "{}".into(),
            not_before: Millis(89_000),
        }),
    })
    .await
    .unwrap();
    assert_eq!(
        c.list_tags(&ResourceRef::Datastore(with_tags.id))
            .await
            .unwrap(),
        Some(vec![("env".to_string(), "dev".to_string())]),
        "tags given at creation are stored with the data store"
    );
    assert_eq!(
        c.get_job("activate-born-tagged")
            .await
            .unwrap()
            .map(|j| j.state),
        Some(JobState::Queued),
        "a job given at creation is enqueued with the data store"
    );
    let d = datastore("tagged", "tok-tagged", 90_000);
    create(c, d.clone(), 100).await;
    let r = ResourceRef::Datastore(d.id.clone());
    assert_eq!(c.list_tags(&r).await.unwrap(), Some(vec![]));
    let t = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        c.tag_resource(&r, &[t("b", "2"), t("a", "1")], 3)
            .await
            .unwrap(),
        TagOutcome::Done
    );
    assert_eq!(
        c.tag_resource(&r, &[t("a", "one")], 3).await.unwrap(),
        TagOutcome::Done
    );
    assert_eq!(
        c.list_tags(&r).await.unwrap(),
        Some(vec![t("a", "one"), t("b", "2")])
    );
    assert_eq!(
        c.tag_resource(&r, &[t("c", "3"), t("d", "4")], 3)
            .await
            .unwrap(),
        TagOutcome::TooManyTags
    );
    assert_eq!(
        c.list_tags(&r).await.unwrap().unwrap().len(),
        2,
        "a refused change applies nothing"
    );
    assert_eq!(
        c.untag_resource(&r, &["a".into(), "zz".into()])
            .await
            .unwrap(),
        TagOutcome::Done
    );
    assert_eq!(c.list_tags(&r).await.unwrap(), Some(vec![t("b", "2")]));

    let missing = ResourceRef::Datastore(DatastoreId::generate());
    assert_eq!(c.list_tags(&missing).await.unwrap(), None);
    assert_eq!(
        c.tag_resource(&missing, &[t("a", "1")], 50).await.unwrap(),
        TagOutcome::NotFound
    );
    assert_eq!(
        c.untag_resource(&missing, &["a".into()]).await.unwrap(),
        TagOutcome::NotFound
    );
    let missing_set = ResourceRef::ImageSet(d.id.clone(), ImageSetId::generate());
    assert_eq!(c.list_tags(&missing_set).await.unwrap(), None);
}

async fn quota(c: &dyn Catalog) {
    let live = c.list_datastores(None, None, 50).await.unwrap().items;
    let live = live
        .iter()
        .filter(|d| d.status != DatastoreStatus::Deleted)
        .count() as u32;
    match create(c, datastore("over", "tok-over", 99_000), live).await {
        CreateDatastoreOutcome::QuotaExceeded => {}
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    match create(c, datastore("under", "tok-under", 99_001), live + 1).await {
        CreateDatastoreOutcome::Created(_) => {}
        other => panic!("expected Created, got {other:?}"),
    }
}

fn lease(owner: &str, now: i64) -> Lease<'_> {
    Lease {
        owner,
        now: Millis(now),
        duration: std::time::Duration::from_millis(1_000),
        max_attempts: 3,
    }
}

fn job(id: &str, kind: &str, not_before: i64) -> NewJob {
    NewJob {
        id: id.into(),
        kind: kind.into(),
        payload: format!("{{\"n\":\"{id}\"}}"),
        not_before: Millis(not_before),
    }
}

async fn jobs(c: Arc<dyn Catalog>) {
    let t0 = 1_000_000;
    assert!(c.enqueue_job(job("j1", "q.a", t0)).await.unwrap());
    assert!(
        !c.enqueue_job(job("j1", "q.a", t0)).await.unwrap(),
        "enqueue is idempotent by id"
    );
    c.enqueue_job(job("j2", "q.b", t0 + 10)).await.unwrap();
    c.enqueue_job(job("j3", "q.a", t0 + 5_000)).await.unwrap();

    assert!(
        c.claim_job(&["q.zzz"], &lease("n1", t0 + 100))
            .await
            .unwrap()
            .is_none(),
        "kind filter"
    );
    let a = c
        .claim_job(&["q.a", "q.b"], &lease("n1", t0 + 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.id.as_str(), a.state, a.attempts),
        ("j1", JobState::Running, 1)
    );
    assert_eq!(a.lease_owner.as_deref(), Some("n1"));
    let b = c
        .claim_job(&["q.a", "q.b"], &lease("n2", t0 + 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, "j2", "a held job is not handed out twice");
    assert!(
        c.claim_job(&["q.a", "q.b"], &lease("n2", t0 + 100))
            .await
            .unwrap()
            .is_none(),
        "j3 is not due yet"
    );

    // Only the holder renews or finishes; a finished job stays finished.
    assert!(
        !c.renew_job_lease("j1", &lease("n2", t0 + 200))
            .await
            .unwrap()
    );
    assert!(
        c.renew_job_lease("j1", &lease("n1", t0 + 200))
            .await
            .unwrap()
    );
    let done = JobOutcome::Succeeded("ok".into());
    assert!(
        !c.finish_job("j1", "n2", &done, Millis(t0 + 300))
            .await
            .unwrap()
    );
    assert!(
        c.finish_job("j1", "n1", &done, Millis(t0 + 300))
            .await
            .unwrap()
    );
    let j1 = c.get_job("j1").await.unwrap().unwrap();
    assert_eq!(
        (j1.state, j1.result.as_deref()),
        (JobState::Succeeded, Some("ok"))
    );
    assert!(
        !c.finish_job("j1", "n1", &done, Millis(t0 + 301))
            .await
            .unwrap()
    );

    // n2 dies holding j2: after its lease expires another node takes it over.
    let later = t0 + 100 + 1_001;
    let taken = c
        .claim_job(&["q.b"], &lease("n3", later))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id.as_str(), taken.attempts), ("j2", 2));
    assert!(
        !c.renew_job_lease("j2", &lease("n2", later)).await.unwrap(),
        "the dead owner lost it"
    );
    assert!(
        !c.finish_job("j2", "n2", &done, Millis(later))
            .await
            .unwrap()
    );
    // ...and a job whose owners keep dying is failed after max_attempts claims.
    let t = c
        .claim_job(&["q.b"], &lease("n4", later + 1_001))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.attempts, 3);
    assert!(
        c.claim_job(&["q.b"], &lease("n5", later + 2_002))
            .await
            .unwrap()
            .is_none()
    );
    let j2 = c.get_job("j2").await.unwrap().unwrap();
    assert_eq!(j2.state, JobState::Failed);
    assert!(j2.result.unwrap().contains("abandoned"));

    // A job started leased is held like a claimed one: not claimable before its lease
    // expires, renewed and finished only by its owner, taken over once the lease expires.
    let s0 = t0 + 10_000;
    let started = job("s1", "q.s", s0);
    c.start_leased_job(&started, &lease("n1", s0))
        .await
        .unwrap();
    let s1 = c.get_job("s1").await.unwrap().unwrap();
    assert_eq!(
        (
            s1.state,
            s1.attempts,
            s1.lease_owner.as_deref(),
            s1.lease_expires_at
        ),
        (JobState::Running, 1, Some("n1"), Some(Millis(s0 + 1_000)))
    );
    assert!(
        c.start_leased_job(&started, &lease("n2", s0))
            .await
            .is_err(),
        "an id that exists is an error"
    );
    assert!(
        c.claim_job(&["q.s"], &lease("n2", s0 + 500))
            .await
            .unwrap()
            .is_none(),
        "a started job is held until its lease expires"
    );
    assert!(
        !c.renew_job_lease("s1", &lease("n2", s0 + 600))
            .await
            .unwrap()
    );
    assert!(
        c.renew_job_lease("s1", &lease("n1", s0 + 600))
            .await
            .unwrap()
    );
    assert!(
        c.claim_job(&["q.s"], &lease("n2", s0 + 1_200))
            .await
            .unwrap()
            .is_none(),
        "a renewed lease holds the job longer"
    );
    let taken = c
        .claim_job(&["q.s"], &lease("n2", s0 + 1_601))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            taken.id.as_str(),
            taken.attempts,
            taken.lease_owner.as_deref()
        ),
        ("s1", 2, Some("n2"))
    );
    assert!(
        c.finish_job("s1", "n2", &done, Millis(s0 + 1_700))
            .await
            .unwrap()
    );
    c.start_leased_job(&job("s2", "q.s", s0), &lease("n1", s0))
        .await
        .unwrap();
    assert!(
        !c.finish_job("s2", "n2", &done, Millis(s0 + 100))
            .await
            .unwrap()
    );
    assert!(
        c.finish_job("s2", "n1", &done, Millis(s0 + 100))
            .await
            .unwrap()
    );
    let s2 = c.get_job("s2").await.unwrap().unwrap();
    assert_eq!((s2.state, s2.lease_owner), (JobState::Succeeded, None));
    assert!(
        c.claim_job(&["q.s"], &lease("n3", s0 + 5_000))
            .await
            .unwrap()
            .is_none(),
        "finished started jobs are not claimed again"
    );

    // Finished jobs older than the retention are purged, in batches; queued and running ones
    // never.
    assert!(
        c.purge_finished_jobs(Millis(t0 + 1_000), 100)
            .await
            .unwrap()
            >= 1
    );
    assert!(
        c.get_job("j1").await.unwrap().is_none(),
        "finished before: purged"
    );
    assert!(
        c.get_job("j2").await.unwrap().is_some(),
        "failed after: kept"
    );
    assert_eq!(
        c.purge_finished_jobs(Millis(t0 + 20_000), 1).await.unwrap(),
        1,
        "a batch is at most `limit` jobs"
    );
    while c.purge_finished_jobs(Millis(t0 + 20_000), 1).await.unwrap() > 0 {}
    for id in ["j2", "s1", "s2"] {
        assert!(c.get_job(id).await.unwrap().is_none(), "{id} purged");
    }
    let j3 = c.get_job("j3").await.unwrap().unwrap();
    assert_eq!(j3.state, JobState::Queued, "queued jobs are never purged");

    // Many concurrent claimers: every job is claimed exactly once.
    for i in 0..20 {
        c.enqueue_job(job(&format!("race-{i}"), "q.race", t0))
            .await
            .unwrap();
    }
    let mut tasks = vec![];
    for w in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            let mut got = vec![];
            while let Some(j) = c
                .claim_job(&["q.race"], &lease(&owner, t0 + 10))
                .await
                .unwrap()
            {
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("race-{i}")).collect();
    expected.sort();
    assert_eq!(
        all, expected,
        "each job claimed exactly once across concurrent workers"
    );
}
