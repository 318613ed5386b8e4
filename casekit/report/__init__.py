"""The report: findings + ledger + works -> a court-ready HTML and PDF.

Two layers: ``build`` turns the inputs into a report model (plain dataclasses, every number
already formatted, every piece of model output already split into escaped-at-render segments),
``render`` turns the model into HTML (Jinja2, autoescaped) and PDF (WeasyPrint, with a fetcher
that serves only the templates' own files). The report never calls a model and never reads the
clock: the same inputs give the same HTML bytes.
"""

from casekit.report.build import ReportModel, ReportPaths, build_model, build_report
from casekit.report.render import SafeFetcher, default_template_dir, render_html, render_pdf

__all__ = [
    "ReportModel",
    "ReportPaths",
    "SafeFetcher",
    "build_model",
    "build_report",
    "default_template_dir",
    "render_html",
    "render_pdf",
]
