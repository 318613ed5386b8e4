"""The k-gram index cache: a second build loads from the cache and gives identical lookups;
a damaged entry is detected and rebuilt; any change of key gives a different entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casekit.analysis.matcher import WorkMatcher
from casekit.cache import index_cache_path
from casekit.case import load_case
from casekit.normalize import tokenize
from casekit.works import MATCH_PROFILE, Work, load_works


@pytest.fixture
def work(case_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Work:
    monkeypatch.setenv("CASEKIT_CACHE", str(tmp_path / "cache"))
    works = load_works(load_case(case_dir / "case.yaml"))
    return next(w for w in works if w.id == "subject")


def entry(work: Work, k: int = 5) -> Path:
    return index_cache_path(work.sha256, MATCH_PROFILE,
                            [(e.start, e.end) for e in work.excluded], k)


OUTPUT = ("The miller's daughter counted the sacks of grain twice before she trusted the "
          "number, because her father had taught her")


def lookups(m: WorkMatcher) -> tuple[list[tuple[int, int, int, int]], list[int], list[int]]:
    out = tokenize(OUTPUT, MATCH_PROFILE)
    spans = [(s.out_start, s.out_end, s.work_start, s.work_end) for s in m.exact_spans(out)]
    qp, wp = m.index.lookup(m.query_ids(out))
    return spans, qp.tolist(), wp.tolist()


def test_second_build_loads_from_the_cache_with_identical_lookups(
        work: Work, monkeypatch: pytest.MonkeyPatch) -> None:
    path = entry(work)
    assert not path.exists()
    cold = WorkMatcher.for_work(work, MATCH_PROFILE, 5)
    assert path.exists()
    # Warm: building the index again would be a bug; make it fail loudly.
    monkeypatch.setattr("casekit.analysis.matcher.KgramIndex.__init__",
                        lambda *a, **kw: pytest.fail("index rebuilt despite a cache entry"))
    warm = WorkMatcher.for_work(work, MATCH_PROFILE, 5)
    assert lookups(warm) == lookups(cold)
    spans = lookups(warm)[0]
    assert spans and max(e - s for s, e, _, _ in spans) >= 20  # the recited passage
    assert np.array_equal(warm.work_ids, cold.work_ids)
    assert warm.vocab.words() == cold.vocab.words()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_entry_is_detected_and_rebuilt(work: Work, damage: str) -> None:
    cold = WorkMatcher.for_work(work, MATCH_PROFILE, 5)
    path = entry(work)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # one flipped byte inside the stored arrays (np.savez does not compress)
        i = data.index(b"sorted_hashes") + 200
        data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    rebuilt = WorkMatcher.for_work(work, MATCH_PROFILE, 5)
    assert lookups(rebuilt) == lookups(cold)
    # ... and the entry was rewritten whole: the next build loads it.
    assert WorkMatcher.for_work(work, MATCH_PROFILE, 5).index.arrays().keys() == \
        cold.index.arrays().keys()
    assert path.read_bytes() != bytes(data[: len(data) // 2])


def test_key_covers_k_profile_exclusions_and_work(work: Work) -> None:
    base = entry(work)
    assert entry(work, 6) != base
    assert index_cache_path(work.sha256, "words", [], 5) != base
    assert index_cache_path(work.sha256, MATCH_PROFILE, [(0, 10)], 5) != base
    assert index_cache_path("sha256:" + "0" * 64, MATCH_PROFILE, [], 5) != base


def test_truncated_token_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    # A half-written token entry is not a zip file: it must read as "no entry", not raise.
    from casekit.cache import load_tokens, save_tokens

    path = tmp_path / "tokens.npz"
    save_tokens(path, ["a", "b"], np.array([0, 2]), np.array([1, 3]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert load_tokens(path) is None
