"""Reproducibility (partials/reproducibility.html.j2): this run as a re-run of another, from the
ledger's link and the attached comparison.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import Findings
from casekit.canonical import sha256_bytes
from casekit.errors import CasekitError
from casekit.report import catalogue as C
from casekit.report.evidence import COMPARISON_ATTACHMENT
from casekit.report.inputs import Inputs
from casekit.report.text import (
    DASH,
    fmt_pct,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerunView:
    """This run as a re-run of another (``casekit rerun``): the link from the ledger, and the
    attempt-by-attempt comparison when it is attached."""

    first_run: str
    first_head: str
    first_dir: str
    compared: bool
    note: str
    models: list[list[str]]
    """Per model: id, attempts, same output, same spans, same outcome."""
    differing: list[list[str]]
    """Attempts whose outcome or spans differ: id, model, work, first -> second outcome,
    same output, same spans (at most RERUN_DIFFS_SHOWN)."""
    differing_total: int
    sha256: str

    @property
    def differing_shown(self) -> str:
        return f"{len(self.differing):,}"

    @property
    def differing_count(self) -> str:
        """Attempts whose outcome or spans differ, all of them (formatted)."""
        return f"{self.differing_total:,}"

    @property
    def differing_more(self) -> str:
        """Differing attempts that are not listed (formatted)."""
        return f"{self.differing_total - len(self.differing):,}"


RERUN_DIFFS_SHOWN = 40


def build_rerun(f: Findings, inputs: Inputs) -> RerunView | None:
    """The reproducibility section: present when the ledger says this run repeats another."""
    link = inputs.start.rerun_of
    if not link:
        return None
    first, head = str(link.get("run_id", "")), str(link.get("ledger_head_hash", ""))
    if inputs.comparison_bytes is None:
        return RerunView(first_run=first, first_head=head, first_dir=str(link.get("run_dir")),
                         compared=False, note=C.RERUN_NO_COMPARISON, models=[],
                         differing=[], differing_total=0, sha256="")
    from casekit.analysis.compare import Comparison

    try:
        cmp = Comparison.model_validate_json(inputs.comparison_bytes)
    except ValueError as exc:
        raise CasekitError(f"{COMPARISON_ATTACHMENT} of run {f.run_id} is not a casekit "
                           f"comparison ({str(exc).splitlines()[0]}); run casekit rerun "
                           "again or remove the file") from None
    if cmp.second_run != inputs.start.run_id or cmp.first_run != first:
        raise CasekitError(f"{COMPARISON_ATTACHMENT} compares runs {cmp.first_run} and "
                           f"{cmp.second_run}, not {first} and {inputs.start.run_id}; remove it "
                           "or run casekit rerun again")
    note = C.RERUN_COMPARED + ("" if cmp.second_ledger_head == f.ledger_head_hash else
                               C.RERUN_HEAD_MOVED.format(head=cmp.second_ledger_head))

    def frac(k: int, n: int) -> str:
        return f"{k:,} of {n:,} ({fmt_pct(k / n) if n else DASH})"

    models = [[m.model_id, f"{m.attempts:,}", frac(m.same_output, m.attempts),
               frac(m.same_spans, m.attempts), frac(m.same_outcome, m.attempts)]
              for m in cmp.models]
    diff = [a for a in cmp.attempts if not (a.same_outcome and a.same_spans)]
    rows = [[a.attempt_id, a.model_id, a.work_id, f"{a.first_outcome} → {a.second_outcome}",
             {True: "yes", False: "no", None: DASH}[a.same_output],
             "yes" if a.same_spans else "no"] for a in diff[:RERUN_DIFFS_SHOWN]]
    return RerunView(first_run=cmp.first_run, first_head=cmp.first_ledger_head,
                     first_dir=str(link.get("run_dir")), compared=True, note=note,
                     models=models, differing=rows, differing_total=len(diff),
                     sha256=sha256_bytes(inputs.comparison_bytes))
