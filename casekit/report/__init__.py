"""The report: findings + ledger + works -> a court-ready HTML and PDF.

Two layers: ``build`` turns the inputs into a report model (plain dataclasses, every number
already formatted, every piece of model output already split into escaped-at-render segments),
``render`` turns the model into HTML (Jinja2, autoescaped) and PDF (WeasyPrint, with a fetcher
that serves only the templates' own files). ``build`` only assembles: each section's view and
builder is in ``sections/<partial>`` (one module per template partial), formatting and
highlighting in ``text``, the reading of the run folder in ``inputs``, the words in
``catalogue``. ``evidence`` makes the PDF a PDF/A-3b file that
carries its own data (ledger, findings, case, manifest); ``verify`` checks such a file against
that data (``casekit verify REPORT.pdf``). The report never calls a model and never reads the
clock: the same inputs give the same HTML and PDF bytes.
"""

from casekit.report.build import (
    ReportModel,
    ReportPaths,
    build_model,
    build_report,
    render_report,
)
from casekit.report.evidence import ReportOptions
from casekit.report.render import SafeFetcher, default_template_dir, render_html, render_pdf

__all__ = [
    "ReportModel",
    "ReportOptions",
    "ReportPaths",
    "SafeFetcher",
    "build_model",
    "build_report",
    "default_template_dir",
    "render_html",
    "render_pdf",
    "render_report",
]
