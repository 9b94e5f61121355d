"""Hashed n-gram density ratio for text, as in DSIR: bag-of-buckets models of target and pool.

Each side is a categorical distribution over ``cfg.buckets`` hashed n-gram buckets with additive
smoothing (``cfg.smoothing`` pseudo-counts per bucket). A document's log ratio is the sum over
its n-grams of ``log p_target[b] − log p_pool[b]`` (DSIR's; an empty document scores 0), or, with
``scorer.ngram_score = "per_ngram"``, their mean times the target's mean n-grams per document
(``doc_ngrams``, fitted and saved with the state; a file without it scores sums). The sum grows
with length at the rate of the document's mean term, negative for every off-target document, so
short off-target documents outrank long ones once the target-like ones are taken (trial 8: log
w's Spearman ρ with length −0.94); the mean does not rank by length.

Inputs are bucket ids from ``rsft.features.hashed_ngram_ids`` (a pure Polars expression), in any
of three shapes: a ``List[UInt32]`` Polars Series, a list of id arrays (one per document), or
``(flat ids [total], offsets [docs + 1])``. ``inputs(df, feature_cfg)`` builds them from the text
column of a frame with the scorer's own ``buckets`` / ``ngrams`` / hash scheme, so scoring matches
fitting.

The hash scheme (``rsft.features.NGRAM_HASH_SCHEMES``) is part of the scorer's saved state
(``hash_scheme``): a new scorer uses :data:`NGRAM_HASH` (2: bigram buckets from the two token
hashes, no bigram strings); a scorer saved before the scheme was recorded loads as scheme 1 (the
bigram strings' hashes) and keeps scoring as it was fitted. Ids passed to :meth:`fit` must have
been made with the scorer's scheme (:meth:`inputs` / :meth:`encode` do; :meth:`fit_frames`
featurises the frames itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import torch

from rsft.density.base import DensityRatioScorer

NGRAM_HASH = 2  # the hash scheme of newly made n-gram scorers (rsft.features.NGRAM_HASH_SCHEMES)
FIT_SLICE_BYTES = 4 << 20  # fit_frames / log_ratio_frame featurise at most this much text at once


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


def _check_ids(flat: torch.Tensor, buckets: int, side: str = "") -> None:
    """Bucket ids in [0, buckets), else one line saying the features were hashed with other buckets."""
    if len(flat) and (int(flat.min()) < 0 or int(flat.max()) >= buckets):
        raise ValueError(f"ngram ids must lie in [0, {buckets}); were {side + ' ' if side else ''}features hashed "
                         "with other buckets?")


def bucket_log_probs(flat: torch.Tensor, buckets: int, smoothing: float) -> torch.Tensor:
    """[buckets] log of (counts + smoothing) / total: a smoothed bag-of-buckets distribution."""
    _check_ids(flat, buckets)
    return counts_log_probs(torch.bincount(flat, minlength=buckets), smoothing)


def counts_log_probs(counts: Any, smoothing: float) -> torch.Tensor:
    """[buckets] log of (counts + smoothing) / total from per-bucket n-gram counts."""
    c = torch.as_tensor(counts).double() + smoothing
    return torch.log(c / c.sum())


def _text_slices(df: Any, column: str) -> list[pl.DataFrame]:
    """The frame's text column in slices of at most FIT_SLICE_BYTES of text (``rsft.features.text_slices``)."""
    from rsft.features import text_slices

    return text_slices(df, column, FIT_SLICE_BYTES)


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
        self.hash_scheme = NGRAM_HASH  # saved with the state (extra state); a file without it: 1
        self.doc_ngrams = 0.0  # > 0: score = per-n-gram mean × this (extra state; a file without it: 0, sums)

    # the hash scheme travels in the state dict (torch's extra state: a plain dict, weights_only-safe)
    def get_extra_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"ngram_hash": int(self.hash_scheme)}
        if self.doc_ngrams > 0:  # per_ngram scores only: a sum scorer's file stays as before
            extra["doc_ngrams"] = float(self.doc_ngrams)
        return extra

    def set_extra_state(self, state: Any) -> None:
        from rsft.features import NGRAM_HASH_SCHEMES

        scheme = int(state.get("ngram_hash", 1)) if isinstance(state, dict) else 1
        if scheme not in NGRAM_HASH_SCHEMES:
            raise ValueError(f"ngram scorer: saved with hash scheme {scheme}, this rsft knows {NGRAM_HASH_SCHEMES}")
        self.hash_scheme = scheme
        self.doc_ngrams = float(state.get("doc_ngrams", 0.0)) if isinstance(state, dict) else 0.0

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        if "_extra_state" not in state_dict:  # saved before the scheme was recorded: scheme 1
            state_dict = {**state_dict, "_extra_state": {"ngram_hash": 1}}
        return super().load_state_dict(state_dict, *args, **kwargs)

    def fit(self, target: Any, pool: Any, pool_standardization: Any = None) -> NgramScorer:  # text: nothing to standardise
        """Fit on bucket ids made with this scorer's hash scheme (:meth:`inputs`)."""
        (ft, ot), (fp, op) = as_flat(target), as_flat(pool)
        _check_ids(ft, self.cfg.buckets, "target")
        _check_ids(fp, self.cfg.buckets, "pool")
        return self.fit_counts(torch.bincount(ft, minlength=self.cfg.buckets), len(ot) - 1,
                               torch.bincount(fp, minlength=self.cfg.buckets), len(op) - 1)

    def fit_counts(self, target_counts: Any, target_docs: int, pool_counts: Any, pool_docs: int) -> NgramScorer:
        """Fit on per-bucket n-gram counts (int [buckets]) of each side and its document count."""
        ct, cp = torch.as_tensor(target_counts), torch.as_tensor(pool_counts)
        if target_docs < 1 or int(ct.sum()) == 0:
            raise ValueError("ngram scorer: the target sample has no documents with tokens")
        if pool_docs < 1 or int(cp.sum()) == 0:
            raise ValueError("ngram scorer: the pool sample has no documents with tokens")
        self.log_p_t.copy_(counts_log_probs(ct, self.cfg.smoothing))
        self.log_p_p.copy_(counts_log_probs(cp, self.cfg.smoothing))
        per_ngram = getattr(self.cfg, "ngram_score", "sum") == "per_ngram"
        self.doc_ngrams = float(ct.sum()) / target_docs if per_ngram else 0.0
        self._diag = {"target_docs": int(target_docs), "pool_docs": int(pool_docs), "target_ngrams": int(ct.sum()),
                      "pool_ngrams": int(cp.sum()), "kl_target_pool": kl(self.log_p_t, self.log_p_p),
                      "ngram_hash": int(self.hash_scheme), "doc_ngrams": self.doc_ngrams}
        return self

    def counts_frame(self, df: Any, feature_cfg: Any) -> tuple[np.ndarray, int]:
        """(int64 [buckets] n-gram counts of the frame's text column with this scorer's hashing,
        documents), featurised in slices of at most FIT_SLICE_BYTES of text."""
        from rsft.features import hashed_ngram_counts

        col = feature_cfg.text_column
        total, docs = np.zeros(self.cfg.buckets, np.int64), 0
        for part in _text_slices(df, col):
            c, _ = hashed_ngram_counts(part, col, self.cfg.buckets, self.cfg.ngrams, scheme=self.hash_scheme)
            total += c
            docs += part.height
        return total, docs

    def fit_frames(self, target_df: Any, pool_df: Any, feature_cfg: Any) -> NgramScorer:
        """Fit on the text columns of two frames: n-gram counts only (no ids kept, bounded memory)."""
        (ct, nt), (cp, npool) = self.counts_frame(target_df, feature_cfg), self.counts_frame(pool_df, feature_cfg)
        return self.fit_counts(ct, nt, cp, npool)

    @torch.no_grad()
    def log_ratio(self, docs: Any, batch_size: int = 0) -> torch.Tensor:
        """float64 [docs]: Σ over each document's n-grams of log p_target − log p_pool (with
        ``doc_ngrams`` > 0: that sum / the document's n-grams × ``doc_ngrams``)."""
        flat, offsets = as_flat(docs)
        if len(flat) and (int(flat.min()) < 0 or int(flat.max()) >= self.cfg.buckets):
            raise ValueError(f"ngram ids must lie in [0, {self.cfg.buckets})")
        n = len(offsets) - 1
        doc = torch.repeat_interleave(torch.arange(n), offsets[1:] - offsets[:-1])
        sums = torch.zeros(n, dtype=torch.float64).index_add_(0, doc, (self.log_p_t - self.log_p_p)[flat])
        if self.doc_ngrams > 0:
            sums = sums / (offsets[1:] - offsets[:-1]).clamp(min=1) * self.doc_ngrams
        return sums

    def log_ratio_frame(self, df: Any, feature_cfg: Any) -> np.ndarray:
        """float64 log w of a frame's text column, no list column. Scheme 2: per-document segment
        sums of the bucket weights over the flat tokens (``hashed_ngram_sums``; equal to
        ``log_ratio(inputs(df))`` up to rounding), in slices of at most FIT_SLICE_BYTES of text.
        Scheme 1: ids by ``hashed_ngram_flat`` (those of :meth:`inputs`, in the same order: the same
        sums, bit for bit)."""
        from rsft.features import hashed_ngram_flat
        from rsft.scorer_file import ngram_log_ratio_frame

        col = feature_cfg.text_column
        if self.hash_scheme == 1:
            flat, offsets = hashed_ngram_flat(df, col, self.cfg.buckets, self.cfg.ngrams)
            return self.log_ratio((flat, offsets)).numpy()
        weights = (self.log_p_t - self.log_p_p).numpy()
        return ngram_log_ratio_frame(df, col, weights, self.cfg.ngrams, self.hash_scheme, FIT_SLICE_BYTES,
                                     doc_ngrams=self.doc_ngrams)

    def inputs(self, df: Any, feature_cfg: Any) -> pl.Series:
        """Bucket ids of the frame's text column, hashed with this scorer's buckets, order and scheme."""
        from rsft.features import hashed_ngram_ids

        col = feature_cfg.text_column
        lf = df.lazy() if isinstance(df, pl.DataFrame) else df
        expr = hashed_ngram_ids(pl.col(col), self.cfg.buckets, self.cfg.ngrams, scheme=self.hash_scheme)
        return lf.select(expr.alias(col)).collect()[col]

    def encode(self, texts: list[str] | pl.Series) -> pl.Series:
        """Bucket ids for raw strings (notebooks, tests)."""
        from rsft.config import FeaturesConfig

        return self.inputs(pl.DataFrame({"text": pl.Series(texts, dtype=pl.String)}), FeaturesConfig(text_column="text"))

    def kl_target_to(self, docs: Any) -> float:
        """KL(p_target ‖ p_docs) over buckets: DSIR's measure of how target-like a set of docs is."""
        flat, _ = as_flat(docs)
        return kl(self.log_p_t, bucket_log_probs(flat, self.cfg.buckets, self.cfg.smoothing))
