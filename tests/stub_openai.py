"""A fault-injecting OpenAI-compatible HTTP server on 127.0.0.1 (standard library only).

Speaks the subset of the OpenAI API casekit uses: ``POST /v1/chat/completions``,
``POST /v1/completions`` and ``GET /v1/models``, over HTTP/1.1 with keep-alive
(``asyncio.start_server`` and a minimal parser: Content-Length or chunked request bodies, no
pipelining). Measured against uvicorn + starlette (h11, the only HTTP backend installed here) it
serves the benchmark's 2,000 requests at concurrency 64 with a fraction of the CPU, see
``benchmarks/README.md``.

Responses are deterministic: the completion text is the last ``words`` words of the prompt
(last user message, or the completion prompt) in reverse order, unless a ``replies`` entry's key
occurs in the prompt, in which case its value is returned. Every response carries a ``Date``
header, ``x-request-id``, ``usage`` and ``system_fingerprint``.

Faults are drawn per request from a seeded RNG keyed by (seed, prompt key, n-th request with
that key), so which request of which prompt gets which fault does not depend on the order in
which concurrent requests arrive. Kinds (``FAULT_KINDS``):

* ``rate_limit``: 429 with ``Retry-After: <retry_after>`` (whole seconds)
* ``server_error``: 500
* ``overloaded``: 529 (Anthropic-style overload) with ``Retry-After``
* ``bad_request``: 400 (not retryable)
* ``slow``: the response comes after ``slow_seconds`` (set it above the client's timeout)
* ``drop``: the connection is closed after the request is read, without a response
* ``reset``: the connection is reset (RST) after the request is read
* ``drop_mid_body``: a 200 with its headers and half its body, then the connection closes
* ``malformed``: a 200 whose body is not valid JSON

``always_fail`` maps a substring to a fault kind served on every request whose prompt holds it
(to make attempts exhaust their retries).

Every request is logged with the fault it got (``StubServer.log``, ``GET /stub/log``;
counts and the server's CPU time at ``GET /stub/stats``).

In-process::

    with StubServer(StubConfig(latency=0.05, faults={"rate_limit": 0.1})) as stub:
        stub.url  # http://127.0.0.1:PORT/v1

As a script::

    python tests/stub_openai.py --port 8099 --latency 0.1 --fault rate_limit=0.1 --fault drop=0.05

prints ``stub_openai listening on http://127.0.0.1:PORT/v1`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import hashlib
import json
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_KINDS = ("rate_limit", "server_error", "overloaded", "bad_request", "slow", "drop",
               "reset", "drop_mid_body", "malformed")
"""Fault kinds, in the order their shares are laid out on [0, 1)."""

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            529: "Site Overloaded"}
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


@dataclass
class StubConfig:
    latency: float = 0.0
    """Seconds before every response (and before a drop)."""
    faults: dict[str, float] = field(default_factory=dict)
    """Fault kind -> share of requests (the shares must sum to at most 1)."""
    seed: int = 0
    retry_after: int = 0
    """Seconds in the Retry-After header of 429 and 529 responses."""
    slow_seconds: float = 3.0
    """Delay of ``slow`` responses (set it above the client's timeout)."""
    model: str | None = None
    """Model id returned in responses (default: the requested one)."""
    fingerprint: str = "fp_casekit_stub"
    words: int = 12
    """Words of the prompt echoed (reversed) as the completion."""
    replies: dict[str, str] = field(default_factory=dict)
    """Substring of the prompt -> completion text (first match wins)."""
    always_fail: dict[str, str] = field(default_factory=dict)
    """Substring of the prompt -> fault kind served on every request holding it."""

    def __post_init__(self) -> None:
        for kind in list(self.faults) + list(self.always_fail.values()):
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        if sum(self.faults.values()) > 1.0 + 1e-9 or any(v < 0 for v in self.faults.values()):
            raise ValueError("fault shares must be >= 0 and sum to at most 1")


def prompt_text(api: str, body: dict[str, Any]) -> str:
    """The text a request asks about: the last user message, or the completion prompt."""
    if api == "chat":
        messages = body.get("messages") or []
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def prompt_key(api: str, body: dict[str, Any]) -> str:
    """Identifies the prompt of a request: 16 hex of SHA-256 over the messages (chat) or the
    prompt (completions), as JSON with sorted keys. Tests compute the same from a
    PlannedAttempt with :func:`attempt_key`."""
    what = body.get("messages") if api == "chat" else body.get("prompt")
    raw = json.dumps(what, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{api}\x1f{raw}".encode()).hexdigest()[:16]


def attempt_key(attempt: Any) -> str:
    """:func:`prompt_key` of a casekit PlannedAttempt (chat or completion mode)."""
    if attempt.mode == "chat":
        msgs = [{"role": m.role, "content": m.content} for m in attempt.messages]
        return prompt_key("chat", {"messages": msgs})
    return prompt_key("completion", {"prompt": attempt.prompt})


class _HttpDate:
    """The HTTP Date header, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True)
        return self._value


class StubServer:
    """The stub. ``start()`` serves from a background thread with its own event loop;
    ``serve_forever()`` serves from the caller's loop (script mode)."""

    def __init__(self, config: StubConfig | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.config = config or StubConfig()
        self.host = host
        self.port = port
        self._log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._tries: Counter[str] = Counter()
        self._seq = 0
        self._date = _HttpDate()
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.connections = 0
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The OpenAI-style base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port,
                                                  limit=MAX_HEAD, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> StubServer:
        self._thread = threading.Thread(target=self._thread_main, name="stub-openai",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"stub server failed to start: {self._error}") from self._error
        if not self._ready.is_set():
            raise RuntimeError("stub server did not start within 10 s")
        return self

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        await self._listen()
        print(f"stub_openai listening on {self.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self._close()

    # ------------------------------------------------------------------ the record
    @property
    def log(self) -> list[dict[str, Any]]:
        """Every request so far, in arrival order, with the fault it got (a copy)."""
        with self._lock:
            return [dict(e) for e in self._log]

    def faults(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e["fault"] is not None]

    def stats(self) -> dict[str, Any]:
        log = self.log
        return {
            "requests": len(log),
            "faults": dict(Counter(e["fault"] for e in log if e["fault"])),
            "connections": self.connections,
            "cpu_s": time.process_time(),
            "uptime_s": time.monotonic() - self._t0,
            "config": asdict(self.config),
        }

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    # ------------------------------------------------------------------ HTTP
    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                except asyncio.LimitOverrunError:
                    await self._send(writer, 431, {"error": {"message": "headers too large"}},
                                     keep=False)
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._read_chunked(reader)
                else:
                    try:
                        length = int(headers.get("content-length") or 0)
                    except ValueError:
                        length = -1
                    if length < 0 or length > MAX_BODY:
                        await self._send(writer, 413, {"error": {"message": "bad length"}},
                                         keep=False)
                        return
                    body = await reader.readexactly(length) if length else b""
                conn = headers.get("connection", "").lower()
                keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
                keep = await self._dispatch(method, target.split("?", 1)[0], body, writer, keep)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def _head(self, status: int, length: int, keep: bool, request_id: str | None,
              extra: dict[str, str] | None = None) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                 f"date: {self._date()}",
                 "server: casekit-stub-openai",
                 "content-type: application/json",
                 f"content-length: {length}"]
        if request_id:
            lines.append(f"x-request-id: {request_id}")
        if not keep:
            lines.append("connection: close")
        for k, v in (extra or {}).items():
            lines.append(f"{k}: {v}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: Any, *,
                    keep: bool, request_id: str | None = None,
                    extra: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        writer.write(self._head(status, len(body), keep, request_id, extra) + body)
        await writer.drain()

    async def _dispatch(self, method: str, path: str, body: bytes,
                        writer: asyncio.StreamWriter, keep: bool) -> bool:
        if path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                await self._send(writer, 405, _err("use POST"), keep=keep)
                return keep
            return await self._completion("chat" if "chat" in path else "completion", body,
                                          writer, keep, path)
        if method != "GET":
            await self._send(writer, 405, _err("use GET"), keep=keep)
            return keep
        if path == "/v1/models":
            model = self.config.model or "casekit-stub"
            await self._send(writer, 200, {"object": "list", "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "casekit-stub"}]},
                keep=keep, request_id=self._next_id())
        elif path == "/stub/log":
            await self._send(writer, 200, self.log, keep=keep)
        elif path == "/stub/stats":
            await self._send(writer, 200, self.stats(), keep=keep)
        else:
            await self._send(writer, 404, _err(f"no route {path}"), keep=keep)
        return keep

    def _next_id(self) -> str:
        self._seq += 1
        return f"req-stub-{self._seq:07d}"

    def _choose_fault(self, key: str, n: int, text: str) -> str | None:
        for needle, kind in self.config.always_fail.items():
            if needle in text:
                return kind
        if not self.config.faults:
            return None
        u = random.Random(f"{self.config.seed}\x1f{key}\x1f{n}").random()
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += self.config.faults.get(kind, 0.0)
            if u < edge:
                return kind
        return None

    async def _completion(self, api: str, raw: bytes, writer: asyncio.StreamWriter,
                          keep: bool, path: str) -> bool:
        cfg = self.config
        request_id = self._next_id()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self._record({"n": self._seq, "t": round(time.monotonic() - self._t0, 6),
                          "path": path, "request_id": request_id, "key": None, "try": 0,
                          "fault": None, "status": 400})
            await self._send(writer, 400, _err(f"request body is not a JSON object: {exc}"),
                             keep=keep, request_id=request_id)
            return keep
        key = prompt_key(api, body)
        n = self._tries[key]
        self._tries[key] = n + 1
        text = prompt_text(api, body)
        fault = self._choose_fault(key, n, text)
        status = {None: 200, "rate_limit": 429, "server_error": 500, "overloaded": 529,
                  "bad_request": 400, "slow": 200, "drop": None, "reset": None,
                  "drop_mid_body": 200, "malformed": 200}[fault]
        self._record({"n": self._seq, "t": round(time.monotonic() - self._t0, 6), "path": path,
                      "request_id": request_id if status is not None else None, "key": key,
                      "try": n, "fault": fault, "status": status,
                      "model": body.get("model")})
        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        retry = {"retry-after": str(int(cfg.retry_after))}
        if fault == "rate_limit":
            await self._send(writer, 429, _err("Rate limit reached (stub)", "rate_limit_exceeded"),
                             keep=keep, request_id=request_id, extra=retry)
            return keep
        if fault in ("server_error", "overloaded", "bad_request"):
            st = status or 500
            await self._send(writer, st, _err(f"stub fault {fault}", fault), keep=keep,
                             request_id=request_id, extra=retry if st == 529 else None)
            return keep
        if fault == "drop":
            return False
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "slow":
            await asyncio.sleep(cfg.slow_seconds)
        payload = self._payload(api, body, text, request_id)
        data = json.dumps(payload).encode()
        if fault == "malformed":
            data = data[: len(data) // 2] + b"<<not json"
        if fault == "drop_mid_body":
            writer.write(self._head(200, len(data), keep, request_id) + data[: len(data) // 2])
            await writer.drain()
            return False
        writer.write(self._head(200, len(data), keep, request_id) + data)
        await writer.drain()
        return keep

    def _payload(self, api: str, body: dict[str, Any], text: str,
                 request_id: str) -> dict[str, Any]:
        cfg = self.config
        reply = next((v for k, v in cfg.replies.items() if k in text), None)
        words = text.split()
        if reply is None:
            reply = " ".join(reversed(words[-cfg.words:])) if cfg.words else ""
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        out_words = reply.split()
        finish = "stop"
        if isinstance(max_tokens, int) and len(out_words) > max_tokens:
            reply, finish = " ".join(out_words[:max_tokens]), "length"
        usage = {"prompt_tokens": len(words), "completion_tokens": len(reply.split()),
                 "total_tokens": len(words) + len(reply.split())}
        model = cfg.model or body.get("model") or "casekit-stub"
        common = {"id": f"cmpl-{request_id}", "created": int(time.time()), "model": model,
                  "system_fingerprint": cfg.fingerprint, "usage": usage}
        if api == "chat":
            return {**common, "object": "chat.completion", "choices": [{
                "index": 0, "message": {"role": "assistant", "content": reply},
                "logprobs": None, "finish_reason": finish}]}
        return {**common, "object": "text_completion", "choices": [{
            "index": 0, "text": reply, "logprobs": None, "finish_reason": finish}]}


def _err(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "stub_error", "param": None, "code": code}}


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, sep, val = v.rpartition("=")
        if not sep or not k:
            raise SystemExit(f"--{what}: expected NAME=VALUE, got {v!r}")
        out[k] = val
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fault-injecting OpenAI-compatible stub server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    ap.add_argument("--fault", action="append", default=[], metavar="KIND=SHARE",
                    help=f"share of requests that get a fault; kinds: {', '.join(FAULT_KINDS)}")
    ap.add_argument("--always-fail", action="append", default=[], metavar="SUBSTRING=KIND")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retry-after", type=int, default=0)
    ap.add_argument("--slow-seconds", type=float, default=3.0)
    ap.add_argument("--model", default=None, help="model id returned (default: the requested)")
    ap.add_argument("--words", type=int, default=12)
    args = ap.parse_args(argv)
    try:
        config = StubConfig(
            latency=args.latency, seed=args.seed, retry_after=args.retry_after,
            slow_seconds=args.slow_seconds, model=args.model, words=args.words,
            faults={k: float(v) for k, v in _pairs(args.fault, "fault").items()},
            always_fail=_pairs(args.always_fail, "always-fail"))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    asyncio.run(StubServer(config, args.host, args.port).serve_forever())


if __name__ == "__main__":
    sys.exit(main())
