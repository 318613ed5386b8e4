"""Batch mode: run a model's attempts through the provider's batch API (OpenAI Batch API,
Anthropic Message Batches), at about half the price of synchronous calls, with the same
evidence as a synchronous run.

The ledger is the only state, so a run can stop at any moment and resume:

1. ``batch_submitting`` (before the submit request) and ``batch_submitted`` (right after it:
   provider, batch id, the custom_id of every attempt -- the attempt id --, the SHA-256 of
   the canonical request entries, the UTC submit time) notes are appended and fsynced before
   any polling. A resumed run never resubmits an attempt whose batch is in the ledger: it
   polls that batch. A ``batch_submitting`` without its ``batch_submitted`` (a crash during
   the submit request) is looked up at the provider by its request hash where the provider
   can (OpenAI: batch metadata) and adopted; otherwise a warning is recorded and the attempts
   are submitted again.
2. Polling appends a ``batch_status`` note only when the status changes.
3. Collection appends one ``attempt`` record per attempt of the batch, in plan order, shaped
   like the synchronous ones (``raw_request`` also carries ``batch_id`` and ``custom_id``); an
   attempt the batch did not answer (expired, canceled, missing) is recorded as an error,
   never dropped; then a ``batch_collected`` note.

A batch still running after ``max_wait`` seconds (or when the operator interrupts) is left
open (a ``batch_pending`` note says so): running the same case again resumes polling it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from casekit.canonical import canonical_json
from casekit.errors import CasekitError
from casekit.ledger import Ledger
from casekit.provenance import iso_utc
from casekit.providers.api_common import requests_sha256
from casekit.providers.base import BatchStatus, CapabilityError, Provider
from casekit.providers.keys import redact, redact_error_text
from casekit.records import (
    AttemptError,
    AttemptRecord,
    Note,
    PlannedAttempt,
    ProviderResult,
    TryRecord,
)

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 60.0
"""Seconds between polls of an open batch."""
MAX_POLL_INTERVAL = 600.0
"""Polls are never further apart than this."""
DEFAULT_MAX_WAIT = 26 * 3600.0
"""Seconds to wait for open batches before leaving them for a later resume (both APIs end a
batch within 24 hours)."""
COLLECT_TRIES = 3

BatchResults = dict[str, ProviderResult | AttemptError]
"""A batch's results by custom_id."""


def has_open_batches(ledger: Ledger, model_id: str) -> bool:
    """Whether the ledger holds a batch of this model (submitted, or possibly submitted) with
    an attempt not yet recorded: such a run must be resumed through :class:`BatchExecutor`
    (``submit=False`` without --batch), never by sending those attempts again."""
    recorded = ledger.recorded_attempt_ids()
    return any(
        isinstance(r, Note) and r.kind in ("batch_submitted", "batch_submitting")
        and r.data.get("model_id") == model_id
        and any(c not in recorded for c in r.data.get("custom_ids", []))
        for r in ledger.run_records)


@dataclass
class OpenBatch:
    """A batch in the ledger whose attempts are not all recorded yet."""

    batch_id: str
    custom_ids: list[str]
    request_sha256: str
    submitted_at: str
    last_status: str | None


@dataclass
class BatchOutcome:
    submitted: list[str] = field(default_factory=list)
    """Batch ids submitted by this call."""
    resumed: list[str] = field(default_factory=list)
    """Batch ids found open in the ledger and polled instead of resubmitted."""
    collected: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Batch ids still open when this call returned (max_wait reached, or stopped)."""
    pending_ids: set[str] = field(default_factory=set)
    """Attempt ids in those batches: never send them again while the batch is open."""
    recorded: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "refusal": 0, "error": 0})

    @property
    def complete(self) -> bool:
        return not self.pending


class BatchError(CasekitError):
    """A batch could not be submitted, polled or collected; the message names the fix."""


class BatchExecutor:
    """Runs the given attempts of one model through its provider's batch API (see the module
    doc). ``attempts`` should be every planned attempt of the model in plan order (recorded
    ones are skipped); score attempts cannot be batched."""

    def __init__(self, ledger: Ledger, provider: Provider, attempts: Sequence[PlannedAttempt],
                 poll_interval: float = DEFAULT_POLL_INTERVAL,
                 max_wait: float | None = DEFAULT_MAX_WAIT, *,
                 max_requests: int | None = None, submit: bool = True,
                 on_record: Callable[[AttemptRecord], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if not provider.supports_batch:
            raise CapabilityError(f"model {provider.spec.id!r}: provider {provider.name!r} has "
                                  "no batch API; run it without --batch")
        scores = [a.id for a in attempts if a.mode == "score"]
        if scores:
            raise CapabilityError(f"model {provider.spec.id!r}: score attempts cannot be batched "
                                  f"({len(scores)}, e.g. {scores[0]}); run them synchronously")
        self.ledger = ledger
        self.provider = provider
        self.model_id = provider.spec.id
        self.attempts = list(attempts)
        self.by_id = {a.id: a for a in self.attempts}
        self.poll_interval = min(max(0.0, float(poll_interval)), MAX_POLL_INTERVAL)
        self.max_wait = max_wait
        limit = provider.batch_max_requests or 1
        self.max_requests = max(1, min(max_requests or limit, limit))
        self.max_bytes = provider.batch_max_bytes or 0
        self.submit = submit
        """False: only poll and collect the batches already in the ledger (a run resumed
        without --batch); the other attempts are left to the caller."""
        self.on_record = on_record
        self.should_stop = should_stop or (lambda: False)
        self.sleep = sleep
        key = getattr(provider, "key", None)
        self.secrets: list[str] = list(key.secrets()) if key is not None else []

    # ----------------------------------------------------------------- public

    async def run(self) -> BatchOutcome:
        out = BatchOutcome()
        recorded = self.ledger.recorded_attempt_ids()
        pending = [a for a in self.attempts if a.id not in recorded]
        if not pending:
            return out
        open_batches = await self._open_batches({a.id for a in pending}, out)
        covered = {cid for b in open_batches for cid in b.custom_ids}
        todo = [a for a in pending if a.id not in covered] if self.submit else []
        for chunk in self._chunks(todo):
            if self.should_stop():
                break
            open_batches.append(await self._submit(chunk))
            out.submitted.append(open_batches[-1].batch_id)
        await self._wait_and_collect(open_batches, out)
        return out

    # ----------------------------------------------------------------- the ledger

    def _notes(self, kind: str) -> Iterator[Note]:
        for r in self.ledger.run_records:
            if isinstance(r, Note) and r.kind == kind and r.data.get("model_id") == self.model_id:
                yield r

    async def _open_batches(self, pending: set[str], out: BatchOutcome) -> list[OpenBatch]:
        """Batches in the ledger that still owe attempts (resume: poll, never resubmit)."""
        statuses: dict[str, str] = {}
        for n in self._notes("batch_status"):
            statuses[str(n.data.get("batch_id"))] = str(n.data.get("status"))
        batches: list[OpenBatch] = []
        # How many submissions of each request hash have a known outcome: submitted, rejected
        # by the server, or warned about as unconfirmed. Each resolves one batch_submitting.
        resolved: Counter[str] = Counter(
            str(n.data.get("request_sha256")) for kind in ("warning", "batch_submit_failed")
            for n in self._notes(kind)
            if n.data.get("unconfirmed_batch") or n.data.get("rejected"))
        for n in self._notes("batch_submitted"):
            resolved[str(n.data.get("request_sha256"))] += 1
            ids = [str(x) for x in n.data.get("custom_ids", [])]
            if not pending.intersection(ids):
                continue
            bid = str(n.data["batch_id"])
            if any(b.batch_id == bid for b in batches):
                continue
            batches.append(OpenBatch(bid, ids, str(n.data.get("request_sha256")),
                                     str(n.data.get("submitted_at") or n.recorded_at),
                                     statuses.get(bid, n.data.get("status"))))
            out.resumed.append(bid)
        # A submission interrupted between its request and its batch_submitted note.
        for n in self._notes("batch_submitting"):
            sha = str(n.data.get("request_sha256"))
            ids = [str(x) for x in n.data.get("custom_ids", [])]
            if resolved[sha] > 0:
                resolved[sha] -= 1
                continue
            if not pending.intersection(ids):
                continue
            submitted_at = str(n.data.get("started_at") or n.recorded_at)
            try:
                found = await self.provider.find_batch(sha, submitted_at)
            except Exception as exc:
                raise BatchError(
                    f"model {self.model_id}: a batch submission started at {submitted_at} was "
                    "interrupted before its id was recorded, and looking it up at the provider "
                    f"failed ({self._clean(exc)}); run the case again when the provider is "
                    "reachable (sending the attempts again now could run them twice)") from exc
            if found is None:
                self.ledger.append_note(
                    "warning",
                    f"model {self.model_id}: a batch submission started at {submitted_at} was "
                    "interrupted before its id was recorded; the provider may have accepted it "
                    f"(check its console for a batch of {len(ids)} requests created then); "
                    "its attempts are sent again",
                    {"model_id": self.model_id, "provider": self.provider.name,
                     "request_sha256": sha, "custom_ids": ids, "unconfirmed_batch": True})
                continue
            self._note_submitted(found, ids, sha, submitted_at, status=None, info={},
                                 raw={}, adopted=True)
            batches.append(OpenBatch(found, ids, sha, submitted_at, None))
            out.resumed.append(found)
        return batches

    def _note_submitted(self, batch_id: str, custom_ids: list[str], sha: str,
                        submitted_at: str, *, status: str | None, info: dict[str, Any],
                        raw: dict[str, Any], adopted: bool = False) -> None:
        data: dict[str, Any] = {
            "model_id": self.model_id, "provider": self.provider.name, "batch_id": batch_id,
            "custom_ids": custom_ids, "requests": len(custom_ids), "request_sha256": sha,
            "submitted_at": submitted_at, "status": status, "info": info, "raw": raw,
        }
        message = f"model {self.model_id}: batch {batch_id} submitted ({len(custom_ids)} requests)"
        if adopted:
            data["adopted"] = True
            message = (f"model {self.model_id}: batch {batch_id} found at the provider by its "
                       "request hash after an interrupted submission, adopted")
        self.ledger.append_note("batch_submitted", message, redact(data, self.secrets))

    # ----------------------------------------------------------------- submit

    def _chunks(self, attempts: list[PlannedAttempt]) -> Iterator[list[PlannedAttempt]]:
        """Consecutive chunks within the provider's request-count and size limits."""
        chunk: list[PlannedAttempt] = []
        size = 0
        for a in attempts:
            n = len(canonical_json(self.provider.batch_requests([a])[0])) + 1
            if chunk and (len(chunk) >= self.max_requests
                          or (self.max_bytes and size + n > self.max_bytes)):
                yield chunk
                chunk, size = [], 0
            chunk.append(a)
            size += n
        if chunk:
            yield chunk

    async def _submit(self, chunk: list[PlannedAttempt]) -> OpenBatch:
        ids = [a.id for a in chunk]
        sha = requests_sha256(self.provider.batch_requests(chunk))
        started = iso_utc()
        self.ledger.append_note(
            "batch_submitting",
            f"model {self.model_id}: submitting a batch of {len(ids)} requests",
            {"model_id": self.model_id, "provider": self.provider.name, "custom_ids": ids,
             "request_sha256": sha, "started_at": started})
        try:
            handle = await self.provider.submit_batch(chunk)
        except Exception as exc:
            message = self._clean(exc)
            self.ledger.append_note(
                "batch_submit_failed",
                f"model {self.model_id}: batch submission failed: {message}",
                {"model_id": self.model_id, "provider": self.provider.name,
                 "request_sha256": sha, "error_type": type(exc).__name__, "error": message,
                 # the server answered with an error status: no batch was created
                 "rejected": isinstance(exc, CasekitError)
                 or isinstance(getattr(exc, "status_code", None), int)})
            raise BatchError(f"model {self.model_id}: submitting a batch of {len(ids)} requests "
                             f"failed ({type(exc).__name__}: {message}); fix the cause and run "
                             "the case again (nothing was lost), or run without --batch") from exc
        if handle.custom_ids != ids or handle.request_sha256 != sha:
            raise BatchError(f"internal: batch {handle.batch_id} does not hold the requests "
                             "built for it")
        self._note_submitted(handle.batch_id, ids, sha, started, status=handle.status,
                             info=handle.info, raw=handle.raw)
        log.info("model %s: batch %s submitted (%d requests)", self.model_id, handle.batch_id,
                 len(ids))
        return OpenBatch(handle.batch_id, ids, sha, started, handle.status)

    # ----------------------------------------------------------------- poll and collect

    async def _wait_and_collect(self, batches: list[OpenBatch], out: BatchOutcome) -> None:
        deadline = None if self.max_wait is None else time.monotonic() + self.max_wait
        waiting = list(batches)
        while waiting:
            for b in list(waiting):
                status = await self._poll(b)
                if status is None:
                    continue
                if status.status != b.last_status:
                    self.ledger.append_note(
                        "batch_status", f"batch {b.batch_id}: {status.status}",
                        redact({"model_id": self.model_id, "provider": self.provider.name,
                                "batch_id": b.batch_id, "status": status.status,
                                "previous": b.last_status, "done": status.done,
                                "counts": status.counts, "raw": status.raw}, self.secrets))
                    b.last_status = status.status
                if status.done:
                    await self._collect(b, status, out)
                    waiting.remove(b)
            if not waiting:
                break
            stopped = self.should_stop()
            remaining = None if deadline is None else deadline - time.monotonic()
            if stopped or (remaining is not None and remaining <= 0):
                why = "the run was stopped" if stopped else f"max_wait ({self.max_wait:g} s) passed"
                for b in waiting:
                    self.ledger.append_note(
                        "batch_pending",
                        f"batch {b.batch_id} still {b.last_status} when {why}; run the same "
                        "case again to collect it (it is not resubmitted)",
                        {"model_id": self.model_id, "provider": self.provider.name,
                         "batch_id": b.batch_id, "status": b.last_status})
                    out.pending.append(b.batch_id)
                    out.pending_ids.update(b.custom_ids)
                return
            delay = self.poll_interval if remaining is None else min(self.poll_interval,
                                                                      remaining)
            await self.sleep(max(0.0, delay))

    async def _poll(self, b: OpenBatch) -> BatchStatus | None:
        try:
            return await self.provider.poll_batch(b.batch_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            decision = self.provider.should_retry(exc)
            message = self._clean(exc)
            if decision.action == "no":
                raise BatchError(
                    f"model {self.model_id}: polling batch {b.batch_id} failed ({message}); fix "
                    "the cause (key, organization, network) and run the case again: the batch "
                    "id is in the ledger and is not resubmitted") from exc
            log.warning("model %s: polling batch %s failed (%s), polling again later",
                        self.model_id, b.batch_id, message[:200])
            return None

    async def _collect(self, b: OpenBatch, status: BatchStatus, out: BatchOutcome) -> None:
        attempts = [self.by_id[c] for c in b.custom_ids if c in self.by_id]
        unknown = [c for c in b.custom_ids if c not in self.by_id]
        if not unknown and requests_sha256(self.provider.batch_requests(attempts)) \
                != b.request_sha256:
            self.ledger.append_note(
                "warning",
                f"batch {b.batch_id}: the request bodies rebuilt now do not hash to those "
                "submitted (casekit or the case changed since submission); raw_request.body "
                "shows the rebuilt body, request_sha256 in the batch_submitted note the sent one",
                {"model_id": self.model_id, "batch_id": b.batch_id,
                 "submitted_sha256": b.request_sha256})
        results: BatchResults | None = None
        for n in range(COLLECT_TRIES):
            try:
                results = await self.provider.collect_batch(b.batch_id, attempts)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                message = self._clean(exc)
                if self.provider.should_retry(exc).action == "no" or n + 1 >= COLLECT_TRIES:
                    raise BatchError(
                        f"model {self.model_id}: collecting batch {b.batch_id} failed "
                        f"({message}); run the case again to retry (the batch is not "
                        "resubmitted)") from exc
                log.warning("model %s: collecting batch %s failed (%s); trying again",
                            self.model_id, b.batch_id, message[:200])
                await self.sleep(min(30.0, 2.0 ** n))
        assert results is not None
        collected_at = iso_utc()
        recorded = self.ledger.recorded_attempt_ids()  # live: grows with each append
        counts = {"ok": 0, "refusal": 0, "error": 0}
        missing: list[str] = []
        skipped = 0
        wanted = set(b.custom_ids)
        for a in self.attempts:  # plan order
            if a.id not in wanted:
                continue
            if a.id in recorded:
                skipped += 1
                continue
            got = results.get(a.id)
            result: ProviderResult | None = None
            error: AttemptError | None = None
            if isinstance(got, ProviderResult):
                extra = {k: v for k, v in (("batch_id", b.batch_id), ("custom_id", a.id))
                         if got.raw_request.get(k) != v}
                result = got.model_copy(update={"raw_request": {**got.raw_request, **extra}}) \
                    if extra else got
            elif isinstance(got, AttemptError):
                error = got
            else:
                missing.append(a.id)
                error = AttemptError(
                    kind="unknown", type="MissingBatchResult",
                    message=(f"batch {b.batch_id} ({self.provider.name}) ended with status "
                             f"{status.status!r} without a result for custom_id {a.id}: the "
                             "request was never answered; recorded as failed"))
            state = "error" if result is None else ("refusal" if result.refusal else "ok")
            record = AttemptRecord(
                **self.ledger.base_fields(), attempt=a, status=state, result=result,
                error=error, started_at=b.submitted_at, completed_at=collected_at,
                tries=[TryRecord(started_at=b.submitted_at, completed_at=collected_at,
                                 error=error)],
            )
            stored = self.ledger.append(record)
            assert isinstance(stored, AttemptRecord)
            counts[state] += 1
            out.counts[state] += 1
            out.recorded += 1
            if self.on_record is not None:
                self.on_record(stored)
        unexpected = sorted(set(results) - wanted)
        self.ledger.append_note(
            "batch_collected",
            f"batch {b.batch_id}: {sum(counts.values())} attempts recorded (ok {counts['ok']}, "
            f"refused {counts['refusal']}, failed {counts['error']}"
            + (f", {len(missing)} without a result" if missing else "") + ")",
            {"model_id": self.model_id, "provider": self.provider.name, "batch_id": b.batch_id,
             "status": status.status, "counts": counts, "missing": missing,
             "already_recorded": skipped, "unknown_custom_ids": unknown,
             "unexpected_custom_ids": unexpected, "collected_at": collected_at})
        out.collected.append(b.batch_id)

    def _clean(self, exc: BaseException) -> str:
        return redact_error_text(str(exc), self.secrets)[:2000]
