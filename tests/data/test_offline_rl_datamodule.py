"""OfflineRLDataModule: splits, units and windows on a small real LunarLander dataset."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("Box2D")

from behave.data.manifest import DataError  # noqa: E402
from behave.data.offline_rl import generate_offline_rl, load_trajectories  # noqa: E402
from behave.data.offline_rl_datamodule import OfflineRLDataModule  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl") / "lunarlander-medium"
    generate_offline_rl(out, quality="medium", num_transitions=4000, seed=1, progress=False)
    return out


@pytest.fixture(scope="module")
def dm(data_dir):
    dm = OfflineRLDataModule(str(data_dir), context_length=10, batch_size=8, windows_per_epoch=40)
    dm.setup("fit")
    return dm


def test_episodes_are_split_not_transitions(dm, data_dir):
    train, val = dm.episodes("train"), dm.episodes("val")
    assert len(train) + len(val) == len(load_trajectories(data_dir))
    starts = {e["observations"][0].tobytes() for e in train}
    assert not starts & {e["observations"][0].tobytes() for e in val}
    info = dm.data_info
    assert info["state_dim"] == 8 and info["act_dim"] == 2 and info["env"] == "lunarlander"
    assert info["val_episodes"] == len(val) >= 1


def test_units_standardized_states_scaled_returns(dm):
    info = dm.data_info
    arrays = dm.datasets["train"].arrays
    assert torch.allclose(arrays["states"].mean(0), torch.zeros(8), atol=1e-3)
    assert torch.allclose(arrays["states"].std(0), torch.ones(8), atol=1e-2)
    assert arrays["actions"].abs().max() <= 1.0
    ref = info["reference_returns"]
    scale = info["normalization"]["return_scale"]
    assert scale == pytest.approx((ref["expert"] - ref["random"]) / 4)
    first = dm.episodes("train")[0]
    assert arrays["returns_to_go"][0].item() == pytest.approx(
        first["returns_to_go"][0] / scale, rel=1e-5
    )


def test_windows_stay_in_one_episode_and_pad_right(dm):
    data = dm.datasets["train"]
    ends = data.episode_end
    last_row = int(ends[0])  # the first episode's final transition
    batch = data.__getitems__([0, last_row - 3, last_row])
    assert batch["states"].shape == (3, 10, 8) and batch["returns_to_go"].shape == (3, 10, 1)
    assert batch["mask"][0].all()  # a window at an episode start is full (episodes > 10 steps)
    assert batch["mask"][1].tolist() == [True] * 4 + [False] * 6
    assert batch["mask"][2].tolist() == [True] + [False] * 9
    assert (batch["actions"][2, 1:] == 0).all() and (batch["states"][2, 1:] == 0).all()
    t = batch["timesteps"][1, :4]
    assert (t.diff() == 1).all()  # consecutive steps of one episode


def test_train_loader_draws_windows_per_epoch(dm):
    batches = list(dm.train_dataloader())
    assert len(batches) == 40 // 8
    assert set(batches[0]) == {"returns_to_go", "states", "actions", "timesteps", "mask"}


def test_missing_data_dir_names_the_fix(tmp_path):
    dm = OfflineRLDataModule(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="behave data generate offline-rl --out"):
        _ = dm.data_info
