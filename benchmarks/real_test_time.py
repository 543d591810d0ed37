"""Test-time levers of one stage-1 model on the real scans and the phantom: multi-size averaging and AdaBN.

A measuring aid for issue 19, beside ``real_thresholds.py``. Nothing here changes the model's weights on
disk or what ``livercad predict`` does. Per case (``accept_real.py``'s real scans, when they are there,
and its first ``--phantom`` test cases per modality), the Dice and the relative liver-volume error of:

* ``size_N``: the model run at in-plane size ``N`` alone (each of ``--sizes``; the model's own size is what
  prediction gives);
* ``mean_N1+N2+...``: the mean of those runs' probability maps, on the canonical full-resolution grid,
  then the model's own post-processing (multi-scale test-time augmentation; the training's random scaling
  is +-10 %, so the sizes around the model's own stay inside what it saw);
* ``adabn``: AdaBN (Li et al. 2018): every BatchNorm layer's running mean and variance re-estimated on the
  case's own slices (a cumulative average over all of them, forward passes in training mode without
  gradients), at the model's own size; ``adabn_half``: the average of the shipped and the re-estimated
  statistics. Each case starts from the shipped statistics;
* ``no_fill``: the model's own size with its post-processing but no hole filling
  (``segment.postprocess.fill_holes: false``): what the fill adds or costs against a reference mask.

Every variant runs the segmentation as prediction does (coarse-to-fine, fp32, torch). Prints one JSON object
and writes it to ``benchmarks/results/`` unless ``--no-save``. The real scans are the test: a lever chosen on
them is tuned on them.

    python benchmarks/real_test_time.py                                   # the shipped model
    python benchmarks/real_test_time.py --sizes 160 192 224 --phantom 2 --tag shipped
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
from typing import Any

import numpy as np
import torch
from accept_real import git_commit, load_segmenter
from bench_common import cpu_name, finish
from real_thresholds import measuring_parser, model_path, over_phantom, over_real

from livercad.config import PostprocessConfig
from livercad.metrics.segmentation import dice
from livercad.preprocess.prepare import Prepared, context_stack
from livercad.segment.infer import Segmenter, segment_prepared
from livercad.segment.postprocess import postprocess_mask
from livercad.types import Volume


def canonical_probability(seg: Segmenter, prepared: Prepared) -> np.ndarray:
    """The liver probability of a volume prepared at ``seg``'s size, on the canonical full-resolution grid."""
    prob = segment_prepared(seg, prepared, batch_size=4, coarse_to_fine=True)
    return np.asarray(prepared.to_canonical(prob), dtype=np.float32)


def figures(seg: Segmenter, prepared: Prepared, prob: np.ndarray, ref: np.ndarray,
            cfg: PostprocessConfig | None = None) -> dict[str, float]:
    """Dice and volume error of ``prob`` after post-processing (``cfg``, default ``seg``'s), against ``ref``."""
    mask = prepared.canonical_to_original(postprocess_mask(prob, cfg or seg.postprocess)) > 0
    err = float(mask.sum()) / max(float(ref.sum()), 1.0) - 1.0
    return {"dice": round(dice(mask, ref, empty="zero"), 4), "volume_error_rel": round(err, 4)}


def adabn(seg: Segmenter, prepared: Prepared, weight: float, batch_size: int = 4) -> Segmenter:
    """A copy of ``seg`` whose BatchNorm statistics are ``(1 - weight) * shipped + weight * re-estimated``.

    The re-estimated statistics are the cumulative mean and variance over every slice of ``prepared``
    (``momentum=None``), from forward passes in training mode; ``seg`` itself is not touched.
    """
    model = copy.deepcopy(seg.model).float()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    shipped = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in norms:
        m.train()
    image, ctx = prepared.image.as_subclass(torch.Tensor), int(seg.meta["context"])
    with torch.no_grad():
        for start in range(0, image.shape[0], batch_size):
            idx = torch.arange(start, min(start + batch_size, image.shape[0]))
            model(context_stack(image, idx, ctx).contiguous(memory_format=torch.channels_last))
    for m, (mean, var) in zip(norms, shipped, strict=True):
        m.running_mean.mul_(weight).add_(mean, alpha=1.0 - weight)
        m.running_var.mul_(weight).add_(var, alpha=1.0 - weight)
    return Segmenter.from_model(model.eval(), seg.meta, backend="torch", precision="fp32")


def levers(segs: dict[int, Segmenter], base: int, vol: Volume, ref: np.ndarray,
           modality: str) -> dict[str, dict[str, float]]:
    """Every variant (module docstring) of one case; ``base``: the model's own size (AdaBN runs there)."""
    truth = ref.astype(bool)
    prepared = {size: seg.prepare(vol, modality) for size, seg in segs.items()}
    probs = {size: canonical_probability(seg, prepared[size]) for size, seg in segs.items()}
    out = {f"size_{size}": figures(segs[size], prepared[size], prob, truth) for size, prob in probs.items()}
    unfilled = segs[base].postprocess.model_copy(update={"fill_holes": False})
    out["no_fill"] = figures(segs[base], prepared[base], probs[base], truth, unfilled)
    if len(probs) > 1:
        mean = np.mean(list(probs.values()), axis=0, dtype=np.float32)
        out["mean_" + "+".join(str(s) for s in probs)] = figures(segs[base], prepared[base], mean, truth)
    for name, weight in (("adabn", 1.0), ("adabn_half", 0.5)):
        adapted = adabn(segs[base], prepared[base], weight)
        out[name] = figures(adapted, prepared[base], canonical_probability(adapted, prepared[base]), truth)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = measuring_parser(__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", help="in-plane model sizes (default: the model's own +-32)")
    ap.add_argument("--tag", default="", help="suffix of the result file name (real_test_time_<tag>)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure every variant; returns the printed result."""
    args = parse_args(argv)
    path = model_path(args.model)
    own, _ = load_segmenter(path, "torch", "fp32", None)
    base = int(own.preprocessing["image_size"])
    sizes = args.sizes or [base - 32, base, base + 32]
    if base not in sizes:
        sizes = [base, *sizes]
    segs = {size: own if size == base else load_segmenter(path, "torch", "fp32", size)[0] for size in sizes}

    def measure(vol: Volume, ref: np.ndarray, modality: str) -> dict[str, Any]:
        return levers(segs, base, vol, ref, modality)

    real, phantom = over_real(own, args.realdata, measure), over_phantom(own, args.phantom, measure)
    result = {"benchmark": "real_test_time", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "commit": git_commit(), "cpu": cpu_name(), "model": str(path), "image_size": base, "sizes": sizes,
              "real": real, "phantom": phantom}
    finish(result, "real_test_time" + (f"_{args.tag}" if args.tag else ""), save=not args.no_save)
    return result


if __name__ == "__main__":
    main()
