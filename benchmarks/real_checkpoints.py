"""Real-scan Dice of the Lightning checkpoints of a stage-1 training run, raw and EMA weights, at several sizes.

A measuring aid for stage-1 recipes (issue 19), not a way to pick a model: choosing a checkpoint by the
real scans would tune on them. For every ``*.ckpt`` of a run (``<work>/segment/lightning/checkpoints``
of ``python -m livercad.segment.release``) it loads the network's raw weights (``model.*``) and, when the
run used ``segment.ema``, the averaged ones (``ema.module.*``), runs them at each in-plane model size on the
real scans of ``../shared/realdata`` exactly as ``accept_real.py`` does (coarse-to-fine, fp32, torch), and
prints one JSON line per checkpoint: its step and ``<weights><size>_<case>`` Dice values.

    python benchmarks/real_checkpoints.py build/model-v2 --config configs/model-v2.yaml
    python benchmarks/real_checkpoints.py build/model --config configs/model.yaml --sizes 192
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from accept_real import REAL_CASES, REALDATA

from livercad.config import load_config
from livercad.io.nifti import load_mask, load_volume
from livercad.runtime.checkpoint_meta import Preprocessing, SegmenterMeta
from livercad.segment.infer import Segmenter, segment_volume
from livercad.segment.model import build_segmenter


def weight_sets(ckpt: Path) -> tuple[int | None, dict[str, dict[str, torch.Tensor]]]:
    """The checkpoint's step and its weight sets: ``raw`` (``model.*``) and, with EMA, ``ema`` (``ema.module.*``)."""
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = payload["state_dict"]
    sets = {name: {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            for name, prefix in (("raw", "model."), ("ema", "ema.module."))}
    return payload.get("global_step"), {k: v for k, v in sets.items() if v}


def score(seg: Segmenter, realdata: Path) -> dict[str, float]:
    """Liver Dice of ``seg`` on each real case that is there (as ``accept_real.py`` segments them)."""
    out: dict[str, float] = {}
    for name, (image, ref, labels, modality) in REAL_CASES.items():
        if not ((realdata / image).is_file() and (realdata / ref).is_file()):
            continue
        vol = load_volume(realdata / image)
        truth = load_mask(realdata / ref, vol, liver_labels=labels).astype(bool)
        pred = segment_volume(seg, vol, batch_size=4, coarse_to_fine=True, modality=modality,
                              keep_prob=False).segmentation.mask.astype(bool)
        out[name] = round(float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)), 3)
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="the release's --work folder (or a folder of .ckpt files)")
    ap.add_argument("--config", required=True, help="the run's config (network and preprocessing)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    ap.add_argument("--realdata", type=Path, default=REALDATA)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    folder = args.work / "segment" / "lightning" / "checkpoints"
    ckpts = sorted((folder if folder.is_dir() else args.work).glob("*.ckpt"))
    model = build_segmenter(cfg.segment.model.model_copy(update={"encoder_weights": "none"}))
    pp = cfg.preprocess
    rows = []
    for ckpt in ckpts:
        step, sets = weight_sets(ckpt)
        row: dict[str, Any] = {"checkpoint": ckpt.name, "step": step}
        for name, state in sets.items():
            model.load_state_dict(state)
            for size in args.sizes:
                meta = SegmenterMeta(arch=cfg.segment.model.arch, encoder=cfg.segment.model.encoder,
                                     decoder_channels=cfg.segment.model.decoder_channels,
                                     context=cfg.segment.model.context,
                                     preprocessing=Preprocessing(**{**pp.model_dump(), "image_size": size},
                                                                 context=cfg.segment.model.context,
                                                                 modalities=["ct", "mr"]),
                                     weights={"source": "file"})
                seg = Segmenter.from_model(model, meta, backend="torch", precision="fp32")
                row.update({f"{name}{size}_{case}": d for case, d in score(seg, args.realdata).items()})
        print(json.dumps(row), flush=True)
        rows.append(row)
    if not ckpts:
        print(json.dumps({"error": f"no .ckpt files under {args.work}"}))
    return rows


if __name__ == "__main__":
    main()
