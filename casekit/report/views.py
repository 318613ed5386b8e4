"""View types more than one section shows: a labelled value, a rate with its interval, and the
cap on the ledger's notes that the manifest and the chain of custody list."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from casekit.analysis.findings import AttemptAnalysis
from casekit.records import Note
from casekit.report import catalogue as C
from casekit.report.text import (
    DASH,
    agree,
    counted,
    fmt_pct,
)
from casekit.stats import Rate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KV:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class RateView:
    k_of_n: str
    pct: str
    ci: str

    @property
    def tested(self) -> bool:
        """False where no attempt of this kind ran (the view then reads "not tested")."""
        return self.k_of_n != C.NOT_TESTED

    @property
    def text(self) -> str:
        return f"{self.k_of_n} ({self.pct}; {self.ci})" if self.ci else self.k_of_n


def rate_view(r: Rate) -> RateView:
    """A rate as ``k of n``, percentage and interval (or why there is no estimate)."""
    if r.n == 0 or r.rate is None:
        return RateView(C.NOT_TESTED, DASH, C.NO_ATTEMPTS_ESTIMATE)
    method = C.INTERVAL_METHODS.get(r.method, r.method)
    return RateView(f"{r.k:,} of {r.n:,}", fmt_pct(r.rate),
                    C.RATE_CI.format(lo=fmt_pct(r.lo), hi=fmt_pct(r.hi), method=method))


OUTCOME_ORDER = ("match", "no_match", "refusal", "error", "unscorable")
#: What "match" and "no match" mean for an attempt that is not span-matched, in this order
#: after OUTCOME_ORDER: a measure's own answer (a name-cloze answer), a teacher-forced window.
OTHER_OUTCOMES = (C.OUTCOME_CORRECT, C.OUTCOME_WRONG, C.OUTCOME_GREEDY, C.OUTCOME_NOT_GREEDY)


def outcome_label(x: AttemptAnalysis) -> str:
    """An attempt's outcome as the report prints it. For a span-matched attempt, as
    recorded: "match" is a credited span at the reporting threshold. A name-cloze answer and
    a teacher-forced window are recorded as match / no_match too, for a correct name and a
    window reproduced greedily: printed as "match" they read as spans of the work beside a
    finding of none (the demo's "match 1" under "not observed in these attempts")."""
    o = x.outcome
    if o in ("match", "no_match") and not x.span_attempt:
        if x.mode == "score":
            return C.OUTCOME_GREEDY if o == "match" else C.OUTCOME_NOT_GREEDY
        return C.OUTCOME_CORRECT if o == "match" else C.OUTCOME_WRONG
    return o.replace("_", " ")


def outcome_counts(counts: Mapping[str, int]) -> str:
    """Counts by :func:`outcome_label`: the recorded outcomes always (zeros included), the
    others when present."""
    known = [o.replace("_", " ") for o in OUTCOME_ORDER]
    labels = known + [o for o in OTHER_OUTCOMES if counts.get(o)]
    labels += sorted(set(counts) - set(labels))
    return ", ".join(f"{o} {counts.get(o, 0):,}" for o in labels)


#: Notes of the ledger listed in the manifest and the chain of custody (the first, in ledger
#: order); the rest are counted by kind. A run's notes grow with its batches and resumptions.
NOTES_SHOWN = 20


def notes_shown(notes: Sequence[Note], limit: int = NOTES_SHOWN) -> tuple[list[Note], str]:
    """The first ``limit`` notes, and the sentence that counts the others by kind ("" if
    none is left out)."""
    rest = notes[limit:]
    if not rest:
        return list(notes), ""
    kinds: dict[str, int] = {}
    for n in rest:
        kinds[n.kind] = kinds.get(n.kind, 0) + 1
    return list(notes[:limit]), C.NOTES_NOT_SHOWN.format(
        more=counted(len(rest), "more note"), are=agree(len(rest), "is", "are"),
        kinds=", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
