import re

import numpy as np
import polars as pl
import pytest

from behave.data.manifest import verify_manifest
from behave.data.schema import EVENT_SCHEMA, EVENTS_FILE
from behave.data.user_events import FAMILIES, behavior_family, generate_user_events

NUM_EVENTS = 30_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("ue")
    manifest = generate_user_events(out, num_events=NUM_EVENTS, seed=7, progress=False)
    return out, manifest, pl.read_parquet(out / EVENTS_FILE)


def test_schema_and_row_count(generated):
    _, manifest, df = generated
    assert df.columns == [*EVENT_SCHEMA, "session_id"]
    assert dict(df.schema) == {**EVENT_SCHEMA, "session_id": pl.Int64()}
    assert df.height == NUM_EVENTS == manifest["row_counts"][EVENTS_FILE]
    assert df.null_count().sum_horizontal().item() == 0
    assert manifest["schema"]["timestamp"] == "Datetime(time_unit='us', time_zone=None)"


def test_manifest_describes_the_data(generated):
    out, manifest, df = generated
    assert verify_manifest(out)["content_hash"] == manifest["content_hash"]
    assert manifest["kind"] == "user-events" and manifest["generator"] == "behave.data.user_events"
    assert manifest["seed"] == 7 and manifest["params"]["num_events"] == NUM_EVENTS
    assert sum(manifest["domain_events"].values()) == NUM_EVENTS
    assert len(manifest["vocabulary"]) == 600
    assert sum(manifest["behavior_families"].values()) == 600
    assert {"churn", "risky"} <= set(manifest["behavior_families"])


def test_vocabulary_is_large_named_and_grouped(generated):
    _, _, df = generated
    behaviors = df["behavior"].unique()
    assert behaviors.len() >= 500
    pattern = re.compile(r"^[a-z]+\.[a-z_0-9]+\.\d{3}$")
    assert all(pattern.match(b) for b in behaviors)
    families = set(behaviors.to_frame().select(behavior_family(pl.col("behavior")))["family"])
    assert families == {f.name for f in FAMILIES}


def test_popularity_is_long_tailed(generated):
    _, _, df = generated
    counts = np.sort(df["behavior"].value_counts()["count"].to_numpy())[::-1]
    share = counts / counts.sum()
    assert share[: max(1, len(share) // 100)].sum() > 0.15  # top 1 % of types
    assert (share < 1 / len(share)).mean() > 0.7  # most types are below the mean frequency
    ranks = np.arange(1, len(counts) + 1)
    body = slice(5, len(counts) // 2)
    slope = -np.polyfit(np.log(ranks[body]), np.log(counts[body]), 1)[0]
    assert 0.7 < slope < 1.6


def test_sorted_by_user_then_time_with_sessions(generated):
    _, _, df = generated
    assert df["user_id"].is_sorted()
    checks = df.select(
        (pl.col("timestamp").diff().over("user_id") > pl.duration(microseconds=0))
        .fill_null(True)
        .all()
        .alias("time_increases"),
        (pl.col("session_id").diff().over("user_id").is_in([0, 1]))
        .fill_null(True)
        .all()
        .alias("sess"),
        (pl.col("session_id").min().over("user_id") == 0).all().alias("sess_from_zero"),
        (pl.col("domain").n_unique().over("user_id") == 1).all().alias("one_domain"),
    )
    assert checks.row(0) == (True, True, True, True)


def test_domains_locations_and_rhythm(generated):
    _, _, df = generated
    assert set(df["domain"].unique()) == {"social", "commerce", "media", "fintech"}
    assert set(df["location"].unique()) == {"home", "work", "commute", "other"}
    hours = df["timestamp"].dt.hour().value_counts().sort("timestamp")["count"].to_numpy()
    assert hours[19:22].mean() > 3 * hours[2:5].mean()  # evenings busy, nights quiet


def test_next_behavior_is_predictable_from_the_previous_one(generated):
    _, _, df = generated
    codes = df["behavior"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    same_user = np.r_[False, df["user_id"].to_numpy()[1:] == df["user_id"].to_numpy()[:-1]]
    prev, nxt = np.r_[0, codes[:-1]][same_user], codes[same_user]
    half = len(nxt) // 2
    k = codes.max() + 1
    counts = np.zeros((k, k))
    np.add.at(counts, (prev[:half], nxt[:half]), 1)
    popular = np.argsort(-np.bincount(nxt[:half], minlength=k))[:10]
    top10 = np.argsort(-counts, axis=1)[:, :10]
    markov = (top10[prev[half:]] == nxt[half:, None]).any(axis=1).mean()
    baseline = np.isin(nxt[half:], popular).mean()
    assert markov > baseline + 0.15


def test_same_seed_same_bytes_other_seed_differs(generated, tmp_path):
    _, manifest, _ = generated
    again = generate_user_events(tmp_path / "a", num_events=NUM_EVENTS, seed=7, progress=False)
    assert again["content_hash"] == manifest["content_hash"]
    other = generate_user_events(tmp_path / "b", num_events=NUM_EVENTS, seed=8, progress=False)
    assert other["content_hash"] != manifest["content_hash"]


def test_small_vocabulary_custom_domains_and_users(tmp_path):
    manifest = generate_user_events(
        tmp_path,
        num_events=2_000,
        num_users=10,
        num_behaviors=20,
        domains=("alpha", "beta"),
        days=3,
        progress=False,
    )
    df = pl.read_parquet(tmp_path / EVENTS_FILE)
    assert df.height == 2_000 and df["user_id"].n_unique() == 10
    assert df["behavior"].n_unique() <= 20
    assert set(df["domain"].unique()) <= {"alpha", "beta"}
    assert manifest["params"]["domains"] == ["alpha", "beta"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_events": 10}, "num_events"),
        ({"num_users": 0}, "num_users"),
        ({"num_users": 10**9}, "num_users"),
        ({"num_behaviors": 19}, "num_behaviors"),
        ({"domains": ()}, "domains"),
        ({"domains": "social"}, "domains"),
        ({"domains": ("a", "a")}, "domains"),
        ({"seed": -1}, "seed"),
        ({"days": 0}, "days"),
        ({"start": "05/01/2026"}, "start"),
    ],
)
def test_argument_validation(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_user_events(tmp_path, progress=False, **({"num_events": 1_000} | kwargs))
    assert not (tmp_path / EVENTS_FILE).exists()
