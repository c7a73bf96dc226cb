//! Which top-level attributes HealthImaging hoists to the Patient, Study and Series levels of
//! the image set metadata document (everything else stays at instance level).
//!
//! Built from the DICOM PS3.3 module definitions that AWS names on its "Metadata
//! normalization" page (devguide/metadata-normalization), one row per attribute, sorted by tag:
//!
//! * Patient level: Patient module (C.7.1.1) with the Issuer of Patient ID macro (Table 10-18)
//!   and the Patient Group macro, and the Clinical Trial Subject module (C.7.1.3);
//! * Study level: General Study (C.7.2.1), Patient Study (C.7.2.2: PatientAge, PatientSize,
//!   PatientWeight... live at study level), Clinical Trial Study (C.7.2.3);
//! * Series level: General Series (C.7.3.1), Clinical Trial Series (C.7.3.2), General
//!   Equipment (C.7.5.1) and Frame of Reference (C.7.4.1).
//!
//! A unit test checks that every row's keyword is the standard dictionary's keyword for its tag
//! and that the table is sorted.

/// A level of the image set metadata document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Patient,
    Study,
    Series,
    Instance,
}

/// The PS3.3 module (or macro) a row comes from, for reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    Patient,
    IssuerOfPatientID,
    PatientGroup,
    ClinicalTrialSubject,
    GeneralStudy,
    PatientStudy,
    ClinicalTrialStudy,
    GeneralSeries,
    ClinicalTrialSeries,
    GeneralEquipment,
    FrameOfReference,
}

/// One hoisted attribute.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// `(group << 16) | element`.
    pub tag: u32,
    pub keyword: &'static str,
    pub level: Level,
    pub module: Module,
}

/// Sorted by tag.
#[rustfmt::skip]
pub static HOISTED: &[Entry] = &[
    Entry { tag: 0x00080020, keyword: "StudyDate", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00080021, keyword: "SeriesDate", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00080030, keyword: "StudyTime", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00080031, keyword: "SeriesTime", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00080050, keyword: "AccessionNumber", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00080051, keyword: "IssuerOfAccessionNumberSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00080060, keyword: "Modality", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00080070, keyword: "Manufacturer", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00080080, keyword: "InstitutionName", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00080081, keyword: "InstitutionAddress", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00080090, keyword: "ReferringPhysicianName", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00080096, keyword: "ReferringPhysicianIdentificationSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x0008009C, keyword: "ConsultingPhysicianName", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x0008009D, keyword: "ConsultingPhysicianIdentificationSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081010, keyword: "StationName", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00081030, keyword: "StudyDescription", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081032, keyword: "ProcedureCodeSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x0008103E, keyword: "SeriesDescription", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x0008103F, keyword: "SeriesDescriptionCodeSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00081040, keyword: "InstitutionalDepartmentName", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00081041, keyword: "InstitutionalDepartmentTypeCodeSequence", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00081048, keyword: "PhysiciansOfRecord", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081049, keyword: "PhysiciansOfRecordIdentificationSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081050, keyword: "PerformingPhysicianName", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00081052, keyword: "PerformingPhysicianIdentificationSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00081060, keyword: "NameOfPhysiciansReadingStudy", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081062, keyword: "PhysiciansReadingStudyIdentificationSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081070, keyword: "OperatorsName", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00081072, keyword: "OperatorIdentificationSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00081080, keyword: "AdmittingDiagnosesDescription", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00081084, keyword: "AdmittingDiagnosesCodeSequence", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00081090, keyword: "ManufacturerModelName", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00081110, keyword: "ReferencedStudySequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00081111, keyword: "ReferencedPerformedProcedureStepSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00081120, keyword: "ReferencedPatientSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00081250, keyword: "RelatedSeriesSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00100010, keyword: "PatientName", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100020, keyword: "PatientID", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100021, keyword: "IssuerOfPatientID", level: Level::Patient, module: Module::IssuerOfPatientID },
    Entry { tag: 0x00100022, keyword: "TypeOfPatientID", level: Level::Patient, module: Module::IssuerOfPatientID },
    Entry { tag: 0x00100024, keyword: "IssuerOfPatientIDQualifiersSequence", level: Level::Patient, module: Module::IssuerOfPatientID },
    Entry { tag: 0x00100026, keyword: "SourcePatientGroupIdentificationSequence", level: Level::Patient, module: Module::PatientGroup },
    Entry { tag: 0x00100027, keyword: "GroupOfPatientsIdentificationSequence", level: Level::Patient, module: Module::PatientGroup },
    Entry { tag: 0x00100030, keyword: "PatientBirthDate", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100032, keyword: "PatientBirthTime", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100033, keyword: "PatientBirthDateInAlternativeCalendar", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100034, keyword: "PatientDeathDateInAlternativeCalendar", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100035, keyword: "PatientAlternativeCalendar", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100040, keyword: "PatientSex", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100200, keyword: "QualityControlSubject", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100212, keyword: "StrainDescription", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100213, keyword: "StrainNomenclature", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100216, keyword: "StrainStockSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100218, keyword: "StrainAdditionalInformation", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100219, keyword: "StrainCodeSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00100221, keyword: "GeneticModificationsSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00101000, keyword: "OtherPatientIDs", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00101001, keyword: "OtherPatientNames", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00101002, keyword: "OtherPatientIDsSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00101010, keyword: "PatientAge", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101020, keyword: "PatientSize", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101021, keyword: "PatientSizeCodeSequence", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101022, keyword: "PatientBodyMassIndex", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101023, keyword: "MeasuredAPDimension", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101024, keyword: "MeasuredLateralDimension", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101030, keyword: "PatientWeight", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00101100, keyword: "ReferencedPatientPhotoSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102000, keyword: "MedicalAlerts", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00102110, keyword: "Allergies", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00102160, keyword: "EthnicGroup", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102180, keyword: "Occupation", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x001021A0, keyword: "SmokingStatus", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x001021B0, keyword: "AdditionalPatientHistory", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x001021C0, keyword: "PregnancyStatus", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x001021D0, keyword: "LastMenstrualDate", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00102201, keyword: "PatientSpeciesDescription", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102202, keyword: "PatientSpeciesCodeSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102203, keyword: "PatientSexNeutered", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00102210, keyword: "AnatomicalOrientationType", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00102292, keyword: "PatientBreedDescription", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102293, keyword: "PatientBreedCodeSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102294, keyword: "BreedRegistrationSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102297, keyword: "ResponsiblePerson", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102298, keyword: "ResponsiblePersonRole", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00102299, keyword: "ResponsibleOrganization", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00104000, keyword: "PatientComments", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00120010, keyword: "ClinicalTrialSponsorName", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120020, keyword: "ClinicalTrialProtocolID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120021, keyword: "ClinicalTrialProtocolName", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120022, keyword: "IssuerOfClinicalTrialProtocolID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120023, keyword: "OtherClinicalTrialProtocolIDsSequence", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120030, keyword: "ClinicalTrialSiteID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120031, keyword: "ClinicalTrialSiteName", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120032, keyword: "IssuerOfClinicalTrialSiteID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120040, keyword: "ClinicalTrialSubjectID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120041, keyword: "IssuerOfClinicalTrialSubjectID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120042, keyword: "ClinicalTrialSubjectReadingID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120043, keyword: "IssuerOfClinicalTrialSubjectReadingID", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120050, keyword: "ClinicalTrialTimePointID", level: Level::Study, module: Module::ClinicalTrialStudy },
    Entry { tag: 0x00120051, keyword: "ClinicalTrialTimePointDescription", level: Level::Study, module: Module::ClinicalTrialStudy },
    Entry { tag: 0x00120052, keyword: "LongitudinalTemporalOffsetFromEvent", level: Level::Study, module: Module::ClinicalTrialStudy },
    Entry { tag: 0x00120053, keyword: "LongitudinalTemporalEventType", level: Level::Study, module: Module::ClinicalTrialStudy },
    Entry { tag: 0x00120060, keyword: "ClinicalTrialCoordinatingCenterName", level: Level::Series, module: Module::ClinicalTrialSeries },
    Entry { tag: 0x00120062, keyword: "PatientIdentityRemoved", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00120063, keyword: "DeidentificationMethod", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00120064, keyword: "DeidentificationMethodCodeSequence", level: Level::Patient, module: Module::Patient },
    Entry { tag: 0x00120071, keyword: "ClinicalTrialSeriesID", level: Level::Series, module: Module::ClinicalTrialSeries },
    Entry { tag: 0x00120072, keyword: "ClinicalTrialSeriesDescription", level: Level::Series, module: Module::ClinicalTrialSeries },
    Entry { tag: 0x00120081, keyword: "ClinicalTrialProtocolEthicsCommitteeName", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120082, keyword: "ClinicalTrialProtocolEthicsCommitteeApprovalNumber", level: Level::Patient, module: Module::ClinicalTrialSubject },
    Entry { tag: 0x00120083, keyword: "ConsentForClinicalTrialUseSequence", level: Level::Study, module: Module::ClinicalTrialStudy },
    Entry { tag: 0x00180015, keyword: "BodyPartExamined", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00181000, keyword: "DeviceSerialNumber", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181002, keyword: "DeviceUID", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181008, keyword: "GantryID", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x0018100A, keyword: "UDISequence", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x0018100B, keyword: "ManufacturerDeviceClassUID", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181020, keyword: "SoftwareVersions", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181030, keyword: "ProtocolName", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00181050, keyword: "SpatialResolution", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181200, keyword: "DateOfLastCalibration", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181201, keyword: "TimeOfLastCalibration", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181204, keyword: "DateOfManufacture", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00181205, keyword: "DateOfInstallation", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00185100, keyword: "PatientPosition", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x0020000D, keyword: "StudyInstanceUID", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x0020000E, keyword: "SeriesInstanceUID", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00200010, keyword: "StudyID", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00200011, keyword: "SeriesNumber", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00200052, keyword: "FrameOfReferenceUID", level: Level::Series, module: Module::FrameOfReference },
    Entry { tag: 0x00200060, keyword: "Laterality", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00201040, keyword: "PositionReferenceIndicator", level: Level::Series, module: Module::FrameOfReference },
    Entry { tag: 0x00280108, keyword: "SmallestPixelValueInSeries", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00280109, keyword: "LargestPixelValueInSeries", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00280120, keyword: "PixelPaddingValue", level: Level::Series, module: Module::GeneralEquipment },
    Entry { tag: 0x00321034, keyword: "RequestingServiceCodeSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x00321066, keyword: "ReasonForVisit", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00321067, keyword: "ReasonForVisitCodeSequence", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00380010, keyword: "AdmissionID", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00380014, keyword: "IssuerOfAdmissionIDSequence", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00380060, keyword: "ServiceEpisodeID", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00380062, keyword: "ServiceEpisodeDescription", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00380064, keyword: "IssuerOfServiceEpisodeIDSequence", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00380500, keyword: "PatientState", level: Level::Study, module: Module::PatientStudy },
    Entry { tag: 0x00400244, keyword: "PerformedProcedureStepStartDate", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400245, keyword: "PerformedProcedureStepStartTime", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400250, keyword: "PerformedProcedureStepEndDate", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400251, keyword: "PerformedProcedureStepEndTime", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400253, keyword: "PerformedProcedureStepID", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400254, keyword: "PerformedProcedureStepDescription", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400260, keyword: "PerformedProtocolCodeSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400275, keyword: "RequestAttributesSequence", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00400280, keyword: "CommentsOnThePerformedProcedureStep", level: Level::Series, module: Module::GeneralSeries },
    Entry { tag: 0x00401012, keyword: "ReasonForPerformedProcedureCodeSequence", level: Level::Study, module: Module::GeneralStudy },
    Entry { tag: 0x300A0700, keyword: "TreatmentSessionUID", level: Level::Series, module: Module::GeneralSeries },
];

/// The level a top-level attribute belongs to (group 0002 and everything unlisted: instance).
pub fn level_of(tag: u32) -> Level {
    HOISTED
        .binary_search_by_key(&tag, |e| e.tag)
        .map(|i| HOISTED[i].level)
        .unwrap_or(Level::Instance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::Tag;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    use dicom_dictionary_std::StandardDataDictionary;

    #[test]
    fn sorted_unique_and_matching_the_dictionary() {
        for w in HOISTED.windows(2) {
            assert!(w[0].tag < w[1].tag, "{} not sorted", w[1].keyword);
        }
        let mut wrong = Vec::new();
        for e in HOISTED {
            let tag = Tag((e.tag >> 16) as u16, e.tag as u16);
            match StandardDataDictionary.by_tag(tag) {
                Some(d) if d.alias() == e.keyword => {}
                Some(d) => wrong.push(format!(
                    "{:08X} {} (dictionary: {})",
                    e.tag,
                    e.keyword,
                    d.alias()
                )),
                None => wrong.push(format!("{:08X} {} (not in dictionary)", e.tag, e.keyword)),
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn levels() {
        assert_eq!(level_of(0x0010_0010), Level::Patient);
        assert_eq!(level_of(0x0010_1030), Level::Study);
        assert_eq!(level_of(0x0008_0070), Level::Series);
        assert_eq!(level_of(0x0008_0018), Level::Instance);
        assert_eq!(level_of(0x0002_0010), Level::Instance);
    }
}
