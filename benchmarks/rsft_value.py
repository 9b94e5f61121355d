"""Does rejection-sampling fine-tuning pay off? The value experiment, on the synthetic factory.

    python benchmarks/rsft_value.py [--seeds 3] [--scorer gaussian] [--m-quantile 0.99]

Same data, same warm start (a base model pretrained on a pool sample), same training budget
(the number of rows RSFT accepted) for every recipe; target-hold-out RMSE mean ± std over seeds:

  base            the pretrained base model, no fine-tuning
  random          fine-tune on a uniform random pool subset (+ target sample)
  whole_pool      fine-tune on the whole labelled pool (+ target sample), same epochs
  weighted        importance-weighted fine-tune on a random pool subset (clipped weights w)
  rsft            fine-tune on the rejection-sampled rows (+ target sample)
  rsft_lossrej    rsft with in-training loss-threshold rejection (skip the worst 5 % per batch)
  target_only     fine-tune on the target sample alone

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from rsft.config import FeaturesConfig, SamplingConfig, ScorerConfig, SynthConfig, TrainConfig, ModelConfig
from rsft.density import make_scorer
from rsft.evaluate import evaluate_regression
from rsft.features import feature_names, labels, to_matrix
from rsft.models import build_model, set_standardization
from rsft.sampling import select
from rsft.synth import SENSORS, generate_day, generate_target

FEATURES = FeaturesConfig(numeric=SENSORS, label="quality")


def clean_pool(cfg: SynthConfig) -> pl.DataFrame:
    """Labelled, in-range pool rows (what ingest + prefilter would keep), with lineage columns."""
    frames = []
    for day in range(cfg.days):
        df, _ = generate_day(cfg, day)
        frames.append(df.with_columns(_source=pl.lit(f"day{day:03d}"), _row=pl.int_range(1, df.height + 1, dtype=pl.Int64)))
    pool = pl.concat(frames).drop_nulls([*SENSORS, "quality"]).unique(["machine_id", "ts"], keep="first", maintain_order=True)
    in_range = [pl.col(s).is_between(0, 150) for s in SENSORS]
    return pool.filter(pl.all_horizontal(in_range))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scorer", default="gaussian")
    ap.add_argument("--m-quantile", type=float, default=0.99)
    ap.add_argument("--days", type=int, default=24)
    args = ap.parse_args()
    t_start = time.perf_counter()

    synth = SynthConfig(seed=7, machines=8, days=args.days, samples_per_day=720)
    pool = clean_pool(synth)
    target = generate_target(synth, night=1, rows=300, stream=0)
    holdout = generate_target(synth, night=1, rows=2000, stream=1)
    x_pool, y_pool = to_matrix(pool, FEATURES), labels(pool, FEATURES)
    x_tgt, y_tgt = to_matrix(target, FEATURES), labels(target, FEATURES)

    # ---- base model (shared warm start) ---------------------------------------------
    train_cfg = TrainConfig(epochs=15, patience=4, seed=0)
    rng = np.random.default_rng(0)
    pre = rng.choice(len(y_pool), min(60_000, len(y_pool)), replace=False)
    base = build_model(ModelConfig(), len(feature_names(FEATURES)))
    set_standardization(base, x_pool[pre], y_pool[pre])
    from rsft.train import fit

    fit(base, (x_pool[pre], y_pool[pre]), train_cfg.model_copy(update={"epochs": 8}))

    # ---- scorer + rejection sampling through the real chunked sampler -----------------
    scorer = make_scorer(ScorerConfig(kind=args.scorer), feature_names(FEATURES)).fit(x_tgt, x_pool)
    log_w = scorer.log_ratio(x_pool).double().numpy()
    tmp = Path(tempfile.mkdtemp(prefix="rsft-value-"))
    pool.write_parquet(tmp / "pool.parquet")
    scorer.save(tmp / "scorer.pt")

    def run(name: str, x: np.ndarray, y: np.ndarray, seed: int, w: np.ndarray | None = None, **upd) -> float:
        model = copy.deepcopy(base)
        xs, ys = np.concatenate([x, x_tgt, x_tgt]), np.concatenate([y, y_tgt, y_tgt])
        data = (xs, ys) if w is None else (xs, ys, np.concatenate([w, np.ones(2 * len(y_tgt), np.float32)]))
        fit(model, data, train_cfg.model_copy(update={"seed": seed, **upd}))
        return evaluate_regression(model, holdout, FEATURES)["rmse"]

    results: dict[str, list[float]] = {}
    selected_rows = []
    for seed in range(args.seeds):
        from rsft.sampling import calibrate_log_m

        scfg = SamplingConfig(m_quantile=args.m_quantile, seed=seed, chunk_rows=50_000)
        log_m = calibrate_log_m(log_w, args.m_quantile)
        summary = select(str(tmp / "pool.parquet"), str(tmp / "scorer.pt"), FEATURES, scfg, str(tmp / f"sel{seed}"), log_m=log_m)
        sel = pl.read_parquet(summary.output)
        k = sel.height
        selected_rows.append(k)
        x_sel, y_sel = to_matrix(sel, FEATURES), labels(sel, FEATURES)
        r = np.random.default_rng(100 + seed)
        rand = r.choice(len(y_pool), k, replace=False)
        wsub = r.choice(len(y_pool), k, replace=False)
        w = np.exp(np.clip(log_w[wsub] - np.quantile(log_w, args.m_quantile), None, 0.0)).astype(np.float32)
        w = w / w.mean()
        runs = {
            "random": lambda: run("random", x_pool[rand], y_pool[rand], seed),
            "whole_pool": lambda: run("whole_pool", x_pool, y_pool, seed, epochs=3),
            "weighted": lambda: run("weighted", x_pool[wsub], y_pool[wsub], seed, w=w),
            "rsft": lambda: run("rsft", x_sel, y_sel, seed),
            "rsft_lossrej": lambda: run("rsft_lossrej", x_sel, y_sel, seed, loss_threshold_quantile=0.95),
            "target_only": lambda: run("target_only", x_sel[:0], y_sel[:0], seed),
        }
        for name, fn in runs.items():
            results.setdefault(name, []).append(fn())
    base_rmse = evaluate_regression(base, holdout, FEATURES)["rmse"]
    table = {"base": {"mean": round(base_rmse, 4), "std": 0.0}}
    for name, vals in results.items():
        table[name] = {"mean": round(float(np.mean(vals)), 4), "std": round(float(np.std(vals)), 4)}
    out = {
        "scorer": args.scorer,
        "m_quantile": args.m_quantile,
        "pool_rows": len(y_pool),
        "selected_rows_per_seed": selected_rows,
        "seeds": args.seeds,
        "holdout_rmse": table,
        "rsft_over_random": round(table["rsft"]["mean"] / table["random"]["mean"], 3),
        "goal_rsft_le_0.9x_random": table["rsft"]["mean"] <= 0.9 * table["random"]["mean"],
        "rsft_beats_base": table["rsft"]["mean"] < base_rmse,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
