"""Exhibits (partials/exhibits.html.j2): of the attempts that reached the reporting threshold,
at most ``per_finding`` per model x work, the longest spans first (then ledger order), numbered
in findings order, each checked against its ledger record. The rest are counted per model x
work and stay in the complete per-attempt listing: the pages follow the case's shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casekit.analysis.findings import Findings
from casekit.errors import CasekitError
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.sections.exhibit import Exhibit, build_exhibit
from casekit.report.sections.long_texts import LongText

log = logging.getLogger(__name__)


#: Exhibits shown per model x work; the rest are counted, and listed in the per-attempt listing.
EXHIBITS_PER_FINDING = 3


@dataclass(frozen=True)
class ExhibitGroup:
    model_id: str
    work_id: str
    work_title: str
    role: str
    exhibits: list[Exhibit]
    total: int
    more_text: str
    not_shown: int
    """Attempts of this model x work that reached the threshold and are not exhibited."""

    @property
    def count(self) -> str:
        """Attempts of this model x work that reached the threshold (formatted)."""
        return f"{self.total:,}"


@dataclass
class ExhibitSet:
    groups: list[ExhibitGroup]
    anchor_of: dict[str, tuple[str, str]]
    """attempt id -> (exhibit number, anchor) of the exhibits shown."""
    refs_of: dict[tuple[str, str], list[str]]
    """(model, work) -> exhibit numbers shown."""
    shown: int
    total: int
    longs: list[LongText] = field(default_factory=list)
    """Texts too long for their exhibit column, shown whole in the appendix."""


def build_exhibits(f: Findings, inputs: Inputs, requested: dict[str, str], per_finding: int,
              ) -> ExhibitSet:
    """The exhibits, numbered in findings order, each checked against its ledger record.

    Which attempts: those the findings list for the model x work (every attempt that reached
    the threshold), the longest span first, then ledger order, then attempt id: the same
    choice on every render, whatever order the list comes in."""
    analyses = {x.attempt_id: x for x in f.attempts}
    out = ExhibitSet([], {}, {}, 0, 0)
    for mw in f.findings:
        ids = list(mw.exhibit_attempts)
        out.total += len(ids)
        shown: list[Exhibit] = []
        for aid in ids:
            if aid not in analyses:
                raise CasekitError(f"exhibit attempt {aid} is not among the findings' attempts; "
                                   "the findings are inconsistent: re-run `casekit analyze`")
        ranked = sorted((analyses[aid] for aid in ids),
                        key=lambda x: (-x.longest_words, x.seq, x.attempt_id))
        for an in ranked[:max(0, per_finding)]:
            aid = an.attempt_id
            rec = inputs.attempts_by_seq.get(an.seq)
            if rec is None or rec.attempt.id != aid or rec.hash != an.record_hash:
                raise CasekitError(f"exhibit attempt {aid} (seq {an.seq}) is not in the ledger "
                                   "as the findings record it; re-run `casekit analyze`")
            out.shown += 1
            ex = build_exhibit(out.shown, an, rec, inputs.works[an.work_id],
                          requested.get(an.model_id, an.model_id), out.longs)
            shown.append(ex)
            out.anchor_of[aid] = (ex.number, ex.anchor)
        out.refs_of[(mw.model_id, mw.work_id)] = [e.number for e in shown]
        if not ids:
            continue
        more = len(ids) - len(shown)
        more_text = C.MORE_EXHIBITS.format(more=f"{more:,}") if more else C.ALL_EXHIBITS
        out.groups.append(ExhibitGroup(
            model_id=mw.model_id, work_id=mw.work_id,
            work_title=inputs.works[mw.work_id].spec.title, role=mw.role, exhibits=shown,
            total=len(ids), more_text=more_text, not_shown=more))
    return out
