"""Gaussian-mixture density ratio: one mixture for the target, one for the pool, EM in Torch.

Each mixture has ``cfg.components`` components (diagonal or full covariance, shrunk toward the
diagonal + a 1e-6 ridge). EM is initialised from k-means++-style seeded picks and runs
``cfg.em_iters`` iterations or until the log-likelihood gain is below 1e-6 per row.
The target mixture uses at most ``n_target // (d + 2)`` components so a small target sample
never gets a component it cannot estimate.
"""

from __future__ import annotations

import math

import torch

from rsft.density.base import DensityRatioScorer
from rsft.density.gaussian import shrunk_cov


def _component_logpdf(z: torch.Tensor, mu: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """[n, k] log N(z | mu_k, L_k L_kᵀ)."""
    diff = z[None, :, :] - mu[:, None, :]  # [k, n, d]
    sol = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # [k, d, n]
    logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)  # [k]
    d = z.shape[1]
    return (-0.5 * (sol**2).sum(1) - logdet[:, None] - 0.5 * d * math.log(2 * math.pi)).T


def fit_gmm(z: torch.Tensor, k: int, iters: int, shrinkage: float, diag: bool, seed: int):
    """EM; returns (log weights [k], means [k, d], Cholesky factors [k, d, d])."""
    n, d = z.shape
    g = torch.Generator().manual_seed(seed)
    # seeded k-means++-style initial means
    idx = [int(torch.randint(n, (1,), generator=g))]
    for _ in range(1, k):
        dist = torch.cdist(z, z[idx]).min(1).values ** 2
        idx.append(int(torch.multinomial(dist / dist.sum(), 1, generator=g)))
    mu = z[idx].clone()
    chol = torch.linalg.cholesky(shrunk_cov(z, shrinkage)).expand(k, d, d).clone()
    logpi = torch.full((k,), -math.log(k), dtype=z.dtype)
    prev = -math.inf
    for _ in range(iters):
        lp = _component_logpdf(z, mu, chol) + logpi  # [n, k]
        ll = torch.logsumexp(lp, 1)
        resp = torch.exp(lp - ll[:, None])  # E-step
        nk = resp.sum(0) + 1e-10
        logpi = torch.log(nk / n)
        mu = (resp.T @ z) / nk[:, None]
        covs = []
        for j in range(k):
            diff = z - mu[j]
            c = (resp[:, j, None] * diff).T @ diff / nk[j]
            if diag:
                c = torch.diag(torch.diagonal(c))
            c = (1 - shrinkage) * c + shrinkage * torch.diag(torch.diagonal(c)) + 1e-6 * torch.eye(d, dtype=z.dtype)
            covs.append(c)
        chol = torch.linalg.cholesky(torch.stack(covs))
        cur = float(ll.mean())
        if cur - prev < 1e-6:
            break
        prev = cur
    return logpi, mu, chol


class GMMScorer(DensityRatioScorer):
    kind = "gmm"

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, feature_names)
        d, k = len(feature_names), cfg.components
        for side in ("t", "p"):
            self.register_buffer(f"logpi_{side}", torch.zeros(k, dtype=torch.float64))
            self.register_buffer(f"mu_{side}", torch.zeros(k, d, dtype=torch.float64))
            self.register_buffer(f"chol_{side}", torch.eye(d, dtype=torch.float64).expand(k, d, d).clone())
            self.register_buffer(f"active_{side}", torch.tensor(k))

    def _fit(self, zt, zp):
        d = zt.shape[1]
        kt = max(1, min(self.cfg.components, len(zt) // (d + 2)))
        if len(zt) < d + 2:
            raise ValueError(f"gmm scorer: target sample has {len(zt)} rows for {d} features; need at least {d + 2}")
        diag = self.cfg.covariance == "diag"
        for side, z, k in (("t", zt, kt), ("p", zp, self.cfg.components)):
            logpi, mu, chol = fit_gmm(z, k, self.cfg.em_iters, self.cfg.shrinkage, diag, self.cfg.seed)
            getattr(self, f"logpi_{side}")[:k] = logpi
            getattr(self, f"mu_{side}")[:k] = mu
            getattr(self, f"chol_{side}")[:k] = chol
            getattr(self, f"active_{side}").fill_(k)
        self._diag.update(target_components=kt, pool_components=self.cfg.components)

    def _logpdf(self, z, side):
        k = int(getattr(self, f"active_{side}"))
        lp = _component_logpdf(z, getattr(self, f"mu_{side}")[:k], getattr(self, f"chol_{side}")[:k])
        return torch.logsumexp(lp + getattr(self, f"logpi_{side}")[:k], 1)

    def _log_ratio(self, z):
        return self._logpdf(z, "t") - self._logpdf(z, "p")
