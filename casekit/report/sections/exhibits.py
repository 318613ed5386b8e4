"""Exhibits (partials/exhibits.html.j2): of the attempts that reached the reporting threshold,
at most ``per_finding`` per model x work, the longest spans first (then ledger order), numbered
in findings order, each checked against its ledger record. The rest are counted per model x
work and stay in the complete per-attempt listing: the pages follow the case's shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casekit.analysis.findings import AttemptAnalysis, Findings
from casekit.errors import CasekitError
from casekit.records import AttemptRecord
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.sections.exhibit import Exhibit, build_exhibit
from casekit.report.sections.long_texts import LongText
from casekit.report.sections.reconstruction import (
    BlockExhibit,
    build_block_exhibits,
    rests_on_stitching,
)
from casekit.report.text import agree, counted

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
    block: BlockExhibit | None = None
    """The longest block, when it is stitched from several attempts (exhibited whole)."""

    @property
    def count(self) -> str:
        """Attempts of this model x work that reached the threshold (formatted, with their
        noun)."""
        return counted(self.total, "attempt")


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
    blocks: dict[tuple[str, str], BlockExhibit] = field(default_factory=dict)
    """(model, work) -> the reconstruction exhibit of its stitched longest block."""
    stitching: dict[tuple[str, str], str] = field(default_factory=dict)
    """(model, work) -> the sentence saying its memorization finding rests on stitching."""


def build_exhibits(f: Findings, inputs: Inputs, requested: dict[str, str], per_finding: int,
              ) -> ExhibitSet:
    """The exhibits, numbered in findings order, each checked against its ledger record.

    Which attempts: those the findings list for the model x work (every attempt that reached
    the threshold), the longest span first, then ledger order, then attempt id: the same
    choice on every render, whatever order the list comes in."""
    table = inputs.table
    longest, seqs = table.number("longest_words"), table.number("seq")
    out = ExhibitSet([], {}, {}, 0, 0)
    shown_of: dict[tuple[str, str], list[Exhibit]] = {}
    covered_of: dict[tuple[str, str], int] = {}
    for mw in f.findings:
        ids = list(mw.exhibit_attempts)
        out.total += len(ids)
        shown: list[Exhibit] = []
        rows = table.rows_of(ids)
        for aid, row in zip(ids, rows, strict=True):
            if row < 0:
                raise CasekitError(f"exhibit attempt {aid} is not among the findings' attempts; "
                                   "the findings are inconsistent: re-run `casekit analyze`")
        # Ranked on the table's columns; only the attempts looked at are made into analyses.
        ranked = sorted(zip(ids, rows.tolist(), strict=True),
                        key=lambda t: (-int(longest[t[1]]), int(seqs[t[1]]), t[0]))
        # One exhibit per output: an attempt whose output text is inside one already chosen
        # (the first turn of an iterative session and the single attempt with the same prompt,
        # under greedy decoding) is named in that exhibit, not exhibited again.
        chosen: list[tuple[AttemptAnalysis, AttemptRecord, list[AttemptRecord]]] = []
        for _, row in ranked:
            if len(chosen) >= max(0, per_finding):
                break
            an = table.get(row)
            aid = an.attempt_id
            rec = inputs.attempts_by_seq.get(an.seq)
            if rec is None or rec.attempt.id != aid or rec.hash != an.record_hash:
                raise CasekitError(f"exhibit attempt {aid} (seq {an.seq}) is not in the ledger "
                                   "as the findings record it; re-run `casekit analyze`")
            text = _text(rec)
            same = next((i for i, c in enumerate(chosen) if text and (
                text in _text(c[1]) or _text(c[1]) in text)), None)
            if same is None:
                chosen.append((an, rec, []))
            elif text in _text(chosen[same][1]):
                chosen[same][2].append(rec)
            else:  # this output holds the chosen one's and goes on: exhibit it instead
                kept_an, kept_rec, dups = chosen[same]
                chosen[same] = (an, rec, [*dups, kept_rec])
        for an, rec, dups in chosen:
            out.shown += 1
            ex = build_exhibit(out.shown, an, rec, inputs.works[an.work_id],
                               requested.get(an.model_id, an.model_id), out.longs,
                               min_words=f.min_span(mw.work_id), same_output=dups)
            shown.append(ex)
            out.anchor_of[an.attempt_id] = (ex.number, ex.anchor)
            for d in dups:
                out.anchor_of[d.attempt.id] = (ex.number, ex.anchor)
        shown_of[(mw.model_id, mw.work_id)] = shown
        covered_of[(mw.model_id, mw.work_id)] = sum(1 + len(d) for _, _, d in chosen)
    out.blocks = build_block_exhibits(f, table, inputs.attempts_by_seq, inputs.works,
                                      out.anchor_of)
    for mw in f.findings:
        key = (mw.model_id, mw.work_id)
        shown = shown_of[key]
        block = out.blocks.get(key)
        out.refs_of[key] = ([block.number] if block else []) + [e.number for e in shown]
        best = max((c.longest_in_block for c in block.contributors), default=0) if block else 0
        if block is not None and rests_on_stitching(mw, f, best):
            out.stitching[key] = C.STITCHED_NOTE.format(
                words=block.words, k=f"{block.total:,}", single=f"{best:,}",
                ref=block.number)
        ids = list(mw.exhibit_attempts)
        if not ids and block is None:
            continue
        more = len(ids) - covered_of[key]
        more_text = (C.MORE_EXHIBITS.format(more=counted(more, "more attempt"),
                                            are=agree(more, "is", "are"),
                                            each=agree(more, "it", "each"))
                     if more else C.ALL_EXHIBITS)
        out.groups.append(ExhibitGroup(
            model_id=mw.model_id, work_id=mw.work_id,
            work_title=inputs.works[mw.work_id].spec.title, role=mw.role, exhibits=shown,
            total=len(ids), more_text=more_text, not_shown=more, block=block))
    return out


def _text(rec: AttemptRecord) -> str:
    return ((rec.result.text if rec.result else None) or "").strip()
