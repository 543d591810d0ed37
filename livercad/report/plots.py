"""Report plots: ROC curves, confusion matrix, Dice histogram, forest plot, mask-quality curve, CI bars.

Every function is pure: it builds a :class:`matplotlib.figure.Figure` with its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (no pyplot, no global backend switch, no
display needed, safe in threads) and returns the PNG bytes, ready for a file or an HTML data URI.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc, roc_curve

from livercad.errors import InputError

logger = logging.getLogger(__name__)

_Band = Sequence[float | None] | None  # y_low / y_high of a curve series

DPI = 100
"""Resolution of every report PNG (pixels per inch)."""


def new_figure(width: float, height: float, layout: str | None = "constrained", **kwargs: Any) -> Figure:
    """Create a figure with an Agg canvas attached and constrained layout (nothing clipped).

    ``layout=None``: no layout engine, for a figure that places its axes itself (it is then drawn once, not twice).
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (without a timestamp or software tag, so output is reproducible).

    zlib level 1 (Pillow's default is 6): prediction writes one picture per case, and at level 6 the encoding
    was a large share of its time, for files only slightly smaller.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def roc_png(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], *, title: str) -> bytes:
    """ROC curves of binary problems, one line per named curve, AUC in the legend.

    Args:
        curves: ``{name: (y_true, scores)}`` with ``y_true`` in {0, 1} and higher scores meaning
            positive (e.g. one-vs-rest probabilities of a class). A curve whose ``y_true`` has a single
            class has no ROC; it is listed in the legend as "n/a" and logged.
        title: Figure title.

    Returns:
        PNG bytes (550 x 500 px).

    Example:
        >>> roc_png({"full": ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])}, title="ROC")[:4]
        b'\\x89PNG'
    """
    fig = new_figure(5.5, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for name, (y_true, scores) in curves.items():
        y = np.asarray(y_true).ravel()
        s = np.asarray(scores, dtype=float).ravel()
        if y.shape != s.shape:
            raise InputError(None, f"ROC curve {name!r}: y_true has {y.size} values, scores has {s.size}")
        if np.unique(y).size < 2:
            logger.warning("ROC curve %r: y_true holds a single class; no ROC drawn", name)
            ax.plot([], [], label=f"{name} (AUC n/a: one class)")
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, linewidth=2, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", title=title)
    ax.set_xlabel("1 − specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return figure_to_png(fig)


def confusion_png(cm: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str) -> bytes:
    """Confusion matrix (rows: true class, columns: predicted) with counts and row percentages.

    Example:
        >>> confusion_png([[5, 1], [2, 4]], ["normal", "cirrhosis"], title="test")[:4]
        b'\\x89PNG'
    """
    matrix = np.asarray(cm, dtype=float)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise InputError(None, f"confusion matrix: expected shape ({k}, {k}) for {k} class names, "
                         f"got {matrix.shape}")
    size = 2.4 + 0.9 * k
    fig = new_figure(size + 0.8, size)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(matrix.max(), 1))
    fig.colorbar(image, ax=ax, shrink=0.8, label="cases")
    row_totals = matrix.sum(axis=1)
    threshold = matrix.max() / 2
    for i in range(k):
        for j in range(k):
            share = f"\n{100 * matrix[i, j] / row_totals[i]:.0f} %" if row_totals[i] else ""
            ax.text(j, i, f"{matrix[i, j]:.0f}{share}", ha="center", va="center", fontsize="medium",
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_xticks(range(k), labels=list(class_names), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return figure_to_png(fig)


def histogram_png(values: Sequence[float], *, title: str, xlabel: str, bins: int = 20) -> bytes:
    """Histogram (e.g. the per-case Dice distribution) with the median marked; NaN/None are skipped.

    Example:
        >>> histogram_png([0.91, 0.95, 0.97, None], title="Dice", xlabel="Dice")[:4]
        b'\\x89PNG'
    """
    data = np.array([float(v) for v in values if _finite(v)])
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    if data.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.hist(data, bins=bins, color="#4477aa", edgecolor="white")
        median = float(np.median(data))
        ax.axvline(median, color="#cc3311", linestyle="--", label=f"median {median:.3f} (n = {data.size})")
        ax.legend(loc="upper left", fontsize="small")
    ax.set(title=title, xlabel=xlabel, ylabel="cases")
    ax.grid(alpha=0.3, axis="y")
    return figure_to_png(fig)


def forest_png(rows: Sequence[Mapping[str, Any]], *, title: str, xlabel: str) -> bytes:
    """Forest plot: one row per comparison, point estimate with its 95 % CI, zero line, p-value.

    Args:
        rows: Mappings with ``name``, ``diff``, ``ci_low``, ``ci_high`` and ``pvalue`` (the last three
            may be None/NaN: the row then has no bar / no p-value).
        title: Figure title.
        xlabel: Label of the difference axis (e.g. "AUC difference vs full").

    Example:
        >>> forest_png([{"name": "mask", "diff": 0.05, "ci_low": -0.01, "ci_high": 0.11,
        ...              "pvalue": 0.09}], title="AUC", xlabel="ΔAUC")[:4]
        b'\\x89PNG'
    """
    from livercad.report.tables import fmt_ci, fmt_p  # local: tables imports nothing from here

    fig = new_figure(7.5, 1.4 + 0.45 * max(len(rows), 1))
    ax = fig.add_subplot()
    ax.axvline(0.0, color="0.5", linewidth=1)
    labels = []
    for pos, row in enumerate(rows):
        y = len(rows) - 1 - pos
        diff, low, high = row.get("diff"), row.get("ci_low"), row.get("ci_high")
        if _finite(low) and _finite(high) and _finite(diff):
            ax.errorbar([diff], [y], xerr=[[max(diff - low, 0.0)], [max(high - diff, 0.0)]], fmt="none",
                        ecolor="#4477aa", capsize=4, linewidth=2)
        if _finite(diff):
            ax.plot([diff], [y], marker="s", color="#222222", markersize=7)
        p_text = fmt_p(row.get("pvalue"))
        p_text = p_text if p_text.startswith("<") else f"= {p_text}"
        ax.annotate(f"{fmt_ci(diff, low, high)}   p {p_text}", xy=(1.02, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize="small")
        labels.append((y, str(row.get("name", ""))))
    ax.set_yticks([y for y, _ in labels], labels=[name for _, name in labels])
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set(title=title, xlabel=xlabel)
    ax.grid(alpha=0.3, axis="x")
    return figure_to_png(fig)


def curve_png(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], _Band, _Band]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> bytes:
    """Lines with optional CI bands, e.g. the mask-quality curve (AUC against mask Dice) per arm.

    Args:
        series: ``{name: (x, y, y_low, y_high)}``; ``y_low``/``y_high`` may be None (no band) and may
            contain None/NaN entries. Points are drawn in increasing ``x``.
        title: Figure title.
        xlabel: X axis label.
        ylabel: Y axis label.

    Example:
        >>> curve_png({"mask": ([1.0, 0.9, 0.8], [0.9, 0.85, 0.7], None, None)},
        ...           title="quality", xlabel="Dice", ylabel="AUC")[:4]
        b'\\x89PNG'
    """
    fig = new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    for name, (x, y, low, high) in series.items():
        xs = np.asarray(x, dtype=float)
        if len(y) != xs.size or any(b is not None and len(b) != xs.size for b in (low, high)):
            raise InputError(None, f"curve {name!r}: x has {xs.size} values but y or its band differs")
        order = np.argsort(xs, kind="stable")
        ys = np.array([np.nan if v is None else float(v) for v in y])[order]
        (line,) = ax.plot(xs[order], ys, marker="o", linewidth=2, label=name)
        if low is not None and high is not None:
            lo = np.array([np.nan if v is None else float(v) for v in low])[order]
            hi = np.array([np.nan if v is None else float(v) for v in high])[order]
            ax.fill_between(xs[order], lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    return figure_to_png(fig)


def bar_ci_png(
    names: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    *,
    title: str,
    ylabel: str,
) -> bytes:
    """Bars with 95 % CI whiskers and value labels (e.g. inside-liver attention fraction per arm).

    Example:
        >>> bar_ci_png(["full", "mask"], [0.4, 0.9], [0.3, 0.85], [0.5, 0.95],
        ...            title="attention", ylabel="fraction inside liver")[:4]
        b'\\x89PNG'
    """
    n = len(names)
    if not len(values) == len(lows) == len(highs) == n:
        raise InputError(None, f"bar chart: {n} names but {len(values)} values, {len(lows)} lows, "
                         f"{len(highs)} highs")
    vals = np.array([float(v) if _finite(v) else np.nan for v in values])
    err = np.full((2, n), np.nan)  # NaN: no whisker for a bar without a CI
    for i, (v, lo, hi) in enumerate(zip(vals, lows, highs, strict=True)):
        if np.isfinite(v) and _finite(lo) and _finite(hi):
            err[:, i] = max(v - float(lo), 0.0), max(float(hi) - v, 0.0)
    fig = new_figure(max(4.0, 1.2 + 0.9 * n), 4.5)
    ax = fig.add_subplot()
    bars = ax.bar(range(n), np.nan_to_num(vals), yerr=err, capsize=5, color="#4477aa", ecolor="#222222")
    ax.bar_label(bars, labels=["—" if not np.isfinite(v) else f"{v:.3f}" for v in vals],
                 padding=3, fontsize="small")
    ax.set_xticks(range(n), labels=list(names), rotation=30 if n > 4 else 0,
                  ha="right" if n > 4 else "center")
    ax.set(title=title, ylabel=ylabel)
    ax.margins(y=0.15)
    ax.grid(alpha=0.3, axis="y")
    return figure_to_png(fig)


__all__ = [
    "DPI",
    "bar_ci_png",
    "confusion_png",
    "curve_png",
    "figure_to_png",
    "forest_png",
    "histogram_png",
    "new_figure",
    "roc_png",
]
