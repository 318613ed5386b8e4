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
from collections.abc import Iterator, Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from casekit.records import WorkRange
from casekit.stats import Rate, rate
from casekit.strategies.base import Probe, Strategy, StrategyParams
from casekit.strategies.measures import (
    AttemptContext,
    Decision,
    FindingContext,
    Measure,
    MeasureFields,
    ReportRow,
)
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


NAME_TAG_RE = re.compile(r"<name>(.*?)</name>", re.IGNORECASE | re.DOTALL)


class NameClozeAccuracy(BaseModel):
    """Name-cloze accuracy beside the majority-name baseline [Cha23]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accuracy: Rate
    """Answers whose extracted name equals the gold name (case-insensitive) of all."""
    majority_name: str | None
    """The most frequent gold name (lowercased; ties: alphabetical first)."""
    majority_baseline: Rate
    """Accuracy of always answering ``majority_name``."""


def extract_name(answer: str) -> str:
    """The name in a cloze answer [Cha23]: the text of the first ``<name>...</name>`` tag if
    there is one, else the whole answer; stripped of surrounding whitespace."""
    m = NAME_TAG_RE.search(answer)
    return (m.group(1) if m else answer).strip()


def name_cloze_correct(answer: str, gold: str) -> bool:
    """[Cha23]: case-insensitive exact match of the extracted, stripped answer and the gold."""
    return extract_name(answer).lower() == gold.strip().lower()


def name_cloze_accuracy(answers: Sequence[str], golds: Sequence[str]) -> NameClozeAccuracy:
    """Name-cloze accuracy [Cha23] and the majority-name baseline: the accuracy of always
    answering the most frequent gold name (a model that knows the book's protagonist but
    not the passage scores this much)."""
    if len(answers) != len(golds):
        raise ValueError(f"{len(answers)} answers for {len(golds)} gold names")
    correct = sum(1 for a, g in zip(answers, golds, strict=True) if name_cloze_correct(a, g))
    counts = Counter(g.strip().lower() for g in golds)
    majority = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None
    return NameClozeAccuracy(accuracy=rate(correct, len(golds)), majority_name=majority,
                     majority_baseline=rate(counts[majority] if majority else 0, len(golds)))


class ClozeAnswer(MeasureFields):
    """The name-cloze fields of an attempt."""

    cloze_answer: str | None = None
    """Name cloze [Cha23]: the name the model gave (from its ``<name>`` tag)."""
    cloze_correct: bool | None = None
    """Name cloze: the answer equals the masked name (case-insensitive); not a span measure,
    so cloze attempts are not in the regurgitation or extraction rates."""


class ClozeFinding(MeasureFields):
    """The name-cloze field of a model x work finding."""

    name_cloze: NameClozeAccuracy | None = None
    """Name-cloze accuracy beside the majority-name baseline [Cha23]."""


class NameClozeMeasure(Measure):
    """[Cha23]: the answer is the measure; the output is never span-matched."""

    name = "name_cloze"
    definition = ("Name-cloze accuracy [Cha23]: a passage with one proper name masked; the "
                  "answer (from its <name> tag) must equal the name, case-insensitive; shown "
                  "beside the majority-name baseline. Not a span measure: cloze attempts are "
                  "not in the regurgitation or extraction rates.")
    AttemptFields = ClozeAnswer
    FindingFields = ClozeFinding
    label = "Name cloze"
    further_order = 100
    report_rows = (ReportRow("accuracy", "Name-cloze accuracy / majority baseline", 80),)
    words = {
        "none": "no name-cloze attempts",
        "value": "{accuracy} correct; majority baseline {baseline}",
        "note": "accuracy {accuracy_note}; baseline{majority} {baseline_note}",
        "majority": " (always \u201c{name}\u201d)",
        "interval": "Name-cloze accuracy",
        "interval_note": "Wilson / Clopper-Pearson only (one passage per attempt)",
    }

    def __init__(self) -> None:
        self._gold: dict[str, str] = {}

    def decide(self, ctx: AttemptContext) -> Decision | None:
        a = ctx.record.attempt
        if not a.expected:
            return None
        correct = name_cloze_correct(ctx.text, a.expected)
        self._gold[a.id] = a.expected
        return Decision("match" if correct else "no_match",
                        ClozeAnswer(cloze_answer=extract_name(ctx.text)[:200],
                                    cloze_correct=correct))

    @classmethod
    def decided(cls, fields: MeasureFields) -> bool:
        return isinstance(fields, ClozeAnswer) and fields.cloze_correct is not None

    def state(self) -> dict[str, str]:
        return dict(self._gold)

    def merge_state(self, state: dict[str, str]) -> None:
        self._gold.update(state)  # keyed by attempt id: the split does not matter

    def finding(self, ctx: FindingContext) -> ClozeFinding | None:
        cloze = [(x.attempt_id, f) for x in ctx.attempts
                 if (f := x.measure(ClozeAnswer)) is not None and f.cloze_correct is not None]
        if not cloze:
            return None
        return ClozeFinding(name_cloze=name_cloze_accuracy(
            [f.cloze_answer or "" for _, f in cloze], [self._gold[i] for i, _ in cloze]))


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
    measures: ClassVar[tuple[type[Measure], ...]] = (NameClozeMeasure,)

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
                        label=f"name at char {start}", default_max_tokens=12, expected=name,
                        stop=["\n"])
