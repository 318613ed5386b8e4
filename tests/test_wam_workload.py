"""benchmarks/wam_workload.py: the Whack-a-Mole-format workload and its casekit form describe
the same book, word for word, so casekit's numbers and the reference script's are comparable."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from benchmarks.wam_workload import (
    SEPARATOR,
    make_workload,
    novel_body,
    reference_words,
    split_excerpts,
)
from casekit.normalize import tokenize

NOVEL = Path(__file__).parents[1] / "benchmarks" / "data" / "austen-emma.txt.gz"


@pytest.fixture(scope="module")
def novel() -> str:
    text = gzip.decompress(NOVEL.read_bytes()).decode("utf-8")
    # The Gutenberg header and footer around the first chapters: small, and still a novel to
    # novel_body (the footer's marker is past the middle).
    end = text.index("CHAPTER IV")
    return text[:end] + text[text.index("End of The Project Gutenberg Etext"):]


def test_reference_words_is_the_wordpunct_filter() -> None:
    assert reference_words("Mr. Knightley's \u201cwell\u201d--_yes_ \u212a 1815!") == [
        "mr", "knightley", "s", "well", "_yes_", "1815"]


def test_work_words_are_the_excerpts_words_concatenated(novel: str) -> None:
    wl = make_workload(novel, generations=40, words=6000, seed=3)
    assert "Project Gutenberg" not in wl.work and wl.work.startswith("VOLUME I")
    ref = [w for ex in wl.excerpts for w in reference_words(ex)]
    assert tokenize(wl.work, "words").words == ref
    # Each target is its excerpt's characters in the work, and the excerpts tile the work.
    for i, (start, end) in enumerate(wl.ranges):
        assert wl.work[start:end] == wl.excerpts[i]
    assert SEPARATOR.join(wl.work[s:e] for s, e in wl.ranges) == wl.work
    # Both files describe the same excerpts, in order, and every generation is imported once.
    book, gens = wl.test_book(), wl.generation_file()
    assert [b["excerpt_id"] for b in book] == [g["excerpt_id"] for g in gens] == [
        f"p_id{i}" for i in range(len(wl.excerpts))]
    rows = wl.import_rows("novel", "wam")
    assert len(rows) == wl.n_generations == sum(len(g["generations"]) for g in gens) == 40
    for r in rows:
        i = int(r["label"].split()[0].removeprefix("p_id"))
        assert r["prompt"] == gens[i]["instruction"]
        assert wl.work[r["target_start"]:r["target_end"]] == gens[i]["excerpt_text"]
    assert {r["output"] for r in rows} == {
        x["generated_text"] for g in gens for x in g["generations"]}


def test_workload_is_seeded_and_mixes_recall(novel: str) -> None:
    a = make_workload(novel, generations=60, words=12000, seed=5)
    b = make_workload(novel, generations=60, words=12000, seed=5)
    assert a.generations == b.generations and a.instructions == b.instructions
    assert make_workload(novel, generations=60, words=12000, seed=6).generations != a.generations
    assert 0.8 * 12000 < a.generated_words < 1.2 * 12000
    # Some instructions quote the excerpt (so the instruction trim matters).
    quoting = [i for i, ins in enumerate(a.instructions) if '"' in ins]
    assert quoting and all(ins.split('"')[1] in " ".join(a.excerpts[i].split())
                           for i, ins in enumerate(a.instructions) if '"' in ins)


def test_excerpts_are_slices_of_the_body(novel: str) -> None:
    body = novel_body(novel)
    parts = split_excerpts(body, 300)
    assert all(len(p.split()) <= 390 for p in parts)
    assert [w for p in parts for w in p.split()] == body.split()


def test_rows_import_into_an_evidence_only_case(novel: str, tmp_path: Path) -> None:
    import json

    from casekit.case import load_case
    from casekit.ledger import LEDGER_NAME, read_records
    from casekit.records import AttemptRecord
    from casekit.run.importer import import_outputs
    from casekit.run.runner import default_run_dir

    wl = make_workload(novel, generations=12, words=2000, seed=9)
    (tmp_path / "novel.txt").write_text(wl.work, encoding="utf-8")
    (tmp_path / "case.yaml").write_text(
        "case: {id: wam, title: t, matter: m, examiner: e, organization: o}\n"
        "works:\n  - {id: novel, title: N, author: A, path: novel.txt, role: subject,\n"
        "     published: 1815-12-23, boilerplate: keep}\n"
        "models: []\nstrategies: []\nallow_no_control: true\n", encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in wl.import_rows("novel", "wam")),
                    encoding="utf-8")
    res = import_outputs(tmp_path / "case.yaml", rows)
    assert res.imported == 12
    run_dir = default_run_dir(load_case(tmp_path / "case.yaml"))
    recs = [r for r in read_records(run_dir / LEDGER_NAME) if isinstance(r, AttemptRecord)]
    by_excerpt = {wl.excerpts[i]: (wl.instructions[i], set(g))
                  for i, g in enumerate(wl.generations) if g}
    assert len(recs) == 12
    for r in recs:
        a = r.attempt
        assert a.strategy == "instruction_recall" and a.intent == "adversarial"
        assert a.target is not None and r.result is not None
        instruction, outputs = by_excerpt[wl.work[a.target.start:a.target.end]]
        assert a.supplied_texts() == [instruction]
        assert r.result.text in outputs
