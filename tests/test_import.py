"""casekit.run.importer: outputs captured elsewhere enter a run's ledger as imported attempts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.ledger import LEDGER_NAME, read_records, verify_chain
from casekit.records import IMPORT_STRATEGY, AttemptRecord, Checkpoint, Note
from casekit.run.importer import ImportFileError, import_outputs
from casekit.run.runner import Runner
from tests.conftest import SUBJECT

# A benign request answered with 40+ words of the subject verbatim: a regurgitation finding.
VERBATIM = SUBJECT[SUBJECT.index("The miller's daughter"):SUBJECT.index("She loaded the cart")]
EXCERPT = "Beyond the bridge the road climbed through beech woods towards the market town"
PNG = b"\x89PNG\r\n\x1a\n" + b"casekit test screenshot" * 10

ROWS = [
    {"prompt": "Tell me about The Mill.", "output": "Of course. " + VERBATIM,
     "model": "ChatGPT 4o (web)", "captured_at": "2025-06-03T14:05:00Z",
     "captured_by": "A. Colleague", "source": "https://chatgpt.com/share/abc",
     "intent": "benign", "work_id": "subject", "screenshot": "shots/one.png"},
    {"prompt": "Continue: Copper kettles hummed in the lantern shop",
     "output": "while the rain fell,\nand nobody came.", "model": "ChatGPT 4o (web)",
     "captured_at": "2025-06-03T16:10:30+02:00", "captured_by": "A. Colleague",
     "source": "chatgpt.com web UI", "intent": "adversarial", "work_id": "control"},
    {"prompt": "Recite the passage about the road.", "output": "I'm sorry, I can't help.",
     "model": "ChatGPT 4o (web)", "captured_at": "2025-06-04T09:00:00.250-05:00",
     "captured_by": "B. Examiner", "source": "chatgpt.com web UI", "intent": "reconstruction",
     "work_id": "subject", "target_text": EXCERPT, "label": "road passage"},
]


@pytest.fixture
def run_dir(case_dir: Path) -> Path:
    out = Runner(load_case(case_dir / "case.yaml")).run()
    assert out.complete
    return out.run_dir


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def import_dir(tmp_path: Path) -> Path:
    d = tmp_path / "captures"
    (d / "shots").mkdir(parents=True)
    (d / "shots" / "one.png").write_bytes(PNG)
    return d


def imported(run_dir: Path) -> list[AttemptRecord]:
    return [r for r in read_records(run_dir / LEDGER_NAME)
            if isinstance(r, AttemptRecord) and r.attempt.strategy == IMPORT_STRATEGY]


def test_csv_import_records_every_row_with_its_provenance(run_dir: Path,
                                                          import_dir: Path) -> None:
    src = write_csv(import_dir / "captures.csv", ROWS)
    before = read_records(run_dir / LEDGER_NAME)
    res = import_outputs(run_dir, src)
    assert (res.rows, res.imported, res.skipped, res.format) == (3, 3, 0, "csv")
    assert res.source_sha256 == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    after = read_records(run_dir / LEDGER_NAME)
    assert [r.hash for r in after[:len(before)]] == [r.hash for r in before], "nothing lost"
    assert verify_chain(run_dir / LEDGER_NAME).ok
    assert after[-1].hash == res.head_hash
    recs = imported(run_dir)
    assert [r.attempt.id for r in recs] == res.attempt_ids == res.new_ids
    assert all(r.attempt.id.startswith("i-") and len(r.attempt.id) == 22 for r in recs)
    first, second, third = recs
    a = first.attempt
    assert (a.strategy, a.intent, a.mode, a.work_id, a.model_id) == (
        "imported", "benign", "chat", "subject", "bot")
    assert [m.model_dump() for m in a.messages] == [{"role": "user",
                                                      "content": ROWS[0]["prompt"]}]
    assert first.status == "ok" and first.tries == [] and first.result is not None
    assert first.result.text == ROWS[0]["output"]
    assert first.result.returned_model == "ChatGPT 4o (web)"
    assert first.started_at == first.completed_at == "2025-06-03T14:05:00.000000Z"
    prov = first.result.raw_response["imported"]
    assert prov["captured_by"] == "A. Colleague"
    assert prov["source"] == "https://chatgpt.com/share/abc"
    assert prov["captured_at"] == "2025-06-03T14:05:00Z"
    assert prov["screenshot"] == {"path": "shots/one.png", "bytes": len(PNG),
                                  "sha256": "sha256:" + hashlib.sha256(PNG).hexdigest()}
    assert prov["file"] == {"name": "captures.csv", "sha256": res.source_sha256,
                            "format": "csv", "line": 2, "row": 0}
    assert {k: v for k, v in prov["row"].items() if v} == ROWS[0], "the row as read"
    assert first.result.raw_request["imported"] is True
    # The second row's output holds a line break: the third row starts on line 5.
    assert second.result is not None and third.result is not None
    assert second.result.raw_response["imported"]["file"]["line"] == 3
    assert third.result.raw_response["imported"]["file"]["line"] == 5
    assert second.started_at == "2025-06-03T14:10:30.000000Z"
    assert third.started_at == "2025-06-04T14:00:00.250000Z"
    assert third.attempt.target is not None
    assert SUBJECT[third.attempt.target.start:third.attempt.target.end] == EXCERPT
    assert third.attempt.label == "road passage"
    assert second.attempt.label == "imported from captures.csv line 3"
    assert isinstance(after[-1], Checkpoint) and after[-1].final  # the import is signed
    note = after[-2]
    assert isinstance(note, Note) and note.kind == "import"
    assert note.data["sha256"] == res.source_sha256
    assert (note.data["rows"], note.data["imported"], note.data["skipped"]) == (3, 3, 0)
    assert note.data["attempt_ids"] == res.new_ids and note.data["screenshots"] == 1


def test_jsonl_import_gives_the_same_attempts_as_csv(run_dir: Path, import_dir: Path,
                                                      tmp_path: Path) -> None:
    res = import_outputs(run_dir, write_jsonl(import_dir / "captures.jsonl", ROWS))
    assert (res.rows, res.imported, res.format) == (3, 3, "jsonl")
    recs = imported(run_dir)
    assert recs[2].result is not None
    assert recs[2].result.raw_response["imported"]["file"]["line"] == 3
    assert verify_chain(run_dir / LEDGER_NAME).ok
    # The same captures as CSV are the same attempts: nothing is recorded twice.
    again = import_outputs(run_dir, write_csv(import_dir / "captures.csv", ROWS))
    assert again.attempt_ids == res.attempt_ids and again.imported == 0


def test_reimport_is_idempotent_and_adds_only_new_rows(run_dir: Path, import_dir: Path) -> None:
    src = write_csv(import_dir / "captures.csv", ROWS[:2])
    first = import_outputs(run_dir, src)
    ledger_bytes = (run_dir / LEDGER_NAME).read_bytes()
    again = import_outputs(run_dir, src)
    assert (again.imported, again.skipped) == (0, 2)
    assert again.attempt_ids == first.attempt_ids
    assert (run_dir / LEDGER_NAME).read_bytes() == ledger_bytes, "the ledger is unchanged"
    write_csv(src, ROWS)  # a row added to the same file
    third = import_outputs(run_dir, src)
    assert (third.imported, third.skipped) == (1, 2)
    assert third.attempt_ids[:2] == first.attempt_ids
    ids = [r.attempt.id for r in imported(run_dir)]
    assert len(ids) == len(set(ids)) == 3
    # Identical rows are distinct captures: both are kept.
    dup = write_jsonl(import_dir / "dup.jsonl", [ROWS[1], ROWS[1]])
    res = import_outputs(run_dir, dup)
    assert res.imported == 1 and res.skipped == 1 and len(set(res.attempt_ids)) == 2
    assert verify_chain(run_dir / LEDGER_NAME).ok


def _fails(run_dir: Path, src: Path, expect: str) -> str:
    ledger_bytes = (run_dir / LEDGER_NAME).read_bytes()
    with pytest.raises(ImportFileError) as err:
        import_outputs(run_dir, src)
    msg = str(err.value)
    assert msg.startswith(expect), msg
    assert "\n" not in msg
    assert (run_dir / LEDGER_NAME).read_bytes() == ledger_bytes, "nothing appended"
    return msg


def test_naive_timestamp_is_rejected_with_its_line(run_dir: Path, import_dir: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[2]["captured_at"] = "2025-06-04T09:00:00"
    msg = _fails(run_dir, write_csv(import_dir / "c.csv", rows), f"{import_dir / 'c.csv'}:5: "
                 "captured_at: '2025-06-04T09:00:00' has no timezone")
    assert "Z" in msg and "+02:00" in msg
    rows[2]["captured_at"] = "yesterday"
    _fails(run_dir, write_jsonl(import_dir / "c.jsonl", rows),
           f"{import_dir / 'c.jsonl'}:3: captured_at: 'yesterday' is not an ISO 8601 time")


def test_missing_screenshot_is_an_error_naming_the_line(run_dir: Path,
                                                        import_dir: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[1]["screenshot"] = "shots/missing.png"
    msg = _fails(run_dir, write_jsonl(import_dir / "c.jsonl", rows),
                 f"{import_dir / 'c.jsonl'}:2: screenshot: no file 'shots/missing.png'")
    assert "relative to the import file" in msg


def test_unknown_work_id_lists_the_case_works(run_dir: Path, import_dir: Path) -> None:
    rows = [dict(r) for r in ROWS]
    rows[0]["work_id"] = "the-mill"
    msg = _fails(run_dir, write_csv(import_dir / "c.csv", rows),
                 f"{import_dir / 'c.csv'}:2: work_id: unknown work 'the-mill'")
    assert msg.endswith("control, subject")


@pytest.mark.parametrize("change, expect", [
    ({"intent": "curious"}, "2: intent: 'curious' is not an intent; write one of benign, "
                            "adversarial, reconstruction"),
    ({"prompt": ""}, "2: prompt: empty"),
    ({"model_id": "gpt"}, "2: model_id: unknown model 'gpt'; use one of the case's models: bot"),
    ({"target_start": "5"}, "2: target_end: give target_start and target_end together"),
    ({"target_start": "10", "target_end": "9"}, "2: target_start: [10, 9) is not a range"),
    ({"target_text": "not in the work at all"}, "2: target_text: not found verbatim"),
    ({"screenshot": "/etc/hostname"}, "2: screenshot: '/etc/hostname' is an absolute path"),
    ({"colour": "red"}, "1: colour: unknown column"),
])
def test_row_errors_name_line_column_and_fix(run_dir: Path, import_dir: Path,
                                             change: dict[str, str], expect: str) -> None:
    rows = [{**ROWS[0], **change}, ROWS[1]]
    _fails(run_dir, write_csv(import_dir / "c.csv", rows), f"{import_dir / 'c.csv'}:{expect}")


def test_file_level_errors(run_dir: Path, import_dir: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "output"} for r in ROWS]
    _fails(run_dir, write_csv(import_dir / "c.csv", rows),
           f"{import_dir / 'c.csv'}:1: output: required column is missing")
    bad = import_dir / "c.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    _fails(run_dir, bad, f"{bad}:2: not valid JSON")
    short = import_dir / "short.csv"
    short.write_text(",".join(ROWS[1]) + "\n" + "a,b\n")
    _fails(run_dir, short, f"{short}:2: the row has 2 fields and the header 8")
    with pytest.raises(ImportFileError, match="unsupported file type '.xlsx'"):
        import_outputs(run_dir, import_dir / "c.xlsx")


def test_import_by_case_file_and_the_run_goes_on(case_dir: Path, run_dir: Path,
                                                 import_dir: Path) -> None:
    res = import_outputs(case_dir / "case.yaml", write_csv(import_dir / "c.csv", ROWS))
    assert res.run_dir == run_dir and res.imported == 3
    again = Runner(load_case(case_dir / "case.yaml")).run()
    assert again.complete and again.stats.done == 0
    assert verify_chain(run_dir / LEDGER_NAME).ok


def test_import_needs_a_started_run(case_dir: Path, import_dir: Path) -> None:
    from casekit.errors import CasekitError

    with pytest.raises(CasekitError, match="has no run yet.*casekit run"):
        import_outputs(case_dir / "case.yaml", write_csv(import_dir / "c.csv", ROWS))


def test_analyzer_reports_imported_attempts(run_dir: Path, import_dir: Path) -> None:
    import_outputs(run_dir, write_csv(import_dir / "c.csv", ROWS))
    findings = analyze_run(run_dir)
    mine = [x for x in findings.attempts if x.strategy == "imported"]
    assert len(mine) == 3
    benign, adversarial, recon = mine
    assert (benign.intent, benign.outcome) == ("benign", "match")
    assert benign.longest_words >= 40 and benign.strategy_key.startswith("imported@")
    assert (adversarial.intent, adversarial.role, adversarial.outcome) == (
        "adversarial", "control", "no_match")
    assert (recon.intent, recon.outcome, recon.refusal_source) == (
        "reconstruction", "refusal", "text")
    subject = next(f for f in findings.findings
                   if f.model_id == "bot" and f.work_id == "subject")
    assert benign.attempt_id in subject.exhibit_attempts
    assert subject.regurgitation.n >= 2  # the run's benign prompt and the imported one


def test_report_model_renders_imported_attempts(run_dir: Path, import_dir: Path) -> None:
    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

    res = import_outputs(run_dir, write_csv(import_dir / "c.csv", ROWS))
    findings = analyze_run(run_dir)
    # (<wbr> marks where an identifier may break on the page; the text is the same without.)
    html = render_html(build_model(findings, load_inputs(run_dir, findings))).replace("<wbr>", "")
    assert res.attempt_ids[0] in html
    assert "imported" in html
    # Imported outputs are counted apart from the planned attempts and labelled as such.
    assert findings.imported_attempts == 3
    assert findings.recorded_attempts == findings.planned_attempts
    assert "3 imported (captured outside casekit, not planned)" in html
    assert "IMPORTED: captured outside casekit" in html  # the exhibit's label
    # Its prompt is the capture's, not one casekit sent ("Prompt as sent" said otherwise).
    assert "Prompt as the source states it (casekit did not send it)" in html
    assert "unknown: the request was sent outside casekit" in html  # no invented decoding
    assert "Captured by" in html and ROWS[0]["captured_by"] in html
    # Tools: an imported record holds the prompt and the capture, not the service's request
    # and response; the page says whether tools were used for them is unknown, and counts
    # only the requests casekit sent (it used to count the imports among those "checked").
    led = load_inputs(run_dir, findings).ledger
    assert led.checked_requests + led.unanswered_requests == findings.recorded_attempts
    assert (f"none of the {led.checked_requests} requests casekit sent and recorded with a "
            "response offered tools") in html
    assert ("For the 3 imported outputs casekit did not send the requests and holds only the "
            "prompt and output as captured") in html
    assert "whether tools, browsing or retrieval produced them is unknown" in html
    # The effort table's note: the planned counts equal the recorded ones for casekit's rows;
    # the imported rows were not planned.
    assert ("each row of casekit&#39;s attempts has a planned count equal to its recorded "
            "count; imported outputs were not planned") in html


def test_cli_import_and_its_errors(run_dir: Path, import_dir: Path) -> None:
    from click.testing import CliRunner

    from casekit.cli import cli

    ledger = run_dir / LEDGER_NAME
    bad = [dict(r) for r in ROWS]
    bad[1]["captured_at"] = "2025-06-03T16:10:30"
    before = ledger.read_bytes()
    res = CliRunner().invoke(cli, ["import", str(run_dir), str(write_csv(import_dir / "b.csv",
                                                                       bad))])
    assert res.exit_code == 2 and "has no timezone" in res.output
    assert ledger.read_bytes() == before, "nothing recorded is lost or rewritten"
    res = CliRunner().invoke(cli, ["import", str(run_dir), str(write_csv(import_dir / "g.csv",
                                                                       ROWS))])
    assert res.exit_code == 0, res.output
    assert "imported 3 of 3 rows" in res.output
    assert verify_chain(ledger).ok and len(imported(run_dir)) == 3


EVIL = "\x1b[2J\u202eevil\x07"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("field", ["work_id", "captured_at", "intent", "kind", "model_id",
                                   "temperature", "screenshot", "column", "file name",
                                   "accepted"])
def test_what_an_import_echoes_has_control_characters_escaped(
        run_dir: Path, import_dir: Path, field: str) -> None:
    """An ESC sequence or a bidi override in an import file's field, column name or file name
    reaches the terminal by code point, in errors and in the summary (issue 15 item 3: anything
    echoed to a terminal). The summary printed a file name raw."""
    from click.testing import CliRunner

    from casekit.cli import cli

    row = {k: v for k, v in ROWS[1].items()}
    name = "c.jsonl"
    if field == "column":
        row[EVIL] = "x"
    elif field == "file name":
        name = f"c{EVIL}.jsonl"
    elif field == "accepted":
        row.update(model=EVIL, captured_by=EVIL, source=EVIL, label=EVIL)
    else:
        row[field] = EVIL
    src = import_dir / name
    src.write_text(json.dumps(row) + "\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["import", str(run_dir), str(src)])
    assert res.exit_code == (0 if field in ("file name", "accepted") else 2), res.output
    assert not RAW_CONTROL.search(res.output), ascii(res.output)
    if field in ("column", "file name"):
        assert "\u27e8U+001B\u27e9[2J\u27e8U+202E\u27e9evil\u27e8U+0007\u27e9" in res.output
