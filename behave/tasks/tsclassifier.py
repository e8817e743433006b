"""Training task for the time-series classifier: the black box TimeX and Captum explain.

Loss: cross-entropy on the class. Metrics: accuracy per split; at the end of fit (the
:class:`~behave.tasks.callbacks.RegisterModel` report) test accuracy, and for the
``report_methods`` (Captum) on up to ``report_samples`` test series: AUPRC / AUP / AUR against
the ground truth where the data has one (synthetic sets), the faithfulness gap where it does not
(real sets), and wall-clock per explained series. Plots: attribution heatmaps over test series.

Registered as ``behave.tsclassifier.<dataset>`` (the ``family`` of the RegisterModel callback).
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from behave.errors import ConfigError
from behave.models.tsclassifier import TSClassifier, TSClassifierConfig
from behave.tasks.optim import adamw_warmup_cosine

__all__ = ["TSClassifierTask", "explain_report", "series_meta"]


def series_meta(info: dict) -> dict:
    """What a classifier's or explainer's bundle says about the data it was trained on."""
    return {
        "dataset": info["dataset"],
        "class_names": info["class_names"],
        "seq_len": info["seq_len"],
        "channels": info["channels"],
        "null_class": info.get("null_class"),
        "trained_on": {"content_hash": info["content_hash"]},
    }


class TSClassifierTask(L.LightningModule):
    bf16_safe = True  # a small transformer: bf16-mixed on GPUs that support it (behave.device)
    curve_metrics = ("train/loss", "val/loss", "val/accuracy")

    def __init__(
        self,
        data_info: dict | None = None,
        d_model: int = 64,
        num_heads: int = 2,
        num_layers: int = 1,
        dim_feedforward: int = 128,
        positional_dim: int = 16,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        report_samples: int = 200,
        report_methods: list[str] | None = None,
    ) -> None:
        """
        Args:
            data_info: dataset facts (length, channels, classes); linked from the datamodule.
            report_samples: test series the end-of-fit attribution report explains (0: none).
            report_methods: Captum methods scored there (default: integrated_gradients,
                saliency).
        """
        super().__init__()
        if data_info is None:
            raise ConfigError(
                "model.data_info is missing: it is linked from the datamodule; run via `behave fit`"
            )
        methods = (
            report_methods if report_methods is not None else ["integrated_gradients", "saliency"]
        )
        from behave.explain.attributions import CAPTUM_METHODS

        unknown = sorted(set(methods) - set(CAPTUM_METHODS))
        if unknown:
            raise ConfigError(
                f"model.report_methods: unknown {unknown}; choose from {list(CAPTUM_METHODS)}"
            )
        self.save_hyperparameters()
        try:
            config = TSClassifierConfig(
                seq_len=data_info["seq_len"],
                channels=data_info["channels"],
                num_classes=data_info["num_classes"],
                d_model=d_model,
                num_heads=num_heads,
                num_layers=num_layers,
                dim_feedforward=dim_feedforward,
                positional_dim=positional_dim,
                dropout=dropout,
            )
        except ValueError as err:
            raise ConfigError(f"model: {err}") from err
        self.model = TSClassifier(config)
        self.final_metrics: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        logits = self.model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"])
        accuracy = (logits.argmax(-1) == batch["y"]).float().mean()
        B = len(batch["y"])
        self.log(f"{stage}/loss", loss, prog_bar=stage != "train", batch_size=B)
        self.log(f"{stage}/accuracy", accuracy, prog_bar=True, batch_size=B)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(
            self.model,
            hp.learning_rate,
            hp.weight_decay,
            hp.warmup_steps,
            self.trainer.estimated_stepping_batches,
        )

    # ---- end of fit --------------------------------------------------------------------------
    def final_report(self, datamodule) -> tuple[dict[str, float], dict]:
        x, y, truth = datamodule.split_arrays("test")
        from behave.inference.timeseries import predict_classes

        accuracy = float((predict_classes(self.model, x) == y).mean())
        metrics = {"test/accuracy": accuracy}
        figures = {}
        n = min(self.hparams.report_samples, len(y))
        if n > 0:
            scores, figures = explain_report(
                self.model,
                x[:n],
                y[:n],
                None if truth is None else truth[:n],
                self.hparams.report_methods or ["integrated_gradients", "saliency"],
                null_class=self.hparams.data_info.get("null_class"),
            )
            metrics.update({f"test/{k}": v for k, v in scores.items()})
        self.final_metrics = metrics
        return metrics, figures

    # ---- registry ----------------------------------------------------------------------------
    def bundle_meta(self) -> dict:
        return series_meta(self.hparams.data_info)

    def registry_tags(self, datamodule) -> dict[str, str]:
        tags = {"dataset": self.hparams.data_info["dataset"]}
        if "test/accuracy" in self.final_metrics:
            tags["test_accuracy"] = f"{self.final_metrics['test/accuracy']:.4f}"
        tags["eval_split"] = json.dumps(
            {"data_dir": str(Path(datamodule.hparams.data_dir).resolve()), "split": "test"}
        )
        return tags

    def export_bundle(self, out_dir: Path, datamodule) -> Path:
        from behave.inference.timeseries import save_classifier_bundle

        return save_classifier_bundle(self.model, out_dir, self.bundle_meta())

    def example_io(self, datamodule):
        from behave.inference.timeseries import ClassifierRunner

        x = datamodule.split_arrays("train")[0][:2]
        runner = ClassifierRunner(self.model, self.bundle_meta(), device=self.device)
        out = runner.predict_frame(x)
        self.model.train()
        return x, out


def explain_report(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    truth: np.ndarray | None,
    methods: list[str],
    null_class: int | None = None,
) -> tuple[dict[str, float], dict]:
    """Scores of Captum ``methods`` on (x, y): ground-truth AUPRC/AUP/AUR where ``truth`` is
    given, else the faithfulness gap; seconds per series; and one heatmap figure per method."""
    from behave.explain.attributions import attribute, attribution_heatmap
    from behave.explain.metrics import score_attributions
    from behave.inference.timeseries import predict_classes

    model.eval()
    device = next(model.parameters()).device
    xt = torch.from_numpy(x).to(device)
    with torch.no_grad():
        predicted = model(xt).argmax(-1)
    metrics: dict[str, float] = {}
    figures: dict = {}
    sample = int(np.argmax(y != null_class)) if null_class is not None else 0
    for method in methods:
        start = time.perf_counter()
        values = torch.cat(
            [
                attribute(
                    model, xt[i : i + 64], predicted[i : i + 64], method, internal_batch_size=640
                )
                .detach()
                .cpu()
                for i in range(0, len(xt), 64)
            ]
        ).numpy()
        metrics[f"{method}_seconds_per_series"] = (time.perf_counter() - start) / len(x)
        # scored as the TimeX authors score them: the raw (signed) attribution, min-max
        # normalized per series inside ground_truth_scores
        saliency = values
        scores = score_attributions(
            saliency, x, y, truth, partial(predict_classes, model), null_class=null_class
        )
        metrics.update({f"{method}_{key}": value for key, value in scores.items()})
        figures[f"attribution_{method}"] = attribution_heatmap(
            saliency[sample], x[sample], f"{method}: test series {sample} (class {int(y[sample])})"
        )
    return metrics, figures
