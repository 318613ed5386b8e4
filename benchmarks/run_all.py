"""Run every benchmark in this folder (``make bench``); each prints ratios against a baseline
measured in the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    scripts = sorted(here.glob("*_bench.py"))
    failed = 0
    for script in scripts:
        print(f"=== {script.name}", flush=True)
        res = subprocess.run([sys.executable, str(script)], check=False)
        failed += res.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
