"""Assembly of the report: the sections' views into one model, then HTML, PDF and manifest.

Each section of the report is built in :mod:`casekit.report.sections` (one module per template
partial); the formatting helpers are in :mod:`casekit.report.text`, the reading of the run folder
in :mod:`casekit.report.inputs`, the prose in :mod:`casekit.report.catalogue`. This module only
puts them together, in the order the numbers depend on each other (exhibits first: their
numbers appear in the summary and the sample of attempts).

Nothing here reads the clock or iterates an unordered collection: the same inputs give the same
model, hence the same HTML bytes. The date on the cover is the run's recorded start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from casekit.analysis.findings import Findings
from casekit.analysis.taxonomy import ABSENCE_CAVEAT, CATEGORY_TEXT
from casekit.analysis.validation import validate_matcher
from casekit.canonical import sha256_bytes
from casekit.ledger import LEDGER_NAME
from casekit.report.embed import deflating
from casekit.report.evidence import (
    ATTEMPTS_PER_STRATUM,
    Attached,
    EvidenceFiles,
    ReportOptions,
    append_streamed,
    attachments,
    build_manifest,
    manifest_bytes,
    pdf_options,
    template_set,
)
from casekit.report.inputs import Inputs, evidence_files, load_inputs
from casekit.report.model import ReportModel, ReportPaths
from casekit.report.render import SafeFetcher, render_html, render_pdf, template_dirs
from casekit.report.sections.attempts import build_attempts
from casekit.report.sections.bottom_line import build_bottom_line
from casekit.report.sections.certification import anchor_rows, build_evidence
from casekit.report.sections.controls import build_floors, build_qualifications
from casekit.report.sections.cover import (
    CONTROL_OVERRIDE,
    build_bates,
    build_cover,
    control_override_text,
)
from casekit.report.sections.custody import build_custody
from casekit.report.sections.disclosures import build_disclosures
from casekit.report.sections.effort import build_effort
from casekit.report.sections.exhibits import EXHIBITS_PER_FINDING, build_exhibits
from casekit.report.sections.further import build_further
from casekit.report.sections.glossary import build_glossary
from casekit.report.sections.limitations import build_limitations
from casekit.report.sections.manifest import build_manifest_view
from casekit.report.sections.methods import build_methods
from casekit.report.sections.reliability import build_reliability
from casekit.report.sections.reproducibility import build_rerun
from casekit.report.sections.sensitivity import build_sensitivity
from casekit.report.sections.summary import build_summary
from casekit.report.sections.teacher_forced import build_tf_models
from casekit.report.text import fmt_value

log = logging.getLogger(__name__)

__all__ = [
    "ATTEMPTS_PER_STRATUM",
    "CONTROL_OVERRIDE",
    "EXHIBITS_PER_FINDING",
    "Inputs",
    "Rendered",
    "ReportModel",
    "ReportPaths",
    "build_model",
    "build_report",
    "load_inputs",
    "render_report",
]

REPORT_DIR = "report"
HTML_NAME = "report.html"
PDF_NAME = "report.pdf"
MANIFEST_NAME = "manifest.json"


def build_model(findings: Findings, inputs: Inputs,
                exhibits_per_finding: int = EXHIBITS_PER_FINDING, *,
                template_dir: Path | None = None, attach_works: bool = False,
                attempts_per_stratum: int = ATTEMPTS_PER_STRATUM,
                files: EvidenceFiles | None = None, timestamp_tsa: str | None = None,
                sign: bool = False) -> ReportModel:
    """The report model from the findings, the verified ledger records and the works.

    ``template_dir`` and ``attach_works`` only change what the report says about itself (the
    template set's hash, whether the works travel inside the PDF); ``attempts_per_stratum``
    is how many attempts of each model x work x strategy x outcome the sample shows.
    ``files``: the evidence files when the caller has them already (building the per-attempt
    table's bytes costs a pass over every attempt). ``timestamp_tsa`` and ``sign``: what
    ``casekit report`` will apply once the PDF is written (the Disclosures page says so).
    """
    f = findings
    st = inputs.start
    case = inputs.case
    end = inputs.ledger.run_end
    works = inputs.works
    requested = {m.model_id: f"{m.provider} / {m.model}" for m in st.models}
    model_ids = [m.id for m in case.models]
    model_ids += sorted({x.model_id for x in f.findings} - set(model_ids))
    floors_by_model = build_floors(f, case, model_ids)
    files = files if files is not None else evidence_files(f, inputs)
    table = inputs.table
    effort = build_effort(f, case, model_ids, inputs.ledger)
    files.effort_csv = effort.csv_bytes()
    # Exhibits first: their numbers appear in the summary and the sample of attempts.
    ex = build_exhibits(f, inputs, requested, exhibits_per_finding)
    attempts = build_attempts(f, table, case, model_ids, ex.anchor_of, files,
                              attempts_per_stratum)
    overview, summary = build_summary(f, works, model_ids, requested, floors_by_model,
                                      ex.refs_of, ex.stitching, attempts.by_pair, table)
    floors = [floors_by_model[mid] for mid in model_ids]
    # The matcher's own validation on passages planted in the run's works (issue 16 item 7):
    # seeded from the ledger head, so verify re-renders the same figures; a few hundred ms.
    validation = validate_matcher([works[w.id] for w in case.works if w.id in works],
                                  case.thresholds, f.ledger_head_hash)
    methods = build_methods(f, table, case, st, inputs.ledger.imported_summary(), validation,
                            {wid: w.unit for wid, w in works.items()})
    return ReportModel(
        cover=build_cover(f, case, st, end), overview=overview, summary=summary,
        absence_caveat=ABSENCE_CAVEAT,
        category_text=dict(CATEGORY_TEXT), tf_models=build_tf_models(f, works, model_ids),
        methods=methods, controls=floors,
        control_works=[f"{w.id} ({w.title})" for w in case.works if w.role == "control"],
        exhibit_groups=ex.groups, exhibits_shown=ex.shown, exhibits_total=ex.total,
        exhibits_per_finding=exhibits_per_finding,
        attempts=attempts,
        manifest=build_manifest_view(f, inputs, end),
        limitations=build_limitations(f, table, case, floors, inputs),
        bates=build_bates(case),
        evidence=build_evidence(files, inputs, template_set(template_dirs(template_dir)),
                                ReportOptions(exhibits_per_finding, attach_works,
                                              attempts_per_stratum, timestamp_tsa, sign)),
        custody=build_custody(inputs, case), long_texts=ex.longs,
        thresholds={k: fmt_value(v) for k, v in f.thresholds.model_dump().items()},
        further=build_further(f, table, works, model_ids),
        reliability=build_reliability(f, inputs, model_ids),
        rerun=build_rerun(f, inputs),
        control_override=control_override_text(case),
        control_qualifications=build_qualifications(
            case, {wid: len(w.tokens) for wid, w in works.items()}),
        disclosures=build_disclosures(case, st, inputs.ledger.server_dates,
                                      rerun=inputs.comparison_bytes is not None,
                                      anchor=anchor_rows(inputs),
                                      checkpoints=inputs.ledger.checkpoints,
                                      timestamp_tsa=timestamp_tsa, sign=sign),
        effort=effort, sensitivity=build_sensitivity(f, table, model_ids),
        bottom_line=build_bottom_line(f, table, case, works, model_ids, st, end,
                                      inputs.ledger, inputs.attempts_by_seq, ex.anchor_of,
                                      methods.legal_note),
        glossary=build_glossary(f),
    )


def _epoch(iso: str) -> int | None:
    """Seconds since 1970 of a recorded ISO-8601 UTC time (None if unparsable)."""
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(dt.timestamp()) if dt.tzinfo is not None else None


@dataclass
class Rendered:
    """A report rendered to HTML, with the manifest and the files the PDF embeds."""

    model: ReportModel
    html: str
    manifest: dict[str, Any]
    attached: list[Attached]
    epoch: int
    """The run's start (seconds since 1970): the PDF's dates."""
    ledger_head_hash: str

    def write_pdf(self, target: Path, template_dir: Path | None = None) -> SafeFetcher:
        """PDF/A-3b with the attachments; the same inputs give the same bytes."""
        options = pdf_options(self.attached, self.ledger_head_hash, self.epoch)
        fetcher = render_pdf(self.html, target, template_dir, source_date_epoch=self.epoch,
                             **options)
        append_streamed(target, options, self.attached, self.epoch)
        return fetcher


def render_report(findings: Findings, inputs: Inputs, options: ReportOptions,
                  template_dir: Path | None = None) -> Rendered:
    """The report's HTML, manifest and attachments (``casekit verify`` calls this too)."""
    files = evidence_files(findings, inputs)
    model = build_model(findings, inputs, options.exhibits_per_finding,
                        template_dir=template_dir, attach_works=options.attach_works,
                        attempts_per_stratum=options.attempts_per_stratum, files=files,
                        timestamp_tsa=options.timestamp_tsa, sign=options.sign)
    html = render_html(model, template_dir)
    manifest = build_manifest(
        start=inputs.start, findings=findings, files=files,
        templates=template_set(template_dirs(template_dir)),
        html_sha256=sha256_bytes(html.encode("utf-8")), options=options,
        bates={"prefix": model.bates.prefix, "start": model.bates.start})
    return Rendered(model=model, html=html, manifest=manifest,
                    attached=attachments(manifest, files),
                    epoch=_epoch(inputs.start.began_at) or 0,
                    ledger_head_hash=findings.ledger_head_hash)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def build_report(run_dir: Path, findings: Findings, out_dir: Path | None = None,
                 template_dir: Path | None = None, *, case_path: Path | None = None,
                 exhibits_per_finding: int = EXHIBITS_PER_FINDING,
                 attach_works: bool = False,
                 attempts_per_stratum: int = ATTEMPTS_PER_STRATUM,
                 timestamp_tsa: str | None = None, sign: bool = False) -> ReportPaths:
    """Write report.html, report.pdf (PDF/A-3b, the data attached) and manifest.json for a run
    into out_dir (default run_dir/report).

    ``template_dir`` holds templates that override the defaults (same relative paths);
    ``case_path`` is where the case file is now if it moved since the run; ``attach_works``
    embeds the works' texts too (off by default: they are usually the copyrighted texts);
    ``attempts_per_stratum`` sizes the sample of attempts the pages show; ``timestamp_tsa``
    and ``sign`` say what the caller applies to the PDF once written (printed under
    Disclosures, recorded in the manifest).
    """
    out = out_dir or run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # The ledger is compressed for embedding on another core while it is verified and the
    # pages are made; what is embedded is checked to be the verified bytes (embed._deflate).
    with deflating(run_dir / LEDGER_NAME):
        inputs = load_inputs(run_dir, findings, case_path)
        rendered = render_report(findings, inputs,
                                 ReportOptions(exhibits_per_finding, attach_works,
                                               attempts_per_stratum, timestamp_tsa, sign),
                                 template_dir)
        html_path = out / HTML_NAME
        _write_atomic(html_path, rendered.html.encode("utf-8"))
        _write_atomic(out / MANIFEST_NAME, manifest_bytes(rendered.manifest))
        t1 = time.perf_counter()
        pdf_path = out / PDF_NAME
        tmp_pdf = pdf_path.with_name(pdf_path.name + ".tmp")
        fetcher = rendered.write_pdf(tmp_pdf, template_dir)
        tmp_pdf.replace(pdf_path)
    t2 = time.perf_counter()
    log.info("report: HTML in %.2fs, PDF in %.2fs (%d resources served, %d refused) -> %s",
             t1 - t0, t2 - t1, len(fetcher.served), len(fetcher.refused), out)
    return ReportPaths(html=html_path, pdf=pdf_path)
