"""Probabilistic-classification density ratio: an MLP tells target rows from pool rows.

Bayes: log w(x) = logit P(target | x) − log(π_t / π_p). The prior correction is done by
training with class-balanced sample weights (π_t = π_p = ½ in the weighted loss), so the
calibrated logit *is* log w, and a tiny target sample is not drowned by the pool. The logit is
temperature-calibrated on a held-out 20 % split (one scalar T fitted by weighted NLL), and the
balanced expected calibration error (ECE, 10 bins) on that split is reported in diagnostics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rsft.density.base import DensityRatioScorer


def ece(prob: np.ndarray, label: np.ndarray, weight: np.ndarray | None = None, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins (optionally sample-weighted)."""
    w = np.ones_like(prob) if weight is None else weight
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (prob >= lo) & (prob < hi) if hi < 1 else (prob >= lo)
        if m.any():
            wm = w[m]
            total += wm.sum() / w.sum() * abs(np.average(prob[m], weights=wm) - np.average(label[m], weights=wm))
    return float(total)


class ClassifierScorer(DensityRatioScorer):
    kind = "classifier"

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, feature_names)
        d, h = len(feature_names), cfg.hidden
        self.net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1)).double()
        self.register_buffer("temperature", torch.tensor(1.0, dtype=torch.float64))

    def _fit(self, zt, zp):
        g = torch.Generator().manual_seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)
        x = torch.cat([zt, zp])
        y = torch.cat([torch.ones(len(zt)), torch.zeros(len(zp))]).double()
        perm = torch.randperm(len(y), generator=g)
        n_val = max(int(0.2 * len(y)), 2)
        val, tr = perm[:n_val], perm[n_val:]
        n_t, n_p = float(y[tr].sum()), float((1 - y[tr]).sum())
        if n_t < 2:
            raise ValueError("classifier scorer: too few target rows to train on (need at least 3)")
        # balance classes by weight; the logit then estimates log p_t/p_p directly up to calibration
        opt = torch.optim.AdamW(self.net.parameters(), lr=3e-3, weight_decay=1e-4)
        bs = 1024
        for _ in range(self.cfg.epochs):
            order = tr[torch.randperm(len(tr), generator=g)]
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                wi = torch.where(y[idx] == 1, 0.5 / n_t, 0.5 / n_p) * len(tr)
                loss = (nn.functional.binary_cross_entropy_with_logits(self.net(x[idx]).squeeze(-1), y[idx], reduction="none") * wi).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        # temperature calibration on the held-out split (balanced weights, as in training)
        with torch.no_grad():
            logits = self.net(x[val]).squeeze(-1)
        wv = torch.where(y[val] == 1, 0.5 / max(float(y[val].sum()), 1), 0.5 / max(float((1 - y[val]).sum()), 1))
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        topt = torch.optim.LBFGS([log_t], max_iter=100)

        def closure():
            topt.zero_grad()
            loss = (nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), y[val], reduction="none") * wv).sum()
            loss.backward()
            return loss

        topt.step(closure)
        self.temperature.fill_(float(log_t.detach().exp()))
        prob = torch.sigmoid(logits / self.temperature).numpy()
        self._diag.update(temperature=float(self.temperature), ece_balanced=ece(prob, y[val].numpy(), wv.numpy()),
                          val_rows=int(n_val))

    def _log_ratio(self, z):
        return self.net(z).squeeze(-1) / self.temperature
