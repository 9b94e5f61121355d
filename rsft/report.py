"""Selection diagnostics: how well do the selected rows match the target? ``report.json`` + PNGs.

    rep = selection_report(target_df, pool_sample_df, selected_df, feature_cfg, log_w_pool, out_dir)

What it measures (pool = the scored pool sample, selected = the sampler's output):

- ESS of the pool-sample weights, ``(Σw)² / Σw²``: how many pool rows the importance weights are
  worth; ``ess_share`` = ESS / rows. Small means the target sits in the pool's tail.
- per feature: two-sample Kolmogorov–Smirnov statistic and standardised mean difference (pooled
  sd), pool-vs-target and selected-vs-target. Selection works when the second is much smaller.
- two-sample classifier AUC: a logistic regression telling a set from the target, scored on a
  held-out 30 % split (0.5 = indistinguishable by a linear model), pool and selected.
- by group (``feature_cfg.group``, e.g. machine_id, when present): pool-sample, selected and
  target shares, lift = selected share / pool share, and the acceptance rate per group when the
  full pool's size (``pool_rows``) and/or ``log_m`` are given.
- text (no numeric features, a text column): DSIR's KL reduction over hashed n-gram buckets.
- coverage of the target by the pool (``report["coverage"]``, see :func:`coverage`): the share of
  target rows with no comparable pool row; per group, its target / selected shares and uncovered
  share, flagged when the selection nearly misses it; the features on which the selected rows
  match the target worse than the raw pool. ``report["warnings"]`` says the findings in words
  (the Prefect artifact and ``rsft retrain`` print them).

Every helper is a module-level function tested on its own. Plots use matplotlib's object API
(``Figure`` + Agg canvas): no global pyplot state, safe in worker threads.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from rsft.config import FeaturesConfig
from rsft.evaluate import binary_auroc
from rsft.features import feature_names, to_matrix

log = logging.getLogger(__name__)

AUC_MAX_ROWS = 20_000  # rows per class for the two-sample classifier
MAX_GROUPS = 50  # largest groups listed in the report

# coverage of the target by the pool (see `coverage`)
# a target row is "uncovered" when its nearest pool-sample row is farther away (standardised
# feature space) than this quantile of the pool rows' own distances to their nearest other pool row
COVERAGE_QUANTILE = 0.99
COVERAGE_MAX_POOL_ROWS = 20_000  # pool-sample rows searched (a uniform subsample beyond this)
COVERAGE_MAX_TARGET_ROWS = 5_000  # target rows checked (a uniform subsample beyond this)
COVERAGE_REF_ROWS = 2_000  # pool rows whose nearest-other-pool-row distance sets the threshold
UNCOVERED_WARN_SHARE = 0.05  # warn when at least this share of target rows is uncovered (≈1 % by chance)
GROUP_MIN_TARGET_SHARE = 0.05  # groups below this share of the target are never flagged
GROUP_MIN_SELECTED_RATIO = 0.2  # flag a group whose selected share < this × its target share
KS_CRITICAL = 1.36  # two-sample KS 5 % critical value c(α): a feature is "worse after selection" when
# KS(selected, target) > KS(pool, target) + KS_CRITICAL·sqrt(1/n_selected + 1/n_target)


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------
def ess(log_w: np.ndarray) -> float:
    """Effective sample size (Σw)² / Σw², computed stably from log w (non-finite = weight 0)."""
    lw = np.asarray(log_w, dtype=np.float64)
    lw = lw[np.isfinite(lw)]
    if len(lw) == 0:
        return 0.0
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (w**2).sum())


def ks_stat(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic sup |F_a − F_b| (NaN when a set is empty)."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


def smd(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (mean_a − mean_b) / pooled sd; 0 when both are constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    s = math.sqrt((a.var() + b.var()) / 2)
    return float((a.mean() - b.mean()) / s) if s > 0 else 0.0


def two_sample_auc(a: np.ndarray, b: np.ndarray, seed: int = 0, max_iter: int = 200) -> float:
    """Held-out AUC of an L2 logistic regression telling rows ``a`` from rows ``b``.

    Balanced classes (min(len a, len b, 20 000) rows each, drawn with ``seed``), standardised,
    fitted by L-BFGS on 70 %, scored on 30 %. 0.5 = not linearly distinguishable; NaN when
    either set has fewer than 10 rows.
    """
    n = min(len(a), len(b), AUC_MAX_ROWS)
    if n < 10:
        return float("nan")
    rng = np.random.default_rng(seed)
    x = np.concatenate([a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]]).astype(np.float64)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    perm = rng.permutation(2 * n)
    x, y = x[perm], y[perm]
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    split = int(0.7 * len(y))
    xt, yt = torch.as_tensor(x[:split]), torch.as_tensor(y[:split])
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b0], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b0, yt) + 1e-4 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        s = (torch.as_tensor(x[split:]) @ w + b0).numpy()
    return binary_auroc(y[split:], s)


KL_SMOOTHING = 1.0  # pseudo-count per bucket of the report's n-gram distributions


def ngram_kl_reduction(target_ids: Any, pool_ids: Any, selected_ids: Any, buckets: int,
                       smoothing: float = KL_SMOOTHING) -> dict[str, float]:
    """DSIR's KL reduction: KL(target ‖ pool) − KL(target ‖ selected) over smoothed hashed n-gram
    bucket distributions (nats; positive = the selection moved the bag of n-grams toward the target).
    Ids in any shape ``rsft.density.ngram.as_flat`` accepts."""
    from rsft.density.ngram import as_flat, bucket_log_probs, kl

    lp = {k: bucket_log_probs(as_flat(v)[0], buckets, smoothing) for k, v in
          (("t", target_ids), ("p", pool_ids), ("s", selected_ids))}
    before, after = kl(lp["t"], lp["p"]), kl(lp["t"], lp["s"])
    return {"kl_target_pool": before, "kl_target_selected": after, "kl_reduction": before - after}


def _group_counts(df: pl.DataFrame, col: str, name: str, given: pl.DataFrame | None = None,
                  null: str | None = None) -> pl.DataFrame | None:
    """(``col`` as text, ``name``): rows per group of ``df`` — or ``given``, the whole selection's
    counts when ``df`` is a sample of it; None when ``df`` has no rows or no such column. ``null``
    names the group of missing values."""
    key = pl.col(col).cast(pl.String)
    key = key.fill_null(null) if null is not None else key
    if given is not None:
        return given.select(key, pl.col(name))
    return df.group_by(key).agg(pl.len().alias(name)) if col in df.columns and df.height else None


def group_table(
    pool: pl.DataFrame, selected: pl.DataFrame, target: pl.DataFrame, col: str, log_w_pool: np.ndarray,
    log_m: float | None = None, pool_rows: int | None = None, selected_counts: pl.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Per group: shares in pool sample / selected / target, lift, and acceptance when computable.

    ``acceptance`` = selected rows / (pool_rows × pool-sample share) estimates the group's realised
    acceptance; ``expected_acceptance`` = mean min(1, w/M) over the group's pool-sample rows (pass β·log w
    when the sampler tempers). ``selected_counts`` (``col``, ``selected_rows``): the whole
    selection's rows per group, when ``selected`` is a sample of it.
    """
    p = pool.select(pl.col(col).cast(pl.String)).with_columns(
        _lw=pl.Series(np.asarray(log_w_pool, np.float64)))
    aggs = [pl.len().alias("pool_sample_rows")]
    if log_m is not None:
        aggs.append((pl.col("_lw") - log_m).clip(upper_bound=0.0).exp().fill_nan(0.0).mean().alias("expected_acceptance"))
    tab = p.group_by(col).agg(aggs)
    for name, df, given in (("selected_rows", selected, selected_counts), ("target_rows", target, None)):
        counts = _group_counts(df, col, name, given)
        tab = (tab.join(counts, on=col, how="full", coalesce=True) if counts is not None
               else tab.with_columns(pl.lit(0, dtype=pl.UInt32).alias(name)))
    n_s = int(selected_counts["selected_rows"].sum()) if selected_counts is not None else selected.height
    n_p, n_t = pool.height, target.height
    tab = tab.fill_null(0).with_columns(
        pool_share=pl.col("pool_sample_rows") / max(n_p, 1),
        selected_share=pl.col("selected_rows") / max(n_s, 1),
        target_share=pl.col("target_rows") / max(n_t, 1),
    ).with_columns(lift=pl.when(pl.col("pool_share") > 0).then(pl.col("selected_share") / pl.col("pool_share")))
    if pool_rows:
        tab = tab.with_columns(acceptance=pl.when(pl.col("pool_share") > 0)
                               .then(pl.col("selected_rows") / (pool_rows * pl.col("pool_share"))))
    return tab.sort("pool_sample_rows", descending=True).head(MAX_GROUPS).sort(col).to_dicts()


# --------------------------------------------------------------------------------------
# coverage of the target by the pool
# --------------------------------------------------------------------------------------
def nearest_distances(query: np.ndarray, ref: np.ndarray, exclude: np.ndarray | None = None, block: int = 512) -> np.ndarray:
    """Euclidean distance from each ``query`` row to its nearest ``ref`` row (torch.cdist in blocks
    of ``block`` query rows, float64). ``exclude[i]`` = the index of a ``ref`` row that query row
    ``i`` must not match (itself, for leave-one-out distances within one set). +inf when ``ref`` is empty."""
    q = torch.as_tensor(np.asarray(query, np.float64))
    r = torch.as_tensor(np.asarray(ref, np.float64))
    out = np.full(len(q), np.inf)
    if len(r) == 0 or len(q) == 0:
        return out
    for i in range(0, len(q), block):
        d = torch.cdist(q[i:i + block], r)
        if exclude is not None:
            rows = torch.arange(d.shape[0])
            d[rows, torch.as_tensor(exclude[i:i + block])] = float("inf")
        out[i:i + block] = d.min(1).values.numpy()
    return out


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust centre and scale per column: median and IQR/1.349; the sd where the IQR is 0 (a
    rare one-hot level), 1 where that is 0 too."""
    med = np.median(x, 0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    s = (q75 - q25) / 1.349
    s = np.where(s > 0, s, x.std(0))
    return med, np.where(s > 0, s, 1.0)


def coverage(xt: np.ndarray, xp: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Which target rows have a comparable pool row? Nearest-neighbour distances, scale-free.

    Definition: standardise every feature by the pool sample's median and IQR/1.349 (units drop
    out; a few outliers do not stretch the scale). For each target row ``t``, ``d(t)`` = distance
    to its nearest pool-sample row. The yardstick is the same quantity for the pool itself:
    ``d_ref(p)`` = distance from a pool row to its nearest *other* pool row, over
    ``COVERAGE_REF_ROWS`` random pool rows — a distance to the nearest of the same pool rows, so
    it shrinks with the pool's size and density exactly as ``d(t)`` does. A target row is
    **uncovered** ("no comparable pool rows") when ``d(t) > quantile(d_ref, COVERAGE_QUANTILE)``:
    it is farther from the pool than 99 % of pool rows are from their nearest neighbour. A target
    drawn from the pool's own distribution therefore has ≈ 1 % uncovered rows; a target cluster
    the pool lacks is uncovered as a whole. What it cannot see: a difference that is small
    against the pool's spread but large against the target's (a machine's calibration offset of
    a fraction of the pool's IQR); the per-group shares (:func:`group_coverage`) catch that case.

    Why not log w at the target rows: the report has no scorer, and a density ratio fitted to
    cover the target says little about where the pool is empty (a Gaussian q extrapolates
    smoothly into regions no pool row visits). Why not target-to-target distances: the target
    sample is small, its nearest-neighbour distances follow its own size, not the pool's.

    Cost: at most ``COVERAGE_MAX_TARGET_ROWS`` (+ ``COVERAGE_REF_ROWS``) × ``COVERAGE_MAX_POOL_ROWS``
    distances (uniform subsamples beyond, drawn with ``seed``). Returns ``uncovered`` [len(xt)]
    (bool; ``checked`` says which target rows were measured), ``distance``, ``threshold`` and
    summary figures. Rows must be finite.
    """
    rng = np.random.default_rng(seed)
    xt, xp = np.asarray(xt, np.float64), np.asarray(xp, np.float64)
    if len(xp) > COVERAGE_MAX_POOL_ROWS:
        xp = xp[rng.choice(len(xp), COVERAGE_MAX_POOL_ROWS, replace=False)]
    checked = np.zeros(len(xt), bool)
    checked[rng.choice(len(xt), COVERAGE_MAX_TARGET_ROWS, replace=False) if len(xt) > COVERAGE_MAX_TARGET_ROWS else slice(None)] = True
    dist = np.full(len(xt), np.nan)
    if len(xp) < 2 or not checked.any():
        return {"uncovered": np.zeros(len(xt), bool), "checked": np.zeros(len(xt), bool), "distance": dist,
                "threshold": float("nan"), "uncovered_share": float("nan"), "target_rows_checked": 0,
                "pool_rows_used": len(xp)}
    med, s = _scale(xp)
    zp, zt = (xp - med) / s, (xt[checked] - med) / s
    ref = rng.choice(len(zp), min(COVERAGE_REF_ROWS, len(zp)), replace=False)
    d_ref = nearest_distances(zp[ref], zp, exclude=ref)
    thr = float(np.quantile(d_ref, COVERAGE_QUANTILE))
    dist[checked] = nearest_distances(zt, zp)
    uncovered = checked & (np.nan_to_num(dist, nan=0.0) > thr)
    return {
        "uncovered": uncovered,
        "checked": checked,
        "distance": dist,
        "threshold": thr,
        "uncovered_share": float(uncovered.sum() / checked.sum()),
        "target_rows_checked": int(checked.sum()),
        "pool_rows_used": len(xp),
        "pool_nn_distance_median": float(np.median(d_ref)),
        "target_nn_distance_median": float(np.nanmedian(dist)),
    }


def group_coverage(
    target: pl.DataFrame, pool: pl.DataFrame, selected: pl.DataFrame, col: str, uncovered: np.ndarray | None = None,
    checked: np.ndarray | None = None, selected_counts: pl.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Per group of the target sample: its share of the target, the pool sample and the selected
    rows, its uncovered share (of its checked target rows; None without ``uncovered``), and
    ``flagged``: target share ≥ ``GROUP_MIN_TARGET_SHARE`` but selected share <
    ``GROUP_MIN_SELECTED_RATIO`` × target share. Every target group is listed, flagged first, then
    by target share."""
    t = target.select(pl.col(col).cast(pl.String).fill_null("(null)"))
    if uncovered is not None:
        ok = np.ones(target.height, bool) if checked is None else np.asarray(checked, bool)
        t = t.with_columns(_unc=pl.Series(np.where(ok, np.asarray(uncovered, np.float64), np.nan)).fill_nan(None))
    else:
        t = t.with_columns(_unc=pl.lit(None, dtype=pl.Float64))
    tab = t.group_by(col).agg(target_rows=pl.len(), uncovered_share=pl.col("_unc").mean())
    for name, df, given in (("pool_sample_rows", pool, None), ("selected_rows", selected, selected_counts)):
        counts = _group_counts(df, col, name, given, null="(null)")
        tab = (tab.join(counts, on=col, how="left").with_columns(pl.col(name).fill_null(0)) if counts is not None
               # no rows: 0 of every group; no such column: unknown (null)
               else tab.with_columns(pl.lit(0 if df.height == 0 else None, dtype=pl.UInt32).alias(name)))
    n_s = int(selected_counts["selected_rows"].sum()) if selected_counts is not None else selected.height
    tab = tab.with_columns(
        target_share=pl.col("target_rows") / max(target.height, 1),
        pool_share=pl.col("pool_sample_rows") / max(pool.height, 1),
        selected_share=pl.col("selected_rows") / max(n_s, 1),
    ).with_columns(flagged=(pl.col("target_share") >= GROUP_MIN_TARGET_SHARE)
                   & (pl.col("selected_share") < GROUP_MIN_SELECTED_RATIO * pl.col("target_share")))
    cols = [col, "target_rows", "target_share", "pool_share", "selected_share", "uncovered_share", "flagged"]
    return tab.sort(["flagged", "target_share", col], descending=[True, True, False]).select(cols).to_dicts()


def features_worse(per_feature: dict[str, dict[str, float]], n_selected: int, n_target: int) -> list[dict[str, Any]]:
    """Features on which the selected rows match the target worse than the raw pool sample does:
    KS(selected, target) > KS(pool, target) + ``KS_CRITICAL``·sqrt(1/n_selected + 1/n_target), a
    gap larger than the two-sample KS test's 5 % critical value (sampling noise at these sizes).
    Sorted by the gap, largest first."""
    if n_selected == 0 or n_target == 0:
        return []
    margin = KS_CRITICAL * math.sqrt(1 / n_selected + 1 / n_target)
    out = []
    for name, v in per_feature.items():
        kp, ks = v["ks_pool_vs_target"], v["ks_selected_vs_target"]
        if kp == kp and ks == ks and ks > kp + margin:
            out.append({"feature": name, "ks_pool_vs_target": kp, "ks_selected_vs_target": ks,
                        "smd_pool_vs_target": v["smd_pool_vs_target"], "smd_selected_vs_target": v["smd_selected_vs_target"]})
    return sorted(out, key=lambda r: r["ks_pool_vs_target"] - r["ks_selected_vs_target"])


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if 0 < x < 0.01 else f"{100 * x:.0f} %"


ESS_WARN_ROWS = 30  # fewer effective pool-sample rows than this: a handful of rows carry the weights


def weight_warnings(report: dict[str, Any]) -> list[str]:
    """Degenerate weights in words: when the pool sample's effective sample size is below
    ``ESS_WARN_ROWS``, almost all of w sits on a few rows (an extreme density ratio, e.g. a
    Gaussian scorer on a heavy-tailed feature), and the selection follows those rows' tail. Not for
    text: a document's log w sums over its n-grams (thousands in a long one), so the ESS of real
    documents is ~1 whatever the selection's quality — the n-gram KL to the target says that."""
    n, e = report.get("pool_sample_rows") or 0, report.get("ess")
    if "text" in report or not isinstance(e, (int, float)) or not n or e >= min(ESS_WARN_ROWS, n / 10):
        return []
    return [f"the weights are degenerate: the pool sample's {n:,} rows have an effective sample size of {e:.1f} "
            "(a few rows carry almost all of w: the density ratio is extreme, e.g. on a heavy-tailed feature, or "
            "the target lies outside the pool); a smaller sampling.temper (β < 1) flattens the weights, a "
            "gmm or classifier scorer follows the data's shape more closely"]


def coverage_warnings(cov: dict[str, Any], selected_rows: int) -> list[str]:
    """The report's findings in words: one string per problem (empty when there is none)."""
    out = []
    if selected_rows == 0:
        out.append("no pool rows were selected")
    share = cov.get("uncovered_share")
    if isinstance(share, float) and share == share and share >= UNCOVERED_WARN_SHARE:
        out.append(f"{_pct(share)} of target rows have no comparable pool rows (nearest pool row farther than "
                   f"{cov['threshold']:.2f} in pool-standardised units, while {_pct(COVERAGE_QUANTILE)} of pool rows "
                   f"have another pool row within that distance)")
    col = cov.get("group_column")
    for g in cov.get("by_group", []) if selected_rows else []:
        if not g["flagged"]:
            continue
        msg = f"{col} {g[col]} is {_pct(g['target_share'])} of the target sample but {_pct(g['selected_share'])} of the selected rows"
        if g["pool_share"] == 0:
            msg += ": the pool sample has no rows of it"
        elif g["pool_share"] is not None:
            msg += f", though {_pct(g['pool_share'])} of the pool sample: few of its pool readings are like its target readings"
        if g["uncovered_share"] is not None:
            msg += f" ({_pct(g['uncovered_share'])} of its target rows have no comparable pool rows)"
        out.append(msg)
    worse = cov.get("features_worse") or []
    if worse:
        names = ", ".join(f"{w['feature']} (KS {w['ks_pool_vs_target']:.2f} → {w['ks_selected_vs_target']:.2f})" for w in worse)
        out.append(f"the selected rows match the target worse than the raw pool on {len(worse)} "
                   f"feature{'s' if len(worse) > 1 else ''}: {names}")
    return out


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------
def selection_report(
    target_df: pl.DataFrame,
    pool_sample_df: pl.DataFrame,
    selected_df: pl.DataFrame,
    feature_cfg: FeaturesConfig,
    log_w_pool: np.ndarray,
    out_dir: str | Path,
    *,
    log_m: float | None = None,
    pool_rows: int | None = None,
    seed: int = 0,
    temper: float = 1.0,
    units: dict[str, str] | None = None,
    selected_rows: int | None = None,
    selected_counts: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Diagnostics of one selection; writes ``out_dir/report.json`` and PNG plots; returns the dict.

    ``log_w_pool`` [pool_sample_df rows] are the scorer's log w of the pool sample; ``log_m`` and
    ``pool_rows`` (full pool size) are optional and add acceptance figures per group; ``temper``
    is the sampler's β (acceptance min(1, w^β / M)); ``units`` (column → unit) labels the plots.
    When ``selected_df`` is a sample of a larger selection (the statistics then cost what the
    sample does): ``selected_rows``, the selection's row count, and ``selected_counts``, its rows
    per group (group column, ``selected_rows``), keep the counts, shares and acceptance exact.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_w_pool = np.asarray(log_w_pool, dtype=np.float64)
    if len(log_w_pool) != pool_sample_df.height:
        raise ValueError(f"log_w_pool has {len(log_w_pool)} values for {pool_sample_df.height} pool-sample rows")
    names = feature_names(feature_cfg)
    report: dict[str, Any] = {
        "target_rows": target_df.height,
        "pool_sample_rows": pool_sample_df.height,
        "selected_rows": selected_df.height if selected_rows is None else selected_rows,
        "ess": ess(log_w_pool),
        "ess_share": ess(log_w_pool) / max(len(log_w_pool), 1),
        "log_w_quantiles": _quantiles(log_w_pool),
    }
    if selected_rows is not None and selected_rows != selected_df.height:
        report["selected_rows_in_statistics"] = selected_df.height  # a seeded sample of the selection
    xt = xp = xs = uncovered = checked = None
    if names:
        xt, xp, xs, uncovered, checked, cov = _tabular_stats(report, target_df, pool_sample_df, selected_df,
                                                             feature_cfg, names, seed)
    else:
        if all(feature_cfg.text_column in d.columns for d in (target_df, pool_sample_df, selected_df)):
            report["text"] = _text_stats(target_df, pool_sample_df, selected_df, feature_cfg, log_w_pool, seed)
        cov = {"uncovered_share": "n/a", "why": "no numeric features (text): no distance between rows is computed"}
    col = feature_cfg.group
    if col and col in pool_sample_df.columns:
        report["group_column"] = col
        report["by_group"] = group_table(pool_sample_df, selected_df, target_df, col, temper * log_w_pool, log_m, pool_rows,
                                         selected_counts)
    if col and col in target_df.columns and (col in selected_df.columns or selected_df.height == 0):
        cov["group_column"] = col
        cov["by_group"] = group_coverage(target_df, pool_sample_df, selected_df, col, uncovered, checked, selected_counts)
    report["coverage"] = cov
    report["warnings"] = coverage_warnings(cov, report["selected_rows"]) + weight_warnings(report) + text_warnings(report)
    try:
        report["plots"] = _plots(out, names, xt, xp, xs, log_w_pool, selected_df, log_m, temper, units, cov)
    except Exception as e:  # a plot must never fail a nightly run
        log.warning("selection report plots failed: %s", e)
        report["plots"] = []
    report = _json_safe(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    return report


def _tabular_stats(report: dict[str, Any], target_df: pl.DataFrame, pool_sample_df: pl.DataFrame,
                   selected_df: pl.DataFrame, feature_cfg: FeaturesConfig, names: list[str], seed: int):
    """Per-feature KS / SMD (pool vs target, selected vs target), their means and the two-sample
    AUCs into ``report``; returns the finite feature matrices (target, pool, selected), the
    per-target-row uncovered / checked masks and the coverage section."""
    xt, xp, xs = (to_matrix(d, feature_cfg).astype(np.float64) for d in (target_df, pool_sample_df, selected_df))
    t_ok = np.isfinite(xt).all(1)  # target rows with every feature finite (coverage per target row)
    xt, xp, xs = (x[np.isfinite(x).all(1)] for x in (xt, xp, xs))
    per = {}
    for j, n in enumerate(names):
        per[n] = {
            "ks_pool_vs_target": ks_stat(xp[:, j], xt[:, j]),
            "ks_selected_vs_target": ks_stat(xs[:, j], xt[:, j]),
            "smd_pool_vs_target": smd(xp[:, j], xt[:, j]),
            "smd_selected_vs_target": smd(xs[:, j], xt[:, j]),
        }
    report["per_feature"] = per
    for stat in ("ks", "smd"):
        for which in ("pool", "selected"):
            vals = [abs(v[f"{stat}_{which}_vs_target"]) for v in per.values()]
            report[f"mean_abs_{stat}_{which}_vs_target"] = _nanmean(vals)
    report["auc_pool_vs_target"] = two_sample_auc(xp, xt, seed)
    report["auc_selected_vs_target"] = two_sample_auc(xs, xt, seed)
    cov = coverage(xt, xp, seed)
    uncovered, checked = np.zeros(target_df.height, bool), np.zeros(target_df.height, bool)
    uncovered[t_ok], checked[t_ok] = cov.pop("uncovered"), cov.pop("checked")
    cov.pop("distance")
    cov = {"method": "nearest pool-sample row, standardised features", "quantile": COVERAGE_QUANTILE, **cov,
           "features_worse": features_worse(per, len(xs), len(xt))}
    return xt, xp, xs, uncovered, checked, cov


def _text_stats(target_df: pl.DataFrame, pool_sample_df: pl.DataFrame, selected_df: pl.DataFrame,
                feature_cfg: FeaturesConfig, log_w_pool: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Hashed n-gram KL of pool and selection to the target (text pipelines), and the fair
    baseline: ``kl_target_random``, seeded random pool-sample subsets holding as many n-grams as
    the selection (``selected_ngrams``). The smoothed KL estimate reads farther from the target the
    fewer n-grams a set holds, whatever it holds (real documents, a man-page target: a random pool
    subset of 5 000 n-grams reads 0.79 nats, of 1 M 0.50; the target's own n-grams resampled read
    0.38 at 5 000, 0.01 at 200 000 — benchmarks/text_length_bias.py --kl-by-size), so a baseline of the same
    document count judged a selection of short documents against a set with several times its
    n-grams (trial 8; a changelog target on real documents: 4×). With the pool sample's ``log_w_pool``: ``log_w_length_spearman``, the rank
    correlation of log w with a document's n-gram count."""
    from rsft.density.ngram import as_flat, bucket_log_probs, kl
    from rsft.features import hashed_ngram_ids

    def ids(df):
        expr = hashed_ngram_ids(pl.col(feature_cfg.text_column), feature_cfg.text_buckets, feature_cfg.text_ngrams)
        return df.select(expr.alias("ids"))["ids"]

    target_ids, pool_ids, selected_ids = ids(target_df), ids(pool_sample_df), ids(selected_df)
    out = ngram_kl_reduction(target_ids, pool_ids, selected_ids, feature_cfg.text_buckets)
    lengths = pool_ids.list.len().fill_null(0).to_numpy().astype(np.int64)
    n_sel = int(selected_ids.list.len().fill_null(0).sum())
    out["selected_ngrams"] = n_sel
    if 0 < n_sel < lengths.sum() and selected_df.height < pool_sample_df.height:  # the mean of a few seeded draws
        rng, buckets = np.random.default_rng(seed), feature_cfg.text_buckets
        lp_t = bucket_log_probs(as_flat(target_ids)[0], buckets, KL_SMOOTHING)  # as ngram_kl_reduction's, once
        draws = [kl(lp_t, bucket_log_probs(as_flat(pool_ids.gather(pl.Series(ngram_matched_subset(rng, lengths, n_sel))))[0],
                                           buckets, KL_SMOOTHING)) for _ in range(RANDOM_DRAWS)]
        out["kl_target_random"] = float(np.mean(draws))
    if log_w_pool is not None and len(log_w_pool) > 2:
        ok = np.isfinite(log_w_pool)
        if ok.sum() > 2 and np.ptp(lengths[ok]) > 0 and np.ptp(log_w_pool[ok]) > 0:
            ranks = [pl.Series(v).rank("average").to_numpy() for v in (log_w_pool[ok], lengths[ok])]  # ties: average
            out["log_w_length_spearman"] = float(np.corrcoef(*ranks)[0, 1])
    return out


def ngram_matched_subset(rng: np.random.Generator, lengths: np.ndarray, n_ngrams: int) -> np.ndarray:
    """Row indices of a random subset holding ~``n_ngrams`` n-grams (``lengths``: n-grams per row):
    the shortest prefix of a random permutation reaching it, so its KL estimate is as noisy as
    that of a selection of ``n_ngrams`` n-grams."""
    perm = rng.permutation(len(lengths))
    return perm[: min(len(perm), int(np.searchsorted(np.cumsum(lengths[perm]), n_ngrams)) + 1)]


LENGTH_RHO_WARN = 0.5  # |Spearman ρ| of log w with document length worth naming
RANDOM_DRAWS = 3  # random pool subsets averaged for the text selection's KL baseline
RANDOM_MARGIN = 1.05  # the selection's KL above this × the random subsets' is warned of


def text_warnings(report: dict[str, Any]) -> list[str]:
    """A text selection no closer to the target than a random pool subset with as many n-grams
    (trial 8: real documents, a target of 193, log w ranked by length at ρ = −0.94; its baseline
    then was a subset of as many documents, several times the n-grams of short ones, which the KL estimate
    favours whatever they hold — see :func:`_text_stats`)."""
    t = report.get("text") or {}
    sel, rnd = t.get("kl_target_selected"), t.get("kl_target_random")
    if not isinstance(sel, float) or not isinstance(rnd, float) or sel <= RANDOM_MARGIN * rnd:
        return []
    rho = t.get("log_w_length_spearman")
    why = (f"; log w follows document length (Spearman ρ {rho:+.2f} on the pool sample: "
           f"{'short' if rho < 0 else 'long'} documents rank first; scorer.ngram_score: per_ngram scores a "
           "document's mean n-gram log ratio instead of the sum)" if isinstance(rho, float) and abs(rho) >= LENGTH_RHO_WARN else "")
    return [f"the selected documents' n-grams are no closer to the target's than a random pool subset with as many n-grams "
            f"(KL {sel:.3g} vs {rnd:.3g} nats){why}: the weights do not tell target documents apart here — check the "
            "target sample (size, duplicates) against the pool; sampling.temper below 1 moves the selection toward "
            "a random one"]


def _quantiles(lw: np.ndarray) -> dict[str, float]:
    lw = lw[np.isfinite(lw)]
    if len(lw) == 0:
        return {}
    qs = (0.0, 0.01, 0.5, 0.99, 0.999, 1.0)
    return {f"q{q:g}": float(v) for q, v in zip(qs, np.quantile(lw, qs))}


def _nanmean(vals: list[float]) -> float:
    v = [x for x in vals if x == x]
    return float(np.mean(v)) if v else float("nan")


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


# --------------------------------------------------------------------------------------
# plots: one file each, read at a glance (titles say what is compared, units on the axes)
# --------------------------------------------------------------------------------------
LOG_W_SPAN = 30.0  # the log-w histogram shows [log M − 30, max]: below, a row's acceptance is < e^-30
MARGINAL_COLS = 4
COLORS = {"pool": "#8c8c8c", "target": "#c44e52", "selected": "#4c72b0"}


def _plots(out: Path, names, xt, xp, xs, log_w, selected_df: pl.DataFrame, log_m: float | None,
           temper: float = 1.0, units: dict[str, str] | None = None, coverage: dict[str, Any] | None = None) -> list[str]:
    written = []
    sl = (selected_df["log_w"].cast(pl.Float64).to_numpy() if "log_w" in selected_df.columns and selected_df.height
          else np.array([]))
    plot_log_w(log_w, sl, None if log_m is None else log_m / temper, out / "log_w_hist.png")
    written.append("log_w_hist.png")
    if names and xt is not None:
        plot_marginals(names, xp, xt, xs, out / "marginals.png", units)
        written.append("marginals.png")
    if coverage and coverage.get("by_group"):
        plot_group_coverage(coverage["by_group"], coverage["group_column"], out / "coverage_by_group.png")
        written.append("coverage_by_group.png")
    return written


def plot_log_w(log_w_pool: np.ndarray, log_w_selected: np.ndarray, threshold: float | None, path: Path) -> dict[str, float]:
    """Histogram of log w over the informative range ``[threshold − LOG_W_SPAN, max]`` (the
    threshold = log M / β: rows right of it are always accepted) — or, with no threshold (a budget
    selection: the top k of log w + Gumbel keys), from the lowest selected row's log w, however far
    (real documents' log w spans thousands of nats); rows left of the range are counted in a note,
    not drawn. Heights are each set's share of its rows, so the pool sample and the selected rows
    compare. Returns the range and the share of pool rows left of it."""
    from matplotlib.figure import Figure

    lw = np.asarray(log_w_pool, np.float64)
    lw = lw[np.isfinite(lw)]
    sl = np.asarray(log_w_selected, np.float64)
    sl = sl[np.isfinite(sl)]
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    info = {"lo": float("nan"), "hi": float("nan"), "pool_share_below": float("nan")}
    if len(lw):
        hi = float(max(lw.max(), sl.max() if len(sl) else -np.inf, threshold if threshold is not None else -np.inf))
        ref = threshold if threshold is not None else float(np.quantile(lw, 0.999))
        lo = max(float(lw.min()), min(ref - LOG_W_SPAN, float(sl.min()) if threshold is None and len(sl) else np.inf))
        hi = hi if hi > lo else lo + 1.0
        bins = np.linspace(lo, hi + 1e-9, 61)
        below = float((lw < lo).mean())
        _hist(ax, lw[lw >= lo], bins, weight=1 / len(lw), fill=True, color=COLORS["pool"], alpha=0.55,
              label=f"pool sample ({len(lw):,} rows)")
        if len(sl):
            _hist(ax, sl[sl >= lo], bins, weight=1 / len(sl), linewidth=2, color=COLORS["selected"],
                  label=f"selected ({len(sl):,} rows)")
        note = (f"{_pct(below)} of pool-sample rows have log w < {lo:.1f} (not drawn"
                + (f": accepted with probability < e^-{LOG_W_SPAN:.0f})" if threshold is not None else ")"))
        ax.text(0.01, 0.97, note, transform=ax.transAxes, va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        info = {"lo": lo, "hi": hi, "pool_share_below": below}
        ax.set_xlim(lo, hi)
        ax.set_yscale("log")  # the pool's few rows near M and the selected rows' peak on one axis
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1.2,
                   label=f"log M = {threshold:.2f}: right of it always accepted")
    ax.set_xlabel("log w = log p_target(x) − log q_pool(x)   (higher = more like the target)")
    ax.set_ylabel("share of the set's rows per bin (log scale)")
    ax.set_title("Density-ratio scores: acceptance min(1, w/M) rises to 1 at the dashed line" if threshold is not None
                 else "Density-ratio scores: the budget takes the top k of log w (+ Gumbel noise)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.88))
    fig.savefig(path, dpi=110)
    return info


def _hist(ax, x: np.ndarray, bins: np.ndarray, weight: float | None = None, fill: bool = False, **style) -> None:
    """A histogram as one outline or filled polygon (``stairs``), not a patch per bin as
    ``ax.hist``'s bars: the report's ~600 bar patches were most of its drawing time. Heights: each
    row's ``weight`` summed per bin, or a density (each set normalised to its own rows)."""
    x = np.asarray(x, np.float64)
    if weight is None:
        h, _ = np.histogram(x, bins=bins, density=True) if len(x) else (np.zeros(len(bins) - 1), None)
    else:
        h = np.histogram(x, bins=bins)[0] * weight
    ax.stairs(np.nan_to_num(h), bins, fill=fill, **style)


def _unit(name: str, units: dict[str, str] | None) -> str:
    """A feature's unit: its own, or its base reading's for a rolling aggregate (s01_mean5 → s01's);
    '' for a one-hot level or an unknown column."""
    if not units:
        return ""
    if name in units:
        return units[name]
    base = name.rsplit("_", 1)[0]
    return units.get(base, "") if "=" not in name else ""


def plot_marginals(names: list[str], xp: np.ndarray, xt: np.ndarray, xs: np.ndarray, path: Path,
                   units: dict[str, str] | None = None) -> list[str]:
    """Every feature's distribution in a grid: pool sample (grey), target (red outline), selected
    (blue outline), each normalised to its own rows, over the pool's and target's 0.5–99.5 %
    range; the panel title gives KS(selected, target) beside KS(pool, target)."""
    from matplotlib.figure import Figure

    k = len(names)
    cols = min(MARGINAL_COLS if k <= 24 else 6, k)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    titles = []
    for j, ax in enumerate(axes):
        if j >= k:
            ax.axis("off")
            continue
        both = np.concatenate([xp[:, j], xt[:, j]])
        lo, hi = np.percentile(both, [0.5, 99.5]) if len(both) else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
        _hist(ax, xp[:, j], bins, fill=True, color=COLORS["pool"], alpha=0.45, label="pool sample")
        _hist(ax, xt[:, j], bins, linewidth=1.8, color=COLORS["target"], label="target")
        if len(xs):
            _hist(ax, xs[:, j], bins, linewidth=1.8, color=COLORS["selected"], label="selected")
        unit = _unit(names[j], units)
        ks = (f"KS to target: pool {ks_stat(xp[:, j], xt[:, j]):.2f}"
              + (f", selected {ks_stat(xs[:, j], xt[:, j]):.2f}" if len(xs) else ""))
        titles.append(f"{names[j]}" + (f" [{unit}]" if unit else ""))
        ax.set_title(f"{titles[-1]}\n{ks}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=3, fontsize=9)
    fig.suptitle(f"All {k} model inputs: pool sample vs target vs selected rows (each normalised)", fontsize=11,
                 x=0.01, ha="left")
    fig.savefig(path, dpi=100)
    return titles


def plot_group_coverage(by_group: list[dict[str, Any]], col: str, path: Path) -> None:
    """Per group (e.g. machine): its share of the target sample beside its share of the selected
    rows (and of the pool sample); groups the selection nearly misses are flagged in red, with the
    share of their target rows that have no comparable pool rows."""
    from matplotlib.figure import Figure

    groups = sorted(by_group, key=lambda g: str(g[col]))
    n = len(groups)
    fig = Figure(figsize=(max(6.5, 0.75 * n + 2.5), 4.2), layout="constrained")
    ax = fig.subplots()
    idx = np.arange(n)
    share = lambda key: [0.0 if g.get(key) is None else g[key] for g in groups]  # noqa: E731
    ax.bar(idx - 0.27, share("target_share"), 0.27, color=COLORS["target"], label="share of the target sample")
    ax.bar(idx, share("selected_share"), 0.27, color=COLORS["selected"], label="share of the selected rows")
    ax.bar(idx + 0.27, share("pool_share"), 0.27, color=COLORS["pool"], alpha=0.6, label="share of the pool sample")
    top = max([*share("target_share"), *share("selected_share"), *share("pool_share"), 0.01])
    ax.set_ylim(0, top * 1.15)
    labels = [str(g[col]) + ("" if g.get("uncovered_share") is None else f"\n{_pct(g['uncovered_share'])}")
              for g in groups]
    ax.set_xticks(idx, labels, fontsize=8)
    for lab, g in zip(ax.get_xticklabels(), groups):
        if g.get("flagged"):
            lab.set_color("#b00000")
            lab.set_fontweight("bold")
    # ticks at whole percents where they fit (a tick at 0.175 labelled "18 %" misread a bar)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(lambda v, _: f"{round(100 * v, 6):g} %")  # 17.5 % stays 17.5 %
    ax.set_xlabel(f"{col}" + ("   (% under each: its target rows with no comparable pool row)"
                              if any(g.get("uncovered_share") is not None for g in groups) else ""), fontsize=9)
    ax.set_ylabel("share of rows")
    missed = [str(g[col]) for g in groups if g.get("flagged")]
    ax.set_title(f"Target share vs selected share per {col}\n"
                 + (f"missed by the selection (red): {', '.join(missed)}" if missed else "no group missed"),
                 fontsize=10, color="#b00000" if missed else "black")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.12), ncols=3, frameon=False)
    fig.savefig(path, dpi=110)


def plot_training_curves(history: list[dict[str, Any]], path: str | Path, title: str = "Fine-tune",
                         best_step: int | None = None, planned_steps: int | None = None) -> str:
    """Training and validation loss per evaluation period over optimizer steps (the learning rate
    on a second axis), the best period's step marked: the weights kept are that period's."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["train_loss"] for r in history], marker=".", color=COLORS["selected"], label="training loss")
    ax.plot(steps, [r["val_loss"] for r in history], marker=".", color=COLORS["target"], label="validation loss")
    if best_step:
        ax.axvline(best_step, color="k", linestyle="--", linewidth=1, label=f"best validation (step {best_step:,}): weights kept")
    ax.set_xlabel("optimizer steps" + (f" (of {planned_steps:,} planned)" if planned_steps else ""))
    ax.set_ylabel("loss (weighted mean per row)")
    losses = [v for r in history for v in (r["train_loss"], r["val_loss"]) if v is not None and math.isfinite(v)]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["lr"] for r in history], color="#999999", linewidth=1, linestyle=":", label="learning rate")
    ax2.set_ylabel("learning rate", color="#777777", fontsize=8)
    ax2.tick_params(labelsize=7, colors="#777777")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return str(path)
