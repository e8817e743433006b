"""``behave surgery``: probe -> edit -> evaluate -> register, as one reviewable registry operation.

1. Load ``behave.behavegpt@<alias>`` (the *parent*) and its fixed evaluation split.
2. Train a probe per layer for "next event is in family F" on training users (scored on
   validation users), or load a registered probe (``behave.probe.behavegpt.<F>``) that reads
   this very version. A trained probe is registered too, so ``POST /probe`` can serve it.
3. Evaluate every (alpha, top_k) of the grid on *validation* users; choose the edit that cuts
   the family rate most while recall@10 on other behaviors stays within ``max_capability_drop``.
4. Report that edit before/after on the *test* users, log the table and plots to MLflow, and
   register the edited weights as a new version of ``behave.behavegpt`` (@challenger) with its
   lineage in tags. It never moves @champion: ``behave promote behavegpt`` gates that.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from behave import tracking
from behave.errors import ConfigError
from behave.explain.behavegpt_behaviors import (
    behavior_rates,
    collect_probe_data,
    family_token_mask,
    generation_rate,
)
from behave.explain.probes import LinearProbe, mean_difference_direction, probe_layers
from behave.explain.surgery import SurgeryConfig, operate, plan_surgery

__all__ = [
    "SurgeryResult",
    "run_surgery",
    "probe_family",
    "target_cut",
    "capability_change",
    "TARGET",
    "CAPABILITY",
]

log = logging.getLogger(__name__)

EXPERIMENT = "surgery"
TARGET = "family_top1_rate"  # what the edit must cut: how often F is the model's top guess
CAPABILITY = "recall_at_10_other"  # what it must keep: ranking of every other behavior
# the edit's direction: the probe's weight (the paper), the class-mean difference at the probe's
# layer, or each block's own class-mean difference (what met the target on SmolLM2)
DIRECTIONS = ("probe", "mean_difference", "mean_difference_per_layer")


def target_cut(before: dict[str, float], after: dict[str, float]) -> float:
    """Relative fall of the behavior's rate (0.6 = 60% fewer top-1 predictions)."""
    return 1 - after[TARGET] / max(before[TARGET], 1e-12)


def capability_change(before: dict[str, float], after: dict[str, float]) -> float:
    """Relative change of recall@10 on every other behavior (-0.01 = 1% worse)."""
    return after[CAPABILITY] / max(before[CAPABILITY], 1e-12) - 1


def probe_family(model_family: str, behavior_family: str) -> str:
    """Registry family of a probe: ``probe.behavegpt.churn``."""
    return f"probe.{model_family}.{behavior_family}"


@dataclass
class SurgeryResult:
    parent: str  # "behave.behavegpt v3"
    config: SurgeryConfig
    probe_layer: int
    probe_metrics: dict[str, float]
    before: dict[str, float]
    after: dict[str, float]
    sweep: list[dict] = field(default_factory=list)  # validation metrics of every grid point
    run_id: str = ""
    version: str | None = None  # the registered edited version
    probe_version: str | None = None

    @property
    def target_reduction(self) -> float:
        return target_cut(self.before, self.after)

    @property
    def capability_change(self) -> float:
        return capability_change(self.before, self.after)

    def table(self) -> str:
        keys = [
            TARGET,
            "family_top10_rate",
            "family_prob",
            "family_generation_rate",
            CAPABILITY,
            "recall_at_10_family",
        ]
        head = f"{'test metric':<26}{'before':>10}{'after':>10}{'change':>10}"
        rows = [head, "-" * len(head)]
        for k in (k for k in keys if k in self.before):
            b, a = self.before[k], self.after[k]
            change = f"{(a / b - 1) * 100:+.1f}%" if b else "-"
            rows.append(f"{k:<26}{b:>10.4f}{a:>10.4f}{change:>10}")
        return "\n".join(rows)


def _evaluate(model, windows, mask, generation_histories: int, seed: int) -> dict[str, float]:
    out = behavior_rates(model, windows, mask)
    if generation_histories:
        out["family_generation_rate"] = generation_rate(
            model, windows, mask, histories=generation_histories, seed=seed
        )
    return out


def _choose(sweep: list[dict], max_capability_drop: float) -> dict:
    """The grid point with the largest target cut among those that keep capability; the
    gentlest point (smallest capability loss) when none does."""
    keeping = [p for p in sweep if p["capability_change"] >= -max_capability_drop]
    if keeping:
        return max(keeping, key=lambda p: (p["target_reduction"], p["capability_change"]))
    return max(sweep, key=lambda p: p["capability_change"])


def _load_registered_probe(uri: str, parent_name: str, parent_version: str) -> LinearProbe:
    name, version = tracking.model_version_of(uri)
    probe = LinearProbe.load(tracking.resolve_model_dir(uri))
    reads = probe.info.get("reads_model"), str(probe.info.get("reads_version"))
    if reads != (parent_name, parent_version):
        raise LookupError(
            f"{name} v{version} reads {reads[0]} v{reads[1]}, not {parent_name} v{parent_version}: "
            "a probe's direction only means something in the hidden space it was trained on; "
            "omit --probe to train one on this version"
        )
    return probe


def run_surgery(
    model_uri: str = "models:/behave.behavegpt@champion",
    behavior_family: str = "churn",
    alphas: list[float] = (1.0,),
    top_ks: list[int] = (64,),
    *,
    layers: tuple[int, int] | None = None,
    select: str = "anti_aligned",
    sign: int = 1,
    mode: str = "shift",
    probe_uri: str | None = None,
    probe_layer: int | None = None,
    direction: str = "probe",
    per_block: bool = False,
    max_probe_positions: int = 40_000,
    max_capability_drop: float = 0.01,
    generation_histories: int = 256,  # x 16 sampled events; fewer is too noisy for a ~1% rate
    data_dir: str | None = None,
    register: bool = True,
    seed: int = 0,
    progress=print,
) -> SurgeryResult:
    from behave.data.user_events_datamodule import UserEventsDataModule
    from behave.inference.behavegpt import BehaveGPTPredictor, save_bundle
    from behave.tasks.surgery_plots import before_after_plot, probe_layer_plot, sweep_plot

    torch.manual_seed(seed)
    c = tracking.client()
    parent_name, parent_version = tracking.model_version_of(model_uri)
    if parent_name != tracking.registered_name("behavegpt"):
        raise ValueError(
            f"behave surgery edits behave.behavegpt versions; {parent_name} is not one "
            "(SmolLM2 and other causal LMs: see benchmarks/surgery_llm.py)"
        )
    parent = c.get_model_version(parent_name, parent_version)
    bundle = tracking.resolve_model_dir(f"models:/{parent_name}/{parent_version}")
    predictor = BehaveGPTPredictor.from_dir(bundle)
    model, vocab = predictor.model, predictor.vocab
    if "eval_split" not in parent.tags:
        raise LookupError(f"{parent_name} v{parent_version} has no eval_split tag to evaluate on")
    split = json.loads(parent.tags["eval_split"])
    if data_dir:
        split["data_dir"] = str(Path(data_dir).resolve())
    try:
        mask = family_token_mask(vocab.behaviors, behavior_family)
        configs = [
            SurgeryConfig(
                alpha=a,
                top_k=k,
                layers=layers,
                select=select,
                sign=sign,
                mode=mode,
                per_block=per_block,
            )
            for a in alphas
            for k in top_ks
        ]  # validates every grid point before any work
        for config in configs:  # layers and top_k against this model's blocks
            plan_surgery(model, torch.ones(model.config.d_model), config)
        if direction not in DIRECTIONS:
            raise ValueError(f"--direction must be one of {DIRECTIONS}, got {direction!r}")
        if probe_layer is not None and not 0 <= probe_layer <= model.config.num_layers:
            raise ValueError(
                f"--probe-layer {probe_layer}: the model has layers 0..{model.config.num_layers}"
            )
    except ValueError as err:  # a bad --behavior-family, --alpha, --top-k, --layers, ...
        raise ConfigError(str(err)) from err
    progress(
        f"loading the evaluation split of {parent_name} v{parent_version} ({split['data_dir']})"
    )
    dm = UserEventsDataModule(**split, vocab_from=str(bundle))
    dm.setup(None)
    windows = {name: dm.datasets[name].tensors for name in ("train", "val", "test")}

    experiment = tracking.ensure_experiment(EXPERIMENT)
    run = c.create_run(experiment, run_name=f"surgery-{behavior_family}-v{parent_version}")
    run_id = run.info.run_id
    try:
        params = {
            "parent_model": parent_name,
            "parent_version": parent_version,
            "behavior_family": behavior_family,
            "alphas": json.dumps(list(alphas)),
            "top_ks": json.dumps(list(top_ks)),
            "layers": json.dumps(list(layers) if layers else None),
            "select": select,
            "sign": sign,
            "mode": mode,
            "direction": direction,
            "per_block": per_block,
            "max_capability_drop": max_capability_drop,
            "seed": seed,
        }
        for k, v in params.items():
            c.log_param(run_id, k, v)

        figures = {}
        probe_version = None
        if probe_uri:
            probe = _load_registered_probe(probe_uri, parent_name, parent_version)
            progress(f"loaded probe {probe_uri} (layer {probe.layer})")
        else:
            progress(f"probing every layer for 'next event is {behavior_family}.*'")
            train_x, train_y = collect_probe_data(
                model, windows["train"], mask, max_positions=max_probe_positions, seed=seed
            )
            val_x, val_y = collect_probe_data(
                model, windows["val"], mask, max_positions=max_probe_positions, seed=seed
            )
            info = {
                "reads_model": parent_name,
                "reads_version": parent_version,
                "behavior_family": behavior_family,
                "label": f"next event is in family {behavior_family!r}",
                "train_positions": len(train_y),
                "val_positions": len(val_y),
                "run_id": run_id,
            }
            try:
                probes = probe_layers(train_x, train_y, val_x, val_y, pooling="last", info=info)
            except ValueError as err:  # e.g. the family never occurs in these users' data
                raise ConfigError(f"--behavior-family {behavior_family}: {err}") from err
            for layer, p in probes.items():
                for key, value in p.metrics.items():
                    c.log_metric(run_id, f"probe/{key}", value, step=layer)
                progress(
                    f"  layer {layer}: AUROC {p.metrics['auroc']:.3f}, "
                    f"balanced accuracy {p.metrics['balanced_accuracy']:.3f}"
                )
            figures["probe_layers"] = probe_layer_plot(probes, behavior_family)
            # the paper reads the behavior direction off the last layer
            probe = probes[probe_layer if probe_layer is not None else max(probes)]
        c.log_param(run_id, "probe_layer", probe.layer)
        if direction != "probe" and probe_uri:  # class means need this version's states
            train_x, train_y = collect_probe_data(
                model, windows["train"], mask, max_positions=max_probe_positions, seed=seed
            )
        if direction == "probe":  # the paper
            v = probe.direction
        elif direction == "mean_difference":
            v = mean_difference_direction(train_x[probe.layer], train_y)
        else:  # block l's MLP reads the residual stream entering it, hidden_states[l]
            v = {
                block: mean_difference_direction(train_x[block], train_y)
                for block in range(model.config.num_layers)
            }

        progress(f"before the edit: scoring {parent_name} v{parent_version} on validation users")
        base_val = behavior_rates(model, windows["val"], mask)
        sweep = []
        for config in configs:
            edited = copy.deepcopy(model)
            plan = operate(edited, v, config)
            m = behavior_rates(edited, windows["val"], mask)
            point = {
                "alpha": config.alpha,
                "top_k": config.top_k,
                "rows_per_layer": plan.summary()["rows_per_layer"],
                TARGET: m[TARGET],
                CAPABILITY: m[CAPABILITY],
                "target_reduction": target_cut(base_val, m),
                "capability_change": capability_change(base_val, m),
            }
            sweep.append(point)
            progress(
                f"  alpha {config.alpha:g}, top-k {config.top_k}: {TARGET} "
                f"{point['target_reduction']:+.1%} cut, {CAPABILITY} {point['capability_change']:+.2%}"
            )
        chosen = _choose(sweep, max_capability_drop)
        config = replace(configs[0], alpha=chosen["alpha"], top_k=chosen["top_k"])
        if len(sweep) > 1:
            figures["sweep"] = sweep_plot(sweep, TARGET, CAPABILITY, max_capability_drop)
        c.log_text(run_id, json.dumps(sweep, indent=2), "sweep.json")

        progress(f"chosen: alpha {config.alpha:g}, top-k {config.top_k}; scoring on test users")
        edited = copy.deepcopy(model)
        plan = operate(edited, v, config)
        before = _evaluate(model, windows["test"], mask, generation_histories, seed)
        after = _evaluate(edited, windows["test"], mask, generation_histories, seed)
        result = SurgeryResult(
            f"{parent_name} v{parent_version}",
            config,
            probe.layer,
            probe.metrics,
            before,
            after,
            sweep,
            run_id,
        )
        for stage, metrics in (("before", before), ("after", after)):
            for key, value in metrics.items():
                c.log_metric(run_id, f"{stage}/{key}", value)
        c.log_metric(run_id, "target_reduction", result.target_reduction)
        c.log_metric(run_id, "capability_change", result.capability_change)
        c.log_text(run_id, result.table(), "before_after.txt")
        edit = {**plan.summary(), "direction": direction, "probe_layer": probe.layer}
        c.log_text(run_id, json.dumps(edit, indent=2), "edit.json")
        figures["before_after"] = before_after_plot(before, after, behavior_family)
        tracking.log_figures(run_id, figures)
        with tempfile.TemporaryDirectory() as tmp:
            c.log_artifacts(run_id, str(probe.save(Path(tmp) / "probe")), "probe")
            registered_probe = None  # (family, version, previous @challenger) until the pair lands
            if register and not probe_uri:
                probe_name = probe_family("behavegpt", behavior_family)
                previous = tracking.alias_version(probe_name, "challenger")
                probe_version = _register_probe(run_id, probe, bundle, Path(tmp) / "probe-bundle")
                registered_probe = (probe_name, probe_version, previous)
                progress(
                    f"registered behave.{probe_family('behavegpt', behavior_family)} v{probe_version}"
                )
            if register:
                lineage = {
                    "surgery.parent_version": parent_version,
                    "surgery.behavior_family": behavior_family,
                    "surgery.probe_run_id": probe.info.get("run_id", run_id),
                    "surgery.probe": probe_uri
                    or f"models:/behave.{probe_family('behavegpt', behavior_family)}/{probe_version}",
                    "surgery.edit": json.dumps(edit),
                    "surgery.before_after": json.dumps(
                        {"before": before, "after": after}, sort_keys=True
                    ),
                    "eval_split": json.dumps(split),
                    "validation_status": "pending_review",
                }
                out = save_bundle(
                    edited,
                    vocab,
                    Path(tmp) / "bundle",
                    extra={"surgery": {"parent_version": parent_version, **edit}},
                )
                try:
                    result.version = tracking.register_model(
                        run_id, "behavegpt", out, *_example_io(edited, vocab), tags=lineage
                    )
                except BaseException:
                    # the probe and the edit it justifies land together or not at all
                    if registered_probe is not None:
                        tracking.unregister_version(*registered_probe)
                        progress(
                            f"unregistered behave.{registered_probe[0]} v{registered_probe[1]}"
                        )
                    raise
                progress(
                    f"registered {parent_name} v{result.version} (@challenger) from run {run_id}"
                )
        result.probe_version = probe_version
        c.set_terminated(run_id, "FINISHED")
        return result
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise


def _register_probe(run_id: str, probe: LinearProbe, model_bundle: Path, out: Path) -> str:
    """Registers the probe with the weights it reads, so it scores inputs on its own."""
    from behave.inference.probe import example_io, save_probe_bundle

    family = probe_family("behavegpt", probe.info["behavior_family"])
    save_probe_bundle(probe, model_bundle, out)
    tags = {
        "reads_model": probe.info["reads_model"],
        "reads_version": str(probe.info["reads_version"]),
        "probe_layer": str(probe.layer),
        "probe_auroc": f"{probe.metrics['auroc']:.4f}",
        "validation_status": "pending_review",
    }
    return tracking.register_model(run_id, family, out, *example_io(out), tags=tags)


def _example_io(model, vocab):
    """Input/output examples for the MLflow signature (two short histories)."""
    import pandas as pd

    from behave.inference.behavegpt import BehaveGPTPredictor

    names = [b for b in vocab.behaviors[2:8]]
    frame = pd.DataFrame({"history": [names[:3], names[3:]]})
    return frame, BehaveGPTPredictor(model, vocab, "cpu").predict_frame(frame)
