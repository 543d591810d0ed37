"""The ablation's cases, from the stage-1 cache: the patient-level split and the saliency cases.

Every arm trains and is evaluated on the same :class:`AblationSplit` of one stage-1 cache
(:func:`livercad.pipeline.training.orchestrate.stage1_cache`): the rows' ``split`` decides, labels are the
``classify.classes`` (test and val cases of another label are left out; train cases are resolved by the
classifier's training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livercad.config import Config
from livercad.errors import InputError
from livercad.types import CaseSlices, Stage1Case


@dataclass(frozen=True)
class AblationSplit:
    """The stage-2 inputs of each split, and the stage-1 Dice (original grid) of the test cases."""

    train: list[CaseSlices]
    val: list[CaseSlices]
    test: list[CaseSlices]
    dice: np.ndarray


def split_cohort(cfg: Config, stage1: list[Stage1Case]) -> AblationSplit:
    """The split of the stage-1 cache by its rows' ``split``.

    Raises:
        InputError: a split has no case, or the test split has fewer than two of the classes.
    """
    from livercad.classify.data import resolve_labels

    classes = list(cfg.classify.classes)
    by = {k: [s for s in stage1 if s.row.split == k] for k in ("train", "val", "test")}
    empty = [k for k, v in by.items() if not v]
    if empty:
        raise InputError(None, f"ablation: the cohort has no '{'/'.join(empty)}' cases; every case needs a "
                               "split (train/val/test) by patient")
    test, _ = resolve_labels([s.stage2 for s in by["test"]], classes)
    dice_of = {s.stage2.case_id: float(s.seg_metrics.get("dice", np.nan)) for s in by["test"]}
    if len({int(c.label) for c in test if c.label is not None}) < 2:
        raise InputError(None, f"ablation: the test split needs cases of at least two of {classes}")
    return AblationSplit([s.stage2 for s in by["train"]], resolve_labels([s.stage2 for s in by["val"]], classes)[0],
                         test, np.array([dice_of[c.case_id] for c in test]))


def saliency_cases(cases: list[CaseSlices], n: int) -> list[CaseSlices]:
    """Up to ``n`` test cases with ground truth, alternating between classes (deterministic)."""
    with_gt = sorted((c for c in cases if c.gt is not None), key=lambda c: c.case_id)
    by_class: dict[int, list[CaseSlices]] = {}
    for c in with_gt:
        by_class.setdefault(int(c.label or 0), []).append(c)
    rank = {id(c): i for group in by_class.values() for i, c in enumerate(group)}
    return sorted(with_gt, key=lambda c: (rank[id(c)], int(c.label or 0)))[:n]


__all__ = ["AblationSplit", "saliency_cases", "split_cohort"]
