"""Tests of livercad.pipeline.training.splits: patient-level, deterministic, stratified splits."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livercad.errors import ConfigError, InputError
from livercad.io.manifest import ManifestRow
from livercad.pipeline.training.splits import _patient_labels, assert_patient_disjoint, patient_split

SPLITS = ("train", "val", "test")


def _rows(patients: list[tuple[str, list[str]]]) -> list[ManifestRow]:
    """One row per case: patients given as (patient_id, [label of each case])."""
    return [ManifestRow(f"{pid}_c{j}", pid, Path(f"{pid}_c{j}.nii.gz"), label=label or None)
            for pid, labels in patients for j, label in enumerate(labels)]


def _splits_of_patients(rows: list[ManifestRow]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        seen[row.patient_id].add(row.split)
    return seen


cohorts = st.lists(st.tuples(st.sampled_from(["normal", "steatosis", "cirrhosis", ""]), st.integers(1, 4)),
                   min_size=3, max_size=60)
FRACTIONS = st.sampled_from([(0.6, 0.2, 0.2), (0.7, 0.15, 0.15), (0.8, 0.0, 0.2), (1 / 3, 1 / 3, 1 / 3)])


@settings(max_examples=60, deadline=None, database=None)
@given(cohort=cohorts, fractions=FRACTIONS, seed=st.integers(0, 2**31 - 1))
def test_split_properties(cohort, fractions, seed: int) -> None:
    rows = _rows([(f"p{i:03d}", [label] * n) for i, (label, n) in enumerate(cohort)])
    out = patient_split(rows, fractions=fractions, seed=seed)
    assert [r.case_id for r in out] == [r.case_id for r in rows]
    per_patient = _splits_of_patients(out)
    assert all(len(s) == 1 for s in per_patient.values())  # no patient crosses splits
    assert_patient_disjoint(out)
    patient_split_of = {p: next(iter(s)) for p, s in per_patient.items()}
    totals = Counter(patient_split_of.values())
    n = len(per_patient)
    # overall counts are the rounded targets, off by one more only when a tiny split had to be filled
    tolerance = 1 if n * min(f for f in fractions if f > 0) >= 1 else 2
    for name, fraction in zip(SPLITS, fractions, strict=True):
        assert abs(totals[name] - n * fraction) < tolerance + 1e-9
        assert (totals[name] > 0) == (fraction > 0)  # every wanted split non-empty (>= 3 patients)
    labels = {f"p{i:03d}": label for i, (label, _) in enumerate(cohort)}
    per_label = Counter(labels.values())
    for label, count in per_label.items():
        for name, fraction in zip(SPLITS, fractions, strict=True):
            got = sum(1 for p, s in patient_split_of.items() if s == name and labels[p] == label)
            assert abs(got - count * fraction) <= 2  # stratified: each label spread in proportion
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    again = {r.case_id: r.split for r in patient_split(shuffled, fractions=fractions, seed=seed)}
    assert again == {r.case_id: r.split for r in out}  # deterministic, whatever the row order


def test_hand_worked_counts_and_seed_effect() -> None:
    rows = _rows([(f"p{i}", ["a" if i < 5 else "b"]) for i in range(10)])
    out = patient_split(rows, seed=0)
    assert Counter(r.split for r in out) == {"train": 6, "val": 2, "test": 2}
    by_label = Counter((r.label, r.split) for r in out)
    assert by_label[("a", "train")] == 3 and by_label[("b", "train")] == 3
    assert patient_split(rows, seed=0) == out
    assert any(patient_split(rows, seed=s) != out for s in range(1, 6))


def test_three_patients_fill_three_splits() -> None:
    out = patient_split(_rows([("x", ["a", "a"]), ("y", ["a"]), ("z", ["b", "b", "b"])]), seed=3)
    assert {r.split for r in out} == set(SPLITS)
    assert all(len(s) == 1 for s in _splits_of_patients(out).values())


def test_presets_are_kept_and_pull_the_patient_along() -> None:
    rows = _rows([(f"p{i}", ["a", "a"]) for i in range(10)])
    rows[0] = ManifestRow(**{**rows[0].__dict__, "split": "test"})  # p0's first case preset to test
    rows[2] = ManifestRow(**{**rows[2].__dict__, "split": "test"})  # p1's first case preset to test
    out = patient_split(rows, seed=1)
    split_of = {p: next(iter(s)) for p, s in _splits_of_patients(out).items()}
    assert split_of["p0"] == "test" and split_of["p1"] == "test"
    assert Counter(split_of.values()) == {"train": 6, "val": 2, "test": 2}  # presets count towards targets


def test_conflicting_presets_and_bad_values() -> None:
    rows = _rows([("p1", ["a", "a"]), ("p2", ["a"])])
    rows[0] = ManifestRow(**{**rows[0].__dict__, "split": "train"})
    rows[1] = ManifestRow(**{**rows[1].__dict__, "split": "val"})
    with pytest.raises(InputError, match=r"p1 \(train/val\)"):
        patient_split(rows)
    with pytest.raises(InputError, match="'holdout'"):
        patient_split([ManifestRow("a", "p", Path("a"), split="holdout")])


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.3, 0.3), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)])
def test_bad_fractions(fractions) -> None:
    with pytest.raises(ConfigError, match="fractions"):
        patient_split(_rows([("p", ["a"])]), fractions=fractions)


def test_patient_label_is_most_common_case_label() -> None:
    rows = _rows([("p1", ["normal", "cirrhosis", "cirrhosis"]), ("p2", ["b", "a"]), ("p3", ["", ""])])
    assert _patient_labels(rows) == {"p1": "cirrhosis", "p2": "a", "p3": ""}


def test_assert_patient_disjoint_names_every_leaking_patient() -> None:
    rows = [ManifestRow("a", "p1", Path("a"), split="train"), ManifestRow("b", "p1", Path("b"), split="test"),
            ManifestRow("c", "p2", Path("c"), split="val"), ManifestRow("d", "p2", Path("d"), split="train"),
            ManifestRow("e", "p3", Path("e"), split="val"), ManifestRow("f", "p3", Path("f"), split=None)]
    with pytest.raises(InputError) as info:
        assert_patient_disjoint(rows)
    assert str(info.value) == "patients in more than one split: p1 (test/train), p2 (train/val)"
    assert_patient_disjoint(rows[4:])
