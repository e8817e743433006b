"""BehaveGPT inference from a model bundle (weights.safetensors + config.json + vocab.json).

Used by the service, the MLflow pyfunc wrapper and ``behave promote``; imports no training code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from behave.data.schema import NUM_TIME_SLOTS
from behave.data.vocab import Vocabulary
from behave.models.behavegpt import BehaveGPT, BehaveGPTConfig, EventBatch

__all__ = ["HistoryEvent", "InputError", "BehaveGPTPredictor", "save_bundle"]

FAMILY = "behavegpt"


class InputError(ValueError):
    """Bad request content; ``field`` names the offending input (e.g. ``history[3].behavior``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass
class HistoryEvent:
    behavior: str
    timestamp: datetime | None = None
    location: str | None = None
    domain: str | None = None


def save_bundle(
    model: BehaveGPT, vocab: Vocabulary, out_dir: Path, extra: dict | None = None
) -> Path:
    """Writes the three files behave loads a model from; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # weight tying shares one tensor between embedding and head: store it once
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if k != "head.weight"
    }
    save_file(state, str(out_dir / "weights.safetensors"))
    (out_dir / "config.json").write_text(
        json.dumps({"family": FAMILY, "model": asdict(model.config), **(extra or {})}, indent=2)
    )
    vocab.to_json(out_dir / "vocab.json")
    return out_dir


class BehaveGPTPredictor:
    def __init__(
        self, model: BehaveGPT, vocab: Vocabulary, device: str | torch.device = "cpu"
    ) -> None:
        self.model = model.to(device).eval()
        self.vocab = vocab
        self.device = torch.device(device)
        self.context_length = model.config.context_length
        self._locations = {n: i for i, n in enumerate(vocab.locations)}
        self._domains = {n: i for i, n in enumerate(vocab.domains)}

    @classmethod
    def from_dir(cls, bundle_dir: Path, device: str | torch.device = "cpu") -> BehaveGPTPredictor:
        bundle_dir = Path(bundle_dir)
        meta = json.loads((bundle_dir / "config.json").read_text())
        model = BehaveGPT(BehaveGPTConfig(**meta["model"]))
        state = load_file(str(bundle_dir / "weights.safetensors"))  # tensors only, no pickle
        state["head.weight"] = state["behavior_embedding.weight"]
        model.load_state_dict(state)
        return cls(model, Vocabulary.from_json(bundle_dir / "vocab.json"), device)

    # ---- encoding ------------------------------------------------------------------------
    def encode(
        self, history: list[HistoryEvent], field: str = "history"
    ) -> tuple[EventBatch, int, int]:
        """One history -> (batch of 1, length used, events dropped by truncation)."""
        if not history:
            raise InputError(field, "history is empty; send at least one event")
        rows = []
        for i, event in enumerate(history):
            behavior_id = self.vocab.behavior_lookup.get(event.behavior)
            if behavior_id is None:
                raise InputError(
                    f"{field}[{i}].behavior",
                    f"unknown behavior {event.behavior!r}; GET /behaviors lists the known ones",
                )
            ts = event.timestamp
            weekday = ts.weekday() if ts else 0
            slot = (ts.hour * 2 + ts.minute // 30) % NUM_TIME_SLOTS if ts else 0
            rows.append(
                (
                    behavior_id,
                    weekday,
                    slot,
                    self._locations.get(event.location or "", 0),
                    self._domains.get(event.domain or "", 0),
                )
            )
        dropped = max(0, len(rows) - self.context_length)
        rows = rows[dropped:]
        columns = list(zip(*rows, strict=True))
        batch = EventBatch(*(torch.tensor([c], dtype=torch.long) for c in columns))
        return batch.to(self.device), len(rows), dropped

    def stack(self, batches: list[EventBatch], lengths: list[int]) -> EventBatch:
        """Encoded histories (see :meth:`encode`) right-padded into one batch."""
        width = max(lengths)
        fields = {}
        for name in vars(batches[0]):
            rows = [
                torch.nn.functional.pad(getattr(b, name)[0], (0, width - n))
                for b, n in zip(batches, lengths, strict=True)
            ]
            fields[name] = torch.stack(rows)
        return EventBatch(**fields)

    # ---- tasks ---------------------------------------------------------------------------
    @torch.inference_mode()
    def next_behavior(self, histories: list[list[HistoryEvent]], top_k: int = 10) -> list[dict]:
        """Top-k next behaviors with probabilities for each history, batched in one forward."""
        encoded = [self.encode(h, field=f"histories[{i}]") for i, h in enumerate(histories)]
        batches, lengths, dropped = zip(*encoded, strict=True)
        events = self.stack(list(batches), list(lengths))
        scores = self.model.next_behavior_logits(events, torch.tensor(lengths, device=self.device))
        probs = torch.softmax(scores.float(), dim=-1)
        k = min(top_k, len(self.vocab.behaviors) - 2)
        top = torch.topk(probs, k, dim=-1)
        return [
            {
                "behaviors": [self.vocab.behaviors[int(j)] for j in ids],
                "probabilities": [round(float(p), 6) for p in ps],
                "events_used": n,
                "truncated_events": d,
            }
            for ids, ps, n, d in zip(
                top.indices.cpu(), top.values.cpu(), lengths, dropped, strict=True
            )
        ]

    @torch.inference_mode()
    def generate(
        self,
        history: list[HistoryEvent],
        num_steps: int,
        temperature: float = 1.0,
        top_k: int | None = 50,
        seed: int = 0,
    ) -> dict:
        events, length, dropped = self.encode(history)
        generator = torch.Generator().manual_seed(seed)
        ids = self.model.generate(
            events, length, num_steps, temperature=temperature, top_k=top_k, generator=generator
        )
        return {
            "behaviors": [self.vocab.behaviors[int(i)] for i in ids],
            "events_used": length,
            "truncated_events": dropped,
        }

    def explain(
        self,
        history: list[HistoryEvent],
        method: str,
        target: str | None = None,
        n_steps: int = 50,
    ) -> dict:
        """Captum attributions of the next-behavior score to each event's fields (L, 5)."""
        from behave.explain.attributions import attribute_events

        events, length, _ = self.encode(history)
        with torch.no_grad():
            scores = self.model.next_behavior_logits(events, torch.tensor([length]))
            probs = torch.softmax(scores.float(), dim=-1)[0]
        predicted = int(probs.argmax())
        if target is None:
            target_id = predicted
        else:
            target_id = self.vocab.behavior_lookup.get(target)
            if target_id is None or target_id < 2:
                raise InputError(
                    "target", f"unknown behavior {target!r}; GET /behaviors lists them"
                )
        options = {"n_steps": n_steps} if method == "integrated_gradients" else {}
        values = attribute_events(
            self.model,
            events,
            torch.tensor([length - 1], device=self.device),
            torch.tensor([target_id], device=self.device),
            method,
            **options,
        )  # (1, L, 5)
        return {
            "attributions": values[0].detach().cpu().numpy(),
            "prediction": self.vocab.behaviors[predicted],
            "probability": float(probs[predicted]),
            "target": self.vocab.behaviors[target_id],
        }

    def predict_frame(self, frame, top_k: int = 10):
        """pyfunc: a DataFrame with a ``history`` column (lists of behavior names)."""
        import pandas as pd

        histories = [[HistoryEvent(str(b)) for b in h] for h in frame["history"]]
        results = self.next_behavior(histories, top_k=top_k)
        return pd.DataFrame(
            {
                "behaviors": [r["behaviors"] for r in results],
                "probabilities": [r["probabilities"] for r in results],
            }
        )
