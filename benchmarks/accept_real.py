"""Real-scan acceptance: a trained stage-1 model on the real scans of shared/realdata and on unseen phantom cases.

Segments the real CT (whole and cropped) and MR scans of ``shared/realdata`` (see its README) and compares
each with its reference liver mask: Dice, HD95, MSD (3-D and in-plane when the metrics give them),
predicted and reference liver volume (mL), relative volume error and seconds. A case whose files are
missing is reported ``skipped``; one whose modality the model was not trained on ``refused``, with the
reason. Then ``--phantom N`` phantom cases per modality (CT and MR-T2, seeds no training run uses, written
to NIfTI and read back) give mean/min Dice with a bootstrap CI. Prints one JSON object with the targets
and whether each was met (``null``: not measured) and writes it to ``benchmarks/results/``.

    python benchmarks/accept_real.py                                  # the shipped model (livercad/models/liver)
    python benchmarks/accept_real.py --model runs/demo/bundle --tag demo
    python benchmarks/accept_real.py --model seg.pt --image-size 192 --phantom 2 --backend torch --no-save
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import cpu_name, finish

from livercad.errors import InputError
from livercad.io.nifti import load_mask, load_volume, save_volume
from livercad.metrics.segmentation import segmentation_metrics, summarize
from livercad.modality import check_trained_for, family
from livercad.models import default_bundle_path
from livercad.phantom import make_case
from livercad.runtime.weights import sha256_file
from livercad.segment.infer import Segmenter, segment_volume

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
#: case -> (image, reference mask, liver labels of the mask (None: > 0), modality)
REAL_CASES: dict[str, tuple[str, str, list[int] | None, str]] = {
    "ct": ("ct_abdomen_3mm.nii.gz", "ct_abdomen_3mm_liver.nii.gz", None, "ct"),
    "ct_crop": ("ct_abdomen_3mm_crop.nii.gz", "ct_abdomen_3mm_crop_totalseg.nii.gz", [5], "ct"),
    "mr": ("mr_abdomen_3mm.nii.gz", "mr_abdomen_3mm_liver.nii.gz", None, "mr"),
}
PHANTOM_SEED = 900_000  # + 1000 * modality index + case index: no training cohort uses these
PHANTOM_SHAPE = (128, 128, 48)
PHANTOM_ORIENTATIONS = ("RAS", "LPS", "PIR", "oblique")
PHANTOM_LABELS = ("normal", "steatosis", "cirrhosis")
PHANTOM_MODALITIES = {"ct": "ct", "mr-t2": "mr"}  # phantom modality -> modality given to segment_volume
TARGETS = {"real_ct_dice": 0.95, "real_mr_dice": 0.92, "ct_volume_error": 0.05, "phantom_dice": 0.95}


def git_commit() -> str:
    """Short hash of the checked-out commit, ``unknown`` when git cannot tell."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def checkpoint_path(model: str | None) -> Path | None:
    """``segmenter.pt`` of ``model`` (a bundle folder or the file itself; default: the shipped bundle)."""
    path = Path(model) if model else default_bundle_path()
    path = path / "segmenter.pt" if path.is_dir() or not path.suffix else path
    return path if path.is_file() else None


def load_segmenter(path: Path, backend: str, precision: str,
                   image_size: int | None) -> tuple[Segmenter, dict[str, Any]]:
    """The segmenter on ``backend`` and its trained preprocessing; ``image_size`` replaces the in-plane model size."""
    if image_size is None:
        seg = Segmenter.load(path, backend=backend, precision=precision)
        return seg, seg.preprocessing
    seg = Segmenter.load(path, backend="torch", precision=precision)
    meta = {**seg.meta, "preprocessing": {**seg.preprocessing, "image_size": int(image_size)}}
    return Segmenter.from_model(seg.model, meta, backend=backend, precision=precision), seg.preprocessing


def model_info(path: Path, seg: Segmenter, trained: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    """Provenance of the evaluated model: file, hash, training domain, preprocessing, steps, backend."""
    history = seg.meta.get("history") or {}
    note = f"evaluated at image_size {image_size}, trained at {trained.get('image_size')}" if image_size else None
    return {"path": str(path), "sha256": sha256_file(path), "training_domain": seg.meta.get("training_domain"),
            "preprocessing": trained, "history_steps": history.get("steps"),
            "modalities": seg.modalities, "backend": seg.backend, "precision": seg.precision,
            "image_size_override": image_size, "note": note}


def _clean(value: Any) -> Any:
    """Floats rounded to 4 decimals, NaN/Inf as ``None`` (plain JSON)."""
    if isinstance(value, float | np.floating):
        return round(float(value), 4) if math.isfinite(value) else None
    return value


def score(seg: Segmenter, vol: Any, ref: np.ndarray, modality: str, c2f: bool) -> dict[str, Any]:
    """Segment ``vol`` as ``modality`` and compare with ``ref``: every metric the package gives, seconds."""
    t0 = time.perf_counter()
    out = segment_volume(seg, vol, batch_size=4, coarse_to_fine=c2f, modality=modality, keep_prob=False)
    seconds = time.perf_counter() - t0
    m = segmentation_metrics(out.segmentation.mask.astype(bool), ref.astype(bool), vol.spacing)
    row = {k: _clean(v) for k, v in m.items()}
    row["pred_volume_ml"], row["seconds"] = row.get("volume_ml"), round(seconds, 2)
    row["seconds_stages"] = {k: round(v, 2) for k, v in out.seconds.items()}
    return row


def refusal(seg: Segmenter, modality: str) -> str | None:
    """Why ``seg`` refuses ``modality`` (the package's one-line message), ``None`` when it accepts it."""
    try:
        check_trained_for(family(modality), seg.modalities, "the segmenter")
    except InputError as exc:
        return str(exc)
    return None


def real_case(seg: Segmenter, folder: Path, name: str, c2f: bool) -> dict[str, Any]:
    """One real case: ``skipped`` (files missing), ``refused`` (modality), ``error`` (unreadable) or ``ok``."""
    image, mask, labels, modality = REAL_CASES[name]
    head = {"image": image, "reference": mask, "liver_labels": labels, "modality": modality}
    missing = [f for f in (image, mask) if not (folder / f).is_file()]
    if missing:
        return head | {"status": "skipped", "reason": f"missing in {folder}: {', '.join(missing)}"}
    reason = refusal(seg, modality)
    if reason:
        return head | {"status": "refused", "reason": reason}
    try:
        vol = load_volume(folder / image)
        ref = load_mask(folder / mask, vol, liver_labels=labels)
    except InputError as exc:
        return head | {"status": "error", "reason": str(exc)}
    return head | {"status": "ok", "shape": list(vol.shape), "spacing_mm": [round(s, 3) for s in vol.spacing],
                   **score(seg, vol, ref, modality, c2f)}


def phantom_test_case(modality: str, i: int) -> tuple[Any, dict[str, Any]]:
    """Phantom test case ``i`` of ``modality`` (a seed no training run uses) and its id, seed, label, orientation."""
    seed = PHANTOM_SEED + 1000 * list(PHANTOM_MODALITIES).index(modality) + i
    label, orientation = PHANTOM_LABELS[i % len(PHANTOM_LABELS)], PHANTOM_ORIENTATIONS[i % len(PHANTOM_ORIENTATIONS)]
    case = make_case(f"accept_{modality}_{i}", modality=modality, label=label, seed=seed, shape=PHANTOM_SHAPE,
                     orientation=orientation)
    return case, {"case_id": case.case_id, "seed": seed, "label": label, "orientation": orientation}


def phantom_case(seg: Segmenter, modality: str, i: int, work: Path, c2f: bool) -> dict[str, Any]:
    """Generate test case ``i``, write it as NIfTI, read it back and score the segmentation."""
    case, head = phantom_test_case(modality, i)
    img = save_volume(case.image, case.affine, work / f"{case.case_id}.nii.gz")
    msk = save_volume(case.mask, case.affine, work / f"{case.case_id}_liver.nii.gz", dtype=np.uint8)
    vol = load_volume(img)
    return head | score(seg, vol, load_mask(msk, vol), PHANTOM_MODALITIES[modality], c2f)


def run_phantom(seg: Segmenter, n: int, work: Path, c2f: bool) -> dict[str, Any]:
    """``n`` phantom test cases per modality: per case figures and the Dice/HD95 summaries."""
    out: dict[str, Any] = {}
    for modality, given in PHANTOM_MODALITIES.items():
        reason = refusal(seg, given)
        if n <= 0 or reason:
            out[modality] = {"status": "refused" if reason else "skipped", "reason": reason or "--phantom 0"}
            continue
        cases = [phantom_case(seg, modality, i, work, c2f) for i in range(n)]
        dices = [c["dice"] if c["dice"] is not None else math.nan for c in cases]
        hd95 = [c["hd95_mm"] if c["hd95_mm"] is not None else math.nan for c in cases]
        out[modality] = {"status": "ok", "shape": list(PHANTOM_SHAPE), "cases": cases,
                         "dice": {k: _clean(v) for k, v in summarize(dices).items()},
                         "dice_min": _clean(float(np.nanmin(dices)) if not np.all(np.isnan(dices)) else math.nan),
                         "hd95_mm": {k: _clean(v) for k, v in summarize(hd95).items()}}
    return out


def _worst(values: list[float | None], lowest: bool) -> float | None:
    """The weakest measured figure (lowest Dice / largest error); ``None`` when nothing was measured."""
    got = [v for v in values if v is not None]
    return (min(got) if lowest else max(got)) if got else None


def measured(real: dict[str, Any], phantom: dict[str, Any]) -> dict[str, float | None]:
    """Figure behind each target: the weakest real CT case (whole scan and crop), the MR case, the
    largest |relative volume error| of the real CT cases, the lowest phantom mean Dice over modalities."""
    ok = {k: v for k, v in real.items() if v["status"] == "ok"}
    ct = [v for v in ok.values() if v["modality"] == "ct"]
    vol_err = [abs(v["volume_error_rel"]) if v.get("volume_error_rel") is not None else None for v in ct]
    return {"real_ct_dice": _worst([v["dice"] for v in ct], True),
            "real_mr_dice": _worst([v["dice"] for v in ok.values() if v["modality"] == "mr"], True),
            "ct_volume_error": _worst(vol_err, False),
            "phantom_dice": _worst([p["dice"]["mean"] for p in phantom.values() if p["status"] == "ok"], True)}


def met(figures: dict[str, float | None]) -> dict[str, bool | None]:
    """Whether each target is met (Dice >= target, volume error <= target); ``None``: not measured."""
    return {k: None if figures[k] is None else bool(figures[k] <= t if k == "ct_volume_error" else figures[k] >= t)
            for k, t in TARGETS.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", help="bundle folder or segmenter.pt (default: the shipped livercad/models/liver)")
    ap.add_argument("--realdata", type=Path, default=REALDATA, help=f"real scans folder (default: {REALDATA})")
    ap.add_argument("--phantom", type=int, default=6, help="phantom test cases per modality (default 6)")
    ap.add_argument("--image-size", type=int, help="evaluate at this in-plane model size instead of the trained one")
    ap.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto", help="inference backend")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="inference precision (default auto: bf16 where the device runs it natively)")
    ap.add_argument("--no-coarse-to-fine", action="store_true", help="segment every slice")
    ap.add_argument("--no-save", action="store_true", help="print only, do not write benchmarks/results/")
    ap.add_argument("--tag", default="", help="suffix of the result file name (accept_real_<tag>)")
    ap.add_argument("--json-out", type=Path, help="also write the JSON here (make model reads it for the card)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the model on the real and phantom cases; print, save and return the JSON object."""
    args = parse_args(argv)
    path = checkpoint_path(args.model)
    if path is None:
        raise SystemExit(f"accept_real: no segmenter.pt at {args.model or default_bundle_path()}; build the "
                         "default model with 'make model' or pass --model BUNDLE|segmenter.pt")
    seg, trained = load_segmenter(path, args.backend, args.precision, args.image_size)
    c2f = not args.no_coarse_to_fine
    result: dict[str, Any] = {
        "benchmark": "accept_real", "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
        "machine": {"cpu_name": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "device": str(seg.device)},
        "model": model_info(path, seg, trained, args.image_size), "coarse_to_fine": c2f, "realdata": str(args.realdata),
        "real": {name: real_case(seg, args.realdata, name, c2f) for name in REAL_CASES},
    }
    with tempfile.TemporaryDirectory(prefix="accept_real_") as tmp:
        result["phantom"] = run_phantom(seg, args.phantom, Path(tmp), c2f)
    result["targets"], result["measured"] = TARGETS, measured(result["real"], result["phantom"])
    result["met"] = met(result["measured"])
    text = finish(result, "accept_real" + (f"_{args.tag}" if args.tag else ""), save=not args.no_save)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
