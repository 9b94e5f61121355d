"""Polars feature builders: numeric passthrough, one-hot categoricals, hashed text n-grams.

Everything here returns ``pl.Expr`` (no Python UDFs), so features are computed inside the
lazy query that reads the data, in bounded memory.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rsft.config import FeaturesConfig


def feature_names(cfg: FeaturesConfig) -> list[str]:
    """Model/scorer input columns, in a fixed order: numeric, then one-hot levels."""
    names = list(cfg.numeric)
    for col, levels in cfg.categorical.items():
        names += [f"{col}={level}" for level in levels]
    return names


def feature_exprs(cfg: FeaturesConfig) -> list[pl.Expr]:
    """Float32 expressions producing :func:`feature_names` (one-hot: 1.0 when equal)."""
    exprs = [pl.col(c).cast(pl.Float32).alias(c) for c in cfg.numeric]
    for col, levels in cfg.categorical.items():
        exprs += [(pl.col(col) == level).cast(pl.Float32).alias(f"{col}={level}") for level in levels]
    return exprs


def to_matrix(df: pl.DataFrame | pl.LazyFrame, cfg: FeaturesConfig) -> np.ndarray:
    """Whole-frame conversion to a float32 ``[rows, features]`` array (not column by column)."""
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    out = lf.select(feature_exprs(cfg)).collect()
    return out.to_numpy().astype(np.float32, copy=False)


def labels(df: pl.DataFrame, cfg: FeaturesConfig) -> np.ndarray:
    return df.get_column(cfg.label).cast(pl.Float32).to_numpy()
