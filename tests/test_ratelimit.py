"""Token buckets: the runner never exceeds a case's request or token rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from casekit.run.ratelimit import Limiter, TokenBucket


def test_bucket_waits_for_refill() -> None:
    async def go() -> float:
        b = TokenBucket(rate_per_second=20.0, capacity=1.0)
        t0 = time.monotonic()
        for _ in range(6):
            await b.acquire(1.0)
        return time.monotonic() - t0

    # One unit at once, then 5 more at 20/s: at least 0.25 s.
    assert asyncio.run(go()) >= 0.24


def test_limiter_request_rate_over_a_burst() -> None:
    async def go() -> tuple[float, int]:
        lim = Limiter(requests_per_minute=600, tokens_per_minute=None)  # 10/s, burst 10
        t0 = time.monotonic()
        done = 0

        async def one() -> None:
            nonlocal done
            await lim.acquire(0)
            done += 1

        await asyncio.gather(*(one() for _ in range(15)))
        return time.monotonic() - t0, done

    elapsed, done = asyncio.run(go())
    assert done == 15
    assert elapsed >= 0.45  # 10 from the burst, 5 more at 10/s


def test_token_usage_correction() -> None:
    b = TokenBucket(rate_per_second=1.0, capacity=100.0)
    asyncio.run(b.acquire(50))
    b.adjust(-40)  # the request used 40 fewer tokens than reserved
    assert b._level == pytest.approx(90, abs=0.5)
