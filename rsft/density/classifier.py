"""Probabilistic-classification density ratio: an MLP tells target rows (label 1) from pool rows (0).

Bayes: ``P(t | x) / P(p | x) = (n_t p(x)) / (n_p q(x))``, so with the calibrated logit
``ℓ(x) = log P(t|x) − log P(p|x)``

    log w(x) = ℓ(x) + log(n_pool / n_target)        # the class-prior correction

where the counts are those of the training split. The MLP trains on the natural class
proportions (plain BCE), on a stratified 80 % split; its logit is then temperature-calibrated
(one scalar T, weighted NLL minimised by L-BFGS) on the held-out 20 %, which keeps the same
proportions, so the correction stays valid. Diagnostics: T, expected calibration error on the
held-out split (natural proportions and class-balanced, 10 equal-width bins) and held-out AUC.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rsft.density.base import DensityRatioScorer

VAL_SHARE = 0.2  # held-out share for temperature calibration and ECE
BATCH = 512
LR = 3e-3


def ece(prob: np.ndarray, label: np.ndarray, weight: np.ndarray | None = None, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins (optionally sample-weighted)."""
    prob, label = np.asarray(prob, np.float64), np.asarray(label, np.float64)
    w = np.ones_like(prob) if weight is None else np.asarray(weight, np.float64)
    which = np.minimum((prob * bins).astype(np.int64), bins - 1)
    gap = np.abs(np.bincount(which, w * prob, bins) - np.bincount(which, w * label, bins))
    return float(gap.sum() / w.sum()) if w.sum() > 0 else float("nan")


def _split(n_t: int, n_p: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, val) indices into cat([target, pool]): both keep the class proportions."""
    tr, va = [], []
    for start, n in ((0, n_t), (n_t, n_p)):
        perm = start + torch.randperm(n, generator=g)
        k = max(1, int(round(VAL_SHARE * n)))
        va.append(perm[:k])
        tr.append(perm[k:])
    return torch.cat(tr), torch.cat(va)


class ClassifierScorer(DensityRatioScorer):
    kind = "classifier"

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, feature_names)
        d, h = len(self.feature_names), cfg.hidden
        self.net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
        self.register_buffer("temperature", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("log_prior_ratio", torch.tensor(0.0, dtype=torch.float64))  # log(n_pool / n_target)

    def _fit(self, zt, zp):
        n_t, n_p = len(zt), len(zp)
        if n_t < 5:
            raise ValueError(f"classifier scorer: target sample has {n_t} rows; need at least 5 (4 to train, 1 to calibrate)")
        g = torch.Generator().manual_seed(self.cfg.seed)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global stream
            torch.manual_seed(self.cfg.seed)
            for m in self.net:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        x = torch.cat([zt, zp]).float()
        y = torch.cat([torch.ones(n_t), torch.zeros(n_p)])
        tr, va = _split(n_t, n_p, g)
        ntr_t = int(y[tr].sum())
        self.log_prior_ratio.fill_(math.log((len(tr) - ntr_t) / ntr_t))

        # ---- train: plain BCE on natural proportions ------------------------------------------
        opt = torch.optim.AdamW(self.net.parameters(), lr=LR, weight_decay=1e-4)
        self.net.train()
        # one intra-op thread: [512, h] ops are too small to split, and on a loaded machine
        # spinning worker threads made training 10x slower
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for _ in range(self.cfg.epochs):
                order = tr[torch.randperm(len(tr), generator=g)]
                for i in range(0, len(order), BATCH):
                    idx = order[i : i + BATCH]
                    loss = nn.functional.binary_cross_entropy_with_logits(self.net(x[idx]).squeeze(-1), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        finally:
            torch.set_num_threads(threads)
        self.net.eval()

        # ---- calibrate: one temperature on the held-out split ---------------------------------
        with torch.no_grad():
            logits = self.net(x[va]).squeeze(-1).double()
        yv = y[va].double()
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        topt = torch.optim.LBFGS([log_t], max_iter=100, line_search_fn="strong_wolfe")

        def closure():
            topt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), yv)
            loss.backward()
            return loss

        topt.step(closure)
        t = float(log_t.detach().exp().clamp(0.05, 20.0))
        self.temperature.fill_(t)

        # ---- diagnostics ---------------------------------------------------------------------------
        from rsft.evaluate import binary_auroc

        prob = torch.sigmoid(logits / t).numpy()  # P(target | x) at the natural proportions
        # balanced view: sigmoid(log w) is P(target | x) when both classes weigh ½
        prob_bal = torch.sigmoid(logits / t + self.log_prior_ratio).numpy()
        lab = yv.numpy()
        wbal = np.where(lab == 1, 0.5 / lab.sum(), 0.5 / (1 - lab).sum())
        self._diag.update(
            temperature=t,
            log_prior_ratio=float(self.log_prior_ratio),
            ece=ece(prob, lab),
            ece_balanced=ece(prob_bal, lab, wbal),
            val_auc=binary_auroc(lab, prob),
            val_rows=len(va),
        )

    score_dtype = torch.float32  # the net is float32; scoring needs no float64 copy of the batch

    def _log_ratio(self, z):
        logit = self.net(z.float()).squeeze(-1).double()
        return logit / self.temperature + self.log_prior_ratio
