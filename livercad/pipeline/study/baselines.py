"""The ablation's arms beside the trained regions: another tool's masks, and the CT attenuation rule.

* ``external-mask``: the ``mask`` region drawn with another tool's liver mask (``CaseSlices.external``: from
  ``data.external_masks``, or ``degraded:<dice>``, each case's ground truth eroded in model space to that Dice,
  the phantom's stand-in for another tool). The classifier trains and is tested on those masks, like the
  published two-stage studies that feed nnU-Net masks to a masked ResNet.
* ``attenuation/youden`` and ``attenuation/40HU`` (and ``attenuation/liver-spleen`` where every case has a
  spleen mask): :mod:`livercad.classify.attenuation` on each case's mean liver HU inside the predicted mask;
  the threshold fitted by Youden's J on the training cases, or the literature's. They are one "seed" each (the
  rule has no randomness) and go through the same statistics, CIs and paired tests as the deep arms.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from livercad.config import Config
from livercad.errors import ConfigError
from livercad.pipeline.study.ablation_data import AblationSplit
from livercad.types import CaseSlices

log = logging.getLogger(__name__)

EXTERNAL = "external-mask"
POSITIVE = "steatosis"


def degraded_spec(spec: str | None) -> float | None:
    """The target Dice of ``degraded:<dice>``, else ``None``.

    Raises:
        ConfigError: a ``degraded:`` value that is not a number in (0, 1].
    """
    if spec is None or not str(spec).startswith("degraded:"):
        return None
    try:
        target = float(str(spec).split(":", 1)[1])
    except ValueError:
        target = -1.0
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"data.external_masks {spec!r}: expected degraded:<dice> with a Dice in (0, 1]")
    return target


def with_degraded_external(cases: list[CaseSlices], target: float, seed: int = 0) -> list[CaseSlices]:
    """Cases whose ``external`` mask is their ground truth eroded to Dice ``target`` (without one: unchanged)."""
    from livercad.pipeline.study.degrade import degrade_to_dice

    out = []
    for i, c in enumerate(cases):
        if c.gt is None or not bool(c.gt.any()):
            out.append(c)
            continue
        d = degrade_to_dice(c.gt, c.gt, target, op="erode", seed=seed + i)
        out.append(replace(c, external=torch.as_tensor(np.asarray(d.mask).astype(np.uint8))))
    return out


def external_split(cfg: Config, data: AblationSplit, arms: list[Any]) -> tuple[AblationSplit, list[Any], list[str]]:
    """The split with external masks attached (``degraded:<dice>``), and the arms left (``external-mask`` arms
    are dropped, with a note, when some case has no external mask)."""
    target = degraded_spec(cfg.data.external_masks)
    if target is not None:
        data = AblationSplit(*(with_degraded_external(cases, target, cfg.seed)
                               for cases in (data.train, data.val, data.test)), data.dice)
    if any(a.region == EXTERNAL for a in arms) and not has_external(data):
        note = "external-mask arms skipped: some cases have no external mask (set data.external_masks)"
        return data, [a for a in arms if a.region != EXTERNAL], [note]
    return data, arms, []


def rule_statistics(cfg: Config, data: AblationSplit, phases: set[str | None], y: np.ndarray,
                    groups: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The attenuation arms' statistics (as the trained arms': ``arm_statistics``) and notes; none unless
    ``ablation.attenuation``."""
    from livercad.pipeline.study.ablation_stats import arm_statistics

    if not cfg.ablation.attenuation:
        return [], []
    runs, notes = attenuation_arms(cfg, data, phases)
    stats = [{"name": name, "region": "attenuation", "strategy": "rule", "backbone": "-",
              **arm_statistics(r, y, cfg.classify.classes, groups, dice=data.dice, n_boot=cfg.ablation.n_boot,
                               seed=cfg.seed)} for name, r in runs.items()]
    return stats, notes


def external_view(data: AblationSplit) -> AblationSplit:
    """The split with each case's mask and probability replaced by its external mask (the ``mask`` region then
    shows the other tool's liver)."""
    def swap(cases: list[CaseSlices]) -> list[CaseSlices]:
        out = []
        for c in cases:
            ext = torch.as_tensor(np.asarray(c.external)).to(torch.uint8)
            out.append(replace(c, mask=ext, prob=ext.to(c.prob.dtype)))
        return out

    return AblationSplit(swap(data.train), swap(data.val), swap(data.test), data.dice)


def has_external(data: AblationSplit) -> bool:
    """Every case of every split has an external mask."""
    return all(c.external is not None for c in data.train + data.val + data.test)


def attenuation_arms(cfg: Config, data: AblationSplit, phases: set[str | None]
                     ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The attenuation-rule arms' runs (``{name: [run]}``, the run format of the trained arms) and notes.

    No arm (a note says why) when the task is not binary with a ``steatosis`` class, the cases are not CT, or
    the CT is contrast-enhanced and ``ablation.attenuation_force`` is off.
    """
    from livercad.classify.attenuation import check_phase, fit_rule, literature_rule

    classes = list(cfg.classify.classes)
    if len(classes) != 2 or POSITIVE not in classes:
        return {}, [f"attenuation arms skipped: they need the binary task normal vs {POSITIVE} (classes {classes})"]
    try:
        status = {check_phase(p, force=cfg.ablation.attenuation_force) for p in phases or {None}}
    except ConfigError as exc:
        return {}, [f"attenuation arms skipped: {exc}"]
    from livercad.classify.data import resolve_labels

    pos = classes.index(POSITIVE)
    train, _ = resolve_labels(data.train, classes)  # train labels by name, as the classifier's training maps them
    y_train = np.array([int(c.label == pos) for c in train])
    if not all("mask" in c.attenuation for c in train + data.test):
        return {}, ["attenuation arms skipped: some cases have no CT liver attenuation (not CT, or empty mask)"]
    notes = [f"attenuation arms: CT phase {', '.join(sorted(status))}"]
    runs: dict[str, list[dict[str, Any]]] = {}
    features = {"liver_hu": lambda c: c.attenuation["mask"]}
    if all("spleen" in c.attenuation for c in train + data.test):
        features["liver_minus_spleen_hu"] = lambda c: c.attenuation["mask"] - c.attenuation["spleen"]
    for feature, value in features.items():
        t0 = time.perf_counter()
        x_train = [value(c) for c in train]
        x_test = [value(c) for c in data.test]
        rules = {"youden": fit_rule(x_train, y_train, feature)}
        if feature == "liver_hu":
            rules["40HU"] = literature_rule(feature)
        for kind, rule in rules.items():
            name = f"attenuation/{kind}" if feature == "liver_hu" else "attenuation/liver-spleen"
            p = rule.probability(x_test)
            proba = np.zeros((len(p), 2))
            proba[:, pos], proba[:, 1 - pos] = p, 1.0 - p
            runs[name] = [{"seed": cfg.seed, "proba_test": proba, "proba_val": None,
                           "val_best": {"accuracy": None, "roc_auc": None},
                           "weights": {"source": "rule", "threshold_hu": rule.threshold, "fitted_on": rule.n_fit},
                           "best_epoch": None, "epochs": 0, "seconds": time.perf_counter() - t0}]
            notes.append(f"{name}: {feature} < {rule.threshold:.1f} HU ({rule.source}"
                         + (f", {rule.n_fit} training cases" if rule.n_fit else "") + ")")
    return runs, notes


__all__ = ["EXTERNAL", "attenuation_arms", "degraded_spec", "external_split", "external_view", "has_external",
           "rule_statistics", "with_degraded_external"]
