"""What each candidate trains on, or how it changes the champion without training.

Training-free: ``keep_champion`` (the warm model as is), ``recalibrate`` (an affine correction
``y ≈ a·f(x) + b`` fitted by least squares, folded into the last linear layer), ``ridge_head``
(the last linear layer refitted in closed form, ridge-shrunk toward the champion's). Trained, each on
the target rows repeated ``target_share`` times plus its pool rows (:func:`training_set`):
``head_only`` and ``sample_only`` (no pool rows; head_only fine-tunes only the last layer),
``rsft`` (rejection-sampled pool rows, acceptance ``min(1, w^β / M)``), ``random_mix`` (a uniform
pool subset of the rejection-sampling budget), ``weighted`` (the same budget drawn uniformly,
weighted by w clipped at M).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from rsft.adapt.candidates import POOL_STRATEGIES, Candidate
from rsft.adapt.pool import PoolRatios, rejection_indices
from rsft.config import target_repeats


# --------------------------------------------------------------------------------------
# the model's head: recalibrate, head_only
# --------------------------------------------------------------------------------------
def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer to recalibrate or fine-tune as a head")
    return linears[-1]


def head_only_freeze(model: nn.Module) -> list[str]:
    """Freeze patterns (exact parameter names) for everything except the last linear layer."""
    head, _ = last_linear(model)
    return [n for n, _ in model.named_parameters() if not n.startswith(head + ".")]


def affine_fit(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit ``y ≈ a·f + b``."""
    f = f.astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(np.stack([f, np.ones_like(f)], 1), y.astype(np.float64), rcond=None)
    return float(a), float(b)


def recalibrate(model: nn.Module, x: np.ndarray, y: np.ndarray, predict: Callable) -> nn.Module:
    """Affine correction ``y ≈ a·f(x) + b`` fitted by least squares, folded into the last layer."""
    f = predict(model, x).astype(np.float64)
    a, b = affine_fit(f, y)
    out = copy.deepcopy(model)
    _, lin = last_linear(out)
    if lin.bias is None:
        raise ValueError("recalibrate needs a last linear layer with a bias")
    with torch.no_grad():
        lin.weight.mul_(a)
        lin.bias.mul_(a)
        # anything the model adds after its last layer (e.g. an output offset) is a constant:
        # measure it and put the remaining shift into the bias, so out(x) = a·f(x) + b exactly
        lin.bias.add_(float(np.mean(a * f + b - predict(out, x))))
    return out


@torch.no_grad()
def penultimate(model: nn.Module, x: np.ndarray, predict: Callable) -> tuple[np.ndarray, float]:
    """(H, c): the last linear layer's inputs on ``x`` [n, d] (float64) and the constant the model
    adds after that layer (its output offset), so ``predict(model, x) = H·wᵀ + b + c``."""
    _, lin = last_linear(model)
    seen: list[torch.Tensor] = []
    hook = lin.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().float().cpu()))
    try:
        pred = predict(model, x).astype(np.float64)
    finally:
        hook.remove()
    h = torch.cat(seen).numpy().astype(np.float64)
    if h.ndim != 2 or pred.ndim != 1 or lin.bias is None:
        raise ValueError("ridge_head needs a regression model whose last linear layer has a bias")
    w0, b0 = lin.weight.detach().double().numpy()[0], float(lin.bias.detach()[0])
    return h, float(np.mean(pred - (h @ w0 + b0)))


RIDGE_GRID = np.logspace(-6, 3, 28)  # λ as a share of the largest squared singular value of H


def ridge_head_fit(h: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float, c: float) -> tuple[np.ndarray, float, float]:
    """The last layer refitted on (H, y) by ridge regression shrunk toward its current weights:
    ``min Σ (H·w + b + c − y)² + λ‖w − w0‖²`` (intercept free), λ by generalised cross-validation
    over :data:`RIDGE_GRID`. λ → ∞ leaves w0 and only moves the intercept; λ → 0 is least
    squares. Returns (w, b, λ)."""
    r = y.astype(np.float64) - c - h @ w0 - b0  # what the current head gets wrong
    hm, rm = h.mean(0), r.mean()
    u, s, vt = np.linalg.svd(h - hm, full_matrices=False)
    ur = u.T @ (r - rm)
    n = len(r)
    best = (np.inf, 0.0)
    for lam in RIDGE_GRID * max(float(s[0]) ** 2, 1e-12):
        shrink = s**2 / (s**2 + lam)
        rss = float(np.sum((r - rm) ** 2) - np.sum((1 - (1 - shrink) ** 2) * ur**2))
        df = float(shrink.sum()) + 1.0
        gcv = n * max(rss, 0.0) / max(n - df, 1e-9) ** 2
        if gcv < best[0]:
            best = (gcv, float(lam))
    lam = best[1]
    dw = vt.T @ (s / (s**2 + lam) * ur)
    return w0 + dw, b0 + rm - float(hm @ dw), lam


def ridge_head(model: nn.Module, x: np.ndarray, y: np.ndarray, predict: Callable) -> nn.Module:
    """The model with its last linear layer refitted on (x, y) by :func:`ridge_head_fit`: a
    closed-form head retrain that keeps every learned feature and shrinks toward the champion's
    head — a gain drift per feature, not only the output's affine map (``recalibrate``)."""
    h, c = penultimate(model, x, predict)
    out = copy.deepcopy(model)
    _, lin = last_linear(out)
    w, b, _ = ridge_head_fit(h, y, lin.weight.detach().double().numpy()[0], float(lin.bias.detach()[0]), c)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w, dtype=lin.weight.dtype).view_as(lin.weight))
        lin.bias.fill_(b)
    return out


# --------------------------------------------------------------------------------------
# training sets
# --------------------------------------------------------------------------------------
def pool_draw(c: Candidate, xt: np.ndarray, fold: int, ratios: PoolRatios, m_quantile0: float,
              seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A pool recipe's pool rows on one split (target training rows ``xt``) and their weights
    (``weighted`` only; None = 1). The budget — how many rows rsft accepts at β = 1 and the first
    M quantile — is drawn from its own generator, so every recipe on a split sees the same one."""
    rng = np.random.default_rng([seed, fold, c.cost])
    log_w = ratios.log_w(xt, fold)
    q0 = m_quantile0
    n_rs = len(rejection_indices(log_w, 1.0, q0, np.random.default_rng([seed, fold]), ratios.log_m(xt, fold, q0)))
    if c.strategy == "rsft":
        q = c.m_quantile or q0
        return rejection_indices(log_w, c.beta if c.beta is not None else 1.0, q, rng, ratios.log_m(xt, fold, q)), None
    if c.strategy == "random_mix":
        return rng.choice(len(log_w), size=min(n_rs, len(log_w)), replace=False), None
    # weighted: the same budget of pool rows as rsft, drawn uniformly and weighted by w (clipped at M)
    pool_idx = rng.choice(len(log_w), size=min(max(n_rs, 1), len(log_w)), replace=False)
    w = np.exp(np.minimum(log_w[pool_idx] - ratios.log_m(xt, fold, q0), 0.0))
    return pool_idx, (w / w.mean()).astype(np.float32)


MIN_VAL_SOURCE = 20  # fewer target rows than this: no held-out validation rows (fit validates on training loss)


@dataclass(frozen=True)
class TrainingSet:
    """A trained candidate's rows on one split. ``train`` = its pool rows + the target rows not
    held out, repeated ``target_share`` times; ``val`` = the latest ``val_share`` of the target
    rows (the sample is in time order), held out once, never repeated into ``train``: early
    stopping then sees how the fit does on rows it has not seen, later than those it learns from —
    a random split of the repeated rows would validate on copies of training rows and never stop."""

    train: tuple[np.ndarray, np.ndarray, np.ndarray]  # (x, y, w); w = 1 except for weighted's pool rows
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (x, y, w = 1); None: too few target rows
    pool_rows: int


def validation_tail(n: int, val_share: float) -> int:
    """How many of ``n`` time-ordered target rows (the latest) validate a fine-tune."""
    return int(round(n * val_share)) if n >= MIN_VAL_SOURCE and val_share > 0 else 0


def training_set(c: Candidate, xt: np.ndarray, yt: np.ndarray, fold: int, ratios: PoolRatios, m_quantile0: float,
                 seed: int, val_share: float = 0.0) -> TrainingSet:
    """A trained candidate's :class:`TrainingSet` on one split (target rows ``xt, yt`` in time
    order): its pool rows + the target rows repeated ``target_share`` times, the latest
    ``val_share`` of the target rows held out to validate."""
    reps = target_repeats(c.target_share)
    pool_idx, weights = np.array([], dtype=np.int64), None
    if c.strategy in POOL_STRATEGIES:
        pool_idx, weights = pool_draw(c, xt, fold, ratios, m_quantile0, seed)
    if weights is None:
        weights = np.ones(len(pool_idx), np.float32)
    n_val = validation_tail(len(yt), val_share)
    cut = len(yt) - n_val
    pool = ratios.pool
    x = np.concatenate([pool.x[pool_idx]] + [xt[:cut]] * reps)
    y = np.concatenate([pool.y[pool_idx]] + [yt[:cut]] * reps)
    w = np.concatenate([weights, np.ones(cut * reps, np.float32)])
    val = (xt[cut:], yt[cut:], np.ones(n_val, np.float32)) if n_val else None
    return TrainingSet((x, y, w), val, len(pool_idx))


def final_facts(c: Candidate, n_pool: int, n_target: int) -> dict[str, Any]:
    """What a recipe's fit on the whole target sample trained on (the report's ``final``)."""
    what = {"keep_champion": "nothing (the warm start as is)",
            "recalibrate": "an affine output correction fitted on the target sample",
            "ridge_head": "the last layer refitted on the target sample (ridge toward the champion's)"}.get(
        c.strategy, f"the target sample ×{target_repeats(c.target_share)}"
        + (f" + {n_pool:,} rows drawn from the adapt pool sample" if n_pool else ""))
    reps = {"keep_champion": 0, "recalibrate": 1, "ridge_head": 1}.get(c.strategy, target_repeats(c.target_share))
    return {"trained_on": what, "pool_rows": n_pool, "train_rows": n_pool + n_target * reps}
