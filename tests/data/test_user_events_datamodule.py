import numpy as np
import polars as pl
import pytest

from behave.data.manifest import DataError
from behave.data.user_events import generate_user_events
from behave.data.user_events_datamodule import UserEventsDataModule, build_windows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dm") / "events"
    generate_user_events(out, num_events=12_000, num_behaviors=40, seed=5, progress=False)
    return out


def test_build_windows_cuts_each_user_with_one_event_overlap():
    frame = pl.DataFrame(
        {
            "user_id": ["a"] * 5 + ["b"] * 1 + ["c"] * 3,
            "behavior_id": [10, 11, 12, 13, 14, 20, 30, 31, 32],
            "weekday": [0] * 9,
            "time_slot": [0] * 9,
            "location_id": [1] * 9,
            "domain_id": [1] * 9,
        }
    )
    w = build_windows(frame, context_length=2)["behavior"]
    # user a: [10,11,12], [12,13,14]; user b: too short (no target); user c: [30,31,32]
    assert w.tolist() == [[10, 11, 12], [12, 13, 14], [30, 31, 32]]
    w3 = build_windows(frame, context_length=3)["behavior"]
    assert w3.tolist() == [[10, 11, 12, 13], [13, 14, 0, 0], [30, 31, 32, 0]]  # right-padded


def test_users_are_split_disjointly_and_reproducibly(data_dir):
    dm = UserEventsDataModule(str(data_dir), context_length=8, batch_size=4)
    users = {k: set(v["user_id"].unique()) for k, v in dm.splits.items()}
    assert not (users["train"] & users["val"]) and not (users["train"] & users["test"])
    again = UserEventsDataModule(str(data_dir), context_length=8, batch_size=4)
    assert set(again.splits["test"]["user_id"].unique()) == users["test"]
    few = UserEventsDataModule(str(data_dir), context_length=8, train_user_fraction=0.25)
    assert set(few.splits["test"]["user_id"].unique()) == users["test"]
    assert len(set(few.splits["train"]["user_id"].unique())) == pytest.approx(
        0.25 * len(users["train"]), abs=1
    )


def test_vocab_counts_and_batches(data_dir):
    dm = UserEventsDataModule(
        str(data_dir), context_length=8, batch_size=4, domains=["social", "media"]
    )
    info = dm.data_info
    assert info["num_behaviors"] == len(dm.vocab.behaviors) and dm.vocab.behaviors[:2] == [
        "<pad>",
        "<unk>",
    ]
    counts = np.array(info["behavior_counts"])
    assert (
        counts[:2].sum() == 0 and (np.diff(counts[2:]) <= 0).mean() > 0.5
    )  # ids ordered by frequency
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"behavior", "weekday", "time_slot", "location", "domain"}
    assert batch["behavior"].shape == (4, 9)
    assert int(batch["weekday"].max()) < 7 and int(batch["time_slot"].max()) < 48


def test_unknown_domain_is_a_clear_error(data_dir):
    with pytest.raises(DataError, match=r"data.domains: \['nope'\] not in"):
        UserEventsDataModule(str(data_dir), domains=["nope"])
