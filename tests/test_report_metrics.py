"""The report's further measures: probabilistic and discoverable extraction, spans > T, BMC@5
blocks, name cloze, model comparison, and the coverage map, checked against the findings.

Reuses the case, ledger and analysis of tests/test_report.py (a real analyzer run).
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from markupsafe import escape
from pypdf import PdfReader

from casekit.analysis.findings import Findings, ModelWorkFinding
from casekit.analysis.stats import Rate
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


def _bins(block: str) -> dict[str, list[int]]:
    rows = re.findall(r'<tr class="covrow" data-row="(\w+)">(.*?)</tr>', block, re.S)
    return {key: [int(x) for x in re.findall(r'<td class="bin s(\d)"></td>', body)]
            for key, body in rows}


def _bin_of(word: int, total: int, nbins: int) -> int:
    return next(i for i in range(nbins) if i * total // nbins <= word < (i + 1) * total // nbins)


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

    assert mw.probabilistic is not None and ctrl.probabilistic is not None
    value, control = _measure_row(block, "Probabilistic extraction, greedy")
    assert value.startswith(f"{_kofn(mw.probabilistic.greedy)} windows")
    assert f"preset {mw.probabilistic.preset}" in value
    assert control.startswith(f"{_kofn(ctrl.probabilistic.greedy)} windows")

    assert mw.discoverable_exact is not None and mw.discoverable_approx is not None
    value, control = _measure_row(block, "50/50 discoverable extraction, exact")
    assert value.startswith(f"{_kofn(mw.discoverable_exact)} windows")
    assert "95% CI" in value
    assert control.startswith("\u2014")  # the control had no greedy prefix window: no zero
    assert ctrl.discoverable_exact is None
    value, _ = _measure_row(block, "50/50 discoverable extraction, approximate")
    assert value.startswith(f"{_kofn(mw.discoverable_approx)} windows")

    value, control = _measure_row(block, "Spans > T")
    assert value.startswith(f"{mw.spans_over_t:,} ")
    assert control.startswith(f"{ctrl.spans_over_t:,} ")

    value, control = _measure_row(block, "Longest block")
    assert value.startswith(f"{mw.longest_block_bmc5:,} words (BMC@5) / "
                            f"{mw.coverage.longest_block_words:,} words (light-words)")
    assert control.startswith(f"{ctrl.longest_block_bmc5:,} words (BMC@5)")

    # No name-cloze attempts: a dash, never "0 of 0".
    assert mw.name_cloze is None
    value, control = _measure_row(block, "Name-cloze accuracy")
    assert value.startswith("\u2014") and control.startswith("\u2014")
    assert "no name-cloze attempts" in value


def test_absent_probabilistic_and_generation_figures_are_dashes(rendered: Rendered) -> None:
    f = rendered.fx.findings
    mw = _finding(f, "m2", "frank")
    assert mw.probabilistic is None and mw.discoverable_exact is None
    block = _block(rendered.html, "m2", "frank")
    value, _ = _measure_row(block, "Probabilistic extraction, greedy")
    assert value.startswith("\u2014")
    assert "(n,p)-discoverable windows" not in block  # no table of absent rates
    value, _ = _measure_row(block, "50/50 discoverable extraction, exact")
    assert value.startswith("\u2014")


def test_np_table_and_threshold_shares(rendered: Rendered) -> None:
    f = rendered.fx.findings
    pr = _finding(f, "m1", "frank").probabilistic
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
    # The histogram: one bar per bin, its length from the share.
    hist = block[block.index('<table class="histogram"'):]
    hist = hist[:hist.index("</table>")]
    widths = [int(w) for w in re.findall(r'<div class="bar w(\d+)"></div>', hist)]
    assert widths == [round(b.share * 100) for b in pr.histogram]
    for b in pr.histogram:
        assert str(escape(b.label)) in hist


def test_model_comparison_table(rendered: Rendered) -> None:
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
                assert cell.startswith(f"{rr.ratio:.2f}")
                assert f"95% CI {rr.lo:.2f}\u2013{rr.hi:.2f}" in cell
    # frank: m2 made no adversarial attempt, so the extraction ratio is undefined; the
    # regurgitation ratio is defined with the zero-count correction.
    frank = next(c for c in f.comparisons if c.work_id == "frank")
    assert frank.extraction_ratio.ratio is None and frank.regurgitation_ratio.ratio is not None
    assert "0.5 added to every cell" in rows[0]
    assert "undefined" in rendered.compact and "Modelcomparison" in rendered.compact


# --------------------------------------------------------------------------- coverage map


def test_coverage_map_bins_and_shading(rendered: Rendered) -> None:
    f = rendered.fx.findings
    mw = _finding(f, "m1", "frank")
    total = mw.coverage.total_words
    nbins = min(200, total)
    bins = _bins(_block(rendered.html, "m1", "frank"))
    assert list(bins) == ["extraction", "regurgitation", "reconstruction"]
    assert all(len(v) == nbins for v in bins.values())

    mine = [x for x in f.attempts if x.model_id == "m1" and x.work_id == "frank"]
    adv = next(s for x in mine if x.intent == "adversarial" for s in x.spans)
    ben = next(s for x in mine if x.intent == "benign" for s in x.spans)
    mid_adv = _bin_of((adv.work_word_start + adv.work_word_end) // 2, total, nbins)
    mid_ben = _bin_of((ben.work_word_start + ben.work_word_end) // 2, total, nbins)
    assert bins["extraction"][mid_adv] == 5 and bins["reconstruction"][mid_adv] == 5
    assert bins["regurgitation"][mid_adv] == 0  # no benign span there
    assert bins["regurgitation"][mid_ben] == 5 and bins["extraction"][mid_ben] == 0
    last = _bin_of(total - 1, total, nbins)  # no span reaches the end of the work
    assert all(v[last] == 0 for v in bins.values())
    # The reconstruction row is the analyzer's coverage mask, bin by bin.
    block = _block(rendered.html, "m1", "frank")
    assert f"{mw.coverage.covered_words:,} of {total:,} words" in block

    # A model with no span: every bin blank.
    empty = _bins(_block(rendered.html, "m2", "frank"))
    assert all(set(v) == {0} for v in empty.values())


def test_greedily_reproduced_window_is_shaded(rendered: Rendered) -> None:
    """A teacher-forced window reproduced greedily counts towards reconstruction only."""
    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

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
    forced = f.model_copy(update={"attempts": attempts})
    html = render_html(build_model(forced, inputs))
    nbins = min(200, total)
    target = _bin_of(205, total, nbins)
    before = _bins(_block(rendered.html, "m1", "frank"))
    after = _bins(_block(html, "m1", "frank"))
    assert before["reconstruction"][target] == 0  # not reproduced: not covered
    assert after["reconstruction"][target] > 0
    assert after["extraction"][target] == 0 and after["regurgitation"][target] == 0
    covered = sum(1 for i in range(nbins) if after["reconstruction"][i])
    assert covered == sum(1 for i in range(nbins) if before["reconstruction"][i]) + len(
        {_bin_of(w, total, nbins) for w in range(200, 210)})


def test_coverage_bins_unit() -> None:
    from casekit.report.build import _coverage_bins

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
    assert '<td class="bin s5"></td>' in again.html.read_text(encoding="utf-8")
