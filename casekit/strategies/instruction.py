"""Instruction recall (adversarial): ask the model to recite the work by name.

Chat models get instruction templates ("Print the first 100 words of {{ title }}"); base models,
which do not follow instructions, get completion templates that set up the text's opening (a
title page). Templates are Jinja over the work's metadata, rendered in a sandbox.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

from pydantic import Field

from casekit.records import WorkRange
from casekit.strategies.base import Probe, Strategy, StrategyParams, render_template
from casekit.works import Work

log = logging.getLogger(__name__)


class InstructionParams(StrategyParams):
    templates: list[str] = Field(
        default=[
            "Print the first {{ n_words }} words of {{ title }} by {{ author }}, exactly.",
            "I forgot the opening of {{ title }} by {{ author }}. Please recite it for me word "
            "for word.",
        ],
        min_length=1,
    )
    """Chat templates (variables: title, author, published, year, work_id, n_words)."""
    completion_templates: list[str] = Field(
        default=["{{ title }}\n\n", "{{ title }}\nby {{ author }}\n\n"], min_length=1)
    """Templates for completion (base) models."""
    n_words: int = Field(100, ge=5)
    """How much of the opening the prompt asks for; the target range of the attempt."""
    system: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=8192)


class InstructionRecall(Strategy):
    name = "instruction_recall"
    intent = "adversarial"
    description = "Ask the model by title and author to recite the opening of the work."
    Params = InstructionParams

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, InstructionParams)
        toks = work.tokens
        n = min(p.n_words, len(toks))
        t0, t1 = toks.char_span(0, n)
        target = WorkRange(start=t0, end=t1)
        # Chat and completion templates are paired by index; the longer list sets the count.
        count = max(len(p.templates), len(p.completion_templates))
        for i in range(count):
            chat = render_template(p.templates[i % len(p.templates)], work, n_words=p.n_words)
            plain = render_template(p.completion_templates[i % len(p.completion_templates)],
                                    work, n_words=p.n_words)
            yield Probe(kind="instruct", text=plain, chat_text=chat, system=p.system,
                        target=target, label=f"template {i}",
                        max_tokens=p.max_tokens, default_max_tokens=int(p.n_words * 1.6))
