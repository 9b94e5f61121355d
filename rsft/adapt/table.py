"""A search report rendered for people: the candidate records (numbers: JSON), the candidate
table (printed by ``rsft adapt`` and ``rsft retrain``, a Prefect artifact) and the bar chart of
every candidate's CV RMSE."""

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


def _rung0_losses(r: dict[str, Any], report: dict[str, Any]) -> list[float]:
    """A candidate's losses in rung 0 of successive halving (every candidate on the first
    ``rung0_folds`` folds, trained ones with the short fits): a survivor re-run at the full budget
    keeps them in ``short_losses``; otherwise they are its losses on those folds."""
    if r.get("short_losses"):
        return list(r["short_losses"])
    split = (report.get("halving") or {}).get("rung0_folds", 0)
    folds = r.get("folds") or range(len(r["fold_losses"]))
    return [loss for f, loss in zip(folds, r["fold_losses"]) if f < split]


def candidate_records(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per candidate, numbers as numbers (the retrain summary's ``adapt_candidates``,
    ``--json-out``, the run's ``adapt/candidates.jsonl``): ``cv_rmse`` (mean over its ``cv_folds``
    folds) ± ``cv_rmse_se`` (None on one fold), with successive halving ``rung0_rmse`` (its figure in
    rung 0, over ``rung0_folds`` folds), ``eliminated`` (by rung 0), ``skipped`` (why, or None),
    ``cv_fits`` (how the CV figure was obtained, in words), ``pool_rows`` (mean per fold),
    ``seconds``, ``holdout_rmse`` (with a hold-out). None where a candidate has no figure: a
    candidate rung 0 eliminated has no ``cv_rmse`` (its short fits on the first folds are not
    comparable with the survivors' full ones, and can read lower: trial 7), only ``rung0_rmse``."""
    halving = bool(report.get("halving"))
    out = []
    for r in report["candidates"]:
        n, rung0 = len(r["fold_losses"]), _rung0_losses(r, report)
        full = n and not r.get("eliminated")
        out.append({
            "candidate": r["name"],
            "chosen": r["name"] == report["chosen"],
            "cv_rmse": float(r["cv_loss_mean"]) if full else None,
            "cv_rmse_se": float(r["cv_loss_se"]) if full and n > 1 else None,
            "cv_folds": n,
            **({"rung0_rmse": float(np.mean(rung0)) if rung0 else None, "rung0_folds": len(rung0)} if halving else {}),
            "eliminated": bool(r.get("eliminated")),
            "skipped": r["skipped"] or None,
            "cv_fits": _cv_fits(r, report),
            "pool_rows": int(r["pool_rows_mean"]),
            "seconds": round(float(r["seconds"]), 3),
            **({"holdout_rmse": float(r["holdout_rmse"])} if "holdout_rmse" in r else {}),
        })
    return out


def _g4(v: float | None) -> str:
    return "—" if v is None else f"{v:#.4g}"


def _se2(v: float) -> str:
    """An SE to 2 significant figures, trailing zeros kept: ±1.0 beside ±1.1 (trial 11's table
    read "1.967±1" beside "2.119±1.1"), ±0.010, ±12."""
    return f"{v:#.2g}".rstrip(".")


def candidate_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`candidate_records` as people read them (the printed table, the Prefect artifact): name
    (→ = chosen), the rung-0 figure with successive halving, CV loss mean ± SE ("dropped" for a
    candidate the short fit eliminated: its rung-0 figure is not comparable with the full fits'), how
    it was obtained (folds × steps budget; "dropped after it" = eliminated by that short fit, rung 0),
    pool rows, seconds, hold-out."""
    return [
        {
            "candidate": ("→ " if r["chosen"] else "") + r["candidate"],
            # every candidate on the same first folds (trained ones with the short fits): the ranking
            **({"rung0_rmse": _g4(r["rung0_rmse"])} if "rung0_rmse" in r else {}),
            # a candidate dropped after the short fit has no CV figure (its rung-0 one, fewer folds
            # and steps, can read lower than the chosen one's: trial 7)
            "cv_rmse": ("dropped" if r["eliminated"] else "skipped" if r["cv_rmse"] is None else
                        _g4(r["cv_rmse"]) + (f"±{_se2(r['cv_rmse_se'])}" if r["cv_rmse_se"] is not None else "")),
            "cv_fits": r["cv_fits"],
            "pool_rows": r["pool_rows"],
            "seconds": r["seconds"],
            **({"holdout_rmse": _g4(r["holdout_rmse"])} if "holdout_rmse" in r else {}),
        }
        for r in records
    ]


def candidate_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The search report's candidates as people read them: :func:`candidate_rows` of :func:`candidate_records`."""
    return candidate_rows(candidate_records(report))


def _error_bars(rows: list[dict[str, Any]]) -> tuple[list[float], list[bool]]:
    """Each candidate's error bar and whether it is its own: the SE of its fold losses when it ran
    ≥ 2 folds; for a candidate on one fold (eliminated in rung 0) the fold-to-fold sd pooled over
    the candidates with ≥ 2 folds (the SE of a one-fold mean under their spread), 0 when none has."""
    multi = [r["fold_losses"] for r in rows if len(r["fold_losses"]) > 1]
    pooled = (float(np.sqrt(np.mean([np.var(f, ddof=1) for f in multi]))) if multi else 0.0)
    own = [len(r["fold_losses"]) > 1 for r in rows]
    return [float(r["cv_loss_se"]) if o else pooled for r, o in zip(rows, own)], own


def _axis_top(rows, cv, err, holdout: bool) -> float:
    """The y-axis' top: every bar and error bar below it, the hold-out RMSE's too (the target's
    later rows can be far harder than its CV folds: a chart cut at the CV bars hid them)."""
    tops = [c + e for c, e in zip(cv, err)] + ([r["holdout_rmse"] for r in rows] if holdout else [])
    return max(tops) * 1.12 if tops else 1.0


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
        hb = ax.bar(idx + 0.2, [r["holdout_rmse"] for r in rows], 0.4, color="tab:gray", label="hold-out RMSE")
        ax.bar_label(hb, fmt="%.3g", fontsize=7, padding=2)  # the hold-out can rank the candidates otherwise
    champ = next((r for r in rows if r["strategy"] == "keep_champion"), None)
    if champ is not None:
        ax.axhline(champ["cv_loss_mean"], color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"champion as it is: CV RMSE {champ['cv_loss_mean']:.3g}")
    if any(r.get("eliminated") for r in rows):
        ax.bar([np.nan], [np.nan], color="tab:blue", alpha=0.6, hatch="//",
               label="eliminated in rung 0 (1 fold; dashed error bar: the others' pooled fold sd)")
    ax.set_ylim(0, _axis_top(rows, cv, err, holdout))
    ax.set_xticks(idx, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("RMSE (lower is better)")
    ax.set_title(f"Adaptation search: chose {report['chosen']} (green)", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.08), ncols=2, frameon=False)
    fig.savefig(path, dpi=110)
    return path
