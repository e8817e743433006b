"""One report of every benchmark: the README's result tables, REPORT.md and report.json.

    behave report                               # render the JSON in benchmarks/results/
    behave report --check                       # exit 1 if a README table is stale (CI)
    behave report --run tiny                    # small runs into benchmarks/results/tiny/
    behave report --run full --families graph_lstm,neuroformer   # documented runs, then render

Each benchmark script prints its table and writes JSON to ``benchmarks/results/``; this module
turns those JSON files into Markdown. ``render_sections`` gives every table (a pure function
of the JSON), ``update_readme`` replaces the README's tables between
``<!-- report:KEY -->`` and ``<!-- /report:KEY -->`` markers, ``write_report`` writes
``REPORT.md`` and ``report.json`` (tables, the machine and commit of each result, dates), and
``run_jobs`` runs the benchmark scripts first, as subprocesses, at a full or tiny scale.

Where a table's number is not in the JSON it is named below (``BEHAVIOR_SCORE``; row labels),
never computed. Bold marks follow one rule per table, written in each renderer's docstring.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "FAMILIES",
    "JOBS",
    "SECTIONS",
    "Job",
    "Section",
    "load_results",
    "render_sections",
    "stale_sections",
    "update_readme",
    "write_report",
    "run_jobs",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TINY_RESULTS = RESULTS / "tiny"
README = REPO / "README.md"
MINUS = "\N{MINUS SIGN}"

FAMILIES = {
    "behavegpt": "BehaveGPT",
    "decision_mamba": "Decision Mamba",
    "graph_lstm": "Graph-LSTM",
    "neuroformer": "Neuroformer",
    "explainers": "Explanations: TimeX and Captum",
    "surgery": "Behavior probes and model surgery",
    "reliability": "Service under load",
}


# ---- the benchmark runs ----------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One benchmark script run and the JSON it writes (``<name>.json``).

    ``full``: the README's documented command(s), run in order; ``tiny``: a small configuration
    (None: the benchmark has none, the report says "not run at tiny scale"). ``{work}`` in an
    argument is a scratch folder under the results folder. ``setup``: (file that must exist,
    ``behave`` arguments that make it) per scale, run first when the file is missing.
    """

    name: str
    family: str
    script: str
    full: tuple[tuple[str, ...], ...]
    tiny: tuple[tuple[str, ...], ...] | None
    setup: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    plot: bool = False  # the script takes --plot (a PNG beside the JSON)

    def commands(self, scale: str) -> tuple[tuple[str, ...], ...] | None:
        return self.full if scale == "full" else self.tiny

    def shown(self, scale: str = "full", work: Path | None = None) -> str:
        """The command as a reader would type it (without --out)."""
        text = "; ".join(
            " ".join(["python", f"benchmarks/{self.script}", *args])
            for args in self.commands(scale) or ()
        )
        return text if work is None else text.format(work=_relative(work))


def _commands(*commands: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(shlex.split(c)) for c in commands)


JOBS = (
    Job("behavegpt", "behavegpt", "behavegpt.py", _commands(""), _commands("--quick")),
    Job("behavegpt-8epochs", "behavegpt", "behavegpt.py", _commands("--epochs 8"), None),
    Job("serving", "behavegpt", "serving.py", _commands(""), _commands("--quick")),
    Job(
        "decision_mamba_scores",
        "decision_mamba",
        "decision_mamba.py",
        _commands(
            "--datasets lunarlander-medium lunarlander-medium-replay --max-epochs 3 --skip-latency"
        ),
        # seed 99: run folders of its own, so the full runs' caches (--resume) stay untouched
        _commands(
            "--datasets lunarlander-medium --variants dm dt bc --seeds 99 --max-epochs 1 "
            "--windows-per-epoch 256 --eval-episodes 1 --final-episodes 2 --parallel 1 "
            "--skip-latency"
        ),
    ),
    Job(
        "decision_mamba_scores_mujoco",
        "decision_mamba",
        "decision_mamba.py",
        _commands(
            "--datasets hopper-medium hopper-medium-replay halfcheetah-medium "
            "halfcheetah-medium-replay walker2d-medium walker2d-medium-replay "
            "--variants dm dm-no-se dm-ema dt bc --max-epochs 3 --skip-latency"
        ),
        None,  # MuJoCo behavior policies are trained first (TD3, ~6-45 min each)
    ),
    Job(
        "decision_mamba_scores_ema",
        "decision_mamba",
        "decision_mamba.py",
        _commands(
            "--datasets halfcheetah-medium walker2d-medium --variants dm dt dm-ema --seeds 0 "
            "--max-epochs 3 --parallel 1 --skip-latency"
        ),
        None,  # two MuJoCo behavior policies are trained first
    ),
    Job(
        "decision_mamba_latency",
        "decision_mamba",
        "decision_mamba.py",
        _commands("--skip-scores --latency-repeats 100"),
        _commands("--skip-scores --contexts 20 100 --latency-repeats 3"),
    ),
    Job(
        "scan",
        "decision_mamba",
        "scan.py",
        _commands(""),
        _commands("--lengths 64 256 --repeats 1"),
    ),
    Job(
        "graph_lstm",
        "graph_lstm",
        "graph_lstm.py",
        _commands("--seeds 0 1"),
        _commands(
            "--data-dir {work}/traffic --config pipelines/graph-lstm-tiny.yaml --seeds 0 "
            "--variants full lstm"
        ),
        setup={
            "full": (
                "data/traffic/tracks.parquet",
                _commands(
                    "data generate traffic --out data/traffic --scenes 600 --workers 2 "
                    "--no-progress"
                )[0],
            ),
            "tiny": (
                "{work}/traffic/tracks.parquet",
                _commands(
                    "data generate traffic --out {work}/traffic --scenes 6 --duration-s 8 "
                    "--seed 2 --no-progress"
                )[0],
            ),
        },
    ),
    Job(
        "neuroformer",
        "neuroformer",
        "neuroformer.py",
        _commands("--seeds 0 1"),
        _commands(
            "--data {work}/spikes --config pipelines/neuroformer-tiny.yaml --seeds 99 "
            "--few-shot-trials 2 --generate-trials 2"
        ),
        setup={
            "full": (
                "data/spikes/spikes.parquet",
                _commands("data generate spikes --out data/spikes --no-progress")[0],
            ),
            "tiny": (
                "{work}/spikes/spikes.parquet",
                _commands(
                    "data generate spikes --out {work}/spikes --neurons 20 --trials 80 "
                    "--trial-s 1 --no-progress"
                )[0],
            ),
        },
    ),
    Job(
        "explainers",
        "explainers",
        "explainers.py",
        _commands(
            "--splits 0 --classifier-epochs 12 --timex-epochs 10 --jobs 2",
            "--splits 0 --real GunPoint --resume",
        ),
        _commands(
            "--datasets freqshapes --splits 0 --num-train 200 --classifier-epochs 1 "
            "--timex-epochs 1 --work-dir {work}/explainers --runs-dir {work}/explainers/results"
        ),
    ),
    Job(
        "surgery_behavegpt",
        "surgery",
        "surgery_behavegpt.py",
        _commands("--model models:/behave.behavegpt/1"),
        None,  # needs a registered BehaveGPT trained on the 1 M-event log
        plot=True,
    ),
    Job(
        "surgery_llm",
        "surgery",
        "surgery_llm.py",
        _commands(""),
        _commands("--quick --work-dir {work}/surgery_llm"),
        plot=True,
    ),
    Job("load", "reliability", "load.py", _commands("--seconds 60"), _commands("--seconds 10")),
)
JOB_BY_NAME = {job.name: job for job in JOBS}


def select_jobs(names: str | None) -> list[Job]:
    """Jobs named by a comma list of family names (all their jobs) and/or job names."""
    if not names:
        return list(JOBS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in FAMILIES and n not in JOB_BY_NAME]
    if unknown:
        raise ValueError(
            f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)} "
            f"or benchmarks {', '.join(JOB_BY_NAME)}"
        )
    return [job for job in JOBS if job.family in wanted or job.name in wanted]


def run_jobs(jobs: list[Job], scale: str, results_dir: Path, log=print) -> dict[str, dict]:
    """Runs each job's commands at ``scale`` (subprocesses, cwd = the repo), one progress line
    per benchmark. Returns {job: {"status", "seconds", "log", "commands"}}; a failed job does
    not stop the others."""
    results_dir.mkdir(parents=True, exist_ok=True)
    logs = results_dir / "logs"
    work = results_dir / "work"
    env = {**os.environ, "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg")}
    outcome: dict[str, dict] = {}
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.name}"
        commands = job.commands(scale)
        if commands is None:
            log(f"{head}: not run at {scale} scale (the benchmark has no small configuration)")
            outcome[job.name] = {"status": f"not run at {scale} scale"}
            continue
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{job.name}.log"
        argvs = []
        setup = job.setup.get(scale)
        if setup and not (REPO / setup[0].format(work=work)).exists():
            argvs.append(
                [sys.executable, "-m", "behave.cli", *(a.format(work=work) for a in setup[1])]
            )
        out = results_dir / f"{job.name}.json"
        for args in commands:
            argv = [sys.executable, str(REPO / "benchmarks" / job.script)]
            argv += [a.format(work=work) for a in args] + ["--out", str(out)]
            if job.plot:
                argv += ["--plot", str(results_dir / f"{job.name}.png")]
            argvs.append(argv)
        log(f"{head}: running ({job.shown(scale, work)})", flush=True)
        started = time.perf_counter()
        status = "ok"
        with log_path.open("w") as handle:
            for argv in argvs:
                handle.write(f"$ {' '.join(argv)}\n")
                handle.flush()
                proc = subprocess.run(
                    argv, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
                )
                if proc.returncode != 0:
                    status = f"failed (exit {proc.returncode})"
                    break
        seconds = time.perf_counter() - started
        rel_log = _relative(log_path)
        log(f"{head}: {status} in {seconds:.1f} s (log: {rel_log})", flush=True)
        outcome[job.name] = {
            "status": status,
            "seconds": round(seconds, 1),
            "log": rel_log,
            "commands": [" ".join(a) for a in argvs],
        }
    return outcome


# ---- provenance: where and when each result was made ------------------------------------------
def _git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def machine_of(data: dict) -> dict:
    """What a results JSON says about its machine (each benchmark records its own fields)."""
    found: dict = {}
    recorded = data.get("machine")
    if isinstance(recorded, dict):
        found.update(recorded)
    elif recorded:
        found["machine"] = recorded
    for key in ("device", "platform", "processor", "cpu_count", "torch", "torch_threads"):
        if isinstance(data.get(key), str | int | float):
            found.setdefault(key, data[key])
    config = data.get("config")
    if isinstance(config, dict):  # scan.json
        for key in ("device", "threads"):
            if key in config:
                found.setdefault(key, config[key])
    return found


def machine_text(machine: dict) -> str:
    parts = [f"{k} {v}" for k, v in machine.items() if v is not None and not isinstance(v, dict)]
    return ", ".join(parts) if parts else "not recorded"


def provenance(path: Path, data: dict) -> dict:
    """The machine, commit and date of one results file. The commit: as the benchmark recorded
    it, else the last commit of the (unmodified) results file, else the working tree's HEAD."""
    rel = _relative(path)
    committed = bool(_git("ls-files", "--", rel)) and not _git("status", "--porcelain", "--", rel)
    last = _git("log", "-1", "--format=%H %cI", "--", rel).split() if committed else []
    if data.get("commit"):
        commit, commit_source = data["commit"], "recorded by the benchmark"
    elif last:
        commit, commit_source = last[0], "last commit of the results file"
    else:
        commit, commit_source = _git("rev-parse", "HEAD") or "unknown", "HEAD when rendered"
    if last:
        date, date_source = last[1], "committed"
    else:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        date, date_source = mtime.isoformat(timespec="seconds"), "file written"
    machine = machine_of(data)
    return {
        "file": rel,
        "machine": machine,
        "machine_text": machine_text(machine),
        "commit": commit,
        "commit_source": commit_source,
        "date": date,
        "date_source": date_source,
    }


def this_machine(with_device: bool = False) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if with_device:  # imports torch: only when benchmarks were run
        sys.path.insert(0, str(REPO))
        from benchmarks.run_info import device_name

        info["device"] = device_name()
    return info


# ---- formatting ------------------------------------------------------------------------------
def bold(text: str) -> str:
    return f"**{text}**"


def signed_pct(value: float, digits: int = 1) -> str:
    """+1.2% / −3.4% (a true minus sign, as the README's tables); exactly 0 gets no sign."""
    if value == 0:
        return f"{0:.{digits}%}"
    return f"{value:+.{digits}%}".replace("-", MINUS)


def table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; an empty cell is written ``| |``."""

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    return [line(header), "|" + "|".join(align) + "|", *(line(r) for r in rows)]


def best_index(values: list[float | None], higher: bool) -> int | None:
    present = [(v, i) for i, v in enumerate(values) if v is not None]
    if len(present) < 2:
        return None
    return (max if higher else min)(present)[1]


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std (np.std), as the benchmarks compute them."""
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


# ---- renderers: JSON -> Markdown lines ------------------------------------------------------
RECALL_COLUMNS = {
    "R@10 macro": "recall_at_10_macro",
    "R@10 weighted": "recall_at_10_weighted",
    "R@10 head": "recall_at_10_head",
    "R@10 tail": "recall_at_10_tail",
    "NDCG@10": "ndcg_at_10",
}
BEHAVEGPT_LABELS = {
    "most-popular": "most popular",
    "markov-1": "first-order Markov",
    "behavegpt-erm": "BehaveGPT-ERM",
    "behavegpt-dro": "BehaveGPT-DRO (`dro_mix: {dro_mix:g}`)",
    "pretrained, no fine-tuning": "pretrained, no fine-tuning",
    "from scratch on 10%": "from scratch on the 10%",
    "adapted (pretrained + 10%)": "adapted (pretrained + the 10%)",
}


def _recall_table(first: str, rows: dict[str, dict], args: dict) -> list[str]:
    """Best per column in bold (higher is better)."""
    names = list(rows)
    cells = [[BEHAVEGPT_LABELS.get(n, n).format(**args)] for n in names]
    for key in RECALL_COLUMNS.values():
        values = [rows[n][key] for n in names]
        best = best_index(values, higher=True)
        for i, v in enumerate(values):
            cells[i].append(bold(f"{v:.3f}") if i == best else f"{v:.3f}")
    return table([first, *RECALL_COLUMNS], ["---"] * (len(RECALL_COLUMNS) + 1), cells)


def render_behavegpt(results: dict) -> list[str]:
    data = results["behavegpt"]
    return _recall_table("model", data["quality"], data["args"])


def render_behavegpt_8epochs(results: dict) -> list[str]:
    """Only the two transformers: the baselines do not train, they are the 4-epoch table's."""
    data = results["behavegpt-8epochs"]
    rows = {k: v for k, v in data["quality"].items() if k.startswith("behavegpt-")}
    return _recall_table(f"{data['args']['epochs']} epochs", rows, data["args"])


def render_behavegpt_adaptation(results: dict) -> list[str]:
    data = results["behavegpt"]
    return _recall_table("model", data["adaptation"], data["args"])


def render_behavegpt_speed(results: dict) -> list[str]:
    speed = results["behavegpt"]["train_speed"]
    rows = [
        [name, f"{speed[name]['params']:,}", f"{speed[name]['tokens_per_s']:,.0f}"]
        for name in ("behavegpt", "gpt2 (transformers)")
    ]
    rows.append(["ratio", "", bold(f"{speed['ratio_behavegpt_over_gpt2']:.2f}×")])
    return table(["model", "parameters", "training tokens/s"], ["---", "---:", "---:"], rows)


def render_serving(results: dict) -> list[str]:
    """The best throughput with p99 within the SLO, over both modes, in bold."""
    data = results["serving"]
    modes = list(data["levels"])
    best = max(data["best_requests_per_s_at_slo"].values())
    clients = [r["clients"] for r in data["levels"][modes[0]]]
    rows = []
    for i, n in enumerate(clients):
        row = [str(n)]
        for mode in modes:
            r = data["levels"][mode][i]
            rate = f"{r['requests_per_s']:.1f}"
            top = r["requests_per_s"] == best and r["p99_ms"] <= data["slo_p99_ms"]
            row.append(f"{bold(rate) if top else rate} ({r['p50_ms']:.0f} / {r['p99_ms']:.0f})")
        rows.append(row)
    header = ["clients", *(f"{m} req/s (p50 / p99 ms)" for m in modes)]
    return table(header, ["---"] * len(header), rows)


def render_load(results: dict) -> list[str]:
    """Per route and over all routes: requests, failures, p50/p99; then the memory line."""
    data = results["load"]
    rows = [r for r in data["routes"] if r["route"] != "Aggregated"]
    total = next(r for r in data["routes"] if r["route"] == "Aggregated")
    lines = table(
        ["route", "requests", "failed", "p50 ms", "p99 ms"],
        ["---", "---:", "---:", "---:", "---:"],
        [
            [f"`{r['route']}`", f"{r['requests']:,}", str(r["failed"]),
             f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}"]
            for r in rows
        ]
        + [[f"all ({data['clients']} clients, {data['seconds']} s)",
            f"{total['requests']:,} ({total['requests'] / data['seconds']:.0f}/s)",
            str(total["failed"]), f"{total['p50_ms']:.0f}", f"{total['p99_ms']:.0f}"]],
    )  # fmt: skip
    before, after = data["rss_mib_before"], data["rss_mib_after"]
    growth = after / before - 1
    return lines + [
        "",
        f"Server and worker RSS went from {before:.0f} to {after:.0f} MiB "
        f"({signed_pct(growth)}; the test fails at +10%).",
    ]


VARIANT_LABELS = {
    "dm": "DM",
    "dm-no-se": "DM, self-evolution off",
    "dm-ema": "DM, EMA teacher",
    "dt": "DT",
    "bc": "BC",
}
# The behavior data's own normalized score, shown beside the dataset: it lives in the dataset's
# manifest (data/offline-rl/<name>/manifest.json), not in the results JSON, so it is copied here.
BEHAVIOR_SCORE = {
    "lunarlander-medium": "45",
    "hopper-medium": "34.3",
    "hopper-medium-replay": "6.3",
    "halfcheetah-medium": "21.6",
    "halfcheetah-medium-replay": "4.3",
    "walker2d-medium": "26.7",
    "walker2d-medium-replay": "9.4",
}
# decision_mamba_scores_ema.json was run on an earlier generation of the MuJoCo data (TD3 runs
# are not bit-identical across machines and library versions; the cache is now kept in
# data/.cache), whose behavior scored differently.
EMA_RUN_BEHAVIOR_SCORE = {"halfcheetah-medium": "28.6", "walker2d-medium": "39.5"}


def _dm_label(dataset: str, scores: dict[str, str] = BEHAVIOR_SCORE) -> str:
    score = scores.get(dataset)
    return f"{dataset} ({score})" if score else dataset


def _dm_rows(scores: list[dict]) -> tuple[list[str], list[str], dict]:
    """(datasets, variants, {(dataset, variant): [scores over seeds]})."""
    datasets = list(dict.fromkeys(r["dataset"] for r in scores))
    present = {r["variant"] for r in scores}
    variants = [v for v in VARIANT_LABELS if v in present]
    by = {}
    for r in scores:
        by.setdefault((r["dataset"], r["variant"]), []).append(r["score"])
    return datasets, variants, by


def _dm_cell(values: list[float] | None) -> tuple[str, float | None]:
    if not values:
        return "–", None
    mean, std = _mean_std(values)
    return (f"{mean:.1f} ± {std:.1f}" if len(values) > 1 else f"{mean:.1f}"), mean


def _dm_score_rows(
    scores: list[dict], variants: list[str], labels: dict[str, str] = BEHAVIOR_SCORE
) -> list[list[str]]:
    """One row per dataset; the best mean of each row in bold."""
    datasets, _, by = _dm_rows(scores)
    rows = []
    for dataset in datasets:
        cells = [_dm_cell(by.get((dataset, v))) for v in variants]
        best = best_index([m for _, m in cells], higher=True)
        label = _dm_label(dataset, labels)
        rows.append([label] + [bold(t) if i == best else t for i, (t, _) in enumerate(cells)])
    return rows


def _dm_table(scores: list[dict]) -> list[str]:
    """Mean ± std over seeds, the best of each row in bold, and (over 2+ datasets) a mean row
    with the best mean in bold. Datasets with fewer seeds than the most say how many."""
    datasets, variants, by = _dm_rows(scores)
    rows = _dm_score_rows(scores, variants)
    seeds = {d: len({r["seed"] for r in scores if r["dataset"] == d}) for d in datasets}
    for row, d in zip(rows, datasets, strict=True):
        if seeds[d] < max(seeds.values()):
            row[0] += f", **{seeds[d]} seed{'s' if seeds[d] > 1 else ''} so far**"
    if len(datasets) > 1:
        means = [
            sum(_mean_std(by[(d, v)])[0] for d in datasets) / len(datasets)
            if all((d, v) in by for d in datasets)
            else None
            for v in variants
        ]
        best = best_index(means, higher=True)
        text = ["–" if m is None else f"{m:.1f}" for m in means]
        rows.append(["mean"] + [bold(t) if i == best else t for i, t in enumerate(text)])
    header = ["dataset (behavior score)", *(VARIANT_LABELS[v] for v in variants)]
    return table(header, ["---"] * len(header), rows)


def render_decision_mamba(results: dict) -> list[str]:
    """LunarLander: best per row and best mean in bold."""
    return _dm_table(results["decision_mamba_scores"]["scores"])


def render_decision_mamba_mujoco(results: dict) -> list[str]:
    """MuJoCo medium and medium-replay: best per row and best mean in bold."""
    return _dm_table(results["decision_mamba_scores_mujoco"]["scores"])


def render_decision_mamba_ema(results: dict) -> list[str]:
    """Best per row in bold."""
    scores = results["decision_mamba_scores_ema"]["scores"]
    _, variants, _ = _dm_rows(scores)
    rows = _dm_score_rows(scores, variants, EMA_RUN_BEHAVIOR_SCORE)
    header = ["dataset (behavior score)", *(VARIANT_LABELS[v] for v in variants)]
    return table(header, ["---"] * len(header), rows)


def render_decision_mamba_latency(results: dict) -> list[str]:
    """The largest DT / DM-step ratio in bold."""
    rows = results["decision_mamba_latency"]["latency"]
    best = best_index([r["dt_over_dm_recurrent"] for r in rows], higher=True)
    out = []
    for i, r in enumerate(rows):
        ratio = f"{r['dt_over_dm_recurrent']:.1f}×"
        out.append(
            [
                str(r["context"]),
                f"{r['dm-recurrent_ms']:.1f}",
                f"{r['dm-window_ms']:.1f}",
                f"{r['dt-window_ms']:.1f}",
                bold(ratio) if i == best else ratio,
            ]
        )
    header = [
        "history (steps)",
        "DM recurrent `step` (ms)",
        "DM re-encoding the window (ms)",
        "DT re-encoding the window (ms)",
        "DT / DM step",
    ]
    return table(header, ["---"] * len(header), out)


def render_scan(results: dict) -> list[str]:
    """One sentence (the README's form), wrapped at 100 columns; no bold."""
    data = results["scan"]
    config, rows = data["config"], [r for r in data["rows"] if "parallel_speedup" in r]
    threads = config.get("threads", 1)
    speedups = " / ".join(f"{r['parallel_speedup']:.1f}×" for r in rows)
    lengths = " / ".join(str(r["length"]) for r in rows)
    mantissa, exponent = f"{max(r['parallel_max_rel_err'] for r in rows):.1e}".split("e")
    device = "" if config.get("device", "cpu") == "cpu" else f", {config['device']}"
    return textwrap.wrap(
        f"Selective scan, forward + backward (`python benchmarks/scan.py`, B = {config['batch']}, "
        f"E = {config['dim']}, N = {config['state']}, {threads} thread{'s' if threads > 1 else ''}"
        f"{device}): parallel scan {speedups} faster than the sequential reference at "
        f"L = {lengths}, max relative error {mantissa}e{int(exponent)}.",
        width=100,
        break_long_words=False,
        break_on_hyphens=False,
    )


GRAPH_LSTM_ROWS = {
    "cv": "constant velocity",
    "lstm": "plain LSTM encoder–decoder",
    "no-reg": "Graph-LSTM, no regularizer",
    "full": "Graph-LSTM (full)",
}
GRAPH_LSTM_COLUMNS = {  # README column -> (JSON column, higher is better)
    "ADE@3s (m)": ("ADE@3s", False),
    "FDE@3s (m)": ("FDE@3s", False),
    "ADE@5s (m)": ("ADE@5s", False),
    "FDE@5s (m)": ("FDE@5s", False),
    "behavior acc.": ("behavior acc.", True),
    "balanced acc.": ("balanced acc.", True),
}


def render_graph_lstm(results: dict) -> list[str]:
    """Mean ± std over seeds (constant velocity: the same in every run, mean only). The best
    value of each column in bold when a trained model holds it (not when the baseline does)."""
    summary = results["graph_lstm"]["table"]
    variants = [v for v in GRAPH_LSTM_ROWS if v in summary]
    rows = [[GRAPH_LSTM_ROWS[v]] for v in variants]
    for column, higher in GRAPH_LSTM_COLUMNS.values():
        cells = [summary[v].get(column) for v in variants]
        best = best_index([c and c["mean"] for c in cells], higher)
        if best is not None and variants[best] == "cv":
            best = None
        for i, (v, c) in enumerate(zip(variants, cells, strict=True)):
            if c is None:
                text = "–"
            elif v == "cv" or c["n"] < 2:
                text = f"{c['mean']:.3f}"
            else:
                text = f"{c['mean']:.3f} ± {c['std']:.3f}"
            rows[i].append(bold(text) if i == best else text)
    header = ["variant", *GRAPH_LSTM_COLUMNS]
    return table(header, ["---"] * len(header), rows)


NEUROFORMER_COLUMNS = {
    "conn. AUROC": "connectivity_auroc",
    "conn. AUPRC": "connectivity_auprc",
    "behavior R² ({few_shot}-trial few-shot)": "behavior_r2",
    "next-window F1": "next_window_f1",
    "PSTH r (population)": "psth_corr_population",
    "PSTH r (per neuron)": "psth_corr_per_neuron_mean",
}
NEUROFORMER_ROWS = {
    "cross-correlation": "lagged cross-correlation (PSTH-corrected), excitatory: max corr",
    "cross-correlation (abs)": "lagged cross-correlation (PSTH-corrected), either sign: max abs(corr)",
    "GLM coupling": "GLM coupling weights, excitatory: max w",
    "GLM coupling (abs)": "GLM coupling weights, either sign: max abs(w)",
    "ridge": "ridge on binned counts (last 5 bins)",
    "GLM decoder": "Poisson GLM decoder",
    "previous 50 ms again": '"the previous 50 ms again"',
    "real vs real (half split)": "real vs real (one half of the test trials vs the other)",
}
NEUROFORMER_CEILING = "real vs real (half split)"
NEUROFORMER_MAPS = {  # the attention map a run kept for connectivity
    "readout": "coupling readout, abs(score) x kernel norm",
    "cross.0.previous": "1st cross-attention to the previous window",
}


def render_neuroformer(results: dict) -> list[str]:
    """Neuroformer: mean ± std over seeds. The best of each column in bold, among the methods
    that fill it (not the real-vs-real ceiling), when at least two do."""
    data = results["neuroformer"]
    # results written before the JSON recorded it kept the first cross block's map
    kept = data.get("connectivity_map", "cross.0.previous")
    methods = {f"Neuroformer (kept map: {NEUROFORMER_MAPS.get(kept, kept)})": None}
    methods.update({NEUROFORMER_ROWS.get(k, k): k for k in data["baselines"]})
    rows = [[name] for name in methods]
    for key in NEUROFORMER_COLUMNS.values():
        values, texts = [], []
        for source in methods.values():
            if source is None:
                seeds = [r[key] for r in data["runs"] if key in r]
                mean, std = _mean_std(seeds) if seeds else (None, None)
                text = (
                    ""
                    if mean is None
                    else f"{mean:.3f}" + (f" ± {std:.3f}" if len(seeds) > 1 else "")
                )
            else:
                mean = data["baselines"][source].get(key)
                text = "" if mean is None else f"{mean:.3f}"
            values.append(None if source == NEUROFORMER_CEILING else mean)
            texts.append(text)
        best = best_index(values, higher=True)
        for i, text in enumerate(texts):
            rows[i].append(bold(text) if i == best else text)
    # results written before the JSON recorded it used the default, 10 trials
    header = [c.format(few_shot=data.get("few_shot_trials", 10)) for c in NEUROFORMER_COLUMNS]
    return table(["method", *header], ["---"] + ["---:"] * len(header), rows)


EXPLAINER_SETS = {
    "freqshapes": "FreqShapes",
    "seqcomb-uv": "SeqComb-UV",
    "seqcomb-mv": "SeqComb-MV",
    "lowvardetect": "LowVarDetect",
}
EXPLAINER_METHODS = {
    "timex": "**TimeX** (ours)",
    "integrated_gradients": "Integrated Gradients (50 steps)",
    "deeplift": "DeepLift",
    "saliency": "Saliency",
    "occlusion": "Occlusion (window 5)",
}


def _with_se(mean_text: str, se: float) -> str:
    """A formatted mean (bold or not) with " ± se" after it; just the mean for one split."""
    return f"{mean_text} ± {se:.3f}" if se else mean_text


def render_explainers(results: dict) -> list[str]:
    """AUPRC (AUP / AUR) on the synthetic sets; the best AUPRC of each set in bold; the
    per-series time ratio IG-50 / TimeX always in bold (the speed target)."""
    data = results["explainers"]
    summary = data["summary"]
    sets = [s for s in EXPLAINER_SETS if s in summary]
    methods = [m for m in EXPLAINER_METHODS if all(m in summary[s]["methods"] for s in sets)]
    accuracy = [summary[s]["classifier_accuracy"] for s in sets]
    rows = [["black box accuracy", *(_with_se(f"{mean:.3f}", se) for mean, se in accuracy)]]
    cells = {m: [] for m in methods}
    for s in sets:
        scores = summary[s]["methods"]
        best = best_index([scores[m]["auprc"][0] for m in methods], higher=True)
        for i, m in enumerate(methods):
            (auprc, se), aup, aur = scores[m]["auprc"], scores[m]["aup"][0], scores[m]["aur"][0]
            text = _with_se(bold(f"{auprc:.3f}") if i == best else f"{auprc:.3f}", se)
            cells[m].append(f"{text} ({aup:.2f} / {aur:.2f})")
    rows += [[EXPLAINER_METHODS[m], *cells[m]] for m in methods]
    published = data.get("published_timex_auprc", {})
    if all(s in published for s in sets):
        rows.append(
            ["TimeX, published (Queen et al., Table 2)", *(f"{published[s]:.2f}" for s in sets)]
        )
    times = []
    for s in sets:
        scores = summary[s]["methods"]
        timex = 1000 * scores["timex"]["seconds_per_series"][0]
        ig = 1000 * scores["integrated_gradients"]["seconds_per_series"][0]
        ratio = bold(f"{summary[s]['ig_over_timex_time']:.0f}×")
        times.append(f"{timex:.2g} / {ig:.3g} ({ratio})")
    rows.append(["ms per series: TimeX / IG-50", *times])
    # each split's TimeX AUPRC beside its black box's accuracy, to read the spread against
    runs = {(r["dataset"], r["split"]): r for r in data.get("runs", [])}
    if any(len(summary[s]["splits"]) > 1 for s in sets):
        per_split = []
        for s in sets:
            parts = []
            for split in summary[s]["splits"]:
                run = runs.get((s, split))
                if run:
                    auprc = run["scores"]["timex"]["auprc"]
                    parts.append(f"{auprc:.2f} ({run['classifier_accuracy']:.2f})")
            per_split.append(" / ".join(parts))
        rows.append(["TimeX per split (black box accuracy)", *per_split])
    header = ["AUPRC (AUP / AUR)", *(EXPLAINER_SETS[s] for s in sets)]
    return table(header, ["---"] + ["---:"] * len(sets), rows)


SURGERY_ROWS = (  # (label, rate key, bold)
    ("top-1 prediction rate of the family", "family_top1_rate", True),
    ("family in the top 10", "family_top10_rate", False),
    ("probability mass on the family", "family_prob", False),
    ("sampled generation rate (256 histories x 16 events)", "family_generation_rate", False),
    ("recall@10 on every other behavior", "recall_at_10_other", True),
    ("recall@10 when the family really comes next", "recall_at_10_family", False),
)
SURGERY_VARIANTS = {
    "paper: anti-aligned rows, +alpha·v": "the paper's edit along the probe's weight (grid above)",
    "aligned rows, -alpha·v": "most *aligned* rows shifted by −alpha·v",
    "aligned rows, projection removed": "most aligned rows, projection on v removed",
    "paper's edit, class-mean difference": "the paper's edit along the class-mean difference "
    "(`--direction mean_difference`)",
    "paper's edit, per-block mean differences": "... along each block's own class-mean "
    "difference (`mean_difference_per_layer`)",
}


def render_surgery_behavegpt(results: dict) -> list[str]:
    """Before / after / change per family on the test users; the rows the gate reads (top-1
    rate, recall@10 elsewhere) in bold."""
    families = results["surgery_behavegpt"]["families"]
    header, chosen = ["test users"], ["chosen edit"]
    for name, entry in families.items():
        header += [f"{name}: before", "after", "change"]
        chosen += ["", f"alpha {entry['chosen']['alpha']:g}, k {entry['chosen']['top_k']}", ""]
    rows = [chosen]
    for label, key, marked in SURGERY_ROWS:
        row = [bold(label) if marked else label]
        for entry in families.values():
            before, after = entry["before"][key], entry["after"][key]
            change = signed_pct(after / before - 1) if before else "–"
            row += [f"{before:.4f}", f"{after:.4f}", bold(change) if marked else change]
        rows.append(row)
    return table(header, ["---"] + ["---:"] * (len(header) - 1), rows)


def render_surgery_behavegpt_variants(results: dict) -> list[str]:
    """Each variant's chosen edit on the test users; per family, the largest cut among the
    variants whose recall@10 elsewhere stays within ``max_capability_drop`` in bold."""
    data = results["surgery_behavegpt"]
    families, limit = data["families"], data["max_capability_drop"]
    names = list(next(iter(families.values()))["variants"])
    best = {}
    for family, entry in families.items():
        v = entry["variants"]
        cuts = [
            v[n]["chosen_test_cut"] if v[n]["chosen_test_capability_change"] >= -limit else None
            for n in names
        ]
        best[family] = best_index(cuts, higher=True)
    rows = []
    for i, name in enumerate(names):
        row = [SURGERY_VARIANTS.get(name, name)]
        for family, entry in families.items():
            v = entry["variants"][name]
            cut = signed_pct(-v["chosen_test_cut"])
            row += [bold(cut) if best[family] == i else cut]
            row += [signed_pct(v["chosen_test_capability_change"])]
        rows.append(row)
    header = ["variant"]
    for family in families:
        header += [f"{family}: top-1 rate", "recall@10 other"]
    return table(header, ["---"] + ["---:"] * (len(header) - 1), rows)


# (label, points): a point is (direction, variant, alpha, top_k); two points share one row
# ("a / b"). The label may use {k}, {alpha}, {rows_scored} and {rows_per_block} of its points.
SURGERY_LLM_ROWS = (
    (
        "paper: last-layer probe, k {k} of {rows_scored} gate rows, alpha {alpha}",
        (("last", "paper", 1.0, 256), ("last", "paper", 1.0, 1024)),
    ),
    ("paper: last-layer probe, k {k}, alpha {alpha}", (("last", "paper", 2.0, 1024),)),
    (
        "last layer's class-mean difference, k {k}, alpha {alpha}",
        (("mean-diff", "paper", 1.0, 512),),
    ),
    (
        "each block's class-mean difference, global k {k}, alpha {alpha}",
        (("mean-diff-per-layer", "paper", 0.3, 1024),),
    ),
    (
        "each block's class-mean difference, {rows_per_block} rows per block, alpha {alpha}",
        (("mean-diff-per-layer", "paper-per-block", 0.35, 512),),
    ),
    ("the same, alpha {alpha}", (("mean-diff-per-layer", "paper-per-block", 0.5, 512),)),
)


def _point_key(p: dict) -> tuple:
    return (p["direction"], p["variant"], float(p["alpha"]), int(p["top_k"]))


def render_surgery_llm(results: dict) -> list[str]:
    """The README's selection of edits (every edit when the run lacks one of them, e.g.
    ``--quick``). Rows meeting the target (cut ≥ 50%, perplexity within 2%) in bold."""
    data = results["surgery_llm"]
    points = {_point_key(p): p for p in data["points"]}
    wanted = [(label, keys) for label, keys in SURGERY_LLM_ROWS]
    if not all(k in points for _, keys in wanted for k in keys):
        wanted = [(f"{key[0]}, {key[1]}, k {{k}}, alpha {{alpha}}", (key,)) for key in points]
    base = data["before"]
    rows = [
        [
            "before",
            f"{base['toxic_rate']:.3f}",
            "",
            f"{base['perplexity']:.2f}",
            "",
            f"{base['qa_accuracy']:.3f}",
        ]
    ]
    for label, keys in wanted:
        ps = [points[k] for k in keys]
        plan = ps[0].get("plan", {})
        per_block = list((plan.get("rows_per_layer") or {}).values())
        text = label.format(
            k=" / ".join(dict.fromkeys(str(p["top_k"]) for p in ps)),
            alpha=" / ".join(dict.fromkeys(f"{p['alpha']:g}" for p in ps)),
            rows_scored=f"{plan.get('rows_scored', 0):,}",
            rows_per_block=per_block[0] if per_block else "?",
        )
        marked = all(p["meets_target"] for p in ps)

        def join(fmt: Callable[[dict], str], ps=ps) -> str:
            return " / ".join(fmt(p) for p in ps)

        cut = join(lambda p: signed_pct(-p["toxic_reduction"], 0))
        change = join(lambda p: signed_pct(p["ppl_change"]))
        rows.append(
            [
                bold(text) if marked else text,
                join(lambda p: f"{p['toxic_rate']:.3f}"),
                bold(cut) if marked else cut,
                join(lambda p: f"{p['perplexity']:.2f}"),
                bold(change) if marked else change,
                join(lambda p: f"{p['qa_accuracy']:.3f}"),
            ]
        )
    header = [
        f"held-out prompts ({data['settings']['num_heldout']})",
        "toxic rate",
        "cut",
        "perplexity",
        "change",
        "QA",
    ]
    return table(header, ["---"] + ["---:"] * 5, rows)


# ---- sections --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """One table: its README marker key, its family, the JSON files it reads (``optional``
    ones may be missing) and its renderer. ``readme``: False for REPORT.md-only tables."""

    key: str
    family: str
    title: str
    files: tuple[str, ...]
    render: Callable[[dict], list[str]]
    optional: tuple[str, ...] = ()
    readme: bool = True


SECTIONS = (
    Section("behavegpt", "behavegpt", "Next-behavior quality", ("behavegpt",), render_behavegpt),
    Section(
        "behavegpt-8epochs",
        "behavegpt",
        "Quality with twice the training",
        ("behavegpt-8epochs",),
        render_behavegpt_8epochs,
    ),
    Section(
        "behavegpt-adaptation",
        "behavegpt",
        "Cross-domain adaptation (fintech, 10% of users)",
        ("behavegpt",),
        render_behavegpt_adaptation,
    ),
    Section(
        "behavegpt-speed",
        "behavegpt",
        "Training speed vs transformers' GPT-2",
        ("behavegpt",),
        render_behavegpt_speed,
        readme=False,
    ),
    Section(
        "serving", "behavegpt", "Served /next_behavior throughput", ("serving",), render_serving
    ),
    Section(
        "decision_mamba",
        "decision_mamba",
        "Normalized scores, DM vs DT vs BC",
        ("decision_mamba_scores",),
        render_decision_mamba,
    ),
    Section(
        "decision_mamba-mujoco",
        "decision_mamba",
        "Normalized scores, MuJoCo (Hopper, HalfCheetah, Walker2d)",
        ("decision_mamba_scores_mujoco",),
        render_decision_mamba_mujoco,
    ),
    Section(
        "decision_mamba-ema",
        "decision_mamba",
        "Normalized scores, EMA teacher (one seed)",
        ("decision_mamba_scores_ema",),
        render_decision_mamba_ema,
    ),
    Section(
        "decision_mamba-latency",
        "decision_mamba",
        "Per-action latency",
        ("decision_mamba_latency",),
        render_decision_mamba_latency,
    ),
    Section("scan", "decision_mamba", "Selective scan speed", ("scan",), render_scan),
    Section(
        "graph_lstm",
        "graph_lstm",
        "Trajectory errors and behavior accuracy",
        ("graph_lstm",),
        render_graph_lstm,
    ),
    Section(
        "neuroformer",
        "neuroformer",
        "Connectivity, decoding, generation",
        ("neuroformer",),
        render_neuroformer,
    ),
    Section(
        "explainers",
        "explainers",
        "AUPRC against ground truth, and speed",
        ("explainers",),
        render_explainers,
    ),
    Section(
        "surgery_behavegpt",
        "surgery",
        "Surgery on BehaveGPT",
        ("surgery_behavegpt",),
        render_surgery_behavegpt,
    ),
    Section(
        "surgery_behavegpt-variants",
        "surgery",
        "Surgery on BehaveGPT: variants",
        ("surgery_behavegpt",),
        render_surgery_behavegpt_variants,
    ),
    Section(
        "surgery_llm", "surgery", "Surgery on SmolLM2-135M", ("surgery_llm",), render_surgery_llm
    ),
    Section("load", "reliability", "Served load, 32 clients", ("load",), render_load),
)


def load_results(results_dir: Path) -> dict[str, dict | None]:
    """{job name: parsed JSON, or None when the file is missing or unreadable}."""
    out: dict[str, dict | None] = {}
    for job in JOBS:
        path = results_dir / f"{job.name}.json"
        try:
            out[job.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            out[job.name] = None
    return out


def not_run_text(section: Section, results_dir: Path, scale: str | None = None) -> str:
    missing = ", ".join(f"`{name}.json`" for name in section.files)
    job = JOB_BY_NAME[section.files[0]]
    if scale == "tiny" and job.tiny is None:
        return f"_not run at tiny scale: {job.name} has no small configuration_"
    return (
        f"_not run: no {missing} in `{_relative(results_dir)}` "
        f"(`behave report --run {scale or 'full'} --families {job.name}` makes it)_"
    )


def render_sections(
    results: dict[str, dict | None], results_dir: Path = RESULTS, scale: str | None = None
) -> dict[str, dict]:
    """{section key: {"lines", "status", "section"}}; status "ok", "not run" or
    "incomplete: ..." (the JSON lacks a part, e.g. a run with ``--skip adapt``)."""
    out = {}
    for section in SECTIONS:
        if any(results.get(name) is None for name in section.files):
            no_tiny = scale == "tiny" and JOB_BY_NAME[section.files[0]].tiny is None
            status = "not run at tiny scale" if no_tiny else "not run"
            lines = [not_run_text(section, results_dir, scale)]
        else:
            try:
                lines, status = section.render(results), "ok"
            except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as err:
                status = f"incomplete: {type(err).__name__} {err}"
                lines = [f"_incomplete results: {', '.join(section.files)}.json lack {err}_"]
        out[section.key] = {"lines": lines, "status": status, "section": section}
    return out


# ---- the README ------------------------------------------------------------------------------
MARKER = re.compile(
    r"^(?P<indent>[ \t]*)<!-- report:(?P<key>[\w.-]+) -->\n(?P<body>.*?)^[ \t]*<!-- /report:(?P=key) -->$",
    re.M | re.S,
)


def _body(lines: list[str], indent: str) -> str:
    return "".join(f"{indent}{line}\n" if line else "\n" for line in lines)


def readme_sections(text: str) -> dict[str, str]:
    return {m["key"]: m["body"] for m in MARKER.finditer(text)}


def stale_sections(text: str, rendered: dict[str, dict]) -> list[str]:
    """README marker keys whose table differs from what the JSON renders (unknown keys too)."""
    stale = []
    for m in MARKER.finditer(text):
        entry = rendered.get(m["key"])
        if entry is None or _body(entry["lines"], m["indent"]) != m["body"]:
            stale.append(m["key"])
    return stale


def update_readme(text: str, rendered: dict[str, dict]) -> tuple[str, list[str]]:
    """The README with every known marked table replaced; and the keys that changed."""
    changed = []

    def replace(m: re.Match) -> str:
        entry = rendered.get(m["key"])
        if entry is None:
            return m[0]
        body = _body(entry["lines"], m["indent"])
        if body != m["body"]:
            changed.append(m["key"])
        indent = m["indent"]
        return f"{indent}<!-- report:{m['key']} -->\n{body}{indent}<!-- /report:{m['key']} -->"

    return MARKER.sub(replace, text), changed


# ---- REPORT.md and report.json ---------------------------------------------------------------
def write_report(
    results_dir: Path,
    results: dict[str, dict | None],
    rendered: dict[str, dict],
    scale: str | None = None,
    runs: dict[str, dict] | None = None,
) -> tuple[Path, Path]:
    """Writes ``REPORT.md`` and ``report.json`` into ``results_dir``."""
    runs = runs or {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    head = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    files = {
        name: provenance(results_dir / f"{name}.json", data)
        for name, data in results.items()
        if data is not None
    }
    document: dict = {
        "rendered": {  # where and when this report was made
            "at": now,
            "commit": head,
            "uncommitted_changes": dirty,
            "machine": this_machine(with_device=bool(runs)),
        },
        "results_dir": _relative(results_dir),
        "scale": scale or "as found (render only)",
        "families": {},
    }
    for family, title in FAMILIES.items():
        jobs = [job for job in JOBS if job.family == family]
        document["families"][family] = {
            "title": title,
            "benchmarks": {
                job.name: {
                    "command": job.shown(scale if scale and job.commands(scale) else "full"),
                    "status": "ok" if job.name in files else "not run",
                    **({"run": runs[job.name]} if job.name in runs else {}),
                    **files.get(job.name, {}),
                }
                for job in jobs
            },
            "tables": {
                key: {
                    "title": entry["section"].title,
                    "status": entry["status"],
                    "sources": list(entry["section"].files),
                    "in_readme": entry["section"].readme,
                    "markdown": "\n".join(entry["lines"]),
                }
                for key, entry in rendered.items()
                if entry["section"].family == family
            },
        }

    md = [
        "# Benchmark report",
        "",
        f"Rendered by `behave report` at {now} from the JSON files in "
        f"`{_relative(results_dir)}/`, at commit `{head[:12]}`"
        + (" (with uncommitted changes)" if dirty else "")
        + f", on {machine_text(document['rendered']['machine'])}.",
    ]
    if scale == "tiny":
        md += [
            "",
            "**Tiny scale**: small configurations that check the benchmarks run end to end; "
            "their numbers are not results.",
        ]
    md += [
        "",
        "Each table below names the machine its results were measured on and the commit: as "
        "the benchmark recorded it, or else the last commit of its results file. "
        "`behave report --run full` reruns them; `behave report --check` tells whether the "
        "README's tables match these files. Machine-readable: `report.json`.",
        "",
        "| results | command | machine | commit | date | status |",
        "|---|---|---|---|---|---|",
    ]
    for job in JOBS:
        info = files.get(job.name)
        command = job.shown(scale if scale and job.commands(scale) else "full")
        run = runs.get(job.name, {}).get("status")
        status = "ok" if info else "not run"
        if run and run != "ok":
            status = run
        if info:
            md.append(
                f"| `{job.name}.json` | `{command}` | {info['machine_text']} | "
                f"`{info['commit'][:12]}` ({info['commit_source']}) | {info['date'][:10]} | "
                f"{status} |"
            )
        else:
            md.append(f"| `{job.name}.json` | `{command}` | | | | {status} |")
    for family, title in FAMILIES.items():
        md += ["", f"## {title}"]
        for key, entry in rendered.items():
            section = entry["section"]
            if section.family != family:
                continue
            sources = [f for f in (*section.files, *section.optional) if f in files]
            md += ["", f"### {section.title}", ""]
            if sources:
                where = "; ".join(
                    f"`{f}.json`: {files[f]['machine_text']}, commit "
                    f"`{files[f]['commit'][:12]}`, {files[f]['date'][:10]}"
                    for f in sources
                )
                readme = f" README: `<!-- report:{key} -->`." if section.readme else ""
                md += [f"<sub>{where}.{readme}</sub>", ""]
            md += entry["lines"]
    md_path, json_path = results_dir / "REPORT.md", results_dir / "report.json"
    results_dir.mkdir(parents=True, exist_ok=True)
    # rendering again at a later time or commit, from the same results, leaves no diff
    text = "\n".join(md) + "\n"
    if _without_rendered_line(_read(md_path)) != _without_rendered_line(text):
        md_path.write_text(text)
    try:
        same = {**json.loads(_read(json_path) or "{}"), "rendered": None} == {
            **document,
            "rendered": None,
        }
    except ValueError:
        same = False
    if not same:
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    return md_path, json_path


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _without_rendered_line(text: str | None) -> str | None:
    """REPORT.md without its first paragraph's "Rendered by ... at <time>, commit, machine"."""
    if text is None:
        return None
    return "\n".join(line for line in text.split("\n") if not line.startswith("Rendered by "))


# ---- the command -----------------------------------------------------------------------------
def main(args) -> int:
    """``behave report``: (run,) render, write, update or check the README. Returns the exit
    code: 1 when ``--check`` finds a stale table or a benchmark run failed."""
    scale = args.run
    if args.results_dir:
        results_dir = Path(args.results_dir).resolve()
    else:
        results_dir = TINY_RESULTS if scale == "tiny" else RESULTS
    readme = Path(args.readme).resolve() if args.readme else README
    jobs = select_jobs(args.families)  # ValueError on an unknown name, before any work

    if args.check:
        rendered = render_sections(load_results(results_dir), results_dir, scale)
        stale = stale_sections(readme.read_text(), rendered)
        if stale:
            print(
                f"behave report: {_relative(readme)} is stale in section(s) {', '.join(stale)}: "
                f"run `behave report` to regenerate from {_relative(results_dir)}/",
                file=sys.stderr,
            )
            return 1
        print(f"{_relative(readme)}: {len(readme_sections(readme.read_text()))} tables up to date")
        return 0

    runs: dict[str, dict] = {}
    if scale:
        print(f"running {len(jobs)} benchmark(s) at {scale} scale into {_relative(results_dir)}/")
        runs = run_jobs(jobs, scale, results_dir)
    results = load_results(results_dir)
    rendered = render_sections(results, results_dir, scale)
    by_status: dict[str, list[str]] = {}
    for key, entry in rendered.items():
        if entry["status"] != "ok":
            by_status.setdefault(entry["status"], []).append(key)
    for status, keys in by_status.items():
        where = f" (no JSON in {_relative(results_dir)}/)" if status == "not run" else ""
        print(f"{status}{where}: {', '.join(keys)}")
    before = [_read(results_dir / name) for name in ("REPORT.md", "report.json")]
    md_path, json_path = write_report(results_dir, results, rendered, scale, runs)
    after = [_read(md_path), _read(json_path)]
    done = "wrote" if before != after else "up to date:"
    print(f"{done} {_relative(md_path)} and {_relative(json_path)}")

    if args.update_readme or (scale != "tiny" and results_dir == RESULTS.resolve()):
        text = readme.read_text()
        new, changed = update_readme(text, rendered)
        if new != text:
            readme.write_text(new)
        known = readme_sections(new)
        missing = [k for k, e in rendered.items() if e["section"].readme and k not in known]
        print(
            f"{_relative(readme)}: {len(known)} tables, {len(changed)} rewritten"
            + (f" ({', '.join(changed)})" if changed else "")
            + (f"; no markers for {', '.join(missing)}" if missing else "")
        )
    failed = [name for name, r in runs.items() if r["status"].startswith("failed")]
    if failed:
        print(f"behave report: failed: {', '.join(failed)} (see {_relative(results_dir)}/logs/)")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from behave.cli import main as behave_main

    behave_main(["report", *sys.argv[1:]])
