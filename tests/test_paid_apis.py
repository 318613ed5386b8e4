"""Live calls to the paid APIs: opt-in, never part of ``make test``.

Run with the key in the environment and the opt-in variable set::

    CASEKIT_PAID_TESTS=1 OPENAI_API_KEY=... ANTHROPIC_API_KEY=... \\
        .venv/bin/python -m pytest -m paid tests/test_paid_apis.py

Each test costs a fraction of a cent (a few dozen tokens). The models default to dated
snapshots (override with ``CASEKIT_PAID_OPENAI_MODEL`` / ``CASEKIT_PAID_ANTHROPIC_MODEL``).
They check against the real services what the emulated tests cannot: that the fields a court
may ask for (returned model id, request id, HTTP Date, usage, fingerprint, stop reason) arrive
and are recorded, that per-token log-probs come back when asked for, that both transports of the
openai provider record the same fields, and that the key appears nowhere in what is recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from casekit.case import ModelSpec
from casekit.records import Decoding, Message, PlannedAttempt

pytestmark = pytest.mark.paid

OPENAI_MODEL = os.environ.get("CASEKIT_PAID_OPENAI_MODEL", "gpt-4o-mini-2024-07-18")
ANTHROPIC_MODEL = os.environ.get("CASEKIT_PAID_ANTHROPIC_MODEL", "claude-3-5-haiku-20241022")


def _need(key_env: str) -> str:
    if os.environ.get("CASEKIT_PAID_TESTS") != "1":
        pytest.skip("paid API test: set CASEKIT_PAID_TESTS=1 to run it")
    key = os.environ.get(key_env)
    if not key:
        pytest.skip(f"paid API test: set {key_env}")
    return key


def _attempt() -> PlannedAttempt:
    return PlannedAttempt(
        id="a-paid-0000000000000001", ordinal=0, model_id="m", strategy="test",
        strategy_key="test#0", work_id="w", intent="benign", index=0, mode="chat",
        messages=[Message(role="user", content="Reply with the single word: ready")],
        decoding=Decoding(temperature=0.0, max_tokens=5, seed=1))


def _run(provider: Any) -> Any:
    async def go() -> Any:
        try:
            return await provider.generate(_attempt())
        finally:
            await provider.aclose()
    return asyncio.run(go())


def _no_key(result: Any, key: str) -> None:
    blob = json.dumps(result.model_dump(mode="json"))
    assert key not in blob and key[-12:] not in blob


@pytest.mark.parametrize("transport", ["sdk", "http"])
def test_openai_chat_records_the_identifying_fields(transport: str) -> None:
    from casekit.providers.openai import OpenAIProvider

    key = _need("OPENAI_API_KEY")
    p = OpenAIProvider(ModelSpec(id="m", provider="openai", model=OPENAI_MODEL,
                                 params={"transport": transport, "logprobs": 5}), Path("."))
    r = _run(p)
    assert r.text and r.returned_model and r.returned_model.startswith(OPENAI_MODEL[:6])
    assert r.request_id and r.server_date and r.usage.get("total_tokens")
    assert r.finish_reason in ("stop", "length")
    content = r.raw_response["body"]["choices"][0]["logprobs"]["content"]
    assert content and len(content[0]["top_logprobs"]) == 5
    assert r.raw_response["headers"]["date"] == r.server_date
    assert r.raw_request["body"]["seed"] == 1 and r.raw_request["body"]["temperature"] == 0.0
    _no_key(r, key)


def test_anthropic_messages_record_the_identifying_fields() -> None:
    from casekit.providers.anthropic import AnthropicProvider

    key = _need("ANTHROPIC_API_KEY")
    p = AnthropicProvider(ModelSpec(id="m", provider="anthropic", model=ANTHROPIC_MODEL),
                          Path("."))
    r = _run(p)
    assert r.text and r.returned_model == ANTHROPIC_MODEL
    assert r.request_id and r.server_date and r.usage.get("output_tokens")
    assert r.finish_reason in ("end_turn", "max_tokens", "stop_sequence")
    _no_key(r, key)
