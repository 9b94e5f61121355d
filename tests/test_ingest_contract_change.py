"""What a real export and a changing contract do to an ingested dataset (a new user's trial on
nycflights13 exports): a contract type change, pandas-written Parquet, Excel-saved CSV, a renamed column."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from rsft.config import ContractConfig
from rsft.ingest import ingest, scan_dataset
from rsft.ingest.manifest import dataset_digest
from rsft.ingest.plan import ContractChanged


def _contract(distance: str = "float64", **kw) -> ContractConfig:
    return ContractConfig(name="flights", partition_by=["date"], columns=[
        {"name": "line_id", "dtype": "str"}, {"name": "ts", "dtype": "timestamp"},
        {"name": "distance", "dtype": distance, "min": 0}, {"name": "air_time", "dtype": "float64", "nullable": True},
    ], **kw)


def _csv(path: Path, day: int, n: int = 4) -> str:
    rows = [f"AA,2013-07-{day:02d}T{h:02d}:00:00Z,{100 + h},{30 + h}" for h in range(n)]
    path.write_text("line_id,ts,distance,air_time\n" + "\n".join(rows) + "\n")
    return str(path)


def _exports(tmp_path: Path, days=(1, 2)) -> tuple[Path, Path]:
    """(raw, ds): one CSV export per day under raw/, and where the dataset goes."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for d in days:
        _csv(raw / f"f{d}.csv", d)
    return raw, tmp_path / "ds"


def test_contract_type_change_ingests_the_files_again(tmp_path):
    raw, ds = _exports(tmp_path, (1, 2, 3))
    assert [r.status for r in ingest(str(raw), ds, _contract()).files] == ["ok"] * 3
    assert scan_dataset(ds).collect()["distance"].dtype == pl.Float64
    digest_before = dataset_digest(ds)
    _csv(raw / "f4.csv", 4)
    res = ingest(str(raw), ds, _contract("int64")).files
    assert [r.status for r in res] == ["ok"] * 4  # the 3 earlier files ingested again, not skipped
    df = scan_dataset(ds).collect()  # one schema: this read fails on Float64 + Int64 parts
    assert df["distance"].dtype == pl.Int64 and df.height == 16  # nothing lost, nothing doubled
    assert df.select("_source", "_row").is_unique().all()
    # the files ingested again have new part names and the dataset a new digest: what was computed
    # from the old parts (the kept pool's days, a night's selection) is not reused
    parts = [p.name for p in (ds / "data").rglob("*.parquet")]
    assert len(parts) == 4 and sum("-t" in p for p in parts) == 3
    assert dataset_digest(ds) != digest_before
    # unchanged contract: skipped again; each file has one manifest entry
    assert [r.status for r in ingest(str(raw), ds, _contract("int64")).files] == ["skipped"] * 4
    assert len(list((ds / "_manifest").glob("*.json"))) == 4


def test_contract_type_change_with_an_export_gone_refuses(tmp_path):
    raw, ds = _exports(tmp_path)
    ingest(str(raw), ds, _contract())
    (raw / "f1.csv").unlink()  # exports moved away after ingest: they cannot be ingested again
    before = sorted(p.name for p in (ds / "data").rglob("*.parquet"))
    with pytest.raises(ContractChanged, match=r"distance: float64 → int64.*f1\.csv.*revert"):
        ingest(str(raw), ds, _contract("int64"))
    assert sorted(p.name for p in (ds / "data").rglob("*.parquet")) == before  # nothing touched
    assert scan_dataset(ds).collect()["distance"].dtype == pl.Float64


def _pandas_parquet(path: Path, distance: list) -> str:
    """As pandas writes it: whole numbers as int64, the timestamp as a string."""
    n = len(distance)
    pl.DataFrame({"line_id": ["AA"] * n, "ts": [f"2013-11-01T{h:02d}:00:00Z" for h in range(n)],
                  "distance": pl.Series(distance, dtype=pl.Int64), "air_time": [30.5] * n}).write_parquet(path)
    return str(path)


def test_parquet_int64_for_a_float64_column(tmp_path):
    src = _pandas_parquet(tmp_path / "nov.parquet", [100, 2**53, 2**53 + 1, 17])
    # strict: the error names the setting that would accept the file
    typed_ts = tmp_path / "typed_ts.parquet"
    pl.read_parquet(src).with_columns(pl.col("ts").str.to_datetime(time_zone="UTC")).write_parquet(typed_ts)
    res = ingest([str(typed_ts)], tmp_path / "a", _contract()).files[0]
    assert res.status == "failed"
    assert "column distance: expected float64 (double), found int64" in res.error
    assert "parquet_types: cast_if_lossless would accept it" in res.error
    # cast_if_lossless: every value exact as float64 ingested; the one beyond 2^53 quarantined, with why
    res = ingest([src], tmp_path / "b", _contract(parquet_types="cast_if_lossless")).files[0]
    assert (res.status, res.rows_ok, res.rows_quarantined) == ("ok", 3, 1)
    df = scan_dataset(tmp_path / "b").collect().sort("_row")
    assert df["distance"].dtype == pl.Float64 and df["distance"].to_list() == [100.0, 2.0**53, 17.0]
    q = pl.read_parquet(next((tmp_path / "b" / "quarantine").glob("*.parquet")))
    assert q["reason"].to_list() == ["distance: integer beyond ±2^53, not exact as float64"]
    assert q["distance"].to_list() == [str(2**53 + 1)]


def test_parquet_type_errors_say_which_setting_accepts_the_file(tmp_path):
    """The hint names the setting by its full key path (a contract of a config: ingest.sensors.…)."""
    from rsft.config import IngestConfig

    src = _pandas_parquet(tmp_path / "nov.parquet", [100, 200])
    text = tmp_path / "text.parquet"  # a float64 column exported as text: strict refuses it
    pl.read_parquet(src).with_columns(pl.col("air_time").cast(pl.String)).write_parquet(text)
    strict = IngestConfig(sensors=_contract("int64")).sensors
    res = ingest([str(text)], tmp_path / "a", strict).files[0]
    assert res.error.endswith("column air_time: expected float64 (double), found string — ingest.sensors.parquet_types: "
                              "cast_if_lossless would accept it (each value parsed as the contract's text is; a value "
                              "that is not: quarantined)")
    f = tmp_path / "f.parquet"
    pl.read_parquet(src).with_columns(pl.col("distance").cast(pl.Float64)).write_parquet(f)
    lossless = IngestConfig(sensors=_contract("int64", parquet_types="cast_if_lossless")).sensors
    res = ingest([str(f)], tmp_path / "b", lossless).files[0]
    assert res.error.endswith("column distance: expected int64, found float64 — no value of ingest.sensors.parquet_types "
                              "accepts it (no exact cast); dtype: float64 on column distance of ingest.sensors would")


@pytest.mark.parametrize("policy", [{}, {"naive_timestamps": "assume_utc"}, {"utc_only": True}])
def test_parquet_string_timestamps_are_read_as_the_csv_reads_them(tmp_path, policy):
    """(trial M4) ISO text timestamps in a Parquet export, under the default parquet_types (strict):
    parsed as the CSV's text is — the same shapes accepted, an unparsable or naive value quarantined
    per row with the same reason (or a naive one taken as UTC under assume_utc), an offset converted
    to UTC — so a CSV and a Parquet export of the same strings ingest the same rows."""
    stamps = ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00.250Z", "2026-01-01T03:00:00+01:00",
              "2026-01-01T03:00:00", " 2026-01-01T04:00:00Z ", "not a time", "2026-13-01T00:00:00Z"]
    n = len(stamps)
    frame = pl.DataFrame({"line_id": ["AA"] * n, "ts": stamps, "distance": [100.0 + i for i in range(n)],
                          "air_time": [30.0] * n})
    csv, pq = tmp_path / "x.csv", tmp_path / "x.parquet"
    frame.write_csv(csv)
    frame.write_parquet(pq)
    assert pl.read_parquet_schema(pq)["ts"] == pl.String
    contract = _contract(**policy)
    a = ingest([str(csv)], tmp_path / "csv", contract).files[0]
    b = ingest([str(pq)], tmp_path / "pq", contract).files[0]
    assert b.status == "ok", b.error
    assert (a.rows_ok, a.rows_quarantined) == (b.rows_ok, b.rows_quarantined)
    assert b.rows_quarantined >= 2  # "not a time" and month 13, whatever the policy

    def rows(ds):
        return scan_dataset(ds).collect().sort("_row").select("_row", "ts", "distance")

    def reasons(ds):
        return pl.read_parquet(next((ds / "quarantine").glob("*.parquet"))).sort("_row").select("_row", "reason")

    assert rows(tmp_path / "pq").equals(rows(tmp_path / "csv"))
    assert reasons(tmp_path / "pq").equals(reasons(tmp_path / "csv"))
    got = rows(tmp_path / "pq")
    assert got["ts"].dtype == pl.Datetime("us", "UTC")
    if not policy.get("utc_only"):  # +01:00 converted to UTC (refused per row under utc_only)
        assert got.filter(pl.col("_row") == 3)["ts"].to_list()[0].hour == 2
    assert (3 in got["_row"].to_list()) != bool(policy.get("utc_only"))
    assert (4 in got["_row"].to_list()) == (policy.get("naive_timestamps") == "assume_utc")


def test_parquet_types_strict_still_refuses_a_timestamp_of_another_type(tmp_path):
    """Only text is read as the CSV reads it: a timestamp stored as integers (epoch) still fails the
    file under strict, naming the setting."""
    pl.DataFrame({"line_id": ["AA"], "ts": [1_700_000_000], "distance": [1.0], "air_time": [2.0]}).write_parquet(
        tmp_path / "epoch.parquet")
    res = ingest([str(tmp_path / "epoch.parquet")], tmp_path / "a", _contract()).files[0]
    assert res.status == "failed" and "column ts: expected timestamp, found int64" in res.error


def test_empty_lines_of_an_excel_csv_are_no_rows(tmp_path):
    """Excel's CSV: a BOM, ';', CRLF and a trailing empty line. An empty line is no row; a record of
    separators only is a row (of empty fields) and is quarantined."""
    lines = ["line_id;ts;distance;air_time", "AA;2013-12-01T05:00:00Z;1400;", "", "UA;2013-12-01T06:00:00Z;719;;",
             ";;;", "B6;2013-12-01T07:00:00Z;1065;150"]
    src = tmp_path / "flights_2013-12-01.csv"
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n\r\n")
    ds = tmp_path / "ds"
    res = ingest([str(src)], ds, _contract(sniff_delimiter=True)).files[0]
    assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", 4, 2, 2)
    q = pl.read_parquet(next((ds / "quarantine").glob("*.parquet"))).sort("_row")
    assert q["_row"].to_list() == [3, 4]  # "UA…;;" has a field too many; ";;;" is a row with no line_id
    assert q["reason"][1] == "missing line_id"
    entry = json.loads(next((ds / "_manifest").glob("*.json")).read_text())
    assert entry["blank_lines"] == 2 and entry["rows_quarantined"] == 2


def test_a_bare_carriage_return_in_a_field_does_not_shift_the_empty_lines(tmp_path):
    """(review L3) A bare \\r inside an unquoted field is a character of that field, as Polars
    reads it — the empty-line pass had ended a record there, numbered every later record one too
    far and taken the row of empty fields after the empty line for the empty line."""
    src = tmp_path / "f.csv"
    src.write_bytes(b"line_id,ts,distance,air_time\nAA,2013-12-01T05:00:00Z,1400,1\rx\n\n,,,\n"
                    b"B6,2013-12-01T07:00:00Z,1065,150\n")
    ds = tmp_path / "ds"
    res = ingest([str(src)], ds, _contract()).files[0]
    q = pl.read_parquet(next((ds / "quarantine").glob("*.parquet"))).sort("_row")
    # row 1: air_time "1\rx" is no number; row 2 the empty line: no row; row 3 ",,,": no line_id
    assert q["_row"].to_list() == [1, 3], q
    assert (res.rows_total, res.rows_ok, res.rows_quarantined) == (3, 1, 2)


def test_a_renamed_column_is_named_and_can_be_mapped_by_aliases(tmp_path):
    """air_time exported as air_time_min: the error names the file's unknown column; the column's
    aliases map it (CSV and Parquet), and the contract validates them."""
    src = tmp_path / "sep.csv"
    src.write_text("line_id,ts,distance,air_time_min\nAA,2013-09-01T05:00:00Z,1400,\nUA,2013-09-01T06:00:00Z,719,95\n")
    from rsft.config import IngestConfig

    res = ingest([str(src)], tmp_path / "a", IngestConfig(sensors=_contract()).sensors).files[0]
    assert res.error == ("sep.csv: missing column(s): air_time (every contract column must be in the header, a nullable "
                         "one too) — the file has unknown column(s) air_time_min: if one is a missing column under "
                         "another name, list it in that column's aliases: [...] in ingest.sensors.columns")
    aliased = _contract().model_dump()
    aliased["columns"][3]["aliases"] = ["air_time_min", "airtime"]
    contract = ContractConfig.model_validate(aliased)
    pq = tmp_path / "sep.parquet"
    pl.read_csv(src, infer_schema=False).with_columns(pl.col("air_time_min").cast(pl.Float64),
                                                      pl.col("distance").cast(pl.Float64)).write_parquet(pq)
    res = ingest([str(src), str(pq)], tmp_path / "b", contract.model_copy(update={"parquet_types": "cast_if_lossless"})).files
    assert [(r.status, r.rows_ok) for r in res] == [("ok", 2), ("ok", 2)], res
    df = scan_dataset(tmp_path / "b").collect()
    assert "air_time_min" not in df.columns and sorted(df["air_time"].to_list(), key=str) == [95.0, 95.0, None, None]
    both = tmp_path / "both.csv"
    both.write_text("line_id,ts,distance,air_time_min,airtime\nAA,2013-09-01T05:00:00Z,1400,1,1\n")
    assert "the file has 2 of its aliases (air_time_min, airtime)" in ingest([str(both)], tmp_path / "c", contract).files[0].error
    aliased["columns"][3]["aliases"] = ["distance"]
    with pytest.raises(ValueError, match="'distance' named twice in the contract"):
        ContractConfig.model_validate(aliased)


def test_entries_from_before_types_were_recorded(tmp_path):
    """A manifest entry without ``dtypes`` (ingested by an earlier rsft): its types are read from its
    data part, once, and recorded; an unchanged contract still skips it, a changed one ingests it again."""
    raw = tmp_path / "raw"
    raw.mkdir()
    _csv(raw / "f1.csv", 1)
    ds = tmp_path / "ds"
    ingest(str(raw), ds, _contract())
    entry_path = next((ds / "_manifest").glob("*.json"))
    old = {k: v for k, v in json.loads(entry_path.read_text()).items() if k != "dtypes"}
    entry_path.write_text(json.dumps(old))
    assert ingest(str(raw), ds, _contract()).files[0].status == "skipped"
    assert json.loads(entry_path.read_text())["dtypes"]["distance"] == "float64"
    entry_path.write_text(json.dumps(old))
    assert ingest(str(raw), ds, _contract("int64")).files[0].status == "ok"
    assert scan_dataset(ds).collect()["distance"].dtype == pl.Int64


def test_a_contract_change_never_loses_ingested_rows(tmp_path):
    """(review) An added column is no reason to ingest old exports again (they cannot have it), and
    a file that fails to be ingested again under new types keeps its rows as they were — it had
    deleted the dataset's history; the night then stops in one line instead of mixing two types."""
    from rsft.pipeline.data import check_retyped
    from rsft.pipeline.results import DatasetIngest, Ingested

    raw, ds = _exports(tmp_path)
    ingest(str(raw), ds, _contract())
    wider = _contract()
    wider = ContractConfig(**{**wider.model_dump(), "columns": [*wider.model_dump()["columns"],
                                                                 {"name": "tail", "dtype": "str", "nullable": True}]})
    assert [r.status for r in ingest(str(raw), ds, wider).files] == ["skipped"] * 2  # not ingested again
    assert scan_dataset(ds).collect().height == 8
    # a type change a Parquet export cannot meet (float64 written, int64 asked, strict types): it
    # fails to be ingested again and keeps its rows; the CSVs are ingested again as int64
    pl.read_csv(_csv(tmp_path / "f3.csv", 3), try_parse_dates=True).with_columns(
        pl.col("distance").cast(pl.Float64), pl.col("air_time").cast(pl.Float64)).write_parquet(raw / "f3.parquet")
    ingest(str(raw), ds, _contract())
    before = scan_dataset(ds).collect().height
    res = {r.file: r for r in ingest(str(raw), ds, _contract("int64")).files}
    assert res["f1.csv"].status == "ok" and res["f3.parquet"].status == "failed", res
    assert "its rows stay as ingested before" in res["f3.parquet"].error
    rows = pl.concat([pl.read_parquet(p) for p in (ds / "data").rglob("*.parquet")], how="diagonal_relaxed")
    assert rows.height == before and rows.filter(pl.col("_source").str.ends_with("f3.parquet")).height == 4
    night = Ingested({"sensors": DatasetIngest("sensors", 2, 0, 0, 0, 0, files_failed=(res["f3.parquet"].error,))})
    with pytest.raises(ValueError, match="could not be ingested again under the contract's new column types"):
        check_retyped(night)


def test_parquet_float32_for_a_float64_column(tmp_path):
    """(review) A float32 Parquet column (pandas, numpy exports) for a float64 contract column:
    accepted under cast_if_lossless — each value as the decimal the export showed, which rounds back
    to the same float32 —, refused under strict with the setting named (not "dtype: float64", the
    contract's own)."""
    import numpy as np

    src = _pandas_parquet(tmp_path / "nov.parquet", [100, 200])
    f = tmp_path / "f32.parquet"
    pl.read_parquet(src).with_columns(pl.Series("distance", [0.1, 1234.5], dtype=pl.Float32)).write_parquet(f)
    res = ingest([str(f)], tmp_path / "a", _contract()).files[0]
    assert res.status == "failed" and "cast_if_lossless would accept it" in res.error and "dtype:" not in res.error
    res = ingest([str(f)], tmp_path / "b", _contract(parquet_types="cast_if_lossless")).files[0]
    assert (res.status, res.rows_ok) == ("ok", 2), res
    got = scan_dataset(tmp_path / "b").collect().sort("_row")["distance"].to_numpy()
    assert got.tolist() == [0.1, 1234.5] and (got.astype(np.float32) == np.array([0.1, 1234.5], np.float32)).all()


def test_a_failed_reingest_leaves_another_process_s_new_parts_alone(tmp_path):
    """(review L4) A re-ingest that fails removes the new-typed parts an earlier killed attempt
    left; it does so holding the dataset's lock, so parts another process has just published for
    the same file (their manifest entry not yet written) are never taken for leftovers."""
    import threading
    import time

    from rsft.ingest.manifest import _write_entry, contract_dtypes, data_stem, read_entry
    from rsft.ingest.plan import FilePlan, file_digest
    from rsft.ingest.run import _ingest_file
    from rsft.ingest.unique import dataset_lock

    raw, ds = _exports(tmp_path, (1,))
    pl.read_csv(_csv(tmp_path / "f3.csv", 3), try_parse_dates=True).with_columns(
        pl.col("distance").cast(pl.Float64), pl.col("air_time").cast(pl.Float64)).write_parquet(raw / "f3.parquet")
    ingest(str(raw), ds, _contract())
    path = str(raw / "f3.parquet")
    digest = file_digest(path)
    plan = FilePlan(path, "f3.parquet", digest, reingest=True)  # int64 asked of a float64 Parquet: fails
    new = _contract("int64")
    theirs = ds / "data" / "date=2013-07-03" / f"{data_stem(digest, contract_dtypes(new))}.parquet"
    results = []
    with dataset_lock(ds):  # the other process: publishes its new-typed part, then its entry
        theirs.write_bytes(b"their new part")
        t = threading.Thread(target=lambda: results.append(_ingest_file(plan, ds, new)))
        t.start()
        time.sleep(1.0)
        assert t.is_alive()  # the failed re-ingest waits for the lock before cleaning up
        entry = read_entry(ds, digest)
        _write_entry(ds, digest, {**entry, "outputs": [*entry["outputs"], str(theirs)]})
    t.join(30)
    assert results and results[0].status == "failed"
    assert theirs.exists()  # listed by the entry by the time the clean-up looked


def test_ingesting_a_copied_dataset_again_leaves_the_original_alone(tmp_path):
    """Manifest entries record where their parts were written: a copy of the dataset (a state dir
    copied to try a setting) ingested again under new types replaces the copy's parts, never the
    original's (the copy's re-ingest deleted the original's parts)."""
    import shutil

    raw, ds = _exports(tmp_path)
    ingest(str(raw), ds, _contract())
    before = sorted(str(p.relative_to(ds)) for p in (ds / "data").rglob("*.parquet"))
    copy = tmp_path / "copy"
    shutil.copytree(ds, copy)
    assert [r.status for r in ingest(str(raw), copy, _contract("int64")).files] == ["ok"] * 2
    assert sorted(str(p.relative_to(ds)) for p in (ds / "data").rglob("*.parquet")) == before
    assert scan_dataset(ds).collect()["distance"].dtype == pl.Float64 and scan_dataset(ds).collect().height == 8
    # the copy holds the new-typed parts only (its old ones replaced): one schema, nothing doubled
    assert scan_dataset(copy).collect()["distance"].dtype == pl.Int64 and scan_dataset(copy).collect().height == 8


@pytest.mark.parametrize("policy", [{}, {"naive_timestamps": "assume_utc"}])
def test_a_space_between_date_and_time_is_read_as_the_t_form(tmp_path, policy):
    """(trial 6) pandas' to_csv of a zoned column writes `2013-10-07 00:00:00-04:00` (RFC 3339
    allows the space): it was quarantined as "unparseable timestamp" with a hint to check the dtype,
    and no setting brought it back. The same instants as the T form; a naive space form is a
    "timestamp without time zone" (naive_timestamps decides), like the naive T form."""
    from rsft.pipeline.targets import setting_for

    spaced = ["2013-10-07 00:00:00-04:00", "2013-10-07 01:00:00.5+00:00", "2013-10-07 02:00:00Z", "2013-03-25 00:00:00"]
    n = len(spaced)

    def frame(stamps):
        return pl.DataFrame({"line_id": ["AA"] * n, "ts": stamps, "distance": [1.0 * i for i in range(n)],
                             "air_time": [30.0] * n})

    frame(spaced).write_csv(tmp_path / "space.csv")
    frame([t.replace(" ", "T", 1) for t in spaced]).write_csv(tmp_path / "t.csv")
    contract = _contract(**policy)
    a = ingest([str(tmp_path / "space.csv")], tmp_path / "a", contract).files[0]
    b = ingest([str(tmp_path / "t.csv")], tmp_path / "b", contract).files[0]
    naive_ok = policy.get("naive_timestamps") == "assume_utc"
    assert (a.rows_ok, a.rows_quarantined) == (b.rows_ok, b.rows_quarantined) == ((4, 0) if naive_ok else (3, 1))
    rows = [scan_dataset(tmp_path / d).collect().sort("_row").select("_row", "ts") for d in ("a", "b")]
    assert rows[0].equals(rows[1]) and rows[0]["ts"].to_list()[0].hour == 4  # -04:00 → UTC
    if not naive_ok:
        q = pl.read_parquet(next((tmp_path / "a" / "quarantine").glob("*.parquet")))
        assert q["reason"].to_list() == ["ts: timestamp without time zone"]
        assert "naive_timestamps" in (setting_for(q["reason"][0], contract) or "")


def test_naive_wall_clock_times_of_a_zone_are_converted_to_utc(tmp_path):
    """(trial 6) A historian that writes local wall-clock time (America/New_York) could only be read
    as UTC (4-5 h off, rows on the wrong UTC day). naive_timestamps: assume_local with local_timezone
    converts them; a wall time the DST change skips (02:30 on 10 Mar 2013) or repeats (01:30 on
    3 Nov) is no single instant: quarantined with that reason. An offset keeps its own instant."""
    import pydantic

    stamps = ["2013-01-05 12:00:00", "2013-07-01T12:00:00", "2013-03-10 02:30:00", "2013-11-03 01:30:00",
              "2013-07-01T12:00:00+00:00"]
    n = len(stamps)
    pl.DataFrame({"line_id": ["AA"] * n, "ts": stamps, "distance": [float(i) for i in range(n)],
                  "air_time": [30.0] * n}).write_csv(tmp_path / "local.csv")
    contract = _contract(naive_timestamps="assume_local", local_timezone="America/New_York")
    res = ingest([str(tmp_path / "local.csv")], tmp_path / "ds", contract).files[0]
    assert (res.rows_ok, res.rows_quarantined) == (3, 2), res
    got = scan_dataset(tmp_path / "ds").collect().sort("_row")
    assert [(t.month, t.day, t.hour) for t in got["ts"].to_list()] == [(1, 5, 17), (7, 1, 16), (7, 1, 12)]
    q = pl.read_parquet(next((tmp_path / "ds" / "quarantine").glob("*.parquet"))).sort("_row")
    assert q["reason"].to_list() == ["ts: local time skipped or repeated by a DST change in America/New_York"] * 2
    with pytest.raises(pydantic.ValidationError, match="assume_local needs local_timezone"):
        _contract(naive_timestamps="assume_local")
    with pytest.raises(pydantic.ValidationError, match="unknown time zone 'Mars/Olympus'"):
        _contract(naive_timestamps="assume_local", local_timezone="Mars/Olympus")
