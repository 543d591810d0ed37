"""Self-contained HTML reports: one file, inline CSS, PNGs embedded as data URIs, nothing fetched.

A report is built block by block and rendered to a complete HTML5 page. All text given to the builder
is escaped with :func:`html.escape`; only :meth:`HtmlReport.raw` and the ``inner_html`` of
:meth:`HtmlReport.details` take HTML as is (trusted, built by the caller, e.g. with :func:`code_block`).
The page loads no script, stylesheet, font or image from anywhere, so it opens offline and behind a
hospital firewall.

Example:
    >>> report = HtmlReport("Demo")
    >>> report.heading("Metrics")
    >>> report.table([{"metric": "accuracy", "value": 0.9}])
    >>> "<td class=\\"num\\">0.900</td>" in report.render()
    True
"""

from __future__ import annotations

import base64
import html
import json
import logging
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livercad.errors import InputError
from livercad.io.atomic import atomic_write_text
from livercad.report.tables import fmt_number, is_missing, union_columns

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.5rem 2rem 3rem;background:#fff}
h1{border-bottom:3px solid #4477aa;padding-bottom:.3rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3rem 0}
th,td{border:1px solid #d5d9e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-size:.9rem;color:#555}
details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
pre{background:#f3f4f6;padding:.6rem;overflow-x:auto;font-size:.85rem}
section.embedded{border-left:4px solid #4477aa;padding-left:1rem;margin-top:2rem}
"""


def code_block(text: str) -> str:
    """Escaped ``<pre>`` block, e.g. for :meth:`HtmlReport.details` with a config or versions JSON.

    Example:
        >>> code_block("a < b")
        '<pre>a &lt; b</pre>'
    """
    return f"<pre>{html.escape(text)}</pre>"


def json_block(data: Any) -> str:
    """Pretty-printed JSON in an escaped ``<pre>`` block (non-JSON values via ``str``)."""
    return code_block(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def _cell(value: Any) -> str:
    """One ``<td>``: numbers right-aligned and formatted, None/NaN as a dash, text escaped."""
    numeric = is_missing(value) or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    text = html.escape(fmt_number(value))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


class HtmlReport:
    """Builder of one self-contained HTML page.

    Args:
        title: Page title, shown as the ``<h1>``.
    """

    def __init__(self, title: str) -> None:
        self.title = str(title)
        self._blocks: list[tuple[str, Any]] = []  # ("heading", (level, text)) or ("html", markup)

    def heading(self, text: str, level: int = 2) -> None:
        """Add a section heading (``level`` 1-6; embedded reports shift theirs one level down)."""
        if not 1 <= int(level) <= 6:
            raise InputError(None, f"heading {text!r}: expected level 1-6, got {level}")
        self._blocks.append(("heading", (int(level), str(text))))

    def paragraph(self, text: str) -> None:
        """Add a paragraph of plain (escaped) text."""
        self._blocks.append(("html", f"<p>{html.escape(str(text))}</p>"))

    def table(self, rows: Sequence[Mapping[str, Any]], *, columns: Sequence[str] | None = None,
              caption: str | None = None) -> None:
        """Add a table, one row per mapping.

        Args:
            rows: Mappings of column -> value; missing keys, None and NaN are shown as "—".
            columns: Column order (default: all keys in first-seen order).
            caption: Optional caption above the table.
        """
        names = list(columns) if columns is not None else union_columns(rows)
        parts = ["<table>"]
        if caption:
            parts.append(f"<caption>{html.escape(caption)}</caption>")
        header = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
        parts.append(f"<thead><tr>{header}</tr></thead>")
        parts.append("<tbody>")
        parts.extend("<tr>" + "".join(_cell(row.get(n)) for n in names) + "</tr>" for row in rows)
        parts.append("</tbody></table>")
        self._blocks.append(("html", "".join(parts)))

    def image(self, png: bytes, *, caption: str | None = None, width: int | None = None) -> None:
        """Embed PNG bytes as a base64 data URI, optionally with a caption and a display width in px."""
        if not isinstance(png, (bytes, bytearray)) or not bytes(png[:8]) == PNG_SIGNATURE:
            raise InputError(None, f"report image {caption!r}: expected PNG bytes, got {bytes(png[:8])!r}...")
        alt = html.escape(caption or "figure", quote=True)
        style = f' style="width:{int(width)}px"' if width else ""
        data = base64.b64encode(bytes(png)).decode("ascii")
        figcaption = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._blocks.append(("html", f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"{style}>'
                                     f"{figcaption}</figure>"))

    def key_values(self, mapping: Mapping[str, Any], caption: str | None = None) -> None:
        """Add a two-column table of keys and values (nested values shown as compact JSON)."""
        parts = ["<table>"]
        if caption:
            parts.append(f"<caption>{html.escape(caption)}</caption>")
        for key, value in mapping.items():
            if isinstance(value, (Mapping, list, tuple)):
                value = json.dumps(value, default=str, ensure_ascii=False)
            parts.append(f"<tr><th>{html.escape(str(key))}</th>{_cell(value)}</tr>")
        parts.append("</table>")
        self._blocks.append(("html", "".join(parts)))

    def details(self, summary: str, inner_html: str) -> None:
        """Add a collapsible block; ``summary`` is escaped, ``inner_html`` is trusted markup."""
        summary_html = f"<summary>{html.escape(summary)}</summary>"
        self._blocks.append(("html", f"<details>{summary_html}{inner_html}</details>"))

    def raw(self, markup: str) -> None:
        """Add trusted HTML as is (the caller keeps it self-contained)."""
        self._blocks.append(("html", str(markup)))

    def embed(self, other: HtmlReport) -> None:
        """Add another report (its title and body at the time of the call) as a section of this one."""
        self._blocks.append(("html", embed_report(other)))

    def body_html(self, shift: int = 0) -> str:
        """The blocks as HTML, headings moved ``shift`` levels down (capped at ``<h6>``)."""
        parts = []
        for kind, payload in self._blocks:
            if kind == "heading":
                level = min(payload[0] + shift, 6)
                parts.append(f"<h{level}>{html.escape(payload[1])}</h{level}>")
            else:
                parts.append(payload)
        return "\n".join(parts)

    def render(self) -> str:
        """The complete HTML5 page (inline CSS, no external resources)."""
        title = html.escape(self.title)
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n"
            f"{self.body_html()}\n</main>\n</body>\n</html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Render and write the page atomically (temporary file in the same folder, then rename).

        If rendering or writing fails, an existing file at ``path`` is left untouched.
        """
        page = self.render()
        final = atomic_write_text(path, page)
        logger.info("wrote report %s (%d kB)", final, len(page) // 1024)
        return final


def embed_report(other: HtmlReport) -> str:
    """HTML of ``other`` as an embeddable ``<section>`` (its title as ``<h2>``, its headings one level
    down), for :meth:`HtmlReport.raw` or :meth:`HtmlReport.embed`.

    Example:
        >>> inner = HtmlReport("Ablation"); inner.heading("Arms")
        >>> embed_report(inner)
        '<section class="embedded">\\n<h2>Ablation</h2>\\n<h3>Arms</h3>\\n</section>'
    """
    return (f'<section class="embedded">\n<h2>{html.escape(other.title)}</h2>\n'
            f"{other.body_html(shift=1)}\n</section>")


__all__ = ["CSS", "HtmlReport", "code_block", "embed_report", "json_block"]
