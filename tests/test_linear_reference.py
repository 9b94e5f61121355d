"""The linear reference: a ridge (or L2-logistic) model fitted on the night's target sample alone,
scored on the hold-out beside the constant, and the warning when it beats the served model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rsft.evaluate import constant_metrics, linear_metrics, ridge_predictor
from rsft.pipeline.results import Finetuned
from rsft.pipeline.summary import model_warnings


def _linear(n: int, d: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    x = rng.normal(3.0, 2.0, size=(n, d))
    return x, x @ w + rng.normal(0.0, noise, n)


def test_ridge_recovers_a_linear_label_to_its_noise():
    """seed 0: 300 rows, 12 inputs, noise sd 0.8 — hold-out RMSE within 10 % of the noise."""
    x, y = _linear(2300, 12, 0.8, seed=0)
    m = linear_metrics(x[:300], y[:300], x[300:], y[300:])
    assert m["rmse"] == pytest.approx(0.8, rel=0.10), m


def test_the_penalty_is_chosen_by_exact_leave_one_out():
    """loo_errors (the leverage formula the fit chooses its penalty by) equals refitting without
    each row, intercept included, for several penalties (seed 1, 40 rows, 5 inputs)."""
    from rsft.evaluate import loo_errors

    x, y = _linear(40, 5, 1.0, seed=1)
    z = (x - x.mean(0)) / x.std(0)
    zc, yc = z - z.mean(0), y - y.mean()
    u, s, _ = np.linalg.svd(zc, full_matrices=False)
    lambdas = np.array([1e-3, 0.3, 5.0])
    brute = []
    for lam in lambdas:
        errs = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            zk, yk = z[keep], y[keep]
            zm, ym = zk.mean(0), yk.mean()
            beta = np.linalg.solve((zk - zm).T @ (zk - zm) + lam * len(y) * np.eye(5), (zk - zm).T @ (yk - ym))
            errs.append(y[i] - ((z[i] - zm) @ beta + ym))
        brute.append(np.mean(np.square(errs)))
    assert np.allclose(loo_errors(u, s, yc, lambdas), brute, rtol=1e-9)


def test_on_pure_noise_the_reference_does_not_overfit():
    """seed 2: 60 rows, 30 inputs, a label unrelated to them — the chosen penalty keeps the
    reference within 10 % of the constant (an unpenalised fit would be far worse)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2060, 30)), rng.normal(size=2060)
    lin, const = linear_metrics(x[:60], y[:60], x[60:], y[60:]), constant_metrics(y[:60], y[60:])
    assert lin["rmse"] < 1.10 * const["rmse"], (lin, const)
    a = np.c_[x[:60], np.ones(60)]
    ols = np.linalg.lstsq(a, y[:60], rcond=None)[0]
    assert np.sqrt(np.mean((np.c_[x[60:], np.ones(2000)] @ ols - y[60:]) ** 2)) > 1.2 * lin["rmse"]


def test_missing_readings_and_constant_columns_do_not_break_it():
    x, y = _linear(600, 6, 0.5, seed=3)
    x[::7, 2] = np.nan
    x[:, 4] = 5.0  # constant in the sample: no weight
    m = linear_metrics(x[:300], y[:300], x[300:], y[300:])
    assert np.isfinite(m["rmse"]) and m["r2"] > 0.5, m


def test_classes_get_a_logistic_reference_better_than_the_class_shares():
    """seed 4: three classes from two inputs' thresholds; accuracy above the constant's by 0.2."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2400, 8))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    lin = linear_metrics(x[:400], y[:400], x[400:], y[400:], "classification", 3)
    const = constant_metrics(y[:400], y[400:], "classification", 3)
    assert lin["accuracy"] > const["accuracy"] + 0.2 and lin["log_loss"] < const["log_loss"], (lin, const)


def test_no_reference_where_there_is_none():
    x, y = _linear(100, 3, 1.0, seed=5)
    assert linear_metrics(x, y, x, y, "reconstruction") is None
    assert linear_metrics(x[:5], y[:5], x, y) is None  # too few rows to fit
    ids = np.arange(300).reshape(100, 3)  # text models read integer n-gram ids
    assert linear_metrics(ids, y, ids, y) is None


def test_a_large_sample_is_subsampled(monkeypatch):
    """The reference's cost does not grow with the sample: at most LINEAR_MAX_ROWS rows are fitted."""
    import rsft.evaluate as ev

    seen = []
    real = ev.ridge_predictor
    monkeypatch.setattr(ev, "LINEAR_MAX_ROWS", 500)
    monkeypatch.setattr(ev, "ridge_predictor", lambda x, y: seen.append(len(y)) or real(x, y))
    x, y = _linear(5000, 4, 0.3, seed=6)
    assert ev.linear_metrics(x, y, x[:100], y[:100])["rmse"] < 0.4 and seen == [500]


RESULT = Finetuned(run_id="r", model_name="m", version="2", promoted=False, reason="…", metric="rmse",
                   challenger={"rmse": 1.2}, champion={"rmse": 1.03}, warm_start="models:/m/1", train={},
                   adapt=None, holdout_rows=2000, champion_version="1", tracking_uri="sqlite://",
                   constant={"rmse": 3.97}, linear={"rmse": 0.96})


def test_a_champion_the_linear_reference_beats_is_warned_of():
    """The demo's night 1: champion 1.03, the ridge on the sample 0.96 (7 % better): warned; within
    the 5 % margin, switched off, or nothing served: not."""
    (w,) = model_warnings(RESULT, 0.05)
    assert "v1 is worse than a ridge regression fitted on the target sample alone (rmse 1.030 vs 0.9600" in w, w
    assert w.endswith("(adapt.enabled tries recipes that lean on the sample)"), w
    searched = dataclasses.replace(RESULT, adapt={"chosen": "recalibrate"})
    assert model_warnings(searched, 0.05)[0].endswith("(tonight's adaptation search chose recalibrate)")
    assert model_warnings(RESULT, 0.10) == [] and model_warnings(RESULT, None) == []
    assert model_warnings(dataclasses.replace(RESULT, linear={"rmse": 1.0}), 0.05) == []
    assert model_warnings(dataclasses.replace(RESULT, champion_version=None, champion=None), 0.05) == []
    # the promoted challenger is what is served tonight
    assert model_warnings(dataclasses.replace(RESULT, promoted=True, challenger={"rmse": 0.95}), 0.05) == []
    acc = dataclasses.replace(RESULT, metric="accuracy", champion={"accuracy": 0.70}, constant={"accuracy": 0.4},
                              linear={"accuracy": 0.80, "log_loss": 0.5})
    assert "an L2-logistic regression" in model_warnings(acc, 0.05)[0]
    assert "a ridge regression with poa×dc_kw, poa×t_module fitted on" in model_warnings(
        RESULT, 0.05, terms=[["poa", "dc_kw"], ["poa", "t_module"]])[0]
    assert model_warnings(dataclasses.replace(acc, linear={"accuracy": 0.72}), 0.05) == []


def test_the_nights_reference_reads_the_models_features_and_classes():
    """linear_scores on a pipeline config: class names → an L2-logistic reference on the same
    feature matrix the model reads (seed 0: 3 classes from two sensors, accuracy ≥ 0.85 where the
    class shares give ~0.35); text features and linear_reference_by: null → none."""
    import polars as pl

    from rsft.config import load_config
    from rsft.pipeline.training import constant_scores, linear_scores

    from tests.conftest import REPO

    rng = np.random.default_rng(0)

    def frame(n: int) -> pl.DataFrame:
        d = {f"s{i:02d}": rng.normal(50, 10, n) for i in range(1, 13)}
        z = (d["s01"] - 50) / 10 + (d["s05"] - 50) / 10
        return pl.DataFrame({**d, "quality": np.where(z < -0.5, "lo", np.where(z > 0.5, "hi", "mid")),
                             "machine_id": ["M01"] * n})

    cfg = load_config(REPO / "examples" / "factory.yaml", {"features.classes": ["lo", "mid", "hi"],
                                                           "promotion.metric": "accuracy"})
    t, h = frame(300), frame(2000)
    lin, const = linear_scores(cfg, t, h), constant_scores(cfg, t, h)
    assert lin["accuracy"] >= 0.85 and const["accuracy"] < 0.45, (lin, const)
    off = load_config(REPO / "examples" / "factory.yaml", {"promotion.linear_reference_by": None})
    assert linear_scores(off, t.with_columns(quality=pl.lit(1.0)), h.with_columns(quality=pl.lit(1.0))) is None
    text = load_config(REPO / "examples" / "maintenance-logs.yaml")
    assert linear_scores(text, t, h) is None


def test_a_small_hold_outs_luck_is_not_a_linear_warning():
    """Scored row by row tonight, the reference must beat the champion by promotion.min_z standard
    errors of the paired difference too. Seed 1: 40 hold-out rows, the ridge's and the champion's
    errors drawn alike (sd 1) — the ridge reads 12 % better by chance, 1.0 SE: no warning at min_z
    2 (the margin alone warns). 2,000 rows where the champion adds its own error (sd 0.5): warned,
    naming the z."""
    from rsft.evaluate import RowMetrics, Rows, regression_metrics

    def night(seed: int, n: int, extra: float) -> Finetuned:
        rng = np.random.default_rng(seed)
        y = rng.normal(size=n) * 3
        lin_pred, champ_pred = y + rng.normal(size=n), y + rng.normal(size=n) * (1.0 if not extra else 0.0)
        champ_pred = lin_pred + rng.normal(scale=extra, size=n) if extra else champ_pred

        def rm(p):
            return RowMetrics(regression_metrics(y, p), rows=Rows("regression", y, p))

        return dataclasses.replace(RESULT, champion=rm(champ_pred), linear=rm(lin_pred))

    lucky = night(1, 40, 0.0)
    assert lucky.linear["rmse"] < 0.90 * lucky.champion["rmse"], (lucky.linear, lucky.champion)
    assert model_warnings(lucky, 0.05, 2.0) == [] and len(model_warnings(lucky, 0.05, None)) == 1
    (w,) = model_warnings(night(1, 2000, 0.5), 0.05, 2.0)
    assert "SE of the paired difference" in w, w


def test_a_decided_nights_re_run_warns_as_its_deciding_run_did():
    """A re-run of a decided night has no per-row outputs: it reads the z its deciding run logged
    (linear_holdout_z_vs_champion), so it warns exactly when the first run did."""
    quiet = dataclasses.replace(RESULT, linear={"rmse": 0.96, "z_vs_champion": 1.2})
    loud = dataclasses.replace(RESULT, linear={"rmse": 0.96, "z_vs_champion": 3.4})
    assert model_warnings(quiet, 0.05, 2.0) == []
    assert "3.4 SE of the paired difference" in model_warnings(loud, 0.05, 2.0)[0]


def _pv_like(seed: int, n: int):
    """Rows where the label is physics, not a sum: ac = s01 (irradiance, 0–1000) × s02 (array
    size, one of four per row) / 1000 + noise sd 2, the other sensors noise."""
    import polars as pl

    rng = np.random.default_rng(seed)
    d = {f"s{i:02d}": rng.normal(50, 10, n) for i in range(3, 13)}
    d["s01"], d["s02"] = rng.uniform(0, 1000, n), rng.choice([500.0, 1000.0, 2000.0, 4000.0], n)
    return pl.DataFrame({**d, "quality": d["s01"] * d["s02"] / 1000 + rng.normal(0, 2.0, n),
                         "machine_id": ["M01"] * n})


def test_a_declared_product_term_lets_the_reference_fit_the_physics():
    """promotion.linear_reference_terms: [[s01, s02]] adds s01 × s02 to the reference's inputs.
    Seed 0, 300 sample rows, 2,000 hold-out rows, label = s01 × s02 / 1000 + noise sd 2: with the
    term the hold-out RMSE is within 25 % of the noise; linear in the raw columns it is > 10× that
    (trial 10's PV plant: a model linear in them cannot express power ∝ irradiance × array size)."""
    from rsft.config import load_config
    from rsft.pipeline.training import linear_scores

    from tests.conftest import REPO

    t, h = _pv_like(0, 300), _pv_like(1, 2000)
    raw = linear_scores(load_config(REPO / "examples" / "factory.yaml"), t, h)
    cfg = load_config(REPO / "examples" / "factory.yaml", {"promotion.linear_reference_terms": [["s01", "s02"]]})
    physics = linear_scores(cfg, t, h)
    assert physics["rmse"] < 1.25 * 2.0 and raw["rmse"] > 10 * 2.0, (physics, raw)


def test_without_terms_the_reference_is_what_it_was():
    """The default (no terms) hands linear_metrics the model's own float32 feature matrix: the
    same metrics and per-row outputs, bit for bit, as fitting it directly (seed 2)."""
    from rsft.config import load_config
    from rsft.features import labels, to_matrix
    from rsft.pipeline.training import linear_scores

    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "factory.yaml")
    assert cfg.promotion.linear_reference_terms == []
    t, h = _pv_like(2, 300), _pv_like(3, 500)
    got = linear_scores(cfg, t, h)
    f = cfg.features
    want = linear_metrics(to_matrix(t, f), labels(t, f), to_matrix(h, f), labels(h, f), seed=cfg.train.seed)
    assert dict(got) == dict(want) and np.array_equal(got.rows.out, want.rows.out)


def test_a_term_must_name_numeric_inputs_in_one_line():
    """An unknown column, a non-numeric one (the group, the label), a one-column term, a term
    declared twice and text features are refused at load time, in one line naming
    promotion.linear_reference_terms."""
    from rsft.config import ConfigError, load_config

    from tests.conftest import REPO

    factory = REPO / "examples" / "factory.yaml"
    for term, said in [(["s01", "s13"], r"\[1\]: 's13' is not a numeric input of the model .*did you mean 's12'"),
                       (["s01", "machine_id"], r"\[1\]: 'machine_id' is not a numeric input .*they are: s01, s02"),
                       (["quality", "s01"], r"\[1\]: 'quality' is not a numeric input"),
                       (["s01"], r"\.1': List should have at least 2 items"),
                       (["s01", "s02"], r"\[1\]: \['s01', 's02'\] is declared twice")]:
        with pytest.raises(ConfigError, match=r"promotion.linear_reference_terms" + said) as exc:
            load_config(factory, {"promotion.linear_reference_terms": [["s01", "s02"], term]})
        assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match=r"promotion.linear_reference_terms: features.kind 'text' has no linear"):
        load_config(REPO / "examples" / "maintenance-logs.yaml", {"promotion.linear_reference_terms": [["a", "b"]]})
    ok = load_config(factory, {"promotion.linear_reference_terms": [["s01", "s02"], ["s03", "s03", "s04"]]})
    assert ok.promotion.linear_reference_terms == [["s01", "s02"], ["s03", "s03", "s04"]]
