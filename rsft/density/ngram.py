"""Hashed n-gram density ratio for text (as in DSIR): bag-of-buckets models of target and pool.

Each side is a categorical distribution over hashed n-gram buckets with additive smoothing
(``cfg.smoothing`` pseudo-counts per bucket); a document's log ratio is the sum over its
n-grams of ``log p_target[b] − log p_pool[b]``. Inputs are bucket ids, from
``rsft.features.hashed_ngram_ids`` (a Polars expression): either a List[UInt32] Series or
``(flat ids, offsets)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch

from rsft.density.base import DensityRatioScorer
from rsft.features import ids_to_flat


def _flat(docs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(docs, pl.Series):
        flat, offsets = ids_to_flat(docs)
    elif isinstance(docs, tuple):
        flat, offsets = docs
    else:  # a list of id arrays
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) if len(docs) else np.zeros(0, np.int64)
    return torch.as_tensor(np.asarray(flat), dtype=torch.int64), torch.as_tensor(np.asarray(offsets), dtype=torch.int64)


class NgramScorer(DensityRatioScorer):
    kind = "ngram"

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, feature_names or ["text"])
        self.register_buffer("log_p_t", torch.zeros(cfg.buckets, dtype=torch.float64))
        self.register_buffer("log_p_p", torch.zeros(cfg.buckets, dtype=torch.float64))

    def _log_probs(self, flat: torch.Tensor) -> torch.Tensor:
        if len(flat) and (flat.min() < 0 or flat.max() >= self.cfg.buckets):
            raise ValueError(f"ngram ids must lie in [0, {self.cfg.buckets})")
        counts = torch.bincount(flat, minlength=self.cfg.buckets).double() + self.cfg.smoothing
        return torch.log(counts / counts.sum())

    def fit(self, target: Any, pool: Any) -> "NgramScorer":
        (ft, ot), (fp, op) = _flat(target), _flat(pool)
        if len(ot) < 2 or len(ft) == 0:
            raise ValueError("ngram scorer: the target sample has no tokens")
        self.log_p_t.copy_(self._log_probs(ft))
        self.log_p_p.copy_(self._log_probs(fp))
        self._diag.update(target_docs=len(ot) - 1, pool_docs=len(op) - 1, target_tokens=len(ft), pool_tokens=len(fp))
        return self

    @torch.no_grad()
    def log_ratio(self, docs: Any, batch_size: int = 0) -> torch.Tensor:
        flat, offsets = _flat(docs)
        n = len(offsets) - 1
        doc = torch.repeat_interleave(torch.arange(n), offsets[1:] - offsets[:-1])
        diff = (self.log_p_t - self.log_p_p)[flat]
        return torch.zeros(n, dtype=torch.float64).index_add_(0, doc, diff)

    def kl_target_to(self, docs: Any) -> float:
        """KL(p_target ‖ p_docs) over buckets: DSIR's measure of how target-like a set is."""
        flat, _ = _flat(docs)
        log_q = self._log_probs(flat)
        p = self.log_p_t.exp()
        return float((p * (self.log_p_t - log_q)).sum())
