"""Fuzz the running service with schemathesis against its own ``/docs.json``: every family
loaded (tiny models), no 5xx on any route, and every 4xx a JSON body that names the problem.

Short by default (CI: up to 60 cases per operation, 20 operations, >= 200 cases in all);
``BEHAVE_LONG_RELIABILITY=1`` asks for 1,000 per operation (>= 2,000 in all: schemathesis stops
an operation early when it finds nothing new to generate).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

LONG = os.environ.get("BEHAVE_LONG_RELIABILITY") == "1"
EXAMPLES_PER_OPERATION = 1000 if LONG else 60


def test_no_server_errors_and_every_client_error_is_json(full_server, tmp_path):
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [
            str(st), "run", f"{full_server.url}/docs.json",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--checks", "not_a_server_error,client_errors_are_json_naming_the_problem",
            "--phases", "examples,fuzzing",
            "--seed", "0",
            "--workers", "1",
            "--request-timeout", "60",
            "--report-dir", str(tmp_path),
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.st_hooks"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=1500,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-15000:] + "\n--- server log ---\n" + full_server.log()[-4000:]
    cases = sum(int(n) for n in re.findall(r"(\d+) generated", out)) or None
    print(out[-3000:])
    if cases is not None:
        assert cases >= (2000 if LONG else 200), out[-3000:]
