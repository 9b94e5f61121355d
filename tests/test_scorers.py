"""gmm, classifier and ngram scorers; the selection report; hashed n-gram features."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from rsft.config import FeaturesConfig, ScorerConfig
from rsft.density import load_scorer, make_scorer
from rsft.features import hashed_ngram_ids, ids_to_flat
from rsft.report import auc, ess, ks_stat, selection_report


def _mix(n, seed):
    rng = np.random.default_rng(seed)
    comp = rng.uniform(size=n) < 0.3
    return np.where(comp, rng.normal(-3, 0.5, n), rng.normal(2, 1.0, n))[:, None].astype(np.float32)


def test_gmm_recovers_a_two_component_mixture():
    """Target = the 2-component mixture, pool = wide N(0, 3²): the fitted log ratio tracks the truth
    (correlation > 0.98 on a grid, seed 0)."""
    from scipy import stats

    xt = _mix(5000, 0)
    xp = np.random.default_rng(1).normal(0, 3, (20000, 1)).astype(np.float32)
    s = make_scorer(ScorerConfig(kind="gmm", components=2, covariance="diag", shrinkage=0.0), ["x"]).fit(xt, xp)
    grid = np.linspace(-4, 4, 81)[:, None].astype(np.float32)
    true = np.log(0.3 * stats.norm.pdf(grid[:, 0], -3, 0.5) + 0.7 * stats.norm.pdf(grid[:, 0], 2, 1)) - stats.norm.logpdf(grid[:, 0], 0, 3)
    got = s.log_ratio(grid).numpy()
    assert np.corrcoef(true, got)[0, 1] > 0.98


def test_classifier_tracks_the_true_log_ratio_and_is_calibrated():
    """1-D shift N(1,1) vs N(0,1): true log w = x − ½. Correlation > 0.97 on [−2, 3]; ECE < 0.05 (seed 0)."""
    rng = np.random.default_rng(0)
    xt = rng.normal(1, 1, (3000, 1)).astype(np.float32)
    xp = rng.normal(0, 1, (30000, 1)).astype(np.float32)
    s = make_scorer(ScorerConfig(kind="classifier", epochs=8, hidden=32), ["x"]).fit(xt, xp)
    grid = np.linspace(-2, 3, 51)[:, None].astype(np.float32)
    got = s.log_ratio(grid).numpy()
    assert np.corrcoef(grid[:, 0] - 0.5, got)[0, 1] > 0.97
    assert np.abs(got - (grid[:, 0] - 0.5)).mean() < 0.35
    assert s.diagnostics()["ece_balanced"] < 0.05


@pytest.mark.parametrize("kind", ["gmm", "classifier"])
def test_save_load_round_trip(kind, tmp_path):
    rng = np.random.default_rng(0)
    xt, xp = rng.normal(1, 1, (400, 2)).astype(np.float32), rng.normal(0, 1, (2000, 2)).astype(np.float32)
    s = make_scorer(ScorerConfig(kind=kind, epochs=2), ["a", "b"]).fit(xt, xp)
    s.save(tmp_path / "s.pt")
    assert torch.equal(load_scorer(tmp_path / "s.pt").log_ratio(xp[:100]), s.log_ratio(xp[:100]))


def test_hashed_ngrams_are_deterministic_and_counted_right():
    df = pl.DataFrame({"text": ["Bearing noise, bearing!", "seal leak"]})
    ids = df.select(hashed_ngram_ids(pl.col("text"), buckets=1000, ngrams=2).alias("ids"))["ids"]
    # tokens: bearing noise , bearing ! -> 5 unigrams + 4 bigrams; seal leak -> 2 + 1
    assert ids.list.len().to_list() == [9, 3]
    again = df.lazy().select(hashed_ngram_ids(pl.col("text"), buckets=1000, ngrams=2).alias("ids")).collect()["ids"]
    assert ids.to_list() == again.to_list()
    first = ids.to_list()[0]
    assert first[0] == first[3]  # "bearing" twice -> same bucket
    assert all(0 <= i < 1000 for row in ids.to_list() for i in row)
    flat, offsets = ids_to_flat(ids)
    assert offsets.tolist() == [0, 9, 12] and len(flat) == 12


def test_ngram_scorer_ranks_target_like_documents_higher(tmp_path):
    target = pl.Series(["bearing vibration high spindle", "spindle bearing replaced", "vibration on bearing"] * 20)
    pool = pl.Series(["seal leak pressure drop", "fuse replaced overcurrent", "bearing noise", "cleaning done"] * 50)
    enc = lambda s: pl.DataFrame({"t": s}).select(hashed_ngram_ids(pl.col("t"), 5000, 2))["t"]  # noqa: E731
    s = make_scorer(ScorerConfig(kind="ngram", buckets=5000), []).fit(enc(target), enc(pool))
    lw = s.log_ratio(enc(pl.Series(["bearing spindle vibration", "seal leak pressure"]))).numpy()
    assert lw[0] > 0 > lw[1]
    s.save(tmp_path / "ng.pt")
    assert torch.equal(load_scorer(tmp_path / "ng.pt").log_ratio(enc(pool[:5])), s.log_ratio(enc(pool[:5])))
    # KL reduction: selecting the top-scored pool docs moves the bag of n-grams toward the target
    scores = s.log_ratio(enc(pool)).numpy()
    top = pool.gather(np.argsort(-scores)[:50])
    assert s.kl_target_to(enc(top)) < s.kl_target_to(enc(pool))


def test_report_statistics_and_files(tmp_path):
    assert ess(np.zeros(100)) == pytest.approx(100)
    assert ess(np.array([0.0] + [-50.0] * 99)) == pytest.approx(1.0, rel=1e-6)
    assert ks_stat(np.arange(100.0), np.arange(100.0)) == 0.0
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    rng = np.random.default_rng(0)
    mk = lambda n, m: pl.DataFrame({"a": rng.normal(m, 1, n), "b": rng.normal(0, 1, n), "machine_id": ["M01"] * n})  # noqa: E731
    target, pool, sel = mk(500, 2.0), mk(5000, 0.0), mk(400, 2.0)
    rep = selection_report(target, pool, sel, FeaturesConfig(numeric=["a", "b"]), rng.normal(size=5000), tmp_path)
    assert rep["auc_pool_vs_target"] > 0.8 and abs(rep["auc_selected_vs_target"] - 0.5) < 0.1
    assert rep["per_feature"]["a"]["ks_selected_vs_target"] < rep["per_feature"]["a"]["ks_pool_vs_target"]
    assert (tmp_path / "report.json").exists() and {"log_w_hist.png", "marginals.png"} <= set(rep["plots"])
