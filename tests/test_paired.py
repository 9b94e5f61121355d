"""The paired comparison of two models on the same hold-out rows (rsft.paired) and the gate's use
of it (promotion.min_z): the difference equals the metrics' own, its standard error matches the
spread of the difference over independent hold-outs, and noise is not promoted."""

import copy
import math

import numpy as np
import pytest
import torch

from rsft.config import PromotionConfig
from rsft.evaluate import RowMetrics, Rows, classification_metrics, evaluate_model, regression_metrics
from rsft.paired import paired_difference
from rsft.tracking import registry

UP = registry.HIGHER_IS_BETTER


def _regression(rng, n):
    """Labels and two correlated predictions: the challenger's error is the champion's, shrunk."""
    y = rng.normal(10, 3, n)
    shared = rng.normal(0, 1.0, n)
    return y, y + shared + rng.normal(0, 0.3, n), y + 0.9 * shared + rng.normal(0, 0.3, n)


def _classification(rng, n, k=3):
    """Labels and two correlated class-probability tables (the challenger leans more on the truth)."""
    y = rng.integers(0, k, n)
    base = rng.normal(0, 1.0, (n, k))
    onehot = np.eye(k)[y]

    def proba(signal):
        z = base + signal * onehot + rng.normal(0, 0.5, (n, k))
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return y, proba(1.0), proba(1.3)


def _gain(metric, a, b):
    return a[metric] - b[metric] if metric in UP else b[metric] - a[metric]


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_the_regression_difference_is_the_metrics_own(metric):
    y, ref, ch = _regression(np.random.default_rng(0), 500)  # seed 0; exact to 1e-12
    p = paired_difference(metric, Rows("regression", y, ch), Rows("regression", y, ref))
    assert p.difference == pytest.approx(_gain(metric, regression_metrics(y, ch), regression_metrics(y, ref)), abs=1e-12)
    assert p.difference > 0 and p.se > 0 and p.rows == 500


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "macro_f1", "auroc"])
def test_the_classification_difference_is_the_metrics_own(metric):
    y, ref, ch = _classification(np.random.default_rng(0), 600)  # seed 0; exact to 1e-12
    p = paired_difference(metric, Rows("classification", y, ch), Rows("classification", y, ref))
    a, b = classification_metrics(y, ch), classification_metrics(y, ref)
    assert p.difference == pytest.approx(_gain(metric, a, b), abs=1e-12)
    assert p.se > 0
    again = paired_difference(metric, Rows("classification", y, ch), Rows("classification", y, ref))
    assert again == p  # the bootstrap's seed and resamples are fixed: the same figure every run


@pytest.mark.parametrize("metric, kind, n, holdouts, tol", [
    ("rmse", "regression", 300, 400, 0.12),
    ("mae", "regression", 300, 400, 0.12),
    ("r2", "regression", 300, 400, 0.12),
    ("log_loss", "classification", 300, 400, 0.12),
    ("accuracy", "classification", 300, 400, 0.12),
    ("macro_f1", "classification", 300, 60, 0.3),
    ("auroc", "classification", 300, 60, 0.3),
])
def test_the_standard_error_is_the_spread_over_independent_holdouts(metric, kind, n, holdouts, tol):
    """Seed 1. The mean SE over ``holdouts`` independent hold-outs of ``n`` rows is within ``tol``
    (relative) of the standard deviation of the difference across them (the SE's target). The
    tolerance covers the sampling error of a standard deviation over that many hold-outs
    (~1/sqrt(2 × holdouts): 3.5 % / 9 %) plus the SE's own (bootstrap: ~5 %) with room."""
    rng = np.random.default_rng(1)
    draw = _regression if kind == "regression" else _classification
    found = []
    for _ in range(holdouts):
        y, ref, ch = draw(rng, n)
        p = paired_difference(metric, Rows(kind, y, ch), Rows(kind, y, ref))
        found.append((p.difference, p.se))
    d, se = np.array(found).T
    assert np.mean(se) == pytest.approx(np.std(d, ddof=1), rel=tol)


def test_rows_that_are_not_the_same_are_not_paired():
    y, ref, ch = _regression(np.random.default_rng(0), 100)
    assert paired_difference("rmse", Rows("regression", y, ch), Rows("regression", y + 1, ref)) is None
    assert paired_difference("rmse", Rows("regression", y, ch), Rows("regression", y[:50], ref[:50])) is None
    assert paired_difference("rmse", Rows("regression", y, ch), None) is None
    assert paired_difference("accuracy", Rows("regression", y, ch), Rows("regression", y, ref)) is None


# --------------------------------------------------------------------------------------
# the gate: real torch models scored by evaluate_model (their metrics carry their rows)
# --------------------------------------------------------------------------------------
POLICY = PromotionConfig(metric="rmse")  # min_improvement 0, min_z 2: the defaults


def _plant(seed=0, n=600):
    """Seed ``seed``: a linear plant (4 inputs, noise sd 1), a champion with its weights off the
    truth, and the hold-out."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    y = x @ w + torch.randn(n, generator=g)
    champion = torch.nn.Linear(4, 1)
    with torch.no_grad():
        champion.weight.copy_((w + torch.tensor([0.6, -0.4, 0.3, 0.5]))[None])
        champion.bias.zero_()
    return torch.nn.Sequential(champion, torch.nn.Flatten(0)), x.numpy(), y.numpy(), w


def _nudged(model, scale, seed):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other


class _Jittered(torch.nn.Module):
    """The champion plus a tiny perturbation of each row's prediction (±``scale``, pseudo-random in
    the row's inputs): no better and no worse than the champion but for the hold-out's draw."""

    def __init__(self, model, scale, phase):
        super().__init__()
        self.model, self.scale, self.phase = model, scale, phase

    def forward(self, x):
        return self.model(x) + self.scale * torch.sin(1e4 * x.sum(1) + self.phase)


def test_the_champion_plus_a_tiny_perturbation_is_not_promoted_a_clearly_better_one_is():
    champion, x, y, w = _plant()
    champ = evaluate_model(champion, x, y)
    # the first jitter (of 1e-2, by phase) whose hold-out rmse happens to be lower: the old gate promoted it
    tiny = next(m for phase in range(50) if (m := evaluate_model(_Jittered(champion, 1e-2, phase), x, y))["rmse"]
                < champ["rmse"])
    assert isinstance(tiny, RowMetrics) and tiny.rows is not None
    assert registry.decide(POLICY.model_copy(update={"min_z": 0.0}), tiny, champ, len(y)).promote
    d = registry.decide(POLICY, tiny, champ, len(y))
    assert not d.promote, d.reason
    assert "within the hold-out's noise" in d.reason and "< promotion.min_z=2" in d.reason
    assert d.details["difference"] > 0 and abs(d.details["z"]) < 2

    better = copy.deepcopy(champion)
    with torch.no_grad():
        better[0].weight.copy_((w + 0.3 * (champion[0].weight[0] - w))[None])  # 70 % of the way to the truth
    d = registry.decide(POLICY, evaluate_model(better, x, y), champ, len(y))
    assert d.promote, d.reason
    assert "SE ≥ promotion.min_z=2" in d.reason and " ± " in d.reason and d.details["z"] >= 2


def test_an_equal_challenger_is_promoted_on_few_nights():
    """Seed 0, 400 nights of 500 fresh hold-out rows each: a challenger equal to the champion but for
    a per-row jitter (sd 0.01 on errors of sd 1). The old gate (min_z 0) promoted it on ~half of
    them (its rmse is lower about as often as not); min_z 2 on ≤ 5 % (one-sided normal: 2.3 %;
    the binomial sd at 400 nights is 0.75 %)."""
    rng = np.random.default_rng(0)
    promoted = {0.0: 0, 2.0: 0}
    for _ in range(400):
        y = rng.normal(0, 3, 500)
        champ = y + rng.normal(0, 1, 500)
        ch = champ + rng.normal(0, 0.01, 500)
        a, b = (RowMetrics(regression_metrics(y, p), rows=Rows("regression", y, p)) for p in (ch, champ))
        for z in promoted:
            promoted[z] += registry.decide(POLICY.model_copy(update={"min_z": z}), a, b, 500).promote
    assert promoted[0.0] / 400 > 0.35 and promoted[2.0] / 400 <= 0.05, promoted


def test_a_tiny_systematic_gain_is_real_and_min_improvement_is_its_bar():
    """Seed 0: a weight nudge of 1e-3 toward the truth is a real gain (0.03 % of the rmse), and 600
    paired rows resolve it (z ≈ 5); the paired test says whether a gain is noise, not whether it is
    worth a promotion — that is promotion.min_improvement's."""
    champion, x, y, _ = _plant()
    champ = evaluate_model(champion, x, y)
    nudged = next(m for s in range(50) if (m := evaluate_model(_nudged(champion, 1e-3, s), x, y))["rmse"] < champ["rmse"])
    assert registry.decide(POLICY, nudged, champ, len(y)).promote
    assert not registry.decide(POLICY.model_copy(update={"min_improvement": 0.005}), nudged, champ, len(y)).promote


def test_a_first_night_serves_the_better_measured_of_fine_tune_and_base_model():
    """With no champion there is nothing to keep: a fine-tune better than its base model within the
    noise is promoted (its reason still gives the paired difference); one worse is not. (Refused, it
    left the text pipeline's first night with no champion at all.)"""
    base, x, y, _ = _plant(seed=3)
    b = evaluate_model(base, x, y)
    tiny = next(m for phase in range(50) if (m := evaluate_model(_Jittered(base, 1e-2, phase), x, y))["rmse"] < b["rmse"])
    d = registry.decide(POLICY, tiny, None, len(y), base=b)
    assert d.promote and "difference" in d.reason and "min_z" not in d.reason and "base model" in d.reason, d.reason
    assert d.to_dict()["base_model"] == b["rmse"] and "difference_se" in d.to_dict()["details"]
    worse = next(m for phase in range(50) if (m := evaluate_model(_Jittered(base, 1e-2, phase), x, y))["rmse"] > b["rmse"])
    assert not registry.decide(POLICY, worse, None, len(y), base=b).promote


def test_plain_metric_dicts_are_judged_without_a_standard_error():
    d = registry.decide(POLICY, {"rmse": 1.0}, {"rmse": 1.001}, 100)
    assert d.promote and d.details == {} and "SE" not in d.reason and "±" not in d.reason
    metrics = evaluate_model(_plant()[0], *_plant()[1:3])
    assert dict(metrics) == {**metrics} and not hasattr(dict(metrics), "rows")  # a copy is plain metrics


def test_the_reason_reads_as_the_brief_asks():
    from rsft.paired import Paired

    gap = Paired(0.042, 0.011, 500, "delta method")
    assert registry._difference(gap, 2.0) == "difference 0.04200 ± 0.01100 (3.8 SE ≥ promotion.min_z=2)"
    assert math.isinf(Paired(0.1, 0.0, 3, "per-row mean").z)


def test_no_finite_standard_error_is_no_paired_figure():
    y = np.full(10, 3.0)  # labels without spread: r2 is undefined, so is its difference
    assert paired_difference("r2", Rows("regression", y, y + 1), Rows("regression", y, y + 2)) is None
    y = np.zeros(60, dtype=np.int64)  # one class only: no AUROC on any resample
    p = np.tile([0.6, 0.4], (60, 1))
    assert paired_difference("auroc", Rows("classification", y, p), Rows("classification", y, p[:, ::-1])) is None


# --------------------------------------------------------------------------------------
# time-series hold-outs: the SE of batch means in time order
# --------------------------------------------------------------------------------------
def _ar1(rng, n, phi):
    """An AR(1) series of unit variance: neighbouring rows err together."""
    e, x = rng.normal(size=n), np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + math.sqrt(1 - phi**2) * e[i]
    return x


def _shuffled_series(rng, n, phi):
    """Two equally good models' predictions of y = 0 whose errors are AR(1) in time, stored in a
    shuffled row order (as a hold-out's rows are) with the order that puts them back in time."""
    a, b, perm = _ar1(rng, n, phi), _ar1(rng, n, phi), rng.permutation(n)
    return np.zeros(n), a[perm], b[perm], np.argsort(perm)


def test_time_ordered_rows_keep_equal_models_from_passing_the_gate():
    """Seed 0, 300 hold-outs of 1,000 rows whose errors are AR(1) with φ = 0.9 in time (their
    squares correlate at 0.81 per step: the per-row SE is ~3× too small). Per row, one equal
    challenger in ~4 reaches z ≥ 2 (measured 26 % at 400 draws); with the rows' time order at most
    6 % (measured 3 %; ~2.3 % is the nominal rate of a correct SE)."""
    rng = np.random.default_rng(0)
    per_row = blocks = 0
    for _ in range(300):
        y, a, b, order = _shuffled_series(rng, 1000, 0.9)
        per_row += paired_difference("rmse", Rows("regression", y, a), Rows("regression", y, b)).z >= 2
        blocks += paired_difference("rmse", Rows("regression", y, a, order), Rows("regression", y, b, order)).z >= 2
    assert per_row / 300 > 0.15
    assert blocks / 300 <= 0.06


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_independent_rows_in_time_order_cost_the_gate_little(metric):
    """Seed 0: with errors independent in time, the time order leaves the SE within 1.0–1.3× the
    per-row one (a larger block is chosen only where its estimate, from ≥ 16 blocks, comes out
    larger by chance) and the difference unchanged."""
    rng = np.random.default_rng(0)
    y, ref, ch = _regression(rng, 2000)
    order = rng.permutation(2000)
    flat = paired_difference(metric, Rows("regression", y, ch), Rows("regression", y, ref))
    timed = paired_difference(metric, Rows("regression", y, ch, order), Rows("regression", y, ref, order))
    assert timed.difference == pytest.approx(flat.difference)
    assert 1.0 <= timed.se / flat.se <= 1.3
    assert "time order" in timed.method and "time order" not in flat.method


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "auroc", "macro_f1"])
def test_classes_whose_errors_run_in_time_get_a_larger_se(metric):
    """Seed 0: class probabilities whose noise is AR(1) (φ = 0.95) in time, 1,200 rows: every
    classification metric's SE in time order — per-row means by batch means, the bootstrap ones
    by resampling whole blocks — is ≥ 1.3× the SE that treats rows as independent (measured:
    log_loss 1.95×, accuracy 1.74×, macro_f1 1.86×, auroc 1.47×; blocks of 64 rows)."""
    rng = np.random.default_rng(0)
    n, k = 1200, 3
    y = rng.integers(0, k, n)
    noise = np.stack([_ar1(rng, n, 0.95) for _ in range(2 * k)], 1) * 1.5
    perm = rng.permutation(n)

    def proba(signal, cols):
        z = (signal * np.eye(k)[y] + noise[:, cols])[perm]
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    y, ch, ref, order = y[perm], proba(1.3, slice(0, k)), proba(1.0, slice(k, 2 * k)), np.argsort(perm)
    flat = paired_difference(metric, Rows("classification", y, ch), Rows("classification", y, ref))
    timed = paired_difference(metric, Rows("classification", y, ch, order), Rows("classification", y, ref, order))
    assert timed.difference == pytest.approx(flat.difference)
    assert timed.se >= 1.3 * flat.se, (timed.se, flat.se)


def test_rows_in_two_time_orders_are_not_paired_and_one_order_serves_both():
    """Two different time orders of the same labels are not the same rows; where only one side has
    the order (a caller's plain predictions against an evaluated champion), it is the rows'."""
    y, a, b, order = _shuffled_series(np.random.default_rng(0), 1000, 0.9)
    assert paired_difference("rmse", Rows("regression", y, a, order), Rows("regression", y, b, order[::-1])) is None
    both = paired_difference("rmse", Rows("regression", y, a, order), Rows("regression", y, b, order))
    for one in (paired_difference("rmse", Rows("regression", y, a, order), Rows("regression", y, b)),
                paired_difference("rmse", Rows("regression", y, a), Rows("regression", y, b, order))):
        assert (one.se, one.method) == (both.se, both.method)
