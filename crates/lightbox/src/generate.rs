//! `lightbox generate-image-sets`: fills a data store with synthetic image sets (patients,
//! studies of several series, accession numbers, dates over years, modalities) written straight
//! through the storage layer, for benchmarks of SearchImageSets / GetImageSetMetadata at scale.
//!
//! Each image set is what an import of one series makes: version 1, ACTIVE / CREATED, primary,
//! with a small metadata document in the HealthImaging layout (`MetadataDocument`), stored
//! gzip-compressed at `datastores/{ds}/metadata/{uuid}.json.gz` (registered as a pending blob
//! first, like the import). No pixel data is stored: the documents list frame IDs, but no frame
//! exists behind them. Everything but the image set IDs and timestamps follows from `--seed`.
//! All names and identifiers are made up.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lightbox::Config;
use lightbox_dicom::{FrameEntry, InstanceMetadata, MetadataDocument, StoredInstance};
use lightbox_domain::{
    DatastoreId, DatastoreStatus, ImageSet, ImageSetDicomTags, ImageSetId, ImageSetState,
    ImageSetWorkflowStatus, Millis,
};
use lightbox_storage::{
    BlobStore, Catalog, CreateImageSetOutcome, ImageSetContent, NewImageSet, ObjectBlobStore,
    SqlCatalog,
};
use serde_json::{Map, Value, json};

/// Image sets written per catalog batch (one pending-blob transaction each).
const CHUNK: usize = 500;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The data store to fill; it must exist and be ACTIVE (create it through the API first).
    #[arg(long)]
    datastore_id: String,
    /// Number of image sets (series) to create.
    #[arg(long)]
    count: usize,
    /// Where the data store's storage is (a stopped server's data dir, or its catalog and
    /// blob store URLs), as for `lightbox serve`.
    #[command(flatten)]
    storage: crate::storage_args::StorageArgs,
    /// Seed of the synthetic patients, studies and series.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let ds = DatastoreId::parse(&args.datastore_id)
        .map_err(|_| anyhow::anyhow!("--datastore-id is not a data store ID"))?;
    let mut config = Config::new(&args.storage.data_dir);
    config.catalog = args.storage.catalog.clone();
    config.blob_store = args.storage.blob_store.clone();
    config.s3 = args.storage.s3();
    if config.catalog.is_none() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
    }
    let catalog = Arc::new(lightbox::open_catalog(&config).await?);
    let blobs = Arc::new(lightbox::open_blob_store(&config).await?);
    let started = Instant::now();
    let made = generate(&catalog, &blobs, &ds, args.count, args.seed).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "created {made} image sets in data store {} in {secs:.1} s ({:.0}/s)",
        ds.as_str(),
        made as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Writes `count` synthetic image sets into `ds` (which must be ACTIVE); returns how many.
pub async fn generate(
    catalog: &Arc<SqlCatalog>,
    blobs: &Arc<ObjectBlobStore>,
    ds: &DatastoreId,
    count: usize,
    seed: u64,
) -> anyhow::Result<usize> {
    match catalog.get_datastore(ds).await? {
        Some(d) if d.status == DatastoreStatus::Active => {}
        Some(d) => bail!(
            "data store {} is {}, not ACTIVE",
            ds.as_str(),
            d.status.as_str()
        ),
        None => bail!("data store {} does not exist", ds.as_str()),
    }
    let owner = format!("generate-{}", uuid::Uuid::new_v4().simple());
    let mut plan = Planner::new(seed);
    let mut series = Vec::with_capacity(count);
    while series.len() < count {
        plan.next_patient(&mut series);
    }
    series.truncate(count);
    if let Some(first) = series.first()
        && catalog
            .find_primary_image_set(ds, &first.study.uid, &first.uid)
            .await?
            .is_some()
    {
        bail!("this data store already holds the image sets of --seed {seed}: use another seed");
    }
    let chunks: Vec<Vec<SeriesSpec>> = series.chunks(CHUNK).map(<[SeriesSpec]>::to_vec).collect();
    let made: Vec<usize> = futures::stream::iter(chunks)
        .map(|chunk| {
            let (catalog, blobs, ds, owner) =
                (catalog.clone(), blobs.clone(), ds.clone(), owner.clone());
            tokio::spawn(write_chunk(catalog, blobs, ds, owner, chunk))
        })
        .buffer_unordered(3)
        .map(|joined| joined.context("generator task panicked")?)
        .try_collect()
        .await?;
    Ok(made.iter().sum())
}

/// One chunk: documents built on a blocking thread, keys registered as pending in one
/// transaction, blobs written concurrently, then one `create_image_set` transaction each.
async fn write_chunk(
    catalog: Arc<SqlCatalog>,
    blobs: Arc<ObjectBlobStore>,
    ds: DatastoreId,
    owner: String,
    chunk: Vec<SeriesSpec>,
) -> anyhow::Result<usize> {
    let built: Vec<(NewImageSet, Bytes)> =
        tokio::task::spawn_blocking(move || chunk.iter().map(|s| build(&ds, s)).collect())
            .await
            .context("document task panicked")?;
    let keys: Vec<String> = built
        .iter()
        .map(|(n, _)| n.content.metadata_key.clone())
        .collect();
    catalog.register_pending_blobs(&owner, &keys, now()).await?;
    let puts: Vec<_> = built
        .iter()
        .map(|(n, gz)| {
            let (blobs, key, gz) = (blobs.clone(), n.content.metadata_key.clone(), gz.clone());
            async move { blobs.put(&key, gz).await }
        })
        .collect();
    futures::stream::iter(puts)
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let creates: Vec<_> = built
        .into_iter()
        .map(|(mut new, _)| {
            let catalog = catalog.clone();
            new.job_id = owner.clone();
            async move {
                let t = now();
                new.image_set.created_at = t;
                new.image_set.updated_at = t;
                new.image_set.last_accessed_at = t;
                catalog.create_image_set(&new).await
            }
        })
        .collect();
    let outcomes: Vec<CreateImageSetOutcome> = futures::stream::iter(creates)
        .buffer_unordered(4)
        .try_collect()
        .await?;
    let mut made = 0;
    for o in outcomes {
        match o {
            CreateImageSetOutcome::Created => made += 1,
            CreateImageSetOutcome::PrimaryExists { .. } => {
                bail!("a generated series already has a primary image set (same --seed twice?)")
            }
            CreateImageSetOutcome::DatastoreNotActive => bail!("the data store is not ACTIVE"),
        }
    }
    Ok(made)
}

fn now() -> Millis {
    Millis::from_system_time(std::time::SystemTime::now())
}

/// Builds the image set (timestamps set at commit) and its gzip document.
fn build(ds: &DatastoreId, s: &SeriesSpec) -> (NewImageSet, Bytes) {
    let id = ImageSetId::generate();
    let mut doc = MetadataDocument::new(ds.as_str(), id.as_str());
    let mut rng = Rng::new(s.instance_seed);
    let p = &s.patient;
    let st = &s.study;
    let patient = obj(json!({
        "PatientBirthDate": p.birth_date,
        "PatientID": p.id,
        "PatientName": p.name,
        "PatientSex": p.sex,
    }));
    let study = obj(json!({
        "AccessionNumber": st.accession,
        "PatientAge": st.patient_age,
        "ReferringPhysicianName": st.referring,
        "StudyDate": st.date,
        "StudyDescription": st.description,
        "StudyID": st.study_id,
        "StudyInstanceUID": st.uid,
        "StudyTime": st.time,
    }));
    let series = obj(json!({
        "BodyPartExamined": s.body_part,
        "Manufacturer": s.manufacturer,
        "Modality": s.modality,
        "SeriesDate": st.date,
        "SeriesDescription": s.description,
        "SeriesInstanceUID": s.uid,
        "SeriesNumber": s.number.to_string(),
        "SeriesTime": st.time,
    }));
    let (rows, cols) = s.size;
    for i in 1..=s.instances {
        let sop = uid(&mut rng);
        let instance = obj(json!({
            "SOPClassUID": s.sop_class,
            "SOPInstanceUID": sop,
            "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            "InstanceNumber": i.to_string(),
            "ImagePositionPatient": ["-250.0", "-250.0", format!("{:.1}", -100.0 + 2.5 * f64::from(i))],
            "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
            "SliceThickness": "2.5",
            "SamplesPerPixel": 1,
            "PhotometricInterpretation": "MONOCHROME2",
            "Rows": rows,
            "Columns": cols,
            "PixelSpacing": ["0.7", "0.7"],
            "BitsAllocated": 16,
            "BitsStored": 12,
            "HighBit": 11,
            "PixelRepresentation": 0,
            "WindowCenter": "40",
            "WindowWidth": "400",
            "RescaleIntercept": "-1024",
            "RescaleSlope": "1",
            "PixelData": null,
        }));
        let meta = InstanceMetadata {
            patient: patient.clone(),
            study: study.clone(),
            series: series.clone(),
            instance,
            dicom_vrs: Map::new(),
        };
        let frame = FrameEntry {
            id: format!("{:016x}{:016x}", rng.next(), rng.next()),
            checksums: levels(rows, cols)
                .into_iter()
                .map(|(w, h)| (w, h, rng.next() as u32))
                .collect(),
            min_pixel_value: Some(0),
            max_pixel_value: Some(rng.range(1500, 4096) as i64),
            frame_size_in_bytes: u64::from(rows) * u64::from(cols) * 2 / 3,
        };
        let stored = StoredInstance {
            stored_transfer_syntax: "1.2.840.10008.1.2.4.202".into(),
            frames: vec![frame],
        };
        doc.put_instance(&meta, &s.uid, &sop, &stored);
    }
    let gz = doc.to_gzip();
    let key = format!(
        "datastores/{}/metadata/{}.json.gz",
        ds.as_str(),
        uuid::Uuid::new_v4().simple()
    );
    let tags = ImageSetDicomTags {
        patient_id: Some(p.id.clone()),
        patient_name: Some(p.name.clone()),
        patient_birth_date: Some(p.birth_date.clone()),
        patient_sex: Some(p.sex.to_string()),
        accession_number: Some(st.accession.clone()),
        study_id: Some(st.study_id.clone()),
        study_instance_uid: Some(st.uid.clone()),
        study_date: Some(st.date.clone()),
        study_time: Some(st.time.clone()),
        study_description: Some(st.description.to_string()),
        series_instance_uid: Some(s.uid.clone()),
        series_modality: Some(s.modality.to_string()),
        series_body_part: Some(s.body_part.to_string()),
        series_number: Some(i64::from(s.number)),
    };
    // The seven grouping elements, as the import writes them (lightbox-service import.rs).
    let grouping = json!([
        st.date,
        st.accession,
        p.id,
        st.uid,
        st.study_id,
        s.uid,
        s.number.to_string()
    ])
    .to_string();
    let new = NewImageSet {
        image_set: ImageSet {
            datastore_id: ds.clone(),
            id,
            version: 1,
            state: ImageSetState::Active,
            workflow_status: ImageSetWorkflowStatus::Created,
            is_primary: true,
            created_at: Millis(0),
            updated_at: Millis(0),
            deleted_at: None,
            last_accessed_at: Millis(0),
        },
        content: ImageSetContent {
            grouping,
            tags,
            qido: doc.qido_index(),
            instance_count: doc.instance_count() as i64,
            metadata_key: key,
            metadata_size: gz.len() as u64,
        },
        frames: Vec::new(),
        job_id: String::new(),
    };
    (new, Bytes::from(gz))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! object literal"),
    }
}

/// `(width, height)` of each resolution, base first (as the import's checksums list them).
fn levels(rows: u32, cols: u32) -> Vec<(u32, u32)> {
    let (mut w, mut h) = (cols, rows);
    let mut out = vec![(w, h)];
    while w > 64 || h > 64 {
        w = w.div_ceil(2);
        h = h.div_ceil(2);
        out.push((w, h));
    }
    out.reverse();
    out
}

/// A `2.25.<128-bit decimal>` UID.
fn uid(rng: &mut Rng) -> String {
    let v = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    format!("2.25.{v}")
}

/// SplitMix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
}

#[derive(Clone)]
struct PatientSpec {
    id: String,
    name: String,
    birth_date: String,
    sex: &'static str,
}

#[derive(Clone)]
struct StudySpec {
    uid: String,
    accession: String,
    study_id: String,
    date: String,
    time: String,
    description: &'static str,
    patient_age: String,
    referring: String,
}

#[derive(Clone)]
struct SeriesSpec {
    patient: Arc<PatientSpec>,
    study: Arc<StudySpec>,
    uid: String,
    number: u32,
    modality: &'static str,
    body_part: &'static str,
    description: &'static str,
    manufacturer: &'static str,
    sop_class: &'static str,
    size: (u32, u32),
    instances: u32,
    instance_seed: u64,
}

/// Modality, SOP class, image size, series per study, instances per series, descriptions.
struct ModalityProfile {
    modality: &'static str,
    sop_class: &'static str,
    size: (u32, u32),
    series: (u64, u64),
    instances: (u64, u64),
    studies: &'static [(&'static str, &'static str)],
    series_descriptions: &'static [&'static str],
}

const PROFILES: &[(u64, ModalityProfile)] = &[
    (
        30,
        ModalityProfile {
            modality: "CT",
            sop_class: "1.2.840.10008.5.1.4.1.1.2",
            size: (512, 512),
            series: (2, 6),
            instances: (4, 20),
            studies: &[
                ("CT CHEST W CONTRAST", "CHEST"),
                ("CT ABDOMEN PELVIS", "ABDOMEN"),
                ("CT HEAD WO CONTRAST", "HEAD"),
                ("CTA NECK", "NECK"),
            ],
            series_descriptions: &[
                "Scout",
                "Axial 2.5mm",
                "Axial 1.25mm",
                "Coronal MPR",
                "Sagittal MPR",
                "Bone",
            ],
        },
    ),
    (
        20,
        ModalityProfile {
            modality: "MR",
            sop_class: "1.2.840.10008.5.1.4.1.1.4",
            size: (256, 256),
            series: (3, 8),
            instances: (4, 20),
            studies: &[
                ("MRI BRAIN W WO CONTRAST", "BRAIN"),
                ("MRI KNEE LEFT", "KNEE"),
                ("MRI LUMBAR SPINE", "LSPINE"),
            ],
            series_descriptions: &[
                "Localizer",
                "T1 SAG",
                "T2 AX",
                "FLAIR AX",
                "DWI",
                "T1 POST AX",
                "STIR COR",
            ],
        },
    ),
    (
        25,
        ModalityProfile {
            modality: "CR",
            sop_class: "1.2.840.10008.5.1.4.1.1.1",
            size: (2500, 2048),
            series: (1, 3),
            instances: (1, 2),
            studies: &[
                ("XR CHEST 2 VIEWS", "CHEST"),
                ("XR HAND RIGHT", "HAND"),
                ("XR FOOT", "FOOT"),
            ],
            series_descriptions: &["PA", "LAT", "AP", "OBLIQUE"],
        },
    ),
    (
        10,
        ModalityProfile {
            modality: "DX",
            sop_class: "1.2.840.10008.5.1.4.1.1.1.1",
            size: (3000, 2500),
            series: (1, 2),
            instances: (1, 2),
            studies: &[("XR KNEE 3 VIEWS", "KNEE"), ("XR PELVIS", "PELVIS")],
            series_descriptions: &["AP", "LAT", "SUNRISE"],
        },
    ),
    (
        8,
        ModalityProfile {
            modality: "US",
            sop_class: "1.2.840.10008.5.1.4.1.1.6.1",
            size: (600, 800),
            series: (1, 2),
            instances: (2, 12),
            studies: &[("US ABDOMEN COMPLETE", "ABDOMEN"), ("US THYROID", "NECK")],
            series_descriptions: &["Grayscale", "Doppler"],
        },
    ),
    (
        4,
        ModalityProfile {
            modality: "MG",
            sop_class: "1.2.840.10008.5.1.4.1.1.1.2",
            size: (4096, 3328),
            series: (2, 4),
            instances: (1, 2),
            studies: &[("MAMMO SCREENING BILATERAL", "BREAST")],
            series_descriptions: &["L CC", "L MLO", "R CC", "R MLO"],
        },
    ),
    (
        3,
        ModalityProfile {
            modality: "PT",
            sop_class: "1.2.840.10008.5.1.4.1.1.128",
            size: (192, 192),
            series: (2, 3),
            instances: (4, 16),
            studies: &[("PET CT WHOLE BODY", "WHOLEBODY")],
            series_descriptions: &["PET AC", "PET NAC", "CT AC"],
        },
    ),
];

const FAMILY: &[&str] = &[
    "SMITH", "JOHNSON", "GARCIA", "MUELLER", "ROSSI", "DUBOIS", "TANAKA", "KIM", "NGUYEN", "SILVA",
    "KOWALSKI", "OKAFOR", "HANSEN", "MARTIN", "LOPEZ", "SATO", "PATEL", "CHEN",
];
const GIVEN: &[&str] = &[
    "ALEX", "MARIA", "JOHN", "ANNA", "DAVID", "SOFIA", "JAMES", "LENA", "OMAR", "YUKI", "LUCAS",
    "EMMA", "NOAH", "MIA", "ELI", "ZOE",
];
const MANUFACTURERS: &[&str] = &[
    "SIEMENS",
    "GE MEDICAL SYSTEMS",
    "Philips",
    "CANON_MEC",
    "FUJIFILM",
];
const PHYSICIANS: &[&str] = &[
    "WELBY^MARCUS",
    "HOUSE^GREGORY",
    "GREY^MEREDITH",
    "QUINN^MICHAELA",
];

/// Walks patients → studies → series deterministically from the seed.
struct Planner {
    rng: Rng,
    patients: u64,
    studies: u64,
    /// Where this seed's patient and accession numbers start.
    offset: u64,
}

impl Planner {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let offset = rng.next() % 10_000_000;
        Planner {
            rng,
            patients: 0,
            studies: 0,
            offset,
        }
    }

    fn profile(&mut self) -> &'static ModalityProfile {
        let total: u64 = PROFILES.iter().map(|(w, _)| w).sum();
        let mut x = self.rng.range(0, total - 1);
        for (w, p) in PROFILES {
            if x < *w {
                return p;
            }
            x -= w;
        }
        &PROFILES[0].1
    }

    /// Appends the series of one new patient (1-6 studies).
    fn next_patient(&mut self, out: &mut Vec<SeriesSpec>) {
        self.patients += 1;
        let offset = self.offset;
        let r = &mut self.rng;
        let birth_year = r.range(1935, 2020);
        let patient = Arc::new(PatientSpec {
            // Unique: a bijection of the patient counter modulo 10^7.
            id: format!("PAT{:07}", (self.patients * 7919 + offset) % 10_000_000),
            name: format!("{}^{}", r.pick(FAMILY), r.pick(GIVEN)),
            birth_date: format!("{birth_year:04}{:02}{:02}", r.range(1, 12), r.range(1, 28)),
            sex: r.pick(&["F", "M", "F", "M", "O"]),
        });
        let studies = self.rng.range(1, 6);
        for _ in 0..studies {
            let profile = self.profile();
            let r = &mut self.rng;
            self.studies += 1;
            let year = r.range(2012, 2026);
            let (description, body_part) = r.pick(profile.studies);
            let study = Arc::new(StudySpec {
                uid: uid(r),
                accession: format!(
                    "ACC{:08}",
                    (self.studies * 104_729 + self.offset) % 100_000_000
                ),
                study_id: r.range(1, 99_999).to_string(),
                date: format!("{year:04}{:02}{:02}", r.range(1, 12), r.range(1, 28)),
                time: format!(
                    "{:02}{:02}{:02}",
                    r.range(7, 19),
                    r.range(0, 59),
                    r.range(0, 59)
                ),
                description,
                patient_age: format!("{:03}Y", year.saturating_sub(birth_year)),
                referring: r.pick(PHYSICIANS).to_string(),
            });
            let manufacturer = r.pick(MANUFACTURERS);
            let series = r.range(profile.series.0, profile.series.1);
            for n in 1..=series {
                let r = &mut self.rng;
                out.push(SeriesSpec {
                    patient: patient.clone(),
                    study: study.clone(),
                    uid: uid(r),
                    number: n as u32,
                    modality: profile.modality,
                    body_part,
                    description: r.pick(profile.series_descriptions),
                    manufacturer,
                    sop_class: profile.sop_class,
                    size: profile.size,
                    instances: r.range(profile.instances.0, profile.instances.1) as u32,
                    instance_seed: r.next(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightbox_domain::{Datastore, LosslessStorageFormat};
    use lightbox_storage::{
        CreateDatastoreOutcome, ImageSetFilter, ImageSetSearch, ImageSetSortField,
        ImageSetTextField, NewDatastore,
    };

    #[tokio::test]
    async fn generated_image_sets_are_stored_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path());
        let catalog = Arc::new(lightbox::open_catalog(&config).await.unwrap());
        let blobs = Arc::new(lightbox::open_blob_store(&config).await.unwrap());
        let ds = DatastoreId::generate();
        let t = now();
        let outcome = catalog
            .create_datastore(NewDatastore {
                datastore: Datastore {
                    id: ds.clone(),
                    name: "gen".into(),
                    status: DatastoreStatus::Active,
                    kms_key_arn: None,
                    lambda_authorizer_arn: None,
                    lossless_storage_format: LosslessStorageFormat::default(),
                    created_at: t,
                    updated_at: t,
                    client_token: "gen".into(),
                    request_fingerprint: "gen".into(),
                },
                quota: 10,
                tags: vec![],
                job: None,
            })
            .await
            .unwrap();
        assert!(matches!(outcome, CreateDatastoreOutcome::Created(_)));

        assert_eq!(generate(&catalog, &blobs, &ds, 40, 7).await.unwrap(), 40);
        // The same plan again: every series already has its primary image set.
        assert!(generate(&catalog, &blobs, &ds, 40, 7).await.is_err());

        let mut plan = Planner::new(7);
        let mut series = vec![];
        plan.next_patient(&mut series);
        let s = &series[0];
        let primary = catalog
            .find_primary_image_set(&ds, &s.study.uid, &s.uid)
            .await
            .unwrap()
            .expect("the first series is an image set");
        assert!(primary.image_set.is_primary);
        assert_eq!(primary.image_set.version, 1);
        let gz = blobs.get(&primary.metadata_key).await.unwrap().unwrap();
        let doc = MetadataDocument::from_gzip(&gz).unwrap();
        assert_eq!(doc.image_set_id(), primary.image_set.id.as_str());
        assert_eq!(doc.instance_count() as u32, s.instances);
        assert_eq!(
            doc.as_json()["Patient"]["DICOM"]["PatientID"],
            json!(s.patient.id)
        );

        // Searchable: by patient (every series of the first patient), and all 40 in total.
        let search = |filters| ImageSetSearch {
            filters,
            sort: ImageSetSortField::UpdatedAt,
            descending: true,
        };
        let by_patient = search(vec![ImageSetFilter::Text(
            ImageSetTextField::PatientId,
            s.patient.id.clone(),
        )]);
        let found = catalog
            .search_image_sets(&ds, &by_patient, None, 50)
            .await
            .unwrap();
        assert_eq!(found.items.len(), series.len().min(40));
        assert_eq!(found.items[0].tags.patient_id, Some(s.patient.id.clone()));
        let all = catalog
            .search_image_sets(&ds, &search(vec![]), None, 50)
            .await
            .unwrap();
        assert_eq!(all.items.len(), 40);
    }
}
