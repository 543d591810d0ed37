"""Tests of the CHAOS converter: synthetic DICOM series + PNG masks, checked voxel by voxel in world coordinates.

The expected position of every PNG pixel is computed from the DICOM definition (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing of the file with the matching instance number), independently of
livercad's reader, and compared with where the converter's NIfTI mask puts it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from livercad.io.convert import convert_dataset, detect_layout
from livercad.io.convert_chaos import from_chaos, natural_key, png_labels
from livercad.io.dicom import load_dicom_series
from livercad.io.dicom_synth import read_positions, write_series
from livercad.io.manifest import read_manifest
from livercad.io.manifest_check import parse_liver_labels
from livercad.io.nifti import load_mask

ROWS, COLS = 5, 7
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _masks(n: int, values: tuple[int, ...]) -> np.ndarray:
    """``(n, rows, cols)`` masks in instance order; asymmetric in every axis (no flip maps one onto another)."""
    masks = np.zeros((n, ROWS, COLS), np.uint8)
    for m in range(n):
        masks[m, m % ROWS, (2 * m + 1) % COLS] = values[m % len(values)]
        masks[m, 0, : m + 2] = values[0]  # a run from the top-left corner, longer on later instances
    return masks


def _write_pngs(folder: Path, masks: np.ndarray, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for m, mask in enumerate(masks):
        Image.fromarray(mask).save(folder / name.format(m))


def _series(folder: Path, n: int, seed: int | None, **geometry: object) -> list[Path]:
    frames = np.arange(n * ROWS * COLS, dtype=np.int16).reshape(n, ROWS, COLS)
    return write_series(frames, folder, pixel_spacing=(0.7, 0.9), modality="MR" if "MR" in str(folder) else "CT",
                        seed=seed, **geometry)


@pytest.fixture()
def chaos(tmp_path: Path) -> Path:
    root = tmp_path / "Train_Sets"
    # CT: instance numbers follow the write order while positions descend: the spatial order is reversed.
    _series(root / "CT/1/DICOM_anon", 4, None, slice_step=-2.5, origin=(10, -20, 30))
    _write_pngs(root / "CT/1/Ground", _masks(4, (255,)), "liver_GT_{:03d}.png")
    _series(root / "CT/5/DICOM_anon", 3, None)  # test set: no Ground
    _series(root / "CT/4/DICOM_anon", 3, None)
    _write_pngs(root / "CT/4/Ground", _masks(2, (255,)), "liver_GT_{:03d}.png")  # 2 PNGs for 3 slices
    # MR: scrambled instance numbers, oblique T1, coronal T2; bands 63/126/189/252 (+ 60 in band, 30 outside).
    t1 = {"row_dir": (1, 0.2, 0), "col_dir": (-0.2, 1, 0.1), "slice_step": 3.0}
    _series(root / "MR/2/T1DUAL/DICOM_anon/InPhase", 6, 1, **t1)
    _series(root / "MR/2/T1DUAL/DICOM_anon/OutPhase", 6, 2, **t1)
    _write_pngs(root / "MR/2/T1DUAL/Ground", _masks(6, (63, 126, 189, 252, 60, 30)), "IMG-0004-{:05d}.png")
    _series(root / "MR/2/T2SPIR/DICOM_anon", 12, 3, row_dir=(1, 0, 0), col_dir=(0, 0, -1), slice_step=-4.0)
    _write_pngs(root / "MR/2/T2SPIR/Ground", _masks(12, (63, 126)), "img{:d}.png")  # img2 before img10
    (root / "MR/2/T1DUAL/Ground/.DS_Store").write_bytes(b"junk")
    return root


def _instance_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix == ".dcm"]
    return sorted(files, key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))


def _expected_world(dicom_folder: Path, ground: Path, modality: str) -> list[tuple[np.ndarray, int]]:
    """(RAS point, label) of every labelled PNG pixel, placed by the DICOM definition (PS3.3 C.7.6.2.1.1)."""
    pngs = sorted(ground.glob("*.png"), key=natural_key)
    points = []
    for png, dicom_file in zip(pngs, _instance_files(dicom_folder), strict=True):
        ipp, (row_dir, col_dir), spacing, _ = read_positions(dicom_file)
        labels = png_labels(np.asarray(Image.open(png)), modality)
        for r, c in zip(*np.nonzero(labels), strict=True):
            lps = ipp + c * spacing[1] * row_dir + r * spacing[0] * col_dir
            points.append((LPS_TO_RAS @ lps, int(labels[r, c])))
    return points


def _assert_mask_in_world(mask_file: Path, points: list[tuple[np.ndarray, int]]) -> None:
    img = nib.load(mask_file)
    data, inverse = np.asarray(img.dataobj), np.linalg.inv(img.affine)
    for ras, label in points:
        voxel = (inverse @ np.append(ras, 1.0))[:3]
        np.testing.assert_allclose(voxel, np.round(voxel), atol=1e-3)
        assert data[tuple(np.round(voxel).astype(int))] == label, (mask_file.name, ras, label)
    assert int(np.count_nonzero(data)) == len(points)  # nothing else is labelled


def test_chaos_rows_patients_and_left_out(chaos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="livercad.io.convert_public"):
        rows = from_chaos(chaos, out)
    assert [(r.case_id, r.patient_id, r.extra["modality"], r.extra["sequence"]) for r in rows] == [
        ("chaos_ct_1", "chaos_ct_1", "ct", ""), ("chaos_ct_5", "chaos_ct_5", "ct", ""),
        ("chaos_mr_2_t1-in", "chaos_mr_2", "mr", "t1-in"), ("chaos_mr_2_t1-out", "chaos_mr_2", "mr", "t1-out"),
        ("chaos_mr_2_t2spir", "chaos_mr_2", "mr", "t2spir")]
    assert rows[0].image == chaos / "CT/1/DICOM_anon" and rows[0].mask == out / "masks/chaos_ct_1.nii.gz"
    assert rows[1].mask is None  # no Ground: test set
    assert rows[2].image == chaos / "MR/2/T1DUAL/DICOM_anon/InPhase"
    assert {r.extra["liver_labels"] for r in rows} == {"1"} and {r.split for r in rows} == {None}
    assert "chaos_ct_4:" in caplog.text and "2 PNG masks, but the DICOM series" in caplog.text
    assert from_chaos(chaos, out, liver_labels=[1, 4])[2].extra["liver_labels"] == "1,4"


@pytest.mark.parametrize("case, dicom, ground, modality, labels", [
    ("chaos_ct_1", "CT/1/DICOM_anon", "CT/1/Ground", "ct", {1}),
    ("chaos_mr_2_t1-in", "MR/2/T1DUAL/DICOM_anon/InPhase", "MR/2/T1DUAL/Ground", "mr", {1, 2, 3, 4}),
    ("chaos_mr_2_t1-out", "MR/2/T1DUAL/DICOM_anon/OutPhase", "MR/2/T1DUAL/Ground", "mr", {1, 2, 3, 4}),
    ("chaos_mr_2_t2spir", "MR/2/T2SPIR/DICOM_anon", "MR/2/T2SPIR/Ground", "mr", {1, 2}),
])
def test_chaos_mask_lands_on_the_right_dicom_voxels(chaos: Path, tmp_path: Path, case: str, dicom: str,
                                                    ground: str, modality: str, labels: set[int]) -> None:
    from_chaos(chaos, tmp_path / "out")
    points = _expected_world(chaos / dicom, chaos / ground, modality)
    assert len(points) > 6 and {label for _, label in points} == labels
    _assert_mask_in_world(tmp_path / "out" / "masks" / f"{case}.nii.gz", points)


def test_chaos_ct_mask_matches_reversed_instance_order(chaos: Path, tmp_path: Path) -> None:
    """CT/1: PNG m belongs to instance m + 1, which livercad's spatial sort puts at slice 3 - m."""
    from_chaos(chaos, tmp_path / "out")
    vol = load_dicom_series(chaos / "CT/1/DICOM_anon")
    mask = load_mask(tmp_path / "out/masks/chaos_ct_1.nii.gz", vol, liver_labels=[1])
    expected = _masks(4, (255,)) > 0
    for m in range(4):
        np.testing.assert_array_equal(mask[:, :, 3 - m], expected[m][::-1, :].T)


def test_chaos_convert_dataset_end_to_end(chaos: Path, tmp_path: Path) -> None:
    assert detect_layout(chaos) == "chaos"
    out = tmp_path / "manifests" / "chaos.csv"
    rows = convert_dataset(chaos, out)
    assert (tmp_path / "manifests/masks/chaos_mr_2_t2spir.nii.gz").is_file()
    back = read_manifest(out, check_files=False)  # images are DICOM folders
    assert [(r.case_id, r.patient_id, r.image, r.mask, r.extra) for r in back] == [
        (r.case_id, r.patient_id, r.image, r.mask, r.extra) for r in rows]
    assert out.read_text().splitlines()[1].startswith("chaos_ct_1,chaos_ct_1,")
    row = back[2]
    vol = load_dicom_series(row.image)
    mask = load_mask(row.mask, vol, liver_labels=parse_liver_labels(row.extra["liver_labels"]))
    assert mask.shape == vol.shape and 0 < int(mask.sum()) < mask.size


def test_chaos_malformed(tmp_path: Path, chaos: Path) -> None:
    from livercad.errors import InputError

    with pytest.raises(InputError, match="no CT/ or MR/ folder"):
        from_chaos(tmp_path, tmp_path / "out")
    bad = tmp_path / "bad"
    _series(bad / "CT/7/DICOM_anon", 2, None)
    _write_pngs(bad / "CT/7/Ground", np.zeros((2, ROWS + 1, COLS), np.uint8), "liver_GT_{:03d}.png")
    (bad / "MR/8").mkdir(parents=True)
    with pytest.raises(InputError) as info:
        from_chaos(bad, tmp_path / "out")
    text = str(info.value)
    assert text.startswith(f"{bad}: no usable cases found in the chaos layout: 4 problem(s)")
    assert "liver_GT_000.png: mask is 6x7 pixels, the DICOM slices are 5x7" in text
    assert "T2SPIR/DICOM_anon: DICOM folder not found" in text and len(text.splitlines()) == 1
