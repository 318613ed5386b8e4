"""``openai``, ``openai-compatible`` and ``anthropic`` providers against respx-mocked HTTP.

The SDKs (openai 3.x, anthropic 2.x) send through ``httpx2``, which respx does not patch; the
tests give each provider an ``httpx2.AsyncClient`` whose transport hands every request to a
``respx.Router`` (:class:`RespxBridge`), so the SDK code paths are the production ones and
only the network is faked. Network failures configured as respx side effects (httpx
``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``) reach the SDK as the httpx2
exceptions of the same name.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import respx

from casekit.case import ModelSpec
from casekit.errors import CasekitError, ProviderUnavailable
from casekit.providers import api_common, keys
from casekit.providers.anthropic import AnthropicProvider
from casekit.providers.api_common import MalformedResponseError, UnsupportedParameter
from casekit.providers.base import CapabilityError, RetryDecision
from casekit.providers.openai import OpenAIProvider
from casekit.providers.openai_compatible import OpenAICompatibleProvider
from casekit.records import Decoding, Message, PlannedAttempt, ProviderResult

OPENAI = "https://api.openai.com/v1"
ANTHROPIC = "https://api.anthropic.com"
SERVER = "http://127.0.0.1:8099/v1"
DATE = "Tue, 03 Jun 2025 12:00:00 GMT"
FAKE_KEY = "sk-casekit-FAKE-0123456789abcdefXYZ"


# --------------------------------------------------------------------------- plumbing


class RespxBridge(httpx2.AsyncBaseTransport):
    """An httpx2 transport that answers from a respx router (respx mocks httpx, not httpx2)."""

    def __init__(self, router: respx.Router) -> None:
        self.router = router

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        content = await request.aread()
        req = httpx.Request(request.method, str(request.url),
                            headers=list(request.headers.multi_items()), content=content)
        try:
            resp = await self.router.async_handler(req)
        except httpx.TransportError as exc:
            cls = getattr(httpx2, type(exc).__name__, httpx2.TransportError)
            raise cls(str(exc), request=request) from None
        body = await resp.aread()
        headers = [(k, v) for k, v in resp.headers.multi_items()
                   if k.lower() not in ("content-encoding", "transfer-encoding")]
        return httpx2.Response(resp.status_code, headers=headers, content=body, request=request)


def client_for(router: respx.Router) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=RespxBridge(router))


def spec(provider: str, model: str, **kw: Any) -> ModelSpec:
    return ModelSpec(id="m1", provider=provider, model=model, **kw)


def attempt(mode: str = "chat", **kw: Any) -> PlannedAttempt:
    if mode == "chat" and "messages" not in kw:
        kw["messages"] = [Message(role="system", content="You are terse."),
                          Message(role="user", content="Say hello.")]
    if mode in ("completion", "score") and "prompt" not in kw:
        kw["prompt"] = "Once upon a time"
    return PlannedAttempt(id="a-00000000000000000001", ordinal=0, model_id="m1", strategy="t",
                          strategy_key="t#0", work_id="w", intent="benign", index=0, mode=mode,
                          **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def failure(coro: Any) -> BaseException:
    try:
        asyncio.run(coro)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    raise AssertionError("expected an exception")


HEADERS = {
    "date": DATE,
    "x-request-id": "req_abc123",
    "openai-processing-ms": "42",
    "x-ratelimit-remaining-requests": "99",
    "set-cookie": "__cf_bm=secret-cookie",
    "cf-ray": "8f00000000000000-AMS",
}


def chat_json(content: str | None = "Hello there.", finish: str = "stop", **msg: Any) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1748952000,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_7c6e1a",
        "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": None,
                                 **msg}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def error_json(message: str, type_: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


def anthropic_json(text: str = "Hello.", stop: str = "end_turn") -> dict:
    return {
        "id": "msg_01", "type": "message", "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 4},
    }


A_HEADERS = {"date": DATE, "request-id": "req_01XYZ",
             "anthropic-ratelimit-requests-remaining": "49", "x-internal": "drop-me"}


def anthropic_error(message: str, type_: str = "invalid_request_error") -> dict:
    return {"type": "error", "error": {"type": type_, "message": message},
            "request_id": "req_err1"}


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    return FAKE_KEY


@pytest.fixture
def anthropic_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    return FAKE_KEY


def openai_provider(router: respx.Router, model: str = "gpt-4o-2024-08-06",
                    **kw: Any) -> OpenAIProvider:
    return OpenAIProvider(spec("openai", model, **kw), Path("."), http_client=client_for(router))


def anthropic_provider(router: respx.Router, model: str = "claude-3-5-sonnet-20241022",
                       **kw: Any) -> AnthropicProvider:
    return AnthropicProvider(spec("anthropic", model, **kw), Path("."),
                             http_client=client_for(router))


def sent_key(request: httpx.Request) -> str | None:
    """The key a request carried (anthropic 2.x sends it as a bearer token, 0.x as x-api-key)."""
    if "x-api-key" in request.headers:
        return request.headers["x-api-key"]
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth else None


def sent_json(route: respx.Route, n: int = -1) -> dict:
    return json.loads(route.calls[n].request.content)


# --------------------------------------------------------------------------- openai: success


def test_openai_chat_records_every_identifying_field(openai_key: str) -> None:
    router = respx.Router(base_url=OPENAI)
    route = router.post("/chat/completions").respond(200, json=chat_json(), headers=HEADERS)
    p = openai_provider(router)
    res = run(p.generate(attempt(decoding=Decoding(temperature=0.0, max_tokens=50, seed=7,
                                                   stop=["\n\n"], top_p=0.9))))
    assert res.text == "Hello there."
    assert res.returned_model == "gpt-4o-2024-08-06"
    assert res.system_fingerprint == "fp_7c6e1a"
    assert res.request_id == "req_abc123"
    assert res.server_date == DATE
    assert res.usage == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert res.finish_reason == "stop" and res.refusal is False
    assert res.token_scores is None
    body = sent_json(route)
    assert body == {"model": "gpt-4o-2024-08-06", "temperature": 0.0, "max_tokens": 50,
                    "top_p": 0.9, "seed": 7, "stop": ["\n\n"],
                    "frequency_penalty": 0.0, "presence_penalty": 0.0,
                    "messages": [{"role": "system", "content": "You are terse."},
                                 {"role": "user", "content": "Say hello."}]}
    assert res.raw_request["body"] == body
    assert res.raw_request["url"] == OPENAI + "/chat/completions"
    assert res.raw_request["sdk"].startswith("openai 3.")
    headers = res.raw_response["headers"]
    assert headers["date"] == DATE and headers["x-request-id"] == "req_abc123"
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert "set-cookie" not in headers and "cf-ray" not in headers
    assert res.raw_response["body"] == chat_json()
    assert res.raw_response["body_sha256"].startswith("sha256:")
    # the SDK retries nothing: casekit's runner does, and records every try
    assert route.call_count == 1
    # a record survives JSON round trips
    assert ProviderResult.model_validate_json(res.model_dump_json()) == res


def test_openai_content_filter_and_refusal_are_flagged(openai_key: str) -> None:
    router = respx.Router(base_url=OPENAI)
    router.post("/chat/completions").mock(side_effect=[
        httpx.Response(200, json=chat_json(content=None, finish="content_filter"),
                       headers=HEADERS),
        httpx.Response(200, json=chat_json(content=None, refusal="I can't help with that."),
                       headers=HEADERS),
    ])
    p = openai_provider(router)
    filtered = run(p.generate(attempt()))
    assert filtered.refusal and filtered.finish_reason == "content_filter" and filtered.text == ""
    refused = run(p.generate(attempt()))
    assert refused.refusal and refused.finish_reason == "stop"
    assert refused.raw_response["body"]["choices"][0]["message"]["refusal"]


def test_openai_completions_endpoint(openai_key: str) -> None:
    router = respx.Router(base_url=OPENAI)
    route = router.post("/completions").respond(200, headers=HEADERS, json={
        "id": "cmpl-1", "object": "text_completion", "created": 1748952000,
        "model": "gpt-3.5-turbo-instruct-0914",
        "choices": [{"index": 0, "text": " there was a king.", "finish_reason": "length",
                     "logprobs": None}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9},
    })
    p = openai_provider(router, model="gpt-3.5-turbo-instruct-0914", interface="completion")
    assert p.identity().identity["api"] == "completions"
    res = run(p.generate(attempt("completion", decoding=Decoding(seed=3, top_k=5))))
    assert res.text == " there was a king." and res.finish_reason == "length"
    assert res.returned_model == "gpt-3.5-turbo-instruct-0914"
    body = sent_json(route)
    assert body["prompt"] == "Once upon a time" and "seed" not in body and "top_k" not in body
    assert set(res.raw_request["not_sent"]) == {"seed", "top_k"}
    assert res.system_fingerprint is None


def test_openai_logprobs_are_requested_and_kept_raw(openai_key: str) -> None:
    lp = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                       "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                                        {"token": "Hello", "logprob": -2.4, "bytes": None}]}],
          "refusal": None}
    data = chat_json(content="Hi")
    data["choices"][0]["logprobs"] = lp
    router = respx.Router(base_url=OPENAI)
    route = router.post("/chat/completions").respond(200, json=data, headers=HEADERS)
    p = openai_provider(router, params={"logprobs": 2, "max_completion_tokens": True})
    res = run(p.generate(attempt()))
    body = sent_json(route)
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["max_completion_tokens"] == 96 and "max_tokens" not in body
    assert res.raw_response["body"]["choices"][0]["logprobs"] == lp
    assert res.token_scores is None  # reserved for teacher-forced scoring


def test_openai_trailing_assistant_message_is_noted(openai_key: str) -> None:
    router = respx.Router(base_url=OPENAI)
    router.post("/chat/completions").respond(200, json=chat_json(), headers=HEADERS)
    p = openai_provider(router)
    res = run(p.generate(attempt(messages=[Message(role="user", content="Continue:"),
                                           Message(role="assistant", content="It was")])))
    assert "prefill" in res.raw_request["notes"][0]


def test_openai_cannot_score() -> None:
    assert OpenAIProvider.can_score is False
    assert AnthropicProvider.can_score is False
    assert OpenAICompatibleProvider.can_score is True


# --------------------------------------------------------------------------- failures


STATUS_CASES = [
    (400, {}, "no", None),
    (401, {}, "no", None),
    (403, {}, "no", None),
    (404, {}, "no", None),
    (422, {}, "no", None),
    (429, {"retry-after": "7"}, "rate_limit", 7.0),
    (429, {"retry-after": "Tue, 03 Jun 2025 12:00:30 GMT"}, "rate_limit", 30.0),
    (429, {"retry-after-ms": "1500"}, "rate_limit", 1.5),
    (429, {}, "rate_limit", None),
    (500, {}, "transient", None),
    (502, {}, "transient", None),
    (503, {"retry-after": "2"}, "transient", 2.0),
    (504, {}, "transient", None),
    (529, {}, "transient", None),
]


@pytest.mark.parametrize(("status", "extra", "action", "after"), STATUS_CASES)
def test_openai_status_classification(openai_key: str, status: int, extra: dict,
                                      action: str, after: float | None) -> None:
    router = respx.Router(base_url=OPENAI)
    route = router.post("/chat/completions").respond(
        status, json=error_json(f"status {status}"), headers={"date": DATE,
                                                             "x-request-id": "req_e", **extra})
    p = openai_provider(router)
    exc = failure(p.generate(attempt()))
    assert p.should_retry(exc) == RetryDecision(action=action, after=after)
    assert f"HTTP {status}" in str(exc) and "req_e" in str(exc)
    assert route.call_count == 1  # no SDK retries


@pytest.mark.parametrize(("status", "extra", "action", "after"), STATUS_CASES)
def test_anthropic_status_classification(anthropic_key: str, status: int, extra: dict,
                                         action: str, after: float | None) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").respond(
        status, json=anthropic_error(f"status {status}", "overloaded_error" if status == 529
                                     else "api_error"),
        headers={"date": DATE, "request-id": "req_e", **extra})
    p = anthropic_provider(router)
    exc = failure(p.generate(attempt()))
    assert p.should_retry(exc) == RetryDecision(action=action, after=after)
    assert f"HTTP {status}" in str(exc)
    assert route.call_count == 1


@pytest.mark.parametrize("which", ["openai", "anthropic"])
@pytest.mark.parametrize("side_effect", [httpx.ConnectError, httpx.ReadTimeout,
                                         httpx.RemoteProtocolError])
def test_network_failures_are_transient(openai_key: str, anthropic_key: str, which: str,
                                        side_effect: type[Exception]) -> None:
    router = respx.Router(base_url=OPENAI if which == "openai" else ANTHROPIC)
    router.post(path__regex=r".*").mock(side_effect=side_effect)
    p = openai_provider(router) if which == "openai" else anthropic_provider(router)
    exc = failure(p.generate(attempt()))
    sdk_names = ("APIConnectionError", "APITimeoutError")
    assert type(exc).__name__ in sdk_names
    if side_effect is httpx.ReadTimeout:
        assert type(exc).__name__ == "APITimeoutError"
    assert p.should_retry(exc) == RetryDecision(action="transient")


@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_malformed_json_in_a_200_is_transient(openai_key: str, anthropic_key: str,
                                              which: str) -> None:
    router = respx.Router(base_url=OPENAI if which == "openai" else ANTHROPIC)
    router.post(path__regex=r".*").respond(
        200, content=b'{"id": "chatcmpl-1", "choices": [{"mess', headers={
            "content-type": "application/json", "date": DATE})
    p = openai_provider(router) if which == "openai" else anthropic_provider(router)
    exc = failure(p.generate(attempt()))
    assert isinstance(exc, MalformedResponseError)
    assert "not valid JSON" in str(exc) and "sha256:" in str(exc)
    assert p.should_retry(exc) == RetryDecision(action="transient")


def test_a_200_without_choices_is_malformed(openai_key: str) -> None:
    router = respx.Router(base_url=OPENAI)
    router.post("/chat/completions").respond(200, json={"object": "error"}, headers=HEADERS)
    p = openai_provider(router)
    exc = failure(p.generate(attempt()))
    assert isinstance(exc, MalformedResponseError)


@pytest.mark.parametrize(("transport", "cause"), [("http", "ClientConnectorError"),
                                                   ("sdk", "ConnectError")])
def test_connection_refused_by_a_real_socket_is_transient(transport: str, cause: str) -> None:
    import asyncio
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = OpenAICompatibleProvider(spec("openai-compatible", "m",
                                      base_url=f"http://127.0.0.1:{port}/v1",
                                      params={"timeout": 5, "transport": transport}), Path("."))

    async def go() -> Exception:
        try:
            await p.generate(attempt())
        except Exception as exc:  # noqa: BLE001 - the failure is what is tested
            return exc
        finally:
            await p.aclose()
        raise AssertionError("a refused connection did not fail")

    exc = asyncio.run(go())
    assert type(exc).__name__ == "APIConnectionError"
    assert cause in str(exc)
    assert p.should_retry(exc) == RetryDecision(action="transient")


def test_configuration_errors_are_not_retried(openai_key: str, anthropic_key: str) -> None:
    p = openai_provider(respx.Router(base_url=OPENAI))
    assert p.should_retry(CapabilityError("x")) == RetryDecision(action="no")
    assert p.should_retry(ValueError("x")) == RetryDecision(action="no")
    assert p.should_retry(ConnectionResetError("reset")) == RetryDecision(action="transient")
    a = anthropic_provider(respx.Router(base_url=ANTHROPIC))
    assert a.should_retry(ConnectionResetError("reset")) == RetryDecision(action="transient")
    assert a.should_retry(UnsupportedParameter("x")) == RetryDecision(action="no")


# --------------------------------------------------------------------------- anthropic


def test_anthropic_messages_records_every_identifying_field(anthropic_key: str) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").respond(200, json=anthropic_json(" was a miller."),
                                                headers=A_HEADERS)
    p = anthropic_provider(router)
    att = attempt(messages=[Message(role="system", content="Be exact."),
                            Message(role="user", content="Continue the story."),
                            Message(role="assistant", content="Once upon a time there ")],
                  decoding=Decoding(temperature=0.0, max_tokens=64, seed=5, stop=["THE END"],
                                    top_k=1))
    res = run(p.generate(att))
    req = route.calls[0].request
    assert sent_key(req) == FAKE_KEY and "anthropic-version" in req.headers
    body = sent_json(route)
    assert body["system"] == "Be exact."
    assert body["messages"] == [{"role": "user", "content": "Continue the story."},
                                {"role": "assistant", "content": "Once upon a time there"}]
    assert body["temperature"] == 0.0 and body["top_k"] == 1 and body["max_tokens"] == 64
    assert body["stop_sequences"] == ["THE END"] and "seed" not in body
    assert res.raw_request["not_sent"] == {"seed": "Anthropic's API has no seed parameter"}
    assert "trailing whitespace" in res.raw_request["notes"][0]
    assert res.text == " was a miller."
    assert res.returned_model == "claude-3-5-sonnet-20241022"
    assert res.request_id == "req_01XYZ" and res.server_date == DATE
    assert res.usage == {"input_tokens": 20, "output_tokens": 4}
    assert res.finish_reason == "end_turn" and not res.refusal
    assert res.raw_response["headers"] == {"date": DATE, "request-id": "req_01XYZ",
                                           "anthropic-ratelimit-requests-remaining": "49",
                                           "content-type": "application/json"}
    assert res.raw_request["url"] == ANTHROPIC + "/v1/messages"
    assert route.call_count == 1


def test_anthropic_refusal_is_flagged(anthropic_key: str) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    router.post("/v1/messages").respond(200, json=anthropic_json("", stop="refusal"),
                                        headers=A_HEADERS)
    res = run(anthropic_provider(router).generate(attempt()))
    assert res.refusal and res.finish_reason == "refusal" and res.text == ""


TEMPERATURE_400 = "`temperature` is deprecated for this model."
PREFILL_400 = ("This model does not support assistant message prefill. The conversation must "
               "end with a user message.")


def test_anthropic_drops_a_rejected_temperature_once_when_allowed(anthropic_key: str) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").mock(side_effect=[
        httpx.Response(400, json=anthropic_error(TEMPERATURE_400),
                       headers={"request-id": "req_rejected", "date": DATE}),
        httpx.Response(200, json=anthropic_json(), headers=A_HEADERS),
    ])
    p = anthropic_provider(router, model="claude-opus-4-1-20250805",
                           params={"allow_drop_unsupported": True})
    res = run(p.generate(attempt()))
    assert route.call_count == 2
    assert "temperature" in sent_json(route, 0) and "temperature" not in sent_json(route, 1)
    [dropped] = res.raw_request["dropped"]
    assert dropped["param"] == "temperature" and dropped["value"] == 0.0
    assert TEMPERATURE_400 in dropped["reason"] and dropped["request_id"] == "req_rejected"
    assert "temperature" not in res.raw_request["body"]


def test_anthropic_rejected_temperature_without_permission_is_a_clear_error(
        anthropic_key: str) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").respond(400, json=anthropic_error(TEMPERATURE_400))
    p = anthropic_provider(router)
    exc = failure(p.generate(attempt()))
    assert isinstance(exc, UnsupportedParameter)
    assert "temperature" in str(exc) and "allow_drop_unsupported: true" in str(exc)
    assert p.should_retry(exc) == RetryDecision(action="no")
    assert route.call_count == 1


def test_anthropic_temperature_and_top_p_conflict_drops_top_p(anthropic_key: str) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").mock(side_effect=[
        httpx.Response(400, json=anthropic_error(
            "`temperature` and `top_p` cannot both be specified for this model. Please use "
            "only one.")),
        httpx.Response(200, json=anthropic_json(), headers=A_HEADERS),
    ])
    p = anthropic_provider(router, params={"allow_drop_unsupported": True})
    res = run(p.generate(attempt(decoding=Decoding(temperature=0.0, top_p=0.5))))
    assert res.raw_request["dropped"][0]["param"] == "top_p"
    assert sent_json(route, 1)["temperature"] == 0.0 and "top_p" not in sent_json(route, 1)


def test_anthropic_drops_a_rejected_prefill_when_allowed(anthropic_key: str) -> None:
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").mock(side_effect=[
        httpx.Response(400, json=anthropic_error(PREFILL_400)),
        httpx.Response(200, json=anthropic_json(), headers=A_HEADERS),
    ])
    p = anthropic_provider(router, params={"allow_drop_unsupported": True})
    res = run(p.generate(attempt(messages=[Message(role="user", content="Go on:"),
                                           Message(role="assistant", content="It was")])))
    assert res.raw_request["dropped"][0]["param"] == "assistant_prefill"
    assert res.raw_request["dropped"][0]["value"] == "It was"
    assert sent_json(route, 1)["messages"] == [{"role": "user", "content": "Go on:"}]
    # an unrelated 400 is never "fixed" by dropping something
    router2 = respx.Router(base_url=ANTHROPIC)
    router2.post("/v1/messages").respond(400, json=anthropic_error("messages: field required"))
    exc = failure(anthropic_provider(router2, params={"allow_drop_unsupported": True})
                  .generate(attempt()))
    assert type(exc).__name__ == "BadRequestError"


def test_openai_drop_path_renames_max_tokens(openai_key: str) -> None:
    router = respx.Router(base_url=OPENAI)
    route = router.post("/chat/completions").mock(side_effect=[
        httpx.Response(400, json={"error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                       "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens",
            "code": "unsupported_parameter"}}),
        httpx.Response(200, json=chat_json(), headers=HEADERS),
    ])
    p = openai_provider(router, model="o3-mini-2025-01-31",
                        params={"allow_drop_unsupported": True})
    res = run(p.generate(attempt()))
    assert sent_json(route, 1)["max_completion_tokens"] == 96
    assert "max_tokens" not in sent_json(route, 1)
    assert res.raw_request["dropped"][0]["replaced_by"] == "max_completion_tokens"


def test_anthropic_is_chat_only(anthropic_key: str) -> None:
    with pytest.raises(CapabilityError, match="chat only"):
        anthropic_provider(respx.Router(base_url=ANTHROPIC), interface="completion")
    p = anthropic_provider(respx.Router(base_url=ANTHROPIC))
    with pytest.raises(CapabilityError, match="no log-probs"):
        run(p.score(attempt("score", continuation=" x")))


# --------------------------------------------------------------------------- keys


def test_the_key_never_leaks(monkeypatch: pytest.MonkeyPatch,
                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("CASEKIT_TEST_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    masked = FAKE_KEY[:8] + "*" * 12 + FAKE_KEY[-4:]
    echo_401 = f"Incorrect API key provided: {FAKE_KEY} ({masked})."
    outputs: list[str] = []

    o_router = respx.Router(base_url=OPENAI)
    o_route = o_router.post("/chat/completions").mock(side_effect=[
        httpx.Response(200, json=chat_json(), headers={**HEADERS, "authorization": "Bearer x"}),
        httpx.Response(401, json=error_json(echo_401, "invalid_request_error"),
                       headers={"x-request-id": "req_401"}),
    ])
    op = openai_provider(o_router)
    outputs.append(run(op.generate(attempt())).model_dump_json())
    exc = failure(op.generate(attempt()))
    outputs += [str(exc), repr(exc.args), json.dumps(op.should_retry(exc).model_dump())]
    assert o_route.calls[0].request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    outputs.append(op.identity().model_dump_json())

    a_router = respx.Router(base_url=ANTHROPIC)
    a_route = a_router.post("/v1/messages").mock(side_effect=[
        httpx.Response(200, json=anthropic_json(), headers={**A_HEADERS, "x-api-key": FAKE_KEY}),
        httpx.Response(401, json=anthropic_error(echo_401, "authentication_error")),
    ])
    ap = anthropic_provider(a_router, api_key_env="CASEKIT_TEST_KEY")
    outputs.append(run(ap.generate(attempt())).model_dump_json())
    exc = failure(ap.generate(attempt()))
    outputs += [str(exc), repr(exc.args)]
    assert sent_key(a_route.calls[0].request) == FAKE_KEY
    ident = ap.identity()
    outputs.append(ident.model_dump_json())
    assert ident.identity["key_env"] == "CASEKIT_TEST_KEY"
    assert ident.identity["key_fingerprint"] == keys.key_fingerprint(FAKE_KEY)

    outputs.append(caplog.text)
    outputs += [r.getMessage() for r in caplog.records]
    assert any("HTTP" in r.getMessage() or "request" in r.getMessage().lower()
               for r in caplog.records)  # the SDKs did log at DEBUG
    blob = "\n".join(outputs)
    assert FAKE_KEY not in blob
    assert masked not in blob
    assert FAKE_KEY[-12:] not in blob


def test_key_fingerprint_format() -> None:
    fp = keys.key_fingerprint("sk-test")
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 8
    assert fp == "sha256:" + __import__("hashlib").sha256(b"sk-test").hexdigest()[:8]
    assert "sk-test" not in repr(keys.ApiKey("sk-test", "X", True))


def test_missing_keys_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ProviderUnavailable,
                       match="set OPENAI_API_KEY or name another variable with api_key_env"):
        OpenAIProvider(spec("openai", "gpt-4o"), Path("."))
    with pytest.raises(ProviderUnavailable,
                       match="set ANTHROPIC_API_KEY or name another variable with api_key_env"):
        AnthropicProvider(spec("anthropic", "claude-sonnet-4-5"), Path("."))
    with pytest.raises(ProviderUnavailable, match=r"no API key in \$MY_KEY; set MY_KEY"):
        OpenAIProvider(spec("openai", "gpt-4o", api_key_env="MY_KEY"), Path("."))
    with pytest.raises(ProviderUnavailable, match=r"\$MY_KEY"):
        OpenAICompatibleProvider(spec("openai-compatible", "x", base_url=SERVER,
                                      api_key_env="MY_KEY"), Path("."))


def test_compatible_server_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)  # must never go to a third-party server
    router = respx.Router(base_url=SERVER)
    route = router.post("/chat/completions").respond(200, json=chat_json(), headers=HEADERS)
    p = OpenAICompatibleProvider(spec("openai-compatible", "local-model", base_url=SERVER),
                                 Path("."), http_client=client_for(router))
    run(p.generate(attempt()))
    assert route.calls[0].request.headers["authorization"] == "Bearer casekit-no-key"
    info = p.identity().identity
    assert info["key_used"] is False and info["key_fingerprint"] is None
    assert info["key_env"] is None and info["alias_warning"] is None
    assert info["score_method"] == "server echo logprobs"


def test_compatible_server_needs_a_base_url() -> None:
    with pytest.raises(CasekitError, match="needs base_url"):
        OpenAICompatibleProvider(spec("openai-compatible", "m"), Path("."))


def test_unknown_params_are_rejected(openai_key: str, anthropic_key: str) -> None:
    with pytest.raises(CasekitError, match=r"params\.n_ctx: unknown openai provider param; "):
        OpenAIProvider(spec("openai", "gpt-4o", params={"n_ctx": 5}), Path("."))
    with pytest.raises(CasekitError, match="params.logprobs"):
        OpenAIProvider(spec("openai", "gpt-4o", params={"logprobs": 21}), Path("."))
    with pytest.raises(CasekitError, match=r"params\.extra_body: unknown anthropic provider param"):
        AnthropicProvider(spec("anthropic", "c", params={"extra_body": {}}), Path("."))


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize(("provider", "model", "alias"), [
    ("openai", "gpt-4o", True),
    ("openai", "gpt-4o-2024-08-06", False),
    ("openai", "gpt-4-0613", False),
    ("openai", "ft:gpt-4o-mini-2024-07-18:org::abc123", False),
    ("openai", "o3-mini", True),
    ("anthropic", "claude-sonnet-4-5", True),
    ("anthropic", "claude-3-5-sonnet-latest", True),
    ("anthropic", "claude-3-5-sonnet-20241022", False),
    ("anthropic", "claude-opus-4-1-20250805", False),
])
def test_alias_warning(openai_key: str, anthropic_key: str, provider: str, model: str,
                       alias: bool) -> None:
    cls = OpenAIProvider if provider == "openai" else AnthropicProvider
    info = cls(spec(provider, model), Path(".")).identity().identity
    assert info["alias_warning"] is alias
    assert (info["alias_message"] is not None) is alias


def test_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_KEY", "srv-key-123")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-casekit")
    p = OpenAICompatibleProvider(
        spec("openai-compatible", "smol", base_url="http://10.0.0.5:8000/v1/",
             api_key_env="SERVER_KEY", params={"timeout": 30, "max_connections": 3}), Path("."))
    ident = p.identity()
    assert ident.provider == "openai-compatible" and ident.model == "smol"
    assert ident.interface == "chat" and ident.can_score
    info = ident.identity
    assert info["endpoint"] == "http://10.0.0.5:8000/v1"
    assert info["key_fingerprint"] == keys.key_fingerprint("srv-key-123")
    assert info["key_env"] == "SERVER_KEY" and info["key_used"] is True
    assert info["sdk"].startswith("openai ") and info["timeout_s"] == 30.0
    assert info["organization"] == "org-casekit"
    assert p.max_connections == 3
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    assert OpenAIProvider(spec("openai", "gpt-4o"), Path(".")).max_connections == 8
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    info = AnthropicProvider(spec("anthropic", "claude-3-5-sonnet-20241022"),
                             Path(".")).identity().identity
    assert info["endpoint"] == ANTHROPIC and info["sdk"].startswith("anthropic ")
    assert info["api"] == "messages"


def test_base_url_env_never_redirects(openai_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://evil.example/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://evil.example")
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    router = respx.Router(base_url=OPENAI)
    route = router.post("/chat/completions").respond(200, json=chat_json(), headers=HEADERS)
    run(openai_provider(router).generate(attempt()))
    assert route.called
    a_router = respx.Router(base_url=ANTHROPIC)
    a_route = a_router.post("/v1/messages").respond(200, json=anthropic_json(), headers=A_HEADERS)
    run(anthropic_provider(a_router).generate(attempt()))
    assert a_route.called


# --------------------------------------------------------------------------- helpers


def test_retry_after_parsing() -> None:
    h = httpx2.Headers
    assert api_common.retry_after_seconds(h({"retry-after": "3"})) == 3.0
    assert api_common.retry_after_seconds(h({"retry-after": "0.5"})) == 0.5
    assert api_common.retry_after_seconds(h({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert api_common.retry_after_seconds(h({"date": DATE,
                                       "retry-after": "Tue, 03 Jun 2025 12:01:00 GMT"})) == 60.0
    assert api_common.retry_after_seconds(h({"retry-after": "99999"})) == api_common.MAX_RETRY_AFTER
    assert api_common.retry_after_seconds(h({"retry-after": "-4"})) == 0.0
    assert api_common.retry_after_seconds(h({"retry-after": "soon"})) is None
    assert api_common.retry_after_seconds(h({})) is None


def test_recorded_headers_are_a_whitelist() -> None:
    out = api_common.recorded_headers(httpx2.Headers({
        "Date": DATE, "Authorization": "Bearer k", "x-api-key": "k", "Set-Cookie": "a=b",
        "X-Request-Id": "r", "request-id": "r2", "openai-processing-ms": "5",
        "x-ratelimit-limit-tokens": "1", "anthropic-ratelimit-tokens-remaining": "2",
        "Retry-After": "1", "cf-ray": "x"}))
    assert out == {"date": DATE, "x-request-id": "r", "request-id": "r2",
                   "openai-processing-ms": "5", "x-ratelimit-limit-tokens": "1",
                   "anthropic-ratelimit-tokens-remaining": "2", "retry-after": "1"}


def test_unsupported_parameter_detection() -> None:
    f = api_common.unsupported_parameter
    assert f(TEMPERATURE_400, ["temperature", "top_p"]) == "temperature"
    assert f("Unsupported value: 'temperature' does not support 0 with this model. Only the "
             "default (1) value is supported.", ["temperature"]) == "temperature"
    assert f("temperature: must be between 0 and 1", ["temperature"]) is None
    assert f(PREFILL_400, ["temperature"], prefill=True) == "assistant_prefill"
    assert f(PREFILL_400, ["temperature"], prefill=False) is None
    assert f("max_tokens: 100000 > 8192, the maximum allowed", ["max_tokens"]) is None


# --------------------------------------------------------------------------- scoring


def _completion(tokens: list[str], values: list[float | None], tops: list[dict | None],
                text: str) -> dict:
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {"id": "cmpl-x", "object": "text_completion", "created": 1, "model": "srv-model",
            "choices": [{"index": 0, "text": text, "finish_reason": "length",
                         "logprobs": {"tokens": tokens, "token_logprobs": values,
                                      "top_logprobs": tops, "text_offset": offsets}}],
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1,
                      "total_tokens": len(tokens) + 1}}


PROBE = "The capital of France is"
PROBE_TOKENS = ["The", " capital", " of", " France", " is", " Paris"]


def fake_server(shifted: bool) -> tuple[respx.Router, respx.Route]:
    """A Completions server: greedy ' Paris' after the probe (log-prob -0.25); echo log-probs
    aligned, or shifted by one token like llama-cpp-python for models without BOS."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompt = body["prompt"]
        if not body.get("echo"):
            assert prompt == PROBE
            return httpx.Response(200, json=_completion([" Paris"], [-0.25],
                                                        [{" Paris": -0.25}], " Paris"),
                                  headers={"x-request-id": "gen", "date": DATE})
        if prompt == PROBE + " Paris":
            if shifted:
                values = [None, -9.6, -10.5, -11.2, -11.8, -8.7]
                tops = [None, {" of": -0.4}, {" the": -2.0}, {" is": -0.4},
                        {" Paris": -0.25, " is": -11.8}, {".": -0.39, " Paris": -8.7}]
            else:
                values = [None, -9.6, -0.4, -2.0, -0.4, -0.25]
                tops = [None, {" of": -0.2}, {" of": -0.4}, {" the": -1.0}, {" is": -0.4},
                        {" Paris": -0.25}]
            return httpx.Response(200, json=_completion(PROBE_TOKENS, values, tops,
                                                        PROBE + " Paris."),
                                  headers={"x-request-id": "echo", "date": DATE})
        assert prompt == "Hello world again and again"
        return httpx.Response(200, headers={"x-request-id": "score-1", "date": DATE},
                              json=_completion(
            ["Hello", " world", " again", " and", " again", "!"],
            [None, -3.0, -1.5, -0.7, -0.2, -0.9],
            [None, {" world": -3.0}, {" again": -1.5}, {" or": -0.5, " and": -0.7},
             {" again": -0.2}, {"!": -0.9}],
            "Hello world again and again!"))

    router = respx.Router(base_url=SERVER)
    route = router.post("/completions").mock(side_effect=handler)
    return router, route


def compatible(router: respx.Router, **params: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        spec("openai-compatible", "srv-model", base_url=SERVER, interface="completion",
             params=params), Path("."), http_client=client_for(router))


def test_score_with_aligned_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    router, route = fake_server(shifted=False)
    p = compatible(router)
    att = attempt("score", prompt="Hello world", continuation=" again and again")
    res = run(p.score(att))
    assert [s.token for s in res.token_scores] == [" again", " and", " again"]
    assert [s.logprob for s in res.token_scores] == [-1.5, -0.7, -0.2]
    assert [s.is_top for s in res.token_scores] == [True, False, True]
    assert res.token_scores[1].top_logprob == -0.5
    assert res.raw_response["boundary"] == "clean"
    assert res.raw_response["alignment_check"]["status"] == "verified"
    assert res.raw_request["score_method"] == "server echo logprobs"
    body = res.raw_request["body"]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1
    assert res.request_id == "score-1" and res.returned_model == "srv-model"
    assert route.call_count == 3  # probe (2) + score
    run(p.score(att))
    assert route.call_count == 4  # the check runs once per provider


def test_score_refuses_a_shifted_server() -> None:
    router, route = fake_server(shifted=True)
    p = compatible(router)
    att = attempt("score", prompt="Hello world", continuation=" again and again")
    exc = failure(p.score(att))
    assert isinstance(exc, CapabilityError)
    assert "shifted by one token" in str(exc) and "#1983" in str(exc)
    assert p.should_retry(exc) == RetryDecision(action="no")
    n = route.call_count
    assert isinstance(failure(p.score(att)), CapabilityError)
    assert route.call_count == n  # the verdict is remembered


def test_score_alignment_trust_skips_the_check() -> None:
    router, route = fake_server(shifted=True)
    p = compatible(router, score_alignment="trust")
    res = run(p.score(attempt("score", prompt="Hello world", continuation=" again and again")))
    assert res.raw_response["alignment_check"]["status"] == "trusted"
    assert route.call_count == 1


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_openai_sends_its_sampling_modifiers_neutral_and_records_them(openai_key: str,
                                                                      mode: str) -> None:
    """Issue 17 defect 6: a greedy request states the whole decoding (top_p 1.0, no
    frequency or presence penalty), and the record shows what was sent."""
    router = respx.Router(base_url=OPENAI)
    path = "/chat/completions" if mode == "chat" else "/completions"
    payload = chat_json() if mode == "chat" else {
        "id": "c", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": " on", "finish_reason": "length", "logprobs": None}]}
    route = router.post(path).respond(200, json=payload, headers=HEADERS)
    p = openai_provider(router)
    res = run(p.generate(attempt(mode, decoding=Decoding(temperature=0.0, max_tokens=48))))
    body = sent_json(route)
    assert body["temperature"] == 0.0 and body["max_tokens"] == 48 and body["top_p"] == 1.0
    assert body["frequency_penalty"] == 0.0 and body["presence_penalty"] == 0.0
    assert res.raw_request["body"] == body


def test_anthropic_sends_the_decoding_it_is_given_and_records_it(anthropic_key: str) -> None:
    """Greedy: temperature 0 stated, nothing else (the API applies no top_p or top_k unless
    given, and has no penalties). Sampled: top_p and top_k as the decoding gives them (a model
    that refuses temperature with top_p has top_p dropped, and the drop recorded:
    test_anthropic_temperature_and_top_p_conflict_drops_top_p)."""
    router = respx.Router(base_url=ANTHROPIC)
    route = router.post("/v1/messages").respond(200, json=anthropic_json(), headers=HEADERS)
    p = anthropic_provider(router)
    res = run(p.generate(attempt(decoding=Decoding(temperature=0.0, max_tokens=48))))
    body = sent_json(route)
    assert body["temperature"] == 0.0 and body["max_tokens"] == 48
    assert "top_p" not in body and "top_k" not in body
    assert res.raw_request["body"] == body
    res = run(p.generate(attempt(decoding=Decoding(temperature=0.7, max_tokens=48, top_p=0.9,
                                                   top_k=40))))
    body = sent_json(route)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.9, 40)
    assert res.raw_request["body"] == body


def test_local_provider_sends_every_sampling_parameter_explicitly() -> None:
    """The embedded llama.cpp model gets temperature, top_k, top_p, min_p, typical_p and the
    penalties stated (llama-cpp-python's own defaults are repeat_penalty 1.1, top_k 40, top_p
    0.95, min_p 0.05), and the record's kwargs are these (LocalProvider._generate_sync records
    the kwargs it calls the model with)."""
    from casekit.providers.local import LocalProvider

    greedy = LocalProvider._sampling(None, attempt(decoding=Decoding(max_tokens=48)))  # type: ignore[arg-type]
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == 1 and greedy["top_p"] == 1.0
    assert greedy["min_p"] == 0.0 and greedy["typical_p"] == 1.0
    assert greedy["repeat_penalty"] == 1.0
    assert greedy["frequency_penalty"] == 0.0 and greedy["presence_penalty"] == 0.0
    assert greedy["max_tokens"] == 48
    sampled = LocalProvider._sampling(None, attempt(decoding=Decoding(  # type: ignore[arg-type]
        temperature=0.8, top_p=0.9, top_k=50, max_tokens=48)))
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.8, 0.9, 50)
    assert sampled["repeat_penalty"] == 1.0 and sampled["min_p"] == 0.0
