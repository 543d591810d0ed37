"""Stage-2 speed on this machine; prints one JSON object.

Measures, per backbone and image size: training step time (batch of 2.5-D slices, forward + backward +
AdamW), inference throughput (slices/s, fp32, channels-last, inference mode), the cost of region inputs
per case, ``predict_case`` per case, and the frozen-strategy feature extraction per slice (the one-off
cost that replaces every training step's backbone pass).

Usage:
    python benchmarks/bench_classify.py [--backbones resnet18,resnet50] [--sizes 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

from livercad.classify.data import case_inputs
from livercad.classify.infer import Classifier, backbone_features, predict_case
from livercad.classify.model import build_classifier, param_groups
from livercad.classify.regions import REGIONS
from livercad.types import CaseSlices


def _best(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _case(z: int = 48, s: int = 128) -> CaseSlices:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(z, s, s, dtype=torch.uint8)
    mask[z // 4: 3 * z // 4, s // 4: 3 * s // 4, s // 3: 2 * s // 3] = 1
    img = torch.rand(z, s, s, generator=g) * 2 - 1
    return CaseSlices("bench", "bench", 0, img.half(), mask.half(), mask, mask.clone())


def bench_backbone(name: str, size: int, batch: int, repeat: int) -> dict[str, float]:
    """Train-step and inference timings of one backbone at one input size."""
    net = build_classifier(name, weights="none", num_classes=2, strategy="scratch", image_size=size)
    opt = torch.optim.AdamW(param_groups(net, 1e-3, 0.1))
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 2, (batch,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    net.train()
    t_step = _best(step, repeat)
    meta = {"classes": ["a", "b"], "region": "mask", "image_size": size}
    clf = Classifier(net, meta, precision="fp32", device="cpu")
    t_inf = _best(lambda: clf.logits(x, batch), repeat)
    t_feat = _best(lambda: backbone_features(net, x, batch), repeat)
    case = _case()
    t_case = _best(lambda: predict_case(clf, case, batch_size=batch), 1)
    n_slices = int(case_inputs(case, region="mask", size=size)[0].shape[0])
    return {"train_step_s": round(t_step, 4), "train_slices_per_s": round(batch / t_step, 1),
            "infer_slices_per_s": round(batch / t_inf, 1),
            "frozen_feature_ms_per_slice": round(1e3 * t_feat / batch, 2),
            "predict_case_s": round(t_case, 3), "slices_per_case": n_slices}


def bench_regions(size: int, repeat: int) -> dict[str, float]:
    """Milliseconds to build the classifier inputs of one 48-slice case, per region mode."""
    case = _case()
    return {mode: round(1e3 * _best(lambda m=mode: case_inputs(case, region=m, size=size), repeat), 2)
            for mode in REGIONS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="resnet18,resnet50")
    ap.add_argument("--sizes", default="128")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, object] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()},
        "batch": args.batch,
        "regions_ms_per_case": {str(s): bench_regions(s, args.repeat) for s in sizes},
        "backbones": {f"{b}@{s}": bench_backbone(b, s, args.batch, args.repeat)
                      for b in args.backbones.split(",") for s in sizes},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
