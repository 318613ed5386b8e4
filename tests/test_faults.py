"""Runs against a fault-injecting OpenAI-compatible server on 127.0.0.1 (tests/stub_openai.py).

* At 30% faults of every kind the stub can serve (429 with Retry-After, 500, 529, 400, slow
  responses past the client's timeout, dropped and reset connections, bodies cut short, malformed
  JSON), a run completes, records every planned attempt exactly once, and every request the
  stub answered is a try in the ledger: each fault as a failed try of the right kind, each
  success as the attempt's result (matched per attempt and by request id).
* ``kill -9`` of ``casekit run`` at seeded random moments (20 trials, some killed twice, both
  transports), then resume: 0 lost, 0 duplicated, the chain verifies (tests/kill_trial.py;
  ``benchmarks/kill_soak.py`` runs hundreds).

The real provider (``openai-compatible``, through aiohttp and through the official openai SDK)
and the real runner are used; only the server is a stand-in.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import casekit.run.runner
from casekit.case import load_case
from casekit.ledger import read_records, verify_chain
from casekit.records import AttemptRecord, Checkpoint, RunEnd
from casekit.run.runner import Runner
from tests.conftest import REPO
from tests.kill_trial import (
    CLIENT_TIMEOUT,
    check_after_kills,
    kill_runs,
    planned_ids,
    stub_case,
)
from tests.stub_openai import FAULT_KINDS, StubConfig, StubServer, attempt_key

FAULT_SHARES = {"rate_limit": 0.05, "server_error": 0.05, "overloaded": 0.03,
                "bad_request": 0.02, "slow": 0.03, "drop": 0.03, "reset": 0.03,
                "drop_mid_body": 0.03, "malformed": 0.03}
MAX_TRIES = 12


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(casekit.run.runner, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(casekit.run.runner, "BACKOFF_CAP", 0.05)


# --------------------------------------------------------------------------- the stub itself


def test_stub_speaks_the_openai_subset() -> None:
    import openai

    with StubServer(StubConfig(latency=0.0, model="served-1", replies={"lyrics": "la la"})) as s:
        client = openai.OpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=5)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "one two three four"}])
        chat = raw.parse()
        assert raw.headers["date"].endswith("GMT") and raw.headers["x-request-id"]
        assert chat.choices[0].message.content == "four three two one"
        assert chat.model == "served-1" and chat.system_fingerprint == "fp_casekit_stub"
        assert chat.usage is not None and chat.usage.prompt_tokens == 4
        comp = client.completions.create(model="m", prompt="sing the lyrics", max_tokens=1)
        assert comp.choices[0].text == "la" and comp.choices[0].finish_reason == "length"
        assert [m.id for m in client.models.list()] == ["served-1"]
        with urllib.request.urlopen(s.url.replace("/v1", "/stub/log")) as resp:
            log = json.loads(resp.read())
        assert [e["path"] for e in log] == ["/v1/chat/completions", "/v1/completions"]
        assert log == s.log and all(e["fault"] is None for e in log)


def test_stub_runs_as_a_script() -> None:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "stub_openai.py"), "--port",
                             "0", "--fault", "rate_limit=1", "--retry-after", "1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), line
        req = urllib.request.Request(url + "/completions", data=b'{"prompt": "x"}',
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == 429 and err.value.headers["Retry-After"] == "1"
        with urllib.request.urlopen(url.replace("/v1", "/stub/stats")) as resp:
            stats = json.loads(resp.read())
        assert stats["faults"] == {"rate_limit": 1} and stats["cpu_s"] >= 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


# --------------------------------------------------------------------------- 30% faults


EXPECTED = {  # fault -> (error kind, exception types the provider may surface)
    "rate_limit": ("rate_limit", {"RateLimitError"}),
    "server_error": ("transient", {"InternalServerError"}),
    "overloaded": ("transient", {"InternalServerError", "APIStatusError"}),
    "bad_request": ("no_retry", {"BadRequestError"}),
    "slow": ("transient", {"APITimeoutError"}),
    "drop": ("transient", {"APIConnectionError"}),
    "reset": ("transient", {"APIConnectionError"}),
    "drop_mid_body": ("transient", {"APIConnectionError", "RemoteProtocolError"}),
    "malformed": ("transient", {"MalformedResponseError", "APIResponseValidationError"}),
}
STATUS_IN_MESSAGE = {"rate_limit": "429", "server_error": "500", "overloaded": "529",
                     "bad_request": "400"}


@pytest.mark.parametrize("transport", ["sdk", "http"])
def test_a_run_at_30_percent_faults_completes_with_every_fault_on_record(
        tmp_path: Path, fast_backoff: None, transport: str) -> None:
    """Both transports (the openai SDK and aiohttp) surface each fault as the same SDK
    exception class, so the retry decisions and the record are the same."""
    config = StubConfig(latency=0.01, faults=FAULT_SHARES, seed=3, retry_after=0,
                        slow_seconds=CLIENT_TIMEOUT + 1.5,
                        always_fail={"ALWAYS500": "server_error", "ALWAYS429": "rate_limit"})
    templates = [f"Question {i}: what happens in {{{{ title }}}}?" for i in range(28)]
    templates += ["ALWAYS500 tell me about {{ title }}", "ALWAYS429 tell me about {{ title }}"]
    with StubServer(config) as stub:
        case_path = stub_case(tmp_path, stub.url, templates, max_connections=8,
                          transport=transport)
        t0 = time.monotonic()
        out = Runner(load_case(case_path), max_tries=MAX_TRIES).run()
        elapsed = time.monotonic() - t0
        log = stub.log
    assert out.complete, "every planned attempt is on record"
    assert verify_chain(out.ledger_path).ok
    records = read_records(out.ledger_path)
    attempts = [r for r in records if isinstance(r, AttemptRecord)]
    planned = planned_ids(case_path)
    assert len(planned) == 60
    assert sorted(a.attempt.id for a in attempts) == sorted(planned), "each exactly once"
    # The run's end, then the checkpoint that signs the chain up to it (casekit.anchor).
    assert isinstance(records[-2], RunEnd) and records[-2].complete
    assert isinstance(records[-1], Checkpoint) and records[-1].final

    served = [e for e in log if e["path"] == "/v1/chat/completions"]
    faults = [e for e in served if e["fault"]]
    kinds = {e["fault"] for e in faults}
    assert kinds == set(FAULT_SHARES), f"every fault kind was served: {sorted(kinds)}"
    random_faults = [e for e in faults if e["key"] not in {
        attempt_key(a.attempt) for a in attempts if "ALWAYS" in a.attempt.messages[-1].content}]
    share = len(random_faults) / len(served)
    assert 0.15 < share < 0.45, f"fault share {share:.2f}"

    by_key: dict[str, list[dict]] = defaultdict(list)
    for e in served:
        by_key[e["key"]].append(e)
    assert len(by_key) == len(planned), "one prompt per planned attempt reached the stub"
    ledger_request_ids: set[str] = set()
    failed_tries = 0
    for rec in attempts:
        entries = by_key.pop(attempt_key(rec.attempt))
        assert [e["try"] for e in entries] == list(range(len(entries)))
        assert len(rec.tries) == len(entries), f"{rec.attempt.id}: every request is a try"
        for entry, t in zip(entries, rec.tries, strict=True):
            if entry["fault"] is None:
                assert t.error is None
                assert rec.result is not None and rec.result.request_id == entry["request_id"]
                ledger_request_ids.add(entry["request_id"])
                continue
            failed_tries += 1
            assert t.error is not None, f"{entry['fault']} on record as a failed try"
            kind, types = EXPECTED[entry["fault"]]
            assert t.error.kind == kind, (entry, t.error)
            assert t.error.type in types, (entry, t.error)
            # The message says what happened on the wire, not just "Connection error.".
            assert t.error.message.strip(), (entry, t.error)
            if entry["fault"] in ("drop", "reset", "drop_mid_body"):
                assert "(" in t.error.message or ":" in t.error.message, (entry, t.error)
            if entry["fault"] in STATUS_IN_MESSAGE:
                assert STATUS_IN_MESSAGE[entry["fault"]] in t.error.message
                assert entry["request_id"] in t.error.message, (entry, t.error.message)
                ledger_request_ids.add(entry["request_id"])
            if entry["fault"] == "rate_limit":
                assert t.retry_after == 0.0, "Retry-After honoured"
        last = entries[-1]["fault"]
        if last is None:
            assert rec.status == "ok" and rec.error is None
        else:
            assert rec.status == "error" and rec.error is not None and rec.result is None
            assert last == "bad_request" or len(rec.tries) == MAX_TRIES
    assert not by_key
    assert failed_tries == len(faults), "every fault served is a failed try in the ledger"
    answered = {e["request_id"] for e in served if e["fault"] in (None, *STATUS_IN_MESSAGE)}
    assert answered == ledger_request_ids, "every answered request id is in the ledger"

    exhausted = [a for a in attempts if "ALWAYS" in a.attempt.messages[-1].content]
    assert len(exhausted) == 4
    for a in exhausted:
        assert a.status == "error" and len(a.tries) == MAX_TRIES and a.error is not None
        assert a.error.kind == ("rate_limit" if "ALWAYS429" in a.attempt.messages[-1].content
                                else "transient")
    assert sum(a.status == "error" for a in attempts) == 4 + sum(
        1 for k, v in by_key_last(served).items() if v == "bad_request")
    assert elapsed < 30


def by_key_last(served: list[dict]) -> dict[str, str | None]:
    last: dict[str, str | None] = {}
    for e in served:
        last[e["key"]] = e["fault"]
    return last


# --------------------------------------------------------------------------- kill -9


KILL_TRIALS = 20
KILL_SEED = 20250603
_KILL_OUTCOMES: dict[int, tuple[int, int]] = {}
"""trial -> (attempts recorded before the final resume, planned attempts)."""


@pytest.fixture(scope="module")
def kill_stub() -> Iterator[StubServer]:
    config = StubConfig(latency=0.05, faults={"rate_limit": 0.08, "overloaded": 0.04}, seed=7,
                        retry_after=0)
    with StubServer(config) as stub:
        yield stub


@pytest.mark.parametrize("trial", range(KILL_TRIALS))
def test_kill_9_then_resume_loses_and_duplicates_nothing(
        tmp_path: Path, kill_stub: StubServer, fast_backoff: None, trial: int) -> None:
    rng = random.Random(f"{KILL_SEED}:{trial}")
    templates = [f"Trial {trial} prompt {i} about {{{{ title }}}}." for i in range(12)]
    # Both transports: http (the default) in even trials, the openai SDK in odd ones.
    case_path = stub_case(tmp_path, kill_stub.url, templates, max_connections=4,
                          transport="http" if trial % 2 == 0 else "sdk")
    kills = 2 if rng.random() < 0.35 else 1
    moments, recorded = kill_runs(case_path, rng, kills)
    out = Runner(load_case(case_path), max_tries=MAX_TRIES).run()
    outcome = check_after_kills(case_path, out, moments, recorded)
    _KILL_OUTCOMES[trial] = (outcome.skipped_on_resume, outcome.planned)


def test_kill_trials_cover_the_required_count_and_land_mid_run() -> None:
    assert KILL_TRIALS >= 20
    assert set(FAULT_SHARES) <= set(FAULT_KINDS)
    assert abs(sum(FAULT_SHARES.values()) - 0.30) < 1e-9
    if len(_KILL_OUTCOMES) < KILL_TRIALS:
        pytest.skip("runs after the kill trials (run the whole file)")
    mid_run = [t for t, (done, planned) in _KILL_OUTCOMES.items() if 0 < done < planned]
    assert len(mid_run) >= KILL_TRIALS // 4, f"kills mostly missed the attempts: {_KILL_OUTCOMES}"
