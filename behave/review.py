"""Registry review: evaluate @challenger against @champion on a fixed split, promote if better."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from behave import tracking

__all__ = [
    "evaluate_bundle",
    "evaluate_policy_bundle",
    "evaluate_forecaster_bundle",
    "evaluate_classifier_bundle",
    "evaluate_timex_bundle",
    "evaluate_behavior_bundle",
    "Review",
    "review_and_promote",
]

DEFAULT_METRIC = {
    "behavegpt": "recall_at_10_macro",
    "decision_mamba": "normalized_score",
    "graph_lstm": "fde_5s",
    "tsclassifier": "accuracy",
    "timex": "auprc",  # faithfulness_gap on data without a ground truth
}
ERROR_METRICS = ("ade_", "fde_")  # metric-name prefixes of errors in metres: lower is better


def evaluate_bundle(
    bundle_dir: Path, split: dict, stage: str = "test", batch_size: int = 256
) -> dict[str, float]:
    """Ranking metrics of a BehaveGPT bundle on ``split`` (datamodule arguments, e.g. from
    the ``eval_split`` tag of a model version), encoding events with the bundle's own vocab."""
    from behave.data.user_events_datamodule import UserEventsDataModule
    from behave.evaluation import evaluate_scorer
    from behave.inference.behavegpt import BehaveGPTPredictor

    model = BehaveGPTPredictor.from_dir(bundle_dir).model
    dm = UserEventsDataModule(**{**split, "batch_size": batch_size, "vocab_from": str(bundle_dir)})
    dm.setup(stage)
    loader = dm.test_dataloader() if stage == "test" else dm.val_dataloader()
    return evaluate_scorer(lambda inputs: model(inputs).logits, loader, dm.behavior_counts)


def evaluate_policy_bundle(bundle_dir: Path, split: dict) -> dict[str, float]:
    """Rollout metrics of an offline-RL policy bundle on the fixed evaluation ``split``
    (``env``, ``reference_returns``, ``target_return``, ``episodes``, ``seed``: the
    ``eval_split`` tag): every version is scored on the same reset seeds."""
    from behave.inference.offline_rl import load_policy
    from behave.rollouts import evaluate_policy

    result = evaluate_policy(
        load_policy(bundle_dir),
        split["env"],
        split["reference_returns"],
        target_return=split["target_return"],
        episodes=split["episodes"],
        seed=split["seed"],
    )
    return result.summary()


def evaluate_forecaster_bundle(bundle_dir: Path, split: dict) -> dict[str, float]:
    """ADE/FDE (metres) and behavior accuracy of a Graph-LSTM bundle on the held-out scenes of
    ``split`` (``data_dir``, ``split``, ``split_seed``, ``stride_s``, ``max_agents``: the
    ``eval_split`` tag), with constant velocity on the same windows (``cv_...``)."""
    import torch

    from behave.data.traffic_datamodule import TrafficDataModule
    from behave.inference.graph_lstm import load_forecaster
    from behave.trajectory_metrics import ForecastScorer

    forecaster = load_forecaster(bundle_dir)
    c = forecaster.config
    dm = TrafficDataModule(
        split["data_dir"],
        observe_s=c.observe_steps / c.hz,
        predict_s=round(c.predict_steps / c.hz),
        stride_s=split.get("stride_s", 2.0),
        max_agents=split.get("max_agents", 32),
        split_seed=split.get("split_seed", 0),
        batch_size=64,
    )
    dm.setup("validate" if split.get("split") == "val" else "test")
    rule = forecaster.meta.get("behavior_rule")
    scorer = ForecastScorer(c.hz, c.predict_steps, forecaster.behaviors, rule)
    with torch.inference_mode():
        for batch in dm.loader(split.get("split", "test")):
            scorer.update(batch, forecaster.model(batch["observed"], batch["present"]))
    return scorer.compute()


def evaluate_classifier_bundle(bundle_dir: Path, split: dict) -> dict[str, float]:
    """Accuracy of a time-series classifier bundle on ``split`` (``data_dir``, ``split``: the
    ``eval_split`` tag)."""
    from behave.data.timeseries import load_timeseries
    from behave.inference.timeseries import load_classifier

    x, y, _ = load_timeseries(Path(split["data_dir"])).splits[split.get("split", "test")]
    predicted = load_classifier(bundle_dir).predict_proba(x).argmax(-1)
    return {"accuracy": float((predicted == y).mean())}


def evaluate_timex_bundle(bundle_dir: Path, split: dict) -> dict[str, float]:
    """A TimeX bundle's explanations on ``split``: AUPRC / AUP / AUR against the ground truth
    (null class dropped), or the faithfulness gap on data without one; agreement of its
    explainer with the black box."""
    from behave.data.timeseries import load_timeseries
    from behave.explain.metrics import score_attributions
    from behave.inference.timeseries import load_timex, predict_classes

    data = load_timeseries(Path(split["data_dir"]))
    x, y, truth = data.splits[split.get("split", "test")]
    timex = load_timex(bundle_dir)
    parts = [timex.explain(x[i : i + 256]) for i in range(0, len(x), 256)]
    saliency = np.concatenate([p["attributions"] for p in parts])
    agree = np.concatenate(
        [p["probabilities"].argmax(-1) == p["explanation_probabilities"].argmax(-1) for p in parts]
    )
    # faithfulness asks the black box alone (the whole explainer's forward is not needed)
    predict = partial(predict_classes, timex.model.blackbox)
    return {
        "agreement": float(agree.mean()),
        **score_attributions(saliency, x, y, truth, predict, data.null_class),
    }


def evaluate_behavior_bundle(
    bundle_dir: Path, split: dict, behavior_family: str, batch_size: int = 256
) -> dict[str, float]:
    """How often a BehaveGPT bundle predicts ``behavior_family`` on the test users of ``split``,
    and its recall@10 on every other behavior (the gate for versions made by ``behave surgery``)."""
    from behave.data.user_events_datamodule import UserEventsDataModule
    from behave.explain.behavegpt_behaviors import behavior_rates, family_token_mask
    from behave.inference.behavegpt import BehaveGPTPredictor

    predictor = BehaveGPTPredictor.from_dir(bundle_dir)
    dm = UserEventsDataModule(**{**split, "batch_size": batch_size, "vocab_from": str(bundle_dir)})
    dm.setup("test")
    mask = family_token_mask(predictor.vocab.behaviors, behavior_family)
    rates = behavior_rates(predictor.model, dm.datasets["test"].tensors, mask)
    rates.pop("positions")
    return rates


EVALUATORS = {
    "behavegpt": evaluate_bundle,
    "decision_mamba": evaluate_policy_bundle,
    "graph_lstm": evaluate_forecaster_bundle,
    "tsclassifier": evaluate_classifier_bundle,
    "timex": evaluate_timex_bundle,
}


def _kind(family: str) -> str:
    """``tsclassifier.gunpoint`` -> ``tsclassifier``: per-dataset families share an evaluator."""
    return family.split(".", 1)[0]


@dataclass
class Review:
    family: str
    metric: str
    challenger: str
    champion: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    promoted: bool
    reason: str = ""  # why a gated version was kept out, when the rule is not "metric better"

    def table(self) -> str:
        keys = sorted(self.challenger_metrics)
        head = f"{'metric':<22}{'champion v' + str(self.champion) if self.champion else 'champion':>16}{'challenger v' + self.challenger:>18}"
        rows = [head, "-" * len(head)]
        for k in keys:
            old = f"{self.champion_metrics[k]:.4f}" if self.champion_metrics else "-"
            mark = "  <- decides" if k == self.metric else ""
            rows.append(f"{k:<22}{old:>16}{self.challenger_metrics[k]:>18.4f}{mark}")
        if self.champion is None:
            verdict = f"v{self.challenger} is the first version: it is @champion"
        elif self.promoted:
            verdict = (
                f"promoted v{self.challenger} to @champion (v{self.champion} is now @previous)"
            )
        else:
            verdict = f"kept v{self.champion} as @champion: " + (
                self.reason or f"challenger's {self.metric} is not better"
            )
        return "\n".join([*rows, verdict])


def _check_explains_the_champion(family: str, challenger) -> None:
    """A TimeX version may only become @champion when it explains the classifier @champion:
    the service would not serve it beside another classifier version."""
    classifier = "tsclassifier." + family.split(".", 1)[1]
    champion = tracking.get_version(classifier, "champion")
    explains = challenger.tags.get("explains_version", "")
    if explains != str(champion.version):
        raise LookupError(
            f"{challenger.name} v{challenger.version} explains {classifier} version "
            f"{explains or '?'}, but @champion is version {champion.version}: promote that "
            f"classifier first, or retrain TimeX against the champion"
        )


def _record_verdict(review: Review, metrics: dict[str, float]) -> None:
    """Promotes the challenger (with the metrics that decided) or tags it rejected."""
    if review.promoted:
        tracking.promote(review.family, review.challenger, metrics)
    else:
        tracking.set_version_tag(review.family, review.challenger, "validation_status", "rejected")


def _review_surgery(
    family: str,
    challenger,
    champion,
    split: dict,
    min_target_cut: float,
    max_capability_drop: float,
) -> Review:
    """A version made by ``behave surgery`` is promoted when, against @champion on the test
    users, it cuts the behavior's top-1 prediction rate by at least ``min_target_cut``
    (relative) and loses at most ``max_capability_drop`` (relative) recall@10 elsewhere."""
    from behave.surgery_pipeline import TARGET, capability_change, target_cut

    behavior = challenger.tags["surgery.behavior_family"]
    evaluate = partial(evaluate_behavior_bundle, behavior_family=behavior)
    new = evaluate(
        tracking.resolve_model_dir(f"models:/{challenger.name}/{challenger.version}"), split
    )
    old = evaluate(tracking.resolve_model_dir(f"models:/{champion.name}/{champion.version}"), split)
    cut, change = target_cut(old, new), capability_change(old, new)
    reasons = []
    if cut < min_target_cut:
        reasons.append(f"it cuts {behavior} top-1 predictions by {cut:.1%} < {min_target_cut:.0%}")
    if change < -max_capability_drop:
        reasons.append(
            f"recall_at_10_other changes by {change:+.2%}, more than the allowed -{max_capability_drop:.0%}"
        )
    review = Review(
        family,
        TARGET,
        str(challenger.version),
        str(champion.version),
        new,
        old,
        promoted=not reasons,
        reason="; ".join(reasons),
    )
    _record_verdict(review, {"target_cut": cut, "capability_change": change})
    return review


def review_and_promote(
    family: str,
    metric: str | None = None,
    min_delta: float = 0.0,
    split: dict | None = None,
    *,
    min_target_cut: float = 0.5,
    max_capability_drop: float = 0.02,
) -> Review:
    """Evaluates @challenger against @champion on a fixed split and promotes it if better.

    A BehaveGPT version made by ``behave surgery`` (tag ``surgery.behavior_family``) is gated
    by its own rule instead: see ``_review_surgery``.
    """
    evaluate = EVALUATORS[_kind(family)]
    challenger = tracking.get_version(family, "challenger")
    if _kind(family) == "timex":
        _check_explains_the_champion(family, challenger)
    if split is None:
        if "eval_split" not in challenger.tags:
            raise LookupError(
                f"{tracking.registered_name(family)} v{challenger.version} has no eval_split tag; pass --data-dir"
            )
        split = json.loads(challenger.tags["eval_split"])
    try:
        champion = tracking.get_version(family, "champion")
    except LookupError:
        champion = None
    new = evaluate(
        tracking.resolve_model_dir(f"models:/{challenger.name}/{challenger.version}"), split
    )
    if metric is None:
        metric = DEFAULT_METRIC[_kind(family)]
        if metric == "auprc" and metric not in new:  # real data: no ground truth
            metric = "faithfulness_gap"
    if metric not in new:
        raise LookupError(f"--metric {metric!r} is not computed; choose one of {sorted(new)}")
    if champion is not None and champion.version == challenger.version:
        champion = None  # the first version was made @champion at registration
    if champion is not None and "surgery.behavior_family" in challenger.tags:
        return _review_surgery(
            family, challenger, champion, split, min_target_cut, max_capability_drop
        )
    if champion is None:
        old = None
        promoted = True
    else:
        old = evaluate(
            tracking.resolve_model_dir(f"models:/{champion.name}/{champion.version}"), split
        )
        if metric.removeprefix("cv_").startswith(ERROR_METRICS):
            promoted = new[metric] < old[metric] - min_delta
        else:
            promoted = new[metric] > old[metric] + min_delta
    review = Review(
        family,
        metric,
        str(challenger.version),
        str(champion.version) if champion else None,
        new,
        old,
        promoted,
    )
    _record_verdict(review, {metric: new[metric]})
    return review
