"""Prefect history: the embedded Prefect database's size over simulated nights, with and without
the retention of flows/history.py.

    PYTHONPATH=. python benchmarks/prefect_history.py [--nights 30] [--keep-nights 7] [--tasks 10]
        [--log-lines 3] [--out benchmarks/results-prefect-history.json]

Each arm is a fresh process with its own PREFECT_HOME (the embedded server's SQLite file, as in
a state dir). Night n (one a day, backdated: benchmarks/_nights.py) is a ``nightly-retrain``
run with ingest/select/finetune sub-flow runs, ``--tasks`` task runs each with ``--log-lines``
log lines, an artifact per run. Arm ``none``: nothing prunes (rsft before this change); at the
end one ``rsft gc`` (``prune(vacuum="full")``), timed. Arm ``nightly``: after every night the
night's retention (``after_night``: prune, ``PRAGMA incremental_vacuum`` — which returns space
only once the file is in incremental mode, i.e. after a first ``rsft gc``); at the end one
``rsft gc``. Arm ``gc-first``: one ``rsft gc`` after night 1 (switches the file to
auto_vacuum=incremental), then the night's retention as ``nightly``. Sizes: the database file
with its -wal and -shm files (what the state dir's ``prefect/`` holds of it). Events are not
stored (``PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED=false``): Prefect's own event vacuum
keeps 7 days of them, in ephemeral mode too, which nights backdated within minutes cannot show.
The arms run one after another (``--arms`` one each, in parallel processes, for a quicker run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def arm(name: str, a) -> dict:
    """One arm in this process (PREFECT_HOME already set by the parent)."""
    from datetime import datetime, timedelta, timezone

    from prefect import get_client

    from flows.crashed import pipeline_labels
    from flows.history import database_file, prune
    from rsft.config import load_config
    from benchmarks._nights import after_a_night, make_night

    # the nights are one pipeline's, labelled as its runs label themselves (flows/crashed.py)
    cfg = load_config(REPO / "examples" / "factory.yaml", {"state.keep_nights": a.keep_nights})

    start = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=a.nights)
    rec = {"lines": [], "cpu": [], "sizes": [], "files": []}
    for n in range(a.nights):
        with get_client(sync_client=True) as client:
            make_night(client, start + timedelta(days=n), tasks=a.tasks, log_lines=a.log_lines,
                       labels=pipeline_labels(cfg))
        if name == "gc-first" and n == 0:
            prune(a.keep_nights, pipeline=cfg, vacuum="full")
        after_a_night(cfg, rec, prune=name != "none")
    t0, c0 = time.perf_counter(), time.process_time()
    rep = prune(a.keep_nights, pipeline=cfg, vacuum="full")
    gc = {"runs": len(rep.runs), "before": rep.bytes_before, "after": rep.bytes_after, "vacuum": rep.vacuum,
          "seconds": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2)}
    import sqlite3

    con = sqlite3.connect(database_file())
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("flow_run", "task_run", "flow_run_state", "task_run_state", "log", "artifact", "events")}
    con.close()
    return {"arm": name, "rows_at_end": rows, "bytes_per_night": rec["sizes"], "db_file_bytes_per_night": rec["files"],
            "retention_cpu_s": rec["cpu"], "last_line": rec["lines"][-1] if rec["lines"] else "",
            "gc_at_end": gc}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nights", type=int, default=30)
    p.add_argument("--keep-nights", type=int, default=7)
    p.add_argument("--tasks", type=int, default=10, help="task runs per sub-flow run")
    p.add_argument("--log-lines", type=int, default=3, help="log lines per task run")
    p.add_argument("--arms", default="none,nightly,gc-first")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    a = p.parse_args()
    if a.arm:
        print(json.dumps(arm(a.arm, a)))
        return
    from benchmarks._nights import run_arm

    results = []
    for name in a.arms.split(","):
        home = Path(tempfile.mkdtemp(prefix=f"prefect-history-{name}-"))
        # events: Prefect's own event vacuum keeps 7 days of them (in ephemeral mode too); nights
        # backdated within minutes would keep them all, so they are not stored here
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PREFECT_LOGGING_LEVEL": "WARNING"}
        r = run_arm(__file__, name, sys.argv[1:], env)
        results.append(r)
        mb = [round(b / 1e6, 2) for b in r["bytes_per_night"]]
        fmb = [round(b / 1e6, 2) for b in r["db_file_bytes_per_night"]]
        print(f"{name}: rows at the end {r['rows_at_end']}; MB (with -wal, -shm) after nights 1, 7, 8, 15, last: {[mb[i] for i in (0, 6, 7, 14, -1) if i < len(mb)]}; "
              f"prefect.db alone {[fmb[i] for i in (0, 6, 7, 14, -1) if i < len(fmb)]}; "
              f"gc at the end: {r['gc_at_end']}; wall {r['wall_s']} s, load {r['load']:.1f}", flush=True)
    if a.out:
        a.out.write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k not in ("out", "arm")},
                                     "results": results}, indent=1))


if __name__ == "__main__":
    main()
