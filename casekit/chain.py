"""The hash chain of a ledger, read side: a record's hash, one line checked on its own, the
chain walked in order, and the scans the analysis and the report make of a ledger file.

Every record carries ``prev_hash`` (the previous record's ``hash``) and ``hash`` =
``"sha256:" + SHA-256`` of the canonical JSON (RFC 8785) of the record without its ``hash``.
The writer (:mod:`casekit.ledger`) appends records; everything here only reads, in one
streaming pass with memory bounded by a chunk and the longest line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, get_args

import orjson
import rfc8785
from pydantic import TypeAdapter, ValidationError

from casekit.canonical import (
    Canonical,
    canonical_json,
    fast_canonical_with_member,
    sha256_bytes,
)
from casekit.errors import LedgerError
from casekit.records import LEDGER_RECORD_SCHEMA, LedgerRecord

log = logging.getLogger(__name__)

LEDGER_NAME = "ledger.jsonl"
_ADAPTER: TypeAdapter[LedgerRecord] = TypeAdapter(LEDGER_RECORD_SCHEMA)
_KINDS = frozenset(t.model_fields["record_type"].default for t in get_args(LedgerRecord))


def schema_complaint(exc: ValidationError) -> str:
    """The first thing a record's schema found wrong, with where it is in the record
    (``status: Input should be 'ok', 'refusal' or 'error'``; ``attempt.prompt: ...`` is the
    planned attempt's prompt)."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    if loc and loc[0] in _KINDS:
        loc = loc[1:]  # the kind the record names (validation reads that kind's schema)
    where = ".".join(str(part) for part in loc)
    return f"{where}: {err['msg']}" if where else err["msg"]


def record_hash(payload: dict[str, Any]) -> str:
    """Hash of a record's canonical JSON without its ``hash`` field."""
    body = {k: v for k, v in payload.items() if k != "hash"}
    return sha256_bytes(canonical_json(body))


def _canonical_with_hash(body: dict[str, Any]) -> tuple[str, bytes]:
    """(the record's hash: SHA-256 of its canonical JSON without ``hash``, the canonical JSON
    with it), walking and encoding the record once."""
    digest: list[str] = []

    def hash_of(plain: bytes) -> str:
        digest.append(sha256_bytes(plain))
        return digest[0]

    fast = fast_canonical_with_member(body, "hash", hash_of)
    if fast is not None:
        return digest[0], fast[1]
    digest.clear()

    _, line = Canonical(body).encode_with_member("hash", hash_of)
    return digest[0], line


# A line is checked for canonical form by re-encoding it. The reference encoder
# (casekit.canonical, RFC 8785) walks the record in Python; orjson with sorted keys writes the
# same bytes for the same value except where their number and key-order rules differ: integral
# floats ("1.0" for RFC 8785's "1"), exponents, integers beyond 2**53, and keys outside the
# Basic Multilingual Plane (RFC 8785 sorts by UTF-16 code units). A line equal to orjson's
# sorted encoding of its own parse that holds no number token of those forms and no character
# outside the BMP is therefore in canonical form, and its hash is that of orjson's encoding
# without the ``hash`` member. Any other line takes the reference path (tests/test_ledger.py
# checks both agree). Negative exponents are written alike by both; a positive one ("1e+16")
# only where they differ. The patterns also match text inside strings that merely looks like
# such a number: that only sends the line the reference way.
_INTEGRAL_FLOAT = re.compile(rb"\.0[,\]}]")
_ASTRAL_UTF8 = re.compile(rb"[\xf0-\xf4]")
#: Integers beyond 2**53 (which RFC 8785 refuses) make orjson raise under OPT_STRICT_INTEGER:
#: its limit is the reference's (+-(2**53 - 1)), at no cost, where three regex scans of the
#: line for 16-digit tokens took a quarter of the reading's time.
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _fast_hash(payload: dict[str, Any], raw: bytes) -> str | None:
    """The record's hash when ``raw`` is provably its canonical line by the cheap route above,
    else None (the caller then takes the reference path)."""
    try:
        if orjson.dumps(payload, option=_SORTED) != raw:
            return None
    except (orjson.JSONEncodeError, TypeError):
        return None
    # b"+" first: memchr finds a rare byte at once, where b"e+" stops at every "e".
    if ((not raw.isascii() and _ASTRAL_UTF8.search(raw))
            or (b"+" in raw and (b"e+" in raw or b"E+" in raw))
            or _INTEGRAL_FLOAT.search(raw)):
        return None
    return sha256_bytes(_without_hash(payload, raw))


def _without_hash(payload: dict[str, Any], raw: bytes) -> bytes:
    """The canonical line of ``payload`` without its ``hash`` member, given ``raw``, its
    canonical line with it: ``raw`` with the member's bytes cut out where they occur exactly
    once (a nested ``hash`` member holding the same value would make two: then encoded
    afresh)."""
    if "hash" not in payload:
        return raw
    value = payload["hash"]
    if type(value) is str:
        member = b'"hash":' + orjson.dumps(value)
        at = raw.find(member)
        if at > 0 and raw.find(member, at + 1) < 0:
            end = at + len(member)
            if raw[at - 1] == _COMMA:  # "...,"hash":v}" or "...,"hash":v,..."
                return raw[:at - 1] + raw[end:]
            if raw[end] == _COMMA:  # the first member: "{"hash":v,..."
                return raw[:at] + raw[end + 1:]
            return raw[:at] + raw[end:]  # the only one: "{}"
    return orjson.dumps({k: v for k, v in payload.items() if k != "hash"}, option=_SORTED)


_COMMA = ord(",")


@dataclass(frozen=True)
class ChainProblem:
    line: int
    """1-based line number in the ledger file."""
    seq: int | None
    reason: str

    def __str__(self) -> str:
        seq = f" (record seq {self.seq})" if self.seq is not None else ""
        return f"line {self.line}{seq}: {self.reason}"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    head_hash: str | None
    problem: ChainProblem | None = None
    torn_tail: bool = False


_READ_CHUNK = 1 << 20


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, newline-terminated) for every line, read in 1 MiB
    chunks (memory is one chunk and the longest line, whatever the ledger's size)."""
    with open(path, "rb") as fh:
        n = 0
        rest = b""
        while chunk := fh.read(_READ_CHUNK):
            data = rest + chunk if rest else chunk
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                n += 1
                yield n, data[start:end], True
                start = end + 1
            rest = data[start:]
        if rest:
            yield n + 1, rest, False


class ChainBroken(LedgerError):
    """A ledger stops verifying at ``problem``: the records before it verified (``records`` of
    them, the last with hash ``head_hash``)."""

    def __init__(self, path: Path, problem: ChainProblem, records: int, head_hash: str | None,
                 torn_tail: bool = False) -> None:
        super().__init__(f"{path}: {problem}; the ledger does not verify, so nothing derived "
                         "from it can be trusted (restore it from a copy)")
        self.problem = problem
        self.records = records
        self.head_hash = head_hash
        self.torn_tail = torn_tail


def iter_records(path: Path) -> Iterator[LedgerRecord]:
    """Every record of a ledger, verified as it is read (see :func:`iter_verified_lines`)."""
    for _, _, record in iter_verified_lines(path):
        yield record


class CheckedLine(NamedTuple):
    """What checking one ledger line on its own found (:func:`check_line`): everything but
    the checks that need the lines before it (the ``prev_hash`` link and the sequence
    number), which :class:`ChainCursor` makes in ledger order. Small and picklable: analysis
    workers check the lines of their batches and send this back."""

    seq: int | None
    prev_hash: Any
    """The line's ``prev_hash`` member as recorded."""
    hash: str | None
    """The hash of the line's content (None when it could not be computed)."""
    first: str | None
    """A problem found before the link check (not JSON, not an object)."""
    torn: bool
    content: str | None
    """A problem found after the link check: hash mismatch, canonical form."""
    schema: str | None
    """The schema's complaint, if the record does not match it."""


def check_line(raw: bytes, terminated: bool, *, validate: bool = True,
               ) -> tuple[CheckedLine, LedgerRecord | None]:
    """One line checked on its own (parsed once by orjson, canonicalized once, validated once
    when ``validate``): the findings, and the record when it matched the schema."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not terminated:
            return CheckedLine(None, None, None, "torn last line (incomplete write); `casekit "
                               "run` moves it aside", True, None, None), None
        return CheckedLine(None, None, None, "not valid JSON", False, None, None), None
    if not isinstance(payload, dict):
        return CheckedLine(None, None, None, "not a JSON object", False, None, None), None
    seq = payload.get("seq") if isinstance(payload.get("seq"), int) else None
    prev_hash = payload.get("prev_hash")
    fast = _fast_hash(payload, raw)
    if fast is not None:
        expect, line = fast, raw
    else:
        try:
            expect, line = _canonical_with_hash({k: v for k, v in payload.items()
                                                 if k != "hash"})
        except (rfc8785.CanonicalizationError, rfc8785.IntegerDomainError) as exc:
            return CheckedLine(seq, prev_hash, None, None, False,
                               f"not canonicalizable JSON ({exc})", None), None
    if payload.get("hash") != expect:
        return CheckedLine(seq, prev_hash, expect, None, False,
                           f"hash mismatch: recorded {payload.get('hash')!r}, content hashes "
                           f"to {expect!r} (the record was edited)", None), None
    if line != raw:
        return CheckedLine(seq, prev_hash, expect, None, False, "line is not in canonical "
                           "JSON form (the file was re-serialized)", None), None
    record: LedgerRecord | None = None
    schema: str | None = None
    if validate:
        try:
            record = _ADAPTER.validate_python(payload)
        except ValidationError as exc:
            schema = schema_complaint(exc)
    return CheckedLine(seq, prev_hash, expect, None, False, None, schema), record


class ChainCursor:
    """The in-order half of the chain check: each line's ``prev_hash`` links to the previous
    line's hash and its sequence number counts the records; raises :class:`ChainBroken` at
    the first problem, in :func:`verify_chain`'s order (JSON object, ``prev_hash`` link,
    hash, canonical form, sequence number, schema)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.prev: str | None = None
        """The hash of the last record that verified (the chain's head so far)."""
        self.count = 0
        """Records that verified so far."""

    def advance(self, lineno: int, c: CheckedLine) -> None:
        """Take the next line's findings; raises ChainBroken if the line does not verify."""
        def broken(seq: int | None, reason: str, torn: bool = False) -> ChainBroken:
            return ChainBroken(self.path, ChainProblem(lineno, seq, reason), self.count,
                               self.prev, torn)

        if c.first is not None:
            raise broken(None, c.first, c.torn)
        if c.prev_hash != self.prev:
            raise broken(c.seq, f"prev_hash {c.prev_hash!r} does not match the previous "
                         f"record's hash {self.prev!r} (a record was removed, reordered or "
                         "inserted)")
        if c.content is not None:
            raise broken(c.seq, c.content)
        if c.seq != self.count:
            raise broken(c.seq, f"sequence number {c.seq} where {self.count} was expected")
        if c.schema is not None:
            raise broken(c.seq, f"record does not match the ledger schema: {c.schema}")
        self.prev = c.hash
        self.count += 1


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, newline-terminated) of every line of a ledger, not
    checked: for a reader that checks them with :func:`check_line` and :class:`ChainCursor`
    (the analysis, whose workers check the lines of their batches)."""
    if not path.exists():
        raise LedgerError(f"{path}: no ledger here; give the run folder that holds {LEDGER_NAME}")
    return _iter_lines(path)


def iter_verified_lines(path: Path) -> Iterator[tuple[int, bytes, LedgerRecord]]:
    """(line number, the line's bytes, the record) of every record of a ledger, verified as it
    is read, in one streaming pass: each line is
    parsed once (orjson), canonicalized once (its hash and its canonical form come out of one
    encoding) and validated once against the schema. Raises :class:`ChainBroken` at the first
    record that does not verify, after yielding the ones before it: a caller that must not act
    on a ledger that fails later either consumes it all first or can undo what it did.

    The checks and their order are :func:`verify_chain`'s: JSON object, ``prev_hash`` link,
    hash, canonical form, sequence number, schema (:func:`check_line`, then
    :class:`ChainCursor`)."""
    cursor = ChainCursor(path)
    for lineno, raw, terminated in iter_lines(path):
        checked, record = check_line(raw, terminated)
        cursor.advance(lineno, checked)
        assert record is not None  # advance raised otherwise
        yield lineno, raw, record


def verify_chain(path: Path) -> VerifyResult:
    """Re-derive the hash chain; name the first bad record."""
    count = 0
    head: str | None = None
    try:
        for rec in iter_records(path):
            count += 1
            head = rec.hash
    except ChainBroken as exc:
        return VerifyResult(False, exc.records, exc.head_hash, exc.problem, exc.torn_tail)
    return VerifyResult(True, count, head)


_RETRY_OF = b'"retry_of":'


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the file's bytes contain ``needle`` (read in 1 MiB chunks, each searched after
    the last ``len(needle) - 1`` bytes read before it, so a needle across chunks is found)."""
    keep = len(needle) - 1
    with open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(_READ_CHUNK):
            buf = tail + chunk
            if needle in buf:
                return True
            tail = buf[-keep:] if keep else b""
    return False


def superseded_seqs(path: Path) -> dict[int, int]:
    """Seq of each failed attempt record that a later ``--retry-failed`` record supersedes ->
    the seq of that later record (analysis uses the last try). One scan of the bytes: only
    lines holding the member name are parsed (inside a JSON string the quotes would be
    escaped, so an output cannot fake one; a nested key is not the record's own). Not
    verified: the caller reads the ledger through :func:`iter_verified_lines` too."""
    out: dict[int, int] = {}
    if not path.is_file() or not _holds(path, _RETRY_OF):
        return out  # most ledgers: no retry at all, found without splitting lines
    for _, raw, _ in _iter_lines(path):
        if _RETRY_OF not in raw:
            continue
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(payload, dict) and payload.get("record_type") == "attempt" and \
                isinstance(payload.get("retry_of"), int) and isinstance(payload.get("seq"), int):
            out[payload["retry_of"]] = payload["seq"]
    return out


def read_records(path: Path) -> list[LedgerRecord]:
    """All records of a ledger whose chain verifies (raises LedgerError naming the bad record).
    Holds every record: prefer :func:`iter_records` where one pass is enough."""
    return list(iter_records(path))
