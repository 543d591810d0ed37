"""Tests of livercad.phantom.phases: multi-phase CT cases and cohorts from one label map."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from livercad.errors import ConfigError
from livercad.phantom import ORGANS, generate_cohort, make_case
from livercad.phantom.anatomy import sample_patient
from livercad.phantom.contrast import SiteEffect, render_ct
from livercad.phantom.phases import phase_column, render_ct_phase

SHAPE = (40, 40, 10)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_phases_leave_the_cohort_unchanged_and_add_image_columns(tmp_path: Path) -> None:
    one = generate_cohort(tmp_path / "one", n=2, shape=SHAPE, seed=4)
    multi = generate_cohort(tmp_path / "multi", n=2, shape=SHAPE, seed=4, phases=("non-contrast", "arterial"))
    for sub in ("images", "masks"):
        for f in sorted((tmp_path / "one" / sub).iterdir()):
            assert f.read_bytes() == (tmp_path / "multi" / sub / f.name).read_bytes(), f.name
    rows_one, rows_multi = _rows(one), _rows(multi)
    assert list(rows_multi[0])[-2:] == ["image_noncontrast", "image_arterial"]
    for a, b in zip(rows_one, rows_multi, strict=True):
        assert {k: v for k, v in b.items() if k not in ("image_noncontrast", "image_arterial")} == a
        for column in ("image_noncontrast", "image_arterial"):
            extra, main = nib.load(multi.parent / b[column]), nib.load(multi.parent / b["image"])
            assert extra.shape == main.shape and np.array_equal(extra.affine, main.affine)


def test_each_phase_has_its_own_contrast_on_the_same_anatomy() -> None:
    case = make_case("c", shape=(48, 48, 16), seed=2, phases=("non-contrast", "arterial", "delayed"))
    inside = ndimage.binary_erosion(case.labels == ORGANS["liver"], structure=np.ones((3, 3, 1), bool))
    aorta = case.labels == ORGANS["aorta"]
    liver = {p: float(im[inside].mean()) for p, im in {**case.phases, "portal-venous": case.image}.items()}
    assert liver["non-contrast"] < liver["arterial"] < liver["delayed"] < liver["portal-venous"]  # 57, 72, 88, 105 HU
    assert case.phases["arterial"][aorta].mean() > case.image[aorta].mean() + 80  # the arterial aorta is brightest
    plain = make_case("c", shape=(48, 48, 16), seed=2)
    assert np.array_equal(plain.image, case.image) and np.array_equal(plain.mask, case.mask)


def test_a_phase_renders_as_render_ct_does_with_that_phase_s_table() -> None:
    labels = np.full((12, 12, 4), ORGANS["liver"], np.uint8)
    labels[:4] = ORGANS["spleen"]
    patient = sample_patient(np.random.default_rng(0), 0.2, 0.3)
    site, vox = SiteEffect("B", 1.06, -8.0, 1.3, 0.5), np.array([0.8, 0.8, 2.5])
    artifact = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    want = render_ct(labels, patient, np.random.default_rng(5), vox, site, artifact, "portal-venous")
    got = render_ct_phase(labels, patient, np.random.default_rng(5), vox, site, artifact, "portal-venous")
    assert np.array_equal(got, want)  # the tables of the phases render_ct knows are its own
    flat = np.zeros_like(artifact)
    arterial = render_ct_phase(labels, patient, np.random.default_rng(5), vox, site, flat, "arterial")
    assert arterial[:4].mean() - arterial[4:].mean() > 20  # arterial: the spleen enhances well above the liver


def test_bad_phases_are_config_errors(tmp_path: Path) -> None:
    for kwargs in ({"phases": ("venous",)}, {"phases": ("portal-venous",)}, {"phases": ("arterial", "arterial")},
                   {"phases": ("arterial",), "modality": "mr-t2"}):
        with pytest.raises(ConfigError, match="phases"):
            generate_cohort(tmp_path, n=1, shape=SHAPE, **kwargs)
    assert phase_column("portal-venous") == "image_portalvenous"
