"""Prefilter throughput and memory vs a plain Polars scan of the same columns, in one run.

    python benchmarks/prefilter.py [--rows 10000000 40000000] [--out DIR] [--baseline REF] [--null-share S]

For each size: synthetic sensor rows (the demo's generator: 24 machines, injected stuck runs,
spikes, duplicates; with --null-share S each sensor reading null with probability S, scattered,
seeded: a plant whose export has gaps) written once as Parquet, then, each in a fresh process:
  rsft    rsft.prefilter.prefilter with the demo's rule set (examples/factory.yaml: duplicate
          key, stuck over 8 readings, spike over 11 readings, per machine in time order):
          per-rule counts + the kept rows written to Parquet
  plain   pl.scan_parquet(...).select(same columns).sink_parquet(...)  (the floor)
  rsft_rolling  (with --rolling) the same prefilter also deriving trailing rolling features on the
          kept rows (mean and std over 8 readings of every sensor, features.rolling): their cost
  quantiles_only  the spike rule's rolling quantiles alone (median, q25, q75 × its columns, per
          machine in time order, one day file at a time, results discarded) by Polars' centred
          kernels (rsft computes them with a merge network in NumPy instead, Polars' kernels only
          where a window holds a non-finite reading)
  quantiles_trailing_only  the same windows as trailing kernels (how rsft computed them before
          its sorting network (2026-12-05), shifted back by (w-1)//2, patching each machine's last rows)
  per_day the rules as a night applies them (rsft.keptpool's per-day jobs): each day file read,
          sorted, flagged by the demo rules, its kept rows written — no whole-pool split pass
  baseline  (with --baseline REF) rsft as it was at git REF (its ``rsft/`` from ``git archive``),
          the same rules on the same files, in the same run
Prints one JSON object: wall seconds, CPU seconds and peak RSS (the child's VmHWM) of each,
rsft/plain per size in wall and CPU seconds (issue 19's goal: ≤ 3× with the demo rules), and
rsft's peak-RSS ratio largest/smallest size (goal ≤ 1.25).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import measure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

RSFT = """
import os, sys, json
if os.environ.get("RSFT_BASELINE_TREE"):
    sys.path.insert(0, os.environ["RSFT_BASELINE_TREE"])
from rsft.config import load_config
from rsft.prefilter import prefilter
cfg = load_config(sys.argv[3])
s = prefilter(sys.argv[1], sys.argv[2], cfg.prefilter)
print(json.dumps({"rows_in": s.rows_in, "rows_out": s.rows_out, "dropped": s.dropped}))
"""

RSFT_ROLLING = """
import sys, json
from rsft.config import FeaturesConfig, load_config
from rsft.features import rolling_feature_exprs
from rsft.prefilter import Derive, prefilter
cfg = load_config(sys.argv[3])
f = FeaturesConfig(numeric=cfg.features.numeric, rolling=[{"columns": cfg.features.numeric, "window": 8, "stats": ["mean", "std"]}])
s = prefilter(sys.argv[1], sys.argv[2], cfg.prefilter, derive=Derive(tuple(rolling_feature_exprs(f)), "machine_id", "ts", 7))
print(json.dumps({"rows_out": s.rows_out}))
"""

PER_DAY = """
import os, sys, glob
if os.environ.get("RSFT_BASELINE_TREE"):
    sys.path.insert(0, os.environ["RSFT_BASELINE_TREE"])
import polars as pl
from rsft.config import load_config
from rsft.prefilter import flagged
cfg = load_config(sys.argv[3]).prefilter
os.makedirs(sys.argv[2], exist_ok=True)
for f in sorted(glob.glob(sys.argv[1] + "/*.parquet")):
    lf, flags = flagged(pl.scan_parquet(f), cfg)
    lf.filter(pl.all_horizontal(flags)).drop(flags).collect().write_parquet(os.path.join(sys.argv[2], os.path.basename(f)))
"""

PLAIN = """
import sys, polars as pl
lf = pl.scan_parquet(sys.argv[1])
lf.select(lf.collect_schema().names()).sink_parquet(sys.argv[2])
"""


QUANTILES = """
import sys, glob, polars as pl
from rsft.config import load_config
rule = next(r for r in load_config(sys.argv[2]).prefilter.rules if r.kind == "spike")
w = rule.window
exprs = [e.over(rule.by).alias(f"{c}_{i}") for c in rule.columns for i, e in enumerate((
    pl.col(c).rolling_median(w, center=True, min_samples=1),
    pl.col(c).rolling_quantile(0.25, "linear", w, center=True, min_samples=1),
    pl.col(c).rolling_quantile(0.75, "linear", w, center=True, min_samples=1)))]
for f in sorted(glob.glob(sys.argv[1] + "/*.parquet")):
    pl.read_parquet(f).sort(rule.by, rule.order_by).select(exprs)
"""


# the same windows as trailing windows (what rsft.prefilter.with_window_stats computed before its
# sorting network, shifted back by (w-1)//2; the patch of each machine's last rows left out)
QUANTILES_TRAILING = QUANTILES.replace("center=True, ", "")


def make_pool(path: Path, rows: int, null_share: float = 0.0) -> int:
    """Synthetic sensor days (demo generator, 24 machines) until ``rows``; one Parquet file per day;
    each sensor reading (s01 … s12) null with probability ``null_share`` (seeded per day)."""
    import numpy as np
    import polars as pl

    from rsft.config import SynthConfig
    from rsft.synth import generate_day, make_regime

    cfg = SynthConfig(seed=5, machines=24, samples_per_day=4000, days=100_000)
    regime = make_regime(cfg)
    path.mkdir(parents=True, exist_ok=True)
    n, day = 0, 0
    while n < rows:
        df, _ = generate_day(cfg, day, regime)
        df = df.head(rows - n)
        if null_share:
            rng = np.random.default_rng([17, day])
            df = df.with_columns(pl.when(pl.Series(rng.random(df.height) < null_share)).then(None).otherwise(pl.col(c)).alias(c)
                                 for c in df.columns if c[0] == "s" and c[1:].isdigit())
        df.write_parquet(path / f"day-{day:05d}.parquet")
        n += df.height
        day += 1
    return n


def _same_rows(a: Path, b: Path) -> bool:
    import polars as pl
    return pl.read_parquet(a).equals(pl.read_parquet(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 40_000_000])
    ap.add_argument("--out", type=Path, default=REPO / ".rsft" / "bench-prefilter")
    ap.add_argument("--rolling", action="store_true", help="also time the prefilter deriving rolling features")
    ap.add_argument("--baseline", metavar="REF", help="also time rsft's prefilter as it was at this git ref")
    ap.add_argument("--null-share", type=float, default=0.0, metavar="S",
                    help="each sensor reading null with probability S (scattered, seeded; default 0)")
    args = ap.parse_args()
    baseline = None
    if args.baseline:
        import subprocess
        import tempfile
        baseline = tempfile.mkdtemp(prefix="rsft-baseline-")
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "rsft"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
    cfg = str(REPO / "examples" / "factory.yaml")
    out = {"sizes": []}
    for rows in args.rows:
        work = args.out / f"{rows}"
        shutil.rmtree(work, ignore_errors=True)
        t = time.perf_counter()
        n = make_pool(work / "pool", rows, args.null_share)
        row = {"rows": n, "null_share": args.null_share, "generate_s": round(time.perf_counter() - t, 1)}
        row["rsft"] = measure(RSFT, str(work / "pool"), str(work / "kept.parquet"), cfg)
        row["plain"] = measure(PLAIN, str(work / "pool"), str(work / "plain.parquet"))
        row["per_day"] = measure(PER_DAY, str(work / "pool"), str(work / "per-day"), cfg)
        row["per_day_cpu_over_plain"] = round(row["per_day"]["cpu_s"] / row["plain"]["cpu_s"], 2)
        if baseline:
            os.environ["RSFT_BASELINE_TREE"] = baseline
            try:
                row["baseline"] = measure(RSFT, str(work / "pool"), str(work / "kept-baseline.parquet"), cfg)
                row["baseline_per_day"] = measure(PER_DAY, str(work / "pool"), str(work / "per-day-baseline"), cfg)
            finally:
                del os.environ["RSFT_BASELINE_TREE"]
            row["baseline_per_day_cpu_over_plain"] = round(row["baseline_per_day"]["cpu_s"] / row["plain"]["cpu_s"], 2)
            row["baseline"]["ref"] = args.baseline
            row["baseline_over_plain"] = round(row["baseline"]["seconds"] / row["plain"]["seconds"], 2)
            row["baseline_cpu_over_plain"] = round(row["baseline"]["cpu_s"] / row["plain"]["cpu_s"], 2)
            row["same_kept_rows_as_baseline"] = _same_rows(work / "kept.parquet", work / "kept-baseline.parquet")
            row["same_kept_rows_per_day_as_baseline"] = all(
                _same_rows(f, work / "per-day-baseline" / f.name) for f in sorted((work / "per-day").glob("*.parquet")))
        if args.rolling:
            row["rsft_rolling"] = measure(RSFT_ROLLING, str(work / "pool"), str(work / "kept-rolling.parquet"), cfg)
            row["rsft_rolling_over_rsft"] = round(row["rsft_rolling"]["seconds"] / row["rsft"]["seconds"], 2)
        row["quantiles_only"] = measure(QUANTILES, str(work / "pool"), cfg)
        row["quantiles_trailing_only"] = measure(QUANTILES_TRAILING, str(work / "pool"), cfg)
        row["rsft_over_plain"] = round(row["rsft"]["seconds"] / row["plain"]["seconds"], 2)
        row["rsft_cpu_over_plain"] = round(row["rsft"]["cpu_s"] / row["plain"]["cpu_s"], 2)
        row["quantiles_only_over_plain"] = round(row["quantiles_only"]["seconds"] / row["plain"]["seconds"], 2)
        row["quantiles_trailing_only_over_plain"] = round(row["quantiles_trailing_only"]["seconds"] / row["plain"]["seconds"], 2)
        out["sizes"].append(row)
        shutil.rmtree(work, ignore_errors=True)
    if len(out["sizes"]) > 1:
        a, b = out["sizes"][0], out["sizes"][-1]
        out["rsft_peak_rss_ratio_largest_vs_smallest"] = round(b["rsft"]["peak_rss_mb"] / a["rsft"]["peak_rss_mb"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
