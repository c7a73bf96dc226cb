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
    /// The last "touch" (import into it, metadata or frame read, update, copy): what the
    /// storage tier follows.
    pub last_accessed_at: Millis,
}

/// HealthImaging's storage tiers: an image set not touched for 30 days is in Archive Instant
/// Access until the next touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageTier {
    FrequentAccess,
    ArchiveInstantAccess,
}

impl StorageTier {
    /// Time without a touch after which an image set is archived.
    pub const ARCHIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

    /// The tier of an image set last touched at `last_accessed_at`, seen at `now`.
    pub fn at(last_accessed_at: Millis, now: Millis) -> Self {
        if now.0 - last_accessed_at.0 >= Self::ARCHIVE_AFTER.as_millis() as i64 {
            StorageTier::ArchiveInstantAccess
        } else {
            StorageTier::FrequentAccess
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StorageTier::FrequentAccess => "FREQUENT_ACCESS",
            StorageTier::ArchiveInstantAccess => "ARCHIVE_INSTANT_ACCESS",
        }
    }
}

/// The sortable key of a study date and time: `YYYYMMDD` + `HHMMSS` + `ffffff` (20 digits).
/// `date` must be 8 digits; `time` is DICOM TM (`HH[MM[SS[.F{1,6}]]]`, the older `HH:MM:SS`
/// form too), missing parts being zero. `None` if either is malformed.
pub fn study_date_time_key(date: &str, time: Option<&str>) -> Option<String> {
    let date = date.trim();
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time = time.map(str::trim).unwrap_or("").replace(':', "");
    let (whole, fraction) = match time.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (time.as_str(), None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() > 6 || whole.len() % 2 == 1 || !digits(whole) {
        return None;
    }
    if let Some(f) = fraction
        && (f.is_empty() || f.len() > 6 || !digits(f) || whole.len() != 6)
    {
        return None;
    }
    let mut key = String::with_capacity(20);
    key.push_str(date);
    key.push_str(whole);
    key.extend(std::iter::repeat_n('0', 6 - whole.len()));
    let f = fraction.unwrap_or("");
    key.push_str(f);
    key.extend(std::iter::repeat_n('0', 6 - f.len()));
    Some(key)
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

/// What QIDO-RS (DICOMweb search) finds an image set's latest version by beyond its
/// [`ImageSetDicomTags`]: more study and series attributes, and one entry per instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QidoIndex {
    pub attributes: QidoAttributes,
    pub instances: Vec<QidoInstance>,
}

/// Study and series attributes QIDO-RS returns and matches that SearchImageSets does not.
/// Values are as stored (trimmed; several values joined by `\\`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QidoAttributes {
    pub referring_physician_name: Option<String>,
    pub series_description: Option<String>,
    pub series_date: Option<String>,
    pub series_time: Option<String>,
}

/// One instance of an image set as QIDO-RS finds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QidoInstance {
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: Option<String>,
    pub instance_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub number_of_frames: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_date_time_keys_sort_as_times() {
        let k = |d, t| study_date_time_key(d, t);
        assert_eq!(k("19991122", None).as_deref(), Some("19991122000000000000"));
        assert_eq!(
            k("19991122", Some("14")).as_deref(),
            Some("19991122140000000000")
        );
        assert_eq!(
            k("19991122", Some("1407")).as_deref(),
            Some("19991122140700000000")
        );
        assert_eq!(
            k("19991122", Some("140728.5")).as_deref(),
            Some("19991122140728500000")
        );
        assert_eq!(
            k("19991122", Some("14:07:28")).as_deref(),
            Some("19991122140728000000")
        );
        assert_eq!(
            k("19991122", Some("")).as_deref(),
            Some("19991122000000000000")
        );
        for (d, t) in [
            ("1999112", None),
            ("1999-11-2", None),
            ("19991122", Some("1")),
            ("19991122", Some("14a")),
            ("19991122", Some("1407.5")),
            ("19991122", Some("140728.1234567")),
            ("19991122", Some("140728.")),
        ] {
            assert_eq!(k(d, t), None, "{d} {t:?}");
        }
    }

    #[test]
    fn tiers_change_after_thirty_days() {
        let day = 86_400_000;
        assert_eq!(
            StorageTier::at(Millis(0), Millis(30 * day - 1)),
            StorageTier::FrequentAccess
        );
        assert_eq!(
            StorageTier::at(Millis(0), Millis(30 * day)),
            StorageTier::ArchiveInstantAccess
        );
    }

    #[test]
    fn names_round_trip() {
        for s in ImageSetWorkflowStatus::ALL {
            assert_eq!(ImageSetWorkflowStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ImageSetState::parse("LOCKED"), Some(ImageSetState::Locked));
    }
}
