"""The chance baseline of a short work (casekit.shortworks): how long the runs of its words are
that other texts share with it, and how often control attempts reach its reporting threshold.

A short work's threshold is low (a tenth of a song, at least 12 words), so the report says how
unlikely a span of that length is by chance, measured on this case's own texts:

- reference texts: the case's other works (subjects and controls) under the same profile; the
  longest exact run of words each shares with the short work, and how many shared runs reach
  the work's threshold (a common phrase of a song, "all the way", is expected; a run at the
  threshold is not);
- controls: the generation attempts on the control works that returned an output (the control
  floor's attempts: failed and unscorable ones left out); how many have a credited span of at
  least the work's threshold (the matcher's false-positive rate at that length).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from casekit.analysis.findings import AttemptAnalysis, ChanceBaseline
from casekit.analysis.matcher import WorkMatcher
from casekit.works import ReferenceText, Work

log = logging.getLogger(__name__)


def chance_baseline(work: Work, matcher: WorkMatcher, others: Sequence[Work], min_span: int,
                    control_attempts: Sequence[AttemptAnalysis],
                    references: Sequence[ReferenceText] = ()) -> ChanceBaseline:
    """The chance baseline of ``work`` (``matcher``: its matcher under its match profile)
    against the case's other works and its ``reference_texts``."""
    refs = [o for o in others if o.id != work.id and o.match_profile == work.match_profile]
    texts = [o.tokens for o in refs] + [r.tokens_for(work.match_profile) for r in references]
    longest = 0
    reaching = 0
    words = 0
    for toks in texts:
        words += len(toks)
        for s in matcher.exact_spans(toks):
            longest = max(longest, s.words)
            reaching += int(s.words >= min_span)
    # The control floor's selection (casekit.analysis.control_test): the report says the pooled
    # count is every model's floor attempts together, so it must count the same ones.
    gen = [x for x in control_attempts if x.matched_output]
    return ChanceBaseline(
        min_span=min_span, seed_k=matcher.k, reference_works=[o.id for o in refs],
        reference_files={r.path: r.sha256 for r in references},
        reference_words=words, longest_shared=longest, shared_at_min_span=reaching,
        control_attempts=len(gen),
        control_reaching=sum(1 for x in gen if x.longest_words >= min_span),
        control_longest=max((x.longest_words for x in gen), default=0))
