"""Ultrasound B-mode frames of a phantom patient (a right-upper-quadrant sagittal-oblique view).

A curvilinear probe sits on the anterior abdominal wall over the right lobe, tilted towards the head.
The anatomy is sampled on the probe's polar grid (depth x beam angle) and turned into a B-mode image:
Rayleigh speckle (complex Gaussian scatterers blurred by the point spread function, amplitude scaled by
tissue echogenicity), specular reflections at impedance steps (bright diaphragm and gas lines) with
the transmission loss behind them (acoustic shadows behind gas and bone; the aerated lung behind the
diaphragm is given liver-like values to mimic the mirror-image artifact), frequency-dependent depth attenuation with
an imperfect time-gain compensation, log compression, then scan conversion into a sector; pixels
outside the fan are 0. Steatosis brightens the liver and raises its attenuation; cirrhosis coarsens its
texture (the nodular surface and ascites come from the anatomy).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from livercad.phantom.anatomy import ORGANS, Patient
from livercad.phantom.contrast import SiteEffect, smooth_noise
from livercad.phantom.paint import body_distance, paint_labels
from livercad.phantom.shapes import PointSampler

#: Echogenicity (amplitude, liver = 1), acoustic impedance (MRayl) and attenuation (dB/cm/MHz).
US_TISSUE: dict[str, tuple[float, float, float]] = {
    "background": (0.0, 1.5, 0.05), "liver": (1.0, 1.65, 0.5), "hepatic_vessel": (0.03, 1.61, 0.18),
    "spleen": (0.95, 1.65, 0.5), "kidney_cortex": (0.6, 1.63, 0.8), "kidney_medulla": (0.25, 1.62, 0.8),
    "renal_sinus": (2.2, 1.45, 0.7), "gallbladder": (0.02, 1.52, 0.05), "ascites": (0.02, 1.52, 0.05),
    "aorta": (0.03, 1.61, 0.18), "ivc": (0.03, 1.61, 0.18), "portal_vein": (0.03, 1.61, 0.18),
    "pancreas": (1.1, 1.64, 0.6), "bowel_wall": (1.2, 1.66, 0.8), "bowel_fluid": (0.15, 1.53, 0.1),
    "gas": (1.5, 0.0004, 40.0), "stool": (1.3, 1.5, 1.5), "subcutaneous_fat": (0.5, 1.38, 0.6),
    "visceral_fat": (1.3, 1.42, 0.6), "muscle": (0.45, 1.70, 1.0), "bone_cortical": (1.5, 7.8, 20.0),
    "bone_marrow": (1.0, 5.0, 10.0), "disc": (0.5, 1.65, 1.0), "spinal_canal": (0.05, 1.5, 0.1),
    "lung": (0.7, 0.9, 0.8), "heart": (0.05, 1.61, 0.2), "table": (0.0, 1.5, 0.05),
}
FREQUENCY_MHZ = 3.5
NEPER_PER_DB = 0.1151


def _probe(p: Patient, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skin contact point, beam axis and lateral axis (unit vectors) of the probe."""
    x, z = 0.5 * p.cavity[0] + rng.uniform(-10, 10), rng.uniform(-65, -45)
    ys = np.linspace(1.3 * p.body[1], 0, 400)
    d, _, _ = body_distance(np.full_like(ys, x), ys, np.full_like(ys, z), p)
    skin = np.array([x, ys[np.argmax(d <= 0)], z])
    tilt, twist = np.deg2rad(rng.uniform(15, 30)), np.deg2rad(rng.uniform(-15, 15))
    axial = np.array([0.0, -np.cos(tilt), np.sin(tilt)])
    lateral = np.array([np.sin(twist), np.cos(twist) * np.sin(tilt), np.cos(twist) * np.cos(tilt)])
    return skin, axial, lateral / np.linalg.norm(lateral)


def _bmode(labels: np.ndarray, p: Patient, rng: np.random.Generator, dr: float, dtheta_mm: float,
           site: SiteEffect) -> np.ndarray:
    """Log-compressed B-mode values (0..255) on the polar grid (axis 0 = depth)."""
    table = np.zeros((3, 256), np.float32)
    for name, values in US_TISSUE.items():
        table[:, ORGANS[name]] = values
    echo, imp, att = table[0][labels], table[1][labels], table[2][labels]
    liver = labels == ORGANS["liver"]
    coarse = smooth_noise(rng, labels.shape, (3.0 / dr, 3.0 / dtheta_mm))
    echo[liver] *= (1 + 1.3 * p.steatosis) * np.exp(0.6 * p.cirrhosis * coarse[liver])
    att[liver] += 0.4 * p.steatosis
    psf = (0.5 / dr, 1.2 / dtheta_mm)
    scat = (ndimage.gaussian_filter(echo * rng.standard_normal(labels.shape, dtype=np.float32), psf),
            ndimage.gaussian_filter(echo * rng.standard_normal(labels.shape, dtype=np.float32), psf))
    norm = float(np.sqrt(2 * np.pi) * np.sqrt(psf[0] * psf[1]) * np.sqrt(2 * np.pi)) ** 0.5
    envelope = np.sqrt(scat[0] ** 2 + scat[1] ** 2) * np.float32(norm)
    refl = np.zeros_like(imp)
    refl[1:] = ((imp[1:] - imp[:-1]) / (imp[1:] + imp[:-1])) ** 2
    specular = ndimage.gaussian_filter(refl, (0.7, 1.5)) * np.float32(60.0)
    transmission = np.cumprod((1 - refl) ** 2, axis=0)
    depth_cm = (np.arange(labels.shape[0], dtype=np.float32) * dr / 10)[:, None]
    loss = np.exp(-2 * NEPER_PER_DB * FREQUENCY_MHZ * np.cumsum(att * np.float32(dr / 10), axis=0))
    tgc = np.exp(2 * NEPER_PER_DB * FREQUENCY_MHZ * 0.5 * rng.uniform(0.85, 1.05) * depth_cm)
    env = (envelope + specular) * transmission * loss * tgc * np.float32(site.scale)
    env = env + np.float32(0.01 * site.noise) * np.abs(rng.standard_normal(labels.shape, dtype=np.float32))
    return np.clip((20 * np.log10(env + 1e-6) + 30) / 55, 0, 1) * 255 + np.float32(site.offset)


def make_us_frame(p: Patient, rng: np.random.Generator, shape: tuple[int, int, int], site: SiteEffect
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B-mode frame ``(H, W, 1)`` (float32, 0 outside the fan), its tissue labels and its affine."""
    height, width = shape[0], shape[1]
    skin, axial, lateral = _probe(p, rng)
    r0, depth, half = rng.uniform(15, 25), rng.uniform(150, 180), np.deg2rad(rng.uniform(30, 37))
    nr, nt = max(2 * height, 128), max(2 * width, 128)
    r = r0 + np.linspace(0, depth, nr)[:, None]
    t = np.linspace(-half, half, nt)[None, :]
    apex = skin - (r0 - 6.0) * axial  # the probe face is pressed 6 mm into the skin
    pts = [apex[i] + r * (np.cos(t) * axial[i] + np.sin(t) * lateral[i]) for i in range(3)]
    labels = paint_labels(PointSampler(*(q.astype(np.float32) for q in pts)), p)
    polar = _bmode(labels, p, rng, depth / (nr - 1), (r0 + depth / 2) * 2 * half / (nt - 1), site)
    top, bottom, w = r0 * np.cos(half), r0 + depth, (r0 + depth) * np.sin(half)
    pixel = max((bottom - top) / height, 2 * w / width)
    rows = top + pixel * (np.arange(height) + 0.5)[:, None]
    cols = pixel * (np.arange(width) - (width - 1) / 2)[None, :]
    rad, ang = np.hypot(rows, cols), np.arctan2(cols, rows)
    fan = (rad >= r0) & (rad <= r0 + depth) & (np.abs(ang) <= half)
    coords = [(rad - r0) / depth * (nr - 1), (ang + half) / (2 * half) * (nt - 1)]
    image = ndimage.map_coordinates(polar, coords, order=1, mode="nearest") * fan
    label_img = ndimage.map_coordinates(labels, coords, order=0, mode="nearest") * fan
    if site.artifact > 0:  # a bright reverberation band in the near field, outside the liver
        image = image + fan * np.float32(120 * site.artifact) * np.exp(-(((rad - r0 - 6.0) / 1.5) ** 2))
    normal = np.cross(axial, lateral)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = pixel * axial, pixel * lateral, normal
    affine[:3, 3] = apex + top * axial + pixel * 0.5 * axial + cols[0, 0] * lateral
    return (np.clip(image, 0, 255).astype(np.float32)[..., None] * fan[..., None],
            label_img.astype(np.uint8)[..., None], affine)
