"""Further measures (partials/further.html.j2): the literature's measures per model x work beside
the control's, the p_z views, the census, the interval table, the coverage map and the model
comparisons.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from casekit.analysis.findings import (
    Census,
    CensusPreset,
    Findings,
    ModelWorkFinding,
    Probabilistic,
    SpanFinding,
)
from casekit.analysis.metrics import CoverageOverlap, RateRatio
from casekit.analysis.stats import Rate
from casekit.report import catalogue as C
from casekit.report import figures
from casekit.report.text import (
    DASH,
    boot_text,
    fmt_num,
    fmt_pct,
)
from casekit.report.views import KV, RateView, rate_view
from casekit.works import Work

log = logging.getLogger(__name__)



#: Shade levels of a coverage bin: 0 (nothing covered) to COVERAGE_LEVELS (all covered).
COVERAGE_LEVELS = 5
#: Parts of the work in the coverage map's numeric table (tenths, under the figure's ticks).
COVERAGE_PARTS = 10
#: (n,p) cells shown in the compact table [Hay25].
NP_SHOWN_P = (0.5, 0.9)
NP_SHOWN_N = (1, 100, 10000)
FURTHER_DEFINITION_KEYS = ("intervals", "p_z", "pz_upper_bound", "pz_census", "nv_recall",
                           "np_discoverable", "discoverable_5050", "spans_over_t",
                           "longest_block", "bmc", "name_cloze", "comparison", "coverage")


@dataclass(frozen=True)
class Measure:
    """One row of a further-measures table: the figure for this work beside the control's."""

    label: str
    definition: str
    """The key of the definition in findings.definitions that the figure follows."""
    value: str
    note: str
    control: str
    control_note: str = ""


@dataclass(frozen=True)
class NPRow:
    p: str
    cells: list[str]
    """``k of n`` per n of NP_SHOWN_N (DASH where not computed)."""
    control: list[str]


@dataclass(frozen=True)
class ShareRow:
    tau: str
    windows: str
    chars: str
    control: str


@dataclass(frozen=True)
class HistBar:
    label: str
    count: str
    share: str


@dataclass(frozen=True)
class ProbView:
    preset: str
    windows: str
    greedy: RateView
    sampling: str
    ns: list[str]
    np_rows: list[NPRow]
    shares: list[ShareRow]
    histogram: list[HistBar]
    histogram_svg: Markup
    """The bars as an SVG figure (numbers only, casekit/report/figures.py)."""


@dataclass(frozen=True)
class CensusCell:
    """One preset's figure in a census table row (subject or control)."""

    windows: str
    chars: str = ""


@dataclass(frozen=True)
class CensusRow:
    label: str
    cells: list[str]
    """Per column of :attr:`CensusView.columns`."""


@dataclass(frozen=True)
class ShareTable:
    """Windows and characters with p_z >= tau of one census (this work's, or the control's):
    one table each, so that a census and its control never need eight columns side by side."""

    title: str
    columns: list[str]
    rows: list[CensusRow]


@dataclass(frozen=True)
class CensusView:
    """The whole-work p_z census of one model x work beside the control's [Coo25]."""

    key: str
    params: str
    summary: str
    control_summary: str
    greedy: RateView
    bootstrap: str
    columns: list[str]
    histogram: list[CensusRow]
    share_tables: list[ShareTable]
    np_rows: list[NPRow]
    ns: list[str]
    figure_preset: str
    """The preset the figure draws (top-40 where recorded, else greedy)."""
    histogram_svg: Markup
    """The figure's bars: share of windows per bin (numbers only, casekit/report/figures.py)."""
    figure_windows: str


@dataclass(frozen=True)
class IntervalRow:
    """One rate of a model x work and the intervals it carries."""

    label: str
    k_of_n: str
    wilson: str
    """The Wilson / Clopper-Pearson interval over attempts (as printed everywhere else)."""
    bootstrap: str
    """The cluster-bootstrap interval and its unit, or why there is none."""


def _intervals(mw: ModelWorkFinding) -> list[IntervalRow]:
    """Every rate of a model x work with the interval it uses (measurement.md section 6)."""
    rows: list[tuple[str, Rate | None, str]] = [
        ("Regurgitation (benign attempts)", mw.regurgitation, "regurgitation"),
        ("Extraction (adversarial attempts)", mw.extraction, "extraction"),
        ("50/50 discoverable, exact", mw.discoverable_exact, "discoverable_exact"),
        ("50/50 discoverable, approximate", mw.discoverable_approx, "discoverable_approx"),
        ("Teacher-forced windows, greedy p_z = 1",
         mw.probabilistic.greedy if mw.probabilistic else None, "teacher_forced_greedy"),
    ]
    out = []
    for label, r, key in rows:
        if r is None or r.n == 0:
            continue
        v = rate_view(r)
        b = mw.bootstrap.get(key)
        out.append(IntervalRow(label=label, k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(b) if b is not None else
                               "Wilson / Clopper-Pearson only"))
    for c in mw.census:
        v = rate_view(c.greedy)
        out.append(IntervalRow(label=f"Census ({c.strategy_key}), greedy p_z = 1",
                               k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(c.greedy_bootstrap)))
    if mw.nv_recall is not None and mw.nv_recall.sessions_rate is not None:
        sr = mw.nv_recall.sessions_rate
        out.append(IntervalRow(label="Iterative sessions with an nv-recall block",
                               k_of_n=f"{sr.k:,} of {sr.n:,} ({fmt_pct(sr.rate)})",
                               wilson="bootstrap only", bootstrap=boot_text(sr)))
    if mw.name_cloze is not None and mw.name_cloze.accuracy.n:
        v = rate_view(mw.name_cloze.accuracy)
        out.append(IntervalRow(label="Name-cloze accuracy", k_of_n=f"{v.k_of_n} ({v.pct})",
                               wilson=v.ci, bootstrap="Wilson / Clopper-Pearson only "
                               "(one passage per attempt)"))
    return out


@dataclass(frozen=True)
class CoverageBin:
    level: int
    """0 (no word of the bin covered) .. COVERAGE_LEVELS (every word covered)."""
    covered: int
    words: int


@dataclass(frozen=True)
class CoverageRow:
    key: str
    label: str
    note: str
    covered: str
    runs: list[tuple[int, int]]
    """Covered word ranges [start, end), merged and sorted (what the lane draws)."""
    lane: Markup
    """The lane of the figure: SVG from numbers only (casekit/report/figures.py)."""
    swatch: Markup
    legend_swatch: Markup
    """The same paint for the legend (its own pattern id: ids are unique in the document)."""
    passages: str
    longest: str
    parts: list[str]
    """Share of the words covered in each tenth of the work (the numeric table)."""


@dataclass(frozen=True)
class CoverageMap:
    total_words: str
    rows: list[CoverageRow]
    axis: Markup
    parts: list[KV]
    """Headers of the numeric table's columns: the tenths of the work, first and last word
    (label "1,004–", value "1,338": set on two lines, a column is narrow)."""


@dataclass(frozen=True)
class FurtherRow:
    model_id: str
    work_id: str
    work_title: str
    role: str
    control_label: str
    """Header of the control column (the control work of this model), or "" for a control."""
    measures: list[Measure]
    prob: ProbView | None
    control_has_prob: bool
    census: list[CensusView]
    intervals: list[IntervalRow]
    coverage_map: CoverageMap


@dataclass(frozen=True)
class ComparisonRow:
    work_id: str
    work_title: str
    model_a: str
    model_b: str
    coverage_jaccard: str
    coverage_baseline: str
    coverage_detail: str
    bmc5_jaccard: str
    bmc5_baseline: str
    bmc5_detail: str
    extraction_ratio: str
    extraction_note: str
    regurgitation_ratio: str
    regurgitation_note: str


@dataclass(frozen=True)
class Further:
    definitions: list[KV]
    rows: list[FurtherRow]
    comparisons: list[ComparisonRow]


def _opt_rate(r: Rate | None) -> tuple[str, str]:
    """``k of n`` and its note for a rate that may be absent (DASH, no fake zero)."""
    if r is None:
        return DASH, "not measured"
    v = rate_view(r)
    return v.k_of_n, (f"{v.pct}; {v.ci}" if r.n else v.ci)


def _np_cell(rates: dict[tuple[int, float], Rate], n: int, p: float) -> str:
    r = rates.get((n, p))
    if r is None:
        return DASH
    v = rate_view(r)
    return f"{v.k_of_n} ({v.pct})" if r.n else v.k_of_n


def _np_map(pr: Probabilistic | None) -> dict[tuple[int, float], Rate]:
    return {(x.n, x.p): x.rate for x in pr.np_rates} if pr else {}


def _prob_view(pr: Probabilistic, ctrl: Probabilistic | None) -> ProbView:
    mine, theirs = _np_map(pr), _np_map(ctrl)
    ps = [p for p in NP_SHOWN_P if any(k[1] == p for k in mine)]
    np_rows = [NPRow(p=f"{p:g}", cells=[_np_cell(mine, n, p) for n in NP_SHOWN_N],
                     control=[_np_cell(theirs, n, p) for n in NP_SHOWN_N] if ctrl else [])
               for p in ps]
    ctrl_shares = {s.tau: s for s in ctrl.shares} if ctrl else {}
    shares = []
    for s in pr.shares:
        c = ctrl_shares.get(s.tau)
        shares.append(ShareRow(
            tau=f"{s.tau:g}",
            windows=f"{s.windows:,} of {pr.windows:,} ({fmt_pct(s.window_share)})",
            chars=f"{s.chars:,} ({fmt_pct(s.char_share)})",
            control=(f"{c.windows:,} of {ctrl.windows:,} ({fmt_pct(c.window_share)})"
                     if c is not None and ctrl is not None else DASH)))
    bars = [HistBar(label=b.label, count=f"{b.count:,}", share=fmt_pct(b.share))
            for b in pr.histogram]
    return ProbView(preset=pr.preset, windows=f"{pr.windows:,}", greedy=rate_view(pr.greedy),
                    sampling=pr.sampling, ns=[f"{n:,}" for n in NP_SHOWN_N], np_rows=np_rows,
                    shares=shares, histogram=bars,
                    histogram_svg=figures.histogram([b.share for b in pr.histogram]))





def _census_view(c: Census, ctrl: Census | None) -> CensusView:
    def preset(cs: Census | None, name: str) -> CensusPreset | None:
        return next((p for p in cs.presets if p.preset == name), None) if cs else None

    names = [p.preset for p in c.presets]
    cols: list[tuple[Census, str, str]] = [(c, n, f"{n}") for n in names]
    if ctrl is not None:
        cols += [(ctrl, n, f"control, {n}") for n in names if preset(ctrl, n) is not None]
    columns = [label for _, _, label in cols]
    hist: list[CensusRow] = []
    for i, b in enumerate(c.presets[0].histogram):
        cells = []
        for cs, n, _ in cols:
            pr = preset(cs, n)
            hb = pr.histogram[i] if pr is not None else None
            cells.append(f"{hb.count:,} ({fmt_pct(hb.share)})" if hb else DASH)
        hist.append(CensusRow(label=b.label, cells=cells))
    share_tables: list[ShareTable] = []
    for who, one in (("This work", c), ("Control", ctrl)):
        if one is None:
            continue
        presets = [p for p in (preset(one, n) for n in names) if p is not None]
        rows = []
        for i, t in enumerate(c.presets[0].shares):
            cells = []
            for pr in presets:
                sh = pr.shares[i] if i < len(pr.shares) else None
                cells += ([DASH, DASH] if sh is None else
                          [f"{sh.windows:,} of {one.windows:,} ({fmt_pct(sh.window_share)})",
                           f"{sh.chars:,} of {one.scored_chars:,} ({fmt_pct(sh.char_share)})"])
            rows.append(CensusRow(label=f"{t.tau * 100:g}%", cells=cells))
        share_tables.append(ShareTable(
            title=who, columns=[f"{pr.preset}: {x}" for pr in presets
                                for x in ("windows", "characters")], rows=rows))
    top, ctop = preset(c, "top40"), preset(ctrl, "top40")
    drawn = top or c.presets[0]
    mine = {(x.n, x.p): x.rate for x in top.np_rates} if top else {}
    theirs = {(x.n, x.p): x.rate for x in ctop.np_rates} if ctop else {}
    np_rows = [NPRow(p=f"{p:g}", cells=[_np_cell(mine, n, p) for n in NP_SHOWN_N],
                     control=[_np_cell(theirs, n, p) for n in NP_SHOWN_N] if ctop else [])
               for p in NP_SHOWN_P if mine]

    def summ(cs: Census) -> str:
        err = f", {cs.errors:,} failed" if cs.errors else ""
        share = cs.scored_chars / cs.counted_chars if cs.counted_chars else None
        return (f"{cs.windows:,} windows scored of {cs.planned:,} planned{err}; their "
                f"suffixes cover {cs.scored_chars:,} of the work's {cs.counted_chars:,} counted "
                f"characters ({fmt_pct(share)})")
    return CensusView(
        key=c.strategy_key, params=c.params, summary=summ(c),
        control_summary=(f"{summ(ctrl)}; {ctrl.params}" if ctrl else
                         "no census of a control work for this model"),
        greedy=rate_view(c.greedy), bootstrap=boot_text(c.greedy_bootstrap), columns=columns,
        histogram=hist, share_tables=share_tables, np_rows=np_rows,
        ns=[f"{n:,}" for n in NP_SHOWN_N], figure_preset=drawn.preset,
        histogram_svg=figures.histogram([b.share for b in drawn.histogram]),
        figure_windows=f"{c.windows:,}")


def _word_range(tokens: Any, start: int, end: int) -> tuple[int, int]:
    """Word indices of the tokens inside raw chars [start, end) (as the analyzer maps a
    teacher-forced window onto the coverage mask)."""
    lo = bisect.bisect_left(tokens.starts, start)
    hi = bisect.bisect_right(tokens.ends, end)
    return lo, max(lo, hi)


def _coverage_bins(ranges: Iterable[tuple[int, int]], total: int, nbins: int,
                   ) -> list[CoverageBin]:
    """Bins [floor(i*W/N), floor((i+1)*W/N)) of a work of W words, each with the number of
    its words inside the union of ``ranges`` (word index ranges [start, end))."""
    mask = bytearray(total)
    for lo, hi in ranges:
        lo, hi = max(0, lo), min(total, hi)
        if lo < hi:
            mask[lo:hi] = b"\x01" * (hi - lo)
    out: list[CoverageBin] = []
    for i in range(nbins):
        a, b = i * total // nbins, (i + 1) * total // nbins
        covered = sum(mask[a:b])
        words = b - a
        level = 0
        if covered:
            level = max(1, -(-covered * COVERAGE_LEVELS // words))  # ceiling: any word shows
        out.append(CoverageBin(level=level, covered=covered, words=words))
    return out


def _matched_ranges(s: SpanFinding) -> list[tuple[int, int]]:
    """Work word ranges of a span that the coverage counts: its exactly aligned words
    (``equal`` opcodes), as the analyzer marks them; the whole span when it has no opcodes."""
    if not s.opcodes:
        return [(s.work_word_start, s.work_word_end)]
    return [(j1, j2) for tag, _i1, _i2, j1, j2 in s.opcodes if tag == "equal"]


def coverage_ranges(f: Findings, mw: ModelWorkFinding, work: Work,
                    ) -> dict[str, list[tuple[int, int]]]:
    """Work word ranges credited to one model x work (the exactly aligned words of credited
    spans), per row of the coverage map: extraction (adversarial attempts' spans),
    regurgitation (benign attempts' spans) and
    reconstruction (every attempt's spans plus the teacher-forced windows reproduced
    greedily: the union behind the coverage figure)."""
    out: dict[str, list[tuple[int, int]]] = {"extraction": [], "regurgitation": [],
                                             "reconstruction": []}
    tokens = None
    for x in f.attempts:
        if x.model_id != mw.model_id or x.work_id != mw.work_id:
            continue
        spans = [r for s in x.spans for r in _matched_ranges(s)]
        if x.intent == "adversarial":
            out["extraction"] += spans
        elif x.intent == "benign":
            out["regurgitation"] += spans
        out["reconstruction"] += spans
        tf = x.teacher_forced
        if tf is not None and tf.greedy_reproduced and tf.suffix_chars is not None:
            if tokens is None:
                tokens = work.tokens
            out["reconstruction"].append(_word_range(tokens, *tf.suffix_chars))
    return out


COVERAGE_ROWS = (
    ("extraction", "Extraction", "adversarial attempts' spans"),
    ("regurgitation", "Regurgitation", "benign attempts' spans"),
    ("reconstruction", "Reconstruction", "all means: every span and the teacher-forced "
                                         "windows reproduced greedily"),
)


def _coverage_map(f: Findings, mw: ModelWorkFinding, work: Work,
                  ids: figures.FigureIds) -> CoverageMap:
    """The figure (one SVG lane per category, exact word positions) and its numeric table
    (covered words, passages, longest passage, share covered per tenth of the work)."""
    total = mw.coverage.total_words
    nparts = max(1, min(COVERAGE_PARTS, total))
    ranges = coverage_ranges(f, mw, work)
    rows = []
    for key, label, note in COVERAGE_ROWS:
        runs = figures.merge_ranges(ranges[key], total)
        covered = sum(hi - lo for lo, hi in runs)
        parts = _coverage_bins(runs, total, nparts) if total else []
        longest = max((hi - lo for lo, hi in runs), default=0)
        rows.append(CoverageRow(
            key=key, label=label, note=note, runs=runs,
            covered=(f"{covered:,} of {total:,} words "
                     f"({fmt_pct(covered / total if total else None)})"),
            lane=figures.coverage_lane(ids, key, runs, total),
            swatch=figures.swatch(ids, key),
            legend_swatch=figures.swatch(ids, key),
            passages=f"{len(runs):,}",
            longest=(f"{longest:,} words (words {runs_longest(runs)})" if runs else DASH),
            parts=[fmt_pct(b.covered / b.words) if b.words else DASH for b in parts]))
    heads = [KV(f"{i * total // nparts + 1:,}\u2013", f"{(i + 1) * total // nparts:,}")
             for i in range(nparts)]
    return CoverageMap(total_words=f"{total:,}", rows=rows,
                       axis=figures.coverage_axis(nparts), parts=heads)


def runs_longest(runs: Sequence[tuple[int, int]]) -> str:
    """The longest run as 1-based inclusive word numbers (the first of equal runs)."""
    lo, hi = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
    return f"{lo + 1:,}\u2013{hi:,}"


def _has_generations(f: Findings, mw: ModelWorkFinding) -> bool:
    return any(x.model_id == mw.model_id and x.work_id == mw.work_id and x.mode != "score"
               and x.cloze_correct is None for x in f.attempts)


def _measures(f: Findings, mw: ModelWorkFinding, ctrl: ModelWorkFinding | None,
              ) -> list[Measure]:
    def both(get: Any) -> tuple[tuple[str, str], tuple[str, str]]:
        mine = get(mw)
        theirs = get(ctrl) if ctrl is not None else (DASH, "")
        return mine, theirs

    def greedy(m: ModelWorkFinding) -> tuple[str, str]:
        if m.probabilistic is None:
            return DASH, "no scored windows"
        v, note = _opt_rate(m.probabilistic.greedy)
        return f"{v} windows", f"preset {m.probabilistic.preset}; {note}"

    def disc(exact: bool) -> Any:
        def get(m: ModelWorkFinding) -> tuple[str, str]:
            r = m.discoverable_exact if exact else m.discoverable_approx
            v, note = _opt_rate(r)
            return (f"{v} windows" if r is not None else v), note
        return get

    def over_t(m: ModelWorkFinding) -> tuple[str, str]:
        if not _has_generations(f, m):
            return DASH, "no generation attempts"
        return f"{m.spans_over_t:,}", "spans > 20 words"

    def blocks(m: ModelWorkFinding) -> tuple[str, str]:
        light = f"{m.coverage.longest_block_words:,} words"
        if not _has_generations(f, m):
            return f"{DASH} (BMC@5) / {light} (light-words)", "no generation attempts"
        return (f"{m.longest_block_bmc5:,} words (BMC@5) / {light} (light-words)",
                "words profile mask / light-words coverage mask")

    def cloze(m: ModelWorkFinding) -> tuple[str, str]:
        nc = m.name_cloze
        if nc is None:
            return DASH, "no name-cloze attempts"
        acc, acc_note = _opt_rate(nc.accuracy)
        base, base_note = _opt_rate(nc.majority_baseline)
        name = f" (always \u201c{nc.majority_name}\u201d)" if nc.majority_name else ""
        return (f"{acc} correct; majority baseline {base}",
                f"accuracy {acc_note}; baseline{name} {base_note}")

    def nv(m: ModelWorkFinding) -> tuple[str, str]:
        r = m.nv_recall
        if r is None:
            return DASH, "no iterative-continuation sessions"
        c = r.combined
        return (f"{fmt_pct(c.recall)} ({c.matched:,} of {c.book_words:,} words)",
                f"{r.sessions:,} session{'s' if r.sessions != 1 else ''} concatenated; best "
                f"single session {fmt_pct(r.best_session)}")

    def api_pz(m: ModelWorkFinding) -> tuple[str, str]:
        b = m.api_pz_bounds
        if b is None:
            return DASH, "no API top-k log-probs"
        at1 = next((x for x in b.top40_upper_shares if abs(x.tau - 0.01) < 1e-12), None)
        share = (f"; top-40 upper bound ≥ 1% in {at1.windows:,} of {b.windows:,}"
                 if at1 is not None else "")
        return (f"greedy p_z = 1 in {b.greedy_one:,} of {b.windows:,} windows (exact)",
                f"exactly 0 in {b.greedy_zero:,}, undetermined in {b.greedy_undetermined:,}"
                f"{share}; UPPER BOUNDS from top-{b.top_k} log-probs")

    rows = [
        ("nv-recall of iterative sessions", "nv_recall", nv),
        ("p_z from API log-probs (bounds)", "pz_upper_bound", api_pz),
        ("Probabilistic extraction, greedy p_z = 1", "p_z", greedy),
        ("50/50 discoverable extraction, exact", "discoverable_5050", disc(True)),
        ("50/50 discoverable extraction, approximate", "discoverable_5050", disc(False)),
        ("Spans > T (T = 20 words)", "spans_over_t", over_t),
        ("Longest block: BMC@5 / light-words", "longest_block", blocks),
        ("Name-cloze accuracy / majority baseline", "name_cloze", cloze),
    ]
    out = []
    for label, key, get in rows:
        (v, note), (cv, cnote) = both(get)
        out.append(Measure(label=label, definition=key, value=v, note=note, control=cv,
                           control_note=cnote))
    return out


def _ratio_text(rr: RateRatio) -> tuple[str, str]:
    counts = f"{rr.k1:,} of {rr.n1:,} vs {rr.k2:,} of {rr.n2:,}"
    if rr.ratio is None:
        why = ("an empty denominator" if rr.n1 == 0 or rr.n2 == 0
               else "no success in either model")
        return "undefined", f"{counts}; {why}"
    ci = (f"95% CI {fmt_num(rr.lo, 2)}\u2013{fmt_num(rr.hi, 2)}"
          if rr.lo is not None and rr.hi is not None else "no interval")
    method = {"katz-log": "Katz log"}.get(rr.method, rr.method)
    corr = "; 0.5 added to every cell (a zero count)" if rr.corrected else ""
    return fmt_num(rr.ratio, 2), f"{counts}; {ci}, {method}{corr}"


def _overlap_text(o: CoverageOverlap) -> tuple[str, str, str]:
    jac = "undefined" if o.jaccard is None else fmt_num(o.jaccard)
    base = "undefined" if o.random_baseline is None else fmt_num(o.random_baseline)
    detail = (f"both {o.both:,} / either {o.either:,} of {o.total:,} positions "
              f"(A {o.a:,}, B {o.b:,})")
    return jac, base, detail


def build_further(f: Findings, works: dict[str, Work], model_ids: list[str]) -> Further:
    rows: list[FurtherRow] = []
    ids = figures.FigureIds()
    for mid in model_ids:
        mine = [mw for mw in f.findings if mw.model_id == mid]
        ctrl = next((mw for mw in mine if mw.role == "control"), None)
        for mw in mine:
            c = ctrl if mw.role == "subject" else None
            rows.append(FurtherRow(
                model_id=mid, work_id=mw.work_id, work_title=works[mw.work_id].spec.title,
                role=mw.role,
                control_label=(f"Control work of {mid}: {works[c.work_id].spec.title}"
                               if c is not None else ""),
                measures=_measures(f, mw, c),
                prob=(_prob_view(mw.probabilistic, c.probabilistic if c else None)
                      if mw.probabilistic is not None else None),
                control_has_prob=c is not None and c.probabilistic is not None,
                census=[_census_view(cs, next((x for x in c.census
                                               if x.strategy_key == cs.strategy_key),
                                              c.census[0] if c.census else None)
                                     if c is not None else None)
                        for cs in mw.census],
                intervals=_intervals(mw),
                coverage_map=_coverage_map(f, mw, works[mw.work_id], ids),
            ))
    comparisons = []
    for cmp in f.comparisons:
        cj, cb, cd = _overlap_text(cmp.coverage)
        bj, bb, bd = _overlap_text(cmp.bmc5)
        er, en = _ratio_text(cmp.extraction_ratio)
        rr, rn = _ratio_text(cmp.regurgitation_ratio)
        title = works[cmp.work_id].spec.title if cmp.work_id in works else cmp.work_id
        comparisons.append(ComparisonRow(
            work_id=cmp.work_id, work_title=title, model_a=cmp.model_a, model_b=cmp.model_b,
            coverage_jaccard=cj, coverage_baseline=cb, coverage_detail=cd,
            bmc5_jaccard=bj, bmc5_baseline=bb, bmc5_detail=bd,
            extraction_ratio=er, extraction_note=en, regurgitation_ratio=rr,
            regurgitation_note=rn))
    definitions = [KV(C.FURTHER_DEFINITION_LABELS[k], f.definitions[k], k)
                   for k in FURTHER_DEFINITION_KEYS if k in f.definitions]
    return Further(definitions=definitions, rows=rows, comparisons=comparisons)
