"""A linear reference for the demo: a closed-form ridge on each night's target sample alone,
scored on that night's hold-out (the draws `make demo` writes), beside the constant prediction.

    python benchmarks/linear_reference.py [--config examples/factory.yaml] [--nights 2] [--lam 1e-3]

Prints one JSON object: per night the ridge's and the constant's hold-out RMSE. Compare with the
`make demo` summary's challenger/champion rmse (BENCHMARKS.md, "A linear reference on the demo").
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl

from rsft.config import load_config
from rsft.synth import HOLDOUT_PERIOD, SAMPLE_PERIOD, generate_target


def ridge_rmse(t: pl.DataFrame, h: pl.DataFrame, cols: list[str], label: str, lam: float) -> tuple[float, float]:
    """(ridge, constant) hold-out RMSE: inputs standardised on ``t``, penalty ``lam`` × rows, intercept free."""
    x, y = t.select(cols).to_numpy(), t[label].to_numpy()
    xh, yh = h.select(cols).to_numpy(), h[label].to_numpy()
    mu, sd = x.mean(0), x.std(0) + 1e-9
    a = np.c_[(x - mu) / sd, np.ones(len(x))]
    pen = lam * len(x) * np.diag([1.0] * len(cols) + [0.0])
    w = np.linalg.solve(a.T @ a + pen, a.T @ y)
    pred = np.c_[(xh - mu) / sd, np.ones(len(xh))] @ w
    return float(np.sqrt(np.mean((pred - yh) ** 2))), float(np.sqrt(np.mean((y.mean() - yh) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/factory.yaml")
    ap.add_argument("--nights", type=int, default=2)
    ap.add_argument("--lam", type=float, default=1e-3)
    args = ap.parse_args()
    cfg = load_config(args.config)
    f, s = cfg.features, cfg.synth
    out = {}
    for night in range(1, args.nights + 1):
        t = generate_target(s, night, s.target_sample_rows, 0, period=SAMPLE_PERIOD).filter(pl.col(f.label).is_not_null())
        h = generate_target(s, night, s.target_holdout_rows, 1, period=HOLDOUT_PERIOD).filter(pl.col(f.label).is_not_null())
        ridge, const = ridge_rmse(t, h, list(f.numeric), f.label, args.lam)
        out[f"night_{night}"] = {"ridge_rmse": round(ridge, 5), "constant_rmse": round(const, 5),
                                 "target_rows": t.height, "holdout_rows": h.height}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
