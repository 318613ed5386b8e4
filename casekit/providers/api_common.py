"""What the API providers share: recorded headers, Retry-After, retry decisions, the handling
of rejected parameters, SDK failure messages, and the snapshot-vs-alias check.

Responses are recorded with a whitelist of HTTP headers (:data:`RECORDED_HEADERS`), so
``Authorization`` / ``x-api-key`` and cookies can never reach a record. Used by
``api`` and the ``openai`` and ``anthropic`` providers (which import their SDKs lazily) and by the
aiohttp transport.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import importlib.metadata
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from casekit.canonical import sha256_json
from casekit.errors import CasekitError
from casekit.provenance import strip_credentials
from casekit.providers.base import CapabilityError, RetryDecision
from casekit.providers.keys import redact_error_text

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- HTTP headers

RECORDED_HEADERS = ("date", "request-id", "x-request-id", "openai-processing-ms",
                    "openai-version", "openai-organization", "openai-project",
                    "anthropic-organization-id", "retry-after", "retry-after-ms",
                    "x-should-retry", "content-type", "server")
RECORDED_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


def recorded_headers(headers: Any) -> dict[str, str]:
    """The whitelisted response headers (names lower-cased); everything else is dropped."""
    out: dict[str, str] = {}
    if headers is None:
        return out
    items = headers.multi_items() if hasattr(headers, "multi_items") else list(headers.items())
    for name, value in items:
        lname = str(name).lower()
        if lname in RECORDED_HEADERS or lname.startswith(RECORDED_PREFIXES):
            out[lname] = f"{out[lname]}, {value}" if lname in out else str(value)
    return out


MAX_RETRY_AFTER = 600.0
"""Longest wait casekit accepts from a Retry-After header (seconds)."""


def retry_after_seconds(headers: Any, now: datetime | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After`` (seconds or an
    HTTP date, taken relative to the response's own ``Date`` header when it has one, so that
    a skewed local clock does not matter). None when absent or unreadable; capped at
    :data:`MAX_RETRY_AFTER`."""
    if headers is None:
        return None
    get = headers.get
    ms = get("retry-after-ms")
    if ms is not None:
        try:
            return _clamp(float(ms) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    value = str(value).strip()
    try:
        return _clamp(float(value))
    except ValueError:
        pass
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(str(get("date") or "")) or now or datetime.now(UTC)
    return _clamp((when - reference).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _clamp(seconds: float) -> float | None:
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# --------------------------------------------------------------------------- model names

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{8}$")
_OPENAI_MMDD = re.compile(r"-(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$")


def alias_check(provider: str, model: str) -> tuple[bool | None, str | None]:
    """``(alias_warning, message)`` for a requested model name.

    A dated snapshot (``gpt-4o-2024-08-06``, ``claude-3-5-sonnet-20241022``; for OpenAI also
    the older ``-0613`` form, and fine-tuned ``ft:`` ids) names fixed weights; any other name
    is an alias that the provider may point at a different model at any time.
    ``None`` for ``openai-compatible``, whose servers name models freely.
    """
    if provider not in ("openai", "anthropic"):
        return None, ("not checked: openai-compatible servers name models freely; identify the "
                      "served weights separately (e.g. the GGUF file's SHA-256)")
    if model.startswith("ft:") or _DATED.search(model) or (
            provider == "openai" and _OPENAI_MMDD.search(model)):
        return False, None
    return True, (f"{model!r} is an alias, not a dated snapshot: {provider} may serve different "
                  "weights under this name over time; the model id each response returned is "
                  "recorded, and a dated snapshot id should be preferred")


# --------------------------------------------------------------------------- response bodies


class MalformedResponseError(Exception):
    """An HTTP 2xx response whose body is not the JSON the API documents.

    Classified as transient: such bodies come from truncated transfers and intermediaries
    (proxies, load balancers), and a retry is bounded by the runner and recorded as a try.
    """


def body_sha256(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


# --------------------------------------------------------------------------- failures


class UnsupportedParameter(CapabilityError):
    """The model rejected a parameter of the attempt (HTTP 400) and casekit may not drop it."""


def decision_for_status(status: int, headers: Any) -> RetryDecision:
    """The retry decision for an HTTP error status (shared by the API providers).

    429 -> rate_limit (after = Retry-After); 408, 409, 5xx (500/502/503/504, Anthropic's 529
    "overloaded") -> transient; every other 4xx (400, 401, 403, 404, 422...) -> no: the same
    request would fail the same way.
    """
    after = retry_after_seconds(headers)
    if status == 429:
        return RetryDecision(action="rate_limit", after=after)
    if status in (408, 409) or status >= 500:
        return RetryDecision(action="transient", after=after)
    return RetryDecision(action="no")


_UNSUPPORTED = re.compile(
    r"not supported|unsupported|does not support|doesn't support|deprecated|not permitted|"
    r"not allowed|cannot both be specified|cannot be used|only the default|extra inputs|"
    r"is no longer",
    re.IGNORECASE,
)
_PREFILL = re.compile(
    r"prefill|final assistant|last message .{0,40}assistant|must end with a user|"
    r"ending with an assistant|ends with an assistant",
    re.IGNORECASE,
)
_BOTH = re.compile(r"cannot both be specified|only one of|mutually exclusive", re.IGNORECASE)


def unsupported_parameter(message: str, sent: Iterable[str], param: str | None = None,
                          prefill: bool = False) -> str | None:
    """The request parameter an HTTP 400 message says the model does not accept, if any.

    ``sent``: names of the optional parameters the request carried (``temperature``,
    ``top_p``...); ``param``: the API's own ``param`` field when it gives one; ``prefill``:
    whether the request ended with an assistant message. Returns ``assistant_prefill`` for a
    rejected prefill; when ``temperature`` and ``top_p`` "cannot both be specified",
    ``top_p`` (temperature carries greedy decoding, which matters more for evidence).
    """
    sent = list(sent)
    if prefill and _PREFILL.search(message):
        return "assistant_prefill"
    if not _UNSUPPORTED.search(message):
        return None
    if _BOTH.search(message) and "temperature" in sent and "top_p" in sent:
        return "top_p"
    if param in sent:
        return param
    for name in sent:
        if re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", message):
            return name
    return None


def api_error_message(exc: Any) -> str:
    """The API's own message of an SDK status error (``error.message`` of the body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("message")
        if isinstance(body.get("error"), dict):
            msg = body["error"].get("message", msg)
        if isinstance(msg, str):
            return msg
    return str(getattr(exc, "message", exc))


def describe_cause(cause: BaseException, depth: int = 4) -> str:
    """``Type: message`` of a network error, following its own causes while they carry no
    message: an httpx ``ReadError`` has an empty text, the ``ConnectionResetError`` under it
    says what happened."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = cause
    while current is not None and id(current) not in seen and len(parts) < depth:
        seen.add(id(current))
        text = str(current).strip()
        if text:
            parts.append(f"{type(current).__name__}: {text}")
            break
        parts.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    if not parts[-1].count(":"):
        parts[-1] += " (no message: the connection was closed or reset without a response)"
    return " <- ".join(parts)


def sanitize_api_error(exc: BaseException, secrets: Iterable[str]) -> None:
    """Rewrite an SDK exception's message, in place, for the ledger: the HTTP status, request
    id and server Date (or the underlying network error) added; the key, anything shaped like
    a key, and URL credentials removed. The exception keeps its type (the retry classification
    and the recorded error type depend on it)."""

    message = str(exc)
    response = getattr(exc, "response", None)
    extra = []
    if response is not None:
        extra.append(f"HTTP {response.status_code}")
        rid = response.headers.get("x-request-id") or response.headers.get("request-id")
        if rid:
            extra.append(f"request id {rid}")
        if response.headers.get("date"):
            extra.append(f"Date {response.headers.get('date')}")
    elif exc.__cause__ is not None:
        extra.append(describe_cause(exc.__cause__))
    if extra:
        message = f"{message} ({'; '.join(extra)})"
    clean = redact_error_text(strip_credentials(message), secrets)
    exc.args = (clean,)
    if hasattr(exc, "message"):
        try:
            exc.message = clean  # type: ignore[attr-defined]
        except AttributeError:
            pass


def classify_sdk_failure(exc: BaseException, sdk: Any) -> RetryDecision:
    """Retry decision for a failure of the openai or anthropic SDK (``sdk``: the imported
    module, or None when it is missing); both SDKs name their exceptions alike.

    429 -> rate_limit (Retry-After / retry-after-ms, seconds or HTTP date); 408, 409, 5xx
    (including Anthropic's 529), connection errors, timeouts, a reset connection and a 200
    whose body is not JSON -> transient; other 4xx, capability and configuration errors -> no.
    """
    if isinstance(exc, CasekitError):
        return RetryDecision(action="no")
    if isinstance(exc, MalformedResponseError):
        return RetryDecision(action="transient")
    if sdk is not None:
        if isinstance(exc, sdk.APIStatusError):
            return decision_for_status(exc.status_code, exc.response.headers)
        if isinstance(exc, sdk.APIResponseValidationError):
            return RetryDecision(action="transient",
                                 after=retry_after_seconds(exc.response.headers))
        if isinstance(exc, sdk.APIConnectionError):  # includes APITimeoutError
            return RetryDecision(action="transient")
    if isinstance(exc, (asyncio.TimeoutError, ConnectionError, TimeoutError)):
        return RetryDecision(action="transient")
    if type(exc).__module__.split(".")[0] in ("httpx2", "httpcore2", "httpx", "httpcore") \
            and type(exc).__name__.endswith(("Error", "Timeout")):
        return RetryDecision(action="transient")  # a transport error the SDK did not wrap
    return RetryDecision(action="no")


def requests_sha256(entries: Sequence[dict[str, Any]]) -> str:
    """``sha256:`` of the RFC 8785 canonical JSON of the list of batch request entries."""
    return sha256_json(list(entries))


def result_lines(content: bytes, where: str) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """(custom_id, entry, line) of each JSON object line of a batch's results (JSONL, in any
    order) that carries a ``custom_id``; a line that is not JSON is logged and skipped, and a
    custom_id seen before is skipped (the first result counts)."""
    seen: set[str] = set()
    for line in content.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            log.warning("%s: a results line is not JSON (%s)", where, body_sha256(line))
            continue
        cid = entry.get("custom_id") if isinstance(entry, dict) else None
        if not isinstance(cid, str) or cid in seen:
            continue
        seen.add(cid)
        yield cid, entry, line


@functools.cache
def sdk_version(dist: str) -> str:
    """``"openai 3.54.0"``; cached: reading package metadata costs 0.65 ms per call."""
    try:
        return f"{dist} {importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{dist} (not installed)"


async def response_content(http: Any) -> bytes:
    """The body bytes of an SDK HTTP response (read if it was not)."""
    return bytes(await http.aread())


def decode_body(content: bytes, status: int, url: str) -> dict[str, Any]:
    """The JSON object of a 2xx body, or MalformedResponseError (transient)."""
    try:
        data = json.loads(content)
    except ValueError as exc:
        preview = content[:200].decode("utf-8", "replace")
        raise MalformedResponseError(
            f"HTTP {status} from {strip_credentials(url)} with a body that is not valid JSON "
            f"({len(content)} bytes, {body_sha256(content)}; {exc}): {preview!r}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError(
            f"HTTP {status} from {strip_credentials(url)}: expected a JSON object, got "
            f"{type(data).__name__} ({body_sha256(content)})"
        )
    return data
