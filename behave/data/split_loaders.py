"""DataLoaders over pre-cut windows, one per split, for behave's windowed DataModules.

A DataModule that keeps its windows in ``self.windows[split]`` (a Dataset whose
``__getitems__`` returns a whole batch, or None when the split is empty) and has ``data_dir``,
``batch_size`` and ``num_workers`` hyperparameters gets ``loader(split)`` and Lightning's
``*_dataloader`` hooks from :class:`SplitLoaders`.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from behave.data.manifest import DataError

__all__ = ["SplitLoaders"]


def _whole_batch(batch):
    return batch  # the dataset's __getitems__ already stacked it


class SplitLoaders:
    def loader(self, name: str, shuffle: bool = False) -> DataLoader:
        """The windows of split ``name`` (set up first); DataError when it has none."""
        data = self.windows.get(name)
        if data is None:
            raise DataError(f"{self.hparams.data_dir}: the {name} split has no windows")
        return DataLoader(
            data,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            collate_fn=_whole_batch,
            num_workers=self.hparams.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")
