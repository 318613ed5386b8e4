"""Imported outputs say what they were (issue 17): kinds analyzed as casekit's own attempts of
that strategy, evidence-only cases, provenance the source lacks recorded as "not recorded",
one fsync per batch."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.ledger import LEDGER_NAME, read_records, verify_chain
from casekit.records import AttemptRecord, RunEnd, RunStart
from casekit.run.importer import ImportFileError, import_outputs
from casekit.run.runner import default_run_dir
from casekit.strategies.prefix import DiscoverableRates
from tests.conftest import CONTROL, SUBJECT
from tests.test_import import write_csv, write_jsonl

WORDS = SUBJECT.split()
PREFIX = " ".join(WORDS[:10])
TARGET = " ".join(WORDS[10:70])
PASSAGE = "The [MASK] daughter counted the sacks of grain twice"

EVIDENCE_CASE = textwrap.dedent("""\
    case:
      id: evidence
      title: Evidence only
      matter: none
      examiner: Tester
      organization: Test Org
    works:
      - id: subject
        title: The Mill
        author: Anon
        path: subject.txt
        role: subject
      - id: control
        title: The Lantern Shop
        author: Test Org
        path: control.txt
        role: control
    thresholds: {min_span_words: 15, legal_defaults: false}
    """)


@pytest.fixture
def evidence_case(tmp_path: Path) -> Path:
    (tmp_path / "subject.txt").write_text(SUBJECT, encoding="utf-8")
    (tmp_path / "control.txt").write_text(CONTROL, encoding="utf-8")
    path = tmp_path / "case.yaml"
    path.write_text(EVIDENCE_CASE, encoding="utf-8")
    return path


def cloze_rows(model: str = "GPT-4 (study)", n: int = 10, correct: int = 9) -> list[dict[str, str]]:
    return [{"kind": "name_cloze", "work_id": "subject", "model": model,
             "masked_name": "Miller", "passage": PASSAGE + f" (passage {i})",
             "output": "<name>Miller</name>" if i < correct else "<name>Mary</name>",
             "source": "Chang et al. 2023, public answers"} for i in range(n)]


def test_imported_name_cloze_answers_give_cloze_accuracy(run_dir_fixture: Path,
                                                         tmp_path: Path) -> None:
    """Defect 5: name-cloze answers imported as such are measured as name cloze, not as
    extraction attempts that match nothing."""
    before = analyze_run(run_dir_fixture)
    base = next(f for f in before.findings if (f.model_id, f.work_id) == ("bot", "subject"))
    res = import_outputs(run_dir_fixture, write_csv(tmp_path / "cloze.csv", cloze_rows("x")))
    assert res.imported == 10
    recs = [r for r in read_records(run_dir_fixture / LEDGER_NAME)
            if isinstance(r, AttemptRecord) and r.attempt.id in res.new_ids]
    assert {r.attempt.strategy for r in recs} == {"name_cloze"}
    assert {r.attempt.expected for r in recs} == {"Miller"}
    assert all(r.attempt.intent == "adversarial" for r in recs)
    f = analyze_run(run_dir_fixture)
    assert f.imported_attempts == 10
    mine = next(x for x in f.findings if (x.model_id, x.work_id) == ("bot", "subject"))
    cloze = mine.measures["name_cloze"].model_dump()["name_cloze"]
    assert (cloze["accuracy"]["k"], cloze["accuracy"]["n"]) == (9, 10)
    # Not in the extraction rate: it is what casekit's own attempts alone gave.
    assert (mine.extraction.k, mine.extraction.n) == (base.extraction.k, base.extraction.n)
    # Nor in the test against the control: a name-cloze answer is never matched against the
    # work, so it cannot have a span; counted, the 10 answers made the subject's rate k of
    # n + 10 (and would have lowered a control floor the same way).
    assert base.vs_control is not None and mine.vs_control is not None
    assert (mine.vs_control.subject.k, mine.vs_control.subject.n) == (
        base.vs_control.subject.k, base.vs_control.subject.n)
    assert mine.vs_control.p_value == base.vs_control.p_value


@pytest.fixture
def run_dir_fixture(case_dir: Path) -> Path:
    from casekit.run.runner import Runner

    out = Runner(load_case(case_dir / "case.yaml")).run()
    assert out.complete
    return out.run_dir


def test_evidence_only_case_imports_analyzes_and_reports(evidence_case: Path,
                                                         tmp_path: Path) -> None:
    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

    case = load_case(evidence_case)
    assert case.spec.models == [] and case.spec.strategies == []
    run_dir = default_run_dir(case)
    assert not run_dir.exists()
    verbatim = " ".join(WORDS[20:80])
    rows = cloze_rows() + [
        {"kind": "prefix_continuation", "work_id": "subject", "model": "GPT-4 (study)",
         "prefix": PREFIX, "target_text": TARGET, "output": TARGET,
         "captured_at": "2025-06-03T14:05:00Z", "temperature": "0"},
        # No kind: free-form, by its intent; no capture time, captured_by or source.
        {"work_id": "subject", "model": "chat UI model", "intent": "benign",
         "prompt": "Tell me about The Mill.", "output": "Sure. " + verbatim},
    ]
    res = import_outputs(evidence_case, write_jsonl(tmp_path / "evidence.jsonl", rows))
    assert res.run_dir == run_dir and res.imported == 12
    recs = read_records(run_dir / LEDGER_NAME)
    assert isinstance(recs[0], RunStart) and recs[0].models == [] and \
        recs[0].planned_attempts == 0
    assert isinstance(recs[1], RunEnd) and recs[1].complete
    free = [r for r in recs if isinstance(r, AttemptRecord) and r.attempt.model_id ==
            "chat UI model"][0]
    assert free.result is not None
    prov = free.result.raw_response["imported"]
    assert (prov["captured_at"], prov["captured_by"], prov["source"]) == (None, None, None)
    assert prov["kind_stated"] is False and free.attempt.strategy == "imported"
    prefix = [r for r in recs if isinstance(r, AttemptRecord) and
              r.attempt.strategy == "prefix_continuation"][0]
    assert prefix.result is not None and prefix.attempt.prompt == PREFIX
    assert [SUBJECT[s.start:s.end] for s in prefix.attempt.supplied] == [PREFIX]
    assert prefix.result.raw_request["decoding"] == {"temperature": 0.0}
    # Re-importing records nothing twice.
    ledger = (run_dir / LEDGER_NAME).read_bytes()
    again = import_outputs(evidence_case, tmp_path / "evidence.jsonl")
    assert again.imported == 0 and (run_dir / LEDGER_NAME).read_bytes() == ledger

    f = analyze_run(run_dir)
    assert f.complete and f.planned_attempts == 0 and f.imported_attempts == 12
    by = {(x.model_id, x.work_id): x for x in f.findings}
    study = by[("GPT-4 (study)", "subject")]
    disc = study.measure(DiscoverableRates)
    assert disc is not None and disc.discoverable_exact is not None
    assert (disc.discoverable_exact.k, disc.discoverable_exact.n) == (1, 1)
    chat = by[("chat UI model", "subject")]
    assert (chat.regurgitation.k, chat.regurgitation.n) == (1, 1)

    html = render_html(build_model(f, load_inputs(run_dir, f)))
    assert "Imported outputs" in html and "not recorded" in html
    assert ("Of them, 1 stated no kind of attempt; such outputs are analyzed as free-form"
            in html)
    assert "name_cloze (analyzed as casekit" in html
    assert "capture time not recorded for 11 of 12" in html
    # The one capture time recorded, in Methods' imported outputs (it used to appear only as
    # the start of casekit's own attempts in the bottom line).
    assert "captured 2025-06-03T14:05:00Z (UTC, as the source states)" in html
    # The bottom line counts casekit's attempts apart from the imported ones, whatever kind
    # an importer stated: it used to give the 11 imports of a stated kind as casekit's own
    # adversarial attempts ("0 of 0 planned attempts (0 benign, 11 adversarial ...)"), their
    # capture time as the run's start, and "a further 1 output(s)" imported of 12.
    # An evidence-only case says so, rather than "casekit recorded 0 of 0 planned attempts
    # ... from - to -. A further 12 output(s) ...".
    assert ("casekit planned and sent no attempts in this case (1 subject work and 1 control "
            "work). The 12 outputs analyzed here were captured outside casekit and "
            "imported") in html
    assert "casekit recorded 0 of 0" not in html and "A further" not in html
    # The effort table does not claim each row's planned count equals its recorded count
    # (every row is of imported outputs, "not planned").
    assert ("casekit planned no attempts in this case: every row counts imported outputs"
            in html)
    assert "each row&#39;s planned count equals its recorded count" not in html
    # GPT-4 (study) has 11 adversarial attempts, 10 of them name-cloze answers: its extraction
    # rate is 1 of 1 generation attempts, and the summary says n counts only those (it said
    # "among all attempts of that intent").
    assert (study.extraction.k, study.extraction.n) == (1, 1)
    # Nothing claims casekit ran, sent or could re-send anything: the disclosures said "the
    # models were served by their providers (see the manifest for what each reported)" and
    # "each attempt was sent once in this run", custody "first attempt recorded".
    flat = " ".join(html.split())
    assert ("casekit ran no model in this case: every output it analyzes was captured outside "
            "casekit and imported") in flat
    assert "No re-run is possible from this case: casekit sent no request in it" in flat
    assert "served by their providers" not in flat and "sent once in this run" not in flat
    assert "first imported output recorded" in flat
    assert "last imported output recorded (12 in all)" in flat
    assert "first attempt recorded" not in flat
    assert ("No control generation attempts for GPT-4 (study), chat UI model: no rate of chance "
            "reproduction of an unseen text was measured for those models, and their figures "
            "stand without a floor") in flat
    summary = " ".join(html.split('id="summary"')[1].split("</p>")[0].split())
    assert "among all generation attempts of that intent" in summary
    assert "(name-cloze answers, teacher-forced windows) are not in n" in summary
    assert "For the 12 imported outputs casekit did not send the requests" in html


@pytest.mark.parametrize("change, expect", [
    ({"output": ""}, ":2: output: no output text"),
    ({"work_id": "the-mill"}, ":2: work_id: unknown work 'the-mill'"),
    ({"intent": "benign"}, ":2: intent: a name_cloze attempt is adversarial, not benign"),
    ({"masked_name": ""}, ":2: masked_name: empty"),
    ({"passage": "no mask here"}, ":2: passage: a name_cloze row needs the passage"),
    ({"kind": "guess"}, ":2: kind: 'guess' is not a kind"),
    ({"prefix": "x"}, ":2: prefix: only prefix_continuation rows have a prefix"),
])
def test_bad_rows_of_an_evidence_only_case_record_nothing(evidence_case: Path, tmp_path: Path,
                                                          change: dict[str, str],
                                                          expect: str) -> None:
    from click.testing import CliRunner

    from casekit.cli import cli

    rows = cloze_rows(n=2)
    rows[0].update(change)
    src = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ImportFileError) as err:
        import_outputs(evidence_case, src)
    assert str(err.value).startswith(f"{src}{expect}"), str(err.value)
    assert "\n" not in str(err.value)
    res = CliRunner().invoke(cli, ["import", str(evidence_case), str(src)])
    assert res.exit_code == 2 and expect in res.output
    assert "Traceback" not in res.output
    assert not default_run_dir(load_case(evidence_case)).exists(), "nothing recorded"


def test_prefix_rows_need_their_prefix_in_the_work_and_a_target(evidence_case: Path,
                                                                tmp_path: Path) -> None:
    row = {"kind": "prefix_continuation", "work_id": "subject", "model": "m",
           "prefix": PREFIX, "output": TARGET}
    with pytest.raises(ImportFileError, match=r":2: target_text: a prefix_continuation row"):
        import_outputs(evidence_case, write_csv(tmp_path / "a.csv", [row]))
    row |= {"target_text": TARGET, "prefix": "words that are not in the work"}
    with pytest.raises(ImportFileError, match=r":2: prefix: not found verbatim"):
        import_outputs(evidence_case, write_csv(tmp_path / "b.csv", [row]))


def test_import_fsyncs_once_per_batch_not_per_row(evidence_case: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.ledger
    import casekit.run.importer

    import_outputs(evidence_case, write_csv(tmp_path / "first.csv", cloze_rows(n=1)))
    calls: list[int] = []
    real = casekit.ledger.os.fsync
    monkeypatch.setattr(casekit.ledger.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    monkeypatch.setattr(casekit.run.importer, "BATCH", 10, raising=False)
    rows = [dict(r, passage=PASSAGE + f" [{i}]") for i, r in enumerate(cloze_rows(n=25))]
    res = import_outputs(evidence_case, write_csv(tmp_path / "many.csv", rows))
    assert res.imported == 25
    # Batches of 10, 10 and 5, the import's note, the closing checkpoint: 5 fsyncs, not 27.
    assert len(calls) == 5
    assert verify_chain(res.ledger_path).ok
