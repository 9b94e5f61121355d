"""Hashed n-gram density ratio for text, as in DSIR: bag-of-buckets models of target and pool.

Each side is a categorical distribution over ``cfg.buckets`` hashed n-gram buckets with additive
smoothing (``cfg.smoothing`` pseudo-counts per bucket). A document's log ratio is the sum over
its n-grams of ``log p_target[b] − log p_pool[b]`` (an empty document scores 0).

Inputs are bucket ids from ``rsft.features.hashed_ngram_ids`` (a pure Polars expression), in any
of three shapes: a ``List[UInt32]`` Polars Series, a list of id arrays (one per document), or
``(flat ids [total], offsets [docs + 1])``. ``inputs(df, feature_cfg)`` builds them from the text
column of a frame with the scorer's own ``buckets`` / ``ngrams``, so scoring matches fitting.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch

from rsft.density.base import DensityRatioScorer


def as_flat(docs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Any accepted id shape -> (flat int64 ids [total], int64 offsets [docs + 1])."""
    if isinstance(docs, pl.Series):
        lengths = docs.list.len().fill_null(0).to_numpy().astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = docs.explode().drop_nulls().to_numpy().astype(np.int64)
    elif isinstance(docs, tuple) and len(docs) == 2:
        flat, offsets = (np.asarray(a, dtype=np.int64) for a in docs)
    else:
        docs = list(docs)
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) if docs else np.zeros(0, np.int64)
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(flat) or (np.diff(offsets) < 0).any():
        raise ValueError("ngram ids: offsets must start at 0, be non-decreasing and end at len(flat ids)")
    return torch.as_tensor(flat), torch.as_tensor(offsets)


def bucket_log_probs(flat: torch.Tensor, buckets: int, smoothing: float) -> torch.Tensor:
    """[buckets] log of (counts + smoothing) / total: a smoothed bag-of-buckets distribution."""
    if len(flat) and (int(flat.min()) < 0 or int(flat.max()) >= buckets):
        raise ValueError(f"ngram ids must lie in [0, {buckets}); were features hashed with other buckets?")
    counts = torch.bincount(flat, minlength=buckets).double() + smoothing
    return torch.log(counts / counts.sum())


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """KL(p ‖ q) in nats for two log-probability vectors over the same buckets."""
    return float((log_p.exp() * (log_p - log_q)).sum())


class NgramScorer(DensityRatioScorer):
    kind = "ngram"

    def __init__(self, cfg, feature_names):
        super().__init__(cfg, list(feature_names) or ["text"])
        if cfg.smoothing <= 0:
            raise ValueError("ngram scorer: scorer.smoothing must be > 0 (a bucket never seen would score ±inf)")
        self.register_buffer("log_p_t", torch.zeros(cfg.buckets, dtype=torch.float64))
        self.register_buffer("log_p_p", torch.zeros(cfg.buckets, dtype=torch.float64))

    def fit(self, target: Any, pool: Any, pool_standardization: Any = None) -> NgramScorer:  # text: nothing to standardise
        (ft, ot), (fp, op) = as_flat(target), as_flat(pool)
        if len(ot) < 2 or len(ft) == 0:
            raise ValueError("ngram scorer: the target sample has no documents with tokens")
        if len(op) < 2 or len(fp) == 0:
            raise ValueError("ngram scorer: the pool sample has no documents with tokens")
        self.log_p_t.copy_(bucket_log_probs(ft, self.cfg.buckets, self.cfg.smoothing))
        self.log_p_p.copy_(bucket_log_probs(fp, self.cfg.buckets, self.cfg.smoothing))
        self._diag = {"target_docs": len(ot) - 1, "pool_docs": len(op) - 1, "target_ngrams": len(ft),
                      "pool_ngrams": len(fp), "kl_target_pool": kl(self.log_p_t, self.log_p_p)}
        return self

    @torch.no_grad()
    def log_ratio(self, docs: Any, batch_size: int = 0) -> torch.Tensor:
        """float64 [docs]: Σ over each document's n-grams of log p_target − log p_pool."""
        flat, offsets = as_flat(docs)
        if len(flat) and (int(flat.min()) < 0 or int(flat.max()) >= self.cfg.buckets):
            raise ValueError(f"ngram ids must lie in [0, {self.cfg.buckets})")
        n = len(offsets) - 1
        doc = torch.repeat_interleave(torch.arange(n), offsets[1:] - offsets[:-1])
        return torch.zeros(n, dtype=torch.float64).index_add_(0, doc, (self.log_p_t - self.log_p_p)[flat])

    def log_ratio_frame(self, df: Any, feature_cfg: Any) -> np.ndarray:
        """float64 log w of a frame's text column: ids by ``hashed_ngram_flat`` (the ids of
        :meth:`inputs`, in the same order: the same sums, bit for bit), no list column."""
        from rsft.features import hashed_ngram_flat

        flat, offsets = hashed_ngram_flat(df, feature_cfg.text_column, self.cfg.buckets, self.cfg.ngrams)
        return self.log_ratio((flat, offsets)).numpy()

    def inputs(self, df: Any, feature_cfg: Any) -> pl.Series:
        """Bucket ids of the frame's text column, hashed with this scorer's buckets and order."""
        from rsft.features import hashed_ngram_ids

        col = feature_cfg.text_column
        lf = df.lazy() if isinstance(df, pl.DataFrame) else df
        return lf.select(hashed_ngram_ids(pl.col(col), self.cfg.buckets, self.cfg.ngrams).alias(col)).collect()[col]

    def encode(self, texts: list[str] | pl.Series) -> pl.Series:
        """Bucket ids for raw strings (notebooks, tests)."""
        from rsft.config import FeaturesConfig

        return self.inputs(pl.DataFrame({"text": pl.Series(texts, dtype=pl.String)}), FeaturesConfig(text_column="text"))

    def kl_target_to(self, docs: Any) -> float:
        """KL(p_target ‖ p_docs) over buckets: DSIR's measure of how target-like a set of docs is."""
        flat, _ = as_flat(docs)
        return kl(self.log_p_t, bucket_log_probs(flat, self.cfg.buckets, self.cfg.smoothing))
