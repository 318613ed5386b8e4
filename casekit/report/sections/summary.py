"""Summary of findings (partials/summary.html.j2): one row per model x work, overview and per
model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import (
    Findings,
    ModelWorkFinding,
    WorkBasis,
)
from casekit.analysis.taxonomy import BELOW, NOT_OBSERVED, SHOWN
from casekit.report import catalogue as C
from casekit.report.sections.controls import FloorView, floor_at
from casekit.report.table import AttemptTable
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import RateView, outcome_counts, rate_view
from casekit.strategies.teacher_forced import SummaryFields
from casekit.works import Work

log = logging.getLogger(__name__)


STATUS_CLASS = {SHOWN: "status-shown", BELOW: "status-below", NOT_OBSERVED: "status-none"}


@dataclass(frozen=True)
class SummaryRow:
    model_id: str
    work_id: str
    work_title: str
    work_author: str
    role: str
    regurgitation: RateView
    extraction: RateView
    coverage: str
    covered_words: str
    longest_block: str
    bmc5: str
    bmc_all: str
    top1: str
    top1_detail: str
    status: str
    status_class: str
    reason: str
    outcomes: str
    exhibits: str
    floor: FloorView | None
    min_span: str = ""
    """The work's reporting threshold with its unit (``40 words``, ``80 characters``)."""
    headline: str = ""
    """A short work's headline: the share of the work reproduced ("" for prose)."""
    chance: str = ""
    """A short work's chance baseline, in words ("" for prose)."""
    stitching: str = ""
    """Says so when the memorization finding rests on a block stitched from several attempts
    (sections/reconstruction.py)."""


@dataclass(frozen=True)
class ModelSummary:
    model_id: str
    requested: str
    rows: list[SummaryRow]
    floor: FloorView | None


def short_work_text(f: ModelWorkFinding, work: Work, basis: WorkBasis | None,
                    ) -> tuple[str, str]:
    """(headline, chance baseline) of a short work's finding; empty strings for prose."""
    if basis is None or basis.kind == "prose":
        return "", ""
    u = basis.unit
    headline = C.SHORT_HEADLINE.format(
        kind=basis.kind, share=fmt_pct(f.coverage.share), covered=f"{f.coverage.covered_words:,}",
        total=f"{f.coverage.total_words:,}", unit=u,
        refrain=C.REFRAIN_ONCE if basis.refrain_lines else C.NO_REFRAIN,
        block=f"{f.coverage.longest_block_words:,}", min_span=f"{basis.min_span:,}")
    ch = basis.chance
    if ch is None:
        return headline, ""
    if not ch.reference_works and not ch.reference_files:
        shared = C.CHANCE_NO_REFS
    elif ch.longest_shared:
        shared = C.CHANCE_SHARED.format(longest=f"{ch.longest_shared:,}", unit=u)
    else:
        shared = C.CHANCE_NONE_SHARED.format(k=ch.seed_k, unit=u)
    chance = C.CHANCE_TEXT.format(
        words=f"{ch.reference_words:,}", unit=u,
        works=", ".join([*ch.reference_works, *ch.reference_files]) or DASH,
        shared=shared, reaching=f"{ch.shared_at_min_span:,}", min_span=f"{ch.min_span:,}",
        hits=f"{ch.control_reaching:,}", n=f"{ch.control_attempts:,}",
        clongest=f"{ch.control_longest:,}")
    return headline, chance


def summary_row(f: ModelWorkFinding, work: Work, floor: FloorView | None,
                 exhibit_refs: list[str], min_span: int = 0,
                 basis: WorkBasis | None = None, stitching: str = "",
                 outcomes: str | None = None) -> SummaryRow:
    """One model x work: its rates, coverage, conclusion and control floor. ``outcomes``:
    its attempts by outcome as the attempts section counts them (views.outcome_counts),
    else as findings.json records them."""
    tf = f.fields(SummaryFields).teacher_forced
    headline, chance = short_work_text(f, work, basis)
    if outcomes is None:
        outcomes = outcome_counts({o.replace("_", " "): n for o, n in f.outcomes.items()})
    return SummaryRow(
        model_id=f.model_id, work_id=f.work_id, work_title=work.spec.title,
        work_author=work.spec.author, role=f.role,
        regurgitation=rate_view(f.regurgitation), extraction=rate_view(f.extraction),
        coverage=fmt_pct(f.coverage.share),
        covered_words=f"{f.coverage.covered_words:,} of {f.coverage.total_words:,} {work.unit}",
        longest_block=f"{f.coverage.longest_block_words:,} {work.unit}",
        bmc5=fmt_pct(f.bmc.get("5")),
        bmc_all=", ".join(f"@{k} {fmt_pct(v)}" for k, v in
                          sorted(f.bmc.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit()
                                 else 10**9)),
        top1=fmt_pct(tf.mean_top1_share) if tf else DASH,
        top1_detail=C.TF_DETAIL.format(windows=f"{tf.windows:,}",
                                       greedy=f"{tf.greedy_reproduced_windows:,}")
        if tf else C.NO_TF_WINDOWS,
        status=f.memorization, status_class=STATUS_CLASS.get(f.memorization, ""),
        reason=f.memorization_reason, outcomes=outcomes,
        exhibits=", ".join(exhibit_refs) if exhibit_refs else DASH,
        floor=floor, min_span=f"{min_span:,} {work.unit}",
        headline=headline, chance=chance, stitching=stitching,
    )


def build_summary(f: Findings, works: dict[str, Work], model_ids: list[str],
                  requested: dict[str, str], floors_by_model: dict[str, FloorView],
                  refs_of: dict[tuple[str, str], list[str]],
                  stitching: dict[tuple[str, str], str] | None = None,
                  outcomes: dict[tuple[str, str], str] | None = None,
                  table: AttemptTable | None = None,
                  ) -> tuple[list[SummaryRow], list[ModelSummary]]:
    """The overview table (every model x work) and the same rows grouped per model; beside a
    subject whose threshold is scaled (short, CJK), the floor at its threshold (``table``:
    the attempts, :func:`floor_at`)."""
    overview: list[SummaryRow] = []
    summary: list[ModelSummary] = []

    def floor_of(mw: ModelWorkFinding) -> FloorView | None:
        if mw.role != "subject":
            return None
        base = floors_by_model[mw.model_id]
        return base if table is None else floor_at(base, f, table, mw.work_id)

    for mid in model_ids:
        rows = [summary_row(mw, works[mw.work_id], floor_of(mw),
                            refs_of.get((mid, mw.work_id), []), f.min_span(mw.work_id),
                            f.works.get(mw.work_id), (stitching or {}).get((mid, mw.work_id), ""),
                            (outcomes or {}).get((mid, mw.work_id)))
                for mw in f.findings if mw.model_id == mid]
        overview += rows
        if rows:
            summary.append(ModelSummary(model_id=mid, requested=requested.get(mid, mid),
                                        rows=rows, floor=floors_by_model[mid]))
    return overview, summary
