"""Non-square slices are padded, centred, to a square before resizing: the aspect ratio is kept, inverses exact."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Resize

from livercad.preprocess.geometry import dyadic_blocks, up_window
from livercad.preprocess.prepare import CHUNK, normalize, prepare, reorient, slice_major
from livercad.segment.postprocess import threshold_canonical
from livercad.types import Volume

AFFINES = {
    "RAS": np.diag([0.8, 0.8, 3.0, 1.0]),
    "LPS": np.diag([-0.8, -0.8, 3.0, 1.0]),
    "PIR": np.array([[0, 0, 0.8, 0], [-0.8, 0, 0, 0], [0, -3.0, 0, 0], [0, 0, 0, 1.0]]),
}


def _file_shape(canonical: tuple[int, int, int], affine: np.ndarray) -> tuple[int, ...]:
    """The voxel shape of a file whose canonical (RAS) shape is ``canonical``."""
    ornt = nib.orientations.io_orientation(affine)
    return tuple(canonical[int(a)] for a in ornt[:, 0])


def _disk_volume(xy: tuple[int, int], name: str, radius_mm: float = 12.0, z: int = 4) -> Volume:
    """CT volume (200 HU disk of ``radius_mm`` centred in the world x-y plane, -100 HU around it)."""
    aff = AFFINES[name]
    shape = _file_shape((*xy, z), aff)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    world, centre = ijk @ aff[:3, :3].T, (np.array(shape) - 1) / 2 @ aff[:3, :3].T
    inside = ((world[..., :2] - centre[:2]) ** 2).sum(-1) < radius_mm ** 2
    data = np.where(inside, 200.0, -100.0).astype(np.float32)
    zooms = np.sqrt((aff[:3, :3] ** 2).sum(0))
    return Volume(data, aff, None, tuple(float(v) for v in zooms))


def _pad_reference(canon_zxy: torch.Tensor, value: float) -> torch.Tensor:
    """The padding written out plainly: ``(z, X, Y)`` centred in a ``(z, M, M)`` array of ``value``."""
    z, x, y = canon_zxy.shape
    m = max(x, y)
    r, c = (m - x) // 2, (m - y) // 2
    return torch.nn.functional.pad(canon_zxy, (c, m - y - c, r, m - x - r), value=value)


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("xy", [(60, 45), (45, 60)])
@pytest.mark.parametrize("size", [64, 32])
def test_a_disk_stays_round_and_centred(name: str, xy: tuple[int, int], size: int) -> None:
    vol = _disk_volume(xy, name)
    p = prepare(vol, modality="ct", image_size=size)
    assert p.canonical_shape[:2] == xy and p.padded_size == 60 and p.pad == ((60 - xy[0]) // 2, (60 - xy[1]) // 2)
    disk = p.image[1] > 0.05  # midway between the disk (0.8) and the tissue around it (-0.7)
    rows, cols = torch.nonzero(disk.any(1))[:, 0], torch.nonzero(disk.any(0))[:, 0]
    height, width = len(rows), len(cols)
    expected = 2 * 12.0 / 0.8 * size / 60  # the 30-voxel diameter in model pixels, the same both ways
    assert abs(height - width) <= 1 and abs(height - expected) <= 1.5 and abs(width - expected) <= 1.5
    centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    assert all(abs(float(c) - (size - 1) / 2) <= 1 for c in centre)
    assert float(p.image[:, 0, 0].max()) == -1.0  # a corner of the square: padding (CT: -1)


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("xy", [(60, 45), (45, 60)])
@pytest.mark.parametrize("size", [64, 32])
def test_a_smooth_mask_roundtrips_through_model_space(name: str, xy: tuple[int, int], size: int) -> None:
    vol = _disk_volume(xy, name)
    mask = (vol.data > 0).astype(np.uint8)
    p = prepare(vol, modality="ct", image_size=size)
    back = p.to_original(p.from_original(mask, mode="bilinear")) > 0.5
    assert back.shape == mask.shape
    assert 2 * (back & (mask > 0)).sum() / (back.sum() + mask.sum()) > 0.98
    nearest = p.to_original(p.from_original(mask), mode="nearest")
    assert nearest.shape == mask.shape and set(np.unique(nearest)) <= {0.0, 1.0}


@pytest.mark.parametrize(("xy", "size"), [((256, 200), 128), ((200, 256), 128), ((256, 256), 128), ((100, 128), 32),
                                          ((40, 64), 16), ((61, 64), 16), ((37, 29), 16), ((512, 512), 192),
                                          ((96, 80), 36), ((120, 117), 45), ((100, 90), 36)])
@pytest.mark.parametrize("seed", range(3))
def test_canonical_box_is_the_same_region_of_to_canonical(xy: tuple[int, int], size: int, seed: int) -> None:
    """M = 2S or 4S (and 4S with an odd padding), M = 8S/3 (512 from 192, 96 from 36, 120 from 45): the cropped
    resize is exact; 37x29 (M = 37) and 100 from 36 (25/9, not dyadic) resize whole axes."""
    g = torch.Generator().manual_seed(seed)
    z = CHUNK + 3
    p = prepare(Volume(np.zeros((*xy, z), np.float32), np.eye(4), None, (1.0, 1.0, 1.0)), modality="ct",
                image_size=size)
    maps = torch.rand(z, size, size, generator=g) * 0.3
    r, c = torch.randint(0, size - 4, (2,), generator=g).tolist()
    maps[:CHUNK, r:r + 4, c:c + 3] = torch.rand(CHUNK, 4, 3, generator=g) * 0.5 + 0.5  # a small blob
    maps[CHUNK:, :2, :] = 0.9  # the first model rows: padding only in the 40x64 case
    full = p.to_canonical(maps)
    for sl in (slice(0, CHUNK), slice(CHUNK, z)):
        hit = (maps[sl] > 0.3).any(0)
        part, rows, cols = p.to_canonical_box(maps[sl], hit)
        assert 0 <= rows.start <= rows.stop <= xy[0] and 0 <= cols.start <= cols.stop <= xy[1]
        np.testing.assert_array_equal(part, full[rows, cols, sl])
        outside = full[:, :, sl].copy()
        outside[rows, cols] = 0
        assert outside.max() <= 0.3  # everything outside the box comes from model pixels outside hit
    for threshold in (0.5, 0.31, 0.0):
        ref = (full >= threshold).astype(np.uint8)
        assert np.array_equal(threshold_canonical(p, maps, threshold), ref)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(("xy", "size"), [((60, 45), 15), ((60, 45), 30), ((45, 60), 20), ((256, 200), 64),
                                          ((61, 45), 16)])
def test_from_original_equals_resizing_the_zero_padded_square(mode: str, xy: tuple[int, int], size: int,
                                                              order: str) -> None:
    """M a multiple of S (60/15, 60/30, 60/20, 256/64) resizes only the blocks around the mask; 61/16 all of it.

    A slice-major mask (``F``, as masks come back from prediction) is resized as ``(z, Y, X)``: exactly the
    transposed resize, and the untransposed one to float rounding."""
    z = 2 * CHUNK + 5
    aff = np.diag([-1.0, 1.0, 2.0, 1.0])
    p = prepare(Volume(np.zeros((*xy, z), np.float32), aff, None, (1.0, 1.0, 2.0)), modality="ct", image_size=size)
    rng = np.random.default_rng(sum(xy) + size)
    mask = np.zeros((*xy, z), np.uint8)
    mask[7:19, 3:14, 2:CHUNK + 4] = rng.random((12, 11, CHUNK + 2)) > 0.3  # a blob off the block grid
    mask[0, :, CHUNK + 8] = 1  # a slice touching the border
    mask[xy[0] // 2, xy[1] - 1, 2 * CHUNK + 2] = 1  # one voxel at the far edge
    mask = np.asarray(mask, order=order)
    canon = nib.orientations.apply_orientation(mask.astype(np.float32), p.ornt)
    padded = _pad_reference(torch.from_numpy(np.ascontiguousarray(canon)).permute(2, 0, 1), 0.0)
    resize = Resize((size, size), mode=mode)
    expected = torch.as_tensor(resize(padded)).float().as_subclass(torch.Tensor)
    got = p.from_original(mask, mode=mode)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=0 if mode == "nearest" or order == "C" else 1e-6)
    if order == "F":
        frame = torch.as_tensor(resize(padded.transpose(1, 2).contiguous())).as_subclass(torch.Tensor)
        torch.testing.assert_close(got, frame.transpose(1, 2), rtol=0, atol=0)


@pytest.mark.parametrize("modality", ["mr", "mr-t1", "mr-t2", "us"])
@pytest.mark.parametrize("name", list(AFFINES))
def test_normalisation_statistics_ignore_the_padding(modality: str, name: str) -> None:
    """With S = M the model slices are the padded normalised slices: the real part is the real voxels' z-score."""
    rng = np.random.default_rng(0)
    aff = AFFINES[name]
    data = rng.gamma(2.0, 150.0, _file_shape((60, 45, 5), aff)).astype(np.float32)
    p = prepare(Volume(data, aff, None, (0.8, 0.8, 3.0)), modality=modality, image_size=60)
    canon, _, _ = reorient(Volume(data, aff, None, (0.8, 0.8, 3.0)))
    alone = normalize(torch.from_numpy(np.ascontiguousarray(canon)).permute(2, 0, 1), modality)
    real = p.image[:, :, 7:52]
    torch.testing.assert_close(real, alone.as_subclass(torch.Tensor), rtol=0, atol=0)
    assert abs(float(real.mean())) < 1e-4 and abs(float(real.std()) - 1) < 1e-2
    assert torch.equal(p.image[:, :, :7], torch.full((5, 60, 7), float(real.min())))
    assert torch.equal(p.image[:, :, 52:], torch.full((5, 60, 8), float(real.min())))


@pytest.mark.parametrize("modality", ["ct", "mr-t2", "us"])
@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("size", [16, 48])
def test_square_slices_give_the_results_of_the_plain_resize(modality: str, name: str, size: int) -> None:
    """Reference: normalise the whole canonical volume, ``Resize`` to (S, S); inverses: ``Resize`` to (X, X)."""
    aff = AFFINES[name]
    z = CHUNK + 4
    shape = _file_shape((32, 32, z), aff)
    data = np.random.default_rng(2).normal(40, 300, shape).astype(np.float32)
    p = prepare(Volume(data, aff, None, (0.8, 0.8, 3.0)), modality=modality, image_size=size)
    raw = reorient(Volume(data, aff, None, (0.8, 0.8, 3.0)))[0]
    whole = normalize(torch.from_numpy(np.ascontiguousarray(raw)).permute(2, 0, 1), modality)
    down = Resize((size, size), mode="bilinear", align_corners=False)
    ref = torch.as_tensor(down(whole)).float().as_subclass(torch.Tensor)
    assert p.pad == (0, 0) and p.padded_size == 32
    torch.testing.assert_close(p.image, ref, rtol=0, atol=1e-6)
    if slice_major(raw):  # resized as (z, Y, X): exactly the transposed resize
        ref = torch.as_tensor(down(whole.transpose(1, 2).contiguous())).as_subclass(torch.Tensor).transpose(1, 2)
    torch.testing.assert_close(p.image, ref, rtol=0, atol=0 if modality == "ct" else 1e-6)
    maps = torch.rand(z, size, size, generator=torch.Generator().manual_seed(0))
    up = Resize((32, 32), mode="bilinear", align_corners=False)
    back = torch.as_tensor(up(maps.transpose(1, 2).contiguous())).permute(2, 1, 0).numpy()  # to_canonical's frame
    np.testing.assert_array_equal(p.to_canonical(maps), back)
    np.testing.assert_allclose(p.to_canonical(maps), torch.as_tensor(up(maps)).permute(1, 2, 0).numpy(), atol=1e-6)
    mask = (data > 300).astype(np.uint8)
    cmask = nib.orientations.apply_orientation(mask.astype(np.float32), p.ornt)
    fwd = Resize((size, size), mode="nearest")(torch.from_numpy(np.ascontiguousarray(cmask)).permute(2, 0, 1))
    torch.testing.assert_close(p.from_original(mask), torch.as_tensor(fwd).float().as_subclass(torch.Tensor),
                               rtol=0, atol=0)


def test_a_dyadic_scale_crops_and_other_scales_resize_the_whole_axis() -> None:
    """192 -> 512 (blocks of 3 -> 8): rows 90-100 (blocks 30-33) resize from source blocks 27-35 (two of margin,
    grown to the 9 blocks that keep torch's kernel) and keep output blocks 28-34; 192 -> 500 is not dyadic."""
    hit = np.zeros(192, bool)
    hit[90:101] = True
    assert dyadic_blocks(192, 512) == (3, 8) and dyadic_blocks(192, 500) is None
    src, n, keep, place = up_window(hit, 192, 512)
    assert (src, n) == (slice(81, 108), 72) and (keep, place) == (slice(8, 64), slice(224, 280))
    reads = np.floor((np.arange(512) + 0.5) * 3 / 8 - 0.5)  # output row o reads source rows reads[o], reads[o] + 1
    touch = np.flatnonzero((reads + 1 >= 90) & (reads <= 100))
    assert place.start <= touch[0] and place.stop > touch[-1]  # every output row that can read a hit row is kept
    assert up_window(hit, 192, 500) == (slice(0, 192), 500, slice(0, 500), slice(0, 500))
