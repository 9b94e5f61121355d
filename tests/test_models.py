"""Model zoo + evaluation: text classifier, MLP classification, autoencoder pretrain -> fine-tune,
user modules by import path, warm start, checkpoints, classification metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rsft.config import ModelConfig, TrainConfig
from rsft.evaluate import binary_auroc, classification_metrics, evaluate_model, predict, reconstruction_error
from rsft.models import (AutoencoderRegressor, SensorAutoencoder, TextClassifier, build_autoencoder, build_model,
                         checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint, set_standardization)
from rsft.train import fit, pretrain_autoencoder


class Tiny(nn.Module):
    """A user module plugged in by import path: built as Tiny(in_features, out_features)."""

    def __init__(self, in_features: int, out_features: int = 1):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


def _text(n=1200, buckets=50, n_classes=3, length=12, seed=0):
    """Class c rows contain bucket ids from a class-specific band plus shared noise ids; padded with ``buckets``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    ids = np.full((n, length), buckets, dtype=np.int64)
    for i in range(n):
        k = rng.integers(3, length + 1)
        own = rng.integers(10 * y[i], 10 * y[i] + 10, k // 2)
        noise = rng.integers(30, buckets, k - k // 2)
        ids[i, :k] = np.r_[own, noise]
    return ids, y.astype(np.int64)


# ---- text classifier -----------------------------------------------------------------------
def test_text_classifier_learns_and_round_trips(tmp_path):
    ids, y = _text()
    cfg = ModelConfig(kind="text", hidden=[32], embed_dim=16)
    torch.manual_seed(0)
    m = build_model(cfg, 50, 3)
    assert isinstance(m, TextClassifier) and m.embed.padding_idx == 50
    res = fit(m, (ids, y), TrainConfig(task="classification", epochs=15, lr=1e-2, patience=15, eval_every=None, seed=0))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    ti, ty = _text(400, seed=1)
    logits = predict(m, ti)
    assert logits.shape == (400, 3)
    met = evaluate_model(m, ti, ty, "classification")
    assert met["accuracy"] > 0.9 and met["auroc"] > 0.95  # separable bands; stated tolerance
    save_checkpoint(checkpoint(m, cfg, 50, ["text"]), tmp_path / "t.pt")
    m2 = model_from_checkpoint(load_checkpoint(tmp_path / "t.pt"))
    assert isinstance(m2, TextClassifier) and np.array_equal(predict(m2, ti), logits)


def test_text_padding_rows_ignore_padding():
    m = TextClassifier(10, 2, dim=4)
    a = torch.tensor([[1, 2, 10, 10]])
    b = torch.tensor([[1, 2, 10, 10, 10, 10]])
    assert torch.allclose(m(a), m(b))


# ---- MLP classification ------------------------------------------------------------------------
def test_mlp_classification_logits_and_no_label_offset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)  # 3 classes
    torch.manual_seed(0)
    m = build_model(ModelConfig(hidden=[32]), 3, 3)
    set_standardization(m, x, y)
    assert torch.count_nonzero(m.y_mean) == 0  # class ids are never an output offset
    fit(m, (x, y), TrainConfig(task="classification", epochs=20, lr=1e-2, patience=20, seed=0))
    assert predict(m, x).shape == (900, 3)
    assert evaluate_model(m, x, y, "classification")["accuracy"] > 0.85  # majority class is 0.5; stated tolerance


# ---- metrics ---------------------------------------------------------------------------------
def test_classification_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8]])
    met = classification_metrics(y, proba)
    assert met["accuracy"] == pytest.approx(0.8)
    # F1: class 0 = 2*1/(1+2), class 1 = 2*2/(3+2), class 2 = 1
    assert met["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)
    assert met["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.4, 0.7, 0.6, 0.8])))
    # logits give the same ranks (softmax is monotone per row) except across rows; check on log-probas
    assert classification_metrics(y, np.log(proba))["accuracy"] == pytest.approx(0.8)


def test_auroc_rank_based_with_ties_and_absent_class():
    assert binary_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert binary_auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    y = np.array([0, 1, 0, 1])  # class 2 absent: skipped, not NaN
    proba = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    assert classification_metrics(y, proba)["auroc"] == pytest.approx(1.0)
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    yy, ss = rng.integers(0, 2, 300), rng.normal(size=300).round(1)
    assert binary_auroc(yy, ss) == pytest.approx(sk.roc_auc_score(yy, ss))


# ---- autoencoder: pretrain -> fine-tune ---------------------------------------------------------
def _sensor(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    mix = np.array([[1.0, 0.5, -1, 2, 0, 0.3], [0.2, -1, 1, 0, 1.5, -0.7]])
    x = (z @ mix + 0.05 * rng.normal(size=(n, 6))) * [1, 10, 0.1, 5, 2, 1] + [0, 50, 0, -3, 1, 7]
    y = z[:, 0] - 2 * z[:, 1]
    return x.astype(np.float32), y.astype(np.float32)


def test_autoencoder_pretrain_then_fine_tune(tmp_path):
    x, y = _sensor()
    cfg = ModelConfig(kind="autoencoder", hidden=[32], latent=2)
    torch.manual_seed(0)
    ae = build_autoencoder(cfg, 6)
    set_standardization(ae, x)
    before = reconstruction_error(ae, x).mean()
    pretrain_autoencoder(ae, x, TrainConfig(epochs=15, lr=1e-2, patience=15, seed=0))
    after = reconstruction_error(ae, x).mean()
    assert after < 0.2 * before  # rank-2 data through a 2-wide bottleneck; stated tolerance
    # checkpoint of the pretrained autoencoder round-trips as an autoencoder
    save_checkpoint(checkpoint(ae, cfg, 6, list("abcdef")), tmp_path / "ae.pt")
    assert isinstance(model_from_checkpoint(load_checkpoint(tmp_path / "ae.pt")), SensorAutoencoder)

    # fine-tune starts from the pretrained encoder: equal weights before the first step
    reg = ae.with_head(1)
    assert isinstance(reg, AutoencoderRegressor)
    enc = {k: v.clone() for k, v in reg.encoder.state_dict().items()}
    assert all(torch.equal(enc[k], v) for k, v in ae.encoder.state_dict().items())
    assert torch.equal(reg.norm.mean, ae.norm.mean)
    set_standardization(reg, x, y)
    fit(reg, (x, y), TrainConfig(epochs=10, lr=1e-2, batch_size=64, freeze=["encoder.*"], patience=10, seed=0))
    assert all(torch.equal(enc[k], v) for k, v in reg.encoder.state_dict().items())  # frozen: unchanged
    assert evaluate_model(reg, x, y)["r2"] > 0.9
    # and the head model round-trips through build_model(kind="autoencoder")
    save_checkpoint(checkpoint(reg, cfg, 6, list("abcdef")), tmp_path / "reg.pt")
    reg2 = model_from_checkpoint(load_checkpoint(tmp_path / "reg.pt"))
    assert np.array_equal(predict(reg2, x), predict(reg, x))


# ---- user module, warm start ---------------------------------------------------------------
def test_user_module_by_import_path(tmp_path):
    cfg = ModelConfig(import_path="tests.test_models:Tiny")
    m = build_model(cfg, 4)
    assert isinstance(m, Tiny)
    save_checkpoint(checkpoint(m, cfg, 4, list("abcd")), tmp_path / "u.pt")
    m2 = model_from_checkpoint(load_checkpoint(tmp_path / "u.pt"))
    x = np.ones((3, 4), np.float32)
    assert np.array_equal(predict(m, x), predict(m2, x))


def test_warm_start_starts_from_the_champion(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (x @ [1.0, -2.0, 0.5, 0.0]).astype(np.float32)
    cfg = ModelConfig(hidden=[16])
    torch.manual_seed(0)
    champ = build_model(cfg, 4)
    set_standardization(champ, x, y)
    fit(champ, (x, y), TrainConfig(epochs=10, lr=1e-2, batch_size=32, patience=10, seed=0))
    save_checkpoint(checkpoint(champ, cfg, 4, list("abcd")), tmp_path / "champ.pt")
    warm = model_from_checkpoint(load_checkpoint(tmp_path / "champ.pt"))
    assert all(torch.equal(a, b) for a, b in zip(champ.state_dict().values(), warm.state_dict().values()))
    # one tiny-lr epoch stays next to the champion and keeps its (low) loss; a fresh model does not
    cold = build_model(cfg, 4)
    set_standardization(cold, x, y)
    t = TrainConfig(epochs=1, lr=1e-5, val_share=0.0, seed=1)
    rw, rc = fit(warm, (x, y), t), fit(cold, (x, y), t)
    dist = max(float((a - b).abs().max()) for a, b in zip(champ.parameters(), warm.parameters()))
    assert dist < 1e-3
    assert rw.history[0]["train_loss"] < 0.1 * rc.history[0]["train_loss"]


def test_pipeline_pretrain_of_an_autoencoder_learns_unlabelled_rows_first():
    """model.kind autoencoder in the pipeline's pretrain (base model, rsft adapt's warm start): the
    encoder is first trained to reconstruct the unlabelled rows, then the head on the labelled ones.
    Seed 0; tolerance: r2 > 0.9 on rank-2 data with a 2-wide bottleneck."""
    from rsft.pipeline.training import pretrain

    x, y = _sensor(2000)
    xu, _ = _sensor(3000, seed=1)  # unlabelled rows of the same process
    cfg = ModelConfig(kind="autoencoder", hidden=[32], latent=2)
    model, result = pretrain(cfg, x[:300], y[:300], TrainConfig(pretrain_epochs=30, lr=1e-2, patience=30, seed=0),
                             unlabelled=xu)
    assert isinstance(model, AutoencoderRegressor) and result.epochs_run >= 1
    assert evaluate_model(model, x[300:], y[300:])["r2"] > 0.9
