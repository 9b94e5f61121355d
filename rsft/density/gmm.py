"""Gaussian-mixture density ratio: one mixture for the target, one for the pool, EM in Torch.

Each mixture has ``cfg.components`` components with ``cfg.covariance`` = "full" or "diag"
covariances. EM starts from seeded k-means++ picks and runs ``cfg.em_iters`` iterations or until
the mean log-likelihood gains less than 1e-7 nats per row.

Regularisation (stated): every component covariance gets one pseudo-row of the whole sample's
covariance, ``Σ_k = (S_k + Σ) / (n_k + 1)``, then shrinkage toward the diagonal (λ =
``cfg.shrinkage``) and a 1e-6 ridge. So an emptied component stays finite. The target
mixture uses at most ``n_target // (d + 2)`` components, so a small target sample never gets a
component it cannot estimate.
"""

from __future__ import annotations

import math

import torch

from rsft.density.base import DensityRatioScorer
from rsft.density.gaussian import RIDGE, safe_cholesky, shrunk_cov


def component_logpdf(z: torch.Tensor, mu: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """[n, k] log N(z_i | mu_k, L_k L_kᵀ) for z [n, d], mu [k, d], chol [k, d, d]."""
    diff = (z[None, :, :] - mu[:, None, :]).transpose(1, 2)  # [k, d, n]
    sol = torch.linalg.solve_triangular(chol, diff, upper=False)  # [k, d, n]
    logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)  # [k]
    return (-0.5 * (sol**2).sum(1) - logdet[:, None] - 0.5 * z.shape[1] * math.log(2 * math.pi)).T


def mixture_logpdf(z: torch.Tensor, logpi: torch.Tensor, mu: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """[n] log Σ_k π_k N(z | mu_k, Σ_k)."""
    return torch.logsumexp(component_logpdf(z, mu, chol) + logpi, 1)


def fit_gmm(
    z: torch.Tensor, k: int, iters: int = 100, shrinkage: float = 0.0, diag: bool = False, seed: int = 0, tol: float = 1e-7
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """EM for a k-component mixture on rows ``z`` [n, d] (float64).

    Returns (log weights [k], means [k, d], Cholesky factors [k, d, d], info dict).
    """
    n, d = z.shape
    g = torch.Generator().manual_seed(seed)
    # seeded k-means++ picks as initial means
    idx = [int(torch.randint(n, (1,), generator=g))]
    dist = torch.full((n,), torch.inf, dtype=z.dtype)
    for _ in range(1, k):
        dist = torch.minimum(dist, ((z - z[idx[-1]]) ** 2).sum(1))
        idx.append(int(torch.multinomial(dist / dist.sum(), 1, generator=g)) if float(dist.sum()) > 0 else idx[-1])
    mu = z[idx].clone()
    glob = shrunk_cov(z, 0.0, ridge=0.0)  # the pseudo-row prior
    if diag:
        glob = torch.diag(torch.diagonal(glob))
    chol = safe_cholesky(glob + RIDGE * torch.eye(d, dtype=z.dtype), "gmm").expand(k, d, d).clone()
    logpi = torch.full((k,), -math.log(k), dtype=z.dtype)
    prev, it, converged = -math.inf, 0, False
    eye = torch.eye(d, dtype=z.dtype)
    for it in range(1, iters + 1):
        # E-step
        lp = component_logpdf(z, mu, chol) + logpi  # [n, k]
        ll = torch.logsumexp(lp, 1)
        resp = torch.exp(lp - ll[:, None])
        # M-step
        nk = resp.sum(0)  # [k]
        logpi = torch.log(nk.clamp_min(1e-12) / n)
        mu = (resp.T @ z) / nk.clamp_min(1e-12)[:, None]
        diff = z[None, :, :] - mu[:, None, :]  # [k, n, d]
        if diag:
            s = torch.einsum("nk,knd->kd", resp, diff**2)
            cov = torch.diag_embed((s + torch.diagonal(glob)) / (nk[:, None] + 1))
        else:
            s = torch.einsum("nk,knd,kne->kde", resp, diff, diff)
            cov = (s + glob) / (nk[:, None, None] + 1)
            dg = torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
            cov = (1 - shrinkage) * cov + shrinkage * dg
        chol = safe_cholesky(cov + RIDGE * eye, "gmm")
        cur = float(ll.mean())
        if cur - prev < tol:
            converged = True
            break
        prev = cur
    final = float(mixture_logpdf(z, logpi, mu, chol).mean())
    return logpi, mu, chol, {"iterations": it, "converged": converged, "mean_loglik": final}


class GMMScorer(DensityRatioScorer):
    kind = "gmm"
    separable = True

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, feature_names)
        d, k = len(self.feature_names), cfg.components
        if k < 1:
            raise ValueError("gmm scorer: scorer.components must be >= 1")
        for side in ("t", "p"):
            self.register_buffer(f"logpi_{side}", torch.zeros(k, dtype=torch.float64))
            self.register_buffer(f"mu_{side}", torch.zeros(k, d, dtype=torch.float64))
            self.register_buffer(f"chol_{side}", torch.eye(d, dtype=torch.float64).expand(k, d, d).clone())
            self.register_buffer(f"active_{side}", torch.tensor(k))

    def _fit(self, zt, zp):
        self._check_target(zt)
        self._fit_side("p", zp)
        self._fit_side("t", zt)

    def _fit_target(self, zt):
        self._check_target(zt)
        self._fit_side("t", zt)

    def _check_target(self, zt):
        d = zt.shape[1]
        if len(zt) < d + 2:
            raise ValueError(f"gmm scorer: target sample has {len(zt)} rows for {d} features; need at least {d + 2}")

    def _fit_side(self, side, z):
        d = z.shape[1]
        k = max(1, min(self.cfg.components, len(z) // (d + 2)))
        logpi, mu, chol, info = fit_gmm(z, k, self.cfg.em_iters, self.cfg.shrinkage, self.cfg.covariance == "diag", self.cfg.seed)
        getattr(self, f"logpi_{side}")[:k] = logpi
        getattr(self, f"mu_{side}")[:k] = mu
        getattr(self, f"chol_{side}")[:k] = chol
        getattr(self, f"active_{side}").fill_(k)
        self._diag[f"{'target' if side == 't' else 'pool'}_em"] = {"components": k, **info}

    def _logpdf(self, z, side):
        k = int(getattr(self, f"active_{side}"))
        return mixture_logpdf(z, getattr(self, f"logpi_{side}")[:k], getattr(self, f"mu_{side}")[:k], getattr(self, f"chol_{side}")[:k])

    def _log_ratio(self, z):
        return self._logpdf(z, "t") - self._logpdf(z, "p")
