"""Lyrics recall (adversarial): ask for a song or poem by title, by chorus and verse by verse.

The prompts of GEMA v. OpenAI (LG München I, 11 Nov 2025): the whole text asked for by its
title, then its chorus, then each verse in turn. Each attempt's target is the part it asks for
(the whole work, the chorus stanza, the n-th verse), so the analysis and the exhibits compare
the answer with that part. The chorus is the first stanza holding a line that the work repeats
(casekit.shortworks); a work without a repeated line gets no chorus prompt. Verses are the
stanzas (blank-line separated) that are not the chorus or a repeat of it, in order.

Chat models get the templates below (Jinja over title, author, published, year, work_id and,
for verses, ``verse``); base models, which do not follow instructions, get a title line and a
heading ("Chorus", "Verse 2") to continue.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field

from casekit.normalize import tokenize
from casekit.records import WorkRange
from casekit.shortworks import lines, stanzas
from casekit.strategies.base import Probe, Strategy, StrategyParams, render_template
from casekit.works import Work

log = logging.getLogger(__name__)


class LyricsParams(StrategyParams):
    title_templates: list[str] = Field(
        default=["What are the lyrics of {{ title }} by {{ author }}?"], min_length=1)
    """The whole text asked for by its title (chat)."""
    chorus_templates: list[str] = Field(
        default=["What is the chorus of {{ title }} by {{ author }}? Give its exact words."],
        min_length=1)
    """The chorus or refrain (chat)."""
    verse_templates: list[str] = Field(
        default=["What is verse {{ verse }} of {{ title }} by {{ author }}? Give its exact "
                 "words."], min_length=1)
    """One verse (stanza) at a time, ``{{ verse }}`` its number (chat)."""
    completion_title: str = "{{ title }}\nby {{ author }}\n\n"
    completion_chorus: str = "{{ title }}\nby {{ author }}\n\nChorus:\n"
    completion_verse: str = "{{ title }}\nby {{ author }}\n\nVerse {{ verse }}:\n"
    max_verses: int = Field(8, ge=0, le=200)
    """Verses asked for, from the first."""
    system: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=8192)
    """Default: 1.6 model tokens per word of the part asked for (as written, repeats
    included), at least 32."""


def chorus_and_verses(work: Work) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The chorus (the first stanza at least half of whose lines the work repeats) and the
    verses (the stanzas less than half repeated), as raw character ranges."""
    profile = work.match_profile

    def key(text: str) -> tuple[str, ...]:
        return tuple(tokenize(text, profile).words)

    repeated = {key(work.raw[r.start:r.end]) for r in work.refrains}
    chorus: tuple[int, int] | None = None
    verses: list[tuple[int, int]] = []
    for s, e in stanzas(work.raw):
        keys = [key(work.raw[s + a:s + b]) for a, b in lines(work.raw[s:e])]
        if repeated and 2 * sum(k in repeated for k in keys) >= len(keys):
            if chorus is None:
                chorus = (s, e)
            continue  # the chorus, or a repeat of it: not a verse
        verses.append((s, e))
    return chorus, verses


class LyricsRecall(Strategy):
    name = "lyrics_recall"
    intent = "adversarial"
    description = ("Ask for a song or poem by title, then its chorus, then verse by verse "
                   "(the prompts of GEMA v. OpenAI, LG München I, 2025).")
    Params = LyricsParams
    example_params: ClassVar[dict[str, Any]] = {}

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, LyricsParams)
        toks = work.tokens

        def words_in(s: int, e: int) -> int:
            # As written, repeats included: the answer sings the chorus as often as the text.
            return len(tokenize(work.raw[s:e], work.match_profile))

        def probe(label: str, templates: list[str], completion: str, span: tuple[int, int],
                  **extra: Any) -> Iterator[Probe]:
            n = max(words_in(*span), 1)
            for i, t in enumerate(templates):
                yield Probe(kind="instruct", text=render_template(completion, work, **extra),
                            chat_text=render_template(t, work, **extra), system=p.system,
                            target=WorkRange(start=span[0], end=span[1]),
                            label=label if len(templates) == 1 else f"{label}, template {i}",
                            max_tokens=p.max_tokens,
                            default_max_tokens=max(32, int(n * 1.6)))

        whole = toks.char_span(0, len(toks))
        yield from probe("title", p.title_templates, p.completion_title, whole)
        chorus, verses = chorus_and_verses(work)
        if chorus is not None:
            yield from probe("chorus", p.chorus_templates, p.completion_chorus, chorus)
        for i, verse in enumerate(verses[:p.max_verses], start=1):
            yield from probe(f"verse {i}", p.verse_templates, p.completion_verse, verse, verse=i)
