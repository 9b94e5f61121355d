"""Ingest throughput and memory vs raw Polars and pandas, side by side in one run.

    python benchmarks/ingest.py --sizes-gb 1 4 --out /path/with/space [--input csv|parquet|jsonl] [--repeat 3]

For each size: one synthetic input of about that many GB, then, each in a fresh process (peak
RSS is per process):
  rsft       rsft.ingest.ingest with the demo contract (type/range/pattern checks, quarantine,
             duplicate-row detection, hive partitions machine_id/date, manifest)
  rsft_flat  the same contract checks and quarantine, one output file, no duplicate-row state
  polars     scan → sink_parquet                             (no validation: the speed floor)
  pandas     chunked read + pyarrow ParquetWriter             (csv and jsonl)
  pandera    pandera's Polars backend: the same contract checks on the same file (csv and jsonl;
             drop_invalid_rows, valid and invalid rows to Parquet; a benchmark-only dependency —
             run with a Python that has pandera[polars], e.g. /work/bench-venv, or --skip-pandera)
Inputs: ``csv`` sensor rows (the demo's generator); ``parquet`` the same rows converted to typed
Parquet (row groups of 100k); ``jsonl`` maintenance logs (the demo's log generator, junk lines
included: 40 days of events repeated with timestamps shifted per block so no row repeats) under
the demo's logs contract. ``--repeat N``: N rounds, every contender once per round; each ratio
is the median of its per-round ratios (runs close in time: the way to compare on a shared,
noisy machine), seconds are medians, peak RSS the largest. Prints one JSON object: per size the
timings, MB/s, ratios (wall time, and ``*_cpu_over_polars``: CPU seconds, user + system, which
load on a shared machine disturbs less), the load average before and after, and the peak-RSS
ratio of the largest to the smallest size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
c = getattr(cfg.ingest, sys.argv[5])
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

POLARS_JSONL = """
import sys, polars as pl
pl.scan_ndjson(sys.argv[1]).sink_parquet(sys.argv[2])
"""

PANDERA = """
# pandera's Polars backend doing the contract's checks: each batch read as text, cast like rsft's
# cheap pass (strict=False), validated with drop_invalid_rows (types, null, range, finite, pattern,
# allowed values); valid rows to one Parquet file, the rest (no reasons) to another. No duplicate
# detection, no partitions, no lineage columns: the like-for-like contender is rsft flat.
import sys, polars as pl, pyarrow.parquet as pq, pandera.polars as pa
from rsft.config import load_config
c = getattr(load_config(sys.argv[3]).ingest, sys.argv[4])
DT = {"float64": pl.Float64, "int64": pl.Int64, "bool": pl.Boolean, "timestamp": pl.Datetime("us", "UTC"), "str": pl.String}

def finite(d):
    return d.lazyframe.select(pl.col(d.key).is_finite() | pl.col(d.key).is_null())

def column(cc):
    checks = []
    if cc.min is not None and cc.max is not None:
        checks.append(pa.Check.in_range(cc.min, cc.max))
    elif cc.min is not None:
        checks.append(pa.Check.ge(cc.min))
    elif cc.max is not None:
        checks.append(pa.Check.le(cc.max))
    if cc.dtype == "float64" and cc.finite:
        checks.append(pa.Check(finite, name="finite"))
    if cc.pattern:
        checks.append(pa.Check.str_matches(f"^(?:{cc.pattern})$"))
    if cc.allowed is not None:
        checks.append(pa.Check.isin(cc.allowed))
    return pa.Column(DT[cc.dtype], checks, nullable=cc.nullable)

def cast(cc):
    e = pl.col(cc.name)
    if cc.dtype == "timestamp":
        return e.str.strip_chars().str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_unit="us", time_zone="UTC")
    if cc.dtype == "bool":
        low = e.str.strip_chars().str.to_lowercase()
        return pl.when(low.is_in(["true", "1"])).then(True).when(low.is_in(["false", "0"])).then(False).alias(cc.name)
    return e.cast(DT[cc.dtype], strict=False) if cc.dtype != "str" else e

schema = pa.DataFrameSchema({cc.name: column(cc) for cc in c.columns}, drop_invalid_rows=True)
names = [cc.name for cc in c.columns]
if c.format == "jsonl":
    lf = pl.scan_ndjson(sys.argv[1], schema={n: pl.String for n in names})
else:
    lf = pl.scan_csv(sys.argv[1], infer_schema=False).select(names)
good = bad = None
n_good = 0
for df in lf.collect_batches(chunk_size=250_000):
    df = df.with_row_index("__i")
    typed = df.select(pl.col("__i"), *[cast(cc) for cc in c.columns])
    ok = schema.validate(typed, lazy=True)
    rest = df.join(ok.select("__i"), on="__i", how="anti")
    t = ok.drop("__i").to_arrow()
    good = good or pq.ParquetWriter(sys.argv[2], t.schema, compression="zstd")
    good.write_table(t)
    n_good += ok.height
    if rest.height:
        r = rest.drop("__i").to_arrow()
        bad = bad or pq.ParquetWriter(sys.argv[2] + ".bad", r.schema, compression="zstd")
        bad.write_table(r.cast(bad.schema))
for w in (good, bad):
    if w is not None:
        w.close()
print(n_good)
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

PANDAS_JSONL = """
import sys, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
w = None
for chunk in pd.read_json(sys.argv[1], lines=True, chunksize=250_000, dtype=False, convert_dates=False):
    t = pa.Table.from_pandas(chunk, preserve_index=False)
    w = w or pq.ParquetWriter(sys.argv[2], t.schema)
    w.write_table(t.cast(w.schema))
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
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--out", type=Path, default=REPO / ".rsft" / "bench-ingest")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of every contender (medians reported; on a shared "
                    "machine 3 or more)")
    ap.add_argument("--skip-pandera", action="store_true", help="leave out pandera's Polars backend (a benchmark-only "
                    "dependency: run with a Python that has pandera[polars])")
    ap.add_argument("--input", choices=["csv", "parquet", "jsonl"], default="csv",
                    help="parquet: the generated CSV converted to Parquet (row groups of 100k), polars baseline "
                         "scan_parquet, no pandas; jsonl: maintenance logs under the logs contract, scan_ndjson")
    args = ap.parse_args()
    cfg = str(REPO / "examples" / "factory.yaml")
    results = {"sizes": []}
    # input → (contract in the demo config, generated file, generator, polars baseline, pandas baseline)
    inputs = {"csv": ("sensors", "sensors.csv", make_csv, POLARS, PANDAS),
              "parquet": ("sensors", "sensors.csv", make_csv, POLARS_PARQUET, None),  # converted below
              "jsonl": ("logs", "maintenance.jsonl", make_jsonl, POLARS_JSONL, PANDAS_JSONL)}
    for gb in args.sizes_gb:
        work = args.out / f"{gb:g}gb"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        dataset, name, make, baseline, pandas = inputs[args.input]
        csv = work / name
        t0 = time.perf_counter()
        rows = make(csv, gb)
        row = {"gb": round(csv.stat().st_size / 1e9, 3), "rows": rows, "generate_s": round(time.perf_counter() - t0, 1)}
        src = csv
        if args.input == "parquet":
            import polars as pl

            src = work / "sensors.parquet"
            (pl.scan_csv(csv, schema_overrides={"machine_id": pl.String, "status": pl.String})
             .with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC", strict=False))
             .sink_parquet(src, row_group_size=100_000))
            csv.unlink()
            row["parquet_gb"] = round(src.stat().st_size / 1e9, 3)
        contenders = {"rsft": (RSFT, str(src), str(work / "rsft"), cfg, "demo", dataset),
                      "rsft_flat": (RSFT, str(src), str(work / "rsft_flat"), cfg, "flat", dataset),
                      "polars": (baseline, str(src), str(work / "polars.parquet"))}
        if not args.skip_pandera and args.input != "parquet":
            try:
                import pandera.polars  # noqa: F401  (a benchmark-only dependency)
            except ImportError:
                print("pandera not installed: its contender is skipped (pip install 'pandera[polars]')", file=sys.stderr)
            else:
                contenders["pandera"] = (PANDERA, str(src), str(work / "pandera.parquet"), cfg, dataset)
        if not args.skip_pandas and pandas:
            contenders["pandas"] = (pandas, str(src), str(work / "pandas.parquet"))
        # rounds: every contender once per round, one after the other, so a round's ratios compare
        # runs close in time on a shared machine; the figures are medians over the rounds
        runs: dict[str, list[dict]] = {k: [] for k in contenders}
        row["load_avg_before"] = round(os.getloadavg()[0], 2)
        for _ in range(args.repeat):
            for k, (code, *argv) in contenders.items():
                out = Path(argv[1])  # every run from scratch (rsft would skip a file it has ingested)
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
                Path(str(out) + ".bad").unlink(missing_ok=True)
                runs[k].append(measure(code, *argv))
        row["load_avg_after"] = round(os.getloadavg()[0], 2)
        for k, rs in runs.items():
            row[k] = {"seconds": statistics.median(r["seconds"] for r in rs), "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                      "stdout": rs[-1]["stdout"], "runs_s": [r["seconds"] for r in rs],
                      "cpu_s": statistics.median(r["cpu_s"] for r in rs), "runs_cpu_s": [r["cpu_s"] for r in rs]}

        def ratio(a: str, b: str, of: str = "seconds") -> float:  # the median of the per-round ratios
            return round(statistics.median(x[of] / y[of] for x, y in zip(runs[a], runs[b])), 2)

        row["rsft_over_polars"] = ratio("rsft", "polars")
        row["rsft_flat_over_polars"] = ratio("rsft_flat", "polars")
        for k in [k for k in runs if k != "polars"]:  # CPU seconds: the work done, whatever the load
            row[f"{k}_cpu_over_polars"] = ratio(k, "polars", "cpu_s")
        if "pandera" in runs:
            row["pandera_over_polars"] = ratio("pandera", "polars")
            row["pandera_over_rsft_flat"] = ratio("pandera", "rsft_flat")
            row["pandera_over_rsft"] = ratio("pandera", "rsft")
        if "pandas" in runs:
            row["pandas_over_rsft"] = ratio("pandas", "rsft")
            row["pandas_over_rsft_flat"] = ratio("pandas", "rsft_flat")
        for k in ("rsft", "rsft_flat", "polars", "pandas", "pandera"):
            if k in row:
                row[f"{k}_mb_per_s"] = round(row["gb"] * 1000 / row[k]["seconds"], 1)
        print(json.dumps(row), file=sys.stderr, flush=True)
        results["sizes"].append(row)
        shutil.rmtree(work, ignore_errors=True)
    if len(results["sizes"]) > 1:
        a, b = results["sizes"][0], results["sizes"][-1]
        for k in ("rsft", "rsft_flat", "polars"):
            results[f"{k}_peak_rss_ratio_largest_vs_smallest"] = round(b[k]["peak_rss_mb"] / a[k]["peak_rss_mb"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
