"""The promotion gate against the hold-out's noise, on `make demo`'s two registered versions.

    make demo && python benchmarks/gate_noise.py [--config examples/factory.yaml] [--holdouts 20] [--draws 200]

1. Fresh hold-outs: ``--holdouts`` new draws of night 2's hold-out (2,000 rows each, the same
   generator and period as the demo's; the prefilter's target rules not applied): v1's (the
   night-2 champion's) and v2's RMSE on each, and the paired difference's z — how much a metric
   moves between nights with no model change, and how much the paired difference does.
2. Noise on the demo's own hold-out: v1 against v1 plus a per-row jitter (sd 1 % of its RMSE,
   ``--draws`` seeds), and against v1 with its weights nudged by 1e-3 (50 seeds): the share
   promoted at min_z 0 (the old gate) and 2, the z figures and gains (% of v1's RMSE), and the z
   of the nudges promoted at min_z 2 on another fresh hold-out (is their gain real?).

Prints one JSON object (BENCHMARKS.md, "The gate against the hold-out's noise").
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import polars as pl
import torch

from rsft.config import load_config
from rsft.evaluate import RowMetrics, Rows, regression_metrics
from rsft.paired import paired_difference
from rsft.pipeline import evaluate_frame, load_target, tracking_uri
from rsft.synth import HOLDOUT_PERIOD, generate_target
from rsft.tracking import registry


def spread(xs) -> dict[str, float]:
    xs = np.asarray(xs, dtype=float)
    return {"min": round(float(xs.min()), 4), "median": round(float(np.median(xs)), 4), "max": round(float(xs.max()), 4)}


def fresh_holdouts(cfg, v1, v2, k: int) -> dict:
    """v1 and v2 on ``k`` new hold-outs of night 2's regime (streams 10…): metric swing vs paired z."""
    f, s = cfg.features, cfg.synth
    rows = []
    for stream in range(10, 10 + k):
        h = generate_target(s, 2, s.target_holdout_rows, stream, period=HOLDOUT_PERIOD).filter(pl.col(f.label).is_not_null())
        a, b = evaluate_frame(v2, h, cfg), evaluate_frame(v1, h, cfg)
        p = paired_difference("rmse", a.rows, b.rows)
        rows.append((b["rmse"], a["rmse"], p.difference, p.se, p.z))
    v1r, v2r, d, se, z = np.array(rows).T
    return {"holdouts": k, "v1_rmse": spread(v1r), "v2_rmse": spread(v2r), "difference": spread(d), "se": spread(se),
            "z": spread(z), "promoted_min_z_2": int((z >= 2).sum())}


def promoted(policy, a: RowMetrics, b: RowMetrics) -> dict[str, bool]:
    return {f"min_z_{z:g}": registry.decide(policy.model_copy(update={"min_z": z}), a, b, len(b.rows.y)).promote
            for z in (0.0, 2.0)}


def noise_on_the_demo_holdout(cfg, v1, holdout: pl.DataFrame, draws: int) -> dict:
    champ = evaluate_frame(v1, holdout, cfg)
    y, out = champ.rows.y, champ.rows.out
    rng = np.random.default_rng(0)
    jitter = {"min_z_0": 0, "min_z_2": 0}
    for _ in range(draws):
        p = out + rng.normal(0, 0.01 * champ["rmse"], len(out))
        for key, won in promoted(cfg.promotion, RowMetrics(regression_metrics(y, p), rows=Rows("regression", y, p)),
                                 champ).items():
            jitter[key] += won
    nudge, zs, gains, again = {"min_z_0": 0, "min_z_2": 0}, [], [], []
    fresh = generate_target(cfg.synth, 2, cfg.synth.target_holdout_rows, 99, period=HOLDOUT_PERIOD)
    fresh = fresh.filter(pl.col(cfg.features.label).is_not_null())
    champ_fresh = evaluate_frame(v1, fresh, cfg)
    for seed in range(50):
        m = copy.deepcopy(v1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for w in m.parameters():
                w.add_(1e-3 * torch.randn(w.shape, generator=g))
        a = evaluate_frame(m, holdout, cfg)
        p = paired_difference("rmse", a.rows, champ.rows)
        zs.append(p.z)
        gains.append(100 * p.difference / champ["rmse"])
        won = promoted(cfg.promotion, a, champ)
        if won["min_z_2"]:  # does the gain hold on another hold-out (stream 99)?
            again.append(paired_difference("rmse", evaluate_frame(m, fresh, cfg).rows, champ_fresh.rows).z)
        for key, w in won.items():
            nudge[key] += w
    return {"holdout_rows": len(y), "v1_rmse": round(champ["rmse"], 5),
            "jitter_1pct": {"draws": draws, "promoted": jitter},
            "weight_nudge_1e-3": {"draws": 50, "promoted": nudge, "z": spread(zs), "gain_pct": spread(gains),
                                  "promoted_z_on_a_fresh_holdout": spread(again) if again else None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/factory.yaml")
    ap.add_argument("--holdouts", type=int, default=20)
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    cfg = load_config(args.config)
    mlc = registry.client(tracking_uri(cfg))
    name = cfg.promotion.model_name
    v1, v2 = (registry.load_version_model(mlc, mlc.get_model_version(name, v)) for v in ("1", "2"))
    holdout = load_target(cfg, "target_holdout")
    demo = paired_difference("rmse", evaluate_frame(v2, holdout, cfg).rows, evaluate_frame(v1, holdout, cfg).rows)
    print(json.dumps({"demo_night_2": {"difference": demo.difference, "se": demo.se, "z": demo.z},
                      "fresh_holdouts": fresh_holdouts(cfg, v1, v2, args.holdouts),
                      "noise": noise_on_the_demo_holdout(cfg, v1, holdout, args.draws)}, indent=1))


if __name__ == "__main__":
    main()
