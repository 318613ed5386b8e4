"""The report's words (issue 16): the bottom line first, no legal labels for research
conventions, every reference cited, a reproducible (not "accurate") certification, and the
control's rate named for what it is. Rendered from the golden demo ledger (a real run)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from casekit.analysis.findings import Findings
from tests.golden.make_golden import DEMO, Rendered

pytestmark = pytest.mark.slow


@dataclass
class Demo:
    findings: Findings
    html: str
    pages: list[str]


@pytest.fixture(scope="module")
def demo(golden_demo: Rendered) -> Demo:
    from pypdf import PdfReader

    paths = golden_demo.paths
    return Demo(golden_demo.findings, paths.html.read_text(encoding="utf-8"),
                [p.extract_text() for p in PdfReader(paths.pdf).pages])


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00ad", "").replace("-\n", "-"))


def _own_prose(html: str) -> str:
    """The report's own words: the HTML without quoted texts (exhibits, the sample of
    attempts, long texts: model output and the works) and without the case's own fields."""
    for cls in ("exhibits", "attempts", "long-texts"):
        html = re.sub(rf'<section class="{cls}">.*?</section>', "", html, flags=re.S)
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    html = re.sub(r"<meta[^>]*>|<title>.*?</title>", "", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", html)
    return _flat(text.replace("Demonstration only; no legal matter", "<matter>"))


def test_the_first_pages_state_the_result_in_sentences(demo: Demo) -> None:
    first = _flat(" ".join(demo.pages[:3]))
    assert "Bottom line" in _flat(demo.pages[1])
    for f in demo.findings.findings:
        assert f"{f.model_id} \u00d7" in first
    assert "either one suffices" in first
    assert "Fisher's exact" in first and "Holm" in first
    assert "Longest span observed" in first
    for word in ("no extraction", "not memorized\u201d", "not memorized."):
        assert word not in first.replace("never \u201cnot memorized\u201d", "")


def test_no_legal_label_for_a_research_convention(demo: Demo) -> None:
    prose = _own_prose(demo.html).lower()
    assert "legal" not in prose
    assert "substantial portion" not in prose
    assert "research convention" in prose
    assert "measurement.md" not in prose


def test_every_reference_listed_is_cited_and_every_citation_listed(demo: Demo) -> None:
    html = demo.html
    refs = html.split('id="references"', 1)
    listed = re.findall(r"<dt>\[([A-Za-z]+\d\d)\]</dt>", refs[1])
    assert listed
    body = _own_prose(refs[0]) + _own_prose(refs[1].split("</section>", 1)[1])
    for key in listed:
        assert re.search(rf"\[[^\]]*\b{key}\b", body), f"[{key}] is listed but never cited"
    cited = set(re.findall(r"\b([A-Z][a-z]{1,3}\d\d|[A-Z]{2}\d\d)\b", " ".join(
        re.findall(r"\[([^\]]+)\]", body))))
    assert cited <= set(listed), f"cited but not listed: {sorted(cited - set(listed))}"
    assert "Extracting books from production language models" in refs[1]


def test_certification_says_reproducible_not_accurate(demo: Demo) -> None:
    cert = _flat(demo.html.split('id="certification"', 1)[1])
    assert "reproducible" in cert and "accurate" not in cert


def test_the_controls_rate_is_chance_reproduction_and_each_control_gives_its_reason(
        demo: Demo) -> None:
    prose = _own_prose(demo.html)
    assert "false-positive" not in prose
    assert "chance reproduction of an unseen text" in prose
    # The golden case states no training cutoff and does not mark its control unpublished:
    # the report says the qualification is asserted, not shown, and that the control is short.
    assert "asserted, not shown" in prose
    assert "less than 25% of emma" in prose


def test_a_rate_with_no_attempts_reads_not_tested(demo: Demo) -> None:
    assert " 0 of 0" not in _flat(" ".join(demo.pages))


def test_each_headline_figure_equals_its_findings_value(demo: Demo) -> None:
    """Item 5: the bottom line's figures are the findings.json values, each shown once there
    (no two numbers for the same quantity)."""
    import json

    from casekit.report.sections.bottom_line import fmt_p
    from casekit.report.text import fmt_pct

    data = json.loads(_own_prose_json(demo))
    bl = _flat(demo.html.split('id="bottom-line"', 1)[1].split("</section>", 1)[0])
    bl = html.unescape(re.sub(r"<[^>]+>", "", bl))
    by_key = {(f["model_id"], f["work_id"]): f for f in data["findings"]}
    assert bl.count("\u00d7") >= len(by_key)
    for f in demo.findings.findings:
        fj = by_key[(f.model_id, f.work_id)]
        if f.role != "subject":
            continue
        text = next(t for t in bl.split(f"{f.model_id} \u00d7")[1:]
                    if t.strip().startswith(_title(demo, f.work_id)))
        text = text.split("\u00d7", 1)[0]
        assert f"coverage {fmt_pct(fj['coverage']['share'])}," in text
        assert f"longest contiguous block {fj['coverage']['longest_block_words']:,} words" in text
        for cat, intent in (("regurgitation", "benign"), ("extraction", "adversarial")):
            r = fj[cat]
            want = f"{r['k']:,} of {r['n']:,} {intent}" if r["n"] else f"{intent}: not tested"
            assert want in text, (f.model_id, f.work_id, want)
        t = fj["vs_control"]
        assert f"{t['subject']['k']:,} of {t['subject']['n']:,} generation attempts" in text
        assert f"control {t['control']['k']:,} of {t['control']['n']:,}" in text
        assert f"Fisher's exact p {fmt_p(t['p_value'])}," in text
        assert f"Holm-adjusted p {fmt_p(t['p_adjusted'])}:" in text
        assert re.search(r"Fisher's exact p (< 0\.001|= [01]\.\d+), Holm-adjusted p "
                         r"(< 0\.001|= [01]\.\d+):", text), text
        assert text.count("coverage ") == 1  # each figure once


def test_a_p_value_reads_with_its_relation() -> None:
    # "p = < 0.001" was printed for a small p (the relation doubled).
    from casekit.report.sections.bottom_line import fmt_p

    assert [fmt_p(p) for p in (1e-9, 0.00099, 0.001, 0.0123, 0.0496, 0.994, 0.995, 1.0)] == [
        "< 0.001", "< 0.001", "= 0.001", "= 0.012", "= 0.050", "= 0.994", "= 1.00", "= 1.00"]


def _own_prose_json(demo: Demo) -> str:
    from casekit.analysis.analyze import findings_bytes

    return findings_bytes(demo.findings).decode("utf-8")


def _title(demo: Demo, work_id: str) -> str:
    from casekit.case import load_case

    return next(w.title for w in load_case(DEMO / "case.yaml").spec.works if w.id == work_id)


def test_disclosures_come_from_the_run(demo: Demo) -> None:
    d = _flat(html.unescape(re.sub(r"<[^>]+>", " ", demo.html.split(
        'id="disclosures"', 1)[1].split("</section>", 1)[0])))
    assert "quantization Q4_K_M" in d and "quantization Q4_1" in d
    assert "llama-cpp-python 0.3.36" in d and "use_extra_bufts False" in d
    assert "No re-run was made" in d
    assert "this machine's clock" in d and "timestamped" in d
    assert "names no operator" in d and "root" in d


def test_the_matchers_validation_is_printed_as_computed(demo: Demo) -> None:
    """Item 7: the matcher's recall and precision on planted passages, computed at report
    time from the run's works and ledger head, are the figures under Methods."""
    from casekit.analysis.validation import validate_matcher
    from casekit.case import load_case
    from casekit.report.text import fmt_pct
    from casekit.works import load_works

    loaded = load_case(DEMO / "case.yaml")
    v = validate_matcher(load_works(loaded), loaded.spec.thresholds,
                         demo.findings.ledger_head_hash)
    sec = _flat(html.unescape(re.sub(r"<[^>]+>", " ", demo.html.split(
        'id="methods-validation"', 1)[1].split("<h2", 1)[0])))
    assert v.planted > 0
    assert (f"Recall: {v.found} of {v.planted} planted passages found "
            f"({fmt_pct(v.found / v.planted)})") in sec
    assert (f"Precision: {v.true_spans} of {v.spans} reported spans were planted "
            f"({fmt_pct(v.true_spans / v.spans)})") in sec
    assert v.seed in sec
    for w in v.works:
        assert f"{w.work_id} recall {w.found} of {w.planted}" in sec
    cert = _flat(demo.html.split('id="certification"', 1)[1])
    assert "does not measure the matcher" not in cert and "measured under Methods" in cert


def test_counts_agree_with_their_nouns_and_verbs() -> None:
    # "on 2 model(s), 1 subject work(s) and 1 control work(s)": a count now takes its noun
    # and verb in number, and no "(s)" is left in the report's sentences.

    from casekit.report import catalogue
    from casekit.report.text import agree, counted

    assert [counted(n, "model") for n in (0, 1, 2, 1204)] == [
        "0 models", "1 model", "2 models", "1,204 models"]
    assert counted(1, "attempt record") == "1 attempt record"
    assert (agree(1, "was", "were"), agree(3, "was", "were")) == ("was", "were")
    texts = [v for v in vars(catalogue).values() if isinstance(v, str)]
    templates = [p.read_text(encoding="utf-8")
                 for p in (Path(__file__).parents[1] / "templates").rglob("*.j2")]
    assert not [t for t in texts + templates if "(s)" in t]
    # Nor a plural made by hand in a template, beside report.text.counted:
    # 'attempt{{ "" if st.attempts == "1" else "s" }}' read "1,000 attempts" right and
    # would not have for another noun; the count and its noun come from counted().
    assert not [t for t in templates if re.search(r"""else ['"]s['"]""", t)]


def test_outcomes_of_attempts_that_are_not_spans_say_what_they_are(demo: Demo) -> None:
    # gemma x Emma was "Attempts by outcome: match 1, no match 22" under "not observed in
    # these attempts": the match was a correct name-cloze answer, and 6 of the "no match"
    # were teacher-forced windows. A match is now a span at the reporting threshold only.
    from casekit.strategies.name_cloze import ClozeFinding
    from casekit.strategies.teacher_forced import SummaryFields

    text = _flat(html.unescape(re.sub(r"<[^>]+>", " ", demo.html)))
    lines = re.findall(r"Attempts by outcome: ([^.]*)\.", text)
    checked = 0
    for mw in demo.findings.findings:
        nc = mw.fields(ClozeFinding).name_cloze
        if nc is None or not nc.accuracy.k:
            continue
        mine = [x for x in demo.findings.attempts
                if (x.model_id, x.work_id) == (mw.model_id, mw.work_id)]
        spans = sum(1 for x in mine if x.span_attempt and demo.findings.reaches_threshold(x))
        scored = sum(1 for x in mine if x.mode == "score" and x.outcome == "no_match")
        tf = mw.fields(SummaryFields).teacher_forced
        assert tf is not None and scored >= tf.windows > 0
        wrong = nc.accuracy.n - nc.accuracy.k
        want = (f"match {spans}, no match {mw.outcomes['no_match'] - scored - wrong}, "
                f"refusal 0, error 0, unscorable 0, correct answer {nc.accuracy.k}, wrong "
                f"answer {wrong}, not reproduced greedily {scored}")
        assert [ln.strip() for ln in lines].count(want) >= 1, (want, lines)
        checked += 1
    assert checked  # gemma x Emma answered a name-cloze passage correctly
    assert "correct answer" in _flat(" ".join(demo.pages))


def test_the_bottom_lines_counts_add_up_to_the_test_against_the_control(demo: Demo) -> None:
    # gemma x The Constitution read "Prompts with a span of 15 words or more: 0 of 2 benign
    # and 1 of 7 adversarial", then "Against the control: 2 of 10 generation attempts with a
    # span": the test counts every intent, and the iterative-continuation session (intent
    # reconstruction) that had the other span was in no count of the sentence.
    bl_all = demo.html.split('id="bottom-line"', 1)[1].split("</section>", 1)[0]
    bl = bl_all.split('<ul class="bottom-lines">', 1)[1].split("</ul>", 1)[0]
    items = [_flat(html.unescape(re.sub(r"<[^>]+>", " ", li))).strip()
             for li in re.findall(r"<li.*?</li>", bl, flags=re.S)]
    assert not [x for x in demo.findings.attempts if x.outcome in ("error", "unscorable")]
    tested = 0
    for f in demo.findings.findings:
        if f.vs_control is None:
            continue
        title = next(w.title for w in _demo_works() if w.id == f.work_id)
        item = next(t for t in items if t.startswith(f"{f.model_id} \u00d7 {title}"))
        parts = re.findall(r"(\d+) of (\d+) (benign|adversarial|reconstruction)\b", item)
        k = sum(int(p[0]) for p in parts)
        n = sum(int(p[1]) for p in parts)
        s = f.vs_control.subject
        # With no failed attempt, the intents' counts are the test's, attempt for attempt.
        assert (k, n) == (s.k, s.n), item
        assert (f"{s.k} of {s.n} generation attempts with a span (every intent; those that "
                "failed or could not be scored left out)") in item
        tested += 1
    assert tested == 8
    constitution = next(t for t in items if t.startswith("gemma \u00d7 The Constitution"))
    assert "0 of 2 benign, 1 of 7 adversarial and 1 of 1 reconstruction." in constitution
    # The effort table counts every attempt (gemma x Emma: 14 adversarial, 5 of them
    # name-cloze answers); the lines count the span-matched ones (0 of 9): the rule above
    # them says which attempts they count.
    rule = _flat(html.unescape(re.sub(r"<[^>]+>", " ", bl_all)))
    assert ("The counts below are of generation attempts matched against the work for spans, "
            "by the intent of their prompt; name-cloze answers and teacher-forced windows are "
            "measured otherwise and are not in them.") in rule
    emma = [x for x in demo.findings.attempts if (x.model_id, x.work_id, x.intent)
            == ("gemma", "emma", "adversarial")]
    assert len(emma) == 14 and sum(x.span_attempt for x in emma) == 9


def _demo_works() -> list[Any]:
    from casekit.case import load_case

    return list(load_case(DEMO / "case.yaml").spec.works)


def test_lists_the_report_cuts_say_how_much_they_left_out() -> None:
    # The demo's limitations listed each of Jingle Bells' repeated refrain lines as its own
    # passage, "characters 278-305 (repeated refrain line, counted once (at its first
    # occurrence))", twelve times, then "; ...." where the list stopped; the small-samples
    # list ended "smollm x jingle-bells...". A reader could not tell what the dots hid.
    from casekit.report.sections.limitations import RANGES_SHOWN, _excluded_text
    from casekit.report.text import some
    from casekit.shortworks import REFRAIN_REASON
    from casekit.works import Excluded

    assert some(["a", "b", "c"], 5) == "a, b, c"
    assert some(["a", "b", "c", "d"], 2) == "a, b and 2 more"
    assert some([f"s{i}" for i in range(1205)], 1, sep="; ") == "s0 and 1,204 more"
    refrains = [("song", Excluded(100 * i, 100 * i + 20, REFRAIN_REASON)) for i in range(10)]
    text = _excluded_text([("emma", Excluded(0, 120, "note added for the demo")), *refrains,
                           ("emma", Excluded(5000, 5200, "note added for the demo"))])
    assert RANGES_SHOWN == 6
    assert text == (
        "emma: 2 passages (note added for the demo), characters 0\u2013120, 5,000\u20135,200; "
        "song: 10 passages (repeated refrain line, counted at its first occurrence only), "
        "characters 0\u201320, 100\u2013120, 200\u2013220, 300\u2013320, 400\u2013420, "
        "500\u2013520 and 4 more")
    lim = Path(__file__).parents[1] / "casekit" / "report" / "sections" / "limitations.py"
    assert '"..."' not in lim.read_text(encoding="utf-8")
