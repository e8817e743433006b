"""Neuroformer task: the readout's spike targets, the behavior-context mask, config errors."""

from __future__ import annotations

import pytest
import torch

from behave.errors import ConfigError
from behave.tasks.neuroformer import NeuroformerTask

N = 6
INFO = {
    "tokens": {
        "num_neurons": N,
        "current_bins": 5,
        "previous_bins": 15,
        "max_current": 8,
        "max_previous": 10,
    },
    "bin_s": 0.01,
    "stimulus_channels": 0,
    "behavior": "running_speed",
    "behavior_stats": {"mean": 0.0, "std": 1.0},
    "content_hash": "",
}


def task(**kw) -> NeuroformerTask:
    return NeuroformerTask(INFO, d_model=16, num_heads=2, **kw)


def test_spiked_marks_each_spike_bin_once_and_nothing_else():
    t = task()
    sos, eos, pad = N + 1, N + 2, N
    # window 0: neuron 0 in bin 0 (the index padding tokens also point at), neuron 3 twice in bin 2
    ids = torch.tensor(
        [[sos, 0, 3, 3, eos, pad, pad, pad], [sos, eos, pad, pad, pad, pad, pad, pad]]
    )
    offsets = torch.tensor([[0, 0, 2, 2, 5, 6, 6, 6], [0, 5, 6, 6, 6, 6, 6, 6]])
    spiked = t._spiked({"current_ids": ids, "current_offsets": offsets})
    assert spiked.shape == (2, N, 5)
    expected = torch.zeros(2, N, 5)
    expected[0, 0, 0] = expected[0, 3, 2] = 1
    torch.testing.assert_close(spiked, expected)


def test_behavior_context_is_shown_to_a_share_of_training_windows_only():
    torch.manual_seed(0)
    t = task(behavior_dropout=0.5)
    batch = {"current_ids": torch.zeros(1000, 8, dtype=torch.long), "behavior_context": None}
    shown = t._behavior_mask(batch, "train")
    assert 0.4 < shown.float().mean() < 0.6
    assert not t._behavior_mask(batch, "val").any()
    assert t._behavior_mask({"current_ids": batch["current_ids"]}, "train") is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"connectivity_layer": "cross.7.previous"}, "not an attention map of this model"),
        ({"readout_weight": -1.0}, "model.readout_weight must be >= 0"),
        ({"readout_weight": 0.0}, "model.readout_weight 0 leaves untrained"),
        ({"behavior_dropout": 1.5}, "model.behavior_dropout must be in [0, 1]"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_field(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        task(**kwargs)


def test_data_info_is_required():
    with pytest.raises(ConfigError, match="model.data_info is missing"):
        NeuroformerTask(None)
