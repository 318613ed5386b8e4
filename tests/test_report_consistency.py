"""Item 5 of issue 16 on a scripted case larger than the demo: three models, three subject
works and a control. Every headline figure of the bottom line equals its findings.json value
and appears once for its model x work (no two numbers for the same quantity)."""

from __future__ import annotations

import html
import json
import random
import re
import textwrap
from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run, findings_bytes
from casekit.case import load_case
from casekit.run.runner import Runner

pytestmark = pytest.mark.slow

VOCAB = ("river stone lantern orchard ledger harbour copper meadow whistle candle archive "
         "bridge willow thunder pepper saddle marble violet engine garden mirror quarry "
         "falcon cellar ribbon hollow beacon timber velvet compass").split()


def _work(seed: int, words: int = 400) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(words):
        out.append(rng.choice(VOCAB) + f"{rng.randint(0, 999)}")
        if i % 12 == 11:
            out[-1] += "."
    return " ".join(out)


def _slice(text: str, start: int, n: int) -> str:
    return " ".join(text.split()[start:start + n])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("consistency")
    texts = {w: _work(i) for i, w in enumerate(("alpha", "beta", "gamma", "ctl"))}
    for w, t in texts.items():
        (root / f"{w}.txt").write_text(t, encoding="utf-8")
    # m1 copies 40 words of alpha and 20 of beta; m2 25 words of gamma; m3 nothing.
    outputs = {
        "m1": {"alpha": _slice(texts["alpha"], 30, 40), "beta": _slice(texts["beta"], 100, 20),
               "gamma": "I cannot recall it.", "ctl": "No idea."},
        "m2": {"alpha": "Something else entirely.", "beta": "Not this one.",
               "gamma": _slice(texts["gamma"], 200, 25), "ctl": "Unknown."},
        "m3": {w: "I do not know this text." for w in texts},
    }
    models = "models:\n" + "".join(
        f"  - id: {m}\n    provider: scripted\n    model: scripted-{m}\n    params:\n"
        f"      outputs: {json.dumps(o)}\n      top1: 0.5\n" for m, o in outputs.items())
    works = "works:\n" + "".join(
        f"  - id: {w}\n    title: Work {w.capitalize()}\n    author: Anon\n    path: {w}.txt\n"
        f"    role: {'control' if w == 'ctl' else 'subject'}\n" for w in texts)
    (root / "case.yaml").write_text(textwrap.dedent("""\
        case:
          id: bigger
          title: A larger scripted case
          matter: none
          examiner: Tester
          organization: Test Org
        """) + works + models + textwrap.dedent("""\
        strategies:
          - name: prefix_continuation
            params: {prefix_words: 10, suffix_words: 30, max_windows: 3}
          - name: benign_prompts
            params: {templates: ["Tell me about {{ title }}.", "Quote {{ title }}."]}
        thresholds: {min_span_words: 15, legal_defaults: false}
        """), encoding="utf-8")
    return root, texts


def test_each_headline_figure_equals_its_findings_value(case: tuple[Path, dict[str, str]]
                                                         ) -> None:
    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs
    from casekit.report.sections.bottom_line import fmt_p
    from casekit.report.text import fmt_pct

    root, _texts = case
    run_dir = Runner(load_case(root / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    data = json.loads(findings_bytes(f))
    page = render_html(build_model(f, load_inputs(run_dir, f)))
    # The sentences, one per model x work (the thumbnail and the method follow the list).
    bl = page.split('id="bottom-line"', 1)[1].split("</section>", 1)[0]
    bl = bl.split('<ul class="bottom-lines">', 1)[1].split("</ul>", 1)[0]
    bl = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", bl)))
    by_key = {(x["model_id"], x["work_id"]): x for x in data["findings"]}
    subjects = [x for x in f.findings if x.role == "subject"]
    assert len({x.model_id for x in subjects}) == 3 and len({x.work_id for x in subjects}) == 3
    assert any(by_key[(x.model_id, x.work_id)]["regurgitation"]["k"]
               + by_key[(x.model_id, x.work_id)]["extraction"]["k"] for x in subjects)
    for x in subjects:
        fj = by_key[(x.model_id, x.work_id)]
        title = f"Work {x.work_id.capitalize()}"
        parts = [t for t in bl.split(f"{x.model_id} \u00d7")[1:] if t.strip().startswith(title)]
        assert len(parts) == 1, "\n".join(parts)  # one sentence per model x work
        text = parts[0].split("\u00d7", 1)[0]
        assert f"coverage {fmt_pct(fj['coverage']['share'])}," in text
        assert f"longest contiguous block {fj['coverage']['longest_block_words']:,} words" in text
        for cat, intent in (("regurgitation", "benign"), ("extraction", "adversarial")):
            r = fj[cat]
            want = f"{r['k']:,} of {r['n']:,} {intent}" if r["n"] else f"{intent}: not tested"
            assert want in text, (x.model_id, x.work_id, want, text)
        t = fj["vs_control"]
        assert f"{t['subject']['k']:,} of {t['subject']['n']:,} generation attempts" in text
        assert f"control {t['control']['k']:,} of {t['control']['n']:,}" in text
        assert f"Fisher's exact p {fmt_p(t['p_value'])}," in text
        assert f"Holm-adjusted p {fmt_p(t['p_adjusted'])}:" in text
        assert text.count("coverage ") == 1  # each figure once
        # No other number stands for the same quantity in this model x work's sentence.
        pcts = re.findall(r"coverage (\d+(?:\.\d+)?%)", text)
        assert pcts == [fmt_pct(fj["coverage"]["share"])]
