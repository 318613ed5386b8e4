"""Token buckets for request and token rate limits (asyncio)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class TokenBucket:
    """A bucket refilled at ``rate`` units per second up to ``capacity``.

    ``acquire(n)`` waits until ``n`` units are available and takes them; amounts larger than
    the capacity are allowed (the bucket goes negative, so the debt is paid by waiting).
    ``adjust(delta)`` returns (negative) or takes (positive) units after the fact, e.g. when the
    server reports the tokens actually used.
    """

    def __init__(self, rate_per_second: float, capacity: float,
                 clock: Callable[[], float] | None = None) -> None:
        if rate_per_second <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate_per_second
        self.capacity = capacity
        self._level = capacity
        self._clock = clock or time.monotonic
        self._stamp = self._clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount`` units, waiting as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:  # FIFO: one waiter at a time keeps the order fair
            self._refill()
            need = min(amount, self.capacity)
            if self._level < need:
                delay = (need - self._level) / self.rate
                await asyncio.sleep(delay)
                waited = delay
                self._refill()
            self._level -= amount
        return waited

    def adjust(self, delta: float) -> None:
        self._refill()
        self._level = min(self.capacity, self._level - delta)


def _per_minute(limit: float | None) -> TokenBucket | None:
    """A bucket refilled at limit/60 per second holding one second's worth (at least 1)."""
    if not limit:
        return None
    return TokenBucket(limit / 60.0, max(1.0, limit / 60.0))


class Limiter:
    """Request and token buckets of one model (either may be absent)."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.requests = _per_minute(requests_per_minute)
        self.tokens = _per_minute(tokens_per_minute)

    async def acquire(self, est_tokens: int) -> float:
        waited = 0.0
        if self.requests is not None:
            waited += await self.requests.acquire(1.0)
        if self.tokens is not None:
            waited += await self.tokens.acquire(float(est_tokens))
        return waited

    def settle(self, est_tokens: int, used_tokens: int | None) -> None:
        """Correct the token bucket with the usage the server reported."""
        if self.tokens is not None and used_tokens is not None:
            self.tokens.adjust(float(used_tokens - est_tokens))
