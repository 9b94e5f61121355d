"""Nightly growth: a synthetic plant's history grown one day per night; each night's stage times
and the state dir's size, against the night number.

    PYTHONPATH=. python benchmarks/nightly_growth.py [--nights 60] [--machines 20] [--samples-per-day 1440]
        [--keep-nights 2] [--paired 5] [--out benchmarks/results-nightly-growth.json] [--plot benchmarks/nightly-growth.png]

Night n: one new day of pool readings (``rsft.synth.generate_day``, the demo's machines and
faults, one Parquet export) and the night's target sample / hold-out are written, then one real
night runs in this process (``rsft.pipeline.run_night`` with the LOCAL steps, each step timed):
ingest → prefilter (incremental kept pool) → fit the scorer → select (the whole-pool scoring pass)
→ report → fine-tune + register + gate (MLflow in the state dir; a short step budget), then
``rsft gc`` (``--keep-nights``; the night's retention, timed as its own step). The demo's rules (duplicate key, stuck over 8, spike over 11
readings) and, with ``--rolling``, rolling features.

Goals (issue 19): one new day on the last night's history costs ≤ 1.2× one new day on a 1-day
history (night 2) for every stage but the scoring pass (medians of nights 2-6 vs the last five
nights: the machine is shared); the scoring pass ≥ 5 M rows/s; the state dir after night 30 ≤ 1.3× (ingested data + one
kept pool + MLflow, i.e. the registered models with their runs' artifacts).

``--paired K`` then runs K pairs of nights: one new day on a short history (a second plant of 2
nights, then its nights 3, 4, …) and one on the long history (nights N+1, …), back to back, so
both nights of a pair see the same load on the shared machine; ``paired`` in the JSON has the
per-stage medians and long/short ratios (the fairer comparison when the load drifts during a run).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("ingest", "prefilter", "fit_scorer", "select", "report", "finetune", "gc")


def config(work: Path, a) -> "PipelineConfig":  # noqa: F821
    import yaml

    from rsft.config import load_config

    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    # the retention runs as the timed gc step below (the night's own would run it twice)
    data["state"] = {"dir": str(work / "state"), "experiment": "nightly-growth", "keep_nights": a.keep_nights,
                     "gc_after_night": False}
    # days = the whole run: the generator's warming trend spans the pool (12 → 30 °C) as it grows;
    # each night writes only its new day (generate_day of that day)
    data["synth"].update(machines=a.machines, days=a.nights, target_days=1, samples_per_day=a.samples_per_day,
                         target_sample_rows=300, target_holdout_rows=1000, pool_format="parquet")
    raw = work / "raw"
    data["data"] = {"pool": [str(raw / "pool")], "target_sample": str(raw / "target" / "sample.parquet"),
                    "target_holdout": str(raw / "target" / "holdout.parquet")}
    data["scorer"]["pool_sample_rows"] = 20_000
    data["sampling"]["chunk_rows"] = 200_000
    data["train"] = {**data.get("train", {}), "max_steps": 150, "min_steps": 50, "eval_every": 50,
                     "pretrain_max_steps": 300, "pretrain_rows": 20_000, "stream_above_rows": 10_000_000}
    if a.rolling:
        data["features"]["rolling"] = [{"columns": ["s01", "s05"], "window": 8, "stats": ["mean", "std"]}]
    if a.kept_compression:
        data["prefilter"]["kept_compression"] = a.kept_compression
    path = work / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def write_night(cfg, raw: Path, night: int) -> int:
    """Night ``night``'s new exports: pool day ``night - 1`` and that night's target files."""
    from rsft.synth import _write_sensors, generate_day, generate_target, make_regime

    s = cfg.synth
    sensors, _ = generate_day(s, night - 1, make_regime(s))
    _write_sensors(sensors, raw / "pool" / f"sensors_day{night - 1:03d}.parquet")
    _write_sensors(generate_target(s, night, s.target_sample_rows, stream=0), raw / "target" / "sample.parquet")
    _write_sensors(generate_target(s, night, s.target_holdout_rows, stream=1), raw / "target" / "holdout.parquet")
    return sensors.height


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=60)
    ap.add_argument("--machines", type=int, default=20)
    ap.add_argument("--samples-per-day", type=int, default=1440)
    ap.add_argument("--keep-nights", type=int, default=2)
    ap.add_argument("--rolling", action="store_true")
    ap.add_argument("--kept-compression", choices=["lz4", "uncompressed", "zstd", "snappy", "dictionary"],
                    help="prefilter.kept_compression (default: the example config's, dictionary)")
    ap.add_argument("--paired", type=int, default=0, metavar="K",
                    help="then K pairs of nights: one new day on a short history (a second plant of 2 nights) and one "
                         "on the long one, back to back (the same load), compared per stage")
    ap.add_argument("--work", default="/tmp/rsft-nightly-growth")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results-nightly-growth.json"))
    ap.add_argument("--plot", default=str(REPO / "benchmarks" / "nightly-growth.png"))
    ap.add_argument("--from-json", help="Only recompute the goals and the plot from an earlier run's JSON.")
    a = ap.parse_args()
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
        result["goals"] = goals(result["nights"])
        Path(a.out).write_text(json.dumps(result, indent=1))
        print(json.dumps(result["goals"], indent=1))
        plot(result["nights"], a.plot)
        return

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = config(work, a)
    os.environ["RSFT_STATE_DIR"] = cfg.state.dir

    import torch

    torch.set_num_threads(1)
    from rsft.pipeline import gc
    from rsft.pipeline import data, finetune_stage, run_night
    from rsft.pipeline.layout import state
    from rsft.pipeline.night import Steps
    from rsft.pipeline.results import Selection
    from rsft.state import disk_usage
    from rsft.keptpool import manifest_files

    def run_one(cfg, work: Path, night: int) -> dict:
        """Night ``night`` of the plant under ``work``: its new exports, the night, gc; timed."""
        os.environ["RSFT_STATE_DIR"] = cfg.state.dir
        t: dict[str, float] = {}
        cpu: dict[str, float] = {}

        def timed(name, fn):
            def run(*args):
                t0, c0 = time.perf_counter(), time.process_time()
                out = fn(*args)
                t[name] = round(time.perf_counter() - t0, 4)
                cpu[name] = round(time.process_time() - c0, 4)  # all threads of this process
                return out
            return run

        def select(c):
            pre = timed("prefilter", data.prefilter_stage)(c)
            scored = timed("fit_scorer", data.fit_scorer_stage)(c, pre)
            sel = timed("select", data.select_stage)(c, pre, scored)
            info["pre"], info["sel"] = pre, sel
            return Selection(pre, scored, sel, timed("report", data.report_stage)(c, pre, scored, sel))

        info: dict = {}
        new_rows = write_night(cfg, work / "raw", night)
        steps = Steps(ingest=timed("ingest", data.ingest_stage), select=select, finetune=timed("finetune", finetune_stage))
        t0 = time.perf_counter()
        summary = run_night(cfg, steps)
        t["night"] = round(time.perf_counter() - t0, 4)
        rep = timed("gc", lambda c: gc.collect(c, sizes=False, sweep=False))(cfg)  # what the night's retention runs (gc.after_night)
        usage = disk_usage(state(cfg), cfg.name)
        pre, sel = info["pre"], info["sel"]
        one_pool = sum(os.path.getsize(f) for f in manifest_files(pre.output))
        row = {"night": night, "history_days": night, "new_rows": new_rows, "pool_rows": pre.rows_in,
               "kept_rows": pre.rows_out, "selected_rows": sel.rows_out, "days_prefiltered": pre.days_computed,
               "seconds": t, "cpu_seconds": cpu, "scoring_rows_per_s": round(sel.rows_in / t["select"]) if t["select"] else None,
               # rows per CPU second of all threads: the work, whatever the other users' load
               "scoring_rows_per_cpu_s": round(sel.rows_in / cpu["select"]) if cpu["select"] else None,
               "loadavg_1min": round(os.getloadavg()[0], 2),
               "state_bytes": usage, "one_kept_pool_bytes": one_pool, "gc_removed_bytes": rep.bytes_removed,
               "promoted": summary["promoted"], "model_version": summary["model_version"]}
        row["state_ratio"] = round(usage["total"] / (usage["ingested"] + one_pool + usage["mlflow"]), 3)
        return row

    nights = []
    for night in range(1, a.nights + 1):
        row = run_one(cfg, work, night)
        nights.append(row)
        print(json.dumps({k: row[k] for k in ("night", "pool_rows", "days_prefiltered", "seconds", "state_ratio")}),
              flush=True)

    paired = None
    if a.paired:
        # the same new day on a short and on the long history, night by night in turn, so both
        # see the same load on the shared machine: a short plant (2 nights, then its nights 3..)
        # beside the long one (its nights N+1..)
        short_work = work / "short"
        short_work.mkdir()
        short = config(short_work, a)
        for night in (1, 2):
            run_one(short, short_work, night)
        pairs = []
        for k in range(a.paired):
            s_row = run_one(short, short_work, 3 + k)
            l_row = run_one(cfg, work, a.nights + 1 + k)
            pairs.append({"short": s_row, "long": l_row})
            print(json.dumps({"pair": k, "short_history_days": 3 + k, "long_history_days": a.nights + 1 + k,
                              "cpu_short": s_row["cpu_seconds"], "cpu_long": l_row["cpu_seconds"]}), flush=True)
        paired = paired_goals(pairs)

    result = {
        "command": "PYTHONPATH=. python benchmarks/nightly_growth.py " + " ".join(sys.argv[1:]),
        "setup": {"nights": a.nights, "machines": a.machines, "samples_per_day": a.samples_per_day,
                  "rows_per_day": nights[0]["new_rows"], "keep_nights": a.keep_nights, "rolling": a.rolling,
                  "kept_compression": a.kept_compression or "dictionary (the example config's)",
                  "cpus": os.cpu_count()},
        "goals": goals(nights),
        **({"paired": paired} if paired else {}),
        "nights": nights,
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["goals"], indent=1))
    if paired:
        print(json.dumps(paired, indent=1))
    plot(nights, a.plot)


def paired_goals(pairs: list[dict]) -> dict:
    """Medians over the pairs, per stage: CPU and wall seconds of the long history's night over
    the short one's (run back to back: the same load)."""
    out = {"pairs": len(pairs),
           "history_days": {"short": [p["short"]["history_days"] for p in pairs],
                            "long": [p["long"]["history_days"] for p in pairs]}}
    for key in ("cpu_seconds", "seconds"):
        short = {s: statistics.median(p["short"][key][s] for p in pairs) for s in STAGES}
        long_ = {s: statistics.median(p["long"][key][s] for p in pairs) for s in STAGES}
        ratios = {s: round(long_[s] / max(short[s], 1e-9), 3) for s in STAGES}
        out[key] = {"short": {s: round(v, 4) for s, v in short.items()}, "long": {s: round(v, 4) for s, v in long_.items()},
                    "ratio_long_vs_short": ratios, "ratio_ok": {s: ratios[s] <= 1.2 for s in STAGES if s != "select"}}
    out["scoring_rows_per_s_long"] = statistics.median(p["long"]["scoring_rows_per_s"] for p in pairs)
    out["scoring_rows_per_cpu_s_long"] = statistics.median(p["long"]["scoring_rows_per_cpu_s"] for p in pairs)
    return out


def goals(nights: list[dict], k: int = 5) -> dict:
    """Medians of nights 2..k+1 (one new day on a 1..k-day history) vs the last k nights, in
    wall seconds and in CPU seconds of this process (all its threads): the machine is shared,
    so wall time carries other users' load; CPU time is the work the night did."""
    def med(rows, stage, key):
        return statistics.median(r[key][stage] for r in rows)

    first, last = nights[1:k + 1], nights[-k:]
    out = {"compared": f"median of nights {first[0]['night']}-{first[-1]['night']} vs {last[0]['night']}-{last[-1]['night']}"}
    for key in ("seconds", "cpu_seconds"):
        if key not in nights[0]:
            continue
        ratios = {s: round(med(last, s, key) / max(med(first, s, key), 1e-9), 3) for s in STAGES}
        out[key] = {"first": {s: round(med(first, s, key), 3) for s in STAGES},
                    "last": {s: round(med(last, s, key), 3) for s in STAGES},
                    "ratio_last_vs_first": ratios,
                    "ratio_ok": {s: ratios[s] <= 1.2 for s in STAGES if s != "select"}}
    n30 = nights[min(29, len(nights) - 1)]
    return {
        **out,
        "scoring_rows_per_s_last": statistics.median(r["scoring_rows_per_s"] for r in last),
        **({"scoring_rows_per_cpu_s_last": statistics.median(r["scoring_rows_per_cpu_s"] for r in last),
            "loadavg_1min_median": statistics.median(r["loadavg_1min"] for r in nights)}
           if "scoring_rows_per_cpu_s" in last[0] else {}),
        "state_ratio_night30": n30["state_ratio"], "state_ratio_night30_ok": n30["state_ratio"] <= 1.3,
        "state_ratio_max": max(r["state_ratio"] for r in nights),
        "state_night30": n30["state_bytes"], "one_kept_pool_night30": n30["one_kept_pool_bytes"],
    }


def plot(nights, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["night"] for r in nights]
    fig, (ax1, ax0, ax2) = plt.subplots(1, 3, figsize=(18, 4.8))
    for ax, key, what in ((ax1, "seconds", "wall seconds"), (ax0, "cpu_seconds", "CPU seconds (all threads)")):
        for s in STAGES:
            ax.plot(x, [r.get(key, r["seconds"])[s] for r in nights], label=s, lw=1.3)
        ax.set(xlabel="night (= days of history)", ylabel=what, title=f"each night's stages: {what}")
        ax.set_yscale("log")
        ax.legend(fontsize=8, ncol=2)
    parts = ["ingested", "kept_pool", "runs", "base", "mlflow", "prefect", "other"]  # (prefect: in other before)
    ax2.stackplot(x, *[[r["state_bytes"].get(p, 0) / 1e6 for r in nights] for p in parts], labels=parts, alpha=0.8)
    ax2.plot(x, [(r["state_bytes"]["ingested"] + r["one_kept_pool_bytes"] + r["state_bytes"]["mlflow"]) * 1.3 / 1e6
                 for r in nights], "k--", lw=1, label="1.3 × (ingested + one kept pool + MLflow)")
    ax2.set(xlabel="night", ylabel="MB", title="state dir after the night and rsft gc")
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
