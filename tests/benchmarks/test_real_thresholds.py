"""real_thresholds on a random CT segmenter and a tiny fake realdata folder: at the model's own threshold the
sweep gives the Dice that prediction gives; refused and skipped cases say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livercad.io.nifti import load_mask, load_volume
from livercad.runtime.checkpoint import save_checkpoint
from livercad.segment.infer import Segmenter, segment_volume
from tests.benchmarks.test_accept_real import BENCHMARKS, _realdata


def test_sweep_matches_prediction_at_the_model_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accept_real
    import real_thresholds

    monkeypatch.setattr(accept_real, "PHANTOM_SHAPE", (48, 48, 16))  # phantom_test_case reads it there
    seg = Segmenter.random(image_size=32, encoder="resnet18")
    save_checkpoint(tmp_path / "bundle" / "segmenter.pt", seg.model.state_dict(), seg.meta)
    _realdata(tmp_path / "realdata")
    out = real_thresholds.main(["--model", str(tmp_path / "bundle"), "--realdata", str(tmp_path / "realdata"),
                                "--thresholds", "0.2", "0.5", "--phantom", "1", "--no-save"])
    crop = out["real"]["ct_crop"]
    assert set(crop) == {"0.2", "0.5"} and all(0.0 <= v["dice"] <= 1.0 for v in crop.values())
    vol = load_volume(tmp_path / "realdata" / "ct_abdomen_3mm_crop.nii.gz")
    ref = load_mask(tmp_path / "realdata" / "ct_abdomen_3mm_crop_totalseg.nii.gz", vol, liver_labels=[5])
    loaded = Segmenter.load(tmp_path / "bundle" / "segmenter.pt", precision="fp32", backend="torch")
    pred = segment_volume(loaded, vol, modality="ct").segmentation.mask > 0
    dice = 2 * float((pred & ref).sum()) / max(float(pred.sum() + ref.sum()), 1.0)
    assert crop["0.5"]["dice"] == pytest.approx(dice, abs=1e-4)
    assert out["real"]["ct"]["status"] == "skipped" and out["real"]["mr"]["status"] == "refused"
    assert set(out["phantom"]) == {"ct_0"} and set(out["phantom"]["ct_0"]) == {"0.2", "0.5"}
    assert out["postprocess"]["waist_cut"] is True and np.isfinite(out["phantom"]["ct_0"]["0.5"]["dice"])
