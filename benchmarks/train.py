"""Streaming fine-tune throughput and memory: ``fit`` over a ``ParquetStream`` vs the same model on
in-memory tensors.

    python benchmarks/train.py [--rows 1000000 4000000] [--features 12] [--batch-size 256]
                               [--epochs 1] [--shuffle-buffer 65536] [--threads 1] [--device cpu]

For each ``--rows`` size a selected-like set (float32 features + a float32 label, row groups of
100 000) is written to Parquet; then two fresh processes each build the same MLP [64, 64]
(same seed) and run ``fit`` for ``--epochs`` epochs (batch 256, AdamW, no validation split):

- ``memory``: the Parquet file read whole into float32 arrays, ``fit(model, (x, y), cfg)``;
- ``stream``: ``fit(model, ParquetStream(file, ...), cfg)``: decode, shuffle buffer and batch
  conversion are inside the timed loop (same thread, no DataLoader workers).

samples/s = rows × epochs / seconds inside ``fit``; peak RSS = the child's VmHWM (see
``benchmarks/_util.measure``). Goals: stream/memory samples/s ≥ 0.8 at every size; the
stream's peak RSS largest/smallest ≤ 1.25 (flat in the selected-set size). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import measure  # noqa: E402

CHILD = """
import json, sys, time
import numpy as np, torch
from rsft.config import ModelConfig, TrainConfig
from rsft.models import build_model
from rsft.train import fit
path, mode, d, bs, epochs, buf, threads, device = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8]), sys.argv[8]
torch.set_num_threads(threads)
feats = [f"x{j}" for j in range(d)]
cfg = TrainConfig(epochs=epochs, batch_size=bs, val_share=0.0, schedule="constant", patience=epochs + 1,
                  device=device, seed=0)
torch.manual_seed(0)
model = build_model(ModelConfig(hidden=[64, 64]), d)
if mode == "memory":
    import polars as pl
    df = pl.read_parquet(path)
    data = (df.select(feats).to_numpy(), df.get_column("y").to_numpy())
    del df
else:
    from rsft.data import ParquetStream
    data = ParquetStream(path, feats, "y", batch_size=bs, shuffle_buffer=buf, seed=0)
t0 = time.perf_counter()
res = fit(model, data, cfg)
sec = time.perf_counter() - t0
print(json.dumps({"fit_seconds": sec, "train_loss": res.history[-1]["train_loss"]}))
"""


def write_selected(path: Path, rows: int, d: int, block: int = 500_000, seed: int = 0) -> None:
    """Selected-like rows: N(0, I) float32 features, y = a fixed linear + tanh function + noise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    coef = rng.normal(size=d).astype(np.float32)
    schema = pa.schema([(f"x{j}", pa.float32()) for j in range(d)] + [("y", pa.float32())])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, d)).astype(np.float32)
            y = (x @ coef + np.tanh(x[:, 0] * x[:, 1]) + 0.1 * rng.normal(size=n)).astype(np.float32)
            cols = [pa.array(x[:, j]) for j in range(d)] + [pa.array(y)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=100_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--shuffle-buffer", type=int, default=65_536)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rsft-bench-train-"))
    out: dict = {"features": a.features, "batch_size": a.batch_size, "epochs": a.epochs, "model": "mlp[64,64]",
                 "shuffle_buffer": a.shuffle_buffer, "torch_threads": a.threads, "device": a.device,
                 "cpus": os.cpu_count(), "sizes": {}}
    try:
        for rows in a.rows:
            path = work / f"selected-{rows}.parquet"
            t0 = time.perf_counter()
            write_selected(path, rows, a.features)
            size = {"write_seconds": round(time.perf_counter() - t0, 2), "file_mb": round(path.stat().st_size / 2**20, 1)}
            for mode in ("memory", "stream"):
                m = measure(CHILD, str(path), mode, str(a.features), str(a.batch_size), str(a.epochs),
                            str(a.shuffle_buffer), str(a.threads), a.device)
                r = json.loads(m["stdout"].splitlines()[-1])
                size[mode] = {"samples_per_s": round(rows * a.epochs / r["fit_seconds"]), "fit_seconds": round(r["fit_seconds"], 2),
                              "peak_rss_mb": m["peak_rss_mb"], "train_loss": round(r["train_loss"], 4)}
            size["stream_over_memory"] = round(size["stream"]["samples_per_s"] / size["memory"]["samples_per_s"], 3)
            out["sizes"][str(rows)] = size
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sizes = [out["sizes"][str(r)] for r in a.rows]
    out["stream_over_memory_min"] = min(s["stream_over_memory"] for s in sizes)
    out["stream_rss_ratio_largest_over_smallest"] = round(sizes[-1]["stream"]["peak_rss_mb"] / sizes[0]["stream"]["peak_rss_mb"], 3)
    out["memory_rss_ratio_largest_over_smallest"] = round(sizes[-1]["memory"]["peak_rss_mb"] / sizes[0]["memory"]["peak_rss_mb"], 3)
    out["goals"] = {"stream_over_memory>=0.8": out["stream_over_memory_min"] >= 0.8,
                    "stream_rss_ratio<=1.25": out["stream_rss_ratio_largest_over_smallest"] <= 1.25}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
