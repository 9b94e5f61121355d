"""Maintenance-log (JSONL) ingest throughput and memory vs raw Polars and pandas, in one run.

    python benchmarks/ingest_logs.py --sizes-gb 0.25 1 --out /path/with/space

For each size: one synthetic maintenance-log JSONL of about that many GB (the demo's log
generator: 40 days of events, junk lines included, repeated with timestamps shifted by 40 days
per block so no row repeats), then, each in a fresh process (peak RSS is per process):
  rsft    rsft.ingest.ingest with the demo's logs contract (examples/factory.yaml: machine-id
          pattern, ISO timestamps, category vocabulary, quarantine, duplicate-row detection)
  polars  pl.scan_ndjson(...).sink_parquet(...)                      (no validation: the floor)
  pandas  pd.read_json(lines=True, chunksize=...) + pyarrow ParquetWriter
Prints one JSON object: per size the timings, MB/s, rsft/polars and pandas/rsft, and the peak-RSS
ratio of the largest to the smallest size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import measure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

RSFT = """
import sys
from rsft.config import load_config
from rsft.ingest import ingest
cfg = load_config(sys.argv[3])
s = ingest([sys.argv[1]], sys.argv[2], cfg.ingest.logs, chunk_rows=cfg.ingest.chunk_rows)
d = s.to_dict()
print(d["rows_ok"], d["rows_quarantined"])
"""

POLARS = """
import sys, polars as pl
pl.scan_ndjson(sys.argv[1]).sink_parquet(sys.argv[2])
"""

PANDAS = """
import sys, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
w = None
for chunk in pd.read_json(sys.argv[1], lines=True, chunksize=250_000, dtype=False, convert_dates=False):
    t = pa.Table.from_pandas(chunk, preserve_index=False)
    w = w or pq.ParquetWriter(sys.argv[2], t.schema)
    w.write_table(t.cast(w.schema))
w.close()
"""


def make_jsonl(path: Path, gb: float) -> int:
    """40 days of synthetic maintenance logs, repeated with shifted timestamps up to ~gb GB."""
    import polars as pl

    from rsft.config import SynthConfig
    from rsft.synth import generate_day, make_regime

    cfg = SynthConfig(seed=11, machines=24, samples_per_day=4000, event_rate=0.05)
    regime = make_regime(cfg)
    base = pl.concat([generate_day(cfg, d, regime)[1] for d in range(40)])
    ts = pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False)
    rows, block = 0, 0
    with open(path, "wb") as fh:
        while fh.tell() < gb * 1e9:
            shifted = base.with_columns(
                pl.when(ts.is_not_null()).then((ts + pl.duration(days=40 * block)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
                .otherwise(pl.col("ts")).alias("ts"))
            shifted.write_ndjson(fh)
            rows += shifted.height
            block += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[0.25, 1.0])
    ap.add_argument("--out", type=Path, default=REPO / ".rsft" / "bench-ingest-logs")
    ap.add_argument("--skip-pandas", action="store_true")
    args = ap.parse_args()
    cfg = str(REPO / "examples" / "factory.yaml")
    results: dict = {"sizes": []}
    for gb in args.sizes_gb:
        work = args.out / f"{gb:g}gb"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        src = work / "maintenance.jsonl"
        t0 = time.perf_counter()
        rows = make_jsonl(src, gb)
        row = {"gb": round(src.stat().st_size / 1e9, 3), "rows": rows, "generate_s": round(time.perf_counter() - t0, 1)}
        row["rsft"] = measure(RSFT, str(src), str(work / "rsft"), cfg)
        row["polars"] = measure(POLARS, str(src), str(work / "polars.parquet"))
        if not args.skip_pandas:
            row["pandas"] = measure(PANDAS, str(src), str(work / "pandas.parquet"))
            row["pandas_over_rsft"] = round(row["pandas"]["seconds"] / row["rsft"]["seconds"], 2)
        row["rsft_over_polars"] = round(row["rsft"]["seconds"] / row["polars"]["seconds"], 2)
        for k in ("rsft", "polars", "pandas"):
            if k in row:
                row[f"{k}_mb_per_s"] = round(row["gb"] * 1000 / row[k]["seconds"], 1)
        results["sizes"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        shutil.rmtree(work, ignore_errors=True)
    if len(results["sizes"]) > 1:
        a, b = results["sizes"][0], results["sizes"][-1]
        for k in ("rsft", "polars"):
            results[f"{k}_peak_rss_ratio_largest_vs_smallest"] = round(b[k]["peak_rss_mb"] / a[k]["peak_rss_mb"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
