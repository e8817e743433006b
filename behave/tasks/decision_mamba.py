"""Offline-RL training task: Decision Mamba, and the DT / BC baselines, by one pipeline.

Loss (``architecture: decision_mamba``), as in the paper's official code: 0.9 · action MSE
+ 0.05 · Huber(next state) + 0.05 · Huber(next return-to-go), read from the action token
(``aux_loss_weight`` = 0.05 each; the action weight is 1 - 2 · aux_loss_weight). DT and BC
train on the action MSE alone, as their papers do. Padded steps are masked out.

Self-evolving regularization (``self_evolution``; the paper's "progressive self-evolution",
after PS-KD, Kim et al. 2021, https://arxiv.org/abs/2006.12000): in epoch e the action target
becomes ``(1 - α_e) · a_t + α_e · â_t``, where â_t is the prediction of the model as it was at the
end of the previous epoch (a frozen copy, evaluated without dropout and without gradient) and
α_e = ``self_evolution_alpha`` · e / (max_epochs - 1) grows linearly from 0. The idea: logged
actions are noisy labels (a medium policy explores), and the model's own earlier, smoother
prediction pulls the target toward the consistent part of the behavior. The released official
loss computes the same mix but then sets α = 0 (and mixes the *current* prediction); here it is
on by default and ``self_evolution: false`` switches it off for the ablation. After a resume the
frozen copy is rebuilt from the resumed weights. ``self_evolution_teacher: ema`` uses an
exponential moving average of the weights instead (updated every step, α growing per step from
0): with few epochs the previous-epoch model is a weak teacher (see the README's results).
While a teacher acts, ``train/teacher_gap_mse`` (model vs teacher) and
``train/logged_action_mse`` (model vs the logged actions) show how much it can pull: the
target's gradient is (1 − α)·(pred − a) + α·(pred − â), and under Adam a uniform (1 − α) scale
is normalized away, so what self-evolution adds is the α·(pred − â) part.

Evaluation: after each validation epoch (not the sanity check), ``eval_episodes`` rollouts in
the dataset's simulator at ``eval_target_return`` (default: the expert reference return), logged
as ``val/normalized_score`` (D4RL units) — the checkpoint monitor. At the end of fit the best
weights are rolled out once more on fresh seeds with frames for the plots (``final/...``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from behave.errors import ConfigError
from behave.inference.offline_rl import (
    ARCHITECTURES,
    Normalization,
    Policy,
    build_model,
    save_bundle,
)
from behave.tasks.optim import adamw_warmup_cosine

__all__ = ["OfflineRLTask"]

REVIEW_SEED = 7  # rollouts of `behave promote`: not the seeds of training-time evaluation


class OfflineRLTask(L.LightningModule):
    curve_metrics = ("train/loss", "train/action_mse", "val/action_mse")

    def __init__(
        self,
        data_info: dict | None = None,
        architecture: str = "decision_mamba",
        context_length: int = 20,
        d_model: int = 128,
        num_layers: int = 3,
        d_state: int = 16,
        expand: int = 2,
        num_heads: int = 1,
        dropout: float = 0.1,
        aux_loss_weight: float = 0.05,
        self_evolution: bool = True,
        self_evolution_alpha: float = 0.3,
        self_evolution_teacher: str = "previous_epoch",
        self_evolution_ema_decay: float = 0.995,
        learning_rate: float = 3e-4,
        weight_decay: float = 1e-4,
        warmup_steps: int = 500,
        eval_episodes: int = 10,
        eval_target_return: float | None = None,
        eval_mode: str | None = None,
        eval_seed: int = 0,
        eval_max_steps: int | None = None,
        eval_frames: int = 8,
    ) -> None:
        """
        Args:
            data_info: dims, units and reference returns; linked from the datamodule by the CLI.
            architecture: ``decision_mamba``, ``decision_transformer`` (baseline) or
                ``behavior_cloning`` (baseline).
            num_heads: attention heads (decision_transformer only).
            d_state, expand: SSM state size and inner expansion (decision_mamba only).
            aux_loss_weight: weight of each auxiliary (next state, next return) loss; DM only.
            self_evolution: mix the action target with the previous epoch's prediction.
            self_evolution_alpha: the mixing weight reached at the end of training.
            self_evolution_teacher: ``previous_epoch`` (a frozen copy of the model as the last
                epoch left it; α grows per epoch) or ``ema`` (an exponential moving average of
                the weights, updated every step; α grows per step).
            self_evolution_ema_decay: the EMA teacher's decay per optimizer step.
            eval_target_return: return to condition rollouts on; None = expert reference.
            eval_mode: ``recurrent`` (DM default) or ``window`` (re-encode the last K steps).
            eval_max_steps: cap on rollout length (tests); None = the env's time limit.
        """
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ConfigError(
                f"model.architecture must be one of {list(ARCHITECTURES)}, got {architecture!r}"
            )
        if data_info is None:
            raise ConfigError(
                "model.data_info is missing: it is linked from the datamodule; run via `behave fit`"
            )
        if not 0 <= self_evolution_alpha < 1:
            raise ConfigError(
                f"model.self_evolution_alpha must be in [0, 1), got {self_evolution_alpha}"
            )
        if self_evolution_teacher not in ("previous_epoch", "ema"):
            raise ConfigError(
                "model.self_evolution_teacher must be 'previous_epoch' or 'ema', "
                f"got {self_evolution_teacher!r}"
            )
        if not 0 < self_evolution_ema_decay < 1:
            raise ConfigError(
                f"model.self_evolution_ema_decay must be in (0, 1), got {self_evolution_ema_decay}"
            )
        if not 0 <= aux_loss_weight < 0.5:
            raise ConfigError(f"model.aux_loss_weight must be in [0, 0.5), got {aux_loss_weight}")
        self.save_hyperparameters()
        self.model = build_model(architecture, self._model_config())
        self.normalization = Normalization(**data_info["normalization"])
        self._teacher: list[torch.nn.Module] = []  # a list keeps it out of state_dict
        self.alpha = 0.0
        self.score_history: list[tuple[int, float]] = []

    def _model_config(self) -> dict:
        hp, info = self.hparams, self.hparams.data_info
        common = {"state_dim": info["state_dim"], "act_dim": info["act_dim"], "dropout": hp.dropout}
        if hp.architecture == "behavior_cloning":
            return common
        common |= {
            "context_length": hp.context_length,
            "max_timestep": info["max_timestep"],
            "d_model": hp.d_model,
            "num_layers": hp.num_layers,
        }
        if hp.architecture == "decision_transformer":
            return common | {"num_heads": hp.num_heads}
        return common | {"d_state": hp.d_state, "expand": hp.expand}

    # ---- steps ---------------------------------------------------------------------------
    def _forward(self, model, batch):
        return model(batch["returns_to_go"], batch["states"], batch["actions"], batch["timesteps"])

    def _losses(self, batch, action_target, teacher_preds=None) -> dict[str, torch.Tensor]:
        out = self._forward(self.model, batch)
        mask = batch["mask"]  # (B, K)
        preds = out.action_preds[mask]
        losses = {"action_mse": F.mse_loss(preds, action_target[mask])}
        if teacher_preds is not None:
            # Diagnostics, not losses: how far the teacher is from the model it regularizes
            # (the target's pull is α·(pred − â) beside (1 − α)·(pred − a)); when the gap is
            # small next to the logged-action error, self-evolution barely changes training.
            with torch.no_grad():
                losses["teacher_gap_mse"] = F.mse_loss(preds, teacher_preds[mask])
                losses["logged_action_mse"] = F.mse_loss(preds, batch["actions"][mask])
        w = self.hparams.aux_loss_weight
        if self.hparams.architecture == "decision_mamba" and w > 0:
            nxt = mask[:, 1:]  # step t has a real step t + 1
            losses["state_huber"] = F.smooth_l1_loss(
                out.state_preds[:, :-1][nxt], batch["states"][:, 1:][nxt]
            )
            losses["return_huber"] = F.smooth_l1_loss(
                out.return_preds[:, :-1][nxt], batch["returns_to_go"][:, 1:][nxt]
            )
            losses["loss"] = (1 - 2 * w) * losses["action_mse"] + w * (
                losses["state_huber"] + losses["return_huber"]
            )
        else:
            losses["loss"] = losses["action_mse"]
        return losses

    def training_step(self, batch, batch_idx):
        if self._ema_teacher():
            total = max(1, self.trainer.estimated_stepping_batches)
            self.alpha = self.hparams.self_evolution_alpha * min(1.0, self.global_step / total)
        target, earlier = batch["actions"], None
        if self.alpha > 0 and self._teacher:
            with torch.no_grad():
                earlier = self._forward(self._teacher[0], batch).action_preds
            target = (1 - self.alpha) * target + self.alpha * earlier
            self.log("train/self_evolution_alpha", self.alpha)
        losses = self._losses(batch, target, earlier)
        self.log("train/loss", losses["loss"], prog_bar=True)
        for k, v in losses.items():
            if k != "loss":
                self.log(f"train/{k}", v)
        return losses["loss"]

    def validation_step(self, batch, batch_idx):
        losses = self._losses(batch, batch["actions"])
        for k, v in losses.items():
            self.log(f"val/{k}", v, prog_bar=k == "action_mse")

    def test_step(self, batch, batch_idx):
        for k, v in self._losses(batch, batch["actions"]).items():
            self.log(f"test/{k}", v)

    # ---- self-evolution ---------------------------------------------------------------------
    def _ema_teacher(self) -> bool:
        return self.hparams.self_evolution and self.hparams.self_evolution_teacher == "ema"

    def on_train_start(self) -> None:
        if self._ema_teacher():  # starts as the initial (or resumed) weights
            teacher = copy.deepcopy(self.model).eval()
            teacher.requires_grad_(False)
            self._teacher = [teacher]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self._ema_teacher() and self._teacher:
            decay = self.hparams.self_evolution_ema_decay
            with torch.no_grad():
                teacher = self._teacher[0].state_dict()
                for name, value in self.model.state_dict().items():
                    if value.is_floating_point():
                        teacher[name].lerp_(value, 1 - decay)
                    else:
                        teacher[name].copy_(value)

    def on_train_epoch_start(self) -> None:
        hp = self.hparams
        epochs = self.trainer.max_epochs or 1
        if self._ema_teacher():
            return
        self.alpha = 0.0
        if not hp.self_evolution or self.current_epoch == 0:
            return
        self.alpha = hp.self_evolution_alpha * self.current_epoch / max(1, epochs - 1)
        teacher = copy.deepcopy(self.model).eval()  # the model as the previous epoch left it
        teacher.requires_grad_(False)
        self._teacher = [teacher]

    # ---- rollouts ----------------------------------------------------------------------------
    def policy(self, mode: str | None = None) -> Policy:
        return Policy(
            self.model,
            self.hparams.architecture,
            self.normalization,
            mode=mode or self.hparams.eval_mode,
            device=self.device,
        )

    @property
    def target_return(self) -> float:
        t = self.hparams.eval_target_return
        return float(self.hparams.data_info["reference_returns"]["expert"] if t is None else t)

    def rollouts(self, episodes: int, seed: int, num_frames: int = 0):
        from behave.rollouts import evaluate_policy

        was_training = self.model.training
        try:
            return evaluate_policy(
                self.policy(),
                self.hparams.data_info["env"],
                self.hparams.data_info["reference_returns"],
                target_return=self.target_return,
                episodes=episodes,
                seed=seed,
                num_frames=num_frames,
                max_steps=self.hparams.eval_max_steps,
            )
        finally:
            self.model.train(was_training)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.hparams.eval_episodes < 1:
            return
        result = self.rollouts(self.hparams.eval_episodes, self.hparams.eval_seed)
        summary = result.summary()
        self.log("val/normalized_score", summary["normalized_score"], prog_bar=True)
        self.log("val/return", summary["return_mean"])
        self.log("val/episode_length", summary["episode_length"])
        self.score_history.append((self.current_epoch, summary["normalized_score"]))

    # ---- optimization ------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(
            self.model,
            hp.learning_rate,
            hp.weight_decay,
            hp.warmup_steps,
            self.trainer.estimated_stepping_batches,
        )

    # ---- export and reports (used by behave.tasks.callbacks.RegisterModel) -------------------
    def final_report(self, datamodule) -> tuple[dict[str, float], dict]:
        """The best weights rolled out on fresh seeds, with frames: metrics + figures."""
        from behave.tasks.rl_plots import frame_strip, return_vs_step, score_per_epoch

        figures = {"score_per_epoch": score_per_epoch(self.score_history)}
        if self.hparams.eval_episodes < 1:
            return {}, figures
        info = self.hparams.data_info
        result = self.rollouts(
            self.hparams.eval_episodes, self.hparams.eval_seed + 1, self.hparams.eval_frames
        )
        self.final_result = result
        figures["return_vs_step"] = return_vs_step(
            result.cumulative, info["reference_returns"], self.target_return
        )
        if result.frames:
            figures["rollout_frames"] = frame_strip(
                result.frames,
                result.frame_steps,
                f"{self.hparams.architecture} on {info['env_id']}, return {result.returns[0]:.0f}",
            )
        return {f"final/{k}": v for k, v in result.summary().items()}, figures

    def registry_tags(self, datamodule) -> dict[str, str]:
        info = self.hparams.data_info
        tags = {
            "env": info["env"],
            "quality": info["quality"],
            "architecture": self.hparams.architecture,
        }
        # what `behave promote decision_mamba` rolls every version out on (fixed reset seeds)
        tags["eval_split"] = json.dumps(
            {
                "env": info["env"],
                "reference_returns": info["reference_returns"],
                "target_return": self.target_return,
                "episodes": max(10, self.hparams.eval_episodes),
                "seed": REVIEW_SEED,
            }
        )
        result = getattr(self, "final_result", None)
        if result is not None:
            tags["normalized_score"] = f"{result.scores.mean():.1f}"
        return tags

    def export_bundle(self, out_dir: Path, datamodule) -> Path:
        info = self.hparams.data_info
        extra = {
            "env": info["env"],
            "env_id": info["env_id"],
            "env_kwargs": info["env_kwargs"],
            "reference_returns": info["reference_returns"],
            "target_return": self.target_return,
            "trained_on": {"content_hash": info["content_hash"], "quality": info["quality"]},
        }
        return save_bundle(
            self.model, self.hparams.architecture, self.normalization, out_dir, extra
        )

    def example_io(self, datamodule):
        """(input, output) pandas examples for the MLflow signature: one 3-step history."""
        import pandas as pd

        episode = datamodule.episodes("val")[0]
        T = min(3, len(episode["rewards"]))
        rewards_before = np.r_[0.0, episode["rewards"][: T - 1].cumsum()]  # (T,)
        frame = pd.DataFrame(
            {
                "returns_to_go": [(self.target_return - rewards_before).tolist()],
                "observations": [episode["observations"][:T].tolist()],
                "actions": [episode["actions"][: T - 1].tolist()],
            }
        )
        out = self.policy().predict_frame(frame)
        self.model.to(self.device)
        return frame, out
