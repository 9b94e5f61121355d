"""A night reports the files ingested since the last night, not only those its own ingest took:
with the hourly ingest deployment (or `rsft ingest` by hand, or a night that failed after its
ingest) a night's own ingest finds every export done (trial 7, finding 6)."""

from __future__ import annotations

import polars as pl

from rsft.config import load_config
from rsft.pipeline.data import ingest_stage, mark_reported, since_last_night
from rsft.pipeline.targets import mostly_quarantined
from rsft.synth import write_synthetic
from tests.test_retrain_flow import small_config


def test_files_an_earlier_run_ingested_are_the_nights_to_report(tmp_path):
    cfg = load_config(small_config(tmp_path))
    raw = tmp_path / "raw"
    write_synthetic(cfg.synth, raw, night=1)
    day = sorted((raw / "pool").glob("sensors_day*.csv"))[0]
    pl.read_csv(day, infer_schema=False).head(5).with_columns(s05=pl.lit("450.0")).write_csv(raw / "pool" / "sensors_kpa.csv")
    hourly = ingest_stage(cfg)  # the hourly ingest took every export
    pool = hourly["sensors"]
    assert pool.rows_quarantined >= 5 and len(mostly_quarantined(cfg, hourly)) == 1

    night = ingest_stage(cfg)  # the night's own ingest: every file done before
    assert night["sensors"].rows_ok == 0 and mostly_quarantined(cfg, night) == []
    reported = since_last_night(night)
    s = reported["sensors"]
    assert (s.rows_ok, s.rows_quarantined, s.files_skipped) == (pool.rows_ok, pool.rows_quarantined, 0)
    assert s.quarantine_reasons == pool.quarantine_reasons
    assert mostly_quarantined(cfg, reported) == mostly_quarantined(cfg, hourly)
    assert all(f.get("ingested_earlier") for f in s.file_results)

    mark_reported(reported)  # after the night's summary: the next night reports none of them again
    again = since_last_night(ingest_stage(cfg))
    assert again["sensors"].rows_ok == 0 and again["sensors"].files_skipped == pool.files


def test_a_file_whose_source_left_before_the_night_is_reported_too(tmp_path):
    """Review: the hourly ingest took a file, then the inbox was archived before the night — the
    night's plan never lists it, yet it is news."""
    cfg = load_config(small_config(tmp_path))
    raw = tmp_path / "raw"
    write_synthetic(cfg.synth, raw, night=1)
    day = sorted((raw / "pool").glob("sensors_day*.csv"))[0]
    extra = raw / "pool" / "sensors_extra.csv"
    pl.read_csv(day, infer_schema=False).head(5).with_columns(s05=pl.lit("450.0")).write_csv(extra)
    hourly = ingest_stage(cfg)
    extra.unlink()  # archived
    reported = since_last_night(ingest_stage(cfg))
    files = {f["file"] for f in reported["sensors"].file_results if f.get("ingested_earlier")}
    assert "sensors_extra.csv" in files and reported["sensors"].rows_quarantined == hourly["sensors"].rows_quarantined
