"""The scorer protocol: fit(target, pool) -> log_ratio(x) -> save/load.

A scorer is a ``torch.nn.Module`` estimating ``log w(x) = log p_target(x) - log q_pool(x)``.
The base class owns standardisation (statistics fitted on the pool sample), batching and
persistence; a concrete scorer implements ``_fit(zt, zp)`` and ``_log_ratio(z)`` on
standardised float64 tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsft.config import ScorerConfig


def as_tensor(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(torch.float64)


class DensityRatioScorer(nn.Module):
    kind = "base"

    def __init__(self, cfg: ScorerConfig, feature_names: list[str]) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_names = list(feature_names)
        d = len(feature_names)
        self.register_buffer("mean", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(d, dtype=torch.float64))
        self._diag: dict[str, Any] = {}

    # ---- public protocol -------------------------------------------------------------
    def fit(self, target: Any, pool: Any) -> "DensityRatioScorer":
        xt, xp = as_tensor(target), as_tensor(pool)
        d = len(self.feature_names)
        for name, x in (("target", xt), ("pool", xp)):
            if x.ndim != 2 or x.shape[1] != d:
                raise ValueError(f"{name} sample must be [rows, {d}] features, got {tuple(x.shape)}")
            if not torch.isfinite(x).all():
                raise ValueError(f"{name} sample contains NaN or inf; prefilter non-finite rows first")
        if len(xt) < 2 or len(xp) < 2:
            raise ValueError(f"need at least 2 target and 2 pool rows, got {len(xt)} and {len(xp)}")
        self.mean.copy_(xp.mean(0))
        # a constant column gets scale 1 (it cannot separate target from pool anyway)
        sd = xp.std(0)
        self.scale.copy_(torch.where(sd > 1e-9, sd, torch.ones_like(sd)))
        self._fit(self._z(xt), self._z(xp))
        self._diag.update(target_rows=len(xt), pool_rows=len(xp))
        return self

    @torch.no_grad()
    def log_ratio(self, x: Any, batch_size: int = 262_144) -> torch.Tensor:
        xt = as_tensor(x)
        out = [self._log_ratio(self._z(xt[i : i + batch_size])) for i in range(0, len(xt), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def diagnostics(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._diag}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"kind": self.kind, "config": self.cfg.model_dump(mode="json"), "feature_names": self.feature_names,
                    "state_dict": self.state_dict(), "diagnostics": self._diag}, tmp)
        tmp.replace(path)

    # ---- for subclasses ------------------------------------------------------------------
    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def _fit(self, zt: torch.Tensor, zp: torch.Tensor) -> None:
        raise NotImplementedError

    def _log_ratio(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
