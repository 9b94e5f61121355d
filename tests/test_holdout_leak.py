"""The hold-out's rows are in the pool exports too (one historian exports both): selected pool
rows that are hold-out rows are left out of training and counted; a target sample that shares
rows with the hold-out is warned of (trial 7, finding 1)."""

from __future__ import annotations

import polars as pl

from rsft.config import load_config
from rsft.pipeline.data import (HoldoutIdentity, check_ingested, holdout_identity, holdout_spans, ingest_stage, load_target,
                                without_holdout)
from rsft.pipeline.layout import TARGET_HOLDOUT
from rsft.pipeline.night import select_local
from rsft.pipeline.summary import holdout_warnings
from rsft.pipeline.training import training_frame, training_stream
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


def _beside_holdout(raw, shift_s: int = 1) -> pl.DataFrame:
    """The hold-out's readings one second later, each value 0.1 % off: the next reading of the
    same machine, which the historian exports into the pool beside the hold-out's own rows (none
    of them a hold-out row itself: a later reading that falls on another hold-out reading's second
    is left out)."""
    h = pl.read_parquet(raw / "target" / "holdout.parquet")
    values = [c for c, t in h.schema.items() if t.is_float()]
    later = h.with_columns(pl.col("ts") + pl.duration(seconds=shift_s), *(pl.col(c) * 1.001 for c in values))
    return later.join(h.select("machine_id", "ts"), on=["machine_id", "ts"], how="anti", maintain_order="left")


def test_pool_rows_beside_the_holdout_are_not_trained_on(tmp_path, one_torch_thread):
    """Seed: the small demo config's. The hold-out's rows and their next readings (1 s later) exported
    into the pool: exact-row exclusion (train.holdout_exclusion: rows, as before) leaves the next
    readings in the fine-tune's rows; span exclusion (the default) leaves out every selected row of a
    machine inside its hold-out span — those next readings among them — and counts them."""
    cfg_path = small_config(tmp_path)
    raw = tmp_path / "raw"
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, raw, night=1)
    h = pl.read_parquet(raw / "target" / "holdout.parquet")
    pl.concat([h, _beside_holdout(raw)]).write_parquet(raw / "pool" / "sensors_recent_export.parquet")
    check_ingested(cfg, ingest_stage(cfg))
    selection = select_local(cfg)
    selected = pl.read_parquet(selection.selected.output).filter(pl.col(cfg.features.label).is_not_null())
    beside = selected.join(_beside_holdout(raw).select("machine_id", "ts"), on=["machine_id", "ts"], how="semi").height
    assert beside > 0  # the case this guards: next readings of hold-out rows among the selected ones

    rows_cfg = load_config(cfg_path, {"train.holdout_exclusion": "rows"})
    df_rows, by_rows = training_frame(rows_cfg, selection.selected.output)
    df_span, by_span = training_frame(cfg, selection.selected.output)
    exact = selected.join(h.select("machine_id", "ts"), on=["machine_id", "ts"], how="semi").height
    assert by_rows["holdout_rows_left_out"] == exact  # the next readings stay in training
    # every selected row of a machine between its first and last hold-out reading (± the median
    # spacing of its hold-out readings; none with one reading) goes — computed here, not by holdout_spans
    hold = load_target(cfg, TARGET_HOLDOUT)
    by_machine = hold.group_by("machine_id").agg(
        _lo=pl.col("ts").min(), _hi=pl.col("ts").max(),
        _iv=pl.col("ts").unique().sort().diff().median().fill_null(pl.duration(seconds=0)))
    inside = selected.join(by_machine, on="machine_id").filter(
        pl.col("ts").is_between(pl.col("_lo") - pl.col("_iv"), pl.col("_hi") + pl.col("_iv"))).height
    assert by_span["holdout_rows_left_out"] == inside >= exact + beside
    assert by_span["holdout_span_rows_left_out"] == inside - exact  # the spans' part, counted apart
    assert by_rows["holdout_span_rows_left_out"] == 0 and "holdout_no_spans" not in by_span
    assert df_span.height == selected.height - inside + by_span["target_rows"]
    assert df_rows.height - df_span.height == inside - exact
    _, streamed = training_stream(cfg, selection.selected.output, tmp_path)  # the lazy path (train.stream): the same rows
    assert streamed["holdout_rows_left_out"] == inside and streamed["train_rows"] == df_span.height
    assert streamed["holdout_span_rows_left_out"] == inside - exact


def test_holdout_spans_per_machine_and_gap():
    """One machine read every 10 s; its hold-out is every other reading of two periods (50–90 s,
    300–320 s). Exact rows leave the readings between them; spans widen each machine's hold-out by
    its interval (20 s here); holdout_gap_s splits the two periods and keeps the pool rows between.
    Another machine's rows at the same times stay; eager and lazy frames agree; rows keep order."""
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pool = pl.DataFrame({"m": ["A"] * 40 + ["B"] * 40, "ts": [t0 + timedelta(seconds=10 * i) for i in range(40)] * 2,
                         "x": list(range(80))})
    at = [50, 70, 90, 300, 320]
    hold = pool.filter(pl.col("m") == "A", pl.col("ts").is_in([t0 + timedelta(seconds=s) for s in at]))
    exact = HoldoutIdentity(["m", "ts"], hold.select("m", "ts"))
    assert without_holdout(pool, exact).height == 80 - 5
    one = HoldoutIdentity(["m", "ts"], hold.select("m", "ts"), holdout_spans(hold, "m", "ts"), ("m", "ts"))
    left = without_holdout(pool, one)
    assert left["x"].to_list() == [0, 1, 2, *range(35, 80)]  # A at 30–340 s (50 − 20 … 320 + 20) goes
    assert without_holdout(pool.lazy(), one).collect().equals(left)
    two = one._replace(spans=holdout_spans(hold, "m", "ts", gap_s=60))
    assert without_holdout(pool, two)["x"].to_list() == [0, 1, 2, *range(12, 28), *range(35, 80)]
    assert without_holdout(pool.drop("ts"), two).height == 80  # a frame without the time column: as it is
    assert holdout_spans(hold.with_columns(pl.col("ts").cast(pl.String)), "m", "ts") is None  # text times: no span


def test_spans_covering_much_of_the_selection_are_warned_of():
    """A hold-out spread over the pool's period (its spans cover > 25 % of the selected rows) is
    named with the setting that splits it; 25 % or less, `rows`, or nothing selected: no line."""
    from rsft.pipeline.summary import span_warnings
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "factory.yaml")
    assert cfg.train.holdout_exclusion == "span"
    (line,) = span_warnings(cfg, {"selected_rows": 1000, "holdout_rows_left_out": 400})
    assert "400 of the 1,000 labelled selected rows (40%)" in line and "train.holdout_gap_s" in line
    # the share is of the labelled selected rows (the left-out count is of those alone): 200 of 500
    (line,) = span_warnings(cfg, {"selected_rows": 1000, "selected_unlabelled": 500, "holdout_rows_left_out": 200})
    assert "200 of the 500 labelled selected rows (40%)" in line
    # spans the training could not apply: said, whatever the share
    (line,) = span_warnings(cfg, {"selected_rows": 10, "holdout_rows_left_out": 1, "holdout_no_spans": "the hold-out's ts is String"})
    assert line.startswith("train.holdout_exclusion span drew no spans: the hold-out's ts is String")
    assert span_warnings(cfg, {"selected_rows": 1000, "holdout_rows_left_out": 250}) == []
    assert span_warnings(cfg, {"selected_rows": 0, "holdout_rows_left_out": 0}) == []
    rows = cfg.model_copy(update={"train": cfg.train.model_copy(update={"holdout_exclusion": "rows"})})
    assert span_warnings(rows, {"selected_rows": 1000, "holdout_rows_left_out": 400}) == []
    gap = cfg.model_copy(update={"train": cfg.train.model_copy(update={"holdout_gap_s": 3600.0})})
    assert "lower train.holdout_gap_s" in span_warnings(gap, {"selected_rows": 10, "holdout_rows_left_out": 9})[0]


def test_a_target_sample_beside_the_holdout_is_warned_of(tmp_path):
    """A random sample/hold-out split of one export shares no row, yet each hold-out reading's
    neighbour is in the sample, which is trained on: the sample is the hold-out's readings 1 s
    later (none of them a hold-out row); all 30 lie in their machine's span and are named, apart
    from the exact-row line (which stays silent). Not left out: the sample is the user's choice."""
    cfg = load_config(small_config(tmp_path))
    raw = tmp_path / "raw"
    write_synthetic(cfg.synth, raw, night=1)
    t = pl.read_csv(raw / "target" / "sample.csv", infer_schema=False)
    beside = _beside_holdout(raw).head(30).with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    beside.select(t.columns).cast(pl.String).write_csv(raw / "target" / "sample.csv")
    check_ingested(cfg, ingest_stage(cfg))
    assert load_target(cfg).height == 30
    lines = holdout_warnings(cfg)
    assert not [w for w in lines if "hold-out rows too" in w], lines
    (line,) = [w for w in lines if "hold-out time span" in w]
    assert line.startswith("30 of the target sample's 30 rows lie in their machine's hold-out time span"), line


def test_spans_that_cannot_be_drawn_or_compared_are_said():
    """A text time in the hold-out draws no spans; epoch-ms integers against a pool date/time would
    compare ms with seconds and leave nothing out: both are a reason (training's counts carry it as
    holdout_no_spans for the night's warning) and the exact rows alone go. A number in both is
    compared as it is (its own units)."""
    from datetime import datetime, timedelta, timezone

    from rsft.pipeline.data import span_problem
    from rsft.pipeline.training import holdout_counts
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "factory.yaml")
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pool = pl.DataFrame({"machine_id": ["M01"] * 10, "ts": [t0 + timedelta(seconds=10 * i) for i in range(10)]})
    text = holdout_identity(cfg, pool[3:5].with_columns(pl.col("ts").cast(pl.String)))
    assert text.spans is None and "the hold-out's ts is String" in text.no_spans
    ms = pool[3:5].with_columns(pl.col("ts").dt.epoch("ms"))
    identity = holdout_identity(cfg, ms)
    assert identity.spans is not None and not identity.no_spans
    why = span_problem(identity, pool.schema)
    assert "the hold-out's ts is Int64 and the pool's Datetime" in why
    assert without_holdout(pool, identity).height == 10  # nothing matches, nothing wrongly left out
    assert holdout_counts(cfg, identity, pool.schema, 10, 10, 10)["holdout_no_spans"] == why
    as_ms = pool.with_columns(pl.col("ts").dt.epoch("ms"))
    assert not span_problem(identity, as_ms.schema) and without_holdout(as_ms, identity).height == 10 - 4  # 20–50 s: one interval (10,000 ms) around 30–40 s


def test_check_config_names_span_problems_of_every_contract():
    """check-config's lines (holdout_span_problems): none for the demo; a contract without the
    machine column names the pool, the target sample and the hold-out (they share it); a numeric
    time with holdout_gap_s says the gap is in the column's units."""
    from rsft.pipeline.data import holdout_span_problems
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "factory.yaml")
    assert holdout_span_problems(cfg) == []
    s = cfg.ingest.sensors
    no_group = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"sensors": s.model_copy(
        update={"columns": [c for c in s.columns if c.name != "machine_id"]})})})
    (line,) = holdout_span_problems(no_group)
    assert "(the pool and the target sample and the hold-out)" in line and "features.group 'machine_id' (not a column)" in line
    numeric = [c.model_copy(update={"dtype": "int64"}) if c.name == "ts" else c for c in s.columns]
    gap = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"sensors": s.model_copy(update={"columns": numeric})}),
                                 "train": cfg.train.model_copy(update={"holdout_gap_s": 3600.0})})
    (line,) = holdout_span_problems(gap)
    assert line.startswith("train.holdout_gap_s 3600 is in the units of features.time_column 'ts' (int64")


def test_a_machine_with_one_holdout_reading_gets_no_borrowed_margin():
    """Machine A's hold-out is daily (86,400 s apart), B's one reading at t=100 s: B's span is its
    own reading only — not ± A's day (review) — so B's readings 10 s away stay; A's widen by a day."""
    hold = pl.DataFrame({"m": ["A", "A", "A", "B"], "t": [0, 86_400, 172_800, 100]})
    spans = holdout_spans(hold, "m", "t")
    assert spans.filter(pl.col("m") == "B").select("_start", "_end").row(0) == (100.0, 100.0)
    assert spans.filter(pl.col("m") == "A").select("_start", "_end").row(0) == (-86_400.0, 259_200.0)
    pool = pl.DataFrame({"m": ["B"] * 3, "t": [90, 100, 110]})
    identity = HoldoutIdentity(["m", "t"], hold, spans, ("m", "t"))
    assert without_holdout(pool, identity)["t"].to_list() == [90, 110]


def test_holdout_machines_the_pool_cannot_hold_match_nothing():
    """A hold-out machine "M01" against an integer pool group, or missing from the pool's Enum:
    no error, it matches no pool row (exact rows and spans alike); the others still do."""
    hold = pl.DataFrame({"m": ["M01", "7"], "t": [5, 5]})
    spans = holdout_spans(hold, "m", "t")
    identity = HoldoutIdentity(["m", "t"], hold, spans, ("m", "t"))
    ints = pl.DataFrame({"m": [7, 7, 8, None], "t": [5, 50, 5, 5]}, schema={"m": pl.Int64, "t": pl.Int64})
    assert without_holdout(ints, identity).rows() == [(7, 50), (8, 5), (None, 5)]
    enum = pl.Enum(["7", "8"])
    pool = pl.DataFrame({"m": ["7", "8"], "t": [5, 5]}, schema={"m": enum, "t": pl.Int64})
    assert without_holdout(pool, identity)["m"].to_list() == ["8"]
    assert without_holdout(pool.lazy(), identity).collect()["m"].to_list() == ["8"]
