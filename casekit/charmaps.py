"""The light profile's character tables: which quotation marks and dashes casekit.normalize maps
to one ASCII (or em dash) character each, before matching."""

from __future__ import annotations

EM_DASH = "\u2014"
#: Curly and low quotation marks mapped to ASCII (one character to one character).
QUOTE_MAP: dict[str, str] = {
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
}
#: Dash variants mapped to an em dash (one character to one character). NFKC already maps the
#: small and fullwidth forms (U+FE58 to an em dash, U+FE63 and U+FF0D to "-").
DASH_MAP: dict[str, str] = {
    "\u2012": EM_DASH,  # figure dash
    "\u2013": EM_DASH,  # en dash
    "\u2015": EM_DASH,  # horizontal bar
    "\u2212": EM_DASH,  # minus sign
    "\u2e3a": EM_DASH,  # two-em dash
    "\u2e3b": EM_DASH,  # three-em dash
    "\ufe31": EM_DASH,  # presentation form for vertical em dash
    "\ufe32": EM_DASH,  # presentation form for vertical en dash
    "\u2010": "-",  # Unicode hyphen: a hyphen, so it joins line-break hyphenation like "-"
    "\u2011": "-",  # non-breaking hyphen
}
