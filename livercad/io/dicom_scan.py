"""Scanning a folder of DICOM files into image series (headers only, no pixel data).

Every file under the folder (recursively; hidden files and folders skipped) is read with
``stop_before_pixels``. Files are then

* **not DICOM** (no ``DICM`` preamble and no DICOM group-0008 start): ignored and listed;
* **skipped non-image objects**, listed with the reason: DICOMDIR media indexes, structured reports,
  presentation states, key object selections, segmentations, RT objects, PDFs, waveforms, raw data (any
  SOP class that is not an "Image Storage" class, and the non-image modalities of :data:`NON_IMAGE_MODALITIES`),
  localizer (scout) images and screen captures (ImageType ``LOCALIZER`` / ``SCREEN SAVE``);
* **unreadable** DICOM files (a header pydicom cannot parse, or one cut before its SeriesInstanceUID):
  skipped, listed, and attached to every series of the scan (their series is unknown); loading a series
  with such a file among its own files is refused (it may be one of its slices). A slice truncated in
  its pixel data keeps a readable header and is refused when its series is loaded;
* **images**, grouped by SeriesInstanceUID. A series whose images carry no patient geometry
  (ultrasound: no ImagePositionPatient / ImageOrientationPatient) is split into one 2-D series per file.

Example:
    >>> import tempfile, numpy as np
    >>> from livercad.io.dicom_synth import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(np.zeros((3, 4, 4), np.int16), folder, series_description="PV", series_number=2)
    >>> scan = scan_folder(folder)
    >>> [(s.case_id, len(s.files)) for s in scan.series], scan.skipped
    ([('PV_s2', 3)], [])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from livercad.io.dicom_meta import SkippedObject, case_id_for, unique_case_ids

logger = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "SEG", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "REG",
                                  "DOC", "ECG", "HD", "AU", "FID", "PLAN", "RWV", "SMR", "RESP", "EPS"})
UNREADABLE = "unreadable"
_NO_UID = "no-series-uid:"  # group key prefix of an image without SeriesInstanceUID (a one-file series)
_SKIPPED_IMAGE_TYPES = {"LOCALIZER": "localizer (scout) image", "SCREEN SAVE": "screen capture"}


@dataclass(frozen=True)
class Series:
    """One image series found in a folder; each series is one case.

    Attributes:
        uid: SeriesInstanceUID.
        files: Its image files (sorted by path; slice order is decided when loading).
        modality, description, number, study_uid: Modality, SeriesDescription, SeriesNumber, StudyInstanceUID.
        case_id: Sanitised description + series number, else the UID; unique within the scan.
        skipped: Non-image objects of the same study found in the scan (SR, PR, SEG, KO, RTSTRUCT, ...).
    """

    uid: str
    files: tuple[Path, ...]
    modality: str
    description: str
    number: int | None
    study_uid: str
    case_id: str
    skipped: tuple[SkippedObject, ...] = field(default=())

    @property
    def label(self) -> str:
        """Short human name for messages, e.g. ``series 3 'ABD PV' (1.2.3...)``."""
        number = f" {self.number}" if self.number is not None else ""
        desc = f" '{self.description}'" if self.description else ""
        return f"series{number}{desc} ({self.uid or 'no SeriesInstanceUID'})"


@dataclass(frozen=True)
class FolderScan:
    """Everything :func:`scan_folder` found: image series, skipped objects, non-DICOM files."""

    series: list[Series]
    skipped: list[SkippedObject]
    not_dicom: list[Path]


def has_dicom_preamble(path: Path) -> bool:
    """True when the file has the 128-byte preamble + ``DICM`` of a DICOM Part-10 file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


class UnreadableDicom(ValueError):
    """A file that looks like DICOM (preamble or group-0008 start) but whose header cannot be parsed."""


def read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file (no pixel data), or ``None`` when the file is not DICOM.

    Files without the Part-10 preamble are accepted when they start with a group-0008 element
    (old "raw" DICOM files).

    Raises:
        UnreadableDicom: a DICOM-looking file whose header pydicom cannot parse (one-line reason).
    """
    force = False
    if not has_dicom_preamble(path):
        try:
            with open(path, "rb") as handle:
                force = handle.read(2) == b"\x08\x00"
        except OSError:
            return None
        if not force:
            return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise UnreadableDicom(f"unreadable DICOM header, truncated or corrupt ({type(exc).__name__}: {text})") from None


def sop_class_of(ds: Dataset) -> str:
    """SOPClassUID of the dataset, or the file meta's MediaStorageSOPClassUID."""
    meta = getattr(ds, "file_meta", None)
    media = meta.get("MediaStorageSOPClassUID") if meta is not None else None
    return str(ds.get("SOPClassUID") or media or "")


def skip_reason(ds: Dataset) -> str | None:
    """Why a DICOM object is not an image of a series, or ``None`` for images."""
    sop = sop_class_of(ds)
    if sop == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return "DICOMDIR media index (its images are read from the folders)"
    name = UID(sop).name if sop else ""
    modality = str(ds.get("Modality") or "").upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"non-image object ({modality})"
    if name and name != sop and "Image Storage" not in name:
        return f"non-image object ({name})"
    if (not name or name == sop) and not ds.get("Rows"):
        return "no image (no Rows/Columns)"
    value = ds.get("ImageType") or []
    image_type = {str(v).upper() for v in ([value] if isinstance(value, str) else value)}
    for word, reason in _SKIPPED_IMAGE_TYPES.items():
        if word in image_type:
            return reason
    return None


def _walk(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel) or not path.is_file():
            continue
        yield path


def _has_geometry(ds: Dataset) -> bool:
    return "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds


def _series_number(ds: Dataset) -> int | None:
    try:
        return int(ds.get("SeriesNumber")) if ds.get("SeriesNumber") not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _case_id(key: str, files: tuple[Path, ...], ds: Dataset, split: bool) -> str:
    """Case id of one series (``_i<InstanceNumber>`` for one image of a split series; file stem without UID)."""
    uid = "" if key.startswith(_NO_UID) else key
    cid = case_id_for(ds.get("SeriesDescription"), _series_number(ds), uid or files[0].stem)
    instance = ds.get("InstanceNumber")
    return f"{cid}_i{instance}" if split and instance is not None else cid


def _make_series(groups: dict[str, list[tuple[Path, Dataset]]], skipped: Sequence[SkippedObject],
                 study_of: dict[Path, str]) -> list[Series]:
    """Series from grouped headers; geometry-less series split per file; unique case ids."""
    items: list[tuple[str, str, tuple[Path, ...], Dataset, bool]] = []  # (key, id key, files, header, split)
    for key, members in groups.items():
        if all(not _has_geometry(ds) for _, ds in members) and len(members) > 1:
            items.extend((key, str(ds.get("SOPInstanceUID") or path), (path,), ds, True) for path, ds in members)
        else:
            items.append((key, key, tuple(p for p, _ in members), members[0][1], False))
    ids = unique_case_ids([_case_id(key, files, ds, split) for key, _, files, ds, split in items],
                          [id_key for _, id_key, _, _, _ in items])
    out = []
    for (key, _, files, ds, _), cid in zip(items, ids, strict=True):
        study = str(ds.get("StudyInstanceUID") or "")
        mine = tuple(s for s in skipped if study_of.get(s.path) == study or s.kind == UNREADABLE)
        out.append(Series("" if key.startswith(_NO_UID) else key, files, str(ds.get("Modality") or ""),
                          str(ds.get("SeriesDescription") or ""), _series_number(ds), study, cid, mine))
    return out


def scan_files(paths: Iterable[Path]) -> FolderScan:
    """Classify and group the given files (see the module docstring)."""
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped: list[SkippedObject] = []
    not_dicom: list[Path] = []
    study_of: dict[Path, str] = {}
    for path in paths:
        try:
            ds = read_header(path)
        except UnreadableDicom as exc:
            skipped.append(SkippedObject(path, "", UNREADABLE, str(exc)))
            continue
        if ds is None:
            not_dicom.append(path)
            continue
        reason = skip_reason(ds)
        if reason is None and not ds.get("SeriesInstanceUID") and not ds.get("Rows"):
            skipped.append(SkippedObject(path, str(ds.get("Modality") or ""), UNREADABLE,
                                         "truncated header (no SeriesInstanceUID, no image attributes)"))
            continue
        if reason is not None:
            sop = sop_class_of(ds)
            skipped.append(SkippedObject(path, str(ds.get("Modality") or ""), UID(sop).name if sop else "", reason))
            study_of[path] = str(ds.get("StudyInstanceUID") or "")
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID") or f"{_NO_UID}{path}"), []).append((path, ds))
    return FolderScan(_make_series(groups, skipped, study_of), skipped, not_dicom)


def scan_folder(folder: str | Path) -> FolderScan:
    """Scan every file under ``folder`` (recursively, hidden entries skipped)."""
    return scan_files(_walk(Path(folder)))


__all__ = ["DICOMDIR_SOP_CLASS", "FolderScan", "NON_IMAGE_MODALITIES", "Series", "has_dicom_preamble",
           "UnreadableDicom", "read_header", "scan_files", "scan_folder", "skip_reason", "sop_class_of"]
