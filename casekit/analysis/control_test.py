"""A subject's rate against its model's control floor: Fisher's exact one-sided test, Holm-
adjusted over every model x subject work of the run (findings.json ``vs_control``)."""

from __future__ import annotations

import logging

from casekit.analysis.findings import (
    AttemptAnalysis,
    ControlFloor,
    ControlTest,
    ModelWorkFinding,
)
from casekit.stats import fisher_one_sided, holm, rate

log = logging.getLogger(__name__)


def compare_with_controls(findings: list[ModelWorkFinding], controls: list[ControlFloor],
                          analyses: list[AttemptAnalysis], min_span_words: dict[str, int],
                          ) -> list[ModelWorkFinding]:
    """Each subject finding's rate against its model's control floor: Fisher's exact one-sided
    test, Holm-adjusted over every subject finding that has a control to compare with. The
    subject's rate counts the same attempts as the floor (span-matched generation attempts,
    every intent, failed and unscorable attempts left out as the floor leaves them out; a
    name-cloze answer is never matched against the work, so it is in neither),
    each at its work's reporting threshold (``min_span_words``: work id -> words)."""
    floors = {c.model_id: c for c in controls if c.attempts.n > 0}
    hits: dict[tuple[str, str], list[int]] = {}
    for x in analyses:
        if x.role == "subject" and x.span_attempt and x.outcome not in ("error", "unscorable"):
            kn = hits.setdefault((x.model_id, x.work_id), [0, 0])
            kn[0] += x.longest_words >= min_span_words[x.work_id]
            kn[1] += 1
    tested = [i for i, f in enumerate(findings) if f.role == "subject"
              and f.model_id in floors and hits.get((f.model_id, f.work_id), [0, 0])[1] > 0]
    raw = []
    for i in tested:
        f = findings[i]
        k, n = hits[(f.model_id, f.work_id)]
        c = floors[f.model_id].attempts
        raw.append(fisher_one_sided(k, n, c.k, c.n))
    adjusted = holm(raw)
    out = list(findings)
    for i, p, q in zip(tested, raw, adjusted, strict=True):
        f = findings[i]
        k, n = hits[(f.model_id, f.work_id)]
        out[i] = f.model_copy(update={"vs_control": ControlTest(
            subject=rate(k, n), control=floors[f.model_id].attempts, p_value=round(p, 12),
            p_adjusted=round(q, 12), tests=len(tested))})
    return out
