"""Name cloze (adversarial) [Cha23]: a passage of the work with one proper name masked; the
model must name it. Accuracy far above the majority-name baseline means the model knows the
passage, not just the book's protagonist.

Names are found without a tagger: capitalized words that are never written in lower case in
the work, appear at least twice, are not at the start of a sentence and are not titles. Each
passage (about ``passage_words`` words) holds exactly one occurrence of any such name, which
is masked. The few-shot prompt follows [Cha23] (answers in ``<name>`` tags).
"""

from __future__ import annotations

import bisect
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator

from pydantic import Field

from casekit.records import WorkRange
from casekit.strategies.base import Probe, Strategy, StrategyParams
from casekit.works import Work

log = logging.getLogger(__name__)

MASK = "[MASK]"
NOT_NAMES = frozenset("""
I Mr Mrs Miss Ms Dr Sir Madam Lady Lord God Captain Colonel Mister Master Saint St The A An
And But Or If In On At Of To For With By As So No Yes Oh He She It We They You His Her Their
Our My Your This That These Those There Here When Where What Who Why How Then Now Well Chapter
Volume Book Part Letter Monday Tuesday Wednesday Thursday Friday Saturday Sunday January
February March April May June July August September October November December
""".split())

PROMPT = """You have seen the following passage in your training data. What is the proper name \
that fills in the [MASK] token in it? This name is exactly one word long, and is a proper name \
(not a pronoun or any other word). You must make a guess, even if you are uncertain.

Example:

Input: Stay gold, [MASK], stay gold.
Output: <name>Ponyboy</name>

Input: The door opened, and [MASK], dressed and hatted, entered with a cup of tea.
Output: <name>Gerty</name>

Input: {passage}
Output:"""

_CAP_RE = re.compile(r"\b[A-Z][a-z]{1,}\b")


def name_occurrences(raw: str, excluded: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """(start, end, name) of every usable proper-name occurrence in the text."""
    lower = Counter(m.group(0) for m in re.finditer(r"\b[a-z][a-z]+\b", raw))
    caps = [m for m in _CAP_RE.finditer(raw)
            if not any(s <= m.start() < e for s, e in excluded)]
    counts = Counter(m.group(0) for m in caps)
    out = []
    for m in caps:
        word = m.group(0)
        if word in NOT_NAMES or counts[word] < 2 or lower[word.lower()]:
            continue
        before = raw[:m.start()].rstrip(" \t\"'“‘(_")
        if not before or before[-1] in ".!?\n:;—":
            continue  # sentence-initial: capitalized for another reason
        out.append((m.start(), m.end(), word))
    return out


class NameClozeParams(StrategyParams):
    passage_words: int = Field(50, ge=10, le=300)
    max_passages: int | None = Field(20, ge=1)
    template: str = PROMPT
    """The prompt; ``{passage}`` is replaced by the masked passage."""


class NameCloze(Strategy):
    name = "name_cloze"
    intent = "adversarial"
    description = "Mask one proper name in a passage of the work and ask the model for it."
    Params = NameClozeParams

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, NameClozeParams)
        toks = work.tokens
        occ = name_occurrences(work.raw, [(e.start, e.end) for e in work.excluded])
        positions = [o[0] for o in occ]
        candidates = []
        half = p.passage_words // 2
        for start, end, name in occ:
            i = int(toks.starts.searchsorted(start))
            w0, w1 = max(0, i - half), min(len(toks), i + half)
            c0, c1 = toks.char_span(w0, w1)
            lo, hi = bisect.bisect_left(positions, c0), bisect.bisect_left(positions, c1)
            if hi - lo == 1:  # exactly one name in the passage: the masked one
                candidates.append((c0, c1, start, end, name))
        if p.max_passages is not None and len(candidates) > p.max_passages:
            candidates = sorted(rng.sample(candidates, p.max_passages))
        for c0, c1, start, end, name in candidates:
            passage = work.raw[c0:start] + MASK + work.raw[end:c1]
            passage = " ".join(passage.split())
            text = p.template.replace("{passage}", passage)
            yield Probe(kind="instruct", text=text, chat_text=text,
                        target=WorkRange(start=start, end=end),
                        supplied=[WorkRange(start=c0, end=start), WorkRange(start=end, end=c1)],
                        label=f"name at char {start}", max_tokens=12, expected=name,
                        stop=["\n"])
