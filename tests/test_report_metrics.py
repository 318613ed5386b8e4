"""The report's further measures: probabilistic and discoverable extraction, spans > T, BMC@5
blocks, name cloze, model comparison, and the coverage map, checked against the findings.

Reuses the case, ledger and analysis of tests/test_report.py (a real analyzer run).
"""

from __future__ import annotations

import html as html_lib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from markupsafe import escape
from pypdf import PdfReader

from casekit.analysis.findings import Findings, ModelWorkFinding
from casekit.report.figures import LANE_WIDTH_MM, UNITS, check_svg
from casekit.stats import Rate
from casekit.strategies.name_cloze import ClozeFinding
from casekit.strategies.prefix import DiscoverableRates
from casekit.strategies.teacher_forced import ProbabilisticFields
from tests.test_report import Fixture, build_fixture


@dataclass
class Rendered:
    fx: Fixture
    html: str
    compact: str
    """PDF text without whitespace."""


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    from casekit.report import build_report

    fx = build_fixture(tmp_path_factory.mktemp("metrics"))
    paths = build_report(fx.run_dir, fx.findings)
    text = "\n".join(p.extract_text() for p in PdfReader(paths.pdf).pages)
    return Rendered(fx=fx, html=paths.html.read_text(encoding="utf-8"), compact=_compact(text))


def _finding(f: Findings, model: str, work: str) -> ModelWorkFinding:
    return next(mw for mw in f.findings if mw.model_id == model and mw.work_id == work)


def _block(html: str, model: str, work: str) -> str:
    start = html.index(f'id="further-{model}-{work}"')
    end = html.find('<div class="further-block', start)
    return html[start:end if end > 0 else html.index('id="comparisons"', start)]


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _kofn(r: Rate) -> str:
    return f"{r.k:,} of {r.n:,}"


def _measure_row(block: str, label: str) -> tuple[str, str]:
    """(this work, control) cells of the further-measures row whose label starts ``label``."""
    for row in re.findall(r"<tr><th class=\"m-label\">(.*?)</tr>", block, re.S):
        if _text(row.split("</th>")[0]).startswith(label):
            cells = re.findall(r"<td class=\"m-(?:value|control)\">(.*?)</td>", row, re.S)
            return _text(cells[0]), _text(cells[1])
    raise AssertionError(f"no row {label!r}")


SVG = "{http://www.w3.org/2000/svg}"


def _lanes(block: str) -> dict[str, ET.Element]:
    """The coverage map's lanes (parsed SVG) by category, in order."""
    rows = re.findall(r'<tr class="covrow" data-row="(\w+)">.*?<td class="cov-lane">(<svg.*?</svg>)'
                      r"</td>", block, re.S)
    return {key: ET.fromstring(svg) for key, svg in rows}


def _bars(lane: ET.Element) -> list[tuple[float, float]]:
    """(x, width) of the passage bars of a lane (the frame, a direct child, excluded)."""
    return [(float(r.get("x", "0")), float(r.get("width", "0")))
            for g in lane.findall(f"{SVG}g") for r in g.findall(f"{SVG}rect")]


def _covers(bars: list[tuple[float, float]], word: int, total: int) -> bool:
    x = (word + 0.5) / total * LANE_WIDTH_MM * UNITS
    return any(x0 <= x <= x0 + w for x0, w in bars)


# --------------------------------------------------------------------------- figures


def test_section_and_definitions_are_shown(rendered: Rendered) -> None:
    html, f = rendered.html, rendered.fx.findings
    assert '<h2 class="section-title" id="further">Further measures</h2>' in html
    assert "Furthermeasures" in rendered.compact and "Coveragemap" in rendered.compact
    # Sits after the summary and before the teacher-forced section.
    assert html.index('id="summary"') < html.index('id="further"') < html.index(
        'id="teacher-forced"')
    for key in ("p_z", "np_discoverable", "discoverable_5050", "spans_over_t", "name_cloze",
                "comparison"):
        assert f"[{key}]" in html
        assert str(escape(f.definitions[key])) in html
    # The whole definition text reaches the PDF too.
    assert _compact(f.definitions["discoverable_5050"]) in rendered.compact


def test_subject_figures_beside_the_control(rendered: Rendered) -> None:
    f = rendered.fx.findings
    mw, ctrl = _finding(f, "m1", "frank"), _finding(f, "m1", "harbour")
    block = _block(rendered.html, "m1", "frank")
    assert "Control work of m1: The Harbour Clerk" in block

    assert mw.fields(ProbabilisticFields).probabilistic is not None
    assert ctrl.fields(ProbabilisticFields).probabilistic is not None
    value, control = _measure_row(block, "Probabilistic extraction, greedy")
    assert value.startswith(f"{_kofn(mw.fields(ProbabilisticFields).probabilistic.greedy)} windows")
    assert f"preset {mw.fields(ProbabilisticFields).probabilistic.preset}" in value
    cp = ctrl.fields(ProbabilisticFields).probabilistic
    assert control.startswith(f"{_kofn(cp.greedy)} windows")

    assert mw.fields(DiscoverableRates).discoverable_exact is not None
    assert mw.fields(DiscoverableRates).discoverable_approx is not None
    value, control = _measure_row(block, "50/50 discoverable extraction, exact")
    assert value.startswith(f"{_kofn(mw.fields(DiscoverableRates).discoverable_exact)} windows")
    assert "95% CI" in value
    assert control.startswith("\u2014")  # the control had no greedy prefix window: no zero
    assert ctrl.fields(DiscoverableRates).discoverable_exact is None
    value, _ = _measure_row(block, "50/50 discoverable extraction, approximate")
    assert value.startswith(f"{_kofn(mw.fields(DiscoverableRates).discoverable_approx)} windows")

    value, control = _measure_row(block, "Spans > T")
    assert value.startswith(f"{mw.spans_over_t:,} ")
    assert control.startswith(f"{ctrl.spans_over_t:,} ")

    value, control = _measure_row(block, "Longest block")
    assert value.startswith(f"{mw.longest_block_bmc5:,} words (BMC@5) / "
                            f"{mw.coverage.longest_block_words:,} words (light-words)")
    assert control.startswith(f"{ctrl.longest_block_bmc5:,} words (BMC@5)")

    # No name-cloze attempts: a dash, never "0 of 0".
    assert mw.fields(ClozeFinding).name_cloze is None
    value, control = _measure_row(block, "Name-cloze accuracy")
    assert value.startswith("\u2014") and control.startswith("\u2014")
    assert "no name-cloze attempts" in value


def test_absent_probabilistic_and_generation_figures_are_dashes(rendered: Rendered) -> None:
    f = rendered.fx.findings
    mw = _finding(f, "m2", "frank")
    assert mw.fields(ProbabilisticFields).probabilistic is None
    assert mw.fields(DiscoverableRates).discoverable_exact is None
    block = _block(rendered.html, "m2", "frank")
    value, _ = _measure_row(block, "Probabilistic extraction, greedy")
    assert value.startswith("\u2014")
    assert "(n,p)-discoverable windows" not in block  # no table of absent rates
    value, _ = _measure_row(block, "50/50 discoverable extraction, exact")
    assert value.startswith("\u2014")


def test_np_table_and_threshold_shares(rendered: Rendered) -> None:
    f = rendered.fx.findings
    pr = _finding(f, "m1", "frank").fields(ProbabilisticFields).probabilistic
    assert pr is not None
    block = _block(rendered.html, "m1", "frank")
    table = block[block.index('<table class="data np-table">'):]
    table = table[:table.index("</table>")]
    rates = {(x.n, x.p): x.rate for x in pr.np_rates}
    rows = re.findall(r"<tr><th>p = ([0-9.]+)</th>(.*?)</tr>", table, re.S)
    assert [p for p, _ in rows] == ["0.5", "0.9"]
    for p, body in rows:
        cells = [_text(c) for c in re.findall(r'<td class="num">(.*?)</td>', body)]
        assert len(cells) == 3
        for n, cell in zip((1, 100, 10000), cells, strict=True):
            assert cell.startswith(_kofn(rates[(n, float(p))]))
    assert "p = 0.5, control" in table
    shares = block[block.index('<table class="data share-table">'):]
    for s in pr.shares:
        assert f"{s.windows:,} of {pr.windows:,}" in shares
    # The histogram: an SVG bar per non-empty bin, in its column, its height from the share;
    # the table under it gives every bin's label, count and share.
    fig = block[block.index('<div class="histo-fig">'):]
    svg = fig[fig.index("<svg"):fig.index("</svg>") + 6]
    check_svg(svg)
    root = ET.fromstring(svg)
    width, height = (float(v) for v in root.get("viewBox", "").split()[2:])
    bars = [r for g in root.findall(f"{SVG}g") for r in g.findall(f"{SVG}rect")]
    shown = [b for b in pr.histogram if b.share > 0]
    assert len(bars) == len(shown) >= 1
    col = width / len(pr.histogram)
    for r, b in zip(bars, shown, strict=True):
        i = pr.histogram.index(b)
        assert i * col <= float(r.get("x", "")) < (i + 1) * col
        plot = height - 10
        assert float(r.get("height", "")) == pytest.approx(max(plot * b.share, 3.0), abs=0.01)
        assert float(r.get("y", "")) + float(r.get("height", "")) == pytest.approx(height)
    # One row per bar, in the bars' order (left to right), at a legible size (issue 16).
    table = fig[fig.index('<table class="data histo-table"'):]
    table = table[:table.index("</table>")]
    heads = re.findall(r'<th class="mono">(.*?)</th>', table)
    assert heads == [str(escape(b.label)) for b in pr.histogram]
    rows = re.findall(r'<tr class="h-bin">(.*?)</tr>', table, re.S)
    assert [re.findall(r'<td class="num">(.*?)</td>', r)[0] for r in rows] == [
        f"{b.count:,}" for b in pr.histogram]


def test_model_comparison_table(rendered: Rendered) -> None:
    from casekit.report.sections.further.comparison import fmt_ratio

    f = rendered.fx.findings
    html = rendered.html
    table = html[html.index('<table class="data comparison-table">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, re.S)
    assert len(rows) == len(f.comparisons) == 2
    for c, row in zip(f.comparisons, rows, strict=True):
        cells = [_text(x) for x in re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + row, re.S)]
        assert c.work_id in cells[0]
        assert cells[1] == f"{c.model_a} / {c.model_b}"
        for cell, o in ((cells[2], c.coverage), (cells[3], c.bmc5)):
            jac = "undefined" if o.jaccard is None else f"{o.jaccard:.3f}"
            base = "undefined" if o.random_baseline is None else f"{o.random_baseline:.3f}"
            assert cell.startswith(f"{jac} vs {base}")
        for cell, rr in ((cells[4], c.extraction_ratio), (cells[5], c.regurgitation_ratio)):
            if rr.ratio is None:
                assert cell.startswith("undefined")
            else:
                assert rr.lo is not None and rr.hi is not None
                # A zero count: no finite ratio; the corrected figures only in the note.
                shown = fmt_ratio(rr.ratio)
                assert cell.startswith("not estimable" if rr.corrected else shown)
                assert f"{shown}, 95% CI {fmt_ratio(rr.lo)}\u2013{fmt_ratio(rr.hi)}" in cell
    # frank: m2 made no adversarial attempt, so the extraction ratio is undefined; the
    # regurgitation ratio is defined with the zero-count correction.
    frank = next(c for c in f.comparisons if c.work_id == "frank")
    assert frank.extraction_ratio.ratio is None and frank.regurgitation_ratio.ratio is not None
    assert "0.5 added to every cell" in rows[0]
    assert frank.regurgitation_ratio.corrected and "not estimable" in rows[0]
    assert "undefined" in rendered.compact and "Modelcomparison" in rendered.compact


# --------------------------------------------------------------------------- coverage map


def test_coverage_map_draws_each_category_at_its_words(rendered: Rendered) -> None:
    from casekit.report.figures import merge_ranges, passage_rects
    from casekit.report.inputs import load_inputs
    from casekit.report.sections.further.coverage_map import coverage_ranges

    f = rendered.fx.findings
    mw = _finding(f, "m1", "frank")
    total = mw.coverage.total_words
    block = _block(rendered.html, "m1", "frank")
    lanes = _lanes(block)
    assert list(lanes) == ["extraction", "regurgitation", "reconstruction"]
    bars = {k: _bars(v) for k, v in lanes.items()}

    # Each lane draws exactly the merged word ranges credited to its category.
    inputs = load_inputs(rendered.fx.run_dir, f)
    ranges = coverage_ranges(inputs.table, mw, inputs.works["frank"])
    for key, drawn in bars.items():
        runs = merge_ranges(ranges[key], total)
        assert drawn == [(x, w) for x, w, _ in passage_rects(runs, total)], key
    mine = [x for x in f.attempts if x.model_id == "m1" and x.work_id == "frank"]
    adv = next(s for x in mine if x.intent == "adversarial" for s in x.spans)
    ben = next(s for x in mine if x.intent == "benign" for s in x.spans)
    mid_adv = (adv.work_word_start + adv.work_word_end) // 2
    mid_ben = (ben.work_word_start + ben.work_word_end) // 2
    assert _covers(bars["extraction"], mid_adv, total)
    assert _covers(bars["reconstruction"], mid_adv, total)
    assert not _covers(bars["regurgitation"], mid_adv, total)  # no benign span there
    assert _covers(bars["regurgitation"], mid_ben, total)
    assert not _covers(bars["extraction"], mid_ben, total)
    assert not any(_covers(b, total - 1, total) for b in bars.values())  # nothing at the end

    # Greyscale: the three categories are drawn with three different paints (hatching for
    # extraction), and the legend shows the same paints.
    fills = {k: {r.get("fill") for g in v.findall(f"{SVG}g") for r in g.findall(f"{SVG}rect")}
             for k, v in lanes.items()}
    assert all(len(x) == 1 for x in fills.values())
    assert fills["extraction"].pop().startswith("url(#fig")  # type: ignore[union-attr]
    assert fills["regurgitation"] != fills["reconstruction"]
    assert lanes["extraction"].find(f"{SVG}defs/{SVG}pattern") is not None

    # The reconstruction row is the analyzer's coverage mask; the numeric table has it too.
    assert f"{mw.coverage.covered_words:,} of {total:,} words" in block
    table = block[block.index('<table class="data covnum">'):]
    rows = dict(re.findall(r'<tr data-row="(\w+)">(.*?)</tr>', table, re.S))
    runs = merge_ranges(ranges["reconstruction"], total)
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows["reconstruction"])]
    assert cells[0] == str(len(runs))
    longest = max(hi - lo for lo, hi in runs)
    assert cells[1].startswith(f"{longest:,} words")
    parts = cells[2:]
    assert len(parts) == 10
    for i, cell in enumerate(parts):
        a, b = i * total // 10, (i + 1) * total // 10
        cov = sum(max(0, min(b, hi) - max(a, lo)) for lo, hi in runs)
        assert cell == (f"{100 * cov / (b - a):.1f}".rstrip("0").rstrip(".") + "%"
                        if cov and cov != b - a else ("100%" if cov else "0%"))

    # A model with no span: empty lanes (the frame only).
    empty = _lanes(_block(rendered.html, "m2", "frank"))
    assert all(_bars(v) == [] for v in empty.values())


def test_a_one_word_passage_stays_visible() -> None:
    from casekit.report.figures import MIN_PASSAGE, merge_ranges, passage_rects

    assert merge_ranges([(5, 9), (0, 2), (9, 12), (50, 40), (-3, 1)], total=20) == [
        (0, 2), (5, 12)]
    (x, w, share), = passage_rects([(99_999, 100_000)], total=100_000)
    assert w == MIN_PASSAGE and x + w <= LANE_WIDTH_MM * UNITS and 0 < share < 0.01
    (x, w, share), = passage_rects([(0, 1)], total=100_000)
    assert x == 0 and w == MIN_PASSAGE and share < 0.01
    # Drawn: a bar at least 0.1 mm high, so a lone passage is seen.
    from casekit.report.figures import FigureIds, coverage_lane
    lane = ET.fromstring(str(coverage_lane(FigureIds(), "regurgitation", [(0, 1)], 100_000)))
    (bar,) = [r for g in lane.findall(f"{SVG}g") for r in g.findall(f"{SVG}rect")]
    assert float(bar.get("height", "0")) >= 1.0


def test_coverage_map_ink_is_the_share_covered() -> None:
    """Many short passages (one word in ten of a 100,000-word work: 10% coverage) are drawn
    at their true width: the lane's ink is about 10%, not solid black (each passage widened
    to 0.3 mm, as before, covered the whole lane)."""
    from casekit.report.figures import passage_rects

    total = 100_000
    runs = [(i, i + 1) for i in range(0, total, 10)]
    width = LANE_WIDTH_MM * UNITS
    ink = sum(w * share for _, w, share in passage_rects(runs, total)) / width
    assert abs(ink - 0.10) < 0.01, ink
    # A long passage is drawn exactly, at full height.
    (x, w, share), = passage_rects([(25_000, 50_000)], total)
    assert (x, w, share) == (width / 4, width / 4, 1.0)


def test_greedily_reproduced_window_is_drawn(rendered: Rendered) -> None:
    """A teacher-forced window reproduced greedily counts towards reconstruction only."""
    from casekit.report import build_model, render_html
    from casekit.report.inputs import load_inputs

    f = rendered.fx.findings
    inputs = load_inputs(rendered.fx.run_dir, f)
    tokens = inputs.works["frank"].tokens
    total = _finding(f, "m1", "frank").coverage.total_words
    # The fixture's window lies inside the benign span; move it to words [200, 210), which no
    # span reaches, and let greedy decoding reproduce it.
    c0, c1 = int(tokens.starts[200]), int(tokens.ends[209])
    attempts = []
    for x in f.attempts:
        if x.model_id == "m1" and x.work_id == "frank" and x.teacher_forced is not None:
            x = x.model_copy(update={"teacher_forced": x.teacher_forced.model_copy(
                update={"greedy_reproduced": True, "suffix_chars": (c0, c1)})})
        attempts.append(x)
    from casekit.analysis.attempt_table import rows_digest

    forced = f.model_copy(update={"attempts": attempts, "attempt_rows": rows_digest(attempts)})
    # The report reads the rows from the table: the run's no longer holds these, so the
    # inputs of the changed findings get a table made from them.
    html = render_html(build_model(forced, load_inputs(rendered.fx.run_dir, forced)))
    before = {k: _bars(v) for k, v in _lanes(_block(rendered.html, "m1", "frank")).items()}
    after = {k: _bars(v) for k, v in _lanes(_block(html, "m1", "frank")).items()}
    assert not _covers(before["reconstruction"], 205, total)  # not reproduced: not covered
    assert _covers(after["reconstruction"], 205, total)
    assert not _covers(after["extraction"], 205, total)
    assert not _covers(after["regurgitation"], 205, total)
    unit = LANE_WIDTH_MM * UNITS / total
    new = [b for b in after["reconstruction"] if b not in before["reconstruction"]]
    assert new == [(round(200 * unit, 2), round(10 * unit, 2))]


def test_coverage_bins_unit() -> None:
    from casekit.report.sections.further.coverage_map import _coverage_bins

    bins = _coverage_bins([(0, 3), (9, 10)], total=10, nbins=5)
    assert [(b.covered, b.words) for b in bins] == [(2, 2), (1, 2), (0, 2), (0, 2), (1, 2)]
    assert [b.level for b in bins] == [5, 3, 0, 0, 3]
    assert [b.level for b in _coverage_bins([(0, 1)], total=10, nbins=1)] == [1]


# --------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_rendering_twice_is_byte_identical(rendered: Rendered, tmp_path: Path) -> None:
    from casekit.report import build_report

    again = build_report(rendered.fx.run_dir, rendered.fx.findings, out_dir=tmp_path / "a")
    first = rendered.fx.run_dir / "report"
    assert again.html.read_bytes() == (first / "report.html").read_bytes()
    assert again.pdf.read_bytes() == (first / "report.pdf").read_bytes()
    assert '<td class="cov-lane"><svg' in again.html.read_text(encoding="utf-8")


def test_a_rate_ratio_with_a_zero_count_is_not_reported_as_a_figure() -> None:
    # 1 of 7 against 0 of 7 was shown as "3.00" (and 6,041 of 19,996 against 0 as
    # "12083.00", CI to "193185.82"): the 0.5 correction's figure as if the data's.
    from casekit.analysis.metrics import rate_ratio
    from casekit.report.sections.further.comparison import fmt_ratio, ratio_text

    cell, note = ratio_text(rate_ratio(1, 7, 0, 7))
    assert cell == "not estimable"
    assert note == ("1 of 7 vs 0 of 7: none for model B, so the ratio is unbounded. With 0.5 "
                    "added to every cell (a convention, not data): 3.00, 95% CI "
                    "0.143\u201363.1, Katz log.")
    cell, note = ratio_text(rate_ratio(0, 9, 4, 9))
    assert cell == "not estimable" and "none for model A, so the ratio is 0. With" in note
    cell, note = ratio_text(rate_ratio(6041, 19996, 0, 19996))
    assert cell == "not estimable" and ": 12,083, 95% CI 756\u2013193,186, Katz log." in note
    # Counts on both sides: the ratio itself, three significant figures or more.
    cell, note = ratio_text(rate_ratio(20, 100, 10, 100))
    assert (cell, note) == ("2.00", "20 of 100 vs 10 of 100; 95% CI 0.987\u20134.05, Katz log")
    assert [fmt_ratio(x) for x in (0.0, 3e-6, 0.0123, 0.5, 0.09091, 3.0, 12.54, 755.74,
                                   193185.82)] == [
        "0", "3.00e-06", "0.0123", "0.500", "0.0909", "3.00", "12.5", "756", "193,186"]
    assert ratio_text(rate_ratio(0, 5, 0, 5)) == ("undefined",
                                                  "0 of 5 vs 0 of 5; no success in either model")
