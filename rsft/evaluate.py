"""Evaluation: task metrics, always computed the same way for champion and challenger."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from rsft.config import FeaturesConfig
from rsft.features import labels, to_matrix


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    err = yhat - y
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else float("nan")
    return {
        "mae": float(np.abs(err).mean()) if len(y) else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if len(y) else float("nan"),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot else float("nan"),
        "n": float(len(y)),
    }


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    model.eval()
    out = [model(torch.as_tensor(x[i : i + batch_size], dtype=torch.float32)).float().cpu().numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def evaluate_regression(model: nn.Module, df: pl.DataFrame, feature_cfg: FeaturesConfig) -> dict[str, float]:
    df = df.filter(pl.col(feature_cfg.label).is_not_null())
    return regression_metrics(labels(df, feature_cfg), predict(model, to_matrix(df, feature_cfg)))
