"""Tests of livercad.report.tables: hand-worked formatting, metric rows and CSV round trips."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from livercad.errors import InputError
from livercad.report.tables import csv_text, fmt_ci, fmt_number, fmt_p, is_missing, metric_rows


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0.9, 0.8, 0.95), "0.900 [0.800, 0.950]"),
        ((0.12345, 0.1, 0.2), "0.123 [0.100, 0.200]"),
        ((-0.0204, -0.08, 0.0399), "-0.020 [-0.080, 0.040]"),
        ((0.5, None, 0.6), "0.500"),
        ((0.5, 0.4, float("nan")), "0.500"),
        ((None, 0.1, 0.2), "—"),
        ((float("nan"), 0.1, 0.2), "—"),
        ((np.float32(0.25), np.float64(0.125), 1), "0.250 [0.125, 1.000]"),
    ],
)
def test_fmt_ci_hand_values(args: tuple, expected: str) -> None:
    assert fmt_ci(*args) == expected


def test_fmt_ci_digits() -> None:
    assert fmt_ci(0.98765, 0.97, 0.99, digits=2) == "0.99 [0.97, 0.99]"
    assert fmt_ci(12.0, 10.04, 14.56, digits=1) == "12.0 [10.0, 14.6]"


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.0, "<0.001"),
        (0.00049, "<0.001"),
        (0.000999, "<0.001"),
        (0.001, "0.00100"),
        (0.0123, "0.0123"),
        (0.0496, "0.0496"),  # not rounded up across 0.05
        (0.05, "0.0500"),
        (0.0999, "0.0999"),
        (0.1, "0.10"),
        (0.234, "0.23"),
        (1.0, "1.00"),
        (None, "—"),
        (float("nan"), "—"),
    ],
)
def test_fmt_p_hand_values(p: float | None, expected: str) -> None:
    assert fmt_p(p) == expected


@pytest.mark.parametrize("p", [-0.1, 1.5, float("inf")])
def test_fmt_p_rejects_values_outside_unit_interval(p: float) -> None:
    with pytest.raises(InputError, match="p-value"):
        fmt_p(p)


def test_fmt_number_and_missing() -> None:
    assert [fmt_number(v) for v in (3, np.int64(42), 0.91234, np.float32(0.5), 1234.56, 0.0, -2.5)] == [
        "3", "42", "0.912", "0.500", "1234.6", "0.000", "-2.500"]
    assert fmt_number(0.0000123) == "1.23e-05"
    assert fmt_number(None) == fmt_number(float("nan")) == "—"
    assert fmt_number("normal") == "normal"
    assert fmt_number(True) == "True"
    assert [is_missing(v) for v in (None, math.nan, np.float32("nan"), 0, "", "nan")] == [
        True, True, True, False, False, False]


def test_metric_rows_flat_report() -> None:
    report = {
        "accuracy": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95},
        "auc": {"value": 0.8766, "ci_low": 0.81, "ci_high": 0.93, "n": 40},
        "n_cases": 40,
    }
    rows = metric_rows(report)
    assert rows == [
        {"metric": "accuracy", "value": 0.9, "95% CI": "0.900 [0.800, 0.950]"},
        {"metric": "auc", "value": 0.8766, "95% CI": "0.877 [0.810, 0.930]"},
        {"metric": "n_cases", "value": 40, "95% CI": "40.000"},
    ]


def test_metric_rows_nested_and_mean_key() -> None:
    report = {"segmentation": {"dice": {"mean": 0.95, "ci_low": 0.94, "ci_high": 0.96}},
              "classification": {"kappa": {"value": None}}}
    rows = metric_rows(report, digits=2)
    assert [r["metric"] for r in rows] == ["segmentation.dice", "classification.kappa"]
    assert rows[0]["95% CI"] == "0.95 [0.94, 0.96]"
    assert rows[1]["95% CI"] == "—"


def test_metric_rows_rejects_bad_entry() -> None:
    with pytest.raises(InputError, match="'accuracy'"):
        metric_rows({"accuracy": "high"})


def test_csv_text_round_trip() -> None:
    rows = [
        {"case_id": "case_1", "label": "cirrhosis", "p": 0.1 + 0.2, "dice": np.float32(0.5), "n": np.int64(3)},
        {"case_id": 'odd, "name"', "label": "normal", "p": None, "dice": float("nan")},
    ]
    text = csv_text(rows)
    assert text.splitlines()[0] == "case_id,label,p,dice,n"
    assert text.endswith("\n") and "\r" not in text
    back = list(csv.DictReader(io.StringIO(text)))
    assert back[0] == {"case_id": "case_1", "label": "cirrhosis", "p": repr(0.1 + 0.2), "dice": "0.5", "n": "3"}
    assert float(back[0]["p"]) == 0.1 + 0.2  # full precision survives
    assert back[1] == {"case_id": 'odd, "name"', "label": "normal", "p": "", "dice": "", "n": ""}


def test_csv_text_columns_select_and_order() -> None:
    text = csv_text([{"a": 1, "b": 2, "c": 3}], columns=["c", "a", "z"])
    assert text == "c,a,z\n3,1,\n"
    assert csv_text([], columns=["x"]) == "x\n"
