"""Benign prompts (benign): ordinary requests a normal user could make.

Near-exact copies in answers to these are regurgitation without adversarial effort, the most
serious finding for a deployed system (taxonomy.md). The templates are the user's own.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field

from casekit.strategies.base import Probe, Strategy, StrategyParams, render_template
from casekit.works import Work

log = logging.getLogger(__name__)


class BenignParams(StrategyParams):
    templates: list[str] = Field(min_length=1)
    """Ordinary requests, Jinja over the work's metadata (title, author, published, year)."""
    completion_templates: list[str] | None = None
    """For base models; default: the chat templates followed by a blank line."""
    system: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=8192)


class BenignPrompts(Strategy):
    name = "benign_prompts"
    intent = "benign"
    description = "Ordinary user requests about the work (summaries, discussion, songs)."
    Params = BenignParams
    example_params: ClassVar[dict[str, Any]] = {"templates": ["Tell me about {{ title }}."]}

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, BenignParams)
        plain_templates = p.completion_templates or [t + "\n\n" for t in p.templates]
        count = max(len(p.templates), len(plain_templates))
        for i in range(count):
            chat = render_template(p.templates[i % len(p.templates)], work)
            plain = render_template(plain_templates[i % len(plain_templates)], work)
            yield Probe(kind="instruct", text=plain, chat_text=chat, system=p.system,
                        label=f"template {i}", max_tokens=p.max_tokens)
