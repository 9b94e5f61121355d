"""Gaussian density ratio: full-covariance normals for target and pool, closed form.

Covariances are shrunk toward their diagonal, ``(1-λ)Σ + λ diag(Σ)`` with λ = cfg.shrinkage,
plus a 1e-6 ridge, so a tiny or collinear target sample still gives a positive-definite Σ.
"""

from __future__ import annotations

import math

import torch

from rsft.density.base import DensityRatioScorer


def shrunk_cov(z: torch.Tensor, shrinkage: float) -> torch.Tensor:
    c = torch.cov(z.T) if len(z) > 1 else torch.eye(z.shape[1], dtype=z.dtype)
    c = torch.atleast_2d(c)
    c = (1 - shrinkage) * c + shrinkage * torch.diag(torch.diagonal(c))
    return c + 1e-6 * torch.eye(c.shape[0], dtype=c.dtype)


def gaussian_logpdf(z: torch.Tensor, mu: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    diff = (z - mu).T
    sol = torch.linalg.solve_triangular(chol, diff, upper=False)
    return -0.5 * (sol**2).sum(0) - torch.log(torch.diagonal(chol)).sum() - 0.5 * z.shape[1] * math.log(2 * math.pi)


class GaussianScorer(DensityRatioScorer):
    kind = "gaussian"

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, feature_names)
        d = len(feature_names)
        for side in ("t", "p"):
            self.register_buffer(f"mu_{side}", torch.zeros(d, dtype=torch.float64))
            self.register_buffer(f"chol_{side}", torch.eye(d, dtype=torch.float64))

    def _fit(self, zt, zp):
        d = zt.shape[1]
        if len(zt) < d + 2:
            raise ValueError(
                f"gaussian scorer: target sample has {len(zt)} rows for {d} features; need at least {d + 2}"
            )
        for side, z in (("t", zt), ("p", zp)):
            getattr(self, f"mu_{side}").copy_(z.mean(0))
            getattr(self, f"chol_{side}").copy_(torch.linalg.cholesky(shrunk_cov(z, self.cfg.shrinkage)))

    def _log_ratio(self, z):
        return gaussian_logpdf(z, self.mu_t, self.chol_t) - gaussian_logpdf(z, self.mu_p, self.chol_p)
