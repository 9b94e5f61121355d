"""Evaluation: task metrics, always computed the same way for champion and challenger.

regression: MAE, RMSE, R²; classification: accuracy, macro-F1, macro one-vs-rest AUROC
(rank-based), log-loss; autoencoder: per-row reconstruction error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from rsft.config import FeaturesConfig
from rsft.features import labels, to_matrix


@dataclass(frozen=True, eq=False)
class Rows:
    """A model's outputs on the rows its metrics were computed from: ``y`` the labels [n] and
    ``out`` its predictions [n] (regression) or class probabilities [n, C] (classification);
    ``order`` the row indices in time order (``y[order]`` runs forward in time) where they are time series —
    neighbouring readings err together, which the standard error of a paired difference must
    count (:mod:`rsft.paired`) — or None where the rows are exchangeable."""

    task: str
    y: np.ndarray
    out: np.ndarray
    order: np.ndarray | None = None


class RowMetrics(dict):
    """Task metrics — a plain ``{name: float}``, logged, compared and stored as before — that keep
    the model's per-row outputs (``rows``). Two models scored on the same hold-out can then be
    compared row by row (:mod:`rsft.paired`) without evaluating either again; a copy
    (``dict(m)``, ``{**m}``) is plain metrics again."""

    def __init__(self, *args, rows: Rows | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = rows


def true_class_proba(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's probability of its own class [n] (a label outside the columns reads the nearest)."""
    return p[np.arange(len(y)), np.clip(y, 0, p.shape[1] - 1)]


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    err = yhat - y
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else float("nan")
    return {
        "mae": float(np.abs(err).mean()) if len(y) else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if len(y) else float("nan"),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot else float("nan"),
        "n": float(len(y)),
    }


def _to_proba(scores: np.ndarray) -> np.ndarray:
    """Rows that already sum to 1 (non-negative) are probabilities; anything else is logits."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size and (s >= 0).all() and np.allclose(s.sum(1), 1.0, atol=1e-6):
        return s
    z = s - s.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _proba_rows(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Class probabilities [n, C] of ``len(y)`` rows of logits or probabilities."""
    return _to_proba(np.asarray(scores).reshape(len(y), -1)) if len(y) else np.zeros((0, 1))


def binary_auroc(y: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count ½ (Mann-Whitney U via average ranks)."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average rank over runs of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``y_true`` int class ids [n]; ``scores`` logits or probabilities [n, C].

    macro-F1 averages over classes present in ``y_true`` or predicted; AUROC is the macro
    one-vs-rest mean over classes present in ``y_true`` (absent classes are skipped: their
    AUROC is undefined).
    """
    y = np.asarray(y_true).astype(np.int64)
    p = _proba_rows(y, scores)
    if not len(y):
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "auroc": float("nan"), "log_loss": float("nan"), "n": 0.0}
    pred = p.argmax(1)
    f1s = []
    for c in np.union1d(np.unique(y), np.unique(pred)):
        tp = float(((pred == c) & (y == c)).sum())
        denom = float((pred == c).sum() + (y == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    aucs = [binary_auroc(y == c, p[:, c]) for c in np.unique(y) if 0 <= c < p.shape[1]]
    aucs = [a for a in aucs if not np.isnan(a)]
    p_true = true_class_proba(y, p)
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(np.mean(f1s)),
        "auroc": float(np.mean(aucs)) if aucs else float("nan"),
        "log_loss": float(-np.log(np.clip(p_true, 1e-15, 1.0)).mean()),
        "n": float(len(y)),
    }


def _as_input(xb: np.ndarray) -> torch.Tensor:
    """Integer inputs (hashed text bucket ids) stay int64; everything else is float32."""
    xb = np.asarray(xb)
    if np.issubdtype(xb.dtype, np.integer):
        return torch.as_tensor(xb, dtype=torch.int64)
    return torch.as_tensor(xb, dtype=torch.float32)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Model output on the CPU: [n] for regression, logits [n, C] for classifiers."""
    model.eval()
    out = [model(_as_input(x[i : i + batch_size])).float().cpu().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


@torch.no_grad()
def reconstruction_error(model: nn.Module, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Per-row mean squared reconstruction error [n] in the autoencoder's standardised units."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = _as_input(x[i : i + batch_size])
        target = model.reconstruction_target(xb) if hasattr(model, "reconstruction_target") else xb
        out.append(((model(xb) - target) ** 2).mean(-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def evaluate_model(model: nn.Module, x: np.ndarray, y: np.ndarray, task: str = "regression",
                   order: np.ndarray | None = None) -> dict[str, float]:
    """Metrics for ``task``: regression_metrics, classification_metrics, or mean reconstruction error.
    A regressor's and a classifier's come with their per-row outputs (:class:`RowMetrics`; ``order``
    the rows' time order, :class:`Rows`)."""
    if task == "classification":
        y = np.asarray(y).astype(np.int64)
        p = _proba_rows(y, predict(model, x))
        return RowMetrics(classification_metrics(y, p), rows=Rows(task, y, p, order))
    if task == "reconstruction":
        err = reconstruction_error(model, x)
        return {"reconstruction_mse": float(err.mean()) if len(err) else float("nan"), "n": float(len(err))}
    yhat = predict(model, x)
    return RowMetrics(regression_metrics(y, yhat), rows=Rows(task, np.asarray(y, dtype=np.float64),
                                                              np.asarray(yhat, dtype=np.float64), order))


def constant_metrics(y_ref: np.ndarray, y: np.ndarray, task: str = "regression",
                     n_classes: int = 0) -> dict[str, float] | None:
    """Metrics on ``y`` of the constant prediction the reference labels ``y_ref`` give (the night's
    target sample): their mean (regression) or their class shares, add-one smoothed
    (classification). The floor a model must beat to be worth serving; None where there is none
    (reconstruction, no reference labels)."""
    y_ref = np.asarray(y_ref)
    if task == "reconstruction" or not len(y_ref):
        return None
    if task == "classification":
        k = max(int(n_classes), int(y_ref.max()) + 1, int(np.asarray(y).max(initial=0)) + 1)
        shares = (np.bincount(y_ref.astype(np.int64), minlength=k) + 1.0) / (len(y_ref) + k)
        return classification_metrics(y, np.tile(shares, (len(y), 1)))
    return regression_metrics(y, np.full(len(y), float(np.mean(y_ref.astype(np.float64)))))


def evaluate_regression(model: nn.Module, df: pl.DataFrame, feature_cfg: FeaturesConfig) -> dict[str, float]:
    df = df.filter(pl.col(feature_cfg.label).is_not_null())
    return regression_metrics(labels(df, feature_cfg), predict(model, to_matrix(df, feature_cfg)))


# --------------------------------------------------------------------------------------
# the linear reference: a ridge (or L2-logistic) fit of the target sample alone
# --------------------------------------------------------------------------------------
LINEAR_MAX_ROWS = 20_000  # a larger target sample is subsampled: the reference costs the same on any
LINEAR_LAMBDAS = np.logspace(-4, 2, 13)  # penalties tried (× rows, on standardised inputs)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the reference rows' columns (NaN ignored; a constant or empty column gets
    scale 1 and mean 0 after imputation, so it carries no weight)."""
    with warnings.catch_warnings():  # an all-NaN column: "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
    return mu, sd


def _standardise(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """z-scores; a missing or non-finite reading becomes 0 (the reference's mean)."""
    z = (np.asarray(x, dtype=np.float64) - mu) / sd
    return np.where(np.isfinite(z), z, 0.0)


def loo_errors(u: np.ndarray, s: np.ndarray, yc: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Mean squared leave-one-out error of a ridge fit (intercept free) for each penalty (× rows),
    from the SVD ``u, s`` of the centred inputs and the centred labels ``yc``: residual / (1 − the
    row's leverage), the intercept's 1/n included — exact, no refits."""
    uty, n = u.T @ yc, len(yc)
    out = []
    for lam in lambdas:
        shrink = s**2 / (s**2 + lam * n)
        hat = (u**2) @ shrink + 1.0 / n
        out.append(float(np.mean(((yc - u @ (shrink * uty)) / np.maximum(1.0 - hat, 1e-9)) ** 2)))
    return np.asarray(out)


def ridge_predictor(x: np.ndarray, y: np.ndarray, lambdas: np.ndarray = LINEAR_LAMBDAS):
    """Ridge regression on standardised inputs, intercept unpenalised, the penalty chosen by exact
    leave-one-out error (one SVD serves every penalty). Returns ``predict(x) -> y``."""
    mu, sd = _standardiser(x)
    z = _standardise(x, mu, sd)
    z_mean, y_mean = z.mean(0), float(y.mean())
    zc, yc = z - z_mean, y - y_mean
    u, s, vt = np.linalg.svd(zc, full_matrices=False)
    uty, n = u.T @ yc, len(y)
    lam = lambdas[int(np.argmin(loo_errors(u, s, yc, lambdas)))]
    beta = vt.T @ (s / (s**2 + lam * n) * uty)

    def predict_rows(xh: np.ndarray) -> np.ndarray:
        return (_standardise(xh, mu, sd) - z_mean) @ beta + y_mean

    return predict_rows


def logistic_predictor(x: np.ndarray, y: np.ndarray, n_classes: int, lambdas=(1e-4, 1e-3, 1e-2, 1e-1),
                       folds: int = 3, seed: int = 0):
    """Multinomial logistic regression with an L2 penalty on standardised inputs (full-batch L-BFGS),
    the penalty chosen by ``folds``-fold log loss. Returns ``predict(x) -> logits``."""
    mu, sd = _standardiser(x)
    z = _standardise(x, mu, sd)
    k = max(int(n_classes), int(y.max()) + 1)

    def fit(zz: np.ndarray, yy: np.ndarray, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        xt, yt = torch.as_tensor(zz, dtype=torch.float64), torch.as_tensor(yy, dtype=torch.int64)
        w = torch.zeros(zz.shape[1], k, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(xt @ w + b, yt) + lam * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach(), b.detach()

    order = np.random.default_rng(seed).permutation(len(y))
    best = None
    for lam in lambdas:
        loss = 0.0
        for f in range(folds):
            va = order[f::folds]
            tr = np.setdiff1d(order, va)
            if not len(tr) or not len(va):
                continue
            w, b = fit(z[tr], y[tr], lam)
            logits = torch.as_tensor(z[va]) @ w + b
            loss += float(nn.functional.cross_entropy(logits, torch.as_tensor(y[va], dtype=torch.int64))) * len(va)
        if best is None or loss < best[0]:
            best = (loss, lam)
    w, b = fit(z, y, best[1])

    def predict_rows(xh: np.ndarray) -> np.ndarray:
        return (torch.as_tensor(_standardise(xh, mu, sd)) @ w + b).numpy()

    return predict_rows


def linear_metrics(x_ref: np.ndarray, y_ref: np.ndarray, x: np.ndarray, y: np.ndarray, task: str = "regression",
                   n_classes: int = 0, seed: int = 0, order: np.ndarray | None = None) -> dict[str, float] | None:
    """Metrics on ``(x, y)`` of a linear model fitted on the reference rows alone (the night's
    target sample): ridge regression, or L2-logistic regression for classes; the penalty chosen on
    the reference rows. A reference beside the constant: a served model worse than a linear fit
    of the small sample is not using the pool. None where there is none (reconstruction, fewer
    than 10 reference rows, integer text ids). At most :data:`LINEAR_MAX_ROWS` reference rows
    (a seeded subsample): the cost does not grow with the sample. ``order``: the hold-out rows'
    time order (:class:`Rows`)."""
    x_ref, y_ref = np.asarray(x_ref), np.asarray(y_ref)
    if task == "reconstruction" or not np.issubdtype(x_ref.dtype, np.floating) or x_ref.ndim != 2:
        return None
    if task != "classification":  # a NaN label (a contract with finite: false) is no row to fit
        keep = np.isfinite(y_ref.astype(np.float64))
        x_ref, y_ref = x_ref[keep], y_ref[keep].astype(np.float64)
    if len(y_ref) < 10:
        return None
    if len(y_ref) > LINEAR_MAX_ROWS:
        keep = np.random.default_rng(seed).choice(len(y_ref), LINEAR_MAX_ROWS, replace=False)
        x_ref, y_ref = x_ref[keep], y_ref[keep]
    if task == "classification":
        k = max(int(n_classes), int(y_ref.max()) + 1, int(np.asarray(y).max(initial=0)) + 1)
        y = np.asarray(y).astype(np.int64)
        p = _proba_rows(y, logistic_predictor(x_ref, y_ref.astype(np.int64), k, seed=seed)(x))
        return RowMetrics(classification_metrics(y, p), rows=Rows(task, y, p, order))
    y, yhat = np.asarray(y, dtype=np.float64), ridge_predictor(x_ref, y_ref)(x)
    return RowMetrics(regression_metrics(y, yhat), rows=Rows(task, y, np.asarray(yhat, dtype=np.float64), order))
