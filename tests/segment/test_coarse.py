"""Coarse-to-fine stage-1 inference: same probabilities where the liver is, fewer network calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from livercad.segment.coarse import coarse_slices, coarse_stride, coarse_to_fine, fine_slices
from livercad.segment.infer import Segmenter, segment_prepared, segment_volume
from livercad.types import Volume


class _Bright(nn.Module):
    """A transparent 'segmenter': liver = centre-slice intensity above 0.2 (CT 150 HU -> 0.55)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, 1:2] - 0.2)


def _bright_segmenter() -> Segmenter:
    seg = Segmenter.random(image_size=32, encoder="resnet18")
    return Segmenter.from_model(_Bright(), seg.meta, backend="torch")


def test_stride_and_slice_lists() -> None:
    assert coarse_stride(5.0) == 3 and coarse_stride(2.5) == 6 and coarse_stride(30.0) == 1
    assert coarse_slices(10, 3) == [0, 3, 6, 9]
    assert coarse_slices(11, 3) == [0, 3, 6, 9, 10]
    assert fine_slices([], n=10, stride=3) == []
    assert fine_slices([0, 3], n=10, stride=3) == [0, 1, 2, 3, 4, 5, 6]
    assert fine_slices([9], n=10, stride=3) == [6, 7, 8, 9]


def test_coarse_to_fine_runs_only_around_the_hits() -> None:
    n = 30
    truth = torch.zeros(n, 4, 4)
    truth[11:17] = 0.9  # the "liver": slices 11..16
    calls: list[int] = []

    def run(index: list[int]) -> None:
        calls.extend(index)
        out[index] = truth[index]

    out = torch.zeros(n, 4, 4)
    ran = coarse_to_fine(run, out, spacing_z=5.0, threshold=0.5)  # stride 3: coarse 0,3,...,27,29
    assert torch.equal(out, truth)
    assert ran == len(calls) == len(set(calls)) < n
    assert set(calls) == set(range(0, n, 3)) | {29} | set(range(9, 19))  # hits 12, 15 -> 9..18


def test_no_liver_runs_only_the_coarse_slices() -> None:
    out = torch.zeros(20, 2, 2)
    calls: list[int] = []
    ran = coarse_to_fine(lambda idx: calls.extend(idx), out, spacing_z=3.0, threshold=0.5)
    assert ran == len(calls) == len(coarse_slices(20, 5)) and not out.any()


def _volume_with_blob(z: int = 24) -> Volume:
    x, y, zz = np.meshgrid(np.arange(32), np.arange(32), np.arange(z), indexing="ij")
    blob = ((x - 14) / 8.0) ** 2 + ((y - 16) / 9.0) ** 2 + ((zz - 10) / 5.0) ** 2 <= 1.0
    data = np.where(blob, 150.0, 0.0).astype(np.float32)
    return Volume(data, np.diag([1.0, 1.0, 4.0, 1.0]), None, (1.0, 1.0, 4.0))


def test_segment_prepared_coarse_equals_full_and_calls_fewer_slices() -> None:
    seg = _bright_segmenter()
    seen: list[int] = []
    forward = seg.forward

    def counting(x: torch.Tensor) -> torch.Tensor:
        seen.append(int(x.shape[0]))
        return forward(x)

    seg.forward = counting  # type: ignore[method-assign]
    vol = _volume_with_blob()
    prepared = seg.prepare(vol)
    full = segment_prepared(seg, prepared, batch_size=4)
    n_full = sum(seen)
    seen.clear()
    fast = segment_prepared(seg, prepared, batch_size=4, coarse_to_fine=True)
    assert n_full == 24 and sum(seen) < n_full
    liver = full.flatten(1).amax(1) >= 0.5
    assert liver.any() and torch.equal(fast[liver], full[liver])
    a = segment_volume(seg, vol).segmentation.mask
    b = segment_volume(seg, vol, coarse_to_fine=True).segmentation.mask
    assert a.any() and np.array_equal(a, b)


def test_random_segmenter_coarse_output_has_the_full_shape() -> None:
    seg = Segmenter.random(image_size=32)
    p = seg.prepare(_volume_with_blob(7))
    assert tuple(segment_prepared(seg, p, coarse_to_fine=True).shape) == (7, 32, 32)


def test_the_coarse_pass_and_the_mask_use_one_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.segment.infer as infer
    from livercad.config import PostprocessConfig

    used: list[float] = []

    def spy(run, out, *, spacing_z: float, threshold: float) -> int:
        used.append(threshold)
        return coarse_to_fine(run, out, spacing_z=spacing_z, threshold=threshold)

    monkeypatch.setattr(infer, "coarse_pass", spy)
    seg, vol = _bright_segmenter(), _volume_with_blob()
    segment_volume(seg, vol, coarse_to_fine=True)
    segment_volume(seg, vol, coarse_to_fine=True, postprocess=PostprocessConfig(threshold=0.3))
    assert used == [seg.postprocess.threshold, 0.3]
