"""Voxel geometry of phantom volumes: field of view, spacing, oblique tilts and storage orientations.

A phantom is first built on a canonical RAS grid (axis 0 to the patient's right, 1 anterior, 2 superior:
axial slices along the third axis). :func:`reorient` then stores it in another orientation by flipping
and permuting the voxel array and adjusting the affine, so that the anatomy in world space is unchanged
(``nib.as_closest_canonical`` gives back the canonical array). An oblique case is instead built directly
on a grid rotated by a few degrees.
"""

from __future__ import annotations

import numpy as np
from nibabel import orientations as nio

from livercad.phantom.anatomy import Patient
from livercad.phantom.paint import dome_z, liver_sdf
from livercad.phantom.shapes import GridSampler, rotation

#: Orientations used by ``orientations="mixed"`` (axis codes of the stored array, or "oblique").
ORIENTATIONS: tuple[str, ...] = ("RAS", "LPS", "LAS", "LPI", "PIR", "oblique")
ORIENTATION_WEIGHTS: tuple[float, ...] = (0.25, 0.25, 0.15, 0.1, 0.1, 0.15)
ABDOMEN_FOV_MM = (30.0, 60.0)  # margin around the body added to the in-plane field of view
LIVER_SLICE_COVERAGE = (0.58, 0.72)  # fraction of axial slices that contain liver


def liver_z_extent(p: Patient) -> tuple[float, float]:
    """Lowest and highest z (mm) of the liver, measured on a coarse 7 mm grid."""
    step = 7.0
    a, b = float(p.body[0]), float(p.body[1])
    affine = np.diag([step, step, step, 1.0])
    affine[:3, 3] = [-a, -b, -200.0]
    grid = GridSampler((int(2 * a / step) + 1, int(2 * b / step) + 1, int(420 / step)), affine)
    _, x, y, z = grid.region()  # type: ignore[misc]
    liver = (liver_sdf(x, y, z, p) <= 0) & (z <= dome_z(x, y, p) - 5.0)
    k = np.flatnonzero(liver.any(axis=(0, 1)))
    if k.size == 0:  # pragma: no cover - every sampled patient has a liver
        return -80.0, 80.0
    return -200.0 + step * (k[0] - 0.5), -200.0 + step * (k[-1] + 0.5)


def canonical_affine(p: Patient, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """RAS voxel->world affine: in-plane spacing covers the body, slices cover the liver ~58-72 %."""
    nx, ny, nz = shape
    fov = 2.16 * float(p.body[0]) + rng.uniform(*ABDOMEN_FOV_MM)
    pixel = fov / max(nx, ny)
    z_lo, z_hi = liver_z_extent(p)
    extent = z_hi - z_lo
    fov_z = extent / rng.uniform(*LIVER_SLICE_COVERAGE)
    dz = fov_z / nz
    top = z_hi + (fov_z - extent) * rng.uniform(0.35, 0.6)
    centre = rng.uniform(-10, 10, 2)
    affine = np.diag([pixel, pixel, dz, 1.0])
    affine[:3, 3] = [centre[0] - pixel * (nx - 1) / 2, centre[1] - pixel * (ny - 1) / 2, top - dz * (nz - 0.5)]
    return affine


def tilt(affine: np.ndarray, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Rotate a grid by a few degrees about its centre (a mildly oblique acquisition)."""
    angles = rng.uniform(3, 8, 3) * rng.choice([-1.0, 1.0], 3) * np.array([0.5, 0.5, 1.0])
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    rot = np.eye(4)
    rot[:3, :3] = rotation(*angles)
    rot[:3, 3] = centre - rot[:3, :3] @ centre
    return rot @ affine


def reorient(arrays: list[np.ndarray], affine: np.ndarray, code: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Store canonical (RAS) arrays in orientation ``code`` (e.g. ``"LPS"``); the world is unchanged."""
    if code in ("RAS", "oblique"):
        return arrays, affine
    transform = nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), nio.axcodes2ornt(tuple(code)))
    shape = arrays[0].shape
    out = [np.ascontiguousarray(nio.apply_orientation(a, transform)) for a in arrays]
    return out, affine @ nio.inv_ornt_aff(transform, shape)
