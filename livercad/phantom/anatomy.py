"""Per-patient anatomy of the phantom: organ ids and the random draw of one patient's body.

World frame (RAS mm): x to the patient's right, y anterior, z superior; the midline is ``x = 0``, the
body centre ``y = 0`` and ``z = 0`` is about the middle of the liver. :func:`sample_patient` draws the
size, shape and position of every structure (and the disease morphology) from a generator; painting
them into a label map is :mod:`livercad.phantom.paint`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from livercad.phantom.shapes import WaveField, ellipsoid, rotation

#: Label ids of the phantom's tissue map (``make_case(..., return_labels=True)``).
ORGANS: dict[str, int] = {
    "background": 0, "liver": 1, "hepatic_vessel": 2, "spleen": 3, "kidney_cortex": 4,
    "kidney_medulla": 5, "renal_sinus": 6, "gallbladder": 7, "ascites": 8, "aorta": 9, "ivc": 10,
    "portal_vein": 11, "pancreas": 12, "bowel_wall": 13, "bowel_fluid": 14, "gas": 15, "stool": 16,
    "subcutaneous_fat": 17, "visceral_fat": 18, "muscle": 19, "bone_cortical": 20, "bone_marrow": 21,
    "disc": 22, "spinal_canal": 23, "lung": 24, "heart": 25, "table": 26, "bladder": 27,
}
#: Labels that make up the liver mask (parenchyma and the vessels inside it).
LIVER_LABELS: tuple[int, ...] = (ORGANS["liver"], ORGANS["hepatic_vessel"])
NO_GAS = 9.0  # Tube.gas value meaning "never gas"


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid organ part (centre and radii in mm, optional 3x3 rotation)."""

    center: np.ndarray
    radii: np.ndarray
    rot: np.ndarray | None = None

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Approximate signed distance in mm."""
        return ellipsoid(x, y, z, self.center, self.radii, self.rot)

    def box(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (conservative)."""
        rot = np.eye(3) if self.rot is None else self.rot
        half = np.sqrt(((rot * self.radii[None, :]) ** 2).sum(axis=1)) + margin
        return self.center - half, self.center + half


@dataclass(frozen=True)
class Tube:
    """A tapered tube segment; inside its lumen, gas fills where ``y - axis_y > gas * radius``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float
    gas: float = NO_GAS


@dataclass(frozen=True)
class Patient:
    """Everything that defines one phantom patient's anatomy (mm, world frame)."""

    steatosis: float
    cirrhosis: float
    body: np.ndarray  # a, b, superellipse power, z taper per mm, fat, muscle
    body_harm: np.ndarray  # (3, 2) amplitude and phase of the k = 2, 3, 4 outline harmonics
    dome: np.ndarray  # right top z, left top z, right x, left x, curvature radius
    spine: np.ndarray  # vertebral body y, radius x, radius y, disc z0, disc period
    ribs: np.ndarray  # period, slope, phase
    liver_parts: tuple[Ellipsoid, ...]  # right lobe, left lobe, caudate
    liver_cut: np.ndarray  # (2, 3): a point and the outward normal of the visceral plane
    liver_shape: WaveField
    liver_nodules: WaveField
    nodule_amp: float
    spleen: Ellipsoid
    spleen_carve: Ellipsoid
    kidneys: tuple[Ellipsoid, Ellipsoid]
    gallbladder: Ellipsoid
    heart: Ellipsoid
    stomach: tuple[Tube, ...]
    colon: tuple[Tube, ...]
    small_bowel: tuple[Tube, ...]
    pancreas: tuple[Tube, ...]
    veins: tuple[Tube, ...]  # extrahepatic portal, splenic and superior mesenteric veins
    aorta: tuple[Tube, ...]
    ivc: tuple[Tube, ...]
    liver_vessels: tuple[Tube, ...]
    ascites: float  # thickness of the fluid rim in mm
    pelvis: np.ndarray | None = None  # bladder (x, y, z, radius scale) and iliac wing scale; None: no pelvis
    collapsed_bowel: tuple[Tube, ...] = ()  # solid (collapsed) small-bowel loops, painted as bowel wall

    @property
    def cavity(self) -> tuple[float, float]:
        """Approximate half width and anterior half depth of the abdominal cavity."""
        a, b, _, _, fat, muscle = self.body
        return float(a - 2 - 0.8 * fat - muscle), float(b - 2 - fat - muscle)


def chain(points: list[tuple[float, float, float]], radii: list[float], gas: list[float] | None = None
          ) -> tuple[Tube, ...]:
    """Consecutive tubes through ``points`` with the given radius at each point."""
    pts = [np.asarray(p, dtype=np.float64) for p in points]
    gas = gas or [NO_GAS] * (len(pts) - 1)
    return tuple(Tube(pts[i], pts[i + 1], radii[i], radii[i + 1], gas[i]) for i in range(len(pts) - 1))


def vessel_tree(rng: np.random.Generator, start: np.ndarray, direction: np.ndarray, length: float,
                radius: float, depth: int) -> list[Tube]:
    """A bifurcating tube tree (children turn 20-40 degrees, shrink to ~0.72 of the parent)."""
    end = start + length * direction / np.linalg.norm(direction)
    tubes = [Tube(start, end, radius, radius * 0.85)]
    if depth > 0:
        for sign in (-1.0, 1.0):
            turn = rotation(*rng.uniform(-25, 25, 2), sign * rng.uniform(20, 40))
            tubes += vessel_tree(rng, end, turn @ direction, length * rng.uniform(0.65, 0.8),
                                 radius * 0.72, depth - 1)
    return tubes


def _sample_liver(rng: np.random.Generator, ac: float, bc: float, y_vb: float, steat: float,
                  cirr: float) -> tuple[tuple[Ellipsoid, ...], np.ndarray]:
    scale = rng.uniform(0.98, 1.14) * (1 + 0.08 * steat)
    atrophy, hyper = 1 - 0.22 * cirr, 1 + 0.6 * cirr
    y0, y1 = y_vb - 25, bc
    right = Ellipsoid(np.array([0.5 * ac + rng.uniform(-5, 5), (y0 + y1) / 2, 0.0]),
                      np.array([0.56 * ac * atrophy, 0.5 * (y1 - y0) * (0.9 + 0.1 * atrophy),
                                80 * (1 - 0.1 * cirr)]) * scale, rotation(0, rng.uniform(-10, 0), 0))
    left = Ellipsoid(np.array([-0.15 * ac + rng.uniform(-10, 5), bc - 32, 28 + rng.uniform(-8, 8)]),
                     np.array([0.45 * ac, 27, 45]) * scale * (1 + 0.12 * cirr) * rng.uniform(0.8, 1.15),
                     rotation(rng.uniform(-8, 8), 0, rng.uniform(-10, 10)))
    caudate = Ellipsoid(np.array([14.0, y_vb + 30, 10.0]), np.array([15, 18, 32]) * scale * hyper)
    normal = np.array([-0.45, 0.1, -0.85]) + rng.normal(0, 0.08, 3)
    cut = np.array([[0.15 * ac, 0.0, -0.4 * 80 * scale], normal / np.linalg.norm(normal)])
    return (right, left, caudate), cut


def _sample_organs(rng: np.random.Generator, ac: float, bc: float, y_vb: float, dome_l: float,
                   cirr: float) -> dict[str, object]:
    u = rng.uniform
    phi = np.deg2rad(u(200, 222))
    size = u(0.85, 1.1) * (1 + 0.42 * cirr)
    radial = np.hypot(ac * np.cos(phi), 0.8 * bc * np.sin(phi)) - 24 * size
    s_center = np.array([radial * np.cos(phi), radial * np.sin(phi), dome_l - 40 * size])
    rot = rotation(0, 0, np.rad2deg(phi))
    spleen = Ellipsoid(s_center, np.array([24, 55, 55]) * size, rot)
    carve = Ellipsoid(s_center - 40 * size * np.array([np.cos(phi), np.sin(phi), 0]),
                      np.array([20, 32, 38]) * size, rot)
    kidneys = tuple(Ellipsoid(np.array([side * 0.55 * ac + u(-6, 6), y_vb + u(0, 10), z0 + u(-10, 10)]),
                              np.array([25, 22, 52]) * u(0.88, 1.1),
                              rotation(u(-20, -10), side * u(8, 15), side * u(-30, -20)))
                    for side, z0 in ((1.0, -62.0), (-1.0, -45.0)))
    gallbladder = Ellipsoid(np.array([0.22 * ac + u(-8, 8), bc - 35, -35 + u(-10, 10)]),
                            np.array([13, 15, 30]) * u(0.6, 1.15), rotation(u(20, 40), 0, u(-20, 20)))
    heart = Ellipsoid(np.array([-0.2 * ac, 0.3 * bc, dome_l + 35]), np.array([50, 40, 50]) * u(0.9, 1.1),
                      rotation(0, 0, -35))
    return {"spleen": spleen, "spleen_carve": carve, "kidneys": kidneys, "gallbladder": gallbladder,
            "heart": heart}


def _sample_bowel(rng: np.random.Generator, ac: float, bc: float, y_vb: float, dome_l: float
                  ) -> dict[str, tuple[Tube, ...]]:
    u = rng.uniform
    dist = u(0.7, 1.15)
    stomach = chain([(-0.35 * ac, y_vb + 40, dome_l - 30), (-0.45 * ac, 0.3 * bc, dome_l - 75),
                     (-0.05 * ac, 0.55 * bc, -45), (0.15 * ac, 0.45 * bc, -50)],
                    [30 * dist, 27 * dist, 20 * dist, 11], [u(-0.2, 0.5), u(0.2, 0.9), NO_GAS])
    t_z = -105 + u(-20, 10)
    colon = chain([(0.55 * ac, 0, -260), (0.62 * ac, 5, -75), (0.45 * ac, 0.45 * bc, -88), (0, 0.7 * bc, t_z),
                   (-0.6 * ac, 0.1 * bc, -25), (-0.7 * ac, -0.05 * bc, -90), (-0.65 * ac, 0, -260)],
                  [24, 21, 19, 19, 17, 16, 16], list(u(-0.3, 0.8, 6)))
    loops: list[Tube] = []
    for _ in range(22):
        p = np.array([u(-0.55 * ac, 0.5 * ac), u(y_vb + 15, 0.85 * bc), u(-220, -65)])
        d, r, g = rng.normal(size=3), u(10, 14), (NO_GAS if u() < 0.75 else u(0.1, 0.8))
        for _ in range(6):
            d = d / np.linalg.norm(d) + 0.9 * rng.normal(size=3) * np.array([1, 1, 0.6])
            q = p + 30 * d / np.linalg.norm(d)
            loops.append(Tube(p, q, r, r, g))
            p = q
    return {"stomach": stomach, "colon": colon, "small_bowel": tuple(loops)}


def _sample_vessels(rng: np.random.Generator, ac: float, bc: float, y_vb: float, dome_r: float,
                    spleen: Ellipsoid, heart: Ellipsoid) -> dict[str, tuple[Tube, ...]]:
    u = rng.uniform
    hilum = spleen.center + 0.6 * (np.array([0.0, 0.0, spleen.center[2]]) - spleen.center)
    pancreas = chain([(0.2 * ac, y_vb + 45, -50), (0.02 * ac, y_vb + 55, -40), (-0.25 * ac, y_vb + 45, -28),
                      tuple(hilum + np.array([0, 8, -5]))], [13, 11, 10, 8])
    conf, porta = np.array([0.0, y_vb + 45, -40]), np.array([0.22 * ac, y_vb + 40, -10 + u(-6, 6)])
    veins = (chain([tuple(conf), (-0.25 * ac, y_vb + 35, -30), tuple(hilum)], [5.5, 4.5, 4.5])
             + chain([(0.02 * ac, y_vb + 55, -260), tuple(conf), tuple(porta)], [5, 6.5, 7]))
    ivc = chain([(0.15 * ac, y_vb + 28, -260), (0.15 * ac, y_vb + 30, -60), (0.12 * ac, y_vb + 38, 20),
                 tuple(heart.center + np.array([25.0, -10.0, -15.0]))], [10, 11, 11, 13])
    aorta = chain([(-0.1 * ac, y_vb + 27, -260), (-0.1 * ac, y_vb + 25, -40), (-0.15 * ac, y_vb + 12, 60),
                   (-0.2 * ac, y_vb + 5, 300)], [9, 10, 11, 12])
    tree = vessel_tree(rng, porta, np.array([1.0, -0.2, 0.25]), 45, 6.0, 2)
    tree += vessel_tree(rng, porta, np.array([-0.9, 0.9, 0.5]), 45, 5.0, 2)
    top = np.array([0.12 * ac, y_vb + 40, dome_r - 15])
    for target in ((0.8 * ac, y_vb + 35, -20), (0.25 * ac, 0.6 * bc, -30), (-0.3 * ac, 0.6 * bc, 15)):
        tree += vessel_tree(rng, top, np.asarray(target) - top, 55 * u(0.8, 1.1), 5.0, 1)
    return {"pancreas": pancreas, "veins": veins, "ivc": ivc, "aorta": aorta, "liver_vessels": tuple(tree)}


def _liver_variants(v: np.random.Generator, parts: tuple[Ellipsoid, ...]) -> tuple[Ellipsoid, ...]:
    """Shape variants: Riedel's lobe (an inferior tongue of the right lobe), left-lobe extent, caudate size."""
    right, left, caudate = parts
    if v.uniform() < 0.2:  # Riedel's lobe: the right lobe reaches far down, narrower
        stretch = v.uniform(1.15, 1.4)
        shift = np.array([0.0, 0.0, -(stretch - 1.0) * right.radii[2]])
        right = Ellipsoid(right.center + shift, right.radii * np.array([0.88, 1.0, stretch]), right.rot)
    k = v.uniform(0.6, 1.45)  # left lobe from small to reaching the spleen
    left = Ellipsoid(left.center + np.array([-(k - 1.0) * 0.5 * left.radii[0], 0, 0]),
                     left.radii * np.array([k, v.uniform(0.85, 1.15), v.uniform(0.85, 1.15)]), left.rot)
    caudate = Ellipsoid(caudate.center, caudate.radii * v.uniform(0.8, 1.5), caudate.rot)
    return (right, left, caudate)


def _lobe_variants(v: np.random.Generator, parts: tuple[Ellipsoid, ...], cut: np.ndarray
                   ) -> tuple[tuple[Ellipsoid, ...], np.ndarray]:
    """Generator version 3: a left lobe and segment IV that reach down the front of the abdomen.

    In real livers the left lateral segments and segment IV lie anterior and reach caudally to about the
    gallbladder's level, and the left lobe crosses the midline at the same levels as the kidneys' upper
    poles. Version 1 puts the left lobe's centre 28 mm above the right lobe's and cuts its lower-left part
    away with the visceral plane, so below the liver's middle it never crosses the midline, and a model
    trained on it learns that no liver lies left of the midline there. Here the left lobe's centre moves
    0-40 mm down and forward, it is taller (1.0-1.5x) and reaches further right towards the gallbladder, and
    the visceral plane leans less to the left, so that the anterior-inferior edge of the liver slants from
    the right costal margin up to the left, as on real CT and MR.
    """
    right, left, caudate = parts
    drop = v.uniform(0.0, 40.0)
    tall = v.uniform(1.0, 1.5)
    wide = v.uniform(1.0, 1.3)
    center = left.center + np.array([0.5 * (wide - 1.0) * left.radii[0], v.uniform(0.0, 6.0), -drop])
    left = Ellipsoid(center, left.radii * np.array([wide, v.uniform(0.9, 1.2), tall]), left.rot)
    point, normal = cut
    normal = normal * np.array([v.uniform(0.2, 1.0), 1.0, 1.0])
    point = point + np.array([0.0, 0.0, -v.uniform(0.0, 25.0)])
    return (right, left, caudate), np.stack([point, normal / np.linalg.norm(normal)])


def _bowel_variants(v: np.random.Generator, loops: tuple[Tube, ...], ac: float, bc: float, y_vb: float
                    ) -> tuple[tuple[Tube, ...], tuple[Tube, ...]]:
    """Bowel as real scans show it: (fluid-filled loops, collapsed loops).

    A random share (10-70 %) of the small-bowel loops is collapsed: a solid tube of bowel wall, which
    enhances like parenchyma on CT and is what a liver model most easily confuses with liver. Further
    loops (fluid, gas or collapsed) fill the lower abdomen and the pelvis down to the bladder, where real
    abdominal CT continues for 20 cm below the liver.
    """
    share = v.uniform(0.1, 0.7)
    fluid: list[Tube] = []
    collapsed: list[Tube] = []
    per_loop = 6  # _sample_bowel draws each loop as 6 consecutive tubes
    for i in range(0, len(loops), per_loop):
        if v.uniform() < share:
            collapsed += [Tube(t.a, t.b, 0.7 * t.ra, 0.7 * t.rb) for t in loops[i:i + per_loop]]
        else:
            fluid += loops[i:i + per_loop]
    for _ in range(int(v.integers(6, 14))):
        p = np.array([v.uniform(-0.65 * ac, 0.65 * ac), v.uniform(y_vb + 5, 0.85 * bc), v.uniform(-285, -150)])
        d, r = v.normal(size=3), v.uniform(7, 14)
        kind = v.uniform()
        for _ in range(int(v.integers(3, 7))):
            d = d / np.linalg.norm(d) + 0.9 * v.normal(size=3) * np.array([1, 1, 0.6])
            q = p + 25 * d / np.linalg.norm(d)
            if kind < share:
                collapsed.append(Tube(p, q, 0.7 * r, 0.7 * r))
            else:
                fluid.append(Tube(p, q, r, r, NO_GAS if kind < 0.8 else v.uniform(0.1, 0.8)))
            p = q
    return tuple(fluid), tuple(collapsed)


def sample_patient(rng: np.random.Generator, steatosis: float = 0.0, cirrhosis: float = 0.0,
                   variants: np.random.Generator | None = None, bowel_variants: bool = False,
                   lobes: np.random.Generator | None = None) -> Patient:
    """Draw one patient's anatomy; disease scores in [0, 1] shape the liver, spleen, fat and ascites.

    ``variants`` (a separate generator, so the default draws stay the same without it) widens body
    habitus and fat and adds liver shape variants (:func:`_liver_variants`); with ``bowel_variants`` too
    (generator version 2) collapsed and pelvic bowel loops (:func:`_bowel_variants`). ``lobes`` (a third
    generator, generator version 3) lets the left lobe and segment IV reach caudally (:func:`_lobe_variants`).

    Example:
        >>> p = sample_patient(np.random.default_rng(0), cirrhosis=0.8)
        >>> bool(p.ascites > 0 and p.spleen.radii[1] > 55)
        True
    """
    u = rng.uniform
    a, b, fat = u(135, 170), u(95, 125), u(10, 28) + 10 * steatosis
    if variants is not None:  # habitus: slim to obese
        a, b = a * variants.uniform(0.88, 1.12), b * variants.uniform(0.88, 1.2)
        fat = min(fat * variants.uniform(0.4, 1.8), b - 85.0)  # the cavity keeps room for the organs
    body = np.array([a, b, u(2.0, 2.4), u(-4e-4, 4e-4), fat, u(7, 12)])
    harm = np.stack([u(0, 0.02, 3), u(0, 2 * np.pi, 3)], axis=1)
    ac, bc = float(a - 2 - 0.8 * fat - body[5]), float(b - 2 - fat - body[5])
    y_vb = -0.97 * b + 0.55 * fat + 2 + u(64, 76)
    spine = np.array([y_vb, u(20, 25), u(15, 19), u(0, 30), u(28, 34)])
    parts, cut = _sample_liver(rng, ac, bc, y_vb, steatosis, cirrhosis)
    if lobes is not None:
        parts, cut = _lobe_variants(lobes, parts, cut)
    pelvis = None
    if variants is not None:
        parts = _liver_variants(variants, parts)
        pelvis = np.array([variants.uniform(-10, 10), variants.uniform(0.2, 0.45) * b, variants.uniform(-275, -235),
                           variants.uniform(0.5, 1.3), variants.uniform(0.85, 1.15)])
    dome_r = parts[0].center[2] + parts[0].radii[2] - u(0, 8)
    dome = np.array([dome_r, dome_r - u(10, 25), 0.45 * ac, -0.45 * ac, u(90, 130)])
    organs = _sample_organs(rng, ac, bc, y_vb, float(dome[1]), cirrhosis)
    patient = Patient(
        steatosis=float(steatosis), cirrhosis=float(cirrhosis), body=body, body_harm=harm, dome=dome,
        spine=spine, ribs=np.array([u(26, 32), u(0.45, 0.6), u(0, 30)]), liver_parts=parts, liver_cut=cut,
        liver_shape=WaveField.random(rng, 6, (70, 150)), liver_nodules=WaveField.random(rng, 16, (10, 18), True),
        nodule_amp=4.0 * cirrhosis**0.8, ascites=max(0.0, cirrhosis - 0.2) * 30.0, pelvis=pelvis,
        **organs, **_sample_bowel(rng, ac, bc, y_vb, float(dome[1])),  # type: ignore[arg-type]
        **_sample_vessels(rng, ac, bc, y_vb, float(dome_r), organs["spleen"], organs["heart"]),  # type: ignore[arg-type]
    )
    if variants is None or not bowel_variants:
        return patient
    fluid, collapsed = _bowel_variants(variants, patient.small_bowel, ac, bc, y_vb)
    return replace(patient, small_bowel=fluid, collapsed_bowel=collapsed)
