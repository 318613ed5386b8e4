"""Run a case: plan, execute every attempt, record every try in the ledger, resume when asked.

The run folder is ``<case dir>/runs/<case id>-<12 hex of the case hash>`` by default, so running
the same case file again resumes its run: attempts already recorded are skipped and the chain
continues. Every planned attempt ends up in the ledger exactly once, as ``ok``, ``refusal`` or
``error`` (an attempt that exhausts its retries is recorded as failed, never dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casekit.anchor import (
    DEFAULT_CHECKPOINT_EVERY,
    Anchor,
    Timestamper,
    make_anchor,
)
from casekit.case import LoadedCase, case_hash_form
from casekit.errors import CaseError, CasekitError, LedgerError
from casekit.ledger import Ledger
from casekit.plan import Plan, build_plan, interface_of
from casekit.provenance import git_state, host_info, iso_utc, versions
from casekit.providers.base import Provider, provider_class
from casekit.records import (
    AttemptError,
    AttemptRecord,
    ModelIdentity,
    PlannedAttempt,
    ProviderResult,
    RunEnd,
    RunStart,
    TryRecord,
    WorkManifest,
)
from casekit.run.batch import (
    DEFAULT_MAX_WAIT,
    DEFAULT_POLL_INTERVAL,
    BatchExecutor,
    has_open_batches,
)
from casekit.run.ratelimit import Limiter
from casekit.run.session import run_session
from casekit.works import Work, load_works

log = logging.getLogger(__name__)

MAX_TRIES = 4
START_SPACING = 0.0005
"""Seconds between the first requests of a model's concurrent workers (a 32 ms ramp at 64
connections). Started together, their completions come back together and queue behind one
another on the event loop, and since each worker's next request leaves when its completion
has been handled, the bunching repeats every round (with equal latencies, as against a local
server, for the whole run); spaced by about one attempt's processing time, they stay spread.
Measured (benchmarks/runner_bench.py): wall ratio 1.12-1.15 started together, 1.09-1.11 with
this spacing. It also spares a provider a burst of simultaneous first requests."""
RETRYABLE = frozenset({"transient", "rate_limit"})
"""Error kinds ``--retry-failed`` sends again (a refused request, ``no_retry``, would fail the
same way)."""
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0


def default_run_dir(case: LoadedCase) -> Path:
    return case.base_dir / "runs" / f"{case.spec.case.id}-{case.sha256.split(':', 1)[1][:12]}"


@dataclass
class RunStats:
    planned: int = 0
    skipped: int = 0
    ok: int = 0
    refusal: int = 0
    error: int = 0
    retries: int = 0
    retrying: int = 0
    retried: int = 0
    """Failed attempts sent again (``--retry-failed``)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.ok + self.refusal + self.error


@dataclass
class RunOutcome:
    run_dir: Path
    ledger_path: Path
    stats: RunStats
    complete: bool
    interrupted: bool


def work_manifest(case: LoadedCase, work: Work) -> WorkManifest:
    return WorkManifest(
        id=work.id, title=work.spec.title, author=work.spec.author, role=work.spec.role,
        path=work.spec.path, sha256=work.sha256, chars=len(work.raw), words=len(work.tokens),
        excluded_chars=work.excluded_chars,
        **({"text_sha256": work.text_sha256, "extractor": work.extractor}
           if work.extractor else {}),
    )


class Runner:
    def __init__(self, case: LoadedCase, run_dir: Path | None = None,
                 max_tries: int | None = None, argv: list[str] | None = None,
                 plan: Plan | None = None, rerun_of: dict[str, str] | None = None,
                 batch: bool = False, batch_poll_interval: float = DEFAULT_POLL_INTERVAL,
                 batch_max_wait: float | None = DEFAULT_MAX_WAIT, *,
                 anchor: Anchor | None = None, examiner_key: Path | None = None,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                 tsa_url: str | None = None, timestamper: Timestamper | None = None,
                 retry_failed: bool = False) -> None:
        self.case = case
        self.anchor = anchor
        """Signs the ledger's checkpoints; by default the examiner key at ``examiner_key``
        (else casekit.anchor.default_key_path()), made on first use."""
        self.examiner_key = examiner_key
        self.checkpoint_every = checkpoint_every
        self.tsa_url = tsa_url or case.spec.anchoring.tsa
        """The TSA that timestamps each checkpoint: ``--tsa``, else the case's
        ``anchoring.tsa``."""
        self.timestamper = timestamper
        """Asks it (default: casekit.anchor.http_timestamper(tsa_url))."""
        self.retry_failed = retry_failed
        """Also resend the attempts whose last try failed with a transient error."""
        self.batch = batch
        """Send chat/completion attempts through the provider's batch API (casekit.run.batch)."""
        self.batch_poll_interval = batch_poll_interval
        self.batch_max_wait = batch_max_wait
        self.run_dir = run_dir or default_run_dir(case)
        self.plan_override = plan
        """The attempts to run instead of planning them (``casekit rerun``)."""
        self.rerun_of = rerun_of
        self.max_tries = max_tries
        self.argv = argv if argv is not None else list(sys.argv)
        self.stop_requested = False
        self.stats = RunStats()
        self._providers: dict[str, Provider] = {}

    # -- setup ---------------------------------------------------------------------------------
    def prepare(self) -> tuple[list[Work], Plan]:
        works = load_works(self.case)
        plan = self.plan_override or build_plan(self.case, works)
        return works, plan

    def provider(self, model_id: str) -> Provider:
        """The model's provider, built once. A model the provider refuses (an unknown or
        invalid ``params`` key, a missing key variable or model package) is a CaseError at
        that model's entry in the case file."""
        if model_id not in self._providers:
            i, spec = next((i, m) for i, m in enumerate(self.case.spec.models)
                           if m.id == model_id)
            try:
                self._providers[model_id] = provider_class(spec.provider)(spec,
                                                                          self.case.base_dir)
            except CaseError:
                raise
            except CasekitError as exc:
                raise self.case.model_error(i, exc) from None
        return self._providers[model_id]

    def make_anchor(self) -> Anchor:
        """The run's anchor (casekit.anchor): the examiner key, never kept in the run folder."""
        if self.anchor is None:
            self.anchor = make_anchor(self.run_dir, key_path=self.examiner_key,
                                      every=self.checkpoint_every, tsa_url=self.tsa_url,
                                      timestamper=self.timestamper)
        return self.anchor

    def identities(self) -> list[ModelIdentity]:
        out = []
        for m in self.case.spec.models:
            ident = self.provider(m.id).identity()
            out.append(ident)
        return out

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        with collector_tuned():
            return self._run()

    def _run(self) -> RunOutcome:
        started_at = iso_utc()
        works, plan = self.prepare()
        self.stats.planned = len(plan)
        for m in self.case.spec.models:  # a model its provider refuses stops the run here,
            self.provider(m.id)          # before a run folder or a ledger exists
        ledger = Ledger(self.run_dir, anchor=self.make_anchor())
        ledger.open()
        try:
            fresh = self._start_or_resume(ledger, works, plan, started_at)
            # Every attempt recorded under this run_start was planned by this plan (its hash
            # was checked), or imported (`casekit import`, never planned and not counted), so
            # no pass over the plan (nor a set of its ids) is needed to count them.
            self.stats.skipped = ledger.recorded_planned()
            if self.stats.skipped:
                log.info("resuming: %d of %d attempts already recorded", self.stats.skipped,
                         len(plan))
            interrupted = asyncio.run(self._execute(ledger, plan, fresh))
            retried = 0
            if self.retry_failed and not interrupted and not self.stop_requested:
                retried, interrupted = self._retry_failed(ledger)
            recorded = ledger.recorded_planned()
            complete = recorded == len(plan)
            if interrupted:
                ledger.append_note("interrupted", "run stopped by the operator; run the same "
                                   "case again to resume", {"recorded": recorded,
                                                            "planned": len(plan)})
            if complete and (not ledger.is_complete() or retried):
                # After retries, a new run_end with the counts as they now stand.
                counts = {"ok": 0, "refusal": 0, "error": 0, **ledger.attempt_counts()}
                ledger.append(RunEnd(**ledger.base_fields(), attempts_recorded=recorded,
                                     attempts_planned=len(plan), complete=True, counts=counts))
            return RunOutcome(self.run_dir, ledger.path, self.stats, complete, interrupted)
        finally:
            ledger.close()
            for p in self._providers.values():
                p.close()

    def _start_or_resume(self, ledger: Ledger, works: list[Work], plan: Plan,
                         started_at: str) -> bool:
        """Start the run (True) or check that the ledger's run is this one and note the resume
        (False). A fresh run's ``run_start`` is handed to the ledger deferred: its costly parts
        (the plan's hash over every attempt, installed versions, the git state: about 35 ms for
        2,000 attempts) are computed while the first requests are in flight, and it is written
        before any attempt record (see :meth:`_execute`). A resumed run checks the plan's hash
        before anything is sent."""
        start = ledger.run_start()
        if start is None:
            if not ledger.empty:
                raise LedgerError(f"{ledger.path}: the ledger has records but no run_start; it "
                                  "is not a casekit run ledger")
            fields: dict[str, Any] = {
                "run_id": self.run_dir.name,
                "case_path": str(self.case.path),
                "case_sha256": self.case.sha256,
                "case": case_hash_form(self.case.spec),
                "works": [work_manifest(self.case, w) for w in works],
                "models": self.identities(),
                "planned_attempts": len(plan),
                "host": host_info(),
                "argv": self.argv,
                "started_at": started_at,
                "rerun_of": self.rerun_of,
                "examiner_key": self.make_anchor().key.identity(),
            }

            def build(base: dict[str, Any]) -> RunStart:
                return RunStart(**base, **fields, plan_sha256=plan.sha256, versions=versions(),
                                git=git_state(Path(__file__).resolve().parent))

            ledger.submit(build, defer=True)
            return True
        if start.case_sha256 != self.case.sha256:
            raise CasekitError(f"{self.run_dir}: this run belongs to a different version of the "
                               "case file; give another --run-dir for the changed case")
        if start.plan_sha256 != plan.sha256:
            raise CasekitError(f"{self.run_dir}: the plan differs from the one recorded (another "
                               "casekit version?); give another --run-dir for a new run")
        for w in works:
            recorded = next((x for x in start.works if x.id == w.id), None)
            if recorded is None or recorded.sha256 != w.sha256:
                raise CasekitError(f"work {w.id!r} changed since the run started ({w.path}); "
                                   "restore the original text to resume")
        idents = {m.model_id: m for m in self.identities()}
        changed = [m.model_id for m in start.models
                   if idents.get(m.model_id) and idents[m.model_id].identity != m.identity]
        ledger.append_note("resume", "run resumed", {
            "versions": versions(), "argv": self.argv, "host": host_info(),
            "changed_model_identities": changed,
        })
        if changed:
            ledger.append_note("warning", f"model identity changed since the run started: "
                               f"{', '.join(changed)}", {"models": changed})
        return False

    def _retry_failed(self, ledger: Ledger) -> tuple[int, bool]:
        """``--retry-failed``: send again every attempt whose last record failed with a
        transient error (or a rate limit), recording each new record with ``retry_of`` naming
        the failure it supersedes; the failures stay on record. Returns (attempts retried,
        interrupted)."""
        from casekit.ledger import iter_records

        failed = ledger.failed_attempts(RETRYABLE)
        if not failed:
            log.info("--retry-failed: no attempt's last try failed with a transient error")
            return 0, False
        todo: list[tuple[PlannedAttempt, int]] = []
        for rec in iter_records(ledger.path):
            if isinstance(rec, AttemptRecord) and failed.get(rec.seq) == rec.attempt.id:
                todo.append((rec.attempt, rec.seq))
        log.info("--retry-failed: sending %d failed attempts again", len(todo))
        ledger.append_note("retry_failed", f"sending again {len(todo)} attempts whose last try "
                           "failed with a transient error", {
                               "attempts": len(todo), "argv": self.argv})
        self.stats.retried = len(todo)
        interrupted = asyncio.run(self._execute_retries(ledger, todo))
        return len(todo), interrupted

    async def _execute_retries(self, ledger: Ledger,
                               todo: list[tuple[PlannedAttempt, int]]) -> bool:
        loop = asyncio.get_running_loop()
        interrupted = False

        def on_sigint() -> None:
            nonlocal interrupted
            if self.stop_requested:
                raise KeyboardInterrupt
            interrupted = self.stop_requested = True
            log.warning("interrupt: finishing the retries in flight, then stopping")

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        by_model: dict[str, list[tuple[PlannedAttempt, int]]] = {}
        for a, seq in todo:
            by_model.setdefault(a.model_id, []).append((a, seq))
        progress = Progress(len(todo), self.stats)

        async def run_model(model_id: str, items: list[tuple[PlannedAttempt, int]]) -> None:
            provider = self.provider(model_id)
            spec = next(m for m in self.case.spec.models if m.id == model_id)
            limiter = Limiter(spec.limits.requests_per_minute, spec.limits.tokens_per_minute)
            max_tries = self.max_tries or spec.limits.max_tries
            queue = iter(items)

            async def worker() -> None:
                while not self.stop_requested:
                    item = next(queue, None)
                    if item is None:
                        return
                    attempt, seq = item
                    fields = await self._attempt(provider, attempt, limiter, max_tries)
                    fields["retry_of"] = seq
                    ledger.submit(functools.partial(_attempt_record, fields))
                    status = fields["status"]
                    setattr(self.stats, status, getattr(self.stats, status) + 1)
                    progress.update()

            n = max(1, min(provider.max_connections, len(items)))
            await asyncio.gather(*(worker() for _ in range(n)))

        try:
            await asyncio.gather(*(run_model(m, items) for m, items in by_model.items()))
        finally:
            progress.close()
            try:
                await ledger.settle()
            except LedgerError as exc:
                log.error("%s", exc)
            for provider in list(self._providers.values()):
                try:
                    await provider.aclose()
                except Exception as exc:  # closing must not hide the run's own outcome
                    log.warning("closing provider %s: %s", provider.name, exc)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
        return interrupted

    async def _execute(self, ledger: Ledger, plan: Plan, fresh: bool = False) -> bool:
        loop = asyncio.get_running_loop()
        interrupted = False
        write_start: asyncio.TimerHandle | None = None

        def on_sigint() -> None:
            nonlocal interrupted
            if self.stop_requested:
                log.error("second interrupt: stopping now")
                raise KeyboardInterrupt
            interrupted = True
            self.stop_requested = True
            log.warning("interrupt: finishing the attempts in flight, then stopping (Ctrl-C "
                        "again to stop at once)")

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            loop.add_signal_handler(signal.SIGTERM, on_sigint)
        except (NotImplementedError, RuntimeError):
            pass
        done = ledger.recorded_attempt_ids()
        # What each model has left: recorded ids are planned ids (see _run), so a model whose
        # count of recorded attempts reaches its planned count is done and is not planned again.
        recorded = ledger.recorded_by_model()
        left = {m: n - recorded[m] for m, n in plan.counts.items() if n > recorded[m]}
        by_model = list(left)
        # Models of one exclusive group (e.g. embedded models sharing the CPU) run one after
        # the other; different groups (remote APIs) run at the same time.
        groups: dict[str, list[str]] = {}
        for model_id in by_model:
            provider = self.provider(model_id)
            groups.setdefault(provider.exclusive_group or f"model:{model_id}", []).append(model_id)
        progress = Progress(len(plan) - len(done), self.stats)
        ticker = asyncio.ensure_future(progress.ticking())
        if fresh:
            # The deferred run_start is written once the first requests have left (after the
            # workers' ramp), while their responses are awaited; sooner if an attempt completes
            # first or a run record is appended (the ledger keeps the order either way).
            ramp = max((START_SPACING * self.provider(m).max_connections for m in by_model),
                       default=0.0)
            write_start = loop.call_later(ramp + 0.002, ledger.write_pending)

        async def run_model(model_id: str) -> None:
            provider = self.provider(model_id)
            # The model's attempts not yet recorded, planned as the workers take them (a live
            # view of the recorded ids: what this run records is never planned again).
            todo_model: Iterator[PlannedAttempt] = plan.model_attempts(model_id, skip=done)
            if provider.supports_batch and (self.batch or has_open_batches(ledger, model_id)):
                # Batch mode, or a resume of batches already submitted (never sent twice). The
                # batch executor takes its attempts as a list.
                rest = await self._run_batches(ledger, provider, list(todo_model), progress)
                if not rest or self.stop_requested:
                    return
                todo_model = iter(rest)
                left[model_id] = len(rest)
            elif self.batch:
                ledger.append_note("warning", f"model {model_id}: provider {provider.name} has "
                                   "no batch API; its attempts run synchronously",
                                   {"model_id": model_id, "provider": provider.name})
            spec = next(m for m in self.case.spec.models if m.id == model_id)
            limiter = Limiter(spec.limits.requests_per_minute, spec.limits.tokens_per_minute)
            max_tries = self.max_tries or spec.limits.max_tries
            if recorded[model_id] and plan.streamed:
                # Resuming a streamed plan: getting to the first attempt left plans past what
                # is recorded (about 10 us an attempt, seconds for a model of 100,000), so it is
                # done in a thread while the event loop keeps the other models' requests and
                # the progress going. The workers take the rest here, one at a time (no other
                # thread touches the iterator then).
                first = await asyncio.to_thread(next, todo_model, None)
                if first is None:
                    return
                todo_model = itertools.chain([first], todo_model)

            async def worker(i: int) -> None:
                if i:  # spread the first requests (see START_SPACING)
                    await asyncio.sleep(i * START_SPACING)
                while not self.stop_requested:
                    # Plans the next attempt (synchronously: no other worker can be inside).
                    attempt = next(todo_model, None)
                    if attempt is None:
                        return
                    fields = await self._attempt(provider, attempt, limiter, max_tries)
                    # Written (in order, with seq and prev_hash) right after this worker's next
                    # await, i.e. once its next request is on its way (see ledger.py).
                    ledger.submit(functools.partial(_attempt_record, fields))
                    if fields["status"] == "ok":
                        self.stats.ok += 1
                    elif fields["status"] == "refusal":
                        self.stats.refusal += 1
                    else:
                        self.stats.error += 1
                    progress.update()

            n = max(1, min(provider.max_connections, left[model_id]))
            await asyncio.gather(*(worker(i) for i in range(n)))

        async def run_group(model_ids: list[str]) -> None:
            for model_id in model_ids:
                if self.stop_requested:
                    return
                await run_model(model_id)

        try:
            await asyncio.gather(*(run_group(ids) for ids in groups.values()))
        finally:
            ticker.cancel()
            progress.close()
            if write_start is not None:
                write_start.cancel()
            try:
                await ledger.settle()  # every submitted record written and fsynced
            except LedgerError as exc:  # raised again by the run's next ledger write
                log.error("%s", exc)
            for provider in list(self._providers.values()):
                try:
                    await provider.aclose()
                except Exception as exc:  # closing must not hide the run's own outcome
                    log.warning("closing provider %s: %s", provider.name, exc)
            try:
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError):
                pass
        return interrupted

    async def _run_batches(self, ledger: Ledger, provider: Provider,
                           todo: list[PlannedAttempt], progress: Progress,
                           ) -> list[PlannedAttempt]:
        """Run (or resume) this model's batches; return the attempts left to run
        synchronously: score attempts (never batchable) and, without --batch, those in no
        batch. Attempts of a batch still open are never returned."""

        def on_record(record: AttemptRecord) -> None:
            setattr(self.stats, record.status, getattr(self.stats, record.status) + 1)
            progress.update()

        out = await BatchExecutor(
            ledger, provider, [a for a in todo if _batchable(a)],
            self.batch_poll_interval, self.batch_max_wait, submit=self.batch,
            on_record=on_record, should_stop=lambda: self.stop_requested,
        ).run()
        if out.pending:
            log.warning("model %s: batches %s still running; run the same case again to "
                        "collect them", provider.spec.id, ", ".join(out.pending))
        recorded = ledger.recorded_attempt_ids()
        return [a for a in todo if a.id not in recorded and a.id not in out.pending_ids
                and (not _batchable(a) or not self.batch)]

    async def _attempt(self, provider: Provider, attempt: PlannedAttempt,
                       limiter: Limiter | None = None, max_tries: int | None = None,
                       ) -> dict[str, Any]:
        """Run one attempt with its retries; return the fields of its AttemptRecord (all but
        the ledger's own ``seq``, ``recorded_at`` and ``prev_hash``)."""
        limiter = limiter or Limiter(None, None)
        max_tries = max_tries or self.max_tries or MAX_TRIES
        tries: list[TryRecord] = []
        started_at = iso_utc()
        result: ProviderResult | None = None
        error: AttemptError | None = None
        est = _estimate_tokens(attempt)
        for n in range(max_tries):
            await limiter.acquire(est)
            t0 = iso_utc()
            try:
                result = await (run_session(provider, attempt) if attempt.session is not None
                                else provider.run(attempt))
                tries.append(TryRecord(started_at=t0, completed_at=iso_utc()))
                limiter.settle(est, _used_tokens(result))
                error = None
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, then classified
                decision = provider.should_retry(exc)
                kind = {"no": "no_retry", "transient": "transient",
                        "rate_limit": "rate_limit"}[decision.action]
                error = AttemptError(kind=kind, type=type(exc).__name__, message=str(exc)[:2000])
                tries.append(TryRecord(started_at=t0, completed_at=iso_utc(), error=error,
                                       retry_after=decision.after))
                log.warning("attempt %s try %d failed (%s): %s", attempt.id, n + 1, kind,
                            error.message[:200])
                if decision.action == "no" or n + 1 >= max_tries or self.stop_requested:
                    break
                self.stats.retries += 1
                self.stats.retrying += 1
                delay = decision.after if decision.after is not None else min(
                    BACKOFF_CAP, BACKOFF_BASE * 2 ** n)
                try:
                    await asyncio.sleep(delay + random.uniform(0, max(delay, 0.05) * 0.25))
                finally:
                    self.stats.retrying -= 1
        status = "error" if result is None else ("refusal" if result.refusal else "ok")
        return {"attempt": attempt, "status": status, "result": result, "error": error,
                "started_at": started_at, "completed_at": iso_utc(), "tries": tries}


@contextlib.contextmanager
def collector_tuned() -> Iterator[None]:
    """The cyclic garbage collector tuned for a run, and restored after it: what exists when
    the run starts (imported modules, the case, the SDKs: some 70,000 objects) is frozen out of
    the collector's scans (``gc.freeze``), and the youngest generation is collected every
    20,000 net allocations instead of 700. A run allocates mostly acyclic records that reference
    counting frees; the full collections that kept rescanning the frozen heap and the growing
    ledger paused the event loop. Measured (benchmarks/runner_bench.py, 4 runs each): wall
    ratio 1.10-1.12 with the defaults, 1.09-1.10 tuned; planning 2,000 attempts 0.06-0.12 s
    with the defaults, 0.06 s without collections."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _attempt_record(fields: dict[str, Any], base: dict[str, Any]) -> AttemptRecord:
    return AttemptRecord(**base, **fields)


def _batchable(attempt: PlannedAttempt) -> bool:
    """Score attempts and multi-turn sessions (each turn depends on the last) run live."""
    return attempt.mode != "score" and attempt.session is None


def _estimate_tokens(attempt: PlannedAttempt) -> int:
    chars = sum(len(t) for t in attempt.supplied_texts()) + len(attempt.continuation or "")
    return chars // 4 + (0 if attempt.mode == "score" else attempt.decoding.max_tokens)


def _used_tokens(result: ProviderResult) -> int | None:
    u = result.usage or {}
    if isinstance(u.get("total_tokens"), int):
        return int(u["total_tokens"])
    parts = [u.get(k) for k in ("prompt_tokens", "completion_tokens", "input_tokens",
                                 "output_tokens")]
    nums = [int(x) for x in parts if isinstance(x, int)]
    return sum(nums) if nums else None


class Progress:
    """Live progress: on a terminal, one line redrawn (at most every ``REDRAW`` seconds, and by
    :meth:`tick` while nothing completes, so retries waiting out a backoff show); otherwise a
    plain log line at most every ``LOG_EVERY`` seconds when something changed (an attempt
    done, a retry), every ``HEARTBEAT`` seconds when nothing did, and at the end."""

    REDRAW = 0.2
    LOG_EVERY = 5.0
    HEARTBEAT = 60.0

    def __init__(self, total: int, stats: RunStats, stream: Any = None) -> None:
        self.total = total
        self.stats = stats
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) and \
            log.isEnabledFor(logging.INFO)
        self.last = 0.0
        self.started = time.monotonic()
        self._shown: tuple[int, int, int] | None = None

    @property
    def interval(self) -> float:
        """How often :meth:`tick` should be called."""
        return self.REDRAW * 2.5 if self.live else self.LOG_EVERY

    def line(self) -> str:
        s = self.stats
        elapsed = time.monotonic() - self.started
        rate = s.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - s.done) / rate if rate > 0 else None
        return (f"{s.done}/{self.total} done: ok {s.ok}, refused {s.refusal}, failed {s.error}, "
                f"retrying {s.retrying} ({s.retries} retries); {rate:.2f}/s; eta "
                + (f"{eta:.0f}s" if eta is not None else "?"))

    def update(self) -> None:
        """After an attempt completes."""
        self._show(self.REDRAW if self.live else self.LOG_EVERY)

    def tick(self) -> None:
        """Periodically, whether or not anything completed."""
        if (not self.live and self._shown == self._state()
                and time.monotonic() - self.last < self.HEARTBEAT):
            return  # a log file gets no line that says nothing new
        self._show(self.interval * 0.9)

    def _state(self) -> tuple[int, int, int]:
        return self.stats.done, self.stats.retrying, self.stats.retries

    def _show(self, min_gap: float) -> None:
        now = time.monotonic()
        finished = self.stats.done >= self.total
        if now - self.last < min_gap and not finished:
            return
        self.last = now
        self._shown = self._state()
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
        else:
            log.info("progress: %s", self.line())

    async def ticking(self) -> None:
        """Call :meth:`tick` until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.tick()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def planned_models(case: LoadedCase) -> dict[str, str]:
    return {m.id: interface_of(m) for m in case.spec.models}
