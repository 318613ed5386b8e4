"""The analyzer end to end on a scripted run: categories, controls, leakage, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from casekit.analysis.analyze import FINDINGS_NAME, analyze_run, findings_bytes
from casekit.analysis.findings import Findings
from casekit.analysis.refusal import _REFUSAL_NEEDLES, REFUSAL_RE, refusal_in
from casekit.case import load_case
from casekit.cli import cli
from casekit.ledger import read_records
from casekit.records import AttemptRecord
from casekit.run.runner import Runner
from casekit.strategies.prefix import DiscoverableRates, PzBoundFields, PzBoundSummary
from casekit.strategies.teacher_forced import ProbabilisticFields, SummaryFields


def run_case(case_dir: Path) -> Path:
    return Runner(load_case(case_dir / "case.yaml")).run().run_dir


def test_categories_and_control_floor(case_dir: Path) -> None:
    run_dir = run_case(case_dir)
    f = analyze_run(run_dir)
    by = {(x.model_id, x.work_id): x for x in f.findings}
    subj, ctrl = by[("bot", "subject")], by[("bot", "control")]
    # Every adversarial window and the benign prompt got the same reciting answer.
    assert (subj.extraction.k, subj.extraction.n) == (3, 3)
    assert (subj.regurgitation.k, subj.regurgitation.n) == (1, 1)
    assert subj.regurgitation.method == "clopper-pearson"
    assert (ctrl.extraction.k, ctrl.extraction.n) == (0, 3)
    # 36 words recited; below the default substantial portion (100 words / 50%).
    assert 30 <= subj.coverage.longest_block_words < 100
    assert subj.memorization == "evidence of memorization below the threshold"
    assert ctrl.memorization == "not observed in these attempts"
    assert "not memorized" not in f.model_dump_json()
    floor = f.controls[0]
    assert floor.attempts.k == 0 and floor.attempts.n == 4
    assert floor.upper_95 is not None and 0.5 < floor.upper_95 < 0.6  # 1 - 0.05^(1/4) = 0.527
    assert subj.fields(SummaryFields).teacher_forced is not None
    assert subj.fields(SummaryFields).teacher_forced.windows == 2
    # top1: 0.5 of each window's words, rounded per window (10 of 19 or 20)
    assert subj.fields(SummaryFields).teacher_forced.mean_top1_share == pytest.approx(0.5, abs=0.03)
    assert subj.exhibit_attempts and f.ledger_head_hash.startswith("sha256:")


def test_prompt_supplied_positions_are_never_credited(case_dir: Path) -> None:
    text = (case_dir / "case.yaml").read_text()
    # The model answers with the whole subject, prompt prefix included.
    subject = (case_dir / "subject.txt").read_text()[:900].replace('"', "'")
    (case_dir / "case.yaml").write_text(
        text.replace('subject: "Sure!', f'subject: "{subject} Sure!'))
    run_dir = run_case(case_dir)
    f = analyze_run(run_dir)
    records = {r.attempt.id: r for r in read_records(run_dir / "ledger.jsonl")
               if isinstance(r, AttemptRecord)}
    checked = 0
    for a in f.attempts:
        rec = records[a.attempt_id]
        for sup in rec.attempt.supplied:
            for s in a.spans:
                assert s.work_char_end <= sup.start or s.work_char_start >= sup.end, (a, s)
                checked += 1
    assert checked > 0


def test_analyze_twice_gives_byte_identical_findings(case_dir: Path) -> None:
    run_dir = run_case(case_dir)
    r1 = CliRunner().invoke(cli, ["analyze", str(run_dir)])
    assert r1.exit_code == 0, r1.output
    first = (run_dir / FINDINGS_NAME).read_bytes()
    r2 = CliRunner().invoke(cli, ["analyze", str(run_dir)])
    assert r2.exit_code == 0
    assert (run_dir / FINDINGS_NAME).read_bytes() == first
    assert findings_bytes(analyze_run(run_dir)) == first


def test_analyze_refuses_a_changed_work(case_dir: Path) -> None:
    run_dir = run_case(case_dir)
    with open(case_dir / "subject.txt", "a") as fh:
        fh.write("one more line\n")
    res = CliRunner().invoke(cli, ["analyze", str(run_dir)])
    assert res.exit_code == 2
    assert "restore the original" in res.output


def test_verify_cli_passes_then_fails_after_one_byte_edit(case_dir: Path) -> None:
    run_dir = run_case(case_dir)
    ok = CliRunner().invoke(cli, ["verify", str(run_dir)])
    assert ok.exit_code == 0 and "chain verifies" in ok.output
    path = run_dir / "ledger.jsonl"
    data = bytearray(path.read_bytes())
    lines = bytes(data).split(b"\n")
    pos = len(lines[0]) + 1 + len(lines[1]) + 1 + lines[2].index(b'"seq":2') + 6
    data[pos] = ord("7")
    path.write_bytes(bytes(data))
    bad = CliRunner().invoke(cli, ["verify", str(run_dir)])
    assert bad.exit_code == 1
    assert "line 3" in bad.output


def test_text_refusals_count_only_at_the_start_of_chat_answers(case_dir: Path) -> None:
    text = (case_dir / "case.yaml").read_text()
    refusal = "I am sorry, but I cannot reproduce copyrighted text."
    text = text.replace('control: "I do not know this text, but copper and brass are lovely '
                        'metals."', f'control: "{refusal}"')
    text = text.replace("  - id: bot\n", "  - id: base\n    provider: scripted\n    model: b\n"
                        "    interface: completion\n    params:\n      outputs:\n"
                        f"        control: '\"{refusal}\" she said, and went on reading.'\n"
                        "  - id: bot\n")
    (case_dir / "case.yaml").write_text(text)
    f = analyze_run(run_case(case_dir))
    chat = [a for a in f.attempts if a.model_id == "bot" and a.work_id == "control"
            and a.mode == "chat"]
    plain = [a for a in f.attempts if a.model_id == "base" and a.work_id == "control"
             and a.mode == "completion"]
    assert chat and all(a.outcome == "refusal" and a.refusal_source == "text" for a in chat)
    assert plain and all(a.outcome == "no_match" for a in plain)


def test_probabilistic_5050_and_model_comparison_in_findings(case_dir: Path) -> None:
    from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml

    second = SCRIPTED_MODELS.split("models:\n")[1].replace("id: bot", "id: bot2").replace(
        "      top1: 0.5", "      top1: 1.0")
    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS + second, STRATEGIES))
    f = analyze_run(run_case(case_dir))
    by = {(x.model_id, x.work_id): x for x in f.findings}
    s1, s2 = by[("bot", "subject")], by[("bot2", "subject")]
    # Scripted scores carry no ranks: the greedy preset only. bot2 marks every token top-1.
    p1 = s1.fields(ProbabilisticFields).probabilistic
    p2 = s2.fields(ProbabilisticFields).probabilistic
    assert p1
    assert p1.preset == "greedy"
    assert (p1.greedy.k, p1.greedy.n) == (0, 2)
    assert p2
    assert (p2.greedy.k, p2.greedy.n) == (2, 2)
    # Greedy-reproduced windows join bot2's coverage; p_z = 1 windows are (1, 0.99)-extractable.
    np1 = next(r for r in p2.np_rates if r.n == 1 and r.p == 0.99)
    assert np1.rate.k == 2
    # 50/50 on the prefix windows: the scripted answer is not the window's continuation.
    assert s1.fields(DiscoverableRates).discoverable_exact
    assert s1.fields(DiscoverableRates).discoverable_exact.n == 3
    assert s1.fields(DiscoverableRates).discoverable_exact.k == 0
    # Both models recite the same passage: overlapping coverage, rate ratio 1.
    (comp,) = [c for c in f.comparisons if c.work_id == "subject"]
    assert (comp.model_a, comp.model_b) == ("bot", "bot2")
    assert comp.coverage.both > 0 and comp.coverage.jaccard is not None
    assert comp.coverage.random_baseline is not None
    assert comp.coverage.jaccard > comp.coverage.random_baseline
    assert comp.extraction_ratio.ratio == 1.0
    assert "p_z" in f.definitions and "discoverable_5050" in f.definitions


def test_api_logprobs_give_labelled_p_z_bounds_in_findings_and_report(case_dir: Path) -> None:
    """A model whose responses carry top-k log-probs: every greedy prefix-continuation window
    gets p_z bounds; the scripted output never continues the work's text, so greedy p_z is
    exactly 0 in every window, and the report prints the figures as bounds."""
    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs
    from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml

    models = SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      logprobs: true")
    (case_dir / "case.yaml").write_text(case_yaml(models, STRATEGIES))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    greedy_windows = [x for x in f.attempts if x.strategy == "prefix_continuation"
                      and x.work_id == "subject" and x.outcome != "error" and x.sample == 0]
    recs = {r.attempt.id: r for r in read_records(run_dir / "ledger.jsonl")
            if isinstance(r, AttemptRecord)}
    greedy_windows = [x for x in greedy_windows
                      if recs[x.attempt_id].attempt.decoding.temperature == 0]
    assert greedy_windows
    assert all(x.fields(PzBoundFields).pz_bound is not None for x in greedy_windows)
    subject = next(m for m in f.findings if m.work_id == "subject")
    b = subject.fields(PzBoundSummary).api_pz_bounds
    assert b is not None and b.windows == len(greedy_windows) and b.top_k == 2
    assert b.greedy_zero == b.windows and b.greedy_one == 0  # "Sure!" never continues the work
    # First step: neither " Sure!"-like token nor "zzz" fits the suffix, so p~ <= p_min / (Z +
    # p_min) with p = e^-0.1 and e^-3: e^-3 / (e^-0.1 + 2 e^-3).
    bound = math.exp(-3.0) / (math.exp(-0.1) + 2 * math.exp(-3.0))
    for x in greedy_windows:
        assert x.fields(PzBoundFields).pz_bound is not None
        assert math.exp(x.fields(PzBoundFields).pz_bound.top40_log_upper) \
            == pytest.approx(bound, rel=1e-6)
    # 0.0497... >= 1% but < 10%: every window at tau = 1%, none at 10%.
    by_tau = {s.tau: s.windows for s in b.top40_upper_shares}
    assert by_tau[0.01] == b.windows and by_tau[0.1] == 0
    html = render_html(build_model(f, load_inputs(run_dir, f)))
    assert "p_z from API log-probs (bounds)" in html and "UPPER BOUNDS from top-2 log-probs" in html
    assert f"greedy p_z = 1 in 0 of {b.windows} windows (exact)" in html
    assert findings_bytes(f) == findings_bytes(analyze_run(run_dir))


def test_thresholds_are_typed_and_give_the_verdicts(case_dir: Path) -> None:
    """findings.thresholds is checked key by key and read as attributes, without the silent
    defaults of dict.get; the verdicts the report needs come from the findings."""
    import pydantic

    from casekit.analysis.findings import FindingsThresholds

    f = analyze_run(run_case(case_dir))
    th = f.thresholds
    assert (th.min_span_words, th.seed_k, th.m_gram, th.echo_min_words) == (15, 5, 5, 5)
    assert isinstance(th.near_exact, float) and isinstance(th.legal_defaults, bool)
    assert th.lowered  # the case sets legal_defaults: false
    # Loaded back: the same values and types.
    again = _reloaded(f)
    assert again.thresholds == th
    assert {k: type(v) for k, v in again.thresholds.model_dump().items()} == \
        {k: type(v) for k, v in th.model_dump().items()}
    good = th.model_dump()
    with pytest.raises(pydantic.ValidationError, match="min_span_word"):
        FindingsThresholds.model_validate({**good, "min_span_word": 40})  # a misspelt key
    with pytest.raises(pydantic.ValidationError, match="seed_k"):
        FindingsThresholds.model_validate({k: v for k, v in good.items() if k != "seed_k"})
    # The per-attempt verdict: generation attempts whose longest span reaches the threshold.
    hits = [x.attempt_id for x in f.attempts if f.reaches_threshold(x)]
    assert hits and all(x.mode != "score" and x.longest_words >= 15
                        for x in f.attempts if x.attempt_id in hits)
    assert not any(f.reaches_threshold(x) for x in f.attempts if x.mode == "score")
    assert set(f.findings[0].exhibit_attempts) <= set(hits)


def _reloaded(f: Findings) -> Findings:
    """Findings loaded back from the bytes casekit writes: findings.json and attempts.parquet."""
    from casekit.analysis.analyze import findings_bytes, findings_from_bytes
    from casekit.analysis.attempt_table import table_files

    return findings_from_bytes(findings_bytes(f), table_files(f.attempts)[0])


# --- the refusal regex's prefilter -------------------------------------------------------------

_REFUSALS = [  # one phrasing per alternative of REFUSAL_RE, in its order
    "I'm sorry", "I am sorry", "I apologise", "I can't share", "I cannot", "I am unable",
    "I’m unable", "I won’t be able", "because of copyright", "copyrighted material"]


def _alternatives(pattern: str) -> int:
    """The top-level alternatives inside REFUSAL_RE's outer group."""
    depth, count, escaped = 0, 1, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 1:
            count += 1
    return count


def test_refusal_prefilter_knows_every_alternative() -> None:
    # A new alternative needs its literal in _REFUSAL_NEEDLES and a phrasing here.
    assert _alternatives(REFUSAL_RE.pattern) == len(_REFUSALS)
    for phrase in _REFUSALS:
        for text in (phrase, phrase.upper(), f"Well. {phrase.lower()}, said she", phrase + "!"):
            assert refusal_in(text) == bool(REFUSAL_RE.search(text)) is True
            assert any(n in text.lower() for n in _REFUSAL_NEEDLES)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(
    [*_REFUSALS, "i", "I", "'", "’", "m", " ", "sorry", "SoRrY", "ſorry", "can", "not",
     "t help", "won", "unable", "copyright", "ed text", "due to", "apologi", "ze", "K",
     "e", "x", "\n", "İ", "ı"]), max_size=12))
def test_property_refusal_prefilter_agrees_with_the_regex(parts: list[str]) -> None:
    text = "".join(parts)
    assert refusal_in(text) == bool(REFUSAL_RE.search(text))
