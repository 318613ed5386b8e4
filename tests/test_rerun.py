"""casekit rerun: the same planned attempts as a new linked run, compared attempt by attempt."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from casekit.analysis.compare import COMPARISON_NAME, compare_runs
from casekit.case import load_case
from casekit.cli import cli
from casekit.ledger import read_records, verify_chain
from casekit.records import AttemptRecord, RunStart
from casekit.run.runner import Runner


def test_rerun_links_repeats_and_compares(case_dir: Path) -> None:
    first = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    res = CliRunner().invoke(cli, ["rerun", str(first)])
    assert res.exit_code == 0, res.output
    second = first.with_name(first.name + "-rerun-1")
    assert verify_chain(second / "ledger.jsonl").ok
    recs1 = read_records(first / "ledger.jsonl")
    recs2 = read_records(second / "ledger.jsonl")
    start2 = recs2[0]
    assert isinstance(start2, RunStart) and start2.rerun_of is not None
    assert start2.rerun_of["ledger_head_hash"] == recs1[-1].hash
    a1 = {r.attempt.id: r.attempt for r in recs1 if isinstance(r, AttemptRecord)}
    a2 = {r.attempt.id: r.attempt for r in recs2 if isinstance(r, AttemptRecord)}
    assert a1 == a2, "same planned attempts, prompts and parameters"
    comp = json.loads((second / COMPARISON_NAME).read_bytes())
    (model,) = comp["models"]
    # The scripted model is deterministic: everything agrees.
    assert model["same_spans"] == model["attempts"] == len(a1)
    assert model["output_agreement"] == 1.0
    assert "bot: same output" in res.output


def test_comparison_detects_nondeterministic_outputs(case_dir: Path) -> None:
    from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml

    (case_dir / "case.yaml").write_text(case_yaml(
        SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      vary: true"),
        STRATEGIES))
    first = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    res = CliRunner().invoke(cli, ["rerun", str(first)])
    assert res.exit_code == 0, res.output
    comp = compare_runs(first, first.with_name(first.name + "-rerun-1"))
    gen = [r for r in comp.attempts if r.same_output is not None]
    assert gen and not any(r.same_output for r in gen), "every generated text differs"
    assert all(r.same_spans for r in comp.attempts), "the reproduced words are the same"
    (model,) = comp.models
    assert model.output_agreement == 0.0 and model.span_agreement == 1.0
    # Score attempts carry no text: they do not count in the output agreement.
    assert model.attempts > len(gen)


def test_report_of_a_rerun_shows_the_comparison_and_verifies(case_dir: Path) -> None:
    """The re-run's report says which run it repeats (from the ledger), shows the agreement
    per model from comparison.json, embeds that file (listed in the manifest with its hash),
    and casekit verify re-renders the same report from the PDF alone."""
    import html as html_lib
    import re

    from pypdf import PdfReader

    from casekit.analysis.analyze import analyze_run, write_findings
    from casekit.report.build import build_report
    from casekit.report.verify import verify_report
    from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml

    (case_dir / "case.yaml").write_text(case_yaml(
        SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      vary: true"),
        STRATEGIES))
    first = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    assert CliRunner().invoke(cli, ["rerun", str(first)]).exit_code == 0
    second = first.with_name(first.name + "-rerun-1")
    comp = json.loads((second / COMPARISON_NAME).read_bytes())
    f = analyze_run(second)
    write_findings(second, f)
    paths = build_report(second, f)
    text = re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ",
                                                       paths.html.read_text())))
    assert "Reproducibility: a re-run" in text and first.name.split("-")[0] in text
    (m,) = comp["models"]
    assert f"{m['same_output']} of {m['attempts']}" in text  # same output: none (vary: true)
    assert f"{m['same_spans']} of {m['attempts']} (100%)" in text
    att = PdfReader(paths.pdf).attachments
    assert COMPARISON_NAME in att and att[COMPARISON_NAME][0] == (second / COMPARISON_NAME
                                                                  ).read_bytes()
    res = verify_report(paths.pdf)
    assert res.ok, [c for c in res.checks if not c.ok]
