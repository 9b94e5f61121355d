"""What a person reads in the UIs: the candidates chart's error bars, the lineage tags, the
logged model's signature."""

from __future__ import annotations

import numpy as np
import pytest


def _cand(name, losses, eliminated=""):
    return {"name": name, "strategy": name, "fold_losses": losses, "cv_loss_mean": float(np.mean(losses)),
            "cv_loss_se": float(np.std(losses, ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else 0.0,
            "eliminated": eliminated, "pool_rows_mean": 0.0}


def test_candidates_chart_gives_every_candidate_an_error_bar(tmp_path):
    """Two candidates on 4 folds keep their own SE; a one-fold (eliminated) candidate gets the
    pooled fold-to-fold sd of the others; the chart is written with the champion line."""
    from rsft.adapt.table import _error_bars, plot_candidates

    a, b = [1.0, 1.2, 1.1, 1.3], [2.0, 2.4, 2.2, 2.2]
    rows = [_cand("keep_champion", a), _cand("rsft", b), _cand("head_only", [1.5], "rung 0")]
    err, own = _error_bars(rows)
    assert own == [True, True, False]
    assert err[:2] == [pytest.approx(rows[0]["cv_loss_se"]), pytest.approx(rows[1]["cv_loss_se"])]
    assert err[2] == pytest.approx(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))
    report = {"candidates": rows, "chosen": "rsft"}
    assert (tmp_path / "c.png").exists() is False
    plot_candidates(report, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 5000
