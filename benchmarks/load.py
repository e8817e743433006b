"""Served load: the reliability suite's locust run, as a benchmark that writes JSON.

    python benchmarks/load.py                 # 60 s, 32 clients (the README's figures)
    python benchmarks/load.py --seconds 10    # a quick look

Runs tests/reliability/test_load.py (the fully loaded tiny-model service on 127.0.0.1, 32
clients with no think time over the six prediction routes; the test fails on any failed request
or on > 10% RSS growth) and keeps its figures: requests, failures, p50/p99 per route, server
RSS before and after. Prints the table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--out", default="benchmarks/results/load.json")
    args = p.parse_args()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "BEHAVE_LOAD_SECONDS": str(args.seconds),
        "BEHAVE_LOAD_OUT": str(Path(args.out).resolve()),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/reliability/test_load.py"],
        cwd=REPO, env=env,
    )  # fmt: skip
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
