"""The token cache: keyed by the work's hash, profile, exclusions and normalizer; never stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casekit.case import load_case
from casekit.normalize import tokenize
from casekit.works import load_works


def test_cached_tokens_equal_fresh_ones(case_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEKIT_CACHE", str(tmp_path / "cache"))
    case = load_case(case_dir / "case.yaml")
    first = {w.id: w.tokens for w in load_works(case)}
    files = sorted((tmp_path / "cache" / "tokens").glob("*.npz"))
    assert len(files) == 2, "one entry per work and profile"
    second = {w.id: w.tokens for w in load_works(case)}  # now from the cache
    for wid, toks in first.items():
        fresh = tokenize(next(w for w in load_works(case) if w.id == wid).raw, "light-words")
        assert second[wid].words == toks.words == fresh.words
        assert np.array_equal(second[wid].starts, fresh.starts)
        assert np.array_equal(second[wid].ends, fresh.ends)


def test_a_changed_work_or_a_corrupt_entry_is_not_used(case_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEKIT_CACHE", str(tmp_path / "cache"))
    case = load_case(case_dir / "case.yaml")
    _ = [w.tokens for w in load_works(case)]
    for f in (tmp_path / "cache" / "tokens").glob("*.npz"):
        f.write_bytes(b"not an npz file")
    subject = next(w for w in load_works(case) if w.id == "subject")
    assert subject.tokens.words == tokenize(subject.raw, "light-words").words
    (case_dir / "subject.txt").write_text("A different text entirely, with new words.")
    changed = next(w for w in load_works(case) if w.id == "subject")
    assert changed.tokens.words[:3] == ["a", "different", "text"]
