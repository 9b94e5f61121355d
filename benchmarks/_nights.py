"""Nights in a real Prefect database, backdated: what a night leaves in Prefect's history (a
top-level ``nightly-retrain`` run, its ingest/select/finetune sub-flow runs, their task runs and
states, logs, artifacts), created through the client at a chosen time. Prefect sets a run's
start time itself (now); the time a run was meant to start (``expected_start_time``, what
:mod:`flows.history` dates nights by) is the ``Scheduled`` state's. Used by
benchmarks/prefect_history.py and tests/test_prefect_history.py (the test imports the benchmark's
helper: benchmarks never depend on the test package)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

SUBFLOWS = ("ingest", "select", "finetune")


def make_flow(name: str):
    from prefect import Flow

    return Flow(fn=lambda: None, name=name)


def _task(name: str):
    from prefect import Task

    return Task(fn=lambda: None, name=name)


def make_run(client, name: str, when: datetime, *, parent_task_run_id=None, run_name: str | None = None, end=True):
    """A flow run meant to start at ``when``, taken through Running (to Completed when ``end``)."""
    from prefect.states import Completed, Running, Scheduled

    run = client.create_flow_run(make_flow(name), name=run_name, parent_task_run_id=parent_task_run_id,
                                 state=Scheduled(scheduled_time=when))
    client.set_flow_run_state(run.id, Running(), force=True)
    if end:
        client.set_flow_run_state(run.id, Completed(), force=True)
    return run


def _fill(client, flow_run_id, tasks: int, log_lines: int, key: str) -> None:
    """``tasks`` completed task runs with ``log_lines`` log lines each, and one markdown artifact."""
    from prefect.client.schemas.actions import ArtifactCreate, LogCreate
    from prefect.states import Completed
    from prefect.types._datetime import now

    logs = []
    for i in range(tasks):
        tr = client.create_task_run(_task(f"{key}-task"), flow_run_id, dynamic_key=str(i), state=Completed())
        logs += [LogCreate(name="rsft", level=logging.INFO, message=f"{key} chunk {i} line {j}: " + "x" * 120,
                           timestamp=now("UTC"), flow_run_id=flow_run_id, task_run_id=tr.id).model_dump(mode="json")
                 for j in range(log_lines)]
    if logs:
        client.create_logs(logs)
    client.create_artifact(ArtifactCreate(key=f"{key}-summary", type="markdown", flow_run_id=flow_run_id,
                                          data="# summary\n" + "| figure | value |\n" * 40))


def make_night(client, when: datetime, *, tasks: int = 3, log_lines: int = 2, finished: bool = True,
               top: str = "nightly-retrain", subflows: tuple[str, ...] = SUBFLOWS, labels: dict | None = None) -> dict:
    """One night at ``when``: a ``top`` run and its sub-flow runs, each with task runs, logs and an
    artifact. ``finished=False``: the top-level run stays RUNNING (a night in progress). ``labels``
    on the top-level run (a pipeline's: ``flows.crashed.pipeline_labels``; None: a run written
    before labels, or another project's). Returns the ids (``top``, ``subs``)."""
    from prefect.states import Completed

    night = make_run(client, top, when, run_name=f"retrain {when:%Y-%m-%d %H:%M}", end=False)
    if labels:
        client.update_flow_run_labels(night.id, labels)
    subs = []
    for k, name in enumerate(subflows):
        parent_task = client.create_task_run(_task(name), night.id, dynamic_key=f"sub-{k}")
        sub = make_run(client, name, when + timedelta(minutes=k + 1), parent_task_run_id=parent_task.id)
        client.set_task_run_state(parent_task.id, Completed(), force=True)
        _fill(client, sub.id, tasks, log_lines, name)
        subs.append(sub.id)
    _fill(client, night.id, 0, 0, "retrain")
    if finished:
        client.set_flow_run_state(night.id, Completed(), force=True)
    return {"top": night.id, "subs": subs}


def after_a_night(cfg, rec: dict[str, list], *, prune: bool = True) -> None:
    """What the benchmarks record after each night: the night's retention (``after_night``, when
    ``prune``) with its client CPU, then the database's bytes — with its -wal and -shm files (what
    the state dir holds) and the file alone — appended to ``rec``'s lists (lines, cpu, sizes, files)."""
    import os
    import time

    from flows.history import after_night, database_file, file_bytes

    if prune:
        t = time.process_time()
        rec["lines"].append(after_night(cfg)[0])
        rec["cpu"].append(round(time.process_time() - t, 3))
    db = database_file()
    rec["sizes"].append(file_bytes(db))
    rec["files"].append(os.path.getsize(db))


def run_arm(script: str, name: str, argv: list[str], env: dict[str, str]) -> dict:
    """A benchmark's arm ``name`` in a fresh process (``script --arm name *argv``, its own
    PREFECT_HOME in ``env``): the JSON it prints, with the wall time, the child's CPU (user+sys)
    and the load. A failed arm exits with its error's last lines."""
    import json
    import os
    import resource
    import subprocess
    import sys
    import time

    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run([sys.executable, script, "--arm", name, *argv], env=env, capture_output=True, text=True,
                         check=False)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        sys.exit(f"arm {name} failed: {out.stderr.strip().splitlines()[-3:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r.update(wall_s=round(time.perf_counter() - t0, 1),
             child_cpu_s=round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 1), load=os.getloadavg()[0])
    return r
