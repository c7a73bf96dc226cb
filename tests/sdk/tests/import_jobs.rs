//! DICOM import jobs through the Rust SDKs (aws-sdk-s3 to upload to the built-in S3,
//! aws-sdk-medicalimaging to run the job), on the backend `LIGHTBOX_TEST_BACKEND` names: job
//! lifecycle and members, outputs, image sets and versions in the catalog, idempotency,
//! pagination and errors.

use std::time::{Duration, Instant};

use lightbox_domain::{DatastoreId, ImageSetId, ImageSetState, ImageSetWorkflowStatus};
use lightbox_sdk_tests::aws_sdk_medicalimaging::Client;
use lightbox_sdk_tests::aws_sdk_medicalimaging::error::ProvideErrorMetadata;
use lightbox_sdk_tests::aws_sdk_medicalimaging::types::{DicomImportJobProperties, JobStatus};
use lightbox_sdk_tests::aws_sdk_s3::primitives::ByteStream;
use lightbox_sdk_tests::*;
use lightbox_storage::Catalog;
use serde_json::Value;

const ROLE: &str = "arn:aws:iam::000000000000:role/ImportRole";

async fn upload(srv: &TestServer, bucket: &str, key: &str, body: Vec<u8>) {
    srv.s3_client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn download(srv: &TestServer, uri_prefix: &str, name: &str) -> Vec<u8> {
    let rest = uri_prefix.strip_prefix("s3://").unwrap();
    let (bucket, prefix) = rest.split_once('/').unwrap();
    let out = srv
        .s3_client()
        .get_object()
        .bucket(bucket)
        .key(format!("{prefix}{name}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn start(client: &Client, ds: &str, input: &str, output: &str, token: &str) -> String {
    let out = client
        .start_dicom_import_job()
        .datastore_id(ds)
        .job_name("sdk-import")
        .data_access_role_arn(ROLE)
        .client_token(token)
        .input_s3_uri(input)
        .output_s3_uri(output)
        .send()
        .await
        .unwrap();
    assert_eq!(out.datastore_id(), ds);
    out.job_id().to_owned()
}

async fn wait_done(
    client: &Client,
    ds: &str,
    job: &str,
) -> (DicomImportJobProperties, Vec<JobStatus>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    loop {
        let props = client
            .get_dicom_import_job()
            .datastore_id(ds)
            .job_id(job)
            .send()
            .await
            .unwrap()
            .job_properties
            .unwrap();
        if seen.last() != Some(props.job_status()) {
            seen.push(props.job_status().clone());
        }
        if matches!(props.job_status(), JobStatus::Completed | JobStatus::Failed) {
            return (props, seen);
        }
        assert!(
            Instant::now() < deadline,
            "job still {:?}",
            props.job_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_creates_primary_image_sets_and_versions() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let ds = create_active(&client, "sdk-import").await.unwrap();
    let corpus = dicom_corpus().unwrap();
    let s3 = srv.s3_client();
    s3.create_bucket().bucket("dicom").send().await.unwrap();
    let files = [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "emri_small.dcm",
    ];
    for f in files {
        upload(
            &srv,
            "dicom",
            &format!("in/study/{f}"),
            std::fs::read(corpus.join(f)).unwrap(),
        )
        .await;
    }
    upload(&srv, "dicom", "in/readme.txt", b"not dicom".to_vec()).await;

    let job = start(&client, &ds, "s3://dicom/in/", "s3://dicom/out", "tok-1").await;
    let (props, seen) = wait_done(&client, &ds, &job).await;
    assert_eq!(props.job_status(), &JobStatus::Completed, "{props:?}");
    assert_eq!(seen.last(), Some(&JobStatus::Completed));
    assert_eq!(props.job_name(), "sdk-import");
    assert_eq!(props.data_access_role_arn(), ROLE);
    assert_eq!(props.input_s3_uri(), "s3://dicom/in/");
    let out = format!("s3://dicom/out/{ds}-DicomImport-{job}/");
    assert_eq!(props.output_s3_uri(), out);
    assert!(props.ended_at().is_some() && props.submitted_at().is_some());
    assert!(props.message().is_none());

    // Same clientToken, same request: the same job, as it is now.
    let again = client
        .start_dicom_import_job()
        .datastore_id(&ds)
        .job_name("sdk-import")
        .data_access_role_arn(ROLE)
        .client_token("tok-1")
        .input_s3_uri("s3://dicom/in/")
        .output_s3_uri("s3://dicom/out")
        .send()
        .await
        .unwrap();
    assert_eq!(again.job_id(), job);
    assert_eq!(again.job_status(), &JobStatus::Completed);

    let manifest: Value =
        serde_json::from_slice(&download(&srv, &out, "job-output-manifest.json").await).unwrap();
    let summary = &manifest["jobSummary"];
    assert_eq!(summary["numberOfScannedFiles"], 5);
    assert_eq!(summary["numberOfImportedFiles"], 4);
    assert_eq!(summary["numberOfFilesWithCustomerError"], 1);
    // MR_small and MR_small_RLE are the same SOP instance of one series: one image set.
    assert_eq!(summary["numberOfGeneratedImageSets"], 3);
    let success = ndjson(&download(&srv, &out, "SUCCESS/success.ndjson").await);
    assert_eq!(success.len(), 4);
    let failure = ndjson(&download(&srv, &out, "FAILURE/failure.ndjson").await);
    assert_eq!(failure.len(), 1);
    assert_eq!(failure[0]["inputFile"], "in/readme.txt");
    assert_eq!(
        failure[0]["exception"]["exceptionType"],
        "ValidationException"
    );

    // The catalog holds ACTIVE/CREATED primary image sets at version 1 with their frames.
    let catalog = srv.catalog().await.unwrap();
    let dsid = DatastoreId::parse(&ds).unwrap();
    let mut ids = Vec::new();
    for line in &success {
        assert_eq!(line["importResponse"]["isPrimary"], true);
        let id = ImageSetId::parse(line["importResponse"]["imageSetId"].as_str().unwrap()).unwrap();
        let set = catalog.get_image_set(&dsid, &id).await.unwrap().unwrap();
        assert_eq!(set.state, ImageSetState::Active);
        assert_eq!(set.workflow_status, ImageSetWorkflowStatus::Created);
        assert_eq!(set.version, 1);
        assert!(set.is_primary);
        let frames = catalog.list_image_frames(&dsid, &id, 1).await.unwrap();
        assert!(!frames.is_empty());
        assert!(
            frames
                .iter()
                .all(|f| f.transfer_syntax == "1.2.840.10008.1.2.4.202")
        );
        ids.push((line["inputFile"].as_str().unwrap().to_owned(), id));
    }
    let emri = &ids
        .iter()
        .find(|(f, _)| f.ends_with("emri_small.dcm"))
        .unwrap()
        .1;
    assert_eq!(
        catalog
            .list_image_frames(&dsid, emri, 1)
            .await
            .unwrap()
            .len(),
        10
    );

    // Re-importing a series: a new IMPORTED version of its primary image set; the re-imported
    // SOP instance replaces the old one (its frames change from version 2 on).
    upload(
        &srv,
        "dicom",
        "again/CT_small.dcm",
        std::fs::read(corpus.join("CT_small.dcm")).unwrap(),
    )
    .await;
    let job2 = start(
        &client,
        &ds,
        "s3://dicom/again/",
        "s3://dicom/out/",
        "tok-2",
    )
    .await;
    let (props2, _) = wait_done(&client, &ds, &job2).await;
    assert_eq!(props2.job_status(), &JobStatus::Completed);
    let ct = &ids
        .iter()
        .find(|(f, _)| f.ends_with("CT_small.dcm"))
        .unwrap()
        .1;
    let set = catalog.get_image_set(&dsid, ct).await.unwrap().unwrap();
    assert_eq!(
        (set.version, set.state, set.workflow_status),
        (2, ImageSetState::Active, ImageSetWorkflowStatus::Imported)
    );
    let v1 = catalog.list_image_frames(&dsid, ct, 1).await.unwrap();
    let v2 = catalog.list_image_frames(&dsid, ct, 2).await.unwrap();
    assert_eq!((v1.len(), v2.len()), (1, 1));
    assert_ne!(v1[0].frame_id, v2[0].frame_id, "the instance was replaced");
    let manifest2: Value = serde_json::from_slice(
        &download(
            &srv,
            &format!("s3://dicom/out/{ds}-DicomImport-{job2}/"),
            "job-output-manifest.json",
        )
        .await,
    )
    .unwrap();
    let sets = manifest2["jobSummary"]["imageSetsSummary"]
        .as_array()
        .unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["imageSetId"], ct.as_str());
    assert_eq!(sets[0]["imageSetVersion"], 2);

    // Listing: newest first, one per page with nextToken, status filter.
    let page = client
        .list_dicom_import_jobs()
        .datastore_id(&ds)
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.job_summaries()[0].job_id(), job2);
    let token = page.next_token().unwrap().to_owned();
    let page2 = client
        .list_dicom_import_jobs()
        .datastore_id(&ds)
        .max_results(1)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(page2.job_summaries()[0].job_id(), job);
    assert!(page2.next_token().is_none());
    let completed = client
        .list_dicom_import_jobs()
        .datastore_id(&ds)
        .job_status(JobStatus::Failed)
        .send()
        .await
        .unwrap();
    assert!(completed.job_summaries().is_empty());
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_job_errors() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    // A data store still CREATING: ConflictException.
    let creating = client
        .create_datastore()
        .datastore_name("creating")
        .send()
        .await
        .unwrap()
        .datastore_id()
        .to_owned();
    let err = client
        .start_dicom_import_job()
        .datastore_id(&creating)
        .data_access_role_arn(ROLE)
        .input_s3_uri("s3://bucket-in/x/")
        .output_s3_uri("s3://bucket-out/y/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ConflictException"), "{err:?}");
    wait_active(&client, &creating).await.unwrap();
    // Unknown data store and job.
    let err = client
        .start_dicom_import_job()
        .datastore_id(random_id())
        .data_access_role_arn(ROLE)
        .input_s3_uri("s3://bucket-in/x/")
        .output_s3_uri("s3://bucket-out/y/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"), "{err:?}");
    let err = client
        .get_dicom_import_job()
        .datastore_id(&creating)
        .job_id(random_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"), "{err:?}");
    let err = client
        .list_dicom_import_jobs()
        .datastore_id(random_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"), "{err:?}");
    // Reused clientToken with a different request.
    start(
        &client,
        &creating,
        "s3://bucket-in/x/",
        "s3://bucket-out/y/",
        "same",
    )
    .await;
    let err = client
        .start_dicom_import_job()
        .datastore_id(&creating)
        .data_access_role_arn(ROLE)
        .client_token("same")
        .input_s3_uri("s3://bucket-in/other/")
        .output_s3_uri("s3://bucket-out/y/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ConflictException"), "{err:?}");
    // A missing output bucket ends the job FAILED with a message.
    let s3 = srv.s3_client();
    s3.create_bucket().bucket("bucket-in").send().await.unwrap();
    let job = start(
        &client,
        &creating,
        "s3://bucket-in/x/",
        "s3://no-such-out/y/",
        "t2",
    )
    .await;
    let (props, _) = wait_done(&client, &creating, &job).await;
    assert_eq!(props.job_status(), &JobStatus::Failed);
    assert!(
        props
            .message()
            .unwrap()
            .contains("output S3 bucket does not exist"),
        "{props:?}"
    );
    // Invalid inputOwnerAccountId is a ValidationException naming the member.
    let err = client
        .start_dicom_import_job()
        .datastore_id(&creating)
        .data_access_role_arn(ROLE)
        .input_s3_uri("s3://bucket-in/x/")
        .output_s3_uri("s3://bucket-out/y/")
        .input_owner_account_id("12")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("inputOwnerAccountId")
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unfinished_job_quota_is_service_quota_exceeded() {
    // A quota of 0 makes every start exceed it, without racing a worker that finishes jobs.
    let srv = TestServer::start_with(|c| c.import.max_running_jobs = 0)
        .await
        .unwrap();
    let client = srv.client();
    let ds = create_active(&client, "quota").await.unwrap();
    let err = client
        .start_dicom_import_job()
        .datastore_id(&ds)
        .data_access_role_arn(ROLE)
        .input_s3_uri("s3://bucket-in/x/")
        .output_s3_uri("s3://bucket-out/y/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ServiceQuotaExceededException"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(402));
    srv.shutdown().await.unwrap();
}
