"""Canonical JSON (RFC 8785) and algorithm-tagged hashes.

Every hash casekit writes is ``"sha256:" + hex``, computed over RFC 8785 canonical JSON for
structured data or over the exact bytes for files.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import rfc8785
import rfc8785._impl

HASH_PREFIX = "sha256:"


def _clean(value: Any) -> Any:
    """Make a value canonicalizable: non-finite floats (which JSON cannot carry) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class _NeedsReference(Exception):
    """The value holds something the fast path does not handle exactly (a non-ASCII key, a
    subclass of a JSON type): canonicalize it with the reference implementation instead."""


_SENTINEL = "\ud800"
"""Marks a preformatted number inside the fast path's intermediate JSON. A lone surrogate can
never be part of canonical input (RFC 8785 requires valid Unicode), so no string of the value
can forge one: the count of sentinels is checked against the count of floats."""
_NUMBER = re.compile('"' + _SENTINEL + '([^"]*)' + _SENTINEL + '"')
_MAX_SAFE = 2**53 - 1
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True,
                           separators=(",", ":")).encode


def _es_number(f: float) -> str:
    """ECMAScript Number-to-String of a finite float (RFC 8785 3.2.2.3). In [1e-4, 1e16) both
    ECMAScript and Python print the shortest round-trip digits in fixed notation, so Python's
    repr is exact there (an integral value drops its ``.0``); elsewhere the exponent formats
    differ, and the reference implementation formats it."""
    a = abs(f)
    if 1e-4 <= a < 1e16:
        return str(int(f)) if f.is_integer() else repr(f)
    if f == 0.0:
        return "0"
    sink = io.BytesIO()
    rfc8785._impl._serialize_float(f, sink)
    return sink.getvalue().decode("ascii")


def _prepare(value: Any, floats: list[int]) -> Any:
    """The value with non-finite floats as None and finite floats as sentinel-wrapped strings
    of their canonical form; raises _NeedsReference for what the fast path cannot do exactly.
    Strings, None, booleans and safe integers are kept as they are without a call per value
    (most of a record), and a container none of whose members changed is returned itself."""
    t = type(value)
    if t is dict:
        out: dict[str, Any] | None = None
        for i, (k, v) in enumerate(value.items()):
            changed = False
            if type(k) is not str:
                if isinstance(k, str):
                    raise _NeedsReference
                k, changed = str(k), True
            if not k.isascii():  # RFC 8785 sorts keys by UTF-16 code units, Python by code points
                raise _NeedsReference
            tv = type(v)
            if not (tv is str or v is None or tv is bool
                    or (tv is int and -_MAX_SAFE <= v <= _MAX_SAFE)):
                p = _prepare(v, floats)
                changed = changed or p is not v
                v = p
            if changed and out is None:
                out = dict(itertools.islice(value.items(), i))  # the members before, unchanged
            if out is not None:
                out[k] = v
        return value if out is None else out
    if t is list or t is tuple:
        items: list[Any] | None = None
        for i, v in enumerate(value):
            tv = type(v)
            if not (tv is str or v is None or tv is bool
                    or (tv is int and -_MAX_SAFE <= v <= _MAX_SAFE)):
                p = _prepare(v, floats)
                if p is not v and items is None:
                    items = list(value[:i])
                v = p
            if items is not None:
                items.append(v)
        if items is not None:
            return items
        return value if t is list else list(value)
    if t is str or value is None or t is bool:
        return value
    if t is int:
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        raise _NeedsReference  # the reference raises IntegerDomainError
    if t is float:
        if not math.isfinite(value):
            return None
        floats[0] += 1
        return _SENTINEL + _es_number(value) + _SENTINEL
    raise _NeedsReference


_ORJSON_SORTED = orjson.OPT_SORT_KEYS
_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")
#: The tail of a number token with a fraction (from its ``.``) or with an exponent (from the
#: mantissa's last digit), in orjson's output with its digits turned to 0 (``_DIGITS_TO_0``),
#: up to a comma or a closing bracket or brace. Both patterns begin with a literal, which the
#: regex engine finds fast. Text inside a string that merely looks like such a token may also
#: match: :func:`fast_canonical`'s round trip then sees the string changed and declines.
_FLOAT_TAILS = (re.compile(rb"\.0+(?:[eE][-+]?0+)?(?=[,\]}])"),
                re.compile(rb"0[eE][-+]?0+(?=[,\]}])"))
_LONG_DIGITS = b"0" * 16
"""16 digits in a row: possibly an integer beyond 2**53, which RFC 8785 refuses."""
_ASTRAL = re.compile(rb"[\xf0-\xf4]")
_ZERO, _MINUS = ord("0"), ord("-")
_BEFORE_VALUE = frozenset(b":,[")


_QUOTE, _COLON = ord('"'), ord(":")
_OPENS_MEMBER = frozenset(b",{")


def _member_value(out: bytes, a: int) -> bool:
    """True when the token at ``a`` of orjson's output is provably a member's value, not text
    inside a string: it follows ``,"key":`` or ``{"key":`` with a key of ASCII letters, digits
    and underscores. The quote after that comma or brace is not escaped, so it opens or closes
    a string; closing one is impossible (in valid JSON a closing quote is followed by ``:``,
    ``,``, ``}`` or ``]``, never by a letter, digit or underscore), so it opens the key, and
    the colon after the key's closing quote is structural."""
    if a < 4 or out[a - 1] != _COLON or out[a - 2] != _QUOTE:
        return False
    q = out.rfind(b'"', 0, a - 2)
    key = out[q + 1:a - 2]
    return q > 0 and out[q - 1] in _OPENS_MEMBER and key.replace(b"_", b"").isalnum()


def _orjson_floats(out: bytes) -> tuple[bytes, bool] | None:
    """(orjson's sorted encoding with its float tokens in ECMAScript's form, whether a token
    changed that is not provably a member's value (:func:`_member_value`): the caller then
    parses the result back to check it), or None when it holds 16 digits in a row or a
    character outside the BMP."""
    if not out.isascii() and _ASTRAL.search(out):
        return None
    digits = out.translate(_DIGITS_TO_0)
    if _LONG_DIGITS in digits:
        return None
    spans: set[tuple[int, int]] = set()
    # orjson writes an exponent with its sign ("1e+16", "1e-7"): without "e+" or "e-" in the
    # bytes there is none, and the second pattern need not scan.
    patterns = _FLOAT_TAILS if b"e+" in out or b"e-" in out else _FLOAT_TAILS[:1]
    for pattern in patterns:
        for m in pattern.finditer(digits):
            a = m.start()
            while a and digits[a - 1] == _ZERO:
                a -= 1
            if a and digits[a - 1] == _MINUS:
                a -= 1
            if a and digits[a - 1] in _BEFORE_VALUE:  # else not a value: inside a string
                spans.add((a, m.end()))
    if not spans:
        return out, False
    parts: list[bytes] = []
    last = 0
    changed = False
    for a, b in sorted(spans):
        token = out[a:b]
        es = _es_number(float(token)).encode("ascii")
        if es != token and not changed and not _member_value(out, a):
            changed = True
        parts += (out[last:a], es)
        last = b
    parts.append(out[last:])
    return b"".join(parts), changed


def fast_canonical(value: Any) -> bytes | None:
    """RFC 8785 canonical bytes of a dict or list by orjson (sorted keys), or None when this
    route cannot prove them right (the caller then takes :func:`canonical_json`'s walk).

    orjson writes strings with RFC 8785's escapes (tests/test_plan_stream.py checks every code
    point) and sorts keys by code point, which is UTF-16 order when no character lies outside
    the Basic Multilingual Plane; it writes safe integers, booleans and null alike (a
    non-finite float as null, as casekit's walk does). Its float tokens (shortest round-trip
    digits) are rewritten in ECMAScript's form; when that changed a byte, the result is parsed
    back and must equal ``value`` (a string that looked like a number and was rewritten
    declines). Also declined: a character outside the BMP anywhere, 16 digits in a row
    anywhere (an integer beyond 2**53 would be refused by RFC 8785), what orjson refuses (lone
    surrogates, integers beyond 64 bits, non-string keys). Several times faster than the walk
    on a ledger record (tests/test_canonical.py checks it against the reference)."""
    if type(value) is not dict and type(value) is not list:
        return None
    try:
        out = orjson.dumps(value, option=_ORJSON_SORTED)
    except (orjson.JSONEncodeError, TypeError):
        return None
    fixed = _orjson_floats(out)
    if fixed is None:
        return None
    out, changed = fixed
    if changed:
        try:
            if orjson.loads(out) != value:
                return None
        except orjson.JSONDecodeError:
            return None
    return out


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON-compatible value.

    Fast path: the C JSON encoder with sorted keys and no whitespace, which for ASCII keys,
    strings, safe integers and preformatted numbers produces exactly RFC 8785's bytes (the same
    escapes: ``\\" \\\\ \\b \\f \\n \\r \\t`` and lowercase ``\\u00xx`` for the other control
    characters, nothing else escaped). Anything else goes through the ``rfc8785`` reference
    implementation; tests/test_canonical.py checks the two agree on generated values.
    Tried first: :func:`fast_canonical` (orjson), which declines what it cannot prove."""
    fast = fast_canonical(value)
    return fast if fast is not None else Canonical(value).encode()


_MEMBER_MARK = "\x00casekit member\x00"


def fast_canonical_with_member(value: dict[str, Any], key: str, value_of: Callable[[bytes], str],
                               ) -> tuple[bytes, bytes] | None:
    """:meth:`Canonical.encode_with_member` by orjson (see :func:`fast_canonical`), or None
    when that route declines. The value is encoded once with the member holding a mark: RFC
    8785 sorts members by key, so cutting the member (and one comma) out gives the value's own
    canonical bytes, and putting ``value_of`` of those in place of the mark gives the line."""
    if type(value) is not dict or key in value or not key.isascii():
        return None
    try:
        out = orjson.dumps({**value, key: _MEMBER_MARK}, option=_ORJSON_SORTED)
    except (orjson.JSONEncodeError, TypeError):
        return None
    fixed = _orjson_floats(out)
    if fixed is None:
        return None
    template, changed = fixed
    mark = orjson.dumps(_MEMBER_MARK)
    member = orjson.dumps(key) + b":" + mark
    i = template.find(member)
    if i < 0 or template.count(mark) != 1:
        return None
    j = i + len(member)
    if template[j:j + 1] == b",":
        plain = template[:i] + template[j + 1:]
    elif template[i - 1:i] == b",":
        plain = template[:i - 1] + template[j:]
    else:
        plain = template[:i] + template[j:]
    if changed:
        try:
            if orjson.loads(plain) != value:
                return None
        except orjson.JSONDecodeError:
            return None
    extra = value_of(plain)
    if type(extra) is not str:
        return None
    try:
        encoded = orjson.dumps(extra)
    except orjson.JSONEncodeError:
        return None
    if not encoded.isascii():
        return None  # keep the rules of a non-ASCII string to the walk
    return plain, template[:i + len(member) - len(mark)] + encoded + template[j:]


class Canonical:
    """A value walked once, to be encoded as is and with extra top-level string members (the
    ledger hashes a record's canonical form without its ``hash``, then writes it with it)."""

    __slots__ = ("_value", "_prepared", "_floats")

    def __init__(self, value: Any) -> None:
        self._value = value
        floats = [0]
        try:
            self._prepared: Any = _prepare(value, floats)
        except _NeedsReference:
            self._prepared = _REFERENCE
        self._floats = floats[0]

    def encode(self, extra: dict[str, str] | None = None) -> bytes:
        prepared = self._prepared
        if extra and prepared is not _REFERENCE:
            if not isinstance(prepared, dict) or any(
                    type(k) is not str or not k.isascii() or type(v) is not str
                    for k, v in extra.items()):
                prepared = _REFERENCE
            else:
                prepared = {**prepared, **extra}
        if prepared is _REFERENCE:
            cleaned = _clean(self._value)
            return rfc8785.dumps({**cleaned, **extra} if extra else cleaned)
        return _encode_prepared(prepared, self._floats)


    def encode_with_member(self, key: str, value_of: Callable[[bytes], str],
                           ) -> tuple[bytes, bytes]:
        """(the canonical bytes, the canonical bytes with one more top-level string member
        ``key: value_of(canonical bytes)``), encoding the value once: the members sorting
        before and after ``key`` are encoded apart and the new member spliced between them
        (RFC 8785 orders members by key, so that is where it belongs). The ledger hashes a
        record's canonical form and writes it with its hash."""
        prepared = self._prepared
        if (prepared is _REFERENCE or not isinstance(prepared, dict) or key in prepared
                or not key.isascii()):
            plain = self.encode()
            return plain, self.encode({key: value_of(plain)})
        lo = _ENCODE({k: v for k, v in prepared.items() if k < key})[1:-1]
        hi = _ENCODE({k: v for k, v in prepared.items() if k > key})[1:-1]
        if self._floats:
            if lo.count(_SENTINEL) + hi.count(_SENTINEL) != 2 * self._floats:
                raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints")
            lo, hi = _NUMBER.sub(r"\1", lo), _NUMBER.sub(r"\1", hi)
        try:
            plain = ("{" + ",".join(filter(None, (lo, hi))) + "}").encode("utf-8")
        except UnicodeEncodeError as exc:
            raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints") from exc
        member = _ENCODE(key) + ":" + _ENCODE(value_of(plain))
        return plain, ("{" + ",".join(filter(None, (lo, member, hi))) + "}").encode("utf-8")


_REFERENCE = object()
"""Marks a value the fast path cannot encode exactly."""


def _encode_prepared(prepared: Any, floats: int) -> bytes:
    text = _ENCODE(prepared)
    if floats:
        if text.count(_SENTINEL) != 2 * floats:
            raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints")
        text = _NUMBER.sub(r"\1", text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints") from exc


def sha256_bytes(data: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_bytes(canonical_json(value))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return HASH_PREFIX + h.hexdigest()
