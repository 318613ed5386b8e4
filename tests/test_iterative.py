"""Iterative continuation: multi-turn sessions, the model's own turns are not leakage."""

from __future__ import annotations

from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.ledger import read_records
from casekit.normalize import tokenize
from casekit.records import AttemptRecord
from casekit.run.runner import Runner
from tests.conftest import SUBJECT, case_yaml

WORDS = SUBJECT.split()
# The seed is the first 10 words; the model continues with words 10-29, then 30-49, then stops.
TURN1 = " ".join(WORDS[10:30])
TURN2 = " ".join(WORDS[30:50])

MODELS = f"""\
models:
  - id: bot
    provider: scripted
    model: s
    params:
      turns:
        subject: ["{TURN1}", "{TURN2}"]
        control: ["Nothing I know.", "I am sorry, I cannot continue this text.", "never sent"]
"""
STRATEGIES = """\
strategies:
  - name: iterative_continuation
    params: {seed_words: 10, max_turns: 4, max_tokens: 50}
thresholds: {min_span_words: 15, legal_defaults: false}
"""


def test_sessions_feed_back_and_stop(case_dir: Path) -> None:
    (case_dir / "case.yaml").write_text(case_yaml(MODELS, STRATEGIES))
    out = Runner(load_case(case_dir / "case.yaml")).run()
    recs = {r.attempt.work_id: r for r in read_records(out.ledger_path)
            if isinstance(r, AttemptRecord)}
    subj, ctrl = recs["subject"], recs["control"]
    assert subj.attempt.intent == "reconstruction" and subj.attempt.session is not None
    turns = subj.result.raw_response["turns"]  # type: ignore[union-attr]
    assert [t["text"] for t in turns] == [TURN1, TURN2, ""]
    assert subj.result.raw_response["stopped"] == "empty turn"  # type: ignore[union-attr]
    second = subj.result.raw_request["turns"][1]  # type: ignore[union-attr]
    sent = second["messages"]
    assert sent[-2] == {"role": "assistant", "content": TURN1}
    assert sent[-1] == {"role": "user", "content": "Continue."}
    # The control session ends on the refusal in turn 2: turn 3 is never sent.
    cturns = ctrl.result.raw_response["turns"]  # type: ignore[union-attr]
    assert len(cturns) == 2 and ctrl.result.raw_response["stopped"] == "stop pattern"  # type: ignore[union-attr]


def test_stitched_turns_are_credited(case_dir: Path) -> None:
    (case_dir / "case.yaml").write_text(case_yaml(MODELS, STRATEGIES))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    (a,) = [x for x in f.attempts if x.work_id == "subject"]
    # Both turns (40 whitespace words) credited as one span: turn 1 is the model's own text,
    # not leakage. Counted in light-words tokens ("miller's" is two).
    n = len(tokenize(TURN1 + "\n" + TURN2, "light-words"))
    assert n >= 40
    assert a.longest_words == n
    assert a.echo_words == 0
    (s,) = [x for x in f.findings if x.work_id == "subject"]
    assert s.coverage.longest_block_words == n
