"""BehaveGPT benchmark: quality vs baselines, DRO vs ERM, adaptation, and training speed.

    python benchmarks/behavegpt.py                 # full run (~25 min on 2 CPU cores)
    python benchmarks/behavegpt.py --quick         # smoke run (~2 min)

Everything is trained and scored on the same generated data, split and targets:
- quality: most-popular, first-order Markov, BehaveGPT-ERM, BehaveGPT-DRO on the test users of
  the pretraining domains (recall@10 macro / weighted, head / tail, NDCG@10);
- adaptation: the DRO model fine-tuned on 10% of the held-out domain's users vs the same
  architecture and objective trained from scratch on that 10%, both scored on that domain's
  test users (and the pretrained model with no fine-tuning, for reference);
- speed: training tokens/s of BehaveGPT vs ``transformers.GPT2LMHeadModel`` of the same size
  (layers, width, heads, vocabulary, context), interleaved in one process, 1 thread.
Prints tables and writes JSON (``--out``). Serving throughput: ``benchmarks/serving.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import logging  # noqa: E402

logging.getLogger("lightning").setLevel(logging.WARNING)

import lightning as L  # noqa: E402
import torch  # noqa: E402

from behave.data.user_events import generate_user_events  # noqa: E402
from behave.data.user_events_datamodule import UserEventsDataModule  # noqa: E402
from behave.evaluation import evaluate_scorer  # noqa: E402
from behave.inference.behavegpt import save_bundle  # noqa: E402
from behave.models.baselines import FirstOrderMarkov, MostPopular  # noqa: E402
from behave.tasks.behavegpt import BehaveGPTTask  # noqa: E402

PRETRAIN_DOMAINS = ["social", "commerce", "media"]
NEW_DOMAIN = "fintech"
COLUMNS = [
    "recall_at_10_macro",
    "recall_at_10_weighted",
    "recall_at_10_head",
    "recall_at_10_tail",
    "ndcg_at_10",
]


def train(
    dm: UserEventsDataModule, epochs: int, model_args: dict, init_from: str | None = None
) -> tuple[BehaveGPTTask, float]:
    task = BehaveGPTTask(
        data_info=dm.data_info,
        context_length=dm.hparams.context_length,
        init_from=init_from,
        **model_args,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=1.0,
    )
    start = time.perf_counter()
    trainer.fit(task, dm)
    return task.eval(), time.perf_counter() - start


def model_scorer(task: BehaveGPTTask):
    return lambda inputs: task.model(inputs).logits


def table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    width = max(len(r) for r in rows) + 2
    lines = [
        f"{'model':<{width}}"
        + "".join(f"{c.replace('recall_at_10_', 'R@10 '):>16}" for c in columns)
    ]
    lines.append("-" * len(lines[0]))
    for name, metrics in rows.items():
        lines.append(
            f"{name:<{width}}" + "".join(f"{metrics.get(c, float('nan')):>16.4f}" for c in columns)
        )
    return "\n".join(lines)


def speed(vocab: int, context: int, model_args: dict, batch: int, steps: int) -> dict:
    """Training tokens/s (forward, backward, AdamW step), interleaved rounds, median."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig, EventBatch

    torch.manual_seed(0)
    cfg = BehaveGPTConfig(
        vocab,
        8,
        8,
        context_length=context,
        d_model=model_args["d_model"],
        num_layers=model_args["num_layers"],
        num_heads=model_args["num_heads"],
        dropout=0.0,
    )
    ours = BehaveGPT(cfg)
    gpt2_config = GPT2Config(
        vocab_size=vocab,
        n_positions=context,
        n_embd=cfg.d_model,
        n_layer=cfg.num_layers,
        n_head=cfg.num_heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=1,
    )
    gpt2_config._attn_implementation = "sdpa"  # same attention kernel as ours
    gpt2 = GPT2LMHeadModel(gpt2_config)
    ids = torch.randint(2, vocab, (batch, context + 1))
    events = EventBatch(
        ids[:, :-1],
        torch.zeros_like(ids[:, :-1]),
        torch.zeros_like(ids[:, :-1]),
        torch.zeros_like(ids[:, :-1]),
        torch.zeros_like(ids[:, :-1]),
    )

    def step_ours(opt):
        loss = torch.nn.functional.cross_entropy(
            ours(events).logits.flatten(0, 1), ids[:, 1:].flatten()
        )
        loss.backward()
        opt.step()
        opt.zero_grad()

    def step_gpt2(opt):
        gpt2(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss.backward()
        opt.step()
        opt.zero_grad()

    runs = {"behavegpt": (ours, step_ours), "gpt2 (transformers)": (gpt2, step_gpt2)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, (m, _) in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for k, (_, fn) in runs.items():  # warm-up
        fn(opts[k])
    for _ in range(5):  # interleaved rounds so machine noise hits both alike
        for k, (_, fn) in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn(opts[k])
            times[k].append((time.perf_counter() - start) / steps)
    out = {}
    for k, (model, _) in runs.items():
        t = sorted(times[k])[len(times[k]) // 2]
        out[k] = {
            "params": sum(p.numel() for p in model.parameters()),
            "step_s": t,
            "tokens_per_s": batch * context / t,
        }
    out["ratio_behavegpt_over_gpt2"] = (
        out["behavegpt"]["tokens_per_s"] / out["gpt2 (transformers)"]["tokens_per_s"]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--adapt-epochs", type=int, default=4)
    parser.add_argument("--data-dir", default="data/bench-user-events")
    parser.add_argument("--out", default="benchmarks/results/behavegpt.json")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dro-step-size", type=float, default=0.01)
    parser.add_argument("--dro-adjustment", type=float, default=0.0)
    parser.add_argument("--dro-mix", type=float, default=0.3)
    parser.add_argument("--dro-groups", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: adapt,speed")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    L.seed_everything(0, verbose=False)
    if args.quick:
        args.events, args.epochs, args.adapt_epochs, args.data_dir = (
            60_000,
            1,
            1,
            "data/bench-user-events-quick",
        )
    skip = set(filter(None, args.skip.split(",")))

    data_dir = Path(args.data_dir)
    if not (data_dir / "manifest.json").is_file():
        generate_user_events(data_dir, num_events=args.events, seed=0)
    model_args = {
        "d_model": args.d_model,
        "num_layers": args.layers,
        "num_heads": 4,
        "dropout": 0.1,
        "learning_rate": 3e-3,
        "warmup_steps": 100,
    }
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "args": vars(args),
    }

    # ---- quality on the pretraining domains ------------------------------------------------
    dm = UserEventsDataModule(
        str(data_dir), context_length=64, batch_size=128, domains=PRETRAIN_DOMAINS
    )
    dm.setup()  # train, val and test windows
    test = dm.test_dataloader()
    quality = {
        "most-popular": evaluate_scorer(
            MostPopular(torch.tensor(dm.behavior_counts)), test, dm.behavior_counts
        ),
        "markov-1": evaluate_scorer(
            FirstOrderMarkov(len(dm.vocab.behaviors)).fit(dm.datasets["train"].tensors["behavior"]),
            test,
            dm.behavior_counts,
        ),
    }
    timings = {}
    erm, timings["erm"] = train(dm, args.epochs, {**model_args, "objective": "erm"})
    quality["behavegpt-erm"] = evaluate_scorer(model_scorer(erm), test, dm.behavior_counts)
    dro_args = {
        "objective": "dro",
        "dro_groups": args.dro_groups,
        "dro_step_size": args.dro_step_size,
        "dro_adjustment": args.dro_adjustment,
        "dro_mix": args.dro_mix,
    }
    dro, timings["dro"] = train(dm, args.epochs, {**model_args, **dro_args})
    quality["behavegpt-dro"] = evaluate_scorer(model_scorer(dro), test, dm.behavior_counts)
    quality["behavegpt-dro"]["dro_final_group_weights"] = dro.dro.weights.tolist()
    e, d = quality["behavegpt-erm"], quality["behavegpt-dro"]
    report["quality"] = quality
    report["train_seconds"] = timings
    report["dro_vs_erm"] = {
        "macro_recall_ratio": d["recall_at_10_macro"] / e["recall_at_10_macro"],
        "tail_recall_delta": d["recall_at_10_tail"] - e["recall_at_10_tail"],
        "weighted_recall_delta_points": 100
        * (d["recall_at_10_weighted"] - e["recall_at_10_weighted"]),
    }
    print("\nNext-behavior quality, test users of", ", ".join(PRETRAIN_DOMAINS))
    print(table(quality, COLUMNS))
    print("DRO vs ERM:", json.dumps({k: round(v, 4) for k, v in report["dro_vs_erm"].items()}))

    # ---- cross-domain adaptation ------------------------------------------------------------
    if "adapt" not in skip:
        # as pipelines/behavegpt-adapt.yaml does: start from the DRO champion, same objective
        bundle = save_bundle(dro.model, dm.vocab, Path("data/bench-bundles/dro"))
        few = UserEventsDataModule(
            str(data_dir),
            context_length=64,
            batch_size=64,
            domains=[NEW_DOMAIN],
            train_user_fraction=0.1,
            vocab_from=str(bundle),
        )
        few.setup()
        adapted, _ = train(
            few,
            args.adapt_epochs,
            {**model_args, **dro_args, "learning_rate": 1e-3, "warmup_steps": 10},
            init_from=str(bundle),
        )
        scratch, _ = train(few, args.adapt_epochs, {**model_args, **dro_args})
        new_test = few.test_dataloader()
        adaptation = {
            "pretrained, no fine-tuning": evaluate_scorer(
                model_scorer(dro), new_test, few.behavior_counts
            ),
            "from scratch on 10%": evaluate_scorer(
                model_scorer(scratch), new_test, few.behavior_counts
            ),
            "adapted (pretrained + 10%)": evaluate_scorer(
                model_scorer(adapted), new_test, few.behavior_counts
            ),
        }
        report["adaptation"] = adaptation
        report["adaptation_train_users"] = int(few.splits["train"]["user_id"].n_unique())
        print(
            f"\nAdaptation to '{NEW_DOMAIN}' with 10% of its training users ({report['adaptation_train_users']} users), DRO objective"
        )
        print(table(adaptation, COLUMNS))

    # ---- training speed ---------------------------------------------------------------------
    if "speed" not in skip:
        sp = speed(len(dm.vocab.behaviors), 64, model_args, batch=64, steps=3 if args.quick else 10)
        report["train_speed"] = sp
        print("\nTraining speed (1 thread, batch 64 x 64 tokens, median of 5 interleaved rounds)")
        for k in ("behavegpt", "gpt2 (transformers)"):
            print(
                f"  {k:<22} {sp[k]['params']:>10,} params  {sp[k]['tokens_per_s']:>10,.0f} tokens/s"
            )
        print(f"  ratio behavegpt / gpt2: {sp['ratio_behavegpt_over_gpt2']:.2f}x")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
