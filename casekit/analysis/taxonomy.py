"""The four findings of Cooper & Grimmelmann and the wording the report must use.

See shared/design/taxonomy.md. The memorization finding is a conclusion about the model with
stated thresholds; its absence is never reported as "not memorized".
"""

from __future__ import annotations

from casekit.analysis.findings import Coverage, MemorizationStatus, ModelWorkFinding
from casekit.case import Thresholds

SHOWN: MemorizationStatus = "memorization shown"
BELOW: MemorizationStatus = "evidence of memorization below the threshold"
NOT_OBSERVED: MemorizationStatus = "not observed in these attempts"

CATEGORY_TEXT = {
    "regurgitation": "The model output a near-exact copy in answer to ordinary (benign) "
                     "requests, whatever the user intended.",
    "extraction": "A near-exact copy was output in answer to prompts designed to elicit the text "
                  "(adversarial).",
    "reconstruction": "A near-exact copy obtained from the model by any means: the union of "
                      "spans across attempts and teacher-forced windows the model reproduces "
                      "greedily.",
    "memorization": "A conclusion about the model: a near-exact copy reaching the case's "
                    "reconstruction threshold (a contiguous block of stated length, or a stated "
                    "share of the work: either suffices) can be reconstructed from it.",
}

ABSENCE_CAVEAT = ("Absence of extraction does not show absence of memorization: these attempts "
                  "did not elicit the work; other prompts, decoding settings or means might.")


def reached(coverage: Coverage, th: Thresholds) -> bool:
    sp = th.substantial_portion
    return coverage.longest_block_words >= sp.min_words or coverage.share >= sp.min_share


def memorization_status(*, coverage: Coverage, longest_span: int, thresholds: Thresholds,
                        role: str, unit: str = "words") -> tuple[MemorizationStatus, str]:
    """The conclusion for one model x work; ``unit``: what the work's counts are (words, or
    characters for a CJK work)."""
    sp = thresholds.substantial_portion
    if reached(coverage, thresholds):
        return SHOWN, (
            f"reconstruction reached the case's reconstruction threshold, which either "
            f"criterion meets: longest contiguous block {coverage.longest_block_words} {unit} "
            f"(threshold {sp.min_words}), coverage {coverage.share:.1%} (threshold "
            f"{sp.min_share:.0%})")
    longest = max(longest_span, coverage.longest_block_words)
    if longest >= thresholds.min_span_words:
        return BELOW, (
            f"near-exact spans were found (longest {longest} {unit}, reporting threshold "
            f"{thresholds.min_span_words}) but reconstruction fell short of the case's "
            f"reconstruction threshold ({sp.min_words} contiguous {unit} or "
            f"{sp.min_share:.0%} of the work; either suffices)")
    return NOT_OBSERVED, (
        f"no credited span reached {thresholds.min_span_words} {unit}; " + ABSENCE_CAVEAT)


def apply_controls(findings: list[ModelWorkFinding]) -> list[ModelWorkFinding]:
    """A subject's 'memorization shown' stands only if no control of that model reached the
    threshold too; otherwise the matcher's floor is too high to conclude."""
    out = []
    for f in findings:
        if f.role == "subject" and f.memorization == SHOWN:
            bad = [c.work_id for c in findings
                   if c.model_id == f.model_id and c.role == "control" and c.memorization == SHOWN]
            if bad:
                f = f.model_copy(update={
                    "memorization": BELOW,
                    "memorization_reason": f.memorization_reason + "; but control "
                    f"{'work' if len(bad) == 1 else 'works'} {', '.join(bad)} reached the "
                    "threshold too, so chance reproduction of an "
                    "unseen text is too high to conclude",
                })
        out.append(f)
    return out
