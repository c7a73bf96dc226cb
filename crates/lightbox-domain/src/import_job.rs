//! DICOM import jobs: their status machine and the catalog's record of one job.

use crate::{DatastoreId, Millis};

/// `JobStatus`: SUBMITTED -> IN_PROGRESS -> COMPLETED | FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportJobStatus {
    Submitted,
    InProgress,
    Completed,
    Failed,
}

impl ImportJobStatus {
    pub const ALL: [ImportJobStatus; 4] = [
        Self::Submitted,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// COMPLETED and FAILED are final.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// The catalog's record of one DICOM import job.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportJob {
    pub datastore_id: DatastoreId,
    /// 32 lower-case hex characters.
    pub id: String,
    pub name: Option<String>,
    pub status: ImportJobStatus,
    pub data_access_role_arn: String,
    pub input_s3_uri: String,
    /// The job-specific output prefix: `<outputS3Uri><datastoreId>-DicomImport-<jobId>/`.
    pub output_s3_uri: String,
    pub input_owner_account_id: Option<String>,
    /// `importConfiguration` as received (JSON text), echoed back.
    pub import_configuration: Option<String>,
    pub message: Option<String>,
    pub submitted_at: Millis,
    pub ended_at: Option<Millis>,
    pub updated_at: Millis,
    pub client_token: String,
    /// Digest of the request's parameters: a reused client token must carry the same request.
    pub request_fingerprint: String,
}

/// A new random import job id (32 lower-case hex characters, like AWS's).
pub fn new_import_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
