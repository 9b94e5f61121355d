"""A search report rendered for people: the candidate table (printed by ``rsft adapt``, logged
as an artifact, shown by ``rsft history``) and the bar chart of every candidate's CV RMSE."""

from __future__ import annotations

from typing import Any

import numpy as np

from rsft.adapt.candidates import FREE


def _cv_fits(r: dict[str, Any], report: dict[str, Any]) -> str:
    """How a candidate's CV figure was obtained — folds × the fits' budget, "≤N steps" (and
    "≤E ep" when passes are bounded too; short fits are not comparable with full ones), "out"
    when rung 0 eliminated it — or why it was skipped."""
    n = len(r["fold_losses"])
    if not n:
        return r["skipped"] or ""
    if r["strategy"] in FREE:  # nothing trained
        return f"{n} fold{'s' if n != 1 else ''}"
    rung = "full" if r.get("short_losses") else "cv"
    steps, epochs = report.get(f"{rung}_steps"), report.get(f"{rung}_epochs")
    budget = ", ".join([*([f"≤{steps:,} steps"] if steps else []), *([f"≤{epochs} ep"] if epochs else [])])
    return (f"{n}×{budget}" if budget else f"{n} fold{'s' if n != 1 else ''}") + (
        ", out" if r.get("eliminated") else "") + (", budget" if r["skipped"] else "")


def candidate_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for printing / artifacts: name (→ = chosen), CV loss mean ± SE, how it was obtained
    (folds × steps budget; "out" = eliminated in rung 0), pool rows, seconds, hold-out."""
    rows = []
    for r in report["candidates"]:
        rows.append(
            {
                "candidate": ("→ " if r["name"] == report["chosen"] else "") + r["name"],
                "cv_rmse": ("skipped" if not r["fold_losses"] else f"{r['cv_loss_mean']:#.4g}"
                            + (f"±{r['cv_loss_se']:.2g}" if len(r["fold_losses"]) > 1 else "")),
                "cv_fits": _cv_fits(r, report),
                "pool_rows": int(r["pool_rows_mean"]),
                "seconds": round(r["seconds"], 3),
                **({"holdout_rmse": f"{r['holdout_rmse']:#.4g}"} if "holdout_rmse" in r else {}),
            }
        )
    return rows


def plot_candidates(report: dict[str, Any], path: str) -> str:
    """Bar chart of every candidate's CV RMSE (mean ± SE; hold-out RMSE beside it when present),
    the chosen one highlighted, eliminated ones hatched. Returns ``path`` (PNG)."""
    from matplotlib.figure import Figure

    rows = [r for r in report["candidates"] if r["fold_losses"]]
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    idx = np.arange(len(rows))
    cv = [r["cv_loss_mean"] for r in rows]
    se = [r["cv_loss_se"] for r in rows]
    colors = ["tab:green" if r["name"] == report["chosen"] else "tab:blue" for r in rows]
    bars = ax.bar(idx - 0.2, cv, 0.4, yerr=se, color=colors, capsize=3, label="CV RMSE (mean ± SE)")
    for b, r in zip(bars, rows):
        if r.get("eliminated"):
            b.set_hatch("//")
            b.set_alpha(0.6)
    if all("holdout_rmse" in r for r in rows):
        ax.bar(idx + 0.2, [r["holdout_rmse"] for r in rows], 0.4, color="tab:gray", label="hold-out RMSE")
    ax.set_xticks(idx, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("RMSE")
    ax.set_title(f"adapt: chose {report['chosen']} (green; hatched = eliminated in rung 0)", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path
