"""The controls' side of the findings: each model's control floor (how often a text it cannot
have seen is "reproduced", findings.json ``controls``), and each subject's rate against it:
Fisher's exact one-sided test, Holm-adjusted over every model x subject work of the run
(findings.json ``vs_control``)."""

from __future__ import annotations

import logging
import math

from casekit.analysis.findings import (
    NO_OUTPUT,
    AttemptAnalysis,
    ControlFloor,
    ControlTest,
    ModelWorkFinding,
)
from casekit.stats import chance_count, fisher_one_sided, holm, rate
from casekit.strategies.teacher_forced import SummaryFields
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
floor and the test against it read of the attempts (:func:`matched_tally`)."""


def matched_tally(span_attempts: list[AttemptAnalysis]) -> MatchedTally:
    """A model x work's span-matched attempts (``AttemptAnalysis.span_attempt``) that returned
    an output (``matched_output``), counted by (intent, longest span): all that its control
    floor and the test against the floor read."""
    tally: MatchedTally = {}
    for x in span_attempts:
        if x.outcome not in NO_OUTPUT:
            key = (x.intent, x.longest_words)
            tally[key] = tally.get(key, 0) + 1
    return tally


def control_floors(model_ids: list[str], control_works: list[str],
                   findings: list[ModelWorkFinding],
                   tallies: dict[tuple[str, str], MatchedTally],
                   min_span_words: dict[str, int]) -> list[ControlFloor]:
    """Each model's control floor: its matched outputs on the control works (``tallies``), each
    control at its own reporting threshold (``min_span_words``: work id -> words, or
    characters for a CJK work), with the one-sided upper bound of the rate, by intent too;
    and the control findings' largest coverage and BMC@5 and mean top-1 share."""
    controls = []
    for mid in model_ids:
        # Failed attempts (an error, no output to match) measure nothing: not in the
        # floor's denominator. (control work, intent, longest span, attempts):
        ctrl = [(wid, intent, longest, count) for wid in control_works
                for (intent, longest), count in tallies.get((mid, wid), {}).items()]
        k = sum(c for wid, _, longest, c in ctrl if longest >= min_span_words[wid])
        cf = [f for f in findings if f.model_id == mid and f.role == "control"]
        # The control floor's top-1 share is the teacher-forced summary's (the top1_share
        # measure's fields), read through the measure API.
        summaries = [s.teacher_forced for f in cf
                     if (s := f.measure(SummaryFields)) is not None]
        tf = [t.mean_top1_share for t in summaries if t is not None]
        by_intent = {}
        for intent in sorted({i for _, i, _, _ in ctrl}):
            sel = [(wid, longest, c) for wid, i, longest, c in ctrl if i == intent]
            by_intent[intent] = rate(
                sum(c for wid, longest, c in sel if longest >= min_span_words[wid]),
                sum(c for _, _, c in sel))
        attempts, upper = chance_count(k, sum(c for _, _, _, c in ctrl))
        controls.append(ControlFloor(
            model_id=mid, attempts=attempts, by_intent=by_intent, upper_95=upper,
            max_coverage=max((f.coverage.share for f in cf), default=0.0),
            max_bmc5=max((f.bmc["5"] for f in cf), default=0.0),
            mean_top1_share=round(sum(tf) / len(tf), 6) if tf else None,
        ))
    return controls


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
