"""The pool sample the candidates draw from, and what the search knows about it per split of the
target sample: the density ratio w of every pool row (``PoolRatios``, fitted once per split and
kept) and the rejection rule that draws rows by it (the sampling stage's rule)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rsft.config import ScorerConfig
from rsft.sampling import calibrate_log_m, rejection_accept


@dataclass
class PoolSample:
    x: np.ndarray  # [n, d] float32 features
    y: np.ndarray  # [n] labels


def rejection_indices(log_w: np.ndarray, beta: float, m_quantile: float, rng: np.random.Generator,
                      log_m: float | None = None) -> np.ndarray:
    """Accept pool rows with probability min(1, w^β / M), M at the quantile of w^β (``log_m``:
    that quantile of ``log_w`` computed by the caller; the quantile of w^β is β times it) — the
    sampling stage's rule (``rsft.sampling.rejection_accept``: one uniform per row in row order;
    log M from ``calibrate_log_m``, which ignores non-finite log w)."""
    if beta == 0:  # w^0 = 1 = M: every scorable row (rows with log w = -inf are never drawn)
        rng.random(len(log_w))  # the uniforms are drawn all the same: the generator advances as for β > 0
        return np.flatnonzero(np.isfinite(log_w) | (log_w > 0))
    if log_m is None:
        log_m = calibrate_log_m(log_w, m_quantile)
    return np.flatnonzero(rejection_accept(beta * log_w, beta * log_m, rng))  # β ≥ 0: the quantile of β·log w is β·log M


@dataclass
class PoolRatios:
    """log w of every pool-sample row for each split of the target sample, and log M, each
    computed once and kept. A split is (fold, number of target training rows): the final fit on
    the whole target sample is a split of its own.

    The density-ratio scorer's pool side is the same for every split: the first split fits it,
    every later one refits only the target side (``DensityRatioScorer.with_target``). Like the
    score stage, it is fitted on at most ``scorer.pool_sample_rows`` pool rows (a seeded
    subsample of a larger pool sample); every pool row is then scored. ``Search.prepare`` fills
    the cache for every fold before any unit runs, so units (in threads or other processes) only
    read it and never refit or race.
    """

    pool: PoolSample
    scorer_cfg: ScorerConfig
    feature_names: list[str]
    make_scorer: Callable
    seed: int
    scorer: Any = None  # fitted on the first split; None until then
    fit_pool: np.ndarray | None = None  # the pool rows it was fitted on
    log_w_of: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # split → log w of every pool row
    log_m_of: dict[tuple[int, int, float], float] = field(default_factory=dict)  # (split, q) → log M

    def scorer_for(self, xt: np.ndarray):
        """The density-ratio scorer of target rows ``xt`` against the pool sample."""
        if self.scorer is None:
            xp, n = self.pool.x, self.scorer_cfg.pool_sample_rows
            if len(xp) > n:
                xp = xp[np.sort(np.random.default_rng([self.seed, 7]).choice(len(xp), n, replace=False))]
            self.fit_pool = xp
            self.scorer = self.make_scorer(self.scorer_cfg, self.feature_names).fit(xt, xp)
            return self.scorer
        return self.scorer.with_target(xt, self.fit_pool)

    def score_folds(self, scorers: list, folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Every fold's log w from its scorer (``scorer_for`` of the fold's training rows), the pool
        standardised once for all of them (they share the first one's pool side)."""
        for f, ((tr, _), lw) in enumerate(zip(folds, self.scorer.log_ratios(scorers, self.pool.x))):
            self.log_w_of[(f, len(tr))] = lw.double().numpy()

    def log_w(self, xt: np.ndarray, fold: int) -> np.ndarray:
        """log w of every pool row for the split whose target training rows are ``xt``."""
        key = (fold, len(xt))
        if key not in self.log_w_of:
            self.log_w_of[key] = self.scorer_for(xt).log_ratio(self.pool.x).double().numpy()
        return self.log_w_of[key]

    def log_m(self, xt: np.ndarray, fold: int, q: float) -> float:
        """log M: the q-quantile of the split's finite log w (the max for q = 1)."""
        key = (fold, len(xt), q)
        if key not in self.log_m_of:
            self.log_m_of[key] = calibrate_log_m(self.log_w(xt, fold), q)
        return self.log_m_of[key]
