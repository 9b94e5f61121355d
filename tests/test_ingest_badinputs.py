"""Ingest against the 26 real-world-shaped bad exports in shared/testdata/bad-inputs (default policies)."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from rsft.config import load_config
from rsft.ingest import ingest, scan_dataset, scan_quarantine
from tests.conftest import BAD_INPUTS, REPO

pytestmark = pytest.mark.skipif(not (BAD_INPUTS / "manifest.json").exists(), reason="shared bad-inputs corpus not present")

CFG = load_config(REPO / "examples" / "factory.yaml")  # the demo contract is the corpus contract
CASES = json.loads((BAD_INPUTS / "manifest.json").read_text())["files"] if (BAD_INPUTS / "manifest.json").exists() else []


def _contract(case):
    return CFG.ingest.logs if case["format"].startswith("jsonl") else CFG.ingest.sensors


def _mentions(error: str, mentions: list[str]) -> bool:
    err = error.lower()
    return all(any(alt.lower() in err for alt in m.split("|")) for m in mentions)


@pytest.mark.parametrize("case", [c for c in CASES if c["file"] != "clean_duplicate_copy.csv"], ids=lambda c: c["file"])
def test_bad_input(case, tmp_path):
    exp = case["expected"]
    out = tmp_path / "ds"
    res = ingest([str(BAD_INPUTS / case["file"])], out, _contract(case)).files[0]
    if exp["file_error"]:
        assert res.status == "failed"
        assert "\n" not in res.error and case["file"] in res.error
        assert _mentions(res.error, case["error_mentions"]), res.error
        assert not list((out / "data").glob("*.parquet")) if (out / "data").exists() else True
        return
    assert res.status == "ok", res.error
    assert (res.rows_total, res.rows_ok, res.rows_quarantined) == (exp["rows_total"], exp["rows_ok"], exp["rows_quarantined"])
    assert res.rows_total == res.rows_ok + res.rows_quarantined
    if exp["rows_quarantined"]:
        q = scan_quarantine(out).collect().sort("_row")
        want = {int(row): r for r in case["quarantine"] for row in r["rows"]}
        assert q["_row"].to_list() == sorted(want)
        for row, reason in zip(q["_row"].to_list(), q["reason"].to_list()):
            col = want[row].get("column") or want[row].get("field")
            if col:
                assert col in reason, (row, reason, want[row])
    if exp["rows_ok"]:
        got = scan_dataset(out).collect()
        assert got.height == exp["rows_ok"]
        assert got["_source"].unique().to_list() == [case["file"]]


def test_duplicate_file_is_skipped_and_pair_writes_rows_once(tmp_path):
    srcs = [str(BAD_INPUTS / "clean.csv"), str(BAD_INPUTS / "clean_duplicate_copy.csv")]
    res = {r.file: r for r in ingest(srcs, tmp_path / "ds", CFG.ingest.sensors).files}
    assert res["clean.csv"].rows_ok == 50
    assert res["clean_duplicate_copy.csv"].status == "duplicate"
    assert res["clean_duplicate_copy.csv"].duplicate_of == "clean.csv"
    assert scan_dataset(tmp_path / "ds").collect().height == 50


def test_clean_values_ingested_unchanged(tmp_path):
    ingest([str(BAD_INPUTS / "clean.csv")], tmp_path / "ds", CFG.ingest.sensors)
    got = scan_dataset(tmp_path / "ds").collect().sort("_row")
    raw = pl.read_csv(BAD_INPUTS / "clean.csv", infer_schema=False)
    for col in ("s01", "s07", "s12"):
        assert got[col].to_list() == [float(v) for v in raw[col].to_list()]
    assert got["quality"].null_count() == 8
    assert got["ts"].dtype == pl.Datetime("us", "UTC")
    assert got["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_list() == raw["ts"].to_list()


def test_mixed_timezones_keep_the_instant(tmp_path):
    ingest([str(BAD_INPUTS / "mixed_timezones.csv")], tmp_path / "ds", CFG.ingest.sensors)
    df = scan_dataset(tmp_path / "ds").collect().sort("_row")
    # per machine the rows are a regular UTC sequence: converted offsets must keep it strictly increasing
    for _, part in df.group_by("machine_id"):
        ts = part["ts"]
        assert ts.is_sorted() and ts.n_unique() == len(ts)


@pytest.mark.parametrize(
    "file, update, counts",
    [
        ("extra_column.csv", {"unknown_columns": "drop"}, (30, 30, 0)),
        ("extra_column.csv", {"unknown_columns": "keep"}, (30, 30, 0)),
        ("duplicate_rows.csv", {"duplicate_rows": "keep"}, (43, 43, 0)),
        ("mixed_timezones.csv", {"naive_timestamps": "assume_utc"}, (40, 40, 0)),
        ("mixed_timezones.csv", {"utc_only": True}, (40, 32, 8)),
        ("wrong_dtype.parquet", {"parquet_types": "cast_if_lossless"}, (30, 30, 0)),
    ],
)
def test_policy_alternatives(file, update, counts, tmp_path):
    contract = CFG.ingest.sensors.model_copy(update=update)
    res = ingest([str(BAD_INPUTS / file)], tmp_path / "ds", contract).files[0]
    assert res.status == "ok", res.error
    assert (res.rows_total, res.rows_ok, res.rows_quarantined) == counts
    if update.get("unknown_columns") == "keep":
        assert "operator" in scan_dataset(tmp_path / "ds").collect_schema()


def test_rerun_is_idempotent_and_changed_file_replaces(tmp_path):
    src = tmp_path / "in" / "day.csv"
    src.parent.mkdir()
    shutil.copy(BAD_INPUTS / "clean.csv", src)
    ds = tmp_path / "ds"
    first = ingest([str(src.parent)], ds, CFG.ingest.sensors).files[0]
    again = ingest([str(src.parent)], ds, CFG.ingest.sensors).files[0]
    assert first.rows_ok == 50 and again.status == "skipped"
    assert scan_dataset(ds).collect().height == 50
    # the same path with new content replaces its rows; a new file is added incrementally
    lines = src.read_text().splitlines(keepends=True)
    src.write_text("".join(lines[:21]))
    shutil.copy(BAD_INPUTS / "crlf.csv", src.parent / "day2.csv")
    res = {r.file: r for r in ingest([str(src.parent)], ds, CFG.ingest.sensors).files}
    assert res["day.csv"].rows_ok == 20 and res["day2.csv"].rows_ok == 30
    assert scan_dataset(ds).collect().height == 50


@pytest.mark.parametrize(
    "file, update, mentions",
    [
        ("truncated_midrow.csv", {"structural_errors": "fail_file"}, ["row 40", "wrong number of fields (9, expected 16)"]),
        ("latin1_text.jsonl", {"decode_errors": "fail_file"}, ["line 4", "invalid utf-8"]),
        ("huge_line.csv", {"max_line_bytes": 100_000}, ["row 21", "max_line_bytes"]),
    ],
)
def test_fail_file_policies(file, update, mentions, tmp_path):
    """The manifest's file-error alternatives: one line naming the record, nothing written."""
    contract = (CFG.ingest.logs if file.endswith(".jsonl") else CFG.ingest.sensors).model_copy(update=update)
    res = ingest([str(BAD_INPUTS / file)], tmp_path / "ds", contract).files[0]
    assert res.status == "failed" and "\n" not in res.error and file in res.error
    assert all(m.lower() in res.error.lower() for m in mentions), res.error
    assert not list((tmp_path / "ds").rglob("*.parquet"))


def test_latin1_fallback_decodes_instead_of_quarantining(tmp_path):
    contract = CFG.ingest.logs.model_copy(update={"decode_errors": "latin1"})
    res = ingest([str(BAD_INPUTS / "latin1_text.jsonl")], tmp_path / "ds", contract).files[0]
    assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", 20, 20, 0)
    text = scan_dataset(tmp_path / "ds").collect().sort("_row")["text"].to_list()
    assert any(ch in text[3] for ch in "äüÖé°") and "\ufffd" not in "".join(text)


def test_permissive_limits_and_clean_files_are_unaffected(tmp_path):
    """A limit above every record, and the structural pass on a file without structural errors
    (RFC 4180 quoting with embedded separators and newlines), change nothing."""
    for file, update, counts in (("huge_line.csv", {"max_line_bytes": 10_000_000}, (40, 39, 1)),
                                 ("quoted_fields.csv", {"structural_errors": "fail_file"}, (30, 25, 5))):
        contract = CFG.ingest.sensors.model_copy(update=update)
        res = ingest([str(BAD_INPUTS / file)], tmp_path / file, contract).files[0]
        assert (res.status, res.rows_total, res.rows_ok, res.rows_quarantined) == ("ok", *counts), res.error


def test_cut_off_last_record_gets_the_structural_reason(tmp_path):
    """The manifest's reason for a file cut off mid-record, and no false alarm for a complete last
    record without a final newline."""
    res = ingest([str(BAD_INPUTS / "truncated_midrow.csv")], tmp_path / "a", CFG.ingest.sensors).files[0]
    assert (res.rows_total, res.rows_ok, res.rows_quarantined) == (40, 39, 1)
    q = scan_quarantine(tmp_path / "a").select("_row", "reason").collect().rows()
    assert q == [(40, "wrong number of fields (9, expected 16)")]
    src = tmp_path / "no_final_newline.csv"
    src.write_text((BAD_INPUTS / "clean.csv").read_text().rstrip("\n"))
    res = ingest([str(src)], tmp_path / "b", CFG.ingest.sensors).files[0]
    assert (res.status, res.rows_ok, res.rows_quarantined) == ("ok", 50, 0)
