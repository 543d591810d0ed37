"""Paint a :class:`~livercad.phantom.anatomy.Patient` into a label map (ids in ``ORGANS``).

Structures are painted in a fixed order, later ones winning where they overlap (kidneys indent the
liver, the IVC runs through the caudate, ascites fills the fat around the liver and spleen); abdominal
organs are clipped to the peritoneal cavity below the diaphragm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from livercad.phantom.anatomy import ORGANS, Ellipsoid, Patient, Tube
from livercad.phantom.pelvis import paint_pelvis
from livercad.phantom.shapes import GridSampler, PointSampler, capsule, segment_box, smax, smin, to_local

Sampler = GridSampler | PointSampler
_O = ORGANS
_SOFT = (_O["visceral_fat"], _O["muscle"])


class Painter:
    """A label map under construction plus the masks that clip what is painted."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.labels = np.zeros(sampler.shape, np.uint8)
        self.cavity = np.zeros(sampler.shape, bool)
        self.abdomen = np.zeros(sampler.shape, bool)
        self.d_cav = np.zeros(sampler.shape, np.float32)

    def fill(self, value: int, inside: Callable[..., np.ndarray], box: tuple[np.ndarray, np.ndarray] | None,
             within: np.ndarray | None = None, over: Sequence[int] | None = None) -> None:
        """Paint where ``inside(x, y, z)`` holds inside ``box`` (world), clipped as asked.

        ``inside`` returns a boolean mask (painted with ``value``) or a uint8 label array (0 = unpainted).
        """
        region = self.sampler.region(*(box or (None, None)))
        if region is not None:
            self.apply(region[0], inside(*region[1:]), value, within, over)

    def apply(self, sl: tuple, res: np.ndarray, value: int, within: np.ndarray | None = None,
              over: Sequence[int] | None = None) -> None:
        """Paint a mask (with ``value``) or a label array computed on the region ``sl``."""
        target = self.labels[sl]
        res = np.broadcast_to(res, target.shape)
        hit = res if res.dtype == bool else res > 0
        if within is not None:
            hit = hit & within[sl]
        if over is not None:
            hit = hit & np.isin(target, over)
        target[hit] = value if res.dtype == bool else res[hit]
        if isinstance(self.sampler, PointSampler):  # fancy indexing returned a copy
            self.labels[sl] = target

    def tubes(self, tubes: Sequence[Tube], lumen: int, wall: float = 0.0, within: np.ndarray | None = None,
              over: Sequence[int] | None = None) -> None:
        """Paint tube walls (``bowel_wall``) then lumens; gas rises to the anterior side of a lumen."""
        passes = [(_O["bowel_wall"], 0.0), (lumen, -wall)] if wall > 0 else [(lumen, 0.0)]
        for label, level in passes:
            for t in tubes:
                def inside(x: np.ndarray, y: np.ndarray, z: np.ndarray, t: Tube = t, level: float = level,
                           label: int = label) -> np.ndarray:
                    d, axis_y = capsule(x, y, z, t.a, t.b, t.ra, t.rb)
                    if label != lumen or t.gas > 5:
                        return d <= level
                    gas = (y - axis_y) > np.float32(t.gas * 0.5 * (t.ra + t.rb))
                    return np.where(d <= level, np.where(gas, _O["gas"], label), 0).astype(np.uint8)
                self.fill(label, inside, segment_box(t.a, t.b, max(t.ra, t.rb)), within, over)


def body_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray, p: Patient
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radial distance to the skin (mm, negative inside), subcutaneous fat and muscle thickness."""
    a, b, power, taper, fat, muscle = (np.float32(v) for v in p.body)
    r = np.sqrt(x * x + y * y)
    rs = np.maximum(r, np.float32(1e-3))
    c, s = np.where(r > 1e-3, x / rs, np.float32(1)), y / rs
    b_eff = np.where(s > 0, b, np.float32(0.97) * b)
    radius = 1.0 / (np.abs(c / a) ** power + np.abs(s / b_eff) ** power) ** (1.0 / power)
    theta = np.arctan2(y, x)
    pert = sum(amp * np.cos((k + 2) * theta + ph) for k, (amp, ph) in enumerate(p.body_harm.astype(np.float32)))
    d = r - radius * (1.0 + pert) * (1.0 + taper * z)
    t_sc = fat * (0.55 + 0.45 * np.maximum(s, 0) + 0.2 * np.abs(c))
    return d, t_sc, muscle * (1.0 + 0.3 * np.maximum(s, 0))


def dome_z(x: np.ndarray, y: np.ndarray, p: Patient) -> np.ndarray:
    """Height of the diaphragm (two domes, the right one higher)."""
    zr, zl, xr, xl, rho = (np.float32(v) for v in p.dome)
    right = zr - ((x - xr) ** 2 + (y - 8) ** 2) / (2 * rho)
    left = zl - ((x - xl) ** 2 + (y - 8) ** 2) / (2 * rho)
    return smax(right, left, 20.0)


def liver_sdf(x: np.ndarray, y: np.ndarray, z: np.ndarray, p: Patient) -> np.ndarray:
    """Signed distance (mm) to the liver surface, perturbation and cirrhotic nodularity included."""
    right, left, caudate = (part.sdf(x, y, z) for part in p.liver_parts)
    d = smin(smin(right, left, 15.0), caudate, 8.0)
    point, normal = p.liver_cut.astype(np.float32)
    plane = (x - point[0]) * normal[0] + (y - point[1]) * normal[1] + (z - point[2]) * normal[2]
    d = smax(d, plane, 12.0) + 5.0 * p.liver_shape(x, y, z)
    if p.nodule_amp > 0:
        d = d - np.float32(p.nodule_amp) * p.liver_nodules(x, y, z)
    return d


def liver_box(p: Patient, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box of the liver."""
    boxes = [part.box(margin + 12.0) for part in p.liver_parts]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def _body(pt: Painter, p: Patient) -> None:
    """Skin, subcutaneous fat, muscle wall, ribs, lungs, heart and diaphragm; sets the clip masks."""
    sl, x, y, z = pt.sampler.region()  # type: ignore[misc]
    d, t_sc, t_m = body_distance(x, y, z, p)
    lab, shape = pt.labels, pt.labels.shape
    lab[np.broadcast_to(d <= 0, shape)] = _O["muscle"]
    lab[np.broadcast_to(d <= -2.0, shape)] = _O["subcutaneous_fat"]
    lab[np.broadcast_to(d <= -2.0 - t_sc, shape)] = _O["muscle"]
    pt.d_cav[...] = np.broadcast_to(d + 2.0 + t_sc + t_m, shape)
    pt.cavity[...] = pt.d_cav <= 0
    lab[pt.cavity] = _O["visceral_fat"]
    zd = dome_z(x, y, p)
    pt.abdomen[...] = pt.cavity & np.broadcast_to(z <= zd - 5.0, shape)
    thorax = pt.cavity & np.broadcast_to(z > zd, shape)
    lab[thorax] = _O["lung"]
    lab[pt.cavity & ~pt.abdomen & ~thorax] = _O["muscle"]  # the diaphragm
    period, slope, phase = (np.float32(v) for v in p.ribs)
    arc = np.abs(np.arctan2(x, -y)) * np.float32(130.0)  # mm along the ribs from the back
    ribs = (np.mod(z + slope * arc + phase, period) < 9.0) & (z > -75.0 + 0.45 * arc) & (arc < 330.0)
    d_cav = d + 2.0 + t_sc + t_m
    lab[np.broadcast_to(ribs & (d_cav > -7.0) & (d_cav <= 2.0), shape)] = _O["bone_cortical"]
    heart = p.heart
    pt.fill(_O["visceral_fat"], lambda x, y, z: heart.sdf(x, y, z) <= 5.0, heart.box(5.0), thorax)
    pt.fill(_O["muscle"], lambda x, y, z: heart.sdf(x, y, z) <= 0.0, heart.box(), thorax)
    pt.fill(_O["heart"], lambda x, y, z: heart.sdf(x, y, z) <= -9.0, heart.box(), thorax)


def _back(pt: Painter, p: Patient) -> None:
    """Paraspinal and psoas muscles (painted before the organs)."""
    y_vb, rx, ry = (float(v) for v in p.spine[:3])
    y_canal = y_vb - ry - 11.0
    for side in (-1.0, 1.0):
        for center, radii in (((side * 30.0, y_canal - 18.0), (28.0, 28.0)),
                              ((side * (rx + 35.0), y_vb - 22.0), (22.0, 14.0))):
            pt.fill(_O["muscle"], lambda x, y, z, c=center, r=radii: ((x - c[0]) / r[0]) ** 2
                    + ((y - c[1]) / r[1]) ** 2 <= 1, (np.array([*center, 0]) - [*radii, 1e4],
                                                      np.array([*center, 0]) + [*radii, 1e4]), over=_SOFT)
        psoas = Tube(np.array([side * (rx + 12), y_vb + 2, -20.0]), np.array([side * (rx + 22), y_vb + 8, -260.0]),
                     4.0, 30.0)
        pt.tubes([psoas], _O["muscle"], within=pt.cavity)


def _organs(pt: Painter, p: Patient) -> None:
    """Bowel, stomach, pancreas, veins, liver, gallbladder, spleen, kidneys, vessels, ascites."""
    abd = pt.abdomen
    pt.tubes(p.small_bowel, _O["bowel_fluid"], 3.0, abd)
    pt.tubes(p.collapsed_bowel, _O["bowel_wall"], 0.0, abd)
    pt.tubes(p.colon, _O["stool"], 3.0, abd)
    pt.tubes(p.stomach, _O["bowel_fluid"], 4.0, abd)
    pt.tubes(p.pancreas, _O["pancreas"], 0.0, abd)
    pt.tubes(p.veins, _O["portal_vein"], 0.0, abd)
    rim = np.float32(p.ascites)
    liver = pt.sampler.region(*liver_box(p, float(rim)))
    d_liver = liver_sdf(*liver[1:], p) if liver is not None else None
    if liver is not None:
        pt.apply(liver[0], d_liver <= 0, _O["liver"], abd)
    pt.fill(_O["gallbladder"], lambda x, y, z: p.gallbladder.sdf(x, y, z) <= 0, p.gallbladder.box(), abd)
    spleen, carve = p.spleen, p.spleen_carve
    pt.fill(_O["spleen"], lambda x, y, z: smax(spleen.sdf(x, y, z), -carve.sdf(x, y, z), 6.0) <= 0,
            spleen.box(), abd)
    for kidney in p.kidneys:
        pt.fill(0, lambda x, y, z, k=kidney: _kidney(x, y, z, k), kidney.box(), abd)
    pt.tubes(p.liver_vessels, _O["hepatic_vessel"], over=(_O["liver"],))
    pt.tubes(p.ivc, _O["ivc"], within=pt.cavity)
    pt.tubes(p.aorta, _O["aorta"], within=pt.cavity)
    if p.ascites > 0:
        fluid, fat = _O["ascites"], (_O["visceral_fat"],)
        if liver is not None:
            pt.apply(liver[0], d_liver <= rim, fluid, abd, fat)
        pt.fill(fluid, lambda x, y, z: spleen.sdf(x, y, z) <= 0.7 * rim, spleen.box(rim), abd, fat)
        flank = pt.abdomen & (pt.d_cav > -0.6 * rim) & (pt.labels == fat[0])
        pt.fill(fluid, lambda x, y, z: (z < 0) & (y > p.spine[0]), None, flank)


def _kidney(x: np.ndarray, y: np.ndarray, z: np.ndarray, k: Ellipsoid) -> np.ndarray:
    """Cortex, medulla and (medial) renal sinus of one kidney as a label array."""
    d = k.sdf(x, y, z)
    lx, _, _ = to_local(x, y, z, k.center, k.rot)
    medial = (-np.sign(k.center[0]) * lx) > 0.25 * k.radii[0]
    out = np.where(d <= 0, _O["kidney_cortex"], 0)
    out = np.where(d <= -7.0, _O["kidney_medulla"], out)
    return np.where((d <= -4.0) & medial, _O["renal_sinus"], out).astype(np.uint8)


def _spine(pt: Painter, p: Patient) -> None:
    """Vertebral bodies with discs, spinal canal and posterior elements (painted last)."""
    y_vb, rx, ry, z0, period = (np.float32(v) for v in p.spine)
    y_canal = y_vb - ry - 11.0
    tall = np.array([60.0, 80.0, 1e4])
    center = np.array([0.0, float(y_vb) - 20.0, 0.0])

    def column(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        body = np.sqrt((x / rx) ** 2 + ((y - y_vb) / ry) ** 2)
        phase = np.mod(z - z0, period)
        r_canal = np.sqrt(x * x + (y - y_canal) ** 2)
        spinous = (np.abs(x) < 3.5) & (y < y_canal - 8) & (y > y_canal - 38) & (phase > 6) & (phase < 20)
        transverse = (np.abs(y - y_canal) < 3) & (np.abs(x) < 38) & (phase > 9) & (phase < 15)
        arch = (r_canal < 14) & (y < y_canal + 4) & (phase > 4)
        out = np.where(arch | spinous | transverse, _O["bone_cortical"], 0)
        out = np.where(r_canal < 8.5, _O["spinal_canal"], out)
        out = np.where(body <= 1, np.where(phase < 7, _O["disc"], _O["bone_marrow"]), out)
        return np.where((body <= 1) & (body > 1 - 2.0 / ry) & (phase >= 7), _O["bone_cortical"], out
                        ).astype(np.uint8)

    pt.fill(0, column, (center - tall, center + tall))


def paint_labels(sampler: Sampler, p: Patient, table: bool = False) -> np.ndarray:
    """Label map (uint8, ids of ``ORGANS``) of patient ``p`` at the sampler's points.

    Example:
        >>> from livercad.phantom.anatomy import sample_patient
        >>> grid = GridSampler((48, 40, 30), np.diag([8.0, 8.0, 10.0, 1.0]) @ np.array(
        ...     [[1, 0, 0, -24], [0, 1, 0, -20], [0, 0, 1, -15], [0, 0, 0, 1.0]]))
        >>> labels = paint_labels(grid, sample_patient(np.random.default_rng(1)))
        >>> bool((labels == ORGANS["liver"]).any() and (labels == ORGANS["spleen"]).any())
        True
    """
    pt = Painter(sampler)
    _body(pt, p)
    _back(pt, p)
    _organs(pt, p)
    paint_pelvis(pt, p)
    _spine(pt, p)
    if table:
        y0 = np.float32(-0.97 * p.body[1] - 14.0)
        pt.fill(_O["table"], lambda x, y, z: np.abs(y - y0 - x * x / 1600.0) < 3.0, None,
                over=(_O["background"],))
    return pt.labels


def artifact_weight(x: np.ndarray, y: np.ndarray, z: np.ndarray, p: Patient) -> np.ndarray:
    """Site artifact profile: a bright arc just outside the skin on the left anterior flank (0..1)."""
    d, _, _ = body_distance(x, y, z, p)
    angle = np.angle(np.exp(1j * (np.arctan2(y, x) - np.deg2rad(140.0)))).astype(np.float32)
    return (np.exp(-(((d - 6.0) / 2.5) ** 2)) * np.exp(-((angle / 0.45) ** 2))).astype(np.float32)
