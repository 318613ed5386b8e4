"""Legibility in print (issue 16 item 8), measured on the laid-out golden demo report: every
table's text at 9 pt or more, the sample of attempts on landscape pages, identifiers never
broken inside a word, and the glossary box before the first page that uses its terms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.golden.make_golden import DEMO, Rendered

pytestmark = pytest.mark.slow

#: Terms of the glossary that must be defined before any page uses them.
JARGON = ("BMC@", "p_z", "top-1 share", "light-words", "nv-recall", "control floor")


@dataclass
class Laid:
    html: str
    pdf: Path
    pages: list[str]
    """Each page's extracted text."""
    small: dict[tuple[str, str], float]
    """(table class, element tag.class) -> the smallest font size (pt) of text inside tables."""
    landscape: list[int]
    attempt_ids: list[str]


def _walk(box: object, tables: tuple[str, ...], small: dict[tuple[str, str], float]) -> None:
    el = getattr(box, "element", None)
    tag = getattr(box, "element_tag", None)
    if tag == "table" and el is not None:
        tables = (*tables, el.get("class") or "")
    if type(box).__name__ == "TextBox" and getattr(box, "text", "").strip() and tables:
        size = box.style["font_size"] * 0.75  # type: ignore[attr-defined]  # px -> pt
        key = (tables[-1], f"{tag}.{el.get('class') if el is not None else ''}")
        small[key] = min(small.get(key, 99.0), size)
    for child in getattr(box, "children", None) or []:
        _walk(child, tables, small)


@pytest.fixture(scope="module")
def laid(golden_demo: Rendered) -> Laid:
    from pypdf import PdfReader
    from weasyprint import HTML

    from casekit.report.render import SafeFetcher, template_dirs

    findings, paths = golden_demo.findings, golden_demo.paths
    html = paths.html.read_text(encoding="utf-8")
    dirs = template_dirs()
    doc = HTML(string=html, base_url=dirs[0].as_uri() + "/",
               url_fetcher=SafeFetcher(dirs)).render()
    small: dict[tuple[str, str], float] = {}
    for page in doc.pages:
        _walk(page._page_box, (), small)
    reader = PdfReader(paths.pdf)
    landscape = [i for i, p in enumerate(reader.pages) if p.mediabox.width > p.mediabox.height]
    ids = sorted({x.attempt_id for x in findings.attempts})
    return Laid(html, paths.pdf, [p.extract_text() for p in reader.pages], small, landscape,
                ids)


def test_no_table_text_below_9pt(laid: Laid) -> None:
    assert laid.small, "no table text found in the laid-out report"
    too_small = {k: round(v, 2) for k, v in laid.small.items() if v < 9 - 1e-6}
    assert not too_small, f"table text below 9 pt (table class, element): {too_small}"


def test_the_stylesheet_sets_no_table_below_9pt() -> None:
    css = (Path(__file__).resolve().parents[1] / "templates" / "report.css").read_text()
    for sel, body in re.findall(r"([^{}]*table[^{}]*)\{([^{}]*)\}", css):
        for size in re.findall(r"font-size:\s*([\d.]+)pt", body):
            assert float(size) >= 9, f"{sel.strip()}: font-size {size}pt (tables >= 9 pt)"


def test_the_sample_of_attempts_is_on_landscape_pages(laid: Laid) -> None:
    assert "@page landscape" in laid.html and "section.attempts { page: landscape; }" in laid.html
    listing = [i for i, t in enumerate(laid.pages) if "attempts were analyzed, errors and" in t]
    assert listing and listing[0] in laid.landscape
    assert all(i in laid.landscape for i in range(listing[0], listing[0] + 2))
    assert len(laid.landscape) < len(laid.pages) // 2  # the rest stays portrait


def test_identifiers_of_the_listing_are_never_broken(laid: Laid) -> None:
    start = next(i for i, t in enumerate(laid.pages) if "attempts were analyzed, errors and" in t)
    text = "\n".join(t for i, t in enumerate(laid.pages) if i in laid.landscape and i >= start)
    shown = re.findall(r"\ba-[0-9a-f]{6,}", text)
    assert len(shown) >= 20
    for aid in shown:
        assert aid in laid.attempt_ids, f"attempt id {aid!r} is cut (a line break inside it)"
    # No hyphen added inside a word, no id split over two lines.
    assert "\u00ad" not in text and not re.search(r"\ba-[0-9a-f]*-\n", text)


def test_hashes_break_only_between_groups(laid: Laid) -> None:
    from casekit.report.text import breakable

    assert str(breakable("works/control-harbour.txt")) == "works/<wbr>control-<wbr>harbour.txt"
    assert str(breakable("sha256:" + "ab" * 32)).split("<wbr>") == [
        "sha256:", *["ab" * 8] * 4]
    assert "<wbr>" not in str(breakable("ledger.jsonl"))  # a file name stays whole
    assert str(breakable("<b>")) == "&lt;b&gt;"  # escaped like every printed value
    for m in re.finditer(r'class="mono hash">([^<]*(?:<wbr>[^<]*)*)<', laid.html):
        for piece in m.group(1).split("<wbr>"):
            assert not re.search(r"[0-9a-f]{17}", piece), m.group(1)


def test_the_glossary_precedes_the_first_use_of_each_term(laid: Laid) -> None:
    flat = [re.sub(r"\s+", " ", t) for t in laid.pages]
    g = next(i for i, t in enumerate(flat) if "Terms used in this report" in t)
    for term in JARGON:
        first = next((i for i, t in enumerate(flat) if term.lower() in t.lower()), None)
        assert first is not None, term
        assert first >= g, f"{term!r} is used on page {first + 1}, before the glossary"
        if first == g:
            before = flat[g].lower().split("terms used in this report")[0]
            assert term.lower() not in before, term
    # Each glossed term points to its definition under Methods, which exists.
    box = laid.html.split('id="glossary"', 1)[1].split("</section>", 1)[0]
    keys = re.findall(r'class="defref">\[([a-z0-9_]+)\]', box)
    assert {"span", "coverage", "longest_block", "control_floor", "bmc", "p_z"} <= set(keys)
    methods = laid.html.split('id="methods-definitions"', 1)[1].split("</dl>", 1)[0]
    for key in keys:
        assert f"[{key}]" in methods, key


def test_the_glossary_states_the_thresholds_applied(laid: Laid) -> None:
    import json

    data = json.loads((DEMO / "findings.json").read_text(encoding="utf-8"))
    th = data["thresholds"]
    box = re.sub(r"<[^>]+>|\s+", " ", laid.html.split('id="glossary"', 1)[1].split(
        "</section>", 1)[0])
    assert f"evidence from {th['min_span_words']} words" in box
    assert f"similarity at least {th['near_exact']:g}" in box
    assert f"a block of {th['substantial_portion_min_words']} words" in box
