"""Every constraint of the case file answers with what was given and how to fix it (pydantic's
own messages state only the constraint: "Input should be greater than or equal to 1")."""

from __future__ import annotations

from pathlib import Path

import pytest

from casekit.case import load_case
from casekit.errors import CasekitError
from casekit.plan import build_plan
from casekit.works import load_works

CORPUS = Path(__file__).resolve().parent / "malformed"
BASE = (CORPUS / "bool_seed.yaml").read_text().replace("seed: true\n", "")


def rep(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (name, case text, fragments the one-line message must hold)
CONSTRAINTS = [
    ("bates start", rep("organization: O", "organization: O\n  bates: {start: 0}"),
     ["at least 1", "got 0", "write 1 or more"]),
    ("char range order", rep("    role: subject",
                             "    role: subject\n    exclude: [{chars: {start: 9, end: 5}}]"),
     ["end (5) must be greater than start (9)", "; give"]),
    ("role", rep("role: subject", "role: subjekt"), ["got 'subjekt'", "write one of these"]),
    ("rate limit", rep("    model: foo", "    model: foo\n    limits: {requests_per_minute: 0}"),
     ["greater than 0", "got 0", "; write"]),
    ("max_tries", rep("    model: foo", "    model: foo\n    limits: {max_tries: 50}"),
     ["at most 20", "got 50", "write 20 or less"]),
    ("near_exact", BASE + "thresholds: {near_exact: 0.2}\n", ["got 0.2", "; write"]),
    ("temperature", BASE + "decoding: {temperature: 3}\n", ["at most 2", "got 3"]),
    ("seed", BASE + "seed: 99999999999\n", ["at most 2147483647", "got 99999999999"]),
    ("samples", BASE + "samples: 0\n", ["at least 1", "got 0"]),
    ("id pattern", rep("id: t1", "id: 't 1'"), ["'t 1' is not allowed", "write letters"]),
    ("sha256", rep("    role: subject", "    role: subject\n    sha256: abc"),
     ["'abc'", "64 lowercase hexadecimal digits"]),
    ("api_key_env holds a key", rep("    model: foo", "    model: foo\n    api_key_env: sk-abc"),
     ["environment variable", "never the key itself"]),
    ("published as a year", rep("    role: subject", "    role: subject\n    published: 2020"),
     ["got 2020", "YYYY-MM-DD"]),
    ("strategy param", rep("prefix_words: 5", "prefix_words: -5"),
     ["at least 3", "got -5", "write 3 or more"]),
    ("strategy param NaN", rep("prefix_words: 5", "prefix_words: .nan"), ["NaN", "; write"]),
]


@pytest.mark.parametrize("name,text,fragments", CONSTRAINTS, ids=[c[0] for c in CONSTRAINTS])
def test_a_broken_constraint_names_the_value_and_the_fix(tmp_path: Path, name: str, text: str,
                                                        fragments: list[str]) -> None:
    for f in ("subj.txt", "ctrl.txt"):
        (tmp_path / f).write_bytes((CORPUS / f).read_bytes())
    (tmp_path / "case.yaml").write_text(text)
    with pytest.raises(CasekitError) as info:
        case = load_case(tmp_path / "case.yaml")
        build_plan(case, load_works(case), render=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "case.yaml") + ":"), msg
    for frag in fragments:
        assert frag in msg, (frag, msg)
