"""Multi-turn sessions (iterative continuation [Ahm26]): feed the model's output back, turn by
turn, until the turn cap, a stop pattern (e.g. a refusal) or an empty turn.

A session is one attempt: its record holds every turn's request and response, and its text is
the model's turns joined. Text the model produced in an earlier turn is its own output, not
leakage (measurement.md section 3, step 5); only the tester's messages are discounted.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from casekit.providers.base import Provider
from casekit.records import Message, PlannedAttempt, ProviderResult

log = logging.getLogger(__name__)


async def run_session(provider: Provider, attempt: PlannedAttempt) -> ProviderResult:
    """Run every turn of a session attempt; return one ProviderResult for the whole session."""
    session = attempt.session
    if session is None:
        raise ValueError("not a session attempt")
    stop = re.compile(session.stop_pattern) if session.stop_pattern else None
    texts: list[str] = []
    turns: list[dict[str, Any]] = []
    last: ProviderResult | None = None
    stopped = "turn cap"
    messages = list(attempt.messages)
    prompt = attempt.prompt or ""
    for turn in range(session.max_turns):
        if attempt.mode == "chat":
            step = attempt.model_copy(update={"messages": messages, "session": None})
        else:
            step = attempt.model_copy(update={"prompt": prompt + "".join(texts),
                                              "session": None})
        last = await provider.generate(step)
        text = last.text or ""
        turns.append({"turn": turn, "text": text, "finish_reason": last.finish_reason,
                      "refusal": last.refusal, "request_id": last.request_id,
                      "server_date": last.server_date, "raw_request": last.raw_request,
                      "raw_response": last.raw_response, "usage": last.usage})
        texts.append(text)
        if last.refusal:
            stopped = "provider refusal"
            break
        if stop is not None and stop.search(text):
            stopped = "stop pattern"
            break
        if len(text.strip()) < session.min_turn_chars:
            stopped = "empty turn"
            break
        if attempt.mode == "chat":
            messages = [*messages, Message(role="assistant", content=text),
                        Message(role="user", content=session.continue_message)]
    assert last is not None
    joiner = "\n" if attempt.mode == "chat" else ""
    usage: dict[str, int] = {}
    for t in turns:
        for k, v in (t["usage"] or {}).items():
            if isinstance(v, int):
                usage[k] = usage.get(k, 0) + v
    log.debug("session %s: %d turns, stopped by %s", attempt.id, len(turns), stopped)
    return ProviderResult(
        text=joiner.join(texts), finish_reason=stopped, refusal=last.refusal,
        returned_model=last.returned_model, request_id=last.request_id,
        system_fingerprint=last.system_fingerprint, server_date=last.server_date, usage=usage,
        raw_request={"session": True, "turns": [t["raw_request"] for t in turns]},
        raw_response={"turns": [{k: v for k, v in t.items() if k != "raw_request"}
                                for t in turns], "stopped": stopped},
    )
