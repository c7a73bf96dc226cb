//! Bounded DICOM P10 parsing and the HealthImaging image set metadata document.
//!
//! [`parse_p10`] turns the bytes of one P10 file into a [`ParsedInstance`]: the dicom-rs
//! object (for pixel data), the identifiers, the grouping key, the search tags and the
//! instance's metadata split by level ([`InstanceMetadata`]). Hostile input is bounded: a light
//! scanner checks every declared length, the nesting depth and the total size before dicom-rs
//! allocates anything. [`MetadataDocument`] is the whole image set document
//! (`GetImageSetMetadata`), built instance by instance.

mod changes;
mod dicom_json;
mod document;
mod instance;
mod instance_file;
mod json;
pub mod levels;
mod multi_valued;
mod p10;
mod scan;

pub use changes::{
    ChangeError, CopySelection, DUPLICATE_SOP_INSTANCE, SERIES_MISMATCH, UpdateOptions,
    parse_change_document, parse_copy_selection,
};
pub use dicom_json::{DicomJsonOptions, bulk_data_hash};
pub use document::{DocumentError, FrameEntry, MetadataDocument, StoredInstance, gzip};
pub use instance::parse_p10;
pub use instance_file::{
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, InstanceFileError, P10Parts, PixelData,
    SEQUENCE_DELIMITATION, basic_offsets, dataset_from_dicom_json, encapsulated_pixel_data_header,
    item_header, native_pixel_data_header, p10_parts, write_p10,
};
pub use json::{hex_key, is_multi_valued, key_of, tag_of_key};
pub use scan::{Encoding, ScanError, ScanLimits, ScanSummary, scan_dataset};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Resource limits for [`parse_p10`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted file, and largest inflated data set of a Deflated file (default 10 GiB,
    /// the HealthImaging per-file quota).
    pub max_file_bytes: u64,
    /// Deepest sequence nesting (default 32).
    pub max_sequence_depth: usize,
    /// Largest single value or pixel data fragment (default 4 GiB − 2, the largest encodable).
    pub max_element_bytes: u64,
    /// Largest inflated data set of a Deflated Explicit VR Little Endian file (default: 4 GiB).
    pub max_inflated_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 10 << 30,
            max_sequence_depth: 32,
            max_element_bytes: 0xFFFF_FFFE,
            max_inflated_bytes: 4 << 30,
        }
    }
}

/// Why a file was not imported; goes to `failure.ndjson`. The message names the DICOM keyword
/// or the problem and never contains values from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceError {
    /// `"ValidationException"` for problems with the file.
    pub exception_type: &'static str,
    pub message: String,
}

impl InstanceError {
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        InstanceError {
            exception_type: "ValidationException",
            message: message.into(),
        }
    }

    pub(crate) fn missing(keyword: &str) -> Self {
        Self::validation(format!("DICOM attribute {keyword} does not exist"))
    }
}

impl std::fmt::Display for InstanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.exception_type, self.message)
    }
}

impl std::error::Error for InstanceError {}

/// A note about a file that was imported anyway (`warning.ndjson`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// HealthImaging warning reason code (e.g. 45056 = 0xB000).
    pub code: u32,
    /// e.g. `"COERCION_OF_DATA_ELEMENTS"`.
    pub kind: &'static str,
    pub message: String,
}

/// The seven elements that decide which image set an instance belongs to (notes §3.4); trimmed
/// text, `None` when absent or empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct GroupingKey {
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub patient_id: Option<String>,
    pub study_instance_uid: Option<String>,
    pub study_id: Option<String>,
    pub series_instance_uid: Option<String>,
    pub series_number: Option<String>,
}

/// What `SearchImageSets` returns in `DICOMTags` (notes §7), trimmed; `None` when absent/empty:
/// the domain's record of what an image set is found by.
pub use lightbox_domain::ImageSetDicomTags as SearchTags;

/// The metadata of one instance, split by level of the image set document. Patient, study and
/// series maps are sorted by keyword (as in AWS output); the instance map is in tag order (group
/// 0002 first); sequence items are always in tag order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceMetadata {
    pub patient: Map<String, Value>,
    pub study: Map<String, Value>,
    pub series: Map<String, Value>,
    /// Instance-level attributes including the file meta group 0002 and `PixelData: null`.
    pub instance: Map<String, Value>,
    /// VRs of the hex-keyed (private / unknown) attributes, any nesting level.
    pub dicom_vrs: Map<String, Value>,
}

/// One parsed P10 file.
#[derive(Debug, Clone)]
pub struct ParsedInstance {
    /// The whole data set (without group 0002) including Pixel Data.
    pub object: dicom_object::InMemDicomObject,
    /// The original transfer syntax UID (from the meta group, or detected for meta-less files).
    pub transfer_syntax: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub grouping: GroupingKey,
    pub search: SearchTags,
    pub metadata: InstanceMetadata,
    pub warnings: Vec<Warning>,
    /// The file had no file meta group; the transfer syntax was detected.
    pub meta_synthesized: bool,
}
