"""One phantom case: disease scores, site effects, anatomy -> image, liver mask and tissue labels.

See :mod:`livercad.phantom` for what the phantom contains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from livercad.errors import ConfigError
from livercad.phantom.anatomy import LIVER_LABELS, sample_patient
from livercad.phantom.contrast import CT_PHASES, SiteEffect, bias_field, render_ct, render_mr
from livercad.phantom.geometry import ORIENTATIONS, canonical_affine, reorient, tilt
from livercad.phantom.paint import artifact_weight, paint_labels
from livercad.phantom.phases import check_phases, phase_seed, render_ct_phase
from livercad.phantom.shapes import GridSampler

logger = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("ct", "mr-t2", "us")
CLASSES: tuple[str, ...] = ("normal", "steatosis", "cirrhosis")
DISEASED_BETA = (2.0, 2.5)  # severity of diseased cases
NORMAL_BETA = (1.0, 12.0)  # subclinical scores of normal cases (and the other disease of a diseased case)
#: Site effects (scale, offset in the modality's units, noise multiplier, artifact strength in cohorts).
SITES: dict[str, tuple[float, float, float, float]] = {
    "A": (1.0, 0.0, 1.0, 0.0), "B": (1.06, -8.0, 1.3, 1.0), "C": (0.95, 6.0, 0.8, 0.5),
    "D": (1.03, 3.0, 1.15, 0.0), "E": (0.97, -4.0, 0.9, 0.7),
}

@dataclass(frozen=True)
class PhantomCase:
    """One synthetic case, arrays in the stored (file) voxel order.

    Attributes:
        image: float32 intensities (CT in HU, MR/US arbitrary units); ultrasound frames are ``(H, W, 1)``.
        mask: uint8 liver mask (parenchyma + intrahepatic vessels), same shape.
        affine: 4x4 voxel -> world (RAS mm) matrix.
        label: ``normal``, ``steatosis`` or ``cirrhosis``.
        severity: the case's disease score in [0, 1] (for normals the larger subclinical score).
        meta: manifest extras (modality, steatosis, cirrhosis, site effects, spacing, orientation).
        labels: uint8 tissue map with the ids of :data:`ORGANS`, same shape.
        phases: further CT phases of the same anatomy on the same grid (:mod:`livercad.phantom.phases`):
            phase name -> float32 image in HU; empty unless asked for.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    label: str
    severity: float
    meta: dict[str, float | str] = field(default_factory=dict)
    labels: np.ndarray | None = None
    phases: dict[str, np.ndarray] = field(default_factory=dict)


def check_ct_phase(ct_phase: str) -> str:
    """Return ``ct_phase`` if the phantom renders it (:data:`CT_PHASES`), else raise :class:`ConfigError`."""
    if ct_phase not in CT_PHASES:
        raise ConfigError(f"unknown phantom ct_phase {ct_phase!r}; expected one of {list(CT_PHASES)}")
    return ct_phase


def site_effect(site: str | None, artifact: float = 0.0) -> SiteEffect:
    """The :class:`SiteEffect` of a named site (``None`` -> neutral site ``A``) with the given artifact."""
    name = site or "A"
    if name not in SITES:
        raise ConfigError(f"unknown phantom site {name!r}; expected one of {sorted(SITES)}")
    scale, offset, noise, _ = SITES[name]
    return SiteEffect(name, scale, offset, noise, float(artifact))


def disease_scores(label: str, severity: float | None, rng: np.random.Generator) -> tuple[float, float]:
    """(steatosis, cirrhosis) scores of a case; ``severity`` fixes the class's own score.

    For ``normal`` a given ``severity`` is used as both subclinical scores.
    """
    if label not in CLASSES:
        raise ConfigError(f"unknown phantom label {label!r}; expected one of {list(CLASSES)}")
    if severity is not None and not 0.0 <= float(severity) <= 1.0:
        raise ConfigError(f"phantom severity must lie in [0, 1], got {severity!r}")
    minor = [float(rng.beta(*NORMAL_BETA)) for _ in range(2)]
    if label == "normal":
        return (float(severity), float(severity)) if severity is not None else (minor[0], minor[1])
    main = float(severity) if severity is not None else float(rng.beta(*DISEASED_BETA))
    return (main, minor[1]) if label == "steatosis" else (minor[0], main)


def build_case(case_id: str, modality: str, label: str, scores: tuple[float, float], seed: int,
               shape: tuple[int, int, int], site: SiteEffect, orientation: str,
               ct_phase: str = "portal-venous", phases: Sequence[str] = ()) -> PhantomCase:
    """Build one case from explicit disease scores (the engine behind :func:`make_case`).

    ``phases``: further CT phases rendered from the same label map (:mod:`livercad.phantom.phases`), each with
    its own random draws after the case's image, which they leave unchanged.
    """
    check_ct_phase(ct_phase)
    phases = check_phases(phases, ct_phase, modality)
    rng = np.random.default_rng(seed)
    patient = sample_patient(rng, *scores)
    severity = {"normal": max(scores), "steatosis": scores[0], "cirrhosis": scores[1]}[label]
    meta: dict[str, float | str] = {"modality": modality, "steatosis": round(scores[0], 6),
                                    "cirrhosis": round(scores[1], 6), "site": site.name,
                                    "site_scale": site.scale, "site_offset": site.offset,
                                    "site_noise": site.noise, "site_artifact": site.artifact}
    extra: list[np.ndarray] = []
    if modality == "us":
        from livercad.phantom.us import make_us_frame

        image, labels, affine = make_us_frame(patient, rng, shape, site)
        orientation = "frame"
    else:
        affine = canonical_affine(patient, shape, rng)
        if orientation == "oblique":
            affine = tilt(affine, shape, np.random.default_rng([seed, 7]))
        sampler = GridSampler(shape, affine)
        labels = paint_labels(sampler, patient, table=modality == "ct")
        _, x, y, z = sampler.region()  # type: ignore[misc]
        artifact = artifact_weight(x, y, z, patient) if site.artifact > 0 else np.float32(0.0)
        vox = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        if modality == "ct":
            image = render_ct(labels, patient, rng, vox, site, artifact, ct_phase)
            meta["ct_phase"] = ct_phase
        else:
            image = render_mr(labels, patient, rng, vox, site, artifact, bias_field(x, y, z, rng))
        extra = [render_ct_phase(labels, patient, np.random.default_rng(phase_seed(seed, ph)), vox, site,
                                 artifact, ph) for ph in phases]
        (image, labels, *extra), affine = reorient([image, labels, *extra], affine, orientation)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    meta.update({"spacing_x": round(float(spacing[0]), 4), "spacing_y": round(float(spacing[1]), 4),
                 "spacing_z": round(float(spacing[2]), 4), "orientation": orientation})
    mask = np.isin(labels, LIVER_LABELS).astype(np.uint8)
    others = {ph: im.astype(np.float32) for ph, im in zip(phases, extra, strict=True)}
    return PhantomCase(case_id, image.astype(np.float32), mask, affine, label, round(severity, 6), meta, labels,
                       others)


def make_case(case_id: str, *, modality: str = "ct", label: str = "normal", severity: float | None = None,
              seed: int = 0, shape: tuple[int, int, int] = (128, 128, 48), site: str | None = None,
              orientation: str | None = None, site_artifact_strength: float = 0.0,
              ct_phase: str = "portal-venous", phases: Sequence[str] = ()) -> PhantomCase:
    """Generate one phantom case in memory.

    Args:
        case_id: Identifier stored in the case.
        modality: ``"ct"``, ``"mr-t2"`` or ``"us"`` (a 2-D frame of shape ``(shape[0], shape[1], 1)``).
        label: ``"normal"``, ``"steatosis"`` or ``"cirrhosis"``.
        severity: The class's disease score in [0, 1]; drawn at random when ``None``.
        seed: Seeds everything (anatomy, contrast, noise); the same arguments give identical arrays.
        shape: Volume shape in canonical (RAS, axial) axis order; stored arrays are permuted to match
            ``orientation``.
        site: Site name from :data:`SITES` (intensity scale/offset, noise level); ``None`` = ``"A"``.
        orientation: One of :data:`ORIENTATIONS` (``None`` = ``"RAS"``); ignored for ultrasound.
        site_artifact_strength: Strength of the site artifact outside the body edge (0 = none).
        ct_phase: CT contrast phase, ``"portal-venous"`` (default) or ``"non-contrast"`` (CT only).
        phases: further CT phases of the same anatomy (:attr:`PhantomCase.phases`; CT only).

    Returns:
        The :class:`PhantomCase`.

    Example:
        >>> case = make_case("c1", label="steatosis", severity=0.6, shape=(48, 48, 16))
        >>> case.image.shape, case.mask.dtype.name, case.label
        ((48, 48, 16), 'uint8', 'steatosis')
    """
    if modality not in MODALITIES:
        raise ConfigError(f"unknown phantom modality {modality!r}; expected one of {list(MODALITIES)}")
    orientation = orientation or "RAS"
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"unknown phantom orientation {orientation!r}; expected one of {list(ORIENTATIONS)}")
    if len(shape) != 3 or min(shape) < 1 or (modality != "us" and min(shape) < 8):
        raise ConfigError(f"phantom shape must be 3 positive sizes (>= 8 for volumes), got {shape!r}")
    scores = disease_scores(label, severity, np.random.default_rng([seed, 3]))
    effect = site_effect(site, site_artifact_strength)
    return build_case(case_id, modality, label, scores, seed, tuple(int(s) for s in shape), effect,
                      orientation, ct_phase, phases)

