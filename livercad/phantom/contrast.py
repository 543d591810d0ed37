"""Turn a phantom label map into CT (Hounsfield units) or T2-weighted-MR-like intensities.

Each tissue gets a mean value and a texture amplitude (:data:`CT_PHASES`: portal-venous :data:`CT_TISSUE`
by default or :data:`CT_TISSUE_NONCONTRAST`; :data:`MR_TISSUE`); the
liver and spleen means are drawn per case (healthy variability) and shifted by the disease scores;
cirrhosis adds a reticular fibrosis network and regenerative nodules. The image is blurred (partial
volume), noised (correlated Gaussian noise on CT, Rician noise and a smooth multiplicative bias field
on MR), then the site effects are applied (scale, offset, noise level, an artifact outside the liver).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from livercad.phantom.anatomy import ORGANS, Patient

#: CT mean HU and texture standard deviation per tissue in the portal-venous phase (~70 s after contrast):
#: the phase of most clinical liver CT and of public liver segmentation sets; parenchyma enhances with the
#: vessels (liver ~105 HU, spleen slightly brighter, muscle ~60 HU).
CT_TISSUE: dict[str, tuple[float, float]] = {
    "background": (-1000, 0), "liver": (105, 5), "hepatic_vessel": (155, 8), "spleen": (112, 4),
    "kidney_cortex": (165, 10), "kidney_medulla": (130, 8), "renal_sinus": (-60, 20), "gallbladder": (8, 3),
    "ascites": (8, 3), "aorta": (165, 6), "ivc": (130, 8), "portal_vein": (170, 6), "pancreas": (95, 10),
    "bowel_wall": (90, 8), "bowel_fluid": (18, 6), "gas": (-1000, 0), "stool": (25, 20),
    "subcutaneous_fat": (-105, 6), "visceral_fat": (-95, 8), "muscle": (60, 6), "bone_cortical": (600, 80),
    "bone_marrow": (240, 40), "disc": (85, 8), "spinal_canal": (15, 5), "lung": (-860, 25),
    "heart": (140, 6), "table": (150, 20), "bladder": (10, 4),
}
#: The same tissues without contrast (the phase used to grade steatosis: a normal liver is brighter than the
#: spleen, blood ~40 HU).
CT_TISSUE_NONCONTRAST: dict[str, tuple[float, float]] = {
    **CT_TISSUE, "liver": (57, 5), "hepatic_vessel": (42, 6), "spleen": (45, 4), "kidney_cortex": (32, 6),
    "kidney_medulla": (30, 6), "aorta": (42, 5), "ivc": (40, 5), "portal_vein": (42, 5), "pancreas": (42, 8),
    "bowel_wall": (40, 8), "muscle": (50, 6), "heart": (42, 6),
}
#: CT phases the phantom renders (``ct_phase``), default first.
CT_PHASES: dict[str, dict[str, tuple[float, float]]] = {"portal-venous": CT_TISSUE,
                                                        "non-contrast": CT_TISSUE_NONCONTRAST}
#: T2-weighted MR signal (arbitrary units, free fluid = 1000) and texture standard deviation.
MR_TISSUE: dict[str, tuple[float, float]] = {
    "background": (0, 0), "liver": (260, 14), "hepatic_vessel": (60, 10), "spleen": (480, 20),
    "kidney_cortex": (520, 25), "kidney_medulla": (640, 25), "renal_sinus": (600, 60), "gallbladder": (950, 15),
    "ascites": (1000, 10), "aorta": (40, 10), "ivc": (80, 15), "portal_vein": (70, 10), "pancreas": (330, 25),
    "bowel_wall": (250, 20), "bowel_fluid": (850, 30), "gas": (5, 2), "stool": (300, 60),
    "subcutaneous_fat": (700, 25), "visceral_fat": (650, 30), "muscle": (150, 12), "bone_cortical": (20, 8),
    "bone_marrow": (450, 40), "disc": (600, 30), "spinal_canal": (950, 20), "lung": (25, 10),
    "heart": (80, 20), "table": (0, 0), "bladder": (1000, 10),
}


@dataclass(frozen=True)
class SiteEffect:
    """Scanner/site effects: ``image * scale + offset``, noise multiplier, artifact strength (0 = none)."""

    name: str = "A"
    scale: float = 1.0
    offset: float = 0.0
    noise: float = 1.0
    artifact: float = 0.0


def _lut(table: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    mean, tex = np.zeros(256, np.float32), np.zeros(256, np.float32)
    for name, (m, t) in table.items():
        mean[ORGANS[name]], tex[ORGANS[name]] = m, t
    return mean, tex


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (``sigma`` in voxels, 0 = unfiltered)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    variance = 1.0
    for s in sigma:  # variance of filtered unit white noise: product of the kernels' squared weights
        if s > 0:
            x = np.arange(-int(4.0 * s + 0.5), int(4.0 * s + 0.5) + 1)
            w = np.exp(-0.5 * (x / s) ** 2)
            variance *= float((w**2).sum() / w.sum() ** 2)
    field *= np.float32(1.0 / np.sqrt(variance))
    return field


def _liver_texture(rng: np.random.Generator, liver: np.ndarray, vox: np.ndarray, p: Patient,
                   nodule: float, band: float) -> np.ndarray:
    """Additive cirrhotic texture inside the liver: fibrotic bands (zero crossings) and nodules."""
    out = np.zeros(liver.shape, np.float32)
    if p.cirrhosis < 0.02 or not liver.any():
        return out
    box = ndimage.find_objects(liver.astype(np.uint8))[0]
    shape = tuple(s.stop - s.start for s in box)
    field = smooth_noise(rng, shape, tuple(3.0 / v for v in vox))
    fibrosis = np.exp(-((field / 0.35) ** 2))
    out[box] = p.cirrhosis * (band * fibrosis + nodule * np.clip(field, 0, None))
    return out * liver


def tissue_image(labels: np.ndarray, table: dict[str, tuple[float, float]], p: Patient,
                 rng: np.random.Generator, vox: np.ndarray, modality: str) -> np.ndarray:
    """Noise-free tissue intensities with per-case liver/spleen values, textures and disease cues."""
    mean, tex = _lut(table)
    liver_id, spleen_id = ORGANS["liver"], ORGANS["spleen"]
    healthy, spleen_shift = np.clip(rng.normal(0, 3), -5, 5), np.clip(rng.normal(0, 2), -4, 4)
    if modality == "ct":
        mean[liver_id] += healthy - 50 * p.steatosis - 6 * p.cirrhosis
        mean[spleen_id] += spleen_shift
        nodule, band = 10.0, -25.0
    else:
        mean[liver_id] *= (1 + healthy / 40) * (1 + 0.25 * p.steatosis)
        mean[spleen_id] *= 1 + spleen_shift / 40
        nodule, band = -60.0, 180.0
    tex[liver_id] *= 1 + 1.5 * p.cirrhosis + 0.8 * p.steatosis
    coarse = smooth_noise(rng, labels.shape, tuple(2.5 / v for v in vox))
    fine = smooth_noise(rng, labels.shape, (0.7, 0.7, 0.0)[: labels.ndim])
    image = mean[labels] + tex[labels] * coarse
    spots = fine > 2.0
    for name, amount in (("lung", 800.0), ("visceral_fat", 220.0), ("bone_marrow", 120.0)):
        hit = spots & (labels == ORGANS[name])
        image[hit] += amount if modality == "ct" else -0.4 * mean[ORGANS[name]]
    stool = labels == ORGANS["stool"]
    image[stool & (fine > 0.5)] = mean[ORGANS["gas"]]
    image += _liver_texture(rng, labels == liver_id, vox, p, nodule, band)
    return image


def bias_field(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative MR receive-bias field (about 0.6-1.6) of world coordinates."""
    u, v, w = x / np.float32(200), y / np.float32(150), z / np.float32(200)
    c = rng.uniform(0.12, 0.3, 7) * rng.choice([-1.0, 1.0], 7)
    g = c[0] * u + c[1] * v + c[2] * w + c[3] * u * u + c[4] * v * v + c[5] * u * v
    return np.exp(g + np.float32(abs(c[6])) * (u * u + v * v)).astype(np.float32)


def render_ct(labels: np.ndarray, p: Patient, rng: np.random.Generator, vox: np.ndarray, site: SiteEffect,
              artifact: np.ndarray, phase: str = "portal-venous",
              table: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """CT image in HU (float32, clipped to [-1024, 3071]) of a canonical label volume in ``phase``.

    ``table``: the tissue table to render with instead of ``CT_PHASES[phase]`` (e.g. a phase of
    :data:`livercad.phantom.tables.CT_PHASE_TABLES`: :func:`livercad.phantom.phases.render_ct_phase`).
    """
    image = tissue_image(labels, CT_PHASES[phase] if table is None else table, p, rng, vox, "ct")
    image = ndimage.gaussian_filter(image, (0.5, 0.5, 0.35))
    sd = rng.uniform(10, 18) * site.noise
    image += np.float32(sd) * smooth_noise(rng, labels.shape, (0.6, 0.6, 0.0))
    image = image * np.float32(site.scale) + np.float32(site.offset) + np.float32(1200 * site.artifact) * artifact
    return np.clip(image, -1024, 3071).astype(np.float32)


def render_mr(labels: np.ndarray, p: Patient, rng: np.random.Generator, vox: np.ndarray, site: SiteEffect,
              artifact: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """T2-weighted-like magnitude image (float32, >= 0): bias field, site effects, Rician noise."""
    image = tissue_image(labels, MR_TISSUE, p, rng, vox, "mr")
    image = ndimage.gaussian_filter(image, (0.6, 0.6, 0.4)) * bias
    image = image * np.float32(site.scale) + np.float32(site.offset) + np.float32(800 * site.artifact) * artifact
    sd = np.float32(rng.uniform(15, 30) * site.noise)
    real = image + sd * rng.standard_normal(labels.shape, dtype=np.float32)
    imag = sd * rng.standard_normal(labels.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)
