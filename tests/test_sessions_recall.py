"""nv-recall [Ahm26] wired to iterative-continuation sessions: hand-worked on a scripted run."""

from __future__ import annotations

import textwrap
from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.run.runner import Runner
from casekit.strategies.iterative import (
    SessionRecallFields,
    SessionsRecallFields,
    masked_book,
    nv_recall_words,
)
from tests.conftest import SUBJECT, case_yaml

WORDS = SUBJECT.split()


def models(turns: list[str]) -> str:
    quoted = "\n".join(f"          - {t!r}" for t in turns)
    return textwrap.dedent("""\
        models:
          - id: bot
            provider: scripted
            model: scripted-1
            params:
              turns:
                subject:
        """) + quoted + "\n"


STRATEGY = """\
strategies:
  - name: iterative_continuation
    params: {seed_words: 10, max_chapters: 1, max_turns: 3, stop_pattern: null}
    works: [subject]
thresholds: {min_span_words: 15, legal_defaults: false}
"""


def test_session_nv_recall_masks_the_seed_and_counts_the_whole_work(case_dir: Path) -> None:
    # The work is SUBJECT, which holds one 115-word passage twice: |book| = 230 light words
    # (plain ASCII words, so the light profile's whitespace words are str.split()'s). No
    # chapter heading: the session is seeded with the first 10 words "It was a bright cold
    # day in the valley and". The model echoes the seed and goes on: turn 1 = words 0..60,
    # turn 2 = words 60..130 (its last 15 words are the second copy's first 15), turn 3 = ""
    # (the session stops). Concatenated: words 0..130 of the work.
    # With the seed's 10 book words masked, difflib's longest block is book[10:130] =
    # generation[10:130] (120 words; the other candidate, generation[0:115] against the
    # second copy book[115:230], is 115). Left of it: masked book words against the echoed
    # seed, no match; right of it: nothing left of the generation. One block of 120 >= 20
    # (pass 1) and >= 100 (pass 2): nv-recall = 120 / 230. Unmasked it would be 130 / 230.
    n = len(WORDS)
    assert n == 230
    assert WORDS[:10] == "It was a bright cold day in the valley and".split()
    turns = [" ".join(WORDS[:60]), " ".join(WORDS[60:130])]
    (case_dir / "case.yaml").write_text(case_yaml(models(turns), STRATEGY))
    f = analyze_run(Runner(load_case(case_dir / "case.yaml")).run().run_dir)
    (session,) = [x for x in f.attempts if x.strategy == "iterative_continuation"]
    one = session.fields(SessionRecallFields).nv_recall
    assert one is not None
    assert (one.matched, one.book_words) == (120, n)
    (block,) = session.fields(SessionRecallFields).nv_recall.blocks
    assert (block.book_start, block.book_end, block.gen_start, block.gen_end) == (10, 130,
                                                                                   10, 130)
    # Without the mask the seed would have been credited: 130 words.
    unmasked = nv_recall_words(WORDS, WORDS[:130])
    assert unmasked.matched == 130
    mw = next(x for x in f.findings if x.work_id == "subject")
    assert mw.fields(SessionsRecallFields).nv_recall is not None
    assert mw.fields(SessionsRecallFields).nv_recall.sessions == 1
    assert mw.fields(SessionsRecallFields).nv_recall.combined.recall == 120 / n
    assert mw.fields(SessionsRecallFields).nv_recall.best_session == 120 / n
    assert mw.fields(SessionsRecallFields).nv_recall.sessions_rate is not None
    assert mw.fields(SessionsRecallFields).nv_recall.sessions_rate.k == 1
    assert "nv_recall" in f.definitions


def test_short_sessions_fall_below_pass_two(case_dir: Path) -> None:
    # 60 matched words survive pass 1 (>= 20) but not pass 2 (>= 100): nv-recall 0.
    turns = [" ".join(WORDS[10:70])]
    (case_dir / "case.yaml").write_text(case_yaml(models(turns), STRATEGY))
    f = analyze_run(Runner(load_case(case_dir / "case.yaml")).run().run_dir)
    (session,) = [x for x in f.attempts if x.strategy == "iterative_continuation"]
    assert session.fields(SessionRecallFields).nv_recall is not None
    assert session.fields(SessionRecallFields).nv_recall.matched == 0


def test_masked_book_placeholders_match_nothing() -> None:
    book = ["a", "b", "c", "a", "b"]
    m = masked_book(book, [(0, 2)])
    assert m[2:] == ["c", "a", "b"] and len(m) == 5
    assert len(set(m[:2]) & set(book)) == 0 and m[0] != m[1]


def test_session_nv_recall_in_the_report(case_dir: Path) -> None:
    import html as html_lib
    import re

    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

    turns = [" ".join(WORDS[:60]), " ".join(WORDS[60:130])]
    (case_dir / "case.yaml").write_text(case_yaml(models(turns), STRATEGY))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    html = html_lib.unescape(render_html(build_model(f, load_inputs(run_dir, f))))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    # 120 / 230 = 52.2%
    assert "nv-recall of iterative sessions [nv_recall] 52.2% (120 of 230 words)" in text
    assert "1 session concatenated; best single session 52.2%" in text
    assert "the seed's words are masked" in text
