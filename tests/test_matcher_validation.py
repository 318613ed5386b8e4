"""The report's own validation (issue 16 item 7): the matcher's recall and precision on
passages planted in the run's works, measured at report time through the analysis's code path,
seeded from the ledger head (so verify re-renders the same figures), and cheap."""

from __future__ import annotations

import time

import pytest

from casekit.analysis.matcher import WorkMatcher
from casekit.analysis.validation import PASSAGES, Validation, validate_matcher
from casekit.case import load_case
from casekit.works import Work, load_works
from tests.golden.make_golden import DEMO

HEAD = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def works() -> tuple[list[Work], object]:
    loaded = load_case(DEMO / "case.yaml")
    return load_works(loaded), loaded.spec.thresholds


def test_planted_passages_are_found_and_nothing_else(works: tuple[list[Work], object]) -> None:
    ws, th = works
    t0 = time.perf_counter()
    v = validate_matcher(ws, th, HEAD)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    assert [w.work_id for w in v.works] == [w.id for w in ws]
    assert v.planted == PASSAGES * len(ws)
    assert v.found == v.planted and v.true_spans == v.spans == v.planted
    for w in v.works:
        assert w.min_span <= w.shortest <= w.longest <= 3 * w.min_span
        assert w.edits >= w.planted  # every passage edited at least once: near-verbatim
    assert elapsed < 5.0  # a few hundred ms on an idle machine; bounded by works x PASSAGES


def test_seeded_from_the_ledger_head(works: tuple[list[Work], object]) -> None:
    ws, th = works
    a = validate_matcher(ws, th, HEAD)  # type: ignore[arg-type]
    assert a == validate_matcher(ws, th, HEAD)  # type: ignore[arg-type]
    b = validate_matcher(ws, th, "sha256:" + "cd" * 32)  # type: ignore[arg-type]
    assert a.seed != b.seed and [w.words for w in a.works] != [w.words for w in b.works]


def test_a_broken_matcher_lowers_recall(works: tuple[list[Work], object],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ws, th = works
    real = WorkMatcher.near_spans

    def drops_every_other(self: WorkMatcher, *args: object, **kwargs: object) -> list:
        spans = real(self, *args, **kwargs)  # type: ignore[arg-type]
        drops_every_other.calls += 1  # type: ignore[attr-defined]
        return [] if drops_every_other.calls % 2 else spans  # type: ignore[attr-defined]

    drops_every_other.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(WorkMatcher, "near_spans", drops_every_other)
    v: Validation = validate_matcher(ws, th, HEAD)  # type: ignore[arg-type]
    assert v.found <= v.planted // 2 + len(ws)
    assert v.found < v.planted


def test_a_matcher_that_invents_spans_lowers_precision(works: tuple[list[Work], object],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    ws, th = works
    real = WorkMatcher.near_spans

    def shifted(self: WorkMatcher, *args: object, **kwargs: object) -> list:
        spans = real(self, *args, **kwargs)  # type: ignore[arg-type]
        # Each span also reported at the start of the output, aligned with the work's start.
        return spans + [replace(s, out_start=0, out_end=s.out_words, work_start=0,
                                work_end=s.words) for s in spans if s.out_start > s.out_words]

    monkeypatch.setattr(WorkMatcher, "near_spans", shifted)
    v = validate_matcher(ws, th, HEAD)  # type: ignore[arg-type]
    assert v.spans > v.true_spans


def test_a_work_shorter_than_its_threshold_is_not_planted(works: tuple[list[Work], object]
                                                          ) -> None:
    ws, th = works
    big = th.model_copy(update={"min_span_words": 100_000})  # type: ignore[attr-defined]
    v = validate_matcher(ws[:1], big, HEAD)
    assert v.planted == 0 and v.works[0].planted == 0
