"""Teacher-forced top-choice agreement (partials/teacher_forced.html.j2): each subject work's
mean top-1 share beside the control's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import Findings
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.strategies.teacher_forced import SummaryFields
from casekit.works import Work

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TFRow:
    work_id: str
    work_title: str
    windows: str
    mean: str
    range: str
    greedy: str


@dataclass(frozen=True)
class TFModel:
    model_id: str
    rows: list[TFRow]
    control_mean: str
    control_windows: str


def build_tf_models(f: Findings, works: dict[str, Work], model_ids: list[str]) -> list[TFModel]:
    """Per model: each subject work's mean teacher-forced top-1 share beside the control's."""
    out: list[TFModel] = []
    for mid in model_ids:
        mine = [(mw, tf) for mw in f.findings
                if mw.model_id == mid and (tf := mw.fields(SummaryFields).teacher_forced)]
        subj = [(mw, tf) for mw, tf in mine if mw.role == "subject"]
        ctrl = [tf for mw, tf in mine if mw.role == "control"]
        if not subj and not ctrl:
            continue
        rows: list[TFRow] = []
        for mw, tf in subj:
            rows.append(TFRow(work_id=mw.work_id, work_title=works[mw.work_id].spec.title,
                              windows=f"{tf.windows:,}", mean=fmt_pct(tf.mean_top1_share),
                              range=f"{fmt_pct(tf.min_top1_share)}\u2013"
                                    f"{fmt_pct(tf.max_top1_share)}",
                              greedy=f"{tf.greedy_reproduced_windows:,} of {tf.windows:,}"))
        cf = next((c for c in f.controls if c.model_id == mid), None)
        cwin = sum(tf.windows for tf in ctrl)
        out.append(TFModel(model_id=mid, rows=rows,
                           control_mean=fmt_pct(cf.mean_top1_share) if cf else DASH,
                           control_windows=f"{cwin:,}"))
    return out
