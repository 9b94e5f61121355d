"""Model zoo: a tabular MLP with built-in standardisation; checkpoints are one plain dict."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsft.config import ModelConfig


class Standardize(nn.Module):
    """(x - mean) / scale with buffers, so a checkpoint carries its own feature statistics."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class MLP(nn.Module):
    """Standardize -> [Linear, ReLU, Dropout] × len(hidden) -> head. Output [n] for out=1."""

    def __init__(self, in_features: int, out_features: int = 1, hidden: list[int] | None = None, dropout: float = 0.0):
        super().__init__()
        self.norm = Standardize(in_features)
        layers: list[nn.Module] = []
        d = in_features
        for h in hidden or [64, 64]:
            layers += [nn.Linear(d, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, out_features)
        self.register_buffer("y_mean", torch.zeros(out_features))  # output offset (label mean)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(self.norm(x))) + self.y_mean
        return out.squeeze(-1) if self.out_features == 1 else out


def build_model(cfg: ModelConfig, in_features: int, out_features: int = 1) -> nn.Module:
    if cfg.import_path:
        mod, _, cls = cfg.import_path.partition(":")
        return getattr(importlib.import_module(mod), cls)(in_features, out_features)
    return MLP(in_features, out_features, list(cfg.hidden), cfg.dropout)


def set_standardization(model: nn.Module, x: np.ndarray, y: np.ndarray | None = None) -> None:
    """Fit the input standardisation (and the output offset, given labels) on data."""
    norm = getattr(model, "norm", None)
    if isinstance(norm, Standardize):
        t = torch.as_tensor(x, dtype=torch.float32)
        norm.mean.copy_(t.mean(0))
        norm.scale.copy_(t.std(0).clamp_min(1e-6))
    if y is not None and hasattr(model, "y_mean"):
        model.y_mean.fill_(float(np.nanmean(y)))


def checkpoint(model: nn.Module, cfg: ModelConfig, in_features: int, feature_names: list[str], extra: dict | None = None) -> dict:
    return {
        "model_config": cfg.model_dump(mode="json"),
        "in_features": int(in_features),
        "feature_names": list(feature_names),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    model = build_model(ModelConfig(**ckpt["model_config"]), ckpt["in_features"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model
