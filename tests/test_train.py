"""Model + fine-tune loop: learns, optimizers, freezing, early stopping, resume, loss rejection, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rsft.config import ModelConfig, TrainConfig
from rsft.evaluate import predict, regression_metrics
from rsft.models import build_model, checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint, set_standardization
from rsft.train import amp_dtype, fit, get_lr, loss_threshold


def _data(n=2000, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32) * [1, 10, 0.1, 5] + [0, 100, 0, -3]
    z = (x - [0, 100, 0, -3]) / [1, 10, 0.1, 5]
    y = (2 * z[:, 0] - z[:, 1] + np.tanh(z[:, 2] * z[:, 3]) + noise * rng.normal(size=n)).astype(np.float32)
    return x.astype(np.float32), y


def _model(x, y, hidden=(32, 32), dropout=0.0):
    """A seeded MLP standardised on (x, y): the same initial weights every call."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(hidden=list(hidden), dropout=dropout), x.shape[1])
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
    res = fit(m, (x, y), TrainConfig(optimizer=opt, schedule=schedule, lr=lr, epochs=6, patience=10, eval_every=None, seed=0))
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_lr_schedules_are_pure():
    """Over a budget of 9 optimizer steps (the schedule runs over planned steps, not epochs)."""
    c = TrainConfig(lr=1.0, schedule="cosine")
    assert get_lr(0, 9, c) == pytest.approx(1.0) and get_lr(9, 9, c) == pytest.approx(0.1)
    s = TrainConfig(lr=1.0, schedule="step")
    assert [get_lr(e, 9, s) for e in (0, 3, 6)] == pytest.approx([1.0, 0.1, 0.01])


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
    res = fit(_model(x, y), (x, y), TrainConfig(epochs=60, lr=1e-2, patience=3, min_steps=0, eval_every=None, seed=0))
    assert res.stopped_early and res.epochs_run < 60


def test_deterministic_and_resume_equals_uninterrupted(tmp_path):
    x, y = _data(800)
    cfg = TrainConfig(epochs=6, patience=10, eval_every=None, seed=5)  # a period per epoch
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


def test_fit_pins_its_step_order_same_seed_and_resume_after_any_epoch(tmp_path):
    """What a change of fit's step order would break: with dropout (the global torch RNG, per
    batch), clipped importance weights, running-quantile rejection, a validation split and early
    stopping, two fits with one seed end bit-identical, checkpointing changes nothing, and a fit
    interrupted after any epoch resumes to the same weights and the same result and history."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = rng.normal(size=300).astype(np.float32)  # noise: the validation loss soon stops improving
    w = rng.lognormal(0, 1, 300).astype(np.float32)
    cfg = TrainConfig(epochs=12, lr=0.1, patience=3, min_steps=0, eval_every=None, batch_size=64, weight_clip=2.0,
                      loss_threshold_quantile=0.9, loss_threshold_mode="running", seed=11)

    def model():
        return _model(x, y, hidden=[16], dropout=0.2)

    def same(p, q):
        return all(torch.equal(a, b) for a, b in zip(p.state_dict().values(), q.state_dict().values()))

    a = model()
    ref = fit(a, (x, y, w), cfg)
    # premises: early stopping ends the run (its bad-epoch count resumes too), past the best epoch
    # (the final weights are the checkpointed best state), and rejection skipped samples
    assert ref.stopped_early and ref.best_epoch < ref.epochs_run - 1 < cfg.epochs - 1
    assert all(h["skipped"] > 0 for h in ref.history)
    b = model()
    assert fit(b, (x, y, w), cfg).to_dict() == ref.to_dict() and same(a, b)
    c = model()
    assert fit(c, (x, y, w), cfg, checkpoint_dir=tmp_path / "whole").to_dict() == ref.to_dict() and same(a, c)
    for stop in range(ref.epochs_run - 1):

        def interrupt(row, stop=stop):
            if row["epoch"] == stop:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            fit(model(), (x, y, w), cfg, checkpoint_dir=tmp_path / str(stop), on_epoch=interrupt)
        d = model()
        assert fit(d, (x, y, w), cfg, checkpoint_dir=tmp_path / str(stop)).to_dict() == ref.to_dict(), stop
        assert same(a, d), stop
        assert [p.name for p in (tmp_path / str(stop)).iterdir()] == ["last.pt"]  # no temporary file left


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


# ---- loss-threshold rejection on a constructed batch ------------------------------------------
def _one_step(cfg_kw, y):
    """One SGD step of a zero-initialised Linear(1, 1) on a single batch: x = 1..n."""
    x = np.arange(1, len(y) + 1, dtype=np.float32)[:, None]
    lin = nn.Linear(1, 1)
    nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)
    model = nn.Sequential(lin, nn.Flatten(0))
    cfg = TrainConfig(optimizer="sgd", lr=0.01, weight_decay=0.0, grad_clip=None, epochs=1, batch_size=len(y),
                      val_share=0.0, schedule="constant", seed=0, **cfg_kw)
    res = fit(model, (x, np.asarray(y, np.float32)), cfg)
    return res, lin, x


def test_absolute_loss_threshold_skips_exactly_the_samples_above_it():
    y = np.array([0.1, 0.2, 3.0, 0.3, 5.0, 0.1, 4.0, 0.2], np.float32)  # at zero weights, loss = y²
    res, lin, x = _one_step({"loss_threshold": 1.0}, y)
    above = y**2 > 1.0
    assert res.history[0]["skipped"] == int(above.sum()) == 3
    # the step equals a plain SGD step on the kept samples only
    ref = nn.Linear(1, 1)
    nn.init.zeros_(ref.weight), nn.init.zeros_(ref.bias)
    keep = ~above
    loss = ((ref(torch.as_tensor(x[keep])).squeeze(-1) - torch.as_tensor(y[keep])) ** 2).mean()
    loss.backward()
    assert torch.allclose(lin.weight, -0.01 * ref.weight.grad) and torch.allclose(lin.bias, -0.01 * ref.bias.grad)


def test_quantile_threshold_rules():
    per = torch.arange(1.0, 11.0)  # losses 1..10
    t, run = loss_threshold(per, TrainConfig(loss_threshold_quantile=0.8), None)
    assert t == pytest.approx(8.2) and run is None and int((per > t).sum()) == 2
    t, _ = loss_threshold(per, TrainConfig(loss_threshold=5.0, loss_threshold_quantile=0.8), None)
    assert t == 5.0  # the stricter of the two rules
    cfg = TrainConfig(loss_threshold_quantile=0.8, loss_threshold_mode="running")
    t1, run = loss_threshold(per, cfg, None)  # first batch: its own quantile
    assert t1 == pytest.approx(8.2) and run == pytest.approx(8.2)
    t2, run = loss_threshold(per * 100, cfg, run)  # a batch of outliers is judged by the running value
    assert t2 == pytest.approx(8.2) and run == pytest.approx(0.9 * 8.2 + 0.1 * 820)


def test_running_quantile_rejection_logs_skips_and_resumes(tmp_path):
    x, y = _data(600, noise=0.05)
    y = y.copy()
    y[:30] += 40.0
    cfg = TrainConfig(epochs=4, lr=3e-3, patience=10, loss_threshold_quantile=0.9, loss_threshold_mode="running",
                      eval_every=None, seed=2)
    a = _model(x, y)
    res = fit(a, (x, y), cfg)
    assert all(h["skipped"] > 0 for h in res.history)

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(x, y), (x, y), cfg, checkpoint_dir=tmp_path, on_epoch=interrupt)
    b = _model(x, y)
    res_b = fit(b, (x, y), cfg, checkpoint_dir=tmp_path)
    assert [h["skipped"] for h in res_b.history] == [h["skipped"] for h in res.history]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_weight_clip_equals_pre_clipped_weights():
    x, y = _data(400)
    w = np.random.default_rng(0).lognormal(0, 1.5, 400).astype(np.float32)
    a, b = _model(x, y), _model(x, y)
    fit(a, (x, y, w), TrainConfig(epochs=2, weight_clip=3.0, seed=0))
    fit(b, (x, y, np.minimum(w, 3.0)), TrainConfig(epochs=2, seed=0))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_classification_task_with_weights_rejection_and_early_stopping():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    y[:30] = 1 - y[:30]  # flipped labels: the high-loss samples
    torch.manual_seed(0)
    m = build_model(ModelConfig(hidden=[16]), 4, 2)
    set_standardization(m, x, y)
    res = fit(m, (x, y, np.ones(600, np.float32)), TrainConfig(task="classification", epochs=8, lr=1e-2,
              loss_threshold_quantile=0.95, patience=8, seed=0))
    assert all(h["skipped"] > 0 for h in res.history) and res.best_val_loss < 0.69
    assert predict(m, x).shape == (600, 2)


def test_cpu_runs_without_autocast():
    assert amp_dtype(torch.device("cpu"), True) is None


# --------------------------------------------------------------------------------------
# model stacks: K copies trained in one pass (the adapt search's folds)
# --------------------------------------------------------------------------------------
def _stack_of(m, x, k=2):
    from rsft.models import stack_models

    s = stack_models(m, k, torch.as_tensor(x[:16]))
    assert s is not None
    return s


@pytest.mark.parametrize("val_share", [0.0, 0.2])
def test_a_model_stack_trains_each_copy_exactly_as_it_trains_alone(val_share):
    """Three label sets on the same rows: each stacked copy ends where its own fit ends (same
    batches, per-copy gradient clipping active, AdamW, cosine schedule, each copy's own best epoch
    and early stop — the pure-noise copy stops early alone)."""
    from rsft.models import unstack_model

    x, y1 = _data(600, seed=1)
    y2 = (0.5 * y1 + np.sin(x[:, 0])).astype(np.float32)
    y3 = np.random.default_rng(5).normal(size=len(y1)).astype(np.float32) * 3  # noise: val loss rises
    cfg = TrainConfig(epochs=8, lr=1e-2, grad_clip=0.05, val_share=val_share, patience=2, min_steps=0,
                      eval_every=None, seed=3)
    m = _model(x, y1)
    alone, epochs = [], []
    for y in (y1, y2, y3):
        c = _model(x, y1)
        r = fit(c, (x, y), cfg)
        alone.append(c)
        epochs.append(r.best_epoch)
    if val_share:
        assert len(set(epochs)) > 1, epochs  # premise: the copies' best epochs differ
    stack = _stack_of(m, x, 3)
    fit(stack, (np.stack([x] * 3, 1), np.stack([y1, y2, y3], 1), np.ones((len(x), 3), np.float32)), cfg)
    for j, c in enumerate(alone):
        got = unstack_model(stack, m, j)
        for (name, a), b in zip(c.state_dict().items(), got.state_dict().values()):
            assert torch.allclose(a, b, atol=2e-5), (j, name)
    # premise: the clip was active (so a clip over the copies together would have ended elsewhere)
    loss = ((m(torch.as_tensor(x)) - torch.as_tensor(y1)) ** 2).mean()
    loss.backward()
    assert torch.sqrt(sum((p.grad**2).sum() for p in m.parameters())) > 10 * cfg.grad_clip


def test_a_copy_that_stopped_early_keeps_its_best_epoch_while_the_stack_trains_on():
    """lr 0.2, patience 1: alone, the first copy stops at epoch 3 while the others train 12 epochs;
    in the stack it keeps training but must end at its own best state, even if its validation loss
    improves again later (it would never have seen that alone)."""
    from rsft.models import unstack_model

    x, y1 = _data(600, seed=1)
    ys = [y1, (0.5 * y1 + np.sin(x[:, 0])).astype(np.float32),
          (y1 + 2 * np.random.default_rng(1).normal(size=len(y1))).astype(np.float32)]
    cfg = TrainConfig(epochs=12, lr=0.2, grad_clip=None, val_share=0.2, patience=1, min_steps=0, eval_every=None,
                      seed=3)
    m = _model(x, y1)
    alone, runs = [], []
    for y in ys:
        c = _model(x, y1)
        runs.append(fit(c, (x, y), cfg).epochs_run)
        alone.append(c)
    stack = _stack_of(m, x, 3)
    r = fit(stack, (np.stack([x] * 3, 1), np.stack(ys, 1), np.ones((len(x), 3), np.float32)), cfg)
    assert runs[0] < r.epochs_run == max(runs), runs  # premise: the stack trained on past copy 0's stop
    for j, c in enumerate(alone):
        got = unstack_model(stack, m, j)
        for (name, a), b in zip(c.state_dict().items(), got.state_dict().values()):
            assert torch.allclose(a, b, atol=2e-5), (j, name)


def test_stack_padding_rows_weigh_nothing():
    from rsft.models import unstack_model

    x, y = _data(400, seed=2)
    cfg = TrainConfig(epochs=3, seed=0)
    m = _model(x, y)
    w = np.ones((len(x), 2), np.float32)
    w[300:, 1] = 0.0  # copy 1 has 300 rows; the rest of its column is padding
    out = []
    for pad_label in (0.0, 1e6):
        ys = np.stack([y, np.where(np.arange(len(y)) < 300, y, pad_label)], 1).astype(np.float32)
        s = _stack_of(m, x)
        fit(s, (np.stack([x, x], 1), ys, w), cfg)
        out.append(unstack_model(s, m, 1).state_dict())
    for k in out[0]:
        assert torch.equal(out[0][k], out[1][k]), k


def test_stack_models_refuses_what_it_cannot_stack():
    from rsft.models import TextClassifier, stack_models

    x, y = _data(50)
    probe = torch.as_tensor(x[:16])
    m = _model(x, y)
    s = stack_models(m, 3, probe)
    assert s is not None and s.stack_size == 3
    xs = torch.stack([probe, probe.flip(0), 2 * probe], 1)
    assert torch.allclose(s.eval()(xs), torch.stack([m(xs[:, j]) for j in range(3)], 1), atol=1e-5)

    class Mixes(nn.Module):  # only Linear parameters, but its forward mixes rows across the copies
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x):
            return self.lin(x - x.mean(-2, keepdim=True) if x.dim() == 3 else x).squeeze(-1)

    normed = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))  # LayerNorm has its own weights

    class Tied(nn.Module):  # one Linear under two names: only one name would be replaced
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = self.a
            self.out = nn.Linear(4, 1)

        def forward(self, x):
            return self.out(torch.relu(self.b(torch.relu(self.a(x))))).squeeze(-1)

    assert stack_models(Tied(), 2, probe) is None
    shared = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    shared[2].weight = shared[0].weight  # two modules, one weight
    assert stack_models(shared, 2, probe) is None
    assert stack_models(Mixes(), 2, probe) is None
    assert stack_models(normed, 2, probe) is None
    assert stack_models(TextClassifier(50, 2), 2, torch.zeros(4, 3, dtype=torch.int64)) is None
    with pytest.raises(ValueError, match="model stack"):
        fit(s, (np.stack([x] * 3, 1), np.stack([y] * 3, 1), np.ones((len(x), 3), np.float32)),
            TrainConfig(epochs=1, loss_threshold_quantile=0.9))


def test_seed_everything_seeds_torch_like_manual_seed():
    """seed_everything seeds the CPU generator directly (torch.manual_seed would queue lazy
    CUDA/XPU/MTIA seeding with a captured stack on every fit): the same stream either way."""
    from rsft.train import seed_everything

    seed_everything(123)
    a = (torch.rand(5), np.random.rand(2))
    torch.manual_seed(123)
    np.random.seed(123)
    b = (torch.rand(5), np.random.rand(2))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# --------------------------------------------------------------------------------------
# the budget in optimizer steps: independent of the number of rows
# --------------------------------------------------------------------------------------
@pytest.mark.slow  # the 20× longer reference run: ~2.5 min on one CPU thread
def test_a_small_set_converges_within_the_default_step_budget():
    """Seed 0, 1,000 rows of ``_data`` (850 train / 150 validation, same split in both runs), the
    default MLP [64, 64] and default TrainConfig: its best validation loss is within 5 % of the
    same fit given 20× the steps with early stopping off (patience 10⁹). Fails for the old
    epoch-based default (15 epochs = 60 steps here: validation loss ~150× the reference)."""
    from rsft.train import seed_everything

    x, y = _data(1000)

    def base():
        seed_everything(0)
        m = build_model(ModelConfig(), x.shape[1])
        set_standardization(m, x, y)
        return m

    default = TrainConfig(seed=0)
    got = fit(base(), (x, y), default)
    ref = fit(base(), (x, y), default.model_copy(update={"max_steps": 20 * default.max_steps, "patience": 10**9}))
    assert ref.steps == 20 * default.max_steps and got.steps <= default.max_steps
    assert got.best_val_loss <= 1.05 * ref.best_val_loss, (got.best_val_loss, ref.best_val_loss)


def test_a_million_rows_do_not_train_longer_than_the_old_epoch_budget():
    """Seed 0, 1 M rows × 4 features of random data, the default config with early stopping off
    (patience 10⁹, so the budget alone ends it): at most as many optimizer steps as the old default
    of 15 epochs at batch 256 over the 85 % training split (15 × 3,321 = 49,815), exactly
    ``max_steps``, part of one epoch; validation (150 k rows) runs in few, longer periods."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1_000_000, 4)).astype(np.float32)
    y = rng.normal(size=1_000_000).astype(np.float32)
    cfg = TrainConfig(seed=0, patience=10**9)
    res = fit(_model(x, y), (x, y), cfg)
    old_steps = 15 * -(-850_000 // 256)
    assert res.steps == cfg.max_steps <= old_steps and res.epochs_run == 2
    assert len(res.history) <= cfg.max_steps / 500  # periods of ≥ 150 k validation rows / 256 ≈ 586 steps


@pytest.mark.parametrize("eval_every", [5, 60])
def test_resume_mid_epoch_or_across_epochs_equals_uninterrupted(tmp_path, eval_every):
    """Seed 7, 2,000 rows at batch 64 (27 steps per epoch), dropout, running-quantile rejection and
    early stopping: periods of 5 steps (checkpoints mid-epoch) or of one epoch (27 steps: an epoch
    shorter than eval_every is its own period, patience counted in them); a fit
    interrupted after any period resumes to bit-identical weights and the same result."""
    x, y = _data(2000)
    cfg = TrainConfig(max_steps=300, min_steps=100, eval_every=eval_every, patience=3, batch_size=64, lr=1e-2,
                      loss_threshold_quantile=0.95, loss_threshold_mode="running", seed=7)

    def model():
        return _model(x, y, hidden=[16], dropout=0.1)

    a = model()
    ref = fit(a, (x, y), cfg)
    steps = [h["step"] for h in ref.history]
    assert steps[0] == (5 if eval_every == 5 else 27) and ref.history[0]["epoch"] == 0
    for stop in steps[:-1:3]:

        def interrupt(row, stop=stop):
            if row["step"] == stop:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            fit(model(), (x, y), cfg, checkpoint_dir=tmp_path / str(stop), on_epoch=interrupt)
        d = model()
        assert fit(d, (x, y), cfg, checkpoint_dir=tmp_path / str(stop)).to_dict() == ref.to_dict(), stop
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), d.state_dict().values())), stop


def test_a_short_epoch_is_its_own_period_and_patience_keeps_its_steps():
    """Seed 0, 120 rows at batch 256 (one step per epoch): every epoch is validated, so the best
    state of a fit is kept to the step; patience 4 × eval_every 250 = 1,000 steps, in 1-step periods."""
    from rsft.train import plan_budget

    b = plan_budget(TrainConfig(), steps_per_epoch=1, val_rows=18)
    assert b.period == 1 and b.patience == 1000 and not b.split
    big = plan_budget(TrainConfig(), steps_per_epoch=3000, val_rows=100_000)
    assert big.split and big.patience == TrainConfig().patience  # long epochs: periods of ~eval_every steps


def test_early_stopping_waits_for_min_steps():
    """Seed 0, pure-noise labels, patience 1, one period per epoch (4 steps): without a floor the
    fit stops within a few epochs; with min_steps 200 never before 200 steps, and soon after."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    y = rng.normal(size=1000).astype(np.float32)
    cfg = TrainConfig(lr=1e-2, patience=1, eval_every=None, min_steps=0, seed=0)
    free = fit(_model(x, y), (x, y), cfg)
    held = fit(_model(x, y), (x, y), cfg.model_copy(update={"min_steps": 200}))
    assert free.stopped_early and free.steps < 100
    assert held.stopped_early and 200 <= held.steps < 400 and held.best_val_loss <= free.best_val_loss
