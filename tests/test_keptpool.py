"""The kept pool, prefiltered one day at a time: an incremental night equals a from-scratch run
and the whole-pool evaluation, and recomputes only the new day and its changed neighbours."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rsft import keptpool
from rsft.config import FeaturesConfig, PrefilterConfig
from rsft.features import add_rolling_features, rolling_feature_exprs
from rsft.prefilter import Derive, _count_aggs, flagged

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
RULES = [
    {"kind": "duplicate", "columns": ["machine_id", "ts"]},
    {"kind": "range", "column": "s01", "min": 0, "max": 150},
    {"kind": "stuck", "columns": ["s01", "s02"], "window": 5},
    {"kind": "spike", "columns": ["s01"], "window": 7, "k": 5.0},
    {"kind": "rate_of_change", "column": "s02", "max_delta": 6.0},
]
FEATS = FeaturesConfig(numeric=["s01"], rolling=[{"columns": ["s01"], "window": 6, "stats": ["mean", "std", "max"]}])


def _day(day: int, rng: np.random.Generator) -> pl.DataFrame:
    """One day of readings: M01 and M02 every 30 min; M03 silent on days 2-4; M04 only two
    readings a day (fewer than any window: its context reaches back over several days)."""
    frames = []
    for m, every in (("M01", 30), ("M02", 30), ("M03", 30), ("M04", 600)):
        if m == "M03" and day in (2, 3, 4):
            continue
        ts = [T0 + timedelta(days=day, minutes=k) for k in range(0, 24 * 60, every)]
        n = len(ts)
        s01, s02 = rng.normal(60, 2, n), rng.normal(20, 1, n)
        if m == "M01":
            s01[::23] += 40  # spikes
        if m == "M02" and day in (1, 5):
            s01[-3:] = 61.5  # a stuck run across midnight, into the next day's first readings
        if m == "M02" and day in (2, 6):
            s01[:3] = 61.5
        frames.append(pl.DataFrame({"machine_id": m, "ts": ts, "s01": s01, "s02": s02,
                                    "_source": f"day{day}", "_row": np.arange(n, dtype=np.int64)}))
    df = pl.concat(frames)
    return df.with_columns(pl.col("ts").dt.replace_time_zone("UTC") if df["ts"].dtype.time_zone is None else pl.col("ts"))


def _write(src: Path, name: str, df: pl.DataFrame) -> None:
    p = src / "data" / f"part-{name}.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    df.sample(fraction=1.0, shuffle=True, seed=len(name)).write_parquet(p)  # any row order


def _whole_pool(src: Path, cfg: PrefilterConfig) -> tuple[pl.DataFrame, dict]:
    """The reference: every rule on the whole pool at once, rolling features on all kept rows."""
    lf = pl.scan_parquet(str(src / "data" / "*.parquet"))
    whole, flags = flagged(lf, cfg)
    counts = whole.select(_count_aggs(flags)).collect().row(0, named=True)
    kept = whole.filter(pl.all_horizontal(flags)).drop(flags).collect()
    return add_rolling_features(kept, FEATS), counts


def _kept(m: dict) -> pl.DataFrame:
    return keptpool.scan_pool(m["path"]).collect()


def test_incremental_nights_equal_a_from_scratch_run_and_the_whole_pool(tmp_path):
    """Three nights (seeded data, rng 11): new days, a late file that changes an old day, and a
    machine that reads less often than the windows. After each night the incremental kept pool
    has exactly the files, rows and counts of a from-scratch run, and the rows (with rolling
    features, to 1e-9) of the whole-pool evaluation; a night recomputes only the days whose
    content or context changed."""
    rng = np.random.default_rng(11)
    days = [_day(d, rng) for d in range(8)]
    cfg = PrefilterConfig.model_validate({"rules": RULES})
    derive = Derive(tuple(rolling_feature_exprs(FEATS)), "machine_id", "ts", 5)
    src, inc = tmp_path / "src", tmp_path / "incremental"
    late = days[2].filter(pl.col("machine_id") == "M01").head(6).with_columns(
        pl.col("ts") + timedelta(minutes=7), pl.col("s01") + 30, pl.lit("late").alias("_source"))
    nights = [
        [(f"d{d}", days[d]) for d in range(5)],
        [("d5", days[5]), ("d6", days[6]), ("late2", late)],  # a late file for day 2
        [("d7", days[7])],
    ]
    computed = []
    for n, files in enumerate(nights):
        for name, df in files:
            _write(src, name, df)
        m = keptpool.update(src, inc, cfg, derive=derive, rules_key="k")
        scratch = keptpool.update(src, tmp_path / f"scratch{n}", cfg, derive=derive, rules_key="k")
        assert scratch["days_computed"] == scratch["days_total"]
        assert [Path(f).name for f in keptpool.manifest_files(m["path"])] == \
               [Path(f).name for f in keptpool.manifest_files(scratch["path"])]
        assert_frame_equal(_kept(m), _kept(scratch))
        assert {k: m[k] for k in ("rows_in", "rows_out", "dropped", "alone")} == \
               {k: scratch[k] for k in ("rows_in", "rows_out", "dropped", "alone")}
        want, counts = _whole_pool(src, cfg)
        got = _kept(m)
        key = ["machine_id", "ts", "_source"]
        assert_frame_equal(got.sort(key), want.sort(key), check_dtypes=False, rtol=0, atol=1e-9)
        assert m["rows_in"] == counts["__rows"] and list(m["dropped"].values()) == [counts[f"__first_{i}"] for i in range(5)]
        computed.append(m["computed"])
    assert m["dropped"]["stuck:s01,s02"] >= 12 and m["dropped"]["spike:s01"] > 0  # the planted runs and spikes
    day = lambda d: (T0 + timedelta(days=d)).date().isoformat()  # noqa: E731
    # night 2: the late file's day 2; day 1 (M01's first readings after it changed: its right
    # context) and day 3 (its left and kept context changed); the new days 5 and 6 and day 4 (it
    # was the last day: its right context is new); day 0 is reused
    assert computed[1] == [day(d) for d in (1, 2, 3, 4, 5, 6)]
    # night 3: the new day 7, and the days whose next 7 readings of M04 (3 a day) reach into it:
    # days 6, 5 and 4 (7 readings after day 4 = 3 + 3 + 1); days 0-3 are reused
    assert computed[2] == [day(d) for d in (4, 5, 6, 7)]


def test_an_unchanged_night_reuses_every_day_and_writes_the_same_manifest(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    for d in range(3):
        _write(src, f"d{d}", _day(d, rng))
    cfg = PrefilterConfig.model_validate({"rules": RULES})
    a = keptpool.update(src, tmp_path / "k", cfg, rules_key="k")
    b = keptpool.update(src, tmp_path / "k", cfg, rules_key="k")
    assert a["days_computed"] == 3 and b["days_computed"] == 0 and a["path"] == b["path"]


def test_the_kept_codec_is_a_setting_that_changes_no_row_and_recomputes_nothing(tmp_path):
    """``prefilter.kept_compression``: the day files are written with it; switching it keeps the
    days already written (not part of the kept pool's key) and the kept rows are the same."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    for d in range(3):
        _write(src, f"d{d}", _day(d, rng))
    lz4 = PrefilterConfig.model_validate({"rules": RULES, "kept_compression": "lz4"})
    raw = PrefilterConfig.model_validate({"rules": RULES, "kept_compression": "uncompressed"})
    a = keptpool.update(src, tmp_path / "a", raw, rules_key="k")
    b = keptpool.update(src, tmp_path / "b", lz4, rules_key="k")
    assert_frame_equal(_kept(a), _kept(b))

    def codecs(root: Path) -> set[str]:
        return {pq.ParquetFile(f).metadata.row_group(0).column(0).compression
                for f in (root / "days").rglob("*.parquet")}

    assert codecs(tmp_path / "a") == {"UNCOMPRESSED"} and codecs(tmp_path / "b") == {"LZ4"}
    again = keptpool.update(src, tmp_path / "b", raw, rules_key="k")  # switched: nothing judged again
    assert again["days_computed"] == 0 and again["path"] == b["path"]
    _write(src, "d3", _day(3, rng))  # a new day: written with the new codec, the old ones stay
    c = keptpool.update(src, tmp_path / "b", raw, rules_key="k")
    assert c["days_computed"] >= 1 and codecs(tmp_path / "b") == {"LZ4", "UNCOMPRESSED"}


def test_dictionary_day_files_read_back_equal_and_select_the_same_rows(tmp_path):
    """``kept_compression: dictionary`` (pyarrow's writer: dictionary pages, ``_row`` delta-encoded,
    no codec): the kept frames equal the lz4 pool's (values, dtypes, order), and a selection over
    either pool — gaussian scorer, rejection and budget, several chunks — is the same frame."""
    import pyarrow.parquet as pq

    from rsft.config import SamplingConfig, ScorerConfig
    from rsft.density import make_scorer
    from rsft.sampling import select

    rng = np.random.default_rng(9)
    src = tmp_path / "src"
    for d in range(4):
        df = _day(d, rng)
        if d == 1:  # a null reading
            df = df.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("s02")).alias("s02"))
        _write(src, f"d{d}", df)
    a = keptpool.update(src, tmp_path / "a", PrefilterConfig.model_validate({"rules": RULES, "kept_compression": "lz4"}),
                        rules_key="k")
    b = keptpool.update(src, tmp_path / "b", PrefilterConfig.model_validate({"rules": RULES, "kept_compression": "dictionary"}),
                        rules_key="k")
    assert_frame_equal(_kept(a), _kept(b))
    files = sorted((tmp_path / "b" / "days").rglob("*.parquet"))
    assert files
    for f in files:
        rg = pq.ParquetFile(f).metadata.row_group(0)
        enc = {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(rg.num_columns)}
        codec = {rg.column(i).path_in_schema: rg.column(i).compression for i in range(rg.num_columns)}
        text = {c for c, t in _kept(b).schema.items() if t == pl.String}  # text keeps LZ4 (documents shrink)
        assert {c for c, v in codec.items() if v == "LZ4_RAW" or v == "LZ4"} == text
        assert all(v == "UNCOMPRESSED" for c, v in codec.items() if c not in text)
        assert "RLE_DICTIONARY" in enc["s01"] and "DELTA_BINARY_PACKED" in enc["_row"]

    x = _kept(a).select("s01", "s02").drop_nulls().to_numpy().astype(np.float32)
    scorer = make_scorer(ScorerConfig(kind="gaussian"), ["s01", "s02"]).fit(x[::3] + 1.0, x)
    scorer.save(tmp_path / "s.pt")
    feats = FeaturesConfig(numeric=["s01", "s02"])
    for cfg in (SamplingConfig(chunk_rows=200, seed=4), SamplingConfig(mode="budget", budget=60, chunk_rows=150, seed=5)):
        sel = [pl.read_parquet(select(m["path"], str(tmp_path / "s.pt"), feats, cfg, str(tmp_path / f"o-{cfg.mode}-{i}")).output)
               for i, m in enumerate((a, b))]
        assert sel[0].height > 0
        assert_frame_equal(sel[0], sel[1])


def test_a_duplicate_key_with_the_time_column_is_judged_day_by_day(tmp_path):
    """Row rules only, a duplicate key holding the time column (no window rules, no rolling
    features): the kept pool is still updated day by day — a later night recomputes only the day
    a late duplicate file lands on and the new day — and equals the whole-pool evaluation."""
    rng = np.random.default_rng(5)
    days = [_day(d, rng) for d in range(4)]
    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "duplicate", "columns": ["machine_id", "ts"]},
                                                    {"kind": "range", "column": "s01", "min": 0, "max": 150}]})
    src, inc = tmp_path / "src", tmp_path / "k"
    for d in range(3):
        _write(src, f"d{d}", days[d])
    m1 = keptpool.update(src, inc, cfg, rules_key="k", time_column="ts")
    assert m1["days_total"] == 3 and m1["days_computed"] == 3 and m1["whole_pool_why"] == ""  # not one whole-pool partition
    key_only = PrefilterConfig.model_validate({"rules": [{"kind": "duplicate", "columns": ["machine_id"]}]})
    m = keptpool.update(src, tmp_path / "k2", key_only, rules_key="k2", time_column="ts")  # says why it is whole
    assert m["days_total"] == 1 and "duplicate:machine_id" in m["whole_pool_why"] and "judged day by day" in m["whole_pool_why"]
    _write(src, "d3", days[3])
    _write(src, "dup1", days[1].head(20).with_columns(pl.lit("dup").alias("_source")))  # re-sent rows of day 1
    m2 = keptpool.update(src, inc, cfg, rules_key="k", time_column="ts")
    day = lambda d: (T0 + timedelta(days=d)).date().isoformat()  # noqa: E731
    assert m2["computed"] == [day(1), day(3)]
    lf = pl.scan_parquet(str(src / "data" / "*.parquet"))
    whole, flags = flagged(lf, cfg)
    want = whole.filter(pl.all_horizontal(flags)).drop(flags).collect()
    key = ["machine_id", "ts", "_source"]
    assert_frame_equal(_kept(m2).sort(key), want.sort(key), check_dtypes=False)
    assert m2["dropped"]["duplicate:machine_id,ts"] == 20 and m2["rows_out"] == want.height


def test_rules_without_a_time_column_fall_back_to_one_partition(tmp_path):
    src = tmp_path / "src"
    _write(src, "a", pl.DataFrame({"t": ["x", "y", "x "], "_source": "a", "_row": [1, 2, 3]}))
    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "text_duplicate", "column": "t"}]})
    m = keptpool.update(src, tmp_path / "k", cfg, rules_key="k")
    assert m["days_total"] == 1 and m["rows_out"] == 2 and sorted(_kept(m)["t"].str.strip_chars()) == ["x", "y"]
    assert "text_duplicate" in m["whole_pool_why"]  # the summary says why the pool is prefiltered whole


@pytest.mark.slow
def test_incremental_night_selects_the_rows_of_a_from_scratch_run(tmp_path):
    """The demo pipeline (small): night 2 prefiltered incrementally on night 1's kept pool selects
    exactly the rows a fresh state dir selects from the same raw files (same scorer, same chunks)."""
    from rsft import pipeline as stages
    from rsft.config import load_config
    from rsft.synth import write_synthetic
    from tests.test_retrain_flow import small_config

    cfg = load_config(small_config(tmp_path))
    fresh = cfg.model_copy(update={"state": cfg.state.model_copy(update={"dir": str(tmp_path / "fresh")})})
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    stages.ingest_stage(cfg)
    stages.prefilter_stage(cfg)
    write_synthetic(cfg.synth, tmp_path / "raw", night=2)
    out = {}
    for name, c in (("incremental", cfg), ("scratch", fresh)):
        stages.ingest_stage(c)
        pre = stages.prefilter_stage(c)
        scored = stages.fit_scorer_stage(c, pre)
        out[name] = (pre, pl.read_parquet(stages.select_stage(c, pre, scored).output))
    (pi, si), (ps, ss) = out["incremental"], out["scratch"]
    assert pi.days_computed < pi.days_total and ps.days_computed == ps.days_total
    assert pi.version == ps.version and si.height > 0
    assert_frame_equal(si, ss)


def test_a_duplicate_key_across_days_is_refused_with_window_rules(tmp_path):
    """Day by day, a duplicate key without (machine, time) would miss pairs on different days."""
    src = tmp_path / "src"
    _write(src, "d0", _day(0, np.random.default_rng(0)))
    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "duplicate", "columns": ["s01"]},
                                                    {"kind": "stuck", "columns": ["s01"]}]})
    with pytest.raises(ValueError, match="duplicate key must include machine_id and ts"):
        keptpool.update(src, tmp_path / "k", cfg, rules_key="k")


def test_pool_samples_from_the_reservoir_equal_the_whole_pool_filter(tmp_path):
    """The pool sample (hash filter over every kept row) read from the seed's reservoir is the
    same frame, row for row, as the filter over the whole pool, night after night while the pool
    grows and days are recomputed; the reservoir lists exactly tonight's day files and stays
    within 1.5 × the sample (it does not grow with the history)."""
    import json

    from rsft.pipeline.data import hashed_sample

    rng = np.random.default_rng(5)
    src, root = tmp_path / "src", tmp_path / "k"
    cfg = PrefilterConfig.model_validate({"rules": RULES})
    held, nparts = [], []
    for d in range(18):
        _write(src, f"d{d}", _day(d, rng))
        m = keptpool.update(src, root, cfg, rules_key="k")
        for rows, seed in ((40, 0), (150, 0), (60, 7), (60, 7)):  # 150 after 40 on one seed: more than it holds
            got = keptpool.sample_pool(m["path"], rows, m["rows_out"], seed).collect()
            want = hashed_sample(keptpool.scan_pool(m["path"]), m["rows_out"], rows, seed).collect()
            assert_frame_equal(got, want)
            assert 0 < got.height and (got.height < m["rows_out"]) == (rows < m["rows_out"])
        if not keptpool.reservoir_index(root, 7).exists():  # a small pool: its days are read instead
            continue
        idx = json.loads(keptpool.reservoir_index(root, 7).read_text())
        parts = keptpool.reservoir_parts(idx)
        files = {str(Path(f).relative_to(root)) for f in keptpool.manifest_files(m["path"])}
        assert files <= {f for p in parts for f in p["files"]} and len(parts) <= keptpool.RESERVOIR_MAX_PARTS
        rows = {f: n for p in parts for f, n in zip(p["files"], p["rows"])}  # a part's files are row ranges of it
        assert sum(pl.scan_parquet(root / "samples" / p["file"]).select(pl.len()).collect().item()
                   for p in parts) == sum(n for p in parts for n in p["rows"])
        held.append(sum(rows[f] for f in files))
        nparts.append(len(parts))
    # 1-1.5 × the sample (hash noise aside) of tonight's days, on any night; nights add small files
    assert len(held) >= 3 and max(held) <= keptpool.CAP_MAX * 60 * 1.5
    assert max(nparts) > 1 and any(b < a for a, b in zip(nparts, nparts[1:])), nparts  # written again as one


def test_a_reservoir_of_another_polars_hash_is_built_again(tmp_path):
    """Rows are kept by Polars' row hash, which may change with its version: a reservoir written
    under another hash (here: its rows replaced by others, as another hash would have picked) is
    not used; tonight's sample is still the whole-pool filter's."""
    import json

    from rsft.pipeline.data import hashed_sample

    rng = np.random.default_rng(9)
    src, root = tmp_path / "src", tmp_path / "k"
    cfg = PrefilterConfig.model_validate({"rules": RULES})
    for d in range(8):
        _write(src, f"d{d}", _day(d, rng))
        m = keptpool.update(src, root, cfg, rules_key="k")
        keptpool.sample_pool(m["path"], 60, m["rows_out"], 7).collect()
    index = keptpool.reservoir_index(root, 7)
    idx = json.loads(index.read_text())
    assert idx["hash"] == keptpool.HASH_VERSION
    for part in keptpool.reservoir_parts(idx):  # what another hash would have kept: other rows
        f = root / "samples" / part["file"]
        df = pl.read_parquet(f)
        df.with_columns(pl.all().exclude("__h").shuffle(seed=1)).write_parquet(f)
    index.write_text(json.dumps({**idx, "hash": "polars-0.0.0"}))
    got = keptpool.sample_pool(m["path"], 60, m["rows_out"], 7).collect()
    assert_frame_equal(got, hashed_sample(keptpool.scan_pool(m["path"]), m["rows_out"], 60, 7).collect())
    assert json.loads(index.read_text())["hash"] == keptpool.HASH_VERSION
