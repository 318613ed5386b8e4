"""Security corpus, malformed case files: each one is answered by `casekit validate` with exit
code 2 and one line `error: file:line:col: ...` that names the problem, quickly, without a
traceback and without a raw control or bidi character reaching the terminal.

The cases are data (tests/security/malformed/*.yaml, first line `# expect: <fragment>`); the
attacks that need a special file (a FIFO, /dev/zero, an oversized file) are built here. Each runs
in its own process under a memory limit and a timeout, so an alias bomb or a FIFO that would
exhaust memory or block shows as a failure, not as a hung test run (a forked child: the
corpus takes seconds).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import traceback
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "malformed"
CASES = sorted(CORPUS.glob("*.yaml"))
#: Raw C0/C1 controls (tab and newline aside), DEL, bidi embeddings/overrides/isolates.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MEMORY_LIMIT = 1 << 30
"""Address space a child may add to the test process's."""
TIMEOUT_S = 30


def _address_space() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def validate(case: Path, *command: str) -> tuple[int, str]:
    """`casekit validate CASE` (or ``command`` with CASE last) in a forked child (imports
    already warm, so each case costs milliseconds, not an interpreter start) under a memory
    limit and an alarm: (exit code, output). A traceback, a kill or a timeout in the child
    comes back as output to assert on."""
    from click.testing import CliRunner

    from casekit.cli import cli

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            limit = _address_space() + MEMORY_LIMIT
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.alarm(TIMEOUT_S)
            res = CliRunner().invoke(cli, [*(command or ("validate",)), str(case)])
            out = res.output
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                out += "\nTraceback: " + "".join(traceback.format_exception(res.exception))
            os.write(write_end, json.dumps([res.exit_code, out]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return -1, f"the child died (status {status}: signal {os.WTERMSIG(status)} = " \
                   f"alarm after {TIMEOUT_S} s or killed)"
    rc, out = json.loads(data)
    return int(rc), str(out).strip()


def assert_one_line_error(out: str, rc: int, case: Path, *, located: bool = True) -> str:
    assert "Traceback" not in out, out[-2000:]
    assert rc == 2, (rc, out[-2000:])
    lines = out.splitlines()
    assert len(lines) == 1, out[-2000:]
    line = lines[0]
    where = r":\d+:\d+: " if located else r"(:\d+:\d+)?: "
    assert re.match(r"error: " + re.escape(str(case)) + where, line), line
    assert not RAW_CONTROL.search(line), ascii(line)
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_malformed_case_is_one_located_line(case: Path) -> None:
    expect = case.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    rc, out = validate(case)
    line = assert_one_line_error(out, rc, case)
    assert expect in line, (expect, line)
    message = re.sub(r"^error: .*?:\d+:\d+: ", "", line)
    assert "; " in message, f"the message gives no fix: {line}"


def _case_dir(tmp_path: Path) -> Path:
    for name in ("subj.txt", "ctrl.txt"):
        shutil.copy(CORPUS / name, tmp_path / name)
    shutil.copy(CORPUS / "bool_seed.yaml", tmp_path / "good.yaml")
    text = (tmp_path / "good.yaml").read_text().replace("seed: true\n", "")
    (tmp_path / "case.yaml").write_text(text)
    return tmp_path / "case.yaml"


def test_the_corpus_base_case_is_valid(tmp_path: Path) -> None:
    rc, out = validate(_case_dir(tmp_path))
    assert rc == 0 and "valid;" in out, out


def test_a_work_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    case = _case_dir(tmp_path)
    (tmp_path / "subj.txt").unlink()
    os.mkfifo(tmp_path / "subj.txt")
    rc, out = validate(case)
    line = assert_one_line_error(out, rc, case)
    assert "FIFO" in line and "works[0].path" in line and "regular file" in line


def test_a_work_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    case = _case_dir(tmp_path)
    with (tmp_path / "subj.txt").open("r+b") as fh:
        fh.truncate(300 << 20)  # sparse: no disk used
    rc, out = validate(case)
    line = assert_one_line_error(out, rc, case)
    assert "over the limit of 268,435,456 bytes" in line


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "oversized"])
def test_a_case_file_that_is_not_a_small_regular_file_is_refused(tmp_path: Path,
                                                                 kind: str) -> None:
    case = tmp_path / "case.yaml"
    if kind == "dev_zero":
        case.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(case)
    else:
        _case_dir(tmp_path)
        with case.open("a") as fh:
            fh.write("#" + "x" * (2 << 20) + "\n")
    rc, out = validate(case)
    line = assert_one_line_error(out, rc, case, located=False)
    expected = {"dev_zero": "a device", "fifo": "FIFO",
                "oversized": "over the limit of 1,048,576 bytes"}[kind]
    assert expected in line, line


def test_log_lines_show_control_characters_by_code_point() -> None:
    import logging

    from casekit.cli import _setup_logging

    logger = logging.getLogger("casekit")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        _setup_logging(0, False)
        handler = logger.handlers[0]
        record = logging.LogRecord("casekit.x", logging.INFO, __file__, 1,
                                   "model said %s", ("\x1b[2J\u202eevil",), None)
        line = handler.format(record)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert "⟨U+001B⟩[2J⟨U+202E⟩evil" in line and not RAW_CONTROL.search(line)


def test_an_import_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    case = _case_dir(tmp_path)
    fifo = tmp_path / "outputs.jsonl"
    os.mkfifo(fifo)
    rc, out = validate(fifo, "import", str(case))
    assert "Traceback" not in out and rc == 2, out
    assert re.match(r"error: " + re.escape(str(fifo)) + r": is a FIFO", out), out
