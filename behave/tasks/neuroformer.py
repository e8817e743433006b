"""Neuroformer training task: generative pretraining on spikes, then few-shot behavior decoding.

Pretraining loss (Antoniades et al., §3.3):

    id_weight · CE(next neuron id) + offset_weight · CE(next offset)
    + contrastive_weight · symmetric InfoNCE between neural and stimulus embeddings
    + behavior_weight · MSE of the decoded behavior        (0 in pretraining by default)
    + readout_weight · BCE of the coupling readout (does neuron n spike in current bin c)

Past behavior is given as context to a random ``behavior_dropout`` share of windows only; the
behavior MSE is scored only on the others, so the head never learns to copy the past of what
it predicts.

At the end of fit (the :class:`~behave.tasks.callbacks.RegisterModel` report), with the best
pretrained weights:

1. **few-shot decoding** — the behavior head alone is fine-tuned (``few_shot_epochs``) on the
   windows of the ``few_shot_trials`` first train trials; R² on the test trials;
2. **next-window prediction** — every test window is generated (seeded sampling) from its true
   previous window and stimulus; precision / recall / F1 of the generated vs true neuron ids;
3. **connectivity** — the attention from source to target neurons (behave/inference/
   neuroformer.py; by default the coupling readout's scores, one query per target and one key
   per source neuron), AUROC / AUPRC against the data's true adjacency, and the cross blocks'
   window-averaged maps' AUROC beside it; it is stored in the bundle for
   ``GET /neural/connectivity``;
4. **generation** — test trials generated from their first previous window (seeded sampling);
   PSTH correlation with the real test trials, and a raster of real vs generated spikes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from behave.data.spike_tokens import TokenSpec, tokens_to_events
from behave.errors import ConfigError
from behave.models.neuroformer import Neuroformer, NeuroformerConfig
from behave.tasks.optim import adamw_warmup_cosine

__all__ = ["NeuroformerTask", "spiked_bins"]

log = logging.getLogger(__name__)


class NeuroformerTask(L.LightningModule):
    bf16_safe = True  # attention blocks: bf16-mixed on GPUs that support it (behave.device)
    curve_metrics = ("train/loss", "val/loss", "val/id_ce")

    def __init__(
        self,
        data_info: dict | None = None,
        d_model: int = 128,
        num_heads: int = 4,
        self_layers: int = 1,
        cross_layers: int = 2,
        final_layers: int = 1,
        previous_layers: int = 1,
        dropout: float = 0.1,
        contrastive_dim: int = 64,
        id_weight: float = 1.0,
        offset_weight: float = 1.0,
        contrastive_weight: float = 0.1,
        contrastive_temperature: float = 0.1,
        behavior_weight: float = 0.0,
        readout_weight: float = 1.0,
        readout_heads: int = 2,
        readout_dim: int = 64,
        readout_lr_scale: float = 30.0,
        behavior_dropout: float = 0.5,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        few_shot_epochs: int = 20,
        few_shot_learning_rate: float = 3e-3,
        generate_trials: int = 8,
        generation_temperature: float = 1.0,
        connectivity_layer: str = "readout",
        connectivity_max_lag_bins: int | None = None,
    ) -> None:
        """
        Args:
            data_info: token layout, stimulus channels, behavior stats; linked from the datamodule.
            id_weight, offset_weight, contrastive_weight, behavior_weight: loss weights.
            behavior_dropout: share of training windows that see past behavior as context.
            few_shot_epochs: epochs fine-tuning the behavior head on the few-shot trials (0: skip).
            generate_trials: test trials generated for the PSTH comparison and the raster.
            readout_weight: weight of the coupling readout's spike loss (binary cross-entropy
                of "neuron n spikes in current bin c").
            readout_heads, readout_dim: heads of the coupling readout and their query/key size.
            readout_lr_scale: the readout's learning rate over the rest of the model's. Its
                scores are products of two embeddings fitted to a weak signal (a weak edge moves
                its target's rate by a fraction per spike); readout alone, 1,062 steps of this
                schedule, AUROC 0.92 / 0.95 / 0.94 / 0.92 at 10x / 30x / 60x / 100x.
            connectivity_layer: attention map read for connectivity (and served): ``readout``
                (default, the coupling readout: the best on the benchmark) or a cross block's
                ``cross.<i>.previous``. Every map is scored in the report.
            connectivity_max_lag_bins: for the cross blocks' maps, only previous-window spikes
                this many bins or fewer before the current window count (None: all of them).
        """
        super().__init__()
        if data_info is None:
            raise ConfigError(
                "model.data_info is missing: it is linked from the datamodule; run via `behave fit`"
            )
        for name in (
            "id_weight",
            "offset_weight",
            "contrastive_weight",
            "behavior_weight",
            "readout_weight",
            "readout_lr_scale",
        ):
            if locals()[name] < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {locals()[name]}")
        if not 0 <= behavior_dropout <= 1:
            raise ConfigError(f"model.behavior_dropout must be in [0, 1], got {behavior_dropout}")
        self.save_hyperparameters()
        self.spec = TokenSpec(**data_info["tokens"])
        self.model = Neuroformer(self.model_config(self.hparams))
        maps = ["readout"] + [f"cross.{i}.previous" for i in range(cross_layers)]
        if connectivity_layer not in maps:  # checked now, not after hours of training
            raise ConfigError(
                f"model.connectivity_layer {connectivity_layer!r} is not an attention map of "
                f"this model; use one of {maps}"
            )
        if connectivity_layer == "readout" and readout_weight == 0:
            raise ConfigError(
                "model.connectivity_layer 'readout' reads the coupling readout, which "
                "model.readout_weight 0 leaves untrained; set readout_weight > 0 or pick one of "
                f"{maps[1:]}"
            )
        self.connectivity: np.ndarray | None = None

    @staticmethod
    def model_config(hp) -> NeuroformerConfig:
        tokens = hp["data_info"]["tokens"]
        return NeuroformerConfig(
            num_neurons=tokens["num_neurons"],
            current_bins=tokens["current_bins"],
            previous_bins=tokens["previous_bins"],
            max_current=tokens["max_current"],
            max_previous=tokens["max_previous"],
            stimulus_channels=hp["data_info"]["stimulus_channels"],
            behavior_bins=tokens["previous_bins"],
            d_model=hp["d_model"],
            num_heads=hp["num_heads"],
            self_layers=hp["self_layers"],
            cross_layers=hp["cross_layers"],
            final_layers=hp["final_layers"],
            previous_layers=hp["previous_layers"],
            dropout=hp["dropout"],
            contrastive_dim=hp["contrastive_dim"],
            readout_heads=hp.get("readout_heads", 2),
            readout_dim=hp.get("readout_dim", 64),
        )

    # ---- forward and losses ------------------------------------------------------------------
    def forward(self, batch, behavior_valid=None, need_weights=False):
        return self.model(
            batch["current_ids"],
            batch["current_offsets"],
            batch["previous_ids"],
            batch["previous_offsets"],
            batch.get("stimulus"),
            batch.get("behavior_context"),
            behavior_valid,
            need_weights=need_weights,
            # the readout is a second pass over every spike: skip it when no loss reads it
            with_readout=need_weights or self.hparams.readout_weight > 0,
        )

    def _behavior_mask(self, batch, stage: str) -> torch.Tensor | None:
        """Which windows see past behavior: a random share in training, none in evaluation."""
        if "behavior_context" not in batch:
            return None
        B = batch["current_ids"].shape[0]
        if stage != "train":
            return torch.zeros(B, dtype=torch.bool, device=self.device)
        return torch.rand(B, device=self.device) < self.hparams.behavior_dropout

    def _losses(self, batch, out, behavior_valid) -> dict[str, torch.Tensor]:
        hp = self.hparams
        targets_id = batch["current_ids"][:, 1:]  # (B, Lc - 1) next tokens
        targets_off = batch["current_offsets"][:, 1:]
        scored = targets_id != self.spec.pad_id  # spikes and EOS
        losses = {
            "id_ce": F.cross_entropy(out.id_logits[:, :-1][scored], targets_id[scored]),
            "offset_ce": F.cross_entropy(out.offset_logits[:, :-1][scored], targets_off[scored]),
        }
        total = hp.id_weight * losses["id_ce"] + hp.offset_weight * losses["offset_ce"]
        if hp.readout_weight > 0:
            losses["readout_bce"] = F.binary_cross_entropy_with_logits(
                out.readout_logits, self._spiked(batch)
            )
            total = total + hp.readout_weight * losses["readout_bce"]
        if out.stimulus_embedding is not None and hp.contrastive_weight > 0:
            logits = out.neural_embedding @ out.stimulus_embedding.T / hp.contrastive_temperature
            labels = torch.arange(len(logits), device=logits.device)
            losses["contrastive"] = 0.5 * (
                F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
            )
            total = total + hp.contrastive_weight * losses["contrastive"]
        if "behavior_target" in batch:
            blind = ~behavior_valid if behavior_valid is not None else slice(None)
            err = (out.behavior - batch["behavior_target"])[blind]
            if err.numel():
                losses["behavior_mse"] = err.pow(2).mean()
                if hp.behavior_weight > 0:
                    total = total + hp.behavior_weight * losses["behavior_mse"]
        losses["loss"] = total
        return losses

    def _spiked(self, batch) -> torch.Tensor:
        """The readout's targets for this batch (:func:`spiked_bins`)."""
        return spiked_bins(
            batch["current_ids"],
            batch["current_offsets"],
            self.spec.num_neurons,
            self.spec.current_bins,
        )

    def _step(self, batch, stage: str):
        behavior_valid = self._behavior_mask(batch, stage)
        out = self(batch, behavior_valid)
        losses = self._losses(batch, out, behavior_valid)
        on_step = stage == "train"
        for k, v in losses.items():
            self.log(f"{stage}/{k}", v, prog_bar=k == "loss", on_step=on_step, on_epoch=not on_step)
        return losses["loss"]

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
            lr_scales={"readout.": hp.readout_lr_scale},
        )

    # ---- end-of-fit analyses -----------------------------------------------------------------
    def _to_device(self, batch) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def fit_behavior_head(self, loader, epochs: int, learning_rate: float) -> list[float]:
        """Few-shot decoding: train the behavior head alone (the rest frozen); epoch losses."""
        head = self.model.behavior_head
        opt = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=1e-4)
        self.model.eval()  # no dropout in the frozen backbone
        head.train()
        history = []
        for _ in range(epochs):
            total, n = 0.0, 0
            for batch in loader:
                batch = self._to_device(batch)
                with torch.no_grad():
                    features = self._behavior_features(batch)
                loss = (head(features).squeeze(-1) - batch["behavior_target"]).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, n = total + loss.item() * len(features), n + len(features)
            history.append(total / max(n, 1))
        self.model.eval()
        return history

    def _behavior_features(self, batch) -> torch.Tensor:
        """The behavior head's input (pooled current tokens + encoded previous window)."""
        captured = {}
        hook = self.model.behavior_head.register_forward_hook(
            lambda m, inp, out: captured.setdefault("x", inp[0])
        )
        try:
            self(batch)
        finally:
            hook.remove()
        return captured["x"]

    @torch.no_grad()
    def decode_behavior(self, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(decoded, true, trial, start) over the windows of ``loader``, z-scored units."""
        self.model.eval()
        pred, true, trial, start = [], [], [], []
        for batch in loader:
            batch = self._to_device(batch)
            pred.append(self(batch).behavior.cpu())
            true.append(batch["behavior_target"].cpu())
            trial.append(batch["trial"].cpu())
            start.append(batch["start"].cpu())
        return tuple(torch.cat(x).numpy() for x in (pred, true, trial, start))

    @torch.no_grad()
    def next_window_ids(self, loader) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each window generated (seeded sampling) from its true context: (generated, true) ids.

        Sampled, not greedy: the most likely next token is almost never EOS, so greedy windows
        run to the length limit."""
        from behave.inference.neuroformer import sample_window

        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(0)
        generated, true = [], []
        for batch in loader:
            batch = self._to_device(batch)
            ids, offs = sample_window(
                self.model,
                self.spec,
                batch["previous_ids"],
                batch["previous_offsets"],
                batch.get("stimulus"),
                generator=generator,
            )
            for row in range(len(ids)):
                g, _ = tokens_to_events(
                    ids[row].cpu().numpy(), offs[row].cpu().numpy(), self.spec, start_bin=0, bin_s=1
                )
                t, _ = tokens_to_events(
                    batch["current_ids"][row].cpu().numpy(),
                    batch["current_offsets"][row].cpu().numpy(),
                    self.spec,
                    start_bin=0,
                    bin_s=1,
                )
                generated.append(g)
                true.append(t)
        return generated, true

    def final_report(self, datamodule) -> tuple[dict[str, float], dict]:
        from behave import neural_metrics as nm
        from behave.inference.neuroformer import attention_connectivities, generate_trials
        from behave.tasks.neural_plots import adjacency_heatmaps, decoded_behavior, raster

        hp = self.hparams
        split = "test" if datamodule.windows.get("test") is not None else "val"
        self.report_split = split
        loader = datamodule.loader(split)
        metrics: dict[str, float] = {}
        figures: dict = {}

        # 1. few-shot behavior decoding
        if datamodule.binned.behavior is not None and hp.few_shot_epochs > 0:
            few = datamodule.windows.get("few_shot")
            if few is not None:
                self.fit_behavior_head(
                    datamodule.loader("few_shot", shuffle=True),
                    hp.few_shot_epochs,
                    hp.few_shot_learning_rate,
                )
            pred, true, trial, start = self.decode_behavior(loader)
            metrics["behavior_r2"] = nm.r2_score(true, pred)
            figures["decoded_behavior"] = decoded_behavior(
                pred, true, trial, start, datamodule.binned.bin_s
            )

        # 2. next-window prediction
        generated, true_ids = self.next_window_ids(loader)
        for k, v in nm.next_spike_scores(generated, true_ids).items():
            metrics[f"next_window_{k}"] = v

        # 3. connectivity from attention: the kept map, and every other map scored beside it
        # (which one reads the circuit best), all from one pass over the windows
        layers = [hp.connectivity_layer] + [
            layer
            for layer in ["readout"]
            + [f"cross.{i}.previous" for i in range(self.model.config.cross_layers)]
            if layer != hp.connectivity_layer
        ]
        maps = attention_connectivities(
            self.model,
            loader,
            self.spec,
            layers,
            max_lag_bins=hp.connectivity_max_lag_bins,
            device=self.device,
        )
        self.connectivity = maps[hp.connectivity_layer]
        adjacency = datamodule.binned.adjacency
        if adjacency is not None:
            rec = nm.connectivity_recovery(self.connectivity, adjacency)
            metrics.update({f"connectivity_{k}": v for k, v in rec.items()})
            figures["connectivity"] = adjacency_heatmaps(self.connectivity, adjacency)
            for layer in layers[1:]:
                auroc = nm.connectivity_recovery(maps[layer], adjacency)["auroc"]
                metrics[f"connectivity_auroc_{layer.replace('.', '_')}"] = auroc

        # 4. generation vs held-out activity
        trials = datamodule.split[split][: hp.generate_trials]
        counts = datamodule.binned.counts[trials]
        P = self.spec.previous_bins
        stim = datamodule.binned.stimulus
        generated_counts = generate_trials(
            self.model,
            self.spec,
            counts[:, :P],
            counts.shape[1] - P,
            None if stim is None else stim[trials],
            seed=0,
            temperature=hp.generation_temperature,
            device=self.device,
        )
        real = counts[:, P:]
        conditions = datamodule.binned.conditions
        cond = None if conditions is None else conditions[trials]
        psth = nm.psth_correlation(real, generated_counts, cond, cond)
        metrics.update({f"psth_corr_{k}": v for k, v in psth.items()})
        metrics["generated_rate_hz"] = float(generated_counts.mean() / datamodule.binned.bin_s)
        metrics["real_rate_hz"] = float(real.mean() / datamodule.binned.bin_s)
        figures["raster"] = raster(real[0], generated_counts[0], datamodule.binned.bin_s)

        self.final_metrics = metrics
        return {f"{split}/{k}": float(v) for k, v in metrics.items()}, figures

    # ---- registry ----------------------------------------------------------------------------
    def registry_tags(self, datamodule) -> dict[str, str]:
        tags = {
            "eval_split": json.dumps(
                {
                    "data_dir": str(Path(datamodule.hparams.data_dir).resolve()),
                    "split": getattr(self, "report_split", "test"),
                    "split_seed": datamodule.hparams.split_seed,
                    "few_shot_trials": datamodule.hparams.few_shot_trials,
                }
            )
        }
        for key in ("behavior_r2", "connectivity_auroc", "next_window_f1", "psth_corr_population"):
            if key in getattr(self, "final_metrics", {}):
                tags[key] = f"{self.final_metrics[key]:.3f}"
        return tags

    def bundle_meta(self) -> dict:
        info = self.hparams.data_info
        return {
            "bin_s": info["bin_s"],
            "behavior": info["behavior"],
            "behavior_stats": info["behavior_stats"],
            "trained_on": {"content_hash": info["content_hash"]},
        }

    def export_bundle(self, out_dir: Path, datamodule) -> Path:
        from behave.inference.neuroformer import save_bundle

        return save_bundle(self.model, out_dir, self.spec, self.connectivity, self.bundle_meta())

    def example_io(self, datamodule):
        """(input, output) pandas examples for the MLflow signature: a few spikes -> behavior."""
        import pandas as pd

        from behave.inference.neuroformer import NeuroformerRunner

        runner = NeuroformerRunner(
            self.model, self.spec, self.bundle_meta(), self.connectivity, device=self.device
        )
        counts = datamodule.binned.counts[datamodule.split["train"][0]]
        span = self.spec.previous_bins + self.spec.current_bins
        b, n = np.nonzero(counts[:span])
        times = b * datamodule.binned.bin_s + 0.001
        example_in = pd.DataFrame({"neuron": n.astype(np.int64), "time": times})
        decoded = runner.decode(n, times)
        example_out = pd.DataFrame(decoded["windows"])
        return example_in, example_out


def spiked_bins(
    ids: torch.Tensor,  # (B, Lc) current-window token ids
    offsets: torch.Tensor,  # (B, Lc) their bins
    num_neurons: int,
    current_bins: int,
) -> torch.Tensor:
    """(B, N, current_bins) 1 where the neuron spiked in that bin of the current window (the
    coupling readout's targets); SOS, EOS and padding are not spikes."""
    N, C = num_neurons, current_bins
    real = (ids < N) & (offsets < C)
    flat = torch.where(real, ids * C + offsets, torch.zeros_like(ids))
    spiked = torch.zeros(ids.shape[0], N * C, device=ids.device)
    spiked.scatter_add_(1, flat, real.float())  # non-spike tokens add 0 (at index 0)
    return spiked.clamp_(max=1).view(-1, N, C)  # several spikes in one bin still give 1
