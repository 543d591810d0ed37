"""Turning what the user passed (folder, file, list, manifest CSV) into a list of cases.

A folder yields every ``*.nii``/``*.nii.gz`` file in it (hidden files skipped), case id = file name
without the NIfTI suffix. A manifest CSV brings ground-truth masks and labels for evaluation, and per
case a ``modality`` (column ``modality``) and the image domain (:func:`livercad.domain.case_domain`).
Problems that concern one case only (a duplicate name, an unsafe id) become that case's failure;
problems that make the whole request meaningless (no such path, an invalid manifest) raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from livercad.domain import case_domain, extra_value
from livercad.errors import InputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class CaseInput:
    """One case to process.

    Attributes:
        modality: the case's own modality (manifest ``modality`` column), or ``None``.
        run_modality: the run's ``--modality`` (used when the case names none), or ``None``.
        image_domain: ``phantom`` when the case comes from a phantom cohort manifest, else ``real``.
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


@dataclass(frozen=True)
class InputProblem:
    """A case that cannot even be attempted (recorded in failures.csv)."""

    case_id: str
    image: str
    reason: str





def is_nifti_name(path: Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` file names (case-insensitive)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _cases_from_files(files: Sequence[Path]) -> tuple[list[CaseInput], list[InputProblem]]:
    from livercad.io.manifest import case_id_from_path, safe_case_id

    cases: list[CaseInput] = []
    problems: list[InputProblem] = []
    seen: dict[str, Path] = {}
    for f in files:
        cid = case_id_from_path(f)
        try:
            safe_case_id(cid)
        except InputError as exc:
            problems.append(InputProblem(cid, str(f), exc.reason))
            continue
        if cid in seen:
            problems.append(InputProblem(cid, str(f), f"duplicate case id '{cid}' (also {seen[cid].name})"))
            continue
        seen[cid] = f
        cases.append(CaseInput(case_id=cid, image=f))
    return cases, problems


def _cases_from_manifest(path: Path) -> list[CaseInput]:
    from livercad.io.manifest import parse_liver_labels, read_manifest

    rows = read_manifest(path, classes=None, check_files=False)
    cases = []
    for r in rows:
        labels = parse_liver_labels(r.extra.get("liver_labels")) if r.extra else None
        cases.append(CaseInput(r.case_id, Path(r.image), r.mask, r.label or None, r.patient_id, labels,
                               modality=extra_value(r.extra, "modality"), image_domain=case_domain(r.extra)))
    return cases


def discover_inputs(inputs: str | Path | Sequence[str | Path], *, split: str | None = None,
                    modality: str | None = None) -> tuple[list[CaseInput], list[InputProblem]]:
    """Resolve the user's inputs into cases.

    Args:
        inputs: a folder of NIfTI files, one NIfTI file, a list of files, or a manifest ``.csv``.
        split: with a manifest, keep only rows of this split (e.g. ``test``).
        modality: the run's modality, given to every case (used where the case names none).

    Returns:
        (cases, problems) — problems are per-case and go to failures.csv.

    Raises:
        InputError: the path does not exist, a folder holds no NIfTI file, or the manifest is invalid.
    """
    cases, problems = _discover(inputs, split)
    if modality:
        cases = [replace(c, run_modality=modality) for c in cases]
    return cases, problems


def _discover(inputs: str | Path | Sequence[str | Path], split: str | None
              ) -> tuple[list[CaseInput], list[InputProblem]]:
    if isinstance(inputs, (list, tuple)):
        files = [Path(p) for p in inputs]
        return _cases_from_files(files)
    p = Path(inputs)  # type: ignore[arg-type]
    if not p.exists():
        raise InputError(p, "input not found (expected a NIfTI file, a folder of them, or a manifest .csv)")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if is_nifti_name(f) and not f.name.startswith("."))
        if not files:
            raise InputError(p, "folder contains no .nii or .nii.gz files")
        return _cases_from_files(files)
    if p.suffix.lower() == ".csv":
        cases = _cases_from_manifest(p)
        if split:
            from livercad.io.manifest import read_manifest

            keep = {r.case_id for r in read_manifest(p, check_files=False) if r.split == split}
            cases = [c for c in cases if c.case_id in keep]
        return cases, []
    return _cases_from_files([p])
