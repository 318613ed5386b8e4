"""The deterministic attempt plan: (case, seed) -> the ordered list of planned attempts.

Attempt ids are stable: ``a-`` + 20 hex of SHA-256 over (case hash, model id, strategy key, work
id, prompt index, sample). The same case file always yields the same ids, prompts and order,
which is what makes resume and re-run possible.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
from dataclasses import dataclass

from casekit.canonical import sha256_json
from casekit.case import LoadedCase, ModelSpec, StrategySpec
from casekit.errors import CaseError, CasekitError
from casekit.providers.base import Provider, provider_class
from casekit.records import Decoding, Message, PlannedAttempt
from casekit.strategies.base import (
    Probe,
    Strategy,
    StrategyParamError,
    chat_messages,
    strategy_class,
)
from casekit.tokenizer import Tokenizer
from casekit.works import Work

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    attempts: list[PlannedAttempt]

    @functools.cached_property
    def sha256(self) -> str:
        """The plan's hash (:func:`plan_sha256`), computed when first asked for: a fresh run
        records it while its first requests are in flight (casekit.run.runner)."""
        return plan_sha256(self.attempts)

    def __len__(self) -> int:
        return len(self.attempts)


def plan_sha256(attempts: list[PlannedAttempt]) -> str:
    """SHA-256 of the canonical JSON of the list of planned attempts, in plan order."""
    return sha256_json([a.model_dump(mode="json") for a in attempts])


def attempt_id(case_sha: str, model_id: str, strategy_key: str, work_id: str, index: int,
               sample: int) -> str:
    key = "\x1f".join([case_sha, model_id, strategy_key, work_id, str(index), str(sample)])
    return "a-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def interface_of(spec: ModelSpec) -> str:
    return spec.interface or provider_class(spec.provider).default_interface_for(spec)


def build_strategies(case: LoadedCase) -> list[Strategy]:
    out = []
    for i, s in enumerate(case.spec.strategies):
        try:
            cls = strategy_class(s.name)
        except CasekitError as exc:
            raise CaseError(f"{case.where('strategies', i, 'name')}: strategies[{i}].name: {exc}") \
                from None
        try:
            out.append(cls(s.params))
        except StrategyParamError as exc:
            parts: list[str | int] = ["strategies", i, "params", *exc.loc.split(".")]
            raise CaseError(f"{case.where(*parts)}: strategies[{i}].params.{exc.loc}: {exc.msg}") \
                from None
    return out


def _cannot_run(case: LoadedCase, si: int, sspec: StrategySpec, model: ModelSpec, short: str,
                why: str) -> None:
    """A strategy a model cannot run: skipped (logged) when the strategy names no models; when
    it names this one, a CaseError at the strategy's ``models`` saying what to remove."""
    if sspec.models is None:
        log.info("strategy %s skipped for model %s: %s", sspec.name, model.id, short)
        return
    raise CaseError(f"{case.where('strategies', si, 'models')}: strategies[{si}].models: "
                    f"{sspec.name} {why}; remove {model.id!r} from this list")


def _plan_tokenizer(case: LoadedCase, mi: int, model: ModelSpec,
                   pcls: type[Provider]) -> Tokenizer | None:
    """The model's plan-time tokenizer; a refusal (e.g. a missing ``params.tokenizer`` file or
    a wrong ``params.tokenizer_sha256``) is a CaseError at that param of the model."""
    try:
        return pcls.plan_tokenizer(model, case.base_dir)
    except CaseError:
        raise
    except CasekitError as exc:
        raise case.model_error(mi, exc) from None


def build_plan(case: LoadedCase, works: list[Work]) -> Plan:
    """Plan every attempt of the case, model-major so each model is loaded once."""
    spec = case.spec
    strategies = build_strategies(case)
    by_id = {w.id: w for w in works}
    attempts: list[PlannedAttempt] = []
    for mi, model in enumerate(spec.models):
        try:
            pcls = provider_class(model.provider)
        except CasekitError as exc:
            raise CaseError(f"{case.where('models', mi, 'provider')}: models[{mi}].provider: "
                            f"{exc}") from None
        interface = model.interface or pcls.default_interface_for(model)
        for si, (sspec, strat) in enumerate(zip(spec.strategies, strategies, strict=True)):
            if sspec.models is not None and model.id not in sspec.models:
                continue
            if strat.needs_score and not pcls.can_score:
                _cannot_run(case, si, sspec, model, "provider cannot score", "needs a model "
                            f"that can score, and provider {model.provider!r} cannot")
                continue
            tokenizer = None
            if strat.needs_tokenizer:
                tokenizer = _plan_tokenizer(case, mi, model, pcls)
                if tokenizer is None:
                    hint = (" (set the model's params.tokenizer to the served model's "
                            "tokenizer.json or .gguf)"
                            if "tokenizer" in pcls.Params.model_fields else "")
                    _cannot_run(case, si, sspec, model, "provider gives no tokenizer"
                                f"{hint}", "plans windows of model tokens and provider "
                                f"{model.provider!r} gives no tokenizer{hint}")
                    continue
            key = f"{sspec.name}#{si}"
            work_ids = sspec.works if sspec.works is not None else [w.id for w in works]
            for wid in work_ids:
                work = by_id[wid]
                rng = _rng(spec.seed, key, wid)
                try:
                    probes = list(strat.plan_tokens(work, rng, tokenizer) if tokenizer
                                  else strat.plan(work, rng))
                except CaseError:
                    raise
                except CasekitError as exc:
                    raise CaseError(f"{case.where('strategies', si, 'params')}: strategies[{si}]"
                                    f" ({sspec.name}) on work {wid!r}: {exc}") from None
                for index, probe in enumerate(probes):
                    samples = 1 if probe.kind == "score" else spec.samples
                    for sample in range(samples):
                        attempts.append(_render(case, model, interface, key, strat, work, index,
                                                sample, probe, len(attempts)))
    return Plan(attempts=attempts)


def _render(case: LoadedCase, model: ModelSpec, interface: str, key: str, strat: Strategy,
            work: Work, index: int, sample: int, probe: Probe, ordinal: int) -> PlannedAttempt:
    spec = case.spec
    dec = spec.decoding
    decoding = Decoding(
        temperature=0.0 if sample == 0 else dec.temperature,
        max_tokens=probe.max_tokens or dec.max_tokens,
        top_p=None if sample == 0 else dec.top_p,
        top_k=None if sample == 0 else dec.top_k,
        seed=spec.seed + sample,
        stop=probe.stop,
    )
    messages: list[Message] = []
    prompt: str | None = None
    if probe.kind == "score":
        mode = "score"
        prompt = probe.text
    elif interface == "chat":
        mode = "chat"
        messages = chat_messages(probe)
    else:
        mode = "completion"
        prompt = probe.text
    return PlannedAttempt(
        id=attempt_id(case.sha256, model.id, key, work.id, index, sample),
        ordinal=ordinal,
        model_id=model.id,
        strategy=strat.name,
        strategy_key=key,
        work_id=work.id,
        intent=strat.intent,
        index=index,
        sample=sample,
        mode=mode,
        messages=messages,
        prompt=prompt,
        continuation=probe.continuation,
        decoding=decoding,
        target=probe.target,
        supplied=probe.supplied,
        label=probe.label,
        session=probe.session,
        expected=probe.expected,
    )
