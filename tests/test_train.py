"""Model + fine-tune loop: learns, optimizers, freezing, early stopping, resume, loss rejection, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsft.config import ModelConfig, TrainConfig
from rsft.evaluate import predict, regression_metrics
from rsft.models import build_model, checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint, set_standardization
from rsft.train import fit, get_lr


def _data(n=2000, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32) * [1, 10, 0.1, 5] + [0, 100, 0, -3]
    z = (x - [0, 100, 0, -3]) / [1, 10, 0.1, 5]
    y = (2 * z[:, 0] - z[:, 1] + np.tanh(z[:, 2] * z[:, 3]) + noise * rng.normal(size=n)).astype(np.float32)
    return x.astype(np.float32), y


def _model(x, y):
    torch.manual_seed(0)
    m = build_model(ModelConfig(hidden=[32, 32]), x.shape[1])
    set_standardization(m, x, y)
    return m


def test_learns_a_known_function():
    x, y = _data()
    m = _model(x, y)
    fit(m, (x, y), TrainConfig(epochs=40, lr=3e-3, patience=40, seed=0))
    xt, yt = _data(500, seed=1)
    assert regression_metrics(yt, predict(m, xt))["rmse"] < 0.3  # noise 0.1; stated tolerance


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_every_optimizer_and_schedule_lowers_the_loss(opt, schedule):
    x, y = _data(600)
    m = _model(x, y)
    lr = 1e-2 if opt in ("sgd", "momentum") else 3e-3
    res = fit(m, (x, y), TrainConfig(optimizer=opt, schedule=schedule, lr=lr, epochs=6, patience=10, seed=0))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_lr_schedules_are_pure():
    c = TrainConfig(lr=1.0, epochs=9, schedule="cosine")
    assert get_lr(0, c) == pytest.approx(1.0) and get_lr(9, c) == pytest.approx(0.1)
    s = TrainConfig(lr=1.0, epochs=9, schedule="step")
    assert [get_lr(e, s) for e in (0, 3, 6)] == pytest.approx([1.0, 0.1, 0.01])


def test_frozen_parameters_stay_bit_identical():
    x, y = _data(500)
    m = _model(x, y)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fit(m, (x, y), TrainConfig(epochs=3, freeze=["body.*"], seed=0))
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("body."))
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_early_stopping_on_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 4)).astype(np.float32)
    y = rng.normal(size=800).astype(np.float32)
    res = fit(_model(x, y), (x, y), TrainConfig(epochs=60, lr=1e-2, patience=3, seed=0))
    assert res.stopped_early and res.epochs_run < 60


def test_deterministic_and_resume_equals_uninterrupted(tmp_path):
    x, y = _data(800)
    cfg = TrainConfig(epochs=6, patience=10, seed=5)
    a, b = _model(x, y), _model(x, y)
    fit(a, (x, y), cfg)
    fit(b, (x, y), cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # interrupted after 3 epochs (the callback raises, as a kill would), then resumed from last.pt

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    c = _model(x, y)
    with pytest.raises(KeyboardInterrupt):
        fit(c, (x, y), cfg, checkpoint_dir=tmp_path, on_epoch=interrupt)
    d = _model(x, y)
    fit(d, (x, y), cfg, checkpoint_dir=tmp_path)
    np.testing.assert_allclose(predict(d, x), predict(a, x), rtol=0, atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
    x, y = _data(300)
    m = _model(x, y)
    fit(m, (x, y), TrainConfig(epochs=2, seed=0))
    save_checkpoint(checkpoint(m, ModelConfig(hidden=[32, 32]), 4, list("abcd")), tmp_path / "m.pt")
    m2 = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert np.array_equal(predict(m, x), predict(m2, x))


def test_loss_threshold_rejection_skips_outliers():
    x, y = _data(1000, noise=0.05)
    y = y.copy()
    y[:50] += 40.0  # planted label outliers: 5 %
    m = _model(x, y)
    res = fit(m, (x, y), TrainConfig(epochs=20, lr=3e-3, patience=20, loss_threshold_quantile=0.9, val_share=0.0, seed=0))
    assert all(h["skipped"] > 0 for h in res.history)
    clean = _model(x, y)
    fit(clean, (x, y), TrainConfig(epochs=20, lr=3e-3, patience=20, val_share=0.0, seed=0))
    xt, yt = _data(500, seed=2, noise=0.05)
    assert regression_metrics(yt, predict(m, xt))["rmse"] < regression_metrics(yt, predict(clean, xt))["rmse"]


def test_importance_weights_pull_the_fit():
    """Two clusters with different labels at the same x: weights decide which label wins."""
    x = np.zeros((400, 4), np.float32)
    y = np.r_[np.zeros(200), np.ones(200)].astype(np.float32)
    w = np.r_[np.full(200, 0.1), np.full(200, 10.0)].astype(np.float32)
    m = _model(x + np.random.default_rng(0).normal(0, 1e-3, x.shape).astype(np.float32), y)
    fit(m, (x, y, w), TrainConfig(epochs=30, lr=1e-2, patience=30, val_share=0.0, seed=0))
    assert predict(m, x[:1])[0] > 0.9
