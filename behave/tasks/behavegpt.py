"""BehaveGPT training task: next-behavior objectives (ERM or group DRO), metrics, plots, export.

Objectives (``objective``):
- ``erm``: mean next-behavior cross-entropy over all real (non-padding) targets.
- ``dro``: group DRO over behavior-frequency buckets; the exact objective is stated in
  :mod:`behave.tasks.dro` (exponentiated-gradient group weights, rarity-scaled margins).

Validation/test metrics are those of :mod:`behave.metrics` (recall@{1,5,10} weighted/macro,
head/tail recall@10, NDCG@10), logged as ``val/...`` and ``test/...``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from behave.errors import ConfigError
from behave.evaluation import split_batch
from behave.inference.behavegpt import save_bundle
from behave.metrics import RankingAccumulator, generation_divergences, tail_mask_from_counts
from behave.models.behavegpt import (
    PAD_ID,
    BehaveGPT,
    BehaveGPTConfig,
    EventBatch,
    exclude_special_tokens,
)
from behave.tasks.dro import GroupDRO
from behave.tasks.optim import adamw_warmup_cosine

__all__ = ["BehaveGPTTask"]


class BehaveGPTTask(L.LightningModule):
    bf16_safe = True  # a GPT: bf16-mixed on GPUs that support it (behave.device)

    def __init__(
        self,
        data_info: dict | None = None,
        context_length: int = 64,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        objective: str = "erm",
        dro_groups: int = 4,
        dro_step_size: float = 0.01,
        dro_adjustment: float = 0.0,
        dro_mix: float = 1.0,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        init_from: str | None = None,
        generation_histories: int = 64,
        generation_steps: int = 32,
    ) -> None:
        """
        Args:
            data_info: vocabulary sizes and training label counts; linked from the datamodule
                by the CLI (``data.data_info``), so it is never written by hand.
            objective: ``erm`` or ``dro`` (see module docstring).
            dro_groups: G, frequency buckets of behavior types.
            dro_step_size: eta, exponentiated-gradient step for the group weights.
            dro_adjustment: C, rarity margin C / sqrt(n_g / n_max).
            dro_mix: share of the robust loss in the training loss (1 = pure group DRO).
            init_from: a registered model (``models:/behave.behavegpt@champion``) or a bundle
                folder to start from, for cross-domain adaptation.
            generation_histories, generation_steps: size of the generation check at fit end.
        """
        super().__init__()
        if objective not in ("erm", "dro"):
            raise ConfigError(f"model.objective must be 'erm' or 'dro', got {objective!r}")
        if data_info is None:
            raise ConfigError(
                "model.data_info is missing: it is linked from the datamodule; run via `behave fit`"
            )
        self.save_hyperparameters()
        self.config = BehaveGPTConfig(
            num_behaviors=data_info["num_behaviors"],
            num_locations=data_info["num_locations"],
            num_domains=data_info["num_domains"],
            context_length=context_length,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            dropout=dropout,
        )
        self.model = BehaveGPT(self.config)
        if init_from:
            self._load_initial_weights(init_from)
        counts = torch.tensor(data_info["behavior_counts"], dtype=torch.float64)
        self.register_buffer("tail_mask", tail_mask_from_counts(counts), persistent=False)
        self.dro = (
            GroupDRO(counts, dro_groups, dro_step_size, dro_adjustment, dro_mix)
            if objective == "dro"
            else None
        )
        self.accumulators: dict[str, RankingAccumulator] = {}

    def _load_initial_weights(self, uri: str) -> None:
        from behave.inference.behavegpt import BehaveGPTPredictor
        from behave.tracking import resolve_model_dir

        source = BehaveGPTPredictor.from_dir(resolve_model_dir(uri)).model
        if source.config != self.config:
            raise ConfigError(
                f"model.init_from={uri} has config {source.config}, which differs from this "
                f"run's {self.config}: use the same sizes and data.vocab_from={uri}"
            )
        self.model.load_state_dict(source.state_dict())

    # ---- steps ---------------------------------------------------------------------------
    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, targets = split_batch(batch)
        logits = self.model(inputs).logits  # (B, L, V)
        real = targets != PAD_ID  # (B, L)
        flat_logits, flat_targets = logits[real], targets[real]  # (N, V), (N,)
        losses = F.cross_entropy(flat_logits.float(), flat_targets, reduction="none")  # (N,)
        loss = losses.mean()  # plain cross-entropy: comparable across objectives and stages
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True)
            if self.dro is None:
                return loss
            objective = self.dro(losses, flat_targets)
            self.log("train/dro_objective", objective)
            for g, w in enumerate(self.dro.weights.tolist()):
                self.log(f"dro/weight_{g}", w)
            return objective
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val")
        scores = exclude_special_tokens(flat_logits.detach().clone())  # (N, V)
        self._accumulator(stage).update(scores, flat_targets)
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        inputs, targets = split_batch(batch)
        logits = exclude_special_tokens(self.model(inputs).logits)  # (B, L, V)
        return {"top10": torch.topk(logits, 10, dim=-1).indices, "targets": targets}

    # ---- metrics -------------------------------------------------------------------------
    def _accumulator(self, stage: str) -> RankingAccumulator:
        if stage not in self.accumulators:
            self.accumulators[stage] = RankingAccumulator(
                self.config.num_behaviors, tail_mask=self.tail_mask.cpu()
            )
        return self.accumulators[stage]

    def _log_ranking(self, stage: str) -> None:
        acc = self.accumulators.get(stage)
        if acc is None:
            return
        self.log_dict({f"{stage}/{k}": v for k, v in acc.compute().items()}, prog_bar=False)
        self.last_per_type_recall = acc.per_type_recall(10)
        del self.accumulators[stage]

    def on_validation_epoch_end(self) -> None:
        self._log_ranking("val")

    def on_test_epoch_end(self) -> None:
        self._log_ranking("test")

    # ---- optimization --------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(
            self,
            hp.learning_rate,
            hp.weight_decay,
            hp.warmup_steps,
            self.trainer.estimated_stepping_batches,
        )

    # ---- export and reports (used by behave.tasks.callbacks.RegisterModel) ---------------
    def export_bundle(self, out_dir: Path, datamodule) -> Path:
        extra = {"trained_on": {"content_hash": self.hparams.data_info.get("content_hash", "")}}
        return save_bundle(self.model, datamodule.vocab, out_dir, extra=extra)

    def example_io(self, datamodule):
        """(input, output) pandas examples for the MLflow signature (batch of 2)."""
        import pandas as pd

        from behave.inference.behavegpt import BehaveGPTPredictor

        names = datamodule.vocab.behaviors[2:8]
        frame = pd.DataFrame({"history": [names[:3], names[3:]]})
        predictor = BehaveGPTPredictor(self.model, datamodule.vocab, "cpu")
        out = predictor.predict_frame(frame)
        self.model.to(self.device)
        return frame, out

    def final_report(self, datamodule) -> tuple[dict[str, float], dict]:
        """End-of-fit metrics and figures (used by RegisterModel)."""
        generation, samples = self.generation_report(datamodule)
        return {f"generation/{k}": v for k, v in generation.items()}, self.figures(
            datamodule, samples
        )

    def registry_tags(self, datamodule) -> dict[str, str]:
        """What `behave promote` evaluates both versions on."""
        import json

        hp = datamodule.hparams
        return {
            "eval_split": json.dumps(
                {
                    "data_dir": str(Path(hp.data_dir).resolve()),
                    "domains": hp.domains,
                    "val_fraction": hp.val_fraction,
                    "test_fraction": hp.test_fraction,
                    "split_seed": hp.split_seed,
                    "context_length": hp.context_length,
                }
            )
        }

    @torch.no_grad()
    def generation_report(self, datamodule, seed: int = 0) -> tuple[dict[str, float], dict]:
        """Samples continuations of validation histories; JSD vs the real continuations."""
        was_training = self.model.training
        self.model.eval()
        windows = datamodule.datasets["val"].tensors
        n_hist, steps = self.hparams.generation_histories, self.hparams.generation_steps
        half = self.config.context_length // 2
        generator = torch.Generator().manual_seed(seed)
        lengths = (windows["behavior"] != PAD_ID).sum(1)
        candidates = torch.nonzero(lengths > half + 1).flatten()[:n_hist]
        generated, real = [], []
        for i in candidates.tolist():
            events = EventBatch(
                **{k: v[i : i + 1, :half].to(self.device) for k, v in windows.items()}
            )
            horizon = min(steps, int(lengths[i]) - half)
            generated.append(
                self.model.generate(events, half, horizon, top_k=50, generator=generator).numpy()
            )
            real.append(windows["behavior"][i, half : half + horizon].numpy())
        self.model.train(was_training)
        if not generated:
            return {}, {}
        metrics = generation_divergences(generated, real, self.config.num_behaviors)
        return metrics, {"generated": generated, "real": real}

    def figures(self, datamodule, generation: dict) -> dict:
        from behave.tasks.plots import recall_by_frequency, transition_heatmaps

        figs = {}
        recall = getattr(self, "last_per_type_recall", None)
        if recall is not None:
            figs["recall_by_frequency_bucket"] = recall_by_frequency(
                recall.numpy(), np.asarray(self.hparams.data_info["behavior_counts"])
            )
        if generation:
            figs["transition_heatmap"] = transition_heatmaps(
                generation["real"], generation["generated"], self.config.num_behaviors
            )
        return figs
