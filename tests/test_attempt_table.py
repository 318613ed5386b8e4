"""The per-attempt table (attempts.parquet) beside findings.json, and its CSV export."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from casekit.analysis.analyze import analyze_run, findings_bytes, load_findings, write_findings
from casekit.analysis.attempt_table import (
    ATTEMPTS_NAME,
    SCALARS,
    STRUCTURED,
    TableError,
    check_table,
    iter_table,
    rows_digest,
    table_files,
    write_csv,
    write_table,
)
from casekit.analysis.findings import AttemptAnalysis
from casekit.canonical import canonical_json
from tests.golden.make_golden import DEMO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("table") / "run"
    run.mkdir()
    (run / "ledger.jsonl").write_bytes((DEMO / "ledger.jsonl").read_bytes())
    write_findings(run, analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME),
                   table_written=True)
    return run


def test_the_columns_are_every_field_of_an_attempt_analysis() -> None:
    cols = [n for n, _ in SCALARS] + list(STRUCTURED)
    assert sorted(cols) == sorted(AttemptAnalysis.model_fields)
    assert len(set(cols)) == len(cols)


#: Fields added after findings version 2 (issue 17): the longest regurgitated span per model x
#: work, and the explicit state of top-40 p_z in a teacher-forced row.
LATER_FINDING_FIELDS = ("longest_regurgitated_words", "longest_regurgitated_attempt")
#: Figures whose definition changed on purpose after version 2: the [Liu26] instruction trim
#: now removes only instruction m-grams lying wholly inside a span, as the reference does
#: (issue 17 defect 1), so BMC@k and what derives from it moved; nothing else may.
REDEFINED_FINDING_FIELDS = ("bmc", "longest_block_bmc5")
REDEFINED_COMPARISON_FIELDS = ("bmc5",)


def _before_v2_additions(row: dict[str, Any]) -> dict[str, Any]:
    tf = row.get("teacher_forced")
    if isinstance(tf, dict):
        row = {**row, "teacher_forced": {k: v for k, v in tf.items() if k != "pz_top40"}}
    return row


def test_rows_equal_the_attempts_findings_json_held_before_the_table(analyzed: Path) -> None:
    """The golden demo's findings before the table (version 2, every attempt embedded) against
    findings.json + attempts.parquet now: the same attempts row for row, the same aggregates."""
    old = json.loads((DEMO / "findings-v2.json").read_bytes())
    new = json.loads((analyzed / "findings.json").read_bytes())
    rows = [_before_v2_additions(x.model_dump(mode="json"))
            for x in iter_table(analyzed / ATTEMPTS_NAME)]
    assert len(rows) == len(old["attempts"]) == new["attempt_rows"]["rows"] == 186
    assert [canonical_json(r) for r in rows] == [canonical_json(a) for a in old["attempts"]]
    assert "attempts" not in new
    # The aggregates: every figure version 2 had, except those redefined on purpose and the
    # wording fields (definitions, reasons), which later issues rewrote; fields added later are
    # not compared (version 2 has none of them).
    wording = ("memorization_reason",)
    for o, n in zip(old["findings"], new["findings"], strict=True):
        for k, v in o.items():
            if k in REDEFINED_FINDING_FIELDS or k in wording:
                continue
            if isinstance(v, dict) and isinstance(n.get(k), dict):
                assert {kk: n[k].get(kk) for kk in v} == v, k
            else:
                assert n.get(k) == v, k
    for o, n in zip(old["comparisons"], new["comparisons"], strict=True):
        assert {k: n.get(k) for k in o if k not in REDEFINED_COMPARISON_FIELDS} == {
            k: v for k, v in o.items() if k not in REDEFINED_COMPARISON_FIELDS}
    for key in old:
        if key not in ("attempts", "attempt_rows", "version", "definitions", "findings",
                       "comparisons"):
            assert old[key] == new[key], key
    assert (old["version"], new["version"]) == (2, 3)


def test_findings_cite_the_rows_by_content_hash(analyzed: Path) -> None:
    f = load_findings(analyzed)
    assert rows_digest(f.attempts) == f.attempt_rows
    assert findings_bytes(f) == (analyzed / "findings.json").read_bytes()
    lines = b"".join(canonical_json(x.model_dump(mode="json")) + b"\n" for x in f.attempts)
    import hashlib
    assert f.attempt_rows.sha256 == "sha256:" + hashlib.sha256(lines).hexdigest()


def test_the_same_rows_give_the_same_file_bytes(analyzed: Path, tmp_path: Path) -> None:
    f = load_findings(analyzed)
    a, csv_a, da = table_files(f.attempts)
    b, csv_b, db = table_files(list(f.attempts))
    assert (a, csv_a, da) == (b, csv_b, db)
    assert a == (analyzed / ATTEMPTS_NAME).read_bytes()


def test_typed_columns_are_queryable(analyzed: Path) -> None:
    t = pq.read_table(analyzed / ATTEMPTS_NAME, columns=["seq", "outcome", "longest_words"])
    assert t.schema.field("seq").type == "int64"
    seqs = t.column("seq").to_pylist()
    assert seqs == sorted(seqs)  # ledger order
    assert set(t.column("outcome").to_pylist()) <= {"match", "no_match", "refusal", "error",
                                                    "unscorable"}


def test_a_changed_or_damaged_table_is_refused(analyzed: Path, tmp_path: Path) -> None:
    f = load_findings(analyzed)
    fewer = tmp_path / ATTEMPTS_NAME
    write_table(fewer, f.attempts[:-1])
    with pytest.raises(TableError, match="185 rows hashing to .* cites 186 rows"):
        check_table(fewer, f.attempt_rows)
    edited = [f.attempts[0].model_copy(update={"longest_words": 999}), *f.attempts[1:]]
    write_table(fewer, edited)
    with pytest.raises(TableError, match="run `casekit analyze` again"):
        check_table(fewer, f.attempt_rows)
    fewer.write_bytes(b"PAR1 not really")
    with pytest.raises(TableError, match="not a readable Parquet file"):
        list(iter_table(fewer))


def test_csv_has_every_row_and_defuses_formulas(analyzed: Path, tmp_path: Path) -> None:
    f = load_findings(analyzed)
    hostile = f.attempts[0].model_copy(update={"label": "=HYPERLINK(\"http://x\",\"y\")",
                                               "model_id": "@SUM(1)"})
    table = tmp_path / ATTEMPTS_NAME
    write_table(table, [hostile, *f.attempts[1:]])
    out = tmp_path / "attempts.csv"
    write_csv(table, out)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 186
    assert rows[0]["label"] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert rows[0]["model_id"] == "'@SUM(1)"
    assert rows[1]["attempt_id"] == f.attempts[1].attempt_id
    assert json.loads(rows[1]["spans_json"]) == [
        s.model_dump(mode="json") for s in f.attempts[1].spans]


def test_export_cli_writes_the_csv_and_refuses_a_mismatched_table(analyzed: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    cmd = [sys.executable, "-m", "casekit.cli", "-q", "export", str(analyzed), "--csv",
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().count(b"\n") >= 187 and "186 rows" in r.stdout
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "findings.json").write_bytes((analyzed / "findings.json").read_bytes())
    f = load_findings(analyzed)
    write_table(bad / ATTEMPTS_NAME, f.attempts[:10])
    r = subprocess.run([*cmd[:5], str(bad), "--csv"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "10 rows" in r.stderr and "casekit analyze" in r.stderr
    assert not (bad / "attempts.csv").exists()


def test_a_failed_analysis_leaves_no_table(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = (DEMO / "ledger.jsonl").read_bytes().split(b"\n")
    lines[40] = lines[40].replace(b'"ok"', b'"OK"', 1)  # a record that no longer verifies
    (run / "ledger.jsonl").write_bytes(b"\n".join(lines))
    from casekit.errors import LedgerError
    with pytest.raises(LedgerError, match="line 41"):
        analyze_run(run, DEMO / "case.yaml", table=run / ATTEMPTS_NAME)
    assert sorted(p.name for p in run.iterdir()) == ["ledger.jsonl"]


def test_compact_shares_the_field_name_sets_and_changes_no_value() -> None:
    # An analysis keeps every attempt's analysis: compact() shares pydantic's per-instance set
    # of field names (about 2 kB each) between instances; dumps are unchanged, and a copy with
    # an update gets a set of its own (the models are frozen, so none is ever mutated).
    import pickle

    from casekit.analysis.findings import SpanFinding, compact

    def one(i: int) -> AttemptAnalysis:
        span = SpanFinding(out_char_start=0, out_char_end=9, work_char_start=5,
                           work_char_end=14, out_word_start=0, out_word_end=2,
                           work_word_start=1, work_word_end=3, words=2, matched_words=2,
                           similarity=1.0, verbatim=True, opcodes=[("equal", 0, 2, 1, 3)])
        return AttemptAnalysis(
            attempt_id=f"x-{i}", seq=i, record_hash="sha256:" + "0" * 64, model_id="m",
            work_id="w", role="subject", strategy="s", strategy_key="s#0", intent="benign",
            mode="chat", sample=0, label="", outcome="match", spans=[span], longest_words=2)

    a, b = (pickle.loads(pickle.dumps(one(i))) for i in (1, 2))  # as the workers send them
    before = [x.model_dump(mode="json") for x in (a, b)]
    assert a.__pydantic_fields_set__ is not b.__pydantic_fields_set__
    assert compact(a) is a and compact(b) is b
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.spans[0].__pydantic_fields_set__ is b.spans[0].__pydantic_fields_set__
    assert [x.model_dump(mode="json") for x in (a, b)] == before
    c = a.model_copy(update={"longest_verbatim_words": 2})
    assert "longest_verbatim_words" in c.model_fields_set
    assert "longest_verbatim_words" not in b.model_fields_set


def _row_by_model_dump(x: AttemptAnalysis) -> tuple[tuple[Any, ...], bytes]:
    """The row as its definition reads: the analysis' JSON dump, split into the columns."""
    d = x.model_dump(mode="json")
    line = canonical_json(d)
    row = [d.pop(n) for n, _ in SCALARS]
    row += [canonical_json(d.pop(n)).decode("utf-8") for n in STRUCTURED[:-1]]
    row.append(canonical_json(d).decode("utf-8"))
    return tuple(row), line


def test_rows_are_the_model_dump_split_into_columns(analyzed: Path) -> None:
    # row_of builds the row from the fields without pydantic's serializer: on every attempt
    # of the demo (spans, echo, teacher-forced windows, every measure's fields) and on
    # hostile values, it must give the dump's values and canonical line, byte for byte.
    from casekit.analysis.attempt_table import row_of
    from casekit.analysis.findings import SpanFinding
    from casekit.pz import TeacherForced

    xs = list(iter_table(analyzed / ATTEMPTS_NAME))
    kinds = {"spans": any(x.spans for x in xs), "echo": any(x.echo_ranges for x in xs),
             "teacher_forced": any(x.teacher_forced for x in xs)}
    assert all(kinds.values()), kinds
    base = next(x for x in xs if x.spans and x.echo_ranges)
    span = base.spans[0].model_copy(update={"similarity": 0.1 + 0.2})
    tf = next(x.teacher_forced for x in xs if x.teacher_forced is not None)
    hostile = [
        base.model_copy(update={"label": 'a "quoted" \\ label\u0000\u001f\u2028 \U0001f600',
                                "attempt_id": "\u00e9\u4e2d", "spans": [span],
                                "spans_over_t": [(0, 21), (40, 90)]}),
        base.model_copy(update={"teacher_forced": tf.model_copy(
            update={"log_pz_top40": -1e-7, "sum_logprob": -123456789.5,
                    "suffix_chars": (3, 9)}), "refusal_source": "text"}),
        base.model_copy(update={"teacher_forced": TeacherForced(
            tokens=1, top1=1, top1_share=1.0, sum_logprob=float("nan"),
            greedy_reproduced=True)}),
        base.model_copy(update={"spans": [SpanFinding(**{**span.model_dump(),
                                                         "similarity": 1e21})]}),
    ]
    for x in [*xs, *hostile]:
        assert row_of(x) == _row_by_model_dump(x), x.attempt_id
