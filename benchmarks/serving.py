"""Served /next_behavior throughput with adaptive batching vs without, at matched p99.

    python benchmarks/serving.py              # ~3 min on 2 CPU cores
    python benchmarks/serving.py --quick

Starts the BentoML service twice on 127.0.0.1 with the same model bundle (the demo's size:
d_model 128, 2 layers, context 64, 600 behaviors; random weights — speed does not depend on
them): once with adaptive batching (max batch 64) and once with ``BEHAVE_MAX_BATCH_SIZE=1``
(every request runs alone). A bounded load generator sends 64-event histories from N
concurrent clients for a fixed number of requests per level and records latency; we report
requests/s, p50 and p99 per level, and the best throughput each mode reaches while keeping
p99 under the SLO. Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_bundle(out: Path, num_behaviors: int = 600, context: int = 64) -> list[str]:
    import torch

    from behave.data.vocab import Vocabulary
    from behave.inference.behavegpt import save_bundle
    from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig

    torch.manual_seed(0)
    names = [f"bench.event.{i:03d}" for i in range(num_behaviors)]
    vocab = Vocabulary(["<pad>", "<unk>", *names], ["<unk>", "home", "work"], ["<unk>", "app"])
    model = BehaveGPT(
        BehaveGPTConfig(
            len(vocab.behaviors),
            3,
            2,
            context_length=context,
            d_model=128,
            num_layers=2,
            num_heads=4,
        )
    )
    save_bundle(model, vocab, out)
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(bundle: Path, max_batch: int, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "BEHAVE_BEHAVEGPT_BUNDLE": str(bundle),
        "BEHAVE_MAX_BATCH_SIZE": str(max_batch),
        "BENTOML_DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:BehaveService",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = Path(tempfile.mkstemp(suffix=".log", prefix="behave-bench-serve-")[1])
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"service exited during start-up; its log ({log}):\n{tail}")
        time.sleep(0.5)
    stop_service(proc)
    raise RuntimeError("service not ready within 120 s")


def stop_service(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def load(url: str, bodies: list[dict], clients: int, requests_per_client: int) -> dict:
    """``clients`` threads each send ``requests_per_client`` requests back to back."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()

    def client(seed: int) -> None:
        nonlocal failures
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=60) as http:
            for _ in range(requests_per_client):
                body = bodies[int(rng.integers(len(bodies)))]
                start = time.perf_counter()
                r = http.post(url, json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    failures += r.status_code != 200

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "failed": failures,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,4,16,32", help="concurrent clients per level")
    parser.add_argument("--requests", type=int, default=400, help="requests per level")
    parser.add_argument("--slo-p99-ms", type=float, default=500.0)
    parser.add_argument("--out", default="benchmarks/results/serving.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.requests = "1,16", 64
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        names = make_bundle(bundle)
        rng = np.random.default_rng(0)
        bodies = [
            {
                "requests": [
                    {
                        "history": [
                            {"behavior": names[int(j)]} for j in rng.integers(0, len(names), 64)
                        ],
                        "top_k": 10,
                    }
                ]
            }
            for _ in range(50)
        ]
        results: dict[str, list[dict]] = {}
        for mode, max_batch in (("adaptive batching", 64), ("no batching", 1)):
            port = free_port()
            proc = start_service(bundle, max_batch, port)
            try:
                url = f"http://127.0.0.1:{port}/next_behavior"
                load(url, bodies, 2, 5)  # warm-up
                results[mode] = [load(url, bodies, c, max(1, args.requests // c)) for c in levels]
            finally:
                stop_service(proc)

    print(
        f"\n/next_behavior, 64-event histories, top_k 10, {args.requests} requests per level (1 server worker, 127.0.0.1)"
    )
    header = f"{'mode':<20}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failed':>8}"
    print(header + "\n" + "-" * len(header))
    for mode, rows in results.items():
        for r in rows:
            print(
                f"{mode:<20}{r['clients']:>8}{r['requests_per_s']:>10.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['failed']:>8}"
            )
    best = {
        mode: max(
            (
                r["requests_per_s"]
                for r in rows
                if r["p99_ms"] <= args.slo_p99_ms and r["failed"] == 0
            ),
            default=0.0,
        )
        for mode, rows in results.items()
    }
    ratio = best["adaptive batching"] / best["no batching"] if best["no batching"] else float("nan")
    print(
        f"\nbest req/s with p99 <= {args.slo_p99_ms:.0f} ms: "
        + ", ".join(f"{m} {v:.1f}" for m, v in best.items())
        + f"  (ratio {ratio:.2f}x)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "levels": results,
                "slo_p99_ms": args.slo_p99_ms,
                "best_requests_per_s_at_slo": best,
                "ratio": ratio,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
