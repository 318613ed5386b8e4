"""API keys, key fingerprints and redaction.

Keys are read only from the environment variable a case names (``api_key_env``), never from
the case file, and never written anywhere: the ledger and the run manifest carry the
variable's name and a fingerprint, ``"sha256:" + the first 8 hex digits of SHA-256(key)``,
which identifies the key (and so the account it belongs to) without revealing it.

Responses are recorded with a whitelist of HTTP headers (:data:`RECORDED_HEADERS`), so
``Authorization`` / ``x-api-key`` and cookies can never reach a record, and every recorded
string passes through :func:`redact` as a second wall.

What the API providers share besides keys (recorded headers, Retry-After, failure
classification) is in :mod:`casekit.providers.api_common`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from casekit.errors import ProviderUnavailable

log = logging.getLogger(__name__)

NO_KEY_PLACEHOLDER = "casekit-no-key"
"""Sent as the key to ``openai-compatible`` servers run without one (the SDK insists on a key)."""

REDACTED = "[redacted]"


@dataclass(frozen=True)
class ApiKey:
    """A key loaded from the environment. ``repr`` never shows the value."""

    value: str
    """The key (or :data:`NO_KEY_PLACEHOLDER`): passed to the SDK, never recorded."""
    env: str | None
    """Name of the environment variable it came from (None: no key was used)."""
    used: bool
    """False when no key was sent (the placeholder went instead)."""

    def __repr__(self) -> str:
        return f"ApiKey(env={self.env!r}, fingerprint={self.fingerprint!r}, used={self.used})"

    __str__ = __repr__

    @property
    def fingerprint(self) -> str | None:
        return key_fingerprint(self.value) if self.used else None

    def secrets(self) -> list[str]:
        """Strings that must never appear in a record or a log."""
        return [self.value] if self.used else []


def key_fingerprint(key: str) -> str:
    """``"sha256:" + first 8 hex of SHA-256(key)``: names a key without revealing it."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def load_key(
    *, model_id: str, provider: str, api_key_env: str | None, default_env: str | None,
    required: bool,
) -> ApiKey:
    """Read the key from the environment variable the case names (or the provider's default).

    ``required=False`` (``openai-compatible``): without ``api_key_env`` no key is sent, and in
    particular OPENAI_API_KEY is never sent to a third-party server by default.
    Raises ProviderUnavailable, with the fix, when a required or named variable is unset.
    """
    env = api_key_env or default_env
    if env is None:
        return ApiKey(value=NO_KEY_PLACEHOLDER, env=None, used=False)
    value = os.environ.get(env, "").strip()
    if not value:
        if api_key_env:
            fix = f"set {env} or remove api_key_env to use the default"
            if not required:
                fix = f"set {env}, or remove api_key_env to call the server without a key"
            elif default_env and default_env != env:
                fix = f"set {env} or remove api_key_env to use {default_env}"
        else:
            fix = f"set {env} or name another variable with api_key_env"
        raise ProviderUnavailable(
            f"model {model_id!r} (provider {provider}): no API key in ${env}; {fix} "
            "(the variable's name goes in the case file, never the key)"
        )
    return ApiKey(value=value, env=env, used=True)


# --------------------------------------------------------------------------- redaction

# Keys that APIs echo back in error messages, possibly masked (``sk-proj-****abcd``).
_KEYLIKE = re.compile(r"\b(?:sk-ant|sk|rk)-[A-Za-z0-9_*.\-]{4,}")


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced (exact occurrences only)."""
    for secret in secrets:
        if secret and secret != NO_KEY_PLACEHOLDER:
            text = text.replace(secret, REDACTED)
    return text


def redact_error_text(text: str, secrets: Iterable[str]) -> str:
    """An error message with the secrets and anything shaped like an API key (an API may echo
    a masked key, ``sk-proj-****abcd``) replaced. Only for error messages: evidence text (prompts,
    outputs) is never pattern-edited."""
    return _KEYLIKE.sub(REDACTED, redact_text(text, secrets))


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like value with every exact occurrence of a secret replaced."""
    secrets = [s for s in secrets if s and s != NO_KEY_PLACEHOLDER]
    if not secrets:
        return value
    return _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {redact_text(str(k), secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets) for v in value]
    return value


R = TypeVar("R", bound=BaseModel)


def redact_result(result: R, secrets: Iterable[str]) -> R:
    """A recorded object (a :class:`~casekit.records.ProviderResult`, an error) with every exact
    occurrence of a secret replaced in every field: the text, the returned model id, the
    system fingerprint, request ids, headers, the raw request and response, token texts. A
    server that echoes the key anywhere in a response cannot get it into the ledger."""
    secrets = [s for s in secrets if s and s != NO_KEY_PLACEHOLDER]
    if not secrets:
        return result
    data = result.model_dump(mode="python")
    cleaned = _redact(data, secrets)
    if cleaned == data:
        return result
    return type(result).model_validate(cleaned)


class RedactingFilter(logging.Filter):
    """Rewrites log records that mention a secret (installed on the SDKs' loggers)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and s != NO_KEY_PLACEHOLDER]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is left to the logging module
            return True
        if any(s in message for s in self.secrets):
            record.msg = redact_text(message, self.secrets)
            record.args = None
        return True


_FILTERED_LOGGERS = ("openai", "openai._base_client", "anthropic", "anthropic._base_client",
                     "httpx2", "httpcore2", "httpx", "httpcore")


def protect_logs(key: ApiKey) -> None:
    """Make sure the key cannot reach a log through the SDKs' or the HTTP stack's loggers."""
    if not key.used:
        return
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        for f in logger.filters:
            if isinstance(f, RedactingFilter):
                if key.value not in f.secrets:
                    f.secrets.append(key.value)
                break
        else:
            logger.addFilter(RedactingFilter([key.value]))
