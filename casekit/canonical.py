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


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON-compatible value.

    Fast path: the C JSON encoder with sorted keys and no whitespace, which for ASCII keys,
    strings, safe integers and preformatted numbers produces exactly RFC 8785's bytes (the same
    escapes: ``\\" \\\\ \\b \\f \\n \\r \\t`` and lowercase ``\\u00xx`` for the other control
    characters, nothing else escaped). Anything else goes through the ``rfc8785`` reference
    implementation; tests/test_canonical.py checks the two agree on generated values."""
    return Canonical(value).encode()


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
