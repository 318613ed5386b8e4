"""``provider: anthropic``: Claude models through the official SDK's Messages API.

Key from ``$ANTHROPIC_API_KEY`` or the variable named by ``api_key_env``; it is passed to
``anthropic.AsyncAnthropic`` explicitly, so the SDK consults no other credential source
(profiles, ``ANTHROPIC_AUTH_TOKEN``). ``base_url`` is explicit too (default
https://api.anthropic.com; ``$ANTHROPIC_BASE_URL`` is ignored), and the SDK never retries
(``max_retries=0``): the runner retries and records every try.

Requests: system messages go in ``system`` (joined by a blank line), the others in
``messages``; a trailing assistant message is a prefill that the model continues (Anthropic
rejects a prefill ending in whitespace, so trailing whitespace is removed, and the record
says so). ``temperature``, ``top_p`` and ``top_k`` are sent in the request body (SDK 2.x no
longer types them). Anthropic has no ``seed``: a seed in the attempt is listed under
``raw_request.not_sent``.

Recorded per attempt: the body sent, the HTTP body received verbatim with its SHA-256, the
whitelisted headers (``Date``, ``request-id``, ``anthropic-ratelimit-*``...), the model id
the API returned, the request id, usage and ``stop_reason`` (``refusal`` -> ``refusal=True``).

Some current models reject ``temperature`` (or ``temperature`` together with ``top_p``) or an
assistant prefill with HTTP 400. With ``params.allow_drop_unsupported: true`` the request is
sent once more without the rejected parameter (for a prefill: without the trailing assistant
message) and ``raw_request.dropped`` records what was dropped, the API's reason and the
rejected request's id; otherwise UnsupportedParameter (no retry) says how to fix the case.

Scoring is not possible: the Messages API returns no log-probs.

**Message Batches** (see ``casekit.run.batch``): ``{"custom_id": attempt id, "params": the body
``generate`` would send}`` per attempt; results arrive in any order and are matched on
``custom_id``: ``succeeded`` -> a result built like ``generate``'s (``raw_request.batch_id`` /
``custom_id`` added, ``request_id`` None: batch results carry none), ``errored`` /
``canceled`` / ``expired`` -> an error saying so. No parameter is dropped in a batch.

``params`` (all optional): ``timeout`` (seconds, default 120), ``max_connections`` (default 8),
``allow_drop_unsupported`` (default false).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from casekit.case import ModelSpec
from casekit.errors import CasekitError, ProviderUnavailable
from casekit.provenance import strip_credentials
from casekit.providers.api_common import (
    MalformedResponseError,
    UnsupportedParameter,
    alias_check,
    api_error_message,
    body_sha256,
    classify_sdk_failure,
    decode_body,
    recorded_headers,
    requests_sha256,
    response_content,
    result_lines,
    sanitize_api_error,
    sdk_version,
    unsupported_parameter,
)
from casekit.providers.base import (
    BatchHandle,
    BatchStatus,
    CapabilityError,
    Provider,
    RetryDecision,
)
from casekit.providers.keys import ApiKey, load_key, protect_logs, redact, redact_error_text
from casekit.records import AttemptError, ModelIdentity, PlannedAttempt, ProviderResult

log = logging.getLogger(__name__)

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 8
ALLOWED_PARAMS = ("timeout", "max_connections", "allow_drop_unsupported")
_DROPPABLE = ("temperature", "top_p", "top_k", "stop_sequences")

# Message Batches (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing): at
# most 100,000 requests or 256 MB per batch; results within 24 h, in any order.
BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 240 * 1024 * 1024
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ErrorKind = Literal["no_retry", "transient", "rate_limit", "unknown"]
_ERROR_KIND: dict[str, ErrorKind] = {
    "invalid_request_error": "no_retry", "authentication_error": "no_retry",
    "permission_error": "no_retry", "not_found_error": "no_retry",
    "request_too_large": "no_retry", "rate_limit_error": "rate_limit",
    "api_error": "transient", "overloaded_error": "transient", "timeout_error": "transient"}


def _anthropic() -> Any:
    try:
        import anthropic
    except ImportError as exc:
        raise ProviderUnavailable(
            f"the anthropic SDK is not installed ({exc}); run: pip install anthropic"
        ) from exc
    return anthropic


@functools.cache
def _sdk_kwargs() -> frozenset[str]:
    """Body fields ``messages.create`` takes as keyword arguments in the installed SDK;
    the others go in ``extra_body``."""
    from anthropic.resources.messages import AsyncMessages

    params = inspect.signature(AsyncMessages.create).parameters
    return frozenset(p for p in params if p != "self" and not p.startswith("extra_")
                     and p != "timeout")


class AnthropicProvider(Provider):
    """Claude through ``anthropic.AsyncAnthropic`` (Messages API, chat only)."""

    name: ClassVar[str] = "anthropic"
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec, base_dir: Path, *, http_client: Any = None) -> None:
        """``http_client``: an ``httpx2.AsyncClient`` for the SDK (tests inject a mock
        transport); default: the SDK's own client."""
        super().__init__(spec, base_dir)
        unknown = sorted(set(spec.params) - set(ALLOWED_PARAMS))
        if unknown:
            raise CasekitError(
                f"model {spec.id!r}: unknown anthropic provider params {unknown}; allowed keys: "
                f"{', '.join(ALLOWED_PARAMS)}"
            )
        if self.interface != "chat":
            raise CapabilityError(
                f"model {spec.id!r}: Anthropic's Messages API is chat only; use interface: chat "
                "(a trailing assistant message is continued as a prefill)"
            )
        self.base_url = (spec.base_url or ANTHROPIC_BASE_URL).rstrip("/")
        self.timeout = self._number("timeout", DEFAULT_TIMEOUT, 1.0, integer=False)
        self.max_connections = int(self._number("max_connections", DEFAULT_MAX_CONNECTIONS, 1,
                                                integer=True))
        allow = spec.params.get("allow_drop_unsupported", False)
        if not isinstance(allow, bool):
            raise CasekitError(f"model {spec.id!r}: params.allow_drop_unsupported must be true "
                               f"or false (got {allow!r})")
        self.allow_drop = allow
        self.key: ApiKey = load_key(model_id=spec.id, provider=self.name,
                                    api_key_env=spec.api_key_env,
                                    default_env="ANTHROPIC_API_KEY", required=True)
        protect_logs(self.key)
        self.alias_warning, self.alias_message = alias_check(self.name, spec.model)
        if self.alias_warning:
            log.warning("model %s: %s", spec.id, self.alias_message)
        self._http_client = http_client
        self._client_obj: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        _anthropic()  # import the SDK here, not on the first request inside the event loop

    def _number(self, key: str, default: float, minimum: float, *, integer: bool) -> float:
        value = self.spec.params.get(key, default)
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value < minimum or not math.isfinite(value):
            kind = "a whole number" if integer else "a number"
            raise CasekitError(f"model {self.spec.id!r}: params.{key} must be {kind} >= "
                               f"{minimum:g} (got {value!r})")
        return float(value)

    # ----------------------------------------------------------------- the SDK client

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client_obj is None or self._client_loop is not loop:
            anthropic = _anthropic()
            kwargs: dict[str, Any] = {"api_key": self.key.value, "base_url": self.base_url,
                                      "max_retries": 0, "timeout": self.timeout}
            if self._http_client is not None:
                kwargs["http_client"] = self._http_client
            self._client_obj = anthropic.AsyncAnthropic(**kwargs)
            self._client_loop = loop
        return self._client_obj

    def close(self) -> None:
        client, self._client_obj = self._client_obj, None
        loop, self._client_loop = self._client_loop, None
        if client is None or self._http_client is not None:
            return
        if loop is not None and not loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run(client.close())

    # ----------------------------------------------------------------- identity

    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            model_id=self.spec.id, provider=self.name, model=self.spec.model,
            interface=self.interface, can_score=False,
            identity={
                "endpoint": strip_credentials(self.base_url),
                "api": "messages",
                "key_env": self.key.env,
                "key_fingerprint": self.key.fingerprint,
                "key_used": True,
                "sdk": sdk_version("anthropic"),
                "sdk_max_retries": 0,
                "timeout_s": self.timeout,
                "max_connections": self.max_connections,
                "alias_warning": self.alias_warning,
                "alias_message": self.alias_message,
                "allow_drop_unsupported": self.allow_drop,
                "custom_headers_from_env": bool(os.environ.get("ANTHROPIC_CUSTOM_HEADERS")),
            },
        )

    # ----------------------------------------------------------------- requests

    def _body(self, attempt: PlannedAttempt) -> tuple[dict[str, Any], dict[str, Any],
                                                     list[str]]:
        if attempt.mode != "chat":
            raise CapabilityError(
                f"attempt {attempt.id} is a {attempt.mode} attempt; provider anthropic runs chat "
                "attempts only (no completion endpoint, no log-probs)"
            )
        if not attempt.messages:
            raise CasekitError(f"chat attempt {attempt.id} has no messages")
        d = attempt.decoding
        notes: list[str] = []
        system = [m.content for m in attempt.messages if m.role == "system"]
        messages = [{"role": m.role, "content": m.content} for m in attempt.messages
                    if m.role != "system"]
        if messages and messages[-1]["role"] == "assistant":
            prefill = messages[-1]["content"]
            if prefill != prefill.rstrip():
                notes.append("trailing whitespace removed from the assistant prefill (the API "
                             "rejects a final assistant message that ends in whitespace)")
                if prefill.rstrip():
                    messages[-1] = {"role": "assistant", "content": prefill.rstrip()}
                else:
                    messages.pop()
                    notes.append("the prefill was only whitespace and was not sent")
        body: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": int(d.max_tokens),
            "messages": messages,
        }
        if system:
            body["system"] = "\n\n".join(system)
        body["temperature"] = float(d.temperature)
        if d.top_p is not None:
            body["top_p"] = float(d.top_p)
        if d.top_k is not None:
            body["top_k"] = int(d.top_k)
        if d.stop:
            body["stop_sequences"] = list(d.stop)
        not_sent = {"seed": "Anthropic's API has no seed parameter"} if d.seed is not None else {}
        return body, not_sent, notes

    async def _post(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        client = self._client()
        names = _sdk_kwargs()
        kwargs = {k: v for k, v in body.items() if k in names}
        extra = {k: v for k, v in body.items() if k not in names}
        if extra:
            kwargs["extra_body"] = extra
        anthropic = _anthropic()
        try:
            raw = await client.messages.with_raw_response.create(**kwargs)
        except anthropic.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise
        http = raw.http_response
        content = await response_content(http)
        return raw, decode_body(content, http.status_code, str(http.url))

    async def _send(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any],
                                                        list[dict[str, Any]]]:
        anthropic = _anthropic()
        dropped: list[dict[str, Any]] = []
        while True:
            try:
                raw, data = await self._post(body)
                return raw, data, body, dropped
            except anthropic.BadRequestError as exc:
                message = api_error_message(exc)
                prefill = bool(body["messages"]) and body["messages"][-1]["role"] == "assistant"
                param = unsupported_parameter(message, [k for k in _DROPPABLE if k in body],
                                              prefill=prefill)
                if param is None:
                    raise
                if not self.allow_drop or any(d["param"] == param for d in dropped):
                    raise UnsupportedParameter(self._unsupported_message(param, exc)) from exc
                body = dict(body)
                if param == "assistant_prefill":
                    body["messages"] = list(body["messages"])
                    value: Any = body["messages"].pop()["content"]
                else:
                    value = body.pop(param)
                reason = redact_error_text(message, self.key.secrets())
                dropped.append({"param": param, "value": value, "reason": f"HTTP 400: {reason}",
                                "request_id": getattr(exc, "request_id", None)})
                log.warning("model %s rejected %s (%s); retrying once without it, as "
                            "params.allow_drop_unsupported allows", self.spec.id, param,
                            reason[:200])

    def _unsupported_message(self, param: str, exc: BaseException) -> str:
        if param == "assistant_prefill":
            what, fix = "an assistant prefill", "use a strategy without prefill for this model"
        else:
            what, fix = f"the parameter {param!r}", f"remove {param} from the case's decoding"
        return (f"model {self.spec.model!r} rejected {what} ({exc}); {fix}, or set "
                "params.allow_drop_unsupported: true to retry without it (recorded in "
                "raw_request.dropped)")

    # ----------------------------------------------------------------- generate

    async def generate(self, attempt: PlannedAttempt) -> ProviderResult:
        if attempt.mode == "score":
            return await self.score(attempt)
        body, not_sent, notes = self._body(attempt)
        raw, data, sent, dropped = await self._send(body)
        http = raw.http_response
        if not isinstance(data.get("content"), list):
            raise MalformedResponseError(
                f"HTTP {http.status_code} from {strip_credentials(str(http.url))} without "
                f"content blocks ({body_sha256(bytes(http.content))})"
            )
        headers = http.headers
        return self._build_result(
            data,
            request_id=headers.get("request-id") or getattr(raw, "request_id", None),
            server_date=headers.get("date"),
            request=self._request_record(sent, not_sent, notes, dropped),
            response={
                "status": http.status_code,
                "http_version": getattr(http, "http_version", None),
                "headers": recorded_headers(headers),
                "body": data,
                "body_sha256": body_sha256(bytes(http.content)),
            },
        )

    def _request_record(self, sent: dict[str, Any], not_sent: dict[str, Any],
                        notes: list[str], dropped: list[dict[str, Any]]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "api": "messages",
            "method": "POST",
            "url": strip_credentials(self.base_url) + "/v1/messages",
            "body": sent,
            "timeout_s": self.timeout,
            "sdk": sdk_version("anthropic"),
        }
        if not_sent:
            request["not_sent"] = not_sent
        if notes:
            request["notes"] = notes
        if dropped:
            request["dropped"] = dropped
        return request

    def _build_result(self, data: dict[str, Any], *, request_id: str | None,
                      server_date: str | None, request: dict[str, Any],
                      response: dict[str, Any]) -> ProviderResult:
        """A ProviderResult from a Message (a synchronous response or a batch result): the text
        blocks, stop_reason (``refusal`` -> refusal), returned model id, usage; keys removed."""
        content = data.get("content")
        text = "".join(str(b.get("text", "")) for b in content or []
                       if isinstance(b, dict) and b.get("type") == "text")
        stop_reason = data.get("stop_reason")
        secrets = self.key.secrets()
        usage = data.get("usage")
        return ProviderResult(
            text=redact(text, secrets),
            finish_reason=stop_reason,
            refusal=stop_reason == "refusal",
            returned_model=data.get("model"),
            request_id=request_id,
            server_date=server_date,
            usage=redact(usage, secrets) if isinstance(usage, dict) else {},
            raw_request=redact(request, secrets),
            raw_response=redact(response, secrets),
        )

    # ----------------------------------------------------------------- batches

    supports_batch: ClassVar[bool] = True
    batch_max_requests: ClassVar[int] = BATCH_MAX_REQUESTS
    batch_max_bytes: ClassVar[int] = BATCH_MAX_BYTES

    def batch_requests(self, attempts: Sequence[PlannedAttempt]) -> list[dict[str, Any]]:
        """``{"custom_id": attempt id, "params": the body generate would send}`` per attempt
        (same builder). No parameter is dropped in a batch: a rejected one fails its request,
        recorded as an error."""
        out = []
        for a in attempts:
            if not _CUSTOM_ID.match(a.id):
                raise CapabilityError(f"attempt id {a.id!r} is not a valid Message Batches "
                                      "custom_id (1-64 of A-Z a-z 0-9 _ -)")
            out.append({"custom_id": a.id, "params": self._body(a)[0]})
        return out

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> tuple[Any, bytes]:
        anthropic = _anthropic()
        try:
            raw = await method(*args, **kwargs)
        except anthropic.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise
        return raw, await response_content(raw.http_response)

    async def _batch_object(self, batch_id: str) -> tuple[Any, dict[str, Any]]:
        raw, content = await self._call(
            self._client().messages.batches.with_raw_response.retrieve, batch_id)
        http = raw.http_response
        return http, decode_body(content, http.status_code, str(http.url))

    async def submit_batch(self, attempts: Sequence[PlannedAttempt]) -> BatchHandle:
        entries = self.batch_requests(attempts)
        raw, content = await self._call(
            self._client().messages.batches.with_raw_response.create, requests=entries)
        http = raw.http_response
        data = decode_body(content, http.status_code, str(http.url))
        secrets = self.key.secrets()
        info = {
            "api_base": strip_credentials(self.base_url),
            "endpoint": "/v1/messages/batches",
            "request_id": http.headers.get("request-id"),
            "server_date": http.headers.get("date"),
            "expires_at": data.get("expires_at"),
            "sdk": sdk_version("anthropic"),
        }
        return BatchHandle(batch_id=str(data["id"]), custom_ids=[a.id for a in attempts],
                           request_sha256=requests_sha256(entries),
                           status=str(data.get("processing_status")),
                           info=redact(info, secrets), raw=redact(data, secrets))

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        _, data = await self._batch_object(batch_id)
        status = str(data.get("processing_status"))
        counts = data.get("request_counts") or {}
        return BatchStatus(batch_id=batch_id, status=status, done=status == "ended",
                           counts={k: int(v) for k, v in counts.items() if isinstance(v, int)},
                           raw=redact(data, self.key.secrets()))

    async def collect_batch(self, batch_id: str, attempts: Sequence[PlannedAttempt] = (),
                            ) -> dict[str, ProviderResult | AttemptError]:
        """Read the results stream (JSONL, in any order) and match each line on custom_id:
        ``succeeded`` -> a result built like :meth:`generate`'s; ``errored``, ``canceled``,
        ``expired`` -> an error saying so."""
        raw, content = await self._call(
            self._client().messages.batches.with_raw_response.results, batch_id)
        http = raw.http_response
        by_id = {a.id: a for a in attempts}
        source = {"batch_id": batch_id, "results_sha256": body_sha256(content),
                  "results_bytes": len(content)}
        return {cid: self._batch_line_result(entry, line, source, http, by_id.get(cid))
                for cid, entry, line in result_lines(content, f"batch {batch_id}")}

    def _batch_line_result(self, entry: dict[str, Any], line: bytes, source: dict[str, Any],
                           http: Any, attempt: PlannedAttempt | None,
                           ) -> ProviderResult | AttemptError:
        batch_id, cid = source["batch_id"], entry["custom_id"]
        secrets = self.key.secrets()
        result = entry.get("result") if isinstance(entry.get("result"), dict) else {}
        assert isinstance(result, dict)
        kind = result.get("type")
        message = result.get("message")
        if kind == "succeeded" and isinstance(message, dict) and isinstance(
                message.get("content"), list):
            if attempt is not None:
                sent, not_sent, notes = self._body(attempt)
                request = self._request_record(sent, not_sent, notes, [])
            else:
                request = {"api": "messages", "note": "the attempt was not given: body not "
                           "rebuilt"}
            request.update({"batch_id": batch_id, "custom_id": cid,
                            "batch_endpoint": "/v1/messages/batches"})
            return self._build_result(
                message, request_id=None, server_date=http.headers.get("date"),
                request=request,
                response={
                    "status": http.status_code,
                    "via": "batch",
                    "http_version": getattr(http, "http_version", None),
                    "headers": recorded_headers(http.headers),
                    "body": message,
                    "result_type": kind,
                    "line_sha256": body_sha256(line),
                    **source,
                })
        if kind == "succeeded":
            return AttemptError(kind="transient", type="MalformedResponseError",
                                message=f"batch {batch_id}: the succeeded result of {cid} has "
                                f"no message content ({body_sha256(line)})")
        if kind == "errored":
            err = result.get("error") if isinstance(result.get("error"), dict) else {}
            assert isinstance(err, dict)
            inner = err.get("error") if isinstance(err.get("error"), dict) else err
            assert isinstance(inner, dict)
            etype = str(inner.get("type") or "error")
            rid = err.get("request_id")
            text = (f"batch {batch_id}: request {cid} errored ({etype}"
                    + (f"; request id {rid}" if rid else "") + f"): {inner.get('message')}")
            return AttemptError(kind=_ERROR_KIND.get(etype, "unknown"),
                                type="BatchRequestError",
                                message=redact_error_text(text, secrets)[:2000])
        if kind == "canceled":
            return AttemptError(kind="transient", type="BatchRequestCanceled",
                                message=f"batch {batch_id}: request {cid} was canceled before "
                                "it was processed (the batch was canceled)")
        if kind == "expired":
            return AttemptError(kind="transient", type="BatchRequestExpired",
                                message=f"batch {batch_id}: request {cid} expired: the batch "
                                "reached its 24-hour limit before processing it")
        return AttemptError(kind="unknown", type="BatchRequestError",
                            message=redact_error_text(f"batch {batch_id}: request {cid} has an "
                                                      f"unknown result type {kind!r}",
                                                      secrets)[:2000])

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        raise CapabilityError(
            "provider 'anthropic' cannot score continuations: the Messages API returns no "
            "log-probs; use provider: local for teacher-forced strategies"
        )

    # ----------------------------------------------------------------- failures

    def should_retry(self, exc: BaseException) -> RetryDecision:
        """429 -> rate_limit (retry-after-ms / Retry-After, seconds or HTTP date); 408, 409,
        5xx including 529 (overloaded), connection errors, timeouts and a 200 whose body is not
        JSON -> transient; other 4xx, capability and configuration errors -> no."""
        try:
            anthropic = _anthropic()
        except ProviderUnavailable:
            anthropic = None
        return classify_sdk_failure(exc, anthropic)
