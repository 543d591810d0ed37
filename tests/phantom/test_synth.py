"""Domain-randomised phantom: varied contrast and geometry, exact ground truth, reproducible cohorts."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from livercad.errors import ConfigError
from livercad.phantom import LIVER_LABELS, ORGANS
from livercad.phantom.anatomy import sample_patient
from livercad.phantom.paint import liver_sdf
from livercad.phantom.synth import generate_randomised_cohort, random_case, random_geometry
from livercad.phantom.tables import CT_PHASE_TABLES, random_ct_table, random_mr_table


def test_cases_are_reproducible_and_the_mask_is_the_painted_liver():
    a, b = random_case("a", seed=5, modality="ct"), random_case("a", seed=5, modality="ct")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.mask, np.isin(a.labels, LIVER_LABELS).astype(np.uint8)) and a.mask.any()


def test_geometry_varies_shape_spacing_and_coverage_and_always_shows_liver():
    shapes, dz, coverage = set(), [], []
    for seed in range(12):
        case = random_case(f"g{seed}", seed=seed, modality="ct" if seed % 2 else "mr")
        shapes.add(case.image.shape)
        dz.append(float(case.meta["spacing_z"]))
        coverage.append(float(case.mask.any(axis=(0, 1)).mean()))
        assert case.mask.any()
    assert len(shapes) == 12 and any(s[0] != s[1] for s in shapes)
    assert min(dz) < 3.0 < max(dz) and min(coverage) < 0.5 < max(coverage)


def test_geometry_keeps_the_anatomy_inside_its_limits():
    rng = np.random.default_rng(0)
    for _ in range(20):
        shape, affine = random_geometry(sample_patient(rng), rng)
        z = affine[2, 3] + affine[2, 2] * np.array([0, shape[2] - 1])
        assert 96 <= shape[0] <= 160 and shape[1] <= shape[0] and z[0] >= -251 and z[1] <= 201


def test_ct_contrast_covers_phases_and_fatty_livers():
    rng = np.random.default_rng(1)
    draws = [random_ct_table(rng) for _ in range(200)]
    assert {phase for phase, _ in draws} == set(CT_PHASE_TABLES)
    livers = np.array([t["liver"][0] for _, t in draws])
    assert livers.min() < 20 and livers.max() > 100  # fatty livers to enhanced parenchyma


def test_mr_contrast_includes_t1_t2_random_and_inverted_with_dark_air():
    rng = np.random.default_rng(2)
    draws = [random_mr_table(rng) for _ in range(300)]
    kinds = {k.replace("-inverted", "") for k, _ in draws}
    assert kinds == {"t1", "t1-post", "t2", "random"} and any(k.endswith("-inverted") for k, _ in draws)
    liver_vs_spleen = [t["liver"][0] > t["spleen"][0] for _, t in draws]
    assert 0.2 < np.mean(liver_vs_spleen) < 0.8  # the liver is not always the brighter one
    dark_air = np.mean([t["background"][0] == 0 for _, t in draws])
    assert 0.8 < dark_air < 1.0  # air is dark except in a share of the fully random contrasts


def test_ct_has_padding_values_and_mr_is_non_negative():
    ct = [random_case(f"c{s}", seed=s, modality="ct") for s in range(12)]
    assert any(c.image.min() <= -2047 for c in ct)  # -2048 / -3024 padding outside the reconstruction circle
    liver_hu = [np.median(c.image[c.mask > 0]) for c in ct]
    assert max(liver_hu) - min(liver_hu) > 20
    mr = random_case("m", seed=3, modality="mr")
    assert mr.image.min() >= 0 and (mr.labels == ORGANS["spleen"]).any() | (mr.labels == ORGANS["kidney_cortex"]).any()


def test_randomised_cohort_alternates_modalities_and_marks_the_domain(tmp_path):
    path = generate_randomised_cohort(tmp_path, n=3, seed=1)
    rows = list(csv.DictReader(path.open()))
    assert [r["modality"] for r in rows] == ["ct", "mr", "ct"] and {r["domain"] for r in rows} == {"phantom"}
    assert all((tmp_path / r["image"]).is_file() and (tmp_path / r["mask"]).is_file() for r in rows)
    with pytest.raises(ConfigError, match="ct and/or mr"):
        generate_randomised_cohort(tmp_path, n=1, modalities=("us",))


def test_the_randomised_pelvis_has_bladder_and_iliac_bone_and_the_classic_phantom_none():
    from livercad.phantom import make_case
    from livercad.phantom.paint import paint_labels
    from livercad.phantom.shapes import GridSampler

    rng = np.random.default_rng(4)
    patient = sample_patient(rng, variants=np.random.default_rng(5))
    affine = np.diag([4.0, 4.0, 5.0, 1.0])
    affine[:3, 3] = [-190.0, -150.0, -290.0]
    labels = paint_labels(GridSampler((96, 76, 14), affine), patient)
    assert (labels == ORGANS["bladder"]).sum() > 100 and (labels == ORGANS["bone_marrow"]).sum() > 100
    classic = make_case("c", seed=1, shape=(48, 48, 16))
    assert not (classic.labels == ORGANS["bladder"]).any() and sample_patient(rng).pelvis is None


def test_randomised_bowel_has_collapsed_and_pelvic_loops_and_the_classic_phantom_none():
    from livercad.phantom.paint import paint_labels
    from livercad.phantom.shapes import GridSampler

    patient = sample_patient(np.random.default_rng(4), variants=np.random.default_rng(5), bowel_variants=True)
    assert patient.collapsed_bowel and min(t.a[2] for t in patient.small_bowel + patient.collapsed_bowel) < -220
    affine = np.diag([4.0, 4.0, 6.0, 1.0])
    affine[:3, 3] = [-190.0, -150.0, -220.0]
    labels = paint_labels(GridSampler((96, 76, 20), affine), patient)
    # collapsed loops are solid bowel wall: far more wall than the 3-mm rims of the fluid loops alone
    assert (labels == ORGANS["bowel_wall"]).sum() > (labels == ORGANS["bowel_fluid"]).sum() / 4
    assert sample_patient(np.random.default_rng(4)).collapsed_bowel == ()
    assert sample_patient(np.random.default_rng(4), variants=np.random.default_rng(5)).collapsed_bowel == ()


def test_ct_bowel_content_and_random_soft_tissue_contrast():
    rng = np.random.default_rng(2)
    draws = [random_ct_table(rng, extended=True) for _ in range(300)]
    fluid = np.array([t["bowel_fluid"][0] for _, t in draws])
    assert fluid.min() < 30 and fluid.max() > 150  # water to positive oral contrast
    random = [t for phase, t in draws if phase == "random"]
    assert 20 < len(random) < 80
    livers = np.array([t["liver"][0] for t in random])
    assert livers.min() < 40 and livers.max() > 180  # the liver is not recognisable by its grey level
    assert all(t["visceral_fat"][0] < -50 and t["lung"][0] < -500 for t in random)  # the physical context stays


def test_generator_version_2_adds_bowel_on_the_grid_version_1_draws():
    v1, v2 = (random_case("v", seed=11, modality="ct", version=v) for v in (1, 2))
    assert v1.image.shape == v2.image.shape and not np.array_equal(v1.labels, v2.labels)  # same grid, more bowel
    assert (v2.labels == ORGANS["bowel_wall"]).sum() > (v1.labels == ORGANS["bowel_wall"]).sum()
    with pytest.raises(ConfigError, match="version must be one of"):
        random_case("v", seed=11, version=4)


def _lowest_left_liver_z(patient) -> float:
    """Lowest z (mm) at which the liver reaches 15 mm or more left of the midline (x <= -15)."""
    x, y, z = np.meshgrid(np.arange(-120.0, -14.0, 4.0), np.arange(-150.0, 150.0, 4.0), np.arange(-200.0, 160.0, 4.0),
                          indexing="ij")
    inside = liver_sdf(x.astype(np.float32), y.astype(np.float32), z.astype(np.float32), patient) < 0
    zs = z[inside]
    return float(zs.min()) if zs.size else np.inf


def test_generator_version_3_lets_the_left_lobe_reach_down_and_changes_nothing_else():
    lows = {False: [], True: []}
    for seed in range(8):
        plain = sample_patient(np.random.default_rng(seed), variants=np.random.default_rng(seed + 100))
        lobed = sample_patient(np.random.default_rng(seed), variants=np.random.default_rng(seed + 100),
                               lobes=np.random.default_rng(seed + 200))
        same = [(lobed.liver_parts[i], plain.liver_parts[i]) for i in (0, 2)] + [(lobed.spleen, plain.spleen)]
        same += list(zip(lobed.kidneys, plain.kidneys, strict=True))
        assert all(np.array_equal(a.center, b.center) and np.array_equal(a.radii, b.radii) for a, b in same)
        assert all(np.array_equal(a.a, b.a) for a, b in zip(lobed.colon, plain.colon, strict=True))
        lows[False].append(_lowest_left_liver_z(plain))
        lows[True].append(_lowest_left_liver_z(lobed))
    assert np.mean(lows[True]) < np.mean(lows[False]) - 10  # the left lobe crosses the midline further down
    v1, v3 = (random_case("v", seed=11, modality="ct", version=v) for v in (1, 3))
    assert (v3.labels == ORGANS["liver"]).any() and not np.array_equal(v1.labels, v3.labels)
