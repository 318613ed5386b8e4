"""Anchoring a run's ledger to the examiner: signed (and optionally timestamped) checkpoints.

The hash chain alone proves only that no record was changed *relative to its head*: whoever
rewrites a ledger can recompute every hash. So every run is anchored to a secret the forger does
not have: the examiner's Ed25519 signing key, created on first use and kept outside the run
folder (``$CASEKIT_EXAMINER_KEY``, else ``$CASEKIT_HOME/examiner_ed25519.pem``, else
``~/.config/casekit/examiner_ed25519.pem``; mode 0600). Its public key and fingerprint are in
``run_start``; the ledger writes a ``checkpoint`` record every ``every`` records and when it is
closed, signing :func:`statement` (the seq and hash of the record before it, and whether the
ledger was closed there). With a TSA, each checkpoint also carries an RFC 3161 token over the same
bytes, obtained during the run.

:func:`verify_anchoring` says what a ledger proves: which key (and TSA) anchors it, up to which
record, any unanchored tail, a missing ``run_end``. What an opposing expert needs and how they
check it without casekit: docs/anchoring.md.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casekit.canonical import canonical_json
from casekit.chain import VerifyResult
from casekit.errors import CasekitError
from casekit.records import Checkpoint, ExaminerKey, LedgerRecord, Note, RunEnd, RunStart

log = logging.getLogger(__name__)

KEY_ENV = "CASEKIT_EXAMINER_KEY"
HOME_ENV = "CASEKIT_HOME"
KEY_NAME = "examiner_ed25519.pem"
DEFAULT_CHECKPOINT_EVERY = 1000
"""Records between checkpoints: a checkpoint costs about 0.4 ms (docs/anchoring.md), so under
half a microsecond a record."""
KEY_NOTE = "examiner_key"
"""The note that names the signing key of a ledger whose run_start has none (older runs)."""
STATEMENT_TAG = "casekit-checkpoint/1"


class AnchorError(CasekitError):
    """The examiner key cannot be created, read or used (exit code 2)."""


def default_key_path() -> Path:
    """Where the examiner key lives: ``$CASEKIT_EXAMINER_KEY``, else
    ``$CASEKIT_HOME/examiner_ed25519.pem``, else ``$XDG_CONFIG_HOME`` (``~/.config``)
    ``/casekit/examiner_ed25519.pem``."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser() / KEY_NAME
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "casekit" / KEY_NAME


def fingerprint_of(public_raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_raw).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as the examiner may have written it (``sha256:`` optional, any case,
    spaces or colons between groups) in casekit's form; AnchorError if it is not one."""
    body = text.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
    if len(body) != 64 or any(c not in "0123456789abcdef" for c in body):
        raise AnchorError(f"--expect-key {text!r} is not a key fingerprint; give the 64 hex "
                          "digits the examiner disclosed (sha256:...)")
    return "sha256:" + body


def statement(covers_seq: int, head_hash: str, final: bool) -> bytes:
    """The bytes a checkpoint signs and timestamps (canonical JSON, RFC 8785)."""
    return canonical_json({"casekit": STATEMENT_TAG, "seq": covers_seq, "head_hash": head_hash,
                           "final": final})


@dataclass(frozen=True)
class SigningKey:
    """The examiner's key pair, loaded."""

    path: Path
    private: Any
    public_raw: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_raw)

    def identity(self) -> ExaminerKey:
        return ExaminerKey(public_key=base64.b64encode(self.public_raw).decode("ascii"),
                           fingerprint=self.fingerprint)

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode("ascii")


def load_or_create_key(path: Path | None = None) -> SigningKey:
    """The examiner key at ``path`` (default :func:`default_key_path`), created (mode 0600, in a
    0700 folder) if there is none. A key file others can read is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = path or default_key_path()
    raw = serialization.Encoding.Raw
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
        except FileExistsError:
            pass  # another casekit process made it just now: use theirs
        except OSError as exc:
            raise AnchorError(f"{path}: cannot create the examiner key ({exc.strerror}); give a "
                              f"writable place with --examiner-key or ${KEY_ENV}") from None
        else:
            log.warning("created the examiner signing key %s (fingerprint %s): back it up and "
                        "disclose its fingerprint with your reports", path,
                        fingerprint_of(key.public_key().public_bytes(
                            raw, serialization.PublicFormat.Raw)))
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise AnchorError(f"{path}: the examiner key is not a regular file; give the key "
                              f"file with --examiner-key or ${KEY_ENV}")
        if st.st_mode & 0o077:
            raise AnchorError(f"{path}: the examiner key can be read by others (mode "
                              f"{stat.S_IMODE(st.st_mode):03o}); run chmod 600 {path}")
        data = path.read_bytes()
    except OSError as exc:
        raise AnchorError(f"{path}: cannot read the examiner key ({exc.strerror}); give the "
                          f"key file with --examiner-key or ${KEY_ENV}") from None
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AnchorError(f"{path}: not an unencrypted PEM private key ({exc}); give the "
                          "examiner_ed25519.pem casekit made") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AnchorError(f"{path}: not an Ed25519 key; give the examiner_ed25519.pem casekit "
                          "made, or move this file away to make a new key")
    return SigningKey(path=path, private=loaded,
                      public_raw=loaded.public_key().public_bytes(raw,
                                                               serialization.PublicFormat.Raw))


Timestamper = Callable[[bytes], bytes]
"""Asks a TSA for an RFC 3161 token over SHA-256(data); the DER TimeStampResp (raises
CasekitError). The command line makes one from casekit.tsa.request_timestamp."""
TokenChecker = Callable[[bytes, bytes], Any]
"""(token, data) -> casekit.report.sign.TokenCheck-like verdict (``ok``, ``detail``,
``trusted``, ``gen_time``)."""


@dataclass(frozen=True)
class Anchor:
    """How a ledger being written is anchored: the key, the checkpoint interval, a TSA."""

    key: SigningKey
    every: int = DEFAULT_CHECKPOINT_EVERY
    tsa_url: str | None = None
    timestamper: Timestamper | None = None

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    @property
    def key_path(self) -> Path:
        return self.key.path

    def key_note(self) -> dict[str, Any]:
        return self.key.identity().model_dump()

    def checkpoint(self, base: dict[str, Any], final: bool) -> Checkpoint:
        """The checkpoint record for the chain head named by ``base`` (the ledger's base
        fields: its ``prev_hash`` and ``seq`` are the head it commits to)."""
        covers = int(base["seq"]) - 1
        head = str(base["prev_hash"])
        msg = statement(covers, head, final)
        token: str | None = None
        error: str | None = None
        if self.timestamper is not None:
            try:
                token = base64.b64encode(self.timestamper(msg)).decode("ascii")
            except CasekitError as exc:
                error = str(exc)[:500]
                log.warning("checkpoint at record %d not timestamped: %s", covers, error)
        return Checkpoint(**base, covers_seq=covers, head_hash=head, final=final,
                          key_fingerprint=self.key.fingerprint, signature=self.key.sign(msg),
                          tsa=self.tsa_url, timestamp=token, timestamp_error=error)


def http_timestamper(url: str, timeout: float = 30.0) -> Timestamper:
    """RFC 3161 tokens from the TSA at ``url`` (casekit.tsa.request_timestamp)."""

    def stamp(data: bytes) -> bytes:
        from casekit.tsa import request_timestamp

        return request_timestamp(data, url, timeout=timeout).response

    return stamp


def make_anchor(run_dir: Path, *, key_path: Path | None = None,
                every: int = DEFAULT_CHECKPOINT_EVERY, tsa_url: str | None = None,
                timestamper: Timestamper | None = None) -> Anchor:
    """The anchor of a ledger written in ``run_dir`` (a run's or an import's): the examiner key
    at ``key_path`` (default :func:`default_key_path`, made on first use; refused inside the
    run folder, which is handed over with the ledger), checkpoints every ``every`` records,
    timestamped by the TSA at ``tsa_url`` if one is given."""
    if every < 1:
        raise AnchorError(f"checkpoint interval {every}: give at least 1")
    key = load_or_create_key(key_path)
    if key.path.resolve().is_relative_to(run_dir.resolve()):
        raise AnchorError(f"{key.path}: the examiner key is inside the run folder, which is "
                          "handed over with the ledger; keep it elsewhere (--examiner-key, "
                          f"${KEY_ENV})")
    if tsa_url:
        from casekit.tsa import SignError, check_tsa_url

        try:
            check_tsa_url(tsa_url)
        except SignError as exc:
            raise AnchorError(str(exc)) from None
    if tsa_url and timestamper is None:
        timestamper = http_timestamper(tsa_url)
    return Anchor(key=key, every=every, tsa_url=tsa_url or None, timestamper=timestamper)


def public_key_of(identity: ExaminerKey) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(base64.b64decode(identity.public_key))


# --------------------------------------------------------------------------- verification


@dataclass
class AnchorReport:
    """What a ledger proves about itself, said plainly (see :meth:`lines`)."""

    path: Path
    records: int = 0
    head_hash: str | None = None
    key: ExaminerKey | None = None
    checkpoints: int = 0
    anchored_to: int | None = None
    """The seq of the last record a valid checkpoint covers (the checkpoint itself is one
    more)."""
    last_final: bool = False
    tsa: str | None = None
    timestamped: int = 0
    timestamped_to: int | None = None
    timestamp_time: str | None = None
    tsa_trusted: bool = False
    complete: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chain: VerifyResult | None = None
    """The hash chain as this pass re-derived it (what ``verify_chain`` says of the file),
    so that a caller needs no second pass for it. None when there was no ledger to read."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return self.problems[0] if self.problems else ""

    def summary(self) -> str:
        """One line: the anchor, or the first reason there is none."""
        if not self.ok:
            return f"NOT anchored: {self.reason}"
        by = f"examiner key {self.key.fingerprint if self.key else '?'} (Ed25519)"
        ts = ""
        if self.timestamped:
            ts = (f"; timestamped by {self.tsa} up to record {self.timestamped_to} "
                  f"({self.timestamp_time}"
                  + (", TSA trusted" if self.tsa_trusted else ", TSA not checked: give "
                     "--tsa-root") + ")")
        return (f"anchored: records 0-{self.anchored_to} of {self.records} signed by {by} in "
                f"{self.checkpoints} checkpoints, the last one closing the ledger{ts}")

    def lines(self) -> list[str]:
        out = [self.summary()]
        if self.key is not None:
            out.append(f"examiner key fingerprint: {self.key.fingerprint} (compare it with the "
                       "one the examiner disclosed, or give --expect-key)")
        out += [f"problem: {p}" for p in self.problems[1:]]
        out += self.notes
        return out


def verify_anchoring(path: Path, *, expect_key: str | None = None,
                     check_token: TokenChecker | None = None) -> AnchorReport:
    """Re-derive the chain and check its anchor: every checkpoint's signature with the key the
    ledger names (and ``expect_key``, the fingerprint the examiner disclosed), each timestamp
    token over its checkpoint (with ``check_token``; without, tokens are reported unchecked),
    that the ledger ends with a closing checkpoint (else it was truncated or the run killed: the
    tail is unanchored), and that the run has a ``run_end``.
    Never raises for a failed check (AnchorError for a malformed ``expect_key``)."""
    from casekit.ledger import ChainBroken, iter_records

    expected = normalize_fingerprint(expect_key) if expect_key else None
    rep = AnchorReport(path=path)
    try:
        last_checkpoint_seq = _scan(rep, iter_records(path), check_token, count=True)
    except ChainBroken as exc:
        rep.records = exc.records
        rep.chain = VerifyResult(False, exc.records, exc.head_hash, exc.problem, exc.torn_tail)
        rep.problems.insert(0, f"the hash chain breaks at {exc.problem}")
        return rep
    except CasekitError as exc:  # no ledger there
        rep.problems.insert(0, str(exc))
        return rep
    rep.chain = VerifyResult(True, rep.records, rep.head_hash)
    return _conclude(rep, expected, last_checkpoint_seq)


def anchoring_of_verified(path: Path, run_records: Iterable[LedgerRecord], records: int,
                          head_hash: str | None, *, expect_key: str | None = None,
                          check_token: TokenChecker | None = None) -> AnchorReport:
    """:func:`verify_anchoring` of a ledger whose chain a pass has just verified, from what
    that pass kept: its records other than attempts (``run_records``, in ledger order), how
    many records it has and its head. The anchor reads nothing of an attempt record, and in a
    verified chain each checkpoint's ``prev_hash`` is the hash of the record before it, so
    the report is the same as a pass of its own would make (test), without that pass."""
    expected = normalize_fingerprint(expect_key) if expect_key else None
    rep = AnchorReport(path=path)
    last_checkpoint_seq = _scan(rep, run_records, check_token, count=False)
    rep.records = records
    rep.head_hash = head_hash
    rep.chain = VerifyResult(True, records, head_hash)
    return _conclude(rep, expected, last_checkpoint_seq)


def _scan(rep: AnchorReport, records: Iterable[LedgerRecord],
          check_token: TokenChecker | None, *, count: bool) -> int | None:
    """Walk ``records`` (of a chain verified as they come), noting the key, the checkpoints'
    checks and the run's end in ``rep``; with ``count``, also the records and the head.
    Returns the seq of the last checkpoint (None if there is none)."""
    pub: Any = None
    last_checkpoint_seq: int | None = None
    for rec in records:
        if count:
            rep.records += 1
            rep.head_hash = rec.hash
        if isinstance(rec, RunStart) and rec.examiner_key is not None and rep.key is None:
            rep.key = rec.examiner_key
        elif isinstance(rec, Note) and rec.kind == KEY_NOTE and rep.key is None:
            try:
                rep.key = ExaminerKey.model_validate(rec.data)
            except ValueError:
                rep.problems.append(f"record {rec.seq}: the examiner_key note does not name "
                                    "a key")
        elif isinstance(rec, RunEnd) and rec.complete:
            rep.complete = True
        elif isinstance(rec, Checkpoint):
            rep.checkpoints += 1
            # The chain verified: prev_hash is the hash of the record before the checkpoint.
            problem = _check_checkpoint(rec, rec.prev_hash, rep, check_token)
            if problem is None and pub is None and rep.key is not None:
                try:
                    pub = public_key_of(rep.key)
                    if fingerprint_of(base64.b64decode(rep.key.public_key)) != \
                            rep.key.fingerprint:
                        problem = ("the examiner key's fingerprint is not the hash of its "
                                   "public key")
                except ValueError:
                    problem = "the examiner key recorded is not an Ed25519 public key"
            if problem is None and pub is not None:
                from cryptography.exceptions import InvalidSignature

                try:
                    pub.verify(base64.b64decode(rec.signature),
                               statement(rec.covers_seq, rec.head_hash, rec.final))
                except (InvalidSignature, ValueError):
                    fp = rep.key.fingerprint if rep.key else ""
                    problem = (f"the signature of the checkpoint at record {rec.seq} does "
                               f"not verify with the examiner key {fp}: the records it "
                               "covers were changed after it was signed")
            if problem is not None:
                rep.problems.append(problem)
            elif not rep.problems:
                rep.anchored_to = rec.covers_seq
            last_checkpoint_seq = rec.seq
            rep.last_final = rec.final
    return last_checkpoint_seq


def _conclude(rep: AnchorReport, expected: str | None,
              last_checkpoint_seq: int | None) -> AnchorReport:
    """The problems of the ledger as a whole, once its records were walked."""
    if rep.records == 0:
        rep.problems.insert(0, "the ledger is empty (0 records): there is nothing to verify")
        return rep
    if rep.key is None:
        rep.problems.insert(0, "no examiner key is named and no checkpoint is signed (a ledger "
                               "of casekit before anchoring, or its anchor was stripped): its "
                               "hashes can be recomputed by anyone who rewrites it")
    elif rep.checkpoints == 0:
        rep.problems.insert(0, "no checkpoint: nothing in the ledger is signed by the examiner "
                               "key (the checkpoints were removed, or the ledger truncated)")
    if expected is not None and rep.key is not None and rep.key.fingerprint != expected:
        rep.problems.insert(0, f"the ledger is signed by key {rep.key.fingerprint}, not by the "
                               f"examiner key {expected} (--expect-key): someone else signed it")
    if last_checkpoint_seq is not None and (last_checkpoint_seq != rep.records - 1
                                            or not rep.last_final):
        tail = rep.records - 1 - last_checkpoint_seq
        rep.problems.append(
            f"the ledger ends at record {rep.records - 1} without a closing checkpoint: "
            + (f"the {tail} records after the last checkpoint (record {last_checkpoint_seq}) "
               "are unanchored" if tail else "its last checkpoint is not a closing one")
            + " (truncated, or the run was killed and not resumed)")
    if not rep.complete:
        rep.problems.append("incomplete run: no run_end record says the run completed "
                            "(interrupted, or its end was removed)")
    return rep


def _check_checkpoint(rec: Checkpoint, prev_hash: str | None, rep: AnchorReport,
                      check_token: TokenChecker | None) -> str | None:
    if rec.covers_seq != rec.seq - 1 or rec.head_hash != prev_hash:
        return (f"the checkpoint at record {rec.seq} names record {rec.covers_seq} "
                f"({rec.head_hash}), not the record before it")
    if rep.key is None:
        return (f"the checkpoint at record {rec.seq} comes before any examiner key is named")
    if rec.key_fingerprint != rep.key.fingerprint:
        return (f"the checkpoint at record {rec.seq} is signed by key {rec.key_fingerprint}, "
                f"not the run's examiner key {rep.key.fingerprint}")
    if rec.timestamp is not None:
        if check_token is None:
            note = "timestamps of the checkpoints not checked (casekit verify checks them)"
            if note not in rep.notes:
                rep.notes.append(note)
            return None
        try:
            tc = check_token(base64.b64decode(rec.timestamp),
                             statement(rec.covers_seq, rec.head_hash, rec.final))
        except ImportError:
            rep.notes.append("timestamps not checked: pip install 'casekit[sign]'")
            return None
        if not tc.ok:
            detail = str(tc.detail).replace("the manifest.json", "the checkpoint").replace(
                "manifest.tsr", "the token")
            return f"the timestamp of the checkpoint at record {rec.seq}: {detail}"
        rep.timestamped += 1
        rep.timestamped_to = rec.covers_seq
        rep.tsa = rec.tsa
        rep.tsa_trusted = tc.trusted
        if tc.gen_time is not None:
            rep.timestamp_time = tc.gen_time.isoformat()
    return None
