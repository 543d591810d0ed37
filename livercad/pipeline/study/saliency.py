"""Saliency of a stage-2 classifier and the *inside-liver attention fraction*.

Two methods (``ablation.saliency_method``):

* ``gradient-input`` (default): ``|sum_c (x_c - b_c) * d score / d x_c|`` per pixel, the gradient from
  MONAI's :class:`monai.visualize.VanillaGrad` times the input's difference from its blank level ``b`` (the
  per-channel minimum, i.e. the background the region modes paint outside the liver). A pixel equal to
  the background gets exactly zero: a ``mask`` arm, which sees nothing outside the liver, cannot be
  credited with attention there.
* ``gradcam``: Grad-CAM. Caveat measured in the ablation: in a constant background region the
  BatchNorm'd activations are not zero, so Grad-CAM puts mass outside the liver even for ``mask`` inputs
  (inside-liver fractions of 0.05-0.15 for arms whose input is constant outside the liver); it shows
  *where features fire*, not what the input contributes.

For one case the saliency is computed on the classifier's own input for the slice with the largest
liver area (the slice the ``single-slice`` verdict uses); Grad-CAM uses MONAI's
:class:`monai.visualize.GradCAM` on the backbone's last convolutional stage (:data:`CAM_LAYERS`, falling
back to the last ``Conv2d``), for the class the model predicts on that slice. MONAI's default
post-processing (a min-max rescale that *inverts* magnitudes) is replaced by the identity, so the map
is the raw ReLU'd Grad-CAM, bilinearly upsampled to the input size.

The map is then brought back to the model-space slice ``(S, S)`` so that it can be compared with the
**ground-truth** liver mask, whatever the region mode:

* ``full``, ``mask``, ``prob-mask``, ``mask-channel``, ``oracle-mask``: the input is the whole slice
  resized, so the map is resized back to ``S × S``;
* ``crop``, ``mask-crop``: the input is the case's liver box (:func:`livercad.classify.regions.liver_bbox` over
  the selected slices, exactly as :func:`livercad.classify.data.case_inputs` computes it); the map is
  resized to the box and pasted into an all-zero ``S × S`` slice (the model saw nothing outside it).

inside-liver fraction = positive saliency mass inside the GT liver / total positive mass (``nan`` when
the map is all zero).

Example:
    >>> heat = np.zeros((8, 8)); heat[2:4, 2:4] = 1.0; m = np.zeros((8, 8)); m[:4, :4] = 1
    >>> inside_fraction(heat, m)
    1.0
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from livercad.errors import ConfigError, InputError
from livercad.types import CaseSlices

if TYPE_CHECKING:
    from livercad.classify.infer import Classifier

logger = logging.getLogger(__name__)

#: Grad-CAM target layer per backbone name (module path inside ``ClassifierNet``).
CAM_LAYERS: dict[str, str] = {
    **{n: "backbone.layer4" for n in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "vgg16_bn": "backbone.features.42",
    "inception_v3": "backbone.Mixed_7c",
    "densenet121": "backbone.features.denseblock4",
    "efficientnet_b0": "backbone.features.8",
}
_CROP_REGIONS = ("crop", "mask-crop")
#: Saliency methods, default first.
METHODS: tuple[str, ...] = ("gradient-input", "gradcam")


def _stage_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shapes of the candidate layers (the last module of each backbone stage) for input ``x``."""
    names = [f"backbone.{stage[-1]}" for stage in getattr(model, "stages", []) if stage]
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [modules[n].register_forward_hook(
        lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)) if isinstance(o, torch.Tensor) else None)
        for n in names if n in modules]
    try:
        with torch.no_grad():
            model(x[:1].float())
    finally:
        for h in hooks:
            h.remove()
    return {n: shapes[n] for n in names if n in shapes}


def target_layer(model: nn.Module, x: torch.Tensor | None = None, *, min_size: int = 7) -> str:
    """The Grad-CAM layer: the deepest stage whose feature map is at least ``min_size`` px.

    Without ``x`` (or when no stage output is large enough) the last convolutional stage of
    :data:`CAM_LAYERS` by backbone name, else the last ``Conv2d``. With ``x`` the stage outputs are
    measured: ResNets at 224 px use ``layer4`` (7 × 7), at 112–223 px ``layer3`` (a 4 × 4 ``layer4`` map
    is too coarse to tell the liver from its surroundings).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
        >>> target_layer(net)
        '2'
    """
    modules = dict(model.named_modules())
    if x is not None:
        shapes = _stage_outputs(model, x)
        maps = [n for n, shp in shapes.items() if len(shp) == 4]
        fine = [n for n in maps if min(shapes[n][2:]) >= min_size]
        if fine and fine[-1] != maps[-1]:
            return fine[-1]
    name = CAM_LAYERS.get(str(getattr(model, "name", "")))
    if name is not None and name in modules:
        return name
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise InputError(None, f"saliency: no Conv2d layer in {type(model).__name__}; cannot run Grad-CAM")
    return convs[-1]


def gradient_input(model: nn.Module, x: torch.Tensor, *, class_idx: int | None = None) -> np.ndarray:
    """Gradient × (input − blank) maps ``(N, H, W)``, non-negative, with MONAI's VanillaGrad.

    The blank level of each input channel is its minimum (the background of the region modes); the
    per-pixel attribution is the absolute value of the channel sum. ``class_idx``: explained class
    (default: each input's predicted class).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.tensor([[[[0.0, 1.0], [0.0, 2.0]]]])
        >>> (gradient_input(net, x)[0] == 0).tolist()  # background pixels (value 0) get no attribution
        [[True, False], [True, False]]
    """
    from monai.visualize import VanillaGrad

    net = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)
    maps = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].detach().float().contiguous().clone()
        with torch.enable_grad():
            grad = VanillaGrad(net)(xi, index=class_idx)
        base = xi.amin(dim=(2, 3), keepdim=True)
        maps.append(((xi - base) * grad).sum(dim=1)[0].abs())
    return torch.stack(maps).detach().cpu().numpy()


def inside_fraction(heat: Any, mask: Any) -> float:
    """Share of the positive saliency mass that lies inside ``mask`` (same 2-D/3-D shape).

    Negative values are ignored (Grad-CAM is ReLU'd anyway); ``nan`` when there is no positive mass.

    Example:
        >>> inside_fraction(np.array([[1.0, 3.0]]), np.array([[1, 0]]))
        0.25
    """
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, None)
    m = np.asarray(mask) > 0
    if h.shape != m.shape:
        raise InputError(None, f"saliency: heat map shape {h.shape} differs from the mask shape {m.shape}")
    total = float(h.sum())
    return float(h[m].sum() / total) if total > 0 else float("nan")


def grad_cam(model: nn.Module, x: torch.Tensor, *, layer: str | None = None,
             class_idx: int | None = None) -> np.ndarray:
    """Raw Grad-CAM maps ``(N, H, W)`` (ReLU'd, upsampled to the input size) with MONAI's GradCAM.

    The model is deep-copied (MONAI registers hooks that would otherwise stay on it) and the input made
    to require gradients, so frozen backbones work too.

    Args:
        model: a classifier ``(N, C, H, W) -> (N, K)`` logits.
        x: input batch.
        layer: target module path; default :func:`target_layer`.
        class_idx: class whose score is explained; default the predicted class of each input.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> grad_cam(net, torch.rand(2, 1, 8, 8), layer="0").shape
        (2, 8, 8)
    """
    from monai.visualize import GradCAM

    net = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)
    for m in net.modules():  # an in-place op on a hooked output breaks the backward hook
        if hasattr(m, "inplace"):
            m.inplace = False
    name = layer or target_layer(net, x)
    cam = GradCAM(nn_module=net, target_layers=name, postprocessing=lambda a: a)
    inp = x.detach().float().contiguous().clone().requires_grad_(True)
    with torch.enable_grad():
        out = cam(inp, class_idx=class_idx)
    return out.detach().cpu().numpy()[:, 0]


@dataclass(frozen=True)
class CaseSaliency:
    """Saliency of one case on its largest-liver slice, in model space ``(S, S)``."""

    case_id: str
    slice_index: int
    heat: np.ndarray
    image: np.ndarray
    gt: np.ndarray | None
    mask: np.ndarray
    fraction: float


def _to_model_space(heat: np.ndarray, s: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    t = torch.as_tensor(heat, dtype=torch.float32)[None, None]
    if box is None:
        return F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)[0, 0].numpy()
    r0, r1, c0, c1 = box
    out = np.zeros((s, s), np.float32)
    out[r0:r1, c0:c1] = F.interpolate(t, size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)[0, 0]
    return out


def case_saliency(clf: Classifier, case: CaseSlices, *, method: str = "gradient-input") -> CaseSaliency:
    """Saliency of a :class:`~livercad.classify.infer.Classifier` on one case's largest-liver slice.

    ``method``: ``gradient-input`` or ``gradcam`` (see the module docstring). Returns the map in model space
    and its inside-GT-liver fraction (``nan`` without ground truth).
    """
    if method not in METHODS:
        raise ConfigError(f"ablation.saliency_method: expected one of {', '.join(METHODS)}, got {method!r}")
    from livercad.classify.data import case_inputs, select_slices
    from livercad.classify.regions import liver_bbox

    sel = select_slices(case, clf.min_liver_fraction, use_gt=clf.region == "oracle-mask")
    x, areas = case_inputs(case, region=clf.region, size=clf.image_size, margin=clf.crop_margin,
                           min_fraction=clf.min_liver_fraction)
    j = int(torch.argmax(areas))
    z = int(sel.index[j])
    explain = gradient_input if method == "gradient-input" else grad_cam
    heat_in = explain(clf.model, x[j:j + 1])[0]
    s = int(case.image.shape[-1])
    box = None
    if clf.region in _CROP_REGIONS and sel.region_override is None:
        box = liver_bbox(case.mask[sel.index], clf.crop_margin)
    heat = _to_model_space(heat_in, s, box)
    gt = None if case.gt is None else np.asarray(case.gt[z], dtype=np.uint8)
    frac = inside_fraction(heat, gt) if gt is not None else float("nan")
    shown = case.image[z] if case.image.ndim == 3 else case.image[z, 0]  # a multi-phase case: its first image
    return CaseSaliency(str(case.case_id), z, heat, np.asarray(shown, dtype=np.float32), gt,
                        np.asarray(case.mask[z], dtype=np.uint8), frac)


def arm_saliency(clf: Classifier, cases: list[CaseSlices], *, n_boot: int = 1000, seed: int = 0,
                 method: str = "gradient-input") -> dict[str, Any]:
    """Saliency of one arm over cases: per-case fractions, their mean with a patient bootstrap 95 % CI.

    Returns:
        ``{"fraction": {"value", "ci_low", "ci_high", "n"}, "per_case": [{case_id, slice, fraction}],
        "maps": [CaseSaliency]}``; cases without ground truth or with an all-zero map are left out of
        the mean.
    """
    from livercad.metrics.stats import bootstrap_replicates, percentile_ci

    maps = [case_saliency(clf, c, method=method) for c in cases]
    fr = np.array([m.fraction for m in maps], dtype=float)
    pids = [str(c.patient_id) for c in cases]
    ok = np.flatnonzero(~np.isnan(fr))
    value, low, high = float("nan"), float("nan"), float("nan")
    if ok.size:
        vals, groups = fr[ok], [pids[i] for i in ok]
        value = float(vals.mean())
        reps = bootstrap_replicates(vals.size, lambda i: float(vals[i].mean()), groups=groups, n_boot=n_boot,
                                    seed=seed)
        low, high = percentile_ci(reps)
    per_case = [{"case_id": m.case_id, "slice": m.slice_index, "fraction": m.fraction} for m in maps]
    return {"fraction": {"value": value, "ci_low": low, "ci_high": high, "n": int(ok.size)},
            "method": method, "per_case": per_case, "maps": maps}


__all__ = ["CAM_LAYERS", "METHODS", "CaseSaliency", "arm_saliency", "case_saliency", "grad_cam", "gradient_input",
           "inside_fraction", "target_layer"]
