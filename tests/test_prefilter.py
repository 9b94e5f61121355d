"""Prefilter rules: one row table per rule, eager == lazy, accounting, window rules per machine."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from rsft.config import PrefilterConfig
from rsft.prefilter import compile_rule, prefilter

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def rule(**kw):
    return PrefilterConfig(rules=[kw]).rules[0]


CASES = [
    (dict(kind="not_null", columns=["a"]), {"a": [1.0, None, 3.0]}, [True, False, True]),
    (dict(kind="finite", columns=["a"]), {"a": [1.0, float("nan"), float("inf"), None]}, [True, False, False, True]),
    (dict(kind="range", column="a", min=0, max=10), {"a": [0.0, 10.0, 10.01, -1.0, None]}, [True, True, False, False, True]),
    (dict(kind="allowed", column="s", values=["RUN", "IDLE"]), {"s": ["RUN", "run", "IDLE", None]}, [True, False, True, True]),
    (dict(kind="duplicate", columns=["k"]), {"k": [1, 2, 1, 3, 2]}, [True, True, False, True, False]),
    (dict(kind="text_length", column="t", min_words=2, max_chars=12), {"t": ["a b", "one", "a b c d e f g h"]}, [True, False, False]),
    (dict(kind="text_chars", column="t", min_alnum_share=0.5), {"t": ["abc def", "!!!???", "a\x00\x01\x02"]}, [True, False, False]),
    # a multi-line document's tabs and line breaks are its layout, not non-printable characters
    (dict(kind="text_chars", column="t", max_nonprintable_share=0.01), {"t": ["l1\n\tl2\r\nl3\n", "ab\x00", "x\u200by"]},
     [True, False, False]),
    (dict(kind="text_repetition", column="t", max_repeated_word_share=0.5), {"t": ["a b c", "x x x x", "a a b"]}, [True, False, True]),
    (dict(kind="text_duplicate", column="t"), {"t": ["Hello  World", "hello world", "other"]}, [True, False, True]),
]


@pytest.mark.parametrize("spec, data, keep", CASES, ids=[c[0]["kind"] for c in CASES])
def test_rule_row_table(spec, data, keep):
    df = pl.DataFrame(data)
    expr = compile_rule(rule(**spec))
    eager = df.select(expr.alias("keep"))
    lazy = df.lazy().select(expr.alias("keep")).collect()
    assert_frame_equal(eager, lazy)
    assert eager["keep"].to_list() == keep


def _series(values, machine="M01"):
    return pl.DataFrame({"machine_id": [machine] * len(values),
                         "ts": [T0 + timedelta(minutes=i) for i in range(len(values))], "x": values})


def test_stuck_flags_whole_run_per_machine_even_when_interleaved():
    a = _series([1.0, 2.0] + [5.0] * 6 + [3.0, 4.0])
    b = _series([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0], "M02")
    df = pl.concat([a, b]).sample(fraction=1.0, shuffle=True, seed=1)  # shuffled input
    cfg = PrefilterConfig(rules=[dict(kind="stuck", columns=["x"], window=5)])
    kept = _run(df, cfg)
    assert kept.filter(pl.col("machine_id") == "M01").height == 4  # the run of 6 identical readings
    assert kept.filter(pl.col("machine_id") == "M02").height == 10


def test_spike_and_rate_of_change():
    vals = list(np.sin(np.arange(40) / 3.0) * 2 + 10)
    vals[20] = 60.0
    df = _series(vals)
    kept = _run(df, PrefilterConfig(rules=[dict(kind="spike", columns=["x"], window=7, k=6.0)]))
    assert kept.height == 39 and 60.0 not in kept["x"].to_list()
    kept = _run(df, PrefilterConfig(rules=[dict(kind="rate_of_change", column="x", max_delta=5.0)]))
    # the jump to 60 and the jump back both exceed 5 per step
    assert kept.height == 38


def _run(df, cfg, tmp=None):
    import tempfile, os

    d = tempfile.mkdtemp()
    s = prefilter(df.lazy(), os.path.join(d, "out.parquet"), cfg)
    out = pl.read_parquet(s.output)
    assert s.rows_in == s.rows_out + sum(s.dropped.values()) == df.height
    assert s.rows_out == out.height
    return out


def test_counts_first_failing_and_alone(tmp_path):
    df = pl.DataFrame({"a": [1.0, None, 50.0, None, 2.0], "k": [1, 2, 3, 1, 1]})
    cfg = PrefilterConfig(rules=[
        dict(kind="not_null", columns=["a"], name="a_present"),
        dict(kind="range", column="a", max=10, name="a_small"),
        dict(kind="duplicate", columns=["k"], name="k_unique"),
    ])
    s = prefilter(df.lazy(), tmp_path / "out.parquet", cfg, excluded_path=tmp_path / "excluded.parquet")
    assert s.rows_in == 5 and s.rows_out == 1
    assert s.dropped == {"a_present": 2, "a_small": 1, "k_unique": 1}
    assert s.alone == {"a_present": 2, "a_small": 1, "k_unique": 2}
    ex = pl.read_parquet(tmp_path / "excluded.parquet")
    assert sorted(ex["rule"].to_list()) == ["a_present", "a_present", "a_small", "k_unique"]


def test_no_python_udfs_in_prefilter_or_features():
    import inspect

    import rsft.features
    import rsft.prefilter

    for mod in (rsft.prefilter, rsft.features):
        src = inspect.getsource(mod)
        assert "map_elements" not in src and "numba" not in src and "map_batches" not in src


@pytest.mark.parametrize("rule, says", [
    ({"kind": "range", "column": "s01", "min": 5, "max": 1}, "min 5.0 > max 1.0"),
    ({"kind": "stuck", "columns": ["s01"], "window": 0}, "window"),
    ({"kind": "spike", "columns": ["s01"], "window": -3}, "window"),
    ({"kind": "text_length", "min_words": 9, "max_words": 2}, "min_words 9 > max_words 2"),
    ({"kind": "rate_of_change", "column": "s01", "max_delta": 0}, "max_delta"),
])
def test_misconfigured_rule_fails_in_one_line(tmp_path, rule, says):
    from rsft.config import ConfigError, load_config

    from pathlib import Path

    data = yaml.safe_load((Path(__file__).parents[1] / "examples" / "factory.yaml").read_text())
    data["prefilter"]["rules"] = [{"kind": "not_null", "columns": ["s01"]}, rule]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg and says in msg and "prefilter" in msg


def test_rule_on_unknown_column_fails_naming_rule_and_column(tmp_path):
    from rsft.config import PrefilterConfig
    from rsft.prefilter import prefilter

    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "range", "column": "s99", "max": 3, "name": "hot"}]})
    lf = pl.LazyFrame({"s01": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"^prefilter rule 'hot': unknown column\(s\) s99 \(the data has: s01\)$"):
        prefilter(lf, tmp_path / "o.parquet", cfg)


def test_blocked_window_rules_equal_the_whole_pool_evaluation(tmp_path):
    """Blocks of whole days + context rows give exactly the rows and counts of one global pass,
    including stuck runs and spikes that cross a block edge (midnight)."""
    from rsft.config import SynthConfig
    from rsft.prefilter import _count_aggs, flagged
    from rsft.synth import generate_day, make_regime

    sc = SynthConfig(seed=3, machines=3, samples_per_day=300, days=6, fault_rate=0.02)
    df = pl.concat([generate_day(sc, d, make_regime(sc))[0] for d in range(6)]).sample(fraction=1.0, shuffle=True, seed=1)
    # a stuck run across the first midnight of M01: its last readings of day 0 and first of day 1
    m1 = df.filter(pl.col("machine_id") == "M01").sort("ts")
    day0_end = m1.filter(pl.col("ts").dt.date() == m1["ts"].dt.date().min()).height
    stuck_ts = m1["ts"][day0_end - 3 : day0_end + 3]
    df = df.with_columns(pl.when(pl.col("ts").is_in(stuck_ts.implode()) & (pl.col("machine_id") == "M01"))
                         .then(42.0).otherwise(pl.col("s01")).alias("s01"))
    rules = [
        {"kind": "duplicate", "columns": ["machine_id", "ts"]},
        {"kind": "stuck", "columns": ["s01", "s02"], "window": 5},
        {"kind": "spike", "columns": ["s01", "s03"], "window": 7, "k": 5.0},
        {"kind": "rate_of_change", "column": "s05", "max_delta": 1.5},
    ]
    cfg = PrefilterConfig.model_validate({"rules": rules, "block_rows": 500})  # one day per block
    s = prefilter(df.lazy(), tmp_path / "out.parquet", cfg)
    whole, flags = flagged(df.lazy(), cfg)
    want_counts = whole.select(_count_aggs(flags)).collect().row(0, named=True)
    want = whole.filter(pl.all_horizontal(flags)).drop(flags).collect()
    got = pl.read_parquet(tmp_path / "out.parquet")
    key = ["machine_id", "ts", "s01"]
    assert_frame_equal(got.sort(key), want.sort(key), check_dtypes=False)
    assert s.rows_in == df.height and list(s.dropped.values()) == [want_counts[f"__first_{i}"] for i in range(4)]
    assert list(s.alone.values()) == [want_counts[f"__alone_{i}"] for i in range(4)]
    assert s.dropped["stuck:s01,s02"] >= 6  # the planted run across midnight is caught


def test_duplicate_key_without_time_is_refused_with_window_rules(tmp_path):
    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "duplicate", "columns": ["s01"]},
                                                    {"kind": "stuck", "columns": ["s01"]}]})
    lf = pl.LazyFrame({"machine_id": ["M01"], "ts": [datetime(2026, 1, 1, tzinfo=timezone.utc)], "s01": [1.0]})
    with pytest.raises(ValueError, match="duplicate key must include machine_id and ts"):
        prefilter(lf, tmp_path / "o.parquet", cfg)


@pytest.mark.parametrize("rules", ["with_window_rules", "without"])
def test_rolling_features_derived_in_blocks_equal_the_whole_kept_pool(tmp_path, rules):
    """Trailing rolling aggregates computed block by block (each block with its machines' last
    kept rows in front) equal those computed on the whole kept pool at once; a machine absent
    from a block keeps its context."""
    import numpy as np

    from rsft.config import FeaturesConfig, PrefilterConfig
    from rsft.features import add_rolling_features, rolling_feature_exprs
    from rsft.prefilter import Derive, prefilter

    rng = np.random.default_rng(4)
    rows = []
    for day in range(6):
        for m in ("M01", "M02", "M03"):
            if m == "M03" and day in (2, 3):  # a machine silent for two days
                continue
            n = 40
            ts = pl.datetime_range(pl.datetime(2026, 1, 1 + day, 0), pl.datetime(2026, 1, 1 + day, 23), "1h",
                                   time_zone="UTC", eager=True).sample(n, seed=day, with_replacement=True).sort()
            rows.append(pl.DataFrame({"machine_id": [m] * n, "ts": ts, "s01": rng.normal(50, 5, n),
                                      "_source": "x", "_row": np.arange(n) + 1000 * day}))
    pool = pl.concat(rows).unique(["machine_id", "ts"]).sample(fraction=1.0, shuffle=True, seed=1)  # any row order
    pool = pool.with_columns(pl.when(pl.int_range(pl.len()) % 17 == 0).then(500.0).otherwise(pl.col("s01")).alias("s01"))
    rule_set = [{"kind": "range", "column": "s01", "min": 0, "max": 150}]
    if rules == "with_window_rules":
        rule_set.append({"kind": "stuck", "columns": ["s01"], "window": 3})
    cfg = PrefilterConfig(rules=rule_set, block_rows=100)  # several blocks
    feats = FeaturesConfig(numeric=["s01"], rolling=[{"columns": ["s01"], "window": 5, "stats": ["mean", "std", "max"]}])
    derive = Derive(tuple(rolling_feature_exprs(feats)), "machine_id", "ts", 4)
    prefilter(pool.lazy(), tmp_path / "derived.parquet", cfg, derive=derive)
    prefilter(pool.lazy(), tmp_path / "plain.parquet", cfg)
    got = pl.read_parquet(tmp_path / "derived.parquet").sort("machine_id", "ts")
    want = add_rolling_features(pl.read_parquet(tmp_path / "plain.parquet"), feats).sort("machine_id", "ts")
    assert got.height == want.height > 0 and got["s01"].max() <= 150
    for c in ("s01_mean5", "s01_std5", "s01_max5"):
        assert np.allclose(got[c].fill_null(-1).to_numpy(), want[c].fill_null(-1).to_numpy()), c


def test_spike_statistics_equal_polars_centred_kernels():
    """The spike rule's centred rolling median/quartiles (a merge network where the window is
    inside the machine, a row-by-row sort of cut and null windows, Polars' kernels on a patch
    frame near ±inf/NaN) equal Polars' centred kernels
    per machine — statistics (equal values: `Series.equals` does not tell -0.0 from 0.0, and the
    network's min/max may give a zero median the other sign) and flags — on frames with short
    machines, nulls, NaN, ±inf, -0.0, ties, a null machine id, windows from 3 to 39 (the widest on
    Polars' kernels alone), a column with NaN near most rows, a Boolean column and machines whose
    rows are not contiguous (seeded: rng 1, 80 frames)."""
    import numpy as np

    from rsft.config import PrefilterConfig
    from rsft.prefilter import _STATS, flagged, with_window_stats

    def centred(rule) -> pl.Expr:  # the rule as written before: Polars' centred kernels
        out = []
        for c in rule.columns:
            x, w = pl.col(c), rule.window
            med = x.rolling_median(w, center=True, min_samples=1)
            iqr = (x.rolling_quantile(0.75, "linear", w, center=True, min_samples=1)
                   - x.rolling_quantile(0.25, "linear", w, center=True, min_samples=1))
            sigma = (iqr / 1.349).clip(lower_bound=1e-9)
            out.append((~((x - med).abs() > rule.k * sigma)).over(rule.by).fill_null(True))
        return pl.all_horizontal(out)

    rng = np.random.default_rng(1)
    flagged_rows = checked = 0
    for trial in range(80):
        frames = []
        for m in range(int(rng.integers(1, 8))):
            n = int(rng.integers(1, 60))
            a = rng.normal(0, 1, n).round(1)  # rounded: ties
            a[rng.random(n) < 0.05] = 9.0
            if trial % 3 == 0:
                a[rng.random(n) < 0.04] = rng.choice([np.nan, np.inf, -np.inf, -0.0])
            frames.append(pl.DataFrame({
                "machine_id": [None if m == 0 and trial % 5 == 0 else f"M{m}"] * n, "ts": np.arange(n),
                "a": pl.Series([None if rng.random() < 0.1 else v for v in a], dtype=pl.Float64),
                "b": rng.normal(0, 1, n).round(2)}))
        df = pl.concat(frames, how="vertical_relaxed").sample(fraction=1, shuffle=True, seed=trial)
        w0, w1 = int(rng.integers(3, 15)), int(rng.integers(3, 40))
        cfg = PrefilterConfig.model_validate({"rules": [
            {"kind": "spike", "columns": ["a", "b"], "window": w0, "k": 2.0},
            {"kind": "spike", "columns": ["a"], "window": w1, "k": 1.5}]})
        lf, flags = flagged(df.lazy(), cfg)
        got = lf.collect()
        ordered = df.sort("machine_id", "ts", maintain_order=True)
        want = ordered.with_columns([centred(r).alias(f) for r, f in zip(cfg.rules, flags)])
        assert got.equals(want), (trial, w0, w1)
        flagged_rows += int((~got[flags[0]]).sum())
        stats, names = with_window_stats(ordered.lazy(), cfg.rules)
        stats = stats.collect()
        for r in cfg.rules:
            for c in r.columns:
                for st, fn in _STATS.items():
                    name = next(n for n in names if n.startswith(f"__{st}{r.window}_") and n.endswith(f"_{c}"))
                    ref = ordered.select(fn(pl.col(c), r.window, center=True).over("machine_id"))[c]
                    assert stats[name].equals(ref, check_names=False), (trial, name)  # nulls, NaN alike
                    checked += 1
    assert flagged_rows > 20 and checked > 400  # the planted spikes are flagged
    # the other paths: a column with NaN near most rows (Polars' trailing kernels, shifted back),
    # a Boolean column (not numeric for the network), machines whose rows are not contiguous
    n = 400
    x = rng.normal(0, 1, n)
    x[rng.random(n) < 0.3] = np.nan
    odd = pl.DataFrame({"machine_id": np.repeat(["A", "B", "C", "D"], n // 4), "ts": np.arange(n), "x": x,
                        "on": rng.random(n) < 0.5})
    for frame in (odd, odd.sample(fraction=1, shuffle=True, seed=3)):  # shuffled: not contiguous
        cfg = PrefilterConfig.model_validate({"rules": [{"kind": "spike", "columns": ["x", "on"], "window": 7, "k": 2.0}]})
        stats = with_window_stats(frame.lazy(), cfg.rules)[0].collect()
        for c in ("x", "on"):
            for st, fn in _STATS.items():
                ref = frame.select(fn(pl.col(c), 7, center=True).over("machine_id"))[c]
                assert stats[f"__{st}7_{c}"].equals(ref, check_names=False), (c, st)
    # a run of nulls longer than the window inside a machine: those windows have no reading
    gap = pl.DataFrame({"machine_id": ["M"] * 30, "ts": np.arange(30),
                        "a": pl.Series([None if 8 <= i < 22 else float(i % 4) for i in range(30)], dtype=pl.Float64)})
    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "spike", "columns": ["a"], "window": 5, "k": 2.0}]})
    stats, names = with_window_stats(gap.lazy(), cfg.rules)
    for st, fn in _STATS.items():
        ref = gap.select(fn(pl.col("a"), 5, center=True).over("machine_id"))["a"]
        assert ref.null_count() > 0 and stats.collect()[f"__{st}5_a"].equals(ref, check_names=False), st


def test_window_stats_merge_network_equals_polars():
    """The spike statistics' merge network (sorted runs shared between neighbouring rows, NumPy,
    whole column or a few windows a pass) and the row-by-row sort of cut and null windows equal Polars' centred kernels per machine on
    unrounded readings (interpolation to the last bit), integer columns, every window 3…24 (odd
    and even), machines shorter than the window, nulls, runs of ties and ±∞/NaN (seeded: rng 7)."""
    import numpy as np

    from rsft.config import PrefilterConfig
    from rsft.prefilter import _STATS, _plan_for, _window_stats, flagged, with_window_stats

    rng = np.random.default_rng(7)
    for w in range(3, 25):  # the plan alone: every window of a long column, against a plain sort
        x = rng.normal(0, 1, 300) * rng.exponential(1, 300)
        got = _window_stats(x, w)
        win = np.sort(np.lib.stride_tricks.sliding_window_view(x, w), axis=1)
        ref = pl.Series(x)
        chunks = _window_stats(x, w, np.empty((_plan_for(w, False)[1], w + 6)))  # 7 windows a pass
        for st, fn in _STATS.items():
            want = fn(ref, w, center=True).to_numpy()[w - 1 - (w - 1) // 2:][:len(x) - w + 1]
            assert np.array_equal(got[st], want) and np.array_equal(chunks[st], want), (w, st)
        assert np.array_equal(got["med"], win[:, (w - 1) // 2] if w % 2 else got["med"])
    for trial in range(40):
        frames = []
        for m in range(int(rng.integers(1, 6))):
            n = int(rng.integers(1, 80))
            a = rng.normal(0, 1, n) * 10.0 ** rng.integers(-3, 4)
            if trial % 2:
                a = a.round(1)  # ties
            if trial % 4 == 1:
                a[rng.random(n) < 0.03] = rng.choice([np.nan, np.inf, -np.inf])
            frames.append(pl.DataFrame({
                "machine_id": f"M{m}", "ts": np.arange(n),
                "a": pl.Series([None if rng.random() < 0.08 else v for v in a], dtype=pl.Float64),
                "i": pl.Series([None if rng.random() < 0.05 else int(v) for v in rng.integers(-50, 50, n)], dtype=pl.Int32),
                "j": rng.integers(0, 10**6, n)}))
        df = pl.concat(frames)
        wins = sorted({int(rng.integers(3, 25)), int(rng.integers(3, 25))})
        cfg = PrefilterConfig.model_validate({"rules": [
            {"kind": "spike", "columns": ["a", "i", "j"], "window": v, "k": 2.0} for v in wins]})
        stats = with_window_stats(df.lazy(), cfg.rules)[0].collect()
        for v in wins:
            for c in ("a", "i", "j"):
                for st, fn in _STATS.items():
                    ref = df.select(fn(pl.col(c), v, center=True).over("machine_id"))[c]
                    assert stats[f"__{st}{v}_{c}"].equals(ref, check_names=False), (trial, v, c, st)
    # an empty frame, a column of nulls only, a Float32 column (Polars' kernels) and one row
    cfg = PrefilterConfig.model_validate({"rules": [{"kind": "spike", "columns": ["a"], "window": 11, "k": 2.0}]})
    empty = pl.DataFrame({"machine_id": pl.Series([], dtype=pl.String), "ts": pl.Series([], dtype=pl.Int64),
                          "a": pl.Series([], dtype=pl.Float64)})
    assert flagged(empty.lazy(), cfg)[0].collect().height == 0
    for a in (pl.Series([None] * 33, dtype=pl.Float64), pl.Series(rng.normal(0, 1, 33), dtype=pl.Float32),
              pl.Series([1.5] + [None] * 32, dtype=pl.Float64)):
        df = pl.DataFrame({"machine_id": ["M"] * 30 + ["N"] * 3, "ts": np.arange(33), "a": a})
        stats = with_window_stats(df.lazy(), cfg.rules)[0].collect()
        for st, fn in _STATS.items():
            ref = df.select(fn(pl.col("a"), 11, center=True).over("machine_id"))["a"]
            assert stats[f"__{st}11_a"].equals(ref, check_names=False), (a.dtype, st)


@pytest.mark.parametrize("share, runs", [(0.002, 0), (0.01, 3), (0.05, 3), (0.3, 3), (0.9, 0)])
def test_window_stats_with_scattered_and_dense_nulls_equal_polars(share, runs, monkeypatch):
    """Windows holding nulls (scattered at 0.2 — a few, found around each null —, 1, 5, 30,
    90 %, and runs of nulls longer than the window) read their order statistics from the merge
    network's sorted ranks at the positions their count of readings gives: equal to Polars'
    centred kernels per machine, Float64 (ties and unrounded) and Int32, every window 3…24, the
    network in passes of 7 windows or in one; only the windows a machine's edge cuts are sorted
    row by row (seeded: rng 11 + 1000·share)."""
    from rsft import prefilter as pf
    from rsft.config import PrefilterConfig

    rng = np.random.default_rng(11 + int(1000 * share))
    sorted_rows = []
    exact = pf._exact_rows
    monkeypatch.setattr(pf, "_exact_rows", lambda *a: sorted_rows.append(len(a[4])) or exact(*a))
    machines = [int(rng.integers(1, 1000)) for _ in range(4)]
    n = sum(machines)
    null = rng.random(n) < share
    for at in rng.integers(0, n, runs):  # runs of nulls longer than any window
        null[at:at + int(rng.integers(25, 60))] = True
    a = rng.normal(0, 1, n) * rng.exponential(1, n)
    df = pl.DataFrame({"machine_id": np.repeat([f"M{m}" for m in range(4)], machines), "ts": np.arange(n),
                       "a": pl.Series(np.where(null, np.nan, a)).fill_nan(None),
                       "t": pl.Series(np.where(null, np.nan, a.round(0))).fill_nan(None),  # ties
                       "i": pl.Series(np.where(null[::-1], np.nan, rng.integers(-9, 9, n))).fill_nan(None).cast(pl.Int32)})
    for w in range(3, 25):
        cfg = PrefilterConfig.model_validate({"rules": [{"kind": "spike", "columns": ["a", "t", "i"], "window": w, "k": 2.0}]})
        sorted_rows.clear()
        monkeypatch.setattr(pf, "_CHUNK", 7 if w % 2 else 32_768)  # odd w: 7 windows a pass of the network
        stats = pf.with_window_stats(df.lazy(), cfg.rules)[0].collect()
        for c in ("a", "t", "i"):
            for st, fn in pf._STATS.items():
                ref = df.select(fn(pl.col(c), w, center=True).over("machine_id"))[c]
                assert stats[f"__{st}{w}_{c}"].equals(ref, check_names=False), (share, w, c, st)
        assert sum(sorted_rows) <= 3 * 4 * (w - 1), (share, w)  # the cut windows only, per column
        count = np.lib.stride_tricks.sliding_window_view(np.r_[np.zeros(w - 1 - (w - 1) // 2, bool), null,
                                                               np.zeros((w - 1) // 2, bool)], w).sum(axis=1)
        rows, readings = pf._short_windows(null, w)  # both ways of finding them: around each null, a running count
        assert np.array_equal(rows, np.flatnonzero(count)) and np.array_equal(readings, w - count[rows]), (share, w)
