"""Per-attempt analysis in worker processes, with output independent of the worker count.

The parent reads the ledger's lines and hands them, raw and in batches, to workers forked
after the analyzer was built: the works, their k-gram indexes and the measures are shared
copy-on-write, never pickled per task. Each worker checks each line on its own
(casekit.ledger.check_line: parsed, hashed, canonical form, schema; once, where the parent
used to verify a record and the worker to parse it again), analyzes the attempts and returns,
per line, the check's findings and, per attempt, its analysis and table row. The parent
consumes the results in ledger order whatever order the workers finish in, and makes the
in-order half of the chain check (casekit.ledger.ChainCursor: the ``prev_hash`` links and the
sequence numbers), so a ledger that does not verify fails at the same line with the same
words as with one process.

The analyzer also gathers per-analysis state while it analyzes attempts (coverage and BMC masks,
measures' state such as name-cloze gold answers). Each worker gathers its own; at the end every
worker sends its state and the parent merges it: masks by OR, measures by ``merge_state``. Both
are independent of which worker saw which attempt, so findings.json and attempts.parquet are
the same bytes with one worker or many (tests/test_parallel.py).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import queue
from collections import deque
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from casekit.analysis.attempt_table import Row, row_of
from casekit.analysis.findings import AttemptAnalysis, compact
from casekit.errors import CasekitError
from casekit.ledger import CheckedLine, LedgerRecord, check_line
from casekit.records import AttemptRecord


class Analyzer(Protocol):
    """What the pool needs of casekit.analysis.analyze.Analyzer (which uses the pool)."""

    cover: dict[Any, np.ndarray]
    bmc_masks: dict[Any, np.ndarray]
    measures: list[Any]

    def seed_hints(self, recs: list[AttemptRecord]) -> list[Any]: ...

    def attempt(self, rec: AttemptRecord, hint: Any = None) -> AttemptAnalysis: ...


class LedgerObserver(Protocol):
    """Another reader of the ledger's lines that rides on the analysis' pass (casekit verify
    takes the report's facts of the ledger from it, casekit.report.ledger_facts.FactsPass):
    :meth:`line` gets each line as it is read, in ledger order; :meth:`attempt` and
    :meth:`record` get each line's verified record, in the same order, an attempt record as
    what :meth:`of_attempt` made of it (in the worker that checked it, when there are
    workers)."""

    def of_attempt(self, rec: AttemptRecord) -> Any: ...

    def line(self, raw: bytes) -> None: ...

    def attempt(self, facts: Any, record_hash: str | None) -> None: ...

    def record(self, rec: Any) -> None: ...


log = logging.getLogger(__name__)

BATCH = 128
"""The fewest lines per task (and the attempts an analysis in one process tests together,
casekit.analysis.analyze.Analyzer.seed_hints)."""
BATCH_MAX = 1024
"""The most lines per task. Large tasks cost less per line (fewer messages and pickles, and a
prompt sent to several models is more often tokenized once: it recurs some 60 lines apart in
a matter's ledger); toward the ledger's end tasks shrink so that the workers finish together
(:meth:`AttemptPool._batch_size`)."""
IN_FLIGHT = 4
"""Batches in flight per worker: bounds memory whatever the ledger's size."""
COLLECT_EVERY = 8192
"""A worker's full garbage collection, every this many lines (see :func:`_worker`)."""

Result = tuple[AttemptAnalysis, Row, bytes]
"""An attempt's analysis, its table row and the row's canonical JSON line."""
AttemptHead = tuple[str, str, str, str, int | None]
"""What the parent's bookkeeping reads of an attempt record: attempt id, strategy, strategy
key, status, ``retry_of``."""
Item = tuple[Any, ...]
"""Per line, in order: ``("a", line number, CheckedLine, AttemptHead, Result | None, facts)``
for an attempt record (no result when a later try supersedes it; facts: the observer's
``of_attempt``, None without one), ``("r", line number, CheckedLine, record or None)`` for any
other line (None when it did not check), or ``("e", line number, message)`` when analyzing the
line's attempt raised (the batch's last item)."""


def _worker(an: Analyzer, index: int, tasks: Any, results: Any,
            superseded: Container[int], of_attempt: Callable[[AttemptRecord], Any] | None,
            ) -> None:
    """A worker's loop: check and analyze batches until told to stop, then send this
    worker's state."""
    # The collector is paused in the parent while it analyzes (casekit.analysis.analyze), and
    # stays paused here: analyzing an attempt makes no reference cycles (a 20,000-attempt
    # check found 317 cyclic objects in all, made once), and the collections that the
    # allocations of every attempt set off cost ~5% of a worker's time. A full collection
    # every COLLECT_EVERY lines still frees what a plugin's measure might leave in a cycle.
    # What the worker inherited (the works, their indexes and k-gram hash tables) is frozen
    # first, so a collection skips it and does not write to the pages it shares with the
    # parent.
    gc.freeze()
    gc.disable()
    lines_since = 0
    while True:
        task = tasks.get()
        if task is None:
            break
        batch_no, lines = task
        lines_since += len(lines)
        if lines_since >= COLLECT_EVERY:
            gc.collect()
            lines_since = 0
        results.put(("done", batch_no, _batch(an, lines, superseded, of_attempt)))
    results.put(("state", index, an.cover, an.bmc_masks,
                 [r.measure.state() for r in an.measures]))


def seed_hints(an: Analyzer, recs: list[AttemptRecord]) -> list[Any]:
    """``an.seed_hints(recs)``; None for each record, with a warning, should it raise: the
    hints only spare work (each attempt is then analyzed on its own, to the same result)."""
    try:
        return an.seed_hints(recs)
    except Exception as exc:  # noqa: BLE001 - the analysis goes on without the hints
        log.warning("testing a batch's outputs together failed (%s: %s); analyzing them one "
                    "by one", type(exc).__name__, exc)
        return [None] * len(recs)


def _batch(an: Analyzer, lines: list[tuple[int, bytes, bool]], superseded: Container[int],
           of_attempt: Callable[[AttemptRecord], Any] | None) -> list[Item]:
    """A batch's items, in line order: its lines checked, then its attempts analyzed (their
    outputs first tested against their works together, :meth:`Analyzer.seed_hints`). The
    first line that raises ends the batch with an ``"e"`` item in its place."""
    checked_lines: list[tuple[int, CheckedLine, LedgerRecord | None]] = []
    failed: Item | None = None
    for ln, raw, terminated in lines:
        try:
            checked, rec = check_line(raw, terminated)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops
            failed = ("e", ln, f"{type(exc).__name__}: {exc}")
            break
        checked_lines.append((ln, checked, rec))
    todo = [rec for _, _, rec in checked_lines
            if isinstance(rec, AttemptRecord) and rec.seq not in superseded]
    hints = dict(zip(map(id, todo), seed_hints(an, todo), strict=True))
    out: list[Item] = []
    for ln, checked, rec in checked_lines:
        try:
            if not isinstance(rec, AttemptRecord):
                out.append(("r", ln, checked, rec))
                continue
            a = rec.attempt
            head = (a.id, a.strategy, a.strategy_key, rec.status, rec.retry_of)
            result: Result | None = None
            if rec.seq not in superseded:
                # Compacted here, not in the parent: the batch's attempts then share their
                # field-name sets in the pickle (stored once per batch, not once per
                # attempt), which the parent would otherwise rebuild per attempt and replace
                # with shared ones (casekit.analysis.findings.compact).
                x = compact(an.attempt(rec, hints.get(id(rec))))
                row, line = row_of(x)
                result = (x, row, line)
            out.append(("a", ln, checked, head, result,
                        of_attempt(rec) if of_attempt is not None else None))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops
            out.append(("e", ln, f"{type(exc).__name__}: {exc}"))
            return out
    if failed is not None:
        out.append(failed)
    return out


@dataclass
class AttemptPool:
    """Worker processes analyzing attempts for one analysis (see the module docstring)."""

    an: Analyzer
    ledger: str
    workers: int
    superseded: Container[int] = ()
    """Seqs of failed attempts a later try supersedes: checked, not analyzed."""
    of_attempt: Callable[[AttemptRecord], Any] | None = None
    """What an observer of the pass takes of each attempt record (LedgerObserver)."""
    _ctx: Any = field(init=False)
    _tasks: Any = field(init=False)
    _results: Any = field(init=False)
    _procs: list[Any] = field(init=False, default_factory=list)
    _batch: list[tuple[int, bytes, bool]] = field(init=False, default_factory=list)
    _sent: deque[tuple[int, int, int]] = field(init=False, default_factory=deque)
    """(batch number, first line, last line) of the batches sent and not yet consumed."""
    _done: dict[int, list[Item]] = field(init=False, default_factory=dict)
    _next_no: int = field(init=False, default=0)
    _size: int = field(init=False, default=BATCH)
    """Lines of the task being filled."""
    _lines: int = field(init=False, default=0)
    _bytes: int = field(init=False, default=0)
    """Lines and bytes (newlines included) queued so far."""
    _total: int = field(init=False, default=0)
    """The ledger's size when the pool started: what is left to queue is estimated from it
    (the few lines read before the pool count as left, a slight overestimate)."""

    def __post_init__(self) -> None:
        try:
            self._total = os.path.getsize(self.ledger)
        except OSError:
            self._total = 0
        # fork: the children inherit the analyzer (indexes, works) without a copy per task.
        self._ctx = mp.get_context("fork")
        self._tasks = self._ctx.Queue()
        self._results = self._ctx.Queue()
        for i in range(self.workers):
            p = self._ctx.Process(target=_worker, args=(self.an, i, self._tasks, self._results,
                                        self.superseded, self.of_attempt),
                                  name=f"casekit-analyze-{i}", daemon=True)
            p.start()
            self._procs.append(p)
        log.info("analyzing attempts in %d worker processes", self.workers)

    def put(self, lineno: int, raw: bytes, terminated: bool) -> Iterator[Item]:
        """Queue one ledger line; yields the items now due, in ledger order."""
        if not self._batch:
            self._size = self._batch_size()
        self._batch.append((lineno, raw, terminated))
        self._lines += 1
        self._bytes += len(raw) + 1
        if len(self._batch) >= self._size:
            self._send()
            while len(self._sent) >= IN_FLIGHT * self.workers:
                yield from self._next_batch()

    def _batch_size(self) -> int:
        """Lines for the next task: about the lines left (estimated from the ledger's bytes
        left and the mean line so far) over twice the workers, between BATCH and BATCH_MAX."""
        if not self._lines:
            return BATCH
        left = max(0, self._total - self._bytes) * self._lines // self._bytes
        return max(BATCH, min(BATCH_MAX, left // (2 * self.workers)))

    def finish(self) -> Iterator[Item]:
        """The remaining items, in order; then the workers' state is merged into the
        analyzer and the workers are gone."""
        self._send()
        while self._sent:
            yield from self._next_batch()
        for _ in self._procs:
            self._tasks.put(None)
        states = [self._get("state")[1:] for _ in self._procs]
        for _, cover, bmc, measures in sorted(states, key=lambda s: s[0]):
            _merge_masks(self.an.cover, cover)
            _merge_masks(self.an.bmc_masks, bmc)
            for r, st in zip(self.an.measures, measures, strict=True):
                if st is not None:
                    r.measure.merge_state(st)
        self.close()

    def close(self) -> None:
        """Stop the workers (at once when the analysis failed). Batches still queued for a
        worker that is gone are dropped: waiting to flush them would hang the process."""
        for p in self._procs:
            if p.is_alive():
                p.terminate()
            p.join(5)
        self._procs = []
        for q in (self._tasks, self._results):
            q.cancel_join_thread()
            q.close()

    def _send(self) -> None:
        if not self._batch:
            return
        no = self._next_no
        self._next_no += 1
        self._tasks.put((no, self._batch))
        self._sent.append((no, self._batch[0][0], self._batch[-1][0]))
        self._batch = []

    def _next_batch(self) -> Iterator[Item]:
        no, _, _ = self._sent[0]
        while no not in self._done:
            msg = self._get("done")
            self._done[msg[1]] = msg[2]
        self._sent.popleft()
        yield from self._done.pop(no)

    def _get(self, kind: str) -> tuple[Any, ...]:
        """The next message from the workers; a worker's death stops the analysis with a
        one-line error naming the ledger lines."""
        while True:
            try:
                msg = self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead and kind != "state":
                    first = self._sent[0][1] if self._sent else 0
                    last = self._sent[-1][2] if self._sent else 0
                    raise CasekitError(
                        f"{self.ledger}: analysis worker {dead[0].name} stopped (exit code "
                        f"{dead[0].exitcode}) while lines {first}-{last} were being analyzed; "
                        "nothing was written. Run `casekit analyze --workers 1` to analyze in "
                        "one process (it names the record if one is at fault), or free memory "
                        "and run again") from None
                continue
            if msg[0] != kind:  # pragma: no cover - the protocol is fixed
                raise AssertionError(f"unexpected message {msg[0]!r} from a worker")
            return tuple(msg)


def _merge_masks(into: dict[Any, np.ndarray], more: dict[Any, np.ndarray]) -> None:
    for key, mask in more.items():
        if key in into:
            into[key] |= mask
        else:
            into[key] = mask.copy()


def attempt_failed(ledger: str, lineno: int, message: str) -> CasekitError:
    """The error of an ``("e", ...)`` item: analyzing the attempt of a ledger line raised."""
    return CasekitError(f"{ledger}: line {lineno}: analyzing this attempt failed ({message}); "
                        "nothing was written. Report this with the ledger line to the casekit "
                        "maintainers")


# --- the aggregates of many attempts, in forked processes ---------------------------------------

SPLIT_MIN_WEIGHT = 20_000
"""Total weight (attempts) below which :func:`map_forked` computes in this process: a fork and
a pipe cost a few milliseconds, a model x work of a few thousand attempts about as much."""


def _groups(weights: list[int], n: int) -> list[list[int]]:
    """Item indexes in ``n`` groups of near-equal total weight (the heaviest item first to the
    lightest group, ties to the lower group): a function of the weights alone."""
    groups: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        g = min(range(n), key=lambda g: (load[g], g))
        groups[g].append(i)
        load[g] += weights[i]
    return [sorted(g) for g in groups if g]


def _child(fn: Callable[[Any], Any], items: list[Any], idx: list[int], conn: Any) -> None:
    try:
        out: tuple[str, Any] = ("ok", [fn(items[i]) for i in idx])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        out = ("error", f"{type(exc).__name__}: {exc}")
    conn.send(out)
    conn.close()


def map_forked(fn: Callable[[Any], Any], items: list[Any], weights: list[int], workers: int,
               what: str) -> list[Any]:
    """``[fn(x) for x in items]``, in that order, with the items split over ``workers``
    processes by weight: this process computes one group and forked children the others
    (they inherit what ``fn`` reads, the analyses of a whole run included, without a copy).
    The results are the same objects whatever the split, as long as ``fn`` depends only on
    its item and on state that no call of ``fn`` changes. A child that fails or dies stops
    the analysis with a one-line error; ``what`` names the work in it."""
    if workers < 2 or len(items) < 2 or sum(weights) < SPLIT_MIN_WEIGHT:
        return [fn(x) for x in items]
    groups = _groups(weights, min(workers, len(items)))
    ctx = mp.get_context("fork")
    children: list[tuple[Any, Any, list[int]]] = []
    for g in groups[1:]:
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(fn, items, g, send),
                        name=f"casekit-aggregate-{len(children)}", daemon=True)
        p.start()
        send.close()
        children.append((p, recv, g))
    results: list[Any] = [None] * len(items)
    try:
        for i in groups[0]:
            results[i] = fn(items[i])
        for p, recv, g in children:
            try:
                status, got = recv.recv()
            except EOFError:
                p.join(5)
                raise CasekitError(
                    f"{what}: a process computing them stopped (exit code {p.exitcode}); "
                    "nothing was written. Run `casekit analyze --workers 1` to compute them "
                    "in one process, or free memory and run again") from None
            if status != "ok":
                raise CasekitError(f"{what} failed ({got}); nothing was written. Report "
                                   "this to the casekit maintainers")
            for i, r in zip(g, got, strict=True):
                results[i] = r
    finally:
        for p, recv, _ in children:
            recv.close()
            if p.is_alive():
                p.terminate()
            p.join(5)
    log.info("%s computed in %d processes", what, len(groups))
    return results
