"""Adaptation search: grouped folds, the one-SE choice, recipes (pure parts; fast)."""

import numpy as np
import pytest
import torch
from torch import nn

from rsft.adapt import (
    CandidateResult,
    choose,
    grouped_folds,
    head_only_freeze,
    make_candidates,
    recalibrate,
    rejection_indices,
    time_blocks,
)
from rsft.config import AdaptConfig


def test_grouped_folds_never_split_a_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 13, size=500)
    folds = grouped_folds(groups, 4, seed=1)
    assert len(folds) == 4
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen.tolist()) == list(range(500))  # every row validated exactly once
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
        assert len(np.intersect1d(tr, va)) == 0


def test_more_folds_than_groups_is_one_clear_error():
    with pytest.raises(ValueError, match="only 3 groups"):
        grouped_folds(np.array([0, 0, 1, 1, 2, 2]), 4)


def test_time_blocks_are_contiguous_and_balanced():
    b = time_blocks(100, 8)
    assert (np.diff(b) >= 0).all() and b.min() == 0 and b.max() == 7
    assert np.bincount(b).max() - np.bincount(b).min() <= 1


def test_candidates_order_and_grid():
    cfg = AdaptConfig(strategies=["keep_champion", "sample_only", "rsft"], betas=[0.0, 1.0], m_quantiles=[1.0, 0.99])
    cands = make_candidates(cfg)
    assert [c.name for c in cands][:2] == ["keep_champion", "sample_only"]
    assert sum(c.strategy == "rsft" for c in cands) == 4
    assert [c.cost for c in cands] == sorted(c.cost for c in cands)
    with pytest.raises(Exception):
        AdaptConfig(strategies=["telepathy"])


def _result(name, cost, losses):
    return CandidateResult(name, name, cost, fold_losses=losses)


def test_one_se_rule_prefers_the_cheaper_candidate():
    cheap = _result("sample_only", 1, [0.99, 0.985, 0.995, 0.98])  # mean 0.9875
    best = _result("rsft", 5, [0.97, 0.99, 1.00, 0.98])  # mean 0.985, SE 0.0065
    chosen, why = choose([cheap, best], one_se=True)
    assert chosen is cheap and "one SE" in why
    chosen, _ = choose([cheap, best], one_se=False)
    assert chosen is best
    # clearly better beats cheaper
    far = _result("rsft", 5, [0.5, 0.52, 0.49, 0.51])
    assert choose([cheap, far])[0] is far


def test_keep_champion_wins_when_nothing_beats_it():
    keep = _result("keep_champion", 0, [1.0, 1.0, 1.0])
    worse = _result("rsft", 3, [1.2, 1.3, 1.25])
    assert choose([keep, worse])[0] is keep


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


def _predict(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x)).squeeze(-1).numpy()


def test_recalibrate_fixes_gain_and_offset_drift():
    model = _mlp()
    x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    f = _predict(model, x)
    y = 2.5 * f - 0.7  # the sensor's gain and offset drifted
    fixed = recalibrate(model, x, y, _predict)
    np.testing.assert_allclose(_predict(fixed, x), y, atol=1e-4)
    assert type(fixed) is type(model)  # still the same architecture: checkpoints keep working


def test_head_only_freezes_all_but_last_layer():
    names = head_only_freeze(_mlp())
    assert names == ["0.weight", "0.bias"]


def test_beta_zero_is_uniform_and_beta_one_follows_w():
    """β = 0 accepts every row equally (a uniform subset); β = 1 accepts ∝ w."""
    rng = np.random.default_rng(0)
    log_w = np.log(np.linspace(0.01, 1.0, 20_000))
    acc0 = rejection_indices(log_w, 0.0, 1.0, rng)
    assert len(acc0) == len(log_w)  # M = 1 = w^0: everything accepted, uniformly
    acc1 = rejection_indices(log_w, 1.0, 1.0, np.random.default_rng(1))
    # acceptance probability = w / max w: the mean accepted w is E[w^2]/E[w] (tolerance 2 %)
    w = np.exp(log_w)
    expected = (w**2).mean() / w.mean()
    assert abs(w[acc1].mean() - expected) / expected < 0.02
    assert abs(len(acc1) / len(w) - w.mean() / w.max()) < 0.01
