"""real_thresholds on a random CT segmenter and a tiny fake realdata folder: at the model's own threshold the
sweep gives the Dice that prediction gives; refused and skipped cases say so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.benchmarks.test_accept_real import crop_dice

if TYPE_CHECKING:  # the fixture's type; conftest imports this package's helpers
    from tests.benchmarks.conftest import Measuring


def test_sweep_matches_prediction_at_the_model_threshold(measuring: Measuring) -> None:
    import real_thresholds

    bundle, realdata, _ = measuring
    out = real_thresholds.main(["--model", str(bundle), "--realdata", str(realdata),
                                "--thresholds", "0.2", "0.5", "--phantom", "1", "--no-save"])
    crop = out["real"]["ct_crop"]
    assert set(crop) == {"0.2", "0.5"} and all(0.0 <= v["dice"] <= 1.0 for v in crop.values())
    assert crop["0.5"]["dice"] == pytest.approx(crop_dice(bundle, realdata), abs=1e-4)
    assert out["real"]["ct"]["status"] == "skipped" and out["real"]["mr"]["status"] == "refused"
    assert set(out["phantom"]) == {"ct_0"} and set(out["phantom"]["ct_0"]) == {"0.2", "0.5"}
    assert out["postprocess"]["waist_cut"] is True and np.isfinite(out["phantom"]["ct_0"]["0.5"]["dice"])
