"""Tests of livercad.report.html: self-contained, escaped, well-formed pages and atomic writes."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from livercad.errors import InputError
from livercad.report.html import HtmlReport, code_block, embed_report, json_block
from livercad.report.plots import histogram_png

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source"}


class NestingChecker(HTMLParser):
    """Fails on mismatched or unclosed tags; collects text and tag names."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")


@pytest.fixture(scope="module")
def png() -> bytes:
    return histogram_png([0.9, 0.95, 0.97], title="Dice", xlabel="Dice")


def build(png: bytes) -> HtmlReport:
    report = HtmlReport("Run <1> & co")
    report.heading("Metrics")
    report.paragraph("<script>alert(1)</script> is text")
    report.table([{"metric": "accuracy", "value": 0.912345, "n": 40},
                  {"metric": "a&b", "value": None, "extra": float("nan")}], caption="Table 1")
    report.image(png, caption="Dice distribution", width=480)
    report.image(png)
    report.key_values({"seed": 3, "weights": "imagenet", "arms": ["full", "mask"]}, caption="Provenance")
    report.details("config", json_block({"lr": 0.001, "note": "<b>"}))
    inner = HtmlReport("Ablation")
    inner.heading("Arms")
    inner.image(png, caption="forest")
    report.embed(inner)
    return report


def test_render_is_self_contained_and_well_formed(png: bytes) -> None:
    page = build(png).render()
    assert page.startswith("<!DOCTYPE html>")
    lower = page.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in lower
    checker = NestingChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert checker.tags.count("img") == 3 == page.count('<img src="data:image/png;base64,')


def test_images_round_trip_through_base64(png: bytes) -> None:
    page = build(png).render()
    payloads = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(payloads) == 3 and all(base64.b64decode(p) == png for p in payloads)
    assert 'style="width:480px"' in page


def test_text_is_escaped_and_table_values_formatted(png: bytes) -> None:
    page = build(png).render()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; is text" in page
    assert "<title>Run &lt;1&gt; &amp; co</title>" in page
    assert '<td class="num">0.912</td>' in page and '<td class="num">40</td>' in page
    assert "<td>a&amp;b</td>" in page
    row = page.split("<td>a&amp;b</td>")[1].split("</tr>")[0]
    assert row.count("—") == 3  # value None, n missing, extra NaN
    assert "<th>extra</th>" in page and "<caption>Table 1</caption>" in page
    assert "&quot;note&quot;: &quot;&lt;b&gt;&quot;" in page  # JSON escaped inside <pre>
    assert "[&quot;full&quot;, &quot;mask&quot;]" in page


def test_embedded_report_headings_shift(png: bytes) -> None:
    page = build(png).render()
    assert "<h2>Metrics</h2>" in page
    assert '<section class="embedded">\n<h2>Ablation</h2>\n<h3>Arms</h3>' in page
    inner = HtmlReport("X")
    inner.heading("deep", level=6)
    assert "<h6>deep</h6>" in embed_report(inner)  # capped


def test_table_columns_order_and_code_block() -> None:
    report = HtmlReport("t")
    report.table([{"a": 1, "b": 2}], columns=["b", "a"])
    body = report.body_html()
    assert body.index("<th>b</th>") < body.index("<th>a</th>")
    assert code_block("x<y") == "<pre>x&lt;y</pre>"


def test_bad_inputs_raise() -> None:
    report = HtmlReport("t")
    with pytest.raises(InputError, match="PNG"):
        report.image(b"GIF89a....")
    with pytest.raises(InputError, match="level 1-6"):
        report.heading("x", level=7)


def test_write_is_atomic(tmp_path: Path, png: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    report = build(png)
    target = tmp_path / "out" / "report.html"
    assert report.write(target) == target
    first = target.read_text(encoding="utf-8")
    assert first == report.render()
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]

    report.paragraph("second version")

    def broken_render() -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render", broken_render)
    with pytest.raises(RuntimeError):
        report.write(target)
    assert target.read_text(encoding="utf-8") == first
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]

    monkeypatch.undo()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("livercad.io.atomic.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write(target)
    assert target.read_text(encoding="utf-8") == first
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
    monkeypatch.undo()
    assert "second version" in report.write(target).read_text(encoding="utf-8")
