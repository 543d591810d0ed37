"""real_test_time on a random CT segmenter and a tiny fake realdata folder: every variant is reported, the model's
own size gives the Dice prediction gives, AdaBN leaves the shipped model alone and at weight 0 changes nothing;
refused and skipped cases say so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from livercad.segment.infer import Segmenter
from tests.benchmarks.test_accept_real import BENCHMARKS, crop_dice

if TYPE_CHECKING:  # the fixture's type; conftest imports this package's helpers
    from tests.benchmarks.conftest import Measuring


def _bn_state(seg: Segmenter) -> list[torch.Tensor]:
    return [b.clone() for name, b in seg.model.named_buffers() if name.endswith(("running_mean", "running_var"))]


def test_levers_on_a_random_segmenter(measuring: Measuring) -> None:
    import real_test_time

    bundle, realdata, _ = measuring
    out = real_test_time.main(["--model", str(bundle), "--realdata", str(realdata),
                               "--sizes", "32", "48", "--phantom", "1", "--no-save"])
    crop = out["real"]["ct_crop"]
    assert set(crop) == {"size_32", "size_48", "mean_32+48", "adabn", "adabn_half", "no_fill"}
    assert all(0.0 <= v["dice"] <= 1.0 and np.isfinite(v["volume_error_rel"]) for v in crop.values())
    assert crop["size_32"]["dice"] == pytest.approx(crop_dice(bundle, realdata, coarse_to_fine=True), abs=1e-4)
    assert out["real"]["ct"]["status"] == "skipped" and out["real"]["mr"]["status"] == "refused"
    assert set(out["phantom"]) == {"ct_0"} and out["sizes"] == [32, 48]


def test_adabn_copies_and_weight_zero_keeps_the_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import real_test_time

    from livercad.types import Volume

    seg = Segmenter.random(image_size=32, encoder="resnet18")
    rng = np.random.default_rng(1)
    vol = Volume(rng.normal(0.0, 300.0, (40, 36, 6)).astype(np.float32), np.eye(4), None, (1.0, 1.0, 1.0))
    prepared = seg.prepare(vol, "ct")
    before = _bn_state(seg)
    kept = real_test_time.adabn(seg, prepared, 0.0)
    moved = real_test_time.adabn(seg, prepared, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_state(seg), strict=True))  # the original untouched
    assert all(torch.allclose(a, b) for a, b in zip(before, _bn_state(kept), strict=True))
    assert not all(torch.allclose(a, b) for a, b in zip(before, _bn_state(moved), strict=True))
    assert not kept.model.training and not any(m.training for m in moved.model.modules())
