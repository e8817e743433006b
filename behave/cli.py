"""The ``behave`` command: LightningCLI for fit/validate/test/predict, plus behave's own verbs.

    behave fit --config pipelines/behavegpt.yaml          train, log to MLflow, register
    behave data generate user-events --out data/x         synthetic app-usage log
    behave data import log.csv --out data/y --map user_id=uid,behavior=event
    behave data generate traffic --out data/traffic      highway-env scenes (Graph-LSTM)
    behave data import traffic tracks.csv --out data/t --map agent=track_id
    behave data generate spikes --out data/spikes        spiking circuit, known wiring (Neuroformer)
    behave data import spikes spikes.csv --out data/s --map neuron=unit,time=t --covariates cov.csv
    behave data generate timeseries-synth --name seqcomb-uv   TimeX synthetic set, ground truth
    behave data import ucr GunPoint --out data/gunpoint   UCR/UEA set shipped inside aeon (offline)
    behave promote behavegpt|decision_mamba|graph_lstm    review @challenger vs @champion
    behave explain score --model models:/behave.tsclassifier.freqshapes@champion \
        --explainer models:/behave.timex.freqshapes@champion --data-dir data/timeseries/freqshapes
    behave serve                                          start the BentoML service
    behave report [--run tiny|full] [--check]             benchmark tables: REPORT.md, README

Heavy imports (lightning, mlflow, torch) happen inside the verb that needs them, so
``behave --help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser", "run_lightning"]

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


def _lightning_cli_class():
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from behave.tasks.callbacks import MLflowSaveConfig
    from behave.tasks.resume import RecordMLflowRun, continue_run_from_checkpoint

    class BehaveCLI(LightningCLI):
        """LightningCLI whose model receives the datamodule's facts (vocab sizes, label counts)
        as ``model.data_info`` and whose resolved config goes to the MLflow run."""

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.link_arguments(
                "data",
                "model.init_args.data_info",
                compute_fn=lambda dm: dm.data_info,
                apply_on="instantiate",
            )
            parser.link_arguments("data.init_args.context_length", "model.init_args.context_length")

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            fill_device_defaults(config)

        def before_fit(self) -> None:
            # every checkpoint names its MLflow run; a resumed fit continues that run
            self.trainer.callbacks.append(RecordMLflowRun())
            continue_run_from_checkpoint(self.trainer, self.config_init["fit"].get("ckpt_path"))

    return BehaveCLI, MLflowSaveConfig


def fill_device_defaults(config) -> None:
    """Fills what the config leaves to behave: ``accelerator: auto`` follows BEHAVE_DEVICE
    (behave.device), and an unset ``precision`` becomes bf16-mixed on bf16 GPUs for families
    whose task is ``bf16_safe``, else 32-true. Values the config sets are kept."""
    import importlib

    from behave.device import default_precision, resolve_device

    trainer = config.trainer
    accelerator = str(trainer.accelerator or "auto").lower()
    if accelerator == "auto":
        device = resolve_device()
        trainer.accelerator = "gpu" if device.type == "cuda" else "cpu"
        if device.index is not None:
            trainer.devices = [device.index]
    if trainer.precision is None:
        module, _, name = str(config.model.class_path).rpartition(".")
        task = getattr(importlib.import_module(module), name, None)
        bf16_safe = bool(getattr(task, "bf16_safe", False))
        trainer.precision = default_precision(trainer.accelerator, bf16_safe)


def run_lightning(argv: list[str]) -> None:
    import lightning as L

    BehaveCLI, MLflowSaveConfig = _lightning_cli_class()
    BehaveCLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=MLflowSaveConfig,
        save_config_kwargs={"save_to_log_dir": False},
        # from the shell LightningCLI reads sys.argv itself; args= is for calls from Python
        args=None if argv == sys.argv[1:] else argv,
        parser_kwargs={"prog": "behave"},
    )


def _parse_mapping(text: str | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--map expects canonical=source pairs, got {item!r}")
        key, value = item.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


def _promotable(family: str) -> str:
    if family in ("behavegpt", "decision_mamba", "graph_lstm"):
        return family
    kind, _, dataset = family.partition(".")
    if kind in ("tsclassifier", "timex") and dataset:
        return family
    raise argparse.ArgumentTypeError(
        f"{family!r}: choose behavegpt, decision_mamba, graph_lstm, tsclassifier.<dataset> or "
        "timex.<dataset>"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="behave",
        description="Train, review, serve and explain sequence models of behavior.",
        epilog="fit/validate/test/predict are LightningCLI commands: "
        "`behave fit --help`, `behave fit --config pipelines/behavegpt.yaml --print_config`.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb in LIGHTNING_VERBS:
        verbs.add_parser(
            verb, help=f"LightningCLI {verb} (--config pipelines/<family>.yaml)", add_help=False
        )

    data = verbs.add_parser("data", help="generate or import datasets (Parquet + manifest)")
    data_verbs = data.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    gen = data_verbs.add_parser("generate", help="generate a synthetic dataset")
    gen_kinds = gen.add_subparsers(dest="kind", metavar="KIND", required=True)
    ue = gen_kinds.add_parser("user-events", help="multi-domain app-usage event log (BehaveGPT)")
    ue.add_argument(
        "--out", default="data/user-events", help="output folder (default: %(default)s)"
    )
    ue.add_argument(
        "--events", type=int, default=1_000_000, help="number of events (default: %(default)s)"
    )
    ue.add_argument(
        "--users", type=int, default=None, help="number of users (default: derived from --events)"
    )
    ue.add_argument(
        "--behaviors", type=int, default=600, help="behavior types (default: %(default)s)"
    )
    ue.add_argument(
        "--domains", default="social,commerce,media,fintech", help="comma-separated domain names"
    )
    ue.add_argument("--days", type=int, default=28, help="days of activity (default: %(default)s)")
    ue.add_argument("--seed", type=int, default=0)
    ue.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    rl = gen_kinds.add_parser("offline-rl", help="D4RL-style offline RL dataset from a simulator")
    rl.add_argument("--out", required=True, help="output folder")
    rl.add_argument(
        "--env",
        default="lunarlander",
        help="lunarlander (scripted expert), hopper, halfcheetah or walker2d (TD3 behavior policies trained on first use, ~20 min each; cached) (default: %(default)s)",
    )
    rl.add_argument(
        "--quality",
        default="medium",
        choices=["random", "medium", "medium-replay", "medium-expert", "expert"],
        help="behavior policy quality, as D4RL defines them (default: %(default)s)",
    )
    rl.add_argument("--num-transitions", type=int, default=100_000, help="(default: %(default)s)")
    rl.add_argument("--seed", type=int, default=0)
    rl.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    tr = gen_kinds.add_parser(
        "traffic", help="multi-agent highway traffic from highway-env (Graph-LSTM)"
    )
    tr.add_argument("--out", default="data/traffic", help="output folder (default: %(default)s)")
    tr.add_argument("--scenes", type=int, default=500, help="scenes (default: %(default)s)")
    tr.add_argument(
        "--duration-s",
        type=float,
        default=15.0,
        help="recorded seconds per scene (default: %(default)s)",
    )
    tr.add_argument(
        "--workers", type=int, default=1, help="simulation processes (default: %(default)s)"
    )
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sp = gen_kinds.add_parser(
        "spikes",
        help="spiking circuit with known hub wiring, a drifting grating and running speed "
        "(Neuroformer)",
    )
    sp.add_argument("--out", default="data/spikes", help="output folder (default: %(default)s)")
    sp.add_argument("--neurons", type=int, default=100, help="neurons (default: %(default)s)")
    sp.add_argument("--trials", type=int, default=200, help="trials (default: %(default)s)")
    sp.add_argument(
        "--trial-s", type=float, default=3.0, help="seconds per trial (default: %(default)s)"
    )
    sp.add_argument(
        "--hubs", type=int, default=5, help="hub neurons with wide fan-out (default: %(default)s)"
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    ts = gen_kinds.add_parser(
        "timeseries-synth",
        help="TimeX synthetic classification set with ground-truth explanations "
        "(freqshapes, seqcomb-uv, seqcomb-mv, lowvardetect)",
    )
    ts.add_argument(
        "--name",
        required=True,
        help="freqshapes, seqcomb-uv, seqcomb-mv or lowvardetect",
    )
    ts.add_argument("--out", default=None, help="output folder (default: data/timeseries/<name>)")
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument(
        "--train", type=int, default=5000, help="training series (default: %(default)s)"
    )
    ts.add_argument("--val", type=int, default=100, help="validation series (default: %(default)s)")
    ts.add_argument("--test", type=int, default=1000, help="test series (default: %(default)s)")

    imp = data_verbs.add_parser(
        "import",
        help="import your own CSV/Parquet event log (or `import traffic` for agent tracks, "
        "`import spikes` for spike times, `import ucr NAME` for a UCR/UEA set shipped in aeon)",
    )
    imp.add_argument(
        "source",
        nargs="+",
        metavar="SOURCE",
        help="CSV or Parquet file; `traffic FILE` imports (frame, agent, x, y[, scene]) tracks; "
        "`spikes FILE` imports (neuron, time[, trial]) spikes, time in seconds; `ucr NAME` "
        "imports a UCR/UEA classification set bundled with aeon (GunPoint, BasicMotions, ...)",
    )
    imp.add_argument("--out", required=True, help="output folder")
    imp.add_argument(
        "--map",
        default=None,
        help="canonical=source column pairs, e.g. user_id=uid,timestamp=ts,behavior=event "
        "(canonical columns: user_id, timestamp, behavior, location, domain; "
        "spikes: neuron, time, trial, and bin, behavior in --covariates)",
    )
    imp.add_argument(
        "--timestamp-format", default=None, help="strptime format when timestamps are strings"
    )
    imp.add_argument(
        "--domain", default="default", help="domain for rows without one (default: %(default)s)"
    )
    imp.add_argument(
        "--hz", type=float, default=10.0, help="traffic: frames per second (default: %(default)s)"
    )
    imp.add_argument(
        "--covariates",
        default=None,
        help="spikes: CSV/Parquet of (trial, bin or time, behavior, stim_0, stim_1, ...) rows",
    )
    imp.add_argument(
        "--trial-s",
        type=float,
        default=None,
        help="spikes: seconds per trial (default: up to the last spike or covariate row)",
    )
    imp.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="ucr: share of each training class held out as the val split (default: %(default)s)",
    )
    imp.add_argument(
        "--seed", type=int, default=0, help="ucr: seed of the val split (default: %(default)s)"
    )

    promote = verbs.add_parser(
        "promote", help="evaluate @challenger vs @champion; promote if better"
    )
    promote.add_argument(
        "family",
        type=_promotable,
        help="behavegpt, decision_mamba, graph_lstm, tsclassifier.<dataset> or timex.<dataset>",
    )
    promote.add_argument(
        "--metric",
        default=None,
        help="deciding metric (default: recall_at_10_macro for behavegpt, "
        "normalized_score for decision_mamba, fde_5s (metres, lower is better) for graph_lstm, "
        "accuracy for tsclassifier.*, auprc (faithfulness_gap on real data) for timex.*)",
    )
    promote.add_argument(
        "--min-delta",
        type=float,
        default=0.0,
        help="required improvement, in the metric's direction (default: 0)",
    )
    promote.add_argument(
        "--min-target-cut",
        type=float,
        default=0.5,
        help="versions made by `behave surgery`: the least relative cut of the behavior's "
        "top-1 prediction rate vs @champion (default: %(default)s)",
    )
    promote.add_argument(
        "--max-capability-drop",
        type=float,
        default=0.02,
        help="versions made by `behave surgery`: the largest relative loss of recall@10 on "
        "other behaviors (default: %(default)s)",
    )
    promote.add_argument(
        "--data-dir",
        default=None,
        help="behavegpt: evaluate on this data folder's test split instead",
    )

    explain = verbs.add_parser("explain", help="score explanations of a registered model")
    explain_verbs = explain.add_subparsers(dest="explain_verb", metavar="ACTION", required=True)
    score = explain_verbs.add_parser(
        "score",
        help="AUPRC/AUP/AUR against ground truth (or faithfulness) and time per series of "
        "TimeX and Captum methods",
    )
    score.add_argument(
        "--model",
        required=True,
        help="the classifier: models:/behave.tsclassifier.<dataset>@champion",
    )
    score.add_argument("--data-dir", required=True, help="a time-series data folder")
    score.add_argument(
        "--methods",
        nargs="+",
        default=["timex", "integrated_gradients", "deeplift", "saliency", "occlusion"],
        help="timex and/or Captum methods (default: %(default)s)",
    )
    score.add_argument(
        "--explainer", default=None, help="TimeX: models:/behave.timex.<dataset>@champion"
    )
    score.add_argument("--split", default="test", help="(default: %(default)s)")
    score.add_argument("--samples", type=int, default=None, help="first N series (default: all)")
    score.add_argument("--out", default=None, help="also write the report as JSON here")

    surgery = verbs.add_parser(
        "surgery",
        help="probe a registered model for a behavior, edit it out (Model Surgery), register "
        "the edit as a new version with its lineage",
        description="Trains (or loads) a linear probe for 'next event is in FAMILY', shifts the "
        "top-k MLP rows most anti-aligned with its direction (Wang et al. 2024), evaluates "
        "before/after, and registers the edited model as @challenger of the same registered "
        "model. Lists of --alpha/--top-k are swept on validation users; the largest cut that "
        "keeps recall@10 on other behaviors within --max-capability-drop is registered. "
        "Promote it with `behave promote behavegpt`.",
    )
    surgery.add_argument(
        "--model", default="models:/behave.behavegpt@champion", help="(default: %(default)s)"
    )
    surgery.add_argument(
        "--behavior-family",
        default="risky",
        help="behavior family to suppress, e.g. risky or churn (default: %(default)s)",
    )
    surgery.add_argument(
        "--alpha",
        type=float,
        nargs="+",
        default=[2.0, 4.0, 8.0],
        help="shift size(s), in mean MLP-row norms (default: %(default)s)",
    )
    surgery.add_argument(
        "--top-k",
        type=int,
        nargs="+",
        default=[16, 32, 64, 128],
        help="rows edited across layers (default: %(default)s)",
    )
    surgery.add_argument(
        "--layers",
        type=int,
        nargs=2,
        default=None,
        metavar=("FIRST", "LAST"),
        help="edit blocks FIRST..LAST-1 only (default: all)",
    )
    surgery.add_argument(
        "--select",
        choices=("anti_aligned", "aligned"),
        default="anti_aligned",
        help="rows to edit (default: %(default)s, as the paper)",
    )
    surgery.add_argument(
        "--sign",
        type=int,
        choices=(1, -1),
        default=1,
        help="+1 adds the behavior direction (paper), -1 subtracts it (default: %(default)s)",
    )
    surgery.add_argument(
        "--mode",
        choices=("shift", "remove"),
        default="shift",
        help="shift rows along the direction (paper) or remove their projection on it",
    )
    surgery.add_argument(
        "--probe",
        default=None,
        help="a registered probe of this model version, models:/behave.probe.behavegpt.<family>@champion "
        "(default: train one per layer and register it)",
    )
    surgery.add_argument(
        "--probe-layer",
        type=int,
        default=None,
        help="layer whose probe gives the direction, 0 = embeddings (default: the last, as the paper)",
    )
    surgery.add_argument(
        "--per-block",
        action="store_true",
        help="take top-k // blocks rows from every block instead of one global top-k",
    )
    surgery.add_argument(
        "--direction",
        choices=("probe", "mean_difference", "mean_difference_per_layer"),
        default="probe",
        help="edit along the probe's weight (paper), the class-mean difference at its layer, or "
        "each block's own class-mean difference (default: %(default)s)",
    )
    surgery.add_argument(
        "--max-capability-drop",
        type=float,
        default=0.01,
        help="largest relative recall@10 loss on other behaviors (validation users) a sweep may "
        "choose; half of promote's 2%% gate, leaving room for test-set noise (default: %(default)s)",
    )
    surgery.add_argument(
        "--data-dir", default=None, help="evaluate on this data folder instead of the model's own"
    )
    surgery.add_argument("--seed", type=int, default=0)
    surgery.add_argument(
        "--no-register", action="store_true", help="evaluate only; register nothing"
    )

    serve = verbs.add_parser(
        "serve", help="start the BentoML service (loads each family's @champion)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)

    report = verbs.add_parser(
        "report",
        help="render every benchmark's results JSON into REPORT.md, report.json and the "
        "README's tables (--run: run the benchmarks first; --check: CI)",
    )
    report.add_argument(
        "--run",
        choices=("tiny", "full"),
        default=None,
        help="first run the benchmark scripts: tiny (small configurations, minutes; into "
        "benchmarks/results/tiny/, README untouched) or full (the README's documented runs, "
        "hours) (default: render the JSON already there)",
    )
    report.add_argument(
        "--families",
        default=None,
        help="with --run: comma list of families (behavegpt, decision_mamba, graph_lstm, "
        "neuroformer, explainers, surgery) or benchmarks (e.g. serving, scan, surgery_llm) "
        "(default: all)",
    )
    report.add_argument(
        "--results-dir",
        default=None,
        help="where the JSON is read (and written by --run) (default: benchmarks/results, or "
        "benchmarks/results/tiny with --run tiny)",
    )
    report.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the README's tables from a tiny run or another --results-dir too",
    )
    report.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming each README table that differs from the JSON",
    )
    report.add_argument(
        "--readme", default=None, help="the README to update or check (default: README.md)"
    )
    return parser


def _run_data(args: argparse.Namespace) -> None:
    from pathlib import Path

    if args.data_verb == "generate" and args.kind == "traffic":
        from behave.data.traffic import generate_traffic
        from behave.data.traffic_sim import SceneConfig
        from behave.errors import ConfigError

        try:
            manifest = generate_traffic(
                Path(args.out),
                scenes=args.scenes,
                seed=args.seed,
                config=SceneConfig(duration_s=args.duration_s),
                workers=args.workers,
                progress=not args.no_progress,
            )
        except (ValueError, ImportError) as err:
            raise ConfigError(str(err)) from err
        print(
            f"wrote {manifest['row_counts']['tracks.parquet']:,} rows: {manifest['scenes']:,} scenes, "
            f"{manifest['agents']:,} agents at {manifest['hz']:g} Hz to {args.out}/tracks.parquet "
            f"(content hash {manifest['content_hash'][:12]})"
        )
    elif args.data_verb == "import" and args.source[0] == "traffic":
        from behave.data.traffic import import_tracks
        from behave.errors import ConfigError

        if len(args.source) != 2:
            raise ConfigError("usage: behave data import traffic TRACKS.csv --out DIR [--map ...]")
        try:
            summary = import_tracks(
                Path(args.source[1]), Path(args.out), mapping=_parse_mapping(args.map), hz=args.hz
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
        print(summary.one_line())
    elif args.data_verb == "generate" and args.kind == "spikes":
        from behave.data.spikes import generate_spikes
        from behave.data.spikes_sim import CircuitConfig
        from behave.errors import ConfigError

        try:
            manifest = generate_spikes(
                Path(args.out),
                config=CircuitConfig(
                    num_neurons=args.neurons,
                    num_trials=args.trials,
                    trial_s=args.trial_s,
                    num_hubs=args.hubs,
                ),
                seed=args.seed,
                progress=not args.no_progress,
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
        print(
            f"wrote {manifest['num_spikes']:,} spikes of {manifest['num_neurons']:,} neurons in "
            f"{manifest['num_trials']:,} trials ({manifest['mean_rate_hz']:.2f} Hz mean rate, "
            f"{len(manifest['adjacency']['edges']):,} edges) to {args.out} "
            f"(content hash {manifest['content_hash'][:12]})"
        )
    elif args.data_verb == "import" and args.source[0] == "spikes":
        from behave.data.spikes import import_spikes
        from behave.errors import ConfigError

        if len(args.source) != 2:
            raise ConfigError(
                "usage: behave data import spikes SPIKES.csv --out DIR [--map neuron=unit,...] "
                "[--covariates COV.csv]"
            )
        try:
            summary = import_spikes(
                Path(args.source[1]),
                Path(args.out),
                mapping=_parse_mapping(args.map),
                covariates=Path(args.covariates) if args.covariates else None,
                trial_s=args.trial_s,
            )
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise ConfigError(str(err)) from err
        print(summary.one_line())
    elif args.data_verb == "generate" and args.kind == "timeseries-synth":
        from behave.data.timeseries import generate_timeseries_synth
        from behave.errors import ConfigError

        out = args.out or f"data/timeseries/{args.name}"
        try:
            manifest = generate_timeseries_synth(
                Path(out),
                args.name,
                seed=args.seed,
                num_train=args.train,
                num_val=args.val,
                num_test=args.test,
            )
        except ValueError as err:  # unknown name, bad sizes
            raise ConfigError(str(err)) from err
        print(_timeseries_line(manifest, out))
    elif args.data_verb == "import" and args.source[0] == "ucr":
        from behave.data.timeseries import import_ucr
        from behave.errors import ConfigError

        if len(args.source) != 2:
            raise ConfigError(
                "usage: behave data import ucr NAME --out DIR [--val-fraction 0.1] [--seed 0]"
            )
        try:
            manifest = import_ucr(
                args.source[1], Path(args.out), val_fraction=args.val_fraction, seed=args.seed
            )
        except (ValueError, ImportError) as err:  # not shipped offline, aeon missing, bad fraction
            raise ConfigError(str(err)) from err
        print(_timeseries_line(manifest, args.out))
    elif args.data_verb == "generate" and args.kind == "offline-rl":
        from behave.data.offline_rl import generate_offline_rl
        from behave.errors import ConfigError

        try:
            manifest = generate_offline_rl(
                Path(args.out),
                env=args.env,
                quality=args.quality,
                num_transitions=args.num_transitions,
                seed=args.seed,
                progress=not args.no_progress,
            )
        except (ValueError, ImportError) as err:  # bad choice, or the simulator is not installed
            raise ConfigError(str(err)) from err
        print(
            f"wrote {manifest['row_counts']['transitions.parquet']:,} {args.quality} transitions of {args.env} to {args.out} "
            f"(policy return {manifest['dataset_return_mean']:.1f} ± {manifest['dataset_return_std']:.1f}, "
            f"content hash {manifest['content_hash'][:12]})"
        )
    elif args.data_verb == "generate":
        from behave.data.user_events import generate_user_events
        from behave.errors import ConfigError

        try:
            manifest = generate_user_events(
                Path(args.out),
                num_events=args.events,
                num_users=args.users,
                num_behaviors=args.behaviors,
                domains=tuple(d.strip() for d in args.domains.split(",") if d.strip()),
                seed=args.seed,
                days=args.days,
                progress=not args.no_progress,
            )
        except ValueError as err:  # argument checks name the parameter; no traceback
            raise ConfigError(str(err)) from err
        users = manifest.get("domain_users", {})
        print(
            f"wrote {manifest['row_counts']['events.parquet']:,} events of {sum(users.values()):,} users "
            f"in {len(users)} domains to {args.out}/events.parquet "
            f"(content hash {manifest['content_hash'][:12]})"
        )
    else:
        from behave.data.importer import import_events

        if len(args.source) != 1:
            from behave.errors import ConfigError

            raise ConfigError(
                f"import takes one source file, got {args.source}; for tracks: import traffic "
                "FILE; for spikes: import spikes FILE"
            )
        summary = import_events(
            Path(args.source[0]),
            Path(args.out),
            mapping=_parse_mapping(args.map),
            timestamp_format=args.timestamp_format,
            default_domain=args.domain,
        )
        print(summary.one_line())


def _timeseries_line(manifest: dict, out: str) -> str:
    sizes = manifest["split_sizes"]
    padded = (
        f" (lengths {manifest['original_length_min']}-{manifest['original_length_max']}, "
        "right-padded)"
        if manifest.get("padded")
        else ""
    )
    truth = "with" if manifest["has_ground_truth"] else "no"
    return (
        f"wrote {manifest['dataset']}: {sizes['train']:,} train / {sizes['val']:,} val / "
        f"{sizes['test']:,} test series (T={manifest['seq_len']}{padded}, "
        f"D={manifest['channels']}, {manifest['num_classes']} classes, {truth} ground truth) "
        f"to {out} (content hash {manifest['content_hash'][:12]})"
    )


def _run_promote(args: argparse.Namespace) -> None:
    from behave.errors import ConfigError
    from behave.review import review_and_promote

    if args.data_dir and args.family != "behavegpt":
        raise ConfigError("--data-dir applies to behavegpt only (policies are scored by rollouts)")
    split = {"data_dir": args.data_dir} if args.data_dir else None
    review = review_and_promote(
        args.family,
        metric=args.metric,
        min_delta=args.min_delta,
        split=split,
        min_target_cut=args.min_target_cut,
        max_capability_drop=args.max_capability_drop,
    )
    print(review.table())


def _run_explain(args: argparse.Namespace) -> None:
    from pathlib import Path

    from behave.explain.scoring import format_scores, score_explainers, write_report

    report = score_explainers(
        args.model,
        Path(args.data_dir),
        list(args.methods),
        explainer=args.explainer,
        split=args.split,
        samples=args.samples,
    )
    print(format_scores(report))
    if args.out:
        write_report(report, Path(args.out))
        print(f"wrote {args.out}")


def _run_surgery(args: argparse.Namespace) -> None:
    from behave.surgery_pipeline import run_surgery

    result = run_surgery(
        args.model,
        args.behavior_family,
        args.alpha,
        args.top_k,
        layers=tuple(args.layers) if args.layers else None,
        select=args.select,
        sign=args.sign,
        mode=args.mode,
        probe_uri=args.probe,
        probe_layer=args.probe_layer,
        direction=args.direction,
        per_block=args.per_block,
        max_capability_drop=args.max_capability_drop,
        data_dir=args.data_dir,
        register=not args.no_register,
        seed=args.seed,
    )
    print(result.table())
    print(
        f"{result.parent}, probe layer {result.probe_layer} (AUROC "
        f"{result.probe_metrics.get('auroc', float('nan')):.3f}), alpha {result.config.alpha:g}, "
        f"top-k {result.config.top_k}: {result.target_reduction:.1%} fewer top-1 "
        f"{args.behavior_family} predictions, recall@10 on other behaviors "
        f"{result.capability_change:+.2%}"
    )
    if result.version:
        print(
            f"review it: behave promote behavegpt   (v{result.version} is @challenger; "
            "@champion is unchanged)"
        )


def _run_serve(args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    from behave.tracking import tracking_uri

    root = Path(__file__).resolve().parent.parent
    # BentoML runs the service from the source root, but the models to serve are the ones
    # `behave fit` registered from *this* directory: pin its store (./mlflow unless
    # MLFLOW_TRACKING_URI says otherwise) and any relative bundle path before the chdir
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri()
    for name, value in list(os.environ.items()):
        if name.startswith("BEHAVE_") and name.endswith("_BUNDLE") and value:
            os.environ[name] = str(Path(value).resolve())
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "serving.service:BehaveService",
            "--working-dir",
            str(root),
            "--host",
            args.host,
            "--port",
            str(args.port),
        ],
    )


def _run_report(args: argparse.Namespace) -> None:
    from pathlib import Path

    from behave.errors import ConfigError

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "report.py").is_file():
        raise ConfigError("behave report needs the source checkout (benchmarks/report.py)")
    if args.check and args.run:
        raise ConfigError("--check renders what is there; it does not combine with --run")
    if args.families and not args.run:
        raise ConfigError("--families selects what --run runs; add --run tiny or --run full")
    sys.path.insert(0, str(root))  # benchmarks/ is a folder of scripts, not part of the package
    from benchmarks import report

    try:
        code = report.main(args)
    except ValueError as err:  # an unknown --families name
        raise ConfigError(str(err)) from err
    if code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_VERBS:
        return _guarded(lambda: run_lightning(argv))
    args = build_parser().parse_args(argv)
    if args.verb is None:
        build_parser().print_help()
        return
    handlers = {
        "data": _run_data,
        "promote": _run_promote,
        "serve": _run_serve,
        "explain": _run_explain,
        "surgery": _run_surgery,
        "report": _run_report,
    }
    _guarded(lambda: handlers[args.verb](args))


def _user_error(err: BaseException) -> BaseException | None:
    """The user-fixable error behind ``err``, if any: jsonargparse wraps errors raised while
    instantiating the datamodule/model in its own ValueError, so walk the chain."""
    from behave.errors import EXPECTED_ERRORS

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, EXPECTED_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _guarded(run) -> None:
    """Expected failures (bad data, missing model, bad config) end in one line, exit code 2."""
    try:
        run()
    except Exception as err:
        cause = _user_error(err)
        if cause is None:
            raise
        print(f"behave: error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
