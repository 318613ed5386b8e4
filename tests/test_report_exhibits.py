"""Exhibits a judge relies on: a finding that rests on a block stitched from several outputs
shows that block whole with each contributing attempt; highlights survive greyscale printing;
an exhibit that runs over a page says it continues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.analysis.analyze import analyze_run, load_findings, write_findings
from casekit.analysis.attempt_table import ATTEMPTS_NAME
from casekit.analysis.findings import Findings
from casekit.case import load_case
from casekit.ledger import read_records
from casekit.records import AttemptRecord
from casekit.report.build import build_report
from casekit.run.runner import Runner
from tests.conftest import CONTROL, case_yaml

# A subject text whose every 5-gram is unique (the matcher places each output exactly).
SUBJECT = " ".join(
    f"On day {w} the {a} keeper of lighthouse {n} logged {c} gulls, {d} ships and one {e} storm."
    for n, (w, a, c, d, e) in enumerate(zip(
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve"],
        ["old", "young", "tired", "cheerful", "silent", "careful", "restless", "grey-haired",
         "patient", "new", "stern", "gentle"],
        ["seven", "eleven", "forty", "ninety", "sixty", "three", "twenty", "fifty", "eighty",
         "thirty", "fifteen", "twelve"],
        ["two", "four", "six", "eight", "ten", "nine", "five", "seven", "three", "no", "many",
         "few"],
        ["fierce", "brief", "strange", "cold", "violent", "quiet", "distant", "sudden", "long",
         "bright", "dark", "wet"], strict=True)))
MODELS = """\
models:
  - id: bot
    provider: scripted
    model: s
    params:
      continue_words: {subject: 30}
      continue_paths: {subject: subject.txt}
"""
STRATEGIES = """\
strategies:
  - name: prefix_continuation
    params: {prefix_words: 10, suffix_words: 30, stride_words: 25, max_windows: 4}
thresholds:
  min_span_words: 15
  legal_defaults: false
  substantial_portion: {min_words: 60, min_share: 0.95}
"""


@dataclass
class Stitched:
    findings: Findings
    records: list[AttemptRecord]
    pages: list[str]
    pdf: Path


@pytest.fixture(scope="module")
def stitched(tmp_path_factory: pytest.TempPathFactory) -> Stitched:
    tmp = tmp_path_factory.mktemp("stitched")
    (tmp / "subject.txt").write_text(SUBJECT)
    (tmp / "control.txt").write_text(CONTROL)
    (tmp / "case.yaml").write_text(case_yaml(MODELS, STRATEGIES))
    run_dir = Runner(load_case(tmp / "case.yaml")).run().run_dir
    write_findings(run_dir, analyze_run(run_dir, table=run_dir / ATTEMPTS_NAME),
                   table_written=True)
    f = load_findings(run_dir)
    paths = build_report(run_dir, f)
    records = [r for r in read_records(run_dir / "ledger.jsonl")
               if isinstance(r, AttemptRecord) and r.attempt.work_id == "subject"]
    return Stitched(f, records, [p.extract_text() for p in PdfReader(paths.pdf).pages],
                    paths.pdf)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_finding_rests_on_a_stitched_block(stitched: Stitched) -> None:
    (mw,) = [x for x in stitched.findings.findings if x.work_id == "subject"]
    singles = [x.longest_words for x in stitched.findings.attempts if x.work_id == "subject"]
    # No single output reaches the 60-word threshold; the block stitched from them does.
    assert max(singles) < 60 <= mw.coverage.longest_block_words
    assert mw.memorization == "memorization shown"
    assert sorted(mw.coverage.longest_block_attempts) == sorted(
        r.attempt.id for r in stitched.records)


def test_the_stitched_block_is_exhibited_whole(stitched: Stitched) -> None:
    (mw,) = [x for x in stitched.findings.findings if x.work_id == "subject"]
    pages = [_flat(p) for p in stitched.pages]
    block_pages = [i for i, p in enumerate(pages) if "Reconstruction exhibit R-1" in p]
    assert block_pages, "no reconstruction exhibit"
    start = block_pages[0]
    text = " ".join(pages[start:start + 3])
    assert "the conclusion rests on stitching" in text
    assert f"block of {mw.coverage.longest_block_words} words" in text
    # Every contributing attempt with its ledger seq and record hash.
    for r in stitched.records:
        assert r.attempt.id in text and f"seq {r.seq}" in text
        assert r.hash is not None and r.hash[-12:] in text.replace(" ", "")
    # The prompts' supplied text is marked inside the block, and the block's ends.
    assert "[prompt of 2]" in text and "[block starts]" in text and "[block ends]" in text
    # The longest single-output span is given beside it.
    assert "Longest span of a single output inside the block:" in text
    # The summary says the conclusion rests on stitching and points to the exhibit.
    summary = " ".join(pages[:start])
    assert "This conclusion rests on stitching" in summary and "(Exhibit R-1)" in summary


def test_highlights_survive_greyscale_printing(stitched: Stitched) -> None:
    """The exhibit page rendered in greyscale: the highlight fill is a grey clearly darker than
    the paper and light enough for black text on it."""
    pdfium = pytest.importorskip("pypdfium2")
    pages = [_flat(p) for p in stitched.pages]
    n = next(i for i, p in enumerate(pages) if "Original text of the work, with the text" in p)
    doc = pdfium.PdfDocument(str(stitched.pdf))
    try:
        image = doc[n].render(scale=100 / 72, grayscale=True).to_pil().convert("L")
    finally:
        doc.close()
    hist = image.histogram()
    total = sum(hist)
    # The fill of highlighted words is one grey level, a sharp peak of the histogram: it must
    # lie well below the white paper (255) and well above the black text. A light tint (the
    # old yellow printed at about 223) has its peak outside the band and fails.
    peak = max(range(120, 216), key=lambda v: hist[v])
    assert hist[peak] / total > 0.01, (
        f"no highlight fill between grey levels 120 and 215 (largest: level {peak}, "
        f"{hist[peak] / total:.2%} of the page)")
    paper = max(range(256), key=lambda v: hist[v])
    assert paper >= 250


def test_one_output_is_exhibited_once(tmp_path: Path) -> None:
    """Two attempts that returned the same text (two prompts, one answer; or the first turn of
    an iterative session and the attempt with its seed prompt) make one exhibit, which names
    the other attempt; the count of attempts not exhibited does not include it."""
    from casekit.report.build import build_model
    from casekit.report.inputs import load_inputs

    passage = " ".join(SUBJECT.split()[20:50])
    (tmp_path / "subject.txt").write_text(SUBJECT)
    (tmp_path / "control.txt").write_text(CONTROL)
    models = ("models:\n  - id: bot\n    provider: scripted\n    model: s\n    params:\n"
              f"      outputs: {{subject: \"{passage}\"}}\n")
    strategies = ("strategies:\n  - name: benign_prompts\n    params: {templates: "
                  "[\"Tell me about {{ title }}.\", \"Quote {{ title }}.\"]}\n"
                  "thresholds: {min_span_words: 15, legal_defaults: false}\n")
    (tmp_path / "case.yaml").write_text(case_yaml(models, strategies))
    run_dir = Runner(load_case(tmp_path / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    (mw,) = [x for x in f.findings if x.work_id == "subject"]
    assert len(mw.exhibit_attempts) == 2
    model = build_model(f, load_inputs(run_dir, f))
    (group,) = [g for g in model.exhibit_groups if g.work_id == "subject"]
    (ex,) = group.exhibits
    other = next(a for a in mw.exhibit_attempts if a != ex.attempt_id)
    assert any(other in n and "not exhibited twice" in n for n in ex.notes)
    assert group.not_shown == 0


def test_contributor_tags_read_as_ranges_and_the_cover_is_the_fewest() -> None:
    from casekit.report.sections.reconstruction import minimal_cover, tag_list

    assert tag_list((1, 2, 3, 4, 7, 9, 10)) == "1\u20134, 7, 9, 10"
    assert tag_list((5,)) == "5"
    # [0,5) and [4,10) cover [0,10); [0,3), [3,8) and [5,10) are not needed.
    assert minimal_cover(0, 10, [[(0, 5)], [(0, 3)], [(3, 8)], [(4, 10)], [(5, 10)]]) == [0, 3]
    # Runs of one attempt count together; a gap no run covers is stepped over.
    assert minimal_cover(0, 10, [[(0, 2), (5, 10)], [(2, 6)]]) == [0, 1]
    assert minimal_cover(0, 10, [[(0, 4)], [(6, 10)], [(1, 3)]]) == [0, 1]


def test_a_block_longer_than_an_exhibit_is_shown_in_part(stitched: Stitched) -> None:
    """A block stitched from a novel's worth of outputs is not printed whole (the pages would
    grow with the attempts): the exhibit shows the block's first words and the fewest
    attempts covering them, says so, and still states the whole block's length, contributors
    and longest single run."""
    from casekit.report import render
    from casekit.report.build import build_model
    from casekit.report.inputs import load_inputs
    from casekit.report.sections import reconstruction as R

    f = stitched.findings
    run_dir = stitched.pdf.parent.parent
    (mw,) = [x for x in f.findings if x.work_id == "subject"]
    words = mw.coverage.longest_block_words
    whole = build_model(f, load_inputs(run_dir, f))
    (whole_block,) = [g.block for g in whole.exhibit_groups if g.block is not None]
    assert whole_block.shown_note == ""
    with pytest.MonkeyPatch.context() as mp:
        # The case's threshold (60 words) is larger than the cap: the part shown reaches it.
        mp.setattr(R, "BLOCK_SHOWN_WORDS", 1)
        assert R.shown_words(f) == 60 < words
        model = build_model(f, load_inputs(run_dir, f))
    (block,) = [g.block for g in model.exhibit_groups if g.block is not None]
    assert f"the block is {words:,} words; this exhibit shows its first 60" in block.shown_note
    assert block.shown_words == "60"
    b0 = mw.coverage.longest_block_start
    assert b0 is not None
    # Only the contributors needed for the first 60 words, plus the longest single run.
    assert len(block.contributors) <= len(whole_block.contributors)
    assert block.total == whole_block.total == len(mw.coverage.longest_block_attempts)
    assert block.longest_single == whole_block.longest_single
    text = "".join(s.text for s in block.original)
    assert "[part shown ends; the block continues for" in text
    assert "[block ends]" not in text and "[block starts]" in text
    # The work text shown stops at the 60th block word.
    tokens = load_inputs(run_dir, f).works["subject"].tokens
    end = tokens.char_span(b0, b0 + 60)[1]
    raw = load_inputs(run_dir, f).works["subject"].raw
    assert raw[end - 20:end] in text and raw[end:end + 30].strip() not in text
    html = render.render_html(model)
    assert "Shown in part: the block is" in html
    assert "the block's first 60 words, with the text before<" in html


def test_the_exhibited_attempts_cover_the_part_shown() -> None:
    """exhibited(): the fewest attempts covering the words shown, plus the longest single run
    of the whole block even when it lies beyond the part shown."""
    from casekit.report.sections.reconstruction import _Inside, exhibited

    def part(aid: str, *runs: tuple[int, int]) -> _Inside:
        return _Inside(aid, list(runs), max(b - a for a, b in runs), sum(b - a for a, b in runs))

    parts = [part(f"a{i}", (10 * i, 10 * i + 12)) for i in range(100)]  # a block of 1,002 words
    parts.append(part("long", (500, 540)))
    # Words [0, 50) need a0..a4 (each reaches 2 words into the next); "long" is added.
    assert exhibited(parts, 0, 50) == [0, 1, 2, 3, 4, 100]
    # The whole block: "long" reaches 540, so a50..a53 are not needed (a49 ends at 502,
    # "long" to 540, then a53 ends at 542 ...).
    whole = exhibited(parts, 0, 1002)
    assert 100 in whole and not {50, 51, 52} & set(whole)
