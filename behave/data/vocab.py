"""Token vocabularies for user-event logs: behavior, location and domain names <-> ids.

The vocabulary travels with every trained model (``vocab.json`` in its MLflow artifacts), so
the service and a fine-tuning run on new data encode events exactly as training did.
Behaviors are ordered by training frequency (most frequent first) after the two special ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

__all__ = ["PAD", "UNK", "Vocabulary"]

PAD, UNK = "<pad>", "<unk>"


@dataclass
class Vocabulary:
    behaviors: list[str]  # index = behavior id; [0] = <pad>, [1] = <unk>
    locations: list[str]  # index = location id; [0] = <unk>
    domains: list[str]  # index = domain id; [0] = <unk>

    @classmethod
    def from_events(cls, events: pl.LazyFrame | pl.DataFrame) -> Vocabulary:
        lazy = events.lazy()

        def ordered(column: str) -> list[str]:
            counts = (
                lazy.group_by(column)
                .len()
                .sort(["len", column], descending=[True, False])
                .collect()
            )
            return counts[column].to_list()

        return cls(
            behaviors=[PAD, UNK, *ordered("behavior")],
            locations=[UNK, *ordered("location")],
            domains=[UNK, *ordered("domain")],
        )

    # ---- persistence -------------------------------------------------------------------
    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, path: Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        return cls(data["behaviors"], data["locations"], data["domains"])

    # ---- encoding ----------------------------------------------------------------------
    def _index(self, column: str, names: list[str]) -> pl.DataFrame:
        return pl.DataFrame({column: names, f"{column}_id": range(len(names))}).with_columns(
            pl.col(f"{column}_id").cast(pl.Int32)
        )

    def encode(self, events: pl.LazyFrame) -> pl.LazyFrame:
        """Adds ``behavior_id``, ``location_id``, ``domain_id`` (unknown names -> <unk>)."""
        for column, names, unknown in (
            ("behavior", self.behaviors, 1),
            ("location", self.locations, 0),
            ("domain", self.domains, 0),
        ):
            events = events.join(
                self._index(column, names).lazy(), on=column, how="left", maintain_order="left"
            ).with_columns(pl.col(f"{column}_id").fill_null(unknown))
        return events

    @property
    def behavior_lookup(self) -> dict[str, int]:
        if not hasattr(self, "_behavior_lookup"):
            self._behavior_lookup = {n: i for i, n in enumerate(self.behaviors) if i > 1}
        return self._behavior_lookup
