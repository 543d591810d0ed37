"""Imaging modalities: the names livercad accepts, their families, and how a case's modality is decided.

Preprocessing depends on the *family* of a modality only: ``ct`` (Hounsfield units, a fixed HU window),
``mr`` (arbitrary units: percentile clip and z-score; ``mr``, ``mr-t1`` and ``mr-t2`` are all ``mr``) and
``us`` (B-mode grey values, as ``mr``). A bundle records the families its segmenter was trained on;
a case of another family is refused with a one-line reason (:func:`check_trained_for`), never pushed
through the wrong normalisation.

A case's modality comes from, in this order: the case's own record (a DICOM ``Modality`` tag or the
manifest's ``modality`` column), the run's ``--modality``, and last the rule on the intensity range of
:func:`guess_from_intensities` (recorded as ``modality_source: intensity-rule``).

Example:
    >>> family("MR-T2"), family("CT"), family("MRI")
    ('mr', 'ct', 'mr')
    >>> guess_from_intensities(np.array([-1024.0, -50.0, 60.0, 300.0]))
    'ct'
"""

from __future__ import annotations

import numpy as np

from livercad.errors import InputError

#: Accepted names (lower case) -> family. DICOM Modality values ``CT``, ``MR``, ``US`` are included.
FAMILIES: dict[str, str] = {
    "ct": "ct", "mr": "mr", "mri": "mr", "mr-t1": "mr", "mr-t2": "mr", "t1": "mr", "t2": "mr", "us": "us",
}
#: Voxels at or below this value occur only in CT (air is about -1000 HU; padding -1024 ... -3024).
CT_AIR_HU = -500.0


def family(modality: str) -> str:
    """The preprocessing family (``ct`` | ``mr`` | ``us``) of a modality name (case-insensitive).

    Raises:
        InputError: the name is not one livercad knows.
    """
    key = str(modality).strip().lower()
    if key not in FAMILIES:
        raise InputError(None, f"unknown modality '{modality}'; expected one of {sorted(set(FAMILIES))}")
    return FAMILIES[key]


def guess_from_intensities(values: np.ndarray) -> str:
    """The intensity-range rule: ``ct`` when at least 1 % of voxels are at or below -500, else ``mr``.

    CT stores air (about -1000 HU, and the body holds lung, bowel gas and the air around it) as large
    negative numbers; MR magnitude images are non-negative apart from a little reconstruction noise.
    Ultrasound is never guessed: frames must say so. About 200 000 voxels are sampled, evenly in memory order
    (a view of a loaded volume, which is Fortran-ordered: no copy of it).
    """
    v = np.asarray(values)
    if v.size == 0:
        return "mr"
    sample = v.ravel(order="K")[:: max(1, v.size // 200_000)]
    return "ct" if float(np.mean(sample <= CT_AIR_HU)) >= 0.01 else "mr"


def resolve(case_modality: str | None, run_modality: str | None, values: np.ndarray | None
            ) -> tuple[str, str]:
    """Decide a case's modality family and where it came from.

    Args:
        case_modality: the case's own value (DICOM tag or manifest column), or ``None``/empty.
        run_modality: the run's ``--modality`` (or ``None``).
        values: the image voxels, for the intensity rule when neither is given.

    Returns:
        ``(family, source)`` with source ``case`` | ``run`` | ``intensity-rule``.
    """
    if case_modality:
        return family(case_modality), "case"
    if run_modality:
        return family(run_modality), "run"
    if values is None:
        raise InputError(None, "no modality given and no voxels to guess it from")
    return guess_from_intensities(values), "intensity-rule"


def check_trained_for(mod_family: str, trained: list[str], what: str) -> None:
    """Refuse a case whose modality family the model was not trained on (one-line :class:`InputError`)."""
    if mod_family not in trained:
        raise InputError(None, f"modality '{mod_family}' but {what} was trained on {trained} only; "
                               "use a bundle trained on this modality, or correct the case's modality")
