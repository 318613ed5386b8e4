"""Name cloze [Cha23]: passages with one masked name, accuracy beside the majority baseline."""

from __future__ import annotations

import random
from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.analysis.findings import Findings
from casekit.case import load_case
from casekit.run.runner import Runner
from casekit.strategies.name_cloze import (
    MASK,
    ClozeAnswer,
    ClozeFinding,
    NameCloze,
    name_occurrences,
)
from casekit.works import load_works
from tests.conftest import case_yaml

STORY = (
    "The ferry left at noon. On the deck, Tamsin watched the gulls while the captain shouted. "
    "It was late when Orrin found her near the rail with a map of the islands. "
    "The wind rose and the water turned grey, and the passengers went below to wait. "
) * 6


def _case(tmp: Path, answer: str) -> Path:
    (tmp / "subject.txt").write_text(STORY)
    models = f"""\
models:
  - id: bot
    provider: scripted
    model: s
    params: {{default: "<name>{answer}</name>"}}
"""
    strategies = """\
strategies:
  - name: name_cloze
    params: {passage_words: 20, max_passages: 6}
"""
    (tmp / "case.yaml").write_text(case_yaml(models, strategies))
    return tmp / "case.yaml"


def test_names_found_and_masked(case_dir: Path) -> None:
    case = load_case(_case(case_dir, "Tamsin"))
    works = {w.id: w for w in load_works(case)}
    occ = name_occurrences(STORY, [])
    assert {n for _, _, n in occ} == {"Tamsin", "Orrin"}, "titles and sentence starts excluded"
    probes = list(NameCloze({"passage_words": 20}).plan(works["subject"], random.Random(0)))
    assert probes
    for p in probes:
        passage = p.text.split("Input: ")[-1]
        assert passage.count(MASK) == 1 and p.expected in {"Tamsin", "Orrin"}
        assert works["subject"].raw[p.target.start:p.target.end] == p.expected  # type: ignore[union-attr]
        assert "Tamsin" not in passage and "Orrin" not in passage


def test_accuracy_and_majority_baseline(case_dir: Path) -> None:
    run_dir = Runner(load_case(_case(case_dir, "tamsin"))).run().run_dir
    f = analyze_run(run_dir)
    (s,) = [x for x in f.findings if x.work_id == "subject"]
    nc = s.fields(ClozeFinding).name_cloze
    assert nc is not None
    golds = [a for a in f.attempts if a.work_id == "subject"
             and a.fields(ClozeAnswer).cloze_correct is not None]
    n_tamsin = sum(1 for a in golds if a.fields(ClozeAnswer).cloze_correct)
    # Always answering "tamsin" is right exactly where the gold is Tamsin (case-insensitive).
    assert nc.accuracy.k == n_tamsin and nc.accuracy.n == len(golds)
    assert 0 < n_tamsin < len(golds)
    assert nc.majority_baseline.k == max(n_tamsin, len(golds) - n_tamsin)
    # Cloze probes are not span attempts: they are not in the extraction rate.
    assert s.extraction.n == 0
    # Findings say so themselves, also once loaded back from findings.json.

    again = _reloaded(f)
    for found in (f, again):
        assert golds and not any(a.span_attempt for a in found.attempts
                                 if a.fields(ClozeAnswer).cloze_correct is not None)


def _reloaded(f: Findings) -> Findings:
    """Findings loaded back from the bytes casekit writes: findings.json and attempts.parquet."""
    from casekit.analysis.analyze import findings_bytes, findings_from_bytes
    from casekit.analysis.attempt_table import table_files

    return findings_from_bytes(findings_bytes(f), table_files(f.attempts)[0])
