"""Turning what the user passed (folder, file, list, manifest CSV) into a list of cases.

* **A folder**: every NIfTI (``*.nii``, ``*.nii.gz``) and 2-D image file (``*.png``, ``*.jpg``, ``*.jpeg``) in
  it (not in subfolders; hidden files skipped), case id = file name without its suffix; and every DICOM image
  series under it (recursively; :mod:`livercad.pipeline.predict.dicom_inputs`), case id from the series.
* **One file**: NIfTI, PNG/JPEG, or DICOM (a one-slice series or a 2-D image).
* **A list**: NIfTI and image files are one case each, DICOM files are grouped into series, folders as above.
* **A manifest CSV** brings ground-truth masks and labels for evaluation, and per case a ``modality``
  (column ``modality``), a contrast phase (``contrast_phase`` or ``phase``) and the image domain
  (:func:`livercad.domain.case_domain`). Its ``image`` may be a NIfTI, PNG/JPEG or DICOM file or a folder of
  one DICOM series; its ``mask`` a NIfTI label image or a DICOM-SEG.

Every case also carries the run's settings (``run_modality``, ``spacing``, ``output_format``), so a worker
needs nothing else. Problems that concern one case only (a duplicate or unsafe id, an unreadable DICOM file)
become that case's failure; problems that make the whole request meaningless (no such path, an invalid
manifest, a folder without any image, an invalid run setting) raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from livercad.domain import case_domain, extra_value
from livercad.errors import ConfigError, InputError
from livercad.io.image2d import check_spacing, is_image2d_name

NIFTI_SUFFIXES = (".nii.gz", ".nii")
KINDS = ("nifti", "dicom", "image2d")


@dataclass(frozen=True)
class CaseInput:
    """One case to process.

    Attributes:
        image: the file (or, for DICOM, the series folder) named in messages and records.
        modality: the case's own modality (manifest ``modality`` column), or ``None``; a DICOM image's
            Modality tag is read when it is loaded.
        run_modality: the run's ``--modality`` (used when the case names none), or ``None``.
        image_domain: ``phantom`` when the case comes from a phantom cohort manifest, else ``real``.
        kind: ``nifti`` | ``dicom`` | ``image2d`` (PNG/JPEG): which reader loads ``image``.
        files: the DICOM files of the series (found in a folder or a list); empty: load ``image`` itself.
        contrast_phase: the manifest's ``contrast_phase``/``phase`` value (wins over the DICOM series').
        spacing: the run's pixel spacing ``(sx, sy)`` mm for 2-D images that give none.
        output_format: the run's ``nifti`` | ``dicom-seg`` | ``both``.
    """

    case_id: str
    image: Path
    mask: Path | None = None
    label: str | None = None
    patient_id: str | None = None
    liver_labels: tuple[int, ...] | None = None
    modality: str | None = None
    run_modality: str | None = None
    image_domain: str = "real"
    kind: str = "nifti"
    files: tuple[Path, ...] = ()
    contrast_phase: str | None = None
    spacing: tuple[float, float] | None = None
    output_format: str = "nifti"


@dataclass(frozen=True)
class InputProblem:
    """A case that cannot even be attempted (recorded in failures.csv)."""

    case_id: str
    image: str
    reason: str


def is_nifti_name(path: Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` file names (case-insensitive)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def kind_by_name(path: Path) -> str | None:
    """``nifti`` / ``image2d`` from the file name alone, else ``None``."""
    if is_nifti_name(path):
        return "nifti"
    return "image2d" if is_image2d_name(path) else None


def input_kind(path: Path) -> str:
    """Which reader a path needs: by name, then DICOM for folders, ``.dcm`` and DICOM content, else NIfTI.

    Unknown files go to the NIfTI reader, whose one-line error says what the file is instead.
    """
    from livercad.pipeline.predict.dicom_inputs import looks_like_dicom

    by_name = kind_by_name(path)
    if by_name is not None:
        return by_name
    if path.is_dir() or path.name.lower().endswith(".dcm") or looks_like_dicom(path):
        return "dicom"
    return "nifti"


def checked_cases(cases: Sequence[CaseInput], problems: Sequence[InputProblem]
                  ) -> tuple[list[CaseInput], list[InputProblem]]:
    """Cases with a safe, unique id; the others become problems (a duplicate gets its file's name as id)."""
    from livercad.io.manifest import safe_case_id

    out: list[CaseInput] = []
    found = list(problems)
    seen: dict[str, Path] = {}
    for c in cases:
        try:
            safe_case_id(c.case_id)
        except InputError as exc:
            found.append(InputProblem(c.case_id, str(c.image), exc.reason))
            continue
        if c.case_id in seen:
            found.append(InputProblem(_problem_id(c, seen, found), str(c.image),
                                      f"duplicate case id '{c.case_id}' (also {seen[c.case_id].name})"))
            continue
        seen[c.case_id] = c.image
        out.append(c)
    return out, found


def _problem_id(case: CaseInput, seen: dict[str, Path], problems: Sequence[InputProblem]) -> str:
    """An id for a duplicate's failure record that no case or problem uses (its file name when free)."""
    taken = set(seen) | {p.case_id for p in problems}
    for candidate in (case.image.name, *(f"{case.case_id}.duplicate{n}" for n in range(2, 1000))):
        if candidate not in taken and ".." not in candidate and not candidate.startswith("."):
            return candidate
    return case.case_id


def _manifest_phase(extra: dict[str, str] | None) -> str | None:
    """The manifest's contrast phase (``contrast_phase`` or ``phase`` column), normalised when recognised."""
    from livercad.io.dicom_meta import phase_from_text

    value = extra_value(extra, "contrast_phase") or extra_value(extra, "phase")
    return (phase_from_text(value) or value.lower()) if value else None


def _cases_from_manifest(path: Path) -> list[CaseInput]:
    """One case per manifest row, with its reader chosen from the image path."""
    from livercad.io.manifest import parse_liver_labels, read_manifest

    rows = read_manifest(path, classes=None, check_files=False)
    cases = []
    for r in rows:
        labels = parse_liver_labels(r.extra.get("liver_labels")) if r.extra else None
        cases.append(CaseInput(r.case_id, Path(r.image), r.mask, r.label or None, r.patient_id, labels,
                               modality=extra_value(r.extra, "modality"), image_domain=case_domain(r.extra),
                               kind=input_kind(Path(r.image)), contrast_phase=_manifest_phase(r.extra)))
    return cases


def _check_settings(spacing: Sequence[float] | None, output_format: str) -> tuple[tuple[float, float] | None, str]:
    """The run's spacing and output format, validated (ConfigError: exit code 2)."""
    from livercad.pipeline.predict.outputs import check_output_format

    try:
        checked = check_spacing(spacing)
    except ValueError as exc:
        raise ConfigError(f"--spacing: {exc}") from None
    return checked, check_output_format(output_format)


def discover_inputs(inputs: str | Path | Sequence[str | Path], *, split: str | None = None,
                    modality: str | None = None, spacing: Sequence[float] | None = None,
                    output_format: str = "nifti") -> tuple[list[CaseInput], list[InputProblem]]:
    """Resolve the user's inputs into cases.

    Args:
        inputs: a folder (NIfTI, PNG/JPEG files, DICOM series), one file, a list of files, or a manifest ``.csv``.
        split: with a manifest, keep only rows of this split (e.g. ``test``).
        modality: the run's modality, given to every case (used where the case names none).
        spacing: the run's ``(sx, sy)`` pixel spacing in mm for 2-D images that give none.
        output_format: ``nifti`` | ``dicom-seg`` | ``both``, given to every case.

    Returns:
        (cases, problems) — problems are per-case and go to failures.csv.

    Raises:
        InputError: the path does not exist, a folder holds no image, or the manifest is invalid.
        ConfigError: ``spacing`` or ``output_format`` is invalid.
    """
    run_spacing, fmt = _check_settings(spacing, output_format)
    cases, problems = _discover(inputs, split)
    cases = [replace(c, run_modality=modality or None, spacing=run_spacing, output_format=fmt) for c in cases]
    return cases, problems


def _discover(inputs: str | Path | Sequence[str | Path], split: str | None
              ) -> tuple[list[CaseInput], list[InputProblem]]:
    """Cases and per-case problems of a list, a folder, a manifest or one file (no run settings yet)."""
    from livercad.pipeline.predict.dicom_inputs import cases_from_folder, cases_from_paths

    if isinstance(inputs, (list, tuple)):
        return checked_cases(*cases_from_paths([Path(p) for p in inputs]))
    p = Path(inputs)  # type: ignore[arg-type]
    if not p.exists():
        raise InputError(p, "input not found (expected a NIfTI, DICOM, PNG or JPEG file, a folder of them, "
                            "or a manifest .csv)")
    if p.is_dir():
        return checked_cases(*cases_from_folder(p))
    if p.suffix.lower() == ".csv":
        cases = _cases_from_manifest(p)
        if split:
            from livercad.io.manifest import read_manifest

            keep = {r.case_id for r in read_manifest(p, check_files=False) if r.split == split}
            cases = [c for c in cases if c.case_id in keep]
        return cases, []
    return checked_cases(*cases_from_paths([p]))
