"""Density-ratio scorers: ``log w(x) = log p_target(x) - log q_pool(x)``."""

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
    if cfg.kind not in SCORERS:
        raise ValueError(f"scorer.kind '{cfg.kind}' is not available (have: {', '.join(sorted(SCORERS))})")
    return SCORERS[cfg.kind](cfg, feature_names)


def load_scorer(path: str | Path) -> DensityRatioScorer:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    scorer = make_scorer(ScorerConfig(**blob["config"]), blob["feature_names"])
    scorer.load_state_dict(blob["state_dict"])
    scorer._diag = dict(blob.get("diagnostics", {}))
    return scorer


__all__ = ["DensityRatioScorer", "make_scorer", "load_scorer", "SCORERS"]
