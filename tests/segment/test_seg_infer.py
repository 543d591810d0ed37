"""Volume inference: geometry in every orientation, batching, precision, loading, post-processing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from livercad.config import PostprocessConfig
from livercad.errors import CheckpointError
from livercad.io.nifti import load_volume, save_mask, save_volume
from livercad.preprocess.prepare import context_stack
from livercad.runtime.checkpoint import save_checkpoint
from livercad.segment.infer import Segmenter, segment_prepared, segment_volume
from livercad.segment.postprocess import postprocess_mask
from livercad.types import Volume


class _Bright(nn.Module):
    """A transparent 'segmenter': liver = centre-slice intensity above 0.2 (CT 150 HU -> 0.55)."""

    def __init__(self, context: int = 1) -> None:
        super().__init__()
        self.context = context
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, self.context : self.context + 1] - 0.2) + self.bias


def _bright_segmenter(image_size: int = 32, **kwargs) -> Segmenter:
    seg = Segmenter.random(image_size=image_size, encoder="resnet18", **kwargs)
    return Segmenter.from_model(_Bright(), seg.meta, **kwargs)


def _canonical_case(spacing_z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An RAS volume (40, 36, 12) with an off-centre ellipsoid 'liver' at 150 HU, and its mask."""
    x, y, z = np.meshgrid(np.arange(40), np.arange(36), np.arange(12), indexing="ij")
    liver = ((x - 12) / 8.0) ** 2 + ((y - 20) / 10.0) ** 2 + ((z - 6) / 4.5) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    image = np.where(liver, 150.0, 0.0) + rng.normal(0, 5, liver.shape)
    affine = np.diag([1.2, 1.0, spacing_z, 1.0])
    affine[:3, 3] = (-20, -15, 30)
    return image.astype(np.float32), liver, affine


def _reoriented(image, mask, affine, codes: str, oblique: bool):
    target = nib.orientations.axcodes2ornt(tuple(codes))
    t = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), target)
    new_affine = affine @ nib.orientations.inv_ornt_aff(t, image.shape)
    if oblique:
        a = np.deg2rad(17.0)
        rot = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        new_affine = rot @ new_affine
    data = nib.orientations.apply_orientation(image, t)
    ref = nib.orientations.apply_orientation(mask, t)
    return np.ascontiguousarray(data), np.ascontiguousarray(ref), new_affine, t


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("spacing_z", [2.5, 6.0])
def test_every_orientation_gets_its_own_grid_and_the_same_dice(spacing_z):
    seg = _bright_segmenter()
    image, liver, affine = _canonical_case(spacing_z)
    canon = segment_volume(seg, Volume(image, affine, None, (1.2, 1.0, spacing_z)))
    base_dice = _dice(canon.segmentation.mask, liver)
    assert base_dice > 0.85
    for codes, oblique in [("RAS", False), ("LPS", False), ("PIR", False), ("LPS", True), ("ASL", True)]:
        data, ref, aff, t = _reoriented(image, liver, affine, codes, oblique)
        spacing = tuple(float(s) for s in np.sqrt((aff[:3, :3] ** 2).sum(0)))
        out = segment_volume(seg, Volume(data, aff, None, spacing))
        mask = out.segmentation.mask
        assert mask.shape == data.shape and mask.dtype == np.uint8
        assert out.segmentation.prob.shape == data.shape and out.segmentation.prob.dtype == np.float32
        back = nib.orientations.apply_orientation(mask, nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt(tuple(codes)), nib.orientations.axcodes2ornt("RAS")))
        assert np.array_equal(back, canon.segmentation.mask), codes
        assert abs(_dice(mask, ref) - base_dice) < 0.01, codes


def test_saved_mask_keeps_shape_and_affine_of_an_oblique_lps_volume(tmp_path):
    image, liver, affine = _canonical_case(4.0)
    data, _, aff, _ = _reoriented(image, liver, affine, "LPS", True)
    vol = load_volume(save_volume(data, aff, tmp_path / "img.nii.gz"))
    out = segment_volume(_bright_segmenter(), vol)
    saved = load_volume(save_mask(out.segmentation.mask, vol, tmp_path / "mask.nii.gz"))
    assert saved.shape == vol.shape and np.allclose(saved.affine, vol.affine, atol=1e-5)
    assert np.array_equal(saved.data.astype(np.uint8), out.segmentation.mask)


def test_model_space_outputs_match_each_other():
    image, liver, affine = _canonical_case(3.0)
    out = segment_volume(_bright_segmenter(), Volume(image, affine, None, (1.2, 1.0, 3.0)))
    assert tuple(out.prob_model.shape) == (12, 32, 32) == tuple(out.mask_model.shape)
    assert out.mask_model.dtype == torch.uint8
    assert type(out.mask_model) is torch.Tensor and type(out.prob_model) is torch.Tensor
    assert _dice(out.mask_model.numpy(), (out.prob_model > 0.5).numpy()) > 0.9
    assert set(out.seconds) == {"preprocess", "model", "postprocess"}


def test_batched_slices_equal_one_big_forward():
    seg = Segmenter.random(image_size=32, encoder="resnet18", seed=3, precision="fp32")  # auto is bf16 on AVX-512-BF16
    vol = Volume(np.random.default_rng(1).normal(0, 80, (32, 32, 7)).astype(np.float32), np.eye(4), None, (1, 1, 1))
    prepared = seg.prepare(vol)
    with torch.no_grad():
        stack = context_stack(prepared.image.as_subclass(torch.Tensor), list(range(7)), 1)
        ref = torch.sigmoid(seg.model(stack))[:, 0]
    for bs in (1, 3, 16):
        assert torch.allclose(segment_prepared(seg, prepared, batch_size=bs), ref, atol=1e-5)


def test_bf16_autocast_stays_close_to_fp32():
    vol = Volume(np.random.default_rng(2).normal(0, 80, (32, 32, 4)).astype(np.float32), np.eye(4), None, (1, 1, 1))
    fp32 = Segmenter.random(image_size=32, seed=5, precision="fp32")
    bf16 = Segmenter.random(image_size=32, seed=5, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    p32 = segment_prepared(fp32, fp32.prepare(vol))
    p16 = segment_prepared(bf16, bf16.prepare(vol))
    assert p16.dtype == torch.float32 and float((p32 - p16).abs().max()) < 0.05


def test_load_round_trip_and_mismatch(tmp_path):
    seg = Segmenter.random(image_size=32, encoder="resnet18", seed=4, precision="fp32")
    path = save_checkpoint(tmp_path / "segmenter.pt", seg.model.state_dict(), seg.meta)
    loaded = Segmenter.load(path, precision="fp32")
    vol = Volume(np.random.default_rng(3).normal(0, 80, (32, 32, 3)).astype(np.float32), np.eye(4), None, (1, 1, 1))
    a, b = segment_prepared(seg, seg.prepare(vol)), segment_prepared(loaded, loaded.prepare(vol))
    assert torch.allclose(a, b, atol=1e-6)
    assert loaded.weights["source"] == "random" and loaded.meta["checkpoint"]["sha256"]
    bad = save_checkpoint(tmp_path / "bad.pt", seg.model.state_dict(), {**seg.meta, "encoder": "resnet34"})
    with pytest.raises(CheckpointError, match="bad.pt.*do not fit"):
        Segmenter.load(bad)
    unknown = save_checkpoint(tmp_path / "unknown.pt", seg.model.state_dict(), {**seg.meta, "encoder": "resnet35"})
    with pytest.raises(CheckpointError, match="unknown.pt.*cannot rebuild.*resnet35"):
        Segmenter.load(unknown)
    with pytest.raises(CheckpointError, match="not a segmenter"):
        Segmenter.load(save_checkpoint(tmp_path / "other.pt", {}, {"kind": "classifier"}))


def test_load_rebuilds_a_narrow_decoder_from_the_metadata(tmp_path):
    from livercad.config import SegmentModelConfig
    from livercad.segment.model import build_segmenter

    model = build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights="none",
                                               decoder_channels=[32, 16, 16, 8, 8]))
    meta = {**Segmenter.random(image_size=32, encoder="resnet18").meta, "decoder_channels": [32, 16, 16, 8, 8]}
    loaded = Segmenter.load(save_checkpoint(tmp_path / "narrow.pt", model.state_dict(), meta), precision="fp32")
    assert loaded.model.segmentation_head[0].in_channels == 8
    plain = {k: v for k, v in meta.items() if k != "decoder_channels"}
    with pytest.raises(CheckpointError, match="do not fit"):
        Segmenter.load(save_checkpoint(tmp_path / "plain.pt", model.state_dict(), plain))


def test_postprocess_threshold_largest_component_and_holes():
    prob = np.zeros((9, 9, 9), np.float32)
    prob[1:6, 1:6, 1:6] = 0.9
    prob[3, 3, 3] = 0.2  # enclosed hole
    prob[8, 8, 8] = 0.7  # a separate speck
    full = postprocess_mask(prob, PostprocessConfig())
    assert full.dtype == np.uint8 and int(full.sum()) == 125 and full[8, 8, 8] == 0 and full[3, 3, 3] == 1
    keep = postprocess_mask(prob, PostprocessConfig(largest_component=False, fill_holes=False))
    assert int(keep.sum()) == 125 - 1 + 1 and keep[3, 3, 3] == 0
    strict = postprocess_mask(prob, PostprocessConfig(threshold=0.95))
    assert int(strict.sum()) == 0


def test_a_multi_image_segmenter_takes_each_image_s_slice_stack_and_refuses_a_missing_one(tmp_path):
    from livercad.errors import InputError

    names = ["image", "image_arterial"]
    seg = Segmenter.random(image_size=32, encoder="resnet18", images=names, precision="fp32")
    assert seg.images == names and seg.meta["in_channels"] == 6
    rng = np.random.default_rng(0)
    data, other = (rng.normal(40, 20, (36, 30, 5)).astype(np.float32) for _ in range(2))
    vol = Volume(data, np.diag([-1.0, 1, 3, 1]), None, (1.0, 1, 3), channels=(other,))
    out = segment_volume(seg, vol, keep_prob=True)
    assert out.segmentation.mask.shape == data.shape and tuple(out.prepared.image.shape) == (5, 2, 32, 32)
    x = context_stack(out.prepared.image, [2], 1)
    with torch.inference_mode():
        want = torch.sigmoid(seg.model(x.contiguous(memory_format=torch.channels_last)))[0, 0]
    torch.testing.assert_close(out.prob_model[2], want, atol=1e-5, rtol=0)
    path = save_checkpoint(tmp_path / "s.pt", seg.model.state_dict(), seg.meta)
    assert Segmenter.load(path).images == names
    with pytest.raises(InputError, match="1 image\\(s\\) given, the segmenter takes 2 \\(image, image_arterial\\)"):
        segment_volume(seg, Volume(data, np.eye(4), None, (1.0, 1, 1)))
