"""The linear reference (`rsft.evaluate.linear_metrics`: ridge on the target sample alone, penalty
by exact leave-one-out) on the demo's nights, and on real data beside scikit-learn's RidgeCV.

    python benchmarks/linear_reference.py [--config examples/factory.yaml] [--nights 2]
    python benchmarks/linear_reference.py --real [--seeds 0 1 2]     # bench venv: '.[real-data]'

Prints one JSON object. Demo: per night the reference's and the constant's hold-out RMSE on the
draws `make demo` writes (compare with its summary's challenger/champion rmse). ``--real``: per
real-drift data set and seed (``benchmarks/real_drift.py``'s loaders: files bundled in installed
packages, nothing downloaded) the reference's, RidgeCV's (standardised inputs, 29 alphas) and the
constant's hold-out RMSE (BENCHMARKS.md, "A linear reference every night").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

from rsft.evaluate import constant_metrics, linear_metrics


def demo(config: str, nights: int) -> dict:
    from rsft.config import load_config
    from rsft.synth import HOLDOUT_PERIOD, SAMPLE_PERIOD, generate_target

    cfg = load_config(config)
    f, s = cfg.features, cfg.synth
    out = {}
    for night in range(1, nights + 1):
        t = generate_target(s, night, s.target_sample_rows, 0, period=SAMPLE_PERIOD).filter(pl.col(f.label).is_not_null())
        h = generate_target(s, night, s.target_holdout_rows, 1, period=HOLDOUT_PERIOD).filter(pl.col(f.label).is_not_null())
        xt, yt, xh, yh = (d.select(c).to_numpy().astype(np.float64) for d, c in
                          ((t, f.numeric), (t, f.label), (h, f.numeric), (h, f.label)))
        out[f"night_{night}"] = {"linear_rmse": round(linear_metrics(xt, yt[:, 0], xh, yh[:, 0])["rmse"], 5),
                                 "constant_rmse": round(constant_metrics(yt[:, 0], yh[:, 0])["rmse"], 5),
                                 "target_rows": t.height, "holdout_rows": h.height}
    return out


def real(seeds: list[int]) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import real_drift as rd
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, load in (("pvlib", rd.load_pvlib), ("nyc", rd.load_nyc), ("chicago", rd.load_chicago),
                       ("seattle", rd.load_seattle)):
        for seed in seeds:
            s = load(seed)
            (xt, yt), (xh, yh) = rd._xy(s.target, s), rd._xy(s.holdout, s)
            ridge_cv = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 29))).fit(xt, yt)
            out[f"{name}/{seed}"] = {"linear_rmse": round(linear_metrics(xt, yt, xh, yh)["rmse"], 4),
                                     "sklearn_ridgecv_rmse": round(rd.rmse(ridge_cv.predict(xh), yh), 4),
                                     "constant_rmse": round(constant_metrics(yt, yh)["rmse"], 4),
                                     "target_rows": len(yt), "inputs": xt.shape[1]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/factory.yaml")
    ap.add_argument("--nights", type=int, default=2)
    ap.add_argument("--real", action="store_true", help="the real-drift data sets instead of the demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    print(json.dumps(real(args.seeds) if args.real else demo(args.config, args.nights)))


if __name__ == "__main__":
    main()
