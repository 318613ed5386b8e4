"""Import outputs captured outside casekit (a chat UI, a colleague's script) into a run's ledger.

The import file is CSV (a header row) or JSONL (one JSON object per line) with these columns:

========================  =======================================================================
``prompt``                the prompt as typed (required, not empty)
``output``                the model's answer, verbatim (required; may be empty)
``model``                 the model as the capture shows it, e.g. ``ChatGPT 4o`` (required);
                          recorded as the attempt's returned model id
``captured_at``           when it was captured: ISO 8601 with a timezone (``2025-06-03T14:05:00Z``,
                          ``...+02:00``); times without one are rejected
``captured_by``           who captured it (required)
``source``                where: a URL, or a description such as ``chatgpt.com web UI`` (required)
``intent``                ``benign``, ``adversarial`` or ``reconstruction`` (required: the taxonomy
                          of the findings depends on it)
``work_id``               the case's work the output is about (required)
``model_id``              the case's model the output is evidence about (optional when the case
                          has one model or ``model_id=`` is given)
``screenshot``            a file path relative to the import file (optional); its SHA-256 is
                          recorded, a missing file is an error
``system``                a system prompt that was in effect, if known (optional)
``label``                 a short description (optional)
``target_start``,         the characters [start, end) of the work's raw text the prompt aimed at
``target_end``            (optional, both or neither)
``target_text``           the aimed-at excerpt, verbatim from the work (optional; located in the
                          work; must agree with target_start/target_end when both are given)
========================  =======================================================================

Each row becomes an ``AttemptRecord`` appended to the ledger: strategy ``imported``, mode
``chat``, messages [system?, user: prompt], status ``ok``, ``started_at`` = ``completed_at`` =
``captured_at`` in UTC, no tries (casekit sent nothing). The provenance (captured_at verbatim,
captured_by, source, screenshot hash, import file name + SHA-256 + line, the row verbatim) is
stored in ``result.raw_response["imported"]``; ``result.raw_request`` says that the request was
made outside casekit and that its decoding parameters are unknown. A ``note`` record (kind
``import``) closes every import that added attempts.

Attempt ids are ``i-`` + 20 hex of SHA-256 over the row's content (every column, the resolved
model id and the screenshot's hash) and its occurrence number among identical rows of the file.
So re-importing a file, or a later copy of it with rows added, or the same rows converted from CSV
to JSONL, adds only what is not yet recorded. (An id over the file's hash and line number would
record every row again once a single row is added to the file.)

The whole file is validated before anything is appended; an error is one line,
``file:line: column: what is wrong; how to fix it`` (:class:`ImportFileError`, exit code 2).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import casekit
from casekit.canonical import canonical_json, sha256_bytes, sha256_file
from casekit.case import CaseFile, LoadedCase
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, Ledger, read_records
from casekit.provenance import host_info, iso_utc
from casekit.records import (
    IMPORT_STRATEGY,
    AttemptRecord,
    Intent,
    Message,
    PlannedAttempt,
    ProviderResult,
    RunStart,
    WorkManifest,
    WorkRange,
)

log = logging.getLogger(__name__)

NOTE_KIND = "import"
REQUIRED_COLUMNS = ("prompt", "output", "model", "captured_at", "captured_by", "source",
                    "intent", "work_id")
OPTIONAL_COLUMNS = ("model_id", "screenshot", "system", "label", "target_start", "target_end",
                    "target_text")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
INTENTS: tuple[str, ...] = get_args(Intent)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ID_VERSION = 1


class ImportFileError(CasekitError):
    """An import file (or a file it names) is invalid; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    ledger_path: Path
    source: Path
    source_sha256: str
    format: str
    rows: int
    """Data rows in the file."""
    imported: int
    """Rows appended to the ledger by this import."""
    skipped: int
    """Rows already recorded (by an earlier import), not appended again."""
    attempt_ids: list[str] = field(default_factory=list)
    """The id of every row, in file order."""
    new_ids: list[str] = field(default_factory=list)
    head_hash: str | None = None
    """The ledger's head hash after the import."""


@dataclass
class _Row:
    line: int
    index: int
    values: dict[str, Any]
    """Column -> value as read (str; JSONL may give ints for target_start/target_end)."""


# --------------------------------------------------------------------------- reading


def _read_rows(source: Path, data: bytes, fmt: str) -> list[_Row]:
    file = str(source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(f"{file}:{line}: the file is not UTF-8; save it as UTF-8") from None
    return _read_csv(file, text) if fmt == "csv" else _read_jsonl(file, text)


def _check_columns(file: str, line: int, columns: list[str]) -> None:
    seen: set[str] = set()
    for col in columns:
        if col not in COLUMNS:
            raise ImportFileError(
                f"{file}:{line}: {col or '(empty name)'}: unknown column; remove it or correct "
                f"its spelling (columns: {', '.join(COLUMNS)})")
        if col in seen:
            raise ImportFileError(f"{file}:{line}: {col}: duplicate column; keep one")
        seen.add(col)
    for col in REQUIRED_COLUMNS:
        if col not in seen:
            raise ImportFileError(
                f"{file}:{line}: {col}: required column is missing; add it (required: "
                f"{', '.join(REQUIRED_COLUMNS)})")


def _read_csv(file: str, text: str) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[_Row] = []
    header: list[str] | None = None
    last = 0
    try:
        for record in reader:
            start, last = last + 1, reader.line_num
            if header is None:
                header = [c.strip() for c in record]
                _check_columns(file, start, header)
                continue
            if not any(v.strip() for v in record):
                continue
            if len(record) != len(header):
                raise ImportFileError(
                    f"{file}:{start}: the row has {len(record)} fields and the header "
                    f"{len(header)}; quote fields that hold commas, quotes or line breaks")
            rows.append(_Row(start, len(rows), dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise ImportFileError(f"{file}:{reader.line_num}: not valid CSV ({exc}); quote fields "
                              "that hold commas, quotes or line breaks") from None
    if header is None:
        raise ImportFileError(f"{file}:1: the file is empty; write a header row with the "
                              f"columns {', '.join(REQUIRED_COLUMNS)}")
    return rows


def _read_jsonl(file: str, text: str) -> list[_Row]:
    rows: list[_Row] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"{file}:{n}: not valid JSON ({exc.msg} at column "
                                  f"{exc.colno}); write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise ImportFileError(f"{file}:{n}: expected a JSON object ({{\"prompt\": ...}}), "
                                  f"got {type(obj).__name__}")
        _check_columns(file, n, [k for k in obj if obj[k] is not None or k in REQUIRED_COLUMNS])
        rows.append(_Row(n, len(rows), {k: v for k, v in obj.items() if v is not None}))
    if not rows:
        raise ImportFileError(f"{file}:1: no rows; write one JSON object per line")
    return rows


# --------------------------------------------------------------------------- validation


@dataclass
class _Context:
    file: str
    source: Path
    start: RunStart
    spec: CaseFile
    model_id: str | None
    works: dict[str, WorkManifest]
    _texts: dict[str, str] | None = None

    def work_text(self, work_id: str, where: str) -> str:
        """The raw text of a work (loaded and hash-checked on first use)."""
        if self._texts is None:
            from casekit.works import load_works

            loaded = LoadedCase(spec=self.spec, path=Path(self.start.case_path).resolve(),
                                sha256=self.start.case_sha256)
            try:
                works = load_works(loaded)
            except CasekitError as exc:
                raise ImportFileError(f"{where}: target_text: the work's text is needed to "
                                      f"locate the excerpt, and {exc}") from None
            self._texts = {}
            for w in works:
                if w.sha256 != self.works[w.id].sha256:
                    raise ImportFileError(
                        f"{where}: target_text: work {w.id!r} at {w.path} hashes to {w.sha256}, "
                        f"the run recorded {self.works[w.id].sha256}; restore the original text")
                self._texts[w.id] = w.raw
        return self._texts[work_id]


def _text(row: _Row, col: str, where: str, *, required: bool, empty_ok: bool = False,
          ) -> str | None:
    value = row.values.get(col)
    if value is None or (isinstance(value, str) and not value.strip() and not empty_ok):
        if required and not (empty_ok and value == ""):
            raise ImportFileError(f"{where}: {col}: empty; fill it in (every row needs "
                                  f"{', '.join(REQUIRED_COLUMNS)})")
        return None
    if not isinstance(value, str):
        raise ImportFileError(f"{where}: {col}: expected text, got {json.dumps(value)}; write "
                              "it as a JSON string")
    return value


def _int(row: _Row, col: str, where: str) -> int | None:
    value = row.values.get(col)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError
        return int(value.strip())
    except ValueError:
        raise ImportFileError(f"{where}: {col}: {json.dumps(value)} is not a whole number; "
                              "write a character offset into the work's raw text") from None


def _captured_at(value: str, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ImportFileError(f"{where}: captured_at: {value!r} is not an ISO 8601 time; write "
                              "e.g. 2025-06-03T14:05:00Z or 2025-06-03T16:05:00+02:00") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ImportFileError(f"{where}: captured_at: {value!r} has no timezone, so the moment "
                              "is ambiguous; add Z (UTC) or the offset it was taken in, e.g. "
                              f"{value.strip()}Z or {value.strip()}+02:00")
    return when


def _screenshot(value: str, ctx: _Context, where: str) -> dict[str, Any]:
    rel = Path(value)
    if rel.is_absolute():
        raise ImportFileError(f"{where}: screenshot: {value!r} is an absolute path; give it "
                              "relative to the import file, and keep the file beside it")
    path = ctx.source.parent / rel
    if not path.is_file():
        raise ImportFileError(f"{where}: screenshot: no file {value!r} (looked for {path}); "
                              "put the screenshot there or correct the path (relative to the "
                              "import file)")
    return {"path": value, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _validate(row: _Row, ctx: _Context) -> dict[str, Any]:
    """The row's validated fields (raises ImportFileError naming the line and column)."""
    where = f"{ctx.file}:{row.line}"
    out: dict[str, Any] = {}
    out["prompt"] = _text(row, "prompt", where, required=True)
    out["output"] = _text(row, "output", where, required=True, empty_ok=True) or ""
    for col in ("model", "captured_by", "source"):
        out[col] = _text(row, col, where, required=True)
    captured = _text(row, "captured_at", where, required=True)
    assert captured is not None
    out["captured_at"] = captured
    out["captured_at_utc"] = iso_utc(_captured_at(captured, where))
    intent = (_text(row, "intent", where, required=True) or "").strip()
    if intent not in INTENTS:
        raise ImportFileError(f"{where}: intent: {intent!r} is not an intent; write one of "
                              f"{', '.join(INTENTS)} (how the prompt was meant: a plain user "
                              "request, an extraction attempt, or a reconstruction)")
    out["intent"] = intent
    work_id = (_text(row, "work_id", where, required=True) or "").strip()
    if work_id not in ctx.works:
        raise ImportFileError(f"{where}: work_id: unknown work {work_id!r}; use one of the "
                              f"case's works: {', '.join(sorted(ctx.works))}")
    out["work_id"] = work_id
    model_ids = [m.model_id for m in ctx.start.models]
    model_id = (_text(row, "model_id", where, required=False) or "").strip() or ctx.model_id
    if model_id is None:
        if len(model_ids) != 1:
            raise ImportFileError(
                f"{where}: model_id: the case has several models; add a model_id column (or "
                f"give one model id for the whole file) naming one of {', '.join(model_ids)}")
        model_id = model_ids[0]
    if model_id not in model_ids:
        raise ImportFileError(f"{where}: model_id: unknown model {model_id!r}; use one of the "
                              f"case's models: {', '.join(model_ids)}")
    out["model_id"] = model_id
    out["system"] = _text(row, "system", where, required=False)
    out["label"] = (_text(row, "label", where, required=False) or "").strip()
    shot = _text(row, "screenshot", where, required=False)
    out["screenshot"] = _screenshot(shot.strip(), ctx, where) if shot else None
    out["target"] = _target(row, ctx, where, work_id)
    return out


def _target(row: _Row, ctx: _Context, where: str, work_id: str) -> WorkRange | None:
    start, end = _int(row, "target_start", where), _int(row, "target_end", where)
    excerpt = _text(row, "target_text", where, required=False)
    chars = ctx.works[work_id].chars
    if (start is None) != (end is None):
        missing = "target_end" if end is None else "target_start"
        raise ImportFileError(f"{where}: {missing}: give target_start and target_end together "
                              "(characters [start, end) of the work's raw text), or neither")
    if start is not None and end is not None:
        if not 0 <= start < end <= chars:
            raise ImportFileError(f"{where}: target_start: [{start}, {end}) is not a range "
                                  f"inside work {work_id!r} ({chars} characters); give 0 <= "
                                  "start < end <= its length")
        if excerpt is not None and ctx.work_text(work_id, where)[start:end] != excerpt:
            raise ImportFileError(f"{where}: target_text: differs from the work's characters "
                                  f"[{start}, {end}); correct the offsets or the excerpt")
        return WorkRange(start=start, end=end)
    if excerpt is not None:
        text = ctx.work_text(work_id, where)
        pos = text.find(excerpt)
        if pos < 0:
            raise ImportFileError(f"{where}: target_text: not found verbatim in work "
                                  f"{work_id!r}; copy it exactly from the reference text, or "
                                  "give target_start and target_end")
        return WorkRange(start=pos, end=pos + len(excerpt))
    return None


def _attempt_id(fields: dict[str, Any], occurrence: int) -> str:
    content = {k: v for k, v in fields.items() if k != "captured_at_utc"}
    content["target"] = fields["target"].model_dump() if fields["target"] else None
    digest = sha256_bytes(canonical_json({"v": ID_VERSION, "row": content,
                                          "occurrence": occurrence}))
    return "i-" + digest.split(":", 1)[1][:20]


# --------------------------------------------------------------------------- the import


def _resolve_run_dir(target: Path) -> Path:
    if target.is_dir():
        if not (target / LEDGER_NAME).exists():
            raise CasekitError(f"{target}: no {LEDGER_NAME} here; give a run folder (runs/<case "
                               "id>-<hash>) or the case file of a run that has started")
        return target
    if target.is_file():
        from casekit.case import load_case
        from casekit.run.runner import default_run_dir

        run_dir = default_run_dir(load_case(target))
        if not (run_dir / LEDGER_NAME).exists():
            raise CasekitError(f"{target}: this case has no run yet (no {run_dir / LEDGER_NAME});"
                               f" start it with `casekit run {target}` (imports are added to a "
                               "run's ledger), or give the run folder")
        return run_dir
    raise CasekitError(f"{target}: no such run folder or case file; check the path")


def import_outputs(target: Path, source: Path, *, model_id: str | None = None) -> ImportResult:
    """Append the outputs in ``source`` (CSV or JSONL) to the ledger of a run.

    ``target``: the run folder, or the case file of a run that has started (its default run
    folder). ``model_id``: the case's model the outputs are evidence about, for files without a
    ``model_id`` column (needed only when the case has several models). Validates the whole file
    before appending anything; rows already recorded are skipped.
    """
    target, source = Path(target), Path(source)
    run_dir = _resolve_run_dir(target)
    fmt = FORMATS.get(source.suffix.lower())
    if fmt is None:
        raise ImportFileError(f"{source}: unsupported file type {source.suffix!r}; give a .csv "
                              "(with a header row) or a .jsonl file (one JSON object per line)")
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"{source}: no such file; check the path") from None
    except OSError as exc:
        raise ImportFileError(f"{source}: cannot read it ({exc.strerror}); check permissions") \
            from None
    file_sha = sha256_bytes(data)

    records = read_records(run_dir / LEDGER_NAME)
    start = next((r for r in records if isinstance(r, RunStart)), None)
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record; it is not a casekit "
                           "run ledger")
    spec = CaseFile.model_validate(start.case)
    model_ids = [m.model_id for m in start.models]
    if model_id is not None and model_id not in model_ids:
        raise CasekitError(f"model id {model_id!r} is not in the case; use one of "
                           f"{', '.join(model_ids)}")
    ctx = _Context(file=str(source), source=source, start=start, spec=spec, model_id=model_id,
                   works={w.id: w for w in start.works})

    rows = _read_rows(source, data, fmt)
    validated = [(row, _validate(row, ctx)) for row in rows]
    seen: Counter[str] = Counter()
    planned: list[tuple[_Row, dict[str, Any], str]] = []
    for row, fields in validated:
        first = _attempt_id(fields, 0)
        occurrence = seen[first]
        seen[first] += 1
        planned.append((row, fields, first if occurrence == 0 else
                        _attempt_id(fields, occurrence)))
    all_ids = [aid for _, _, aid in planned]

    from casekit.anchor import Anchor, load_or_create_key

    ledger = Ledger(run_dir, anchor=Anchor(load_or_create_key())).open()
    try:
        done = ledger.recorded_attempt_ids()
        todo = [p for p in planned if p[2] not in done]
        if not todo:
            log.info("%s: all %d rows are already recorded; nothing appended", source, len(rows))
            return ImportResult(run_dir, ledger.path, source, file_sha, fmt, len(rows), 0,
                                len(rows), all_ids, [], ledger.head)
        already = ledger.attempt_counts(IMPORT_STRATEGY).total()
        strategy_key = f"{IMPORT_STRATEGY}@{file_sha.split(':', 1)[1][:12]}"
        imported_at = iso_utc()
        new_ids = []
        for i, (row, fields, aid) in enumerate(todo):
            ledger.append(_record(ledger, start, row, fields, aid, already + i, strategy_key,
                                  source, file_sha, fmt, imported_at))
            new_ids.append(aid)
        skipped = len(rows) - len(todo)
        ledger.append_note(NOTE_KIND, f"imported {len(todo)} of {len(rows)} rows from "
                           f"{source.name} ({skipped} already recorded)", {
                               "file": source.name, "path": str(source), "sha256": file_sha,
                               "format": fmt, "bytes": len(data), "rows": len(rows),
                               "imported": len(todo), "skipped": skipped,
                               "attempt_ids": new_ids,
                               "screenshots": sum(1 for _, f, _ in todo if f["screenshot"]),
                               "strategy_key": strategy_key, "imported_at": imported_at,
                               "casekit_version": casekit.__version__, "host": host_info()})
        ledger.seal()
        return ImportResult(run_dir, ledger.path, source, file_sha, fmt, len(rows), len(todo),
                            skipped, all_ids, new_ids, ledger.head)
    finally:
        ledger.close()


def _record(ledger: Ledger, start: RunStart, row: _Row, fields: dict[str, Any], aid: str,
            n: int, strategy_key: str, source: Path, file_sha: str, fmt: str,
            imported_at: str) -> AttemptRecord:
    messages = []
    if fields["system"] is not None:
        messages.append(Message(role="system", content=fields["system"]))
    messages.append(Message(role="user", content=fields["prompt"]))
    label = fields["label"] or f"imported from {source.name} line {row.line}"
    attempt = PlannedAttempt(
        id=aid, ordinal=start.planned_attempts + n, model_id=fields["model_id"],
        strategy=IMPORT_STRATEGY, strategy_key=strategy_key, work_id=fields["work_id"],
        intent=fields["intent"], index=row.index, sample=0, mode="chat", messages=messages,
        target=fields["target"], label=label,
    )
    provenance = {
        "captured_at": fields["captured_at"],
        "captured_at_utc": fields["captured_at_utc"],
        "captured_by": fields["captured_by"],
        "source": fields["source"],
        "model": fields["model"],
        "screenshot": fields["screenshot"],
        "file": {"name": source.name, "sha256": file_sha, "format": fmt, "line": row.line,
                 "row": row.index},
        "row": row.values,
        "imported_at": imported_at,
    }
    result = ProviderResult(
        text=fields["output"],
        returned_model=fields["model"],
        raw_request={"imported": True, "messages": [m.model_dump() for m in messages],
                     "decoding": None,
                     "note": "sent outside casekit; the decoding parameters are unknown (the "
                             "attempt's decoding field holds casekit's defaults, not what was "
                             "used)"},
        raw_response={"imported": provenance},
    )
    return AttemptRecord(**ledger.base_fields(), attempt=attempt, status="ok", result=result,
                         started_at=fields["captured_at_utc"],
                         completed_at=fields["captured_at_utc"], tries=[])
