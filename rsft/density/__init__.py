"""Density-ratio scorers: ``log w(x) = log p_target(x) − log q_pool(x)``.

    scorer = make_scorer(cfg.scorer, feature_names)   # gaussian | gmm | classifier | ngram
    scorer.fit(target, pool)                           # raw float32 [n, d] (ngram: bucket ids)
    log_w = scorer.log_ratio(x)                        # float64 [n], pure, batched
    scorer.save(path); scorer = load_scorer(path)      # one torch.save'd plain dict
"""

from __future__ import annotations

from pathlib import Path

import torch

from rsft.config import ScorerConfig
from rsft.density.base import DensityRatioScorer
from rsft.density.classifier import ClassifierScorer
from rsft.density.gaussian import GaussianScorer
from rsft.density.gmm import GMMScorer
from rsft.density.ngram import NgramScorer

SCORERS: dict[str, type[DensityRatioScorer]] = {
    "gaussian": GaussianScorer,
    "gmm": GMMScorer,
    "classifier": ClassifierScorer,
    "ngram": NgramScorer,
}


def make_scorer(cfg: ScorerConfig, feature_names: list[str]) -> DensityRatioScorer:
    """An unfitted scorer of kind ``cfg.kind`` over ``feature_names``."""
    if cfg.kind not in SCORERS:
        raise ValueError(f"scorer.kind '{cfg.kind}' is not available (have: {', '.join(sorted(SCORERS))})")
    return SCORERS[cfg.kind](cfg, feature_names)


def load_scorer(path: str | Path) -> DensityRatioScorer:
    """A scorer saved by ``scorer.save(path)``; loads with ``weights_only=True`` (no pickled code)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"{path}: not a saved rsft scorer")
    cfg = ScorerConfig(**blob["config"])
    if blob.get("kind", cfg.kind) != cfg.kind:
        raise ValueError(f"{path}: kind '{blob['kind']}' does not match its config kind '{cfg.kind}'")
    scorer = make_scorer(cfg, blob["feature_names"])
    scorer.load_state_dict(blob["state_dict"])
    scorer._diag = dict(blob.get("diagnostics", {}))
    scorer.eval()
    return scorer


__all__ = ["DensityRatioScorer", "make_scorer", "load_scorer", "SCORERS"]
