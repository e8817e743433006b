"""Training task for TimeX: an explainer of a registered time-series classifier.

The black box (``blackbox``: a registered ``behave.tsclassifier.<dataset>`` URI or a bundle
folder) is frozen; the mask generator, the explainer copy and the landmarks are trained with

    consistency_weight  · KL(p_blackbox ‖ p_explainer)                 prediction consistency
  + sparsity_weight     · KL(Bernoulli(m) ‖ Bernoulli(mask_prior))      sparsity prior, m = σ(logit)
  + smoothness_weight   · mean |m_t − m_{t−1}|                          connected masks
  + embedding_weight    · MSE(cos(z_bb,i, z_bb,j), cos(z_e,i, z_e,j))   model behavior consistency
  + label_weight        · MSE(JS(p_bb,i, p_bb,j), JS(p_e,i, p_e,j))     ... of prediction divergences
  + landmark_weight     · mean (1 − cos(z_e, nearest landmark))         landmarks

(Queen et al., NeurIPS 2023, §4: the pairwise terms are their model behavior consistency, over
the pairs of a batch). Gradient clipping is the trainer's ``gradient_clip_val``, i.e. after
backward. Landmarks start at far-apart explanation embeddings of the first training batch.

At the end of fit, on the test split: TimeX's AUPRC / AUP / AUR against the ground truth (null
class dropped) or the faithfulness gap on real data, seconds per explained series, a landmark
map (2-D projection of explanation embeddings by class, landmarks marked) and mask heatmaps.
Registered as ``behave.timex.<dataset>``, tagged with the classifier version it explains.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from behave.errors import ConfigError
from behave.explain.timex import TimeX, TimeXConfig, TimeXOutput
from behave.tasks.optim import adamw_warmup_cosine

__all__ = ["TimeXTask", "timex_losses"]

log = logging.getLogger(__name__)


def _pairwise_js(p: torch.Tensor) -> torch.Tensor:
    """(B, C) distributions -> (B, B) Jensen-Shannon divergences."""
    p = p.clamp_min(1e-8)
    a, b = p[:, None, :], p[None, :, :]
    m = 0.5 * (a + b)
    return 0.5 * ((a * (a / m).log()).sum(-1) + (b * (b / m).log()).sum(-1))


def _cosine_matrix(z: torch.Tensor) -> torch.Tensor:
    z = F.normalize(z, dim=-1)
    return z @ z.T  # (B, B)


def _bernoulli_kl(p: torch.Tensor, r: float) -> torch.Tensor:
    return p * (p / r).log() + (1 - p) * ((1 - p) / (1 - r)).log()


def timex_losses(
    out: TimeXOutput, mask_prior: float, sparsity: str = "cell"
) -> dict[str, torch.Tensor]:
    """Each TimeX loss term (unweighted) of one batch.

    ``sparsity``: ``cell`` is the published prior, every cell's keep probability pulled toward
    r; ``share`` pulls each series' *mean* keep probability toward r, leaving the generator free
    to be sure about single cells (see the task's docstring for why we offer it)."""
    p_bb = torch.softmax(out.blackbox_logits, -1)  # (B, C)
    log_p_e = torch.log_softmax(out.logits, -1)
    m = torch.sigmoid(out.mask_logits).clamp(1e-6, 1 - 1e-6)  # (B, T, D)
    r = mask_prior
    return {
        "consistency": F.kl_div(log_p_e, p_bb, reduction="batchmean"),
        "sparsity": (
            _bernoulli_kl(m, r).mean()
            if sparsity == "cell"
            else _bernoulli_kl(m.flatten(1).mean(1), r).mean()
        ),
        "smoothness": (m[:, 1:] - m[:, :-1]).abs().mean() if m.shape[1] > 1 else m.sum() * 0,
        "embedding": F.mse_loss(
            _cosine_matrix(out.embedding), _cosine_matrix(out.blackbox_embedding)
        ),
        "label": F.mse_loss(_pairwise_js(log_p_e.exp()), _pairwise_js(p_bb)),
        "landmark": (1 - out.landmark_similarity).mean(),
    }


class TimeXTask(L.LightningModule):
    curve_metrics = ("train/loss", "val/loss", "val/agreement", "val/kept_share", "val/auprc")

    def __init__(
        self,
        data_info: dict | None = None,
        blackbox: str = "models:/behave.tsclassifier.freqshapes@champion",
        decoder_dim: int = 32,
        decoder_heads: int = 1,
        decoder_feedforward: int = 32,
        local_kernel: int = 0,
        num_landmarks: int = 8,
        tau: float = 1.0,
        mask_prior: float = 0.2,
        mask_prior_start: float | None = None,
        prior_decay_fraction: float = 0.5,
        sparsity: str = "cell",
        explainer_lr_scale: float = 1.0,
        replace_univariate: bool = False,
        attention_mask: bool = True,
        baseline_noise: bool = False,
        consistency_weight: float = 1.0,
        sparsity_weight: float = 1.0,
        smoothness_weight: float = 1.0,
        embedding_weight: float = 1.0,
        label_weight: float = 1.0,
        landmark_weight: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 50,
        report_samples: int = 1000,
    ) -> None:
        """
        Args:
            data_info: dataset facts; linked from the datamodule.
            blackbox: the classifier to explain: ``models:/behave.tsclassifier.<dataset>@champion``
                (or ``/VERSION``), or a bundle folder.
            local_kernel: odd kernel size of a residual 1-D convolution block over time on the
                mask generator's queries (each step's logit sees its neighbours); 0: none.
            mask_prior: r, the Bernoulli prior of a kept cell (about the share of the input an
                explanation should keep).
            explainer_lr_scale: learning-rate factor of the explainer (the black box's copy that
                reads masked input; 1 as published). 0 freezes it equal to the black box, so a
                mask can only work by keeping what the black box itself reads, and cannot encode
                the class in where it keeps cells.
            mask_prior_start, prior_decay_fraction: the prior starts at ``mask_prior_start``
                and decays linearly to ``mask_prior`` over this share of the training steps
                (GSAT's r schedule, which TimeX's sparsity term comes from): the explainer first
                learns to read dense masks, then cells are dropped gradually. None: no schedule.
            replace_univariate: univariate data: also replace dropped steps by the baseline
                (published: attention mask only).
            attention_mask: dropped steps leave attention and the mean pool (published). False:
                they stay in, replaced by the baseline, so the explainer reads the masked input
                as a full-length series; with the attention mask even the ground-truth mask did
                not reproduce the black box's prediction on FreqShapes or SeqComb-UV.
            baseline_noise: dropped cells take N(channel mean, channel std) draws instead of the
                mean (the official multivariate mask token): a constant is low variance, which is
                LowVarDetect's class evidence.
            sparsity: ``cell`` (KL of each cell's keep probability to r, as published) or
                ``share`` (KL of each series' mean keep probability to r).
            *_weight: the loss terms' weights (see the module docstring).
            report_samples: test series scored at the end of fit.
        """
        super().__init__()
        if data_info is None:
            raise ConfigError(
                "model.data_info is missing: it is linked from the datamodule; run via `behave fit`"
            )
        if sparsity not in ("cell", "share"):
            raise ConfigError(f"model.sparsity must be 'cell' or 'share', got {sparsity!r}")
        if not 0 < mask_prior < 1:
            raise ConfigError(f"model.mask_prior must be in (0, 1), got {mask_prior}")
        if mask_prior_start is not None and not 0 < mask_prior_start < 1:
            raise ConfigError(f"model.mask_prior_start must be in (0, 1), got {mask_prior_start}")
        if not 0 <= prior_decay_fraction <= 1:
            raise ConfigError(
                f"model.prior_decay_fraction must be in [0, 1], got {prior_decay_fraction}"
            )
        weights = ("consistency", "sparsity", "smoothness", "embedding", "label", "landmark")
        for name in weights:
            if locals()[f"{name}_weight"] < 0:
                raise ConfigError(f"model.{name}_weight must be >= 0")
        self.save_hyperparameters()
        from behave.inference.timeseries import load_classifier

        classifier = load_classifier(self._blackbox_dir(blackbox))
        bb = classifier.model.config
        for key in ("seq_len", "channels", "num_classes"):
            if data_info[key] != getattr(bb, key):
                raise ConfigError(
                    f"model.blackbox reads {key}={getattr(bb, key)} but the data has "
                    f"{key}={data_info[key]}: explain the classifier trained on this dataset "
                    f"(models:/behave.tsclassifier.{data_info['dataset']}@champion)"
                )
        self.blackbox_meta = classifier.meta
        self.model = TimeX(
            TimeXConfig(
                blackbox=bb,
                decoder_dim=decoder_dim,
                decoder_heads=decoder_heads,
                decoder_feedforward=decoder_feedforward,
                local_kernel=local_kernel,
                num_landmarks=num_landmarks,
                tau=tau,
                replace_univariate=replace_univariate,
                attention_mask=attention_mask,
                baseline_noise=baseline_noise,
            ),
            blackbox=classifier.model.cpu(),
        )
        if explainer_lr_scale < 0:
            raise ConfigError(f"model.explainer_lr_scale must be >= 0, got {explainer_lr_scale}")
        if explainer_lr_scale == 0:
            self.model.explainer.requires_grad_(False)
        self.model.baseline.copy_(torch.tensor(data_info["channel_means"], dtype=torch.float32))
        if baseline_noise:
            if "channel_stds" not in data_info:
                raise ConfigError(
                    "model.baseline_noise needs data_info.channel_stds (the datamodule's)"
                )
            self.model.baseline_std.copy_(
                torch.tensor(data_info["channel_stds"], dtype=torch.float32)
            )
        self.register_buffer("landmarks_ready", torch.tensor(False))
        self.final_metrics: dict[str, float] = {}
        self.landmark_summary: list[dict] = []

    def _blackbox_dir(self, uri: str) -> Path:
        """The black box's bundle folder; remembers the registered name and version it is."""
        self.explains = {"uri": uri, "name": "", "version": ""}
        if not str(uri).startswith("models:/"):  # a bundle folder: no registry needed
            path = Path(uri)
            if not (path / "config.json").is_file():
                raise ConfigError(
                    f"model.blackbox: {path} is not a classifier bundle (no config.json); name a "
                    "registered model, e.g. models:/behave.tsclassifier.freqshapes@champion"
                )
            return path
        from behave import tracking

        try:
            path = tracking.resolve_model_dir(uri)
        except (LookupError, FileNotFoundError) as err:
            raise ConfigError(
                f"model.blackbox: {err}; train the classifier first with "
                "`behave fit --config pipelines/tsclassifier-<dataset>.yaml`"
            ) from err
        name, version = tracking.model_version_of(uri)
        self.explains.update(name=name, version=version)
        return path

    # ---- training ----------------------------------------------------------------------------
    def _step(self, batch, stage: str) -> torch.Tensor:
        hp = self.hparams
        if stage == "train" and not bool(self.landmarks_ready):
            with torch.no_grad():
                self.model.init_landmarks(self.model(batch["x"], sample_mask=False).embedding)
            self.landmarks_ready.fill_(True)
        out = self.model(batch["x"])
        # validation scores the final prior: one fixed objective for picking the best epoch
        prior = self.current_prior() if stage == "train" else hp.mask_prior
        losses = timex_losses(out, prior, hp.sparsity)
        total = sum(hp[f"{name}_weight"] * value for name, value in losses.items())
        B = len(batch["y"])
        for name, value in losses.items():
            self.log(f"{stage}/{name}", value, batch_size=B)
        self.log(f"{stage}/loss", total, prog_bar=stage != "train", batch_size=B)
        agreement = (out.logits.argmax(-1) == out.blackbox_logits.argmax(-1)).float().mean()
        self.log(f"{stage}/agreement", agreement, prog_bar=True, batch_size=B)
        self.log(f"{stage}/kept_share", out.mask.detach().mean(), prog_bar=True, batch_size=B)
        return total

    def current_prior(self) -> float:
        """r at this step: ``mask_prior_start`` decaying linearly to ``mask_prior``."""
        hp = self.hparams
        if hp.mask_prior_start is None or self._trainer is None:
            return hp.mask_prior
        total = max(1.0, hp.prior_decay_fraction * self.trainer.estimated_stepping_batches)
        progress = min(1.0, self.global_step / total)
        return hp.mask_prior_start + (hp.mask_prior - hp.mask_prior_start) * progress

    def on_fit_start(self) -> None:
        # The frozen black box sits in eval mode on purpose (TimeX.train keeps it there); Lightning's
        # "Found N module(s) in eval mode" warning would make every fit look misconfigured.
        warnings.filterwarnings(
            "ignore", message=r"Found \d+ module\(s\) in eval mode", category=PossibleUserWarning
        )

    def training_step(self, batch, batch_idx):
        self.log("train/mask_prior", self.current_prior())
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
        if "truth" in batch:  # synthetic data: watch the explanations' quality as it trains
            out = self.model(batch["x"], sample_mask=False)
            self._val_scored.append((out.saliency.cpu(), batch["truth"].cpu(), batch["y"].cpu()))

    def on_validation_epoch_start(self) -> None:
        self._val_scored: list = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_scored:
            return
        from behave.explain.metrics import ground_truth_scores

        saliency, truth, y = (torch.cat(t).numpy() for t in zip(*self._val_scored, strict=True))
        null_class = self.hparams.data_info.get("null_class")
        scores = ground_truth_scores(saliency, truth, labels=y, null_class=null_class)
        if scores["num_scored"]:
            self.log("val/auprc", float(scores["auprc"]))
        self._val_scored = []

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        # the trainable side only: the frozen black box is not handed to the optimizer
        return adamw_warmup_cosine(
            self.model,
            hp.learning_rate,
            hp.weight_decay,
            hp.warmup_steps,
            self.trainer.estimated_stepping_batches,
            lr_scales={"explainer.": hp.explainer_lr_scale},
        )

    # ---- end of fit --------------------------------------------------------------------------
    @torch.no_grad()
    def explain_arrays(self, x: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        """TimeX on (N, T, D) series: saliency, mask, landmark, embeddings, predictions."""
        self.model.eval()
        keys = ("saliency", "mask", "landmark", "embedding", "prediction", "blackbox_prediction")
        parts: dict[str, list] = {k: [] for k in keys}
        for i in range(0, len(x), batch_size):
            out = self.model(torch.from_numpy(x[i : i + batch_size]).to(self.device), False)
            parts["saliency"].append(out.saliency.cpu())
            parts["mask"].append(out.mask.cpu())
            parts["landmark"].append(out.landmark.cpu())
            parts["embedding"].append(out.embedding.cpu())
            parts["prediction"].append(out.logits.argmax(-1).cpu())
            parts["blackbox_prediction"].append(out.blackbox_logits.argmax(-1).cpu())
        return {k: torch.cat(v).numpy() for k, v in parts.items()}

    def final_report(self, datamodule) -> tuple[dict[str, float], dict]:
        from behave.explain.attributions import attribution_heatmap
        from behave.explain.metrics import score_attributions
        from behave.inference.timeseries import predict_classes
        from behave.tasks.explain_plots import landmark_map

        x, y, truth = datamodule.split_arrays("test")
        n = min(self.hparams.report_samples, len(y))
        x, y, truth = x[:n], y[:n], None if truth is None else truth[:n]
        start = time.perf_counter()
        result = self.explain_arrays(x)
        seconds = (time.perf_counter() - start) / max(n, 1)
        metrics = {
            "seconds_per_series": seconds,
            "agreement": float((result["prediction"] == result["blackbox_prediction"]).mean()),
            "kept_share": float(result["mask"].mean()),
            "blackbox_accuracy": float((result["blackbox_prediction"] == y).mean()),
        }
        null_class = self.hparams.data_info.get("null_class")
        predict = partial(predict_classes, self.model.blackbox)
        metrics.update(
            score_attributions(result["saliency"], x, y, truth, predict, null_class=null_class)
        )
        self.landmark_summary = self._landmark_summary(result, y)
        figures = {
            "landmark_map": landmark_map(
                result["embedding"],
                y,
                self.model.landmarks.detach().cpu().numpy(),
                self.hparams.data_info["class_names"],
            )
        }
        shown = [int(np.argmax(y == c)) for c in np.unique(y) if c != null_class][:3]
        for i in shown:
            figures[f"timex_mask_series_{i}"] = attribution_heatmap(
                result["saliency"][i], x[i], f"TimeX: test series {i} (class {int(y[i])})"
            )
        self.final_metrics = metrics
        return {f"test/{k}": v for k, v in metrics.items()}, figures

    def _landmark_summary(self, result: dict, y: np.ndarray) -> list[dict]:
        """Per landmark: how many test explanations are nearest to it, their classes, kept share."""
        names = self.hparams.data_info["class_names"]
        summary = []
        for k in range(self.model.config.num_landmarks):
            members = result["landmark"] == k
            classes = {names[c]: int((y[members] == c).sum()) for c in np.unique(y[members])}
            summary.append(
                {
                    "landmark": k,
                    "count": int(members.sum()),
                    "classes": classes,
                    "kept_share": float(result["mask"][members].mean()) if members.any() else 0.0,
                }
            )
        return summary

    # ---- registry ----------------------------------------------------------------------------
    def bundle_meta(self) -> dict:
        from behave.tasks.tsclassifier import series_meta

        return {
            **series_meta(self.hparams.data_info),
            "explains": self.explains,
            "landmarks": self.landmark_summary,
        }

    def registry_tags(self, datamodule) -> dict[str, str]:
        tags = {
            "dataset": self.hparams.data_info["dataset"],
            "explains_model": self.explains["name"] or self.explains["uri"],
            "explains_version": self.explains["version"],
        }
        for key in ("auprc", "aup", "aur", "faithfulness_gap", "agreement"):
            if key in self.final_metrics:
                tags[key] = f"{self.final_metrics[key]:.4f}"
        tags["eval_split"] = json.dumps(
            {"data_dir": str(Path(datamodule.hparams.data_dir).resolve()), "split": "test"}
        )
        return tags

    def export_bundle(self, out_dir: Path, datamodule) -> Path:
        from behave.inference.timeseries import save_timex_bundle

        return save_timex_bundle(self.model, out_dir, self.bundle_meta())

    def example_io(self, datamodule):
        from behave.inference.timeseries import TimeXRunner

        x = datamodule.split_arrays("train")[0][:2]
        out = TimeXRunner(self.model, self.bundle_meta(), device=self.device).predict_frame(x)
        return x, out
