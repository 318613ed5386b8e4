"""The report's view model: :class:`ReportModel` is ``r`` in the templates.

It gathers the sections' views (each defined beside its builder in
:mod:`casekit.report.sections`); every field is already formatted, so templates do no
arithmetic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from casekit.report.sections.attempts import AttemptSample
from casekit.report.sections.bottom_line import BottomLine
from casekit.report.sections.certification import Evidence
from casekit.report.sections.controls import ControlQualification, FloorView
from casekit.report.sections.cover import Bates, Cover
from casekit.report.sections.custody import Custody
from casekit.report.sections.disclosures import Disclosures
from casekit.report.sections.effort import Effort
from casekit.report.sections.exhibits import ExhibitGroup
from casekit.report.sections.further import Further
from casekit.report.sections.glossary import Glossary
from casekit.report.sections.long_texts import LongText
from casekit.report.sections.manifest import Manifest
from casekit.report.sections.methods import Methods
from casekit.report.sections.reliability import Reliability
from casekit.report.sections.reproducibility import RerunView
from casekit.report.sections.sensitivity import Sensitivity
from casekit.report.sections.summary import ModelSummary, SummaryRow
from casekit.report.sections.teacher_forced import TFModel
from casekit.report.text import APPENDIX_MAX_CHARS, INLINE_MAX_CHARS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportModel:
    """Everything the templates show. ``r`` in the templates."""

    cover: Cover
    overview: list[SummaryRow]
    summary: list[ModelSummary]
    absence_caveat: str
    category_text: dict[str, str]
    tf_models: list[TFModel]
    methods: Methods
    controls: list[FloorView]
    control_works: list[str]
    exhibit_groups: list[ExhibitGroup]
    exhibits_shown: int
    exhibits_total: int
    exhibits_per_finding: int
    attempts: AttemptSample
    """Every attempt counted by stratum, a seeded sample shown, the full listing cited."""
    manifest: Manifest
    limitations: list[str]
    bates: Bates
    evidence: Evidence
    custody: Custody
    long_texts: list[LongText] = field(default_factory=list)
    long_text_limit: str = f"{INLINE_MAX_CHARS:,}"
    appendix_limit: str = f"{APPENDIX_MAX_CHARS:,}"
    thresholds: dict[str, str] = field(default_factory=dict)
    further: Further | None = None
    reliability: Reliability | None = None
    """Errors, retries, rate limits, refusals and filters per model, from the ledger's tries."""
    rerun: RerunView | None = None
    """Reproducibility: this run repeats another (``casekit rerun``)."""
    control_qualifications: list[ControlQualification] = field(default_factory=list)
    """Each control work: why it qualifies per model, and its warnings (date, size)."""
    effort: Effort | None = None
    """Attempts per model x work x intent (also attached as effort.csv)."""
    sensitivity: Sensitivity | None = None
    """The findings at 15 / 40 / 50 / 100 words."""
    disclosures: Disclosures | None = None
    """Runtime, re-run, time source, operator: generated from the run's records."""
    bottom_line: BottomLine | None = None
    """The result in plain sentences (page 2), before the tables."""
    glossary: Glossary | None = None
    """The jargon of the tables, defined before the first page that uses it."""
    control_override: str = ""
    """Non-empty when the case overrode the control-work requirement (``allow_no_control``
    with no control work): printed on the cover and at the top of the summary."""

    @property
    def exhibits_count(self) -> str:
        """``shown of total`` exhibits (formatted)."""
        return f"{self.exhibits_shown:,} of {self.exhibits_total:,}"


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    pdf: Path
