"""Preprocessing: canonical orientation equals nibabel's, the inverse is exact, intensities normalised.

Non-square slices (padded to a square before resizing) have their own tests in test_preprocess_square_pad.py.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from livercad.preprocess.prepare import context_stack, normalize, prepare, reorient, slice_major
from livercad.types import Volume


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    r = np.eye(4)
    r[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return r


AFFINES = {
    "RAS": np.diag([0.8, 0.8, 3.0, 1.0]),
    "LPS": np.diag([-0.8, -0.8, 3.0, 1.0]),
    "PIR": np.array([[0, 0, 0.8, 0], [-0.8, 0, 0, 0], [0, -3.0, 0, 0], [0, 0, 0, 1.0]]),
    "oblique": _rot(7) @ np.diag([-0.8, 0.8, 5.0, 1.0]),
}


def _padded(zxy: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``(z, X, Y)`` centred in a ``(z, M, M)`` square of ``value``, ``M = max(X, Y)`` (what prepare resizes)."""
    _, x, y = zxy.shape
    m = max(x, y)
    r, c = (m - x) // 2, (m - y) // 2
    return torch.nn.functional.pad(zxy, (c, m - y - c, r, m - x - r), value=value)


def _volume(shape: tuple[int, int, int], affine: np.ndarray, seed: int = 0) -> Volume:
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    return Volume(data, affine, None, tuple(float(z) for z in zooms))


@pytest.mark.parametrize("name", list(AFFINES))
def test_canonical_slices_match_nibabel(name: str) -> None:
    aff = AFFINES[name]
    shape = (16, 6, 16) if name == "PIR" else (16, 16, 6)
    vol = _volume(shape, aff)
    canon = nib.as_closest_canonical(nib.Nifti1Image(vol.data, aff)).get_fdata(dtype=np.float32)
    arr, _, _ = reorient(vol)
    np.testing.assert_array_equal(arr, canon)
    assert prepare(vol, modality="mr-t2", image_size=16).canonical_shape == canon.shape


@pytest.mark.parametrize("name", list(AFFINES))
def test_mask_roundtrip_is_exact_on_original_grid(name: str) -> None:
    aff = AFFINES[name]
    shape = (16, 6, 16) if name == "PIR" else (16, 16, 6)
    vol = _volume(shape, aff, seed=1)
    mask = (vol.data > 0.3).astype(np.uint8)
    p = prepare(vol, modality="ct", image_size=16)
    model_space = p.from_original(mask)
    assert tuple(model_space.shape) == (p.canonical_shape[2], 16, 16)
    back = p.to_original(model_space, mode="nearest")
    assert back.shape == vol.data.shape
    np.testing.assert_array_equal(back, mask)


def test_spacing_follows_the_axes() -> None:
    vol = _volume((16, 6, 16), AFFINES["PIR"])
    p = prepare(vol, modality="ct", image_size=8)
    assert p.spacing == pytest.approx((0.8, 0.8, 3.0))


def test_resize_to_model_size_and_back_preserves_a_smooth_blob() -> None:
    x, y, z = np.mgrid[:40, :30, :5]
    blob = (((x - 20) / 12.0) ** 2 + ((y - 15) / 9.0) ** 2 < 1).astype(np.float32)
    vol = Volume(blob, np.diag([-1.0, -1.0, 3.0, 1.0]), None, (1.0, 1.0, 3.0))
    p = prepare(vol, modality="ct", image_size=64)
    back = p.to_original(p.from_original(blob, mode="bilinear"), mode="bilinear") > 0.5
    inter = (back & (blob > 0)).sum()
    assert 2 * inter / (back.sum() + blob.sum()) > 0.97


def test_ct_window_and_mr_zscore() -> None:
    hu = torch.tensor([[-1000.0, -160.0, 40.0, 240.0, 2000.0]])
    out = normalize(hu, "ct", ct_window=(-160, 240))
    assert out[0].tolist() == pytest.approx([-1.0, -1.0, 0.0, 1.0, 1.0])
    mr = torch.randn(4, 32, 32) * 50 + 300
    z = normalize(mr, "mr-t2")
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1) < 1e-2
    for name in ("mr", "mr-t1", "MR", "t2", "us"):  # any name of an mr/us family: the same percentiles + z-score
        assert torch.equal(normalize(mr, name), z)
    assert torch.equal(normalize(hu, "CT"), out)


def test_ct_window_is_monai_scale_intensity_range_bit_for_bit_and_leaves_the_input() -> None:
    from monai.transforms import ScaleIntensityRange

    hu = torch.from_numpy(np.random.default_rng(0).normal(40, 400, (3, 64, 48)).astype(np.float32))
    before = hu.clone()
    ref = ScaleIntensityRange(a_min=-160.0, a_max=240.0, b_min=-1.0, b_max=1.0, clip=True)(hu)
    got = normalize(hu, "ct", ct_window=(-160.0, 240.0))
    assert got.dtype == torch.float32 and torch.equal(got, torch.as_tensor(ref).as_subclass(torch.Tensor))
    assert torch.equal(hu, before)  # in place on a copy only


def test_unknown_modality() -> None:
    from livercad.errors import InputError

    with pytest.raises(InputError, match="unknown modality 'pet'"):
        normalize(torch.zeros(1, 2, 2), "pet")


def test_context_stack_edges() -> None:
    s = torch.arange(4.0).view(4, 1, 1).expand(4, 2, 2)
    st = context_stack(s, [0, 3], 1)
    assert st.shape == (2, 3, 2, 2)
    assert st[0, :, 0, 0].tolist() == [0, 0, 1] and st[1, :, 0, 0].tolist() == [2, 3, 3]
    assert context_stack(s, [1], 0).shape == (1, 1, 2, 2)


@pytest.mark.parametrize("order", ["C", "F"])  # F: the layout load_volume returns (reoriented without a copy)
def test_ct_prepare_in_chunks_equals_one_call_over_the_volume(order: str) -> None:
    from monai.transforms import Resize

    from livercad.preprocess.prepare import CHUNK

    z = 2 * CHUNK + 3
    rng = np.random.default_rng(0)
    data = np.asarray(rng.normal(40, 200, (48, 40, z)).astype(np.float32), order=order)
    vol = Volume(data, np.diag([-1.0, 1.0, 2.5, 1.0]), None, (1.0, 1.0, 2.5))
    got = prepare(vol, modality="ct", image_size=32).image
    canon, _, _ = reorient(vol)
    assert slice_major(canon) == (order == "F")
    whole = _padded(normalize(torch.from_numpy(np.ascontiguousarray(canon)).permute(2, 0, 1), "ct"), -1.0)
    resize = Resize((32, 32), mode="bilinear", align_corners=False)
    ref = torch.as_tensor(resize(whole)).float().as_subclass(torch.Tensor)
    assert got.shape == (z, 32, 32) and type(got) is torch.Tensor
    if order == "F":  # slice-major: resized as (z, Y, X), exactly; the (z, X, Y) resize to float rounding
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
        ref = torch.as_tensor(resize(whole.transpose(1, 2).contiguous())).as_subclass(torch.Tensor).transpose(1, 2)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_chunked_maps_to_and_from_the_original_grid_equal_one_resize_call(mode: str) -> None:
    from monai.transforms import Resize

    from livercad.preprocess.prepare import CHUNK

    z = 2 * CHUNK + 5
    vol = Volume(np.zeros((40, 30, z), np.float32), np.diag([-1.0, 1.0, 2.0, 1.0]), None, (1.0, 1.0, 2.0))
    p = prepare(vol, modality="ct", image_size=16)
    maps = torch.rand(z, 16, 16)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    resize = Resize((40, 40), mode=mode, **kwargs)
    ref = torch.as_tensor(resize(maps.transpose(1, 2).contiguous()))[:, 5:35, :].permute(2, 1, 0).numpy()
    got = p.to_canonical(maps, mode=mode)  # resized transposed, written slice-major
    assert got.shape == (40, 30, z) and got.flags["F_CONTIGUOUS"]
    np.testing.assert_array_equal(got, ref)
    plain = torch.as_tensor(resize(maps))[:, :, 5:35].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, plain, rtol=0, atol=1e-6)
    mask = (np.random.default_rng(1).random((40, 30, z)) > 0.5).astype(np.uint8)
    canon = nib.orientations.apply_orientation(mask.astype(np.float32), p.ornt)
    whole = _padded(torch.from_numpy(np.ascontiguousarray(canon)).permute(2, 0, 1))
    expected = torch.as_tensor(Resize((16, 16), mode=mode)(whole)).float().as_subclass(torch.Tensor)
    torch.testing.assert_close(p.from_original(mask, mode=mode), expected, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("shape", [(64, 48), (48, 64), (32, 16), (40, 30)])
def test_from_original_resizes_only_the_blocks_around_the_mask(mode: str, shape: tuple[int, int]) -> None:
    """Padded sizes that are multiples of the model size (64, 32 of 16) resize a box; 40 does not."""
    from monai.transforms import Resize

    from livercad.preprocess.prepare import CHUNK

    z = 2 * CHUNK + 5
    vol = Volume(np.zeros((*shape, z), np.float32), np.diag([-1.0, 1.0, 2.0, 1.0]), None, (1.0, 1.0, 2.0))
    p = prepare(vol, modality="ct", image_size=16)
    rng = np.random.default_rng(sum(shape))
    mask = np.zeros((*shape, z), np.uint8)
    mask[7:19, 3:14, 2:CHUNK + 4] = rng.random((12, 11, CHUNK + 2)) > 0.3  # a blob off the block grid
    mask[0, :, CHUNK + 8] = 1  # a slice touching the border
    mask[shape[0] // 2, shape[1] - 1, 2 * CHUNK + 2] = 1  # one voxel at the far edge
    canon = nib.orientations.apply_orientation(mask.astype(np.float32), p.ornt)
    whole = _padded(torch.from_numpy(np.ascontiguousarray(canon)).permute(2, 0, 1))
    expected = torch.as_tensor(Resize((16, 16), mode=mode)(whole)).float().as_subclass(torch.Tensor)
    got = p.from_original(mask, mode=mode)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("modality", ["ct", "mr"])
def test_a_multi_image_volume_stacks_each_image_prepared_alone(modality: str) -> None:
    rng = np.random.default_rng(3)
    images = [rng.normal(50 + 40 * k, 30, (30, 22, 5)).astype(np.float32) for k in range(3)]
    affine = AFFINES["PIR"]
    vol = Volume(images[0], affine, None, (0.8, 0.8, 3.0), channels=tuple(images[1:]))
    p = prepare(vol, modality=modality, image_size=32)
    assert tuple(p.image.shape) == (22, 3, 32, 32)  # canonical Z of a PIR volume is its second axis
    for k, data in enumerate(images):
        alone = prepare(Volume(data, affine, None, (0.8, 0.8, 3.0)), modality=modality, image_size=32)
        assert torch.equal(p.image[:, k], alone.image), k  # reoriented alike, normalised on its own
        assert alone.canonical_shape == p.canonical_shape
    stack = context_stack(p.image, [0, 7], 1)
    assert tuple(stack.shape) == (2, 9, 32, 32)
    assert torch.equal(stack[1, 3:6], context_stack(p.image[:, 1], [7], 1)[0])  # image 1's slices 6, 7, 8
