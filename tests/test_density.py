"""Density-ratio scorers: closed forms, recovery, calibration, ranking, degenerate inputs, persistence.

Every statistical test names its seed and tolerance in the docstring.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from rsft.config import FeaturesConfig, ScorerConfig
from rsft.density import load_scorer, make_scorer
from rsft.density.gmm import fit_gmm
from rsft.density.ngram import NGRAM_HASH, as_flat
from rsft.features import hashed_ngram_ids

D = 3
NAMES = [f"x{i}" for i in range(D)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


COV = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.5]])


def _normal(n: int, mean: float, seed: int, cov: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, D))
    if cov is not None:
        z = z @ np.linalg.cholesky(cov).T
    return (z + mean).astype(np.float32)


def _mvn(x: np.ndarray, shrinkage: float) -> torch.distributions.MultivariateNormal:
    t = torch.as_tensor(x, dtype=torch.float64)
    c = torch.cov(t.T)
    c = (1 - shrinkage) * c + shrinkage * torch.diag(torch.diagonal(c))
    return torch.distributions.MultivariateNormal(t.mean(0), c)


# ---- gaussian -------------------------------------------------------------------------------
@pytest.mark.parametrize("shrinkage", [0.0, 0.3])
def test_gaussian_matches_closed_form_mvn_difference(shrinkage):
    """log w = MVN(target fit).log_prob − MVN(pool fit).log_prob with the same shrinkage toward the
    diagonal (shrinking standardised or raw covariances is the same map). atol 1e-4 (the 1e-6 ridge)."""
    xt, xp = _normal(4000, 1.0, 0, COV), _normal(20_000, 0.0, 1)
    s = make_scorer(ScorerConfig(kind="gaussian", shrinkage=shrinkage), NAMES).fit(xt, xp)
    x = torch.as_tensor(_normal(200, 0.5, 2, COV), dtype=torch.float64)
    want = _mvn(xt, shrinkage).log_prob(x) - _mvn(xp, shrinkage).log_prob(x)
    np.testing.assert_allclose(s.log_ratio(x).numpy(), want.numpy(), atol=1e-4)


def test_gaussian_reports_kl_between_its_fits():
    """N(1, I) vs N(0, I) in 3-D: KL = d/2 = 1.5 nats; 4000/20000 rows, seed 0, tolerance 0.1."""
    s = make_scorer(ScorerConfig(shrinkage=0.0), NAMES).fit(_normal(4000, 1.0, 0), _normal(20_000, 0.0, 1))
    assert s.diagnostics()["kl_target_pool"] == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("target, msg", [
    (_normal(D + 1, 1.0, 0), "need at least 5"),  # fewer than d + 2 rows
    (np.zeros((0, D), np.float32), "need at least"),
    (np.full((50, D), np.nan, np.float32), "NaN"),
    (np.zeros((50, D + 1), np.float32), r"\[rows, 3\]"),
])
def test_degenerate_targets_fail_with_a_clear_message(target, msg):
    with pytest.raises(ValueError, match=msg):
        make_scorer(ScorerConfig(), NAMES).fit(target, _normal(100, 0.0, 0))


def test_constant_and_collinear_columns_are_regularised():
    """A column constant in both samples (unit-scale floor) and an exact copy of another (singular
    covariance, fixed by the ridge) still give finite log w; the constant column is reported."""
    xt, xp = _normal(300, 1.0, 0), _normal(3000, 0.0, 1)
    for x in (xt, xp):
        x[:, 2] = 5.0
        x[:, 1] = x[:, 0]
    s = make_scorer(ScorerConfig(shrinkage=0.0), NAMES).fit(xt, xp)
    assert torch.isfinite(s.log_ratio(xp)).all()
    assert s.diagnostics()["constant_columns"] == ["x2"]


def test_rows_with_nan_features_score_minus_infinity():
    s = make_scorer(ScorerConfig(), NAMES).fit(_normal(300, 1.0, 0), _normal(3000, 0.0, 1))
    x = _normal(5, 0.0, 2)
    x[1, 0] = np.nan
    x[3, 2] = np.inf
    lw = s.log_ratio(x).numpy()
    assert np.isneginf(lw[[1, 3]]).all() and np.isfinite(lw[[0, 2, 4]]).all()
    np.testing.assert_array_equal(lw[[0, 2, 4]], s.log_ratio(x[[0, 2, 4]]).numpy())


def test_log_ratio_is_batch_size_invariant():
    s = make_scorer(ScorerConfig(), NAMES).fit(_normal(300, 1.0, 0), _normal(3000, 0.0, 1))
    x = _normal(1000, 0.0, 3)
    np.testing.assert_allclose(s.log_ratio(x, batch_size=7).numpy(), s.log_ratio(x).numpy(), rtol=0, atol=1e-12)


# ---- gmm --------------------------------------------------------------------------------------
def _mix(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comp = rng.uniform(size=n) < 0.3
    return np.where(comp, rng.normal(-3, 0.5, n), rng.normal(2, 1.0, n))[:, None]


def test_scoring_with_the_thread_workspace_equals_fresh_arrays_bit_for_bit(monkeypatch):
    """log w through the reused per-thread arrays (``_workspace``) equals the path with a fresh float
    copy and fresh temporaries per batch, bit for bit (the selected rows depend on log w's last
    bits), for the layouts a caller passes: row-major, column-major (a Polars frame's matrix),
    and batches of those (strided slices); d = 12 as the demo's features, batches cut mid-array."""
    import rsft.density.base as base

    names = [f"s{i}" for i in range(12)]
    rng = np.random.default_rng(7)
    xt = (rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) * 0.3 + 1.0).astype(np.float32)
    xp = rng.normal(size=(5000, 12)).astype(np.float32) * 2
    s = make_scorer(ScorerConfig(kind="gaussian"), names).fit(xt, xp)
    big = rng.normal(size=(70_000, 12)).astype(np.float32) * 2
    inputs = {"C": big, "F": np.asfortranarray(big), "F slice": np.asfortranarray(big)[123:65_000],
              "C slice": big[5:60_000], "float64 F": np.asfortranarray(big.astype(np.float64))}
    got = {k: s.log_ratio(x, batch_size=4096).numpy().copy() for k, x in inputs.items()}
    monkeypatch.setattr(base, "_workspace", lambda *a: None)
    for k, x in inputs.items():
        want = s.log_ratio(x, batch_size=4096).numpy()
        assert np.array_equal(got[k].view(np.int64), want.view(np.int64)), k
    ws = base._Workspace(torch.float64, 4096, 12)  # the same memory layout as np.array(x, float64)
    for k, x in inputs.items():
        for xb in (x[:4096], x[100:4096], x[:2]):  # (one row: either layout is the same memory)
            assert ws.batch(xb).stride() == torch.from_numpy(np.array(xb, dtype=np.float64)).stride(), k



@pytest.mark.parametrize("diag", [False, True])
def test_em_recovers_a_two_component_mixture(diag):
    """0.3·N(−3, 0.5²) + 0.7·N(2, 1): 5000 rows, seed 0. Weights ±0.03, means ±0.1, sds ±0.08."""
    logpi, mu, chol, info = fit_gmm(torch.as_tensor(_mix(5000, 0)), k=2, iters=200, diag=diag, seed=0)
    order = torch.argsort(mu[:, 0])
    np.testing.assert_allclose(logpi.exp()[order].numpy(), [0.3, 0.7], atol=0.03)
    np.testing.assert_allclose(mu[order, 0].numpy(), [-3.0, 2.0], atol=0.1)
    np.testing.assert_allclose(chol[order, 0, 0].numpy(), [0.5, 1.0], atol=0.08)
    assert info["converged"]


def test_gmm_scorer_tracks_the_true_log_ratio():
    """Target = that mixture, pool = N(0, 3²): log w on a grid over [−4, 4] correlates > 0.99 with
    the truth and is within 0.25 nats on average (seed 0)."""
    from scipy import stats

    xt = _mix(5000, 0).astype(np.float32)
    xp = np.random.default_rng(1).normal(0, 3, (20_000, 1)).astype(np.float32)
    s = make_scorer(ScorerConfig(kind="gmm", components=2, covariance="full", shrinkage=0.0), ["x"]).fit(xt, xp)
    g = np.linspace(-4, 4, 81)
    true = np.log(0.3 * stats.norm.pdf(g, -3, 0.5) + 0.7 * stats.norm.pdf(g, 2, 1)) - stats.norm.logpdf(g, 0, 3)
    got = s.log_ratio(g[:, None]).numpy()
    assert np.corrcoef(true, got)[0, 1] > 0.99
    assert np.abs(got - true).mean() < 0.25


def test_gmm_caps_target_components_by_sample_size():
    s = make_scorer(ScorerConfig(kind="gmm", components=8), NAMES).fit(_normal(12, 1.0, 0), _normal(2000, 0.0, 1))
    assert s.diagnostics()["target_em"]["components"] == 12 // (D + 2)
    assert torch.isfinite(s.log_ratio(_normal(50, 0.0, 2))).all()


# ---- classifier -------------------------------------------------------------------------------
def test_classifier_tracks_the_true_log_ratio_with_prior_correction():
    """1-D shift, target N(1, 1) (2000 rows) vs pool N(0, 1) (20 000 rows), seed 0: true log w = x − ½.
    On a grid over [−2, 3]: correlation > 0.97, mean |error| < 0.3 nats. The prior correction makes
    E_pool[w] ≈ 1 (true value 1; tolerance 15 %). Held-out ECE < 0.03."""
    rng = np.random.default_rng(0)
    xt = rng.normal(1, 1, (2000, 1)).astype(np.float32)
    xp = rng.normal(0, 1, (20_000, 1)).astype(np.float32)
    s = make_scorer(ScorerConfig(kind="classifier", epochs=8, hidden=32), ["x"]).fit(xt, xp)
    g = np.linspace(-2, 3, 51)[:, None].astype(np.float32)
    got = s.log_ratio(g).numpy()
    assert np.corrcoef(g[:, 0] - 0.5, got)[0, 1] > 0.97
    assert np.abs(got - (g[:, 0] - 0.5)).mean() < 0.3
    d = s.diagnostics()
    assert d["log_prior_ratio"] == pytest.approx(math.log(10), rel=1e-3)
    assert np.exp(s.log_ratio(xp).numpy()).mean() == pytest.approx(1.0, rel=0.15)
    assert d["ece"] < 0.03 and 0.6 < d["val_auc"] < 0.85  # Bayes AUC for a unit shift ≈ 0.76


def test_classifier_is_seeded():
    rng = np.random.default_rng(0)
    xt, xp = rng.normal(1, 1, (300, 2)).astype(np.float32), rng.normal(0, 1, (3000, 2)).astype(np.float32)
    cfg = ScorerConfig(kind="classifier", epochs=2, hidden=8, seed=5)
    a = make_scorer(cfg, ["a", "b"]).fit(xt, xp).log_ratio(xp[:50])
    b = make_scorer(cfg, ["a", "b"]).fit(xt, xp).log_ratio(xp[:50])
    assert torch.equal(a, b)


# ---- ngram ------------------------------------------------------------------------------------
def _ids(texts: list[str], buckets: int = 4096) -> pl.Series:
    return pl.DataFrame({"t": texts}).select(hashed_ngram_ids(pl.col("t"), buckets, 2, scheme=NGRAM_HASH))["t"]


TARGET_DOCS = ["bearing vibration high on spindle", "spindle bearing replaced", "vibration on bearing 3"] * 20
POOL_DOCS = ["seal leak pressure drop", "fuse replaced after overcurrent", "bearing noise", "cleaning done"] * 50


def test_ngram_ranks_target_like_documents_higher():
    s = make_scorer(ScorerConfig(kind="ngram", buckets=4096), []).fit(_ids(TARGET_DOCS), _ids(POOL_DOCS))
    lw = s.log_ratio(_ids(["spindle bearing vibration", "seal leak pressure", "pump cleaning done"])).numpy()
    assert lw[0] > 0 > lw[1] and lw[0] > lw[2]
    # DSIR's KL: the top-scored pool docs are closer to the target than the pool
    scores = s.log_ratio(_ids(POOL_DOCS)).numpy()
    top = [POOL_DOCS[i] for i in np.argsort(-scores)[:50]]
    assert s.kl_target_to(_ids(top)) < s.kl_target_to(_ids(POOL_DOCS)) == pytest.approx(s.diagnostics()["kl_target_pool"])


def test_ngram_accepts_series_lists_and_flat_offsets():
    s = make_scorer(ScorerConfig(kind="ngram", buckets=4096), []).fit(_ids(TARGET_DOCS), _ids(POOL_DOCS))
    ser = _ids(["bearing noise", "", "seal leak"])
    lists = [np.array(v, dtype=np.uint32) for v in ser.to_list()]
    flat, offsets = as_flat(ser)
    a, b, c = s.log_ratio(ser), s.log_ratio(lists), s.log_ratio((flat.numpy(), offsets.numpy()))
    assert torch.equal(a, b) and torch.equal(a, c) and a[1] == 0.0  # empty document: neutral
    with pytest.raises(ValueError, match="must lie in"):
        s.log_ratio([np.array([4096])])
    # frames: the scorer hashes the text column with its own buckets/order/scheme (segment sums:
    # the same sums up to rounding)
    df = pl.DataFrame({"text": ["bearing noise", "", "seal leak"]})
    np.testing.assert_allclose(s.log_ratio_frame(df, FeaturesConfig(text_column="text")), a.numpy(), rtol=1e-12)


# scorer saved by rsft 7580258 (before the hash scheme was recorded: bigram buckets from the bigram
# strings), 64 buckets, and the log w that code gave for OLD_DOCS (float.hex)
OLD_SCORER = Path(__file__).parent / "data" / "ngram-scorer-scheme1.pt"
OLD_DOCS = ["spindle bearing vibration", "seal leak pressure", "", "Spindel: Lager-Vibration!! ÉTÉ",
            " ".join(["bearing noise, spindle"] * 4000)]
OLD_LOG_W = ["0x1.0a15b2c6a7db6p+5", "-0x1.f6d1bdd7d36b3p+5", "0x0.0p+0", "-0x1.bd606452ec33ep+3", "0x1.1ae3098664084p+16"]


def test_an_ngram_scorer_saved_before_hash_schemes_scores_as_before(tmp_path):
    """A scorer file without the hash scheme loads as scheme 1 and gives the log w its code gave,
    bit for bit (frame scoring, the ids of inputs, and sliced as select scores it); saved again it
    stays scheme 1. A new scorer is scheme 2 and says so in its file."""
    from rsft.features import hashed_ngram_ids
    from rsft.sampling import score_frame

    old = load_scorer(OLD_SCORER)
    assert old.hash_scheme == 1
    assert "_extra_state" not in torch.load(OLD_SCORER, weights_only=True)["state_dict"]
    df = pl.DataFrame({"text": OLD_DOCS})
    feat = FeaturesConfig(text_column="text")
    want = np.array([float.fromhex(h) for h in OLD_LOG_W])
    np.testing.assert_array_equal(old.log_ratio_frame(df, feat), want)
    np.testing.assert_array_equal(old.log_ratio(old.inputs(df, feat)).numpy(), want)
    np.testing.assert_array_equal(score_frame(old, df, feat, chunk_bytes=64), want)
    scheme1 = df.select(hashed_ngram_ids(pl.col("text"), 64, 2, scheme=1))["text"]
    assert old.inputs(df, feat).to_list() == scheme1.to_list()
    old.save(tmp_path / "again.pt")
    assert load_scorer(tmp_path / "again.pt").hash_scheme == 1
    np.testing.assert_array_equal(load_scorer(tmp_path / "again.pt").log_ratio_frame(df, feat), want)
    # a new fit: scheme 2, recorded; its frame scores match its own ids (not the old ones)
    new = make_scorer(ScorerConfig(kind="ngram", buckets=64), []).fit_frames(
        pl.DataFrame({"text": TARGET_DOCS}), pl.DataFrame({"text": POOL_DOCS}), feat)
    assert new.hash_scheme == NGRAM_HASH == 2 and new.diagnostics()["ngram_hash"] == 2
    new.save(tmp_path / "new.pt")
    assert torch.load(tmp_path / "new.pt", weights_only=True)["state_dict"]["_extra_state"] == {"ngram_hash": 2}
    lw = load_scorer(tmp_path / "new.pt").log_ratio_frame(df, feat)
    np.testing.assert_allclose(lw, new.log_ratio(new.inputs(df, feat)).numpy(), rtol=1e-12)
    assert not np.array_equal(lw, want)


def test_ngram_fit_frames_equals_fit_on_the_ids():
    """fit_frames (n-gram counts in byte-bounded slices) gives the fit on the scorer's own ids."""
    import rsft.density.ngram as ng

    feat = FeaturesConfig(text_column="text")
    t, p = pl.DataFrame({"text": TARGET_DOCS}), pl.DataFrame({"text": POOL_DOCS + [" ".join(POOL_DOCS)] * 3})
    a = make_scorer(ScorerConfig(kind="ngram", buckets=512), [])
    a.fit(a.inputs(t, feat), a.inputs(p, feat))
    small = ng.FIT_SLICE_BYTES
    try:
        ng.FIT_SLICE_BYTES = 100  # many slices
        b = make_scorer(ScorerConfig(kind="ngram", buckets=512), []).fit_frames(t, p, feat)
    finally:
        ng.FIT_SLICE_BYTES = small
    assert torch.equal(a.log_p_t, b.log_p_t) and torch.equal(a.log_p_p, b.log_p_p)
    assert a.diagnostics() == b.diagnostics()


# ---- persistence ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gaussian", "gmm", "classifier", "ngram"])
def test_save_load_round_trip_is_identical(kind, tmp_path):
    if kind == "ngram":
        xt, xp, x = _ids(TARGET_DOCS), _ids(POOL_DOCS), _ids(POOL_DOCS[:7] + TARGET_DOCS[:3])
        names: list[str] = []
    else:
        xt, xp, x = _normal(400, 1.0, 0), _normal(3000, 0.0, 1), _normal(100, 0.3, 2)
        names = NAMES
    s = make_scorer(ScorerConfig(kind=kind, epochs=2, buckets=4096, components=2), names).fit(xt, xp)
    s.save(tmp_path / "s.pt")
    blob = torch.load(tmp_path / "s.pt", weights_only=True)  # a plain dict, no pickled code
    assert blob["kind"] == kind and set(blob) >= {"config", "feature_names", "state_dict"}
    back = load_scorer(tmp_path / "s.pt")
    assert type(back) is type(s) and back.diagnostics() == s.diagnostics()
    assert torch.equal(back.log_ratio(x), s.log_ratio(x))


def test_gaussian_quadratic_form_equals_the_difference_of_log_densities():
    """The fast path (one quadratic form) is the same function as log N_t − log N_p."""
    from rsft.density.gaussian import gaussian_logpdf

    g = torch.Generator().manual_seed(0)
    d = 6
    names = [f"x{i}" for i in range(d)]
    target = torch.randn(400, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5 + 1.0
    pool = torch.randn(3000, d, generator=g, dtype=torch.float64) * 2.0
    sc = make_scorer(ScorerConfig(kind="gaussian"), names).fit(target, pool)
    z = sc._z(torch.randn(1000, d, generator=g, dtype=torch.float64) * 3)
    want = gaussian_logpdf(z, sc.mu_t, sc.chol_t) - gaussian_logpdf(z, sc.mu_p, sc.chol_p)
    torch.testing.assert_close(sc._log_ratio(z), want, rtol=1e-9, atol=1e-8)


def test_robust_standardisation_ignores_outliers_and_is_saved_with_the_scorer(tmp_path):
    rng = np.random.default_rng(0)
    pool = rng.normal(5.0, 2.0, size=(20_000, 2))
    pool[:200, 0] = 1e4  # 1 % gross outliers that survived the prefilter
    target = rng.normal(5.0, 2.0, size=(500, 2))
    robust = make_scorer(ScorerConfig(kind="gaussian"), ["a", "b"]).fit(target, pool)
    plain = make_scorer(ScorerConfig(kind="gaussian", standardize="mean_sd"), ["a", "b"]).fit(target, pool)
    # median / (IQR / 1.349) of N(5, 2): within 5 % of the truth despite the outliers
    assert robust.mean.numpy() == pytest.approx([5.0, 5.0], rel=0.05)
    assert robust.scale.numpy() == pytest.approx([2.0, 2.0], rel=0.05)
    assert plain.scale[0] > 100  # the sd is blown up by the outliers
    robust.save(tmp_path / "s.pt")
    again = load_scorer(tmp_path / "s.pt")
    assert torch.equal(again.mean, robust.mean) and torch.equal(again.scale, robust.scale)
    x = rng.normal(5.0, 2.0, size=(100, 2))
    assert torch.equal(again.log_ratio(x), robust.log_ratio(x))


def test_column_quantiles_equal_torch_quantile():
    x = torch.as_tensor(np.random.default_rng(0).standard_t(3, size=(10_001, 4)))
    qs = (0.25, 0.5, 0.75, 0.99)
    from rsft.density.base import column_quantiles

    want = torch.quantile(x, torch.tensor(qs, dtype=x.dtype), dim=0)
    assert torch.allclose(column_quantiles(x, qs), want, rtol=0, atol=1e-12)
    assert torch.equal(column_quantiles(x[:1], (0.5,)), x[:1])  # one row: every quantile is that row
    f = torch.as_tensor(np.asfortranarray(x.numpy()))  # column-major, as Polars' to_numpy often returns
    before = f.clone()
    assert torch.allclose(column_quantiles(f, qs), want, rtol=0, atol=1e-12)
    assert torch.equal(f, before)  # the input is never reordered


@pytest.mark.parametrize("kind", ["gaussian", "gmm", "classifier"])
def test_with_target_equals_a_fresh_fit_against_the_same_pool(kind):
    """Refitting the target side only (the adapt search's folds) scores like a full fit on the new
    target with the same pool; the classifier (one model for both sides) refits fully."""
    rng = np.random.default_rng(4)
    pool = rng.multivariate_normal(np.zeros(D), COV, size=3000)
    t1 = rng.multivariate_normal([1.0, 0.0, 0.5], COV, size=300)
    t2 = rng.multivariate_normal([-0.5, 1.0, 0.0], 0.5 * COV, size=300)
    cfg = ScorerConfig(kind=kind, epochs=3)
    first = make_scorer(cfg, NAMES).fit(t1, pool)
    refit = first.with_target(t2, pool)
    fresh = make_scorer(cfg, NAMES).fit(t2, pool)
    assert refit is not first and refit.separable == (kind != "classifier")
    assert torch.allclose(refit.log_ratio(pool[:500]), fresh.log_ratio(pool[:500]), atol=1e-6)
    assert not torch.allclose(first.log_ratio(pool[:500]), fresh.log_ratio(pool[:500]), atol=1e-2)  # first unchanged


@pytest.mark.parametrize("kind", ["gaussian", "gmm", "classifier"])
def test_fit_neither_mutates_its_inputs_nor_depends_on_their_memory_layout(kind):
    """Polars' to_numpy returns column-major matrices: a scorer fitted on one must equal the fit on a
    row-major copy, and leave both inputs untouched (a partial sort once reordered a column-major
    pool sample in place)."""
    rng = np.random.default_rng(8)
    pool = rng.multivariate_normal(np.zeros(D), COV, size=2000).astype(np.float32)
    target = rng.multivariate_normal([1.0, -0.5, 0.3], COV, size=200).astype(np.float32)
    pool_f, target_f = np.asfortranarray(pool), np.asfortranarray(target)
    before = (pool_f.copy(), target_f.copy())
    cfg = ScorerConfig(kind=kind, epochs=2)
    a = make_scorer(cfg, NAMES).fit(target_f, pool_f)
    b = make_scorer(cfg, NAMES).fit(np.ascontiguousarray(target), np.ascontiguousarray(pool))
    assert np.array_equal(pool_f, before[0]) and np.array_equal(target_f, before[1])
    assert torch.allclose(a.log_ratio(pool_f[:300]), b.log_ratio(pool[:300]), atol=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
def test_log_ratios_equal_each_scorers_log_ratio(kind):
    """Scoring under several with_target copies at once (one standardisation per batch) gives each
    copy's own log_ratio exactly, non-finite rows included; a scorer with another standardisation
    is refused."""
    rng = np.random.default_rng(9)
    pool = rng.multivariate_normal(np.zeros(D), COV, size=3000)
    base = make_scorer(ScorerConfig(kind=kind), NAMES).fit(pool[:200] + 1.0, pool)
    copies = [base, base.with_target(pool[200:400] - 0.5, pool), base.with_target(pool[400:600] * 1.5, pool)]
    x = pool.copy()
    x[5, 1] = np.nan
    got = base.log_ratios(copies, x, batch_size=1000)
    for c, g in zip(copies, got):
        assert torch.equal(g, c.log_ratio(x, batch_size=1000))
    assert torch.isneginf(got[1][5])
    other = make_scorer(ScorerConfig(kind=kind), NAMES).fit(pool[:200], pool[:1000])
    with pytest.raises(ValueError, match="standardisation"):
        base.log_ratios([base, other], x)


def test_a_per_ngram_scorer_does_not_rank_by_length(tmp_path):
    """scorer.ngram_score = per_ngram: log w = the mean of the n-gram log ratios × the target's mean
    n-grams per document (saved with the state, read back by load_scorer and by the Torch-free
    reader), so an off-target document repeated 20 times scores within 25 % of once (its 19 joining
    bigrams differ; a sum: ~20× lower,
    the shortest off-target documents first — trial 8), while target-like ones still rank first."""
    from rsft.density import load_scorer
    from rsft.scorer_file import load_ngram_weights

    feat = FeaturesConfig(text_column="text")
    target, pool = pl.DataFrame({"text": TARGET_DOCS}), pl.DataFrame({"text": POOL_DOCS})
    fit = {k: make_scorer(ScorerConfig(kind="ngram", buckets=4096, ngram_score=k), []).fit_frames(target, pool, feat)
           for k in ("sum", "per_ngram")}
    docs = pl.DataFrame({"text": ["seal leak pressure", " ".join(["seal leak pressure"] * 20), "spindle bearing vibration"]})
    lw = {k: s.log_ratio_frame(docs, feat) for k, s in fit.items()}
    assert lw["sum"][1] < 15 * lw["sum"][0] < 0  # the sum: 20 copies score ~20× lower
    assert lw["per_ngram"][1] == pytest.approx(lw["per_ngram"][0], rel=0.25) and lw["per_ngram"][2] > 0 > lw["per_ngram"][0]
    doc_ngrams = fit["per_ngram"].doc_ngrams
    assert doc_ngrams == pytest.approx((9 + 5 + 7) / 3)  # uni + bigrams of the three target texts
    n = np.array([5, 60 + 59, 5])  # n-grams per document: 3 + 2, 60 + 59, 3 + 2
    np.testing.assert_allclose(lw["per_ngram"], lw["sum"] / n * doc_ngrams, rtol=1e-12)
    ids = fit["per_ngram"].encode(docs["text"])
    np.testing.assert_allclose(fit["per_ngram"].log_ratio(ids).numpy(), lw["per_ngram"], rtol=1e-12)
    fit["per_ngram"].save(tmp_path / "p.pt")
    np.testing.assert_array_equal(load_scorer(tmp_path / "p.pt").log_ratio_frame(docs, feat), lw["per_ngram"])
    light = load_ngram_weights(tmp_path / "p.pt")
    assert light is not None and light.doc_ngrams == doc_ngrams
    np.testing.assert_array_equal(light.log_ratio_frame(docs, feat), lw["per_ngram"])
