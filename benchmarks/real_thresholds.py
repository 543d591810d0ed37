"""Liver Dice and volume error of one stage-1 model at several mask thresholds, on the real scans and the phantom.

A measuring aid for the mask threshold (issue 19): each case is segmented once (``accept_real.py``'s
model loading, fp32, torch) and its probability map is post-processed at every threshold with the rest of
the model's own post-processing (largest component, waist cut, hole filling). Real cases are those of
``../shared/realdata`` that are there (``skipped`` otherwise; ``refused`` for a modality the model was not
trained on); phantom cases are ``accept_real.py``'s first ``--phantom`` test
cases per modality (same seeds, labels and orientations). Prints one JSON object and writes it to
``benchmarks/results/`` unless ``--no-save``. The real scans are the test: a threshold chosen on them is
tuned on them.

    python benchmarks/real_thresholds.py                                  # the shipped model, 0.3 0.4 0.5
    python benchmarks/real_thresholds.py --model runs/demo/bundle --thresholds 0.2 0.5 --phantom 0 --no-save
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from accept_real import (
    PHANTOM_MODALITIES,
    REAL_CASES,
    REALDATA,
    checkpoint_path,
    git_commit,
    load_segmenter,
    phantom_test_case,
    refusal,
)
from bench_common import cpu_name, finish

from livercad.io.nifti import load_mask, load_volume
from livercad.metrics.segmentation import dice
from livercad.segment.infer import Segmenter, segment_prepared
from livercad.segment.postprocess import postprocess_mask
from livercad.types import Volume


def sweep(seg: Segmenter, vol: Volume, truth: np.ndarray, modality: str,
          thresholds: list[float]) -> dict[str, dict[str, float]]:
    """``{threshold: {dice, volume_error_rel}}`` of one case, segmented once, post-processed per threshold."""
    prepared = seg.prepare(vol, modality)
    canon = prepared.to_canonical(segment_prepared(seg, prepared, batch_size=4))
    ref = truth.astype(bool)
    out: dict[str, dict[str, float]] = {}
    for t in thresholds:
        cfg = seg.postprocess.model_copy(update={"threshold": t})
        mask = prepared.canonical_to_original(postprocess_mask(canon, cfg)) > 0
        err = float(mask.sum()) / max(float(ref.sum()), 1.0) - 1.0
        out[f"{t:g}"] = {"dice": round(dice(mask, ref, empty="zero"), 4), "volume_error_rel": round(err, 4)}
    return out


def phantom_volume(modality: str, i: int) -> tuple[Volume, np.ndarray]:
    """``accept_real.py``'s phantom test case ``i`` of ``modality`` as a volume and its liver mask."""
    case, _ = phantom_test_case(modality, i)
    spacing = tuple(float(s) for s in np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0)))
    return Volume(case.image.astype(np.float32), case.affine, None, spacing), case.mask > 0


Measure = Callable[[Volume, np.ndarray, str], dict[str, Any]]
"""What a measuring script does with one case: ``(volume, reference mask, modality) -> figures``."""


def over_real(seg: Segmenter, folder: Path, measure: Measure) -> dict[str, Any]:
    """``measure`` on each real scan of ``folder`` (:data:`accept_real.REAL_CASES`): ``{case: figures}``, or
    ``{status: skipped | refused, reason}`` when its files are missing or ``seg`` was not trained for its modality."""
    real: dict[str, Any] = {}
    for name, (image, ref, labels, modality) in REAL_CASES.items():
        if not ((folder / image).is_file() and (folder / ref).is_file()):
            real[name] = {"status": "skipped", "reason": f"missing in {folder}"}
        elif reason := refusal(seg, modality):
            real[name] = {"status": "refused", "reason": reason}
        else:
            vol = load_volume(folder / image)
            real[name] = measure(vol, load_mask(folder / ref, vol, liver_labels=labels), modality)
    return real


def over_phantom(seg: Segmenter, n: int, measure: Measure) -> dict[str, Any]:
    """``measure`` on ``accept_real.py``'s first ``n`` phantom test cases of each modality ``seg`` takes."""
    return {f"{mod}_{i}": measure(*phantom_volume(mod, i), fam)
            for mod, fam in PHANTOM_MODALITIES.items() if not refusal(seg, fam) for i in range(n)}


def measuring_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every real-scan measuring script has: ``--model``, ``--phantom``, ``--realdata``, ``--no-save``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundle folder or segmenter.pt (default: the shipped model)")
    ap.add_argument("--phantom", type=int, default=2, help="phantom test cases per modality")
    ap.add_argument("--realdata", type=Path, default=REALDATA)
    ap.add_argument("--no-save", action="store_true")
    return ap


def model_path(model: str | None) -> Path:
    """``segmenter.pt`` of ``--model`` (:func:`accept_real.checkpoint_path`); exits with a message without one."""
    path = checkpoint_path(model)
    if path is None:
        raise SystemExit(f"no segmenter at {model or 'the shipped model'}")
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = measuring_parser(__doc__)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    ap.add_argument("--image-size", type=int, help="in-plane model size (default: the model's own)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the sweep; returns the printed result."""
    args = parse_args(argv)
    path = model_path(args.model)
    seg, _ = load_segmenter(path, "torch", "fp32", args.image_size)

    def measure(vol: Volume, ref: np.ndarray, modality: str) -> dict[str, Any]:
        return sweep(seg, vol, ref, modality, args.thresholds)

    real, phantom = over_real(seg, args.realdata, measure), over_phantom(seg, args.phantom, measure)
    result = {"benchmark": "real_thresholds", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "commit": git_commit(), "cpu": cpu_name(), "model": str(path),
              "image_size": int(seg.preprocessing["image_size"]), "postprocess": seg.postprocess.model_dump(),
              "thresholds": args.thresholds, "real": real, "phantom": phantom}
    finish(result, "real_thresholds", save=not args.no_save)
    return result


if __name__ == "__main__":
    main()
