"""Ingest throughput and memory vs raw Polars and pandas, side by side in one run.

    python benchmarks/ingest.py --sizes-gb 1 4 --out /path/with/space [--input parquet]

For each size: one synthetic sensor CSV of about that many GB (the demo's generator and
contract), then, each in a fresh process (peak RSS is per process):
  rsft       rsft.ingest.ingest with the demo contract (type/range/pattern checks, quarantine,
             duplicate-row detection, hive partitions machine_id/date, manifest)
  rsft_flat  the same contract checks and quarantine, one output file, no duplicate-row state
  polars  pl.scan_csv(...).sink_parquet(...)           (no validation: the speed floor)
  pandas  pd.read_csv(chunksize=...) + pyarrow ParquetWriter
Prints one JSON object: per size the three timings, rsft/polars and pandas/rsft ratios, and
the peak-RSS ratio of the largest to the smallest size for rsft.
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
c = cfg.ingest.sensors
if sys.argv[4] == "flat":  # like-for-like with the baselines: one output file, no duplicate-row state
    c = c.model_copy(update={"partition_by": [], "duplicate_rows": "keep"})
s = ingest([sys.argv[1]], sys.argv[2], c, chunk_rows=cfg.ingest.chunk_rows)
print(s.to_dict()["rows_ok"])
"""

POLARS = """
import sys, polars as pl
pl.scan_csv(sys.argv[1]).sink_parquet(sys.argv[2])
"""

POLARS_PARQUET = """
import sys, polars as pl
pl.scan_parquet(sys.argv[1]).sink_parquet(sys.argv[2])
"""

PANDAS = """
import sys, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
w = None
for chunk in pd.read_csv(sys.argv[1], chunksize=250_000):
    t = pa.Table.from_pandas(chunk, preserve_index=False)
    w = w or pq.ParquetWriter(sys.argv[2], t.schema)
    w.write_table(t)
w.close()
"""


def make_csv(path: Path, gb: float) -> int:
    """Append synthetic days until the file reaches ~gb GB; returns rows written."""
    import polars as pl

    from rsft.config import SynthConfig
    from rsft.synth import generate_day, make_regime

    cfg = SynthConfig(seed=11, machines=24, samples_per_day=4000, days=10_000)
    regime = make_regime(cfg)
    rows, day = 0, 0
    with open(path, "wb") as fh:
        while fh.tell() < gb * 1e9:
            df, _ = generate_day(cfg, day, regime)
            df.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(fh, include_header=day == 0)
            rows += df.height
            day += 1
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--out", type=Path, default=REPO / ".rsft" / "bench-ingest")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--input", choices=["csv", "parquet"], default="csv",
                    help="parquet: the generated CSV converted to Parquet (row groups of 100k) is the input; "
                         "the polars baseline is scan_parquet → sink_parquet; no pandas")
    args = ap.parse_args()
    cfg = str(REPO / "examples" / "factory.yaml")
    results = {"sizes": []}
    for gb in args.sizes_gb:
        work = args.out / f"{gb:g}gb"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        csv = work / "sensors.csv"
        t0 = time.perf_counter()
        rows = make_csv(csv, gb)
        row = {"gb": round(csv.stat().st_size / 1e9, 3), "rows": rows, "generate_s": round(time.perf_counter() - t0, 1)}
        src, baseline = csv, POLARS
        if args.input == "parquet":
            import polars as pl

            src, baseline = work / "sensors.parquet", POLARS_PARQUET
            (pl.scan_csv(csv, schema_overrides={"machine_id": pl.String, "status": pl.String})
             .with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False))
             .sink_parquet(src, row_group_size=100_000))
            csv.unlink()
            row["parquet_gb"] = round(src.stat().st_size / 1e9, 3)
        row["rsft"] = measure(RSFT, str(src), str(work / "rsft"), cfg, "demo")
        row["rsft_flat"] = measure(RSFT, str(src), str(work / "rsft_flat"), cfg, "flat")
        row["polars"] = measure(baseline, str(src), str(work / "polars.parquet"))
        if not args.skip_pandas and args.input == "csv":
            row["pandas"] = measure(PANDAS, str(csv), str(work / "pandas.parquet"))
            row["pandas_over_rsft"] = round(row["pandas"]["seconds"] / row["rsft"]["seconds"], 2)
        row["rsft_over_polars"] = round(row["rsft"]["seconds"] / row["polars"]["seconds"], 2)
        row["rsft_flat_over_polars"] = round(row["rsft_flat"]["seconds"] / row["polars"]["seconds"], 2)
        if "pandas" in row:
            row["pandas_over_rsft_flat"] = round(row["pandas"]["seconds"] / row["rsft_flat"]["seconds"], 2)
        row["rsft_mb_per_s"] = round(row["gb"] * 1000 / row["rsft"]["seconds"], 1)
        results["sizes"].append(row)
        shutil.rmtree(work, ignore_errors=True)
    if len(results["sizes"]) > 1:
        a, b = results["sizes"][0], results["sizes"][-1]
        for k in ("rsft", "rsft_flat", "polars"):
            results[f"{k}_peak_rss_ratio_largest_vs_smallest"] = round(b[k]["peak_rss_mb"] / a[k]["peak_rss_mb"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
