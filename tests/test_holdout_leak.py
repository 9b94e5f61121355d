"""The hold-out's rows are in the pool exports too (one historian exports both): selected pool
rows that are hold-out rows are left out of training and counted; a target sample that shares
rows with the hold-out is warned of (trial 7, finding 1)."""

from __future__ import annotations

import polars as pl

from rsft.config import load_config
from rsft.pipeline.data import check_ingested, holdout_identity, ingest_stage, load_target, without_holdout
from rsft.pipeline.layout import TARGET_HOLDOUT
from rsft.pipeline.night import select_local
from rsft.pipeline.summary import holdout_warnings
from rsft.pipeline.training import training_frame
from rsft.synth import write_synthetic
from tests.test_retrain_flow import small_config


def test_selected_holdout_rows_are_not_trained_on(tmp_path, one_torch_thread):
    """Seed: the small demo config's. The hold-out file's rows exported again into the pool: they
    are target-like, so the selection picks some; training_frame leaves exactly those out (counted
    by (machine_id, ts), the contract's key) and keeps the other selected rows."""
    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    raw = tmp_path / "raw"
    write_synthetic(cfg.synth, raw, night=1)
    pl.read_parquet(raw / "target" / "holdout.parquet").write_parquet(raw / "pool" / "sensors_recent_export.parquet")
    check_ingested(cfg, ingest_stage(cfg))
    selection = select_local(cfg)
    selected = pl.read_parquet(selection.selected.output).filter(pl.col(cfg.features.label).is_not_null())
    holdout = load_target(cfg, TARGET_HOLDOUT)
    leaked = selected.join(holdout.select("machine_id", "ts"), on=["machine_id", "ts"], how="semi").height
    assert leaked > 0  # the case this guards: hold-out rows among the selected ones
    df, counts = training_frame(cfg, selection.selected.output)
    assert counts["holdout_rows_left_out"] == leaked
    assert df.height == selected.height - leaked + counts["target_rows"]
    assert holdout_identity(cfg)[0] == ["machine_id", "ts"]


def test_identity_without_a_key_is_the_whole_example():
    """No key in the frames: a row is a hold-out row when every model input and the label match."""
    identity = (["x", "y"], pl.DataFrame({"x": [1.0, 2.0], "y": [10.0, 20.0]}))
    pool = pl.DataFrame({"x": [1.0, 2.0, 2.0, 3.0], "y": [10.0, 21.0, 20.0, 30.0], "z": ["a", "b", "c", "d"]})
    assert without_holdout(pool, identity)["z"].to_list() == ["b", "d"]
    assert without_holdout(pool.lazy(), identity).collect()["z"].to_list() == ["b", "d"]
    assert without_holdout(pool.drop("y"), identity).height == 4  # a frame without the identity: as it is
    # a null in the identity matches a null (review: the row with an empty reading stayed in training)
    nulls = (["x", "y"], pl.DataFrame({"x": [None, 2.0], "y": [10.0, 20.0]}, schema={"x": pl.Float64, "y": pl.Float64}))
    pool2 = pl.DataFrame({"x": [None, 2.0, 3.0], "y": [10.0, 20.0, 30.0]}, schema={"x": pl.Float64, "y": pl.Float64})
    assert without_holdout(pool2, nulls)["x"].to_list() == [3.0]


def test_a_target_sample_sharing_rows_with_the_holdout_is_warned_of(tmp_path):
    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    raw = tmp_path / "raw"
    write_synthetic(cfg.synth, raw, night=1)
    h = pl.read_parquet(raw / "target" / "holdout.parquet")
    t = pl.read_csv(raw / "target" / "sample.csv", infer_schema=False)
    pl.concat([t, h.head(30).select(t.columns).cast(pl.String)]).write_csv(raw / "target" / "sample.csv")
    check_ingested(cfg, ingest_stage(cfg))
    lines = [w for w in holdout_warnings(cfg) if "hold-out rows too" in w]
    assert len(lines) == 1 and lines[0].startswith("30 of the target sample's "), lines


def test_a_target_sample_repeating_rows_is_warned_of(tmp_path):
    """Trial 8: 194 distinct texts in a 250-row sample; the fine-tune's validation rows repeated its
    training rows. A sample of two files, the second repeating 30 of the first's rows (> 5 % of 230),
    is named; rows that agree in every reading but not in their time are not (coarse readings of
    two hours may agree: review)."""
    cfg = load_config(small_config(tmp_path))
    raw = tmp_path / "raw"
    write_synthetic(cfg.synth, raw, night=1)
    check_ingested(cfg, ingest_stage(cfg))
    assert not [w for w in holdout_warnings(cfg) if "repeats rows" in w]
    t = pl.read_csv(raw / "target" / "sample.csv", infer_schema=False)
    pl.concat([t, t.head(30).with_columns(pl.lit("2030-01-01T00:00:00Z").alias("ts"))]).write_csv(raw / "target" / "sample.csv")
    check_ingested(cfg, ingest_stage(cfg))
    assert not [w for w in holdout_warnings(cfg) if "repeats rows" in w]  # other times: not repeats
    both = raw / "target" / "sample_files"
    both.mkdir()
    t.write_csv(both / "a.csv")
    t.head(30).write_csv(both / "b.csv")
    cfg = load_config(small_config(tmp_path), {"data.target_sample": str(both)})
    check_ingested(cfg, ingest_stage(cfg))
    lines = [w for w in holdout_warnings(cfg) if "repeats rows" in w]
    assert len(lines) == 1 and lines[0].startswith("the target sample repeats rows: 30 of its 230 rows"), lines
