"""Selection diagnostics: how well do the selected rows match the target? JSON + PNG."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from rsft.config import FeaturesConfig
from rsft.features import feature_names, to_matrix

log = logging.getLogger(__name__)


def ess(log_w: np.ndarray) -> float:
    """Effective sample size (Σw)² / Σw², computed stably in log space."""
    lw = np.asarray(log_w, dtype=np.float64)
    if len(lw) == 0:
        return 0.0
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (w**2).sum())


def ks_stat(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


def smd(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (pooled sd)."""
    s = np.sqrt((a.var() + b.var()) / 2) if len(a) and len(b) else float("nan")
    return float((a.mean() - b.mean()) / s) if s and s > 0 else 0.0


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average rank)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ties
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def two_sample_auc(a: np.ndarray, b: np.ndarray, seed: int = 0, epochs: int = 200) -> float:
    """Held-out AUC of a logistic regression telling ``a`` from ``b`` (0.5 = indistinguishable)."""
    n = min(len(a), len(b), 20_000)
    if n < 10:
        return float("nan")
    rng = np.random.default_rng(seed)
    x = np.concatenate([a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    perm = rng.permutation(2 * n)
    x, y = x[perm], y[perm]
    mu, sd = x.mean(0), x.std(0) + 1e-9
    x = (x - mu) / sd
    split = int(0.7 * len(y))
    xt = torch.as_tensor(x[:split], dtype=torch.float32)
    yt = torch.as_tensor(y[:split], dtype=torch.float32)
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=epochs)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(xt).squeeze(-1), yt) + 1e-4 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        s = lin(torch.as_tensor(x[split:], dtype=torch.float32)).squeeze(-1).numpy()
    return auc(s, y[split:])


def selection_report(
    target_df: pl.DataFrame,
    pool_df: pl.DataFrame,
    selected_df: pl.DataFrame,
    feature_cfg: FeaturesConfig,
    log_w_pool: np.ndarray,
    out_dir: str | Path,
) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = feature_names(feature_cfg)
    xt, xp, xs = (to_matrix(d, feature_cfg) for d in (target_df, pool_df, selected_df))
    per_feature = {
        n: {
            "ks_pool_vs_target": ks_stat(xp[:, j], xt[:, j]),
            "ks_selected_vs_target": ks_stat(xs[:, j], xt[:, j]) if len(xs) else float("nan"),
            "smd_pool_vs_target": smd(xp[:, j], xt[:, j]),
            "smd_selected_vs_target": smd(xs[:, j], xt[:, j]) if len(xs) else float("nan"),
        }
        for j, n in enumerate(names)
    }
    report: dict[str, Any] = {
        "target_rows": len(xt),
        "pool_sample_rows": len(xp),
        "selected_rows": len(xs),
        "ess": ess(log_w_pool),
        "ess_share": ess(log_w_pool) / max(len(log_w_pool), 1),
        "auc_pool_vs_target": two_sample_auc(xp, xt),
        "auc_selected_vs_target": two_sample_auc(xs, xt) if len(xs) >= 10 else float("nan"),
        "mean_ks_pool_vs_target": float(np.nanmean([v["ks_pool_vs_target"] for v in per_feature.values()])),
        "mean_ks_selected_vs_target": float(np.nanmean([v["ks_selected_vs_target"] for v in per_feature.values()])),
        "per_feature": per_feature,
    }
    if "machine_id" in selected_df.columns and "machine_id" in pool_df.columns and len(xs):
        sel = selected_df.group_by("machine_id").len().rename({"len": "selected"})
        report["selected_by_machine"] = {r["machine_id"]: r["selected"] for r in sel.sort("machine_id").iter_rows(named=True)}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    try:
        _plots(out, names, xt, xp, xs, np.asarray(log_w_pool))
        report["plots"] = sorted(p.name for p in out.glob("*.png"))
    except Exception as e:  # plotting must never fail a nightly run
        log.warning("selection report plots failed: %s", e)
    return report


def _plots(out: Path, names: list[str], xt, xp, xs, log_w) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(log_w, bins=80, color="#4c72b0")
    ax.set_xlabel("log w = log p_target − log q_pool (pool sample)")
    ax.set_ylabel("rows")
    ax.set_title("density-ratio scores")
    fig.tight_layout()
    fig.savefig(out / "log_w_hist.png", dpi=110)
    plt.close(fig)

    k = min(6, len(names))
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for j, ax in enumerate(axes.flat):
        if j >= k:
            ax.axis("off")
            continue
        lo, hi = np.percentile(np.concatenate([xp[:, j], xt[:, j]]), [0.5, 99.5])
        bins = np.linspace(lo, hi, 50)
        ax.hist(xp[:, j], bins=bins, density=True, alpha=0.4, label="pool")
        ax.hist(xt[:, j], bins=bins, density=True, alpha=0.5, label="target", histtype="step", linewidth=2)
        if len(xs):
            ax.hist(xs[:, j], bins=bins, density=True, alpha=0.4, label="selected")
        ax.set_title(names[j])
    axes.flat[0].legend()
    fig.suptitle("marginals: pool / target / selected")
    fig.tight_layout()
    fig.savefig(out / "marginals.png", dpi=110)
    plt.close(fig)
