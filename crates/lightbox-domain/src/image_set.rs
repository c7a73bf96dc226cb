//! Image sets: states, workflow statuses, and the catalog's record of one image set.

use crate::{DatastoreId, ImageSetId, Millis};

/// `ImageSetState`: whether an image set can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSetState {
    Active,
    Locked,
    Deleted,
}

impl ImageSetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Locked => "LOCKED",
            Self::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Locked, Self::Deleted]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// `ImageSetWorkflowStatus`: what last happened (or is happening) to an image set version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSetWorkflowStatus {
    Created,
    Copied,
    Copying,
    CopyingWithReadOnlyAccess,
    CopyFailed,
    Updating,
    UpdatingForStudyConsistency,
    Updated,
    UpdateFailed,
    Deleting,
    Deleted,
    Importing,
    Imported,
    ImportFailed,
}

impl ImageSetWorkflowStatus {
    pub const ALL: [ImageSetWorkflowStatus; 14] = [
        Self::Created,
        Self::Copied,
        Self::Copying,
        Self::CopyingWithReadOnlyAccess,
        Self::CopyFailed,
        Self::Updating,
        Self::UpdatingForStudyConsistency,
        Self::Updated,
        Self::UpdateFailed,
        Self::Deleting,
        Self::Deleted,
        Self::Importing,
        Self::Imported,
        Self::ImportFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Copied => "COPIED",
            Self::Copying => "COPYING",
            Self::CopyingWithReadOnlyAccess => "COPYING_WITH_READ_ONLY_ACCESS",
            Self::CopyFailed => "COPY_FAILED",
            Self::Updating => "UPDATING",
            Self::UpdatingForStudyConsistency => "UPDATING_FOR_STUDY_CONSISTENCY",
            Self::Updated => "UPDATED",
            Self::UpdateFailed => "UPDATE_FAILED",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
            Self::Importing => "IMPORTING",
            Self::Imported => "IMPORTED",
            Self::ImportFailed => "IMPORT_FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The catalog's record of an image set (its latest version).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub datastore_id: DatastoreId,
    pub id: ImageSetId,
    /// Latest version number, starting at 1.
    pub version: i64,
    pub state: ImageSetState,
    pub workflow_status: ImageSetWorkflowStatus,
    pub is_primary: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

/// The DICOM elements an image set is found and grouped by: SearchImageSets' `DICOMTags` and
/// filters, and the primary image set of a series. Values are as stored (trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSetDicomTags {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_instance_uid: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub study_description: Option<String>,
    pub series_instance_uid: Option<String>,
    pub series_modality: Option<String>,
    pub series_body_part: Option<String>,
    pub series_number: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ImageSetWorkflowStatus::ALL {
            assert_eq!(ImageSetWorkflowStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ImageSetState::parse("LOCKED"), Some(ImageSetState::Locked));
    }
}
