"""Series metadata: the case record of a DICOM series, its case id and its contrast phase.

The contrast phase is read, in this order, from

1. keywords in SeriesDescription (then ProtocolName), matched as whole words, case-insensitive:
   ``non-contrast`` (native, non-contrast, non con, unenhanced, plain, pre-contrast, pre, w/o, nc),
   ``arterial`` (arterial, art, hap, early/late arterial), ``portal-venous`` (portal, venous, pv, pvp, ven),
   ``delayed`` (delayed, delay, equilibrium, late, transitional, hepatobiliary, hbp). A description wins over
   ContrastBolusAgent (scanners often copy the agent of the protocol into every series);
2. ContrastBolusAgent / ContrastBolusRoute: ``none``/``no``/``nil`` -> ``non-contrast``, another value ->
   ``contrast-enhanced`` (phase unknown);
3. otherwise ``unknown`` (an absent agent does not prove that no contrast was given).

Example:
    >>> contrast_phase("Abd PORTAL VENOUS 5mm", None, None)
    ('portal-venous', 'SeriesDescription')
    >>> contrast_phase("AX 5mm", "ISOVUE300/100", None), contrast_phase("", "", "")
    (('contrast-enhanced', 'ContrastBolusAgent'), ('unknown', 'none'))
    >>> case_id_for("Abd: Portal/Venous 5.0mm", 3, "1.2.3")
    'Abd_Portal_Venous_5.0mm_s3'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Phases in priority order (first match wins), each with its whole-word keyword patterns.
PHASE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("non-contrast", r"native|non[ -]?contrast|non[ -]?con|unenhanced|plain|pre[ -]?contrast|pre[ -]?con|"
                     r"pre|w/?o(?: contrast)?|without contrast|nc|noncon"),
    ("arterial", r"(?:early |late )?arterial|art|hap|arterial phase"),
    ("portal-venous", r"portal(?:[ -]?venous)?|porto[ -]?venous|venous|pv|pvp|ven"),
    ("delayed", r"delayed|delay|equilibrium|equil|late|transitional|hepatobiliary|hbp"),
)
_FAMILIES = {"CT": "ct", "MR": "mr", "US": "us"}
_NO_AGENT = {"none", "no", "nil", "n/a", "na", "0", "-"}
_ID_CHARS = re.compile(r"[^A-Za-z0-9.\-]+")
MAX_DESCRIPTION_ID = 80


@dataclass(frozen=True)
class SkippedObject:
    """A file in a DICOM folder that is not part of any image series, and why."""

    path: Path
    modality: str
    kind: str      # SOP class name (e.g. "Comprehensive SR Storage") or "not DICOM"
    reason: str


@dataclass(frozen=True)
class DicomRecord:
    """What livercad keeps of a DICOM series (``Volume.header`` of a DICOM volume).

    Attributes:
        case_id: Case id derived from the series (see :func:`case_id_for`).
        modality, series_description, series_number: As in the files.
        contrast_phase: ``non-contrast`` | ``arterial`` | ``portal-venous`` | ``delayed`` |
            ``contrast-enhanced`` | ``unknown``; ``contrast_phase_source`` says which attribute decided.
        study_uid, series_uid, frame_of_reference_uid: UIDs of the source (FoR ``None`` without geometry).
        sop_instance_uids, files: per slice ``k`` of the volume, in slice order (what DICOM-SEG references).
        rows, columns: The image matrix; the volume's shape is ``(columns, rows, len(files))``.
        spacing_known: ``False`` when no pixel spacing was found (spacing is then 1 mm, a placeholder).
        spacing_source: ``PixelSpacing`` | ``SequenceOfUltrasoundRegions`` | ``unknown``.
        patient_geometry: ``True`` when the affine comes from ImagePositionPatient/ImageOrientationPatient;
            ``False`` for 2-D images without them (the affine then places the image at the origin, axial).
        transfer_syntax: Name of the first file's transfer syntax.
        skipped: Non-image objects of the same study found next to the series.
    """

    case_id: str
    modality: str
    series_description: str
    series_number: int | None
    contrast_phase: str
    contrast_phase_source: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str | None
    sop_instance_uids: tuple[str, ...]
    files: tuple[Path, ...]
    rows: int
    columns: int
    spacing_known: bool = True
    spacing_source: str = "PixelSpacing"
    patient_geometry: bool = True
    transfer_syntax: str = ""
    skipped: tuple[SkippedObject, ...] = field(default=())

    @property
    def modality_family(self) -> str | None:
        """livercad's modality family of the series (``ct`` | ``mr`` | ``us``), else ``None``.

        Example:
            >>> modality_family("MR"), modality_family("NM")
            ('mr', None)
        """
        return modality_family(self.modality)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (paths as strings; skipped objects as dicts) for case records and run.json.

        Example:
            >>> r = DicomRecord("c", "CT", "", None, "unknown", "none", "1", "2", None, ("3",), (Path("a"),), 2, 2)
            >>> r.as_dict()["files"]
            ['a']
        """
        out = asdict(self)
        out["files"] = [str(f) for f in self.files]
        out["sop_instance_uids"] = list(self.sop_instance_uids)
        out["skipped"] = [{**asdict(s), "path": str(s.path)} for s in self.skipped]
        return out


def modality_family(modality: str | None) -> str | None:
    """``ct`` / ``mr`` / ``us`` for the DICOM Modality values CT, MR, US (any case), else ``None``."""
    return _FAMILIES.get(str(modality or "").strip().upper())


def _words(text: str) -> str:
    """Lower-case text with separators turned into single spaces (``/`` kept for ``w/o``)."""
    return " " + " ".join(re.sub(r"[^a-z0-9/]+", " ", text.lower()).split()) + " "


def phase_from_text(text: str | None) -> str | None:
    """The phase named in a free-text description, or ``None``.

    Example:
        >>> phase_from_text("CT ABDOMEN ART PHASE"), phase_from_text("Heart 3mm"), phase_from_text("Leber nativ")
        ('arterial', None, None)
    """
    if not text:
        return None
    words = _words(str(text))
    for phase, pattern in PHASE_PATTERNS:
        if re.search(rf" (?:{pattern}) ", words):
            return phase
    return None


def contrast_phase(description: str | None, agent: str | None, route: str | None,
                   protocol: str | None = None) -> tuple[str, str]:
    """(phase, source attribute) from the series description, protocol, contrast agent and route."""
    for source, text in (("SeriesDescription", description), ("ProtocolName", protocol)):
        phase = phase_from_text(text)
        if phase:
            return phase, source
    for source, value in (("ContrastBolusAgent", agent), ("ContrastBolusRoute", route)):
        text = str(value or "").strip().lower()
        if text:
            return ("non-contrast" if text in _NO_AGENT else "contrast-enhanced"), source
    return "unknown", "none"


def case_id_for(description: str | None, number: int | None, uid: str) -> str:
    """A file-name-safe case id: sanitised SeriesDescription + ``_s`` + SeriesNumber, else the UID."""
    text = _ID_CHARS.sub("_", str(description or "")).strip("._-")[:MAX_DESCRIPTION_ID].strip("._-")
    text = re.sub(r"\.{2,}", ".", text)
    if not text:
        return uid or "series"
    return f"{text}_s{number}" if number is not None else text


def unique_case_ids(ids: Sequence[str], uids: Sequence[str]) -> list[str]:
    """Make ``ids`` unique by appending 8 hex digits of each clashing series' UID hash.

    Example:
        >>> unique_case_ids(["a", "a", "b"], ["1.1", "1.2", "1.3"])[2]
        'b'
    """
    counts: dict[str, int] = {}
    for cid in ids:
        counts[cid] = counts.get(cid, 0) + 1
    out = []
    for cid, uid in zip(ids, uids, strict=True):
        out.append(cid if counts[cid] == 1 else f"{cid}_{hashlib.sha1(uid.encode()).hexdigest()[:8]}")
    return out


__all__ = ["DicomRecord", "PHASE_PATTERNS", "SkippedObject", "case_id_for", "contrast_phase", "modality_family",
           "phase_from_text", "unique_case_ids"]
