"""``manifest.json``: what a data directory holds, how it was made, and a hash that names it.

Every data directory (generated or imported) carries one manifest beside its Parquet files:

- provenance: ``kind``, ``generator`` + ``generator_version``, ``seed``, ``params``
- shape: ``schema`` (column -> polars dtype of the events file), ``row_counts``
- integrity: ``files`` ({name: {sha256, rows, bytes}}) and ``content_hash``, one sha256 over the
  sorted ``name:sha256`` lines of the files; it does not depend on ``created_at``, so the same
  seed and params give the same ``content_hash`` (this is the dataset tag the trackers log).

Files are hashed in 1 MiB chunks, so a multi-GB Parquet file never sits in memory. The manifest
itself is written to a temporary file and moved into place with ``os.replace``, so a reader sees
either the old manifest or the new one, never half of one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from behave.data.schema import EVENTS_FILE, MANIFEST_FILE

__all__ = ["DataError", "write_manifest", "read_manifest", "verify_manifest", "sha256_file"]

_CHUNK_BYTES = 1 << 20  # 1 MiB reads keep hashing memory flat for any file size
_CORE_KEYS = (
    "kind",
    "generator",
    "generator_version",
    "seed",
    "params",
    "schema",
    "row_counts",
    "files",
    "content_hash",
    "created_at",
)
_REGENERATE = "regenerate with `behave data generate user-events`"
_REIMPORT = "re-import the source log with `behave data import`"


class DataError(ValueError):
    """A data directory is missing, incomplete, corrupted or malformed; the message says the fix."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _content_hash(file_hashes: dict[str, str]) -> str:
    lines = "".join(f"{name}:{file_hashes[name]}\n" for name in sorted(file_hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def _fix_hint(manifest: dict | None) -> str:
    generator = (manifest or {}).get("generator", "")
    return _REIMPORT if str(generator).endswith("importer") else _REGENERATE


def write_manifest(
    out_dir: Path,
    *,
    kind: str,
    generator: str,
    generator_version: str,
    seed: int | None,
    params: dict,
    files: list[str],
    extra: dict | None = None,
) -> dict:
    """Hash ``files`` (names relative to ``out_dir``) and write ``out_dir/manifest.json``.

    ``extra`` keys are merged in at the top level (they may not shadow the core keys).
    Returns the manifest exactly as :func:`read_manifest` will read it back.
    """
    out_dir = Path(out_dir)
    if not files:
        raise ValueError("files: list at least one data file to put in the manifest")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"extra: keys {clash} are reserved manifest fields; rename them")

    entries: dict[str, dict[str, Any]] = {}
    row_counts: dict[str, int] = {}
    for name in files:
        path = out_dir / name
        if not path.is_file():
            raise DataError(f"cannot write manifest: {path} does not exist; write the file first")
        rows = pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" else None
        entries[name] = {"sha256": sha256_file(path), "rows": rows, "bytes": path.stat().st_size}
        if rows is not None:
            row_counts[name] = rows

    parquet_files = [name for name in files if name.endswith(".parquet")]
    schema_file = EVENTS_FILE if EVENTS_FILE in files else (parquet_files or [None])[0]
    schema = (
        {col: str(dtype) for col, dtype in pl.read_parquet_schema(out_dir / schema_file).items()}
        if schema_file
        else {}
    )

    manifest = {
        "kind": kind,
        "generator": generator,
        "generator_version": str(generator_version),
        "seed": seed,
        "params": params,
        "schema": schema,
        "row_counts": row_counts,
        "files": entries,
        "content_hash": _content_hash({n: e["sha256"] for n, e in entries.items()}),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    target = out_dir / MANIFEST_FILE
    tmp = out_dir / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return json.loads(text)


def _data_dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    return data_dir.parent if data_dir.is_file() else data_dir  # accept .../events.parquet too


def read_manifest(data_dir: Path) -> dict:
    """Load ``data_dir/manifest.json`` (``data_dir`` may also be a file inside the directory)."""
    data_dir = _data_dir(data_dir)
    path = data_dir / MANIFEST_FILE
    if not path.is_file():
        raise DataError(
            f"no {MANIFEST_FILE} in {data_dir}: generate data there with "
            f"`behave data generate user-events --out {data_dir}` (or `offline-rl`), "
            f"or import a log with `behave data import LOG --out {data_dir}`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); {_REGENERATE}") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DataError(f"{path} has no 'files' table; {_REGENERATE}")
    return manifest


def verify_manifest(data_dir: Path, fix: str | None = None) -> dict:
    """Re-hash every file the manifest lists; raise :class:`DataError` on the first problem.

    ``fix`` ends each message (the data family's own regenerate / re-import command); by
    default the user-events commands.
    """
    data_dir = _data_dir(data_dir)
    manifest = read_manifest(data_dir)
    fix = fix or _fix_hint(manifest)
    for name, entry in sorted(manifest["files"].items()):
        path = data_dir / name
        if not path.is_file():
            raise DataError(f"{path} is listed in {MANIFEST_FILE} but missing; {fix}")
        size = path.stat().st_size
        if entry.get("bytes") is not None and size != entry["bytes"]:
            raise DataError(
                f"{path} changed since its manifest was written "
                f"(size {size:,} bytes, manifest says {entry['bytes']:,}); {fix}"
            )
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise DataError(
                f"{path} changed since its manifest was written "
                f"(sha256 {actual[:12]}…, manifest says {str(entry.get('sha256'))[:12]}…); {fix}"
            )
    expected = _content_hash({n: e["sha256"] for n, e in manifest["files"].items()})
    if manifest.get("content_hash") != expected:
        raise DataError(
            f"{data_dir / MANIFEST_FILE}: content_hash does not match its file hashes "
            f"(the manifest was edited); {fix}"
        )
    return manifest
