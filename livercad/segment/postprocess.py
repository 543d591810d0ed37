"""From a liver probability map to the final mask with MONAI post-processing transforms.

Threshold (``AsDiscrete``), keep the largest 3-D connected component (``KeepLargestConnectedComponent``,
26-connectivity) and fill enclosed holes (``FillHoles``), each switchable in
:class:`~livercad.config.PostprocessConfig`. Applied on the canonical full-resolution grid by
:func:`livercad.segment.infer.segment_volume`. The chain runs on the bounding box of the thresholded
voxels plus a one-voxel background margin only: components lie inside that box, and a background
region inside it touches the box border exactly when it reaches the volume border in the whole map, so
the result is identical to running on the whole map (tested), several times faster on a large volume.

Example:
    >>> import numpy as np
    >>> prob = np.zeros((6, 6, 6), np.float32); prob[1:4, 1:4, 1:4] = 0.9; prob[5, 5, 5] = 0.8
    >>> prob[2, 2, 2] = 0.1  # a hole inside the big component
    >>> m = postprocess_mask(prob, PostprocessConfig())
    >>> int(m.sum()), int(m[5, 5, 5]), int(m[2, 2, 2])
    (27, 0, 1)
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import AsDiscrete, Compose, FillHoles, KeepLargestConnectedComponent

from livercad.config import PostprocessConfig


def postprocess_transform(cfg: PostprocessConfig) -> Compose:
    """The MONAI chain for ``cfg`` acting on a channel-first ``(1, X, Y, Z)`` probability tensor."""
    steps = [AsDiscrete(threshold=cfg.threshold)]
    if cfg.largest_component:
        steps.append(KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False))
    if cfg.fill_holes:
        steps.append(FillHoles(applied_labels=[1]))
    return Compose(steps)


def postprocess_mask(prob: np.ndarray | torch.Tensor, cfg: PostprocessConfig | None = None) -> np.ndarray:
    """Threshold + largest component + hole filling of a 2-D or 3-D probability map.

    Args:
        prob: liver probability in [0, 1] (any spatial shape).
        cfg: post-processing settings (defaults: 0.5, largest component, fill holes).

    Returns:
        uint8 mask (0/1) of the same shape.
    """
    cfg = cfg or PostprocessConfig()
    full = torch.as_tensor(prob, dtype=torch.float32)
    out = np.zeros(tuple(full.shape), np.uint8)
    fg = (full >= cfg.threshold).numpy()
    if not fg.any():
        return out
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(fg))
    res = postprocess_transform(cfg)(full[box][None])
    out[box] = torch.as_tensor(res).as_subclass(torch.Tensor)[0].numpy().astype(np.uint8)
    return out


__all__ = ["postprocess_mask", "postprocess_transform", "PostprocessConfig"]
