"""The sandbox user-written prompt templates render in: Jinja's, with limits on what a template
may build and how long it may run. Imported by casekit.strategies.base when a template needs
Jinja (one with only ``{{ name }}`` placeholders does not), so that what never renders a
template (an analysis) does not import Jinja."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from casekit.strategies.limits import TEMPLATE_MAX_CHARS, TEMPLATE_MAX_STEPS


class _Budget(threading.local):
    steps = 0


_BUDGET = _Budget()


def _spend(n: int, what: str) -> None:
    _BUDGET.steps += n
    if _BUDGET.steps > TEMPLATE_MAX_STEPS:
        raise SecurityError(f"{what}: the template takes more than {TEMPLATE_MAX_STEPS:,} steps; "
                            "a template is a prompt: remove the loop or call")


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > TEMPLATE_MAX_CHARS:
        raise SecurityError(f"the template builds a value of {len(value):,} characters or "
                            f"items, over the limit of {TEMPLATE_MAX_CHARS:,}; make it shorter")
    return value


def _limited_range(*args: int) -> range:
    r = range(*args)
    _spend(len(r), "range")
    return r


def _limited_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose numeric arguments (widths, counts) and result stay within the limit;
    ``replace`` and ``format`` are checked before they build their result."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for a in (*args, *kwargs.values()):
            if isinstance(a, int) and not isinstance(a, bool) and abs(a) > TEMPLATE_MAX_CHARS:
                raise SecurityError(f"filter {name}: {a:,} is over the limit of "
                                    f"{TEMPLATE_MAX_CHARS:,}; use a smaller number")
        texts = [a for a in args if isinstance(a, str)]
        if name == "replace" and len(texts) >= 3 and texts[1]:
            grown = len(texts[0]) + texts[0].count(texts[1]) * (len(texts[2]) - len(texts[1]))
            if grown > TEMPLATE_MAX_CHARS:
                raise SecurityError(f"filter replace would build {grown:,} characters, over the "
                                    f"limit of {TEMPLATE_MAX_CHARS:,}; make it shorter")
        if name == "format" and texts and re.search(r"\d{7,}|\*", texts[0]):
            raise SecurityError("filter format: widths of a million or more (and *) are not "
                                "allowed; use a smaller width")
        return _sized(fn(*args, **kwargs))

    return wrapper


class _LimitedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``~`` joined through the environment's size check."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limited_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(SandboxedEnvironment):
    """Jinja's sandbox with limits on what a template may build and how long it may run:
    ``*``, ``**``, ``+`` and ``~`` refuse results over :data:`TEMPLATE_MAX_CHARS` before
    building them (``{{ 'A' * 1000000000 }}`` is refused, not a MemoryError), calls and
    ``range`` items share a budget of :data:`TEMPLATE_MAX_STEPS`, loops may not nest, and the
    output stops at :data:`TEMPLATE_MAX_CHARS` characters."""

    intercepted_binops = frozenset({"*", "**", "+"})
    code_generator_class = _LimitedCodeGenerator

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _limited_range
        # lipsum builds its text before any check can see it; random would make the plan
        # depend on something other than the seed.
        self.globals.pop("lipsum", None)
        self.filters.pop("random", None)
        self.filters = {k: _limited_filter(k, f) for k, f in self.filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (isinstance(seq, (str, list, tuple)) and isinstance(n, int)
                        and len(seq) * n > TEMPLATE_MAX_CHARS):
                    raise SecurityError(f"{len(seq):,} x {n:,} is over the limit of "
                                        f"{TEMPLATE_MAX_CHARS:,} characters or items; repeat "
                                        "less")
        if operator == "**" and isinstance(left, int) and isinstance(right, (int, float)):
            if right > 64 and abs(left) > 1:
                raise SecurityError(f"{left} ** {right} is too large; use a smaller exponent")
        if operator == "+":
            try:
                if len(left) + len(right) > TEMPLATE_MAX_CHARS:
                    raise SecurityError(f"the template builds a value over the limit of "
                                        f"{TEMPLATE_MAX_CHARS:,} characters or items; make it "
                                        "shorter")
            except TypeError:
                pass
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any,  # noqa: N805
             **kwargs: Any) -> Any:
        _spend(1, "call")
        return _sized(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def limited_join(parts: Sequence[Any]) -> str:
        total = 0
        out = []
        for p in parts:
            text = str(p)
            total += len(text)
            if total > TEMPLATE_MAX_CHARS:
                raise SecurityError(f"~ would build a string over the limit of "
                                    f"{TEMPLATE_MAX_CHARS:,} characters; make it shorter")
            out.append(text)
        return "".join(out)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            if any(True for _ in loop.find_all(nodes.For)):
                raise TemplateSyntaxError("loops may not nest in a template; write one loop",
                                          loop.lineno, name, filename)
        for macro in tree.find_all(nodes.Macro):
            raise TemplateSyntaxError("macros are not allowed in a template; write the text "
                                      "out", macro.lineno, name, filename)
        return tree


def render_limited(template: Template, values: dict[str, Any]) -> str:
    """Render with a fresh step budget, the output capped at :data:`TEMPLATE_MAX_CHARS`."""
    _BUDGET.steps = 0
    out: list[str] = []
    size = 0
    for piece in template.generate(**values):
        size += len(piece)
        if size > TEMPLATE_MAX_CHARS:
            raise SecurityError(f"the template's output exceeds {TEMPLATE_MAX_CHARS:,} "
                                "characters; make it shorter")
        out.append(piece)
    return "".join(out)


_ENV = LimitedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    """Compile a template once (compiling costs about 0.5 ms; a plan renders thousands)."""
    return _ENV.from_string(template)
