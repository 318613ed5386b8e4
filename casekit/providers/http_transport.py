"""``params.transport: http``: OpenAI-wire requests over aiohttp instead of the openai SDK.

The official SDK costs about 1.3 ms of CPU per request on a small VM (request building,
httpx2/httpcore2, response models), more than all of casekit's own work per attempt; at
thousands of attempts and 64 connections the event loop's thread, not the network, becomes
the limit (benchmarks/README.md). This transport sends the same JSON body the SDK would send
(built by the same provider code) to the same URL with the same headers that matter
(``Authorization``, ``OpenAI-Organization``, ``OpenAI-Project``, ``Content-Type``) over
aiohttp, whose HTTP parser is written in C, and hands back the status, headers and the exact
body bytes. Everything after that, recording the raw response, decoding it, the refusal and
finish-reason rules, is shared with the SDK path.

Failures are mapped onto the SDK's own exception classes (``openai.BadRequestError`` for a
400, ``RateLimitError`` for a 429, ``APIConnectionError`` for a reset or refused connection,
``APITimeoutError`` for a timeout...), built from the same status, headers and body, so the
retry classifier, the "unsupported parameter" detection and the recorded error types are the
same whichever transport ran: tests/test_http_transport.py runs the same faults through both.

What the SDK does and this transport does not: retries (casekit's runner retries either way:
the SDK runs with ``max_retries=0``), the SDK's telemetry headers (``X-Stainless-*``), and
response models (casekit reads the JSON itself on both paths).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from casekit.errors import ProviderUnavailable

log = logging.getLogger(__name__)

TRANSPORTS = ("sdk", "http")


class CaseInsensitiveHeaders(Mapping[str, str]):
    """Response headers with case-insensitive lookup (the SDK's httpx headers behave so); a
    repeated header keeps its values joined by ", " as httpx does."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for k, v in items:
            low = k.lower()
            if low in self._items:
                k0, v0 = self._items[low]
                self._items[low] = (k0, f"{v0}, {v}")
            else:
                self._items[low] = (k, v)

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        item = self._items.get(key.lower())
        return default if item is None else item[1]

    def __iter__(self) -> Any:
        return (k for k, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def multi_items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self._items.values()]


class HttpResponse:
    """What the provider reads of a response, whichever transport fetched it."""

    __slots__ = ("status_code", "headers", "url", "http_version", "content")

    def __init__(self, status_code: int, headers: CaseInsensitiveHeaders, url: str,
                 http_version: str, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.url = url
        self.http_version = http_version
        self.content = content


class HttpTransport:
    """One aiohttp session per event loop, at most ``max_connections`` connections."""

    def __init__(self, *, timeout: float, max_connections: int, headers: dict[str, str],
                 proxy: str | None = None) -> None:
        self.timeout = timeout
        self.max_connections = max_connections
        self._headers = headers
        self.proxy = proxy
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def version() -> str:
        try:
            import aiohttp
        except ImportError:
            return "aiohttp (not installed)"
        return f"aiohttp {aiohttp.__version__}"

    def _session_for_loop(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            try:
                import aiohttp
            except ImportError as exc:
                raise ProviderUnavailable(f"params.transport: http needs aiohttp ({exc}); run: "
                                          "pip install aiohttp, or use transport: sdk") from exc
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                             enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                json_serialize=json.dumps, auto_decompress=True,
                # trust_env would look up proxies and ~/.netrc in a thread on every request;
                # the proxy is resolved once instead (env_proxy), and .netrc never adds auth.
                trust_env=False)
            self._loop = loop
        return self._session

    async def post_json(self, url: str, body: dict[str, Any]) -> HttpResponse:
        """POST ``body`` as JSON; the response whatever its status. Raises
        :class:`TransportTimeout` or :class:`TransportConnectionError` (with the underlying
        error's type and text) when no complete response arrived."""
        import aiohttp

        session = self._session_for_loop()
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            # Redirects are not followed (nor are they by the SDK): a 3xx is an answer to
            # record, not a hop to take silently with the key.
            async with session.post(url, data=data, allow_redirects=False, proxy=self.proxy,
                                    headers={"Content-Type": "application/json"}) as resp:
                content = await resp.read()
                version = f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version \
                    else "HTTP/1.1"
                return HttpResponse(resp.status, CaseInsensitiveHeaders(list(resp.headers.items())),
                                    str(resp.url), version, content)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TransportTimeout(f"no complete response within {self.timeout:g} s "
                                   f"({type(exc).__name__})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportConnectionError(f"{type(exc).__name__}: {exc or 'connection lost'}") \
                from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        self._loop = None
        if session is not None and not session.closed:
            await session.close()

    def drop(self) -> None:
        """Forget the session without closing it (its loop is gone; providers are closed with
        :meth:`aclose` inside the loop by the runner, so this is the fallback)."""
        self._session = None
        self._loop = None


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` / ``HTTP_PROXY``, honouring
    ``NO_PROXY``), as httpx (the SDK's client) would use it; None for a direct connection."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    if urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
            parts.hostname, proxies):
        return None
    return proxy


class TransportTimeout(Exception):
    """No complete response within the timeout."""


class TransportConnectionError(Exception):
    """The connection failed, was refused, reset or closed before a complete response."""
