"""Flags histories with the served behavior probe and shows what the served model recommends.

    python scripts/probe_client.py --url http://127.0.0.1:3000 --data-dir data/user-events

From the generated log it takes real 20-event histories whose *next* event is in the probe's
family (e.g. ``risky.change_payout.004``) and as many whose next event is not, asks ``POST /probe``
for each, and prints the scores, how many of each kind were flagged, and the probe's AUROC on this
handful. Then, for the first positive history, it shows ``POST /next_behavior``'s top 10: after a
promoted surgery, the served model puts the family lower than the probe says it is likely.
"""

from __future__ import annotations

import argparse

import polars as pl

from behave.client import BehaveClient

HISTORY = 20


def _histories(data_dir: str, family: str, per_kind: int, seed: int = 0):
    """(history, next behavior) pairs: ``per_kind`` whose next event is in ``family``, as many not."""
    events = pl.read_parquet(f"{data_dir}/events.parquet").sort("user_id", "timestamp")
    events = events.with_columns(
        pl.int_range(pl.len()).over("user_id").alias("position"),
        pl.col("behavior").shift(-1).over("user_id").alias("next"),
    ).filter(pl.col("position") >= HISTORY - 1, pl.col("next").is_not_null())
    is_family = pl.col("next").str.starts_with(f"{family}.")
    picked = []
    for cond in (is_family, ~is_family):
        rows = events.filter(cond).sample(per_kind, seed=seed)
        picked += [(r["user_id"], r["position"], r["next"]) for r in rows.iter_rows(named=True)]
    full = pl.read_parquet(f"{data_dir}/events.parquet").sort("user_id", "timestamp")
    out = []
    for user_id, position, nxt in picked:
        rows = full.filter(pl.col("user_id") == user_id).slice(position - HISTORY + 1, HISTORY)
        history = [
            {
                "behavior": r["behavior"],
                "timestamp": r["timestamp"].isoformat(),
                "location": r["location"],
                "domain": r["domain"],
            }
            for r in rows.iter_rows(named=True)
        ]
        out.append((history, nxt))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--data-dir", default="data/user-events")
    p.add_argument("--per-kind", type=int, default=8)
    args = p.parse_args()

    client = BehaveClient(args.url, timeout=30)
    probes = client.probe_models()
    if not probes:
        raise SystemExit("no probe is served: run `behave surgery` first")
    name, info = next(iter(probes.items()))
    family = name.split(".", 1)[1]
    print(
        f"probe {name} v{info.probe_version} ({info.label}; layer {info.layer}, "
        f"held-out AUROC {info.auroc:.3f}; reads behavegpt v{info.reads_version})"
    )
    results = []
    for history, nxt in _histories(args.data_dir, family, args.per_kind):
        answer = client.probe(history, probe=name)
        results.append((nxt.startswith(f"{family}."), answer.score, answer.flagged, history, nxt))
        mark = "FLAG" if answer.flagged else "    "
        print(f"  {mark} score {answer.score:.3f}  last: {history[-1]['behavior']:<32} next: {nxt}")
    pos = [s for is_pos, s, *_ in results if is_pos]
    neg = [s for is_pos, s, *_ in results if not is_pos]
    auroc = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / max(len(pos) * len(neg), 1)
    flagged_pos = sum(f for is_pos, _, f, *_ in results if is_pos)
    flagged_neg = sum(f for is_pos, _, f, *_ in results if not is_pos)
    print(
        f"flagged {flagged_pos}/{len(pos)} histories whose next event was {family}.*, "
        f"{flagged_neg}/{len(neg)} of the others; AUROC on these {len(results)}: {auroc:.2f}"
    )
    # a history whose next event really was in the family, flagged if any was
    positives = sorted((r for r in results if r[0]), key=lambda r: not r[2])
    _, _, _, history, nxt = positives[0]
    top = client.next_behavior(history, top_k=10)
    ranked = ", ".join(
        f"{b} {p:.2f}" for b, p in zip(top.behaviors, top.probabilities, strict=True)
    )
    print(
        f"served model (v{top.model_version}) after a history whose next event was {nxt}: {ranked}"
    )
    print(
        f"  ({sum(b.startswith(family + '.') for b in top.behaviors)} of its top 10 are {family}.*; the real next event was {nxt})"
    )
    client.close()


if __name__ == "__main__":
    main()
