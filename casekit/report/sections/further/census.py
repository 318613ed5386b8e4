"""Whole-work p_z census (the census block of partials/further.html.j2) beside the control's
[Coo25]: the view of the pz_census strategy's measure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from markupsafe import Markup

from casekit.report import catalogue as C
from casekit.report import figures
from casekit.report.sections.further.probabilistic import NP_SHOWN_N, NP_SHOWN_P, NPRow, np_cell
from casekit.report.text import (
    DASH,
    boot_text,
    counted,
    fmt_pct,
)
from casekit.report.views import RateView, rate_view
from casekit.strategies.census import Census, CensusPreset

log = logging.getLogger(__name__)


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
    """The census windows the figure draws, with the noun: "1 window", "48 windows"."""


def census_view(c: Census, ctrl: Census | None) -> CensusView:
    """One census beside the control's census of the same strategy key."""
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
    np_rows = [NPRow(p=f"{p:g}", cells=[np_cell(mine, n, p) for n in NP_SHOWN_N],
                     control=[np_cell(theirs, n, p) for n in NP_SHOWN_N] if ctop else [])
               for p in NP_SHOWN_P if mine]

    def summ(cs: Census) -> str:
        err = C.CENSUS_FAILED.format(n=f"{cs.errors:,}") if cs.errors else ""
        share = cs.scored_chars / cs.counted_chars if cs.counted_chars else None
        return C.CENSUS_SUMMARY.format(windows=f"{cs.windows:,}", planned=f"{cs.planned:,}",
                                       failed=err, scored=f"{cs.scored_chars:,}",
                                       counted=f"{cs.counted_chars:,}", share=fmt_pct(share))
    return CensusView(
        key=c.strategy_key, params=c.params, summary=summ(c),
        control_summary=(f"{summ(ctrl)}; {ctrl.params}" if ctrl else
                         C.NO_CONTROL_CENSUS),
        greedy=rate_view(c.greedy), bootstrap=boot_text(c.greedy_bootstrap), columns=columns,
        histogram=hist, share_tables=share_tables, np_rows=np_rows,
        ns=[f"{n:,}" for n in NP_SHOWN_N], figure_preset=drawn.preset,
        histogram_svg=figures.histogram([b.share for b in drawn.histogram]),
        figure_windows=counted(c.windows, "window"))
