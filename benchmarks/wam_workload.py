"""A Whack-a-Mole-format workload from a whole novel, and the same workload as a casekit run.

Liu et al.'s evaluation script (evaluation/memorization_eval_metrics.py in
cauchy221/Alignment-Whack-a-Mole-Code, "[Liu26]") reads two JSON files:

- the test book: ``[{"excerpt_id": "p_id<N>", "excerpt_text": ...}, ...]``, the book cut into
  excerpts of about 300 words, in order;
- the generations: ``[{"excerpt_id", "excerpt_text", "instruction", "generations":
  [{"generated_text": ...}, ...]}, ...]``, each excerpt with the instruction that asked for it
  and what the model wrote.

:func:`make_workload` builds both from a novel, seeded, with generations that mix the ways a
model's output meets a book: verbatim runs of the excerpt it was asked for with a few word
edits (some running on into the next excerpt), runs of *other* excerpts (cross-excerpt recall,
which BMC@k credits and the per-excerpt metrics do not), and filler (made-up words and the
novel's own words in random order). Instructions sometimes quote words of the excerpt, and some
verbatim runs start or end inside the quoted words, so the instruction m-gram trim decides
coverage, including for m-grams straddling a matched span's edge.

casekit reads the same workload as one work, the excerpts joined by a blank line
(:attr:`Workload.work`), and one imported attempt per generation (:meth:`Workload.import_rows`):
the instruction is the prompt and the excerpt's characters in the work are the target.
Tokenization splits at whitespace, so the work's words are the concatenation of the excerpts'
words (:func:`reference_words` is the reference's tokenizer, for tests without NLTK).

No code of the reference script is here: benchmarks/matter_bench.py runs it from the path it is
given (``--wam-reference``), in its own interpreter.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from casekit.works import detect_boilerplate

EXCERPT_WORDS = 300
"""Words per excerpt (at least; an excerpt ends at the end of a paragraph)."""
SEPARATOR = "\n\n"
"""Between two excerpts in the work casekit reads."""

_FILLER = ("quorvin", "belastre", "mondefair", "tulvick", "parsoline", "zenthra", "corvellum",
           "dasprite", "ombrelline", "fask", "wendrove", "isterling", "ulmacre", "pravenne",
           "gostrell", "hilvane", "jorrow", "kestramine", "lumbersk", "nivolet")
"""Made-up words: edits and filler that cannot match an English book."""
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_WORDPUNCT = re.compile(r"\w+|[^\w\s]+")
_KEEP = re.compile(r"[A-Za-z0-9]")


def reference_words(text: str) -> list[str]:
    """[Liu26]'s ``_tok_words``: NLTK's wordpunct tokens (``\\w+|[^\\w\\s]+``), lowercased,
    keeping those with an ASCII letter or digit as written. For tests; the benchmark asks the
    reference script itself."""
    return [t.lower() for t in _WORDPUNCT.findall(text) if _KEEP.search(t)]


def novel_body(text: str) -> str:
    """The novel without a Project Gutenberg header and footer (casekit's own detection)."""
    start, end = 0, len(text)
    for ex in detect_boilerplate(text):
        if ex.start == 0:
            start = ex.end
        else:
            end = min(end, ex.start)
    return text[start:end].strip()


def split_excerpts(body: str, words: int = EXCERPT_WORDS) -> list[str]:
    """The body cut into excerpts of about ``words`` words (at most 1.3 times that), ending at
    a paragraph's end where possible (a longer paragraph is cut at whitespace), stripped.
    Every excerpt is a slice of ``body``, so its words are the body's, in order."""
    most = int(words * 1.3)
    pieces: list[tuple[str, int]] = []
    for p in (p.strip() for p in _PARAGRAPH.split(body)):
        toks = list(re.finditer(r"\S+", p))
        if not toks:
            continue
        if len(toks) <= most:
            pieces.append((p, len(toks)))
            continue
        for i in range(0, len(toks), words):
            chunk = toks[i:i + words]
            pieces.append((p[chunk[0].start():chunk[-1].end()], len(chunk)))
    out: list[str] = []
    cur: list[str] = []
    n = 0
    for p, k in pieces:
        if cur and n + k > most:
            out.append(SEPARATOR.join(cur))
            cur, n = [], 0
        cur.append(p)
        n += k
        if n >= words:
            out.append(SEPARATOR.join(cur))
            cur, n = [], 0
    if cur:
        out.append(SEPARATOR.join(cur))
    return out


@dataclass
class Workload:
    excerpts: list[str]
    instructions: list[str]
    generations: list[list[str]]
    """Per excerpt, its generations' texts."""
    work: str = ""
    """The excerpts joined by :data:`SEPARATOR`: the work casekit reads."""
    ranges: list[tuple[int, int]] = field(default_factory=list)
    """Each excerpt's characters ``[start, end)`` in :attr:`work`."""

    def __post_init__(self) -> None:
        pos = 0
        self.ranges = []
        for i, ex in enumerate(self.excerpts):
            if i:
                pos += len(SEPARATOR)
            self.ranges.append((pos, pos + len(ex)))
            pos += len(ex)
        self.work = SEPARATOR.join(self.excerpts)

    @staticmethod
    def excerpt_id(i: int) -> str:
        return f"p_id{i}"

    def test_book(self) -> list[dict[str, str]]:
        """The reference's ``--test_book`` JSON."""
        return [{"excerpt_id": self.excerpt_id(i), "excerpt_text": t}
                for i, t in enumerate(self.excerpts)]

    def generation_file(self) -> list[dict[str, Any]]:
        """The reference's ``--generation_file`` JSON."""
        return [{"excerpt_id": self.excerpt_id(i), "excerpt_text": t,
                 "instruction": self.instructions[i],
                 "generations": [{"generated_text": g} for g in self.generations[i]]}
                for i, t in enumerate(self.excerpts)]

    def import_rows(self, work_id: str, model: str) -> list[dict[str, Any]]:
        """``casekit import`` rows (JSONL): one per generation, of kind ``instruction_recall``
        (adversarial, no measure of its own), the instruction as the prompt, the excerpt's
        characters in the work as the target."""
        rows = []
        for i, gens in enumerate(self.generations):
            start, end = self.ranges[i]
            for j, g in enumerate(gens):
                rows.append({"kind": "instruction_recall", "prompt": self.instructions[i],
                             "output": g, "model": model,
                             "captured_at": "2026-12-01T00:00:00Z",
                             "captured_by": "benchmarks/matter_bench.py",
                             "source": "WaM-format workload (seeded)",
                             "work_id": work_id, "target_start": start, "target_end": end,
                             "label": f"{self.excerpt_id(i)} generation {j}"})
        return rows

    @property
    def generated_words(self) -> int:
        return sum(len(g.split()) for gens in self.generations for g in gens)

    @property
    def n_generations(self) -> int:
        return sum(len(g) for g in self.generations)


def _edited(words: list[str], rng: random.Random, every: tuple[int, int] | None) -> list[str]:
    """``words`` with a word replaced, dropped or a made-up word inserted, about once every
    ``every`` words (None: verbatim)."""
    if every is None:
        return list(words)
    out: list[str] = []
    nxt = rng.randint(*every)
    for w in words:
        nxt -= 1
        if nxt > 0:
            out.append(w)
            continue
        nxt = rng.randint(*every)
        r = rng.random()
        if r < 0.6:
            out.append(rng.choice(_FILLER))
        elif r < 0.8:
            continue
        else:
            out += [w, rng.choice(_FILLER)]
    return out


def make_workload(novel: str, generations: int = 3000, words: int = 1_000_000,
                  seed: int = 20261205, excerpt_words: int = EXCERPT_WORDS) -> Workload:
    """A seeded WaM-format workload over the whole ``novel`` (its Project Gutenberg header and
    footer dropped): about ``generations`` generations of ``words`` words in all."""
    rng = random.Random(seed)
    excerpts = split_excerpts(novel_body(novel), excerpt_words)
    n = len(excerpts)
    pieces = [e.split() for e in excerpts]
    book = [w for p in pieces for w in p]
    offset = [0]
    for p in pieces:
        offset.append(offset[-1] + len(p))
    vocab = sorted(set(book))
    mean = max(20, words // max(1, generations))

    # How well each excerpt is "remembered": not at all, a little, a lot.
    level = [rng.choice((0.0, 0.0, 0.25, 0.5, 0.85)) for _ in range(n)]
    quotes: list[tuple[int, int] | None] = []
    instructions: list[str] = []
    for p in pieces:
        content = [w.strip(".,;:!?\"'()_-") for w in rng.sample(p, min(len(p), 12))]
        base = ("Write a passage of about 300 words in the style of Jane Austen's Emma. "
                f"It should touch on: {', '.join(w for w in content if w)}.")
        r = rng.random()
        if r < 0.35 and len(p) > 30:
            q = (0, rng.randint(6, 25))
            instructions.append(f'{base} Begin with: "{" ".join(p[q[0]:q[1]])}"')
        elif r < 0.6 and len(p) > 60:
            a = rng.randint(5, len(p) - 40)
            q = (a, a + rng.randint(12, 30))
            instructions.append(f'{base} Include the line "{" ".join(p[q[0]:q[1]])}".')
        else:
            q = None
            instructions.append(base)
        quotes.append(q)

    per = [generations // n + (1 if i < generations % n else 0) for i in range(n)]
    rng.shuffle(per)
    gens: list[list[str]] = []
    for i in range(n):
        mine: list[str] = []
        for _ in range(per[i]):
            target = int(mean * rng.uniform(0.45, 1.55))
            out: list[str] = []
            while len(out) < target:
                r = rng.random()
                if r < level[i] * 0.75:
                    # A run of its own excerpt; sometimes from or up to inside the quote (the
                    # trim's span-edge cases), sometimes running on into the next excerpt.
                    q = quotes[i]
                    length = rng.choice((rng.randint(6, 30), rng.randint(20, 90),
                                         rng.randint(60, 320)))
                    if q is not None and rng.random() < 0.4:
                        if rng.random() < 0.5:
                            start = rng.randint(q[0], max(q[0], q[1] - 3))
                        else:
                            end = rng.randint(q[0] + 3, q[1] + 3)
                            start = max(0, end - length)
                            length = end - start
                    else:
                        start = rng.randint(0, max(0, len(pieces[i]) - 10))
                    g0 = offset[i] + start
                    limit = offset[i + 1] + (40 if rng.random() < 0.2 else 0)
                    run = book[g0:min(g0 + length, limit, len(book))]
                    every = None if rng.random() < 0.3 else (12, 70)
                    out += _edited(run, rng, every)
                elif r < level[i] * 0.75 + 0.08:
                    # Cross-excerpt recall: a nearby excerpt or anywhere in the book.
                    j = (min(n - 1, max(0, i + rng.choice((-3, -2, -1, 1, 2, 3))))
                         if rng.random() < 0.5 else rng.randrange(n))
                    start = offset[j] + rng.randint(0, max(0, len(pieces[j]) - 10))
                    run = book[start:start + rng.randint(8, 80)]
                    out += _edited(run, rng, (15, 60))
                elif rng.random() < 0.5:
                    out += [rng.choice(_FILLER) for _ in range(rng.randint(10, 60))]
                else:
                    out += [rng.choice(vocab) for _ in range(rng.randint(10, 60))]
            mine.append(" ".join(out[:target]))
        gens.append(mine)
    return Workload(excerpts, instructions, gens)
