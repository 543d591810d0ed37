"""Synthetic abdominal imaging cohort (the "phantom"): livercad's embedded demo, test and benchmark data.

A case is a patient drawn at random (body outline with subcutaneous fat and muscle wall, ribs, lung
bases and heart above the diaphragm, a liver made of right lobe, left lobe and caudate with portal and
hepatic vein trees, gallbladder, spleen, kidneys, pancreas, aorta, IVC, portal/splenic veins, stomach,
colon and small bowel with gas, vertebrae with discs), rendered as CT (Hounsfield units), T2-weighted
MR (arbitrary units) or an ultrasound B-mode frame, with a liver mask and a tissue label map (ids in
:data:`ORGANS`). Disease is continuous: ``steatosis`` lowers CT liver attenuation by ``50 * score`` HU
(below the spleen from about 0.2), brightens the T2 liver slightly and the ultrasound parenchyma with
stronger attenuation; ``cirrhosis`` makes the liver surface nodular and the parenchyma heterogeneous,
shrinks the right lobe, enlarges the caudate and the spleen, and adds ascites from a score of 0.2.
Cues lie inside *and* outside the liver. Diseased scores follow Beta(2, 2.5) and normal (subclinical)
scores Beta(1, 12), so classes overlap: the severity ceiling ROC AUC is about 0.96.

Geometry: the in-plane field of view covers the body plus a margin (about 35-40 cm, i.e. 2.6-3.3 mm
pixels on a 128 x 128 matrix) and the slice spacing is chosen so that 58-72 % of the axial slices hold
liver (about 4-6 mm for 48 slices); volumes are stored in varied orientations (``ORIENTATIONS``: RAS,
LPS, LAS, LPI, PIR, or a grid tilted by a few degrees) with the same anatomy in world space. Optional
site effects (``SITES``) scale, offset and noise the intensities and add an artifact just outside the
body edge (never on the liver). Cohorts are written by
:func:`livercad.phantom.cohort.generate_cohort`, re-exported here.

Example:
    >>> case = make_case("demo", modality="ct", label="cirrhosis", severity=0.7, shape=(48, 48, 16))
    >>> bool((case.labels == ORGANS["ascites"]).any()), case.mask.shape == case.image.shape
    (True, True)
"""

from __future__ import annotations

from livercad.phantom.anatomy import LIVER_LABELS, ORGANS
from livercad.phantom.case import CLASSES, MODALITIES, SITES, PhantomCase, make_case
from livercad.phantom.cohort import generate_cohort, severity_ceiling_auc
from livercad.phantom.geometry import ORIENTATIONS

__all__ = ["ORGANS", "LIVER_LABELS", "CLASSES", "MODALITIES", "SITES", "ORIENTATIONS", "PhantomCase",
           "make_case", "generate_cohort", "severity_ceiling_auc"]
