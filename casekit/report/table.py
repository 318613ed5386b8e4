"""The per-attempt table (attempts.parquet) as the report reads it (issue 14).

A 500,000-attempt run has 500,000 rows; as :class:`AttemptAnalysis` objects they took some
1.2 GB. The report reads them once instead: :meth:`AttemptTable.open` streams the table's
record batches, checks the rows against the content hash findings.json cites, and keeps only
the typed columns the pages count on (numbers as numpy arrays, the few distinct strings of a
column as codes into a list, the attempt ids as one Arrow array) plus a few facts of the
structured columns (has spans, the first work word a span starts at). The attempts a page
shows or draws (the sample, the exhibits, a stitched block, the coverage map's spans) are
made into analyses when asked for (:meth:`AttemptTable.analyses`), reading only the row groups
that hold them, one at a time. So the report's memory follows the case's shape, not the number
of attempts.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casekit.analysis.attempt_table import (
    ATTEMPTS_NAME,
    TableError,
    analysis_of_row,
    line_of_row,
    open_table,
    row_dict,
    write_table,
)
from casekit.analysis.findings import SUMMARY_FIELD, AttemptAnalysis, Findings, RowsDigest
from casekit.analysis.registry import takes_over

log = logging.getLogger(__name__)

#: The string columns the pages count on, each with few distinct values: kept as codes into
#: a list of the values.
LABELLED = ("model_id", "work_id", "role", "strategy_key", "intent", "mode", "outcome",
            "refusal_source")
#: The number columns the pages count on, kept as numpy arrays (the others are read with the
#: analyses of the rows shown).
NUMBERS = ("seq", "longest_words", "echo_words")
#: Rows read at a time when the table is opened (the rows of a batch are made into dicts to be
#: hashed: a smaller batch holds less; 2,048 against 8,192 rows: 178 against 205 MB peak over
#: the start for 500,000 rows).
BATCH_ROWS = 2048
NO_SPAN = -1
"""``first_word`` of an attempt without spans."""


@dataclass(frozen=True)
class Labels:
    """A string column as codes (``-1``: null) into the list of its distinct values."""

    codes: np.ndarray
    values: list[str]

    def eq(self, value: str) -> np.ndarray:
        """Rows whose value is ``value``."""
        if value not in self.values:
            return np.zeros(len(self.codes), dtype=bool)
        return self.codes == self.values.index(value)

    def isin(self, values: Iterable[str]) -> np.ndarray:
        wanted = [i for i, v in enumerate(self.values) if v in set(values)]
        return np.isin(self.codes, wanted)

    def at(self, row: int) -> str | None:
        code = int(self.codes[row])
        return self.values[code] if code >= 0 else None

    def notnull(self) -> np.ndarray:
        return self.codes >= 0


class _Coder:
    """Codes of one string column, batch by batch, into one list of its distinct values (in
    the order they first appear): only the codes are kept, not the strings."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._code: dict[str, int] = {}
        self.chunks: list[np.ndarray] = []

    def add(self, col: pa.Array) -> None:
        enc = pc.dictionary_encode(col)
        local = np.array([self._code.setdefault(str(v), len(self._code))
                          for v in enc.dictionary.to_pylist()] + [-1], dtype=np.int32)
        idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        self.chunks.append(local[idx])  # -1 (null) picks the last entry, -1

    def labels(self) -> Labels:
        codes = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int32)
        return Labels(codes, list(self._code))


class AttemptTable:
    """The rows of attempts.parquet, checked against findings.json's ``attempt_rows``, as
    columns; analyses made only for the rows asked for."""

    def __init__(self, source: Path | bytes, expect: RowsDigest, *,
                 checked: bool = False) -> None:
        """``checked``: the caller has just checked that the file holds the rows ``expect``
        cites (casekit verify compares it with the rows it recomputed), so they are not
        hashed again."""
        self.source = source
        """The table's file, or its bytes (a table made from analyses held in memory)."""
        self._pf = open_table(source)
        md = self._pf.metadata
        self._group_start = np.cumsum([0] + [md.row_group(i).num_rows
                                             for i in range(md.num_row_groups)])
        self._cached: tuple[int, pa.Table] | None = None
        labelled = {n: _Coder() for n in LABELLED}
        numbers: dict[str, list[np.ndarray]] = {n: [] for n in NUMBERS}
        ids: list[pa.Array] = []
        has_spans: list[bool] = []
        has_tf: list[bool] = []
        taken_over: list[int] = []
        first_word: list[int] = []
        h = hashlib.sha256()
        rows = 0
        try:
            for batch in self._pf.iter_batches(batch_size=BATCH_ROWS):
                for n in LABELLED:
                    labelled[n].add(batch.column(n))
                for n in NUMBERS:
                    numbers[n].append(batch.column(n).to_numpy(zero_copy_only=False))
                ids.append(batch.column("attempt_id"))
                for row in batch.to_pylist():
                    if checked:
                        d = row_dict(row)
                    else:
                        line, d = line_of_row(row)
                        h.update(line)
                        h.update(b"\n")
                    rows += 1
                    spans = d["spans"]
                    has_spans.append(bool(spans))
                    has_tf.append(d[SUMMARY_FIELD] is not None)
                    if d["mode"] != "score" and takes_over(d["strategy"]) and \
                            not AttemptAnalysis.model_validate(d).span_attempt:
                        taken_over.append(rows - 1)  # a name-cloze answer, say
                    first_word.append(min((s["work_word_start"] for s in spans),
                                          default=NO_SPAN))
        except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as exc:
            raise TableError(f"{self.name}: the per-attempt table does not read ({exc}); run "
                             "`casekit analyze` again to rewrite it") from None
        got = expect.sha256 if checked else "sha256:" + h.hexdigest()
        if (rows, got) != (expect.rows, expect.sha256):
            raise TableError(f"{self.name}: {rows} rows hashing to {got}, findings.json cites "
                             f"{expect.rows} rows hashing to {expect.sha256}; run `casekit "
                             "analyze` again to rewrite both")
        self.rows = rows
        self.labels = {n: c.labels() for n, c in labelled.items()}
        self.numbers = {n: np.concatenate(c) if c else np.zeros(0, dtype=np.int64)
                        for n, c in numbers.items()}
        self.attempt_ids: pa.Array = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
        self.has_spans = np.array(has_spans, dtype=bool)
        self.has_teacher_forced = np.array(has_tf, dtype=bool)
        self._span_attempts = self.generation()
        self._span_attempts[taken_over] = False
        self.first_word = np.array(first_word, dtype=np.int64)
        """The smallest work word any of the row's spans starts at (NO_SPAN: none)."""

    @property
    def name(self) -> str:
        return str(self.source) if isinstance(self.source, Path) else ATTEMPTS_NAME

    def file_bytes(self) -> bytes:
        """The table's bytes, as the report attaches them."""
        return self.source.read_bytes() if isinstance(self.source, Path) else self.source

    # ----------------------------------------------------------------- columns

    def __len__(self) -> int:
        return self.rows

    def label(self, name: str) -> Labels:
        return self.labels[name]

    def number(self, name: str) -> np.ndarray:
        return self.numbers[name]

    def of(self, model_id: str, work_id: str) -> np.ndarray:
        """Rows of one model x work."""
        return self.labels["model_id"].eq(model_id) & self.labels["work_id"].eq(work_id)

    def generation(self) -> np.ndarray:
        """Rows that are not score attempts."""
        return ~self.labels["mode"].eq("score")

    def span_attempts(self) -> np.ndarray:
        """Rows of span-matched generation attempts (AttemptAnalysis.span_attempt): not score
        attempts, and none a measure took over (a name-cloze answer, which is never matched
        against the work). The attempts of the span rates, the control floor and the test
        against it."""
        return self._span_attempts.copy()

    def matched_outputs(self) -> np.ndarray:
        """Rows of span-matched generation attempts that returned an output
        (AttemptAnalysis.matched_output): the attempts of the control floor, the test against
        it and the sensitivity table."""
        return self._span_attempts & ~self.labels["outcome"].isin(("error", "unscorable"))

    def reaching(self, f: Findings) -> np.ndarray:
        """Rows that reach their work's reporting threshold (Findings.reaches_threshold)."""
        work = self.labels["work_id"]
        floor = np.array([f.min_span(w) for w in work.values] or [0], dtype=np.int64)
        lw = self.numbers["longest_words"]
        return self.generation() & (lw >= floor[np.maximum(work.codes, 0)])

    def ids(self, mask: np.ndarray) -> list[str]:
        """The attempt ids of the rows in ``mask``, in ledger order."""
        return [str(v) for v in self.attempt_ids.filter(pa.array(mask)).to_pylist()]

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``ids`` (``-1`` for an id the table does not hold)."""
        if not ids:
            return np.zeros(0, dtype=np.int64)
        found = pc.index_in(pa.array(list(ids), pa.string()), value_set=self.attempt_ids)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    # ----------------------------------------------------------------- analyses

    def analyses(self, rows: Iterable[int] | np.ndarray) -> Iterator[AttemptAnalysis]:
        """The analyses of ``rows``, in ledger order, made as they are read (one row group of
        the file in memory)."""
        wanted = np.unique(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows,
                                      dtype=np.int64))
        if len(wanted) and (wanted[0] < 0 or wanted[-1] >= self.rows):
            raise IndexError(f"row {wanted[0] if wanted[0] < 0 else wanted[-1]} is not in the "
                             f"table of {self.rows} rows")
        groups = np.searchsorted(self._group_start, wanted, side="right") - 1
        for g in np.unique(groups):
            local = wanted[groups == g] - self._group_start[g]
            for row in self._group(int(g)).take(pa.array(local)).to_pylist():
                yield analysis_of_row(row)

    def get(self, row: int) -> AttemptAnalysis:
        return next(self.analyses([row]))

    def by_id(self, ids: Iterable[str]) -> dict[str, AttemptAnalysis]:
        """The analyses of the attempts ``ids`` the table holds, by attempt id."""
        rows = self.rows_of(sorted(set(ids)))
        return {x.attempt_id: x for x in self.analyses(rows[rows >= 0])}

    def _group(self, g: int) -> pa.Table:
        """Row group ``g`` of the file (the last one read is kept: the exhibits ask for their
        attempts one at a time)."""
        if self._cached is None or self._cached[0] != g:
            self._cached = (g, self._pf.read_row_group(g))
        return self._cached[1]

    # ----------------------------------------------------------------- making one

    @classmethod
    def of_run(cls, run_dir: Path, findings: Findings, *, checked: bool = False,
               ) -> AttemptTable:
        """The run's attempts.parquet when it holds the rows the findings cite; else (findings
        analyzed in memory, not written) a table made from ``findings.attempts``."""
        path = run_dir / ATTEMPTS_NAME
        if path.is_file() or not findings.attempts:
            try:
                return cls(path, findings.attempt_rows, checked=checked)
            except TableError:
                if not findings.attempts:
                    raise
        with tempfile.TemporaryDirectory(prefix="casekit-table-") as tmp:
            made = Path(tmp) / ATTEMPTS_NAME
            write_table(made, findings.attempts)
            return cls(made.read_bytes(), findings.attempt_rows)


def first_sorted(keys: Sequence[np.ndarray], rows: np.ndarray) -> int | None:
    """The row of ``rows`` that sorts first by ``keys`` (most significant first)."""
    if not len(rows):
        return None
    order = np.lexsort(tuple(k[rows] for k in reversed(keys)))
    return int(rows[order[0]])
