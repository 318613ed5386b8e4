"""A case that overrides the control-work requirement says so on the cover and at the top of
the summary, not only under Methods."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.report import build_model, render_html
from casekit.report.build import CONTROL_OVERRIDE, load_inputs
from casekit.run.runner import Runner
from tests.conftest import SCRIPTED_MODELS, case_yaml

STRATEGIES = """\
strategies:
  - name: benign_prompts
    params: {templates: ["Tell me about {{ title }}."]}
thresholds: {min_span_words: 15, legal_defaults: false}
"""


def report_html(case_dir: Path, yaml_text: str) -> str:
    (case_dir / "case.yaml").write_text(yaml_text)
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    return html_lib.unescape(render_html(build_model(f, load_inputs(run_dir, f))))


def section(html: str, name: str) -> str:
    start = html.index(f'<section class="{name}">')
    return html[start:html.index("</section>", start)]


def test_override_is_on_the_cover_and_first_in_the_bottom_line(case_dir: Path) -> None:
    text = case_yaml(SCRIPTED_MODELS, STRATEGIES, "allow_no_control: true\n")
    # Drop the control work: the override is in force.
    text = re.sub(r"  - id: control\n(    .*\n)+", "", text)
    assert "role: control" not in text
    html = report_html(case_dir, text)
    summary = section(html, "bottom-line")
    assert 'id="control-override"' in summary
    # Before anything else of the bottom line (page 2): right under its heading.
    assert summary.index("control-override") < summary.index("casekit recorded")
    assert CONTROL_OVERRIDE in summary and "allow_no_control: true" in summary
    assert "overrode the control-work requirement" in section(html, "cover")


def test_no_notice_when_a_control_work_exists(case_dir: Path) -> None:
    html = report_html(case_dir, case_yaml(SCRIPTED_MODELS, STRATEGIES,
                                           "allow_no_control: true\n"))
    assert "control-override" not in html and "NO CONTROL WORK" not in html
