"""Batch mode (casekit.run.batch) against emulated OpenAI Batch API and Anthropic Message Batches.

The SDKs send through ``httpx2``; as in test_api_providers, each provider gets an
``httpx2.AsyncClient`` whose transport answers from a respx router, here a small stateful
emulation of each batch API (upload, create, poll, results), so the SDK code paths are the
production ones and only the network is faked.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from casekit.analysis.analyze import analyze_run
from casekit.case import ModelSpec, load_case
from casekit.ledger import LEDGER_NAME, Ledger, read_records, verify_chain
from casekit.plan import build_plan
from casekit.providers.anthropic import AnthropicProvider
from casekit.providers.base import CapabilityError, Provider
from casekit.providers.openai import OpenAIProvider
from casekit.providers.openai_compatible import OpenAICompatibleProvider
from casekit.records import (
    AttemptRecord,
    Checkpoint,
    Decoding,
    Message,
    Note,
    PlannedAttempt,
    RunEnd,
)
from casekit.run.batch import BatchError, BatchExecutor, BatchOutcome, requests_sha256
from casekit.run.runner import Runner
from casekit.works import load_works
from tests.conftest import CONTROL, SCRIPTED_MODELS, STRATEGIES, SUBJECT, case_yaml
from tests.test_api_providers import (
    ANTHROPIC,
    DATE,
    FAKE_KEY,
    OPENAI,
    SERVER,
    anthropic_json,
    chat_json,
    client_for,
)

# --------------------------------------------------------------------------- plumbing


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs (not an Exception, so nothing catches it)."""


def planned(n: int, model_id: str = "m1", **kw: Any) -> list[PlannedAttempt]:
    out = []
    for i in range(n):
        messages = [Message(role="system", content="You are terse."),
                    Message(role="user", content=f"Continue the passage number {i}:"),
                    Message(role="assistant", content="It was ")]
        out.append(PlannedAttempt(
            id=f"a-{i:020x}", ordinal=i, model_id=model_id, strategy="t", strategy_key="t#0",
            work_id="w", intent="adversarial", index=i, mode="chat", messages=messages,
            decoding=Decoding(temperature=0.0, max_tokens=40, seed=7, stop=["\n\n"]), **kw))
    return out


def records(run_dir: Path) -> list[Any]:
    return read_records(run_dir / LEDGER_NAME)


def notes(run_dir: Path, kind: str) -> list[Note]:
    return [r for r in records(run_dir) if isinstance(r, Note) and r.kind == kind]


def attempt_records(run_dir: Path) -> list[AttemptRecord]:
    return [r for r in records(run_dir) if isinstance(r, AttemptRecord)]


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def execute(run_dir: Path, provider: Provider, attempts: list[PlannedAttempt],
            **kw: Any) -> BatchOutcome:
    kw.setdefault("poll_interval", 0)
    kw.setdefault("sleep", no_sleep)
    ledger = Ledger(run_dir).open()
    try:
        return asyncio.run(BatchExecutor(ledger, provider, attempts, **kw).run())
    finally:
        ledger.close()


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    return FAKE_KEY


def multipart_file(request: httpx.Request) -> bytes:
    """The file part of a multipart/form-data upload."""
    ctype = request.headers["content-type"]
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    for part in request.content.split(b"--" + boundary):
        if b"filename=" in part:
            return part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
    raise AssertionError("no file in the upload")


def assert_sound(run_dir: Path) -> None:
    """The chain verifies and the key is nowhere in the ledger's bytes."""
    assert verify_chain(run_dir / LEDGER_NAME).ok
    blob = (run_dir / LEDGER_NAME).read_bytes()
    assert FAKE_KEY.encode() not in blob and FAKE_KEY[-12:].encode() not in blob


def key_echo() -> str:
    return f"Incorrect API key provided: {FAKE_KEY}."


# --------------------------------------------------------------------------- OpenAI emulation


class FakeOpenAIBatches:
    """The Batch API: POST /files, POST /batches, GET /batches/{id}, GET /batches,
    GET /files/{id}/content. ``outcomes`` maps a custom_id's position in the batch to
    ok / refusal / filtered / error / expired / missing; ``statuses`` are returned by
    successive polls (the last one repeats)."""

    def __init__(self, outcomes: dict[int, str] | None = None,
                 statuses: list[str] | None = None) -> None:
        self.router = respx.Router(base_url=OPENAI)
        self.outcomes = outcomes or {}
        self.statuses = statuses or ["in_progress", "finalizing", "completed"]
        self.uploads: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.files: dict[str, bytes] = {}
        self.on_poll: Callable[[str], None] | None = None
        self.poll_errors: list[httpx.Response] = []
        r = self.router
        self.upload = r.post("/files").mock(side_effect=self._upload)
        self.create = r.post("/batches").mock(side_effect=self._create)
        self.listing = r.get("/batches").mock(side_effect=self._list)
        self.retrieve = r.get(path__regex=r"/batches/(?P<bid>batch_[^/]+)$").mock(
            side_effect=self._retrieve)
        self.content = r.get(path__regex=r"/files/(?P<fid>[^/]+)/content$").mock(
            side_effect=self._content)

    def _upload(self, request: httpx.Request) -> httpx.Response:
        fid = f"file-in{len(self.uploads)}"
        self.uploads[fid] = multipart_file(request)
        return httpx.Response(200, headers={"date": DATE, "x-request-id": "req_up"}, json={
            "id": fid, "object": "file", "bytes": len(self.uploads[fid]), "created_at": 1,
            "filename": "x.jsonl", "purpose": "batch", "status": "processed"})

    def _batch(self, bid: str, status: str) -> dict[str, Any]:
        b = self.batches[bid]
        n = len(b["lines"])
        done = status == "completed"
        return {"id": bid, "object": "batch", "endpoint": b["endpoint"], "errors": b["errors"],
                "input_file_id": b["input_file_id"], "completion_window": "24h",
                "status": status, "created_at": b["created_at"], "metadata": b["metadata"],
                "output_file_id": b.get("output_file_id") if done else None,
                "error_file_id": b.get("error_file_id") if done else None,
                "request_counts": {"total": n, "completed": n if done else 0, "failed": 0}}

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bid = f"batch_{len(self.batches):04d}"
        lines = [json.loads(x) for x in self.uploads[body["input_file_id"]].splitlines()]
        self.batches[bid] = {"endpoint": body["endpoint"], "lines": lines, "errors": None,
                             "input_file_id": body["input_file_id"],
                             "metadata": body.get("metadata"), "created_at": int(time.time())}
        self._results(bid)
        self.polls[bid] = 0
        return httpx.Response(200, headers={"date": DATE, "x-request-id": "req_create"},
                              json=self._batch(bid, "validating"))

    def _results(self, bid: str) -> None:
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        for i, line in enumerate(self.batches[bid]["lines"]):
            cid = line["custom_id"]
            what = self.outcomes.get(i, "ok")
            rid = f"req_b{i}"
            if what in ("ok", "refusal", "filtered"):
                data = chat_json(content=f"Output {cid}.")
                if what == "refusal":
                    data = chat_json(content=None, refusal="I can't help with that.")
                if what == "filtered":
                    data = chat_json(content=None, finish="content_filter")
                if self.batches[bid]["endpoint"] == "/v1/completions":
                    data = {"id": "cmpl-1", "object": "text_completion", "created": 1,
                            "model": "gpt-3.5-turbo-instruct-0914",
                            "choices": [{"index": 0, "text": f" {cid} went on.",
                                         "finish_reason": "length", "logprobs": None}],
                            "usage": {"prompt_tokens": 4, "completion_tokens": 5,
                                      "total_tokens": 9}}
                out.append({"id": f"batch_req_{i}", "custom_id": cid, "error": None,
                            "response": {"status_code": 200, "request_id": rid, "body": data}})
            elif what == "error":
                err.append({"id": f"batch_req_{i}", "custom_id": cid, "error": None,
                            "response": {"status_code": 400, "request_id": rid, "body": {
                                "error": {"message": key_echo(),
                                          "type": "invalid_request_error"}}}})
            elif what == "expired":
                err.append({"id": f"batch_req_{i}", "custom_id": cid, "response": None,
                            "error": {"code": "batch_expired", "message": "This request could "
                                      "not be executed before the completion window expired."}})
        out.reverse()  # results come in any order: matched on custom_id
        if out:
            self.files[f"file-out-{bid}"] = b"".join(json.dumps(x).encode() + b"\n" for x in out)
            self.batches[bid]["output_file_id"] = f"file-out-{bid}"
        if err:
            self.files[f"file-err-{bid}"] = b"".join(json.dumps(x).encode() + b"\n" for x in err)
            self.batches[bid]["error_file_id"] = f"file-err-{bid}"

    def _retrieve(self, request: httpx.Request, bid: str) -> httpx.Response:
        if self.poll_errors:
            return self.poll_errors.pop(0)
        if self.on_poll is not None:
            self.on_poll(bid)
        n = self.polls[bid]
        self.polls[bid] = n + 1
        status = self.statuses[min(n, len(self.statuses) - 1)]
        return httpx.Response(200, headers={"date": DATE, "x-request-id": f"req_poll{n}"},
                              json=self._batch(bid, status))

    def _list(self, request: httpx.Request) -> httpx.Response:
        data = [self._batch(bid, "in_progress") for bid in reversed(self.batches)]
        return httpx.Response(200, json={"object": "list", "data": data, "has_more": False,
                                         "first_id": None, "last_id": None})

    def _content(self, request: httpx.Request, fid: str) -> httpx.Response:
        return httpx.Response(200, content=self.files[fid],
                              headers={"date": DATE, "content-type": "application/octet-stream",
                                       "x-request-id": "req_dl"})


def openai_provider(fake: FakeOpenAIBatches, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider(ModelSpec(id="m1", provider="openai", model="gpt-4o-2024-08-06", **kw),
                          Path("."), http_client=client_for(fake.router))


# --------------------------------------------------------------------------- Anthropic emulation


class FakeAnthropicBatches:
    """Message Batches: POST /v1/messages/batches, GET /v1/messages/batches/{id}, GET
    /v1/messages/batches/{id}/results (JSONL, out of order). ``outcomes`` by position:
    ok / refusal / errored / expired / canceled / missing."""

    def __init__(self, outcomes: dict[int, str] | None = None,
                 statuses: list[str] | None = None) -> None:
        self.router = respx.Router(base_url=ANTHROPIC)
        self.outcomes = outcomes or {}
        self.statuses = statuses or ["in_progress", "in_progress", "ended"]
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self.polls: dict[str, int] = {}
        self.on_poll: Callable[[str], None] | None = None
        r = self.router
        self.create = r.post("/v1/messages/batches").mock(side_effect=self._create)
        self.results = r.get(path__regex=r"/v1/messages/batches/(?P<bid>[^/]+)/results$").mock(
            side_effect=self._results)
        self.retrieve = r.get(path__regex=r"/v1/messages/batches/(?P<bid>[^/]+)$").mock(
            side_effect=self._retrieve)

    def _batch(self, bid: str, status: str) -> dict[str, Any]:
        n = len(self.batches[bid])
        ended = status == "ended"
        return {"id": bid, "type": "message_batch", "processing_status": status,
                "request_counts": {"processing": 0 if ended else n, "succeeded": n if ended else 0,
                                   "errored": 0, "canceled": 0, "expired": 0},
                "created_at": "2025-06-03T12:00:00Z", "expires_at": "2025-06-04T12:00:00Z",
                "ended_at": "2025-06-03T13:00:00Z" if ended else None,
                "cancel_initiated_at": None, "archived_at": None,
                "results_url": f"{ANTHROPIC}/v1/messages/batches/{bid}/results" if ended
                else None}

    def _create(self, request: httpx.Request) -> httpx.Response:
        bid = f"msgbatch_{len(self.batches):04d}"
        self.batches[bid] = json.loads(request.content)["requests"]
        self.polls[bid] = 0
        return httpx.Response(200, headers={"date": DATE, "request-id": "req_create"},
                              json=self._batch(bid, "in_progress"))

    def _retrieve(self, request: httpx.Request, bid: str) -> httpx.Response:
        if self.on_poll is not None:
            self.on_poll(bid)
        n = self.polls[bid]
        self.polls[bid] = n + 1
        status = self.statuses[min(n, len(self.statuses) - 1)]
        return httpx.Response(200, headers={"date": DATE, "request-id": f"req_poll{n}"},
                              json=self._batch(bid, status))

    def _results(self, request: httpx.Request, bid: str) -> httpx.Response:
        lines = []
        for i, req in enumerate(self.batches[bid]):
            cid = req["custom_id"]
            what = self.outcomes.get(i, "ok")
            if what == "ok":
                result: dict[str, Any] = {"type": "succeeded",
                                          "message": anthropic_json(f"Output {cid}.")}
            elif what == "refusal":
                result = {"type": "succeeded", "message": anthropic_json("", stop="refusal")}
            elif what == "errored":
                result = {"type": "errored", "error": {
                    "type": "error", "request_id": f"req_err{i}",
                    "error": {"type": "invalid_request_error", "message": key_echo()}}}
            elif what in ("expired", "canceled"):
                result = {"type": what}
            else:
                continue
            lines.append({"custom_id": cid, "result": result})
        order = lines[1::2] + lines[0::2]  # out of order
        return httpx.Response(200, headers={"date": DATE, "content-type": "application/binary"},
                              content=b"".join(json.dumps(x).encode() + b"\n" for x in order))


def anthropic_provider(fake: FakeAnthropicBatches) -> AnthropicProvider:
    return AnthropicProvider(ModelSpec(id="m1", provider="anthropic",
                                       model="claude-3-5-sonnet-20241022"),
                             Path("."), http_client=client_for(fake.router))


# --------------------------------------------------------------------------- OpenAI


def crash_before_the_batch_id_is_recorded(tmp_path: Path, provider: Any,
                                          attempts: list[PlannedAttempt]) -> None:
    """Run a batch that the provider accepts but whose id never reaches the ledger: the
    process dies (Crash) as the batch_submitted note is about to be written."""
    ledger = Ledger(tmp_path).open()
    real = ledger.append_note

    def append_note(kind: str, *args: Any, **kw: Any) -> Any:
        if kind == "batch_submitted":
            raise Crash  # the provider accepted the batch; its id never reached the ledger
        return real(kind, *args, **kw)

    ledger.append_note = append_note  # type: ignore[method-assign]
    with pytest.raises(Crash):
        asyncio.run(BatchExecutor(ledger, provider, attempts, poll_interval=0,
                                  sleep=no_sleep).run())
    ledger.close()


def test_openai_batch_submit_poll_collect(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches({1: "refusal", 2: "error", 3: "expired", 4: "missing",
                              5: "filtered"})
    attempts = planned(6)
    seen_before_results: list[list[Any]] = []
    fake.on_poll = lambda bid: seen_before_results.append(records(tmp_path))
    p = openai_provider(fake)
    out = execute(tmp_path, p, attempts)
    assert out.complete and out.submitted == ["batch_0000"] and out.recorded == 6
    assert out.counts == {"ok": 1, "refusal": 2, "error": 3}

    # the batch id is on disk (fsynced) before the first poll, and no result is
    first = seen_before_results[0]
    assert [r.kind for r in first if isinstance(r, Note)] == ["batch_submitting",
                                                             "batch_submitted"]
    assert first[-1].data["batch_id"] == "batch_0000"
    assert not any(isinstance(r, AttemptRecord) for r in first)
    sub = notes(tmp_path, "batch_submitted")[0].data
    assert sub["custom_ids"] == [a.id for a in attempts] and sub["provider"] == "openai"
    assert sub["model_id"] == "m1" and sub["submitted_at"]
    assert sub["request_sha256"] == requests_sha256(p.batch_requests(attempts))
    assert sub["info"]["input_file_sha256"].startswith("sha256:")

    # the uploaded file: one canonical line per attempt, with the body generate would send
    lines = [json.loads(x) for x in fake.uploads["file-in0"].splitlines()]
    assert [x["custom_id"] for x in lines] == [a.id for a in attempts]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}
    assert fake.batches["batch_0000"]["metadata"]["casekit_request_sha256"] == \
        sub["request_sha256"]
    sync = respx.Router(base_url=OPENAI)
    route = sync.post("/chat/completions").respond(200, json=chat_json(), headers={"date": DATE})
    res = asyncio.run(OpenAIProvider(p.spec, Path("."), http_client=client_for(sync))
                      .generate(attempts[0]))
    assert lines[0]["body"] == json.loads(route.calls[0].request.content) == \
        res.raw_request["body"]

    # status notes only on changes: validating -> in_progress -> finalizing -> completed
    assert [n.data["status"] for n in notes(tmp_path, "batch_status")] == [
        "in_progress", "finalizing", "completed"]

    recs = attempt_records(tmp_path)
    assert [r.attempt.id for r in recs] == [a.id for a in attempts]  # plan order
    ok, refused, err, expired, missing, filtered = recs
    assert ok.status == "ok" and ok.result is not None
    assert ok.result.text == f"Output {attempts[0].id}."
    assert ok.result.returned_model == "gpt-4o-2024-08-06"
    assert ok.result.system_fingerprint == "fp_7c6e1a" and ok.result.request_id == "req_b0"
    assert ok.result.usage["total_tokens"] == 15 and ok.result.server_date == DATE
    assert ok.result.raw_request["batch_id"] == "batch_0000"
    assert ok.result.raw_request["custom_id"] == attempts[0].id
    assert ok.result.raw_request["body"] == res.raw_request["body"]
    assert ok.result.raw_request["notes"] == res.raw_request["notes"]  # same code path
    assert ok.result.raw_response["body"]["choices"][0]["message"]["content"]
    assert ok.result.raw_response["file_sha256"].startswith("sha256:")
    assert len(ok.tries) == 1 and ok.tries[0].started_at == sub["submitted_at"] == ok.started_at
    assert refused.status == "refusal" and refused.result is not None
    assert refused.result.refusal
    assert filtered.status == "refusal" and filtered.result is not None
    assert filtered.result.finish_reason == "content_filter"
    assert err.status == "error" and err.result is None and err.error is not None
    assert err.error.type == "BatchRequestError" and err.error.kind == "no_retry"
    assert "HTTP 400" in err.error.message and "req_b2" in err.error.message
    assert err.tries[0].error == err.error
    assert expired.error is not None and expired.error.type == "BatchRequestExpired"
    assert "batch_expired" in expired.error.message
    assert missing.error is not None and missing.error.type == "MissingBatchResult"
    assert attempts[4].id in missing.error.message and "completed" in missing.error.message
    collected = notes(tmp_path, "batch_collected")[0].data
    assert collected["missing"] == [attempts[4].id]
    assert collected["counts"] == {"ok": 1, "refusal": 2, "error": 3}
    assert records(tmp_path)[-1].kind == "batch_collected"

    assert_sound(tmp_path)
    blob = (tmp_path / LEDGER_NAME).read_bytes()
    assert FAKE_KEY.encode() not in blob and FAKE_KEY[-12:].encode() not in blob
    assert b"[redacted]" in blob  # the key the API echoed in an error was removed


def test_openai_batch_of_legacy_completions(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches()
    p = OpenAIProvider(ModelSpec(id="m1", provider="openai", model="gpt-3.5-turbo-instruct-0914",
                                 interface="completion"), Path("."),
                       http_client=client_for(fake.router))
    attempts = [a.model_copy(update={"mode": "completion", "messages": [],
                                     "prompt": "Once upon a time"}) for a in planned(2)]
    execute(tmp_path, p, attempts)
    lines = [json.loads(x) for x in fake.uploads["file-in0"].splitlines()]
    assert {x["url"] for x in lines} == {"/v1/completions"}
    assert lines[0]["body"]["prompt"] == "Once upon a time" and "seed" not in lines[0]["body"]
    recs = attempt_records(tmp_path)
    assert [r.result.text for r in recs if r.result] == [f" {a.id} went on." for a in attempts]
    assert all(r.result and r.result.raw_request["not_sent"] == {
        "seed": "OpenAI documents seed for Chat Completions only"} for r in recs)
    assert_sound(tmp_path)


def test_openai_batch_is_chunked_to_the_limit(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches()
    attempts = planned(5)
    out = execute(tmp_path, openai_provider(fake), attempts, max_requests=2)
    assert out.submitted == ["batch_0000", "batch_0001", "batch_0002"]
    assert [len(n.data["custom_ids"]) for n in notes(tmp_path, "batch_submitted")] == [2, 2, 1]
    assert [r.attempt.id for r in attempt_records(tmp_path)] == [a.id for a in attempts]
    assert fake.create.call_count == 3 and len(notes(tmp_path, "batch_collected")) == 3
    assert_sound(tmp_path)


def test_openai_failed_batch_records_every_attempt(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches(statuses=["failed"])
    orig = fake._create

    def create(request: httpx.Request) -> httpx.Response:
        resp = orig(request)
        fake.batches["batch_0000"]["errors"] = {"object": "list", "data": [
            {"code": "invalid_request", "message": "bad line", "line": 2, "param": None}]}
        fake.batches["batch_0000"].pop("output_file_id")
        return resp

    fake.create.mock(side_effect=create)
    execute(tmp_path, openai_provider(fake), planned(3))
    recs = attempt_records(tmp_path)
    assert len(recs) == 3 and {r.status for r in recs} == {"error"}
    assert all(r.error is not None and r.error.type == "BatchFailed"
               and "bad line (line 2)" in r.error.message for r in recs)
    assert_sound(tmp_path)


def test_poll_errors_are_classified(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches()
    fake.poll_errors = [httpx.Response(503, json={"error": {"message": "busy"}}),
                        httpx.Response(429, json={"error": {"message": "slow down"}})]
    out = execute(tmp_path, openai_provider(fake), planned(2))
    assert out.complete and len(attempt_records(tmp_path)) == 2  # transient: polled again

    fake = FakeOpenAIBatches()
    fake.poll_errors = [httpx.Response(401, json={"error": {"message": key_echo()}})]
    run_dir = tmp_path / "second"
    with pytest.raises(BatchError, match="not resubmitted") as info:
        execute(run_dir, openai_provider(fake), planned(2))
    assert FAKE_KEY not in str(info.value)
    assert notes(run_dir, "batch_submitted") and not attempt_records(run_dir)
    execute(run_dir, openai_provider(fake), planned(2))  # the fix made: resume
    assert fake.create.call_count == 1 and len(attempt_records(run_dir)) == 2
    assert_sound(run_dir)


def test_max_wait_leaves_the_batch_open_for_a_resume(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches(statuses=["in_progress"])
    out = execute(tmp_path, openai_provider(fake), planned(3), max_wait=0)
    assert out.pending == ["batch_0000"] and not out.complete
    assert notes(tmp_path, "batch_pending")[0].data["status"] == "in_progress"
    assert not attempt_records(tmp_path)
    fake.statuses = ["completed"]
    fake.polls["batch_0000"] = 0
    out = execute(tmp_path, openai_provider(fake), planned(3), max_wait=0)
    assert out.complete and out.resumed == ["batch_0000"] and out.submitted == []
    assert len(attempt_records(tmp_path)) == 3 and fake.create.call_count == 1
    # one status note per change across both runs
    assert [n.data["status"] for n in notes(tmp_path, "batch_status")] == [
        "in_progress", "completed"]
    assert_sound(tmp_path)


def test_stop_request_leaves_the_batch_open(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches(statuses=["in_progress"])
    out = execute(tmp_path, openai_provider(fake), planned(2), should_stop=lambda: True,
                  max_wait=None)
    # stop was requested before the first submission: nothing is submitted
    assert out.submitted == [] and fake.create.call_count == 0
    stops = iter([False, True, True])
    out = execute(tmp_path, openai_provider(fake), planned(2), max_wait=None,
                  should_stop=lambda: next(stops))
    assert out.pending == ["batch_0000"]
    assert "stopped" in notes(tmp_path, "batch_pending")[0].message
    assert_sound(tmp_path)


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_batch_out_of_order_results(keys_env: str, tmp_path: Path) -> None:
    fake = FakeAnthropicBatches({1: "errored", 2: "expired", 3: "canceled", 4: "refusal",
                                 5: "missing"})
    attempts = planned(7)
    seen: list[list[Any]] = []
    fake.on_poll = lambda bid: seen.append(records(tmp_path))
    p = anthropic_provider(fake)
    out = execute(tmp_path, p, attempts)
    assert out.complete and out.recorded == 7
    assert out.counts == {"ok": 2, "refusal": 1, "error": 4}
    assert seen[0][-1].kind == "batch_submitted" and seen[0][-1].data["batch_id"] == \
        "msgbatch_0000"
    assert not any(isinstance(r, AttemptRecord) for r in seen[0])

    # the params are exactly what generate would send
    sent = fake.batches["msgbatch_0000"]
    assert [x["custom_id"] for x in sent] == [a.id for a in attempts]
    sync = respx.Router(base_url=ANTHROPIC)
    route = sync.post("/v1/messages").respond(200, json=anthropic_json(), headers={"date": DATE})
    res = asyncio.run(AnthropicProvider(p.spec, Path("."), http_client=client_for(sync))
                      .generate(attempts[0]))
    assert sent[0]["params"] == json.loads(route.calls[0].request.content) == \
        res.raw_request["body"]
    assert sent[0]["params"]["messages"][-1] == {"role": "assistant", "content": "It was"}
    sub = notes(tmp_path, "batch_submitted")[0].data
    assert sub["request_sha256"] == requests_sha256(sent)

    assert [n.data["status"] for n in notes(tmp_path, "batch_status")] == ["ended"]
    recs = attempt_records(tmp_path)
    assert [r.attempt.id for r in recs] == [a.id for a in attempts]
    ok, errored, expired, canceled, refused, missing, ok2 = recs
    for r, a in ((ok, attempts[0]), (ok2, attempts[6])):
        assert r.status == "ok" and r.result is not None
        assert r.result.text == f"Output {a.id}."  # matched on custom_id, not position
        assert r.result.returned_model == "claude-3-5-sonnet-20241022"
        assert r.result.raw_request["batch_id"] == "msgbatch_0000"
        assert r.result.raw_request["custom_id"] == a.id
        assert r.result.raw_request["not_sent"] == res.raw_request["not_sent"]
        assert r.result.usage == {"input_tokens": 20, "output_tokens": 4}
    assert ok.result is not None and ok.result.raw_request["body"] == res.raw_request["body"]
    assert errored.error is not None and errored.error.type == "BatchRequestError"
    assert errored.error.kind == "no_retry" and "req_err1" in errored.error.message
    assert expired.error is not None and expired.error.type == "BatchRequestExpired"
    assert canceled.error is not None and canceled.error.type == "BatchRequestCanceled"
    assert refused.status == "refusal" and refused.result is not None
    assert refused.result.finish_reason == "refusal"
    assert missing.error is not None and missing.error.type == "MissingBatchResult"
    assert_sound(tmp_path)
    blob = (tmp_path / LEDGER_NAME).read_bytes()
    assert FAKE_KEY.encode() not in blob and b"[redacted]" in blob


# --------------------------------------------------------------------------- resume


def _fake_and_provider(which: str, **kw: Any) -> tuple[Any, Callable[[], Provider]]:
    if which == "openai":
        of = FakeOpenAIBatches(**kw)
        return of, lambda: openai_provider(of)
    af = FakeAnthropicBatches(**kw)
    return af, lambda: anthropic_provider(af)


@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_resume_after_a_crash_between_submit_and_collect(keys_env: str, tmp_path: Path,
                                                         which: str) -> None:
    fake, make = _fake_and_provider(which, outcomes={2: "missing"})
    attempts = planned(5)

    async def crash(_: float) -> None:
        raise Crash

    with pytest.raises(Crash):
        execute(tmp_path, make(), attempts, sleep=crash)
    assert len(notes(tmp_path, "batch_submitted")) == 1 and not attempt_records(tmp_path)
    assert fake.create.call_count == 1

    out = execute(tmp_path, make(), attempts)  # a new process: new Ledger, provider, executor
    assert fake.create.call_count == 1  # never resubmitted: polled
    assert out.submitted == [] and out.resumed and out.recorded == 5
    ids = [r.attempt.id for r in attempt_records(tmp_path)]
    assert ids == [a.id for a in attempts]  # each exactly once, in plan order
    assert_sound(tmp_path)

    out = execute(tmp_path, make(), attempts)  # nothing left to do
    assert out.recorded == 0 and fake.create.call_count == 1
    assert len(attempt_records(tmp_path)) == 5


@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_resume_after_a_crash_during_collection(keys_env: str, tmp_path: Path,
                                                which: str) -> None:
    fake, make = _fake_and_provider(which)
    attempts = planned(4)
    ledger = Ledger(tmp_path).open()
    real = ledger.append
    written = []

    def append(record: Any) -> Any:
        if isinstance(record, AttemptRecord) and len(written) == 2:
            raise Crash
        out = real(record)
        if isinstance(record, AttemptRecord):
            written.append(record)
        return out

    ledger.append = append  # type: ignore[method-assign]
    with pytest.raises(Crash):
        asyncio.run(BatchExecutor(ledger, make(), attempts, poll_interval=0,
                                  sleep=no_sleep).run())
    ledger.close()
    assert len(attempt_records(tmp_path)) == 2
    out = execute(tmp_path, make(), attempts)
    assert out.recorded == 2 and fake.create.call_count == 1
    assert [r.attempt.id for r in attempt_records(tmp_path)] == [a.id for a in attempts]
    assert notes(tmp_path, "batch_collected")[0].data["already_recorded"] == 2
    assert_sound(tmp_path)


def test_openai_adopts_a_batch_whose_id_a_crash_kept_out(keys_env: str,
                                                         tmp_path: Path) -> None:
    fake = FakeOpenAIBatches()
    attempts = planned(3)
    crash_before_the_batch_id_is_recorded(tmp_path, openai_provider(fake), attempts)
    assert fake.create.call_count == 1 and not notes(tmp_path, "batch_submitted")
    out = execute(tmp_path, openai_provider(fake), attempts)
    assert fake.create.call_count == 1 and fake.listing.call_count == 1  # found, not resent
    assert out.resumed == ["batch_0000"]
    sub = notes(tmp_path, "batch_submitted")[0]
    assert sub.data["adopted"] is True and sub.data["batch_id"] == "batch_0000"
    assert [r.attempt.id for r in attempt_records(tmp_path)] == [a.id for a in attempts]
    assert_sound(tmp_path)


def test_anthropic_unconfirmed_submission_is_recorded_and_resent(keys_env: str,
                                                                 tmp_path: Path) -> None:
    fake = FakeAnthropicBatches()
    attempts = planned(2)
    crash_before_the_batch_id_is_recorded(tmp_path, anthropic_provider(fake), attempts)
    execute(tmp_path, anthropic_provider(fake), attempts)
    warning = [n for n in notes(tmp_path, "warning") if n.data.get("unconfirmed_batch")]
    assert len(warning) == 1 and "console" in warning[0].message
    assert fake.create.call_count == 2  # Anthropic batches carry no metadata to find it by
    assert [r.attempt.id for r in attempt_records(tmp_path)] == [a.id for a in attempts]
    execute(tmp_path, anthropic_provider(fake), attempts)
    assert len(notes(tmp_path, "warning")) == 1  # warned once
    assert_sound(tmp_path)


def test_unconfirmed_submission_waits_when_the_lookup_fails(keys_env: str,
                                                            tmp_path: Path) -> None:
    fake = FakeOpenAIBatches()
    attempts = planned(2)
    crash_before_the_batch_id_is_recorded(tmp_path, openai_provider(fake), attempts)
    fake.listing.mock(side_effect=[httpx.Response(500, json={"error": {"message": "down"}})])
    with pytest.raises(BatchError, match="could run them twice"):
        execute(tmp_path, openai_provider(fake), attempts)
    assert fake.create.call_count == 1 and not attempt_records(tmp_path)
    fake.listing.mock(side_effect=fake._list)
    out = execute(tmp_path, openai_provider(fake), attempts)
    assert out.resumed == ["batch_0000"] and fake.create.call_count == 1
    assert len(attempt_records(tmp_path)) == 2
    assert_sound(tmp_path)


def test_submit_failure_is_recorded_and_nothing_is_lost(keys_env: str, tmp_path: Path) -> None:
    fake = FakeOpenAIBatches()
    fake.create.mock(side_effect=[httpx.Response(500, json={"error": {"message": "down"}})])
    with pytest.raises(BatchError, match="nothing was lost"):
        execute(tmp_path, openai_provider(fake), planned(2))
    failed = notes(tmp_path, "batch_submit_failed")[0].data
    assert failed["rejected"] is True and "500" in failed["error"]
    fake.create.mock(side_effect=fake._create)
    out = execute(tmp_path, openai_provider(fake), planned(2))
    assert out.submitted == ["batch_0000"] and len(attempt_records(tmp_path)) == 2
    assert fake.listing.call_count == 0  # a rejected submission is not looked up
    assert_sound(tmp_path)


# --------------------------------------------------------------------------- capabilities


def test_providers_without_batch_are_refused(keys_env: str, tmp_path: Path) -> None:
    compatible = OpenAICompatibleProvider(
        ModelSpec(id="m1", provider="openai-compatible", model="x", base_url=SERVER), Path("."))
    assert OpenAIProvider.supports_batch and AnthropicProvider.supports_batch
    assert not compatible.supports_batch
    ledger = Ledger(tmp_path).open()
    try:
        with pytest.raises(CapabilityError, match="no batch API"):
            BatchExecutor(ledger, compatible, planned(1))
        with pytest.raises(CapabilityError, match="no batch API"):
            compatible.batch_requests(planned(1))
        score = PlannedAttempt(id="a-s", ordinal=0, model_id="m1", strategy="t",
                               strategy_key="t#0", work_id="w", intent="reconstruction",
                               index=0, mode="score", prompt="x", continuation="y")
        fake = FakeOpenAIBatches()
        with pytest.raises(CapabilityError, match="score attempts cannot be batched"):
            BatchExecutor(ledger, openai_provider(fake), [score])
    finally:
        ledger.close()


# --------------------------------------------------------------------------- runner wiring

RUNNER_HAS_BATCH = "batch" in inspect.signature(Runner.__init__).parameters


@pytest.mark.skipif(not RUNNER_HAS_BATCH, reason="Runner(batch=...) is not wired in yet")
def test_runner_batch_mode_resumes_without_resubmitting(keys_env: str, tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text(SUBJECT)
    (tmp_path / "control.txt").write_text(CONTROL)
    models = SCRIPTED_MODELS + textwrap.indent(textwrap.dedent("""\
        - id: gpt
          provider: openai
          model: gpt-4o-2024-08-06
        """), "  ")
    (tmp_path / "case.yaml").write_text(case_yaml(models, STRATEGIES))
    case = load_case(tmp_path / "case.yaml")
    fake = FakeOpenAIBatches(statuses=["in_progress", "completed"])

    def runner(**kw: Any) -> Runner:
        r = Runner(case, argv=["casekit", "run"], **kw)
        r._providers["gpt"] = OpenAIProvider(next(m for m in case.spec.models
                                                  if m.id == "gpt"), tmp_path,
                                             http_client=client_for(fake.router))
        return r

    first = runner(batch=True, batch_poll_interval=0, batch_max_wait=0).run()
    assert not first.complete and fake.create.call_count == 1
    run_dir = first.run_dir
    assert notes(run_dir, "batch_pending")
    # the scripted model has no batch API: it ran synchronously, and the ledger says so
    assert any("no batch API" in n.message for n in notes(run_dir, "warning"))
    n_bot = len([r for r in attempt_records(run_dir) if r.attempt.model_id == "bot"])
    assert n_bot and all(r.attempt.model_id == "bot" for r in attempt_records(run_dir))

    second = runner(batch_poll_interval=0).run()  # resumed without --batch: collected
    assert second.complete and fake.create.call_count == 1
    recs = attempt_records(run_dir)
    gpt = [r for r in recs if r.attempt.model_id == "gpt"]
    planned_gpt = [a for a in build_plan(case, load_works(case)).attempts if a.model_id == "gpt"]
    assert [r.attempt.id for r in gpt] == [a.id for a in planned_gpt]
    assert all(r.status == "ok" and r.result is not None
               and r.result.raw_request["batch_id"] == "batch_0000" for r in gpt)
    assert len({r.attempt.id for r in recs}) == len(recs)
    assert isinstance([r for r in records(run_dir) if not isinstance(r, Checkpoint)][-1], RunEnd)
    findings = analyze_run(run_dir)
    assert findings.ledger_head_hash == verify_chain(run_dir / LEDGER_NAME).head_hash
    assert_sound(run_dir)
