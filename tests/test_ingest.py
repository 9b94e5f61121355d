"""Ingest readers (file, dir, glob, file://, memory://) and an interrupted-then-resumed ingest (SIGKILL)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from rsft.config import SynthConfig, load_config
from rsft.ingest import ingest, scan_dataset
from rsft.synth import write_synthetic
from tests.conftest import BAD_INPUTS, REPO

CFG = load_config(REPO / "examples" / "factory.yaml")
SENSORS = CFG.ingest.sensors


def _rows(ds) -> pl.DataFrame:
    return scan_dataset(ds).collect().sort("_source", "_row")


def test_every_reader_and_source_form(tmp_path):
    ds = tmp_path / "ds"
    srcs = [str(BAD_INPUTS / "clean.csv"), str(BAD_INPUTS / "clean.csv.gz"), str(BAD_INPUTS / "clean.parquet")]
    res = ingest(srcs, ds, SENSORS).files
    assert [r.rows_ok for r in res] == [50, 40, 40]
    # a glob, a directory and a file:// URI of the same files are the same (already ingested) files
    assert all(r.status == "skipped" for r in ingest(str(BAD_INPUTS / "clean.*"), ds, SENSORS).files)
    d = tmp_path / "dir"
    d.mkdir()
    shutil.copy(BAD_INPUTS / "crlf.csv", d / "a.csv")
    res = ingest([(d / "a.csv").as_uri()], tmp_path / "ds2", SENSORS).files
    assert res[0].rows_ok == 30
    assert ingest(str(d), tmp_path / "ds3", SENSORS).files[0].rows_ok == 30
    logs = ingest([str(BAD_INPUTS / "clean_maintenance.jsonl")], tmp_path / "logs", CFG.ingest.logs).files[0]
    assert logs.rows_ok == 20
    assert scan_dataset(tmp_path / "logs").collect()["category"].is_in(["bearing", "seal", "electrical", "sensor", "other"]).all()


def test_fsspec_memory_filesystem(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/plant/exports/day1.csv", (BAD_INPUTS / "clean.csv").read_bytes())
    fs.pipe("/plant/exports/day2.csv.gz", (BAD_INPUTS / "clean.csv.gz").read_bytes())
    res = ingest("memory://plant/exports", tmp_path / "ds", SENSORS).files
    assert sorted((r.file, r.rows_ok) for r in res) == [("day1.csv", 50), ("day2.csv.gz", 40)]
    again = ingest("memory://plant/exports", tmp_path / "ds", SENSORS).files
    assert all(r.status == "skipped" for r in again)
    assert not list((tmp_path / "ds" / "data").glob(".fetch-*")) and not list((tmp_path / "ds" / "data").glob(".gunzip-*"))


CHILD = """
import sys
from rsft.config import load_config
from rsft.ingest import ingest
cfg = load_config(sys.argv[3])
ingest(sys.argv[1], sys.argv[2], cfg.ingest.sensors)
"""


def test_killed_ingest_resumes_to_identical_rows(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic(SynthConfig(seed=5, machines=6, days=30, samples_per_day=600), raw)
    cfg = str(REPO / "examples" / "factory.yaml")
    pool = str(raw / "pool")
    # reference: uninterrupted
    subprocess.run([sys.executable, "-c", CHILD, pool, str(tmp_path / "ref"), cfg], check=True, cwd=REPO, timeout=300)
    # interrupted: SIGKILL once some (not all) files are done
    ds = tmp_path / "ds"
    p = subprocess.Popen([sys.executable, "-c", CHILD, pool, str(ds), cfg], cwd=REPO)
    man = ds / "_manifest"
    t0 = time.time()
    while time.time() - t0 < 120 and (not man.exists() or len(list(man.glob("*.json"))) < 3):
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = len(list(man.glob("*.json")))
    assert 0 < done < 30, f"kill landed at {done} of 30 files; the test needs a mid-run kill"
    subprocess.run([sys.executable, "-c", CHILD, pool, str(ds), cfg], check=True, cwd=REPO, timeout=300)
    assert _rows(ds).equals(_rows(tmp_path / "ref"))
    leftovers = [p for sub in ("data", "quarantine", "_manifest") if (ds / sub).exists() for p in (ds / sub).iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the killed process's temp files were cleaned up on resume


def test_partitioned_output_is_hive_by_machine_and_date_and_idempotent(tmp_path):
    c = SENSORS.model_copy(update={"partition_by": ["machine_id", "date"]})  # finer than the demo's [date]
    ds = tmp_path / "ds"
    res = ingest([str(BAD_INPUTS / "clean.csv"), str(BAD_INPUTS / "out_of_range.csv")], ds, c).files
    got = scan_dataset(ds).collect()
    assert got.height == sum(r.rows_ok for r in res)
    parts = sorted((ds / "data").rglob("*.parquet"))
    for p in parts:  # every file holds exactly the rows its directory names
        m, d = p.parent.parent.name.split("=")[1], p.parent.name.split("=")[1]
        df = pl.read_parquet(p)
        assert (df["machine_id"] == m).all() and (df["date"].cast(pl.String) == d).all()
    assert len({p.parent for p in parts}) == got.select("machine_id", "date").unique().height
    assert all(r.status == "skipped" for r in ingest(str(BAD_INPUTS / "clean.csv"), ds, c).files)
    assert sorted((ds / "data").rglob("*.parquet")) == parts


def test_cheap_first_pass_never_decides_alone(tmp_path):
    """Rows the fast pass flags get the full check: padded numbers are kept (same value as the
    full parse), text in a number column is quarantined, duplicates are found across batches."""
    src = tmp_path / "x.csv"
    lines = (BAD_INPUTS / "clean.csv").read_text().splitlines()
    head, first = lines[0], lines[1].split(",")
    padded = list(first)
    padded[2], padded[1] = f" {first[2]} ", first[1].replace("00Z", "01Z")
    words = list(first)
    words[3], words[1] = "hot", first[1].replace("00Z", "02Z")
    src.write_text("\n".join([head, *lines[1:], ",".join(padded), ",".join(words), lines[5]]) + "\n")
    res = ingest(str(src), tmp_path / "ds", SENSORS, chunk_rows=7).files[0]  # the repeat of row 5 is batches later
    assert (res.rows_total, res.rows_ok, res.rows_quarantined) == (53, 51, 2)
    df = scan_dataset(tmp_path / "ds").collect()
    assert df.filter(pl.col("_row") == 51)["s01"].item() == float(first[2])
    from rsft.ingest import scan_quarantine

    q = dict(scan_quarantine(tmp_path / "ds").select("_row", "reason").collect().iter_rows())
    assert q == {52: "s02 not a number", 53: "duplicate row"}


def test_progress_events_account_for_every_row(tmp_path):
    from rsft import progress

    seen = []
    with progress.listen(lambda event, **f: seen.append((event, f))):
        res = ingest([str(BAD_INPUTS / "clean.csv"), str(BAD_INPUTS / "out_of_range.csv"), str(BAD_INPUTS / "empty.csv")],
                     tmp_path / "ds", SENSORS, chunk_rows=16).files
    plan = [f for e, f in seen if e == "ingest.plan"]
    assert plan[0]["files"] == 3 and plan[0]["bytes"] > 0
    assert sum(f["rows"] for e, f in seen if e == "ingest.rows") == sum(r.rows_total or 0 for r in res)
    assert [f["status"] for e, f in seen if e == "ingest.file"] == [r.status for r in res]
    ingest(str(BAD_INPUTS / "clean.csv"), tmp_path / "ds", SENSORS)  # no listener: nothing to call, no error


def test_fast_pass_accepts_only_what_the_full_check_accepts_with_the_same_value():
    """The cheap pass (a fixed-format timestamp parser, plain casts) may flag a valid value, but
    never passes a value the full check rejects, and every value it passes parses identically."""
    from rsft.config import ColumnContract
    from rsft.ingest import _fast, _typed

    bank = {
        "timestamp": ["2026-01-01T00:00:00Z", "2026-1-1T0:0:0Z", "2026-01-01T00:00:00.250Z", "2026-01-01T01:00:00+01:00",
                      "2026-01-01T00:00:00+0000", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00z",
                      " 2026-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "", None, "garbage"],
        "float64": ["1.5", " 1.5", "1e3", "-0", "nan", "inf", "-inf", "1,5", "", None, "151", "0x10", "1.5.1", "+2",
                    "0", "150", "150.0000001", "-0.0000001", "NaN", "-Infinity", "1e400"],
        "int64": ["1", " 1", "1.0", "-3", "", None, "9223372036854775808", "1e3"],
        "bool": ["true", "True", "1", "0", "false", "yes", "", None],
        "str": ["M01", "M1", " M01", "", None, "M99", "RUN", " ", "\t", "IDLE"],
    }
    # (min, max, finite) for float64 — both bounds and finite take the one-comparison flag; (pattern,
    # allowed) for str — an allowed set without a blank member drops the blank-text check
    variants = {"float64": [(0, 150, True), (0, 150, False), (0, None, True), (None, 150, True), (0, float("inf"), True),
                            (float("-inf"), float("inf"), True)],
                "str": [("M[0-9]{2}", None), (None, ["RUN", "IDLE"]), (None, ["RUN", " "]), (None, None)]}
    for dtype, values in bank.items():
        for nullable, policy, variant in ((n, p, v) for n in (False, True) for p in ("reject", "assume_utc")
                                          for v in variants.get(dtype, [None])):
            kw = ({"min": variant[0], "max": variant[1], "finite": variant[2]} if dtype == "float64" else
                  {"pattern": variant[0], "allowed": variant[1]} if dtype == "str" else {})
            col = ColumnContract(name="c", dtype=dtype, nullable=nullable, **kw)
            fast_v, flag = _fast(col)
            full_v, reason = _typed(col, policy)
            out = pl.DataFrame({"c": values}, schema={"c": pl.String}).with_columns(
                fast_v.alias("fv"), flag.alias("flag"), full_v.alias("tv"), reason.alias("reason"))
            passed = out.filter(~pl.col("flag"))
            assert passed["reason"].null_count() == passed.height, (dtype, nullable, policy, passed.to_dicts())
            assert passed["fv"].to_list() == passed["tv"].to_list(), (dtype, policy, passed.to_dicts())
            assert out.filter(pl.col("flag")).height >= out["reason"].is_not_null().sum()


def test_row_hash_tells_rows_apart_that_differ_in_one_column_null_and_empty_included():
    from rsft.ingest.stream import _row_hash

    rows = [("a", "b", "c"), ("b", "a", "c"), ("a", "b", None), ("a", "b", ""), (None, "b", "c"), ("", "b", "c"),
            ("ab", "", "c"), ("a", "bc", ""), ("a", "b", "c")]
    df = pl.DataFrame(rows, schema={"x": pl.String, "y": pl.String, "z": pl.String}, orient="row")
    h = df.select(_row_hash(["x", "y", "z"]))[:, 0].to_list()
    assert h[0] == h[-1] and len(set(h[:-1])) == len(rows) - 1
    one = pl.DataFrame({"x": ["a", "b", "a"]}).select(_row_hash(["x"]))[:, 0].to_list()
    assert one[0] == one[2] != one[1]


def test_data_parts_store_row_numbers_and_timestamps_delta_encoded(tmp_path):
    """``_row`` (never repeated) and the timestamp column are delta-encoded, not dictionary-encoded;
    the rows read back unchanged."""
    import pyarrow.parquet as pq

    ingest(str(BAD_INPUTS / "clean.csv"), tmp_path / "ds", SENSORS)
    part = next((tmp_path / "ds" / "data").rglob("*.parquet"))
    meta = pq.ParquetFile(part).metadata
    for name in ("_row", "ts"):
        col = meta.row_group(0).column(meta.schema.names.index(name))
        assert "DELTA_BINARY_PACKED" in col.encodings and not any("DICT" in e for e in col.encodings)
    s01 = meta.row_group(0).column(meta.schema.names.index("s01"))
    assert any("DICT" in e for e in s01.encodings) and s01.compression.startswith("LZ4")  # numeric: LZ4
    assert meta.row_group(0).column(meta.schema.names.index("machine_id")).compression == "ZSTD"  # text: zstd
    back = pl.read_parquet(part)
    assert back["_row"].is_sorted() and back["ts"].dtype == pl.Datetime("us", "UTC")


def test_a_batch_of_nothing_but_repeats_is_quarantined_not_a_crash(tmp_path):
    """Duplicate detection across batches when whole batches repeat earlier rows (a log export
    concatenated twice): every repeat is quarantined as a duplicate, nothing fails."""
    from rsft.ingest import scan_quarantine

    lines = (BAD_INPUTS / "clean.csv").read_text().splitlines()
    src = tmp_path / "twice.csv"
    src.write_text("\n".join([lines[0], *lines[1:], *lines[1:], *lines[1:]]) + "\n")
    res = ingest(str(src), tmp_path / "ds", SENSORS, chunk_rows=10).files[0]  # batches 6.. are all repeats
    assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", 150, 50, 100), res.error
    reasons = scan_quarantine(tmp_path / "ds").collect()["reason"].unique().to_list()
    assert reasons == ["duplicate row"]


def test_jsonl_in_small_blocks_gives_the_same_dataset_quarantine_and_leaves_no_spool(tmp_path, monkeypatch):
    """JSONL is parsed in blocks of lines: tiny blocks (3 lines) give exactly the rows, quarantine
    reasons and line numbers of one big block, and nothing but the dataset remains."""
    import rsft.ingest.run as ingest_module

    spools = []
    real = ingest_module._read_jsonl
    monkeypatch.setattr(ingest_module, "_read_jsonl", lambda path, c, *a: spools.append(path) or real(path, c, *a))
    src = [str(BAD_INPUTS / "wrong_types.jsonl"), str(BAD_INPUTS / "clean_maintenance.jsonl")]
    out = {}
    for chunk in (3, 250_000):
        root = tmp_path / f"c{chunk}"
        s = ingest(src, root, CFG.ingest.logs, chunk_rows=chunk)
        assert all(f.status == "ok" for f in s.files), [f.error for f in s.files]
        q = pl.read_parquet(list((root / "quarantine").glob("*.parquet"))) if (root / "quarantine").exists() else None
        out[chunk] = (scan_dataset(root).sort("_source", "_row").collect(),
                      None if q is None else q.sort("_source", "_row").select("_source", "_row", "reason"))
        leftovers = [p for p in root.rglob("*") if "spool" in p.name or p.name.startswith(".staging")]
        assert leftovers == []
    assert len(spools) == 4
    assert out[3][0].equals(out[250_000][0])
    assert out[3][1] is not None and out[3][1].equals(out[250_000][1]) and out[3][1].height > 0


def test_clean_up_recognises_fsio_and_ingest_temp_names_of_a_dead_run_only(tmp_path):
    """A killed run's temp files — rsft.fsio names (manifest entry, quarantine part), the older
    ``.<name>.tmp-<pid>-<thread>`` form, staging directories and local copies — are removed on the
    next plan; a live process's (this one's) are left alone."""
    from rsft.fsio import temp_path
    from rsft.ingest import clean_orphans, plan_ingest

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead, me = int(child.stdout), os.getpid()
    ds = tmp_path / "ds"
    for sub in ("data", "quarantine", "_manifest"):
        (ds / sub).mkdir(parents=True)
    fsio_name = temp_path(ds / "_manifest" / "abc.json")
    assert f"-{me}-" in fsio_name.name
    dead_fsio = fsio_name.with_name(fsio_name.name.replace(f"-{me}-", f"-{dead}-", 1))
    dead_names = [dead_fsio, ds / "quarantine" / f".part-abc.parquet.tmp-{dead}-1", ds / "data" / f".fetch-{dead}-1-x.csv",
                  ds / "data" / f".gunzip-{dead}-1-x.csv", ds / "data" / f".staging-{dead}-1-abc.jsonl-spool"]
    live_names = [fsio_name, ds / "quarantine" / f".part-abc.parquet.tmp-{me}-1"]
    for p in dead_names + live_names:
        p.write_text("x")
    (ds / "data" / f".staging-{dead}-1-abc" / "date=2026-01-01").mkdir(parents=True)
    assert clean_orphans(ds) == len(dead_names) + 1
    assert sorted(p for sub in ("data", "quarantine", "_manifest") for p in (ds / sub).iterdir()) == sorted(live_names)
    plan_ingest(str(BAD_INPUTS / "clean.csv"), ds, SENSORS)  # planning cleans up first
    assert all(p.exists() for p in live_names)


def _ingest_within(seconds, *args, **kw):
    """``ingest(*args)`` in a thread, failing the test (not hanging it) if it does not return in time."""
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(ingest(*args, **kw)), daemon=True)
    t.start()
    t.join(seconds)
    assert out, f"ingest did not return within {seconds}s"
    return out[0]


def test_a_file_without_rows_and_no_partitions_writes_an_empty_part_with_the_schema(tmp_path):
    """A header-only CSV (and an empty JSONL export) under a contract without partition keys:
    ok with 0 rows, one empty data part with the typed schema, a manifest entry — the part is
    written before the writer thread stops (it used to be queued after, and the ingest hung)."""
    c = SENSORS.model_copy(update={"partition_by": []})
    res = _ingest_within(120, str(BAD_INPUTS / "header_only.csv"), tmp_path / "csv", c).files[0]
    assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", 0, 0, 0), res.error
    full = _ingest_within(120, str(BAD_INPUTS / "clean.csv"), tmp_path / "full", c).files[0]
    assert full.rows_ok == 50
    assert scan_dataset(tmp_path / "csv").collect().schema == scan_dataset(tmp_path / "full").collect().schema
    assert len(list((tmp_path / "csv" / "_manifest").glob("*.json"))) == 1
    (tmp_path / "empty.jsonl").write_bytes(b"")
    res = _ingest_within(120, str(tmp_path / "empty.jsonl"), tmp_path / "jsonl", CFG.ingest.logs).files[0]
    assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", 0, 0, 0), res.error
    assert scan_dataset(tmp_path / "jsonl").collect().height == 0


def test_empty_file_zero_rows_ingests_an_empty_export_as_a_file_of_no_rows(tmp_path):
    """``empty_file: zero_rows``: a zero-byte CSV, .csv.gz or Parquet file and a CSV of blank lines
    are files of 0 rows (status ok, a manifest entry, skipped on the next run), as a header-only
    CSV is; the corpus manifest's ``empty_file_is_zero_rows`` counts. Unpartitioned, a zero-byte
    CSV leaves the same empty part as a header-only one. A blank first line before data is still
    an error: that file is not empty."""
    corpus = {f["file"]: f for f in json.loads((BAD_INPUTS / "manifest.json").read_text())["files"]}
    assert corpus["empty.csv"]["by_policy"]["empty_file_is_zero_rows"] == {"file_error": False, "rows_total": 0, "rows_ok": 0,
                                                                           "rows_quarantined": 0}
    c = SENSORS.model_copy(update={"empty_file": "zero_rows"})
    (tmp_path / "in").mkdir()
    for name, data in (("zero.csv", b""), ("zero.csv.gz", b""), ("zero.parquet", b""), ("blank.csv", b"\r\n \n\n"),
                       ("bom.csv", b"\xef\xbb\xbf\n")):
        (tmp_path / "in" / name).write_bytes(data)
    files = [str(BAD_INPUTS / "empty.csv"), str(BAD_INPUTS / "header_only.csv")] + sorted(str(p) for p in (tmp_path / "in").iterdir())
    for i, f in enumerate(files):  # one dataset each: byte-identical empty files are duplicates of each other
        ds = tmp_path / f"ds{i}"
        res = ingest(f, ds, c).files[0]
        assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", 0, 0, 0), (f, res.error)
        entries = [json.loads(p.read_text()) for p in (ds / "_manifest").glob("*.json")]
        assert [(e["path"], e["rows_total"], e["rows_ok"], e["rows_quarantined"]) for e in entries] == [(f, 0, 0, 0)]
        assert ingest(f, ds, c).files[0].status == "skipped"
    flat = c.model_copy(update={"partition_by": []})
    zero = _ingest_within(120, str(BAD_INPUTS / "empty.csv"), tmp_path / "flat0", flat).files[0]
    header = _ingest_within(120, str(BAD_INPUTS / "header_only.csv"), tmp_path / "flat1", flat).files[0]
    assert zero.status == header.status == "ok"
    assert scan_dataset(tmp_path / "flat0").collect().equals(scan_dataset(tmp_path / "flat1").collect())
    (tmp_path / "gap.csv").write_text("\n" + (BAD_INPUTS / "clean.csv").read_text())
    res = ingest(str(tmp_path / "gap.csv"), tmp_path / "gap", c).files[0]
    assert res.status == "failed" and "empty file (no header)" in res.error


def test_empty_file_error_fails_an_empty_export_alone(tmp_path):
    """``empty_file: error`` (the default): a zero-byte or blank CSV and a zero-byte Parquet file
    fail alone with a one-line error and write nothing, no manifest entry; a header-only CSV is
    still a file of 0 rows. A JSONL export without lines (zero bytes, blank lines, a BOM, .gz too)
    is a file of 0 rows under JSONL's default (``zero_rows``: a quiet day's maintenance log has no
    events, as before the setting applied to JSONL), and fails when the config sets ``error``."""
    assert SENSORS.empty_file == "error"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blank.csv").write_bytes(b"\n\n")
    (tmp_path / "in" / "zero.parquet").write_bytes(b"")
    srcs = [str(BAD_INPUTS / "empty.csv"), str(tmp_path / "in" / "blank.csv"), str(tmp_path / "in" / "zero.parquet"),
            str(BAD_INPUTS / "header_only.csv")]
    ds = tmp_path / "ds"
    res = {r.file: r for r in ingest(srcs, ds, SENSORS.model_copy(update={"file_dedupe": "none"})).files}
    for name in ("empty.csv", "blank.csv", "zero.parquet"):
        assert res[name].status == "failed" and "\n" not in res[name].error and name in res[name].error, res[name]
    assert "empty file (no header)" in res["empty.csv"].error and "empty file (no header)" in res["blank.csv"].error
    assert "Parquet footer" in res["zero.parquet"].error
    assert (res["header_only.csv"].status, res["header_only.csv"].rows_total) == ("ok", 0)
    entries = [json.loads(p.read_text())["name"] for p in (ds / "_manifest").glob("*.json")]
    assert entries == ["header_only.csv"]
    assert not list(ds.rglob("*.parquet")) and not [p for p in ds.rglob(".*") if p.name != ".lock"]  # the publish lock stays
    (tmp_path / "logs").mkdir()
    for name, data in (("empty.jsonl", b""), ("blank.jsonl", b"\n \r\n\n"), ("bom.jsonl", b"\xef\xbb\xbf\n"),
                       ("blank.jsonl.gz", gzip.compress(b"\n\n"))):
        (tmp_path / "logs" / name).write_bytes(data)
    srcs = sorted(str(p) for p in (tmp_path / "logs").iterdir())
    assert CFG.ingest.logs.empty_file == "zero_rows"
    for i, src in enumerate(srcs):  # one dataset each: byte-identical empty files are duplicates of each other
        r = ingest(src, tmp_path / f"logs-zero{i}", CFG.ingest.logs).files[0]
        assert (r.status, r.rows_total, r.rows_ok) == ("ok", 0, 0), r
    logs = load_config(REPO / "examples" / "factory.yaml", {"ingest.logs.empty_file": "error",
                                                            "ingest.logs.file_dedupe": "none"}).ingest.logs
    for r in ingest(srcs, tmp_path / "logs-ds", logs).files:
        assert r.status == "failed" and r.error == (f"{r.file}: empty file (no lines) — ingest.logs.empty_file: "
                                                     "zero_rows would accept it as no rows"), r
    assert not (tmp_path / "logs-ds" / "_manifest").exists() or not list((tmp_path / "logs-ds" / "_manifest").glob("*.json"))


def test_records_with_too_many_fields_are_quarantined_not_the_whole_file(tmp_path):
    """A stray comma (one extra field) or a broken record with 750,016 fields: that record is
    quarantined with the structural reason and its full text, the rest of the file ingested."""
    from rsft.ingest import scan_quarantine

    lines = (BAD_INPUTS / "clean.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:6]
    stray = list(rows)
    stray[2] = stray[2] + ","  # one stray comma: 17 fields
    huge = list(rows)
    huge[3] = huge[3] + "," * 750_000  # 750,016 fields
    (tmp_path / "stray.csv").write_text("\n".join([header, *stray]) + "\n")
    (tmp_path / "huge.csv").write_text("\n".join([header, *huge]) + "\n")
    for name, row, n, text in [("stray", 3, 17, stray[2]), ("huge", 4, 750_016, huge[3])]:
        ds = tmp_path / f"ds-{name}"
        res = ingest([str(tmp_path / f"{name}.csv")], ds, SENSORS).files[0]
        assert res.status == "ok", res.error
        assert (res.rows_total, res.rows_ok, res.rows_quarantined) == (5, 4, 1)
        q = scan_quarantine(ds).collect()
        assert q.select("_row", "reason").rows() == [(row, f"wrong number of fields ({n}, expected 16)")]
        assert q["__line"][0] == text  # nothing lost
        assert sorted(_rows(ds)["_row"].to_list()) == [r for r in range(1, 6) if r != row]


def test_jsonl_quarantined_line_text_is_the_line_byte_for_byte(tmp_path):
    """A bulk-parsed JSONL row carries its line's byte range, and only the rows the full check
    sees get the text (_Blocks.fill_lines): a quarantined row's ``__line`` is its line as written,
    byte for byte (``\\u`` escapes, raw UTF-8, tabs and odd spacing, a CR before the newline),
    for rows flagged by the cheap pass, duplicates, and rows parsed line by line in the same
    block (a null, a number for a string); the data rows are the same as without the ranges."""
    from rsft.config import ColumnContract, ContractConfig

    contract = ContractConfig(name="j", format="jsonl", timestamp_column="ts", duplicate_rows="quarantine", columns=[
        ColumnContract(name="id", dtype="str", pattern="^M[0-9]{2}$"), ColumnContract(name="ts", dtype="timestamp"),
        ColumnContract(name="x", dtype="float64", min=0, max=100), ColumnContract(name="note", dtype="str", nullable=True)])
    good = [f'{{"id": "M{i % 7:02d}", "ts": "2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z", "x": {i * 0.5}, "note": "r{i}"}}'
            for i in range(60)]
    odd = ['{"id": "M01", "ts": "2026-01-01T00:00:00Z", "x": 500, "note": "caf\\u00e9 \\ud83d\\ude00"}',  # escapes
           '{"id": "M1", "ts": "2026-01-01T00:00:00+01:00", "x": 5, "note": null}',  # cheap pass + line parser
           '{ "id":"M01" ,\t"ts" :  "2026-01-01T00:00:00Z","x":-1 , "note": "t\\tab"   }',  # odd spacing
           '{"id": 5, "ts": "2026-01-01T00:00:00Z", "x": 5, "note": "a"}',  # a number for a string
           '{"id": "M01", "ts": "2026-01-01T00:00:00Z", "x": 101, "note": "caf\u00e9 \u65e5\u672c \U0001f600"}',  # raw UTF-8
           '{"id": "M01", "ts": "2026-01-01T00:00:00Z", "x": 200, "note": "crlf"}\r',
           good[3], good[10] + "  "]  # duplicates (the same values; trailing blanks)
    lines = []
    for i, line in enumerate(odd):
        lines += good[i * 7:i * 7 + 7] + [line]
    src = tmp_path / "logs.jsonl"
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    src.write_bytes(raw)
    texts = {i + 1: line.encode("utf-8") for i, line in enumerate(raw.decode("utf-8").split("\n")[:-1])}
    res = ingest(str(src), tmp_path / "ds", contract, chunk_rows=16).files[0]  # two odd lines a block
    assert res.status == "ok", res.error
    q = pl.concat([pl.read_parquet(p) for p in (tmp_path / "ds" / "quarantine").glob("*.parquet")]).sort("_row")
    assert q.height >= 8 and (q["reason"] == "duplicate row").sum() == 2, q.select("_row", "reason")
    for row, line in zip(q["_row"], q["__line"]):
        assert line.encode("utf-8") == texts[row], (row, line)
    kept = _rows(tmp_path / "ds")
    assert kept.height + q.height == len(lines) and "__lo" not in kept.columns and "__lo" not in q.columns


def test_jsonl_other_json_types_in_columns_the_cheap_pass_flags(tmp_path, monkeypatch):
    """A timestamp column and a str column of an allowed set are tested for a value of another JSON
    type (rendered as text by the bulk reader) only on the rows the cheap pass flags
    (_JsonlBlock.recheck); a row with such a value is named "wrong type" as by the line parser,
    and everything else is what the line parser gives too. A str column of an allowed set with a
    member that looks like a number is tested on every row."""
    from rsft.config import ColumnContract, ContractConfig
    from rsft.ingest import readers

    contract = ContractConfig(name="j", format="jsonl", timestamp_column="ts", duplicate_rows="quarantine", columns=[
        ColumnContract(name="ts", dtype="timestamp"), ColumnContract(name="cat", dtype="str", allowed=["a", "b"]),
        ColumnContract(name="lvl", dtype="str", allowed=["1", "2", "x"]), ColumnContract(name="note", dtype="str"),
        ColumnContract(name="id", dtype="str", pattern="^M[0-9]{2}$"), ColumnContract(name="code", dtype="str", pattern="E?[0-9]+")])
    assert readers._JsonlBlock(contract, readers._JsonlLines(contract), {}).safe == ["ts", "cat", "id"]
    assert [readers._starts_with_a_letter(p) for p in ("^M[0-9]{2}$", "Mx|5", "t[0-9]", "M*1", "[A-Z]1", "(?i)m1", "K+")] == [
        True, False, False, False, False, False, True]
    good = [json.dumps({"ts": f"2026-01-01T00:{i % 60:02d}:{i % 7:02d}Z", "cat": "ab"[i % 2], "lvl": "x", "note": f"n{i}",
                        "id": "M01", "code": "E1"}) for i in range(50)]
    odd = ['{"ts": 1767225600, "cat": "a", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}', '{"ts": "123", "cat": "a", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": true, "cat": "a", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}', '{"ts": [1, 2], "cat": "a", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": 5, "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": {"a": 1}, "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": "true", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": "c", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00+01:00", "cat": "a", "lvl": "x", "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": "a", "lvl": 1, "note": "n", "id": "M01", "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": "a", "lvl": "1", "note": 5, "id": "M01", "code": "E1"}',
           '{"ts": 5, "cat": 5, "lvl": "x", "note": "both", "id": "M01", "code": "E1"}', good[4],
           '{"ts": "2026-01-01T00:00:00Z", "cat": "a", "lvl": "x", "note": "n", "id": 12, "code": "E1"}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": "a", "lvl": "x", "note": "n", "id": "M01", "code": 12}',
           '{"ts": "2026-01-01T00:00:00Z", "cat": "a", "lvl": "x", "note": "n", "id": "M1", "code": "12"}']
    lines = []
    for i, line in enumerate(odd):
        lines += good[i * 3:i * 3 + 3] + [line]
    src = tmp_path / "logs.jsonl"
    src.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))

    def run(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
        res = ingest(str(src), root, contract, chunk_rows=8).files[0]
        assert res.status == "ok", res.error
        q = pl.concat([pl.read_parquet(p) for p in (root / "quarantine").glob("*.parquet")])
        return scan_dataset(root).sort("_row").collect(), q.sort("_row")

    rechecked = []
    real = readers._JsonlBlock.recheck
    monkeypatch.setattr(readers._JsonlBlock, "recheck", lambda self, *a: rechecked.append(1) or real(self, *a))
    bulk = run(tmp_path / "bulk")
    assert rechecked
    monkeypatch.setattr(readers._JsonlBlock, "block", lambda self, blk, first, ends=None: self._per_line(blk, first))
    per_line = run(tmp_path / "lines")
    assert bulk[0].equals(per_line[0]) and bulk[1].equals(per_line[1])
    reasons = dict(zip(bulk[1]["_row"], bulk[1]["reason"]))
    assert [reasons[4 * (k + 1)] for k in (0, 2, 3, 4, 5, 9, 10, 11)] == [
        "ts wrong type (int)", "ts wrong type (bool)", "ts wrong type (list)", "cat wrong type (int)",
        "cat wrong type (dict)", "lvl wrong type (int)", "note wrong type (int)", "ts wrong type (int)"]
    assert reasons[52] == "duplicate row"
    assert [reasons[56], reasons[60], reasons[64]] == ["id wrong type (int)", "code wrong type (int)", "id does not match ^M[0-9]{2}$"]


def test_jsonl_gzip_and_bom_read_like_plain(tmp_path, monkeypatch):
    """The JSONL reader's reused buffer (readinto) reads a gzip file, and a file starting with a
    UTF-8 BOM, in reads shorter than a line too, as the plain file: the same rows and line texts."""

    from rsft.ingest import readers

    lines = [json.dumps({"machine_id": f"M{i % 9:02d}", "ts": f"2026-01-01T00:00:{i % 60:02d}Z",
                         "category": "seal" if i % 5 else "bogus", "text": "x" * (1 + i % 97)}) for i in range(400)]
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    (tmp_path / "a.jsonl").write_bytes(raw)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + raw))
    out = {}
    for read in (1 << 24, 100):
        monkeypatch.setattr(readers, "JSONL_READ_BYTES", read)
        for name in ("a.jsonl", "b.jsonl.gz"):
            ds = tmp_path / f"ds-{name}-{read}"
            res = ingest(str(tmp_path / name), ds, CFG.ingest.logs, chunk_rows=64).files[0]
            assert (res.status, res.rows_total) == ("ok", 400), res.error
            q = pl.concat([pl.read_parquet(p) for p in (ds / "quarantine").glob("*.parquet")]).sort("_row")
            out[name, read] = (_rows(ds).drop("_source"), q.drop("_source"))
    first = out["a.jsonl", 1 << 24]
    assert first[1].height == 80 and first[1]["__line"].to_list() == [lines[i] for i in range(0, 400, 5)]
    for key, (d, q) in out.items():
        assert d.equals(first[0]) and q.equals(first[1]), key


def test_jsonl_fill_lines_any_row_order():
    """_Blocks.fill_lines: rows out of block order (not what the stream passes) get their own
    line's text too; rows that have a text keep it."""
    from rsft.ingest.readers import _Blocks

    b = _Blocks({}, None, None)
    b._block = "a\u00e9\nbb\n\u65e5\n".encode("utf-8")
    rows = pl.DataFrame({"__line": [None, "kept", None, None], "__lo": [7, None, 0, 4], "__hi": [11, None, 4, 7]},
                        schema={"__line": pl.String, "__lo": pl.Int64, "__hi": pl.Int64})
    assert b.fill_lines(rows).to_dict(as_series=False) == {"__line": ["\u65e5\n", "kept", "a\u00e9\n", "bb\n"]}
    assert b.fill_lines(rows.slice(2, 2)).to_dict(as_series=False) == {"__line": ["a\u00e9\n", "bb\n"]}


def test_a_binary_file_named_csv_says_what_it_is(tmp_path):
    """A Parquet (or gzip, zip) file named .csv fails with one line naming what it is, not a
    missing-columns error from reading its bytes as a header."""

    (tmp_path / "p.csv").write_bytes((BAD_INPUTS / "clean.parquet").read_bytes())
    (tmp_path / "g.csv").write_bytes(gzip.compress((BAD_INPUTS / "clean.csv").read_bytes()))
    res = {r.file: r for r in ingest([str(tmp_path / "p.csv"), str(tmp_path / "g.csv")], tmp_path / "ds", SENSORS).files}
    assert res["p.csv"].status == "failed"
    assert res["p.csv"].error == "p.csv: binary file, not CSV text — looks like Parquet"
    assert "looks like gzip" in res["g.csv"].error and "\n" not in res["g.csv"].error


def test_jsonl_bulk_parse_gives_what_the_line_parser_gives(tmp_path, monkeypatch):
    """The bulk JSONL path (Polars' NDJSON reader per block) vouches only for what it can: every
    row, value, reason, line number and quarantined line text equals the per-line parser's, on
    lines of every kind — wrong JSON types, nulls, missing and repeated keys, blank and CRLF
    lines, numbers written as integers, no final newline — in small blocks (some clean, some not).
    A quarantined number's text may be rendered differently ("500.0" for 500; ``__line`` keeps the line)."""
    from rsft.config import ColumnContract, ContractConfig
    from rsft.ingest import readers

    contract = ContractConfig(name="j", format="jsonl", timestamp_column="ts", columns=[
        ColumnContract(name="id", dtype="str", pattern="^M[0-9]{2}$"), ColumnContract(name="ts", dtype="timestamp"),
        ColumnContract(name="x", dtype="float64", min=0, max=100), ColumnContract(name="n", dtype="int64", nullable=True),
        ColumnContract(name="ok", dtype="bool"), ColumnContract(name="note", dtype="str", nullable=True)])
    good = [json.dumps({"id": f"M{i % 7:02d}", "ts": f"2026-01-01T00:{i % 60:02d}:00Z", "x": i * 0.5, "n": i,
                        "ok": i % 2 == 0, "note": f"reading {i} \u00e9"}) for i in range(40)]
    odd = ['{"id": "M01", "ts": "2026-01-01T00:00:00Z", "x": 3, "n": 2, "ok": true, "note": null}',  # int as float, null
           '{"id": "M01", "ts": "2026-01-01T00:00:00Z", "x": 3.5, "ok": true}',  # missing keys
           '{"id": 7, "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": "a"}',  # number for a string
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": "1.5", "n": 1, "ok": true, "note": "a"}',  # string for a number
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1.5, "n": 1.5, "ok": true, "note": "a"}',  # float for an int
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1.5, "n": 1, "ok": "yes", "note": "a"}',  # string for a bool
           '{"id": "M02", "id": "M03", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": false, "note": "a"}',  # key twice
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": false, "note": "\\"id\\": 5"}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 500, "n": 1, "ok": false, "note": "out of range"}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00+01:00", "x": 5, "n": 1, "ok": false, "note": "offset"}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 5, "n": 1, "ok": false, "note": "crlf"}\r',
           '', '   ', 'not json', '[1, 2]', '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1e400, "n": 1, "ok": true}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": NaN, "n": 1, "ok": true, "note": "nan"}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": [1, "a"]}',  # a list
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": {"id": 1}}',  # nested key
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": false}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": "123"}',  # text like a number
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": "true", "extra": 1}',
           '{"id": "M02", "ts": "2026-01-01T00:00:00Z", "x": 1, "n": 1, "ok": true, "note": "a", "ts": 5}']
    lines = []
    for i, line in enumerate(odd):  # odd lines spread among good ones: some blocks clean, some not
        lines += good[i * 2:i * 2 + 2] + [line]
    src = tmp_path / "logs.jsonl"
    src.write_bytes(("\n".join(lines + good[:9] + [good[39]])).encode("utf-8"))  # no final newline

    def run(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
        res = ingest(str(src), root, contract, chunk_rows=5).files[0]
        assert res.status == "ok" and res.rows_total == res.rows_ok + res.rows_quarantined, res
        q = pl.concat([pl.read_parquet(p) for p in (root / "quarantine").glob("*.parquet")], how="diagonal_relaxed")
        return scan_dataset(root).sort("_row").collect(), q.sort("_row")

    bulk_blocks = []
    real = readers.pl.read_ndjson
    monkeypatch.setattr(readers.pl, "read_ndjson", lambda *a, **k: bulk_blocks.append(1) or real(*a, **k))
    bulk = run(tmp_path / "bulk")
    assert len(bulk_blocks) > 5
    monkeypatch.setattr(readers._JsonlBlock, "block", lambda self, blk, first, ends=None: self._per_line(blk, first))
    per_line = run(tmp_path / "lines")
    assert bulk[0].equals(per_line[0])
    def same(q: pl.DataFrame) -> pl.DataFrame:
        return q.select(sorted(q.columns)).with_columns(pl.col("x", "n").cast(pl.Float64, strict=False))
    assert same(bulk[1]).equals(same(per_line[1]))
    assert bulk[1]["reason"].str.contains("wrong type").sum() == 6 and bulk[1].height >= 10
    # a key twice: the first value counts, in both parsers (Polars' reader keeps the first)
    row = {key: 1 + next(i for i, line in enumerate(lines) if key in line) for key in ('"id": "M02", "id"', '"ts": 5}')}
    assert bulk[0].filter(pl.col("_row") == row['"id": "M02", "id"'])["id"].to_list() == ["M02"]
    assert bulk[0].filter(pl.col("_row") == row['"ts": 5}'])["ts"].dt.minute().to_list() == [0]


_HEAD = "machine_id,ts," + ",".join(f"s{i:02d}" for i in range(1, 13)) + ",status,quality"


def _reading(machine: str, minute: int, value, offset: str = "Z") -> str:
    return f"{machine},2026-01-01T00:{minute:02d}:00{offset}," + ",".join([str(value)] * 12) + ",RUN,1.0"


def _unique_files(root: Path) -> tuple[Path, Path]:
    """a.csv: M01@00:01 twice with different values (rows 2, 3), M02@00:00 twice with equal values
    written differently (rows 4, 5), M01@00:02 written once in UTC and once as +01:00 with other
    values (rows 6, 7: one key); b.csv (another file, or a later night): M03@00:00 (a.csv has it
    with other values), M04 new, M02@00:00 as in a.csv."""
    root.mkdir(parents=True, exist_ok=True)
    a, b = root / "a.csv", root / "b.csv"
    a.write_text("\n".join([_HEAD, _reading("M01", 0, 1), _reading("M01", 1, 1), _reading("M01", 1, 2), _reading("M02", 0, 1),
                            _reading("M02", 0, "1.0"), _reading("M01", 2, 3), "M01,2026-01-01T01:02:00+01:00,"
                            + ",".join(["4"] * 12) + ",RUN,1.0", _reading("M03", 0, 5)]) + "\n")
    b.write_text("\n".join([_HEAD, _reading("M03", 0, 6), _reading("M04", 0, 1), _reading("M02", 0, 1)]) + "\n")
    return a, b


def _outcome(ds: Path) -> tuple[list, list, dict]:
    from rsft.ingest import scan_quarantine

    data = scan_dataset(ds).select("_source", "_row").sort("_source", "_row").collect().rows()
    q = scan_quarantine(ds).select("_source", "_row", "reason").sort("_source", "_row").collect().rows()
    entries = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in (ds / "_manifest").glob("*.json")}
    return data, q, entries


def test_unique_key_conflicts_within_a_file_and_across_files_per_policy(tmp_path):
    """``unique: [machine_id, ts]``: rows sharing the key with different values are a conflict
    (the key is the typed value: +01:00 and Z name one instant); each policy decides them, the
    manifest counts them, and rows with the same values are duplicates. Nothing is lost: rows
    in = written + quarantined, per file."""
    a, b = _unique_files(tmp_path / "src")
    U = "unique key (machine_id, ts): "
    expect = {
        "quarantine": ([("a.csv", 1), ("a.csv", 4), ("b.csv", 2)],
                       [("a.csv", 2, U + "rows with different values"), ("a.csv", 3, U + "rows with different values"),
                        ("a.csv", 5, "duplicate row"), ("a.csv", 6, U + "rows with different values"),
                        ("a.csv", 7, U + "rows with different values"),
                        # b's M03 conflicts with a's, which is published already and stays
                        ("b.csv", 1, U + "rows with different values"), ("b.csv", 3, "duplicate row (already in the dataset)")]),
        "keep_first": ([("a.csv", 1), ("a.csv", 2), ("a.csv", 4), ("a.csv", 6), ("a.csv", 8), ("b.csv", 2)],
                       [("a.csv", 3, U + "an earlier row has other values"), ("a.csv", 5, "duplicate row"),
                        ("a.csv", 7, U + "an earlier row has other values"),
                        ("b.csv", 1, U + "an earlier row has other values"), ("b.csv", 3, "duplicate row (already in the dataset)")]),
        "keep_all": ([("a.csv", r) for r in (1, 2, 3, 4, 6, 7, 8)] + [("b.csv", 1), ("b.csv", 2)],
                     [("a.csv", 5, "duplicate row"), ("b.csv", 3, "duplicate row (already in the dataset)")]),
    }
    expect["quarantine"][0].insert(2, ("a.csv", 8))
    for policy, (data, quarantined) in expect.items():
        c = SENSORS.model_copy(update={"unique": ["machine_id", "ts"], "unique_conflicts": policy,
                                       "partition_by": ["machine_id", "date"]})
        ds = tmp_path / policy
        s = ingest([str(a), str(b)], ds, c)
        got_data, got_q, entries = _outcome(ds)
        assert (got_data, got_q) == (data, quarantined), policy
        for f in s.files:
            assert f.status == "ok" and f.rows_total == f.rows_ok + f.rows_quarantined == entries[f.file]["rows_total"], f
        assert [f.rows_total for f in s.files] == [8, 3]
        assert entries["a.csv"]["unique"]["conflict_rows"] == 4 and entries["a.csv"]["unique"]["conflict_keys"] == 2
        assert entries["b.csv"]["unique"]["conflict_rows_with_earlier_files"] == 1
        assert [f.key_conflicts for f in s.files] == [4, 1]
        # a part whose rows all moved (b's M02 and M03 under quarantine) is not left behind empty
        parts = list((ds / "data").rglob("*.parquet"))
        kept = scan_dataset(ds).select("_source", "machine_id").unique().collect().height
        assert all(pl.read_parquet(p).height for p in parts) and len(parts) == kept


def test_unique_key_holds_across_nights_re_runs_and_a_replaced_file(tmp_path):
    """Keys from earlier nights count (the dataset is the scope): a later night's conflicting row
    is quarantined, a re-run changes nothing, and a changed export (same path, new content) is
    checked against the others only — not against the version it replaces."""
    a, b = _unique_files(tmp_path / "src")
    c = SENSORS.model_copy(update={"unique": ["machine_id", "ts"], "unique_conflicts": "keep_first"})
    ds = tmp_path / "ds"
    ingest([str(a)], ds, c)  # night 1
    night2 = ingest([str(a), str(b)], ds, c)  # night 2: a is done, b is new
    assert [f.status for f in night2.files] == ["skipped", "ok"]
    first = _outcome(ds)
    assert ("b.csv", 1, "unique key (machine_id, ts): an earlier row has other values") in first[1]
    again = ingest([str(a), str(b)], ds, c)  # a re-run: nothing to do, nothing changes
    assert [f.status for f in again.files] == ["skipped", "skipped"] and _outcome(ds)[:2] == first[:2]
    # a corrected a.csv (new values for M01@00:00): replaces its old rows, so it conflicts with
    # nothing it replaced; its M04 is b's, with other values: b's row stays, a's is quarantined.
    # (b's M03, quarantined against the old a, stays in quarantine: a replaced file frees no key.)
    a.write_text("\n".join([_HEAD, _reading("M01", 0, 9), _reading("M04", 0, 7), _reading("M05", 0, 1)]) + "\n")
    fixed = ingest([str(a), str(b)], ds, c)
    assert [f.status for f in fixed.files] == ["ok", "skipped"]
    data, q, entries = _outcome(ds)
    assert [r for r in data if r[0] == "a.csv"] == [("a.csv", 1), ("a.csv", 3)]
    assert [r for r in q if r[0] == "a.csv"] == [("a.csv", 2, "unique key (machine_id, ts): an earlier row has other values")]
    assert len(list((ds / "_keys").glob("*.parquet"))) == 2 == len(entries)  # the old a's index went with it


def test_unique_key_concurrent_files_keep_one_row_per_key(tmp_path):
    """Files of one night ingested at once (the ingest flow's threads) resolve their keys one at a
    time: every key ends up once in the dataset whichever file finishes first."""
    from concurrent.futures import ThreadPoolExecutor

    from rsft.ingest import ingest_file, plan_ingest

    src = tmp_path / "src"
    src.mkdir()
    for k in range(4):  # four files, every one with the same 300 keys and its own values
        (src / f"f{k}.csv").write_text("\n".join([_HEAD] + [_reading(f"M{m:02d}", t, k + 1) for m in range(1, 11)
                                                            for t in range(30)]) + "\n")
    c = SENSORS.model_copy(update={"unique": ["machine_id", "ts"], "unique_conflicts": "keep_first"})
    ds = tmp_path / "ds"
    plans = plan_ingest([str(src)], ds, c)
    with ThreadPoolExecutor(4) as pool:
        res = list(pool.map(lambda p: ingest_file(p, ds, c, 50), plans))
    assert all(r.status == "ok" for r in res), [r.error for r in res]
    data = scan_dataset(ds).collect()
    assert data.height == 300 == data.select("machine_id", "ts").unique().height
    assert data["_source"].n_unique() == 1  # one file won every key (the first to finish)
    assert sum(r.rows_quarantined for r in res) == 900


def test_unique_key_on_jsonl_and_bad_config(tmp_path):
    """The unique key works on every reader (JSONL here), and a unique column the contract lacks
    is a one-line config error."""
    from rsft.config import ConfigError, load_config as load

    logs = CFG.ingest.logs.model_copy(update={"unique": ["machine_id", "ts"]})
    line = '{{"machine_id": "M01", "ts": "2026-01-01T00:00:00Z", "category": "seal", "text": "{}"}}'
    (tmp_path / "l.jsonl").write_text("\n".join([line.format("a"), line.format("b"), line.format("a")]) + "\n")
    r = ingest(str(tmp_path / "l.jsonl"), tmp_path / "ds", logs).files[0]
    assert (r.rows_ok, r.rows_quarantined, r.key_conflicts) == (0, 3, 2)  # the repeat is a duplicate row first
    cfg = tmp_path / "c.yaml"
    cfg.write_text((REPO / "examples" / "factory.yaml").read_text().replace("key: [machine_id, ts]", "unique: [machine_id, time]"))
    try:
        load(cfg)
    except ConfigError as e:
        assert "unique: time not a contract column" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("a unique column the contract lacks must fail the config")


def test_jsonl_line_blocks_are_whole_lines_whatever_the_read_size(monkeypatch):
    """Blocks of k whole lines (the last one without a final newline kept), for reads shorter than
    a line too: nothing lost, nothing split."""
    import io

    from rsft.ingest import readers

    data = b'ab\ncdefghijklmnopqrstu\n\nxyz\n' * 3 + b"tail-without-newline-long"
    for read in (1, 7, 64, 1 << 20):
        monkeypatch.setattr(readers, "JSONL_READ_BYTES", read)
        for k in (1, 2, 3, 5, 100):
            out = [blk for blk, _ in readers._line_block_ends(io.BytesIO(data), k)]
            assert b"".join(out) == data and all(b.endswith(b"\n") for b in out[:-1]), (read, k)
            assert all(b.count(b"\n") == k for b in out[:-2]), (read, k)
            for blk, ends in readers._line_block_ends(io.BytesIO(data), k):  # each block's newline offsets
                assert ends.tolist() == [i for i, ch in enumerate(blk) if ch == 10], (read, k)


def test_unique_key_switched_on_later_indexes_the_earlier_files_once(tmp_path):
    """A dataset ingested before ``unique`` was set (no key index), under a folder named data (the
    state dir's layout): the first file ingested with the key builds the earlier file's index from
    its data parts, records it in that file's manifest entry, and finds the conflict."""
    a, b = _unique_files(tmp_path / "src")
    ds = tmp_path / "data" / "sensors"
    ingest([str(a)], ds, SENSORS)  # no unique key yet
    c = SENSORS.model_copy(update={"unique": ["machine_id", "ts"], "unique_conflicts": "keep_first"})
    r = ingest([str(a), str(b)], ds, c).files
    assert [f.status for f in r] == ["skipped", "ok"] and r[1].rows_ok == 1 and r[1].rows_quarantined == 2
    entries = _outcome(ds)[2]
    assert Path(entries["a.csv"]["keys"]).exists() and entries["a.csv"]["keys"] in entries["a.csv"]["outputs"]
    assert entries["a.csv"]["keys_scheme"] == entries["b.csv"]["keys_scheme"]
    assert pl.read_parquet(entries["a.csv"]["keys"]).height == 8  # every row a.csv wrote without the key


def test_a_night_digests_only_new_or_changed_exports(tmp_path, monkeypatch):
    """The digest cache: an export already digested (same size and mtime) is not read again on
    the next night; a rewritten export (new content, new mtime) is, and ingests again."""
    import rsft.ingest.plan as plan

    raw = tmp_path / "raw"
    raw.mkdir()
    lines = (BAD_INPUTS / "clean.csv").read_text().splitlines()
    (raw / "day01.csv").write_text("\n".join(lines[:20]) + "\n")
    (raw / "day02.csv").write_text("\n".join([lines[0], *lines[20:40]]) + "\n")
    out = tmp_path / "ds"
    read: list[str] = []
    real = plan.file_digest
    monkeypatch.setattr(plan, "file_digest", lambda p: read.append(os.path.basename(p)) or real(p))
    ingest([str(raw)], out, SENSORS)
    assert sorted(read) == ["day01.csv", "day02.csv"]
    read.clear()
    (raw / "day03.csv").write_text("\n".join([lines[0], *lines[40:45]]) + "\n")
    r = ingest([str(raw)], out, SENSORS)
    assert read == ["day03.csv"]  # the history is not re-read
    assert [f.status for f in r.files] == ["skipped", "skipped", "ok"]
    read.clear()
    time.sleep(0.01)
    (raw / "day01.csv").write_text("\n".join(lines[:10]) + "\n")  # re-exported, other content
    r = ingest([str(raw)], out, SENSORS)
    assert read == ["day01.csv"] and [f.status for f in r.files][0] == "ok"


def test_partition_groups_are_partition_by_whatever_the_row_order():
    """The writer's groups (slices where each key's rows are one run, else partition_by) are
    partition_by's groups, keys and rows, in its order — with nulls, repeats and runs split apart."""
    import datetime as dt
    import random

    from rsft.ingest.writers import _groups

    rng = random.Random(5)
    sliced = 0
    for trial in range(300):
        n = rng.randint(1, 30)
        k = [rng.choice([None, "x", "y", "z"]) for _ in range(n)]
        d = [rng.choice([dt.date(2026, 1, 1), dt.date(2026, 1, 2), None]) for _ in range(n)]
        if trial % 2:  # in runs, as exports in time order are
            k.sort(key=lambda v: (v is None, v or ""))
            d.sort(key=lambda v: (v is None, v or dt.date(2000, 1, 1)))
        df = pl.DataFrame({"k": k, "d": d, "v": range(n)}, schema={"k": pl.String, "d": pl.Date, "v": pl.Int64})
        for keys in (["k"], ["d"], ["k", "d"]):
            want, got = df.partition_by(keys, as_dict=True, maintain_order=True), _groups(df, keys)
            assert list(got) == list(want), (keys, df)
            assert all(got[g].equals(want[g]) for g in want), (keys, df)
            sliced += df.select(pl.struct(keys).rle_id().max()).item() + 1 == len(want) > 1  # the slice path
    assert 100 < sliced < 900  # both ways taken


def test_a_night_reads_each_manifest_entry_a_bounded_number_of_times(tmp_path, monkeypatch):
    """A night with one new export among many already ingested reads each file's manifest entry a
    few times in all (the plan, the skipped file's own entry, the new file's replacement check),
    not once per skipped file (it read the whole manifest for every skipped file: history²)."""
    from pathlib import Path as _Path

    raw = tmp_path / "raw"
    raw.mkdir()
    lines = (BAD_INPUTS / "clean.csv").read_text().splitlines()
    for i in range(12):
        (raw / f"day{i:02d}.csv").write_text("\n".join([lines[0], *lines[1 + 3 * i:4 + 3 * i]]) + "\n")
    out = tmp_path / "ds"
    ingest([str(raw)], out, SENSORS)
    (raw / "day12.csv").write_text("\n".join([lines[0], *lines[40:43]]) + "\n")
    reads: list[str] = []
    real = _Path.read_text
    monkeypatch.setattr(_Path, "read_text", lambda self, *a, **k: (reads.append(self.parent.name), real(self, *a, **k))[1])
    r = ingest([str(raw)], out, SENSORS)
    assert [f.status for f in r.files].count("skipped") == 12 and r.files[-1].status == "ok"
    assert reads.count("_manifest") <= 3 * 13, reads.count("_manifest")  # was 12 × 12 + 2 × 12


def test_a_header_in_another_separator_names_the_setting_as_yaml_reads_it():
    """A ';' or tab header read as ',' CSV: the failure names the contract's delimiter setting
    the way YAML reads it back (a tab in double quotes: '\\t' in single quotes is two characters)."""
    import pytest
    import yaml

    from rsft.config import ContractConfig
    from rsft.ingest.contract import _check_columns
    from rsft.ingest.results import FileError

    contract = ContractConfig.model_validate({"columns": [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "float64"}]})
    for header, sep in (("a;b", ";"), ("a\tb", "\t")):
        with pytest.raises(FileError) as exc:
            _check_columns([header], contract)
        setting = str(exc.value).split("delimiter: ")[1].split(" (")[0]
        assert yaml.safe_load(setting) == sep, str(exc.value)


def test_a_jsonl_export_with_a_bom_keeps_its_first_line(tmp_path):
    """(a new user's trial) a Windows export's UTF-8 BOM made every file's first record "invalid
    JSON": it is not part of the first line (plain and gzipped files alike)."""

    line = '{{"machine_id": "M01", "ts": "2026-01-0{}T00:00:00Z", "category": "seal", "text": "lkg at flange {}"}}'
    body = ("\r\n".join(line.format(d, d) for d in (1, 2, 3)) + "\r\n").encode()
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + body)
    (tmp_path / "bom.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + body.replace(b"flange", b"valve")))
    for name in ("bom.jsonl", "bom.jsonl.gz"):
        r = ingest(str(tmp_path / name), tmp_path / f"ds-{name}", CFG.ingest.logs).files[0]
        assert (r.status, r.rows_ok, r.rows_quarantined) == ("ok", 3, 0), r


def test_every_ingest_hint_names_its_setting_by_the_full_key_path(tmp_path):
    """(trial M4) A failed file's hint names the contract setting as a config sets it,
    ``ingest.sensors.parquet_types`` — not a bare ``parquet_types:`` a user cannot place."""

    import polars as pl

    from rsft.config import IngestConfig
    from rsft.ingest import ingest

    cols = [{"name": "a", "dtype": "float64"}, {"name": "ts", "dtype": "timestamp"}]

    def error(name: str, body: bytes, **kw) -> str:
        (tmp_path / name).write_bytes(body)
        contract = IngestConfig(sensors={"columns": cols, **kw}).sensors
        res = ingest([str(tmp_path / name)], tmp_path / f"ds-{name}", contract).files[0]
        assert res.status == "failed", res
        return res.error

    row = b"1.5,2026-01-01T00:00:00Z\n"
    assert "set ingest.sensors.delimiter: ';' (or ingest.sensors.sniff_delimiter: true)" in error("semi.csv", b"a;ts\n1;x\n")
    assert "(ingest.sensors.unknown_columns: drop or keep would accept" in error("extra.csv", b"a,ts,b\n1.5,x,2\n")
    assert "ingest.sensors.empty_file: zero_rows would accept it" in error("empty.csv", b"")
    assert "ingest.sensors.structural_errors: fail_file" in error("ragged.csv", b"a,ts\n" + row + b"1,2,3\n",
                                                                  structural_errors="fail_file")
    assert "over ingest.sensors.max_line_bytes 10" in error("long.csv", b"a,ts\n" + row, max_line_bytes=10)
    assert "(ingest.sensors.decode_errors: fail_file)" in error(
        "latin.jsonl", b'{"a": 1.5, "ts": "\xe4"}\n', format="jsonl", decode_errors="fail_file")
    assert "over ingest.sensors.max_line_bytes 10" in error(
        "long.jsonl.gz", gzip.compress(b'{"a": 1.5, "ts": "2026-01-01T00:00:00Z"}\n'), format="jsonl", max_line_bytes=10)
    pl.DataFrame({"a": ["1.5"], "ts": ["2026-01-01T00:00:00Z"]}).write_parquet(tmp_path / "t.parquet")
    assert "ingest.sensors.parquet_types: cast_if_lossless would accept it" in error(
        "t.parquet", (tmp_path / "t.parquet").read_bytes())
    logs = IngestConfig(logs={"columns": cols}).logs
    assert logs.setting("parquet_types") == "ingest.logs.parquet_types"


def test_seen_hashes_marks_every_repeat_but_the_first():
    """The duplicate check's sorted runs and prefix bitmap: a row is a duplicate iff its hash came
    earlier in the file (in an earlier batch or earlier in its own), whatever the batch sizes,
    repeats, merges and hash prefixes."""
    import numpy as np

    from rsft.ingest.dedup import _SeenHashes

    rng = np.random.default_rng(7)
    for _ in range(20):
        seen, earlier = _SeenHashes(), set()
        for _ in range(int(rng.integers(1, 15))):
            h = rng.integers(0, int(rng.choice([3, 50, 1 << 40])), int(rng.integers(0, 400)), dtype=np.uint64)
            want = []
            for v in h.tolist():
                want.append(v in earlier)
                earlier.add(v)
            assert seen.check_add(h).tolist() == want
    # full 64-bit hashes (the prefix bitmap in front of the runs: set and unset bits, shared bytes)
    for _ in range(20):
        pool = rng.integers(0, 1 << 64, int(rng.integers(1, 3000)), dtype=np.uint64, endpoint=False)
        pool[: len(pool) // 3] >>= np.uint64(rng.integers(0, 64))
        seen, earlier = _SeenHashes(), set()
        for _ in range(int(rng.integers(1, 15))):
            h = rng.choice(pool, int(rng.integers(0, 600)))
            want = []
            for v in h.tolist():
                want.append(v in earlier)
                earlier.add(v)
            assert seen.check_add(h).tolist() == want
