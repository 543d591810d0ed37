"""Turning what the user passed (folder, file, list, manifest CSV) into a list of cases.

* **A folder**: every NIfTI (``*.nii``, ``*.nii.gz``) and 2-D image file (``*.png``, ``*.jpg``, ``*.jpeg``) in
  it (not in subfolders; hidden files skipped), case id = file name without its suffix; and every DICOM image
  series under it (recursively; :mod:`livercad.pipeline.predict.dicom_inputs`), case id from the series.
* **One file**: NIfTI, PNG/JPEG, or DICOM (a one-slice series or a 2-D image).
* **A list**: NIfTI and image files are one case each, DICOM files are grouped into series, folders as above.
* **A manifest CSV** brings ground-truth masks and labels for evaluation, and per case a ``modality``
  (column ``modality``), a contrast phase (``contrast_phase`` or ``phase``) and the image domain
  (:func:`livercad.domain.case_domain`). Its ``image`` may be a NIfTI, PNG/JPEG or DICOM file or a folder of
  one DICOM series; its ``mask`` a NIfTI label image or a DICOM-SEG; its ``image_<phase>`` columns the further
  images of a multi-phase model (:mod:`livercad.io.channels`).

Every case also carries the run's settings (``run_modality``, ``spacing``, ``output_format``,
``channels_axis``), so a worker needs nothing else. Problems that concern one case only (a duplicate or unsafe
id, an unreadable DICOM file) become that case's failure; problems that make the whole request meaningless (no
such path, an invalid manifest, a folder without any image, an invalid run setting) raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from livercad.domain import case_domain, extra_value
from livercad.errors import ConfigError, InputError
from livercad.io.image2d import check_spacing, is_image2d_name
from livercad.io.manifest import ManifestRow

NIFTI_SUFFIXES = (".nii.gz", ".nii")
KINDS = ("nifti", "dicom", "image2d")


@dataclass(frozen=True)
class CaseInput:
    """One case to process: its record (a :class:`~livercad.io.manifest.ManifestRow`), how to read its image,
    and the run's settings.

    The record holds what the case is (``case_id``, ``patient_id``, ``image``, ``mask``, ``label``, ``split``,
    the manifest's extra columns); a case found in a folder or a file list gets a record of its id and image
    only (``patient_id`` empty). What the extra columns say is read through the properties below, never
    copied.

    Attributes:
        row: the case's record; ``row.image`` is the file (or, for DICOM, the series folder) named in messages
            and records.
        kind: ``nifti`` | ``dicom`` | ``image2d`` (PNG/JPEG): which reader loads ``row.image``.
        files: the DICOM files of the series (found in a folder or a list); empty: load ``row.image`` itself.
        run_modality: the run's ``--modality`` (used when the case names none), or ``None``.
        spacing: the run's pixel spacing ``(sx, sy)`` mm for 2-D images that give none.
        output_format: the run's ``nifti`` | ``dicom-seg`` | ``both``.
        channels_axis: the run's ``--channels-axis``: a 4-D NIfTI image holds the model's images along its 4th
            axis (:mod:`livercad.io.channels`).
    """

    row: ManifestRow
    kind: str = "nifti"
    files: tuple[Path, ...] = ()
    run_modality: str | None = None
    spacing: tuple[float, float] | None = None
    output_format: str = "nifti"
    channels_axis: bool = False

    @property
    def modality(self) -> str | None:
        """The case's own modality (the manifest's ``modality`` column), or ``None``; a DICOM image's Modality
        tag is read when it is loaded."""
        return extra_value(self.row.extra, "modality")

    @property
    def image_domain(self) -> str:
        """``phantom`` when the case comes from a phantom cohort manifest, else ``real``."""
        return case_domain(self.row.extra)

    @property
    def contrast_phase(self) -> str | None:
        """The manifest's contrast phase (``contrast_phase`` or ``phase`` column; wins over the DICOM series'),
        normalised when recognised."""
        from livercad.io.dicom_meta import phase_from_text

        value = extra_value(self.row.extra, "contrast_phase") or extra_value(self.row.extra, "phase")
        return (phase_from_text(value) or value.lower()) if value else None


def file_case(case_id: str, image: Path, kind: str, files: tuple[Path, ...] = ()) -> CaseInput:
    """A case found in a folder or a file list: a record of its id and image only.

    Example:
        >>> c = file_case("a", Path("a.nii.gz"), "nifti")
        >>> c.row.case_id, c.row.patient_id, c.kind, c.modality
        ('a', '', 'nifti', None)
    """
    return CaseInput(ManifestRow(case_id, "", image), kind=kind, files=files)


def case_from_row(row: ManifestRow, *, run_modality: str | None = None, channels_axis: bool = False) -> CaseInput:
    """The case of a manifest row, its reader chosen from the image path (``run_modality``, ``channels_axis``:
    see :class:`CaseInput`)."""
    return CaseInput(row, kind=input_kind(Path(row.image)), run_modality=run_modality, channels_axis=channels_axis)


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
    from livercad.io.manifest_check import safe_case_id

    out: list[CaseInput] = []
    found = list(problems)
    seen: dict[str, Path] = {}
    for c in cases:
        case_id, image = c.row.case_id, c.row.image
        try:
            safe_case_id(case_id)
        except InputError as exc:
            found.append(InputProblem(case_id, str(image), exc.reason))
            continue
        if case_id in seen:
            found.append(InputProblem(_problem_id(c, seen, found), str(image),
                                      f"duplicate case id '{case_id}' (also {seen[case_id].name})"))
            continue
        seen[case_id] = image
        out.append(c)
    return out, found


def _problem_id(case: CaseInput, seen: dict[str, Path], problems: Sequence[InputProblem]) -> str:
    """An id for a duplicate's failure record that no case or problem uses (its file name when free)."""
    taken = set(seen) | {p.case_id for p in problems}
    row = case.row
    for candidate in (Path(row.image).name, *(f"{row.case_id}.duplicate{n}" for n in range(2, 1000))):
        if candidate not in taken and ".." not in candidate and not candidate.startswith("."):
            return candidate
    return row.case_id


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
                    output_format: str = "nifti", channels_axis: bool = False
                    ) -> tuple[list[CaseInput], list[InputProblem]]:
    """Resolve the user's inputs into cases.

    Args:
        inputs: a folder (NIfTI, PNG/JPEG files, DICOM series), one file, a list of files, or a manifest ``.csv``.
        split: with a manifest, keep only rows of this split (e.g. ``test``).
        modality: the run's modality, given to every case (used where the case names none).
        spacing: the run's ``(sx, sy)`` pixel spacing in mm for 2-D images that give none.
        output_format: ``nifti`` | ``dicom-seg`` | ``both``, given to every case.
        channels_axis: the 4th axis of a 4-D NIfTI holds the model's images (given to every case).

    Returns:
        (cases, problems) — problems are per-case and go to failures.csv.

    Raises:
        InputError: the path does not exist, a folder holds no image, or the manifest is invalid.
        ConfigError: ``spacing`` or ``output_format`` is invalid.
    """
    run_spacing, fmt = _check_settings(spacing, output_format)
    cases, problems = _discover(inputs, split)
    cases = [replace(c, run_modality=modality or None, spacing=run_spacing, output_format=fmt,
                     channels_axis=bool(channels_axis)) for c in cases]
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
        from livercad.io.manifest import read_manifest

        rows = read_manifest(p, classes=None, check_files=False)
        return [case_from_row(r) for r in rows if not split or r.split == split], []
    return checked_cases(*cases_from_paths([p]))
