"""Streaming Parquet data: each row once per epoch, seeded shuffle, hold-out, workers, and fit over a stream."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from rsft.config import ModelConfig, TrainConfig
from rsft.data import ParquetStream, holdout_mask
from rsft.evaluate import predict, regression_metrics
from rsft.models import build_model, set_standardization
from rsft.train import fit


def _write(path, n=3000, seed=0, files=2, row_group=400):
    """``files`` Parquet files of a known function y = f(x) + 0.05 noise; column ``i`` = global row id."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32) * [1, 10, 0.1, 5] + [0, 100, 0, -3]
    z = (x - [0, 100, 0, -3]) / [1, 10, 0.1, 5]
    y = (2 * z[:, 0] - z[:, 1] + np.tanh(z[:, 2] * z[:, 3]) + 0.05 * rng.normal(size=n)).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(n), files)):
        cols = {f"x{j}": x[part, j].astype(np.float32) for j in range(4)}
        cols |= {"y": y[part], "w": np.full(len(part), 2.0, np.float32), "i": part.astype(np.int64)}
        pq.write_table(pa.table(cols), path / f"part-{k}.parquet", row_group_size=row_group)
    return x.astype(np.float32), y


FEATS = ["x0", "x1", "x2", "x3"]


def _ids(stream, epoch=0):
    stream.set_epoch(epoch)
    return np.concatenate([b[0][:, 0].numpy() for b in stream]), np.concatenate([b[1].numpy() for b in stream])


def test_every_row_once_per_epoch_and_seeded_shuffle(tmp_path):
    _write(tmp_path, n=3000)
    s = ParquetStream(tmp_path, ["i"], "y", "w", batch_size=64, shuffle_buffer=500, read_rows=128, seed=3)
    assert s.num_rows == 3000
    e0, e1 = _ids(s, 0)[0], _ids(s, 1)[0]
    assert sorted(e0.astype(int)) == list(range(3000)) == sorted(e1.astype(int))
    assert not np.array_equal(e0, e1)  # a new order each epoch
    assert np.array_equal(e0, _ids(s, 0)[0])  # and the same order again for the same (seed, epoch)
    s2 = ParquetStream(tmp_path, ["i"], "y", "w", batch_size=64, shuffle_buffer=500, read_rows=128, seed=3)
    assert np.array_equal(e0, _ids(s2, 0)[0])
    batch = next(iter(s))
    assert batch[0].dtype == torch.float32 and batch[0].shape == (64, 1) and torch.all(batch[2] == 2.0)
    # the buffer mixes across row groups: the first batch is not from one 400-row group only
    assert np.ptp(e0[:64]) > 400


def test_unshuffled_stream_keeps_file_order(tmp_path):
    _write(tmp_path, n=1000)
    s = ParquetStream(tmp_path / "part-*.parquet", ["i"], batch_size=100, shuffle=False)
    ids = _ids(s)[0]
    assert np.array_equal(ids, np.arange(1000)) and all(len(b[1]) == 100 for b in s)


def test_holdout_is_fixed_disjoint_and_the_right_share(tmp_path):
    _write(tmp_path, n=4000)
    tr, va = ParquetStream(tmp_path, ["i"], "y", batch_size=128, seed=1).holdout(0.2, seed=7)
    t0, t1, v0 = _ids(tr, 0)[0], _ids(tr, 1)[0], _ids(va, 0)[0]
    assert set(t0) == set(t1) and not set(t0) & set(v0) and len(t0) + len(v0) == 4000
    assert abs(len(v0) / 4000 - 0.2) < 0.01
    assert np.array_equal(np.sort(v0).astype(int), np.flatnonzero(holdout_mask(np.arange(4000.0), 0.2, 7)))


def test_dataloader_workers_shard_without_overlap(tmp_path):
    _write(tmp_path, n=2400)
    s = ParquetStream(tmp_path, ["i"], "y", batch_size=50, shuffle_buffer=300, seed=0)
    s.set_epoch(2)
    # spawn, not fork: a forked worker inherits whatever the test process hosts (the session's
    # ephemeral Prefect server threads) and may exit non-zero at shutdown
    loader = DataLoader(s, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    ids = np.concatenate([b[0][:, 0].numpy() for b in loader])
    assert sorted(ids.astype(int)) == list(range(2400))


def test_fit_over_a_stream_learns_like_in_memory(tmp_path):
    x, y = _write(tmp_path, n=3000)
    cfg = TrainConfig(epochs=25, lr=3e-3, patience=25, seed=0)
    torch.manual_seed(0)
    mem = build_model(ModelConfig(hidden=[32, 32]), 4)
    set_standardization(mem, x, y)
    fit(mem, (x, y), cfg)
    torch.manual_seed(0)
    st = build_model(ModelConfig(hidden=[32, 32]), 4)
    set_standardization(st, x, y)
    res = fit(st, ParquetStream(tmp_path, FEATS, "y", batch_size=256, shuffle_buffer=1024, seed=0), cfg)
    assert res.history[0]["val_loss"] != res.history[0]["train_loss"]  # validated on the held-out rows
    xt, yt = _write(tmp_path / "test", n=500, seed=1)
    r_mem, r_st = regression_metrics(yt, predict(mem, xt))["rmse"], regression_metrics(yt, predict(st, xt))["rmse"]
    assert r_st < 0.3 and abs(r_st - r_mem) < 0.1  # noise 0.05; stated tolerance


def test_fit_over_a_stream_resumes_like_uninterrupted(tmp_path):
    x, y = _write(tmp_path / "d", n=1200)
    cfg = TrainConfig(epochs=4, patience=10, eval_every=None, seed=4)  # a period per epoch

    def model():
        torch.manual_seed(0)
        m = build_model(ModelConfig(hidden=[16]), 4)
        set_standardization(m, x, y)
        return m

    def stream():
        return ParquetStream(tmp_path / "d", FEATS, "y", "w", batch_size=128, shuffle_buffer=512, seed=4)

    a = model()
    fit(a, stream(), cfg, val=(x[:200], y[:200]))

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model(), stream(), cfg, val=(x[:200], y[:200]), checkpoint_dir=tmp_path / "ck", on_epoch=interrupt)
    b = model()
    fit(b, stream(), cfg, val=(x[:200], y[:200]), checkpoint_dir=tmp_path / "ck")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_autoencoder_pretrains_over_an_unlabelled_stream(tmp_path):
    from rsft.evaluate import reconstruction_error
    from rsft.models import build_autoencoder
    from rsft.train import pretrain_autoencoder

    x, _ = _write(tmp_path, n=2000)
    torch.manual_seed(0)
    ae = build_autoencoder(ModelConfig(hidden=[16], latent=3), 4)
    set_standardization(ae, x)
    before = reconstruction_error(ae, x).mean()
    pretrain_autoencoder(ae, ParquetStream(tmp_path, FEATS, batch_size=128, shuffle_buffer=512), TrainConfig(epochs=5, lr=1e-2, seed=0))
    assert reconstruction_error(ae, x).mean() < 0.5 * before  # 4 inputs through 3 latents; stated tolerance


def test_features_with_missing_values_name_the_rule_that_removes_them():
    """A nullable contract column used as a feature: the scorer's fit is refused in one line that
    names the columns, their counts and the rule (`not_null` for nulls — `finite` keeps nulls —,
    `finite` for NaN/±inf); complete features pass."""
    from pathlib import Path

    import polars as pl

    from rsft.config import load_config
    from rsft.pipeline.data import check_features_complete

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "factory.yaml")
    n = 50
    cols = {c: [1.0] * n for c in cfg.features.numeric}
    ok = pl.DataFrame(cols)
    check_features_complete(cfg, ok, "the pool sample")
    bad = ok.with_columns(pl.when(pl.int_range(n) < 3).then(None).otherwise(pl.col("s01")).alias("s01"),
                          pl.when(pl.int_range(n) < 2).then(float("nan")).otherwise(pl.col("s02")).alias("s02"))
    with pytest.raises(ValueError) as e:
        check_features_complete(cfg, bad, "the pool sample")
    msg = str(e.value)
    assert "\n" not in msg
    assert "s01 (3 rows)" in msg and "{kind: not_null, columns: [s01]}" in msg
    assert "s02 (2 rows)" in msg and "{kind: finite, columns: [s02]}" in msg
    # the suggested rule reaches the target sample too (prefilter.targets: row_rules); with none, only its contract does
    with pytest.raises(ValueError, match=r"row rules apply to the target sample too \(prefilter.targets\)"):
        check_features_complete(cfg, bad, "the target sample")
    none = cfg.model_copy(update={"prefilter": cfg.prefilter.model_copy(update={"targets": "none"})})
    with pytest.raises(ValueError, match="target sample is not prefiltered"):
        check_features_complete(none, bad, "the target sample")
