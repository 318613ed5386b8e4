"""The demo's short work (cases/demo, Jingle Bells: lyrics with a chorus sung three times) is
seen by a reader of the demo's report: the summary gives its short-work headline (share of the
song, refrain counted once), Methods the threshold scaled to the song, and the exhibit shows the
repeated chorus once. Run from the demo's own case file and works, its embedded models swapped
for a scripted one that sings the chorus (the embedded models take minutes; the golden fixture,
tests/golden/demo, is a run recorded before the song was added)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from casekit.analysis.analyze import analyze_run, load_findings, write_findings
from casekit.case import load_case
from casekit.run.runner import Runner

DEMO = Path(__file__).resolve().parent.parent / "cases" / "demo"


def test_the_demo_report_shows_jingle_bells_as_a_short_work(tmp_path: Path) -> None:
    from casekit.report.build import build_report

    song = (DEMO / "works" / "jingle-bells.txt").read_text(encoding="utf-8")
    chorus = song.split("\n\n")[1]
    shutil.copytree(DEMO / "works", tmp_path / "works")
    spec = yaml.safe_load((DEMO / "case.yaml").read_text(encoding="utf-8"))
    keep = {"jingle-bells", "control"}
    spec["works"] = [w for w in spec["works"] if w["id"] in keep]
    spec["models"] = [{"id": "bot", "provider": "scripted", "model": "scripted-1", "params": {
        "outputs": {"jingle-bells": f"Sure!\n{chorus}\n\n{chorus}\n"},
        "default": "I do not know that text."}}]
    spec["strategies"] = [s for s in spec["strategies"] if s["name"] == "lyrics_recall"]
    assert spec["strategies"], "the demo asks for the song by title, chorus and verse"
    case_path = tmp_path / "case.yaml"
    case_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    out = Runner(load_case(case_path), run_dir=tmp_path / "run").run()
    assert out.complete
    write_findings(out.run_dir, analyze_run(out.run_dir, case_path))
    f = load_findings(out.run_dir)
    assert f.works["jingle-bells"].kind == "lyrics"
    html = build_report(out.run_dir, f, case_path=case_path).html.read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", html)
    text = re.sub(r"\s+", " ", text)
    assert "Jingle Bells" in text
    assert re.search(r"Short work \(lyrics\): [0-9.]+% of the work reproduced \([0-9,]+ of "
                     r"[0-9,]+ counted words, the repeated refrain counted once\)", text), \
        "the summary's short-work headline"
    assert "short work: reporting threshold" in text  # Methods: the rule, scaled to the song
    assert "times in the output, shown once" in text  # the chorus sung twice, shown once
