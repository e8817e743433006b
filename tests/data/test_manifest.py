import json

import polars as pl
import pytest

from behave.data.manifest import DataError, read_manifest, verify_manifest, write_manifest
from behave.data.schema import EVENTS_FILE, MANIFEST_FILE


@pytest.fixture
def data_dir(tmp_path):
    pl.DataFrame({"user_id": ["a", "b"], "behavior": ["x", "y"]}).write_parquet(
        tmp_path / EVENTS_FILE
    )
    (tmp_path / "notes.txt").write_text("hello\n")
    return tmp_path


def _write(data_dir, **kw):
    args = dict(
        kind="user-events",
        generator="tests",
        generator_version="1",
        seed=3,
        params={"n": 2},
        files=[EVENTS_FILE, "notes.txt"],
    )
    return write_manifest(data_dir, **(args | kw))


def test_write_read_verify_round_trip(data_dir):
    written = _write(data_dir, extra={"note": "hi"})
    assert written == read_manifest(data_dir) == verify_manifest(data_dir)
    assert written["schema"] == {"user_id": "String", "behavior": "String"}
    assert written["row_counts"] == {EVENTS_FILE: 2}
    assert written["files"]["notes.txt"] == {
        "sha256": written["files"]["notes.txt"]["sha256"],
        "rows": None,
        "bytes": 6,
    }
    assert written["note"] == "hi" and written["seed"] == 3
    assert not list(data_dir.glob(".*.tmp"))  # atomic write leaves no temp file
    # the events file itself is accepted in place of its directory
    assert read_manifest(data_dir / EVENTS_FILE)["content_hash"] == written["content_hash"]


def test_content_hash_depends_on_files_only(data_dir):
    first = _write(data_dir)["content_hash"]
    assert _write(data_dir, params={"other": 1}, seed=9)["content_hash"] == first
    (data_dir / "notes.txt").write_text("changed\n")
    assert _write(data_dir)["content_hash"] != first


def test_verify_detects_tampered_file(data_dir):
    _write(data_dir)
    (data_dir / "notes.txt").write_text("HELLO\n")  # same size, different bytes
    with pytest.raises(DataError, match=r"notes\.txt changed.*regenerate with `behave data"):
        verify_manifest(data_dir)
    (data_dir / "notes.txt").write_text("longer text\n")
    with pytest.raises(DataError, match=r"notes\.txt changed .*size"):
        verify_manifest(data_dir)


def test_verify_detects_missing_file_and_manifest(data_dir):
    _write(data_dir)
    (data_dir / "notes.txt").unlink()
    with pytest.raises(DataError, match=r"notes\.txt is listed in manifest\.json but missing"):
        verify_manifest(data_dir)
    (data_dir / MANIFEST_FILE).unlink()
    with pytest.raises(
        DataError, match="no manifest.json .*behave data generate user-events --out"
    ):
        verify_manifest(data_dir)


def test_verify_detects_edited_manifest(data_dir):
    _write(data_dir)
    manifest = json.loads((data_dir / MANIFEST_FILE).read_text())
    manifest["content_hash"] = "0" * 64
    (data_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="content_hash"):
        verify_manifest(data_dir)
    (data_dir / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_manifest(data_dir)


def test_write_manifest_rejects_bad_input(data_dir):
    with pytest.raises(DataError, match="missing.parquet does not exist"):
        _write(data_dir, files=["missing.parquet"])
    with pytest.raises(ValueError, match="reserved"):
        _write(data_dir, extra={"seed": 1})
