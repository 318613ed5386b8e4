"""The measures table of partials/further.html.j2: each figure for this work beside the
control's, with the definition it follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from casekit.analysis.findings import (
    Findings,
    ModelWorkFinding,
)
from casekit.analysis.stats import Rate
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import rate_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measure:
    """One row of a further-measures table: the figure for this work beside the control's."""

    label: str
    definition: str
    """The key of the definition in findings.definitions that the figure follows."""
    value: str
    note: str
    control: str
    control_note: str = ""



def _opt_rate(r: Rate | None) -> tuple[str, str]:
    """``k of n`` and its note for a rate that may be absent (DASH, no fake zero)."""
    if r is None:
        return DASH, "not measured"
    v = rate_view(r)
    return v.k_of_n, (f"{v.pct}; {v.ci}" if r.n else v.ci)



def _has_generations(f: Findings, mw: ModelWorkFinding) -> bool:
    return any(x.model_id == mw.model_id and x.work_id == mw.work_id and x.mode != "score"
               and x.cloze_correct is None for x in f.attempts)


def build_measures(f: Findings, mw: ModelWorkFinding, ctrl: ModelWorkFinding | None,
              ) -> list[Measure]:
    def both(get: Any) -> tuple[tuple[str, str], tuple[str, str]]:
        mine = get(mw)
        theirs = get(ctrl) if ctrl is not None else (DASH, "")
        return mine, theirs

    def greedy(m: ModelWorkFinding) -> tuple[str, str]:
        if m.probabilistic is None:
            return DASH, "no scored windows"
        v, note = _opt_rate(m.probabilistic.greedy)
        return f"{v} windows", f"preset {m.probabilistic.preset}; {note}"

    def disc(exact: bool) -> Any:
        def get(m: ModelWorkFinding) -> tuple[str, str]:
            r = m.discoverable_exact if exact else m.discoverable_approx
            v, note = _opt_rate(r)
            return (f"{v} windows" if r is not None else v), note
        return get

    def over_t(m: ModelWorkFinding) -> tuple[str, str]:
        if not _has_generations(f, m):
            return DASH, "no generation attempts"
        return f"{m.spans_over_t:,}", "spans > 20 words"

    def blocks(m: ModelWorkFinding) -> tuple[str, str]:
        light = f"{m.coverage.longest_block_words:,} words"
        if not _has_generations(f, m):
            return f"{DASH} (BMC@5) / {light} (light-words)", "no generation attempts"
        return (f"{m.longest_block_bmc5:,} words (BMC@5) / {light} (light-words)",
                "words profile mask / light-words coverage mask")

    def cloze(m: ModelWorkFinding) -> tuple[str, str]:
        nc = m.name_cloze
        if nc is None:
            return DASH, "no name-cloze attempts"
        acc, acc_note = _opt_rate(nc.accuracy)
        base, base_note = _opt_rate(nc.majority_baseline)
        name = f" (always \u201c{nc.majority_name}\u201d)" if nc.majority_name else ""
        return (f"{acc} correct; majority baseline {base}",
                f"accuracy {acc_note}; baseline{name} {base_note}")

    def nv(m: ModelWorkFinding) -> tuple[str, str]:
        r = m.nv_recall
        if r is None:
            return DASH, "no iterative-continuation sessions"
        c = r.combined
        return (f"{fmt_pct(c.recall)} ({c.matched:,} of {c.book_words:,} words)",
                f"{r.sessions:,} session{'s' if r.sessions != 1 else ''} concatenated; best "
                f"single session {fmt_pct(r.best_session)}")

    def api_pz(m: ModelWorkFinding) -> tuple[str, str]:
        b = m.api_pz_bounds
        if b is None:
            return DASH, "no API top-k log-probs"
        at1 = next((x for x in b.top40_upper_shares if abs(x.tau - 0.01) < 1e-12), None)
        share = (f"; top-40 upper bound ≥ 1% in {at1.windows:,} of {b.windows:,}"
                 if at1 is not None else "")
        return (f"greedy p_z = 1 in {b.greedy_one:,} of {b.windows:,} windows (exact)",
                f"exactly 0 in {b.greedy_zero:,}, undetermined in {b.greedy_undetermined:,}"
                f"{share}; UPPER BOUNDS from top-{b.top_k} log-probs")

    rows = [
        ("nv-recall of iterative sessions", "nv_recall", nv),
        ("p_z from API log-probs (bounds)", "pz_upper_bound", api_pz),
        ("Probabilistic extraction, greedy p_z = 1", "p_z", greedy),
        ("50/50 discoverable extraction, exact", "discoverable_5050", disc(True)),
        ("50/50 discoverable extraction, approximate", "discoverable_5050", disc(False)),
        ("Spans > T (T = 20 words)", "spans_over_t", over_t),
        ("Longest block: BMC@5 / light-words", "longest_block", blocks),
        ("Name-cloze accuracy / majority baseline", "name_cloze", cloze),
    ]
    out = []
    for label, key, get in rows:
        (v, note), (cv, cnote) = both(get)
        out.append(Measure(label=label, definition=key, value=v, note=note, control=cv,
                           control_note=cnote))
    return out
