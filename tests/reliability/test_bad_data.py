"""Bad data never crashes a run or trains silently: a tampered, truncated, empty, wrongly shaped
or incomplete event table gives a one-line error naming the file and the problem, exit code 2,
and the input is left as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.test_cli import TINY, behave

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    from behave.data.user_events import generate_user_events

    out = tmp_path_factory.mktemp("bad-data") / "good"
    generate_user_events(out, num_events=5_000, num_behaviors=40, seed=1, progress=False)
    return out


def _reseal(folder: Path) -> None:
    """Rewrites the manifest's hashes for the files as they are now (a manifest that agrees
    with a bad file: the checks after the hash must catch it)."""
    from behave.data.manifest import _content_hash, sha256_file

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for name, entry in manifest["files"].items():
        entry["sha256"] = sha256_file(folder / name)
        entry["bytes"] = (folder / name).stat().st_size
    manifest["content_hash"] = _content_hash({n: e["sha256"] for n, e in manifest["files"].items()})
    path.write_text(json.dumps(manifest))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _edit_row(p: Path) -> None:
    df = pl.read_parquet(p)
    df.with_columns(pl.col("behavior").reverse()).write_parquet(p)


def _drop_domain(p: Path) -> None:
    pl.read_parquet(p).drop("domain").write_parquet(p)


def _null_timestamps(p: Path) -> None:
    df = pl.read_parquet(p)
    first = pl.int_range(pl.len()) < 5
    df.with_columns(
        pl.when(first).then(None).otherwise(pl.col("timestamp")).alias("timestamp")
    ).write_parquet(p)


CASES = {  # name: (damage, reseal the manifest?, words the error must contain)
    "edited since its manifest": (_edit_row, False, "changed since its manifest was written"),
    "truncated": (_truncate, True, "not a readable Parquet file"),
    "empty": (lambda p: p.write_bytes(b""), True, "not a readable Parquet file"),
    "wrong schema": (_drop_domain, True, "missing columns ['domain']"),
    "missing values": (_null_timestamps, True, "missing values in {'timestamp': 5}"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_event_table_is_a_one_line_error_and_left_untouched(good, tmp_path, case):
    damage, reseal, words = CASES[case]
    folder = tmp_path / "data"
    shutil.copytree(good, folder)
    damage(folder / "events.parquet")
    if reseal:
        _reseal(folder)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    proc = behave(
        "fit", "--config", str(TINY), "--data.data_dir", str(folder),
        "--trainer.fast_dev_run", "true", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("behave: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert str(folder / "events.parquet") in errors[0] and words in errors[0], errors[0]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert after == before
