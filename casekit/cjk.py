"""The CJK tokenization profile: one token per Han or Kana character, words for the rest.

Chinese and Japanese are written without spaces, so ``\\w+`` makes a whole clause one "word"
(and the ``[a-z0-9]`` filter then drops it): near-verbatim Chinese or Japanese output would
never be found. Under the CJK profiles (``light-words-cjk`` and ``words-cjk``, the
``light-words`` and ``words`` profiles with this change):

- every Han character (CJK Unified Ideographs and their extensions, compatibility
  ideographs, the iteration marks) and every Hiragana or Katakana character is a token;
- Hangul is written with spaces between words, so a Hangul word stays one token;
- Latin (and any other) words are tokenized as before, and a token is kept if it has
  ``[a-z0-9]`` (as before) or a Han, Kana or Hangul character.

No segmenter (jieba, sudachipy): a segmenter's word boundaries depend on its dictionary and
version and differ between two tokenizations of a near-verbatim copy, so one substituted
character could move the boundaries around it; characters are the unit the text is written
in, every boundary is certain, and a span of n characters is the same n characters in the work
and the output. Thresholds for CJK works are stated in characters (casekit.works).

The profile is chosen per work: ``language: zh | ja | ko`` (any BCP 47 tag starting so), or,
when the work states no language, by detection: at least DETECT_SHARE of its letters are Han,
Kana or Hangul. This module sits below casekit.normalize (which calls it) and imports nothing
of casekit.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

SUFFIX = "-cjk"
#: The CJK variants of the word profiles (casekit.normalize.tokenize accepts them).
PROFILES = ("light-words" + SUFFIX, "words" + SUFFIX)
#: Language tags (BCP 47 primary subtags) that select the CJK profile.
LANGUAGES = ("zh", "ja", "ko", "yue", "lzh", "wuu", "hak", "nan")
#: Share of a text's letters that are Han, Kana or Hangul from which it is detected as CJK.
DETECT_SHARE = 0.3

#: Code point ranges [lo, hi] of Han and Kana: each character is its own token.
HAN_KANA_RANGES = (
    (0x3005, 0x3007),  # 々 〆 〇 (iteration mark, closing mark, ideographic zero)
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x3035),  # vertical kana repeat marks
    (0x303B, 0x303C),  # 〻 〼
    (0x3041, 0x309F),  # Hiragana (and its iteration marks)
    (0x30A0, 0x30FF),  # Katakana (with the prolonged sound mark ー)
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana (NFKC maps them to fullwidth under light)
    (0x1B000, 0x1B16F),  # Kana supplement and extended
    (0x20000, 0x3134F),  # CJK Unified Ideographs Extensions B-G
)
#: Hangul (syllables and jamo): words, as written, but kept by the filter.
HANGUL_RANGES = (
    (0x1100, 0x11FF),
    (0x3130, 0x318F),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7AF),
    (0xD7B0, 0xD7FF),
)


def _in(cps: np.ndarray, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    out = np.zeros(len(cps), dtype=bool)
    for lo, hi in ranges:
        out |= (cps >= lo) & (cps <= hi)
    return out


def han_kana(cps: np.ndarray) -> np.ndarray:
    """Bool per code point: a Han or Kana character (one token each)."""
    return _in(cps, HAN_KANA_RANGES)


def is_cjk_profile(profile: str) -> bool:
    return profile in PROFILES


def base_profile(profile: str) -> str:
    """The word profile a CJK profile modifies (``light-words-cjk`` -> ``light-words``)."""
    return profile[: -len(SUFFIX)] if profile.endswith(SUFFIX) else profile


def cjk_profile(profile: str) -> str:
    return profile if profile.endswith(SUFFIX) else profile + SUFFIX


def split_runs(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Token runs ``[starts[i], ends[i])`` with every Han or Kana character made its own
    token; the characters between them stay one token per maximal stretch."""
    if len(starts) == 0:
        return starts, ends
    hk = han_kana(cps)
    if not hk.any():
        return starts, ends
    n = len(cps)
    inside = np.zeros(n + 1, dtype=np.int64)
    np.add.at(inside, starts, 1)
    np.add.at(inside, ends, -1)
    in_run = np.cumsum(inside[:n]) > 0
    prev_hk = np.concatenate(([False], hk[:-1]))
    cut = in_run & (hk | prev_hk)
    cut[starts] = True
    new_starts = np.flatnonzero(cut).astype(np.int64)
    run_of = np.searchsorted(starts, new_starts, side="right") - 1
    next_start = np.concatenate((new_starts[1:], [n]))
    new_ends = np.minimum(next_start, ends[run_of]).astype(np.int64)
    return new_starts, new_ends


def keep_cjk(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Bool per token: it holds a Han, Kana or Hangul character."""
    flag = han_kana(cps) | _in(cps, HANGUL_RANGES)
    cs = np.concatenate(([0], np.cumsum(flag, dtype=np.int64)))
    return (cs[ends] - cs[starts]) > 0


def language_is_cjk(language: str | None) -> bool | None:
    """True/False for a stated language tag, None when none is stated."""
    if not language:
        return None
    return language.lower().replace("_", "-").split("-")[0] in LANGUAGES


def detect(text: str) -> bool:
    """Whether a text is mostly Chinese, Japanese or Korean: at least DETECT_SHARE of its
    letters (``str.isalpha``) are Han, Kana or Hangul."""
    if not text:
        return False
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    cjk = int((han_kana(cps) | _in(cps, HANGUL_RANGES)).sum())
    if cjk == 0:
        return False
    ascii_letters = int((((cps >= 65) & (cps <= 90)) | ((cps >= 97) & (cps <= 122))).sum())
    uniq, inv = np.unique(cps[cps >= 128], return_inverse=True)
    alpha = np.fromiter((chr(int(c)).isalpha() for c in uniq), dtype=bool, count=len(uniq))
    letters = ascii_letters + int(alpha[inv.ravel()].sum())
    return letters > 0 and cjk / letters >= DETECT_SHARE
