"""Tests of the AMOS, FLARE22 and TotalSegmentator converters on tiny fake layouts (CHAOS: test_convert_chaos.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from livercad.errors import InputError
from livercad.io.convert import CONVERTERS, convert_dataset, detect_layout
from livercad.io.convert_public import AMOS_LABELS, from_amos, from_flare22, label_map, labels_by_name
from livercad.io.convert_totalseg import from_totalseg
from livercad.io.manifest import read_manifest
from livercad.io.manifest_check import parse_liver_labels
from livercad.io.nifti import load_mask, load_volume

AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])
LABELS = np.zeros((5, 4, 3), np.uint8)
LABELS[1:3, 1:3, 1] = 6  # AMOS liver
LABELS[0, 0, 0] = 1      # spleen in AMOS, liver in FLARE22
LABELS[4, 3, 2] = 13     # FLARE22 left kidney


def _nifti(path: Path, data: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(5, 4, 3) if data is None else data, AFFINE), path)
    return path


def _json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


@pytest.fixture()
def amos(tmp_path: Path) -> Path:
    root = tmp_path / "amos22"
    for part, case in (("Tr", "amos_0001"), ("Tr", "amos_0507"), ("Va", "amos_0008")):
        _nifti(root / f"images{part}/{case}.nii.gz")
        _nifti(root / f"labels{part}/{case}.nii.gz", LABELS)
    _nifti(root / "imagesTs/amos_0600.nii.gz")
    _nifti(root / "labelsVa/amos_0099.nii.gz", LABELS)  # a label without its image: left out
    _json(root / "dataset.json", {"name": "AMOS", "labels": {"0": "background", **{str(k): v for k, v in
                                                                                   AMOS_LABELS.items()}}})
    return root


@pytest.fixture()
def flare(tmp_path: Path) -> Path:
    root = tmp_path / "FLARE22Train"
    _nifti(root / "images/FLARE22_Tr_0001_0000.nii.gz")
    _nifti(root / "labels/FLARE22_Tr_0001.nii.gz", LABELS)
    _nifti(root / "images/FLARE22_Tr_0002_0000.nii.gz")   # unlabelled
    _nifti(root / "labels/FLARE22_Tr_0009.nii.gz", LABELS)  # no image: left out
    return root


@pytest.fixture()
def totalseg(tmp_path: Path) -> Path:
    root = tmp_path / "Totalsegmentator_dataset"
    for subject in ("s0000", "s0001", "s0002"):
        _nifti(root / subject / "ct.nii.gz")
        _nifti(root / subject / "segmentations/spleen.nii.gz", (LABELS == 1).astype(np.uint8))
        if subject != "s0002":  # s0002 lacks the liver file: left out
            _nifti(root / subject / "segmentations/liver.nii.gz", (LABELS == 6).astype(np.uint8))
    _nifti(root / "s0003/mri.nii.gz")
    _nifti(root / "s0003/segmentations/liver.nii.gz", (LABELS == 6).astype(np.uint8))
    (root / "notes").mkdir()
    (root / "meta.csv").write_text("image_id;age;gender;institute;study_type;split\n"
                                   "s0000;61;m;A;ct abdomen;train\ns0001;44;f;B;ct thorax;test\n"
                                   "s0003;50;f;C;mr;val\n", encoding="utf-8")
    return root


def test_amos_rows_splits_modality_and_labels(amos: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livercad.io.convert_public"):
        rows = from_amos(amos)
    assert [(r.case_id, r.split, r.extra["modality"], r.mask is not None) for r in rows] == [
        ("amos_0001", "train", "ct", True), ("amos_0507", "train", "mr", True), ("amos_0008", "val", "ct", True),
        ("amos_0600", "test", "mr", False)]
    assert {r.extra["liver_labels"] for r in rows} == {"6"}
    assert all(r.patient_id == r.case_id for r in rows)
    assert rows[2].mask == amos / "labelsVa/amos_0008.nii.gz"
    assert "labelsVa/amos_0099.nii.gz: no image imagesVa/amos_0099.nii.gz" in caplog.text
    assert from_amos(amos, liver_labels=[1])[0].extra["liver_labels"] == "1"


def test_amos_label_chosen_by_name_and_errors(amos: Path) -> None:
    _json(amos / "dataset.json", {"labels": {"background": 0, "Liver": 3, "spleen": 6}})  # nnU-Net style map
    assert from_amos(amos)[0].extra["liver_labels"] == "3"
    _json(amos / "dataset.json", {"labels": {"0": "background", "1": "spleen"}})
    with pytest.raises(InputError, match=r"dataset\.json: no label named liver in the label map \(0=background"):
        from_amos(amos)
    _json(amos / "dataset.json", {"labels": ["liver"]})
    with pytest.raises(InputError, match="'labels' must map label values to names"):
        from_amos(amos)
    (amos / "dataset.json").unlink()
    with pytest.raises(InputError, match="dataset.json not found"):
        from_amos(amos)


def test_amos_modality_without_case_number(amos: Path) -> None:
    _nifti(amos / "imagesTs/extra.nii.gz")
    _json(amos / "dataset.json", {"labels": {"6": "liver"}, "modality": {"0": "MRI"}})
    assert {r.case_id: r.extra["modality"] for r in from_amos(amos)}["extra"] == "mr"


def test_flare22_rows(flare: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livercad.io.convert_public"):
        rows = from_flare22(flare)
    assert [(r.case_id, r.mask is not None, r.split) for r in rows] == [("FLARE22_Tr_0001", True, None),
                                                                       ("FLARE22_Tr_0002", False, None)]
    assert rows[0].image.name == "FLARE22_Tr_0001_0000.nii.gz"
    assert {(r.extra["liver_labels"], r.extra["modality"]) for r in rows} == {("1", "ct")}
    assert "FLARE22_Tr_0009.nii.gz: no image images/FLARE22_Tr_0009_0000.nii.gz" in caplog.text
    vol = load_volume(rows[0].image)
    mask = load_mask(rows[0].mask, vol, liver_labels=parse_liver_labels(rows[0].extra["liver_labels"]))
    np.testing.assert_array_equal(mask, LABELS == 1)
    with pytest.raises(InputError, match="no images/ folder"):
        from_flare22(flare / "labels")
    _json(flare / "dataset.json", {"name": "FLARE22"})  # no labels: the built-in map
    assert from_flare22(flare)[0].extra["liver_labels"] == "1"
    _json(flare / "dataset.json", {"labels": {"0": "background", "13": "Liver"}})
    assert from_flare22(flare)[0].extra["liver_labels"] == "13"


def test_totalseg_rows_meta_and_left_out(totalseg: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livercad.io.convert_public"):
        rows = from_totalseg(totalseg)
    assert [(r.case_id, r.patient_id, r.split, r.extra["modality"], r.extra["site"]) for r in rows] == [
        ("s0000", "s0000", "train", "ct", "A"), ("s0001", "s0001", "test", "ct", "B"),
        ("s0003", "s0003", "val", "mr", "C")]
    assert rows[0].image == totalseg / "s0000/ct.nii.gz"
    assert rows[0].mask == totalseg / "s0000/segmentations/liver.nii.gz"
    assert {r.extra["liver_labels"] for r in rows} == {""}
    assert "s0002: segmentations/ holds no liver.nii.gz" in caplog.text
    assert from_totalseg(totalseg, structure="spleen")[0].mask.name == "spleen.nii.gz"


def test_totalseg_without_meta_and_malformed(totalseg: Path) -> None:
    (totalseg / "meta.csv").write_text("image_id,split\ns0000,train\n", encoding="utf-8")
    assert [r.split for r in from_totalseg(totalseg)] == ["train", None, None]
    (totalseg / "meta.csv").unlink()
    assert {r.split for r in from_totalseg(totalseg)} == {None}
    (totalseg / "meta.csv").write_text("subject;split\ns0000;train\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"meta\.csv: no image_id column \(found: subject, split\)"):
        from_totalseg(totalseg)
    (totalseg / "meta.csv").unlink()
    for subject in ("s0000", "s0001", "s0003"):
        for image in (totalseg / subject).glob("*.nii.gz"):
            image.unlink()
    with pytest.raises(InputError) as info:
        from_totalseg(totalseg)
    text = str(info.value)
    assert text.startswith(f"{totalseg}: no usable cases found in the totalseg layout: 4 problem(s)")
    assert "s0000: no ct.nii.gz or mri.nii.gz next to segmentations/" in text and len(text.splitlines()) == 1


def test_labels_by_name_and_label_map() -> None:
    assert labels_by_name({0: "background", 1: "liver", 2: "liver tumour", 3: "spleen"}, "x") == "1,2"
    assert label_map({"0": "background", "6": "liver"}, Path("d.json")) == {0: "background", 6: "liver"}
    assert label_map({"liver": 1, "flag": True}, Path("d.json")) == {1: "liver"}


def test_registry_detection_and_manifest_round_trip(amos: Path, flare: Path, totalseg: Path,
                                                    tmp_path: Path) -> None:
    assert {"chaos", "amos", "flare22", "totalseg"} <= set(CONVERTERS)
    assert [detect_layout(p) for p in (amos, flare, totalseg)] == ["amos", "flare22", "totalseg"]
    for root, layout in ((amos, "AMOS"), (flare, "auto"), (totalseg, "totalseg")):
        out = tmp_path / "manifests" / f"{root.name}.csv"
        rows = convert_dataset(root, out, layout)
        back = read_manifest(out)
        assert [(r.case_id, r.image, r.mask, r.split, r.extra) for r in back] == [
            (r.case_id, r.image, r.mask, r.split, r.extra) for r in rows]
    row = read_manifest(tmp_path / "manifests" / "amos22.csv")[0]
    mask = load_mask(row.mask, load_volume(row.image), liver_labels=parse_liver_labels(row.extra["liver_labels"]))
    np.testing.assert_array_equal(mask, LABELS == 6)
    nnunet_amos = tmp_path / "Dataset218_AMOS2022"
    _json(nnunet_amos / "dataset.json", {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 6},
                                         "file_ending": ".nii.gz"})
    assert detect_layout(nnunet_amos) == "nnunet"
