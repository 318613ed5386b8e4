"""A subject's rate against its model's control floor: Fisher's exact one-sided test, Holm-
adjusted over every model x subject work of the run (findings.json ``vs_control``)."""

from __future__ import annotations

import logging
import math

from casekit.analysis.findings import (
    ControlFloor,
    ControlTest,
    ModelWorkFinding,
)
from casekit.stats import fisher_one_sided, holm, rate
from casekit.works import CJK_CHARS_PER_WORD

log = logging.getLogger(__name__)


def control_threshold(subject_span: int, subject_unit: str, control_unit: str) -> int:
    """The subject work's reporting threshold in a control's unit: the same number when both
    count words (or both characters); a CJK subject's characters as words, or words as a CJK
    control's characters, at CJK_CHARS_PER_WORD characters per word (the rule that scales
    a CJK work's thresholds, casekit.works.work_thresholds)."""
    if subject_unit == control_unit:
        return subject_span
    if subject_unit == "characters":
        return math.ceil(subject_span / CJK_CHARS_PER_WORD)
    return subject_span * CJK_CHARS_PER_WORD


MatchedTally = dict[tuple[str, int], int]
"""A model x work's span-matched attempts that returned an output
(``AttemptAnalysis.matched_output``), counted by (intent, longest span): what the control
floor and the test against it read of the attempts (casekit.analysis.analyze.matched_tally)."""


def compare_with_controls(findings: list[ModelWorkFinding], controls: list[ControlFloor],
                          tallies: dict[tuple[str, str], MatchedTally],
                          min_span_words: dict[str, int],
                          units: dict[str, str]) -> list[ModelWorkFinding]:
    """Each subject finding's rate against its model's control floor: Fisher's exact one-sided
    test, Holm-adjusted over every subject finding that has a control to compare with. The
    subject's rate counts the same attempts as the floor (span-matched generation attempts,
    every intent, failed and unscorable attempts left out as the floor leaves them out; a
    name-cloze answer is never matched against the work, so it is in neither), at its work's
    reporting threshold (``min_span_words``: work id -> words, or characters for a CJK work,
    ``units``: work id -> "words" | "characters"), and so do the control's attempts: both
    sides at one threshold, where the floor counts each control at its own (a song's 12-word
    threshold against a prose control's 40 would make the control's rate lower than chance
    at 12 words and the test too ready to find a difference). ``tallies``: each model x
    work's matched outputs by (intent, longest span), the findings' roles telling subject
    from control."""
    floors = {c.model_id: c for c in controls if c.attempts.n > 0}
    roles = {(f.model_id, f.work_id): f.role for f in findings}
    # Each model's control attempts, the floor's selection: (control work, longest span,
    # attempts).
    ctrl: dict[str, list[tuple[str, int, int]]] = {}
    hits: dict[tuple[str, str], list[int]] = {}
    for (mid, wid), tally in tallies.items():
        for (_, longest), count in tally.items():
            if roles.get((mid, wid)) == "control":
                ctrl.setdefault(mid, []).append((wid, longest, count))
            else:
                kn = hits.setdefault((mid, wid), [0, 0])
                kn[0] += count if longest >= min_span_words[wid] else 0
                kn[1] += count
    tested = [i for i, f in enumerate(findings) if f.role == "subject"
              and f.model_id in floors and hits.get((f.model_id, f.work_id), [0, 0])[1] > 0]
    raw = []
    against = {}
    for i in tested:
        f = findings[i]
        k, n = hits[(f.model_id, f.work_id)]
        span, unit = min_span_words[f.work_id], units[f.work_id]
        attempts = ctrl[f.model_id]
        ck = sum(count for wid, longest, count in attempts
                 if longest >= control_threshold(span, unit, units[wid]))
        cn = sum(count for _, _, count in attempts)
        # The floor's own count when the thresholds agree (prose against prose).
        against[i] = rate(ck, cn)
        raw.append(fisher_one_sided(k, n, ck, cn))
    adjusted = holm(raw)
    out = list(findings)
    for i, p, q in zip(tested, raw, adjusted, strict=True):
        f = findings[i]
        k, n = hits[(f.model_id, f.work_id)]
        out[i] = f.model_copy(update={"vs_control": ControlTest(
            subject=rate(k, n), control=against[i], p_value=round(p, 12),
            p_adjusted=round(q, 12), tests=len(tested))})
    return out
