"""A search report rendered for people: the candidate table (printed by ``rsft adapt``, logged
as an artifact, shown by ``rsft history``) and the bar chart of every candidate's CV RMSE."""

from __future__ import annotations

from typing import Any

import numpy as np

from rsft.adapt.candidates import FREE


def _cv_fits(r: dict[str, Any], report: dict[str, Any]) -> str:
    """How a candidate's CV figure was obtained — folds × the fits' budget, "≤N steps" (and
    "≤E ep" when passes are bounded too; short fits are not comparable with full ones), "dropped
    after it" when that short fit (rung 0) eliminated it — or why it was skipped."""
    n = len(r["fold_losses"])
    if not n:
        return r["skipped"] or ""
    if r["strategy"] in FREE:  # nothing trained
        return f"{n} fold{'s' if n != 1 else ''}"
    rung = "full" if r.get("short_losses") else "cv"
    steps, epochs = report.get(f"{rung}_steps"), report.get(f"{rung}_epochs")
    budget = ", ".join([*([f"≤{steps:,} steps"] if steps else []), *([f"≤{epochs} ep"] if epochs else [])])
    return (f"{n}×{budget}" if budget else f"{n} fold{'s' if n != 1 else ''}") + (
        ", dropped after it" if r.get("eliminated") else "") + (", budget" if r["skipped"] else "")


def candidate_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for printing / artifacts: name (→ = chosen), CV loss mean ± SE (in parentheses for a
    candidate the short fit eliminated: not comparable with the full fits'), how it was obtained
    (folds × steps budget; "dropped after it" = eliminated by that short fit, rung 0), pool rows, seconds, hold-out."""
    rows = []
    for r in report["candidates"]:
        rows.append(
            {
                "candidate": ("→ " if r["name"] == report["chosen"] else "") + r["name"],
                # a candidate dropped after the short fit: its figure in parentheses, not comparable
                # with the full fits' (fewer folds and steps: it can read lower than the chosen one)
                "cv_rmse": ("skipped" if not r["fold_losses"] else
                            ("({})" if r.get("eliminated") else "{}").format(
                                f"{r['cv_loss_mean']:#.4g}" + (f"±{r['cv_loss_se']:.2g}" if len(r["fold_losses"]) > 1 else ""))),
                "cv_fits": _cv_fits(r, report),
                "pool_rows": int(r["pool_rows_mean"]),
                "seconds": round(r["seconds"], 3),
                **({"holdout_rmse": f"{r['holdout_rmse']:#.4g}"} if "holdout_rmse" in r else {}),
            }
        )
    return rows


def _error_bars(rows: list[dict[str, Any]]) -> tuple[list[float], list[bool]]:
    """Each candidate's error bar and whether it is its own: the SE of its fold losses when it ran
    ≥ 2 folds; for a candidate on one fold (eliminated in rung 0) the fold-to-fold sd pooled over
    the candidates with ≥ 2 folds (the SE of a one-fold mean under their spread), 0 when none has."""
    multi = [r["fold_losses"] for r in rows if len(r["fold_losses"]) > 1]
    pooled = (float(np.sqrt(np.mean([np.var(f, ddof=1) for f in multi]))) if multi else 0.0)
    own = [len(r["fold_losses"]) > 1 for r in rows]
    return [float(r["cv_loss_se"]) if o else pooled for r, o in zip(rows, own)], own


def plot_candidates(report: dict[str, Any], path: str) -> str:
    """Bar chart of every candidate's CV RMSE with an error bar each (mean ± SE; a one-fold
    candidate's bar is dashed: ± the other candidates' pooled fold-to-fold sd), the chosen one
    green, eliminated ones hatched, hold-out RMSE beside it when present, and the champion's CV
    RMSE (``keep_champion``) as a line. The legend sits above the axes. Returns ``path`` (PNG)."""
    from matplotlib.figure import Figure

    rows = [r for r in report["candidates"] if r["fold_losses"]]
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.4), layout="constrained")
    ax = fig.add_subplot()
    idx = np.arange(len(rows))
    cv = [r["cv_loss_mean"] for r in rows]
    err, own = _error_bars(rows)
    colors = ["tab:green" if r["name"] == report["chosen"] else "tab:blue" for r in rows]
    holdout = bool(rows) and all("holdout_rmse" in r for r in rows)
    off, width = (-0.2, 0.4) if holdout else (0.0, 0.6)
    bars = ax.bar(idx + off, cv, width, color=colors, label="CV RMSE (mean ± SE over folds)")
    for i, (b, r) in enumerate(zip(bars, rows)):
        if r.get("eliminated"):
            b.set_hatch("//")
            b.set_alpha(0.6)
        eb = ax.errorbar(i + off, cv[i], yerr=err[i], color="black", capsize=4, linewidth=1.2)
        if not own[i]:
            eb[-1][0].set_linestyle("--")
        n = len(r["fold_losses"])
        ax.text(i + off, 0.01, f"{n} fold{'s' if n != 1 else ''}", transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=7, color="white" if not r.get("eliminated") else "black")
    if holdout:
        ax.bar(idx + 0.2, [r["holdout_rmse"] for r in rows], 0.4, color="tab:gray", label="hold-out RMSE")
    champ = next((r for r in rows if r["strategy"] == "keep_champion"), None)
    if champ is not None:
        ax.axhline(champ["cv_loss_mean"], color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"champion as it is: CV RMSE {champ['cv_loss_mean']:.3g}")
    if any(r.get("eliminated") for r in rows):
        ax.bar([np.nan], [np.nan], color="tab:blue", alpha=0.6, hatch="//",
               label="eliminated in rung 0 (1 fold; dashed error bar: the others' pooled fold sd)")
    top = max(c + e for c, e in zip(cv, err)) if rows else 1.0
    ax.set_ylim(0, top * 1.08)
    ax.set_xticks(idx, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("RMSE (lower is better)")
    ax.set_title(f"Adaptation search: chose {report['chosen']} (green)", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.08), ncols=2, frameon=False)
    fig.savefig(path, dpi=110)
    return path
