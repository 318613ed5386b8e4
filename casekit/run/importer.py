"""Import outputs captured outside casekit (a chat UI, a colleague's script, a published
study's extractions) into a run's ledger.

The import file is CSV (a header row) or JSONL (one JSON object per line) with these columns:

========================  =======================================================================
``output``                the model's answer, verbatim (required, not empty)
``work_id``               the case's work the output is about (required)
``model``                 the model as the capture shows it, e.g. ``ChatGPT 4o`` (required);
                          recorded as the attempt's returned model id
``kind``                  what the attempt was (optional): ``name_cloze``, ``prefix_continuation``,
                          ``instruction_recall``, ``benign``, ``divergence`` or ``free_form``. A
                          row of a kind is analyzed exactly as casekit's own attempts of that
                          strategy; a row without one is analyzed as free-form (span matching
                          by its intent) and the report says how many stated no kind
``intent``                ``benign``, ``adversarial`` or ``reconstruction``: required for
                          free-form rows; a stated kind has its strategy's intent (a different
                          one is an error)
``prompt``                the prompt as sent (required, except for ``name_cloze`` and
                          ``prefix_continuation`` rows, whose passage or prefix is what the model
                          was given; a missing prompt is recorded as not recorded)
``masked_name``           ``name_cloze``: the masked proper name (the answer key; one word)
``passage``               ``name_cloze``: the passage with the name replaced by ``[MASK]``
``prefix``                ``prefix_continuation``: the prefix given, verbatim from the work
``repeated_word``         ``divergence``: the word the model was asked to repeat
``captured_at``           when it was captured: ISO 8601 with a timezone (``2025-06-03T14:05:00Z``,
                          ``...+02:00``); times without one are rejected
``captured_by``           who captured it
``source``                where: a URL, a study, or a description such as ``chatgpt.com web UI``
``model_id``              the case's model the output is evidence about (optional when the case
                          has one model or ``model_id=`` is given; in an evidence-only case,
                          one with no models, any name, by default the ``model`` column)
``temperature``           the sampling temperature, if the source states it (optional)
``screenshot``            a file path relative to the import file (optional); its SHA-256 is
                          recorded, a missing file is an error
``system``                a system prompt that was in effect, if known (optional)
``label``                 a short description (optional)
``target_start``,         the characters [start, end) of the work's raw text the prompt aimed at
``target_end``            (optional, both or neither; for ``prefix_continuation`` the expected
                          continuation, required)
``target_text``           the aimed-at excerpt, verbatim from the work (optional; located in the
                          work; must agree with target_start/target_end when both are given)
========================  =======================================================================

Provenance is what the source has: ``captured_at``, ``captured_by``, ``source``, ``prompt`` and
``temperature`` may be absent; an absent one is recorded as null and printed "not recorded",
never filled in. (The record's ``started_at`` and ``completed_at`` are the capture time in UTC,
or the import's time when the capture time was not recorded.)

Each row becomes an ``AttemptRecord`` appended to the ledger: strategy the kind's (``imported``
for free-form), strategy key ``imported@<file hash>`` (``/<kind>`` added for a stated kind), mode
``chat`` (``completion`` with the passage or prefix as prompt when no prompt was recorded),
status ``ok``, no tries (casekit sent nothing). The provenance (captured_at verbatim,
captured_by, source, screenshot hash, import file name + SHA-256 + line, the row verbatim) is
stored in ``result.raw_response["imported"]``; ``result.raw_request`` says that the request was
made outside casekit and what is known of its decoding. A ``note`` record (kind ``import``)
closes every import that added attempts. The records are written with one fsync per
:data:`BATCH` rows, not one per row.

An evidence-only case (works, no models, no strategies) has no run to start: ``casekit import
CASE FILE`` starts one (a ``run_start`` with no models and an empty plan, a complete
``run_end``) and later imports continue it.

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
import functools
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import orjson

import casekit
from casekit.anchor import DEFAULT_CHECKPOINT_EVERY, Timestamper, make_anchor
from casekit.canonical import canonical_json, sha256_bytes, sha256_file
from casekit.case import CaseFile, LoadedCase, case_hash_form, read_regular_file
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, Ledger, iter_records
from casekit.provenance import host_info, iso_utc
from casekit.records import (
    IMPORT_STRATEGY,
    AttemptRecord,
    Decoding,
    Intent,
    Message,
    PlannedAttempt,
    ProviderResult,
    RunEnd,
    RunStart,
    WorkManifest,
    WorkRange,
)
from casekit.strategies.base import strategy_class

log = logging.getLogger(__name__)

#: An import file is at most this many bytes (read whole: split a larger production).
IMPORT_MAX_BYTES = 4 << 30

NOTE_KIND = "import"
REQUIRED_COLUMNS = ("output", "model", "work_id")
OPTIONAL_COLUMNS = ("kind", "intent", "prompt", "masked_name", "passage", "prefix",
                    "repeated_word", "captured_at", "captured_by", "source", "model_id",
                    "temperature", "screenshot", "system", "label", "target_start", "target_end",
                    "target_text")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
INTENTS: tuple[str, ...] = get_args(Intent)
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ID_VERSION = 1
BATCH = 10_000
"""Records written per fsync."""
NOT_RECORDED = "not recorded"
MASK = "[MASK]"

FREE_FORM = "free_form"
KINDS: dict[str, str] = {
    "name_cloze": "name_cloze",
    "prefix_continuation": "prefix_continuation",
    "instruction_recall": "instruction_recall",
    "benign": "benign_prompts",
    "divergence": "divergence",
    FREE_FORM: IMPORT_STRATEGY,
}
"""Import kind -> the casekit strategy whose attempts it is analyzed as."""
KIND_COLUMNS: dict[str, str] = {"masked_name": "name_cloze", "passage": "name_cloze",
                                "prefix": "prefix_continuation", "repeated_word": "divergence"}
"""Columns that belong to one kind."""
PROMPT_OPTIONAL = frozenset({"name_cloze", "prefix_continuation"})


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
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:  # what orjson refuses and json reads (NaN, a huge integer), or json's message
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


def _kind_intent(row: _Row, where: str) -> tuple[str, bool, str]:
    """(kind, whether the row stated it, intent), checked against each other."""
    kind = (_text(row, "kind", where, required=False) or "").strip().lower().replace("-", "_")
    stated = bool(kind)
    kind = kind or FREE_FORM
    if kind not in KINDS:
        raise ImportFileError(f"{where}: kind: {kind!r} is not a kind; write one of "
                              f"{', '.join(KINDS)} (or leave it empty for free-form)")
    intent = (_text(row, "intent", where, required=False) or "").strip()
    if intent and intent not in INTENTS:
        raise ImportFileError(f"{where}: intent: {intent!r} is not an intent; write one of "
                              f"{', '.join(INTENTS)} (how the prompt was meant: a plain user "
                              "request, an extraction attempt, or a reconstruction)")
    if kind == FREE_FORM:
        if not intent:
            raise ImportFileError(f"{where}: intent: empty; a free-form row needs its intent "
                                  f"({', '.join(INTENTS)}), or state its kind "
                                  f"({', '.join(k for k in KINDS if k != FREE_FORM)})")
        return kind, stated, intent
    own: str = strategy_class(KINDS[kind]).intent
    if intent and intent != own:
        raise ImportFileError(f"{where}: intent: a {kind} attempt is {own}, not {intent}; "
                              f"write {own} or leave intent empty")
    return kind, stated, own


def _validate(row: _Row, ctx: _Context) -> dict[str, Any]:
    """The row's validated fields (raises ImportFileError naming the line and column)."""
    where = f"{ctx.file}:{row.line}"
    out: dict[str, Any] = {}
    output = row.values.get("output")
    if output is None or (isinstance(output, str) and not output.strip()):
        raise ImportFileError(f"{where}: output: no output text; paste the model's answer "
                              "verbatim, or remove the row (an import records outputs)")
    out["output"] = _text(row, "output", where, required=True)
    kind, stated, intent = _kind_intent(row, where)
    for col, owner in KIND_COLUMNS.items():
        if row.values.get(col) not in (None, "") and owner != kind:
            raise ImportFileError(f"{where}: {col}: only {owner} rows have a {col}; set kind "
                                  f"to {owner} or remove the value")
    out["prompt"] = _text(row, "prompt", where, required=kind not in PROMPT_OPTIONAL)
    out["model"] = _text(row, "model", where, required=True)
    for col in ("captured_by", "source"):
        out[col] = _text(row, col, where, required=False)
    captured = _text(row, "captured_at", where, required=False)
    out["captured_at"] = captured
    out["captured_at_utc"] = iso_utc(_captured_at(captured, where)) if captured else None
    out["intent"] = intent
    work_id = (_text(row, "work_id", where, required=True) or "").strip()
    if work_id not in ctx.works:
        raise ImportFileError(f"{where}: work_id: unknown work {work_id!r}; use one of the "
                              f"case's works: {', '.join(sorted(ctx.works))}")
    out["work_id"] = work_id
    out["model_id"] = _model_id(row, ctx, where, out["model"])
    out["system"] = _text(row, "system", where, required=False)
    out["label"] = (_text(row, "label", where, required=False) or "").strip()
    shot = _text(row, "screenshot", where, required=False)
    out["screenshot"] = _screenshot(shot.strip(), ctx, where) if shot else None
    out["target"] = _target(row, ctx, where, work_id)
    temperature = row.values.get("temperature")
    if temperature not in (None, ""):
        try:
            t = float(temperature)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            t = -1.0
        if not 0 <= t <= 10 or isinstance(temperature, bool):
            raise ImportFileError(f"{where}: temperature: {json.dumps(temperature)} is not a "
                                  "temperature; write a number such as 0 or 0.7, or leave it "
                                  "empty if the source does not state it")
        out["temperature"] = t
    if stated:
        out["kind"] = kind  # only when stated: ids of rows without a kind stay as they were
    _kind_fields(row, ctx, where, kind, out)
    return out


def _model_id(row: _Row, ctx: _Context, where: str, model: str | None) -> str:
    model_ids = [m.model_id for m in ctx.start.models]
    model_id = (_text(row, "model_id", where, required=False) or "").strip() or ctx.model_id
    if not model_ids:  # an evidence-only case: the models are the ones the evidence names
        return model_id or (model or "").strip()
    if model_id is None:
        if len(model_ids) != 1:
            raise ImportFileError(
                f"{where}: model_id: the case has several models; add a model_id column (or "
                f"give one model id for the whole file) naming one of {', '.join(model_ids)}")
        model_id = model_ids[0]
    if model_id not in model_ids:
        raise ImportFileError(f"{where}: model_id: unknown model {model_id!r}; use one of the "
                              f"case's models: {', '.join(model_ids)}")
    return model_id


def _kind_fields(row: _Row, ctx: _Context, where: str, kind: str, out: dict[str, Any]) -> None:
    """The fields a kind needs, checked as its strategy would have made them: the answer key
    (``expected``), the work text the model was given (``supplied``) and the target."""
    out["supplied"] = []
    if kind == "name_cloze":
        name = (_text(row, "masked_name", where, required=False) or "").strip()
        if not name or len(name.split()) != 1:
            raise ImportFileError(f"{where}: masked_name: {'empty' if not name else repr(name)};"
                                  " a name_cloze row needs the masked name, one word (the "
                                  "answer key)")
        passage = _text(row, "passage", where, required=False)
        if passage is None or passage.count(MASK) != 1:
            raise ImportFileError(f"{where}: passage: a name_cloze row needs the passage with "
                                  f"the name replaced by {MASK}, exactly once")
        out["expected"] = name
        out["passage"] = passage
    elif kind == "prefix_continuation":
        prefix = _text(row, "prefix", where, required=False)
        if prefix is None:
            raise ImportFileError(f"{where}: prefix: a prefix_continuation row needs the prefix "
                                  "the model was given, verbatim from the work")
        if out["target"] is None:
            raise ImportFileError(f"{where}: target_text: a prefix_continuation row needs the "
                                  "expected continuation: target_text (verbatim from the work) "
                                  "or target_start and target_end")
        text = ctx.work_text(out["work_id"], where)
        target: WorkRange = out["target"]
        pos = text.rfind(prefix, 0, target.start)
        if pos < 0 or text[pos + len(prefix):target.start].strip():
            pos = text.find(prefix)
        if pos < 0:
            raise ImportFileError(f"{where}: prefix: not found verbatim in work "
                                  f"{out['work_id']!r}; copy it exactly from the reference text")
        out["prefix"] = prefix
        out["supplied"] = [WorkRange(start=pos, end=pos + len(prefix))]
    elif kind == "divergence":
        word = (_text(row, "repeated_word", where, required=False) or "").strip()
        if not word.isalpha():
            raise ImportFileError(f"{where}: repeated_word: {word!r} is not one word; a "
                                  "divergence row needs the word the model was asked to repeat")
        out["expected"] = word


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


_DERIVED = frozenset({"captured_at_utc", "supplied", "expected", "passage", "prefix"})
"""Fields derived from the columns (not hashed again) or hashed only when present."""


def _attempt_id(fields: dict[str, Any], occurrence: int) -> str:
    content = {k: v for k, v in fields.items() if k not in _DERIVED}
    content["target"] = fields["target"].model_dump() if fields["target"] else None
    # Columns added after the first version enter the id only when present, so that a file
    # imported before them gives the same ids.
    for key in ("kind", "temperature", "expected", "passage", "prefix"):
        if fields.get(key) is not None:
            content[key] = fields[key]
    digest = sha256_bytes(canonical_json({"v": ID_VERSION, "row": content,
                                          "occurrence": occurrence}))
    return "i-" + digest.split(":", 1)[1][:20]


# --------------------------------------------------------------------------- the import


def _resolve_run_dir(target: Path) -> tuple[Path, LoadedCase | None]:
    """The run folder, and the evidence-only case whose run it will be when it has none yet."""
    if target.is_dir():
        if not (target / LEDGER_NAME).exists():
            raise CasekitError(f"{target}: no {LEDGER_NAME} here; give a run folder (runs/<case "
                               "id>-<hash>) or the case file of a run that has started")
        return target, None
    if target.is_file():
        from casekit.case import load_case
        from casekit.run.runner import default_run_dir

        case = load_case(target)
        run_dir = default_run_dir(case)
        if not (run_dir / LEDGER_NAME).exists():
            if not case.spec.models:
                return run_dir, case
            raise CasekitError(f"{target}: this case has no run yet (no {run_dir / LEDGER_NAME});"
                               f" start it with `casekit run {target}` (imports are added to a "
                               "run's ledger), or give the run folder")
        return run_dir, None
    raise CasekitError(f"{target}: no such run folder or case file; check the path")


def evidence_run_start(case: LoadedCase, run_dir: Path, base: dict[str, Any]) -> RunStart:
    """The ``run_start`` of an evidence-only case (no models, no strategies): no models and
    an empty plan. Written, with a complete ``run_end`` (nothing is planned, so nothing is
    outstanding), by the first import, after the file validated."""
    import sys

    from casekit.plan import plan_sha256
    from casekit.provenance import git_state, versions
    from casekit.run.runner import work_manifest
    from casekit.works import load_works

    works = load_works(case)
    return RunStart(
        **base, run_id=run_dir.name, case_path=str(case.path), case_sha256=case.sha256,
        case=case_hash_form(case.spec), works=[work_manifest(case, w) for w in works],
        models=[], plan_sha256=plan_sha256([]), planned_attempts=0, versions=versions(),
        git=git_state(Path(__file__).resolve().parent), host=host_info(), argv=list(sys.argv),
        started_at=base["recorded_at"])


def import_outputs(target: Path, source: Path, *, model_id: str | None = None,
                   examiner_key: Path | None = None,
                   checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, tsa_url: str | None = None,
                   timestamper: Timestamper | None = None) -> ImportResult:
    """Append the outputs in ``source`` to the ledger of a run (:func:`_import_outputs`),
    with the cyclic garbage collector tuned as for a run (casekit.run.runner: the heap at the
    start frozen out of its scans, the youngest generation collected every 20,000
    allocations): an import holds every row until it is written, and the default collections
    that kept rescanning them took a tenth of the CPU at 100,000 rows
    (benchmarks/import_bench.py)."""
    from casekit.run.runner import collector_tuned

    with collector_tuned():
        return _import_outputs(target, source, model_id=model_id, examiner_key=examiner_key,
                               checkpoint_every=checkpoint_every, tsa_url=tsa_url,
                               timestamper=timestamper)


def _import_outputs(target: Path, source: Path, *, model_id: str | None,
                    examiner_key: Path | None, checkpoint_every: int, tsa_url: str | None,
                    timestamper: Timestamper | None) -> ImportResult:
    """Append the outputs in ``source`` (CSV or JSONL) to the ledger of a run.

    ``target``: the run folder, or the case file of a run that has started (its default run
    folder), or of an evidence-only case (its run is started if there is none). ``model_id``:
    the case's model the outputs are evidence about, for files without a ``model_id`` column
    (needed only when the case has several models). Validates the whole file before appending
    anything; rows already recorded are skipped.

    The records are anchored as a run's are (casekit.anchor): checkpoints every
    ``checkpoint_every`` records and a closing one, signed by the examiner key at
    ``examiner_key`` (the one that signed the run; default casekit.anchor.default_key_path()),
    timestamped by ``tsa_url`` (else the case's ``anchoring.tsa``) if there is one.
    """
    target, source = Path(target), Path(source)
    fmt = FORMATS.get(source.suffix.lower())
    if fmt is None:
        raise ImportFileError(f"{source}: unsupported file type {source.suffix!r}; give a .csv "
                              "(with a header row) or a .jsonl file (one JSON object per line)")
    try:
        data = read_regular_file(source, IMPORT_MAX_BYTES,
                                 lambda problem: ImportFileError(f"{source}: {problem}"))
    except FileNotFoundError:
        raise ImportFileError(f"{source}: no such file; check the path") from None
    file_sha = sha256_bytes(data)
    rows = _read_rows(source, data, fmt)
    run_dir, new_case = _resolve_run_dir(target)
    if new_case is not None:
        start: RunStart | None = evidence_run_start(
            new_case, run_dir, {"seq": 0, "recorded_at": iso_utc(), "prev_hash": None})
    else:
        start = next((r for r in iter_records(run_dir / LEDGER_NAME)
                      if isinstance(r, RunStart)), None)
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record; it is not a casekit "
                           "run ledger")
    spec = CaseFile.model_validate(start.case)
    model_ids = [m.model_id for m in start.models]
    if model_id is not None and model_ids and model_id not in model_ids:
        raise CasekitError(f"model id {model_id!r} is not in the case; use one of "
                           f"{', '.join(model_ids)}")
    ctx = _Context(file=str(source), source=source, start=start, spec=spec, model_id=model_id,
                   works={w.id: w for w in start.works})

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

    anchor = make_anchor(run_dir, key_path=examiner_key, every=checkpoint_every,
                         tsa_url=tsa_url or spec.anchoring.tsa, timestamper=timestamper)
    ledger = Ledger(run_dir, anchor=anchor).open()
    try:
        if new_case is not None and ledger.empty:  # the evidence-only case's run begins
            ledger.append(start.model_copy(update={**ledger.base_fields(),
                                                   "examiner_key": anchor.key.identity()}))
            ledger.append(RunEnd(**ledger.base_fields(), attempts_recorded=0,
                                 attempts_planned=0, complete=True,
                                 counts={"ok": 0, "refusal": 0, "error": 0}))
            log.info("started the evidence-only run %s", run_dir)
        done = ledger.recorded_attempt_ids()
        todo = [p for p in planned if p[2] not in done]
        if not todo:
            log.info("%s: all %d rows are already recorded; nothing appended", source, len(rows))
            return ImportResult(run_dir, ledger.path, source, file_sha, fmt, len(rows), 0,
                                len(rows), all_ids, [], ledger.head)
        already = ledger.imported_count()
        key = f"{IMPORT_STRATEGY}@{file_sha.split(':', 1)[1][:12]}"
        imported_at = iso_utc()
        new_ids = [aid for _, _, aid in todo]
        file_info = {"name": source.name, "sha256": file_sha, "format": fmt}
        ledger.append_batch(
            (functools.partial(_record, start=start, row=row, fields=fields, aid=aid,
                               n=already + i, key=key, source=source, file_info=file_info,
                               imported_at=imported_at)
             for i, (row, fields, aid) in enumerate(todo)), batch=BATCH)
        skipped = len(rows) - len(todo)
        kinds = Counter(f.get("kind", "unstated") for _, f, _ in todo)
        ledger.append_note(NOTE_KIND, f"imported {len(todo)} of {len(rows)} rows from "
                           f"{source.name} ({skipped} already recorded)", {
                               "file": source.name, "path": str(source), "sha256": file_sha,
                               "format": fmt, "bytes": len(data), "rows": len(rows),
                               "imported": len(todo), "skipped": skipped,
                               "attempt_ids": new_ids,
                               "kinds": dict(sorted(kinds.items())),
                               "screenshots": sum(1 for _, f, _ in todo if f["screenshot"]),
                               "strategy_key": key, "imported_at": imported_at,
                               "casekit_version": casekit.__version__, "host": host_info()})
        ledger.seal()
        return ImportResult(run_dir, ledger.path, source, file_sha, fmt, len(rows), len(todo),
                            skipped, all_ids, new_ids, ledger.head)
    finally:
        ledger.close()


_DEFAULT_DECODING = Decoding()
"""The decoding of a row whose source states none (frozen: one instance serves every row)."""


def _record(base: dict[str, Any], *, start: RunStart, row: _Row, fields: dict[str, Any],
            aid: str, n: int, key: str, source: Path, file_info: dict[str, Any],
            imported_at: str) -> AttemptRecord:
    kind = fields.get("kind", FREE_FORM)
    strategy = KINDS[kind]
    messages = []
    if fields["system"] is not None:
        messages.append(Message(role="system", content=fields["system"]))
    prompt: str | None = None
    if fields["prompt"] is not None:
        messages.append(Message(role="user", content=fields["prompt"]))
    else:  # name cloze / prefix continuation: what the model was given is known
        prompt = fields.get("passage") or fields.get("prefix")
    label = fields["label"] or f"imported from {source.name} line {row.line}"
    temperature = fields.get("temperature")
    decoding = _DEFAULT_DECODING if temperature is None else Decoding(temperature=temperature)
    attempt = PlannedAttempt(
        id=aid, ordinal=start.planned_attempts + n, model_id=fields["model_id"],
        strategy=strategy, strategy_key=key if "kind" not in fields else f"{key}/{kind}",
        work_id=fields["work_id"], intent=fields["intent"], index=row.index, sample=0,
        mode="chat" if prompt is None else "completion", messages=messages, prompt=prompt,
        decoding=decoding, target=fields["target"], supplied=fields["supplied"],
        label=label, expected=fields.get("expected"),
    )
    provenance = {
        "captured_at": fields["captured_at"],
        "captured_at_utc": fields["captured_at_utc"],
        "captured_by": fields["captured_by"],
        "source": fields["source"],
        "model": fields["model"],
        "kind": kind,
        "kind_stated": "kind" in fields,
        "prompt_recorded": fields["prompt"] is not None,
        "screenshot": fields["screenshot"],
        "file": {**file_info, "line": row.line, "row": row.index},
        "row": row.values,
        "imported_at": imported_at,
    }
    known = {"temperature": temperature} if temperature is not None else None
    result = ProviderResult(
        text=fields["output"],
        returned_model=fields["model"],
        raw_request={"imported": True,
                     "messages": [{"role": m.role, "content": m.content} for m in messages],
                     "prompt": prompt, "decoding": known,
                     "note": "sent outside casekit; the decoding parameters are unknown (the "
                             "attempt's decoding field holds casekit's defaults, not what was "
                             "used)" if known is None else
                             "sent outside casekit; the decoding is what the source states "
                             "(temperature), the rest unknown"},
        raw_response={"imported": provenance},
    )
    when = fields["captured_at_utc"] or imported_at
    return AttemptRecord(**base, attempt=attempt, status="ok", result=result,
                         started_at=when, completed_at=when, tries=[])
