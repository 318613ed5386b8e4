"""casekit.canonical's fast path against the rfc8785 reference implementation.

The ledger's hash chain is only as good as its canonical form: a fast path that differs from
RFC 8785 in one byte for some value would make a ledger that other JCS implementations cannot
verify. So the fast path is checked against the reference on generated values, including the
cases where the two encoders could diverge: floats in every exponent range, control and
non-BMP characters, non-ASCII keys (sorted by UTF-16 code units), integers at the edge of the
safe range, and strings that try to forge the fast path's number sentinel.
"""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from casekit.canonical import _clean, canonical_json

floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e-7, 1e-6, 9.999e-5, 1e-4, 1e15, 9.999999999999998e15, 1e16,
                     1e20, 1e21, 5e-324, 1.7976931348623157e308, 2.0, -3.0, 0.1, 1 / 3]),
)
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
keys = st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=8),
                 text, st.sampled_from(["\ue000", "\U0001f600", "a\U00010000", "a\uffff"]))
scalars = st.one_of(st.none(), st.booleans(), floats, text,
                    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


@settings(max_examples=600, deadline=None)
@given(values)
def test_fast_path_equals_reference(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(_clean(value))


@settings(max_examples=200, deadline=None)
@given(st.lists(floats, min_size=1, max_size=20))
def test_every_float_range_formats_as_ecmascript(xs: list[float]) -> None:
    assert canonical_json({"x": xs}) == rfc8785.dumps({"x": xs})


def test_known_ecmascript_forms() -> None:
    # ECMA-262 Number::toString: fixed notation from 1e-6 to below 1e21, no ".0", no "+" in
    # small exponents' place, "e+" for large ones; -0 is "0".
    assert canonical_json([1e-7, 1e-6, 1e-5, 2.0, 1e16, 1e21, -0.0, 0.5]) == (
        b"[1e-7,0.000001,0.00001,2,10000000000000000,1e+21,0,0.5]")


def test_non_finite_floats_become_null() -> None:
    assert canonical_json({"a": math.inf, "b": -math.inf, "c": math.nan}) == (
        b'{"a":null,"b":null,"c":null}')


def test_non_ascii_keys_sort_by_utf16_code_units() -> None:
    # U+E000 sorts after U+1F600 by code point but before it in UTF-16 (a surrogate pair
    # starts with 0xD83D < 0xE000): RFC 8785 wants the UTF-16 order.
    out = canonical_json({"\ue000": 1, "\U0001f600": 2})
    assert out == '{"\U0001f600":2,"\ue000":1}'.encode()


@pytest.mark.parametrize("forged", [
    ["\ud8001.5\ud800", 2.5],   # a string shaped like the sentinel-wrapped number
    ["\ud800", 1.0],
    {"a": "x\udc00"},
    ["\ud800\ud800", 1.0],
])
def test_lone_surrogates_are_rejected_like_the_reference(forged: object) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(forged)
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json(forged)


def test_unsafe_integers_are_rejected_like_the_reference() -> None:
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical_json({"n": 2**53})


def test_subclasses_take_the_reference_path() -> None:
    import enum

    class Colour(str, enum.Enum):  # noqa: UP042 - a str subclass is the point
        RED = "red"

    assert canonical_json({"c": Colour.RED, "b": True}) == rfc8785.dumps({"c": Colour.RED,
                                                                            "b": True})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=6), text)
def test_encode_with_an_extra_member_equals_the_reference(body: dict, digest: str) -> None:
    """Canonical(body).encode({"hash": h}) is the canonical form of body plus that member (the
    ledger's line), whatever the body holds."""
    from casekit.canonical import Canonical

    body = {k: v for k, v in body.items() if k != "hash"}
    canon = Canonical(body)
    assert canon.encode() == rfc8785.dumps(_clean(body))
    assert canon.encode({"hash": digest}) == rfc8785.dumps(_clean({**body, "hash": digest}))


record_keys = st.one_of(keys, st.sampled_from(["attempt", "error", "ha", "hash0", "hasi", "prev",
                                               "prev_hash", "result", "version", "Z", "~"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(record_keys, values, max_size=8))
def test_encode_with_member_splices_the_hash_where_the_reference_puts_it(body: dict) -> None:
    """The ledger encodes a record once: encode_with_member gives the canonical form and the
    canonical form with ``hash`` = (a function of the former), both equal to the reference,
    with keys on either side of "hash", floats in both halves, and non-ASCII keys."""
    import hashlib

    from casekit.canonical import Canonical

    body = {k: v for k, v in body.items() if k != "hash"}
    seen: list[bytes] = []

    def digest(plain: bytes) -> str:
        seen.append(plain)
        return "sha256:" + hashlib.sha256(plain).hexdigest()

    plain, line = Canonical(body).encode_with_member("hash", digest)
    assert plain == rfc8785.dumps(_clean(body))
    assert seen == [plain]
    assert line == rfc8785.dumps(_clean({**body, "hash": digest(plain)}))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.one_of(keys, st.integers(-5, 5)), values, max_size=6))
def test_non_string_keys_are_stringified_like_the_reference(body: dict) -> None:
    """Integer keys (JSON has only string keys) become their decimal strings, with the members
    around them kept, whichever member comes first."""
    cleaned = _clean(body)
    if len(cleaned) != len(body):  # 1 and "1" both present: ambiguous, not canonicalizable
        return
    assert canonical_json(body) == rfc8785.dumps(cleaned)


@settings(max_examples=600, deadline=None)
@given(values)
def test_orjson_route_equals_reference_or_declines(value: object) -> None:
    from casekit.canonical import fast_canonical

    out = fast_canonical(value)
    if out is not None:
        assert out == rfc8785.dumps(_clean(value))


def test_orjson_route_takes_ledger_records_and_declines_what_it_cannot_prove() -> None:
    from casekit.canonical import fast_canonical, fast_canonical_with_member

    record = {"seq": 3, "temperature": 0.0, "top_p": 0.95, "tiny": 1e-5, "big": 1e20,
              "text": "a:1.5,b and 3e5 x", "prev_hash": "sha256:" + "3e" * 32, "z": [1.5, -0.0]}
    assert fast_canonical(record) == rfc8785.dumps(record)
    plain, line = fast_canonical_with_member(record, "hash", lambda b: "sha256:x")  # type: ignore[misc]
    assert plain == rfc8785.dumps(record)
    assert line == rfc8785.dumps({**record, "hash": "sha256:x"})
    # A string that looks like an integral float is rewritten, the round trip sees it: declined.
    assert fast_canonical({"text": "a:1.0,b"}) is None
    assert fast_canonical({"n": 2**53}) is None  # RFC 8785 refuses it: the walk raises
    assert fast_canonical({"k": "\U0001f600"}) is None
    assert fast_canonical({"k": ("a",)}) == b'{"k":["a"]}'
    assert fast_canonical({"k": math.nan}) == b'{"k":null}'  # as the walk: null
    assert fast_canonical({1: "a"}) is None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(record_keys, values, max_size=8))
def test_orjson_route_with_member_equals_reference_or_declines(body: dict) -> None:
    from casekit.canonical import fast_canonical_with_member, sha256_bytes

    out = fast_canonical_with_member(body, "hash", sha256_bytes)
    if out is not None:
        plain, line = out
        assert plain == rfc8785.dumps(_clean(body))
        assert line == rfc8785.dumps({**_clean(body), "hash": sha256_bytes(plain)})


def test_a_rewritten_member_value_needs_no_round_trip_and_text_that_mimics_one_does() -> None:
    from casekit.canonical import _orjson_floats

    out, unproven = _orjson_floats(b'{"decoding":{"temperature":0.0},"x":"a"}')  # type: ignore[misc]
    assert out == b'{"decoding":{"temperature":0},"x":"a"}' and not unproven
    # Inside a string the quotes are escaped, or the key is not a plain name: parse back.
    for raw in (b'{"t":"x,\\"temperature\\":0.0,"}', b'{"a":"x,",",":0.0}',
                b'{"k":[0.0]}'):
        fixed = _orjson_floats(raw)
        assert fixed is not None and fixed[1], raw
