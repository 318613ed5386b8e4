"""The strategy seam: how a work is turned into prompts.

A strategy declares its ``intent`` (benign / adversarial / reconstruction, see
shared/design/taxonomy.md) and plans *probes* for a work. The planner renders each probe for the
model's interface (chat messages or a plain completion prompt) and gives it a stable id. The same
seed always gives the same probes.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import random
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from casekit.case import constraint_message, refuse_bool_and_nan
from casekit.errors import CasekitError
from casekit.records import Intent, Message, Session, WorkRange
from casekit.strategies.limits import TEMPLATE_MAX_CHARS, TEMPLATE_MAX_STEPS  # noqa: F401
from casekit.strategies.measures import Measure
from casekit.tokenizer import Tokenizer
from casekit.works import Work

log = logging.getLogger(__name__)


class StrategyParams(BaseModel):
    """Base of every strategy's parameters: user input, so unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_bool_and_nan(cls, value, info)


class Probe(BaseModel):
    """One prompt a strategy wants sent, before it is rendered for a model's interface."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["continue", "instruct", "score"]
    """``continue``: ``text`` is the work's text to continue; ``instruct``: ``text`` is a request
    to the model; ``score``: teacher-force ``continuation`` after ``text``."""
    text: str
    chat_text: str | None = None
    """For chat models: the user message (e.g. ``text`` wrapped in an instruction)."""
    system: str | None = None
    continuation: str | None = None
    target: WorkRange | None = None
    supplied: list[WorkRange] = Field(default_factory=list)
    label: str = ""
    max_tokens: int | None = None
    """The strategy's own limit for this probe: a ``max_tokens`` the case states in the
    strategy's params, or one the strategy needs (divergence, iterative continuation). Beats
    the case's ``decoding.max_tokens`` (the rule: casekit.plan, docs/strategies.md)."""
    default_max_tokens: int | None = None
    """A limit sized to the probe's target (prefix continuation: 2 x suffix_words), used only
    when the case file does not state ``decoding.max_tokens``."""
    stop: list[str] = Field(default_factory=list)
    session: Session | None = None
    """Multi-turn: the runner feeds the model's output back (iterative continuation)."""
    expected: str | None = None
    """An answer key or parameter for the analysis (name-cloze gold name, divergence word)."""


class Strategy(ABC):
    """Base class of strategies. Subclasses set the class attributes and implement ``plan``."""

    name: ClassVar[str]
    intent: ClassVar[Intent]
    description: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    needs_score: ClassVar[bool] = False
    """True when every probe is a ``score`` probe (needs a provider that can score)."""
    needs_tokenizer: ClassVar[bool] = False
    """True when planning needs the model's tokenizer (windows of model tokens): the planner
    calls :meth:`plan_tokens` with the provider's :meth:`~casekit.providers.base.Provider.
    plan_tokenizer` instead of :meth:`plan`."""
    measures: ClassVar[tuple[type[Measure], ...]] = ()
    example_params: ClassVar[dict[str, Any]] = {}
    """Parameters that plan on any work, for the contract tests and docs/strategies.md (the
    defaults unless a parameter is required)."""
    """The measures the strategy contributes to the analysis (``casekit.strategies.measures``):
    their hooks run on this strategy's attempts. A strategy whose outputs only need the span
    measures every generation attempt gets (rates, coverage, BMC@k) declares none."""

    def __init__(self, params: dict[str, Any]) -> None:
        try:
            self.params = self.Params.model_validate(params)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(self.Params.model_fields)
                msg = f"unknown parameter; allowed: {allowed} (remove it or correct its spelling)"
            else:
                msg = constraint_message(err["type"], dict(err.get("ctx") or {}),
                                         err.get("input")) or msg
            raise StrategyParamError(loc, msg) from None

    @abstractmethod
    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        """Yield the probes for one work. Must be deterministic given ``rng``'s seed."""

    def plan_tokens(self, work: Work, rng: random.Random, tokenizer: Tokenizer,
                    ) -> Iterator[Probe]:
        """Like :meth:`plan`, for strategies that plan in model tokens (``needs_tokenizer``);
        deterministic given the seed and the tokenizer."""
        return self.plan(work, rng)


class StrategyParamError(CasekitError):
    def __init__(self, loc: str, msg: str) -> None:
        super().__init__(f"{loc}: {msg}")
        self.loc = loc
        self.msg = msg


_PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")


@functools.lru_cache(maxsize=4096)
def _placeholders(template: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(literal pieces, variable names) of a template that is nothing but text and ``{{ name }}``
    placeholders, or None. Such a template renders under Jinja to the pieces joined with
    ``str(value)`` of each name, so it is rendered without compiling it: a plan with thousands
    of distinct templates compiled each at about 0.25 ms. Anything else (filters, blocks,
    comments, whitespace control, a stray brace, a carriage return, which Jinja normalizes)
    goes to Jinja; tests/test_plan_runner.py checks the two agree on generated templates."""
    if "\r" in template:
        return None
    pieces = _PLACEHOLDER.split(template)
    literals = tuple(pieces[0::2])
    if any("{" in lit or "}" in lit for lit in literals):
        return None
    return literals, tuple(pieces[1::2])


def _render(template: str, values: dict[str, Any]) -> str:
    simple = _placeholders(template)
    if simple is not None:
        literals, names = simple
        if all(n in values for n in names):
            out = [literals[0]]
            size = len(literals[0])
            for name, lit in zip(names, literals[1:], strict=True):
                value = values[name]
                text = value if type(value) is str else str(value)
                size += len(text) + len(lit)
                if size > TEMPLATE_MAX_CHARS:  # 50,000 x {{ title }} of a 500 KB title
                    from casekit.strategies.sandbox import SecurityError

                    raise SecurityError(f"the template's output exceeds {TEMPLATE_MAX_CHARS:,} "
                                        "characters; make it shorter")
                out.append(text)
                out.append(lit)
            return "".join(out)
    # Anything else renders in Jinja's sandbox, imported here: an analysis never renders.
    from casekit.strategies.sandbox import _compiled, render_limited

    return render_limited(_compiled(template), values)


def __getattr__(name: str) -> Any:
    """The sandbox's names, as this module had them (importing Jinja on first use)."""
    if name in ("LimitedSandbox", "render_limited", "_ENV", "_compiled"):
        from casekit.strategies import sandbox

        return getattr(sandbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render_template(template: str, work: Work, **extra: Any) -> str:
    """Render a user-written Jinja template (sandboxed) over the work's metadata."""
    spec = work.spec
    values = {
        "title": spec.title,
        "author": spec.author,
        "published": spec.published.isoformat() if spec.published else "",
        "year": spec.published.year if spec.published else "",
        "work_id": spec.id,
        **extra,
    }
    try:
        return _render(template, values)
    except Exception as exc:  # noqa: BLE001 - whatever a user's template raises, located
        # Jinja's errors come from Jinja, imported by then (not imported for the check).
        jinja, sandbox = sys.modules.get("jinja2"), sys.modules.get("jinja2.sandbox")
        if sandbox is not None and isinstance(exc, sandbox.SecurityError):
            raise CasekitError(f"template {template[:40]!r}: {exc}") from None
        if jinja is not None and isinstance(exc, jinja.TemplateError):
            raise CasekitError(f"template {template[:40]!r}: {exc}; available variables: "
                               f"{', '.join(sorted(values))}") from None
        raise CasekitError(f"template {template[:40]!r}: cannot be rendered "
                           f"({type(exc).__name__}: {exc}); fix or simplify the template") \
            from None


def chat_messages(probe: Probe) -> list[Message]:
    msgs: list[Message] = []
    if probe.system:
        msgs.append(Message(role="system", content=probe.system))
    msgs.append(Message(role="user", content=probe.chat_text or probe.text))
    return msgs


_BUILTIN: dict[str, str] = {
    "prefix_continuation": "casekit.strategies.prefix:PrefixContinuation",
    "instruction_recall": "casekit.strategies.instruction:InstructionRecall",
    "benign_prompts": "casekit.strategies.benign:BenignPrompts",
    "teacher_forced": "casekit.strategies.teacher_forced:TeacherForced",
    "iterative_continuation": "casekit.strategies.iterative:IterativeContinuation",
    "name_cloze": "casekit.strategies.name_cloze:NameCloze",
    "divergence": "casekit.strategies.divergence:Divergence",
    "pz_census": "casekit.strategies.census:PzCensus",
    "lyrics_recall": "casekit.strategies.lyrics:LyricsRecall",
}


_REGISTERED: dict[str, type[Strategy]] = {}
_VERSION = [0]


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Register a strategy class under its ``name`` (usable as a class decorator), for code
    that defines strategies without packaging them: a package declares an entry point in the
    ``casekit.strategies`` group instead. A name already taken by another class is an error."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise CasekitError(f"{cls!r} does not subclass casekit.strategies.base.Strategy")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise CasekitError(f"{cls.__name__} has no name: set the class attribute name = '...'")
    taken = _REGISTERED.get(name)
    if (name in _BUILTIN or taken is not None) and taken is not cls:
        raise CasekitError(f"strategy name {name!r} is taken; give {cls.__name__} another name")
    _REGISTERED[name] = cls
    _VERSION[0] += 1
    log.debug("registered strategy %s", name)
    return cls


def unregister_strategy(name: str) -> None:
    """Remove a strategy registered with :func:`register_strategy` (tests, notebooks)."""
    _REGISTERED.pop(name, None)
    _VERSION[0] += 1


def registry_version() -> int:
    """Changes whenever a strategy is registered or removed (caches of the measures key on
    it)."""
    return _VERSION[0]


def strategy_names() -> list[str]:
    names = set(_BUILTIN) | set(_REGISTERED)
    names.update(ep.name for ep in importlib.metadata.entry_points(group="casekit.strategies"))
    return sorted(names)


def builtin_strategy_names() -> list[str]:
    """The strategies that ship with casekit: their measures are in every findings.json."""
    return sorted(_BUILTIN)


def strategy_class(name: str) -> type[Strategy]:
    """Find a strategy by name: built-ins first, then registered classes, then the
    ``casekit.strategies`` entry points."""
    target = _BUILTIN.get(name)
    if target is not None:
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    elif name in _REGISTERED:
        cls = _REGISTERED[name]
    else:
        eps = [e for e in importlib.metadata.entry_points(group="casekit.strategies")
               if e.name == name]
        if not eps:
            raise CasekitError(f"unknown strategy {name!r}; use one of {strategy_names()}")
        cls = eps[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise CasekitError(f"strategy {name!r} does not subclass casekit.strategies.base.Strategy")
    return cls
