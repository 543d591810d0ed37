"""Domain-randomised phantom cases: the training data of the shipped stage-1 model (after SynthSeg).

A network trained on one rendering of the phantom learns that rendering's contrast, not the liver:
trained longer on the portal-venous phantom CT, real-CT Dice rose but real-MR Dice fell to 0.51. Here
every case draws, besides its anatomy (:func:`~livercad.phantom.anatomy.sample_patient` with shape
variants: Riedel's lobe, left-lobe extent, caudate size, body habitus and fat):

- **contrast**: a random CT phase table or MR contrast (:mod:`livercad.phantom.tables`);
- **geometry**: in-plane matrix 96-160 with aspect 0.65-1 (non-square slices), field of view from
  cropping the body to 6 cm of margin, slice spacing 1.5-6 mm, 16-64 slices placed anywhere that
  shows some liver (dome only, whole liver, or liver plus chest or pelvis);
- **imaging**: blur (partial volume) in-plane and along z, noise (correlated Gaussian on CT, Rician
  or Gaussian on MR), a multiplicative bias field on MR, CT padding outside the reconstruction circle
  (-1024, -2048 or -3024 HU).

The ground truth stays exact: the liver mask is painted from the same label map the image is
rendered from. Cases are returned as :class:`~livercad.phantom.case.PhantomCase` (RAS storage).

Example:
    >>> case = random_case("r0", seed=3, modality="mr")
    >>> case.image.shape == case.mask.shape, case.meta["modality"], bool(case.mask.any())
    (True, 'mr', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

from livercad.errors import ConfigError
from livercad.phantom.anatomy import LIVER_LABELS, ORGANS, Patient, sample_patient
from livercad.phantom.case import DISEASED_BETA, NORMAL_BETA
from livercad.phantom.contrast import bias_field, smooth_noise, tissue_image
from livercad.phantom.geometry import liver_z_extent
from livercad.phantom.paint import paint_labels
from livercad.phantom.shapes import GridSampler
from livercad.phantom.tables import random_ct_table, random_mr_table

#: CT padding values outside the reconstruction circle seen in clinical files.
CT_PADDING = (-1024.0, -2048.0, -3024.0)
#: Versions of the randomised generator (``data.phantom.version``). Version 1 is frozen: it is the data the
#: shipped model was trained on (``make model`` reproduces it). Version 2 adds collapsed and pelvic bowel
#: loops, random bowel content (water, chyme, positive oral contrast) and, in a share of CT cases, random
#: soft-tissue HU for every organ including the liver; measured in one build, it did not improve the real scans.
#: Version 3 is version 1 with a left lobe and segment IV that reach caudally; measured in one build (with EMA),
#: it found more of the left lobe on the real CT and lost as much on the MR (README, "Stage-1 recipes").
GENERATOR_VERSIONS: dict[int, str] = {
    1: "random contrast, geometry, imaging, liver shape variants, habitus, upper pelvis",
    2: "version 1 + collapsed and pelvic bowel loops, random bowel content, random soft-tissue CT contrast",
    3: "version 1 + a left lobe and segment IV that reach caudally and cross the midline (no version 2 bowel)",
}
Z_LIMITS = (-285.0, 200.0)  # world z the phantom's anatomy covers well (mm)


def random_geometry(p: Patient, rng: np.random.Generator) -> tuple[tuple[int, int, int], np.ndarray]:
    """A random RAS grid (shape, affine) that shows at least part of the liver."""
    nx = int(rng.integers(96, 161))
    ny = int(round(nx * rng.uniform(0.65, 1.0)))
    fov_x = 2.0 * float(p.body[0]) + rng.uniform(-20.0, 60.0)
    pixel = fov_x / nx
    dz = rng.uniform(1.5, 6.0)
    nz = int(rng.integers(16, 65))
    length = nz * dz
    z_lo, z_hi = liver_z_extent(p)
    lo = max(z_lo + 10.0, Z_LIMITS[0] + length)  # the window's top: some liver below it, anatomy inside it
    hi = min(z_hi - 10.0 + length, Z_LIMITS[1])
    top = rng.uniform(lo, max(lo, hi))
    centre = rng.uniform(-15, 15, 2)
    affine = np.diag([pixel, pixel, dz, 1.0])
    affine[:3, 3] = [centre[0] - pixel * (nx - 1) / 2, centre[1] - pixel * (ny - 1) / 2, top - dz * (nz - 0.5)]
    return (nx, ny, nz), affine


def _blur_sigma(rng: np.random.Generator, vox: np.ndarray) -> tuple[float, float, float]:
    """Random partial-volume blur (voxels): in-plane 0.3-1.0, along z up to a slice thicker than its spacing."""
    s = rng.uniform(0.3, 1.0)
    return (s, s, rng.uniform(0.2, 0.9))


def _render_ct(labels: np.ndarray, p: Patient, rng: np.random.Generator, vox: np.ndarray,
               xy: tuple[np.ndarray, np.ndarray], extended: bool = False) -> tuple[np.ndarray, str]:
    phase, table = random_ct_table(rng, extended=extended)
    image = tissue_image(labels, table, p, rng, vox, "ct")
    image = ndimage.gaussian_filter(image, _blur_sigma(rng, vox))
    image += np.float32(rng.uniform(4, 35)) * smooth_noise(rng, labels.shape, (rng.uniform(0.3, 1.0),) * 2 + (0.0,))
    if rng.uniform() < 0.6:
        x, y = xy
        radius = rng.uniform(0.45, 0.56) * max(labels.shape[0], labels.shape[1]) * float(vox[0])
        image[np.broadcast_to(x * x + y * y > radius * radius, labels.shape)] = rng.choice(CT_PADDING)
    return np.clip(image, -3024, 3071).astype(np.float32), phase


def _render_mr(labels: np.ndarray, p: Patient, rng: np.random.Generator, vox: np.ndarray,
               xyz: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, str]:
    kind, table = random_mr_table(rng)
    image = tissue_image(labels, table, p, rng, vox, "mr")
    image = ndimage.gaussian_filter(image, _blur_sigma(rng, vox))
    bias = bias_field(*xyz, rng)
    image *= bias ** np.float32(rng.uniform(0.0, 1.5))
    sd = np.float32(rng.uniform(0.005, 0.06) * max(float(np.percentile(image, 99)), 1.0))
    if rng.uniform() < 0.7:  # magnitude image: Rician noise
        real = image + sd * rng.standard_normal(labels.shape, dtype=np.float32)
        image = np.sqrt(real * real + (sd * rng.standard_normal(labels.shape, dtype=np.float32)) ** 2)
    else:
        image = np.clip(image + sd * rng.standard_normal(labels.shape, dtype=np.float32), 0, None)
    return image.astype(np.float32), kind


def _scores(rng: np.random.Generator) -> tuple[str, tuple[float, float]]:
    """A label and (steatosis, cirrhosis) scores: disease morphology varies the anatomy too."""
    label = str(rng.choice(["normal", "steatosis", "cirrhosis"]))
    minor = [float(rng.beta(*NORMAL_BETA)) for _ in range(2)]
    main = float(rng.beta(*DISEASED_BETA))
    scores = {"normal": (minor[0], minor[1]), "steatosis": (main, minor[1]), "cirrhosis": (minor[0], main)}
    return label, scores[label]


def random_case(case_id: str, *, seed: int, modality: str = "ct", version: int = 1):  # noqa: ANN201 - PhantomCase
    """One domain-randomised case (``modality`` ``ct`` or ``mr``), stored RAS, of generator ``version``.

    ``version`` (:data:`GENERATOR_VERSIONS`): 1 draws what the shipped model was trained on; 2 adds bowel
    variants and the extended CT contrast (the same case seed gives the same anatomy draws up to the bowel);
    3 changes only the left lobe's extent and the visceral cut (its own generator), the rest as version 1.

    Returns:
        A :class:`~livercad.phantom.case.PhantomCase`; ``meta`` records the contrast drawn
        (``contrast``: CT phase or MR kind), the spacing and the shape.
    """
    from livercad.phantom.case import PhantomCase

    rng = np.random.default_rng([seed, 41])
    label, scores = _scores(rng)
    if version not in GENERATOR_VERSIONS:
        raise ConfigError(f"randomised phantom version must be one of {sorted(GENERATOR_VERSIONS)}, got {version}")
    extended = version == 2
    lobes = np.random.default_rng([seed, 47]) if version == 3 else None
    patient = sample_patient(rng, *scores, variants=np.random.default_rng([seed, 43]), bowel_variants=extended,
                             lobes=lobes)
    shape, affine = random_geometry(patient, rng)
    sampler = GridSampler(shape, affine)
    labels = paint_labels(sampler, patient, table=modality == "ct")
    _, x, y, z = sampler.region()  # type: ignore[misc]
    vox = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if modality == "ct":
        image, contrast = _render_ct(labels, patient, rng, vox, (x, y), extended)
    else:
        image, contrast = _render_mr(labels, patient, rng, vox, (x, y, z))
    mask = np.isin(labels, LIVER_LABELS).astype(np.uint8)
    meta: dict[str, float | str] = {"modality": modality, "contrast": contrast, "label": label,
                                    "spacing_x": round(float(vox[0]), 4), "spacing_z": round(float(vox[2]), 4),
                                    "shape": "x".join(str(s) for s in shape)}
    return PhantomCase(case_id, image, mask, affine, label, max(scores), meta, labels)




SYNTH_COLUMNS: tuple[str, ...] = ("case_id", "patient_id", "image", "mask", "label", "split", "modality",
                                  "contrast", "spacing_x", "spacing_z", "shape", "domain")


def _write_random(index: int, out: Path, seed: int, modalities: tuple[str, ...], version: int = 1) -> dict[str, str]:
    """Generate one randomised case, write its image and mask, return its manifest row."""
    from livercad.phantom.cohort import _write_nifti

    modality = modalities[index % len(modalities)]
    case_seed = int(np.random.SeedSequence([seed, index, 17]).generate_state(1)[0])
    case = random_case(f"synth_{index:05d}", seed=case_seed, modality=modality, version=version)
    name = f"{case.case_id}.nii.gz"
    _write_nifti(case.image, case.affine, out / "images" / name, np.int16 if modality == "ct" else np.float32)
    _write_nifti(case.mask, case.affine, out / "masks" / name, np.uint8)
    row = {"case_id": case.case_id, "patient_id": f"S{index:05d}", "image": f"images/{name}",
           "mask": f"masks/{name}", "split": "", "domain": "phantom", **case.meta}
    return {k: str(row.get(k, "")) for k in SYNTH_COLUMNS}


def generate_randomised_cohort(out_dir: str | Path, *, n: int, seed: int = 0,
                               modalities: Sequence[str] = ("ct", "mr"), workers: int = 1, version: int = 1) -> Path:
    """Write ``n`` domain-randomised cases (modalities in turn, generator ``version``) and their manifest.

    Every case is its own patient; the ``split`` column is left empty (split by patient later).

    Example:
        >>> import tempfile
        >>> path = generate_randomised_cohort(tempfile.mkdtemp(), n=2)
        >>> [line.split(",")[6] for line in path.read_text().splitlines()[1:]]
        ['ct', 'mr']
    """
    from livercad.phantom.cohort import write_manifest

    bad = [m for m in modalities if m not in ("ct", "mr")]
    if bad or not modalities:
        raise ConfigError(f"randomised phantom modalities must be ct and/or mr, got {list(modalities)}")
    out = Path(out_dir)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    job = partial(_write_random, out=out, seed=seed, modalities=tuple(modalities), version=version)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(job, range(n)))
    else:
        rows = [job(i) for i in range(n)]
    return write_manifest(out, rows, SYNTH_COLUMNS)


__all__ = ["random_case", "random_geometry", "generate_randomised_cohort", "CT_PADDING", "GENERATOR_VERSIONS",
           "ORGANS"]
