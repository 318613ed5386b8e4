"""Normalization profiles and tokenizers: outputs, offset maps and [Liu26] compatibility."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casekit.normalize import PROFILES, Tokens, _tokenize_general, normalize_text, tokenize

LIU_RE = re.compile(r"\w+|[^\w\s]+")


def liu_reference(text: str) -> list[str]:
    """[Liu26] words as the reference script makes them: wordpunct tokens holding
    ``[A-Za-z0-9]`` as written, lowercased."""
    return [t.lower() for t in LIU_RE.findall(text) if re.search("[A-Za-z0-9]", t)]


def roundtrip_ok(raw: str, toks: Tokens) -> None:
    """Every token's raw source, tokenized alone under the same profile, gives the token."""
    for w, s, e in zip(toks.words, toks.starts.tolist(), toks.ends.tolist(), strict=True):
        assert 0 <= s < e <= len(raw)
        assert tokenize(raw[s:e], toks.profile).words == [w], (w, raw[s:e])


def check_map(raw: str, profile: str = "light") -> None:
    n = normalize_text(raw, profile)  # type: ignore[arg-type]
    assert n.offsets.dtype == np.int64 and n.ends.dtype == np.int64
    assert len(n.offsets) == len(n.text) + 1
    assert len(n.ends) == len(n.text)
    assert n.offsets[-1] == len(raw)
    assert (np.diff(n.offsets) >= 0).all()
    assert (n.offsets >= 0).all() and (n.offsets <= len(raw)).all()
    if len(n.text):
        assert (n.ends > n.offsets[:-1]).all()
        assert (np.diff(n.ends) >= 0).all()
        assert n.ends[-1] <= len(raw)


EXAMPLE = "\u201cQuote\u201d \u2014 well-known\u2026 accom-\n  panied _italic_"


def test_light_example_text_and_map() -> None:
    n = normalize_text(EXAMPLE, "light")
    assert n.text == '"quote" \u2014 well-known... accompanied italic'
    check_map(EXAMPLE)
    # Every normalized char maps to the raw char it came from.
    assert EXAMPLE[n.offsets[0]:n.ends[0]] == "\u201c"
    i = n.text.index("accompanied")
    assert n.raw_span(i, i + len("accompanied")) == (
        EXAMPLE.index("accom"), EXAMPLE.index("panied") + len("panied"))
    i = n.text.index("...")
    assert {EXAMPLE[n.offsets[j]:n.ends[j]] for j in range(i, i + 3)} == {"\u2026"}
    i = n.text.index("italic")
    assert EXAMPLE[n.offsets[i]:n.ends[i + 5]] == "italic"


def test_light_words_example_tokens_map_back() -> None:
    t = tokenize(EXAMPLE)
    assert t.profile == "light-words"
    assert t.words == ["quote", "well", "known", "accompanied", "italic"]
    got = [EXAMPLE[s:e] for s, e in zip(t.starts, t.ends, strict=True)]
    assert got == ["Quote", "well", "known", "accom-\n  panied", "italic"]
    assert t.char_span(3, 5) == (EXAMPLE.index("accom"), len(EXAMPLE) - 1)
    assert t.char_span(2, 2) == (int(t.starts[2]),) * 2
    roundtrip_ok(EXAMPLE, t)


@pytest.mark.parametrize(("raw", "light"), [
    # dash variants and double hyphens to an em dash
    ("a \u2013 b \u2015 c \u2212 d -- e \u2012 f",
     "a \u2014 b \u2014 c \u2014 d \u2014 e \u2014 f"),
    ("well--known", "well\u2014known"),
    # curly quotes
    ("\u2018it\u2019s\u2019 \u201chi\u201d \u201elow\u201c", "'it's' \"hi\" \"low\""),
    # ellipses
    ("wait . . . now\u2026 and. . . .", "wait ... now... and...."),
    # italics markers, but not underscores inside words or unpaired ones
    ("Between _them_ it was _very good_.", "between them it was very good."),
    ("snake_case_name stays", "snake_case_name stays"),
    ("underline (_) chars, _them_", "underline (_) chars, them"),
    ("__init__ and ____ blanks", "__init__ and ____ blanks"),
    # hyphenation across line breaks joined, real hyphens kept
    ("accom-\n  panied well-known", "accompanied well-known"),
    ("a-\nb-\nc and x-\r\ny", "abc and xy"),
    ("word--\nnext", "word\u2014 next"),
    ("end -\nnext", "end - next"),
    # whitespace collapsed and stripped; lowercase; NFKC
    ("  A\t\tB \n\n C  ", "a b c"),
    ("\ufb01ne \uff21\uff22 caf\u0065\u0301 x\u00a0y", "fine ab caf\u00e9 x y"),
    ("\u0130stanbul STRASSE Stra\u00dfe", "i\u0307stanbul strasse stra\u00dfe"),
])
def test_light_transformations(raw: str, light: str) -> None:
    assert normalize_text(raw, "light").text == light
    check_map(raw)


def test_light_keeps_exact_sources_for_replaced_chars() -> None:
    raw = "ca\ufb01 \u201cx\u201d e\u0301t\u00e9 a--b"
    n = normalize_text(raw, "light")
    assert n.text == 'cafi "x" \u00e9t\u00e9 a\u2014b'
    src = [raw[s:e] for s, e in zip(n.offsets[:-1], n.ends, strict=True)]
    assert src[2] == src[3] == "\ufb01"  # an expansion maps all its chars to the source
    assert src[src.index("\u201c")] == "\u201c"
    assert src[n.text.index("\u00e9")] == "e\u0301"  # a composition maps to both sources
    assert src[-2] == "--"


def test_raw_profile_is_identity() -> None:
    raw = "A  \u201cb\u201d"
    n = normalize_text(raw, "raw")
    assert n.text == raw
    assert n.offsets.tolist() == list(range(len(raw) + 1))
    with pytest.raises(ValueError, match="unknown character profile"):
        normalize_text(raw, "words")  # type: ignore[arg-type]


def test_words_profile_matches_liu() -> None:
    raw = "Don't _your_ you\u2019re ___ \u00c9 \u00e9t\u00e9 Hello, World! 42 x_1 --- \u2026"
    t = tokenize(raw, "words")
    assert t.words == ["don", "t", "_your_", "you", "re", "\u00e9t\u00e9", "hello", "world",
                       "42", "x_1"]
    assert t.words == liu_reference(raw)
    assert [raw[s:e].lower() for s, e in zip(t.starts, t.ends, strict=True)] == t.words


def test_raw_and_light_tokenizers() -> None:
    raw = "Don't -- stop\u2026 _now_"
    assert tokenize(raw, "raw").words == ["Don", "'", "t", "--", "stop", "\u2026", "_now_"]
    assert tokenize(raw, "light").words == ["don't", "\u2014", "stop...", "now"]
    with pytest.raises(ValueError, match="unknown profile"):
        tokenize(raw, "stems")
    assert set(PROFILES) == {"raw", "light", "words", "light-words"}


def test_exclude_drops_intersecting_tokens() -> None:
    raw = "HEADER LINE\n\nOne two three four. FOOTER"
    head_end = raw.index("One")
    foot = raw.index("FOOTER")
    t = tokenize(raw, exclude=[(0, head_end), (foot, len(raw))])
    assert t.words == ["one", "two", "three", "four"]
    # A range that clips part of a token drops that token; an empty range drops nothing.
    t = tokenize(raw, exclude=[(raw.index("wo"), raw.index("wo") + 1), (3, 3)])
    assert "two" not in t.words and "header" in t.words
    t = tokenize(raw, "words", exclude=[(0, head_end)])
    assert t.words[0] == "one"


PARAGRAPH = (
    "\u201cI am by birth a Genevese; and my family is one of the most distin-\n"
    "guished of that republic.\u201d My ancestors had been for many years coun-\n"
    "  sellors and syndics\u2014and my father had filled several public situa- \n"
    "tions with honour and reputation . . . He was respected by all who\n"
    "knew him for his integrity and _indefatigable_ attention to public busi-\n"
    "ness; the \ufb01rst\u2013and last\u2212of his youth.\n"
)


def test_paragraph_roundtrip_every_token() -> None:
    for profile in ("light-words", "words", "light", "raw"):
        t = tokenize(PARAGRAPH, profile)
        assert len(t) > 50
        roundtrip_ok(PARAGRAPH, t)
    t = tokenize(PARAGRAPH)
    for w in ("distinguished", "counsellors", "situations", "business", "indefatigable",
              "first"):
        assert w in t.words


def test_empty_and_blank_inputs() -> None:
    for raw in ("", "   \n ", "-- ... \u2014"):
        for profile in PROFILES:
            t = tokenize(raw, profile)
            assert len(t.words) == len(t.starts) == len(t.ends)
        check_map(raw)
    assert tokenize("", "words").char_span(0, 0) == (0, 0)


# --- properties ---------------------------------------------------------------------------------

SPECIALS = "\u201c\u201d\u2018\u2019\u2013\u2014\u2015\u2212\u2026\ufb01\u00a0\u0301\u0130_-.\n\t "


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(SPECIALS)), max_size=80))
def test_offsets_monotone_and_in_bounds(raw: str) -> None:
    check_map(raw)
    for profile in PROFILES:
        t = tokenize(raw, profile)
        assert len(t.words) == len(t.starts) == len(t.ends)
        if len(t):
            assert (t.starts < t.ends).all()
            assert (t.starts >= 0).all() and (t.ends <= len(raw)).all()
            assert (np.diff(t.starts) >= 0).all() and (np.diff(t.ends) >= 0).all()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(SPECIALS)), max_size=80))
def test_words_profiles_equal_the_reference_regex(raw: str) -> None:
    assert tokenize(raw, "words").words == liu_reference(raw)
    light = normalize_text(raw, "light").text
    assert tokenize(raw, "light-words").words == [
        t for t in LIU_RE.findall(light) if re.search("[a-z0-9]", t.lower())]


ROUNDTRIP_ALPHABET = "abcXYZ019 \n\t-.,;'\"\u201c\u201d\u2019\u2013\u2014\u2026\ufb01"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ROUNDTRIP_ALPHABET, max_size=60))
def test_light_words_roundtrip_property(raw: str) -> None:
    roundtrip_ok(raw, tokenize(raw, "light-words"))
    roundtrip_ok(raw, tokenize(raw, "words"))


def test_words_filter_tests_the_token_as_written() -> None:
    # Issue 17, defect 2: the reference keeps a token holding [A-Za-z0-9] as written; a lone
    # KELVIN SIGN or dotted capital I lowercases to an ASCII letter but is dropped.
    raw = "\u212a \u0130 ok \u212aelvin"
    assert tokenize(raw, "words").words == ["ok", "\u212aelvin".lower()]
    assert _tokenize_general(raw, "words", ()).words == ["ok", "\u212aelvin".lower()]


# --- the short-text fast path equals the general tokenizer ---------------------------------------

FAST_ALPHABET = ("abcXYZ019 \n\t\r-_.,;:!?'\"()\u201c\u201d\u2018\u2019\u2013\u2014\u2010"
                 "\u2011\u2026\u00a0\u00a8\u00ab\u00bb\u2022\u00e9\u0301\ufb01\u2460"
                 "\uff3f\uff0d\u212a\u0130\u4e2d")


def _same(a: Tokens, b: Tokens) -> None:
    assert a.words == b.words
    assert a.starts.tolist() == b.starts.tolist()
    assert a.ends.tolist() == b.ends.tolist()
    assert a.starts.dtype == b.starts.dtype == np.int64


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=FAST_ALPHABET, max_size=80),
       st.lists(st.tuples(st.integers(0, 80), st.integers(0, 20)), max_size=2))
def test_property_fast_path_equals_general_tokenizer(raw: str,
                                                     excl: list[tuple[int, int]]) -> None:
    exclude = [(a, a + n) for a, n in excl]
    for profile in ("words", "light-words"):
        _same(tokenize(raw, profile, exclude), _tokenize_general(raw, profile, exclude))


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="aB1_-\n \t.,\u2014\u2019", max_size=40))
def test_property_fast_path_handles_italics_and_line_broken_words(raw: str) -> None:
    # Dense in what the fast path rewrites: _italics_ and words hyphenated across a line break.
    for profile in ("words", "light-words"):
        _same(tokenize(raw, profile), _tokenize_general(raw, profile, ()))


def test_fast_path_examples_of_italics_and_joins() -> None:
    from casekit.normalize import _fast_word_runs

    for raw, words in (("An _italic_ word and snake_case.", ["an", "italic", "word", "and",
                                                             "snake_case"]),
                       ("A well-\n  known word.", ["a", "wellknown", "word"])):
        assert _fast_word_runs(raw, "light-words") is not None  # taken, not declined
        t = tokenize(raw, "light-words")
        assert t.words == words
        _same(t, _tokenize_general(raw, "light-words", ()))
    assert "well-\n  known" in [raw[a:b] for a, b in zip(t.starts, t.ends, strict=True)]
    # Both in one text: declined (an italics marker could border a join).
    assert _fast_word_runs("_a_ b-\nc", "light-words") is None
    # A join that only the italics' removal makes ("1-\n1"): declined too, the general path
    # joins it (hypothesis found it).
    assert _fast_word_runs("_1-_\n1", "light-words") is None
    # Italics, line breaks and hyphens but no hyphen before a line break, even with every
    # underscore gone (a novel's prompt): no join possible, so the plain path takes it.
    from casekit.normalize import _plain_tokens

    raw = "She was _twenty-one_ years\nin the world, and _very_ well."
    got = _plain_tokens(raw, "light-words", ())
    assert got is not None and got.words[:4] == ["she", "was", "twenty", "one"]
    _same(got, _tokenize_general(raw, "light-words", ()))
    assert _plain_tokens("_1-_\n1", "light-words", ()) is None
    assert tokenize("_1-_\n1", "light-words").words == ["11"]


def test_plain_path_takes_plain_text_and_declines_the_rest() -> None:
    # The regex path (no underscore, no line-broken word) is taken for ordinary text, curly
    # quotes and a dash across a line that joins nothing included, and gives the same tokens.
    from casekit.normalize import _plain_tokens

    for raw in ("Emma Woodhouse, handsome, clever, and rich.", "\u201cNo\u2014not I\u2019d\u201d",
                "a -\n  b", "word-\n", "x 12-\n, y"):
        for profile in ("words", "light-words"):
            t = _plain_tokens(raw, profile, ())
            assert t is not None, (raw, profile)
            _same(t, _tokenize_general(raw, profile, ()))
    # Underscores: snake_case stays one word, italics markers split (light-words only), a
    # bare run of underscores is no token; with a hyphen and a line break too, declined.
    for raw, profile, words in (
            ("snake_case", "words", ["snake_case"]), ("snake_case", "light-words", ["snake_case"]),
            ("An _italic_ word, __ _", "words", ["an", "_italic_", "word"]),
            ("An _italic_ word, __ _", "light-words", ["an", "italic", "word"]),
            ("_x_y_ and _a_-b_", "light-words", ["_x_y_", "and", "a", "b_"]),
            ("_x_y_ -\nb", "words", ["_x_y_", "b"])):
        t = _plain_tokens(raw, profile, ())
        assert t is not None and t.words == words, (raw, profile)
        _same(t, _tokenize_general(raw, profile, ()))
    assert _plain_tokens("_a_ b-\nc", "light-words", ()) is None
    assert _plain_tokens("x 12-\n3y", "light-words", ()) is None
    assert _plain_tokens("A well-\n  known word.", "light-words", ()) is None
    assert _plain_tokens("A well-\n  known word.", "words", ()) is not None
    assert _plain_tokens("caf\u00e9", "words", ()) is None


def test_fast_path_equals_general_tokenizer_on_a_novel() -> None:
    import gzip
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "data" / "austen-emma.txt.gz"
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    rng = np.random.default_rng(7)
    for start in rng.integers(0, len(text) - 600, 400).tolist():
        chunk = text[start:start + int(rng.integers(1, 600))]
        for profile in ("words", "light-words"):
            _same(tokenize(chunk, profile), _tokenize_general(chunk, profile, ()))
