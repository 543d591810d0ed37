"""Region modes: shapes, masking values, crop boxes, oracle, unknown names."""

from __future__ import annotations

import pytest
import torch

from livercad.classify.regions import REGIONS, apply_region, get_region, liver_bbox, region_channels
from livercad.errors import ConfigError, InputError


def _case(n: int = 2, s: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, s, s, generator=g) * 2 - 0.5  # values in [-0.5, 1.5]
    mask = torch.zeros(n, s, s, dtype=torch.uint8)
    mask[0, 5:12, 6:10] = 1
    mask[1, 8:15, 9:13] = 1
    prob = torch.rand(n, s, s, generator=g)
    gt = torch.zeros_like(mask)
    gt[:, 2:20, 3:21] = 1
    return image, prob, mask, gt


@pytest.mark.parametrize("mode", list(REGIONS))
def test_every_mode_gives_classifier_input(mode: str) -> None:
    image, prob, mask, gt = _case()
    out = apply_region(mode, image, prob, mask, gt, size=16)
    assert out.shape == (2, region_channels(mode, 3), 16, 16)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # (N, S, S) single-channel slices are accepted too
    out1 = apply_region(mode, image[:, 1], prob, mask, gt, size=16)
    assert out1.shape == (2, region_channels(mode, 1), 16, 16)


def test_mask_sets_outside_to_background_and_keeps_inside() -> None:
    image, prob, mask, _ = _case()
    out = REGIONS["mask"](image, prob, mask, None, size=24, background=0.0)
    outside = (mask == 0)[:, None].expand_as(out)
    assert (out[outside] == 0).all()
    assert torch.equal(out[~outside], image[~outside])
    default = REGIONS["mask"](image, prob, mask, None, size=24)  # background = image minimum
    assert torch.allclose(default[outside], torch.full_like(default[outside], float(image.min())))


def test_prob_mask_is_image_times_probability_from_background() -> None:
    image, prob, mask, _ = _case()
    out = REGIONS["prob-mask"](image, prob, mask, None, size=24, background=0.0)
    assert torch.allclose(out, image * prob[:, None])
    bg = -2.0
    out2 = REGIONS["prob-mask"](image, prob, mask, None, size=24, background=bg)
    assert torch.allclose(out2, bg + (image - bg) * prob[:, None])


def test_bbox_contains_liver_of_every_slice_square_and_inside() -> None:
    _, _, mask, _ = _case()
    r0, r1, c0, c1 = liver_bbox(mask, margin=0.1)
    rows, cols = torch.nonzero(mask.bool().any(0), as_tuple=True)
    assert r0 <= int(rows.min()) and int(rows.max()) < r1
    assert c0 <= int(cols.min()) and int(cols.max()) < c1
    assert r1 - r0 == c1 - c0  # square
    assert 0 <= r0 and r1 <= 24 and 0 <= c0 and c1 <= 24
    # union of rows 5..14 is 10 px tall: 10 * 1.2 = 12
    assert r1 - r0 == 12
    assert liver_bbox(torch.zeros(2, 8, 8)) is None


def test_bbox_clamped_at_image_border() -> None:
    m = torch.zeros(1, 10, 10)
    m[0, 0:3, 7:10] = 1
    r0, r1, c0, c1 = liver_bbox(m, margin=0.5)
    assert (r0, c1) == (0, 10) and r1 - r0 == c1 - c0 == 6


def test_crop_equals_slicing_at_box_size_and_is_shared_by_slices() -> None:
    image, prob, mask, _ = _case()
    r0, r1, c0, c1 = liver_bbox(mask, margin=0.1)
    out = REGIONS["crop"](image, prob, mask, None, size=r1 - r0, margin=0.1)
    assert torch.equal(out, image[..., r0:r1, c0:c1])
    # an empty mask crops nothing: the full slice
    full = REGIONS["crop"](image, prob, torch.zeros_like(mask), None, size=24)
    assert torch.equal(full, image)


def test_mask_crop_masks_then_crops() -> None:
    image, prob, mask, _ = _case()
    r0, r1, c0, c1 = liver_bbox(mask, margin=0.1)
    out = REGIONS["mask-crop"](image, prob, mask, None, size=r1 - r0, background=0.0)
    m = mask[:, None, r0:r1, c0:c1].expand_as(out).bool()
    assert (out[~m] == 0).all() and torch.equal(out[m], image[..., r0:r1, c0:c1][m])


def test_mask_channel_appends_mask() -> None:
    image, prob, mask, _ = _case()
    out = REGIONS["mask-channel"](image, prob, mask, None, size=24)
    assert torch.equal(out[:, :3], image) and torch.equal(out[:, 3], mask.float())


def test_oracle_uses_ground_truth_not_prediction() -> None:
    image, prob, mask, gt = _case()
    oracle = REGIONS["oracle-mask"](image, prob, mask, gt, size=24, background=0.0)
    assert torch.equal(oracle, REGIONS["mask"](image, prob, gt, None, size=24, background=0.0))
    assert not torch.equal(oracle, REGIONS["mask"](image, prob, mask, None, size=24, background=0.0))
    with pytest.raises(InputError, match="ground-truth"):
        REGIONS["oracle-mask"](image, prob, mask, None, size=24)


def test_resize_downsamples_constant_exactly() -> None:
    out = REGIONS["full"](torch.full((1, 3, 40, 40), 0.25), None, None, None, size=10)
    assert out.shape == (1, 3, 10, 10) and torch.allclose(out, torch.full_like(out, 0.25))


def test_unknown_mode_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'mask-crop'"):
        get_region("mask_crop")
    with pytest.raises(ConfigError, match="available: full"):
        region_channels("zzz", 3)
    assert region_channels("mask-channel", 3) == 4 and region_channels("crop", 1) == 1


def test_bad_image_shape_is_input_error() -> None:
    with pytest.raises(InputError, match="expected image"):
        REGIONS["full"](torch.zeros(4, 4), None, None, None, size=4)
