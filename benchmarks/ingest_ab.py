"""Interleaved A/B of rsft trees against raw Polars on one input file, for a shared, noisy machine.

    python benchmarks/ingest_ab.py FILE {flat,demo} ROUNDS TREE_A TREE_B [--out DIR]

A tree is a directory holding an ``rsft`` package (``git archive <commit> | tar -x -C DIR`` for
main, a worktree for the change): each runs through ``PYTHONPATH``. Each round runs raw Polars
once (``benchmarks/ingest.py``'s ``POLARS`` child, ``POLARS_JSONL`` for a ``.jsonl`` file), then
the trees with ``benchmarks/ingest.py``'s ``RSFT`` child, alternating which goes first. A ratio is
the median of the per-round ratios of CPU seconds (user + system of the child; on a shared
machine less disturbed than wall time) and wall seconds to raw Polars'; the load average is
recorded before each round, and the child's minor page faults (the text scan's page faults were
a measured cost). Prints one JSON object; each tree's output stays under ``--out`` (``out_<i>``)
for comparing the trees' parts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ingest as bench  # noqa: E402  (the benchmark's child snippets)


def _run(code: str, args: list[str], tree: str | None = None) -> dict:
    """One child: wall and CPU seconds (user, system), minor page faults."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    if tree:
        env["PYTHONPATH"] = tree
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return {"wall": round(wall, 3), "cpu": round(user + system, 3), "user": round(user, 3), "sys": round(system, 3),
            "faults": r1.ru_minflt - r0.ru_minflt}


def _ratios(runs: list[dict], polars: list[dict], key: str) -> list[float]:
    """The median, least and largest per-round ratio to raw Polars, and the median seconds."""
    r = [a[key] / b[key] for a, b in zip(runs, polars)]
    return [round(statistics.median(r), 3), round(min(r), 3), round(max(r), 3), round(statistics.median(a[key] for a in runs), 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("contract", choices=["flat", "demo"])
    ap.add_argument("rounds", type=int)
    ap.add_argument("trees", nargs=2)
    ap.add_argument("--out", type=Path, default=Path.cwd() / "ingest-ab")
    args = ap.parse_args()
    jsonl = args.file.endswith(".jsonl")
    baseline, dataset = (bench.POLARS_JSONL, "logs") if jsonl else (bench.POLARS, "sensors")
    cfg = str(HERE.parent / "examples" / "factory.yaml")
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {"polars": [], **{t: [] for t in args.trees}}
    loads = []
    for i in range(args.rounds):
        loads.append(round(os.getloadavg()[0], 1))
        sink = args.out / "polars.parquet"
        sink.unlink(missing_ok=True)
        runs["polars"].append(_run(baseline, [args.file, str(sink)]))
        for t in args.trees if i % 2 == 0 else args.trees[::-1]:
            out = args.out / f"out_{args.trees.index(t)}"
            shutil.rmtree(out, ignore_errors=True)
            runs[t].append(_run(bench.RSFT, [args.file, str(out), cfg, args.contract, dataset], t))
        print(json.dumps({"round": i, "load": loads[-1], **{k: v[-1] for k, v in runs.items()}}), file=sys.stderr, flush=True)
    a, b = args.trees
    summary = {"file": args.file, "contract": args.contract, "rounds": args.rounds, "load": [min(loads), max(loads)],
               "polars_cpu_s": round(statistics.median(r["cpu"] for r in runs["polars"]), 2),
               "b_less_cpu_in": sum(y["cpu"] < x["cpu"] for x, y in zip(runs[a], runs[b]))}
    for t in args.trees:
        summary[t] = {"cpu_over_polars": _ratios(runs[t], runs["polars"], "cpu"),
                      "wall_over_polars": _ratios(runs[t], runs["polars"], "wall"),
                      "sys_s": round(statistics.median(r["sys"] for r in runs[t]), 2),
                      "faults_k": round(statistics.median(r["faults"] for r in runs[t]) / 1000)}
    print(json.dumps({"summary": summary, "loads": loads, "runs": runs}))


if __name__ == "__main__":
    main()
