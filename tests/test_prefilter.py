"""Prefilter rules: one row table per rule, eager == lazy, accounting, window rules per machine."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
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
    out_path = f"/dev/null"
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
