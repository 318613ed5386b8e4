"""The base of the hosted-API providers (OpenAI, Anthropic): what their SDKs make the same.

Both SDKs name their exceptions alike, take a key, a base URL, a timeout and ``max_retries``,
and answer an unsupported parameter with HTTP 400; so the client per event loop, the key and
its redaction, the drop-unsupported-parameter send loop, retry classification and the shape
of batch polling live here once. Request bodies, result parsing and batch files differ per
API and stay in each provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field

from casekit.case import ModelSpec
from casekit.errors import ProviderUnavailable
from casekit.provenance import strip_credentials
from casekit.providers.api_common import (
    UnsupportedParameter,
    alias_check,
    api_error_message,
    body_sha256,
    classify_sdk_failure,
    recorded_headers,
    sanitize_api_error,
    sdk_version,
    unsupported_parameter,
)
from casekit.providers.base import BatchHandle, BatchStatus, Provider, RetryDecision
from casekit.providers.keys import (
    ApiKey,
    load_key,
    protect_logs,
    redact,
    redact_error_text,
    redact_result,
)
from casekit.providers.params import ProviderParams, flag, number_at_least, whole_at_least
from casekit.records import AttemptError, PlannedAttempt, ProviderResult

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 8


class ApiParams(ProviderParams):
    """The params every hosted-API provider takes."""

    timeout: Annotated[float, Field(ge=1.0), number_at_least(1.0)] = DEFAULT_TIMEOUT
    """Seconds before a request is abandoned (recorded as a transient failure, retried)."""
    max_connections: Annotated[int, Field(ge=1), whole_at_least(1)] = DEFAULT_MAX_CONNECTIONS
    """Requests in flight at once against this model."""
    allow_drop_unsupported: Annotated[bool, flag()] = False
    """When the model rejects a parameter with HTTP 400, send the request once more without
    it and record which and why (``raw_request.dropped``); otherwise the attempt fails with
    the fix."""


class ApiProvider(Provider):
    """A hosted API behind an official SDK (imported lazily: the package loads without it)."""

    Params: ClassVar[type[ProviderParams]] = ApiParams
    params: ApiParams
    sdk_module: ClassVar[str]
    """Import name and distribution of the SDK (``openai``, ``anthropic``)."""
    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str | None]
    key_required: ClassVar[bool] = True
    droppable: ClassVar[tuple[str, ...]] = ()
    """Body fields that ``allow_drop_unsupported`` may remove when the model rejects them."""
    custom_headers_env: ClassVar[str]
    """The SDK's own variable of extra headers (recorded: whether it was set)."""
    batch_status_key: ClassVar[str] = "status"
    """The batch object's field holding its status word."""
    batch_done: ClassVar[frozenset[str]] = frozenset()
    """Status words after which a batch's results can be collected."""

    def __init__(self, spec: ModelSpec, base_dir: Path, *, http_client: Any = None) -> None:
        """``http_client``: an ``httpx2.AsyncClient`` for the SDK (tests inject a mock
        transport); default: the SDK's own client."""
        super().__init__(spec, base_dir)
        self._check_interface()
        self.base_url = self._base_url()
        self.timeout = self.params.timeout
        self.max_connections = self.params.max_connections
        self.allow_drop = self.params.allow_drop_unsupported
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
        self._sdk()

    def _check_interface(self) -> None:  # noqa: B027 - optional hook
        """Refuse an interface the API does not have (before any key is read)."""

    def _base_url(self) -> str:
        # Explicit, so that $OPENAI_BASE_URL / $ANTHROPIC_BASE_URL never silently redirect a run.
        return (self.spec.base_url or self.default_base_url).rstrip("/")

    # ----------------------------------------------------------------- the SDK

    def _sdk(self) -> Any:
        """The SDK module; a missing one names the install command. Called in ``__init__``
        too: its first import takes most of a second, which inside the event loop would
        stall every attempt in flight."""
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError as exc:
            raise ProviderUnavailable(
                f"the {self.sdk_module} SDK is not installed ({exc}); run: pip install "
                f"{self.sdk_module}"
            ) from exc

    def _client_class(self) -> Any:
        """The SDK's async client class."""
        raise NotImplementedError

    def _client_options(self) -> dict[str, Any]:
        """Client arguments beyond key, base URL, timeout and retries."""
        return {}

    def _client(self) -> Any:
        """The SDK client for the running event loop (one per loop: connections are bound to
        the loop that opened them). It never retries: the runner retries and records each."""
        loop = asyncio.get_running_loop()
        if self._client_obj is None or self._client_loop is not loop:
            kwargs: dict[str, Any] = {"api_key": self.key.value, "base_url": self.base_url,
                                      "max_retries": 0, "timeout": self.timeout,
                                      **self._client_options()}
            if self._http_client is not None:
                kwargs["http_client"] = self._http_client
            self._client_obj = self._client_class()(**kwargs)
            self._client_loop = loop
        return self._client_obj

    def close(self) -> None:
        client, self._client_obj = self._client_obj, None
        loop, self._client_loop = self._client_loop, None
        if client is None or self._http_client is not None:
            return  # an injected client belongs to the caller
        if loop is not None and not loop.is_closed():
            return  # still in use by a running loop; it closes with it
        with contextlib.suppress(Exception):
            asyncio.run(client.close())

    @contextlib.contextmanager
    def _clean_errors(self) -> Iterator[None]:
        """SDK errors raised inside are cleaned for the ledger (key removed, status, request
        id and Date added; see :func:`sanitize_api_error`) and re-raised as they are."""
        sdk = self._sdk()
        try:
            yield
        except sdk.APIError as exc:
            sanitize_api_error(exc, self.key.secrets())
            raise

    # ----------------------------------------------------------------- identity

    def _api_identity(self) -> dict[str, Any]:
        """The identity fields every API provider records."""
        return {
            "endpoint": strip_credentials(self.base_url),
            "key_env": self.key.env,
            "key_fingerprint": self.key.fingerprint,
            "key_used": self.key.used,
            "sdk": sdk_version(self.sdk_module),
            "sdk_max_retries": 0,
            "timeout_s": self.timeout,
            "max_connections": self.max_connections,
            "alias_warning": self.alias_warning,
            "alias_message": self.alias_message,
            "custom_headers_from_env": bool(os.environ.get(self.custom_headers_env)),
        }

    # ----------------------------------------------------------------- sending

    async def _post(self, api: str, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Send one request; return (the SDK's raw response, the decoded JSON body)."""
        raise NotImplementedError

    def _api_param(self, exc: Any) -> str | None:
        """The API's own ``param`` field of a 400, when it gives one."""
        return None

    def _ends_with_prefill(self, body: dict[str, Any]) -> bool:
        return False

    def _without(self, body: dict[str, Any], param: str) -> tuple[dict[str, Any], Any,
                                                                  dict[str, Any]]:
        """(the body without ``param``, its value, what else the record should say)."""
        body = dict(body)
        return body, body.pop(param), {}

    def _unsupported_message(self, param: str, exc: BaseException) -> str:
        raise NotImplementedError

    async def _send(self, api: str, body: dict[str, Any], *, may_drop: bool = True) -> tuple[
            Any, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """Send; on an HTTP 400 about an unsupported parameter either retry once without it
        (``allow_drop_unsupported``) or raise UnsupportedParameter with the fix. Returns
        (raw, JSON body, body sent, dropped parameters)."""
        sdk = self._sdk()
        dropped: list[dict[str, Any]] = []
        while True:
            try:
                raw, data = await self._post(api, body)
                return raw, data, body, dropped
            except sdk.BadRequestError as exc:
                if not may_drop:
                    raise
                message = api_error_message(exc)
                param = unsupported_parameter(message,
                                              [k for k in self.droppable if k in body],
                                              self._api_param(exc),
                                              prefill=self._ends_with_prefill(body))
                if param is None:
                    raise
                if not self.allow_drop or any(d["param"] == param for d in dropped):
                    raise UnsupportedParameter(self._unsupported_message(param, exc)) from exc
                body, value, extra = self._without(body, param)
                reason = redact_error_text(message, self.key.secrets())
                dropped.append({"param": param, "value": value, "reason": f"HTTP 400: {reason}",
                                "request_id": getattr(exc, "request_id", None), **extra})
                log.warning("model %s rejected %s (%s); retrying once without it, as "
                            "params.allow_drop_unsupported allows", self.spec.id, param,
                            reason[:200])

    # ----------------------------------------------------------------- records

    def _api_request_record(self, api: str, path: str, body: dict[str, Any],
                        not_sent: dict[str, Any], notes: list[str],
                        dropped: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """What ``raw_request`` records of a request (before keys are removed)."""
        record: dict[str, Any] = {
            "api": api,
            "method": "POST",
            "url": strip_credentials(self.base_url) + path,
            "body": body,
            "timeout_s": self.timeout,
            "sdk": sdk_version(self.sdk_module),
            **extra,
        }
        if not_sent:
            record["not_sent"] = not_sent
        if notes:
            record["notes"] = notes
        if dropped:
            record["dropped"] = dropped
        return record

    @staticmethod
    def _response_record(http: Any, data: dict[str, Any]) -> dict[str, Any]:
        """What ``raw_response`` records: status, whitelisted headers, the body and its hash."""
        return {
            "status": http.status_code,
            "http_version": getattr(http, "http_version", None),
            "headers": recorded_headers(http.headers),
            "body": data,
            "body_sha256": body_sha256(bytes(http.content)),
        }

    def _provider_result(self, text: str, data: dict[str, Any], *, request_id: str | None,
                         server_date: str | None, request: dict[str, Any],
                         response: dict[str, Any], **fields: Any) -> ProviderResult:
        """A ProviderResult with the key removed from everything recorded."""
        usage = data.get("usage")
        model = data.get("model")
        return redact_result(ProviderResult(
            text=text,
            returned_model=model if isinstance(model, str) or model is None else str(model),
            request_id=request_id,
            server_date=server_date,
            usage=usage if isinstance(usage, dict) else {},
            raw_request=request,
            raw_response=response,
            **fields,
        ), self.key.secrets())

    # ----------------------------------------------------------------- batches

    async def _retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        """The provider's batch object."""
        raise NotImplementedError

    def _batch_handle(self, data: dict[str, Any], attempts: Sequence[PlannedAttempt],
                      request_sha256: str, info: dict[str, Any]) -> BatchHandle:
        """The handle of a created batch, its object and info cleaned of the key."""
        secrets = self.key.secrets()
        return BatchHandle(batch_id=str(data["id"]), custom_ids=[a.id for a in attempts],
                           request_sha256=request_sha256,
                           status=str(data.get(self.batch_status_key)),
                           info=redact(info, secrets), raw=redact(data, secrets))

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        data = await self._retrieve_batch(batch_id)
        status = str(data.get(self.batch_status_key))
        counts = data.get("request_counts") or {}
        return BatchStatus(batch_id=batch_id, status=status, done=status in self.batch_done,
                           counts={k: int(v) for k, v in counts.items() if isinstance(v, int)},
                           raw=redact(data, self.key.secrets()))

    def _batch_error(self, kind: Any, type_: str, message: str) -> AttemptError:
        """A batch request's failure, its message cleaned of the key and capped."""
        return AttemptError(kind=kind, type=type_,
                            message=redact_error_text(message, self.key.secrets())[:2000])

    # ----------------------------------------------------------------- failures

    def should_retry(self, exc: BaseException) -> RetryDecision:
        """429 -> rate_limit (Retry-After / retry-after-ms honoured, seconds or HTTP date);
        408, 409, 5xx (Anthropic's 529 too), connection errors, timeouts, a reset connection
        and a 200 whose body is not JSON -> transient; other 4xx, capability and
        configuration errors -> no."""
        try:
            sdk = self._sdk()
        except ProviderUnavailable:
            sdk = None
        return classify_sdk_failure(exc, sdk)
