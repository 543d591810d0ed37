"""accept_real on a random CT segmenter and a tiny fake realdata folder: scored, refused and skipped cases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from livercad.io.nifti import load_mask, load_volume, save_volume
from livercad.metrics.segmentation import dice
from livercad.segment.infer import Segmenter, segment_volume

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

if TYPE_CHECKING:  # the fixture's type; conftest imports this package's helpers
    from tests.benchmarks.conftest import Measuring


def _realdata(folder: Path) -> int:
    """``ct_crop`` (CT + multi-label mask, liver = 5) and ``mr`` (MR + binary mask); ``ct`` left out.

    Returns the number of label-5 voxels of the multi-label mask.
    """
    folder.mkdir()
    rng = np.random.default_rng(0)
    ct_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    ct = rng.normal(-100.0, 200.0, (40, 36, 8)).round()
    labels = np.zeros(ct.shape, np.uint8)
    labels[5:25, 5:25, 1:7] = 5
    labels[26:34, 20:30, 2:6] = 1  # spleen: not liver
    labels[30:36, 5:12, 2:6] = 2  # kidney: not liver
    save_volume(ct, ct_affine, folder / "ct_abdomen_3mm_crop.nii.gz", dtype=np.int16)
    save_volume(labels, ct_affine, folder / "ct_abdomen_3mm_crop_totalseg.nii.gz", dtype=np.uint8)
    mr_affine = np.diag([-3.0, -3.0, 3.0, 1.0])
    mr = rng.uniform(0.0, 800.0, (32, 28, 6)).round()
    mask = np.zeros(mr.shape, np.uint8)
    mask[4:20, 4:20, 1:5] = 1
    save_volume(mr, mr_affine, folder / "mr_abdomen_3mm.nii.gz", dtype=np.int16)
    save_volume(mask, mr_affine, folder / "mr_abdomen_3mm_liver.nii.gz", dtype=np.uint8)
    return int((labels == 5).sum())


def crop_dice(bundle: Path, realdata: Path, *, coarse_to_fine: bool = False) -> float:
    """Liver Dice of ``livercad``'s own segmentation of the fake CT crop (fp32, torch), against its label-5 mask."""
    vol = load_volume(realdata / "ct_abdomen_3mm_crop.nii.gz")
    ref = load_mask(realdata / "ct_abdomen_3mm_crop_totalseg.nii.gz", vol, liver_labels=[5])
    loaded = Segmenter.load(bundle / "segmenter.pt", precision="fp32", backend="torch")
    pred = segment_volume(loaded, vol, modality="ct", coarse_to_fine=coarse_to_fine).segmentation.mask > 0
    return dice(pred, ref > 0, empty="zero")


def test_real_and_phantom_cases_on_a_random_segmenter(measuring: Measuring,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import accept_real

    bundle, realdata, n_liver = measuring
    out = accept_real.main(["--model", str(bundle), "--realdata", str(realdata),
                            "--phantom", "1", "--backend", "torch", "--precision", "fp32", "--no-save"])
    assert '"benchmark": "accept_real"' in capsys.readouterr().out
    real = out["real"]
    assert real["ct"]["status"] == "skipped" and "ct_abdomen_3mm.nii.gz" in real["ct"]["reason"]
    crop = real["ct_crop"]
    assert crop["status"] == "ok" and 0.0 <= crop["dice"] <= 1.0 and crop["seconds"] >= 0
    assert crop["ref_volume_ml"] == pytest.approx(n_liver * 27 / 1000, abs=1e-3)  # label 5 only
    assert {"hd95_mm", "msd_mm", "pred_volume_ml", "volume_error_rel"} <= crop.keys()
    assert real["mr"]["status"] == "refused" and "trained on ['ct']" in real["mr"]["reason"]
    ct = out["phantom"]["ct"]
    assert ct["status"] == "ok" and len(ct["cases"]) == 1 and 0.0 <= ct["cases"][0]["dice"] <= 1.0
    assert ct["dice"]["n"] == 1 and ct["cases"][0]["seed"] >= 900_000
    assert out["phantom"]["mr-t2"]["status"] == "refused"
    assert out["model"]["sha256"] and out["model"]["modalities"] == ["ct"] and out["model"]["precision"] == "fp32"
    assert out["measured"]["real_ct_dice"] == crop["dice"] and out["measured"]["real_mr_dice"] is None
    assert out["met"]["real_ct_dice"] is (crop["dice"] >= 0.95) and out["met"]["real_mr_dice"] is None
    assert set(out["met"]) == set(out["targets"]) and out["commit"]


def test_missing_model_exits_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accept_real

    with pytest.raises(SystemExit, match="no segmenter.pt at .*nowhere"):
        accept_real.main(["--model", str(tmp_path / "nowhere"), "--no-save"])
