"""The deterministic attempt plan: (case, seed) -> the ordered planned attempts, one at a time.

Attempt ids are stable: ``a-`` + 20 hex of SHA-256 over (case hash, model id, strategy key, work
id, prompt index, sample). The same case file always yields the same ids, prompts and order,
which is what makes resume and re-run possible.

A matter plans hundreds of thousands of attempts, so a plan is a stream, not a list:
:func:`build_plan` goes through it once (to count it, per model, and to raise the case's
planning errors before anything is sent) and keeps the attempts only when there are at most
:data:`KEEP_IN_MEMORY` of them; a larger plan is planned again, one attempt at a time, whenever
it is iterated, and its hash is computed on the way through (:class:`PlanHasher`). Memory does
not grow with the number of attempts.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import types
import typing
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any

import orjson
from pydantic import BaseModel

from casekit.canonical import HASH_PREFIX, canonical_json
from casekit.case import LoadedCase, ModelSpec, StrategySpec
from casekit.errors import CaseError, CasekitError
from casekit.providers.base import Provider, provider_class
from casekit.providers.params import parse_params
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

PROGRESS_EVERY = 5.0
"""Seconds between the log lines of a long planning pass."""
KEEP_IN_MEMORY = 5_000
"""A plan of at most this many attempts keeps them after :func:`build_plan`'s pass (a few MB),
so running it does not plan it again and its hash can wait until a fresh run's first requests
are in flight (casekit.run.runner); a larger plan is streamed."""


_SAFE_INT = 2**53 - 1
_INT = "int"
_FLOAT = "float"
_Shape = dict[str, Any]
"""Where a model's JSON dump holds numbers: field name -> ``_INT``, ``_FLOAT``, the shape of a
nested model, or a one-item list holding the shape of a list's items."""


def _number_shape(model: type[BaseModel]) -> _Shape | None:
    """The numbers of a model's JSON dump (fields holding none are left out), or None when a
    field has a type :func:`attempt_json` does not handle exactly (a dict, Any, a union of two
    types)."""
    shape: _Shape = {}
    for name, field in model.model_fields.items():
        ann: Any = field.annotation
        lists = 0
        while True:
            origin = typing.get_origin(ann)
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if origin in (typing.Union, types.UnionType):
                if len(args) != 1:
                    return None
                ann = args[0]
            elif origin is list:
                ann, lists = args[0], lists + 1
            else:
                break
        node: Any
        if typing.get_origin(ann) is typing.Literal:
            if not all(isinstance(a, str) for a in typing.get_args(ann)):
                return None
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            node = _number_shape(ann)
            if node is None:
                return None
            if not node:
                continue
        elif ann is int:
            node = _INT
        elif ann is float:
            node = _FLOAT
        elif ann in (str, bool):
            continue
        else:
            return None
        for _ in range(lists):
            node = [node]
        shape[name] = node
    return shape


_SHAPE = _number_shape(PlannedAttempt)
"""Where a PlannedAttempt's dump holds numbers (None: :func:`attempt_json` takes the slow
path)."""


def _numbers(node: Any, value: Any, marks: list[tuple[bytes, bytes]]) -> bool:
    """Check the numbers of ``value`` (shaped by ``node``) and rewrite its floats in place for
    orjson (see :func:`attempt_json`); False when one needs the canonical encoder."""
    if type(node) is list:
        return all(_numbers(node[0], v, marks) for v in value)
    for key, sub in node.items():
        v = value[key]
        if v is None:
            continue
        if sub is _INT:
            if not -_SAFE_INT <= v <= _SAFE_INT:
                return False
        elif sub is _FLOAT:
            if type(v) is not float or not (v == 0.0 or 1e-4 <= abs(v) < 1e16):
                return False
            if v.is_integer():
                value[key] = int(v)
            else:
                text = f"\x00casekit float {len(marks)}\x00"
                value[key] = text
                marks.append((orjson.dumps(text), repr(v).encode()))
        elif not _numbers(sub, v, marks):
            return False
    return True


def attempt_json(attempt: PlannedAttempt) -> bytes:
    """The canonical JSON (RFC 8785) of a planned attempt's JSON dump: what
    ``canonical_json(attempt.model_dump(mode="json"))`` gives, about 4x faster.

    orjson with sorted keys writes RFC 8785's bytes for the ASCII keys, strings, None, booleans
    and safe integers of a PlannedAttempt (tests/test_plan_stream.py checks its string escapes
    against the canonical encoder's over every code point), and where the dump holds numbers is
    known from the schema: an integral float is written as the integer ECMAScript prints, a
    float in [1e-4, 1e16) as Python's ``repr`` (ECMAScript's shortest form there, as in
    casekit.canonical); anything else (an unsafe integer, another float, a string orjson
    refuses) goes to ``canonical_json``."""
    d = attempt.model_dump(mode="json")
    marks: list[tuple[bytes, bytes]] = []
    # _numbers rewrites ``d`` in place: a fallback dumps the attempt again.
    if _SHAPE is None or not _numbers(_SHAPE, d, marks):
        return canonical_json(attempt.model_dump(mode="json"))
    try:
        out = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return canonical_json(attempt.model_dump(mode="json"))
    for mark, number in marks:
        if out.count(mark) != 1:  # a string of the attempt holds the mark itself
            return canonical_json(attempt.model_dump(mode="json"))
        out = out.replace(mark, number)
    return out


class PlanHasher:
    """The plan's hash computed incrementally: SHA-256 of the canonical JSON (RFC 8785) of the
    list of planned attempts, in plan order, fed one attempt at a time. Canonical JSON of a list
    is ``[`` + its members' canonical JSON joined by ``,`` + ``]``, so this equals
    ``sha256_json([a.model_dump(mode="json") for a in attempts])`` byte for byte without
    holding the list (tests/test_plan_stream.py checks both on real cases)."""

    __slots__ = ("_h", "count")

    def __init__(self) -> None:
        self._h = hashlib.sha256(b"[")
        self.count = 0
        """Attempts fed so far."""

    def add(self, attempt: PlannedAttempt) -> None:
        if self.count:
            self._h.update(b",")
        self._h.update(attempt_json(attempt))
        self.count += 1

    def sha256(self) -> str:
        """The hash of the attempts fed so far (more can be fed after)."""
        h = self._h.copy()
        h.update(b"]")
        return HASH_PREFIX + h.hexdigest()


def plan_sha256(attempts: Iterable[PlannedAttempt]) -> str:
    """SHA-256 of the canonical JSON of the list of planned attempts, in plan order, computed
    one attempt at a time (:class:`PlanHasher`)."""
    hasher = PlanHasher()
    for a in attempts:
        hasher.add(a)
    return hasher.sha256()


class Plan:
    """The planned attempts of a case, in plan order (model-major: each model's attempts
    together, so each model is loaded once).

    Built by :func:`build_plan` (streamed: planned again whenever iterated) or from a list of
    attempts (``Plan(attempts=...)``, e.g. ``casekit rerun``'s recorded attempts)."""

    def __init__(self, attempts: list[PlannedAttempt] | None = None, *,
                 planner: _Planner | None = None) -> None:
        if (attempts is None) == (planner is None):
            raise TypeError("Plan takes either attempts or a planner")
        self._planner = planner
        self._kept: list[PlannedAttempt] | None = attempts
        """The attempts, when the plan is small enough to keep (or was given as a list)."""
        self._sha256: str | None = None
        self._counts: dict[str, int] = {}
        """Planned attempts per model id, in plan order."""
        if attempts is not None:
            for a in attempts:
                self._counts[a.model_id] = self._counts.get(a.model_id, 0) + 1

    @classmethod
    def _scanned(cls, planner: _Planner) -> Plan:
        """Go through the plan once: count it per model and raise its planning errors; keep
        the attempts if there are at most KEEP_IN_MEMORY of them, else hash them on the way."""
        plan = cls(planner=planner)
        kept: list[PlannedAttempt] | None = []
        hasher: PlanHasher | None = None
        counts = plan._counts
        started = last = time.monotonic()
        for n, a in enumerate(planner.attempts(None, 0, None), start=1):
            counts[a.model_id] = counts.get(a.model_id, 0) + 1
            if not n % 4096 and (now := time.monotonic()) - last >= PROGRESS_EVERY:
                last = now
                log.info("planning: %d attempts so far (%.0f s)", n, now - started)
            if kept is not None:
                kept.append(a)
                if len(kept) > KEEP_IN_MEMORY:
                    hasher = PlanHasher()
                    for k in kept:
                        hasher.add(k)
                    kept = None
            elif hasher is not None:
                hasher.add(a)
        plan._kept = kept
        if hasher is not None:
            plan._sha256 = hasher.sha256()
        if kept is None:
            log.info("planned and hashed %d attempts in %.1f s", len(plan),
                     time.monotonic() - started)
        planner.quiet = True  # what was skipped was logged on this pass
        return plan

    @property
    def streamed(self) -> bool:
        """True when the attempts are not held: each iteration plans them again."""
        return self._kept is None

    def __len__(self) -> int:
        return sum(self._counts.values())

    def __iter__(self) -> Iterator[PlannedAttempt]:
        if self._kept is not None:
            return iter(self._kept)
        assert self._planner is not None
        return self._planner.attempts(None, 0, None)

    @property
    def attempts(self) -> list[PlannedAttempt]:
        """Every planned attempt, in a list: materializes a streamed plan (for tests and small
        plans; iterate the plan instead)."""
        return list(self._kept) if self._kept is not None else list(self)

    @property
    def counts(self) -> dict[str, int]:
        """Planned attempts per model id, in plan order (models with none left out)."""
        return dict(self._counts)

    @property
    def sha256(self) -> str:
        """The plan's hash (:func:`plan_sha256`): computed on :func:`build_plan`'s pass for a
        streamed plan, else when first asked for (a fresh run records it while its first
        requests are in flight, casekit.run.runner)."""
        if self._sha256 is None:
            self._sha256 = plan_sha256(self)
        return self._sha256

    def model_attempts(self, model_id: str,
                       skip: Container[str] | None = None) -> Iterator[PlannedAttempt]:
        """One model's attempts, in plan order, leaving out those whose id is in ``skip``
        (tested as each attempt comes up, so a live set works). A streamed plan plans only
        this model's attempts, and does not render those it skips."""
        if self._kept is not None:
            return (a for a in self._kept
                    if a.model_id == model_id and (skip is None or a.id not in skip))
        assert self._planner is not None
        first = 0
        for mid, n in self._counts.items():
            if mid == model_id:
                return self._planner.attempts(model_id, first, skip)
            first += n
        return iter(())


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
                why: str, quiet: bool = False) -> None:
    """A strategy a model cannot run: skipped (logged, unless ``quiet``) when the strategy names
    no models; when it names this one, a CaseError at the strategy's ``models`` saying what to
    remove."""
    if sspec.models is None:
        if not quiet:
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


class _Planner:
    """Plans a case's attempts, one at a time, as often as asked: the same attempts every
    time (the strategies are seeded per strategy and work)."""

    def __init__(self, case: LoadedCase, works: Sequence[Work]) -> None:
        self.case = case
        self.strategies = build_strategies(case)
        self.works = list(works)
        self.by_id = {w.id: w for w in works}
        self.quiet = False
        """Set after the first pass, which logged the strategies a model skips."""

    def attempts(self, model_id: str | None, ordinal: int,
                 skip: Container[str] | None) -> Iterator[PlannedAttempt]:
        """The attempts of every model (``model_id`` None) or of one, numbered from
        ``ordinal``; those whose id is in ``skip`` are numbered but not rendered."""
        case = self.case
        for mi, model in enumerate(case.spec.models):
            if model_id is not None and model.id != model_id:
                continue
            for interface, key, strat, work, index, probe, samples in self._probes(mi, model):
                for sample in range(samples):
                    aid = attempt_id(case.sha256, model.id, key, work.id, index, sample)
                    if skip is None or aid not in skip:
                        yield _render(case, model, interface, key, strat, work, index, sample,
                                      probe, ordinal, aid)
                    ordinal += 1

    def count(self) -> dict[str, int]:
        """Attempts per model id (models with none left out), from the strategies' probes
        without rendering an attempt: what ``casekit validate`` needs."""
        counts: dict[str, int] = {}
        started = last = time.monotonic()
        total = 0
        for mi, model in enumerate(self.case.spec.models):
            n = 0
            for *_, samples in self._probes(mi, model):
                n += samples
                if not n % 4096 and (now := time.monotonic()) - last >= PROGRESS_EVERY:
                    last = now
                    log.info("planning: %d attempts so far (%.0f s)", total + n, now - started)
            if n:
                counts[model.id] = n
            total += n
        return counts

    def _probes(self, mi: int, model: ModelSpec,
                ) -> Iterator[tuple[str, str, Strategy, Work, int, Probe, int]]:
        """(interface, strategy key, strategy, work, index, probe, samples) of every probe of
        one model, in plan order; a planning error is a CaseError naming the case file's
        line."""
        case, spec = self.case, self.case.spec
        try:
            pcls = provider_class(model.provider)
        except CasekitError as exc:
            raise CaseError(f"{case.where('models', mi, 'provider')}: models[{mi}].provider: "
                            f"{exc}") from None
        try:  # the provider's typed params, checked without loading the model
            parse_params(pcls.Params, model, pcls.name)
        except CasekitError as exc:
            raise case.model_error(mi, exc) from None
        interface = model.interface or pcls.default_interface_for(model)
        for si, (sspec, strat) in enumerate(zip(spec.strategies, self.strategies, strict=True)):
            if sspec.models is not None and model.id not in sspec.models:
                continue
            if strat.needs_score and not pcls.can_score:
                _cannot_run(case, si, sspec, model, "provider cannot score", "needs a model "
                            f"that can score, and provider {model.provider!r} cannot",
                            self.quiet)
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
                                f"{model.provider!r} gives no tokenizer{hint}", self.quiet)
                    continue
            key = f"{sspec.name}#{si}"
            work_ids = sspec.works if sspec.works is not None else [w.id for w in self.works]
            for wid in work_ids:
                work = self.by_id[wid]
                rng = _rng(spec.seed, key, wid)
                probes: Iterator[Probe] | None = None
                index = 0
                while True:
                    try:
                        if probes is None:
                            probes = iter(strat.plan_tokens(work, rng, tokenizer) if tokenizer
                                          else strat.plan(work, rng))
                        probe = next(probes, None)
                    except CaseError:
                        raise
                    except CasekitError as exc:
                        raise CaseError(f"{case.where('strategies', si, 'params')}: "
                                        f"strategies[{si}] ({sspec.name}) on work {wid!r}: "
                                        f"{exc}") from None
                    if probe is None:
                        break
                    yield (interface, key, strat, work, index, probe,
                           1 if probe.kind == "score" else spec.samples)
                    index += 1


def build_plan(case: LoadedCase, works: list[Work], *, render: bool = True) -> Plan:
    """Plan every attempt of the case, model-major so each model is loaded once: one pass that
    counts the attempts and raises any planning error (a CaseError naming the case file's
    line), keeping the attempts of a small plan and hashing a large one on the way
    (:class:`Plan`). ``render=False`` counts the strategies' probes without rendering the
    attempts (``casekit validate``: the plan is checked, nothing is kept or hashed)."""
    planner = _Planner(case, works)
    if not render:
        plan = Plan(planner=planner)
        plan._counts = planner.count()
        planner.quiet = True
        return plan
    return Plan._scanned(planner)


def _render(case: LoadedCase, model: ModelSpec, interface: str, key: str, strat: Strategy,
            work: Work, index: int, sample: int, probe: Probe, ordinal: int,
            aid: str) -> PlannedAttempt:
    """One attempt as it will be sent. Its ``max_tokens`` is, in this order: the strategy's
    own limit (a ``max_tokens`` the case states in the strategy's params, or one the strategy
    needs: divergence, iterative continuation); else the case's ``decoding.max_tokens`` when
    the case file states it; else the strategy's size for the probe's target (prefix
    continuation 2 x suffix_words, instruction recall 1.6 x n_words, lyrics, name cloze 12);
    else the decoding default. A limit other than the case's ``decoding.max_tokens`` is
    recorded as such (``decoding.max_tokens_set_by: strategy``): the record says what is
    sent and who chose it. (Before issue 17 a strategy's size silently beat a stated
    ``decoding.max_tokens``: prefix continuation sent 50 where the case said 48.)"""
    spec = case.spec
    dec = spec.decoding
    max_tokens = dec.max_tokens
    if probe.max_tokens is not None:
        max_tokens = probe.max_tokens
    elif probe.default_max_tokens is not None and "max_tokens" not in dec.model_fields_set:
        max_tokens = probe.default_max_tokens
    decoding = Decoding(
        temperature=0.0 if sample == 0 else dec.temperature,
        max_tokens=max_tokens,
        max_tokens_set_by="strategy" if max_tokens != dec.max_tokens else None,
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
        id=aid,
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
