"""The XDS-I.b imaging manifest: a Key Object Selection (KOS) Document (DICOM PS3.3 A.35.4, SOP
Class 1.2.840.10008.5.1.4.1.1.88.59; content TID 2010 "Key Object Selection" with the title
(113030, DCM, "Manifest")) referencing every instance of a study, as IHE RAD TF-3 4.68.4.1.2.1
(Provide and Register Imaging Document Set) asks — sans-IO: index rows in, a data set out.

- Patient, General Study (the study's own UIDs and attributes), Key Object Document Series
  (Modality KO, a new series), General Equipment, SOP Common (ISO_IR 192);
- Key Object Document: CurrentRequestedProcedureEvidenceSequence — study > series (with
  RetrieveAETitle, the node's AE title, and RetrieveLocationUID (0040,E011), the Imaging
  Document Source's repository unique id that RAD-69 is addressed to) > instances;
- SR Document Content: a CONTAINER with one CONTAINS item per instance, IMAGE for image
  storage SOP classes, COMPOSITE for the others.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
# SOP classes that are not images: SR (88.x), encapsulated documents (104.x), presentation
# states (11.x), waveforms (9.x), raw data (66), spectroscopy (4.2)
_COMPOSITE = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.104.",
              "1.2.840.10008.5.1.4.1.1.11.", "1.2.840.10008.5.1.4.1.1.9.",
              "1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.4.2")


@dataclass(frozen=True)
class Referenced:
    series_uid: str
    sop_class: str
    sop_uid: str


@dataclass(frozen=True)
class StudyInfo:
    study_uid: str
    patient_id: str
    issuer: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    study_id: str = ""
    description: str = ""
    referring: str = ""


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def is_image(sop_class: str) -> bool:
    return not sop_class.startswith(_COMPOSITE)


def manifest(study: StudyInfo, instances: list[Referenced], *, ae_title: str,
             location_uid: str, now: dt.datetime | None = None,
             series_number: int = 999) -> Dataset:
    """The KOS of ``study`` referencing ``instances``."""
    now = now or dt.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = KOS, generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime(
        "%H%M%S")
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    if study.issuer:
        ds.IssuerOfPatientID = study.issuer
    ds.PatientBirthDate, ds.PatientSex = study.birth_date, study.sex
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = (study.study_uid, study.study_date,
                                                       study.study_time)
    ds.ReferringPhysicianName, ds.StudyID = study.referring, study.study_id
    ds.AccessionNumber, ds.StudyDescription = study.accession, study.description
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "KO", generate_uid(), series_number
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.Manufacturer = "HIE node"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    by_series: dict[str, list[Referenced]] = {}
    for ref in instances:
        by_series.setdefault(ref.series_uid, []).append(ref)
    evidence = Dataset()
    evidence.StudyInstanceUID = study.study_uid
    evidence.ReferencedSeriesSequence = []
    for series_uid, refs in by_series.items():
        s = Dataset()
        s.SeriesInstanceUID = series_uid
        s.RetrieveAETitle = ae_title
        s.RetrieveLocationUID = location_uid
        s.ReferencedSOPSequence = [_sop(r) for r in refs]
        evidence.ReferencedSeriesSequence.append(s)
    ds.CurrentRequestedProcedureEvidenceSequence = [evidence]
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("113030", "DCM", "Manifest")]
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = [template]
    items = []
    for ref in instances:
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "IMAGE" if is_image(ref.sop_class) else "COMPOSITE"
        item.ReferencedSOPSequence = [_sop(ref)]
        items.append(item)
    ds.ContentSequence = items
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = KOS, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _sop(ref: Referenced) -> Dataset:
    d = Dataset()
    d.ReferencedSOPClassUID, d.ReferencedSOPInstanceUID = ref.sop_class, ref.sop_uid
    return d


__all__ = ["KOS", "Referenced", "StudyInfo", "is_image", "manifest"]
