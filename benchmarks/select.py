"""Scoring + rejection-sampling throughput of the chunked sampler, per scorer.

    python benchmarks/sampling.py [--rows 5000000] [--features 12] [--chunk-rows 500000]
                                  [--scorers gaussian,classifier] [--mode rejection]

A synthetic pool (N(0, I), float32 features + lineage columns) is written to Parquet in
row groups; each scorer is fitted on a 2 000-row target sample (N(0.5, Σ)) and a 50 000-row pool
sample, log M is calibrated on that pool sample (the max), then ``select`` runs over the whole
file. Reported per scorer: fit seconds, pure scoring rows/s (in memory, one chunk), end-to-end
rows/s (read + score + sample + write + merge), acceptance and clipped share. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rsft.config import FeaturesConfig, SamplingConfig, ScorerConfig
from rsft.density import make_scorer
from rsft.sampling import calibrate_log_m, select


def write_pool(path: Path, rows: int, d: int, block: int = 500_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    schema = pa.schema([(f"x{j}", pa.float32()) for j in range(d)] + [("_source", pa.string()), ("_row", pa.int64())])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, d)).astype(np.float32)
            cols = [pa.array(x[:, j]) for j in range(d)]
            cols += [pa.array(np.full(n, "bench", dtype=object), pa.string()), pa.array(np.arange(start + 1, start + n + 1))]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=100_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--chunk-rows", type=int, default=500_000)
    ap.add_argument("--scorers", default="gaussian,classifier")
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
        s = select(pool_path, str(scorer_path), feats, cfg, str(sel_dir), log_m=log_m)
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
    print(json.dumps({
        "rows": args.rows,
        "features": d,
        "chunk_rows": args.chunk_rows,
        "mode": args.mode,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "write_pool_seconds": round(write_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "scorers": results,
    }, indent=2))


if __name__ == "__main__":
    main()
