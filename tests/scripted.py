"""A scripted provider for unit tests: fakes the model at the edge, nothing else.

Behaviour comes from the case file's ``params``, so it also works in subprocesses (loaded with
``CASEKIT_PLUGINS=tests.scripted``):
- ``outputs``: {work_id: text} returned for generation attempts on that work (default ``default``)
- ``fail_first``: each attempt's first N tries raise a transient error (retried)
- ``retry_after``: seconds the provider says to wait before retrying a transient error (0)
- ``fail_always``: work ids whose attempts always raise a non-retryable error
- ``refuse``: work ids whose attempts come back as provider refusals
- ``sleep``: seconds to sleep per attempt
- ``top1``: share of scored tokens marked as the top choice
- ``vary``: append the process-wide call count to every output (a nondeterministic model)
- ``turns``: {work_id: [text, ...]}: in a multi-turn session, turn i answers text i ("" after)
- ``logprobs``: generation responses carry Chat-Completions-shaped per-token log-probs
  (``body.choices[0].logprobs.content``): each space-led word of the output is a token with
  log-prob -0.1 and top list [(token, -0.1), ("zzz", -3.0)]
- ``continue_words``: {work_id: N}: a generation attempt that supplied work text answers with
  the N whitespace-separated words of the work that follow the last supplied passage (a model
  that continues any passage it is given, N words at a time); the work's file is read from
  ``continue_paths`` {work_id: path relative to the case folder}
- ``ranks``: scored tokens carry ``rank`` (0 for top choices, 1 otherwise) and
  ``top40_logsumexp`` = logaddexp(-0.1, -5.0), so the top-40 p_z preset can be computed

Planning tokenizer (p_z census): :class:`casekit.tokenizer.WhitespaceTokenizer`.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any, ClassVar

from casekit.case import ModelSpec
from casekit.providers.base import Provider, RetryDecision, register_provider
from casekit.providers.params import ProviderParams
from casekit.records import ModelIdentity, PlannedAttempt, ProviderResult, TokenScore
from casekit.tokenizer import WhitespaceTokenizer


class TransientError(RuntimeError):
    pass


class FatalError(RuntimeError):
    pass


class ScriptedParams(ProviderParams):
    """The script (see the module docstring); read raw from ``spec.params`` as before, and
    validated here so that a misspelt key fails like a real provider's."""

    outputs: dict[str, str] = {}
    default: str = "I cannot say."
    fail_first: int = 0
    retry_after: float = 0.0
    fail_always: list[str] = []
    refuse: list[str] = []
    sleep: float = 0.0
    top1: float = 0.0
    vary: bool = False
    turns: dict[str, list[str]] = {}
    logprobs: bool = False
    ranks: bool = False
    continue_words: dict[str, int] = {}
    continue_paths: dict[str, str] = {}


class ScriptedProvider(Provider):
    """A provider whose answers the case file scripts (tests only)."""

    name = "scripted"
    Params = ScriptedParams
    default_interface = "chat"
    can_score = True
    max_connections = 2
    calls: ClassVar[int] = 0

    def __init__(self, spec: ModelSpec, base_dir: Path) -> None:
        super().__init__(spec, base_dir)
        self.tries: dict[str, int] = {}
        """Tries per attempt id in this run (one provider per model per run): two tests
        running the same case must not share the count that ``fail_first`` reads."""

    def p(self, key: str, default: Any = None) -> Any:
        return self.spec.params.get(key, default)

    @classmethod
    def plan_tokenizer(cls, spec: ModelSpec, base_dir: Path) -> WhitespaceTokenizer:
        return WhitespaceTokenizer("scripted-whitespace")

    def identity(self) -> ModelIdentity:
        return ModelIdentity(model_id=self.spec.id, provider=self.name, model=self.spec.model,
                             interface=self.interface, identity={"scripted": True},
                             can_score=True)

    async def _maybe_fail(self, attempt: PlannedAttempt) -> None:
        if self.p("sleep"):
            await asyncio.sleep(float(self.p("sleep")))
        n = self.tries.get(attempt.id, 0) + 1
        self.tries[attempt.id] = n
        if attempt.work_id in self.p("fail_always", []):
            raise FatalError(f"scripted fatal error for {attempt.id}")
        if n <= int(self.p("fail_first", 0)):
            raise TransientError(f"scripted transient error, try {n}")

    async def generate(self, attempt: PlannedAttempt) -> ProviderResult:
        await self._maybe_fail(attempt)
        outputs = self.p("outputs", {})
        text = outputs.get(attempt.work_id, self.p("default", "I cannot say."))
        n_next = self.p("continue_words", {}).get(attempt.work_id)
        if n_next and attempt.supplied:
            raw = (self.base_dir / self.p("continue_paths", {})[attempt.work_id]).read_text()
            text = " ".join(raw[attempt.supplied[-1].end:].split()[:int(n_next)])
        turns = self.p("turns", {}).get(attempt.work_id)
        if turns is not None:
            i = sum(1 for m in attempt.messages if m.role == "assistant")
            text = turns[i] if i < len(turns) else ""
        ScriptedProvider.calls += 1
        if self.p("vary"):
            text += f" (call {ScriptedProvider.calls})"
        refusal = attempt.work_id in self.p("refuse", [])
        return ProviderResult(text="" if refusal else text, refusal=refusal,
                              finish_reason="refusal" if refusal else "stop",
                              returned_model=self.spec.model + "-scripted",
                              raw_request={"messages": [m.model_dump() for m in attempt.messages],
                                           "prompt": attempt.prompt},
                              raw_response=self._raw_response(text))

    def _raw_response(self, text: str) -> dict[str, Any]:
        if not self.p("logprobs"):
            return {"text": text}
        import re

        content = [{"token": t, "logprob": -0.1,
                    "top_logprobs": [{"token": t, "logprob": -0.1},
                                     {"token": "zzz", "logprob": -3.0}]}
                   for t in re.findall(r"\s*\S+", text)]
        return {"text": text, "body": {"choices": [{"logprobs": {"content": content}}]}}

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        await self._maybe_fail(attempt)
        words = (attempt.continuation or "").split()
        share = float(self.p("top1", 0.0))
        n_top = round(share * len(words))
        ranks = bool(self.p("ranks", False))
        lse = math.log(math.exp(-0.1) + math.exp(-5.0)) if ranks else None
        scores = [TokenScore(token=w, token_id=i, logprob=-0.1 if i < n_top else -5.0,
                             top_token_id=i if i < n_top else 0,
                             top_logprob=-0.1, is_top=i < n_top,
                             rank=(0 if i < n_top else 1) if ranks else None,
                             top40_logsumexp=lse) for i, w in enumerate(words)]
        return ProviderResult(token_scores=scores, returned_model=self.spec.model)

    def should_retry(self, exc: BaseException) -> RetryDecision:
        if isinstance(exc, TransientError):
            return RetryDecision(action="transient", after=float(self.p("retry_after", 0.0)))
        return RetryDecision(action="no")


register_provider(ScriptedProvider)
