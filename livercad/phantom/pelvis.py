"""The upper pelvis of domain-randomised phantom cases: iliac wings and the urinary bladder.

Real abdominal CT often reaches the pelvis, where the bladder (fluid) and bowel loops must not be taken for
liver; the classic phantom stops above it. Painted only for patients drawn with ``variants``
(``Patient.pelvis`` set), so the classic phantom's images do not change.
"""

from __future__ import annotations

import numpy as np

from livercad.phantom.anatomy import ORGANS, Ellipsoid, Patient
from livercad.phantom.shapes import rotation

_O = ORGANS
_SOFT = (_O["visceral_fat"], _O["muscle"], _O["bowel_fluid"], _O["bowel_wall"], _O["stool"], _O["gas"])


def _wing(p: Patient, side: float, scale: float) -> Ellipsoid:
    """One iliac wing as an ellipsoid whose lateral shell is bone (tilted outwards)."""
    ac, _ = p.cavity
    y_vb = float(p.spine[0])
    return Ellipsoid(np.array([side * 0.52 * ac, y_vb + 12.0, -235.0]),
                     np.array([0.36 * ac, 55.0, 75.0]) * scale, rotation(0, side * 15.0, 0))


def paint_pelvis(pt: object, p: Patient) -> None:
    """Iliac wings (cortex and marrow over an iliacus muscle) and the bladder, below the lower abdomen."""
    if p.pelvis is None:
        return
    bx, by, bz, bsize, wing_scale = (float(v) for v in p.pelvis)
    for side in (-1.0, 1.0):
        wing = _wing(p, side, wing_scale)
        cx = float(wing.center[0])

        def bone(x: np.ndarray, y: np.ndarray, z: np.ndarray, w: Ellipsoid = wing, cx: float = cx,
                 side: float = side) -> np.ndarray:
            d = w.sdf(x, y, z)
            lateral = side * (x - cx) > -0.25 * w.radii[0]
            out = np.where(lateral & (d <= 0) & (d > -14.0), _O["muscle"], 0)
            out = np.where(lateral & (np.abs(d) <= 4.0), _O["bone_marrow"], out)
            return np.where(lateral & (np.abs(d) <= 4.0) & (np.abs(d) > 2.0), _O["bone_cortical"], out
                            ).astype(np.uint8)

        pt.fill(0, bone, wing.box(5.0), pt.cavity, _SOFT)  # type: ignore[attr-defined]
    bladder = Ellipsoid(np.array([bx, by, bz]), np.array([48.0, 38.0, 36.0]) * bsize)
    pt.fill(_O["bladder"], lambda x, y, z: bladder.sdf(x, y, z) <= 0, bladder.box(), pt.cavity,  # type: ignore[attr-defined]
            _SOFT)
