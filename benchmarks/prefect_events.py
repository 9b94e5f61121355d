"""Prefect's events in the embedded database over a backfill: nights run back to back by
Prefect's engine (real flows, events stored as in a state dir), the night's retention after each
— with and without the deletion of the pruned runs' events (``flows.history.drop_events``).

    PYTHONPATH=. python benchmarks/prefect_events.py [--nights 10] [--keep-nights 3] [--tasks 60]
        [--out benchmarks/results-prefect-events.json]

Each arm is a fresh process with its own PREFECT_HOME. A night is a ``nightly-retrain`` flow run
(labelled as rsft's nights label themselves) with ``ingest``, ``select``, ``sample-chunks`` and
``finetune`` sub-flow runs of ``--tasks`` task runs each (the trial's nights: ~265 task runs,
5 flow runs). ``rsft gc`` (``prune(vacuum="full")``) once after night 1 puts the file in
auto_vacuum=incremental mode, as after a first gc; then the night's retention (``after_night``)
after each night. Arm ``events-kept`` is rsft before the change (events left to Prefect's 7-day
vacuum: ``drop_events`` a no-op); ``events-pruned`` is rsft now. Sizes: the SQLite file with its
-wal and -shm. Arms run one after the other (``--arms`` one, for one).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ARMS = ("events-kept", "events-pruned")


def _night_flow(cfg, tasks: int):
    """A night shaped like rsft's: a labelled top-level run, four sub-flow runs of ``tasks`` task runs."""
    from prefect import flow, get_client, runtime, task

    from flows.crashed import pipeline_labels

    @task
    def chunk(i: int) -> int:
        return i

    def sub(name: str):
        @flow(name=name)
        def run() -> int:
            return sum(chunk(i) for i in range(tasks))
        return run

    subs = [sub(n) for n in ("ingest", "select", "sample-chunks", "finetune")]

    @flow(name="nightly-retrain")
    def night() -> int:
        with get_client(sync_client=True) as c:
            c.update_flow_run_labels(runtime.flow_run.id, pipeline_labels(cfg))
        return sum(s() for s in subs)

    return night


def _count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def arm(name: str, a) -> dict:
    """One arm in this process (PREFECT_HOME set by the parent)."""
    import flows.history as history
    from benchmarks._nights import after_a_night
    from flows.history import database_file, prune
    from rsft.config import load_config

    if name == "events-kept":  # rsft before: the events stay for Prefect's 7-day vacuum
        history.drop_events = lambda db, ids, before, dry_run=False: (0, "")
    cfg = load_config(REPO / "examples" / "factory.yaml", {"state.keep_nights": a.keep_nights})
    night = _night_flow(cfg, a.tasks)
    rec = {"lines": [], "cpu": [], "sizes": [], "files": []}
    events, gc_first = [], ""
    for n in range(a.nights):
        night()
        if n == 0:
            gc_first = prune(a.keep_nights, pipeline=cfg, vacuum="full").vacuum
        after_a_night(cfg, rec)
        events.append(_count(database_file(), "events"))
    k = a.keep_nights  # nights k+1.. prune one night each: the growth once retention works
    files = rec["files"]
    per_night = (files[-1] - files[k]) / max(1, a.nights - 1 - k)
    return {"arm": name, "bytes_per_night": rec["sizes"], "db_file_bytes_per_night": files, "events_per_night": events,
            "retention_cpu_s": rec["cpu"], "growth_db_file_bytes_per_night_after_keep": round(per_night),
            "gc_after_night_1": gc_first, "last_line": rec["lines"][-1],
            "rows_at_end": {t: _count(database_file(), t) for t in ("flow_run", "task_run", "events", "event_resources")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=10)
    ap.add_argument("--keep-nights", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results-prefect-events.json"))
    a = ap.parse_args()
    if a.arm:
        print(json.dumps(arm(a.arm, a)))
        return
    from benchmarks._nights import run_arm

    out = []
    for name in a.arms.split(","):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "PREFECT_HOME": home, "PYTHONPATH": str(REPO),
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PREFECT_LOGGING_LEVEL": "WARNING"}
            env.pop("PREFECT_API_URL", None)
            res = run_arm(__file__, name, ["--nights", str(a.nights), "--keep-nights", str(a.keep_nights),
                                           "--tasks", str(a.tasks)], env)
            out.append(res)
            mb = [round(b / 1e6, 2) for b in res["bytes_per_night"]]
            db_mb = [round(b / 1e6, 2) for b in res["db_file_bytes_per_night"]]
            print(f"{name}: MB per night with -wal {mb}, prefect.db alone {db_mb}; events {res['events_per_night']}; "
                  f"prefect.db growth nights {a.keep_nights + 1}-{a.nights}: "
                  f"{res['growth_db_file_bytes_per_night_after_keep'] / 1e6:.2f} MB/night; gc after night 1: "
                  f"{res['gc_after_night_1']}; "
                  f"retention cpu median {sorted(res['retention_cpu_s'])[len(res['retention_cpu_s']) // 2]} s; "
                  f"{res['wall_s']} s wall, {res['child_cpu_s']} cpu-s, load {res['load']:.1f}")
    Path(a.out).write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k not in ("out", "arm")},
                                       "arms": out}, indent=1))


if __name__ == "__main__":
    main()
