"""Which measures an analysis runs, and which measure a findings.json key belongs to.

The analysis never names a strategy: it asks the strategies (built-in, registered, or from
entry points) for the measures they declare. Every built-in strategy's measures are in every
findings.json (with empty values where the case did not run the strategy), so findings keep
one shape; a plugin strategy's measures are added when the case uses it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from casekit.errors import CasekitError
from casekit.strategies.base import (
    builtin_strategy_names,
    registry_version,
    strategy_class,
    strategy_names,
)
from casekit.strategies.measures import Measure, MeasureFields

log = logging.getLogger(__name__)

Level = Literal["attempt", "finding"]


@dataclass(frozen=True)
class ActiveMeasure:
    """A measure class and the strategies that declare it (its hooks see their attempts)."""

    cls: type[Measure]
    strategies: frozenset[str]


def active_measures(case_strategies: Iterable[str]) -> list[ActiveMeasure]:
    """The measures of the built-in strategies and of the case's, in a stable order (by
    strategy name, then as each strategy declares them)."""
    names = sorted(set(builtin_strategy_names()) | set(case_strategies))
    return _measures_of(tuple(names))


def takes_over(strategy: str) -> bool:
    """Whether a measure of ``strategy`` can take its attempts over before span matching
    (``Measure.decide``, as name cloze does): only such attempts can fail to be span attempts
    (AttemptAnalysis.span_attempt) other than by being score attempts. False for a name no
    strategy has (``imported``: free-form imported outputs)."""
    return _takes_over(strategy, registry_version())


@functools.lru_cache(maxsize=256)
def _takes_over(strategy: str, version: int) -> bool:
    try:
        measures = strategy_class(strategy).measures
    except CasekitError:
        return False
    return any(cls.decide is not Measure.decide for cls in measures)


def _measures_of(names: tuple[str, ...]) -> list[ActiveMeasure]:
    owners: dict[type[Measure], set[str]] = {}
    by_name: dict[str, type[Measure]] = {}
    for name in names:
        for cls in strategy_class(name).measures:
            other = by_name.setdefault(cls.name, cls)
            if other is not cls:
                raise CasekitError(f"measures {other.__qualname__} and {cls.__qualname__} are "
                                   f"both named {cls.name!r}; rename one (the name is its "
                                   "findings.json definitions key)")
            owners.setdefault(cls, set()).add(name)
    return [ActiveMeasure(cls, frozenset(s)) for cls, s in owners.items()]


@functools.lru_cache(maxsize=8)
def _by_name(version: int) -> dict[str, type[Measure]]:
    return {am.cls.name: am.cls for am in _measures_of(tuple(strategy_names()))}


def measure_by_name(name: str) -> type[Measure] | None:
    """The measure class of a findings ``measures`` key, over every known strategy."""
    return _by_name(registry_version()).get(name)


def fields_of(cls: type[Measure], level: Level) -> type[MeasureFields] | None:
    return cls.AttemptFields if level == "attempt" else cls.FindingFields


@functools.lru_cache(maxsize=8)
def _field_index(level: Level, version: int) -> dict[str, type[Measure]]:
    """findings.json key -> the measure that declares it, over every known strategy."""
    index: dict[str, type[Measure]] = {}
    for am in _measures_of(tuple(strategy_names())):
        fields = fields_of(am.cls, level)
        for key in fields.model_fields if fields is not None else ():
            other = index.setdefault(key, am.cls)
            if other is not am.cls:
                raise CasekitError(f"measures {other.__qualname__} and {am.cls.__qualname__} "
                                   f"both declare the {level} field {key!r}; rename one")
    return index


def field_index(level: Level) -> dict[str, type[Measure]]:
    return _field_index(level, registry_version())


@functools.lru_cache(maxsize=64)
def _empty(fields: type[MeasureFields]) -> tuple[MeasureFields, dict[str, Any]]:
    """A measure's empty fields (frozen, so shared) and their serialized values."""
    empty = fields()
    return empty, empty.model_dump(mode="json")


def empty_fields(fields: type[MeasureFields]) -> MeasureFields:
    """The shared empty instance of a measure's fields."""
    return _empty(fields)[0]


def dump_fields(fields: MeasureFields, mode: str) -> dict[str, Any]:
    """A measure's fields serialized; the shared empty instance from a cache (most attempts
    have most measures empty, and findings.json holds every attempt)."""
    empty, values = _empty(type(fields))
    if fields is empty:
        return values
    return fields.model_dump(mode=mode)


def split_measure_fields(level: Level, data: dict[str, Any], core: set[str],
                         ) -> dict[str, Any]:
    """A serialized attempt or finding with its measures' keys gathered under ``measures``
    (by measure name), each validated by the measure's field model. Keys no measure declares
    are left for the model to reject. Empty values (most attempts have most measures empty)
    share one instance instead of being validated again."""
    index = field_index(level)
    out = dict(data)
    grouped: dict[type[Measure], dict[str, Any]] = {}
    for key in data.keys() - core:
        owner = index.get(key)
        if owner is not None:
            grouped.setdefault(owner, {})[key] = out.pop(key)
    measures: dict[str, MeasureFields] = {}
    for cls, values in grouped.items():
        fields = fields_of(cls, level)
        assert fields is not None
        empty, empty_values = _empty(fields)
        measures[cls.name] = empty if values == empty_values else fields.model_validate(values)
    out["measures"] = measures
    return out
