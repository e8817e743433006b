"""`behave report`: the README's benchmark tables are rendered from the committed results JSON,
`--check` names a stale table, REPORT.md / report.json carry machine and commit, a missing JSON
is "not run", and one cheap benchmark runs at tiny scale. Nothing here writes into the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report

REPO = Path(__file__).resolve().parents[1]


def behave_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "behave.cli", "report", *args],
        cwd=REPO,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    """The committed results JSON, copied: reports are written there, not in the repo."""
    out = tmp_path / "results"
    out.mkdir()
    for path in report.RESULTS.glob("*.json"):
        if path.name != "report.json":
            shutil.copy(path, out / path.name)
    return out


@pytest.fixture
def readme_copy(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    shutil.copy(report.README, path)
    return path


def test_committed_readme_tables_are_what_the_committed_json_renders():
    proc = behave_report("--check")
    assert proc.returncode == 0, proc.stderr
    shown = sum(s.readme for s in report.SECTIONS)
    assert f"{shown} tables up to date" in proc.stdout
    # and every README table has a section, every README section a marker
    readme = report.readme_sections(report.README.read_text())
    assert set(readme) == {s.key for s in report.SECTIONS if s.readme}


def test_check_names_the_stale_section_in_one_line(readme_copy: Path):
    text = readme_copy.read_text()
    edited = text.replace("| constant velocity | 0.736 |", "| constant velocity | 0.737 |")
    assert edited != text
    readme_copy.write_text(edited)
    proc = behave_report("--check", "--readme", str(readme_copy))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "section(s) graph_lstm:" in proc.stderr
    # rendering repairs it, and touches only that table
    rendered = report.render_sections(report.load_results(report.RESULTS))
    repaired, changed = report.update_readme(edited, rendered)
    assert changed == ["graph_lstm"] and repaired == text


def test_report_files_name_machine_and_commit(results_copy: Path, readme_copy: Path):
    proc = behave_report("--results-dir", str(results_copy), "--readme", str(readme_copy))
    assert proc.returncode == 0, proc.stderr
    assert readme_copy.read_text() == report.README.read_text()  # another dir: README untouched
    document = json.loads((results_copy / "report.json").read_text())
    assert len(document["rendered"]["commit"]) == 40
    assert set(document["families"]) == set(report.FAMILIES)
    explainers = document["families"]["explainers"]["benchmarks"]["explainers"]
    recorded = json.loads((results_copy / "explainers.json").read_text())
    assert explainers["commit"] == recorded["commit"]
    assert explainers["commit_source"] == "recorded by the benchmark"
    assert explainers["machine"]["device"] == recorded["device"]
    behavegpt = document["families"]["behavegpt"]["benchmarks"]["behavegpt"]
    assert behavegpt["machine"]["platform"].startswith("Linux")
    assert behavegpt["commit"] and behavegpt["date"]
    tables = document["families"]["graph_lstm"]["tables"]
    assert "| Graph-LSTM (full) |" in tables["graph_lstm"]["markdown"]

    md = (results_copy / "REPORT.md").read_text()
    assert document["rendered"]["commit"][:12] in md
    assert recorded["commit"][:12] in md and recorded["device"] in md
    assert "| Graph-LSTM (full) |" in md and "not run" not in md
    # a second render with the same results changes nothing
    before = (results_copy / "REPORT.md").stat().st_mtime_ns
    assert behave_report("--results-dir", str(results_copy)).returncode == 0
    assert (results_copy / "REPORT.md").stat().st_mtime_ns == before


def test_committed_results_file_commit_comes_from_git():
    path = report.RESULTS / "graph_lstm.json"
    info = report.provenance(path, json.loads(path.read_text()))
    if info["commit_source"] != "last commit of the results file":
        pytest.skip("graph_lstm.json has uncommitted changes in this checkout")
    assert len(info["commit"]) == 40 and info["date"][:2] == "20"


def test_missing_json_is_not_run(results_copy: Path, readme_copy: Path):
    (results_copy / "neuroformer.json").unlink()
    proc = behave_report(
        "--results-dir", str(results_copy), "--readme", str(readme_copy), "--update-readme"
    )
    assert proc.returncode == 0, proc.stderr
    assert "not run" in proc.stdout and "neuroformer" in proc.stdout
    md = (results_copy / "REPORT.md").read_text()
    assert "_not run: no `neuroformer.json`" in md and "| `neuroformer.json` |" in md
    sections = report.readme_sections(readme_copy.read_text())
    assert sections["neuroformer"].startswith("_not run: no `neuroformer.json`")
    assert sections["graph_lstm"] == report.readme_sections(report.README.read_text())["graph_lstm"]
    status = json.loads((results_copy / "report.json").read_text())["families"]["neuroformer"]
    assert status["benchmarks"]["neuroformer"]["status"] == "not run"
    # the stale committed README is caught against these results
    proc = behave_report("--check", "--results-dir", str(results_copy))
    assert proc.returncode == 1 and "neuroformer" in proc.stderr


def test_unknown_family_is_one_line_exit_2():
    proc = behave_report("--run", "tiny", "--families", "nope")
    assert proc.returncode == 2 and proc.stderr.startswith(
        "behave: error: --families: unknown nope"
    )


def test_run_tiny_scan_only_leaves_readme_alone(tmp_path: Path, readme_copy: Path):
    out = tmp_path / "tiny"
    proc = behave_report(
        "--run", "tiny", "--families", "scan,surgery_behavegpt",
        "--results-dir", str(out), "--readme", str(readme_copy),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/2] scan: ok in" in proc.stdout
    assert "[2/2] surgery_behavegpt: not run at tiny scale" in proc.stdout
    scan = json.loads((out / "scan.json").read_text())
    assert [r["length"] for r in scan["rows"]] == [64, 256]
    md = (out / "REPORT.md").read_text()
    assert "**Tiny scale**" in md and "L = 64 / 256" in md
    assert "_not run at tiny scale: surgery_behavegpt" in md
    assert readme_copy.read_text() == report.README.read_text()


def test_load_table_has_every_route_the_total_and_memory():
    data = {
        "clients": 32,
        "seconds": 60,
        "routes": [
            {"route": "/act", "requests": 1601, "failed": 0, "p50_ms": 100.0, "p99_ms": 580.0},
            {"route": "/probe", "requests": 1569, "failed": 0, "p50_ms": 170.0, "p99_ms": 610.0},
            {
                "route": "Aggregated",
                "requests": 3170,
                "failed": 0,
                "p50_ms": 150.0,
                "p99_ms": 600.0,
            },
        ],
        "rss_mib_before": 957.0,
        "rss_mib_after": 969.0,
    }
    lines = report.render_load({"load": data})
    assert lines[2] == "| `/act` | 1,601 | 0 | 100 | 580 |"
    assert lines[4] == "| all (32 clients, 60 s) | 3,170 (53/s) | 0 | 150 | 600 |"
    assert lines[-1] == (
        "Server and worker RSS went from 957 to 969 MiB (+1.3%; the test fails at +10%)."
    )


def test_explainer_table_shows_the_split_spread():
    """Several splits: accuracy and AUPRC carry a standard error, and a row lists each split's
    TimeX AUPRC beside its black box's accuracy (to read the spread against)."""
    methods = {
        m: {
            "auprc": [0.5, 0.1],
            "aup": [0.5, 0.0],
            "aur": [0.5, 0.0],
            "seconds_per_series": [0.01, 0.0],
        }
        for m in ("timex", "integrated_gradients")
    }
    summary = {
        "splits": [0, 1],
        "classifier_accuracy": [0.8, 0.15],
        "methods": methods,
        "ig_over_timex_time": 1.0,
    }
    runs = [
        {
            "dataset": "freqshapes",
            "split": split,
            "classifier_accuracy": acc,
            "scores": {"timex": {"auprc": auprc}},
        }
        for split, acc, auprc in ((0, 0.95, 0.6), (1, 0.65, 0.4))
    ]
    lines = report.render_explainers(
        {"explainers": {"summary": {"freqshapes": summary}, "runs": runs}}
    )
    text = "\n".join(lines)
    assert "| black box accuracy | 0.800 ± 0.150 |" in text
    assert "0.500 ± 0.100" in text
    assert "| TimeX per split (black box accuracy) | 0.60 (0.95) / 0.40 (0.65) |" in text
