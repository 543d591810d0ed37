"""Tests of the synthetic liver phantom: determinism, files, geometry, anatomy and disease cues."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from livercad.errors import ConfigError, InputError
from livercad.phantom import (
    LIVER_LABELS,
    ORGANS,
    PhantomCase,
    generate_cohort,
    make_case,
    severity_ceiling_auc,
)

SMALL = (64, 64, 24)


def _interior(labels: np.ndarray, name: str) -> np.ndarray:
    """Voxels of one tissue at least one voxel (in-plane) away from its border (no partial volume)."""
    return ndimage.binary_erosion(labels == ORGANS[name], structure=np.ones((3, 3, 1), bool))


def _mean(case: PhantomCase, name: str) -> float:
    return float(case.image[_interior(case.labels, name)].mean())


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def shortcut_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-case shortcut cohort with tiny volumes (its severities are drawn like any cohort's)."""
    return generate_cohort(tmp_path_factory.mktemp("short"), n=60, shape=(12, 12, 8), shortcut=True, seed=3,
                           orientations="canonical")


def test_same_seed_same_arrays_other_seed_differs() -> None:
    a, b = (make_case("c", label="cirrhosis", severity=0.5, seed=4, shape=SMALL) for _ in range(2))
    c = make_case("c", label="cirrhosis", severity=0.5, seed=5, shape=SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.affine, b.affine) and a.meta == b.meta
    assert not np.array_equal(a.mask, c.mask) and not np.allclose(a.image, c.image)


def test_cohort_files_are_byte_identical_and_consistent(tmp_path: Path) -> None:
    kwargs = {"n": 4, "shape": (32, 32, 12), "seed": 7, "modality": "ct"}
    first, second = generate_cohort(tmp_path / "a", **kwargs), generate_cohort(tmp_path / "b", **kwargs)
    assert first.read_bytes() == second.read_bytes()
    rows = _read_rows(first)
    assert [r["patient_id"] for r in rows] == ["P0000", "P0001", "P0002", "P0003"]
    assert all(r["split"] == "" for r in rows) and {r["label"] for r in rows} == {"normal", "steatosis",
                                                                                     "cirrhosis"}
    for row in rows:
        for column in ("image", "mask"):
            assert (tmp_path / "a" / row[column]).read_bytes() == (tmp_path / "b" / row[column]).read_bytes()
        image, mask = nib.load(tmp_path / "a" / row["image"]), nib.load(tmp_path / "a" / row["mask"])
        assert image.get_data_dtype() == np.int16 and mask.get_data_dtype() == np.uint8
        assert image.shape == mask.shape and np.allclose(image.affine, mask.affine)
        assert np.allclose(image.header.get_zooms(), [float(row[f"spacing_{a}"]) for a in "xyz"], atol=1e-3)
        assert 0 < np.asarray(mask.dataobj).sum() < mask.shape[0] * mask.shape[1] * mask.shape[2]


def test_liver_covers_most_but_not_all_slices_and_has_a_plausible_volume() -> None:
    for seed in range(3):
        case = make_case("c", seed=seed, orientation="RAS")  # default 128 x 128 x 48 geometry
        per_slice = case.mask.any(axis=(0, 1))
        assert not per_slice[0] and not per_slice[-1]  # slices above and below the liver
        assert 0.5 <= per_slice.mean() <= 0.8
        litres = case.mask.sum() * abs(np.linalg.det(case.affine[:3, :3])) / 1e6
        assert 1.0 <= litres <= 3.0
        assert 2.5 <= case.meta["spacing_x"] <= 3.5 and 2.5 <= case.meta["spacing_z"] <= 6.0


def test_ct_steatosis_liver_below_spleen_normal_above() -> None:
    """Non-contrast CT, the phase steatosis is graded in: a normal liver is brighter than the spleen."""
    for seed in range(3):
        normal = make_case("n", label="normal", severity=0.0, seed=seed, shape=SMALL, ct_phase="non-contrast")
        fatty = make_case("s", label="steatosis", severity=0.6, seed=seed, shape=SMALL, ct_phase="non-contrast")
        assert normal.meta["ct_phase"] == "non-contrast"
        assert _mean(normal, "liver") > _mean(normal, "spleen") + 3
        assert _mean(fatty, "liver") < _mean(fatty, "spleen") - 10
        assert _mean(normal, "liver") - _mean(fatty, "liver") == pytest.approx(30, abs=6)  # 50 HU * 0.6
        assert 35 <= _mean(normal, "liver") <= 70 and _mean(normal, "visceral_fat") < -60
        assert abs(_mean(normal, "heart") - _mean(normal, "liver")) < 30  # unenhanced blood


def test_ct_portal_venous_phase_is_the_default() -> None:
    """Portal-venous phase: parenchyma enhances with the vessels, muscle stays ~60 HU, fat lowers the liver."""
    for seed in range(2):
        normal = make_case("n", label="normal", severity=0.0, seed=seed, shape=SMALL)
        fatty = make_case("s", label="steatosis", severity=0.6, seed=seed, shape=SMALL)
        assert normal.meta["ct_phase"] == "portal-venous"
        liver, spleen, muscle = (_mean(normal, n) for n in ("liver", "spleen", "muscle"))
        assert 90 <= liver <= 120 and abs(spleen - liver) < 20 and liver > muscle + 30
        assert _mean(normal, "heart") > liver + 20  # enhanced blood pool
        assert _mean(normal, "liver") - _mean(fatty, "liver") == pytest.approx(30, abs=6)
        assert _mean(fatty, "liver") < _mean(fatty, "spleen") - 20
    with pytest.raises(ConfigError, match="ct_phase"):
        make_case("x", shape=SMALL, ct_phase="arterial")


def test_cirrhosis_cues_inside_and_outside_the_liver() -> None:
    def border(mask: np.ndarray) -> int:
        return int((mask & ~ndimage.binary_erosion(mask)).sum())

    def roughness(mask: np.ndarray) -> float:  # surface of the mask relative to its smoothed self
        return border(mask) / border(ndimage.gaussian_filter(mask.astype(float), 2.0) > 0.5)

    stats = {"normal": [], "cirrhosis": []}
    for seed in range(4):
        for label, severity in (("normal", 0.0), ("cirrhosis", 0.85)):
            case = make_case("c", label=label, severity=severity, seed=seed, shape=(128, 128, 24))
            stats[label].append(((case.labels == ORGANS["spleen"]).sum(), (case.labels == ORGANS["ascites"]).sum(),
                                 roughness(case.mask > 0), case.image[_interior(case.labels, "liver")].std()))
    normal, cirrhosis = np.array(stats["normal"], float), np.array(stats["cirrhosis"], float)
    assert np.all(normal[:, 1] == 0) and np.all(cirrhosis[:, 1] > 100)  # ascites
    assert cirrhosis[:, 0].mean() > 1.8 * normal[:, 0].mean()  # splenomegaly
    assert cirrhosis[:, 2].mean() > normal[:, 2].mean() + 0.05  # nodular surface
    assert cirrhosis[:, 3].mean() > 1.2 * normal[:, 3].mean()  # heterogeneous parenchyma


def test_mr_is_t2_like_non_negative_with_a_bias_field() -> None:
    case = make_case("m", modality="mr-t2", seed=2, shape=SMALL)
    assert case.image.min() >= 0
    fluid, fat, spleen, liver = (_mean(case, n) for n in ("bowel_fluid", "visceral_fat", "spleen", "liver"))
    assert fluid > spleen > liver and fat > liver and _mean(case, "muscle") < liver * 1.2
    fat_mask = case.labels == ORGANS["subcutaneous_fat"]
    nx, ny = case.image.shape[0] // 2, case.image.shape[1] // 2
    quadrants = [case.image[sx, sy][fat_mask[sx, sy]].mean()
                 for sx in (slice(0, nx), slice(nx, None)) for sy in (slice(0, ny), slice(ny, None))]
    assert max(quadrants) / min(quadrants) > 1.1  # the same tissue varies smoothly across the field


def test_us_frame_is_2d_with_a_sector(tmp_path: Path) -> None:
    case = make_case("u", modality="us", seed=1, shape=(64, 64, 1), label="steatosis", severity=0.5)
    frame = case.image[..., 0]
    assert case.image.shape == (64, 64, 1) and case.mask.shape == (64, 64, 1)
    assert frame[0, 0] == 0 and frame[0, -1] == 0 and frame[-1, 0] == 0  # corners lie outside the fan
    assert frame[: 8, 28:36].max() > 0 and (frame > 0).mean() > 0.3
    assert case.mask.sum() > 200 and (frame[case.mask[..., 0] > 0] > 0).mean() > 0.95
    manifest = generate_cohort(tmp_path, n=2, modality="us", shape=(48, 40, 1), seed=0)
    image = nib.load(tmp_path / _read_rows(manifest)[0]["image"])
    assert image.shape == (48, 40) and image.get_data_dtype() == np.float32


@pytest.mark.parametrize("code", ["LPS", "LAS", "LPI", "PIR"])
def test_orientations_store_the_same_anatomy(code: str) -> None:
    ras = make_case("o", seed=6, shape=(32, 28, 12), orientation="RAS")
    other = make_case("o", seed=6, shape=(32, 28, 12), orientation=code)
    assert nib.aff2axcodes(other.affine) == tuple(code)
    for field in ("mask", "image"):
        back = nib.as_closest_canonical(nib.Nifti1Image(getattr(other, field), other.affine))
        assert np.array_equal(np.asarray(back.dataobj), getattr(ras, field))
        assert np.allclose(back.affine, ras.affine)


def test_oblique_case_keeps_the_liver_volume() -> None:
    ras = make_case("o", seed=2, shape=(64, 64, 24), orientation="RAS")
    oblique = make_case("o", seed=2, shape=(64, 64, 24), orientation="oblique")
    rotation = oblique.affine[:3, :3] / np.linalg.norm(oblique.affine[:3, :3], axis=0)
    assert 2.0 < np.degrees(np.arccos(np.clip(np.diag(rotation), -1, 1))).max() < 10.0
    assert int(oblique.mask.sum()) == pytest.approx(int(ras.mask.sum()), rel=0.05)


def test_severity_ceiling_is_high_but_not_perfect(shortcut_cohort: Path) -> None:
    for disease in ("steatosis", "cirrhosis"):
        assert 0.85 < severity_ceiling_auc(shortcut_cohort, disease) < 0.995
    rows = [{"label": "normal", "severity": s} for s in (0.1, 0.3)] + [
        {"label": "cirrhosis", "severity": s} for s in (0.2, 0.5)]
    assert severity_ceiling_auc(rows, "cirrhosis") == 0.75  # pairs won: (0.2>0.1), (0.5>0.1), (0.5>0.3)
    with pytest.raises(InputError):
        severity_ceiling_auc(rows[:2], "cirrhosis")


def test_shortcut_artifact_follows_the_label_in_train_only(shortcut_cohort: Path) -> None:
    rows = _read_rows(shortcut_cohort)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert sum(r["split"] == "train" for r in rows) == 36 and sum(r["split"] == "test" for r in rows) == 12

    def rate(split: str, diseased: bool) -> float:
        group = [r for r in rows if r["split"] == split and (r["label"] != "normal") == diseased]
        return float(np.mean([float(r["site_artifact"]) > 0 for r in group]))

    assert rate("train", True) >= 0.85 and rate("train", False) <= 0.15  # 90 % vs 10 %
    assert rate("val", True) >= 0.75 and rate("val", False) <= 0.25
    assert abs(rate("test", True) - rate("test", False)) <= 0.15  # 50 % in both classes
    assert all((r["site"] == "B") == (float(r["site_artifact"]) > 0) for r in rows)


def test_site_artifact_lies_outside_the_liver() -> None:
    clean = make_case("a", seed=1, shape=SMALL, site="B")
    marked = make_case("a", seed=1, shape=SMALL, site="B", site_artifact_strength=1.0)
    diff = marked.image - clean.image
    liver = ndimage.binary_dilation(np.isin(clean.labels, LIVER_LABELS), iterations=2)
    assert np.abs(diff[liver]).max() < 1.0 and diff.max() > 200
    assert marked.meta["site_artifact"] == 1.0 and marked.meta["site_scale"] != 1.0


def test_bad_arguments_raise_config_errors(tmp_path: Path) -> None:
    for kwargs in ({"modality": "pet"}, {"label": "tumour"}, {"severity": 1.5}, {"orientation": "XYZ"},
                   {"site": "Z"}):
        with pytest.raises(ConfigError):
            make_case("x", shape=SMALL, **kwargs)
    with pytest.raises(ConfigError):
        generate_cohort(tmp_path, n=2, classes=("normal", "fibrosis"))
