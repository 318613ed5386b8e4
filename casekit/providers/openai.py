"""``provider: openai``: OpenAI's API through the official ``openai`` SDK or its wire format.

Everything casekit records per request, and why, is in docs/providers.md; this module builds
the Chat Completions and Completions bodies, reads the results (synchronous and from the Batch
API) and sends over aiohttp (``transport: http``) or the SDK (``transport: sdk``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import WithJsonSchema

from casekit.canonical import canonical_json
from casekit.case import ModelSpec
from casekit.errors import CasekitError
from casekit.provenance import strip_credentials
from casekit.providers.api import ApiParams, ApiProvider
from casekit.providers.api_common import (
    MalformedResponseError,
    body_sha256,
    decision_for_status,
    decode_body,
    recorded_headers,
    requests_sha256,
    response_content,
    result_lines,
    sanitize_api_error,
    sdk_version,
)
from casekit.providers.base import BatchHandle, CapabilityError
from casekit.providers.http_transport import (
    TRANSPORTS,
    HttpResponse,
    HttpTransport,
    TransportConnectionError,
    TransportTimeout,
    env_proxy,
)
from casekit.providers.params import ProviderParams, check, flag, is_int, one_of, text_or_null
from casekit.records import AttemptError, ModelIdentity, PlannedAttempt, ProviderResult

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_TOP_LOGPROBS = 20

# Body fields the SDK takes as keyword arguments; anything else goes in ``extra_body``.
_CHAT_KWARGS = frozenset({"messages", "model", "temperature", "top_p", "max_tokens",
                          "max_completion_tokens", "seed", "stop", "logprobs", "top_logprobs",
                          "frequency_penalty", "presence_penalty"})
_COMPLETION_KWARGS = frozenset({"model", "prompt", "temperature", "top_p", "max_tokens", "seed",
                                "stop", "logprobs", "echo", "frequency_penalty",
                                "presence_penalty"})
NEUTRAL = {"frequency_penalty": 0.0, "presence_penalty": 0.0}
"""OpenAI's sampling modifiers, sent explicitly at their neutral values (also OpenAI's
defaults) with every request, with ``top_p`` 1.0 when the decoding sets none: the recorded
request states the whole decoding applied, not only the part casekit varies (issue 17
defect 6). A model that rejects one has it dropped and the drop recorded, as for any
parameter."""

Api = Literal["chat.completions", "completions"]

# Batch API (https://platform.openai.com/docs/guides/batch): a JSONL input file of at most
# 50,000 requests and 200 MB, one endpoint per batch, a 24 h completion window.
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 190 * 1024 * 1024
BATCH_WINDOW = "24h"
BATCH_DONE = frozenset({"completed", "failed", "expired", "cancelled"})
_BATCH_URL: dict[str, str] = {"chat.completions": "/v1/chat/completions",
                              "completions": "/v1/completions"}
_BATCH_API: dict[str, Api] = {"/v1/chat/completions": "chat.completions",
                              "/v1/completions": "completions"}
ErrorKind = Literal["no_retry", "transient", "rate_limit", "unknown"]
_KIND: dict[str, ErrorKind] = {"no": "no_retry", "transient": "transient",
                               "rate_limit": "rate_limit"}


def _logprobs(value: Any) -> int | None:
    """false/null: none; true: the chosen tokens' log-probs only (0 alternatives)."""
    if value is None or value is False:
        return None
    return 0 if value is True else int(value)


class OpenAIParams(ApiParams):
    """``provider: openai`` params (``openai-compatible`` takes these and more)."""

    transport: Annotated[Literal["sdk", "http"], one_of(TRANSPORTS)] = "http"
    """``http``: the SDK's JSON body over aiohttp (a quarter of the SDK's CPU per request);
    ``sdk``: through the official SDK."""
    logprobs: Annotated[
        int | None,
        check(lambda v: v is None or isinstance(v, bool) or (
            is_int(v) and 0 <= v <= MAX_TOP_LOGPROBS),
            f"true, false or a whole number 0-{MAX_TOP_LOGPROBS} (alternatives per token; "
            "got {got})", _logprobs),
        WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0,
                                                        "maximum": MAX_TOP_LOGPROBS}]}),
    ] = None
    """Per-token log-probs of generated text (kept in the raw response): true, or the number
    of alternatives per token (0-20)."""
    max_completion_tokens: Annotated[bool, flag()] = False
    """Send the token limit as ``max_completion_tokens`` (models that reject ``max_tokens``)."""
    organization: Annotated[str | None, text_or_null()] = None
    """OpenAI organization header (default ``$OPENAI_ORG_ID``)."""
    project: Annotated[str | None, text_or_null()] = None
    """OpenAI project header (default ``$OPENAI_PROJECT_ID``)."""


class OpenAIProvider(ApiProvider):
    """OpenAI's API (Chat Completions or legacy Completions, and the Batch API)."""

    name: ClassVar[str] = "openai"
    Params: ClassVar[type[ProviderParams]] = OpenAIParams
    params: OpenAIParams
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = False
    sdk_module: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = OPENAI_BASE_URL
    default_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    key_required: ClassVar[bool] = True
    droppable: ClassVar[tuple[str, ...]] = ("temperature", "top_p", "top_k", "seed", "stop",
                                            "logprobs", "top_logprobs", "max_tokens")
    custom_headers_env: ClassVar[str] = "OPENAI_CUSTOM_HEADERS"
    batch_done: ClassVar[frozenset[str]] = BATCH_DONE

    def __init__(self, spec: ModelSpec, base_dir: Path, *, http_client: Any = None) -> None:
        """``http_client``: an ``httpx2.AsyncClient`` for the SDK (tests inject a mock
        transport); default: the SDK's own client."""
        super().__init__(spec, base_dir, http_client=http_client)
        p = self.params
        self.logprobs = p.logprobs
        self.use_max_completion_tokens = p.max_completion_tokens
        self.organization = p.organization if p.organization is not None else (
            os.environ.get("OPENAI_ORG_ID") or None)
        self.project = p.project if p.project is not None else (
            os.environ.get("OPENAI_PROJECT_ID") or None)
        # http by default; an injected httpx client (tests' emulated HTTP) means the SDK.
        self.transport: str = p.transport if "transport" in p.model_fields_set else (
            "sdk" if http_client is not None else "http")
        self._transport_name = ("openai SDK" if self.transport == "sdk"
                                else HttpTransport.version())
        self._http: HttpTransport | None = None

    def _client_class(self) -> Any:
        return self._sdk().AsyncOpenAI

    def _client_options(self) -> dict[str, Any]:
        return {"organization": self.organization, "project": self.project}

    def _extra_body(self) -> dict[str, Any]:
        return {}

    # ----------------------------------------------------------------- the HTTP transport

    def _http_headers(self) -> dict[str, str]:
        """The request headers the SDK would send that matter to the server (never logged:
        the key is in ``Authorization``)."""
        from casekit import __version__

        headers = {"Authorization": f"Bearer {self.key.value}", "Accept": "application/json",
                   "User-Agent": f"casekit/{__version__} {HttpTransport.version()}"}
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def _http_transport(self) -> HttpTransport:
        if self._http is None:
            self._http = HttpTransport(timeout=self.timeout, max_connections=self.max_connections,
                                       headers=self._http_headers(),
                                       proxy=env_proxy(self.base_url))
        return self._http

    async def _http_send(self, url: str, body: dict[str, Any]) -> HttpResponse:
        """POST over aiohttp; the response whatever its status. A failed connection or a
        timeout is raised as the SDK's exception class, its message cleaned for the ledger."""
        openai = self._sdk()
        with self._clean_errors():
            try:
                return await self._http_transport().post_json(url, body)
            except TransportTimeout as exc:
                raise openai.APITimeoutError(request=_sdk_request(url)) from exc
            except TransportConnectionError as exc:
                raise openai.APIConnectionError(request=_sdk_request(url)) from exc.__cause__

    def _raise_for_status(self, http: HttpResponse) -> None:
        """A non-2xx answer as the exception the SDK raises for it, cleaned for the ledger."""
        if not 200 <= http.status_code < 300:
            exc = _sdk_status_error(self._sdk(), http)
            sanitize_api_error(exc, self.key.secrets())
            raise exc

    async def _post_http(self, api: str, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """As :meth:`_post`, over aiohttp; failures become the SDK's exception classes."""
        path = "/chat/completions" if api == "chat.completions" else "/completions"
        http = await self._http_send(self.base_url + path, self._wire_body(body))
        self._raise_for_status(http)
        return _HttpRaw(http), decode_body(http.content, http.status_code, http.url)

    # ----------------------------------------------------------------- the SDK client

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        client, self._client_obj = self._client_obj, None
        self._client_loop = None
        if client is not None and self._http_client is None:
            with contextlib.suppress(Exception):
                await client.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.drop()
        super().close()

    # ----------------------------------------------------------------- identity

    def identity(self) -> ModelIdentity:
        info: dict[str, Any] = {
            **self._api_identity(),
            "api": "chat.completions" if self.interface == "chat" else "completions",
            "transport": self._transport_label(),
            "organization": self.organization,
            "project": self.project,
            "proxy_from_env": (strip_credentials(p) if (p := env_proxy(self.base_url))
                               else None),
        }
        info.update(self._identity_extra())
        return ModelIdentity(model_id=self.spec.id, provider=self.name, model=self.spec.model,
                             interface=self.interface, identity=info, can_score=self.can_score)

    def _identity_extra(self) -> dict[str, Any]:
        return {}

    def _transport_label(self) -> str:
        return self._transport_name

    # ----------------------------------------------------------------- requests

    def _chat_body(self, attempt: PlannedAttempt) -> tuple[dict[str, Any], dict[str, Any],
                                                          list[str]]:
        """(body, not_sent, notes) of a Chat Completions request."""
        if not attempt.messages:
            raise CasekitError(f"chat attempt {attempt.id} has no messages")
        d = attempt.decoding
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [{"role": m.role, "content": m.content} for m in attempt.messages],
            "temperature": float(d.temperature),
        }
        limit = "max_completion_tokens" if self.use_max_completion_tokens else "max_tokens"
        body[limit] = int(d.max_tokens)
        if d.top_p is not None:
            body["top_p"] = float(d.top_p)
        elif self.name == "openai":
            body["top_p"] = 1.0
        if self.name == "openai":
            body.update(NEUTRAL)
        if d.seed is not None:
            body["seed"] = int(d.seed)
        if d.stop:
            body["stop"] = list(d.stop)
        if self.logprobs is not None:
            body["logprobs"] = True
            if self.logprobs > 0:
                body["top_logprobs"] = self.logprobs
        not_sent = self._top_k(body, d.top_k)
        notes = []
        if attempt.messages[-1].role == "assistant":
            notes.append("the last message is an assistant message: Chat Completions does not "
                         "continue it as a prefill; the model writes a new assistant turn")
        return body, not_sent, notes

    def _completion_body(self, attempt: PlannedAttempt) -> tuple[dict[str, Any],
                                                                dict[str, Any], list[str]]:
        if attempt.prompt is None:
            raise CasekitError(f"completion attempt {attempt.id} has no prompt")
        d = attempt.decoding
        body: dict[str, Any] = {
            "model": self.spec.model,
            "prompt": attempt.prompt,
            "temperature": float(d.temperature),
            "max_tokens": int(d.max_tokens),
        }
        if d.top_p is not None:
            body["top_p"] = float(d.top_p)
        elif self.name == "openai":
            body["top_p"] = 1.0
        if self.name == "openai":
            body.update(NEUTRAL)
        not_sent = self._top_k(body, d.top_k)
        if d.seed is not None:
            if self.name == "openai":
                not_sent["seed"] = "OpenAI documents seed for Chat Completions only"
            else:
                body["seed"] = int(d.seed)
        if d.stop:
            body["stop"] = list(d.stop)
        if self.logprobs is not None:
            body["logprobs"] = self.logprobs
        return body, not_sent, []

    def _top_k(self, body: dict[str, Any], top_k: int | None) -> dict[str, Any]:
        if top_k is None:
            return {}
        return {"top_k": "OpenAI's API has no top_k parameter"}

    def _request(self, attempt: PlannedAttempt) -> tuple[Api, dict[str, Any], dict[str, Any],
                                                        list[str]]:
        """(api, body, not_sent, notes) of a chat or completion attempt: the one builder of
        request bodies, for :meth:`generate` and for batches."""
        if attempt.mode == "chat":
            return ("chat.completions", *self._chat_body(attempt))
        if attempt.mode == "completion":
            return ("completions", *self._completion_body(attempt))
        raise CapabilityError(f"attempt {attempt.id} is a {attempt.mode} attempt: not a chat "
                              "or completion request")

    def _wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON body that goes on the wire (``extra_body`` merged in)."""
        extra = self._extra_body()
        return {**body, **extra} if extra else body

    async def _post(self, api: str, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Send one request; return (the SDK's raw response, the decoded JSON body)."""
        if self.transport == "http":
            return await self._post_http(api, body)
        client = self._client()
        kwargs_names = _CHAT_KWARGS if api == "chat.completions" else _COMPLETION_KWARGS
        body = self._wire_body(body)
        kwargs = {k: v for k, v in body.items() if k in kwargs_names}
        extra = {k: v for k, v in body.items() if k not in kwargs_names}
        if extra:
            kwargs["extra_body"] = extra
        resource = client.chat.completions if api == "chat.completions" else client.completions
        with self._clean_errors():
            raw = await resource.with_raw_response.create(**kwargs)
        http = raw.http_response
        content = await response_content(http)
        return raw, decode_body(content, http.status_code, str(http.url))

    def _api_param(self, exc: Any) -> str | None:
        return getattr(exc, "param", None)

    def _without(self, body: dict[str, Any], param: str) -> tuple[dict[str, Any], Any,
                                                                  dict[str, Any]]:
        """A rejected ``max_tokens`` is sent as ``max_completion_tokens``; a rejected
        ``logprobs`` takes ``top_logprobs`` with it."""
        body, value, extra = super()._without(body, param)
        if param == "max_tokens":
            body["max_completion_tokens"] = value
            extra["replaced_by"] = "max_completion_tokens"
        if param == "logprobs":
            body.pop("top_logprobs", None)
        return body, value, extra

    def _unsupported_message(self, param: str, exc: BaseException) -> str:
        if param == "max_tokens":
            fix = "set params.max_completion_tokens: true"
        elif param in ("logprobs", "top_logprobs"):
            fix = "remove params.logprobs"
        else:
            fix = f"remove {param} from the case's decoding"
        return (f"model {self.spec.model!r} rejected the parameter {param!r} ({exc}); {fix}, or "
                "set params.allow_drop_unsupported: true to retry without it (recorded in "
                "raw_request.dropped)")

    # ----------------------------------------------------------------- generate

    async def generate(self, attempt: PlannedAttempt) -> ProviderResult:
        if attempt.mode == "score":
            return await self.score(attempt)
        api, body, not_sent, notes = self._request(attempt)
        raw, data, sent, dropped = await self._send(api, body)
        return self._result(api, raw, data, sent, not_sent, notes, dropped)

    def _request_record(self, api: Api, body: dict[str, Any], not_sent: dict[str, Any],
                        notes: list[str], dropped: list[dict[str, Any]]) -> dict[str, Any]:
        path = "/chat/completions" if api == "chat.completions" else "/completions"
        return self._api_request_record(api, path, {**body, **self._extra_body()}, not_sent,
                                        notes, dropped, transport=self._transport_label())

    def _result(self, api: Api, raw: Any, data: dict[str, Any], body: dict[str, Any],
                not_sent: dict[str, Any], notes: list[str],
                dropped: list[dict[str, Any]]) -> ProviderResult:
        http = raw.http_response
        headers = http.headers
        return self._build_result(
            api, data, f"HTTP {http.status_code} from {strip_credentials(str(http.url))}",
            request_id=headers.get("x-request-id") or getattr(raw, "request_id", None),
            server_date=headers.get("date"),
            request=self._request_record(api, body, not_sent, notes, dropped),
            response=self._response_record(http, data),
        )

    def _build_result(self, api: Api, data: dict[str, Any], where: str, *,
                      request_id: str | None, server_date: str | None,
                      request: dict[str, Any], response: dict[str, Any]) -> ProviderResult:
        """A ProviderResult from a response body (a synchronous response or one line of a
        batch's output file): text, finish_reason, refusal (``content_filter`` or a
        ``refusal`` message), returned model id, fingerprint, usage; keys removed."""
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MalformedResponseError(f"{where} without choices: {json.dumps(data)[:300]}")
        choice = choices[0]
        finish = choice.get("finish_reason")
        refusal = finish == "content_filter"
        if api == "chat.completions":
            message = choice.get("message") or {}
            text = _content_text(message.get("content"))
            if message.get("refusal"):
                refusal = True
        else:
            text = choice.get("text") or ""
        return self._provider_result(
            text, data, request_id=request_id, server_date=server_date, request=request,
            response=response, finish_reason=finish, refusal=refusal,
            system_fingerprint=data.get("system_fingerprint"))

    # ----------------------------------------------------------------- batches

    supports_batch: ClassVar[bool] = True
    batch_max_requests: ClassVar[int] = BATCH_MAX_REQUESTS
    batch_max_bytes: ClassVar[int] = BATCH_MAX_BYTES

    def batch_requests(self, attempts: Sequence[PlannedAttempt]) -> list[dict[str, Any]]:
        """One input-file line per attempt: ``custom_id`` (the attempt id), ``method``,
        ``url`` and the ``body`` that :meth:`generate` would send (same builder)."""
        if not self.supports_batch:
            raise self._no_batch()
        out = []
        for a in attempts:
            if a.mode == "score":
                raise CapabilityError(f"attempt {a.id} is a score attempt: it cannot be batched")
            api, body, _, _ = self._request(a)
            out.append({"custom_id": a.id, "method": "POST", "url": _BATCH_URL[api],
                        "body": self._wire_body(body)})
        return out

    async def submit_batch(self, attempts: Sequence[PlannedAttempt]) -> BatchHandle:
        """Upload the requests as a JSONL file (``purpose=batch``; one RFC 8785 canonical JSON
        object per line, so its SHA-256 can be re-derived from the plan) and create the batch,
        with the request hash in its metadata (see :meth:`find_batch`)."""
        entries = self.batch_requests(attempts)
        urls = sorted({e["url"] for e in entries})
        if len(urls) != 1:
            raise CapabilityError(f"a batch holds requests to one endpoint, not {urls}")
        sha = requests_sha256(entries)
        content = b"".join(canonical_json(e) + b"\n" for e in entries)
        client = self._client()
        with self._clean_errors():
            up = await client.files.with_raw_response.create(
                file=(f"casekit-batch-{sha.split(':', 1)[1][:16]}.jsonl", content,
                      "application/jsonl"),
                purpose="batch")
            up_data = await self._json_of(up)
            created = await client.batches.with_raw_response.create(
                input_file_id=str(up_data["id"]), endpoint=urls[0],
                completion_window=BATCH_WINDOW,
                metadata={"casekit_request_sha256": sha, "casekit_model_id": self.spec.id[:512]})
            data = await self._json_of(created)
        http = created.http_response
        info = {
            "api_base": strip_credentials(self.base_url),
            "endpoint": urls[0],
            "completion_window": BATCH_WINDOW,
            "input_file_id": up_data.get("id"),
            "input_file_sha256": body_sha256(content),
            "input_file_bytes": len(content),
            "upload_request_id": up.http_response.headers.get("x-request-id"),
            "request_id": http.headers.get("x-request-id"),
            "server_date": http.headers.get("date"),
            "sdk": sdk_version("openai"),
        }
        return self._batch_handle(data, attempts, sha, info)

    async def _json_of(self, raw: Any) -> dict[str, Any]:
        http = raw.http_response
        return decode_body(await response_content(http), http.status_code, str(http.url))

    async def _retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        with self._clean_errors():
            raw = await self._client().batches.with_raw_response.retrieve(batch_id)
            return await self._json_of(raw)

    async def collect_batch(self, batch_id: str, attempts: Sequence[PlannedAttempt] = (),
                            ) -> dict[str, ProviderResult | AttemptError]:
        """Download the output and error files, match lines on ``custom_id``. A batch that
        failed validation gives every attempt an error naming the batch's errors."""
        batch = await self._retrieve_batch(batch_id)
        status = str(batch.get("status"))
        if status not in BATCH_DONE:
            raise CasekitError(f"batch {batch_id} is {status}, not ended: nothing to collect yet")
        api = _BATCH_API.get(str(batch.get("endpoint")), "chat.completions")
        by_id = {a.id: a for a in attempts}
        results: dict[str, ProviderResult | AttemptError] = {}
        for which in ("output_file_id", "error_file_id"):
            file_id = batch.get(which)
            if not file_id:
                continue
            with self._clean_errors():
                raw = await self._client().files.with_raw_response.content(str(file_id))
            http = raw.http_response
            content = await response_content(http)
            source = {"batch_id": batch_id, "file": which.removesuffix("_id"),
                      "file_id": str(file_id), "file_sha256": body_sha256(content),
                      "file_bytes": len(content)}
            for cid, entry, line in result_lines(content, f"batch {batch_id}, {file_id}"):
                if cid not in results:  # the output file is read before the error file
                    results[cid] = self._batch_line_result(api, batch, entry, line, source,
                                                           http, by_id.get(cid))
        if status == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            text = "; ".join(f"{e.get('code')}: {e.get('message')}" + (
                f" (line {e['line']})" if e.get("line") else "") for e in errors
                if isinstance(e, dict)) or "no reason given"
            for a in attempts:
                results.setdefault(a.id, self._batch_error(
                    "no_retry", "BatchFailed", f"batch {batch_id} failed validation: {text}"))
        return results

    def _batch_line_result(self, api: Api, batch: dict[str, Any], entry: dict[str, Any],
                           line: bytes, source: dict[str, Any], http: Any,
                           attempt: PlannedAttempt | None) -> ProviderResult | AttemptError:
        batch_id, cid = source["batch_id"], entry["custom_id"]
        response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
        assert isinstance(response, dict)
        status = response.get("status_code")
        body = response.get("body")
        request_id = response.get("request_id")
        error = entry.get("error")
        if isinstance(status, int) and 200 <= status < 300 and isinstance(body, dict) \
                and not error:
            if attempt is not None:
                _, sent, not_sent, notes = self._request(attempt)
                request = self._request_record(api, sent, not_sent, notes, [])
            else:
                request = {"api": api, "note": "the attempt was not given: body not rebuilt"}
            request.update({"batch_id": batch_id, "custom_id": cid,
                            "batch_endpoint": batch.get("endpoint"),
                            "batch_input_file_id": batch.get("input_file_id")})
            record = {
                "status": status,
                "via": "batch",
                "http_version": getattr(http, "http_version", None),
                "headers": recorded_headers(http.headers),
                "body": body,
                "line_sha256": body_sha256(line),
                "batch_request_id": entry.get("id"),
                **source,
            }
            try:
                return self._build_result(
                    api, body, f"batch {batch_id} result {cid} (HTTP {status})",
                    request_id=request_id if isinstance(request_id, str) else None,
                    server_date=http.headers.get("date"), request=request, response=record)
            except MalformedResponseError as exc:
                return self._batch_error("transient", "MalformedResponseError", str(exc))
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            kinds: dict[str, tuple[ErrorKind, str]] = {
                "batch_expired": ("transient", "BatchRequestExpired"),
                "batch_cancelled": ("transient", "BatchRequestCanceled")}
            kind, type_ = kinds.get(code, ("unknown", "BatchRequestError"))
            message = f"batch {batch_id}: {code or 'error'}: {error.get('message')}"
        else:
            api_message = body.get("error", {}).get("message") if isinstance(body, dict) and \
                isinstance(body.get("error"), dict) else None
            if isinstance(status, int):
                kind = _KIND[decision_for_status(status, {}).action]
            else:
                kind = "unknown"
            type_ = "BatchRequestError"
            message = (f"batch {batch_id}: HTTP {status}"
                       + (f" (request id {request_id})" if request_id else "")
                       + f": {api_message or json.dumps(body)[:500]}")
        return self._batch_error(kind, type_, message)

    async def find_batch(self, request_sha256: str, submitted_after: str) -> str | None:
        """The recent batch whose metadata carries ``request_sha256`` (newest first, created
        at most 10 minutes before ``submitted_after``)."""
        since = datetime.fromisoformat(submitted_after.replace("Z", "+00:00")).timestamp() - 600
        seen = 0
        async for b in self._client().batches.list(limit=100):
            if b.created_at < since or seen >= 2000:
                break
            seen += 1
            if (b.metadata or {}).get("casekit_request_sha256") == request_sha256:
                return str(b.id)
        return None

    # ----------------------------------------------------------------- score

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        raise CapabilityError(
            f"provider {self.name!r} cannot score continuations: OpenAI's chat models return no "
            "log-probs for the prompt; use provider: local, or provider: openai-compatible with a "
            "Completions server that echoes prompt log-probs"
        )


class _HttpRaw:
    """The SDK-raw-response shape (``http_response``, ``request_id``) around a transport
    response, so that one :meth:`OpenAIProvider._result` reads both."""

    __slots__ = ("http_response", "request_id")

    def __init__(self, http: HttpResponse) -> None:
        self.http_response = http
        self.request_id = http.headers.get("x-request-id")


def _sdk_request(url: str) -> Any:
    import httpx2

    return httpx2.Request("POST", url)


def _sdk_status_error(openai: Any, http: HttpResponse) -> Exception:
    """The exception the openai SDK raises for this status and body (the same class, message,
    ``body``, ``param``, ``request_id`` and ``response.headers``), built from a transport
    response; mirrors ``AsyncOpenAI._make_status_error_from_response``."""
    import httpx2

    response = httpx2.Response(http.status_code, headers=http.headers.multi_items(),
                               content=http.content, request=_sdk_request(http.url))
    message = f"Error code: {http.status_code}"
    text = http.content.decode("utf-8", "replace").strip()
    body: Any = text
    try:
        body = json.loads(text)
    except ValueError:
        pass
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        inner = error.get("message") if isinstance(error, dict) else None
        if isinstance(inner, str) and inner:
            message += f" - {inner}"
    data = body.get("error", body) if isinstance(body, dict) else body
    classes = {400: openai.BadRequestError, 401: openai.AuthenticationError,
               403: openai.PermissionDeniedError, 404: openai.NotFoundError,
               409: openai.ConflictError, 422: openai.UnprocessableEntityError,
               429: openai.RateLimitError}
    cls = classes.get(http.status_code)
    if cls is None:
        cls = openai.InternalServerError if http.status_code >= 500 else openai.APIStatusError
    return cls(message, response=response, body=data)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


