"""Segmentation-impact ablation: region × strategy × backbone arms, repeated seeds, paired statistics.

Every arm trains on the same patient-level split (the rows' ``split``: train to fit, val to select,
test to evaluate) from the same stage-1 cache (never re-segmented); seed ``i`` trains with
``cfg.seed + i``. Frozen arms share backbone features through one cache. Every arm uses the
``classify`` settings, except region/strategy/backbone (the grid) and, when set, ``ablation.train``
(training budget) and ``ablation.image_size`` (:func:`arm_classify_config`).

This module orchestrates; the statistics (per seed, mean ± SD over seeds, seed-averaged "pooled"
predictions with patient-bootstrap CIs, McNemar / χ² / DeLong against the reference arm, Holm) are
:mod:`livercad.pipeline.study.ablation_stats`. Plus the mask-quality curve (:mod:`livercad.pipeline.study.degrade`),
inside-liver attention (gradient × input or Grad-CAM, :mod:`livercad.pipeline.study.saliency`), the val→test gap
(shortcut study) and the report (:mod:`livercad.report.ablation_page`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livercad.config import ClassifyConfig, Config
from livercad.errors import ConfigError
from livercad.metrics.paired import compare
from livercad.pipeline.study.ablation_data import AblationSplit, saliency_cases, split_cohort
from livercad.pipeline.study.ablation_stats import SCALARS, arm_statistics, compare_to_reference
from livercad.pipeline.study.baselines import EXTERNAL, external_split, external_view, rule_statistics
from livercad.runtime.progress import Progress
from livercad.types import Stage1Case

log = logging.getLogger(__name__)

QUALITY_REGIONS = ("mask", "prob-mask", "mask-crop", "crop", "mask-channel")


@dataclass(frozen=True)
class Arm:
    """One cell of the grid; ``name`` is ``region/strategy`` (plus ``/backbone`` with several backbones)."""

    region: str
    strategy: str
    backbone: str
    name: str


def arm_grid(cfg: Config) -> list[Arm]:
    """The arms of ``cfg.ablation``, the reference region first (added when not listed).

    Example:
        >>> from livercad.config import load_config
        >>> [a.name for a in arm_grid(load_config(None, ["ablation.regions=[mask]", "ablation.strategies=[frozen]"]))]
        ['full/frozen', 'mask/frozen']
    """
    from livercad.classify.model import parse_strategy
    from livercad.classify.regions import get_region

    ab = cfg.ablation
    regions = list(dict.fromkeys([ab.reference, *ab.regions]))
    if ab.reference not in ab.regions:
        log.info("ablation: reference region '%s' added to the arms %s", ab.reference, ab.regions)
    for r in regions:
        if r != EXTERNAL:  # the `mask` region on another tool's masks (livercad.pipeline.study.baselines)
            get_region(r)
    for s in ab.strategies:
        parse_strategy(s)
    if not ab.strategies or not ab.backbones:
        raise ConfigError(f"ablation: need at least one strategy and backbone, got {ab.strategies} / {ab.backbones}")
    multi = len(ab.backbones) > 1
    return [Arm(r, s, b, f"{r}/{s}" + (f"/{b}" if multi else ""))
            for b in ab.backbones for s in ab.strategies for r in regions]


def arm_classify_config(cfg: Config, arm: Arm) -> ClassifyConfig:
    """The classifier settings of one arm: ``cfg.classify`` with the arm's region, strategy and backbone.

    ``ablation.train`` and ``ablation.image_size``, when set, replace ``classify.train`` and
    ``classify.image_size`` (every arm alike); ``scratch`` arms never load pretrained weights.

    Example:
        >>> from livercad.config import load_config
        >>> cfg = load_config(None, ["ablation.image_size=64", "ablation.train={max_epochs: 2}"])
        >>> c = arm_classify_config(cfg, arm_grid(cfg)[0])
        >>> c.region, c.image_size, c.train.max_epochs, cfg.classify.image_size
        ('full', 64, 2, 224)
    """
    ab = cfg.ablation
    update: dict[str, Any] = {"region": "mask" if arm.region == EXTERNAL else arm.region, "strategy": arm.strategy,
                              "backbone": arm.backbone,
                              "weights": "none" if arm.strategy == "scratch" else cfg.classify.weights}
    if ab.train is not None:
        update["train"] = ab.train
    if ab.image_size is not None:
        update["image_size"] = ab.image_size
    return cfg.classify.model_copy(update=update)


def _log_overrides(cfg: Config) -> None:
    ab = cfg.ablation
    if ab.train is not None or ab.image_size is not None:
        log.info("ablation: every arm trains with %s and image size %d (ablation overrides of classify.train/"
                 "image_size)", (ab.train or cfg.classify.train).model_dump(exclude_defaults=True),
                 ab.image_size or cfg.classify.image_size)


def _train_arm(cfg: Config, arm: Arm, data: AblationSplit, cache: dict[Any, Any], bar: Progress) -> dict[str, Any]:
    """Train all seeds of one arm; keep seed 0's classifier for saliency and the mask-quality curve."""
    from livercad.classify.fit import train_classifier
    from livercad.classify.infer import predict_cases

    ccfg, runs, clf0 = arm_classify_config(cfg, arm), [], None
    for i in range(cfg.ablation.seeds):
        t = time.perf_counter()
        tr = train_classifier(data.train, data.val, ccfg, None, seed=cfg.seed + i, progress=False,
                              feature_cache=cache)
        best = next((h for h in tr.history if h.get("epoch") == tr.meta.get("best_epoch")), {})
        runs.append({"seed": cfg.seed + i, "proba_test": predict_cases(tr, data.test),
                     "proba_val": predict_cases(tr, data.val) if data.val and _shortcut_on(cfg) else None,
                     "val_best": {"accuracy": best.get("val_accuracy"), "roc_auc": best.get("val_auc")},
                     "weights": tr.meta.get("weights"), "best_epoch": tr.meta.get("best_epoch"),
                     "epochs": len(tr.history), "seconds": time.perf_counter() - t})
        clf0 = clf0 or tr.classifier
        bar.advance(f"{arm.name} seed {cfg.seed + i} ({runs[-1]['seconds']:.0f} s, {runs[-1]['epochs']} epochs)")
    return {"runs": runs, "classifier": clf0}


def _arm_stats(cfg: Config, arm: Arm, trained: dict[str, Any], data: AblationSplit, y: np.ndarray,
               groups: list[str]) -> dict[str, Any]:
    stats = arm_statistics(trained["runs"], y, cfg.classify.classes, groups, dice=data.dice,
                           y_val=np.array([int(c.label) for c in data.val]) if data.val else None,
                           n_boot=cfg.ablation.n_boot, seed=cfg.seed)
    return {"name": arm.name, "region": arm.region, "strategy": arm.strategy, "backbone": arm.backbone, **stats}


def _quality_region(arms: list[Arm]) -> str | None:
    """The region whose arms get the mask-quality curve: the first of :data:`QUALITY_REGIONS` in the grid."""
    return next((r for r in QUALITY_REGIONS if any(a.region == r for a in arms)), None)


def _quality(cfg: Config, arms: list[Arm], trained: dict[str, dict[str, Any]], data: AblationSplit) -> dict[str, Any]:
    from livercad.pipeline.study.degrade import mask_quality_curve

    region = _quality_region(arms)
    cases = [c for c in data.test if c.gt is not None and bool(c.gt.any())]
    if region is None or len(cases) < 2:
        return {"rows": [], "note": "skipped: no arm uses the predicted mask, or too few test cases with ground truth"}
    # one arm (cost): the '<region>' arm with the best validation AUC (mean over seeds of the best epoch)
    cands = [a for a in arms if a.region == region]
    def val_auc(a: Arm) -> float:
        v = [r["val_best"]["roc_auc"] for r in trained[a.name]["runs"] if r["val_best"]["roc_auc"] is not None]
        return float(np.nanmean(v)) if v and np.isfinite(v).any() else -1.0

    arm = max(cands, key=val_auc)
    rows = mask_quality_curve({arm.name: trained[arm.name]["classifier"]}, cases,
                              list(cfg.ablation.mask_quality_targets), seed=cfg.seed)
    return {"region": region, "arm": arm.name, "rows": rows, "n_cases": len(cases),
            "note": f"seed-{cfg.seed} classifier of the '{arm.name}' arm (the '{region}' arm with the best "
                    f"validation AUC) on the test cases with their predicted masks degraded to each target Dice"}


def _shortcut_on(cfg: Config) -> bool:
    return bool(cfg.data.manifest is None and cfg.data.phantom.shortcut)


def _shortcut(cfg: Config, arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Val vs test per arm; with the shortcut cohort, arms losing >= 0.15 accuracy fell for the artifact."""
    enabled, rows = _shortcut_on(cfg), []
    for a in arms:
        if "val" not in a:
            continue
        pooled = a["val"]["source"] == "pooled"
        vt = {k: (a["val"][k], a["pooled"][k]["value"] if pooled else a["mean_sd"][k]["mean"])
              for k in ("accuracy", "roc_auc")}
        drop = vt["accuracy"][0] - vt["accuracy"][1]
        rows.append({"arm": a["name"], "val_accuracy": vt["accuracy"][0], "test_accuracy": vt["accuracy"][1],
                     "accuracy_drop": drop, "val_auc": vt["roc_auc"][0], "test_auc": vt["roc_auc"][1],
                     "val_source": a["val"]["source"], "fell_for_shortcut": bool(enabled and drop >= 0.15)})
    return {"enabled": enabled, "rows": rows, "threshold": 0.15}


def run_ablation(cfg: Config, stage1: list[Stage1Case], out_dir: str | Path, *, progress: bool = True
                 ) -> dict[str, Any]:
    """Run the ablation grid on a stage-1 cache and write ``ablation.html``, ``.csv`` and ``.json``.

    Args:
        cfg: the run config (``classify`` gives the shared classifier settings, ``ablation`` the grid).
        stage1: the stage-1 cache, a :class:`~livercad.types.Stage1Case` of every case (with ``row.split``).
        out_dir: output folder (created).
        progress: a bar over the trainings of every arm and seed (one line per training without a terminal).

    Returns:
        ``report``, ``csv``, ``json`` (paths as str), ``summary_rows`` (``arm``, ``auc``, ``p_delong``),
        ``arms`` (per-arm statistics), ``comparisons``, ``mask_quality``, ``saliency``, ``shortcut``,
        ``timing``.

    Raises:
        InputError: a split is missing or the test split has a single class.
        ConfigError: unknown region, strategy or backbone.
    """
    from livercad.pipeline.training.preflight import ensure_run_weights

    ensure_run_weights(cfg, ablation=True)  # every arm's backbone weights before any arm trains
    return _run(cfg, stage1, Path(out_dir), progress, {})


def _run(cfg: Config, stage1: list[Stage1Case], out_dir: Path, progress: bool, timing: dict[str, float]
         ) -> dict[str, Any]:
    from livercad.pipeline.predict.inputs import case_from_row
    from livercad.pipeline.study.saliency import arm_saliency
    from livercad.report.ablation_page import write_ablation_outputs

    t0 = time.perf_counter()
    data, arms = split_cohort(cfg, stage1), arm_grid(cfg)
    _log_overrides(cfg)
    data, arms, notes = external_split(cfg, data, arms)
    if any(c.gt is None for c in data.train + data.val + data.test):
        arms = [a for a in arms if a.region != "oracle-mask"]
        notes.append("oracle-mask arms skipped: some cases have no ground-truth mask")
    y = np.array([int(c.label) for c in data.test])
    groups = [str(c.patient_id) for c in data.test]
    views = {EXTERNAL: external_view(data)} if any(a.region == EXTERNAL for a in arms) else {}
    caches: dict[bool, dict[Any, Any]] = {}  # frozen features, per view (a case's masks differ between them)
    trained: dict[str, dict[str, Any]] = {}
    stats: list[dict[str, Any]] = []
    saliency: dict[str, Any] = {}
    timing.update({"train_s": 0.0, "saliency_s": 0.0})
    sal_cases = saliency_cases(data.test, cfg.ablation.saliency_cases) if cfg.ablation.saliency else []
    with Progress(len(arms) * cfg.ablation.seeds, enabled=progress, description="ablation") as bar:
        for arm in arms:
            t, view = time.perf_counter(), views.get(arm.region, data)
            trained[arm.name] = _train_arm(cfg, arm, view, caches.setdefault(view is data, {}), bar)
            timing["train_s"] += time.perf_counter() - t
            stats.append(_arm_stats(cfg, arm, trained[arm.name], view, y, groups))
            if sal_cases:
                t = time.perf_counter()
                cases = sal_cases if view is data else saliency_cases(view.test, cfg.ablation.saliency_cases)
                saliency[arm.name] = arm_saliency(trained[arm.name]["classifier"], cases,
                                                  n_boot=cfg.ablation.n_boot, seed=cfg.seed,
                                                  method=cfg.ablation.saliency_method)
                timing["saliency_s"] += time.perf_counter() - t
            if arm.region != _quality_region(arms):
                trained[arm.name]["classifier"] = None  # free memory; only the mask-quality arms are reused
    phases = {case_from_row(s.row).contrast_phase for s in stage1}  # the manifest's, as prediction reads it
    rules, rule_notes = rule_statistics(cfg, data, phases, y, groups)
    stats, notes = stats + rules, notes + rule_notes
    comps = compare_to_reference(stats, cfg.ablation.reference, y, groups, n_boot=cfg.ablation.n_boot, seed=cfg.seed)
    t = time.perf_counter()
    quality = _quality(cfg, arms, trained, data)
    timing["mask_quality_s"] = time.perf_counter() - t
    timing["ablation_total_s"] = time.perf_counter() - t0
    result = {"classes": list(cfg.classify.classes), "reference": cfg.ablation.reference, "arms": stats,
              "comparisons": comps, "mask_quality": quality, "saliency": saliency,
              "shortcut": _shortcut(cfg, stats), "notes": notes, "timing": timing,
              "cases": {"case_id": [c.case_id for c in data.test], "patient_id": groups, "y_true": y,
                        "stage1_dice": data.dice},
              "n": {"train": len(data.train), "val": len(data.val), "test": len(data.test)}, "config": cfg}
    result.update(write_ablation_outputs(result, out_dir))
    return result


def run_ablation_from_config(cfg: Config, out_dir: str | Path, *, progress: bool = True,
                             segmenter: str | Path | None = None) -> dict[str, Any]:
    """Stage 1 once (cohort -> segmenter -> stage-1 cache of every case), then :func:`run_ablation`.

    With ``segmenter`` (a ``segmenter.pt`` or a bundle folder) that trained stage-1 model is reused
    instead of training one; its cohort should not overlap the ablation's test split (the demo's bundle
    was trained on the same phantom seed and split, so its test cases stay unseen).
    With ``data.phantom.shortcut`` and no manifest, the phantom cohort is generated with the site shortcut.
    ``out_dir`` receives ``data/`` (the cohort), ``work/segment/`` (the segmenter) and the ablation outputs.
    """
    from livercad.pipeline.training.orchestrate import cohort_rows, load_stage1, stage1_cache, train_stage1
    from livercad.pipeline.training.preflight import ensure_run_weights

    out = Path(out_dir)
    ensure_run_weights(cfg, ablation=True)  # every arm's backbone weights before any data work (stage 1's: below)
    if segmenter is None:
        s1 = train_stage1(cfg, out, progress=progress)
        stage1, timing = s1.stage1, dict(s1.timing)
    else:
        path = Path(segmenter)
        path = path / "segmenter.pt" if path.is_dir() else path
        t0 = time.perf_counter()
        rows = cohort_rows(cfg, out)
        timing = {"data_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        stage1 = stage1_cache(load_stage1(path, cfg), rows, cfg)
        timing["stage1_inference_s"] = time.perf_counter() - t0
    return _run(cfg, stage1, out, progress, timing)


__all__ = ["SCALARS", "Arm", "arm_classify_config", "arm_grid", "compare", "run_ablation", "run_ablation_from_config"]
