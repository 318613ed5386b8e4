"""Visible characters: control, format (bidi overrides, zero-width) and separator characters
shown by their code point, so that text from a case file, a model, a server or an import can
never act on a terminal or reorder a report's text.

One definition for every place such text is shown: the report's outputs (as styled segments,
casekit/report/text.py), the report's metadata fields and the terminal (as ``⟨U+202E⟩``).
"""

from __future__ import annotations

import functools
import re
import unicodedata

#: Unicode categories shown by code point: Cc control, Cf format (bidi overrides, zero-width),
#: Cs lone surrogates, Zl/Zp line and paragraph separators.
SHOWN_AS_CODE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@functools.cache
def code_re(keep: str = "\t\n") -> re.Pattern[str]:
    """A character class of every code point shown by its code point, except those in ``keep``
    (built once per ``keep``).

    Only planes 0, 1 and 14 hold characters of those categories (surrogates, C0/C1 controls
    and format characters); scanning them takes a few hundredths of a second.
    """
    kept = {ord(c) for c in keep}
    ranges: list[tuple[int, int]] = []
    for lo, hi in ((0, 0x20000), (0xE0000, 0xF0000)):
        start: int | None = None
        for cp in range(lo, hi):
            hit = unicodedata.category(chr(cp)) in SHOWN_AS_CODE and cp not in kept
            if hit and start is None:
                start = cp
            elif not hit and start is not None:
                ranges.append((start, cp - 1))
                start = None
        if start is not None:
            ranges.append((start, hi - 1))
    body = "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
    return re.compile(f"[{body}]")


def code_point(ch: str) -> str:
    """How one hidden character is named: ``U+202E``."""
    return f"U+{ord(ch):04X}"


def visible(text: str, *, keep: str = "") -> str:
    """``text`` with every control, format or separator character (except those in ``keep``)
    replaced by ``⟨U+XXXX⟩``: nothing dropped, nothing applied. Linear in the text."""
    if text.isprintable():  # no Cc, Cf, Cs, Zl or Zp character: the common case, fast
        return text
    return code_re(keep).sub(lambda m: f"\u27e8{code_point(m.group())}\u27e9", text)


def visible_value(value: object) -> object:
    """A value for display: strings through :func:`visible`, other values as they are."""
    return visible(value) if isinstance(value, str) else value
