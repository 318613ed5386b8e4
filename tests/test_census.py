"""Whole-work p_z census [Coo25]: window planning (hand-worked), the strategy through the
planner, and the analyzer's census figures on a scripted run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run, findings_bytes
from casekit.case import load_case
from casekit.errors import CaseError
from casekit.plan import build_plan
from casekit.run.runner import Runner
from casekit.strategies.census import CensusFields, census_segments, census_windows
from casekit.strategies.teacher_forced import ProbabilisticFields, SummaryFields
from casekit.tokenizer import WhitespaceTokenizer
from casekit.works import load_works
from tests.conftest import SCRIPTED_MODELS, case_yaml


def spans(plan_windows: list) -> list[tuple[int, int, int, int]]:
    return [(w.prefix.start, w.prefix.end, w.suffix.start, w.suffix.end) for w in plan_windows]


def test_stride_in_characters_maps_to_the_next_token_start() -> None:
    # Tokens (\s*\S+): "p"[0,1) " q"[1,3) " r"[3,5) " s"[5,7) " p"[7,9) " q"[9,11)
    # " r"[11,13) " s"[13,15); windows of 1 + 1 tokens, stride 2 characters:
    #   c=0  -> token 0 ("p", " q"):   prefix [0,1)  suffix [1,3)
    #   c=2  -> token 2 (" r", " s"):  prefix [3,5)  suffix [5,7)   (token 1 is skipped)
    #   c=4  -> token 3 (" s", " p"):  prefix [5,7)  suffix [7,9)
    #   c=6  -> token 4 (" p", " q"):  prefix [7,9)  suffix [9,11)
    #   c=8  -> token 5 (" q", " r"):  prefix [9,11) suffix [11,13)
    #   c=10 -> token 6 (" r", " s"):  the same ids as c=2's window: a duplicate, dropped
    #   c=12 -> token 7: only one token left, no full window; the scan stops.
    text = "p q r s p q r s"
    cp = census_windows(text, [(0, len(text))], WhitespaceTokenizer(), 1, 1, 2)
    assert spans(cp.windows) == [(0, 1, 1, 3), (3, 5, 5, 7), (5, 7, 7, 9), (7, 9, 9, 11),
                                 (9, 11, 11, 13)]
    assert [w.offset for w in cp.windows] == [0, 2, 4, 6, 8]
    assert (cp.offsets, cp.duplicate_texts, cp.duplicate_starts) == (6, 1, 0)


def test_offsets_landing_on_one_long_token_are_one_window() -> None:
    # Tokens "p"[0,1) " qqqqq"[1,7) " r"[7,9) " s"[9,11); 1 + 1 tokens, stride 2:
    #   c=0 -> token 0: prefix [0,1) suffix [1,7)
    #   c=2, 4, 6 -> token 2 (first start >= c is 7): one window, two duplicate starts
    #   c=8 -> token 3: no full window.
    text = "p qqqqq r s"
    cp = census_windows(text, [(0, len(text))], WhitespaceTokenizer(), 1, 1, 2)
    assert spans(cp.windows) == [(0, 1, 1, 7), (7, 9, 9, 11)]
    assert (cp.offsets, cp.duplicate_starts, cp.duplicate_texts) == (4, 2, 0)


def test_offsets_are_characters_not_bytes() -> None:
    # "é" is 2 UTF-8 bytes and 1 character: tokens "é"[0,1) " é"[1,3) " x"[3,5) " y"[5,7).
    text = "é é x y"
    cp = census_windows(text, [(0, len(text))], WhitespaceTokenizer(), 1, 1, 3)
    # c=0 -> token 0: [0,1) [1,3); c=3 -> token 2: [3,5) [5,7); c=6 -> token 3: no window.
    assert spans(cp.windows) == [(0, 1, 1, 3), (3, 5, 5, 7)]
    assert text[1:3] == " é"


def test_segments_skip_exclusions_and_respect_ranges() -> None:
    # [0, 100) minus [10, 20), intersected with [5, 15) and [50, 60).
    assert census_segments(100, [(10, 20)], None) == [(0, 10), (20, 100)]
    assert census_segments(100, [(10, 20)], [(5, 15), (50, 60)]) == [(5, 10), (50, 60)]
    # A window never spans the excluded gap: each segment is tokenized on its own.
    text = "a b c d XXXXXXX e f g h"
    cp = census_windows(text, census_segments(len(text), [(8, 15)], None),
                        WhitespaceTokenizer(), 1, 1, 2)
    assert all(w.suffix.end <= 8 or w.prefix.start >= 15 for w in cp.windows)


def test_cap_keeps_evenly_spaced_windows_in_work_order() -> None:
    text = " ".join(f"w{i}" for i in range(20))  # 20 tokens: windows at tokens 0..18 or so
    full = census_windows(text, [(0, len(text))], WhitespaceTokenizer(), 1, 1, 1)
    capped = census_windows(text, [(0, len(text))], WhitespaceTokenizer(), 1, 1, 1, 3)
    n = len(full.windows)
    # Kept: numbers round(i (n - 1) / 2) for i = 0, 1, 2: first, middle, last.
    assert capped.windows == [full.windows[0], full.windows[round((n - 1) / 2)],
                              full.windows[n - 1]]
    assert capped.capped == n - 3


CENSUS = """\
strategies:
  - name: pz_census
    params: {prefix_tokens: 10, suffix_tokens: 10, stride_chars: 40}
thresholds: {min_span_words: 15, legal_defaults: false}
"""


def test_census_plans_one_score_attempt_per_window(case_dir: Path) -> None:
    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, CENSUS))
    case = load_case(case_dir / "case.yaml")
    works = load_works(case)
    plan = build_plan(case, works)
    by_work = {w.id: w for w in works}
    for wid in ("subject", "control"):
        mine = [a for a in plan.attempts if a.work_id == wid]
        expected = census_windows(by_work[wid].raw, [(0, len(by_work[wid].raw))],
                                  WhitespaceTokenizer(), 10, 10, 40)
        assert len(mine) == len(expected.windows) > 5
        for a, w in zip(mine, expected.windows, strict=True):
            assert a.mode == "score" and a.strategy == "pz_census"
            assert a.prompt == by_work[wid].raw[w.prefix.start:w.prefix.end]
            assert a.continuation == by_work[wid].raw[w.suffix.start:w.suffix.end]
            assert a.target is not None and (a.target.start, a.target.end) == (
                w.suffix.start, w.suffix.end)
    # Deterministic: the same case gives the same plan.
    assert build_plan(case, works).sha256 == plan.sha256


def test_census_needs_a_tokenizer(case_dir: Path) -> None:
    from casekit.providers.base import Provider
    from tests.scripted import ScriptedProvider

    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, CENSUS.replace(
        "stride_chars: 40}", "stride_chars: 40}\n    models: [bot]")))
    case = load_case(case_dir / "case.yaml")
    original = ScriptedProvider.plan_tokenizer
    try:
        ScriptedProvider.plan_tokenizer = classmethod(  # type: ignore[method-assign]
            Provider.plan_tokenizer.__func__)  # type: ignore[attr-defined]
        with pytest.raises(CaseError, match="gives no tokenizer; remove 'bot'"):
            build_plan(case, load_works(case))
    finally:
        ScriptedProvider.plan_tokenizer = original  # type: ignore[method-assign]


def test_census_in_findings_hand_values(case_dir: Path) -> None:
    models = SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.9\n      ranks: true")
    (case_dir / "case.yaml").write_text(case_yaml(models, CENSUS))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    assert findings_bytes(f) == findings_bytes(analyze_run(run_dir))
    subj = next(x for x in f.findings if x.work_id == "subject")
    (c,) = subj.fields(CensusFields).census
    planned = [a for a in f.attempts if a.work_id == "subject"]
    assert c.planned == c.windows == len(planned) and c.errors == 0
    assert "stride 40 characters" in c.params and "10-token prefix" in c.params
    # The scripted model scores the 10 suffix words; round(0.9 * 10) = 9 are top choices,
    # so no window is greedy-reproduced: greedy p_z = 0 everywhere.
    greedy = next(p for p in c.presets if p.preset == "greedy")
    assert c.greedy.k == 0 and greedy.histogram[0].count == c.windows
    assert all(s.windows == 0 and s.chars == 0 for s in greedy.shares)
    # top40 (rank < 40 for every token): log p~ = logprob - lse with
    # lse = ln(e^-0.1 + e^-5) = -0.1 + ln(1 + e^-4.9) = -0.092582, so a top token gives
    # -0.007418 and the other one -4.907418: log p_z = 9 (-0.007418) - 4.907418 = -4.974181,
    # p_z = 0.00691, in the histogram bin [1e-3, 1e-2).
    lse = math.log(math.exp(-0.1) + math.exp(-5.0))
    pz = math.exp(9 * (-0.1 - lse) + (-5.0 - lse))
    assert pz == pytest.approx(0.00691, abs=1e-5)
    top = next(p for p in c.presets if p.preset == "top40")
    by_label = {b.label: b.count for b in top.histogram}
    assert by_label["[1e-3, 1e-2)"] == c.windows
    shares = {s.tau: s for s in top.shares}
    assert shares[0.001].windows == c.windows and shares[0.001].char_share == 1.0
    assert shares[0.01].windows == 0 and shares[0.01].chars == 0
    # (n, p): 1 - (1 - p_z)^n >= 0.5 needs n >= ln 0.5 / ln(1 - 0.00691) = 99.96: n = 100
    # qualifies (1 - e^(100 ln 0.99309) = 0.5001), n = 10 does not (0.067).
    np_ = {(r.n, r.p): r.rate.k for r in top.np_rates}
    assert np_[(100, 0.5)] == c.windows and np_[(10, 0.5)] == 0
    # Characters: the union of the suffixes, never more than the counted characters.
    assert 0 < c.scored_chars <= c.counted_chars
    assert c.greedy_bootstrap is not None and c.greedy_bootstrap.unit.endswith("block")
    # Census windows stay out of the sampled teacher-forced figures.
    assert subj.fields(ProbabilisticFields).probabilistic is None
    assert subj.fields(SummaryFields).teacher_forced is None
    assert "pz_census" in f.definitions


def test_census_in_the_report_beside_the_control(case_dir: Path) -> None:
    import html as html_lib
    import re

    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

    models = SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.9\n      ranks: true")
    (case_dir / "case.yaml").write_text(case_yaml(models, CENSUS))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    html = render_html(build_model(f, load_inputs(run_dir, f)))
    start = html.index('id="census-bot-subject-1"')
    # The census block runs to the first </div> after its tables (the figure's divs come first).
    block = html[start:html.index("</div>", html.index('class="data census-hist"', start))]
    assert block.count("<svg") == 1, "the histogram is drawn as a figure"
    text = re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", block)))
    subj = next(x for x in f.findings if x.work_id == "subject").fields(CensusFields).census[0]
    ctrl = next(x for x in f.findings if x.work_id == "control").fields(CensusFields).census[0]
    # The definition as run, the control's census beside, every tau with windows and chars.
    assert "10-token prefix + 10-token suffix (model tokens), stride 40 characters" in text
    assert f"{ctrl.windows} windows scored of {ctrl.planned} planned" in text
    assert "control, top40" in text
    for tau in ("0.1%", "1%", "10%", "50%", "75%"):
        assert re.search(rf"<td class=\"num\">{re.escape(tau)}</td>", block)
    n = subj.windows
    assert f"{n} of {n} (100%)" in text  # all windows at p_z >= 0.1% (p_z = 0.0069)
    assert f"{subj.scored_chars:,} of {subj.scored_chars:,} (100%)" in text
    assert "[1e-3, 1e-2)" in text and ("cluster-bootstrap" in text or "no bootstrap" in text)
    # The definition itself is printed among the further measures' definitions.
    assert "first token beginning at or after c" in html_lib.unescape(html)
