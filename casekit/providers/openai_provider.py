"""``provider: openai`` and ``provider: openai-compatible``, through the official ``openai`` SDK.

* ``openai``: api.openai.com (or ``base_url``). Chat Completions for ``interface: chat`` (the
  default), the legacy Completions endpoint for ``interface: completion``. Key from
  ``$OPENAI_API_KEY`` or the variable named by ``api_key_env``.
* ``openai-compatible``: any server that speaks the same protocol (llama.cpp's servers, vLLM,
  LM Studio, Ollama...). ``base_url`` is required; a key is sent only when ``api_key_env``
  names one (OPENAI_API_KEY is never sent to a third-party server by default; without a key
  the placeholder ``casekit-no-key`` goes instead and the identity records ``key_used:
  false``).

What is recorded per attempt: the body sent, the HTTP body received verbatim (JSON) with its
SHA-256, a whitelist of response headers (``Date``, request ids, rate-limit state; never
``Authorization``), the model id the API returned, ``system_fingerprint``, the request id
(``x-request-id``), usage, ``finish_reason`` (``content_filter`` or a ``refusal`` message ->
``refusal=True``) and the ``Date`` header verbatim. Per-token log-probs of generated text,
when ``params.logprobs`` asks for them, stay in the raw response; ``token_scores`` is reserved
for teacher-forced scoring.

The SDK never retries (``max_retries=0``): casekit's runner retries and records every try,
using :meth:`should_retry`'s classification.

**Batches** (``openai`` only; see ``casekit.run.batch``): the Batch API at about half the price.
The input file holds one RFC 8785 canonical line per attempt (``custom_id`` = the attempt
id, the body built by the same code as ``generate``), and the batch's metadata carries the
SHA-256 of those lines, so a batch whose id a crash kept out of the ledger can be found again.
Results are read from the output and error files and matched on ``custom_id``; each result
is built like a synchronous one (``content_filter`` / ``refusal`` detection, returned model
id, fingerprint, usage) with ``raw_request.batch_id`` / ``custom_id`` added and the hashes of
the file and of the line recorded; ``server_date`` is the ``Date`` of the file download.
Parameters the model rejects are not dropped in a batch: the request is recorded as failed.

**Scoring** (``openai-compatible`` only): teacher forcing through the Completions endpoint with
``echo=True, logprobs=1, max_tokens=1`` on prompt + continuation, reading the echoed
continuation tokens' log-probs and whether each was the top choice. ``max_tokens`` is 1, not
0, because llama-cpp-python reads 0 as "no limit" (it generates until the context is full);
the extra generated token is ignored. llama-cpp-python's echo log-probs are shifted by one
token for models without a BOS token (llama-cpp-python issue #1983: token *i* gets the
log-prob of token *i* under the distribution that predicts token *i+1*), and its first echoed
token always has a null log-prob, so a null first value says nothing about alignment. casekit's
``local`` provider therefore never uses echo, and this provider checks each server once before
its first score: it compares the log-prob of a greedily generated token (never shifted) with
the same token's echoed log-prob. A shifted or inconsistent server makes ``score`` raise
CapabilityError (recorded by the runner) instead of recording wrong numbers.
``params.score_alignment: trust`` skips the check (recorded in every result).

``params.score_method: prompt_logprobs`` scores through vLLM's ``prompt_logprobs`` instead:
one Completions request per window with ``prompt_logprobs: k`` (``params.prompt_logprobs``,
default 20, vLLM's default ``--max-logprobs``) returns, for every prompt token, the actual
token's log-prob and rank (over the whole vocabulary) and the top k, keyed by token id; the
continuation's tokens come from the server's own ``POST /tokenize`` of the prompt and of the
whole text. These are computed by the model's forward pass over the prompt, not echoed, so no
shift can occur; a count that does not match ``/tokenize`` is a CapabilityError. Rank, top-1
and the greedy p_z preset are exact; the top-40 preset is exact with ``k >= 40`` and unknown
(never estimated) below.

**The census's tokenizer** (``openai-compatible``): the p_z census plans windows of model
tokens before any request, so it needs the served model's tokenizer on disk:
``params.tokenizer`` names its ``tokenizer.json`` (byte-level BPE or Metaspace/SentencePiece
with byte fallback) or ``.gguf`` (vocabulary only), relative to the case file, and
``params.tokenizer_sha256`` may pin it (see ``casekit.providers.tokenizer_file``). The
identity records its path, format, family and SHA-256. Every scored text is then checked
against the server before it counts: with ``prompt_logprobs``, the server's ``/tokenize`` ids
(after its BOS) must equal the file's ids, checked before the scoring request is sent; with
``echo``, which returns token texts and no ids, the echoed texts must equal the file's pieces
(same count, same boundaries). A difference raises CapabilityError ("params.tokenizer does
not tokenize like the server"), recorded as the attempt's error; a match is recorded as
``raw_response.tokenizer_check``.

**Transports**: ``params.transport: http`` (the default) sends the JSON body the SDK would
send, with its authorization and organization/project headers, over aiohttp
(``casekit.providers.http_transport``): a quarter of the SDK's CPU per request (0.5 against
2 ms with the ledger; benchmarks/README.md), redirects never followed. ``transport: sdk`` sends
through the official SDK instead. Both are tested request for request against the same local
server (body, headers, recorded result, error class and retry decision); failures are raised
as the SDK's own exception classes either way, and every request record names its transport.

``params`` (all optional): ``timeout`` (seconds, default 120), ``max_connections`` (default 8),
``transport`` (``http``, the default, or ``sdk``),
``logprobs`` (true or 0-20: per-token log-probs of generated text, with that many alternatives),
``max_completion_tokens`` (true: send the limit as ``max_completion_tokens``, for models that
reject ``max_tokens``), ``allow_drop_unsupported`` (true: when the model rejects a parameter
with HTTP 400, retry once without it and record which and why), ``organization`` /
``project`` (OpenAI; default ``$OPENAI_ORG_ID`` / ``$OPENAI_PROJECT_ID``); for
``openai-compatible`` also ``extra_body`` (a mapping merged into every request body, e.g.
``{repeat_penalty: 1.0}``), ``score_alignment`` (``verify`` or ``trust``), ``score_method``
(``echo`` or ``prompt_logprobs``), ``prompt_logprobs`` (k), ``tokenizer`` and
``tokenizer_sha256`` (the census's tokenizer file, above). ``provider: openai`` takes no
``tokenizer``: it cannot score, so it never runs the census.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from casekit.canonical import canonical_json
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
    decision_for_status,
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
from casekit.providers.http_transport import (
    TRANSPORTS,
    HttpResponse,
    HttpTransport,
    TransportConnectionError,
    TransportTimeout,
    env_proxy,
)
from casekit.providers.keys import ApiKey, load_key, protect_logs, redact, redact_error_text
from casekit.providers.tokenizer_file import CaseTokenizer, load_case_tokenizer
from casekit.records import (
    AttemptError,
    ModelIdentity,
    PlannedAttempt,
    ProviderResult,
    TokenScore,
)

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 8
MAX_TOP_LOGPROBS = 20
SCORE_METHOD = "server echo logprobs"
PROMPT_LOGPROBS_METHOD = "server prompt_logprobs (vLLM)"
DEFAULT_PROMPT_LOGPROBS = 20
"""vLLM's default ``--max-logprobs``; 40 or more gives the exact top-40 preset."""

_COMMON_PARAMS = ("timeout", "max_connections", "logprobs", "max_completion_tokens",
                  "allow_drop_unsupported", "organization", "project", "transport")
_COMPATIBLE_PARAMS = ("extra_body", "score_alignment", "score_method", "prompt_logprobs",
                      "tokenizer", "tokenizer_sha256")

# Body fields the SDK takes as keyword arguments; anything else goes in ``extra_body``.
_CHAT_KWARGS = frozenset({"messages", "model", "temperature", "top_p", "max_tokens",
                          "max_completion_tokens", "seed", "stop", "logprobs", "top_logprobs"})
_COMPLETION_KWARGS = frozenset({"model", "prompt", "temperature", "top_p", "max_tokens", "seed",
                                "stop", "logprobs", "echo"})
_DROPPABLE = ("temperature", "top_p", "top_k", "seed", "stop", "logprobs", "top_logprobs",
              "max_tokens")

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


def _openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ProviderUnavailable(
            f"the openai SDK is not installed ({exc}); run: pip install openai"
        ) from exc
    return openai




class OpenAIProvider(Provider):
    """OpenAI's API through ``openai.AsyncOpenAI`` (Chat Completions or legacy Completions)."""

    name: ClassVar[str] = "openai"
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = False
    default_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    key_required: ClassVar[bool] = True
    allowed_params: ClassVar[tuple[str, ...]] = _COMMON_PARAMS

    def __init__(self, spec: ModelSpec, base_dir: Path, *, http_client: Any = None) -> None:
        """``http_client``: an ``httpx2.AsyncClient`` for the SDK (tests inject a mock
        transport); default: the SDK's own client."""
        super().__init__(spec, base_dir)
        unknown = sorted(set(spec.params) - set(self.allowed_params))
        if unknown:
            raise CasekitError(
                f"model {spec.id!r}: unknown {self.name} provider params {unknown}; allowed "
                f"keys: {', '.join(self.allowed_params)}"
            )
        self.base_url = self._base_url()
        self.timeout = self._number("timeout", DEFAULT_TIMEOUT, minimum=1.0)
        self.max_connections = int(self._number("max_connections", DEFAULT_MAX_CONNECTIONS,
                                                minimum=1, integer=True))
        self.logprobs = self._logprobs_param()
        self.use_max_completion_tokens = self._bool("max_completion_tokens")
        self.allow_drop = self._bool("allow_drop_unsupported")
        self.organization = self._str_param("organization", "OPENAI_ORG_ID")
        self.project = self._str_param("project", "OPENAI_PROJECT_ID")
        self.key: ApiKey = load_key(model_id=spec.id, provider=self.name,
                                    api_key_env=spec.api_key_env,
                                    default_env=self.default_key_env,
                                    required=self.key_required)
        protect_logs(self.key)
        self.alias_warning, self.alias_message = alias_check(self.name, spec.model)
        if self.alias_warning:
            log.warning("model %s: %s", spec.id, self.alias_message)
        self._http_client = http_client
        self._client_obj: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self.transport = self._transport_param()
        # Import the SDK now, outside the event loop: its first import takes most of a second,
        # which inside the loop would stall every attempt in flight (the http transport raises
        # the SDK's exception classes, so it needs it too).
        _openai()
        self._transport_name = ("openai SDK" if self.transport == "sdk"
                                else HttpTransport.version())
        self._http: HttpTransport | None = None

    # ----------------------------------------------------------------- configuration

    def _base_url(self) -> str:
        # Explicit, so that $OPENAI_BASE_URL can never silently redirect a run.
        return (self.spec.base_url or OPENAI_BASE_URL).rstrip("/")

    def _number(self, key: str, default: float, *, minimum: float,
                integer: bool = False) -> float:
        value = self.spec.params.get(key, default)
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value < minimum or not math.isfinite(value):
            kind = "a whole number" if integer else "a number"
            raise CasekitError(
                f"model {self.spec.id!r}: params.{key} must be {kind} >= {minimum:g} "
                f"(got {value!r})"
            )
        return float(value)

    def _bool(self, key: str) -> bool:
        value = self.spec.params.get(key, False)
        if not isinstance(value, bool):
            raise CasekitError(f"model {self.spec.id!r}: params.{key} must be true or false "
                               f"(got {value!r})")
        return value

    def _str_param(self, key: str, env: str) -> str | None:
        value = self.spec.params.get(key)
        if value is None:
            return os.environ.get(env) or None
        if not isinstance(value, str):
            raise CasekitError(f"model {self.spec.id!r}: params.{key} must be text "
                               f"(got {value!r})")
        return value

    def _logprobs_param(self) -> int | None:
        value = self.spec.params.get("logprobs", False)
        if value is False or value is None:
            return None
        if value is True:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value <= MAX_TOP_LOGPROBS):
            raise CasekitError(
                f"model {self.spec.id!r}: params.logprobs must be true, false or a whole number "
                f"0-{MAX_TOP_LOGPROBS} (alternatives per token; got {value!r})"
            )
        return value

    def _transport_param(self) -> str:
        # http by default; an injected httpx client (tests' emulated HTTP) means the SDK.
        value = self.spec.params.get("transport",
                                     "sdk" if self._http_client is not None else "http")
        if value not in TRANSPORTS:
            raise CasekitError(f"model {self.spec.id!r}: params.transport must be one of "
                               f"{', '.join(TRANSPORTS)} (got {value!r})")
        return str(value)

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
        openai = _openai()
        try:
            try:
                return await self._http_transport().post_json(url, body)
            except TransportTimeout as exc:
                raise openai.APITimeoutError(request=_sdk_request(url)) from exc
            except TransportConnectionError as exc:
                raise openai.APIConnectionError(request=_sdk_request(url)) from exc.__cause__
        except openai.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise

    def _raise_for_status(self, http: HttpResponse) -> None:
        """A non-2xx answer as the exception the SDK raises for it, cleaned for the ledger."""
        if not 200 <= http.status_code < 300:
            exc = _sdk_status_error(_openai(), http)
            sanitize_api_error(exc, self.key.secrets())
            raise exc

    async def _post_http(self, api: Api, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """As :meth:`_post`, over aiohttp; failures become the SDK's exception classes."""
        path = "/chat/completions" if api == "chat.completions" else "/completions"
        http = await self._http_send(self.base_url + path, self._wire_body(body))
        self._raise_for_status(http)
        return _HttpRaw(http), decode_body(http.content, http.status_code, http.url)

    # ----------------------------------------------------------------- the SDK client

    def _client(self) -> Any:
        """The SDK client for the running event loop (one per loop: connections are bound to
        the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._client_obj is None or self._client_loop is not loop:
            openai = _openai()
            kwargs: dict[str, Any] = {
                "api_key": self.key.value,
                "base_url": self.base_url,
                "max_retries": 0,
                "timeout": self.timeout,
                "organization": self.organization,
                "project": self.project,
            }
            if self._http_client is not None:
                kwargs["http_client"] = self._http_client
            self._client_obj = openai.AsyncOpenAI(**kwargs)
            self._client_loop = loop
        return self._client_obj

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
        client, self._client_obj = self._client_obj, None
        loop, self._client_loop = self._client_loop, None
        if client is None or self._http_client is not None:
            return  # an injected client belongs to the caller
        if loop is not None and not loop.is_closed():
            return  # still in use by a running loop; it closes with it
        with contextlib.suppress(Exception):
            asyncio.run(client.close())

    # ----------------------------------------------------------------- identity

    def identity(self) -> ModelIdentity:
        info: dict[str, Any] = {
            "endpoint": strip_credentials(self.base_url),
            "api": "chat.completions" if self.interface == "chat" else "completions",
            "key_env": self.key.env,
            "key_fingerprint": self.key.fingerprint,
            "key_used": self.key.used,
            "sdk": sdk_version("openai"),
            "sdk_max_retries": 0,
            "transport": self._transport_label(),
            "timeout_s": self.timeout,
            "max_connections": self.max_connections,
            "alias_warning": self.alias_warning,
            "alias_message": self.alias_message,
            "organization": self.organization,
            "project": self.project,
            "custom_headers_from_env": bool(os.environ.get("OPENAI_CUSTOM_HEADERS")),
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

    async def _post(self, api: Api, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
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
        openai = _openai()
        try:
            raw = await resource.with_raw_response.create(**kwargs)
        except openai.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise
        http = raw.http_response
        content = await response_content(http)
        return raw, decode_body(content, http.status_code, str(http.url))

    async def _send(self, api: Api, body: dict[str, Any], *, may_drop: bool = True) -> tuple[
            Any, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """Send; on an HTTP 400 about an unsupported parameter either retry once without it
        (``allow_drop_unsupported``; ``max_tokens`` becomes ``max_completion_tokens``) or raise
        UnsupportedParameter. Returns (raw, JSON body, body sent, dropped parameters)."""
        openai = _openai()
        dropped: list[dict[str, Any]] = []
        while True:
            try:
                raw, data = await self._post(api, body)
                return raw, data, body, dropped
            except openai.BadRequestError as exc:
                if not may_drop:
                    raise
                api_message = api_error_message(exc)
                param = unsupported_parameter(api_message, [k for k in _DROPPABLE if k in body],
                                              getattr(exc, "param", None))
                if param is None:
                    raise
                if not self.allow_drop or any(d["param"] == param for d in dropped):
                    raise UnsupportedParameter(self._unsupported_message(param, exc)) from exc
                body = dict(body)
                value = body.pop(param)
                reason = redact_error_text(api_message, self.key.secrets())
                entry: dict[str, Any] = {"param": param, "value": value,
                                         "reason": f"HTTP 400: {reason}",
                                         "request_id": exc.request_id}
                if param == "max_tokens":
                    body["max_completion_tokens"] = value
                    entry["replaced_by"] = "max_completion_tokens"
                if param == "logprobs":
                    body.pop("top_logprobs", None)
                dropped.append(entry)
                log.warning("model %s rejected %s (%s); retrying once without it, as "
                            "params.allow_drop_unsupported allows", self.spec.id, param,
                            reason[:200])

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
        record: dict[str, Any] = {
            "api": api,
            "method": "POST",
            "url": strip_credentials(self.base_url) + path,
            "body": {**body, **self._extra_body()},
            "timeout_s": self.timeout,
            "sdk": sdk_version("openai"),
            "transport": self._transport_label(),
        }
        if not_sent:
            record["not_sent"] = not_sent
        if notes:
            record["notes"] = notes
        if dropped:
            record["dropped"] = dropped
        return record

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
        secrets = self.key.secrets()
        usage = data.get("usage")
        return ProviderResult(
            text=redact(text, secrets),
            finish_reason=finish,
            refusal=refusal,
            returned_model=data.get("model"),
            request_id=request_id,
            system_fingerprint=data.get("system_fingerprint"),
            server_date=server_date,
            usage=redact(usage, secrets) if isinstance(usage, dict) else {},
            raw_request=redact(request, secrets),
            raw_response=redact(response, secrets),
        )

    @staticmethod
    def _response_record(http: Any, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": http.status_code,
            "http_version": getattr(http, "http_version", None),
            "headers": recorded_headers(http.headers),
            "body": data,
            "body_sha256": body_sha256(bytes(http.content)),
        }

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
        openai = _openai()
        try:
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
        except openai.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise
        secrets = self.key.secrets()
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
        return BatchHandle(batch_id=str(data["id"]), custom_ids=[a.id for a in attempts],
                           request_sha256=sha, status=str(data.get("status")),
                           info=redact(info, secrets), raw=redact(data, secrets))

    async def _json_of(self, raw: Any) -> dict[str, Any]:
        http = raw.http_response
        return decode_body(await response_content(http), http.status_code, str(http.url))

    async def _retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        openai = _openai()
        try:
            raw = await self._client().batches.with_raw_response.retrieve(batch_id)
            return await self._json_of(raw)
        except openai.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        data = await self._retrieve_batch(batch_id)
        status = str(data.get("status"))
        counts = data.get("request_counts") or {}
        return BatchStatus(batch_id=batch_id, status=status, done=status in BATCH_DONE,
                           counts={k: int(v) for k, v in counts.items() if isinstance(v, int)},
                           raw=redact(data, self.key.secrets()))

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
        openai = _openai()
        for which in ("output_file_id", "error_file_id"):
            file_id = batch.get(which)
            if not file_id:
                continue
            try:
                raw = await self._client().files.with_raw_response.content(str(file_id))
            except openai.APIError as exc:
                sanitize_api_error(exc, self.key.secrets())
                raise
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
                results.setdefault(a.id, AttemptError(
                    kind="no_retry", type="BatchFailed",
                    message=redact_error_text(f"batch {batch_id} failed validation: {text}",
                                              self.key.secrets())[:2000]))
        return results

    def _batch_line_result(self, api: Api, batch: dict[str, Any], entry: dict[str, Any],
                           line: bytes, source: dict[str, Any], http: Any,
                           attempt: PlannedAttempt | None) -> ProviderResult | AttemptError:
        batch_id, cid = source["batch_id"], entry["custom_id"]
        secrets = self.key.secrets()
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
                return AttemptError(kind="transient", type="MalformedResponseError",
                                    message=redact_error_text(str(exc), secrets)[:2000])
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
        return AttemptError(kind=kind, type=type_,
                            message=redact_error_text(message, secrets)[:2000])

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

    # ----------------------------------------------------------------- failures

    def should_retry(self, exc: BaseException) -> RetryDecision:
        """429 -> rate_limit (Retry-After / retry-after-ms honoured, seconds or HTTP date);
        408/409/5xx, connection errors, timeouts, a reset connection and a 200 whose body is not
        JSON -> transient; other 4xx, capability and configuration errors -> no."""
        try:
            openai = _openai()
        except ProviderUnavailable:
            openai = None
        return classify_sdk_failure(exc, openai)


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


# =========================================================================== compatible servers

_ALIGN_PROBES = ("The capital of France is", "One, two, three, four, five,",
                 "Once upon a time, there was a")


def _common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items ``a`` and ``b`` share: the index of their first difference."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.01 + 0.01 * abs(b)


class OpenAICompatibleProvider(OpenAIProvider):
    """A server speaking OpenAI's protocol at ``base_url`` (llama.cpp, vLLM, LM Studio...)."""

    name: ClassVar[str] = "openai-compatible"
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = True
    """Whether a server echoes aligned prompt log-probs is only known at run time: score
    raises CapabilityError (with the fix) where it does not."""
    default_key_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False
    allowed_params: ClassVar[tuple[str, ...]] = _COMMON_PARAMS + _COMPATIBLE_PARAMS
    supports_batch: ClassVar[bool] = False
    """Compatible servers rarely implement the Batch API (vLLM batches offline, by CLI)."""
    batch_max_requests: ClassVar[int] = 0
    batch_max_bytes: ClassVar[int] = 0

    def __init__(self, spec: ModelSpec, base_dir: Path, *, http_client: Any = None) -> None:
        super().__init__(spec, base_dir, http_client=http_client)
        extra = spec.params.get("extra_body", {})
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise CasekitError(f"model {spec.id!r}: params.extra_body must be a mapping of "
                               f"field: value (got {extra!r})")
        self.extra_body = dict(extra)
        alignment = spec.params.get("score_alignment", "verify")
        if alignment not in ("verify", "trust"):
            raise CasekitError(f"model {spec.id!r}: params.score_alignment must be verify or "
                               f"trust (got {alignment!r})")
        self.score_alignment: str = alignment
        method = spec.params.get("score_method", "echo")
        if method not in ("echo", "prompt_logprobs"):
            raise CasekitError(f"model {spec.id!r}: params.score_method must be echo (llama.cpp "
                               f"and others: Completions with echo) or prompt_logprobs (vLLM) "
                               f"(got {method!r})")
        self.score_method: str = method
        k = spec.params.get("prompt_logprobs", DEFAULT_PROMPT_LOGPROBS)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise CasekitError(f"model {spec.id!r}: params.prompt_logprobs must be a whole "
                               f"number 1-1000 (alternatives per prompt token; got {k!r})")
        self.prompt_logprobs_k: int = k
        self.case_tokenizer: CaseTokenizer | None = self._case_tokenizer(spec, base_dir)
        self._alignment: dict[str, Any] | None = None
        self._alignment_error: CapabilityError | None = None
        self._align_lock: asyncio.Lock | None = None
        self._align_loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _case_tokenizer(spec: ModelSpec, base_dir: Path) -> CaseTokenizer | None:
        """The tokenizer file of ``params.tokenizer`` (pinned by ``params.tokenizer_sha256``),
        or None when the case gives none."""
        if "tokenizer" not in spec.params:
            if "tokenizer_sha256" in spec.params:
                raise CasekitError(f"model {spec.id!r}: params.tokenizer_sha256 pins a file, but "
                                   "params.tokenizer names none; add params.tokenizer (the "
                                   "served model's tokenizer.json or .gguf)")
            return None
        return load_case_tokenizer(spec.params["tokenizer"], spec.params.get("tokenizer_sha256"),
                                   base_dir, spec.id, spec.model)

    @classmethod
    def plan_tokenizer(cls, spec: ModelSpec, base_dir: Path) -> CaseTokenizer | None:
        """``params.tokenizer``: the served model's tokenizer.json or .gguf, for the census's
        windows (None without it: a server's tokenizer is only reachable at run time)."""
        return cls._case_tokenizer(spec, base_dir)

    def _base_url(self) -> str:
        if not self.spec.base_url:
            raise CasekitError(
                f"model {self.spec.id!r}: provider openai-compatible needs base_url (the server's "
                "OpenAI-style root, e.g. http://127.0.0.1:8000/v1)"
            )
        return self.spec.base_url.rstrip("/")

    def _extra_body(self) -> dict[str, Any]:
        return self.extra_body

    def _top_k(self, body: dict[str, Any], top_k: int | None) -> dict[str, Any]:
        if top_k is not None:
            body["top_k"] = int(top_k)  # llama.cpp, vLLM and others accept it (extra_body)
        return {}

    def _identity_extra(self) -> dict[str, Any]:
        if self.score_method == "prompt_logprobs":
            out: dict[str, Any] = {"score_method": PROMPT_LOGPROBS_METHOD,
                                   "prompt_logprobs": self.prompt_logprobs_k}
        else:
            out = {"score_method": SCORE_METHOD, "score_alignment": self.score_alignment}
        tok = self.case_tokenizer
        if tok is not None:
            info = tok.info
            out.update({
                "tokenizer": info.path, "tokenizer_format": info.format,
                "tokenizer_family": info.family, "tokenizer_sha256": info.sha256,
                "tokenizer_bytes": info.bytes, "tokenizer_prepends_space": info.prepends_space,
                "tokenizer_check": ("every scored text's ids compared with the server's "
                                    "/tokenize" if self.score_method == "prompt_logprobs" else
                                    "every scored text's echoed token texts compared")})
        return out

    # -- params.tokenizer cross-check ------------------------------------------------------

    def _tokenizer_mismatch(self, what: str) -> CapabilityError:
        assert self.case_tokenizer is not None
        info = self.case_tokenizer.info
        return CapabilityError(
            f"params.tokenizer does not tokenize like the server: {what}; the census windows "
            f"were planned with {info.path} ({info.family}, {info.sha256}), so this window is "
            "not scored; give the served model's tokenizer.json (or .gguf) as params.tokenizer")

    def _tokenizer_match(self, compared: str, server_special_prefix: list[Any],
                         n_tokens: int) -> dict[str, Any]:
        """What a passed cross-check records (``raw_response.tokenizer_check``)."""
        assert self.case_tokenizer is not None
        return {"status": "match", "compared": compared,
                "tokenizer_sha256": self.case_tokenizer.info.sha256,
                "server_special_prefix": server_special_prefix, "n_tokens": n_tokens}

    def _check_tokenizer_ids(self, text: str, server_ids: list[int]) -> dict[str, Any]:
        """Compare the server's ``/tokenize`` ids of ``text`` (after at most two leading special
        ids, its BOS) with the case tokenizer's; raise CapabilityError when they differ."""
        tok = self.case_tokenizer
        assert tok is not None
        mine = tok.prompt_ids(text)
        lead = 0
        while lead < min(2, len(server_ids)) and server_ids[lead] in tok.special_ids \
                and len(server_ids) - lead > len(mine):
            lead += 1
        theirs = server_ids[lead:]
        if theirs != mine:
            k = _common_prefix(theirs, mine)
            near = b"".join(tok.piece(i) for i in mine[max(0, k - 3):k + 3])
            raise self._tokenizer_mismatch(
                f"the server gives {len(theirs)} tokens after {lead} special, params.tokenizer "
                f"{len(mine)}; first difference at token {k}: server ids {theirs[k:k + 5]}, "
                f"params.tokenizer ids {mine[k:k + 5]} (near {near.decode('utf-8', 'replace')!r})")
        return self._tokenizer_match("server /tokenize ids", server_ids[:lead], len(mine))

    def _check_tokenizer_echo(self, text: str, echo: list[dict[str, Any]]) -> dict[str, Any]:
        """Compare the echoed token texts of ``text`` with the case tokenizer's pieces (as the
        server shows them: UTF-8 decoded per token, broken characters dropped, as
        llama-cpp-python does). Echo gives token texts, not ids, so two tokens with the same
        text would pass; the token count and every boundary are still checked. Leading empty
        or special tokens (a BOS) and the one generated token after the text are skipped."""
        tok = self.case_tokenizer
        assert tok is not None
        mine = tok.prompt_ids(text)
        want = [tok.piece(i).decode("utf-8", "ignore") for i in mine]
        got = [str(t["token"]) for t in echo]
        specials = {tok.piece(i).decode("utf-8", "ignore") for i in tok.special_ids}
        for lead in range(0, 3):
            if lead > len(got) or (lead and got[lead - 1] not in specials | {""}):
                break
            extra = len(got) - lead - len(mine)
            if extra in (0, 1) and got[lead:lead + len(mine)] == want:
                return self._tokenizer_match("echoed token texts", got[:lead], len(mine))
        k = _common_prefix(got, want)
        raise self._tokenizer_mismatch(
            f"the server echoes {len(got)} tokens (the text's and one generated), "
            f"params.tokenizer gives {len(mine)}; first difference at token {k}: server "
            f"{got[k:k + 4]}, params.tokenizer {want[k:k + 4]}")

    # ----------------------------------------------------------------- score

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        if not attempt.prompt or not attempt.continuation:
            raise CasekitError(
                f"score attempt {attempt.id} needs a non-empty prompt and continuation (a "
                "server returns no log-prob for the first token of a text)"
            )
        if self.score_method == "prompt_logprobs":
            return await self._score_prompt_logprobs(attempt)
        alignment = await self.check_alignment()
        prompt, continuation = attempt.prompt, attempt.continuation
        raw, data, sent, dropped = await self._score_send(self._echo_body(prompt + continuation))
        echo = self._echo_tokens(data, prompt + continuation)
        check = (self._check_tokenizer_echo(prompt + continuation, echo)
                 if self.case_tokenizer is not None else None)
        scores, boundary = self._continuation_scores(echo, len(prompt), len(prompt + continuation))
        http = raw.http_response
        n = len(scores)
        n_top = sum(s.is_top for s in scores)
        request = self._request_record("completions", sent, {}, [], dropped)
        request.update({"score_method": SCORE_METHOD, "prompt_chars": len(prompt),
                        "continuation_chars": len(continuation)})
        response = self._response_record(http, data)
        if check is not None:
            response["tokenizer_check"] = check
        response.update({
            "alignment_check": alignment,
            "boundary": boundary,
            "n_continuation_tokens": n,
            "sum_logprob": float(sum(s.logprob for s in scores)),
            "top1_share": n_top / n,
            "n_top1": n_top,
        })
        return self._score_result(data, http, request, response, scores)

    def _score_result(self, data: dict[str, Any], http: Any, request: dict[str, Any],
                      response: dict[str, Any], scores: list[TokenScore]) -> ProviderResult:
        secrets = self.key.secrets()
        usage = data.get("usage")
        return ProviderResult(
            returned_model=data.get("model"),
            request_id=http.headers.get("x-request-id"),
            system_fingerprint=data.get("system_fingerprint"),
            server_date=http.headers.get("date"),
            usage=redact(usage, secrets) if isinstance(usage, dict) else {},
            raw_request=redact(request, secrets),
            raw_response=redact(response, secrets),
            token_scores=scores,
        )

    # -- vLLM prompt_logprobs ------------------------------------------------------------------

    def _server_root(self) -> str:
        """The server's root (``/tokenize`` lives there, not under ``/v1``)."""
        root = self.base_url
        return root[:-3] if root.endswith("/v1") else root

    async def _tokenize(self, text: str) -> tuple[list[int], dict[str, Any]]:
        """Token ids of ``text`` from the server's own tokenizer (vLLM ``POST /tokenize``,
        special tokens added as for a prompt). Returns (ids, what to record)."""
        url = self._server_root() + "/tokenize"
        http = await self._http_send(url, {"model": self.spec.model, "prompt": text,
                                           "add_special_tokens": True})
        if http.status_code in (404, 405):
            raise CapabilityError(
                f"{strip_credentials(url)} answered HTTP {http.status_code}: the server has no "
                "/tokenize endpoint, so prompt log-probs cannot be matched to the continuation; "
                "score_method: prompt_logprobs needs vLLM's OpenAI server (use score_method: echo "
                "for llama.cpp servers, or provider: local)")
        self._raise_for_status(http)
        data = decode_body(http.content, http.status_code, url)
        ids = data.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise CapabilityError(f"{strip_credentials(url)} returned no token ids ('tokens'); "
                                  "score_method: prompt_logprobs needs vLLM's /tokenize")
        return ids, {"url": strip_credentials(url), "status": http.status_code,
                     "count": len(ids), "body_sha256": body_sha256(http.content),
                     "date": http.headers.get("date")}

    async def _score_prompt_logprobs(self, attempt: PlannedAttempt) -> ProviderResult:
        """Teacher forcing from vLLM's ``prompt_logprobs``: for every prompt token after the
        first, the log-prob of the actual token, its rank among all tokens, and the top
        ``k`` alternatives, keyed by token id. The continuation's tokens are found from the
        server's own tokenizer (``/tokenize`` of the prompt and of prompt + continuation).
        rank and the greedy preset are exact; the top-40 preset is exact when ``k >= 40``
        and left unknown otherwise (never guessed)."""
        prompt, continuation = attempt.prompt or "", attempt.continuation or ""
        ids_prefix, tok1 = await self._tokenize(prompt)
        ids_full, tok2 = await self._tokenize(prompt + continuation)
        # Before anything is scored: the windows were planned with params.tokenizer, so the
        # server must tokenize the text the same way, or it would score other windows.
        check = (self._check_tokenizer_ids(prompt + continuation, ids_full)
                 if self.case_tokenizer is not None else None)
        # The continuation starts where the two tokenizations part: at the prompt's end when
        # the prompt's tokens are a prefix of the whole's ("clean"), earlier when a token
        # spans the boundary ("merged": that token is scored as part of the continuation).
        start = _common_prefix(ids_prefix, ids_full)
        boundary = "clean" if start == len(ids_prefix) else "merged"
        if start == 0 or start >= len(ids_full):
            raise CapabilityError(f"attempt {attempt.id}: the server's tokenizer leaves no "
                                  "continuation token after the prompt's first token; nothing "
                                  "to score")
        body = {"model": self.spec.model, "prompt": prompt + continuation, "max_tokens": 1,
                "temperature": 0.0, "prompt_logprobs": self.prompt_logprobs_k}
        raw, data, sent, dropped = await self._score_send(body)
        try:
            plp = data["choices"][0]["prompt_logprobs"]
            if not isinstance(plp, list):
                raise TypeError("prompt_logprobs is not a list")
        except (KeyError, IndexError, TypeError) as exc:
            raise CapabilityError(
                f"{self.base_url} returned no prompt_logprobs ({type(exc).__name__}: {exc}); "
                "score_method: prompt_logprobs needs vLLM") from None
        if len(plp) != len(ids_full):
            raise CapabilityError(
                f"{self.base_url}: {len(plp)} prompt log-prob entries for {len(ids_full)} "
                "tokens from /tokenize; they cannot be matched, so nothing is recorded")
        scores = [self._prompt_token_score(plp[i], ids_full[i], i)
                  for i in range(start, len(ids_full))]
        http = raw.http_response
        n_top = sum(sc.is_top for sc in scores)
        request = self._request_record("completions", sent, {}, [], dropped)
        request.update({"score_method": PROMPT_LOGPROBS_METHOD, "prompt_chars": len(prompt),
                        "continuation_chars": len(continuation),
                        "tokenize": [tok1, tok2]})
        response = self._response_record(http, data)
        if check is not None:
            response["tokenizer_check"] = check
        response.update({"boundary": boundary, "prompt_tokens": len(ids_prefix),
                         "n_continuation_tokens": len(scores),
                         "continuation_token_ids": ids_full[start:],
                         "sum_logprob": float(sum(sc.logprob for sc in scores)),
                         "top1_share": n_top / len(scores), "n_top1": n_top,
                         "top40_exact": self.prompt_logprobs_k >= 40})
        return self._score_result(data, http, request, response, scores)

    def _prompt_token_score(self, entry: Any, token_id: int, position: int) -> TokenScore:
        """One prompt token's TokenScore from a vLLM entry ``{id: {logprob, rank,
        decoded_token}}`` holding the actual token and the top-k (vLLM ranks from 1)."""
        if not isinstance(entry, dict) or str(token_id) not in entry:
            raise CapabilityError(
                f"{self.base_url}: no prompt log-prob for token id {token_id} at position "
                f"{position}; the server's log-probs do not match its /tokenize output")
        rows: list[tuple[int, float, int | None, str]] = []
        for key, v in entry.items():
            if not isinstance(v, dict) or not isinstance(v.get("logprob"), (int, float)):
                raise CapabilityError(f"{self.base_url}: malformed prompt log-prob entry at "
                                      f"position {position}: {json.dumps(entry)[:200]}")
            rank = v.get("rank")
            rows.append((int(key), float(v["logprob"]), rank if isinstance(rank, int) else None,
                         str(v.get("decoded_token") or "")))
        actual = next(r for r in rows if r[0] == token_id)
        if actual[2] is None:
            raise CapabilityError(f"{self.base_url}: the prompt log-probs carry no rank; "
                                  "score_method: prompt_logprobs needs a vLLM that reports it")
        rank0 = actual[2] - 1
        top = sorted((r for r in rows if r[2] is not None and r[2] <= self.prompt_logprobs_k),
                     key=lambda r: (r[2], r[0]))
        best = top[0] if top else actual
        lse = None
        if self.prompt_logprobs_k >= 40 and len(top) >= min(40, self.prompt_logprobs_k):
            vals = [r[1] for r in top[:40]]
            m = max(vals)
            lse = m + math.log(sum(math.exp(v - m) for v in vals))
        return TokenScore(token=actual[3], token_id=token_id, logprob=actual[1],
                          top_token_id=best[0], top_logprob=best[1], is_top=rank0 == 0,
                          rank=rank0, top40_logsumexp=lse)

    def _echo_body(self, text: str) -> dict[str, Any]:
        return {"model": self.spec.model, "prompt": text, "echo": True, "logprobs": 1,
                "max_tokens": 1, "temperature": 0.0}

    async def echo_logprobs(self, text: str) -> list[dict[str, Any]]:
        """The server's echoed tokens of ``text`` as sent (no alignment check): ``token``,
        ``start``, ``end`` (character offsets), ``logprob``, ``top`` (token -> log-prob)."""
        _, data, _, _ = await self._score_send(self._echo_body(text))
        return self._echo_tokens(data, text)

    async def _score_send(self, body: dict[str, Any]) -> tuple[
            Any, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """Send a scoring request: no parameter is ever dropped, and a refusal of the request
        (HTTP 400/422: echo or log-probs unsupported) is a CapabilityError."""
        openai = _openai()
        try:
            return await self._send("completions", body, may_drop=False)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise CapabilityError(
                f"{strip_credentials(self.base_url)} refused a scoring request (Completions "
                f"with echo and logprobs): {exc}; use provider: local for teacher-forced "
                "strategies"
            ) from exc

    def _echo_tokens(self, data: dict[str, Any], text: str) -> list[dict[str, Any]]:
        try:
            lp = data["choices"][0]["logprobs"]
            tokens = list(lp["tokens"])
            values = list(lp["token_logprobs"])
            tops = list(lp.get("top_logprobs") or [None] * len(tokens))
        except (KeyError, IndexError, TypeError) as exc:
            raise CapabilityError(
                f"{self.base_url} returned no echo log-probs ({type(exc).__name__}: {exc}); the "
                "server cannot score: use provider: local for teacher-forced strategies"
            ) from None
        spans = _token_spans(tokens, lp.get("text_offset"), text)
        if spans is None:
            raise CapabilityError(
                f"{self.base_url}: the echoed tokens do not spell the text sent, so they cannot "
                "be aligned with the continuation; use provider: local to score"
            )
        out = []
        for i, tok in enumerate(tokens):
            top = tops[i] if i < len(tops) else None
            if isinstance(top, list):  # some servers: a list of {token: logprob}
                merged: dict[str, float] = {}
                for entry in top:
                    if isinstance(entry, dict):
                        merged.update(entry)
                top = merged
            out.append({"token": tok, "start": spans[i][0], "end": spans[i][1],
                        "logprob": values[i] if i < len(values) else None,
                        "top": top if isinstance(top, dict) else None})
        return out

    def _continuation_scores(self, echo: list[dict[str, Any]], start: int,
                             end: int) -> tuple[list[TokenScore], str]:
        cont = [t for t in echo if t["end"] > start and t["start"] < end]
        if not cont:
            raise CapabilityError(f"{self.base_url}: no echoed token covers the continuation")
        boundary = "clean" if cont[0]["start"] == start else "merged"
        scores = []
        for t in cont:
            if t["logprob"] is None or not t["top"]:
                raise CapabilityError(
                    f"{self.base_url}: no log-prob for the continuation token {t['token']!r}; "
                    "the server cannot score this text"
                )
            top_token, top_lp = max(t["top"].items(), key=lambda kv: kv[1])
            lp = float(t["logprob"])
            scores.append(TokenScore(
                token=t["token"], token_id=-1, logprob=lp, top_token_id=-1,
                top_logprob=float(top_lp),
                is_top=top_token == t["token"] or lp >= float(top_lp) - 1e-9,
            ))
        return scores, boundary

    async def check_alignment(self) -> dict[str, Any]:
        """Check once per provider that the server's echo log-probs are aligned (see the
        module doc). Returns the evidence; raises CapabilityError for a shifted server."""
        if self._alignment_error is not None:
            raise self._alignment_error
        if self._alignment is not None:
            return self._alignment
        loop = asyncio.get_running_loop()
        if self._align_lock is None or self._align_loop is not loop:
            self._align_lock, self._align_loop = asyncio.Lock(), loop
        async with self._align_lock:
            if self._alignment_error is not None:
                raise self._alignment_error
            if self._alignment is not None:
                return self._alignment
            if self.score_alignment == "trust":
                self._alignment = {"status": "trusted", "method": "params.score_alignment: "
                                   "trust (not checked)"}
                return self._alignment
            probes = []
            for probe in _ALIGN_PROBES:
                result = await self._probe(probe)
                probes.append(result)
                if result["verdict"] == "standard":
                    self._alignment = {"status": "verified", "probes": probes}
                    return self._alignment
                if result["verdict"] == "shifted":
                    self._alignment_error = CapabilityError(
                        f"{self.base_url} returns echo log-probs shifted by one token (each "
                        "prompt token gets the log-prob it has at the next position; the known "
                        "llama-cpp-python bug for models without a BOS token, issue #1983), so "
                        "its scores would be wrong and none are recorded. Score with provider: "
                        "local (same GGUF), or a server whose echo log-probs are aligned. "
                        f"Evidence: {json.dumps(result)}"
                    )
                    raise self._alignment_error
            self._alignment_error = CapabilityError(
                f"{self.base_url}: could not verify that the server's echo log-probs are aligned "
                f"with the tokens (probes: {json.dumps(probes)[:1500]}); score with provider: "
                "local, or set params.score_alignment: trust if you have checked the server"
            )
            raise self._alignment_error

    async def _probe(self, probe: str) -> dict[str, Any]:
        """Greedy-generate one token after ``probe`` (its log-prob is never shifted), then echo
        ``probe`` + that token and compare."""
        gen = {"model": self.spec.model, "prompt": probe, "max_tokens": 1, "temperature": 0.0,
               "logprobs": 1}
        raw1, data1, _, _ = await self._score_send(gen)
        result: dict[str, Any] = {"probe": probe,
                                  "generate_request_id": raw1.http_response.headers.get(
                                      "x-request-id")}
        try:
            lp = data1["choices"][0]["logprobs"]
            token, lp_gen = lp["tokens"][0], lp["token_logprobs"][0]
        except (KeyError, IndexError, TypeError):
            result["verdict"] = "no generation log-probs"
            return result
        result.update({"token": token, "generated_logprob": lp_gen})
        if not token or lp_gen is None:
            result["verdict"] = "no generation log-probs"
            return result
        raw2, data2, _, _ = await self._score_send(self._echo_body(probe + token))
        result["echo_request_id"] = raw2.http_response.headers.get("x-request-id")
        try:
            echo = self._echo_tokens(data2, probe + token)
        except CapabilityError as exc:
            result["verdict"] = f"no echo log-probs ({exc})"
            return result
        idx = next((i for i, t in enumerate(echo) if t["start"] == len(probe)
                    and t["end"] == len(probe) + len(token) and t["token"] == token), None)
        if idx is None or idx == 0:
            result["verdict"] = "inconclusive: the generated token is not echoed on its own"
            return result
        echoed = echo[idx]["logprob"]
        before = echo[idx - 1]["top"] or {}
        shifted = before.get(token)
        result.update({"echo_logprob": echoed, "echo_logprob_one_token_earlier": shifted})
        if echoed is not None and _close(float(echoed), float(lp_gen)):
            result["verdict"] = "standard"
        elif shifted is not None and _close(float(shifted), float(lp_gen)):
            result["verdict"] = "shifted"
        else:
            result["verdict"] = "inconclusive: the echoed log-prob matches neither position"
        return result


def _token_spans(tokens: list[Any], offsets: Any, text: str) -> list[tuple[int, int]] | None:
    """Character spans of the echoed tokens in ``text`` (tokens past its end, i.e. generated
    ones, get spans at or after ``len(text)``). From the token strings when they spell the text;
    else from the server's ``text_offset``; None when neither fits."""
    strings = [t if isinstance(t, str) else "" for t in tokens]
    if "".join(strings).startswith(text):
        spans, pos = [], 0
        for s in strings:
            spans.append((pos, pos + len(s)))
            pos += len(s)
        return spans
    if isinstance(offsets, list) and len(offsets) == len(tokens) and all(
            isinstance(o, int) for o in offsets) and offsets == sorted(offsets):
        ends = offsets[1:] + [max(offsets[-1] + len(strings[-1]), len(text))] if offsets else []
        spans = list(zip(offsets, ends, strict=True))
        if spans and spans[0][0] == 0 and spans[-1][1] >= len(text):
            return spans
    return None
