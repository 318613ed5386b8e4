"""Divergence [Nas23]: only output after the model stops repeating the word counts."""

from __future__ import annotations

from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.run.runner import Runner
from casekit.strategies.divergence import DivergencePoint
from tests.conftest import SUBJECT, case_yaml

WORDS = SUBJECT.split()
PASSAGE = " ".join(WORDS[20:50])


def _run(case_dir: Path, subject_output: str) -> list:  # type: ignore[type-arg]
    models = f"""\
models:
  - id: bot
    provider: scripted
    model: s
    params:
      outputs:
        subject: "{subject_output}"
        control: "poem poem poem poem poem"
"""
    strategies = """\
strategies:
  - name: divergence
    params: {words: [poem]}
thresholds: {min_span_words: 15, legal_defaults: false}
"""
    (case_dir / "case.yaml").write_text(case_yaml(models, strategies))
    f = analyze_run(Runner(load_case(case_dir / "case.yaml")).run().run_dir)
    return f.attempts


def test_text_after_divergence_is_credited(case_dir: Path) -> None:
    attempts = _run(case_dir, "poem " * 40 + PASSAGE)
    (subj,) = [a for a in attempts if a.work_id == "subject"]
    assert subj.intent == "adversarial" and subj.fields(DivergencePoint).diverged_at_word == 40
    assert subj.longest_words >= 30 and subj.outcome == "match"
    (ctrl,) = [a for a in attempts if a.work_id == "control"]
    assert ctrl.fields(DivergencePoint).diverged_at_word == 5 and ctrl.longest_words == 0


def test_text_before_divergence_never_counts(case_dir: Path) -> None:
    # The work's words inside the repetition phase are masked: a model that never diverges
    # shows nothing, even if "poem" happens to be in the work.
    attempts = _run(case_dir, "poem " * 60)
    (subj,) = [a for a in attempts if a.work_id == "subject"]
    assert subj.fields(DivergencePoint).diverged_at_word == 60 and subj.longest_words == 0
    assert subj.outcome == "no_match"
