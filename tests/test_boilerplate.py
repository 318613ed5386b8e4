"""Distribution boilerplate (a Project Gutenberg header, footer and licence): detected on
ingestion, excluded by default and listed in the report; kept on request, with a warning when
a subject's matches fall mostly inside it."""

from __future__ import annotations

from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.report.inputs import load_inputs
from casekit.report.sections.limitations import boilerplate_warnings, build_limitations
from casekit.run.runner import Runner
from casekit.works import (
    BOILERPLATE_FOOTER_REASON,
    BOILERPLATE_HEADER_REASON,
    detect_boilerplate,
    load_works,
)
from tests.conftest import CONTROL, SUBJECT, case_yaml

LICENCE = ("Please read this notice before you distribute this etext. Anyone may copy and "
           "give away this etext under the terms of the licence included below, provided the "
           "notice stays with it and no fee is charged for the copies, whatever the medium.")
HEADER = ("The Project Gutenberg EBook of The Mill, by Anon\n\n" + LICENCE + "\n\n"
          "*** START OF THE PROJECT GUTENBERG EBOOK THE MILL ***\n\n")
FOOTER = ("\n\n*** END OF THE PROJECT GUTENBERG EBOOK THE MILL ***\n\n"
          "Updated editions will replace the previous one; the old editions will be renamed.\n")
TEXT = HEADER + SUBJECT + FOOTER


def test_gutenberg_header_and_footer_are_detected() -> None:
    header, footer = detect_boilerplate(TEXT)
    # Through the marker line and its newline (the blank line after it is not counted anyway).
    assert (header.start, header.end) == (0, len(HEADER) - 1)
    assert header.reason == BOILERPLATE_HEADER_REASON
    assert TEXT[footer.start:].startswith("*** END OF THE PROJECT GUTENBERG EBOOK")
    assert footer.end == len(TEXT) and footer.reason == BOILERPLATE_FOOTER_REASON
    # The 1990s "Small Print!" header and the "End of the Project Gutenberg Etext" footer.
    old = ("**The Project Gutenberg Etext of Emma**\n" + LICENCE + "\n*END*THE SMALL PRINT! FOR "
           "PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n" + SUBJECT
           + "\nEnd of The Project Gutenberg Etext of Emma, by Jane Austen\n")
    h, f = detect_boilerplate(old)
    assert old[h.end:].startswith(SUBJECT) and old[f.start:].startswith("End of The Project")
    # A text that only mentions Project Gutenberg, or has no markers, loses nothing.
    assert detect_boilerplate(SUBJECT) == []
    assert detect_boilerplate(SUBJECT + "\nAs the Project Gutenberg volunteers say: read.\n"
                              + SUBJECT) == []


def _case(tmp: Path, keep: bool) -> Path:
    (tmp / "subject.txt").write_text(TEXT)
    (tmp / "control.txt").write_text(CONTROL)
    models = ("models:\n  - id: bot\n    provider: scripted\n    model: s\n    params:\n"
              f"      outputs:\n        subject: \"{LICENCE}\"\n")
    strategies = ("strategies:\n  - name: benign_prompts\n"
                  "    params: {templates: [\"Tell me about {{ title }}.\"]}\n"
                  "thresholds: {min_span_words: 15, legal_defaults: false}\n")
    yaml = case_yaml(models, strategies)
    if keep:
        yaml = yaml.replace("    role: subject\n", "    role: subject\n    boilerplate: keep\n")
    (tmp / "case.yaml").write_text(yaml)
    return tmp / "case.yaml"


def test_boilerplate_is_excluded_by_default_and_listed(tmp_path: Path) -> None:
    case = load_case(_case(tmp_path, keep=False))
    (work, _) = load_works(case)
    assert [(e.start, e.end) for e in work.excluded] == [(b.start, b.end)
                                                         for b in work.boilerplate]
    # No counted word comes from the header or footer.
    assert int(work.tokens.starts[0]) == len(HEADER)
    assert int(work.tokens.ends[-1]) <= len(HEADER) + len(SUBJECT)
    run_dir = Runner(case).run().run_dir
    f = analyze_run(run_dir)
    # The model recites the licence: nothing is credited, the exclusion is in the report.
    (s,) = [x for x in f.findings if x.work_id == "subject"]
    assert s.coverage.covered_words == 0 and s.exhibit_attempts == []
    inputs = load_inputs(run_dir, f, tmp_path / "case.yaml")
    text = " ".join(build_limitations(f, inputs.table, case.spec, [], inputs))
    assert (f"subject: 1 passage ({BOILERPLATE_HEADER_REASON}), characters "
            f"0\u2013{len(HEADER) - 1:,}") in text
    assert BOILERPLATE_FOOTER_REASON in text
    assert boilerplate_warnings(f, inputs.table, inputs) == []


def test_kept_boilerplate_warns_when_matches_fall_inside_it(tmp_path: Path) -> None:
    case = load_case(_case(tmp_path, keep=True))
    (work, _) = load_works(case)
    assert work.excluded == [] and work.boilerplate_kept
    run_dir = Runner(case).run().run_dir
    f = analyze_run(run_dir)
    (s,) = [x for x in f.findings if x.work_id == "subject"]
    assert s.exhibit_attempts, "the recited licence is credited when the boilerplate is kept"
    inputs = load_inputs(run_dir, f, tmp_path / "case.yaml")
    warnings = boilerplate_warnings(f, inputs.table, inputs)
    assert any(w.startswith("Detected boilerplate counted as the work's text") for w in warnings)
    (warn,) = [w for w in warnings if w.startswith("Warning:")]
    assert "bot's attempts on subject" in warn and "(100%)" in warn
