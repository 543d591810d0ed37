"""Report tables: number, CI and p-value formatting, metric rows, CSV text.

Missing values (None, NaN) are shown as an em dash "—" in human-facing text and written as empty cells
in CSV (which pandas and R read back as missing).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from livercad.errors import InputError

MISSING = "—"
"""Text shown for a missing value."""


def is_missing(value: Any) -> bool:
    """True for None and for real numbers that are NaN.

    Example:
        >>> is_missing(None), is_missing(float("nan")), is_missing(0.0), is_missing("x")
        (True, True, False, False)
    """
    if value is None:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isnan(float(value))


def fmt_number(value: Any, digits: int = 3) -> str:
    """Format one table cell: integers as is, reals with ``digits`` decimals (fewer when large, scientific
    when tiny), None/NaN as "—", anything else with ``str``.

    Example:
        >>> [fmt_number(v) for v in (12, 0.91234, 1234.567, 0.0000123, None, float("nan"), "ok")]
        ['12', '0.912', '1234.6', '1.23e-05', '—', '—', 'ok']
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if number != 0 and abs(number) < 10 ** (-digits):
        return f"{number:.{digits}g}"
    return f"{number:.1f}" if abs(number) >= 1000 else f"{number:.{digits}f}"


def fmt_ci(value: float | None, lo: float | None, hi: float | None, digits: int = 3) -> str:
    """Format an estimate with its confidence interval: ``"0.900 [0.800, 0.950]"``.

    A missing bound leaves the estimate alone; a missing estimate gives "—".

    Example:
        >>> fmt_ci(0.9, 0.8, 0.95), fmt_ci(0.9, None, 0.95, digits=2), fmt_ci(None, 0.1, 0.2)
        ('0.900 [0.800, 0.950]', '0.90', '—')
    """
    if is_missing(value):
        return MISSING
    text = f"{float(value):.{digits}f}"
    if is_missing(lo) or is_missing(hi):
        return text
    return f"{text} [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"


def fmt_p(p: float | None) -> str:
    """Format a p-value: "<0.001" below 0.001, three significant digits below 0.1, two decimals above.

    Raises:
        InputError: ``p`` is outside [0, 1].

    Example:
        >>> [fmt_p(p) for p in (0.0004, 0.001, 0.0496, 0.05, 0.23, 1.0, None)]
        ['<0.001', '0.00100', '0.0496', '0.0500', '0.23', '1.00', '—']
    """
    if is_missing(p):
        return MISSING
    value = float(p)  # type: ignore[arg-type]
    if not -1e-12 <= value <= 1 + 1e-12:
        raise InputError(None, f"p-value: expected a number in [0, 1], got {p!r}")
    if value < 0.001:
        return "<0.001"
    return f"{value:#.3g}" if value < 0.1 else f"{min(value, 1.0):.2f}"


def _metric_entry(name: str, entry: Any) -> tuple[Any, Any, Any]:
    """(value, ci_low, ci_high) of one metrics-report entry: a number or a mapping with value/mean."""
    if isinstance(entry, numbers.Real) or entry is None:
        return entry, None, None
    if isinstance(entry, Mapping) and ("value" in entry or "mean" in entry):
        value = entry.get("value", entry.get("mean"))
        return value, entry.get("ci_low"), entry.get("ci_high")
    raise InputError(None, f"metrics report key {name!r}: expected a number or a mapping with 'value', "
                     f"'ci_low', 'ci_high', got {type(entry).__name__}")


def metric_rows(report: Mapping[str, Any], digits: int = 3) -> list[dict[str, Any]]:
    """Turn a metrics report into table rows ``{"metric", "value", "95% CI"}``.

    Entries are ``{"value": v, "ci_low": lo, "ci_high": hi}`` (``"mean"`` is accepted for ``"value"``)
    or bare numbers. Nested groups without a value (``{"classification": {"auc": {...}}}``) are
    flattened with dotted names. ``"value"`` keeps the number; ``"95% CI"`` is :func:`fmt_ci` text.

    Raises:
        InputError: an entry is neither a number nor a mapping of that shape.

    Example:
        >>> metric_rows({"accuracy": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}})
        [{'metric': 'accuracy', 'value': 0.9, '95% CI': '0.900 [0.800, 0.950]'}]
    """
    rows: list[dict[str, Any]] = []
    for name, entry in report.items():
        if isinstance(entry, Mapping) and "value" not in entry and "mean" not in entry:
            nested = metric_rows(entry, digits)
            rows.extend({**row, "metric": f"{name}.{row['metric']}"} for row in nested)
            continue
        value, low, high = _metric_entry(str(name), entry)
        rows.append({"metric": str(name), "value": value, "95% CI": fmt_ci(value, low, high, digits)})
    return rows


def union_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """All keys of ``rows`` in first-seen order.

    Example:
        >>> union_columns([{"a": 1}, {"b": 2, "a": 3}])
        ['a', 'b']
    """
    return list(dict.fromkeys(key for row in rows for key in row))


def _csv_cell(value: Any) -> Any:
    if is_missing(value):
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return repr(float(value))  # shortest round-tripping text, no numpy repr
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text (header + one line per row, ``\\n`` line ends) for predictions.csv, ablation.csv, ...

    Args:
        rows: One mapping per line. Missing keys, None and NaN become empty cells.
        columns: Column order; keys outside it are left out. Default: all keys in first-seen order.

    Example:
        >>> print(csv_text([{"case_id": "a", "dice": 0.5}, {"case_id": "b, c", "dice": None}]), end="")
        case_id,dice
        a,0.5
        "b, c",
    """
    names = list(columns) if columns is not None else union_columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(row.get(key)) for key in names})
    return buffer.getvalue()


__all__ = ["MISSING", "csv_text", "fmt_ci", "fmt_number", "fmt_p", "is_missing", "metric_rows",
           "union_columns"]
