"""Typed provider params: the base class and the checks their fields share.

A model's ``params`` stay the raw mapping the user wrote (that is what run_start records);
each provider validates them into its frozen ``Params`` class. Every field's check runs
before pydantic's own (``BeforeValidator``), so a value is accepted exactly when the check
says so (no coercion: ``"8"`` is not 8, ``true`` is not 1) and the message says what to write.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from casekit.case import ModelParamsError, ModelSpec

log = logging.getLogger(__name__)

P = TypeVar("P", bound="ProviderParams")


class ProviderParams(BaseModel):
    """Base of every provider's params: user input, so unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def parse_params(cls: type[P], spec: ModelSpec, provider: str) -> P:
    """``spec.params`` validated into ``cls``; the first problem (an unknown key before a bad
    value) as a :class:`ModelParamsError` at that key's path."""
    try:
        return cls.model_validate(spec.params)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(cls.model_fields) or "none"
            problem = (f"unknown {provider} provider param; remove it or correct its spelling "
                       f"(allowed: {allowed})")
        else:
            problem = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] != "value_error":
                problem += f" (got {err.get('input')!r})"
        raise ModelParamsError(problem, model_id=spec.id, loc=loc) from None


def check(test: Callable[[Any], bool], expected: str,
          convert: Callable[[Any], Any] | None = None) -> BeforeValidator:
    """A field check: ``value`` passes when ``test(value)``; else "must be ``expected`` (got
    value)". ``expected`` may hold ``{got}`` to place the value itself."""

    def validate(value: Any) -> Any:
        if not test(value):
            text = expected.format(got=repr(value)) if "{got}" in expected else (
                f"{expected} (got {value!r})")
            raise ValueError(f"must be {text}")
        return convert(value) if convert is not None else value

    return BeforeValidator(validate)


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's true is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def number_at_least(minimum: float) -> BeforeValidator:
    """A finite int or float (not a bool) >= ``minimum``, as a float."""
    return check(lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                            and math.isfinite(v) and v >= minimum),
                 f"a number >= {minimum:g}", float)


def whole_at_least(minimum: int) -> BeforeValidator:
    """An int (not a bool, not 8.0) >= ``minimum``."""
    return check(lambda v: is_int(v) and v >= minimum, f"a whole number >= {minimum}")


def whole_between(low: int, high: int, why: str) -> BeforeValidator:
    """An int (not a bool) in ``low..high``; ``why`` says what the number counts."""
    return check(lambda v: is_int(v) and low <= v <= high,
                 f"a whole number {low}-{high} ({why}; got {{got}})")


def flag() -> BeforeValidator:
    """true or false (YAML booleans only)."""
    return check(lambda v: isinstance(v, bool), "true or false")


def text_or_null() -> BeforeValidator:
    return check(lambda v: v is None or isinstance(v, str), "text")


def one_of(choices: Sequence[str], expected: str | None = None) -> BeforeValidator:
    """One of ``choices`` (an explicit null is refused too)."""
    return check(lambda v: isinstance(v, str) and v in choices,
                 expected or f"one of {', '.join(choices)}")
