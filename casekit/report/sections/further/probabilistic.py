"""Probabilistic extraction of one model x work (the p_z block of partials/further.html.j2):
(n,p)-discoverable cells, shares above thresholds and the p_z histogram [Hay25].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from markupsafe import Markup

from casekit.report import figures
from casekit.report.text import (
    DASH,
    counted,
    fmt_pct,
)
from casekit.report.views import RateView, rate_view
from casekit.stats import Rate
from casekit.strategies.teacher_forced import Probabilistic

log = logging.getLogger(__name__)


#: (n,p) cells shown in the compact table [Hay25].
NP_SHOWN_P = (0.5, 0.9)
NP_SHOWN_N = (1, 100, 10000)


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
    """The windows scored, with the noun: "1 window", "6 windows"."""
    greedy: RateView
    sampling: str
    ns: list[str]
    np_rows: list[NPRow]
    shares: list[ShareRow]
    histogram: list[HistBar]
    histogram_svg: Markup
    """The bars as an SVG figure (numbers only, casekit/report/figures.py)."""


def np_cell(rates: dict[tuple[int, float], Rate], n: int, p: float) -> str:
    r = rates.get((n, p))
    if r is None:
        return DASH
    v = rate_view(r)
    return f"{v.k_of_n} ({v.pct})" if r.n else v.k_of_n


def np_map(pr: Probabilistic | None) -> dict[tuple[int, float], Rate]:
    return {(x.n, x.p): x.rate for x in pr.np_rates} if pr else {}


def prob_view(pr: Probabilistic, ctrl: Probabilistic | None) -> ProbView:
    """The p_z view of one model x work beside the control's."""
    mine, theirs = np_map(pr), np_map(ctrl)
    ps = [p for p in NP_SHOWN_P if any(k[1] == p for k in mine)]
    np_rows = [NPRow(p=f"{p:g}", cells=[np_cell(mine, n, p) for n in NP_SHOWN_N],
                     control=[np_cell(theirs, n, p) for n in NP_SHOWN_N] if ctrl else [])
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
    return ProbView(preset=pr.preset, windows=counted(pr.windows, "window"),
                    greedy=rate_view(pr.greedy),
                    sampling=pr.sampling, ns=[f"{n:,}" for n in NP_SHOWN_N], np_rows=np_rows,
                    shares=shares, histogram=bars,
                    histogram_svg=figures.histogram([b.share for b in pr.histogram]))
