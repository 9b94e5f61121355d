"""Model zoo; checkpoints are one plain dict.

- ``MLP``: tabular/sensor regression (out 1 -> [n]) or classification (out C -> logits [n, C]).
- ``SensorAutoencoder``: standardised input -> encoder -> latent -> decoder; pretrained on
  unlabelled rows (task "reconstruction"), then ``with_head(out)`` -> ``AutoencoderRegressor``
  (the pretrained encoder + a new prediction head) is fine-tuned like any model.
- ``TextClassifier``: int64 hashed n-gram bucket ids [n, L] (padded with ``buckets``) ->
  mean EmbeddingBag -> MLP head -> logits [n, C].
- ``ModelConfig.import_path`` = "package.module:Class" plugs in a user nn.Module, built as
  ``Class(in_features, out_features)``.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsft.config import ModelConfig
from rsft.fsio import atomic_path


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


def _mlp_layers(d: int, hidden: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        d = h
    return nn.Sequential(*layers), d


class SensorAutoencoder(nn.Module):
    """Standardize -> encoder [hidden..., latent] -> decoder [reversed hidden..., d].

    ``forward`` returns the reconstruction of the *standardised* input [n, d];
    ``reconstruction_target(x)`` is that standardised input, so the loss is scale-free.
    """

    def __init__(self, in_features: int, hidden: list[int] | None = None, latent: int = 8, dropout: float = 0.0):
        super().__init__()
        hidden = list(hidden or [64, 64])
        self.norm = Standardize(in_features)
        body, d = _mlp_layers(in_features, hidden, dropout)
        self.encoder = nn.Sequential(*body, nn.Linear(d, latent))
        dec, d = _mlp_layers(latent, hidden[::-1], dropout)
        self.decoder = nn.Sequential(*dec, nn.Linear(d, in_features))
        self.in_features, self.hidden, self.latent = in_features, hidden, latent

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.norm(x))

    def reconstruction_target(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))

    def with_head(self, out_features: int = 1, hidden: list[int] | None = None) -> "AutoencoderRegressor":
        """The pretrained encoder (copied, same weights) + a new prediction head."""
        model = AutoencoderRegressor(self.in_features, out_features, self.hidden, self.latent, head_hidden=hidden)
        model.norm.load_state_dict(self.norm.state_dict())
        model.encoder.load_state_dict(self.encoder.state_dict())
        return model


class AutoencoderRegressor(nn.Module):
    """Standardize -> encoder (pretrained) -> latent [n, latent] -> head MLP; output like ``MLP``.

    Parameter names ``encoder.*`` match ``SensorAutoencoder``, so ``freeze=["encoder.*"]``
    fine-tunes only the head.
    """

    def __init__(self, in_features: int, out_features: int = 1, hidden: list[int] | None = None, latent: int = 8,
                 dropout: float = 0.0, head_hidden: list[int] | None = None):
        super().__init__()
        hidden = list(hidden or [64, 64])
        self.norm = Standardize(in_features)
        body, d = _mlp_layers(in_features, hidden, dropout)
        self.encoder = nn.Sequential(*body, nn.Linear(d, latent))
        head, d = _mlp_layers(latent, list(head_hidden or [max(latent, 16)]), dropout)
        self.head = nn.Sequential(*head, nn.Linear(d, out_features))
        self.register_buffer("y_mean", torch.zeros(out_features))
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.encoder(self.norm(x))) + self.y_mean
        return out.squeeze(-1) if self.out_features == 1 else out


class TextClassifier(nn.Module):
    """int64 bucket ids [n, L] padded with ``buckets`` -> mean EmbeddingBag [n, dim] -> MLP -> logits [n, C]."""

    def __init__(self, buckets: int, n_classes: int, dim: int = 64, hidden: list[int] | None = None, dropout: float = 0.0):
        super().__init__()
        self.buckets = buckets
        self.embed = nn.EmbeddingBag(buckets + 1, dim, mode="mean", padding_idx=buckets)
        body, d = _mlp_layers(dim, list(hidden or []), dropout)
        self.body = body
        self.head = nn.Linear(d, n_classes)
        self.out_features = n_classes

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # an all-padding row embeds to zeros (EmbeddingBag mean over no entries)
        return self.head(self.body(self.embed(ids.long())))


class StackedLinear(nn.Module):
    """K independent copies of one ``nn.Linear`` applied side by side: input [b, K, in] ->
    [b, K, out], copy k on column k. Weight [K, out, in] and bias [K, out]: slice k is an
    ``nn.Linear``'s own layout, under the same parameter names."""

    def __init__(self, linear: nn.Linear, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().expand(k, -1, -1).clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().expand(k, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xk = x.transpose(0, 1)  # [K, b, in]
        w = self.weight.transpose(1, 2)  # [K, in, out]
        out = torch.bmm(xk, w) if self.bias is None else torch.baddbmm(self.bias[:, None, :], xk, w)
        return out.transpose(0, 1)


def stack_models(model: nn.Module, k: int, probe: torch.Tensor | None) -> nn.Module | None:
    """``k`` copies of ``model`` as one module, so ``k`` models train in one pass (the adapt
    search's cross-validation folds): input [b, k, d] -> output [b, k] (copy j sees column j).
    At this scale a training step is dispatch-bound, so k stacked copies cost ~1.5 copies (k = 4), not k.

    Returns None when the model cannot be stacked: a parameter outside an ``nn.Linear``
    (embeddings, norm layers' affine weights), or a forward that mixes the copies or fails on
    the extra dimension — checked on ``probe`` rows [n, d], a different row order per copy
    (``probe=None`` skips that check: for a caller that already made it on this model).
    ``train.fit`` trains the stack (``stack_size``); :func:`unstack_model` takes copy j out.
    """
    linear = {f"{n}.{p}" if n else p for n, m in model.named_modules() if isinstance(m, nn.Linear)
              for p, _ in m.named_parameters(recurse=False)}
    params = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    tensors = {id(p) for _, p in model.named_parameters(remove_duplicate=False)}
    if k < 2 or len(params) != len(tensors) or any(n not in linear for n in params):
        return None  # a parameter outside nn.Linear, or one tensor under two names (tied weights)
    if len(list(model.modules())) != len(list(model.named_modules(remove_duplicate=False))):
        return None  # a module reachable under two names: replacing one name would leave it shared
    stacked = copy.deepcopy(model)
    for parent in list(stacked.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, StackedLinear(child, k))
    stacked.stack_size = k
    if probe is None:
        return stacked
    ref_model = copy.deepcopy(model).eval()  # probe on copies: the caller's model may be in use elsewhere
    stacked.eval()
    try:
        with torch.no_grad():
            xs = torch.stack([probe.roll(j, 0) for j in range(k)], 1)  # [n, k, d]
            out = stacked(xs)
            ref = torch.stack([ref_model(xs[:, j]) for j in range(k)], 1)
        ok = out.shape == ref.shape and ref.dim() == 2 and torch.allclose(out, ref, rtol=1e-4, atol=1e-5)
    except Exception:  # noqa: BLE001 - any failure on the stacked shape means "not stackable"
        ok = False
    return stacked.train(model.training) if ok else None


def unstack_model(stacked: nn.Module, model: nn.Module, j: int) -> nn.Module:
    """Copy ``j`` of a :func:`stack_models` stack as a plain module shaped like ``model``."""
    out = copy.deepcopy(model)
    src = stacked.state_dict()
    out.load_state_dict({n: (src[n][j] if src[n].shape != t.shape else src[n]) for n, t in out.state_dict().items()})
    return out.eval()


def build_model(cfg: ModelConfig, in_features: int, out_features: int = 1) -> nn.Module:
    """``in_features``: input columns (text: hash buckets); ``out_features``: 1 for regression, C classes."""
    if cfg.import_path:
        mod, _, cls = cfg.import_path.partition(":")
        return getattr(importlib.import_module(mod), cls)(in_features, out_features)
    if cfg.kind == "text":
        return TextClassifier(in_features, out_features, cfg.embed_dim, list(cfg.hidden), cfg.dropout)
    if cfg.kind == "autoencoder":
        return AutoencoderRegressor(in_features, out_features, list(cfg.hidden), cfg.latent, cfg.dropout)
    return MLP(in_features, out_features, list(cfg.hidden), cfg.dropout)


def build_autoencoder(cfg: ModelConfig, in_features: int) -> SensorAutoencoder:
    """The unlabelled-pretraining half of kind "autoencoder" (see ``SensorAutoencoder.with_head``)."""
    return SensorAutoencoder(in_features, list(cfg.hidden), cfg.latent, cfg.dropout)


def set_standardization(model: nn.Module, x: np.ndarray, y: np.ndarray | None = None) -> None:
    """Fit the input standardisation (and the output offset, given labels) on data."""
    norm = getattr(model, "norm", None)
    if isinstance(norm, Standardize):
        t = torch.as_tensor(x, dtype=torch.float32)
        norm.mean.copy_(t.mean(0))
        norm.scale.copy_(t.std(0).clamp_min(1e-6))
    # class ids are no offset: logits stay centred on zero for classification
    if y is not None and hasattr(model, "y_mean") and not np.issubdtype(np.asarray(y).dtype, np.integer):
        model.y_mean.fill_(float(np.nanmean(y)))


def checkpoint(model: nn.Module, cfg: ModelConfig, in_features: int, feature_names: list[str], extra: dict | None = None) -> dict:
    return {
        "model_config": cfg.model_dump(mode="json"),
        "in_features": int(in_features),
        "out_features": int(getattr(model, "out_features", 1)),
        "arch": type(model).__name__,  # SensorAutoencoder (pretraining) vs the kind's predictor
        "feature_names": list(feature_names),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    cfg = ModelConfig(**ckpt["model_config"])
    if ckpt.get("arch") == "SensorAutoencoder" and not cfg.import_path:
        model: nn.Module = build_autoencoder(cfg, ckpt["in_features"])
    else:
        model = build_model(cfg, ckpt["in_features"], ckpt.get("out_features", 1))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model
