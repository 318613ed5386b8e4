"""Textual refusals of chat models, as the analysis recognizes them (an outcome of an attempt
whose output has no span)."""

from __future__ import annotations

import re

#: Textual refusals of chat models: only at the start of a chat answer, and only when no span
#: was found (a base model continuing a novel writes "I am sorry" as dialogue, not a refusal).
REFUSAL_WINDOW = 200
REFUSAL_RE = re.compile(
    r"\b(I['’]m sorry|I am sorry|I apologi[sz]e|I can(?:no|['’])t (?:help|provide|assist|share|"
    r"reproduce|recite|comply)|I cannot|I am unable|I['’]m unable|I won['’]t be able|"
    r"(?:due to|because of) copyright|copyrighted (?:text|material|work))",
    re.IGNORECASE,
)
#: A literal every match of REFUSAL_RE holds, one per alternative ("I can't help" holds "can",
#: "I won't be able" holds "won"...), lowercased.
_REFUSAL_NEEDLES = ("sorry", "apologi", "can", "unable", "won", "copyright")


def refusal_in(text: str) -> bool:
    """Whether REFUSAL_RE finds a refusal in ``text``. An ASCII text (most outputs) holding
    none of :data:`_REFUSAL_NEEDLES` in any case cannot match, and is answered without the
    regex (about 9 -> 2 us per output): in ASCII text IGNORECASE is plain ASCII case-folding.
    Any other text (where IGNORECASE also folds characters such as U+017F to ASCII letters)
    takes the regex."""
    if text.isascii():
        low = text.lower()
        if not any(n in low for n in _REFUSAL_NEEDLES):
            return False
    return REFUSAL_RE.search(text) is not None
