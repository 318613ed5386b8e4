"""``provider: anthropic``: Claude models through the official SDK's Messages API.

What is sent and recorded, and why (prefill handling, ``seed`` not sent, dropped parameters,
Message Batches), is in docs/providers.md; this module builds Messages bodies and reads
Messages and batch results.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from casekit.errors import CasekitError
from casekit.provenance import strip_credentials
from casekit.providers.api import ApiParams, ApiProvider
from casekit.providers.api_common import (
    MalformedResponseError,
    body_sha256,
    decode_body,
    recorded_headers,
    requests_sha256,
    response_content,
    result_lines,
    sdk_version,
)
from casekit.providers.base import BatchHandle, CapabilityError
from casekit.providers.params import ProviderParams
from casekit.records import AttemptError, ModelIdentity, PlannedAttempt, ProviderResult

log = logging.getLogger(__name__)

ANTHROPIC_BASE_URL = "https://api.anthropic.com"

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


@functools.cache
def _sdk_kwargs() -> frozenset[str]:
    """Body fields ``messages.create`` takes as keyword arguments in the installed SDK;
    the others go in ``extra_body``."""
    from anthropic.resources.messages import AsyncMessages

    params = inspect.signature(AsyncMessages.create).parameters
    return frozenset(p for p in params if p != "self" and not p.startswith("extra_")
                     and p != "timeout")


class AnthropicParams(ApiParams):
    """``provider: anthropic`` params: those every API provider takes."""


class AnthropicProvider(ApiProvider):
    """Claude through ``anthropic.AsyncAnthropic`` (Messages API, chat only)."""

    name: ClassVar[str] = "anthropic"
    Params: ClassVar[type[ProviderParams]] = AnthropicParams
    params: AnthropicParams
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = False
    sdk_module: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = ANTHROPIC_BASE_URL
    default_key_env: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    key_required: ClassVar[bool] = True
    droppable: ClassVar[tuple[str, ...]] = ("temperature", "top_p", "top_k", "stop_sequences")
    custom_headers_env: ClassVar[str] = "ANTHROPIC_CUSTOM_HEADERS"
    batch_status_key: ClassVar[str] = "processing_status"
    batch_done: ClassVar[frozenset[str]] = frozenset({"ended"})

    def _check_interface(self) -> None:
        if self.interface != "chat":
            raise CapabilityError(
                f"model {self.spec.id!r}: Anthropic's Messages API is chat only; use interface: "
                "chat (a trailing assistant message is continued as a prefill)"
            )

    def _client_class(self) -> Any:
        return self._sdk().AsyncAnthropic

    # ----------------------------------------------------------------- identity

    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            model_id=self.spec.id, provider=self.name, model=self.spec.model,
            interface=self.interface, can_score=False,
            identity={
                **self._api_identity(),
                "api": "messages",
                "allow_drop_unsupported": self.allow_drop,
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

    async def _post(self, api: str, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        client = self._client()
        names = _sdk_kwargs()
        kwargs = {k: v for k, v in body.items() if k in names}
        extra = {k: v for k, v in body.items() if k not in names}
        if extra:
            kwargs["extra_body"] = extra
        with self._clean_errors():
            raw = await client.messages.with_raw_response.create(**kwargs)
        http = raw.http_response
        content = await response_content(http)
        return raw, decode_body(content, http.status_code, str(http.url))

    def _ends_with_prefill(self, body: dict[str, Any]) -> bool:
        return bool(body["messages"]) and body["messages"][-1]["role"] == "assistant"

    def _without(self, body: dict[str, Any], param: str) -> tuple[dict[str, Any], Any,
                                                                  dict[str, Any]]:
        """A rejected prefill is the trailing assistant message, sent no more."""
        if param != "assistant_prefill":
            return super()._without(body, param)
        body = dict(body)
        body["messages"] = list(body["messages"])
        return body, body["messages"].pop()["content"], {}

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
        raw, data, sent, dropped = await self._send("messages", body)
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
            response=self._response_record(http, data),
        )

    def _request_record(self, sent: dict[str, Any], not_sent: dict[str, Any],
                        notes: list[str], dropped: list[dict[str, Any]]) -> dict[str, Any]:
        return self._api_request_record("messages", "/v1/messages", sent, not_sent, notes,
                                        dropped)

    def _build_result(self, data: dict[str, Any], *, request_id: str | None,
                      server_date: str | None, request: dict[str, Any],
                      response: dict[str, Any]) -> ProviderResult:
        """A ProviderResult from a Message (a synchronous response or a batch result): the text
        blocks, stop_reason (``refusal`` -> refusal), returned model id, usage; keys removed."""
        content = data.get("content")
        text = "".join(str(b.get("text", "")) for b in content or []
                       if isinstance(b, dict) and b.get("type") == "text")
        stop_reason = data.get("stop_reason")
        return self._provider_result(
            text, data, request_id=request_id, server_date=server_date, request=request,
            response=response, finish_reason=stop_reason, refusal=stop_reason == "refusal")

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
        with self._clean_errors():
            raw = await method(*args, **kwargs)
        return raw, await response_content(raw.http_response)

    async def _retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        raw, content = await self._call(
            self._client().messages.batches.with_raw_response.retrieve, batch_id)
        http = raw.http_response
        return decode_body(content, http.status_code, str(http.url))

    async def submit_batch(self, attempts: Sequence[PlannedAttempt]) -> BatchHandle:
        entries = self.batch_requests(attempts)
        raw, content = await self._call(
            self._client().messages.batches.with_raw_response.create, requests=entries)
        http = raw.http_response
        data = decode_body(content, http.status_code, str(http.url))
        info = {
            "api_base": strip_credentials(self.base_url),
            "endpoint": "/v1/messages/batches",
            "request_id": http.headers.get("request-id"),
            "server_date": http.headers.get("date"),
            "expires_at": data.get("expires_at"),
            "sdk": sdk_version("anthropic"),
        }
        return self._batch_handle(data, attempts, requests_sha256(entries), info)

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
            return self._batch_error(_ERROR_KIND.get(etype, "unknown"), "BatchRequestError", text)
        if kind == "canceled":
            return AttemptError(kind="transient", type="BatchRequestCanceled",
                                message=f"batch {batch_id}: request {cid} was canceled before "
                                "it was processed (the batch was canceled)")
        if kind == "expired":
            return AttemptError(kind="transient", type="BatchRequestExpired",
                                message=f"batch {batch_id}: request {cid} expired: the batch "
                                "reached its 24-hour limit before processing it")
        return self._batch_error("unknown", "BatchRequestError",
                                 f"batch {batch_id}: request {cid} has an unknown result type "
                                 f"{kind!r}")

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        raise CapabilityError(
            "provider 'anthropic' cannot score continuations: the Messages API returns no "
            "log-probs; use provider: local for teacher-forced strategies"
        )
