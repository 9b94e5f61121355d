"""(The issue's ``benchmarks/select.py``: named so that it does not shadow the standard library's
``select`` module for scripts run from this folder.)

Scoring + rejection-sampling throughput of the chunked sampler, per scorer, against the naive
per-row Python loop, and peak memory at two pool sizes.

    python benchmarks/select_throughput.py [--rows 10000000] [--features 12] [--chunk-rows 500000]
                                [--scorers gaussian,gmm,classifier] [--mode rejection]
                                [--workers 2] [--threads 1] [--rss-rows 10000000 40000000]

A synthetic pool (N(0, I), float32 features + lineage columns) is written to Parquet in
row groups; each scorer is fitted on a 2 000-row target sample (N(0.5, Σ)) and a 50 000-row pool
sample, log M is calibrated on that pool sample (the max), then ``select`` runs over the whole
file. Reported per scorer: fit seconds, pure scoring rows/s (in memory, one chunk), end-to-end
rows/s (read + score + sample + write + merge), acceptance and clipped share.

Baseline ``naive``: the seed's per-row loop (for each row: standardise, two Gaussian log
densities with NumPy, one uniform, accept) over ``--naive-rows`` rows, with the same fitted
Gaussian; ``gaussian_over_naive`` is the end-to-end speed-up.
Memory: for each ``--rss-rows`` size a fresh process writes a pool of that many rows and runs the gaussian
``select`` over it (2 workers); the ratio of its peak RSS (VmHWM), largest/smallest.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
import sys
from pathlib import Path

import numpy as np
import torch

from rsft.config import FeaturesConfig, SamplingConfig, ScorerConfig
from rsft.density import make_scorer
from rsft.sampling import calibrate_log_m, select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _util import measure, write_pool  # noqa: E402

RSS_CHILD = """
import sys
sys.path.insert(0, sys.argv[4])
from _util import select_rss_child
select_rss_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


def naive_select(x: np.ndarray, scorer, log_m: float, seed: int = 0) -> tuple[int, float]:
    """The per-row loop a first version would write: one row at a time, NumPy maths, Python control."""
    import math
    import random

    mean, scale = scorer.mean.numpy(), scorer.scale.numpy()
    mu_t, mu_p = scorer.mu_t.numpy(), scorer.mu_p.numpy()
    inv_t = np.linalg.inv(scorer.chol_t.numpy() @ scorer.chol_t.numpy().T)
    inv_p = np.linalg.inv(scorer.chol_p.numpy() @ scorer.chol_p.numpy().T)
    ld_t = float(np.log(np.diag(scorer.chol_t.numpy())).sum())
    ld_p = float(np.log(np.diag(scorer.chol_p.numpy())).sum())
    rnd = random.Random(seed)
    kept = 0
    t = time.perf_counter()
    for row in x:
        z = (row - mean) / scale
        dt, dp = z - mu_t, z - mu_p
        lw = -0.5 * float(dt @ inv_t @ dt) - ld_t + 0.5 * float(dp @ inv_p @ dp) + ld_p
        if math.log(rnd.random() or 1e-300) < min(lw - log_m, 0.0):
            kept += 1
    return kept, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--chunk-rows", type=int, default=500_000)
    ap.add_argument("--scorers", default="gaussian,gmm,classifier")
    ap.add_argument("--workers", type=int, default=2, help="chunks sampled concurrently (threads)")
    ap.add_argument("--naive-rows", type=int, default=100_000)
    ap.add_argument("--rss-rows", type=int, nargs="*", default=[10_000_000, 40_000_000])
    ap.add_argument("--mode", default="rejection", choices=["rejection", "budget"])
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(args.dir or tempfile.mkdtemp(prefix="rsft-bench-sampling-"))
    work.mkdir(parents=True, exist_ok=True)
    d = args.features
    names = [f"x{j}" for j in range(d)]
    feats = FeaturesConfig(numeric=names)
    pool_path = work / "pool.parquet"
    t = time.perf_counter()
    write_pool(pool_path, args.rows, d)
    write_s = time.perf_counter() - t

    rng = np.random.default_rng(1)
    a = rng.normal(size=(d, d)) * 0.3
    cov = np.eye(d) + a @ a.T
    target = (rng.normal(size=(2000, d)) @ np.linalg.cholesky(cov).T + 0.5).astype(np.float32)
    pool_sample = rng.normal(size=(50_000, d)).astype(np.float32)

    results = {}
    for kind in args.scorers.split(","):
        t = time.perf_counter()
        scorer = make_scorer(ScorerConfig(kind=kind, epochs=5), names).fit(target, pool_sample)
        fit_s = time.perf_counter() - t
        scorer_path = work / f"{kind}.pt"
        scorer.save(scorer_path)
        log_m = calibrate_log_m(scorer.log_ratio(pool_sample).numpy())
        block = rng.normal(size=(min(args.chunk_rows, args.rows), d)).astype(np.float32)
        t = time.perf_counter()
        scorer.log_ratio(block)
        score_rps = len(block) / (time.perf_counter() - t)
        cfg = SamplingConfig(mode=args.mode, budget=10_000, chunk_rows=args.chunk_rows, seed=0)
        sel_dir = work / f"sel-{kind}"
        shutil.rmtree(sel_dir, ignore_errors=True)  # else a re-run resumes from the chunk markers
        t = time.perf_counter()
        s = select(pool_path, str(scorer_path), feats, cfg, str(sel_dir), log_m=log_m, workers=args.workers)
        wall = time.perf_counter() - t
        results[kind] = {
            "fit_seconds": round(fit_s, 2),
            "score_rows_per_s": round(score_rps),
            "select_seconds": round(wall, 2),
            "select_rows_per_s": round(s.rows_in / wall),
            "rows_out": s.rows_out,
            "acceptance_rate": round(s.acceptance_rate, 5),
            "ideal_acceptance": None if s.ideal_acceptance is None else round(s.ideal_acceptance, 5),
            "clipped_share": round(s.clipped_share, 6),
            "chunks": s.chunks,
        }
        if kind == "gaussian" and args.naive_rows:
            x = rng.normal(size=(args.naive_rows, d)).astype(np.float32)
            kept, secs = naive_select(x, scorer, log_m)
            results["naive_per_row_loop"] = {"rows": args.naive_rows, "seconds": round(secs, 2),
                                             "rows_per_s": round(args.naive_rows / secs), "rows_out": kept}
            results["gaussian_over_naive"] = round(results["gaussian"]["select_rows_per_s"] / (args.naive_rows / secs), 1)
    rss = {}
    for n in args.rss_rows:
        m = measure(RSS_CHILD, str(work / f"rss-{n}"), str(n), str(d), str(HERE))
        rss[str(n)] = m["peak_rss_mb"]
    if len(rss) > 1:
        sizes = sorted(rss, key=int)
        rss["ratio_largest_vs_smallest"] = round(rss[sizes[-1]] / rss[sizes[0]], 3)
    print(json.dumps({
        "rows": args.rows,
        "features": d,
        "chunk_rows": args.chunk_rows,
        "mode": args.mode,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "write_pool_seconds": round(write_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "workers": args.workers,
        "scorers": results,
        "gaussian_select_peak_rss_mb_by_rows": rss,
    }, indent=2))


if __name__ == "__main__":
    main()
