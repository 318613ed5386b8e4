"""Whole-work p_z census (reconstruction) [Coo25]: every 100-token window of the work, scored.

Windows of the model's own tokens at a character stride, each one ledgered ``score`` attempt;
the census measure (:class:`CensusMeasure`) gives the histogram of p_z and the shares of
windows and characters over tau. The full definition (scope, tokens, stride, duplicates, cap,
scoring) is in docs/strategies.md.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from casekit.errors import CasekitError
from casekit.pz import (
    HistogramBin,
    NPRate,
    ThresholdShare,
    greedy_rate,
    np_rates,
    pz_histogram,
    pz_threshold_shares,
    union_length,
)
from casekit.records import WorkRange
from casekit.stats import BootstrapRate, Rate, clustered_rate
from casekit.strategies.base import Probe, Strategy, StrategyParams
from casekit.strategies.measures import (
    AttemptView,
    FindingContext,
    Measure,
    MeasureFields,
    census_clusters,
)
from casekit.strategies.teacher_forced import NpDiscoverable
from casekit.tokenizer import Tokenizer
from casekit.works import Work

log = logging.getLogger(__name__)


class CensusParams(StrategyParams):
    prefix_tokens: int = Field(50, ge=1, le=2000)
    """Model tokens given as the prefix [Coo25]: 50."""
    suffix_tokens: int = Field(50, ge=1, le=2000)
    """Model tokens scored as the suffix [Coo25]: 50."""
    stride_chars: int = Field(10, ge=1)
    """Characters between window start offsets [Coo25]: 10."""
    ranges: list[tuple[int, int]] | None = None
    """Raw character ranges [start, end) the census is restricted to (default: the whole work
    after exclusions); windows lie wholly inside one range."""
    max_windows: int | None = Field(None, ge=1)
    """Keep at most this many windows, evenly spaced in work order (default: all)."""

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, v: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
        if v is not None:
            for a, b in v:
                if not 0 <= a < b:
                    raise ValueError(f"range [{a}, {b}) is empty or negative; give "
                                     "[start, end) with 0 <= start < end")
        return v


@dataclass(frozen=True)
class CensusWindow:
    """One census window: character ranges in the raw work and its token ids."""

    offset: int
    """The stride offset c that first reached this window."""
    prefix: WorkRange
    suffix: WorkRange
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class CensusPlan:
    windows: list[CensusWindow]
    offsets: int
    """Stride offsets that had a full window after them."""
    duplicate_starts: int
    """Offsets that landed on a token another offset had already started."""
    duplicate_texts: int
    """Windows whose token ids repeat an earlier window's."""
    inside_character: int
    """Windows dropped because a token boundary fell inside a character."""
    capped: int
    """Windows dropped by ``max_windows``."""


def census_segments(length: int, excluded: Sequence[tuple[int, int]],
                    ranges: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    """Maximal character ranges of [0, length) outside ``excluded`` (and inside ``ranges``)."""
    keep = np.zeros(length + 1, dtype=np.int32)  # difference array of "allowed" coverage
    if ranges is None:
        keep[0] += 1
        keep[length] -= 1
    else:
        for a, b in ranges:
            a, b = min(a, length), min(b, length)
            if b > a:
                keep[a] += 1
                keep[b] -= 1
    allowed = np.cumsum(keep)[:length] > 0
    for a, b in excluded:
        allowed[max(0, a):min(length, b)] = False
    d = np.diff(np.concatenate(([0], allowed.astype(np.int8), [0])))
    return [(int(s), int(e)) for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1),
                                              strict=True)]


def _char_of_byte(text: str) -> np.ndarray:
    """Per UTF-8 byte offset (0..len inclusive): the character offset, or -1 inside a
    character."""
    enc = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    out = np.full(len(enc) + 1, -1, dtype=np.int64)
    starts = np.flatnonzero((enc & 0xC0) != 0x80)
    out[starts] = np.arange(len(starts))
    out[len(enc)] = len(text)
    return out


def census_windows(raw: str, segments: Sequence[tuple[int, int]], tokenizer: Tokenizer,
                   prefix_tokens: int = 50, suffix_tokens: int = 50, stride_chars: int = 10,
                   max_windows: int | None = None) -> CensusPlan:
    """The census windows of ``raw`` (see the module docstring for the definition)."""
    size = prefix_tokens + suffix_tokens
    windows: list[CensusWindow] = []
    seen_ids: set[tuple[int, ...]] = set()
    offsets = dup_starts = dup_texts = inside = 0
    for a, b in segments:
        text = raw[a:b]
        ids = tokenizer.token_ids(text)
        pieces = [tokenizer.piece(i) for i in ids]
        if b"".join(pieces) != text.encode("utf-8"):
            raise CasekitError(
                f"tokenizer {tokenizer.name!r} does not give characters {a}..{b} back byte for "
                "byte, so census windows cannot be mapped to the text; use teacher_forced")
        tok_byte = np.concatenate(([0], np.cumsum([len(p) for p in pieces], dtype=np.int64)))
        c_of_b = _char_of_byte(text)
        b_of_c = np.flatnonzero(c_of_b >= 0)  # byte offset of every character (and the end)
        tok_char = c_of_b[tok_byte]  # -1 where a token boundary is inside a character
        n = len(ids)
        last_start = -1
        for c in range(a, b, stride_chars):
            # First token beginning at or after c (tokens begin at increasing byte offsets).
            t = int(np.searchsorted(tok_byte[:n], b_of_c[c - a], side="left"))
            if t + size > n:
                break  # later offsets start later still: no more full windows here
            offsets += 1
            if t == last_start:
                dup_starts += 1
                continue
            last_start = t
            bounds = tok_char[[t, t + prefix_tokens, t + size]]
            if (bounds < 0).any():
                inside += 1
                continue
            key = tuple(ids[t:t + size])
            if key in seen_ids:
                dup_texts += 1
                continue
            seen_ids.add(key)
            p0, p1, s1 = (a + int(x) for x in bounds)
            windows.append(CensusWindow(offset=c, prefix=WorkRange(start=p0, end=p1),
                                        suffix=WorkRange(start=p1, end=s1), token_ids=key))
    capped = 0
    if max_windows is not None and len(windows) > max_windows:
        if max_windows == 1:
            keep = [0]
        else:
            keep = sorted({round(i * (len(windows) - 1) / (max_windows - 1))
                           for i in range(max_windows)})
        capped = len(windows) - len(keep)
        windows = [windows[i] for i in keep]
    return CensusPlan(windows=windows, offsets=offsets, duplicate_starts=dup_starts,
                      duplicate_texts=dup_texts, inside_character=inside, capped=capped)


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CensusPreset(_M):
    """The census figures under one p_z preset [Hay25 Def. 2; Coo25]."""

    preset: str
    """``greedy`` (k = 1) or ``top40`` (k = 40, T = 1)."""
    histogram: list[HistogramBin]
    shares: list[ThresholdShare]
    """Windows and characters with p_z >= tau; characters as a share of ``scored_chars``."""
    np_rates: list[NPRate] = []
    """(n,p)-discoverable rates over the windows (top40 only: greedy p_z is 0 or 1)."""


class Census(_M):
    """Whole-work p_z census [Coo25] of one model on one work (strategy ``pz_census``)."""

    strategy_key: str
    params: str
    """Window definition as run: tokens, stride, ranges, cap."""
    planned: int
    """Census attempts (every window planned), errors included."""
    windows: int
    """Windows scored (p_z computed)."""
    errors: int
    scored_chars: int
    """Characters in the union of the scored windows' suffixes: the denominator of the
    character shares (a prefix is never credited, so the first 50 tokens of a segment are
    outside it)."""
    counted_chars: int
    """The work's characters after exclusions (the census may cover fewer: ranges, cap)."""
    greedy: Rate
    """Windows greedy decoding reproduces (greedy p_z = 1)."""
    greedy_bootstrap: BootstrapRate | None = None
    """The same with a cluster-bootstrap interval (overlapping windows are not independent)."""
    presets: list[CensusPreset]


class CensusFields(MeasureFields):
    """The census field of a model x work finding."""

    census: list[Census] = []
    """Whole-work p_z census [Coo25], one per ``pz_census`` strategy entry."""


def census_params_text(params: dict[str, Any]) -> str:
    """The window definition of one census entry as run, for the report."""
    pre, suf = params.get("prefix_tokens", 50), params.get("suffix_tokens", 50)
    text = (f"{pre}-token prefix + {suf}-token suffix (model tokens), stride "
            f"{params.get('stride_chars', 10)} characters")
    if params.get("ranges"):
        text += ", restricted to characters " + ", ".join(
            f"[{a}, {b})" for a, b in params["ranges"])
    if params.get("max_windows"):
        text += f", at most {params['max_windows']} windows (evenly spaced)"
    return text


class CensusMeasure(Measure):
    """[Coo25] the whole-work p_z census, one per census entry of the case."""

    name = "pz_census"
    definition = ("Whole-work p_z census [Coo25] (strategy pz_census): the text outside "
                  "exclusions (and inside the case's ranges) is tokenized with the model's own "
                  "tokenizer (for a server model, the tokenizer file the case gives, named with "
                  "its SHA-256 in the manifest and checked against the server's tokenization of "
                  "every window); for every character offset c = 0, 10, 20, ... (the stride) the "
                  "window starts at the first token beginning at or after c and is the next 100 "
                  "tokens: a 50-token prefix and a 50-token suffix. Offsets landing on the same "
                  "token, and windows whose tokens repeat an earlier window's, are dropped as "
                  "duplicates. Every window is one ledgered score attempt; p_z is computed for "
                  "the greedy and top-40 presets; the histogram bins p_z by decade; shares are of "
                  "windows and of characters (union of the suffixes of windows with p_z >= tau, "
                  "over the union of all scored suffixes) for tau in 0.1%, 1%, 10%, 50%, 75%.")
    FindingFields = CensusFields
    label = "Whole-work p_z census"
    further_order = 30
    words = {"interval": "Census ({key}), greedy p_z = 1"}

    def finding(self, ctx: FindingContext) -> CensusFields | None:
        keys = sorted({x.strategy_key for x in ctx.attempts})
        return CensusFields(census=[
            self._census(key, [x for x in ctx.attempts if x.strategy_key == key], ctx)
            for key in keys]) if keys else None

    @staticmethod
    def _census(key: str, attempts: list[AttemptView], ctx: FindingContext) -> Census:
        """The whole-work p_z census of one pz_census entry on one model x work [Coo25]."""
        work = ctx.work
        scored = [x.teacher_forced for x in attempts if x.teacher_forced is not None]
        ranges = [t.suffix_chars or (0, 0) for t in scored]
        scored_chars = union_length(ranges)
        greedy_logs = [0.0 if t.greedy_reproduced else -math.inf for t in scored]
        presets = [CensusPreset(preset="greedy", histogram=pz_histogram(greedy_logs),
                                shares=pz_threshold_shares(greedy_logs, ranges, scored_chars))]
        if scored and all(t.pz_top40 != "not_available" for t in scored):
            top_logs = [t.log_pz_top40 if t.pz_top40 == "positive" and t.log_pz_top40 is not None
                    else -math.inf
                        for t in scored]
            presets.append(CensusPreset(
                preset="top40", histogram=pz_histogram(top_logs),
                shares=pz_threshold_shares(top_logs, ranges, scored_chars),
                np_rates=np_rates([math.exp(x) for x in top_logs])))
        units = census_clusters(work, [r[0] for r in ranges])
        hits = [int(t.greedy_reproduced) for t in scored]
        return Census(
            strategy_key=key, params=census_params_text(ctx.strategy_params(key)),
            planned=len(attempts), windows=len(scored),
            errors=sum(1 for x in attempts if x.outcome == "error"),
            scored_chars=scored_chars, counted_chars=len(work.raw) - work.excluded_chars,
            greedy=greedy_rate(greedy_logs),
            greedy_bootstrap=clustered_rate(hits, *units) if scored else None,
            presets=presets)


class PzCensus(Strategy):
    name = "pz_census"
    intent = "reconstruction"
    description = ("Whole-work p_z census [Coo25]: every 100-token window (50-token prefix, "
                   "50-token suffix) at a 10-character stride, scored teacher-forced.")
    Params = CensusParams
    needs_score = True
    needs_tokenizer = True
    measures: ClassVar[tuple[type[Measure], ...]] = (CensusMeasure, NpDiscoverable)

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        raise CasekitError("pz_census plans windows of model tokens and needs the model's "
                           "tokenizer; use provider: local, or give an openai-compatible "
                           "model params.tokenizer (the served model's tokenizer.json or "
                           ".gguf)")

    def plan_tokens(self, work: Work, rng: random.Random, tokenizer: Tokenizer,
                    ) -> Iterator[Probe]:
        p = self.params
        assert isinstance(p, CensusParams)
        segments = census_segments(len(work.raw), [(e.start, e.end) for e in work.excluded],
                                   p.ranges)
        cp = census_windows(work.raw, segments, tokenizer, p.prefix_tokens, p.suffix_tokens,
                            p.stride_chars, p.max_windows)
        log.info("pz_census on %s with %s: %d offsets -> %d windows (%d duplicate starts, "
                 "%d duplicate texts, %d inside a character, %d capped)", work.id,
                 tokenizer.name, cp.offsets, len(cp.windows), cp.duplicate_starts,
                 cp.duplicate_texts, cp.inside_character, cp.capped)
        for w in cp.windows:
            yield Probe(kind="score", text=work.raw[w.prefix.start:w.prefix.end],
                        continuation=work.raw[w.suffix.start:w.suffix.end], target=w.suffix,
                        supplied=[w.prefix],
                        label=f"census window at char {w.prefix.start} (offset {w.offset}, "
                              f"{p.prefix_tokens}+{p.suffix_tokens} {tokenizer.name} tokens)")
