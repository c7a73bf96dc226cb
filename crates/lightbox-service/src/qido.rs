//! QIDO-RS (PS3.18 §10.6, notes §11.3): SearchDICOMStudies, SearchDICOMSeries and
//! SearchDICOMInstances over the live primary image sets of a data store (notes §3.4), from the
//! catalog's indexes; the start-up backfill of that index for image sets written before it.
//!
//! Query parameters: match keys by keyword or 8-hex tag for the attributes the catalog stores
//! (PS3.18 Table 10.6.1-5's study, series and instance keys, plus PatientBirthDate, PatientSex,
//! StudyDescription, SeriesDate and BodyPartExamined); `limit` (default and maximum 1000: a larger value is
//! capped, as PS3.18 §8.3.4.4 allows, and the caller is told so it can warn), `offset` (no cap:
//! every result is reachable, unlike HealthImaging's 10,000), `includefield` (keyword, tag,
//! dotted path or `all`, at most 50; unknown hex tags are ignored; at the instance level any
//! attribute of the instance, read from its metadata document, a dotted path returning its
//! top-level sequence), `fuzzymatching`.
//! Anything else — an unknown parameter, an attribute the catalog does not store given a value,
//! a malformed value — is a `Validation` error naming the parameter, never its value (values
//! are patient data).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use lightbox_dicom::{DicomJsonOptions, MetadataDocument};
use lightbox_domain::{DatastoreId, ImageSetId};
use lightbox_storage::{
    DicomAttribute, DicomCondition, DicomMatch, DicomQuery, InstanceScope, UnindexedImageSet,
};
use serde_json::{Map, Value};

use crate::{Service, ServiceError, datastores};

pub use lightbox_storage::{DicomInstance, DicomSeries, DicomStudy};

/// Results per response when the client asks for none or for more (HealthImaging's maximum).
pub const QIDO_MAX_LIMIT: u32 = 1000;
/// Most `includefield` values one request may carry (HealthImaging's limit).
pub const QIDO_MAX_INCLUDE_FIELDS: usize = 50;

/// The query level of a search (a level's match keys include those of the levels above it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QidoLevel {
    Study,
    Series,
    Instance,
}

/// Attributes a response includes beyond the level's defaults: those named by `includefield`
/// and the match keys (PS3.18 §8.3.4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QidoInclude {
    /// `includefield=all`.
    pub all: bool,
    /// Tags as `(group << 16) | element`.
    pub tags: BTreeSet<u32>,
}

impl QidoInclude {
    pub fn wants(&self, tag: u32) -> bool {
        self.all || self.tags.contains(&tag)
    }
}

/// A parsed QIDO-RS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QidoSearch {
    pub query: DicomQuery,
    pub offset: u64,
    /// Results asked for, capped at `QIDO_MAX_LIMIT`.
    pub limit: u32,
    /// The client asked for no limit or more than `QIDO_MAX_LIMIT`.
    pub capped: bool,
    pub include: QidoInclude,
}

/// One response's worth of QIDO-RS results.
#[derive(Debug, Clone)]
pub struct QidoPage<T> {
    pub items: Vec<T>,
    pub include: QidoInclude,
    /// More results match than this response holds although the client asked for them (the
    /// limit was capped): PS3.18 §8.3.4.4's Warning.
    pub truncated: bool,
}

/// What the service knows of a QIDO-RS attribute.
struct Attr {
    tag: u32,
    keyword: &'static str,
    vr: &'static str,
    level: QidoLevel,
    /// How the catalog matches it; `None`: not stored (a return key only).
    stored: Option<DicomAttribute>,
}

const fn attr(
    tag: u32,
    keyword: &'static str,
    vr: &'static str,
    level: QidoLevel,
    stored: Option<DicomAttribute>,
) -> Attr {
    Attr {
        tag,
        keyword,
        vr,
        level,
        stored,
    }
}

use DicomAttribute as A;
use QidoLevel::{Instance, Series, Study};

/// The attributes QIDO-RS accepts as match keys (PS3.18 Table 10.6.1-5 at the study and series
/// levels, and the other attributes the catalog stores).
const ATTRIBUTES: &[Attr] = &[
    attr(0x0008_0020, "StudyDate", "DA", Study, Some(A::StudyDate)),
    attr(0x0008_0030, "StudyTime", "TM", Study, Some(A::StudyTime)),
    attr(
        0x0008_0050,
        "AccessionNumber",
        "SH",
        Study,
        Some(A::AccessionNumber),
    ),
    attr(
        0x0008_0061,
        "ModalitiesInStudy",
        "CS",
        Study,
        Some(A::ModalitiesInStudy),
    ),
    attr(
        0x0008_0090,
        "ReferringPhysicianName",
        "PN",
        Study,
        Some(A::ReferringPhysicianName),
    ),
    attr(
        0x0008_1030,
        "StudyDescription",
        "LO",
        Study,
        Some(A::StudyDescription),
    ),
    attr(
        0x0010_0010,
        "PatientName",
        "PN",
        Study,
        Some(A::PatientName),
    ),
    attr(0x0010_0020, "PatientID", "LO", Study, Some(A::PatientId)),
    attr(
        0x0010_0030,
        "PatientBirthDate",
        "DA",
        Study,
        Some(A::PatientBirthDate),
    ),
    attr(0x0010_0040, "PatientSex", "CS", Study, Some(A::PatientSex)),
    attr(
        0x0020_000D,
        "StudyInstanceUID",
        "UI",
        Study,
        Some(A::StudyInstanceUid),
    ),
    attr(0x0020_0010, "StudyID", "SH", Study, Some(A::StudyId)),
    attr(0x0020_1206, "NumberOfStudyRelatedSeries", "IS", Study, None),
    attr(
        0x0020_1208,
        "NumberOfStudyRelatedInstances",
        "IS",
        Study,
        None,
    ),
    attr(0x0008_0060, "Modality", "CS", Series, Some(A::Modality)),
    attr(
        0x0008_103E,
        "SeriesDescription",
        "LO",
        Series,
        Some(A::SeriesDescription),
    ),
    attr(0x0008_0021, "SeriesDate", "DA", Series, Some(A::SeriesDate)),
    attr(0x0008_0031, "SeriesTime", "TM", Series, None),
    attr(
        0x0018_0015,
        "BodyPartExamined",
        "CS",
        Series,
        Some(A::BodyPartExamined),
    ),
    attr(
        0x0020_000E,
        "SeriesInstanceUID",
        "UI",
        Series,
        Some(A::SeriesInstanceUid),
    ),
    attr(
        0x0020_0011,
        "SeriesNumber",
        "IS",
        Series,
        Some(A::SeriesNumber),
    ),
    attr(
        0x0020_1209,
        "NumberOfSeriesRelatedInstances",
        "IS",
        Series,
        None,
    ),
    attr(
        0x0040_0244,
        "PerformedProcedureStepStartDate",
        "DA",
        Series,
        None,
    ),
    attr(
        0x0040_0245,
        "PerformedProcedureStepStartTime",
        "TM",
        Series,
        None,
    ),
    attr(
        0x0008_0016,
        "SOPClassUID",
        "UI",
        Instance,
        Some(A::SopClassUid),
    ),
    attr(
        0x0008_0018,
        "SOPInstanceUID",
        "UI",
        Instance,
        Some(A::SopInstanceUid),
    ),
    attr(
        0x0020_0013,
        "InstanceNumber",
        "IS",
        Instance,
        Some(A::InstanceNumber),
    ),
    attr(0x0028_0008, "NumberOfFrames", "IS", Instance, None),
    attr(0x0028_0010, "Rows", "US", Instance, None),
    attr(0x0028_0011, "Columns", "US", Instance, None),
    attr(0x0028_0100, "BitsAllocated", "US", Instance, None),
];

/// Tags an instance result can carry from the catalog (PS3.18 Table 6.7.1-2b's, the study
/// and series attributes the catalog stores): `includefield` beyond these reads the
/// instance's document.
const INSTANCE_CATALOG_TAGS: &[u32] = &[
    0x0008_0061,
    0x0020_1206,
    0x0020_1208,
    0x0020_1209,
    0x0008_0020,
    0x0008_0021,
    0x0008_0030,
    0x0008_0031,
    0x0008_0050,
    0x0008_0060,
    0x0008_0090,
    0x0008_103E,
    0x0008_1030,
    0x0010_0010,
    0x0010_0020,
    0x0010_0030,
    0x0010_0040,
    0x0018_0015,
    0x0020_0010,
    0x0020_0011,
    0x0008_0016,
    0x0008_0018,
    0x0008_0056,
    0x0008_1190,
    0x0020_000D,
    0x0020_000E,
    0x0020_0013,
    0x0028_0008,
    0x0028_0010,
    0x0028_0011,
    0x0028_0100,
];

/// A parameter name as error messages show it (printable ASCII, at most 64 characters).
fn shown(name: &str) -> String {
    let s: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    if s.is_empty() { "(empty)".into() } else { s }
}

fn invalid(message: String) -> ServiceError {
    ServiceError::Validation(message)
}

/// The tag of a keyword or 8-hex-digit tag (any DICOM keyword, not only QIDO-RS's).
fn tag_of(key: &str) -> Option<u32> {
    let t = lightbox_dicom::tag_of_key(key)?;
    Some((u32::from(t.0) << 16) | u32::from(t.1))
}

fn is_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
}

fn is_date(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A TM value as 12 digits `HHMMSSffffff`, missing trailing digits filled with `fill`.
fn time_key(s: &str, fill: char) -> Option<String> {
    let s = s.replace(':', "");
    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s.as_str(), None),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 6 || whole.len() % 2 == 1 || !digits(whole) {
        return None;
    }
    if let Some(f) = fraction
        && (f.is_empty() || f.len() > 6 || !digits(f) || whole.len() != 6)
    {
        return None;
    }
    let mut key = String::with_capacity(12);
    key.push_str(whole);
    key.extend(std::iter::repeat_n(fill, 6 - whole.len()));
    let f = fraction.unwrap_or("");
    key.push_str(f);
    key.extend(std::iter::repeat_n(fill, 6 - f.len()));
    Some(key)
}

fn has_wildcard(v: &str) -> bool {
    v.contains(['*', '?'])
}

/// The values of a list match key (`a,b` or `a\b`, or the key repeated).
fn list_values<'a>(values: &[&'a str]) -> Vec<&'a str> {
    values
        .iter()
        .flat_map(|v| v.split([',', '\\']))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// One match key's condition; `None` for universal matching (PS3.4 C.2.2.2.3: an empty value,
/// or `*` alone).
fn condition(
    a: &Attr,
    values: &[&str],
    fuzzy: bool,
) -> Result<Option<DicomCondition>, ServiceError> {
    let name = a.keyword;
    let bad = |what: &str| invalid(format!("Invalid value for query parameter {name}: {what}"));
    let values: Vec<&str> = values
        .iter()
        .map(|v| v.trim_matches(' '))
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() || values.iter().all(|v| v.bytes().all(|b| b == b'*')) {
        return Ok(None);
    }
    let Some(attribute) = a.stored else {
        return Err(invalid(format!(
            "Query parameter {name} is not supported as a matching key"
        )));
    };
    let list = matches!(a.vr, "UI") || matches!(attribute, A::Modality | A::ModalitiesInStudy);
    if values.len() > 1 && !list {
        return Err(invalid(format!(
            "Query parameter {name} is given more than once"
        )));
    }
    let one = values[0];
    let matching = match a.vr {
        "UI" => {
            let uids = list_values(&values);
            if uids.iter().any(|u| !is_uid(u)) {
                return Err(bad("expected UIDs separated by commas or backslashes"));
            }
            match uids.as_slice() {
                [u] => DicomMatch::Exact((*u).to_owned()),
                _ => DicomMatch::AnyOf(uids.iter().map(|u| (*u).to_owned()).collect()),
            }
        }
        "DA" => {
            let (lo, hi) = match one.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None if is_date(one) => return Ok(Some(exact(attribute, one))),
                None => return Err(bad("expected a date YYYYMMDD or a range")),
            };
            if (lo.is_empty() && hi.is_empty())
                || (!lo.is_empty() && !is_date(lo))
                || (!hi.is_empty() && !is_date(hi))
            {
                return Err(bad("expected a date YYYYMMDD or a range"));
            }
            let end = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            DicomMatch::Range(end(lo), end(hi))
        }
        "TM" => {
            let (lo, hi) = one.split_once('-').unwrap_or((one, one));
            let (lo, hi) = (lo.trim(), hi.trim());
            let lo_key = (!lo.is_empty()).then(|| time_key(lo, '0'));
            let hi_key = (!hi.is_empty()).then(|| time_key(hi, '9'));
            if matches!(lo_key, Some(None)) || matches!(hi_key, Some(None)) {
                return Err(bad("expected a time HHMMSS.FFFFFF or a range"));
            }
            if lo.is_empty() && hi.is_empty() {
                return Err(bad("expected a time HHMMSS.FFFFFF or a range"));
            }
            DicomMatch::Range(lo_key.flatten(), hi_key.flatten())
        }
        "IS" => {
            let numbers = list_values(&values);
            if numbers.iter().any(|n| n.parse::<i64>().is_err()) {
                return Err(bad("expected an integer"));
            }
            match numbers.as_slice() {
                [n] => DicomMatch::Exact((*n).to_owned()),
                _ => DicomMatch::AnyOf(numbers.iter().map(|n| (*n).to_owned()).collect()),
            }
        }
        "PN" if fuzzy => DicomMatch::Fuzzy(one.trim_end_matches('*').to_owned()),
        _ if list && values.len() + one.matches([',', '\\']).count() > 1 => {
            let items = list_values(&values);
            if items.iter().any(|v| has_wildcard(v)) {
                return Err(bad("wildcards cannot be combined with a list"));
            }
            DicomMatch::AnyOf(items.iter().map(|v| (*v).to_owned()).collect())
        }
        _ if has_wildcard(one) => DicomMatch::Wildcard(one.to_owned()),
        _ => DicomMatch::Exact(one.to_owned()),
    };
    Ok(Some(DicomCondition {
        attribute,
        matching,
    }))
}

fn exact(attribute: DicomAttribute, v: &str) -> DicomCondition {
    DicomCondition {
        attribute,
        matching: DicomMatch::Exact(v.to_owned()),
    }
}

/// Parses QIDO-RS query parameters (decoded, in order) for a search at `level`.
pub fn parse_qido(
    level: QidoLevel,
    params: &[(String, String)],
) -> Result<QidoSearch, ServiceError> {
    let mut limit: Option<u64> = None;
    let mut offset: Option<u64> = None;
    let mut fuzzy: Option<bool> = None;
    let mut include = QidoInclude::default();
    let mut include_count = 0usize;
    // Match keys in first-seen order, with every value given.
    let mut keys: Vec<(&Attr, Vec<&str>)> = Vec::new();
    let once = |seen: bool, name: &str| {
        if seen {
            Err(invalid(format!(
                "Query parameter {name} is given more than once"
            )))
        } else {
            Ok(())
        }
    };
    for (name, value) in params {
        match name.as_str() {
            "limit" => {
                once(limit.is_some(), "limit")?;
                let n = value.trim().parse::<u64>().ok().filter(|n| *n > 0);
                limit = Some(n.ok_or_else(|| {
                    invalid(
                        "Invalid value for query parameter limit: expected a positive integer"
                            .into(),
                    )
                })?);
            }
            "offset" => {
                once(offset.is_some(), "offset")?;
                offset = Some(value.trim().parse::<u64>().map_err(|_| {
                    invalid(
                        "Invalid value for query parameter offset: expected a non-negative integer"
                            .into(),
                    )
                })?);
            }
            "fuzzymatching" => {
                once(fuzzy.is_some(), "fuzzymatching")?;
                fuzzy = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(invalid(
                            "Invalid value for query parameter fuzzymatching: expected true or false"
                                .into(),
                        ));
                    }
                });
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    include_count += 1;
                    if include_count > QIDO_MAX_INCLUDE_FIELDS {
                        return Err(invalid(format!(
                            "Too many includefield values: at most {QIDO_MAX_INCLUDE_FIELDS}"
                        )));
                    }
                    if field == "all" {
                        include.all = true;
                        continue;
                    }
                    // A dotted path names a sequence item's attribute: the catalog stores none, but
                    // an instance's document has the whole sequence, which is returned.
                    let mut tags = field.split('.').map(tag_of);
                    let first = tags.next().flatten();
                    if first.is_none() || tags.any(|t| t.is_none()) {
                        return Err(invalid(
                            "Invalid value for query parameter includefield: expected an attribute keyword, a tag (8 hexadecimal digits) or all".into(),
                        ));
                    }
                    if (!field.contains('.') || level == Instance)
                        && let Some(t) = first
                    {
                        include.tags.insert(t);
                    }
                }
            }
            key => {
                let tag = tag_of(key)
                    .ok_or_else(|| invalid(format!("Unknown query parameter {}", shown(key))))?;
                let a = ATTRIBUTES
                    .iter()
                    .find(|a| a.tag == tag)
                    .filter(|a| a.level <= level)
                    .ok_or_else(|| {
                        let level = match level {
                            Study => "study",
                            Series => "series",
                            Instance => "instance",
                        };
                        invalid(format!(
                            "Query parameter {} is not supported at the {level} level",
                            shown(key)
                        ))
                    })?;
                include.tags.insert(a.tag);
                match keys.iter_mut().find(|(k, _)| k.tag == a.tag) {
                    Some((_, values)) => values.push(value),
                    None => keys.push((a, vec![value])),
                }
            }
        }
    }
    let fuzzy = fuzzy.unwrap_or(false);
    let mut query = DicomQuery::default();
    for (a, values) in &keys {
        if let Some(c) = condition(a, values, fuzzy)? {
            query.conditions.push(c);
        }
    }
    let requested = limit.unwrap_or(u64::MAX);
    Ok(QidoSearch {
        query,
        offset: offset.unwrap_or(0),
        limit: requested.min(u64::from(QIDO_MAX_LIMIT)) as u32,
        capped: requested > u64::from(QIDO_MAX_LIMIT),
        include,
    })
}

impl Service {
    /// SearchDICOMStudies: studies of a data store's live primary image sets, most recently
    /// updated first.
    pub async fn search_dicom_studies(
        &self,
        datastore_id: &DatastoreId,
        params: &[(String, String)],
    ) -> Result<QidoPage<DicomStudy>, ServiceError> {
        let search = parse_qido(Study, params)?;
        if self.catalog.get_datastore(datastore_id).await?.is_none() {
            return Err(datastores::not_found(datastore_id));
        }
        let mut items = self
            .catalog
            .search_dicom_studies(datastore_id, &search.query, search.offset, search.limit + 1)
            .await?;
        let truncated = cut(&search, &mut items);
        Ok(QidoPage {
            items,
            include: search.include,
            truncated,
        })
    }

    /// SearchDICOMSeries / SearchDICOMAllSeries: live primary image sets of a study or of the
    /// whole data store, by SeriesNumber.
    pub async fn search_dicom_series(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: Option<&str>,
        params: &[(String, String)],
    ) -> Result<QidoPage<DicomSeries>, ServiceError> {
        let search = parse_qido(Series, params)?;
        if self.catalog.get_datastore(datastore_id).await?.is_none() {
            return Err(datastores::not_found(datastore_id));
        }
        let mut items = self
            .catalog
            .search_dicom_series(
                datastore_id,
                study_instance_uid,
                &search.query,
                search.offset,
                search.limit + 1,
            )
            .await?;
        let truncated = cut(&search, &mut items);
        Ok(QidoPage {
            items,
            include: search.include,
            truncated,
        })
    }
}

/// One QIDO-RS instance result: the catalog's view, and the attributes `includefield` asked
/// for beyond it (DICOM JSON read from the instance's document as GetDICOMInstanceMetadata
/// writes it: TransferSyntaxUID the stored one, no PixelData).
#[derive(Debug, Clone)]
pub struct InstanceResult {
    pub instance: DicomInstance,
    pub included: Map<String, Value>,
}

/// Image sets the start-up backfill reads per catalog query.
const BACKFILL_BATCH: u32 = 64;

impl Service {
    /// SearchDICOMInstances / SearchDICOMStudyInstances / SearchDICOMAllInstances: instances of
    /// live primary image sets in a series, a study (`series` `None`) or the data store (both
    /// `None`). `datastore_base` is the URL up to `/datastore/{id}`, for BulkDataURIs of
    /// included attributes.
    pub async fn search_dicom_instances(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: Option<&str>,
        series_instance_uid: Option<&str>,
        params: &[(String, String)],
        datastore_base: &str,
        bulk_data_threshold: usize,
    ) -> Result<QidoPage<InstanceResult>, ServiceError> {
        let search = parse_qido(Instance, params)?;
        if self.catalog.get_datastore(datastore_id).await?.is_none() {
            return Err(datastores::not_found(datastore_id));
        }
        let scope = match (study_instance_uid, series_instance_uid) {
            (Some(study), Some(series)) => InstanceScope::Series(study, series),
            (Some(study), None) => InstanceScope::Study(study),
            _ => InstanceScope::Datastore,
        };
        let mut found = self
            .catalog
            .search_dicom_instances(
                datastore_id,
                scope,
                &search.query,
                search.offset,
                search.limit + 1,
            )
            .await?;
        let truncated = cut(&search, &mut found);
        let include = &search.include;
        let from_documents = include.all
            || include
                .tags
                .iter()
                .any(|t| !INSTANCE_CATALOG_TAGS.contains(t));
        let mut items = Vec::with_capacity(found.len());
        for instance in found {
            let included = match (&instance.metadata_key, from_documents) {
                (Some(key), true) => {
                    let doc = self.document(key).await?;
                    included_attributes(
                        &doc,
                        &instance,
                        include,
                        datastore_base,
                        bulk_data_threshold,
                    )
                }
                _ => Map::new(),
            };
            items.push(InstanceResult { instance, included });
        }
        Ok(QidoPage {
            items,
            include: search.include,
            truncated,
        })
    }

    /// Indexes, for QIDO-RS, the image sets written before the catalog kept the index (schema
    /// v7), reading their latest documents; runs once at start-up, in the background. Nodes
    /// starting together may both run it: each write checks the image set is unchanged.
    pub(crate) async fn backfill_qido_index(self: Arc<Self>) {
        let mut attempted: HashSet<(DatastoreId, ImageSetId)> = HashSet::new();
        let (mut indexed, mut failed) = (0u64, 0u64);
        loop {
            let batch = match self.catalog.unindexed_image_sets(BACKFILL_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "QIDO-RS index backfill stopped");
                    return;
                }
            };
            let fresh: Vec<UnindexedImageSet> = batch
                .into_iter()
                .filter(|u| attempted.insert((u.datastore_id.clone(), u.id.clone())))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for u in &fresh {
                match self.backfill_one(u).await {
                    Ok(true) => indexed += 1,
                    // Changed meanwhile: its new content was indexed when written.
                    Ok(false) => {}
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(image_set_id = %u.id, error = %e,
                            "QIDO-RS index backfill skipped an image set");
                    }
                }
            }
        }
        if indexed > 0 || failed > 0 {
            tracing::info!(indexed, failed, "QIDO-RS index backfill done");
        }
    }

    async fn backfill_one(&self, u: &UnindexedImageSet) -> Result<bool, ServiceError> {
        let Some(bytes) = self.blobs.get(&u.metadata_key).await? else {
            return Err(ServiceError::Internal(
                "an image set's metadata document is missing".into(),
            ));
        };
        let index = tokio::task::spawn_blocking(move || {
            MetadataDocument::from_gzip(&bytes).map(|d| d.qido_index())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("backfill task: {e}")))?
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(self.catalog.write_qido_index(u, &index).await?)
    }
}

/// The attributes of an instance's document `include` asks for (all of them for `all`), as
/// DICOM JSON; never PixelData.
fn included_attributes(
    doc: &MetadataDocument,
    found: &DicomInstance,
    include: &QidoInclude,
    datastore_base: &str,
    bulk_data_threshold: usize,
) -> Map<String, Value> {
    let i = &found.instance;
    let study = found.tags.study_instance_uid.as_deref().unwrap_or("");
    let bulk = format!(
        "{datastore_base}/studies/{study}/series/{}/instances/{}/bulkdata/",
        i.series_instance_uid, i.sop_instance_uid
    );
    let opts = DicomJsonOptions {
        bulk_data_threshold,
        bulk_data_base: Some(&bulk),
    };
    let Some(all) = doc.instance_dicom_json(&i.series_instance_uid, &i.sop_instance_uid, &opts)
    else {
        return Map::new();
    };
    all.into_iter()
        .filter(|(tag, _)| {
            let Ok(t) = u32::from_str_radix(tag, 16) else {
                return false;
            };
            t != 0x7FE0_0010 && include.wants(t)
        })
        .collect()
}

/// Cuts `items` (fetched with one extra) to the limit; `true` if the cap hid results the
/// client asked for.
fn cut<T>(search: &QidoSearch, items: &mut Vec<T>) -> bool {
    let more = items.len() > search.limit as usize;
    items.truncate(search.limit as usize);
    more && search.capped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn conds(level: QidoLevel, pairs: &[(&str, &str)]) -> Vec<(DicomAttribute, DicomMatch)> {
        parse_qido(level, &p(pairs))
            .unwrap()
            .query
            .conditions
            .into_iter()
            .map(|c| (c.attribute, c.matching))
            .collect()
    }

    fn err(level: QidoLevel, pairs: &[(&str, &str)]) -> String {
        match parse_qido(level, &p(pairs)) {
            Err(ServiceError::Validation(m)) => m,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn ohif_study_list() {
        let s = parse_qido(
            Study,
            &p(&[
                ("limit", "101"),
                ("offset", "0"),
                ("fuzzymatching", "false"),
                ("includefield", "00081030,00080060"),
                ("PatientName", "*Doe*"),
                ("StudyDate", "20130509-20140101"),
            ]),
        )
        .unwrap();
        assert_eq!((s.limit, s.offset, s.capped), (101, 0, false));
        assert!(s.include.wants(0x0008_1030) && s.include.wants(0x0008_0060));
        assert!(s.include.wants(0x0010_0010) && !s.include.all);
        assert_eq!(
            s.query.conditions,
            vec![
                DicomCondition {
                    attribute: A::PatientName,
                    matching: DicomMatch::Wildcard("*Doe*".into())
                },
                DicomCondition {
                    attribute: A::StudyDate,
                    matching: DicomMatch::Range(Some("20130509".into()), Some("20140101".into()))
                },
            ]
        );
    }

    #[test]
    fn values_by_vr() {
        use DicomMatch as M;
        assert_eq!(
            conds(Study, &[("0020000D", "1.2,1.3"), ("00100020", "P1")]),
            vec![
                (
                    A::StudyInstanceUid,
                    M::AnyOf(vec!["1.2".into(), "1.3".into()])
                ),
                (A::PatientId, M::Exact("P1".into())),
            ]
        );
        assert_eq!(
            conds(
                Series,
                &[("SeriesInstanceUID", "1.2\\1.3"), ("SeriesNumber", "4")]
            ),
            vec![
                (
                    A::SeriesInstanceUid,
                    M::AnyOf(vec!["1.2".into(), "1.3".into()])
                ),
                (A::SeriesNumber, M::Exact("4".into())),
            ]
        );
        assert_eq!(
            conds(Study, &[("StudyDate", "-20140101"), ("StudyTime", "0930-")]),
            vec![
                (A::StudyDate, M::Range(None, Some("20140101".into()))),
                (A::StudyTime, M::Range(Some("093000000000".into()), None)),
            ]
        );
        assert_eq!(
            conds(Study, &[("StudyTime", "10"), ("StudyDate", "20130509")]),
            vec![
                (
                    A::StudyTime,
                    M::Range(Some("100000000000".into()), Some("109999999999".into()))
                ),
                (A::StudyDate, M::Exact("20130509".into())),
            ]
        );
        assert_eq!(
            conds(Study, &[("PatientName", "doe"), ("fuzzymatching", "true")]),
            vec![(A::PatientName, M::Fuzzy("doe".into()))]
        );
        assert_eq!(
            conds(
                Study,
                &[("ModalitiesInStudy", "CT"), ("ModalitiesInStudy", "MR")]
            ),
            vec![(
                A::ModalitiesInStudy,
                M::AnyOf(vec!["CT".into(), "MR".into()])
            )]
        );
        assert_eq!(
            conds(Study, &[("ModalitiesInStudy", "CT\\MR")]),
            vec![(
                A::ModalitiesInStudy,
                M::AnyOf(vec!["CT".into(), "MR".into()])
            )]
        );
        // Universal matching: empty values, `*`, and attributes not stored without a value.
        assert_eq!(
            conds(
                Study,
                &[
                    ("PatientID", ""),
                    ("PatientName", "*"),
                    ("ReferringPhysicianName", "")
                ]
            ),
            vec![]
        );
    }

    #[test]
    fn limits_and_include() {
        let s = parse_qido(Study, &p(&[])).unwrap();
        assert_eq!((s.limit, s.offset, s.capped), (1000, 0, true));
        let s = parse_qido(Study, &p(&[("limit", "5000"), ("offset", "2000000")])).unwrap();
        assert_eq!((s.limit, s.offset, s.capped), (1000, 2_000_000, true));
        let s = parse_qido(Study, &p(&[("includefield", "all")])).unwrap();
        assert!(s.include.all);
        let s = parse_qido(
            Series,
            &p(&[
                ("includefield", "PatientID"),
                ("includefield", "00081190,00400275.00401001,7FE1ABCD"),
            ]),
        )
        .unwrap();
        assert!(s.include.wants(0x0010_0020) && s.include.wants(0x7FE1_ABCD));
        let many = vec![("includefield", "PatientID"); 51];
        assert!(err(Study, &many).contains("at most 50"));
    }

    #[test]
    fn capped_limits_warn_only_when_results_were_hidden() {
        let search = |pairs: &[(&str, &str)]| parse_qido(Study, &p(pairs)).unwrap();
        // Fetched with one extra: 1001 rows for the default limit mean more exist.
        let mut items: Vec<u32> = (0..1001).collect();
        assert!(cut(&search(&[]), &mut items));
        assert_eq!(items.len(), 1000);
        let mut items: Vec<u32> = (0..1001).collect();
        assert!(cut(&search(&[("limit", "1001")]), &mut items));
        let mut items: Vec<u32> = (0..1000).collect();
        assert!(!cut(&search(&[]), &mut items));
        // The client's own limit hides nothing it did not ask to skip.
        let mut items: Vec<u32> = (0..11).collect();
        assert!(!cut(&search(&[("limit", "10")]), &mut items));
        assert_eq!(items.len(), 10);
    }

    #[test]
    fn errors_name_the_parameter_never_the_value() {
        for (pairs, level, expect) in [
            (vec![("limit", "0")], Study, "limit"),
            (vec![("limit", "ten")], Study, "limit"),
            (vec![("offset", "-1")], Study, "offset"),
            (vec![("fuzzymatching", "maybe")], Study, "fuzzymatching"),
            (
                vec![("includefield", "NoSuchKeywordSECRET")],
                Study,
                "includefield",
            ),
            (vec![("NoSuchKeyword", "SECRET")], Study, "NoSuchKeyword"),
            (vec![("Modality", "SECRET")], Study, "Modality"),
            (vec![("SOPInstanceUID", "1.2")], Series, "SOPInstanceUID"),
            (
                vec![("PerformedProcedureStepStartDate", "SECRET")],
                Series,
                "PerformedProcedureStepStartDate",
            ),
            (vec![("InstanceNumber", "1")], Series, "InstanceNumber"),
            (
                vec![("InstanceNumber", "SECRET")],
                Instance,
                "InstanceNumber",
            ),
            (vec![("StudyDate", "2013SECRET")], Study, "StudyDate"),
            (vec![("StudyDate", "-")], Study, "StudyDate"),
            (vec![("StudyTime", "25x")], Study, "StudyTime"),
            (
                vec![("StudyInstanceUID", "1.2.SECRET")],
                Study,
                "StudyInstanceUID",
            ),
            (vec![("SeriesNumber", "SECRET")], Series, "SeriesNumber"),
            (
                vec![("PatientID", "SECRET"), ("00100020", "SECRET2")],
                Study,
                "PatientID",
            ),
            (vec![("limit", "1"), ("limit", "2")], Study, "limit"),
            (vec![("imageSetId", "SECRET")], Study, "imageSetId"),
        ] {
            let m = err(level, &pairs);
            assert!(m.contains(expect), "{m}");
            assert!(!m.contains("SECRET"), "{m}");
        }
    }
}
