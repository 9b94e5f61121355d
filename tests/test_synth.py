import hashlib

import numpy as np
import polars as pl

from rsft.config import SynthConfig
from rsft.synth import RANGES, SENSORS, generate_day, generate_target, write_synthetic

SMALL = SynthConfig(seed=3, machines=4, days=4, samples_per_day=200, target_sample_rows=100, target_holdout_rows=200,
                    fault_rate=0.01)


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    a = write_synthetic(SMALL, tmp_path / "a")
    b = write_synthetic(SMALL, tmp_path / "b")
    for fa, fb in zip(a.pool_files + [a.target_sample], b.pool_files + [b.target_sample]):
        assert _digest(fa) == _digest(fb)
    c = write_synthetic(SMALL.model_copy(update={"seed": 4}), tmp_path / "c")
    assert _digest(a.pool_files[0]) != _digest(c.pool_files[0])


def test_second_night_adds_files_and_keeps_old_ones(tmp_path):
    n1 = write_synthetic(SMALL, tmp_path)
    old = {f: _digest(f) for f in n1.pool_files}
    sample1 = _digest(n1.target_sample)
    n2 = write_synthetic(SMALL, tmp_path, night=2)
    assert len(n2.pool_files) == len(n1.pool_files) + SMALL.target_days
    assert all(_digest(f) == d for f, d in old.items())
    assert _digest(n2.target_sample) != sample1


def test_schema_formats_and_faults(tmp_path):
    s = write_synthetic(SMALL, tmp_path)
    assert any(f.endswith(".csv") for f in s.pool_files) and any(f.endswith(".parquet") for f in s.pool_files)
    df, logs = generate_day(SMALL, 0)
    assert df.columns == ["machine_id", "ts", *SENSORS, "status", "quality"]
    assert df.schema["ts"] == pl.Datetime("us", "UTC")
    # injected faults: nulls, out-of-range values, exact duplicate rows
    assert df.select(pl.col(SENSORS).null_count()).sum_horizontal().item() > 0
    out = sum(df.filter((pl.col(s) > RANGES[s][1]) | (pl.col(s) < RANGES[s][0])).height for s in SENSORS)
    assert out > 0
    assert df.height > df.unique().height
    # idle / maintenance rows carry no label
    assert df.filter(pl.col("status") != "RUN")["quality"].null_count() == df.filter(pl.col("status") != "RUN").height
    assert set(logs["category"].unique()) <= {"bearing", "seal", "electrical", "sensor", "other"}
    assert logs.height > 0 and logs["text"].str.len_chars().min() > 10


def test_target_regime_differs_from_pool():
    """The current regime must be a minority, shifted region of the pool's sensor space."""
    cfg = SynthConfig(seed=1, machines=8, days=10, samples_per_day=200)
    pool = pl.concat([generate_day(cfg, d)[0] for d in range(cfg.days)]).drop_nulls(SENSORS)
    tgt = generate_target(cfg, night=1, rows=500, stream=0)
    # pressure set-point of the current variant is higher: the target mean sits > 1 pool std above
    gap = (tgt["s05"].mean() - pool["s05"].mean()) / pool["s05"].std()
    assert gap > 1.0
    assert tgt["quality"].null_count() == 0
    assert np.isfinite(tgt.select(SENSORS).to_numpy()).all()
