"""Post-processing on the foreground's bounding box equals MONAI's chain on the whole map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from livercad.config import PostprocessConfig
from livercad.segment.postprocess import postprocess_mask, postprocess_transform


def _whole(prob: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    out = postprocess_transform(cfg)(torch.as_tensor(prob, dtype=torch.float32)[None])
    return torch.as_tensor(out).as_subclass(torch.Tensor)[0].numpy().astype(np.uint8)


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
        prob[20:24, 20:24, 0:2] = 0.0  # a "hole" open to the border: not filled
    prob = prob.astype(np.float32)
    got, ref = postprocess_mask(prob, cfg), _whole(prob, cfg)
    assert ref.any() and np.array_equal(got, ref)


def test_empty_map_gives_an_empty_mask() -> None:
    assert not postprocess_mask(np.zeros((8, 8, 4), np.float32)).any()
