"""Bootstrap intervals where attempts are not independent (measurement.md section 6)."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.run.runner import Runner
from casekit.stats import clustered_rate, rate
from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml


def test_cluster_bootstrap_is_wider_than_wilson_when_clusters_agree_inside() -> None:
    # Two excerpts, each sampled twice: excerpt A reproduced both times, B never: 2 of 4.
    # Wilson treats the 4 attempts as independent: 95% CI about 15%..85%.
    # The bootstrap resamples whole excerpts: a replicate draws {A, A} (rate 1, prob 1/4),
    # {B, B} (rate 0, prob 1/4) or one of each (0.5, prob 1/2); with 2,000 replicates both
    # extremes occur about 500 times, so the 2.5% and 97.5% quantiles are 0 and 1.
    b = clustered_rate([1, 1, 0, 0], ["A", "A", "B", "B"], "excerpt")
    w = rate(2, 4)
    assert (b.k, b.n, b.clusters, b.unit) == (2, 4, 2, "excerpt")
    assert (b.lo, b.hi) == (0.0, 1.0)
    assert w.lo is not None and w.hi is not None and 0.1 < w.lo and w.hi < 0.9
    # Seeded: the same inputs give the same interval; cluster order is first appearance.
    assert clustered_rate([1, 1, 0, 0], ["A", "A", "B", "B"], "excerpt") == b
    # Independent clusters of one attempt each: a bootstrap over attempts, close to Wilson.
    many = clustered_rate([1] * 30 + [0] * 70, list(range(100)), "attempt")
    assert many.lo is not None and many.hi is not None
    assert abs(many.lo - 0.21) < 0.03 and abs(many.hi - 0.39) < 0.03


def test_samples_of_one_prompt_form_one_excerpt(case_dir: Path) -> None:
    # 3 prefix windows x 2 samples: 6 adversarial attempts in 3 excerpt clusters.
    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, STRATEGIES,
                                                  "samples: 2\n"))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    subj = next(x for x in f.findings if x.work_id == "subject")
    ext = subj.bootstrap["extraction"]
    assert (ext.n, ext.clusters) == (subj.extraction.n, 3) == (6, 3)
    assert ext.unit.startswith("excerpt")
    assert subj.bootstrap["teacher_forced_greedy"].unit.endswith("block")
    assert "cluster-bootstrap" in f.definitions["intervals"]

    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

    html = html_lib.unescape(render_html(build_model(f, load_inputs(run_dir, f))))
    start = html.index('id="further-bot-subject"')
    block = html[start:html.index('<div class="covmap-block">', start)]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", block))
    assert "Which interval each rate uses [intervals]" in text
    # Extraction: Wilson/CP over attempts beside the bootstrap over its 3 excerpts.
    assert re.search(r"Extraction \(adversarial attempts\) 6 of 6 \(100%\) 95% CI [^ ]+ "
                     r"exact Clopper-Pearson 95% cluster-bootstrap 100%.100% over 3 "
                     r"clusters, each an excerpt \(a prompt with all its samples\)",
                     text), text
