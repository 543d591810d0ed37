"""Cases of folders and lists of files: NIfTI and 2-D image files one case each, DICOM series one case each.

A folder contributes its own NIfTI and PNG/JPEG files (not those of subfolders) and every DICOM image series
under it, found by reading the headers of all other files (recursively, hidden entries skipped;
:func:`livercad.io.dicom_scan.scan_files`). Non-image DICOM objects (SR, SEG, presentation states,
DICOMDIR ...) and non-DICOM files are skipped and logged. An unreadable DICOM file fails the series whose
files lie in the same folder (it may be one of its slices, as :func:`livercad.io.dicom.load_dicom_series`
decides); one that lies beside no series is its own failed case. DICOM files given explicitly (a single
file, a list) that are no image series are failed cases with the reason.

Example:
    >>> import tempfile, numpy as np
    >>> from livercad.io.dicom_synth import write_series
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_series(np.zeros((2, 8, 8), np.int16), root / "ct", series_description="PV", series_number=3)
    >>> (root / "b.nii.gz").write_bytes(b"x") and None
    >>> cases, problems = cases_from_folder(root)
    >>> [(c.row.case_id, c.kind, len(c.files)) for c in cases], problems
    ([('PV_s3', 'dicom', 2), ('b', 'nifti', 0)], [])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from livercad.errors import InputError
from livercad.io.dicom_scan import UNREADABLE, FolderScan, Series, has_dicom_preamble, scan_files
from livercad.pipeline.predict.inputs import CaseInput, InputProblem, file_case, input_kind, kind_by_name

log = logging.getLogger(__name__)

_DICOMDIR = "a DICOMDIR is an index of a DICOM medium, not an image: pass the folder of images instead"
_SLICE_OF_IT = "it lies among the series' files and may be one of its slices: repair or remove it"


def looks_like_dicom(path: Path) -> bool:
    """True for a file with the DICOM preamble, or one starting with a group-0008 element (raw DICOM)."""
    if not path.is_file():
        return False
    if has_dicom_preamble(path):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x08\x00"
    except OSError:
        return False


def _walk(folder: Path) -> Iterable[Path]:
    """Every non-hidden file under ``folder`` (recursively), sorted."""
    for path in sorted(folder.rglob("*")):
        if not any(part.startswith(".") for part in path.relative_to(folder).parts) and path.is_file():
            yield path


def _series_case(series: Series) -> CaseInput:
    """The case of one series: its files (absolute), named by its folder (its file when it has one)."""
    from livercad.io.dicom_volume import series_folder

    files = tuple(f.absolute() for f in series.files)
    image = files[0] if len(files) == 1 else series_folder(series).absolute()
    return file_case(series.case_id, image, "dicom", files)


def _series_cases(scan: FolderScan, *, explicit: bool) -> tuple[list[CaseInput], list[InputProblem]]:
    """Cases of the scan's series, and problems: series beside unreadable files, unreadable files alone,
    and (``explicit``: files the user named) every file that is no image series."""
    cases: list[CaseInput] = []
    problems: list[InputProblem] = []
    series_folders = {f.parent for s in scan.series for f in s.files}
    for s in scan.series:
        folders = {f.parent for f in s.files}
        bad = next((k for k in s.skipped if k.kind == UNREADABLE and k.path.parent in folders), None)
        if bad is None:
            cases.append(_series_case(s))
            continue
        problems.append(InputProblem(s.case_id, str(bad.path), f"{bad.path}: {s.label}: {bad.reason}; {_SLICE_OF_IT}"))
    for item in scan.skipped:
        if item.kind == UNREADABLE and item.path.parent in series_folders:
            continue  # reported with the series beside it
        if explicit or item.kind == UNREADABLE:
            reason = _DICOMDIR if item.reason.startswith("DICOMDIR") else f"not an image series: {item.reason}"
            problems.append(InputProblem(item.path.stem, str(item.path), f"{item.path}: {reason}"))
        else:
            log.info("skipped %s: %s", item.path, item.reason)
    if explicit:
        problems += [InputProblem(p.stem, str(p), f"{p}: not a DICOM file (no DICM preamble)") for p in scan.not_dicom]
    return cases, problems


def cases_from_folder(folder: Path) -> tuple[list[CaseInput], list[InputProblem]]:
    """The cases of a folder (see the module docstring), sorted by case id.

    Raises:
        InputError: the folder holds no NIfTI, PNG/JPEG file and no DICOM image series (and no broken one).
    """
    files = list(_walk(folder))
    plain = [file_case(_case_id(p), p, kind) for p in files
             if p.parent == folder and (kind := kind_by_name(p)) is not None]
    scan = scan_files(p for p in files if kind_by_name(p) is None)
    dicom, problems = _series_cases(scan, explicit=False)
    cases = sorted([*plain, *dicom], key=lambda c: (c.row.case_id, str(c.row.image)))
    if not cases and not problems:
        kinds = sorted({s.reason for s in scan.skipped})
        raise InputError(folder, f"folder contains no .nii/.nii.gz, .png, .jpg or .jpeg file and no DICOM image "
                                 f"series ({len(scan.skipped)} DICOM objects skipped{': ' if kinds else ''}"
                                 f"{'; '.join(kinds)}; {len(scan.not_dicom)} other files)")
    return cases, problems


def cases_from_paths(paths: Sequence[Path]) -> tuple[list[CaseInput], list[InputProblem]]:
    """The cases of a list of files (and folders), in list order; DICOM files grouped into series after them."""
    cases: list[CaseInput] = []
    problems: list[InputProblem] = []
    dicom: list[Path] = []
    for p in paths:
        if p.is_dir():
            more, found = cases_from_folder(p)
            cases, problems = [*cases, *more], [*problems, *found]
            continue
        kind = input_kind(p)
        if kind == "dicom" and p.is_file():
            dicom.append(p)
        else:
            cases.append(file_case(_case_id(p), p, kind))
    if dicom:
        more, found = _series_cases(scan_files(dicom), explicit=True)
        cases, problems = [*cases, *more], [*problems, *found]
    return cases, problems


def _case_id(path: Path) -> str:
    """The case id of a NIfTI or image file: its name without the suffix."""
    from livercad.io.manifest import case_id_from_path

    return case_id_from_path(path)
