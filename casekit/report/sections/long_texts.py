"""Appendix of long texts (partials/long_texts.html.j2): texts too long for an exhibit column,
shown whole. The exhibits add to the list as they cut a column (sections/exhibit.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.report.text import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LongText:
    """A text too long for its exhibit column, shown whole in the appendix of long texts."""

    ref: str
    anchor: str
    exhibit: str
    exhibit_anchor: str
    attempt_id: str
    what: str
    chars: str
    sha256: str
    """SHA-256 of the text's UTF-8 bytes (the ledger holds the text itself)."""
    chunks: list[list[Segment]]
    part: str = ""
    """"" when the appendix shows the whole text; else which characters it shows and where the
    whole text is (a text over APPENDIX_MAX_CHARS: never cut silently)."""
    first: int = 1
    last: int = 0
