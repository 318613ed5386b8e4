"""Works: ingest the reference texts, hash them, resolve exclusions, tokenize them.

A work's identity is the SHA-256 of its file bytes. Its raw text is the file decoded as UTF-8
(or, for an EPUB, DOCX or PDF, the text extracted from it: casekit.extract); every offset
casekit records refers to that raw text, so exhibits quote it exactly.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from casekit import cjk
from casekit.canonical import sha256_bytes
from casekit.case import LoadedCase, SubstantialPortion, Thresholds, WorkSpec, read_regular_file
from casekit.errors import WorkError
from casekit.extract import EXTRACTED_SUFFIXES, Unit, extract
from casekit.normalize import Tokens, tokenize
from casekit.shortworks import (
    CHANCE_FLOOR_WORDS,
    REFRAIN_REASON,
    is_short,
    refrain_repeats,
    rule_text,
    short_min_span,
)
from casekit.visible import visible

log = logging.getLogger(__name__)

CHAPTER_RE = re.compile(r"^[ \t]*(?:CHAPTER|Chapter|LETTER|Letter|BOOK|Book|PART|Part)\b[^\n]*$",
                        re.MULTILINE)
"""A chapter heading line (iterative continuation seeds from chapter openings; the census
clusters its windows by chapter)."""

#: The last line of a Project Gutenberg header: the header is the text from its start through
#: this line (the modern "*** START OF THE PROJECT GUTENBERG EBOOK ... ***" line, or the end of
#: the 1990s "Small Print!" licence that opened the early etexts).
GUTENBERG_HEADER_END = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT)[^\n]*$"
    r"|^[ \t]*\*END\*[ \t]*THE SMALL PRINT![^\n]*$",
    re.IGNORECASE | re.MULTILINE)
#: The first line of a Project Gutenberg footer, which runs to the end of the text (the end
#: marker, then usually the full licence).
GUTENBERG_FOOTER_START = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT)"
    r"|^[ \t]*End of (?:the |this )?Project Gutenberg(?:'s)? (?:E-?book|E-?text)"
    r"|^[ \t]*\*{3}[ \t]*START: FULL LICENSE",
    re.IGNORECASE | re.MULTILINE)
#: A header marker is only taken in the first, a footer marker only in the second half of the
#: text: a novel that mentions Project Gutenberg in its body loses nothing.
BOILERPLATE_HEADER_REASON = "Project Gutenberg header (detected on ingestion)"
BOILERPLATE_FOOTER_REASON = "Project Gutenberg footer and licence (detected on ingestion)"

SUPPORTED_SUFFIXES = (".txt", ".md", *EXTRACTED_SUFFIXES)
#: A work's file is at most this many bytes (the longest novels are a few megabytes).
WORK_MAX_BYTES = 256 << 20
#: The profile span finding and word thresholds use (measurement.md section 1).
MATCH_PROFILE = "light-words"
#: The profile of BMC@k and the other [Liu26] metrics.
LIU_PROFILE = "words"


#: A CJK work's word thresholds in characters: this many characters per word of the case's
#: thresholds. Modern Chinese words average about 1.5 characters and Japanese text runs at
#: about 1.5-2 characters per English word in translation; 2 keeps a CJK threshold at least
#: as long as the word threshold it stands for (a longer span is stronger evidence).
CJK_CHARS_PER_WORD = 2


@dataclass(frozen=True)
class Excluded:
    start: int
    end: int
    reason: str


@dataclass
class Work:
    """A work of a case: its spec, raw text, hash, and exclusions."""

    spec: WorkSpec
    path: Path
    raw: str
    sha256: str
    excluded: list[Excluded] = field(default_factory=list)
    boilerplate: list[Excluded] = field(default_factory=list)
    """Distribution boilerplate detected on ingestion (:func:`detect_boilerplate`), in
    ``excluded`` too unless the case keeps it (``boilerplate: keep``)."""

    text_sha256: str | None = None
    """SHA-256 of the extracted text (UTF-8) of an EPUB, DOCX or PDF work; None for plain
    text, whose file is its text."""
    extractor: str | None = None
    """The library (and version) that extracted the text, for an EPUB, DOCX or PDF work."""
    units: list[Unit] = field(default_factory=list)
    """Chapters (EPUB), paragraphs (DOCX) or pages (PDF) of the extracted text, in order."""
    refrains: list[Excluded] = field(default_factory=list)
    """A short work's repeated refrain lines (after their first occurrence), in ``excluded``
    too: a chorus sung again counts once (casekit.shortworks)."""

    @property
    def boilerplate_kept(self) -> bool:
        """Detected boilerplate that the case counts as the work's text."""
        return bool(self.boilerplate) and self.spec.boilerplate == "keep"

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def role(self) -> str:
        return self.spec.role

    @cached_property
    def cjk(self) -> bool:
        """Tokenized with the CJK profile: the case says ``language: zh | ja | ko``, or, with
        no language stated, the text is mostly Han, Kana or Hangul (casekit.cjk.detect)."""
        stated = cjk.language_is_cjk(self.spec.language)
        return stated if stated is not None else cjk.detect(self.raw)

    @property
    def match_profile(self) -> str:
        """The profile of span finding and thresholds for this work (its outputs too)."""
        return cjk.cjk_profile(MATCH_PROFILE) if self.cjk else MATCH_PROFILE

    @property
    def liu_profile(self) -> str:
        """The profile of BMC@k and the other [Liu26] metrics for this work."""
        return cjk.cjk_profile(LIU_PROFILE) if self.cjk else LIU_PROFILE

    @property
    def unit(self) -> str:
        """What one token of this work is, in the report: ``characters`` (CJK) or ``words``."""
        return "characters" if self.cjk else "words"

    def tokens_for(self, profile: str) -> Tokens:
        """The work's counted tokens under a profile, from the token cache when possible;
        made (or loaded) once per profile for this work (:attr:`tokens`, :attr:`liu_tokens`
        and the matcher of a profile share them)."""
        memo: dict[str, Tokens] = self.__dict__.setdefault("_tokens_by_profile", {})
        got = memo.get(profile)
        if got is None:
            got = memo[profile] = self._tokens_for(profile)
        return got

    def _tokens_for(self, profile: str) -> Tokens:
        from casekit.cache import load_tokens, save_tokens, token_cache_path

        exclude = [(e.start, e.end) for e in self.excluded]
        path = token_cache_path(self.sha256, profile, exclude)
        cached = load_tokens(path) if path.exists() else None
        if cached is not None:
            words, starts, ends = cached
            return Tokens(words=words, starts=starts, ends=ends, profile=profile)
        toks = tokenize(self.raw, profile, exclude)
        save_tokens(path, list(toks.words), np.asarray(toks.starts), np.asarray(toks.ends))
        return toks

    @cached_property
    def tokens(self) -> Tokens:
        """Counted words under the matching profile (light-words, or its CJK variant),
        exclusions removed."""
        return self.tokens_for(self.match_profile)

    @cached_property
    def liu_tokens(self) -> Tokens:
        """Counted words under the [Liu26] words profile (or its CJK variant), exclusions
        removed."""
        return self.tokens_for(self.liu_profile)

    def location(self, start: int, end: int) -> str:
        """Where raw characters ``[start, end)`` are in the original file: the chapter,
        paragraph or page (or a range of them); "" for a plain-text work."""
        if not self.units:
            return ""
        import bisect

        starts = [u.start for u in self.units]
        i = max(0, bisect.bisect_right(starts, start) - 1)
        j = max(i, bisect.bisect_right(starts, max(start, end - 1)) - 1)
        if i == j:
            return self.units[i].label
        return f"{self.units[i].label} to {self.units[j].label}"

    @property
    def excluded_chars(self) -> int:
        return sum(e.end - e.start for e in _merge(self.excluded))


def _merge(ranges: list[Excluded]) -> list[Excluded]:
    out: list[Excluded] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        if out and r.start <= out[-1].end:
            last = out[-1]
            out[-1] = Excluded(last.start, max(last.end, r.end), last.reason)
        else:
            out.append(r)
    return out


def detect_boilerplate(raw: str) -> list[Excluded]:
    """A Project Gutenberg header (from the start of the text through its last header line)
    and footer (from the end marker, or the full licence, to the end of the text), when the
    text has them; nothing otherwise."""
    out: list[Excluded] = []
    half = len(raw) // 2
    header_end = 0
    for m in GUTENBERG_HEADER_END.finditer(raw, 0, half):
        header_end = m.end()
    if header_end:
        nl = raw.find("\n", header_end)
        header_end = len(raw) if nl < 0 else nl + 1
        out.append(Excluded(0, header_end, BOILERPLATE_HEADER_REASON))
    footer = GUTENBERG_FOOTER_START.search(raw, max(half, header_end))
    if footer is not None:
        out.append(Excluded(footer.start(), len(raw), BOILERPLATE_FOOTER_REASON))
    return out


def resolve_work_path(case: LoadedCase, index: int) -> Path:
    """The work's file inside the case folder; paths leaving the folder are refused."""
    spec = case.spec.works[index]
    where = case.where("works", index, "path")
    rel = Path(spec.path)
    if rel.is_absolute():
        raise WorkError(f"{where}: works[{index}].path: absolute paths are not allowed; give a "
                        "path relative to the case file and copy the text into the case folder")
    base = case.base_dir.resolve()
    full = (base / rel).resolve()
    if not full.is_relative_to(base):
        raise WorkError(f"{where}: works[{index}].path: {spec.path!r} leaves the case folder; "
                        "copy the text into the case folder")
    return full


def load_work(case: LoadedCase, index: int) -> Work:
    """Read, decode, hash and resolve the exclusions of the case's index-th work."""
    spec = case.spec.works[index]
    where = case.where("works", index, "path")
    path = resolve_work_path(case, index)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise WorkError(f"{where}: works[{index}].path: {path.name!r} is not a .txt, .md, "
                        ".epub, .docx or .pdf file; convert the work to UTF-8 plain text first")
    try:
        data = read_regular_file(path, WORK_MAX_BYTES, lambda problem: WorkError(
            f"{where}: works[{index}].path: {visible(str(path))} {problem}"))
    except FileNotFoundError:
        raise WorkError(f"{where}: works[{index}].path: no file at {visible(str(path))}; check "
                        "the path (relative to the case file)") from None
    extracted = None
    if path.suffix.lower() in EXTRACTED_SUFFIXES:
        extracted = extract(path, data, where)
        raw = extracted.text
        log.info("work %s: %s characters extracted from %s by %s", spec.id, len(raw),
                 path.name, extracted.extractor)
    else:
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise WorkError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); re-save the work "
                            "as UTF-8") from None
    if raw.startswith("\ufeff"):
        raw = raw[1:]  # a BOM is an encoding artefact, not text; the hash still covers it
    digest = sha256_bytes(data)
    if spec.sha256:
        expect = spec.sha256 if spec.sha256.startswith("sha256:") else "sha256:" + spec.sha256
        if expect != digest:
            raise WorkError(
                f"{case.where('works', index, 'sha256')}: works[{index}].sha256: the file's hash "
                f"is {digest}, the case file expects {expect}; the text changed: restore the "
                "original or update sha256 deliberately")
    if "\x00" in raw:
        raise WorkError(f"{path}: contains NUL characters; this is not a text file")
    excluded: list[Excluded] = []
    for j, ex in enumerate(spec.exclude):
        ex_where = case.where("works", index, "exclude", j)
        if ex.chars is not None:
            if ex.chars.end > len(raw):
                raise WorkError(f"{ex_where}: works[{index}].exclude[{j}].chars: end "
                                f"{ex.chars.end} is past the text's {len(raw)} characters")
            excluded.append(Excluded(ex.chars.start, ex.chars.end, ex.reason))
        else:
            assert ex.markers is not None
            m = ex.markers
            start = 0
            if m.from_marker:
                start = raw.find(m.from_marker)
                if start < 0:
                    raise WorkError(f"{ex_where}: works[{index}].exclude[{j}].markers.from_marker:"
                                    f" {m.from_marker!r} does not occur in {path.name}; copy the "
                                    "marker exactly from the text")
            end = len(raw)
            if m.to_marker:
                pos = raw.find(m.to_marker, start)
                if pos < 0:
                    raise WorkError(f"{ex_where}: works[{index}].exclude[{j}].markers.to_marker: "
                                    f"{m.to_marker!r} does not occur after the start in "
                                    f"{path.name}; copy the marker exactly from the text")
                end = pos + len(m.to_marker)
            excluded.append(Excluded(start, end, m.reason if m.reason else ex.reason))
    boilerplate = detect_boilerplate(raw)
    if boilerplate:
        log.info("work %s: Project Gutenberg boilerplate detected (%s)", spec.id,
                 "kept, as the case asks" if spec.boilerplate == "keep" else "excluded")
        if spec.boilerplate == "exclude":
            excluded += boilerplate
    refrains: list[Excluded] = []
    if is_short(spec.kind):
        stated = cjk.language_is_cjk(spec.language)
        is_cjk = stated if stated is not None else cjk.detect(raw)
        profile = cjk.cjk_profile(MATCH_PROFILE) if is_cjk else MATCH_PROFILE
        refrains = [Excluded(s, e, REFRAIN_REASON) for s, e in
                    refrain_repeats(raw, profile, [(x.start, x.end) for x in excluded])]
        excluded += refrains
        log.info("work %s (%s): %d repeated refrain lines counted once", spec.id, spec.kind,
                 len(refrains))
    work = Work(spec=spec, path=path, raw=raw, sha256=digest, excluded=_merge(excluded),
                boilerplate=boilerplate, refrains=refrains)
    if extracted is not None:
        work.text_sha256 = sha256_bytes(raw.encode("utf-8"))
        work.extractor = extracted.extractor
        work.units = extracted.units
    if len(work.tokens) == 0:
        if not work.cjk and cjk.detect(raw):
            raise WorkError(f"{where}: works[{index}]: the text is Chinese, Japanese or Korean "
                            f"but the case says language: {spec.language}; set language: zh, "
                            "ja or ko (or remove it) so that characters are counted")
        raise WorkError(f"{where}: works[{index}]: the text has no countable words after "
                        "exclusions; check the file and the exclude: entries")
    return work


@dataclass(frozen=True)
class ReferenceText:
    """A text of the case's ``reference_texts``: compared with short works for their chance
    baseline, never probed."""

    path: str
    """As the case file gives it."""
    sha256: str
    raw: str

    def tokens_for(self, profile: str) -> Tokens:
        return tokenize(self.raw, profile)


def _located_work_error(prefix: str, problem: str) -> WorkError:
    return WorkError(f"{prefix} {problem}")


def load_reference_texts(case: LoadedCase) -> list[ReferenceText]:
    """The case's reference texts, read (or extracted) like works, inside the case folder."""
    out = []
    base = case.base_dir.resolve()
    for i, rel in enumerate(case.spec.reference_texts):
        where = case.where("reference_texts", i)
        full = (base / rel).resolve()
        if Path(rel).is_absolute() or not full.is_relative_to(base):
            raise WorkError(f"{where}: reference_texts[{i}]: {rel!r} is not inside the case "
                            "folder; copy the text into it and give a relative path")
        try:
            data = read_regular_file(full, WORK_MAX_BYTES, functools.partial(
                _located_work_error, f"{where}: reference_texts[{i}]: {visible(str(full))}"))
        except FileNotFoundError:
            raise WorkError(f"{where}: reference_texts[{i}]: cannot read {visible(str(full))} "
                            "(no such file); check the path (relative to the case file)") \
                from None
        if full.suffix.lower() in EXTRACTED_SUFFIXES:
            raw = extract(full, data, where).text
        elif full.suffix.lower() in (".txt", ".md"):
            try:
                raw = data.decode("utf-8").removeprefix("\ufeff")
            except UnicodeDecodeError:
                raise WorkError(f"{where}: reference_texts[{i}]: {full.name} is not UTF-8; "
                                "re-save it as UTF-8") from None
        else:
            raise WorkError(f"{where}: reference_texts[{i}]: {full.name!r} is not a .txt, .md, "
                            ".epub, .docx or .pdf file; convert it to UTF-8 plain text")
        out.append(ReferenceText(path=rel, sha256=sha256_bytes(data), raw=raw))
    return out


def load_works(case: LoadedCase) -> list[Work]:
    works = [load_work(case, i) for i in range(len(case.spec.works))]
    if case.spec.reference_texts:
        load_reference_texts(case)  # a bad one stops here, before a run records anything
    return works


def work_thresholds(th: Thresholds, work: Work) -> tuple[Thresholds, str]:
    """The case's thresholds as they apply to one work, and the rule that changed them (""
    when they apply unchanged). A CJK work counts characters, so its span and block
    thresholds are CJK_CHARS_PER_WORD times the case's word thresholds; a short work's
    reporting threshold scales with its length (casekit.shortworks)."""
    out, rule = _cjk_thresholds(th, work)
    if not is_short(work.spec.kind):
        return out, rule
    counted = len(work.tokens)
    floor = CHANCE_FLOOR_WORDS * (CJK_CHARS_PER_WORD if work.cjk else 1)
    span = short_min_span(out.min_span_words, counted, floor)
    short = rule_text(out.min_span_words, counted, floor, work.unit, span)
    out = out.model_copy(update={"min_span_words": span})
    return out, f"{rule}; {short}" if rule else short


def _cjk_thresholds(th: Thresholds, work: Work) -> tuple[Thresholds, str]:
    if not work.cjk:
        return th, ""
    out = th.model_copy(update={
        "min_span_words": th.min_span_words * CJK_CHARS_PER_WORD,
        "substantial_portion": SubstantialPortion(
            min_words=th.substantial_portion.min_words * CJK_CHARS_PER_WORD,
            min_share=th.substantial_portion.min_share)})
    rule = (f"Chinese/Japanese/Korean text, counted in characters (Han and Kana one token "
            f"each): thresholds are {CJK_CHARS_PER_WORD} characters per word of the case's "
            f"({th.min_span_words} words -> {out.min_span_words} characters)")
    return out, rule
