"""The per-attempt results of an analysis as a columnar file beside findings.json.

``attempts.parquet`` holds one row per analyzed attempt, in ledger order: the attempt's scalar
fields as typed columns (what a reader filters and counts on) and its structured fields (spans
with their alignments, echo ranges, the measures' fields, the teacher-forced summary, spans
over T) as canonical JSON text columns, so that every row turns back into exactly the
:class:`AttemptAnalysis` it was written from. findings.json keeps the aggregates and cites the
rows by a content hash (:class:`RowsDigest`): SHA-256 over each row's canonical JSON, one per
line, in order. It does not depend on how Parquet lays the bytes out, so a reader with another
pyarrow checks the same rows to the same hash.

Row groups hold :data:`ROW_GROUP` rows whatever the analysis' worker count, so the same rows
give the same file with one pyarrow. ``attempts.csv`` (:func:`write_csv`) is the same table for
spreadsheets, with text cells that a spreadsheet would run as a formula defused.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from casekit.analysis.findings import AttemptAnalysis, RowsDigest
from casekit.analysis.registry import dump_fields
from casekit.canonical import canonical_json
from casekit.errors import CasekitError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# pyarrow (~0.1 s to import, with the ssl and cloud file systems pyarrow.parquet brings) is
# imported where a table is written or read, not with the module: an analysis' workers make
# rows without it, and the analysis imports it after they are forked (TableWriter.prepare).

log = logging.getLogger(__name__)

ATTEMPTS_NAME = "attempts.parquet"
CSV_NAME = "attempts.csv"
ROW_GROUP = 8192
"""Rows per Parquet row group (and per write): fixed, so the file does not depend on how the
rows were produced."""

_INT = "int64"
_STR = "string"
SCALARS: tuple[tuple[str, str], ...] = (
    ("seq", _INT), ("attempt_id", _STR), ("record_hash", _STR), ("model_id", _STR),
    ("work_id", _STR), ("role", _STR), ("strategy", _STR), ("strategy_key", _STR),
    ("intent", _STR), ("mode", _STR), ("sample", _INT), ("label", _STR), ("index", _INT),
    ("outcome", _STR), ("refusal_source", _STR), ("output_words", _INT), ("echo_words", _INT),
    ("longest_words", _INT), ("longest_verbatim_words", _INT),
    ("longest_regurgitated_words", _INT),
)
"""The typed columns: AttemptAnalysis fields that are a number or a string (by pyarrow type
name)."""
_OWN_STRUCTURED = tuple(n for n in AttemptAnalysis.model_fields
                        if n not in {s for s, _ in SCALARS} and n != "measures")
STRUCTURED = (*_OWN_STRUCTURED, "measures")
"""AttemptAnalysis fields stored as canonical JSON text in a column ``<field>_json`` (every
field that is not a typed column: spans, echo ranges, spans over T, the teacher-forced summary;
``measures_json``: the measures' fields as findings.json writes them, flat, by field name)."""
_SCALAR_NAMES = tuple(n for n, _ in SCALARS)

Row = tuple[Any, ...]
"""One row's values in the order of :func:`schema`'s columns: what :func:`row_of` makes (in
an analysis' worker) and :meth:`TableWriter.add_row` takes. A tuple, not a dict: a worker
sends a batch's rows to the analysis' process, and the writer makes columns of them
(``zip``), not rows."""



@functools.cache
def schema() -> pa.Schema:
    """The table's Arrow schema: the typed columns, then the JSON text columns."""
    import pyarrow as pa

    return pa.schema([pa.field(n, pa.type_for_alias(t), nullable=(n == "refusal_source"))
                      for n, t in SCALARS]
                     + [pa.field(f"{n}_json", pa.string(), nullable=False) for n in STRUCTURED],
                     metadata={"casekit.table": "attempts", "casekit.table_version": "1"})


def __getattr__(name: str) -> Any:
    if name == "SCHEMA":  # the schema as it was: a constant, made on first use
        return schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TableError(CasekitError):
    """attempts.parquet is missing, damaged or does not match findings.json."""


def row_of(x: AttemptAnalysis) -> tuple[Row, bytes]:
    """The table row of one analysis and its canonical JSON line."""
    return _row(x)


def _row(x: AttemptAnalysis) -> tuple[Row, bytes]:
    """The row of one analysis, and its canonical JSON (the line the content hash takes):
    ``x.model_dump(mode="json")`` split into columns and canonicalized, made from the fields
    without pydantic's serializer (tests/test_attempt_table.py checks both against that
    dump): the typed columns as they are, the structured fields as JSON values, the measures'
    fields from their serialized values (the empty ones' cached)."""
    d = x.__dict__
    row: list[Any] = [d[n] for n in _SCALAR_NAMES]
    full = dict(zip(_SCALAR_NAMES, row, strict=True))
    for n in _OWN_STRUCTURED:
        v = d[n]
        # Most attempts have no spans, echo or teacher-forced summary: the canonical JSON of
        # null and of an empty list is known without the encoder.
        if v is None:
            row.append("null")
        elif type(v) is list and not v:
            row.append("[]")
        else:
            v = _json_value(v)
            row.append(canonical_json(v).decode("utf-8"))
        full[n] = v
    # The measures' fields, serialized flat beside the attempt's own (as WithMeasures does).
    measures: dict[str, Any] = {}
    for fields in x.measures.values():
        measures.update(dump_fields(fields, "json"))
    row.append(canonical_json(measures).decode("utf-8"))
    full.update(measures)
    return tuple(row), canonical_json(full)


def _json_value(v: Any) -> Any:
    """A structured field's value as ``model_dump(mode="json")`` writes it: models dumped,
    tuples as lists, non-finite floats as null."""
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, (list, tuple)):
        return [_json_value(e) for e in v]
    if isinstance(v, dict):
        return {k: _json_value(e) for k, e in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RowsHasher:
    """The content hash of rows, fed in order."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.rows = 0

    def add_line(self, line: bytes) -> None:
        self._h.update(line)
        self._h.update(b"\n")
        self.rows += 1

    def add(self, x: AttemptAnalysis) -> None:
        self.add_line(canonical_json(x.model_dump(mode="json")))

    def digest(self) -> RowsDigest:
        return RowsDigest(file=ATTEMPTS_NAME, rows=self.rows,
                          sha256="sha256:" + self._h.hexdigest())


def rows_digest(rows: Iterable[AttemptAnalysis]) -> RowsDigest:
    h = RowsHasher()
    for x in rows:
        h.add(x)
    return h.digest()


class TableWriter:
    """Writes rows to ``attempts.parquet`` through a temporary file (renamed on :meth:`close`,
    removed on :meth:`abort`), one row group per :data:`ROW_GROUP` rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        # Opened at the first write: pyarrow starts threads, and an analysis forks its workers
        # first (casekit.analysis.parallel).
        self._writer: pq.ParquetWriter | None = None
        self._buf: list[Row] = []
        self.hasher = RowsHasher()

    @staticmethod
    def prepare() -> None:
        """Import pyarrow now (an analysis calls this once its workers are forked, so the
        import runs beside them rather than before them)."""
        schema()
        import pyarrow.parquet  # noqa: F401

    def add(self, x: AttemptAnalysis) -> None:
        self.add_row(*_row(x))

    def add_row(self, row: Row, line: bytes) -> None:
        """Add a row made by :func:`row_of` (in a worker process, say)."""
        self.hasher.add_line(line)
        self._buf.append(row)
        if len(self._buf) >= ROW_GROUP:
            self._flush()

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self.tmp, schema(), compression="zstd",
                                            use_dictionary=True, write_statistics=True)
        return self._writer

    def _flush(self) -> None:
        if self._buf:
            import pyarrow as pa

            sch = schema()
            # Column by column: the same table as from rows, without a dict per row.
            columns = zip(*self._buf, strict=True)
            cols = [pa.array(c, type=f.type) for c, f in zip(columns, sch, strict=True)]
            self._open().write_table(pa.Table.from_arrays(cols, schema=sch),
                                     row_group_size=ROW_GROUP)
            self._buf = []

    def close(self) -> RowsDigest:
        self._flush()
        self._open().close()  # an empty table is still a table
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        self.tmp.replace(self.path)
        return self.hasher.digest()

    def abort(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_table(path: Path, rows: Iterable[AttemptAnalysis]) -> RowsDigest:
    """Write ``rows`` (in order) to ``path``; returns their content hash."""
    w = TableWriter(path)
    try:
        for x in rows:
            w.add(x)
    except BaseException:
        w.abort()
        raise
    return w.close()


def open_table(source: Path | bytes) -> pq.ParquetFile:
    """The Parquet file of a table (its path, or its bytes), its columns checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = str(source) if isinstance(source, Path) else ATTEMPTS_NAME
    if isinstance(source, Path) and not source.is_file():
        raise TableError(f"{source}: no per-attempt table here; run `casekit analyze` on the "
                         "run folder to write it")
    try:
        # pre_buffer off: a reader kept open (the report's) does not hold the whole file.
        pf = pq.ParquetFile(source if isinstance(source, Path) else pa.BufferReader(source),
                            pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"{name}: not a readable Parquet file ({exc}); run `casekit analyze` "
                         "again to rewrite it") from None
    if not pf.schema_arrow.equals(schema(), check_metadata=False):
        raise TableError(f"{name}: not a casekit attempts table (its columns differ); run "
                         "`casekit analyze` again to rewrite it")
    return pf


def row_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A table row (as pyarrow gives it) as the serialized analysis it was written from."""
    d: dict[str, Any] = orjson.loads(row["measures_json"])
    d.update((n, row[n]) for n, _ in SCALARS)
    for n in _OWN_STRUCTURED:
        d[n] = orjson.loads(row[f"{n}_json"])
    return d


def analysis_of_row(row: dict[str, Any]) -> AttemptAnalysis:
    """The analysis a table row was written from."""
    return AttemptAnalysis.model_validate(row_dict(row))


def line_of_row(row: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """(The row's canonical JSON line, as the content hash takes it, and its serialized
    analysis), without making the analysis: the row's values are what was serialized, so
    their canonical JSON is the line :func:`row_of` hashed (a row that differs in any value
    hashes differently)."""
    d = row_dict(row)
    return canonical_json(d), d


def iter_table(path: Path, *, batch_rows: int = 4096) -> Iterator[AttemptAnalysis]:
    """The rows of a table as analyses, streamed in order (one batch in memory)."""
    pf = open_table(path)
    for batch in pf.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            yield analysis_of_row(row)


def table_digest(source: Path | bytes) -> RowsDigest:
    """The content hash of a table's rows (its file, or its bytes), streamed, computed from
    the rows' values without making an analysis of each (:func:`line_of_row`)."""
    pf = open_table(source)
    h = RowsHasher()
    for batch in pf.iter_batches(batch_size=ROW_GROUP):
        for row in batch.to_pylist():
            h.add_line(line_of_row(row)[0])
    return h.digest()


def check_table(path: Path, expect: RowsDigest) -> None:
    """Raise TableError unless the table holds the rows findings.json cites (streamed)."""
    got = table_digest(path)
    if (got.rows, got.sha256) != (expect.rows, expect.sha256):
        raise TableError(f"{path}: {got.rows} rows hashing to {got.sha256}, findings.json "
                         f"cites {expect.rows} rows hashing to {expect.sha256}; run `casekit "
                         "analyze` again to rewrite both")


def load_table(path: Path, expect: RowsDigest) -> list[AttemptAnalysis]:
    """Every row of a table, checked against the content hash findings.json cites."""
    rows: list[AttemptAnalysis] = []
    h = RowsHasher()
    for x in iter_table(path):
        h.add(x)
        rows.append(x)
    got = h.digest()
    if (got.rows, got.sha256) != (expect.rows, expect.sha256):
        raise TableError(f"{path}: {got.rows} rows hashing to {got.sha256}, findings.json "
                         f"cites {expect.rows} rows hashing to {expect.sha256}; run `casekit "
                         "analyze` again to rewrite both")
    return rows


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _defuse(value: str | None) -> str | None:
    """A text cell a spreadsheet would evaluate (starts with = + - @ tab CR) gets a leading
    apostrophe (OWASP's CSV-injection advice): model outputs and labels are hostile input."""
    if value and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(table: Path | bytes, out: Path) -> None:
    """``attempts.csv``: the table's rows (its file, or its bytes), every column, for
    spreadsheets (UTF-8, header row, RFC 4180 quoting, text cells that would run as formulas
    defused), written one record batch at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pf = open_table(table)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with pacsv.CSVWriter(str(tmp), schema()) as w:
            for batch in pf.iter_batches(batch_size=ROW_GROUP):
                cols = []
                for col in batch.columns:
                    if pa.types.is_string(col.type):
                        col = pa.array([_defuse(v) for v in col.to_pylist()], type=pa.string())
                    cols.append(col)
                w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema()))
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def table_files(rows: Iterable[AttemptAnalysis]) -> tuple[bytes, bytes, RowsDigest]:
    """(attempts.parquet bytes, attempts.csv bytes, the rows' content hash) of ``rows``, made
    in a temporary folder: what a report embeds. The same rows give the same bytes with the
    same pyarrow."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="casekit-table-") as tmp:
        table = Path(tmp) / ATTEMPTS_NAME
        digest = write_table(table, rows)
        csv = Path(tmp) / CSV_NAME
        write_csv(table, csv)
        return table.read_bytes(), csv.read_bytes(), digest


def digest_of_bytes(data: bytes) -> RowsDigest:
    """The content hash of the rows in a table's bytes (an attached attempts.parquet)."""
    return table_digest(data)
