"""``pixel_mm``: slices are padded to a physical field, so the model pixel is the same size on every scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Resize
from pydantic import ValidationError

from livercad.config import PreprocessConfig
from livercad.preprocess.geometry import PHYSICAL_SLACK, physical_side
from livercad.preprocess.prepare import CHUNK, prepare
from livercad.runtime.checkpoint_meta import Preprocessing, SegmenterMeta
from livercad.segment.infer import Segmenter
from livercad.segment.model import build_segmenter
from livercad.segment.postprocess import threshold_canonical
from livercad.types import Volume


def _disk(xy: tuple[int, int], mm: float, radius_mm: float = 24.0, z: int = 3) -> Volume:
    """A CT volume of ``xy`` pixels of ``mm``: a 200 HU disk of ``radius_mm`` at the centre, -100 HU around it."""
    x, y = np.meshgrid((np.arange(xy[0]) - (xy[0] - 1) / 2) * mm, (np.arange(xy[1]) - (xy[1] - 1) / 2) * mm,
                       indexing="ij")
    data = np.repeat(np.where(x * x + y * y < radius_mm ** 2, 200.0, -100.0)[..., None], z, 2).astype(np.float32)
    return Volume(data, np.diag([mm, mm, 3.0, 1.0]), None, (mm, mm, 3.0))


def _diameter_px(p) -> int:
    return int((p.image[1] > 0.05).any(1).sum())


def test_physical_side_pads_only_slices_clearly_narrower_than_the_field() -> None:
    assert physical_side(100, 80, (2.0, 2.0), 64, 4.0) == 128  # 200 mm shown in a 256 mm field
    assert physical_side(40, 30, (2.0, 4.0), 64, 4.0) == 85  # the mean in-plane pixel, 3 mm
    assert physical_side(100, 80, (2.0, 2.0), 64, None) == 0
    assert physical_side(128, 80, (2.0, 2.0), 64, 4.0) == 0  # exactly the field
    within = int(128 / (1 + PHYSICAL_SLACK)) + 1  # 122: 4.9 % narrower, within the slack
    assert physical_side(within, 80, (2.0, 2.0), 64, 4.0) == 0
    assert physical_side(300, 80, (2.0, 2.0), 64, 4.0) == 0  # wider than the field: never cropped


@pytest.mark.parametrize("fov_px", [40, 60, 90])
def test_the_model_sees_the_same_disk_whatever_the_field_of_view(fov_px: int) -> None:
    """A 48 mm disk on 80-180 mm slices of 2 mm pixels, a 4 mm model pixel: 12 model pixels across on every scan."""
    vol = _disk((fov_px, fov_px), 2.0)
    fixed = prepare(vol, modality="ct", image_size=64, pixel_mm=4.0)
    assert fixed.padded_size == 128 and fixed.field == 128
    assert abs(_diameter_px(fixed) - 12) <= 1
    plain = prepare(vol, modality="ct", image_size=64)  # each slice fills the grid: the disk's size follows the FOV
    assert plain.field == 0 and abs(_diameter_px(plain) - 48 / (2.0 * fov_px / 64)) <= 1.5


def test_a_field_wider_than_pixel_mm_allows_is_kept_whole() -> None:
    p = prepare(_disk((150, 120), 2.0), modality="ct", image_size=64, pixel_mm=4.0)  # 300 mm > the 256 mm field
    assert p.field == 0 and p.padded_size == 150 and p.pad == (0, 15)


@pytest.mark.parametrize("xy", [(60, 45), (45, 59)])
def test_inverses_are_exact_in_the_physical_field(xy: tuple[int, int]) -> None:
    """Padding to the field is the same centred square padding: masks and maps go back to the input grid."""
    vol = _disk(xy, 2.0, z=CHUNK + 2)
    p = prepare(vol, modality="ct", image_size=32, pixel_mm=4.0)  # a 64-pixel field
    assert p.padded_size == 64 and p.pad == ((64 - xy[0]) // 2, (64 - xy[1]) // 2)
    mask = (vol.data > 0).astype(np.uint8)
    back = p.to_original(p.from_original(mask, mode="bilinear")) > 0.5
    assert 2 * (back & (mask > 0)).sum() / (back.sum() + mask.sum()) > 0.97
    ref = np.zeros((vol.data.shape[2], 64, 64), np.float32)
    ref[:, p.pad[0]:p.pad[0] + xy[0], p.pad[1]:p.pad[1] + xy[1]] = np.moveaxis(mask, 2, 0)
    expected = torch.as_tensor(Resize((32, 32), mode="nearest")(torch.from_numpy(ref))).as_subclass(torch.Tensor)
    torch.testing.assert_close(p.from_original(mask), expected.float(), rtol=0, atol=0)
    maps = torch.rand(vol.data.shape[2], 32, 32, generator=torch.Generator().manual_seed(1))
    full = p.to_canonical(maps)  # 32 -> 64 is a power-of-two factor: the boxed resize path
    assert full.shape == (*xy, vol.data.shape[2])
    for thr in (0.5, 0.9):
        assert np.array_equal(threshold_canonical(p, maps, thr), (full >= thr).astype(np.uint8))


def test_pixel_mm_is_validated_and_recorded_in_the_segmenter() -> None:
    with pytest.raises(ValidationError):
        PreprocessConfig(pixel_mm=0)
    assert Preprocessing.model_validate({"image_size": 64}).pixel_mm is None  # older checkpoints
    meta = SegmenterMeta(arch="Unet", encoder="resnet18", context=1, weights={"source": "random"},
                         preprocessing=Preprocessing(image_size=32, pixel_mm=4.0))
    seg = Segmenter.from_model(build_segmenter(meta.network()), meta)
    assert seg.preprocessing["pixel_mm"] == 4.0
    assert seg.prepare(_disk((40, 40), 2.0)).padded_size == 64
