"""Other tools' masks by structure name: TotalSegmentator layouts, multi-label files with label maps, geometry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from livercad.errors import ConfigError, InputError
from livercad.io.external_masks import external_masks, label_map
from livercad.io.nifti import load_volume

# ../shared/realdata beside the checkout, or the workplace's copy (a clone elsewhere, e.g. CI's)
REAL = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared" / "realdata",
                         Path("/work/shared/realdata")) if p.is_dir()), Path("/work/shared/realdata"))


def _real(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip("real scans not available")
    return path


def test_totalsegmentator_outputs_of_the_real_scans(tmp_path: Path) -> None:
    """Both TotalSegmentator forms of the real CT crop, and the total_mr file, give the binary reference liver."""
    ct = load_volume(_real("ct_abdomen_3mm_crop.nii.gz"))
    shutil.copytree(REAL / "ct_abdomen_3mm_crop_totalseg_fast", tmp_path / "folders" / "crop")
    per_structure = external_masks(tmp_path / "folders").load("crop", ct)
    (tmp_path / "ml").mkdir()
    shutil.copy(REAL / "ct_abdomen_3mm_crop_totalseg.nii.gz", tmp_path / "ml" / "crop.nii.gz")
    found = external_masks(tmp_path / "ml", labels="total").structures("crop", ct)  # one file, read once
    multi, spleen = found["liver"], found["spleen"]
    labels = np.asarray(nib.load(REAL / "ct_abdomen_3mm_crop_totalseg.nii.gz").dataobj)
    np.testing.assert_array_equal(multi, labels == 5)
    assert spleen is not None and int(spleen.sum()) == int((labels == 1).sum()) > 0
    # the --fast per-structure liver and the total multi-label liver are two runs of the tool: close, not equal
    assert 2 * (per_structure & multi).sum() / (per_structure.sum() + multi.sum()) > 0.9
    mr = load_volume(_real("mr_abdomen_3mm.nii.gz"))
    mr_masks = external_masks(files={"mr": REAL / "mr_abdomen_3mm_totalseg.nii.gz"}, labels="total_mr")
    ref = np.asarray(nib.load(REAL / "mr_abdomen_3mm_liver.nii.gz").dataobj) > 0
    np.testing.assert_array_equal(mr_masks.load("mr", mr), ref)


def _image(path: Path, shape=(6, 5, 4), affine=None) -> Path:
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4) if affine is None else affine), path)
    return path


def test_dataset_json_label_maps_both_spellings(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": [2]}}))
    (tmp_path / "b.json").write_text(json.dumps({"labels": {"0": "background", "1": "Spleen", "2": "liver"}}))
    assert label_map(tmp_path / "a.json") == {"liver": 1, "spleen": 2}
    assert label_map(tmp_path / "b.json") == {"spleen": 1, "liver": 2}
    (tmp_path / "c.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(InputError, match="c.json.*labels"):
        label_map(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="neither a built-in map"):
        label_map("total_pet")


def test_missing_unnamed_and_misplaced_masks_are_one_line_errors(tmp_path: Path) -> None:
    vol = load_volume(_image(tmp_path / "img.nii.gz"))
    (tmp_path / "out").mkdir()
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 7
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "out" / "c1.nii.gz")
    with pytest.raises(InputError, match="needs a label map"):
        external_masks(tmp_path / "out").load("c1", vol)
    assert int(external_masks(tmp_path / "out", labels="total").load("c1", vol).sum()) == 0
    (tmp_path / "dj.json").write_text(json.dumps({"labels": {"liver": 7}}))
    assert int(external_masks(tmp_path / "out", labels=tmp_path / "dj.json").load("c1", vol).sum()) == 8
    with pytest.raises(InputError, match="no liver.nii.gz in the case folder"):
        external_masks(tmp_path / "out").load("c2", vol)
    with pytest.raises(InputError, match="names no 'spleen'"):
        external_masks(tmp_path / "out", labels=tmp_path / "dj.json").load("c1", vol, "spleen")
    shifted = np.eye(4)
    shifted[0, 3] = 3.0
    (tmp_path / "moved" / "c1").mkdir(parents=True)
    _image(tmp_path / "moved" / "c1" / "liver.nii.gz", affine=shifted)
    with pytest.raises(InputError, match="affine differs") as err:
        external_masks(tmp_path / "moved").load("c1", vol)
    assert "\n" not in str(err.value) and "liver.nii.gz" in str(err.value)
    with pytest.raises(InputError, match="not found"):
        external_masks(tmp_path / "nowhere")
    with pytest.raises(ConfigError):
        external_masks()
