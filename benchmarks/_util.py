"""Benchmark helpers: run a snippet in a fresh process (wall seconds, peak RSS); synthetic pools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


_HWM = """
import sys as _sys
_hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM")]
_sys.stderr.write(f"\\n__VmHWM_kB__ {_hwm[0] if _hwm else -1}\\n")
"""


def measure(code: str, *args: str) -> dict:
    """Run ``python -c code args...`` in a child: wall seconds, CPU seconds (user + system; on a
    shared machine less sensitive to load than wall time) and the child's own peak RSS.

    Peak RSS is the child's ``VmHWM`` (per address space, so it starts from zero at exec);
    ``ru_maxrss`` from wait4 would inherit the parent's peak across fork + exec.
    """
    import resource

    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + "\n" + _HWM, *args], capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # the child's user + system CPU seconds
    if proc.returncode != 0:
        errs = proc.stderr.strip()
        raise RuntimeError(f"benchmark child failed: {errs.splitlines()[-1] if errs else proc.returncode}")
    hwm = [ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("__VmHWM_kB__")]
    return {"seconds": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_mb": round(int(hwm[-1]) / 1024, 1),
            "stdout": proc.stdout.strip()}


def write_pool(path: Path, rows: int, d: int, block: int = 500_000, seed: int = 0) -> None:
    """A synthetic numeric pool: N(0, I) float32 features + lineage columns, row groups of 100k."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([(f"x{j}", pa.float32()) for j in range(d)] + [("_source", pa.string()), ("_row", pa.int64())])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, d)).astype(np.float32)
            cols = [pa.array(x[:, j]) for j in range(d)]
            cols += [pa.array(np.full(n, "bench", dtype=object), pa.string()), pa.array(np.arange(start + 1, start + n + 1))]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=100_000)


def select_rss_child(work: str, n: int, d: int) -> None:
    import torch

    from rsft.config import FeaturesConfig, SamplingConfig, ScorerConfig
    from rsft.density import make_scorer
    from rsft.sampling import calibrate_log_m, select

    torch.set_num_threads(1)
    w = Path(work)
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    names = [f"x{j}" for j in range(d)]
    write_pool(w / "pool.parquet", n, d)
    rng = np.random.default_rng(1)
    sc = make_scorer(ScorerConfig(kind="gaussian"), names).fit(rng.normal(0.5, 1, (2000, d)), rng.normal(size=(50_000, d)))
    sc.save(w / "g.pt")
    log_m = calibrate_log_m(sc.log_ratio(rng.normal(size=(50_000, d))).numpy())
    select(w / "pool.parquet", str(w / "g.pt"), FeaturesConfig(numeric=names), SamplingConfig(chunk_rows=500_000),
           str(w / "sel"), log_m=log_m, workers=2)
    shutil.rmtree(w, ignore_errors=True)
