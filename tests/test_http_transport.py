"""``params.transport: http`` (aiohttp) against ``transport: sdk`` (the openai SDK).

Both transports talk to the same real HTTP server on 127.0.0.1 (aiohttp.web, answering from a
script per request), and the tests compare what reaches the server and what reaches the
ledger: the same JSON body and auth headers, the same recorded result (text, finish reason,
refusal, returned model, request id, fingerprint, Date, usage, the verbatim body and its
SHA-256), the same exception class and retry decision for every error status, the same
"unsupported parameter" handling. The transport is the only difference a ledger shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from casekit.case import ModelSpec
from casekit.errors import CasekitError
from casekit.providers.base import RetryDecision
from casekit.providers.openai import OpenAIProvider
from casekit.providers.openai_compatible import OpenAICompatibleProvider
from casekit.records import Decoding, Message, PlannedAttempt
from tests.local_http import serve

FAKE_KEY = "sk-casekit-FAKE-transport-0123456789"
DATE = "Tue, 03 Jun 2025 12:00:00 GMT"


@dataclass
class Scripted:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    url: str
    script: list[Scripted]
    seen: list[dict[str, Any]]


def _chat(content: str = "It was a bright cold day in April.", finish: str = "stop") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1717416000,
            "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_abc123",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}


@pytest.fixture
def server() -> Iterator[Server]:
    """An aiohttp.web server on 127.0.0.1 in its own thread, answering from ``script`` (the
    last entry repeats) and logging each request's headers and JSON body."""
    script: list[Scripted] = []
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        seen.append({"path": request.path, "headers": dict(request.headers),
                     "body": json.loads(raw)})
        s = script.pop(0) if len(script) > 1 else script[0]
        headers = {"Date": DATE, "x-request-id": f"req_{len(seen)}",
                   "Content-Type": "application/json", **s.headers}
        data = s.raw if s.raw is not None else json.dumps(s.body).encode()
        return web.Response(status=s.status, body=data, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_post("/v1/completions", handle)
    with serve(app) as root:
        yield Server(f"{root}/v1", script, seen)


def provider(server: Server, transport: str, interface: str = "chat",
             **params: Any) -> OpenAIProvider:
    spec = ModelSpec(id="m", provider="openai-compatible", model="gpt-4o-2024-08-06",
                     interface=interface, base_url=server.url, api_key_env="CASEKIT_TEST_KEY",
                     params={"transport": transport, "timeout": 5, **params})
    return OpenAICompatibleProvider(spec, Path("."))


def attempt(mode: str = "chat") -> PlannedAttempt:
    kw: dict[str, Any] = ({"messages": [Message(role="user", content="Continue: It was a")]}
                          if mode == "chat" else {"prompt": "It was a"})
    return PlannedAttempt(id="a-1", ordinal=0, model_id="m", strategy="s", strategy_key="s#0",
                          work_id="w", intent="adversarial", index=0, mode=mode,
                          decoding=Decoding(temperature=0.0, max_tokens=32, seed=7), **kw)


def call(p: OpenAIProvider, a: PlannedAttempt) -> Any:
    async def go() -> Any:
        try:
            return await p.generate(a)
        except Exception as exc:  # noqa: BLE001 - the tests compare failures too
            return exc
        finally:
            await p.aclose()
    return asyncio.run(go())


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEKIT_TEST_KEY", FAKE_KEY)


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_same_request_and_same_record_through_both_transports(
        server: Server, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    body = _chat() if mode == "chat" else {
        "id": "cmpl-1", "object": "text_completion", "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "text": " bright cold day", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    raw = json.dumps(body, indent=1).encode()  # not compact: the verbatim bytes are recorded
    server.script.append(Scripted(raw=raw))
    results = {}
    for transport in ("sdk", "http"):
        p = provider(server, transport, interface=mode)
        results[transport] = call(p, attempt(mode))
    sdk, http = results["sdk"], results["http"]
    assert not isinstance(sdk, Exception) and not isinstance(http, Exception), (sdk, http)
    sdk_req, http_req = server.seen[-2], server.seen[-1]
    assert sdk_req["body"] == http_req["body"], "the same JSON body on the wire"
    assert sdk_req["path"] == http_req["path"]
    for h in ("Authorization", "Content-Type"):
        assert sdk_req["headers"][h] == http_req["headers"][h], h
    assert http_req["headers"]["Authorization"] == f"Bearer {FAKE_KEY}"
    for f in ("text", "finish_reason", "refusal", "returned_model", "system_fingerprint",
              "server_date", "usage"):
        assert getattr(sdk, f) == getattr(http, f), f
    assert http.request_id == "req_2" and sdk.request_id == "req_1"
    assert http.raw_response["body"] == sdk.raw_response["body"] == body
    expected_sha = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert http.raw_response["body_sha256"] == sdk.raw_response["body_sha256"] == expected_sha
    assert http.raw_response["headers"]["date"] == DATE
    assert http.raw_response["status"] == 200 and http.raw_response["http_version"] == "HTTP/1.1"
    assert sdk.raw_request["transport"] == "openai SDK"
    assert http.raw_request["transport"].startswith("aiohttp ")
    assert {k: v for k, v in http.raw_request.items() if k != "transport"} == {
        k: v for k, v in sdk.raw_request.items() if k != "transport"}
    assert FAKE_KEY not in json.dumps(http.model_dump(mode="json"))
    assert FAKE_KEY not in caplog.text and FAKE_KEY[:16] not in caplog.text


@pytest.mark.parametrize(("status", "headers", "action", "after", "cls"), [
    (400, {}, "no", None, "BadRequestError"),
    (401, {}, "no", None, "AuthenticationError"),
    (404, {}, "no", None, "NotFoundError"),
    (422, {}, "no", None, "UnprocessableEntityError"),
    (429, {"Retry-After": "7"}, "rate_limit", 7.0, "RateLimitError"),
    (500, {}, "transient", None, "InternalServerError"),
    (503, {"Retry-After": "2"}, "transient", 2.0, "InternalServerError"),
    (529, {}, "transient", None, "InternalServerError"),
])
def test_error_statuses_raise_the_same_sdk_exception(server: Server, status: int,
                                                     headers: dict[str, str], action: str,
                                                     after: float | None, cls: str) -> None:
    server.script.append(Scripted(status=status, headers=headers, body={"error": {
        "message": f"scripted {status} for {FAKE_KEY[:12]}", "type": "x", "param": None,
        "code": None}}))
    errors = {}
    for transport in ("sdk", "http"):
        p = provider(server, transport)
        exc = call(p, attempt())
        assert isinstance(exc, Exception), f"{transport}: HTTP {status} must raise"
        errors[transport] = (exc, p.should_retry(exc))
    (sdk_exc, sdk_dec), (http_exc, http_dec) = errors["sdk"], errors["http"]
    assert type(sdk_exc) is type(http_exc) and type(http_exc).__name__ == cls
    assert sdk_dec == http_dec == RetryDecision(action=action, after=after)
    assert http_exc.status_code == status and http_exc.request_id == "req_2"
    assert str(sdk_exc).replace("req_1", "req_2") == str(http_exc), "same recorded message"
    assert f"HTTP {status}" in str(http_exc) and DATE in str(http_exc)


def test_unsupported_parameter_is_dropped_once_over_http_when_allowed(server: Server) -> None:
    server.script.append(Scripted(status=400, body={"error": {
        "message": "Unsupported parameter: 'seed' is not supported with this model.",
        "type": "invalid_request_error", "param": "seed", "code": "unsupported_parameter"}}))
    server.script.append(Scripted(body=_chat()))
    p = provider(server, "http", allow_drop_unsupported=True)
    res = call(p, attempt())
    assert not isinstance(res, Exception), res
    assert "seed" in server.seen[0]["body"] and "seed" not in server.seen[1]["body"]
    dropped = res.raw_request["dropped"]
    assert dropped[0]["param"] == "seed" and dropped[0]["request_id"] == "req_1"


def test_malformed_200_is_transient_over_http(server: Server) -> None:
    server.script.append(Scripted(raw=b'{"choices": [ truncated'))
    p = provider(server, "http")
    exc = call(p, attempt())
    assert type(exc).__name__ == "MalformedResponseError"
    assert p.should_retry(exc).action == "transient"


def test_refused_connection_is_a_transient_connection_error() -> None:
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = ModelSpec(id="m", provider="openai-compatible", model="x",
                     base_url=f"http://127.0.0.1:{port}/v1",
                     params={"transport": "http", "timeout": 2})
    p = OpenAICompatibleProvider(spec, Path("."))
    exc = call(p, attempt())
    assert type(exc).__name__ == "APIConnectionError"
    assert "Connect" in str(exc) and p.should_retry(exc).action == "transient"


def test_unknown_transport_is_a_clear_error() -> None:
    spec = ModelSpec(id="m", provider="openai-compatible", model="x",
                     base_url="http://127.0.0.1:9/v1", params={"transport": "curl"})
    with pytest.raises(CasekitError, match="params.transport: must be one of sdk, http"):
        OpenAICompatibleProvider(spec, Path("."))


def test_a_redirect_is_recorded_not_followed(server: Server) -> None:
    server.script.append(Scripted(status=307, body={"error": {"message": "moved"}},
                                  headers={"Location": "http://127.0.0.1:9/v1/chat/completions"}))
    p = provider(server, "http")
    exc = call(p, attempt())
    assert type(exc).__name__ == "APIStatusError" and exc.status_code == 307
    assert p.should_retry(exc).action == "no"
    assert len(server.seen) == 1  # nothing was sent to the Location


def test_proxy_comes_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from casekit.providers.http_transport import env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert env_proxy("https://api.openai.com/v1") == "http://user:pw@proxy.example:3128"
    assert env_proxy("https://internal.example/v1") is None
    assert env_proxy("http://127.0.0.1:8000/v1") is None  # no HTTP_PROXY set
    spec = ModelSpec(id="m", provider="openai", model="gpt-4o-2024-08-06",
                     api_key_env="CASEKIT_TEST_KEY", params={"transport": "http"})
    ident = OpenAIProvider(spec, Path(".")).identity().identity
    assert ident["proxy_from_env"] == "http://proxy.example:3128"  # credentials never recorded
