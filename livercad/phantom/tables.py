"""Random tissue-intensity tables for domain-randomised phantom images (SynthSeg-style contrast).

Each table maps every tissue of :data:`~livercad.phantom.anatomy.ORGANS` to ``(mean, texture SD)``.
CT tables are in Hounsfield units and follow the physiology of a contrast phase (:data:`CT_PHASE_TABLES`:
non-contrast, arterial, portal-venous, delayed), blended towards the unenhanced values by a random
enhancement factor, with per-tissue jitter and, in a share of cases, a fatty liver (down to about -10 HU);
the extended tables (generator version 2) add random bowel content and a share of fully random soft-tissue
contrast (phase ``random``).
MR tables are T1-like (pre- or post-contrast), T2-like, or fully random (every tissue uniform in
[0, 1000], air kept dark), with per-tissue multiplicative jitter and, sometimes, inverted contrast.

Example:
    >>> rng = np.random.default_rng(0)
    >>> kind, table = random_ct_table(rng)
    >>> (kind in CT_PHASE_TABLES or kind == "random") and set(table) == set(CT_TISSUE)
    True
"""

from __future__ import annotations

import numpy as np

from livercad.phantom.contrast import CT_TISSUE, CT_TISSUE_NONCONTRAST, MR_TISSUE

Table = dict[str, tuple[float, float]]

#: Late-arterial phase (~35 s): bright aorta and kidney cortex, liver barely enhanced, spleen bright.
CT_TISSUE_ARTERIAL: Table = {
    **CT_TISSUE, "liver": (72, 6), "hepatic_vessel": (75, 10), "spleen": (120, 12), "kidney_cortex": (220, 15),
    "kidney_medulla": (95, 10), "aorta": (300, 15), "ivc": (85, 15), "portal_vein": (150, 10),
    "pancreas": (115, 10), "bowel_wall": (105, 10), "muscle": (55, 6), "heart": (260, 20),
}
#: Delayed phase (3-5 min): parenchyma and blood converge, kidneys excrete.
CT_TISSUE_DELAYED: Table = {
    **CT_TISSUE, "liver": (88, 5), "hepatic_vessel": (108, 8), "spleen": (92, 5), "kidney_cortex": (150, 10),
    "kidney_medulla": (175, 12), "aorta": (115, 6), "ivc": (110, 8), "portal_vein": (112, 6),
    "pancreas": (80, 8), "bowel_wall": (80, 8), "muscle": (60, 6), "heart": (115, 8),
}
CT_PHASE_TABLES: dict[str, Table] = {
    "non-contrast": CT_TISSUE_NONCONTRAST, "arterial": CT_TISSUE_ARTERIAL, "portal-venous": CT_TISSUE,
    "delayed": CT_TISSUE_DELAYED,
}
#: T1-weighted (gradient echo, unenhanced): fat bright, fluid dark, liver brighter than spleen.
MR_T1_TISSUE: Table = {
    "background": (0, 0), "liver": (480, 15), "hepatic_vessel": (140, 15), "spleen": (360, 15),
    "kidney_cortex": (420, 20), "kidney_medulla": (300, 20), "renal_sinus": (780, 40), "gallbladder": (150, 15),
    "ascites": (90, 10), "aorta": (110, 20), "ivc": (140, 20), "portal_vein": (150, 20), "pancreas": (540, 20),
    "bowel_wall": (340, 20), "bowel_fluid": (140, 25), "gas": (8, 3), "stool": (300, 60),
    "subcutaneous_fat": (850, 25), "visceral_fat": (800, 30), "muscle": (300, 12), "bone_cortical": (20, 8),
    "bone_marrow": (600, 40), "disc": (250, 20), "spinal_canal": (120, 15), "lung": (20, 8),
    "heart": (240, 25), "table": (0, 0), "bladder": (80, 10),
}
#: T1-weighted after gadolinium (portal-venous): vessels and enhancing parenchyma bright.
MR_T1_POST_TISSUE: Table = {
    **MR_T1_TISSUE, "liver": (600, 18), "hepatic_vessel": (780, 20), "spleen": (620, 20),
    "kidney_cortex": (760, 25), "kidney_medulla": (650, 25), "aorta": (820, 25), "ivc": (760, 25),
    "portal_vein": (820, 25), "pancreas": (640, 25), "bowel_wall": (600, 25), "muscle": (340, 15),
    "heart": (780, 30), "subcutaneous_fat": (420, 25), "visceral_fat": (400, 30),
}
MR_KINDS: dict[str, float] = {"t1": 0.3, "t1-post": 0.15, "t2": 0.25, "random": 0.3}
_DARK = ("background", "gas", "lung", "bone_cortical", "table")  # no MR signal in most images


#: Share of CT cases whose soft tissues (the liver included) all get random HU (``random`` contrast).
CT_RANDOM_SHARE = 0.15
#: Tissues a ``random`` CT keeps physical: air, lung, fat and bone (the context a CT window shows).
_CT_PHYSICAL = ("background", "gas", "lung", "subcutaneous_fat", "visceral_fat", "bone_cortical", "bone_marrow",
                "table", "renal_sinus")


def _bowel_content(table: Table, rng: np.random.Generator) -> None:
    """Random bowel content: water (as drawn), chyme as dense as soft tissue, or positive oral contrast."""
    kind, tex = rng.uniform(), table["bowel_fluid"][1]
    if kind < 0.3:
        table["bowel_fluid"] = (rng.uniform(120, 350), tex * 2)
    elif kind < 0.6:
        table["bowel_fluid"] = (rng.uniform(25, 90), tex * 1.5)
    table["stool"] = (rng.uniform(-60, 80), table["stool"][1])


def random_ct_table(rng: np.random.Generator, *, extended: bool = False) -> tuple[str, Table]:
    """A CT table of a random phase: enhancement factor, per-tissue jitter, sometimes a fatty liver.

    ``extended`` (generator version 2): the bowel's content is random too (:func:`_bowel_content`), and in
    :data:`CT_RANDOM_SHARE` of the draws every soft tissue, the liver included, gets a random value in
    [-20, 250] HU (phase ``random``): the liver is then only recognisable by its shape and place.
    """
    phase = str(rng.choice(list(CT_PHASE_TABLES)))
    base, plain = CT_PHASE_TABLES[phase], CT_TISSUE_NONCONTRAST
    gain = rng.uniform(0.6, 1.4)
    table: Table = {}
    for name, (mean, tex) in base.items():
        m0 = plain[name][0]
        jitter = 0.0 if name in ("background", "gas") else rng.normal(0, 8)
        table[name] = (m0 + gain * (mean - m0) + jitter, tex * rng.uniform(0.6, 1.6))
    if rng.uniform() < 0.3:  # fatty liver: attenuation down to about -10 HU
        m, t = table["liver"]
        table["liver"] = (m - rng.uniform(10, 70), t)
    if not extended:
        return phase, table
    _bowel_content(table, rng)
    if rng.uniform() < CT_RANDOM_SHARE:
        phase = "random"
        table = {k: (v if k in _CT_PHYSICAL else (float(rng.uniform(-20, 250)), v[1])) for k, v in table.items()}
    return phase, table


def random_mr_table(rng: np.random.Generator) -> tuple[str, Table]:
    """An MR table: T1-like, T1 post-contrast, T2-like or fully random; jittered; sometimes inverted."""
    kind = str(rng.choice(list(MR_KINDS), p=list(MR_KINDS.values())))
    base = {"t1": MR_T1_TISSUE, "t1-post": MR_T1_POST_TISSUE, "t2": MR_TISSUE}.get(kind, MR_TISSUE)
    table: Table = {}
    for name, (mean, tex) in base.items():
        if kind == "random" and (name not in _DARK or rng.uniform() < 0.2):
            mean, tex = rng.uniform(0, 1000), rng.uniform(5, 40)
        table[name] = (mean * float(rng.lognormal(0, 0.15)), tex * rng.uniform(0.6, 1.6))
    if rng.uniform() < 0.1:  # inverted contrast inside the body; air stays dark
        top = max(m for m, _ in table.values())
        table = {k: ((m, t) if k in _DARK else (top - m, t)) for k, (m, t) in table.items()}
        kind += "-inverted"
    return kind, table
