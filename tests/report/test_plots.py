"""Tests of livercad.report.plots: valid PNGs of the expected size that depend on their data."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from matplotlib.image import imread

from livercad.errors import InputError
from livercad.report.plots import DPI, bar_ci_png, confusion_png, curve_png, forest_png, histogram_png, roc_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode(png: bytes) -> np.ndarray:
    """PNG bytes -> (H, W, C) float array; fails on anything that is not a PNG."""
    assert png[:8] == PNG_SIGNATURE
    return imread(io.BytesIO(png), format="png")


def ink(image: np.ndarray) -> float:
    """Fraction of pixels that are not (near) white."""
    return float((image[..., :3].min(axis=2) < 0.9).mean())


Y = [0, 0, 0, 0, 1, 1, 1, 1]
GOOD = [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9]


def test_roc_png_size_and_content() -> None:
    image = decode(roc_png({"full": (Y, GOOD), "mask": (Y, GOOD[::-1])}, title="ROC"))
    assert image.shape[:2] == (round(5.0 * DPI), round(5.5 * DPI))
    assert 0.02 < ink(image) < 0.5


def test_roc_png_depends_on_scores_and_is_reproducible() -> None:
    first = roc_png({"a": (Y, GOOD)}, title="ROC")
    assert roc_png({"a": (Y, GOOD)}, title="ROC") == first  # no timestamp in the file
    assert roc_png({"a": (Y, GOOD[::-1])}, title="ROC") != first


def test_roc_png_single_class_curve_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livercad.report.plots"):
        png = roc_png({"only positives": ([1, 1, 1], [0.2, 0.5, 0.9])}, title="ROC")
    decode(png)
    assert "single class" in caplog.text and "only positives" in caplog.text


def test_roc_png_rejects_length_mismatch() -> None:
    with pytest.raises(InputError, match="'bad'.*4 values.*3"):
        roc_png({"bad": ([0, 1, 0, 1], [0.1, 0.2, 0.3])}, title="ROC")


def test_confusion_png_size_grows_with_classes_and_checks_shape() -> None:
    two = decode(confusion_png([[5, 1], [2, 4]], ["normal", "cirrhosis"], title="CM"))
    three = decode(confusion_png([[5, 1, 0], [2, 4, 1], [0, 0, 3]], ["n", "s", "c"], title="CM"))
    assert two.shape[0] < three.shape[0] and 300 <= two.shape[0] <= 800
    with pytest.raises(InputError, match=r"\(3, 3\)"):
        confusion_png([[1, 2], [3, 4]], ["a", "b", "c"], title="CM")


def test_confusion_png_handles_empty_rows() -> None:
    decode(confusion_png([[0, 0], [0, 0]], ["a", "b"], title="empty"))


def test_histogram_png_skips_missing_and_handles_empty() -> None:
    values = [0.91, 0.95, None, float("nan"), 0.97, 0.88]
    image = decode(histogram_png(values, title="Dice", xlabel="Dice", bins=5))
    assert image.shape[:2] == (round(4.0 * DPI), round(6.0 * DPI))
    empty = decode(histogram_png([None], title="Dice", xlabel="Dice"))
    assert ink(empty) < ink(image)  # no bars drawn


def test_forest_png_height_grows_with_rows() -> None:
    row = {"name": "mask", "diff": 0.05, "ci_low": -0.01, "ci_high": 0.11, "pvalue": 0.09}
    one = decode(forest_png([row], title="AUC", xlabel="ΔAUC"))
    no_ci = {"name": "crop", "diff": -0.02, "ci_low": None, "ci_high": float("nan"), "pvalue": None}
    four = decode(forest_png([row, no_ci, row, row], title="AUC", xlabel="ΔAUC"))
    assert four.shape[0] > one.shape[0] and four.shape[1] == one.shape[1]


def test_curve_png_with_and_without_bands() -> None:
    series = {
        "mask": ([1.0, 0.8, 0.9], [0.9, 0.7, 0.8], [0.85, 0.6, None], [0.95, 0.8, 0.9]),
        "crop": ([1.0, 0.9], [0.88, 0.86], None, None),
    }
    image = decode(curve_png(series, title="quality", xlabel="Dice", ylabel="AUC"))
    assert 300 <= image.shape[0] <= 600 and 500 <= image.shape[1] <= 800
    with pytest.raises(InputError, match="'mask'"):
        curve_png({"mask": ([1.0, 0.9], [0.9, 0.8], [0.8], [0.95, 0.9])}, title="t", xlabel="x", ylabel="y")


def test_bar_ci_png_missing_ci_and_mismatch() -> None:
    image = decode(bar_ci_png(["full", "mask", "crop"], [0.4, 0.9, None], [0.3, None, None], [0.5, 0.95, None],
                              title="attention", ylabel="fraction"))
    assert image.shape[0] == round(4.5 * DPI)
    with pytest.raises(InputError, match="2 names"):
        bar_ci_png(["a", "b"], [0.1], [0.0], [0.2], title="t", ylabel="y")
