"""Post-processing on the foreground's bounding box equals MONAI's chain (plus a per-slice scipy hole fill)
on the whole map; holes open to the first/last slice are filled, notches are not; the prediction path's
chunk-wise threshold (no full float32 map) gives the same masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from livercad.config import PostprocessConfig
from livercad.preprocess.prepare import CHUNK, prepare, slice_major
from livercad.segment.postprocess import (
    fill_enclosed,
    fill_slices,
    foreground_box,
    postprocess_binary,
    postprocess_mask,
    postprocess_transform,
    threshold_canonical,
)
from livercad.types import Volume


def _fill_per_slice(mask: np.ndarray) -> np.ndarray:
    """Independent per-slice fill: scipy's binary_fill_holes, background 8-connected (as MONAI's FillHoles)."""
    out = mask.copy()
    for z in range(mask.shape[2]):
        out[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z], structure=np.ones((3, 3), bool))
    return out


def _whole(prob: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    out = postprocess_transform(cfg)(torch.as_tensor(prob, dtype=torch.float32)[None])
    out = torch.as_tensor(out).as_subclass(torch.Tensor)[0].numpy().astype(np.uint8)
    return _fill_per_slice(out) if cfg.fill_holes else out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cfg", [PostprocessConfig(), PostprocessConfig(largest_component=False),
                                 PostprocessConfig(fill_holes=False, threshold=0.3)])
def test_cropped_chain_equals_the_whole_map(seed: int, cfg: PostprocessConfig) -> None:
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((40, 36, 20)), 2.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    prob[5:15, 6:16, 4:10] = 0.9  # a block with a hole and a cavity open to one face
    prob[9:11, 10:12, 6:8] = 0.0
    if seed % 2:
        prob[:, :, :3] = 0.95  # foreground touching the volume border
        prob[20:24, 20:24, 0:2] = 0.0  # a hole open to the first slice: filled per slice, not in 3-D
        prob[30:40, 10:14, 0:2] = 0.0  # a notch open to the slice border: never filled
    prob = prob.astype(np.float32)
    got, ref = postprocess_mask(prob, cfg), _whole(prob, cfg)
    assert ref.any() and np.array_equal(got, ref)
    # a slice-major (Fortran-ordered) map, as threshold_canonical gives: labelled on its transposed view, same
    binary = np.asfortranarray((prob >= cfg.threshold).astype(np.uint8))
    out = postprocess_binary(binary, cfg)
    assert out is binary and out.flags.f_contiguous and np.array_equal(out, ref)


@pytest.mark.parametrize("shape", [(30, 25, 12), (40, 33)])
@pytest.mark.parametrize("seed", range(4))
def test_fill_enclosed_equals_monai_fill_holes(shape: tuple[int, ...], seed: int) -> None:
    from monai.transforms import FillHoles

    rng = np.random.default_rng(seed)
    m = (ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.5).astype(np.uint8)  # open background regions
    block = tuple(slice(3, n - 3) for n in shape)
    inner = tuple(slice(5, n - 5) for n in shape)
    m[block] = 1
    m[inner] = (rng.random(m[inner].shape) > 0.15).astype(np.uint8)  # enclosed cavities of various sizes
    ref = np.asarray(FillHoles(applied_labels=[1])(torch.from_numpy(m.copy())[None]))[0].astype(np.uint8)
    got = fill_enclosed(m.copy())
    assert int(ref.sum()) > int(m.sum()) and np.array_equal(got, ref)  # holes were filled, the same ones


@pytest.mark.parametrize("shape", [(30, 25, 12), (40, 33)])
@pytest.mark.parametrize("seed", range(4))
def test_fill_slices_equals_per_slice_fill_and_contains_the_3d_fill(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = (ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.5).astype(np.uint8)
    m[tuple(slice(3, n - 3) for n in shape)] = 1
    inner = tuple(slice(5, n - 5) for n in shape[:2]) + (slice(None),) * (len(shape) - 2)  # reaches z ends
    m[inner] = (rng.random(m[inner].shape) > 0.15).astype(np.uint8)
    got = fill_slices(m.copy())
    ref = _fill_per_slice(m[..., None] if m.ndim == 2 else m).reshape(m.shape)
    assert np.array_equal(got, ref) and np.all(got >= fill_enclosed(m.copy()))
    if m.ndim == 3:  # holes on the end slices: the 3-D fill misses them
        assert int(got.sum()) > int(fill_enclosed(m.copy()).sum())


def _liver_like(shape: tuple[int, int, int] = (48, 40, 12)) -> np.ndarray:
    """An ellipsoidal blob cut by the first and last slices (a thin scan through the liver)."""
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (((x - 24) / 18) ** 2 + ((y - 20) / 14) ** 2 + ((z - 6) / 12) ** 2 < 1).astype(np.float32)


def test_hole_open_to_the_top_or_bottom_slice_is_filled_but_a_notch_is_not() -> None:
    prob = _liver_like() * 0.9
    prob[20:26, 16:22, 8:] = 0.1  # a hole (a vessel) running out through the top slice
    prob[27:30, 24:26, :2] = 0.1  # one through the bottom slice
    prob[20:24, 17:21, 4:6] = 0.1  # one enclosed in 3-D
    prob[34:, 18:22, 5:] = 0.1  # a notch: open to the liver's outside in-plane, reaching the top slice
    mask = postprocess_mask(prob, PostprocessConfig())
    assert mask[20:26, 16:22, 8:].all() and mask[27:30, 24:26, :2].all() and mask[20:24, 17:21, 4:6].all()
    assert not mask[36:, 18:22, 5:].any()
    only_3d = fill_enclosed((prob >= 0.5).astype(np.uint8))  # the former behaviour: the end-slice holes stay
    assert only_3d[20:24, 17:21, 4:6].all() and not only_3d[20:26, 16:22, 11].any()
    assert np.array_equal(mask, postprocess_mask(prob, PostprocessConfig(largest_component=False)))


def test_fill_slices_on_2d_empty_and_full_maps() -> None:
    square = np.zeros((7, 7), np.uint8)
    square[1:6, 1:6] = 1
    square[3, 3] = square[3, 1] = 0
    got = fill_slices(square.copy())
    assert got[3, 3] == 1 and got[3, 1] == 0 and int(got.sum()) == 24
    assert not fill_slices(np.zeros((5, 5, 3), np.uint8)).any()
    assert fill_slices(np.ones((4, 4, 2), np.uint8)).all()


def test_fill_enclosed_without_background_or_holes() -> None:
    full = np.ones((4, 5, 3), np.uint8)
    assert np.array_equal(fill_enclosed(full.copy()), full)
    square = np.zeros((7, 7), np.uint8)
    square[1:6, 1:6] = 1
    square[3, 3] = 0  # enclosed: filled
    square[3, 1] = 0  # a notch open to the outside: kept
    got = fill_enclosed(square.copy())
    assert got[3, 3] == 1 and got[3, 1] == 0 and got[0, 0] == 0 and int(got.sum()) == 24


def test_empty_map_gives_an_empty_mask() -> None:
    assert not postprocess_mask(np.zeros((8, 8, 4), np.float32)).any()


def test_foreground_box_matches_nonzero() -> None:
    rng = np.random.default_rng(3)
    fg = rng.random((20, 17, 9)) > 0.995
    ref = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(fg))
    assert fg.any() and foreground_box(fg) == ref
    tight = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(fg))
    assert foreground_box(fg, margin=0) == tight and foreground_box(fg.astype(np.uint8), margin=0) == tight
    assert foreground_box(np.zeros((4, 4), bool)) is None


@pytest.mark.parametrize("threshold", [0.5, 0.0, 0.93])
def test_chunked_threshold_equals_thresholding_the_whole_canonical_map(threshold: float) -> None:
    z = 2 * CHUNK + 3
    vol = Volume(np.zeros((37, 29, z), np.float32), np.diag([-1.0, 1.0, 2.0, 1.0]), None, (1.0, 1.0, 2.0))
    prepared = prepare(vol, modality="ct", image_size=16)
    maps = torch.rand(z, 16, 16, generator=torch.Generator().manual_seed(0))
    maps[: CHUNK + 2] = 0.0  # slices the coarse pass skipped (the first chunk is skipped entirely)
    if threshold > 0:  # slices that stay just below the threshold everywhere (not resized)
        maps[CHUNK + 4: CHUNK + 7] *= (threshold - 1e-4) / maps[CHUNK + 4: CHUNK + 7].amax()
    ref = (prepared.to_canonical(maps) >= threshold).astype(np.uint8)
    got = threshold_canonical(prepared, maps, threshold)
    assert got.dtype == np.uint8 and got.shape == ref.shape and 0 < int(ref.sum()) and np.array_equal(got, ref)


@pytest.mark.parametrize("shape", [(64, 32), (48, 64), (16, 16), (128, 64)])
@pytest.mark.parametrize("seed", range(3))
def test_cropped_threshold_is_bit_identical_to_the_whole_resize(shape: tuple[int, int], seed: int) -> None:
    """Power-of-two factors (16 -> 64/32/128; 48 is not) resize only the box around the above-threshold pixels."""
    g = torch.Generator().manual_seed(seed)
    z = 2 * CHUNK + 3
    vol = Volume(np.zeros((*shape, z), np.float32), np.eye(4), None, (1.0, 1.0, 1.0))
    prepared = prepare(vol, modality="ct", image_size=16)
    maps = torch.zeros(z, 16, 16)
    r, c = torch.randint(0, 13, (2,), generator=g).tolist()
    maps[3:CHUNK + 5, r:r + 4, c:c + 3] = torch.rand(CHUNK + 2, 4, 3, generator=g) * 0.3 + 0.4  # a blob
    maps[CHUNK + 9, :, :2] = torch.rand(16, 2, generator=g)  # a slice touching the border
    maps[2 * CHUNK + 1] = 0.5  # exactly at the threshold: the resize must keep it at 0.5
    for threshold in (0.5, 0.45, 0.62):
        ref = (prepared.to_canonical(maps) >= threshold).astype(np.uint8)
        assert np.array_equal(threshold_canonical(prepared, maps, threshold), ref)


def test_prediction_path_mask_equals_the_mask_from_the_probability_map() -> None:
    """``segment_volume(keep_prob=False)`` (chunked threshold, uint8 chain) gives the same mask, no prob."""
    from livercad.segment.infer import Segmenter, segment_volume

    rng = np.random.default_rng(0)
    data = ndimage.gaussian_filter(rng.normal(0, 300, (40, 36, 2 * CHUNK + 1)), 2).astype(np.float32)
    vol = Volume(data, np.diag([-1.0, -1.0, 2.5, 1.0]), None, (1.0, 1.0, 2.5))
    seg = Segmenter.random(image_size=32, encoder="resnet18", seed=1)
    cfg = PostprocessConfig(threshold=0.5)
    full = segment_volume(seg, vol, postprocess=cfg)
    lean = segment_volume(seg, vol, postprocess=cfg, keep_prob=False)
    assert lean.segmentation.prob is None and full.segmentation.prob is not None
    assert full.segmentation.mask.any() and not full.segmentation.mask.all()  # a non-trivial mask is compared
    assert np.array_equal(lean.segmentation.mask, full.segmentation.mask)
    assert torch.equal(lean.mask_model, full.mask_model)


def test_the_prediction_path_stays_in_file_order() -> None:
    """A NIfTI volume's voxels (Fortran order) are read as slice views, and the mask comes back in that order.

    So :func:`livercad.io.nifti.save_mask` writes it without transposing (``_fortran_flat`` takes a view).
    """
    data = np.asfortranarray(np.random.default_rng(0).normal(0, 100, (40, 30, CHUNK + 3)).astype(np.float32))
    for affine in (np.diag([1.0, 1.0, 2.0, 1.0]), np.diag([-1.0, -1.0, 2.0, 1.0])):  # RAS, LPS
        p = prepare(Volume(data, affine, None, (1.0, 1.0, 2.0)), modality="ct", image_size=32)
        maps = torch.rand(data.shape[2], 32, 32, generator=torch.Generator().manual_seed(0))
        canon = threshold_canonical(p, maps, 0.5)
        assert canon.flags.f_contiguous and p.to_canonical(maps).flags.f_contiguous
        mask = p.canonical_to_original(canon)
        assert mask.flags.f_contiguous and mask.shape == data.shape
        if affine[0, 0] > 0:
            assert np.shares_memory(mask, canon)  # RAS: no copy at all
    assert slice_major(data) and not slice_major(np.ascontiguousarray(data))
    assert slice_major(data[:, :, :1]) and not slice_major(np.ascontiguousarray(data[:, :, :1]))
