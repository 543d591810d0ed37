"""The default stage-1 model that ships in the package: how it is built (``make model``) and described.

``python -m livercad.segment.release --config configs/model.yaml`` generates the domain-randomised
phantom cohort, trains stage 1 on it (a fixed number of steps, so the result does not depend on machine
load), stores the best weights as float16 in a segmentation-only bundle at
:func:`livercad.models.default_bundle_path` and writes its ``MODEL_CARD.md``: training data
(phantom generator settings, seed, number of cases), steps, wall time, commit. ``--card-results`` adds the
real-scan figures of ``benchmarks/accept_real.py`` (a JSON it wrote) to the card. The model is trained
on the phantom only; the real scans are never read here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from livercad.config import Config, load_config
from livercad.runtime.checkpoint import save_checkpoint
from livercad.runtime.checkpoint_meta import SegmenterMeta, load_stage

CARD = "MODEL_CARD.md"


def git_commit(root: Path) -> str:
    """The short commit of the repository at ``root``, ``+dirty`` when tracked files differ from it.

    ``unknown`` outside a git checkout. Taken when a build starts: the code that made the data and the model.
    """
    try:
        run = {"cwd": root, "capture_output": True, "text": True, "timeout": 10, "check": True}
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip()
        return (head + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def half_checkpoint(src: Path, dst: Path, extra: dict[str, Any], infer_size: int | None = None) -> Path:
    """Copy a ``segmenter.pt`` with float tensors stored as float16 (loading casts them back to float32).

    ``infer_size``: the in-plane model size the shipped model runs at, when it differs from the training
    size (chosen by ``benchmarks/bench_resolution.py``); the training size stays in ``trained_image_size``.
    """
    state, info = load_stage(src, SegmenterMeta)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    pp = info.preprocessing
    size = pp.image_size if infer_size is None else int(infer_size)
    meta = info.model_copy(update={"preprocessing": pp.model_copy(update={"image_size": size}), "checkpoint": None,
                                   "resume_key": None, "trained_image_size": pp.image_size, "stored_dtype": "float16"})
    return save_checkpoint(dst, half, {**meta.to_dict(), **extra})


def build(cfg: Config, work: Path, out: Path, root: Path, infer_size: int | None = None) -> Path:
    """Train stage 1 as ``cfg`` says (in ``work``) and write the float16 bundle with its card to ``out``."""
    from livercad.pipeline.bundle import write_bundle
    from livercad.pipeline.training.orchestrate import cohort_rows
    from livercad.pipeline.training.preflight import ensure_run_weights
    from livercad.segment.fit import train_segmenter

    ensure_run_weights(cfg, segment=True)  # offline without cached encoder weights: fail before the cohort is made
    commit = git_commit(root)
    t0 = time.perf_counter()
    rows = cohort_rows(cfg, work)
    data_s = time.perf_counter() - t0
    ckpt = train_segmenter(rows, cfg, work / "segment", progress=False)
    wall_s = time.perf_counter() - t0
    provenance = {"release": {"commit": commit, "wall_seconds": round(wall_s, 1),
                              "data_seconds": round(data_s, 1), "n_cases": len(rows),
                              "n_train_cases": sum(r.split == "train" for r in rows)}}
    out.mkdir(parents=True, exist_ok=True)
    half = half_checkpoint(ckpt, work / "segmenter_fp16.pt", provenance, infer_size)
    write_bundle(out, segmenter=half, classifier=None, config=cfg, extra=provenance)
    write_card(out)
    return out


def _real_rows(results: dict[str, Any]) -> list[str]:
    rows = ["| scan | Dice | HD95 (mm) | in-plane MSD (mm) | volume error |", "|---|---|---|---|---|"]
    for name, r in results.get("real", {}).items():
        if r.get("status") == "ok":
            rows.append(f"| {name} | {r['dice']:.3f} | {r['hd95_mm']:.1f} | {r.get('msd_inplane_mm', float('nan')):.1f}"
                        f" | {100 * r['volume_error_rel']:+.1f} % |")
        else:
            rows.append(f"| {name} | {r.get('status')} | | | |")
    for mod, p in results.get("phantom", {}).items():
        if p.get("status") == "ok":
            d = p["dice"]
            rows.append(f"| phantom {mod}, {d['n']} test cases | {d['mean']:.3f} (min {d['min']:.3f}) | | | |")
    return rows


def _cases(rel: dict[str, Any], ph: dict[str, Any]) -> str:
    """How many cases of which phantom: randomised, and the classic ``data.phantom.anchor`` cases beside them."""
    n, anchor = rel.get("n_cases"), int(ph.get("anchor") or 0)
    if not anchor or not isinstance(n, int):
        return f"{n} randomised phantom cases"
    return (f"{n - anchor} randomised phantom cases and {anchor} classic phantom {ph.get('modality', 'ct')} cases "
            f"({ph.get('ct_phase', 'portal-venous')}, `data.phantom.anchor`)")


def write_card(bundle: Path, results: dict[str, Any] | None = None) -> Path:
    """Write ``MODEL_CARD.md`` of a bundle from its metadata (and the real-scan figures when given)."""
    meta = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    _, seg = load_stage(bundle / "segmenter.pt", SegmenterMeta)
    rel, hist, ph, pp = seg.release or {}, seg.history or {}, seg.phantom or {}, seg.preprocessing
    lines = [
        "# livercad default liver model (stage 1)", "",
        "**Trained on the phantom only**: livercad's synthetic abdominal phantom with domain randomisation "
        "(`livercad.phantom.synth`). No real scan was used to train or fine-tune it.", "",
        f"- architecture: {seg.arch} / {seg.encoder}, decoder {seg.decoder_channels}, "
        f"2.5-D context {seg.context}, trained at {seg.trained_image_size} px, runs at "
        f"{pp.image_size} px (`benchmarks/bench_resolution.py`), stored as float16",
        f"- modalities: {', '.join(pp.modalities)} "
        f"(CT window {list(pp.ct_window)} HU; MR percentiles {list(pp.percentiles)})",
        f"- training data: {_cases(rel, ph)} ({rel.get('n_train_cases')} train), "
        f"generator settings {json.dumps(ph)}",
        f"- training: {hist.get('steps')} steps (best at step {hist.get('best_step')}, validation Dice on "
        f"the phantom {hist.get('best_val_dice', float('nan')):.3f}), seed {seg.seed}, weights "
        f"init {seg.weights.get('source')}",
        f"- post-processing at prediction: threshold {seg.postprocess.threshold}, largest component "
        f"{seg.postprocess.largest_component}, waist cut {seg.postprocess.waist_cut} (`livercad.segment.waist`), "
        f"hole filling {seg.postprocess.fill_holes}",
        f"- wall time of `make model`: {rel.get('wall_seconds')} s on this machine; commit {rel.get('commit')}",
        f"- domain: {meta.get('domain')}", "",
    ]
    if results:
        lines += ["## Measured on real scans (`benchmarks/accept_real.py`)", "",
                  f"Run {results.get('date')} at commit {results.get('commit')}; references are TotalSegmentator "
                  "masks (themselves about 0.965 Dice against manual labels).", "", *_real_rows(results), ""]
    else:
        lines += ["Real-scan figures: not measured for this build (run `benchmarks/accept_real.py`).", ""]
    path = bundle / CARD
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: build the default model, or (``--card-results``) add measured figures to its card."""
    from livercad.models import default_bundle_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/model.yaml")
    ap.add_argument("--work", type=Path, default=Path("build/model"))
    ap.add_argument("--out", type=Path, default=default_bundle_path())
    ap.add_argument("--infer-size", type=int, help="in-plane model size the shipped model runs at (default: trained)")
    ap.add_argument("--card-results", type=Path, help="accept_real JSON: only rewrite the card with its figures")
    args = ap.parse_args(argv)
    if args.card_results:
        write_card(args.out, json.loads(args.card_results.read_text(encoding="utf-8")))
        return
    torch.manual_seed(0)
    build(load_config(args.config), args.work, args.out, Path.cwd(), args.infer_size)


if __name__ == "__main__":
    main()
