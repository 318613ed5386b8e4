"""A served model's tokenizer, given by the case file (``params.tokenizer``): what lets a server
model (vLLM, a llama.cpp server) run the p_z census, which plans windows of model tokens
before any request is sent (see :mod:`casekit.strategies.census`).

Two formats:

* a Hugging Face ``tokenizer.json``, read with the ``tokenizers`` package. Token bytes are
  exact for two families, detected from the file's model / normalizer / pre-tokenizer /
  decoder configuration:

  - **byte-level BPE** (GPT-2, SmolLM2, Llama 3, Qwen): a ``ByteLevel`` decoder; each
    character of a token string is one byte through GPT-2's byte-to-unicode table (inverted
    here exactly as the ``ByteLevel`` decoder does). Normalizer: none or NFC.
  - **Metaspace / SentencePiece** (Llama 2, Mistral, Gemma): a ``Metaspace`` pre-tokenizer or
    decoder, or a ``Replace(" ", "▁")`` normalizer; ``▁`` is a space, and with byte fallback a
    token ``<0xNN>`` is the single byte NN (so a character may be split over several tokens;
    the census drops windows whose boundaries fall inside one). BPE or Unigram models. A
    literal ``▁`` (U+2581) in the text reads as a space to these tokenizers, as it does to the
    model, so a segment holding one fails the census's byte-for-byte check (refused, never
    mis-mapped).

  Any other family (WordPiece, a normalizer that rewrites the text such as NFKC or lower
  case, a pre-tokenizer that drops whitespace) is refused with a one-line error.
* a ``.gguf`` file: its vocabulary only (``vocab_only``), through the local provider's
  loader; llama.cpp applies the GGUF's own settings (e.g. ``add_space_prefix``).

**The space a tokenizer prepends to the first word** (SentencePiece's ``add_dummy_prefix``;
``Metaspace`` ``prepend_scheme: first/always``; a ``Prepend("▁")`` normalizer; ``ByteLevel``
``add_prefix_space``). The census needs token pieces that give the text back byte for byte,
so it plans with :meth:`HFTokenizer.token_ids`, which tokenizes text *as it reads in
context*: the same file with that prefix switched off (a word at the segment's start is
tokenized as it is when text precedes it only if the text precedes it with no space, e.g.
``It``, not ``▁It``). The server, scoring a window, tokenizes the prefix's raw text with its
prefix on, so the window's first prefix token may differ from the planned one, as the BOS it
adds does; the continuation's tokens do not change (the prefix touches only the first word).
:meth:`HFTokenizer.prompt_ids` tokenizes exactly as the file says (prefix on, no special
tokens): it is what the run-time cross-check compares with the server's ``/tokenize``.

Both formats are identified by the file's SHA-256 (``params.tokenizer_sha256`` pins it), which
the run manifest records with the format and family (:class:`TokenizerFileInfo`).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from casekit.canonical import sha256_file
from casekit.case import ModelParamsError
from casekit.case_yaml import read_regular_file
from casekit.errors import CasekitError, ProviderUnavailable

log = logging.getLogger(__name__)

SUPPORTED = ("a Hugging Face tokenizer.json of the byte-level BPE family (GPT-2, SmolLM2, "
             "Llama 3, Qwen) or the Metaspace/SentencePiece family with byte fallback (Llama 2, "
             "Mistral, Gemma), or the model's .gguf")

TOKENIZER_MAX_BYTES = 64 << 20
"""A tokenizer.json is read whole and parsed (some ten times its size in memory): the largest
published ones are some 35 MB (Gemma 3), so a larger file is refused. (A .gguf is a model file,
read in place by llama.cpp: it has to be a regular file, of any size.)"""

BYTE_FALLBACK_RE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SPACE_MARK = "\u2581"  # ▁

# Components that leave the text as it is (so token bytes can be mapped back to it).
_PRE_OK = {"ByteLevel", "Split", "Digits", "Punctuation", "Metaspace", "Sequence"}
_NORM_OK_BYTE_LEVEL = {"NFC", "Sequence"}
_NORM_OK_METASPACE = {"NFC", "Prepend", "Replace", "Sequence"}


class TokenizerFileInfo(BaseModel):
    """Which tokenizer planned a model's census windows (recorded in the run manifest)."""

    model_config = ConfigDict(frozen=True)

    path: str
    """As given in the case file (relative to it)."""
    format: Literal["tokenizer.json", "gguf"]
    family: str
    """``byte-level BPE``, ``Metaspace BPE`` / ``Metaspace Unigram`` (``+ byte fallback``), or
    ``gguf vocabulary (llama.cpp)``."""
    sha256: str
    bytes: int
    prepends_space: bool | None
    """Whether the tokenizer prepends a space to the first word of a text (switched off for
    planning; see the module docstring). None for a GGUF (llama.cpp decides)."""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-unicode table (``ByteLevel``): printable bytes map to themselves, the
    others to the code points from 256 on, in byte order."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


BYTE_DECODER: dict[str, int] = {c: b for b, c in bytes_to_unicode().items()}


def _flatten(node: Any, key: str) -> list[dict[str, Any]]:
    """The components of a normalizer / pre-tokenizer / decoder, ``Sequence`` unrolled."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        out = []
        for child in node.get(key) or []:
            out.extend(_flatten(child, key))
        return out
    return [node]


class UnsupportedTokenizer(ModelParamsError):
    """A tokenizer.json whose family casekit cannot map back to text byte for byte (a
    params error: :func:`load_case_tokenizer` places it at ``params.tokenizer``)."""


def detect_family(data: dict[str, Any]) -> tuple[str, bool]:
    """(family, prepends a space) of a parsed tokenizer.json, or UnsupportedTokenizer."""
    model = data.get("model") or {}
    mtype = model.get("type")
    norms = _flatten(data.get("normalizer"), "normalizers")
    pres = _flatten(data.get("pre_tokenizer"), "pretokenizers")
    decs = _flatten(data.get("decoder"), "decoders")
    pre_t = [p.get("type") for p in pres]
    dec_t = [d.get("type") for d in decs]
    norm_t = [n.get("type") for n in norms]
    desc = (f"model {mtype}, normalizer {norm_t or None}, pre-tokenizer {pre_t or None}, "
            f"decoder {dec_t or None}")
    space_to_mark = any(n.get("type") == "Replace" and (n.get("pattern") or {}).get("String")
                        == " " and n.get("content") == SPACE_MARK for n in norms)
    if "ByteLevel" in dec_t:
        family, ok_norm = "byte-level BPE", _NORM_OK_BYTE_LEVEL
        if mtype != "BPE":
            raise UnsupportedTokenizer(f"a ByteLevel decoder over a {mtype} model ({desc}) is "
                                       f"not supported; give {SUPPORTED}")
    elif "Metaspace" in pre_t or "Metaspace" in dec_t or space_to_mark:
        if mtype not in ("BPE", "Unigram"):
            raise UnsupportedTokenizer(f"a Metaspace tokenizer over a {mtype} model ({desc}) is "
                                       f"not supported; give {SUPPORTED}")
        family, ok_norm = f"Metaspace {mtype}", _NORM_OK_METASPACE
        if model.get("byte_fallback"):
            family += " + byte fallback"
    else:
        raise UnsupportedTokenizer(f"tokenizer family not supported ({desc}); give {SUPPORTED}")
    for n in norms:
        t = n.get("type")
        bad = t not in ok_norm or (t == "Prepend" and n.get("prepend") != SPACE_MARK) or (
            t == "Replace" and not ((n.get("pattern") or {}).get("String") == " "
                                    and n.get("content") == SPACE_MARK))
        if bad:
            raise UnsupportedTokenizer(
                f"the normalizer {t} rewrites the text ({desc}), so tokens cannot be mapped "
                f"back to it byte for byte; give {SUPPORTED}")
    for p in pres:
        if p.get("type") not in _PRE_OK:
            raise UnsupportedTokenizer(
                f"the pre-tokenizer {p.get('type')} drops or rewrites text ({desc}); give "
                f"{SUPPORTED}")
    prepends = any(n.get("type") == "Prepend" for n in norms) or any(
        (p.get("type") == "Metaspace" and (p.get("prepend_scheme") in ("first", "always")
                                           or p.get("add_prefix_space") is True))
        or (p.get("type") == "ByteLevel" and p.get("add_prefix_space") is True) for p in pres)
    return family, prepends


def _without_prefix(node: Any, key: str) -> Any:
    """A normalizer / pre-tokenizer config with the first-word space switched off."""
    if not isinstance(node, dict):
        return node
    if node.get("type") == "Sequence":
        kids = [_without_prefix(c, key) for c in node.get(key) or []]
        kids = [c for c in kids if c is not None]
        return {**node, key: kids}
    if node.get("type") == "Prepend":
        return None
    if node.get("type") == "Metaspace":
        out = dict(node)
        if "prepend_scheme" in out:
            out["prepend_scheme"] = "never"
        if "add_prefix_space" in out:
            out["add_prefix_space"] = False
        return out
    if node.get("type") == "ByteLevel" and node.get("add_prefix_space"):
        return {**node, "add_prefix_space": False}
    return node


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise ProviderUnavailable(f"the tokenizers package is not installed ({exc}); run: pip "
                                  "install tokenizers") from exc
    return tokenizers


class HFTokenizer:
    """A ``tokenizer.json`` as a census :class:`~casekit.tokenizer.Tokenizer` (exact bytes)."""

    def __init__(self, data: dict[str, Any], info: TokenizerFileInfo, name: str) -> None:
        tk = _tokenizers()
        self.name = name
        self.info = info
        self.family = info.family
        self._byte_level = info.family.startswith("byte-level")
        self._byte_fallback = bool((data.get("model") or {}).get("byte_fallback"))
        try:
            self._model = tk.Tokenizer.from_str(json.dumps(data))
            plan = data
            if info.prepends_space:
                plan = copy.deepcopy(data)
                plan["normalizer"] = _without_prefix(plan.get("normalizer"), "normalizers")
                plan["pre_tokenizer"] = _without_prefix(plan.get("pre_tokenizer"),
                                                        "pretokenizers")
            self._plan = self._model if plan is data else tk.Tokenizer.from_str(json.dumps(plan))
        except Exception as exc:  # noqa: BLE001 - the Rust loader raises plain Exception
            raise UnsupportedTokenizer(f"the tokenizers package cannot load it ({exc}); give "
                                       f"{SUPPORTED}") from None
        self._added = {int(t["id"]): str(t["content"]) for t in data.get("added_tokens") or []
                       if isinstance(t, dict) and "id" in t}
        self.special_ids = frozenset(int(t["id"]) for t in data.get("added_tokens") or []
                                     if isinstance(t, dict) and t.get("special"))
        self._pieces: dict[int, bytes] = {}

    def token_ids(self, text: str) -> list[int]:
        """Ids of ``text`` as it reads in context: no special tokens, no first-word space."""
        return list(self._plan.encode(text, add_special_tokens=False).ids)

    def prompt_ids(self, text: str) -> list[int]:
        """Ids of ``text`` sent as a prompt, as the file's tokenizer gives them (its first-word
        space included) without special tokens: what a server adds its BOS to."""
        return list(self._model.encode(text, add_special_tokens=False).ids)

    def piece(self, token_id: int) -> bytes:
        got = self._pieces.get(token_id)
        if got is None:
            got = self._pieces[token_id] = self._piece(token_id)
        return got

    def _piece(self, token_id: int) -> bytes:
        tok = self._model.id_to_token(token_id)
        if tok is None:
            raise CasekitError(f"tokenizer {self.name!r} has no token id {token_id}")
        if self._byte_level:
            # As the ByteLevel decoder: table characters are bytes, others pass as UTF-8.
            return b"".join(bytes([BYTE_DECODER[c]]) if c in BYTE_DECODER else c.encode()
                            for c in tok)
        if self._byte_fallback and token_id not in self._added:
            m = BYTE_FALLBACK_RE.match(tok)
            if m:
                return bytes([int(m.group(1), 16)])
        return tok.replace(SPACE_MARK, " ").encode("utf-8")


class GGUFVocab:
    """A ``.gguf`` file's vocabulary (the local provider's loader) with the case's file info."""

    def __init__(self, inner: Any, info: TokenizerFileInfo) -> None:
        self._inner = inner
        self.info = info
        self.family = info.family
        self.name = inner.name
        self.special_ids = inner.special_ids

    def token_ids(self, text: str) -> list[int]:
        return list(self._inner.token_ids(text))

    def prompt_ids(self, text: str) -> list[int]:
        return list(self._inner.token_ids(text))

    def piece(self, token_id: int) -> bytes:
        return bytes(self._inner.piece(token_id))


CaseTokenizer = HFTokenizer | GGUFVocab


def resolve_tokenizer_path(value: Any, base_dir: Path, model_id: str) -> Path:
    """The file named by ``params.tokenizer``: relative to the case file and inside its folder
    (checked on the path as written, so a symlink in the case folder may point elsewhere: the
    file is identified by its SHA-256 either way)."""
    if not isinstance(value, str) or not value.strip():
        raise ModelParamsError("must be the path of the served model's tokenizer.json or "
                               f".gguf, relative to the case file (got {value!r})",
                               model_id=model_id, loc=("tokenizer",))
    rel = Path(value)
    if rel.is_absolute():
        raise ModelParamsError("absolute paths are not allowed; copy (or link) the tokenizer "
                               "file into the case folder and give its path relative to the "
                               "case file", model_id=model_id, loc=("tokenizer",))
    base = Path(os.path.normpath(base_dir.absolute()))
    full = Path(os.path.normpath(base / rel))
    if not full.is_relative_to(base):
        raise ModelParamsError(f"{value!r} leaves the case folder; copy (or link) the "
                               "tokenizer file into the case folder", model_id=model_id,
                               loc=("tokenizer",))
    return full


def load_case_tokenizer(value: Any, expected_sha256: Any, base_dir: Path, model_id: str,
                        model_name: str) -> CaseTokenizer:
    """The tokenizer named by a model's ``params.tokenizer`` (checked against
    ``params.tokenizer_sha256`` when given). Errors are one line naming the param and the fix."""
    path = resolve_tokenizer_path(value, base_dir, model_id)
    if expected_sha256 is not None and not (isinstance(expected_sha256, str) and re.fullmatch(
            r"(sha256:)?[0-9a-f]{64}", expected_sha256)):
        raise ModelParamsError("must be 64 lower-case hex digits, optionally after sha256: "
                               f"(got {expected_sha256!r})", model_id=model_id,
                               loc=("tokenizer_sha256",))
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ModelParamsError(
                f"{value!r} is not a regular file (a directory, FIFO or device); give the path "
                "of the served model's tokenizer.json (or .gguf), relative to the case file",
                model_id=model_id, loc=("tokenizer",))
        if path.suffix.lower() != ".gguf" and st.st_size > TOKENIZER_MAX_BYTES:
            raise ModelParamsError(
                f"{value!r} is {st.st_size:,} bytes, over the limit of {TOKENIZER_MAX_BYTES:,} "
                "bytes for a tokenizer.json; give the served model's own tokenizer.json (or "
                "its .gguf)", model_id=model_id, loc=("tokenizer",))
        if path.suffix.lower() == ".gguf":  # model files: hashed once per (size, mtime)
            from casekit.providers.file_hash import file_sha256

            digest = file_sha256(path)
        else:
            digest = sha256_file(path)
    except OSError as exc:
        raise ModelParamsError(
            f"cannot read {value!r} ({exc.strerror or exc}); give the path of the served "
            "model's tokenizer.json (or .gguf), relative to the case file", model_id=model_id,
            loc=("tokenizer",)) from None
    if expected_sha256 is not None:
        want = expected_sha256 if expected_sha256.startswith("sha256:") else (
            "sha256:" + expected_sha256)
        if want != digest:
            raise ModelParamsError(
                f"{value!r} has {digest}, not {want}; give the tokenizer file the case was "
                "written for, or correct the hash", model_id=model_id,
                loc=("tokenizer_sha256",))
    try:
        return _load(str(path), str(value), digest, st.st_size, st.st_mtime_ns, model_name)
    except ModelParamsError as exc:
        raise type(exc)(exc.problem, model_id=model_id, loc=("tokenizer",)) from None
    except CasekitError as exc:  # e.g. the tokenizers package missing: not the param's fault
        raise type(exc)(f"model {model_id!r}: params.tokenizer: {exc}") from None


@functools.lru_cache(maxsize=8)
def _load(path: str, shown: str, digest: str, size: int, mtime_ns: int,
          model_name: str) -> CaseTokenizer:
    """Loaded once per file version (the census plans, the provider cross-checks)."""
    short = digest.split(":", 1)[1][:12]
    if path.lower().endswith(".gguf"):
        from casekit.providers.local import _gguf_tokenizer

        inner = _gguf_tokenizer(f"{Path(path).name} {short}", path)
        info = TokenizerFileInfo(path=shown, format="gguf", family="gguf vocabulary (llama.cpp)",
                                 sha256=digest, bytes=size, prepends_space=None)
        return GGUFVocab(inner, info)
    try:
        # Read again with the limit: the file may have been replaced since it was checked.
        raw = read_regular_file(Path(path), TOKENIZER_MAX_BYTES, lambda problem: ModelParamsError(
            f"{shown!r} {problem}"))
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedTokenizer(f"{shown!r} is neither a .gguf file nor a readable "
                                   f"tokenizer.json ({exc}); give {SUPPORTED}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise UnsupportedTokenizer(f"{shown!r} is not a tokenizer.json (no model section); give "
                                   f"{SUPPORTED}")
    family, prepends = detect_family(data)
    info = TokenizerFileInfo(path=shown, format="tokenizer.json", family=family, sha256=digest,
                             bytes=size, prepends_space=prepends)
    log.info("tokenizer %s for %s: %s (%s)", shown, model_name, family, digest)
    return HFTokenizer(data, info, f"{Path(path).name} {short}")
