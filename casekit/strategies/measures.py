"""Measures: what a strategy contributes to the analysis, declared beside its plan.

A strategy lists its measures (``Strategy.measures``); the analyzer runs their hooks on the
attempts of the strategies that declare them and never names a strategy itself. A measure has
a name (its key in findings.json's ``definitions``), a definition (printed in the report), the
fields it adds to each attempt and to each model x work finding (pydantic models flattened
into findings.json beside the core fields, every field with an empty default, so findings keep
one shape whatever the case ran), and hooks:

- ``decide``: take an attempt over before span matching (name cloze: the answer is the
  measure, the output is not matched against the work);
- ``mask_output``: mask output words before span matching (divergence: the leading run of the
  repeated word);
- ``attempt``: per-attempt figures after span matching (50/50 discoverable, nv-recall);
- ``finding`` and ``bootstrap``: per model x work aggregates over the declaring strategies'
  attempts (name-cloze accuracy, the census, the teacher-forced summary).

Measures sit below the analysis (import-linter layers), so they import only lower modules: the
rates (``casekit.stats``), p_z (``casekit.pz``), text (``casekit.normalize``, ``casekit.works``)
and what the analyzer hands them in :class:`AttemptContext` and :class:`FindingContext`.
A measure instance lives for one analysis, so it may keep state across attempts (the texts of
iterative sessions for the work-level nv-recall).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from casekit.normalize import Tokens
from casekit.works import CHAPTER_RE, Work

if TYPE_CHECKING:
    from casekit.case import Thresholds
    from casekit.pz import TeacherForced
    from casekit.records import AttemptRecord, Outcome
    from casekit.stats import BootstrapRate

log = logging.getLogger(__name__)

F = TypeVar("F", bound="MeasureFields")


class MeasureFields(BaseModel):
    """Base of the fields a measure adds to an attempt or a finding. Serialized flat, beside
    the core fields (the field names are findings.json keys, so they must be unique across
    measures); every field needs an empty default (None or an empty list)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class AttemptView(Protocol):
    """What a measure's aggregate reads of an analysed attempt (``AttemptAnalysis`` of the
    analysis satisfies it)."""

    @property
    def attempt_id(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def strategy_key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def mode(self) -> str: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def longest_words(self) -> int: ...
    @property
    def teacher_forced(self) -> TeacherForced | None: ...

    def measure(self, cls: type[F]) -> F | None:
        """This attempt's fields of the measure that declares ``cls``, if it has them."""
        ...


@dataclass(frozen=True)
class AttemptContext:
    """One generation attempt as the analyzer hands it to a measure's per-attempt hooks."""

    record: AttemptRecord
    work: Work
    thresholds: Thresholds
    text: str
    """The output text."""
    out: Tokens | None = None
    """The output's words (the span-matching profile); None in ``decide``."""


@dataclass(frozen=True)
class Decision:
    """A measure took an attempt over: its outcome, and the measure's fields."""

    outcome: Outcome
    fields: MeasureFields


@dataclass(frozen=True)
class FindingContext:
    """One model x work as the analyzer hands it to a measure's aggregate hooks."""

    model_id: str
    work: Work
    thresholds: Thresholds
    attempts: Sequence[AttemptView]
    """This model's attempts on this work by the strategies that declare the measure, in
    ledger order."""
    strategy_params: Callable[[str], dict[str, Any]] = field(default=lambda key: {})
    """The case's parameters of a strategy entry, by strategy key (``name#index``)."""


@dataclass(frozen=True)
class ReportRow:
    """A row a measure adds to the report's further-measures table (its figure for a work
    beside the control's). The report formats the figure; the measure owns the words."""

    key: str
    """The row among the measure's rows (the report's view of it is keyed by measure and key)."""
    label: str
    """The row's label, printed as is."""
    order: int
    """Position in the table (the report's own rows: spans > T 60, longest block 70)."""


class Measure:
    """Base class of measures. Subclasses set ``name`` and ``definition``, the field models
    they fill, and override the hooks they need (each default does nothing). What the report
    prints about a measure (its label, its rows and their words, its partial) is declared here
    too, so the report never names a measure or a strategy."""

    name: ClassVar[str]
    """Key of the definition in findings.json's ``definitions``."""
    definition: ClassVar[str]
    """How the measure is computed, with its citation; ``{k}``, ``{near_exact}`` and
    ``{min_span_words}`` are replaced by the case's thresholds (so braces must be doubled)."""
    AttemptFields: ClassVar[type[MeasureFields] | None] = None
    """Fields added to every attempt (empty where the measure does not apply)."""
    FindingFields: ClassVar[type[MeasureFields] | None] = None
    """Fields added to every model x work finding."""

    label: ClassVar[str] = ""
    """The definition's label in the report (Methods, further measures); the name if empty."""
    further_order: ClassVar[int | None] = 1000
    """Position of the definition in the further measures' list (the report's own
    definitions: intervals 0, spans > T 70, longest block 80, BMC 90, comparison 110,
    coverage 120); None: listed under Methods only."""
    report_rows: ClassVar[tuple[ReportRow, ...]] = ()
    """Rows of the further-measures table (built-in measures; the report formats them)."""
    words: ClassVar[dict[str, str]] = {}
    """The sentences the report prints for this measure (``str.format`` templates, by key)."""
    partial: ClassVar[str | None] = None
    """A template partial (``partials/measures/<name>.html.j2``) the further-measures section
    includes per model x work where the measure's finding fields are not empty; it gets
    ``fields`` (the finding's fields), ``control`` (the control work's, None when this is a
    control or the control's are empty), ``measure``
    (this class) and the formatting helpers (``fmt_pct``, ``rate_view``, ``boot_text``)."""

    @classmethod
    def title(cls) -> str:
        """The label printed for the measure's definition."""
        return cls.label or cls.name

    def decide(self, ctx: AttemptContext) -> Decision | None:
        """Take the attempt over before span matching; None leaves it to span matching."""
        return None

    @classmethod
    def decided(cls, fields: MeasureFields) -> bool:
        """True when this attempt's fields say the measure took it over (``decide``): such an
        attempt is not a span attempt and stays out of the span rates. Read from the fields
        alone, so findings loaded from findings.json answer it too."""
        return False

    def mask_output(self, ctx: AttemptContext, mask: np.ndarray) -> MeasureFields | None:
        """Set output words that must never form a span in ``mask`` (in place)."""
        return None

    def attempt(self, ctx: AttemptContext) -> MeasureFields | None:
        """The measure's fields of one span-matched attempt (after ``mask_output``'s)."""
        return None

    def finding(self, ctx: FindingContext) -> MeasureFields | None:
        """The measure's fields of one model x work."""
        return None

    def bootstrap(self, ctx: FindingContext) -> dict[str, BootstrapRate]:
        """Cluster-bootstrap intervals the measure adds to the finding's ``bootstrap``."""
        return {}

    def state(self) -> Any:
        """What the per-attempt hooks of this instance gathered that ``finding`` needs (a
        picklable value; None when the measure keeps nothing). An analysis in worker processes
        runs the hooks in one instance per worker and hands each worker's state to the
        instance that makes the findings (:meth:`merge_state`); the result must not depend on
        how the attempts were split among the workers."""
        return None

    def merge_state(self, state: Any) -> None:
        """Take in the :meth:`state` of another instance of this measure."""


#: Cluster unit of census windows when a work has fewer than two chapter headings.
CENSUS_BLOCK_CHARS = 1000


def census_clusters(work: Work, char_starts: list[int]) -> tuple[list[int], str]:
    """Cluster of each teacher-forced or census window for the bootstrap (overlapping windows
    are not independent): its chapter (headings as iterative continuation finds them) when
    the work has two or more, else its 1,000-character block; by the start of the window's
    suffix."""
    heads = [m.end() for m in CHAPTER_RE.finditer(work.raw)]
    if len(heads) >= 2:
        return [int(np.searchsorted(heads, c, side="right")) for c in char_starts], "chapter"
    return [c // CENSUS_BLOCK_CHARS for c in char_starts], \
        f"{CENSUS_BLOCK_CHARS:,}-character block"


def word_range(tokens: Tokens, start: int, end: int) -> tuple[int, int]:
    """Word indices of the tokens inside raw chars [start, end)."""
    lo = int(np.searchsorted(tokens.starts, start, side="left"))
    hi = int(np.searchsorted(tokens.ends, end, side="right"))
    return lo, max(lo, hi)

EXCERPT_UNIT = "excerpt (a prompt with all its samples)"
"""Cluster unit of the bootstrap over the samples of one prompt."""
