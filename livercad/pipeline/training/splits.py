"""Patient-level train/val/test splits.

A reviewer's first question is whether slices or cases of one patient leaked across splits; here
the unit of assignment is the **patient** (``ManifestRow.patient_id``), never the case or the slice.

Policy of :func:`patient_split`:
    * Rows that already have a ``split`` keep it, and the other cases of the same patient follow
      them. A patient whose preset rows disagree is an error.
    * The remaining patients are distributed so that the *overall* patient counts approach
      ``fractions`` (preset patients count towards their split).
    * Stratification is by label at the patient level (a patient's label is the most common label of
      its cases; ties go to the alphabetically first). Patients are sorted by (label, random key) and
      dealt out by largest remaining quota, so every label is spread over the splits in proportion
      (within about one patient per split and label) and the totals are exact.
    * Deterministic for a given ``seed`` whatever the row order. With at least as many patients as
      splits of non-zero fraction, every such split receives at least one patient.

scikit-learn's splitters were considered: ``StratifiedGroupKFold`` only yields equal folds and
``train_test_split(stratify=...)`` cannot keep groups together nor handle classes with one patient,
so the small deal-out below is used instead.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from livercad.errors import ConfigError, InputError
from livercad.io.manifest import ManifestRow
from livercad.io.manifest_check import SPLITS

logger = logging.getLogger(__name__)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values < 0) or abs(values.sum() - 1) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers (train, val, test) summing to 1, "
                          f"got {tuple(fractions)}")
    return values


def _preset_splits(rows: Sequence[ManifestRow]) -> dict[str, str]:
    """patient -> split for patients with preset rows; raises when a patient's presets disagree."""
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.split:
            if row.split not in SPLITS:
                raise InputError(None, f"case {row.case_id!r} has split {row.split!r}; expected one of {SPLITS}")
            seen[row.patient_id].add(row.split)
    conflicts = {p: s for p, s in seen.items() if len(s) > 1}
    if conflicts:
        raise InputError(None, "patients with cases preset in more than one split: "
                               + ", ".join(f"{p} ({'/'.join(sorted(s))})" for p, s in sorted(conflicts.items())))
    return {p: next(iter(s)) for p, s in seen.items()}


def _patient_labels(rows: Sequence[ManifestRow]) -> dict[str, str]:
    labels: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        labels[row.patient_id][row.label or ""] += 1
    return {p: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for p, c in labels.items()}


def _quotas(n_free: int, n_total: int, fractions: np.ndarray, preset: Counter[str]) -> np.ndarray:
    """Patients each split should receive so that overall counts approach ``fractions``."""
    deficit = np.array([max(0.0, n_total * f - preset[s]) for f, s in zip(fractions, SPLITS, strict=True)])
    if n_free == 0 or deficit.sum() == 0:
        return np.zeros(3, dtype=int)
    exact = n_free * deficit / deficit.sum()
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: n_free - quota.sum()]:
        quota[i] += 1
    for i in range(3):  # every wanted split that is still empty gets at least one patient
        if fractions[i] > 0 and preset[SPLITS[i]] == 0 and quota[i] == 0 and quota.max() > 1:
            quota[int(np.argmax(quota))] -= 1
            quota[i] += 1
    return quota


def _deal(patients: list[str], quota: np.ndarray) -> dict[str, str]:
    """Give each patient (already in stratified order) to the split with the largest remaining quota share."""
    total, given, out = quota.sum(), np.zeros(3, dtype=int), {}
    for k, patient in enumerate(patients, start=1):
        want = quota * k / total - given
        want[given >= quota] = -math.inf
        choice = int(np.argmax(want))
        given[choice] += 1
        out[patient] = SPLITS[choice]
    return out


def patient_split(rows: Sequence[ManifestRow], *, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                  stratify: bool = True) -> list[ManifestRow]:
    """Fill ``split`` by patient: deterministic, stratified by label, never splitting a patient.

    Args:
        rows: Manifest rows; rows with a split keep it (and pull the patient's other cases along).
        fractions: Target patient fractions for (train, val, test).
        seed: Random seed; the same rows and seed always give the same splits.
        stratify: Balance the patients' labels across splits.

    Returns:
        New rows, in the input order, with ``split`` set.

    Raises:
        ConfigError: bad ``fractions``.
        InputError: a preset split value is invalid or a patient is preset in two splits.

    Example:
        >>> from pathlib import Path
        >>> rows = [ManifestRow(f"c{i}", f"p{i // 2}", Path(f"c{i}.nii.gz"), label="ab"[i % 2]) for i in range(10)]
        >>> out = patient_split(rows, seed=1)
        >>> sorted(Counter(r.split for r in out).items())
        [('test', 2), ('train', 6), ('val', 2)]
        >>> assert_patient_disjoint(out)
    """
    values = _check_fractions(fractions)
    preset = _preset_splits(rows)
    labels = _patient_labels(rows) if stratify else {r.patient_id: "" for r in rows}
    free = sorted(p for p in labels if p not in preset)
    keys = np.random.default_rng(seed).permutation(len(free))
    order = [p for _, _, p in sorted(zip((labels[p] for p in free), keys, free, strict=True))]
    quota = _quotas(len(free), len(labels), values, Counter(preset.values()))
    assigned = {**preset, **_deal(order, quota)}
    out = [replace(r, split=r.split or assigned[r.patient_id]) for r in rows]
    logger.info("patient split (seed %d): %s patients", seed, dict(Counter(assigned.values())))
    return out


def assert_patient_disjoint(rows: Sequence[ManifestRow]) -> None:
    """Raise when a patient has cases in more than one split (rows without a split are ignored).

    Raises:
        InputError: naming every such patient and its splits.

    Example:
        >>> from pathlib import Path
        >>> rows = [ManifestRow("a", "p1", Path("a.nii"), split="train"),
        ...         ManifestRow("b", "p1", Path("b.nii"), split="test")]
        >>> assert_patient_disjoint(rows)
        Traceback (most recent call last):
        ...
        livercad.errors.InputError: patients in more than one split: p1 (test/train)
    """
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.split:
            seen[row.patient_id].add(row.split)
    leaks = {p: s for p, s in seen.items() if len(s) > 1}
    if leaks:
        raise InputError(None, "patients in more than one split: "
                               + ", ".join(f"{p} ({'/'.join(sorted(s))})" for p, s in sorted(leaks.items())))


__all__ = ["patient_split", "assert_patient_disjoint"]
