"""Tests of livercad.io.convert on tiny fake MSD / nnU-Net / LiTS layouts."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from livercad.errors import ConfigError, InputError
from livercad.io.convert import (
    convert_dataset,
    detect_layout,
    from_lits,
    from_msd,
    from_nnunet,
    liver_label_values,
)
from livercad.io.manifest import read_manifest
from livercad.io.manifest_check import parse_liver_labels
from livercad.io.nifti import load_mask, load_volume

AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])
LABELS = np.zeros((5, 4, 3), np.uint8)
LABELS[1:3, 1:3, 1] = 1  # liver
LABELS[2, 2, 2] = 2      # tumour
LABELS[4, 0, 0] = 3      # something else (e.g. spleen)


def _nifti(path: Path, labels: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = LABELS if labels else np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def _json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


@pytest.fixture()
def msd(tmp_path: Path) -> Path:
    root = tmp_path / "Task03_Liver"
    for i in (0, 1):
        _nifti(root / f"imagesTr/liver_{i}.nii.gz")
        _nifti(root / f"labelsTr/liver_{i}.nii.gz", labels=True)
    _nifti(root / "imagesTs/liver_9.nii.gz")
    (root / "imagesTr/._liver_0.nii.gz").write_bytes(b"macOS junk")
    _json(root / "dataset.json", {
        "name": "Liver", "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "training": [{"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"}
                     for i in (0, 1)],
        "test": ["./imagesTs/liver_9.nii.gz"]})
    return root


@pytest.fixture()
def nnunet(tmp_path: Path) -> Path:
    root = tmp_path / "Dataset003_Liver"
    for case in ("liver_000", "liver_001"):
        _nifti(root / f"imagesTr/{case}_0000.nii.gz")
        _nifti(root / f"imagesTr/{case}_0001.nii.gz")  # a second channel, not used by default
        _nifti(root / f"labelsTr/{case}.nii.gz", labels=True)
    _nifti(root / "imagesTs/liver_100_0000.nii.gz")
    _json(root / "dataset.json", {"channel_names": {"0": "CT", "1": "CT2"}, "numTraining": 2,
                                  "labels": {"background": 0, "Liver": 1, "tumor": 2, "spleen": 3},
                                  "file_ending": ".nii.gz"})
    return root


@pytest.fixture()
def lits(tmp_path: Path) -> Path:
    root = tmp_path / "LiTS"
    _nifti(root / "Training Batch 1/volume-0.nii")
    _nifti(root / "Training Batch 1/segmentation-0.nii", labels=True)
    _nifti(root / "Training Batch 2/volume-10.nii.gz")
    _nifti(root / "Training Batch 2/segmentation-10.nii.gz", labels=True)
    _nifti(root / "Training Batch 2/volume-2.nii.gz")
    _nifti(root / "Test/test-volume-3.nii")
    return root


def test_msd_rows(msd: Path) -> None:
    rows = from_msd(msd)
    assert [(r.case_id, r.mask is not None) for r in rows] == [("liver_0", True), ("liver_1", True),
                                                               ("liver_9", False)]
    assert rows[0].image == msd / "imagesTr/liver_0.nii.gz" and rows[0].mask == msd / "labelsTr/liver_0.nii.gz"
    assert all(r.patient_id == r.case_id and r.split is None and r.label is None for r in rows)
    assert {r.extra["liver_labels"] for r in rows} == {"1,2"}


def test_msd_missing_files_listed(msd: Path) -> None:
    (msd / "labelsTr/liver_1.nii.gz").unlink()
    (msd / "imagesTs/liver_9.nii.gz").unlink()
    with pytest.raises(InputError) as info:
        from_msd(msd)
    text = str(info.value)
    assert text.startswith(f"{msd / 'dataset.json'}: 2 problem(s)")
    assert "training[1]: mask file not found" in text and "test[0]: image file not found" in text


def test_msd_bad_json(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"dataset\.json: invalid JSON: .* line 1"):
        from_msd(tmp_path)
    with pytest.raises(InputError, match="dataset.json not found"):
        from_msd(tmp_path / "nowhere")


def test_nnunet_rows(nnunet: Path) -> None:
    rows = from_nnunet(nnunet)
    assert [r.case_id for r in rows] == ["liver_000", "liver_001", "liver_100"]
    assert rows[1].image.name == "liver_001_0000.nii.gz" and rows[1].mask == nnunet / "labelsTr/liver_001.nii.gz"
    assert rows[2].mask is None
    assert {r.extra["liver_labels"] for r in rows} == {"1,2"}  # liver + tumour, not spleen
    assert from_nnunet(nnunet, channel=1)[0].image.name == "liver_000_0001.nii.gz"
    assert from_nnunet(nnunet, liver_names=("spleen",))[0].extra["liver_labels"] == "3"
    assert from_nnunet(nnunet, liver_labels=[1])[0].extra["liver_labels"] == "1"


def test_nnunet_errors(nnunet: Path) -> None:
    (nnunet / "labelsTr/liver_001.nii.gz").unlink()
    with pytest.raises(InputError, match=r"imagesTr/liver_001_0000\.nii\.gz: mask file not found"):
        from_nnunet(nnunet)
    meta = json.loads((nnunet / "dataset.json").read_text())
    _json(nnunet / "dataset.json", {**meta, "file_ending": ".mha"})
    with pytest.raises(InputError, match="file_ending '.mha' is not supported"):
        from_nnunet(nnunet)


@pytest.mark.parametrize("labels, expected", [
    ({"0": "background", "1": "liver", "2": "cancer"}, "1,2"),
    ({"background": 0, "liver": [1, 2], "tumour": 2}, "1,2"),
    ({"background": 0, "Liver lesion": 4, "kidney": 5}, "4"),
    ({"background": 0, "organ": 1, "other": 2}, "1,2"),
    ({}, ""),
])
def test_liver_label_values(labels: dict, expected: str) -> None:
    assert liver_label_values(labels) == expected


def test_lits_rows_numeric_order_and_labels(lits: Path) -> None:
    rows = from_lits(lits)
    assert [r.case_id for r in rows] == ["volume-0", "volume-2", "volume-10", "test-volume-3"]
    masks = {r.case_id: r.mask for r in rows}
    assert masks["volume-10"] == lits / "Training Batch 2/segmentation-10.nii.gz"
    assert masks["volume-2"] is None and masks["test-volume-3"] is None
    assert {r.extra["liver_labels"] for r in rows} == {"1,2"}


def test_lits_problems(lits: Path) -> None:
    _nifti(lits / "extra/segmentation-7.nii", labels=True)
    _nifti(lits / "dup/volume-0.nii.gz")
    with pytest.raises(InputError) as info:
        from_lits(lits)
    text = str(info.value)
    assert "segmentation-7.nii has no matching volume-7" in text and "volume-0 also found as" in text
    (lits / "empty").mkdir()
    with pytest.raises(InputError, match="no cases found in the lits layout"):
        from_lits(lits / "empty")
    with pytest.raises(InputError, match="folder not found"):
        from_lits(lits / "nowhere")


def test_convert_dataset_end_to_end(lits: Path, msd: Path, nnunet: Path, tmp_path: Path) -> None:
    assert [detect_layout(p) for p in (msd, nnunet, lits)] == ["msd", "nnunet", "lits"]
    out = tmp_path / "manifests" / "lits.csv"
    rows = convert_dataset(lits, out)
    back = read_manifest(out)
    assert [(r.case_id, r.image, r.mask) for r in back] == [(r.case_id, r.image, r.mask) for r in rows]
    row = back[0]
    vol = load_volume(row.image)
    mask = load_mask(row.mask, vol, liver_labels=parse_liver_labels(row.extra["liver_labels"]))
    np.testing.assert_array_equal(mask, np.isin(LABELS, [1, 2]))
    assert convert_dataset(msd, tmp_path / "msd.csv", "MSD", liver_labels=[1])[0].extra["liver_labels"] == "1"
    with pytest.raises(ConfigError, match="unknown dataset layout 'dicom'"):
        convert_dataset(msd, tmp_path / "x.csv", "dicom")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="cannot tell the dataset layout"):
        convert_dataset(tmp_path / "empty", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
