import datetime as dt

import polars as pl
import pytest

from behave.data.importer import import_events
from behave.data.manifest import DataError, verify_manifest
from behave.data.schema import EVENT_SCHEMA, EVENTS_FILE, QUARANTINE_FILE

MAPPING = {"user_id": "uid", "timestamp": "ts", "behavior": "event"}

CSV = """uid,ts,event,place
b,2026-01-06T09:00:00+02:00,shop.view,work
a,2026-01-05 08:00:05.250,feed.like,
a,2026-01-05T08:00:00Z,feed.scroll,home
,2026-01-05 08:00:06,feed.like,home
b,not a time,shop.view,work
b,2026-01-06 10:00,  ,work
c,1985-01-01,shop.view,work
c,2099-01-01 00:00,shop.view,work
 ,yesterday,x,
c,2026-01-07,shop.buy,other
"""


@pytest.fixture
def csv_source(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(CSV)
    return path


def test_csv_with_mapping_and_bad_rows(csv_source, tmp_path):
    out = tmp_path / "out"
    mapping = MAPPING | {"location": "place"}
    summary = import_events(csv_source, out, mapping=mapping, default_domain="shop-app")
    assert (summary.rows_read, summary.rows_written, summary.rows_quarantined) == (10, 4, 6)
    assert summary.reasons == {"user_id": 2, "timestamp": 4, "behavior": 1}
    assert summary.quarantine_path == out / QUARANTINE_FILE
    line = summary.one_line()
    assert line.startswith("imported 4 of 10 rows to ") and "6 quarantined (timestamp: 4" in line

    events = pl.read_parquet(out / EVENTS_FILE)
    assert dict(events.schema) == EVENT_SCHEMA
    assert events["user_id"].to_list() == ["a", "a", "b", "c"]
    assert events["behavior"].to_list() == ["feed.scroll", "feed.like", "shop.view", "shop.buy"]
    assert events["timestamp"][0] == dt.datetime(2026, 1, 5, 8, 0)  # zone suffix dropped
    assert events["timestamp"][1] == dt.datetime(2026, 1, 5, 8, 0, 5, 250_000)
    assert events["location"].to_list() == ["home", "unknown", "work", "other"]
    assert set(events["domain"]) == {"shop-app"}

    quarantine = pl.read_parquet(out / QUARANTINE_FILE)
    assert quarantine.columns == ["source_row", "uid", "ts", "event", "place", "reason", "detail"]
    assert all(quarantine.schema[c] == pl.String for c in ["uid", "ts", "event", "place"])
    reasons = dict(zip(quarantine["source_row"], quarantine["reason"], strict=True))
    assert reasons == {
        3: "user_id",
        4: "timestamp",
        5: "behavior",
        6: "timestamp",
        7: "timestamp",
        8: "user_id,timestamp",
    }
    details = dict(zip(quarantine["source_row"], quarantine["detail"], strict=True))
    assert details[6] == "timestamp: before 1990"
    assert "future" in details[7] and "unparsable" in details[4]
    assert quarantine.filter(pl.col("source_row") == 4)["ts"].item() == "not a time"

    manifest = verify_manifest(out)
    assert manifest["generator"] == "behave.data.importer" and manifest["seed"] is None
    assert set(manifest["files"]) == {EVENTS_FILE, QUARANTINE_FILE}
    assert manifest["params"]["mapping"] == mapping
    assert manifest["rows_quarantined"] == 6


def test_missing_required_column_names_it(csv_source, tmp_path):
    with pytest.raises(DataError) as err:
        import_events(csv_source, tmp_path / "out", mapping={"user_id": "uid", "behavior": "event"})
    message = str(err.value)
    assert "'timestamp'" in message and "uid, ts, event, place" in message
    assert "mapping={'timestamp': 'ts'}" in message
    with pytest.raises(DataError, match="'nope' for 'location'"):
        import_events(csv_source, tmp_path / "out", mapping=MAPPING | {"location": "nope"})


def test_bad_source_and_arguments(tmp_path, csv_source):
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(DataError, match="unsupported file type '.json'"):
        import_events(tmp_path / "log.json", tmp_path / "out")
    with pytest.raises(DataError, match="does not exist"):
        import_events(tmp_path / "absent.csv", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown canonical column"):
        import_events(csv_source, tmp_path / "out", mapping={"userid": "uid"})


def test_unix_seconds_and_milliseconds_as_strings(tmp_path):
    base = int(dt.datetime(2026, 1, 5, 8, 0).replace(tzinfo=dt.UTC).timestamp())
    for unit, scale in (("s", 1), ("ms", 1000)):
        src = tmp_path / f"unix_{unit}.csv"
        src.write_text(
            f"user_id,timestamp,behavior\nu1,{base * scale},a\nu1,{(base + 90) * scale},b\nu2,oops,c\n"
        )
        summary = import_events(src, tmp_path / unit)
        events = pl.read_parquet(tmp_path / unit / EVENTS_FILE)
        assert events["timestamp"].to_list() == [
            dt.datetime(2026, 1, 5, 8, 0),
            dt.datetime(2026, 1, 5, 8, 1, 30),
        ]
        assert summary.reasons == {"timestamp": 1}
        assert summary.manifest["timestamp_parsing"] == f"unix-{unit}"


def test_parquet_source_with_native_types(tmp_path):
    src = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "user_id": [2, 1, 1],
            "timestamp": [
                dt.datetime(2026, 1, 5, 9),
                dt.datetime(2026, 1, 5, 8, 30),
                dt.datetime(2026, 1, 5, 8),
            ],
            "behavior": ["c", "b", "a"],
            "domain": ["app1", None, "app2"],
        }
    ).with_columns(pl.col("timestamp").dt.replace_time_zone("Europe/Paris")).write_parquet(src)
    summary = import_events(src, tmp_path / "out")
    assert summary.rows_quarantined == 0 and summary.quarantine_path is None
    assert summary.one_line().endswith("none quarantined")
    events = pl.read_parquet(tmp_path / "out" / EVENTS_FILE)
    assert dict(events.schema) == EVENT_SCHEMA
    assert events.rows() == [
        ("1", dt.datetime(2026, 1, 5, 8), "a", "unknown", "app2"),
        ("1", dt.datetime(2026, 1, 5, 8, 30), "b", "unknown", "default"),
        ("2", dt.datetime(2026, 1, 5, 9), "c", "unknown", "app1"),
    ]
    assert set(verify_manifest(tmp_path / "out")["files"]) == {EVENTS_FILE}


def test_timestamp_format_and_stale_quarantine(tmp_path, csv_source):
    out = tmp_path / "out"
    import_events(csv_source, out, mapping=MAPPING)
    assert (out / QUARANTINE_FILE).exists()
    src = tmp_path / "eu.csv"
    src.write_text("uid,ts,event\nx,05/01/2026 08:00,open\nx,06/01/2026 09:15,close\n")
    summary = import_events(src, out, mapping=MAPPING, timestamp_format="%d/%m/%Y %H:%M")
    assert summary.rows_written == 2 and not (out / QUARANTINE_FILE).exists()
    events = pl.read_parquet(out / EVENTS_FILE)
    assert events["timestamp"].to_list() == [
        dt.datetime(2026, 1, 5, 8),
        dt.datetime(2026, 1, 6, 9, 15),
    ]


def test_no_valid_rows_raises_but_keeps_quarantine(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("user_id,timestamp,behavior\n,2026-01-05,a\nu,never,b\n")
    with pytest.raises(DataError, match="none of its 2 rows is valid"):
        import_events(src, tmp_path / "out")
    assert pl.read_parquet(tmp_path / "out" / QUARANTINE_FILE).height == 2
