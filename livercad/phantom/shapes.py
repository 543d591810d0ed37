"""Geometric building blocks of the phantom: world-coordinate samplers, signed distances, smooth noise.

Every anatomical structure is an implicit function of world coordinates (RAS mm) evaluated by a
*sampler*: :class:`GridSampler` for a voxel grid given by an affine (coordinates come out as broadcastable
1-D ramps when the affine is axis-aligned, so 2-D quantities cost 2-D work), :class:`PointSampler` for an
arbitrary set of points (the polar grid of an ultrasound sector). Distances are in mm, negative inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]
Region = tuple[tuple[slice | np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray]


_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)


@dataclass(frozen=True)
class GridSampler:
    """World coordinates of the voxel centres of a grid (``affine`` maps voxel index -> RAS mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @cached_property
    def _inverse(self) -> np.ndarray:
        return np.linalg.inv(self.affine)

    @cached_property
    def _aligned(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(scale, offset) of world -> voxel index when the affine has no rotation, else None."""
        if np.count_nonzero(self.affine[:3, :3]) != 3 or np.any(np.diag(self.affine[:3, :3]) == 0):
            return None
        return np.diag(self._inverse)[:3].copy(), self._inverse[:3, 3].copy()

    @cached_property
    def _terms(self) -> list[list[tuple[int, np.ndarray]]]:
        """For each world axis: (voxel axis, broadcastable contribution ramp) of every non-zero coefficient."""
        aff = self.affine.astype(np.float32)
        return [[(a, (aff[c, a] * np.arange(n, dtype=np.float32)).reshape([-1 if d == a else 1 for d in range(3)]))
                 for a, n in enumerate(self.shape) if aff[c, a] != 0] for c in range(3)]

    def region(self, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> Region | None:
        """Voxel box covering the world box ``[lo, hi]`` (whole grid when omitted) and its coordinates."""
        if lo is None or hi is None:
            box = tuple(slice(0, n) for n in self.shape)
        else:
            if self._aligned is not None:  # fast path: no corner transform needed
                scale, offset = self._aligned
                a, b = scale * lo + offset, scale * hi + offset
                ijk_lo, ijk_hi = np.minimum(a, b), np.maximum(a, b)
            else:
                corners = np.asarray(lo) + _CORNERS * (np.asarray(hi) - np.asarray(lo))
                ijk = corners @ self._inverse[:3, :3].T + self._inverse[:3, 3]
                ijk_lo, ijk_hi = ijk.min(axis=0), ijk.max(axis=0)
            start = np.maximum(np.floor(ijk_lo).astype(int), 0)
            stop = np.minimum(np.ceil(ijk_hi).astype(int) + 1, self.shape)
            if np.any(stop <= start):
                return None
            box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        coords = []
        for c in range(3):
            value: np.ndarray = np.float32(self.affine[c, 3]) + np.zeros((1, 1, 1), np.float32)
            for a, ramp in self._terms[c]:
                value = value + ramp[tuple(box[d] if d == a else slice(None) for d in range(3))]
            coords.append(value)
        return box, coords[0], coords[1], coords[2]


@dataclass(frozen=True)
class PointSampler:
    """World coordinates of an arbitrary point set (arrays of one shape); regions are the whole set."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the point arrays (and of label maps painted on them)."""
        return tuple(self.x.shape)

    def region(self, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> Region | None:
        """All points, or the points inside the world box ``[lo, hi]`` (as an index tuple)."""
        if lo is None or hi is None:
            return tuple(slice(None) for _ in self.x.shape), self.x, self.y, self.z
        inside = ((self.x >= lo[0]) & (self.x <= hi[0]) & (self.y >= lo[1]) & (self.y <= hi[1])
                  & (self.z >= lo[2]) & (self.z <= hi[2]))
        index = np.nonzero(inside)
        if index[0].size == 0:
            return None
        return index, self.x[index], self.y[index], self.z[index]


def rotation(rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> np.ndarray:
    """3x3 rotation matrix from angles in degrees about x, then y, then z (world axes)."""
    ax, ay, az = np.deg2rad([rx, ry, rz])
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rot_y = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rot_z = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def to_local(x: np.ndarray, y: np.ndarray, z: np.ndarray, center: np.ndarray, rot: np.ndarray | None) -> Coords:
    """Coordinates relative to ``center`` in the frame whose axes are the columns of ``rot``."""
    px, py, pz = x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2])
    if rot is None:
        return px, py, pz
    r = rot.astype(np.float32)
    return (r[0, 0] * px + r[1, 0] * py + r[2, 0] * pz, r[0, 1] * px + r[1, 1] * py + r[2, 1] * pz,
            r[0, 2] * px + r[1, 2] * py + r[2, 2] * pz)


def ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, center: np.ndarray, radii: np.ndarray,
              rot: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid (exact on the surface, bounded elsewhere)."""
    lx, ly, lz = to_local(x, y, z, center, rot)
    rx, ry, rz = (np.float32(r) for r in radii)
    k0 = np.sqrt((lx / rx) ** 2 + (ly / ry) ** 2 + (lz / rz) ** 2)
    k1 = np.sqrt((lx / rx**2) ** 2 + (ly / ry**2) ** 2 + (lz / rz**2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


def capsule(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float,
            rb: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to a tapered tube from ``a`` (radius ``ra``) to ``b`` (``rb``) and the axis y there."""
    ab = (np.asarray(b) - np.asarray(a)).astype(np.float32)
    px, py, pz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / np.float32(max(float(ab @ ab), 1e-6)), 0.0, 1.0)
    dist = np.sqrt((px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (pz - t * ab[2]) ** 2)
    return dist - (np.float32(ra) + t * np.float32(rb - ra)), np.float32(a[1]) + t * ab[1]


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two signed distances (blend width ``k`` mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - np.float32(k) * h * (1.0 - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection of two signed distances."""
    return -smin(-a, -b, k)


def segment_box(a: np.ndarray, b: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box of a tube between ``a`` and ``b`` with radius up to ``r``."""
    return np.minimum(a, b) - r, np.maximum(a, b) + r


@dataclass(frozen=True)
class WaveField:
    """A smooth random field: a sum of plane waves with random directions, wavelengths and phases.

    ``cusp=True`` uses ``|cos|`` waves (rounded crests, sharp troughs: a nodular relief). The field has
    zero mean and unit standard deviation over space.
    """

    k: np.ndarray  # (n, 3) wave vectors, rad/mm
    phase: np.ndarray
    cusp: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator, n: int, wavelength: tuple[float, float],
               cusp: bool = False) -> WaveField:
        """Draw ``n`` waves with wavelengths uniform in ``wavelength`` (mm)."""
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        lam = rng.uniform(*wavelength, size=(n, 1))
        return cls((2 * np.pi / lam * direction).astype(np.float32),
                   rng.uniform(0, 2 * np.pi, n).astype(np.float32), cusp)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        separable = all(np.ndim(c) == 3 and sum(n > 1 for n in np.shape(c)) <= 1 for c in (x, y, z))
        out: np.ndarray = np.zeros((1,) * np.ndim(x), np.float32)
        for (kx, ky, kz), ph in zip(self.k, self.phase, strict=True):
            if separable:  # cos(a + b + c) = Re(e^ia e^ib e^ic): outer products of 1-D ramps
                wave = (np.exp(1j * (kx * x + ph)).astype(np.complex64) * np.exp(1j * (ky * y)).astype(np.complex64)
                        * np.exp(1j * (kz * z)).astype(np.complex64)).real
            else:
                wave = np.cos(kx * x + ky * y + kz * z + ph)
            out = out + (np.abs(wave) - np.float32(2 / np.pi) if self.cusp else wave)
        std = np.sqrt(len(self.phase) * ((0.5 - 4 / np.pi**2) if self.cusp else 0.5))
        return out / np.float32(std)
