"""A night killed mid-run leaves its MLflow run RUNNING; the next night closes it as KILLED (only
runs of dead processes on this machine; a live night's run is left alone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
from rsft.tracking import registry, runs
import mlflow
registry.client(sys.argv[1])
with runs.night_run("nights", sys.argv[2], "killed night", {}, {}, "a: 1") as run_id:
    with mlflow.start_run(run_name="candidate", nested=True):
        print(run_id, flush=True)
        time.sleep(120)
"""


def test_a_killed_nights_run_is_closed_by_the_next_night(tmp_path):
    from rsft.tracking import registry, runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, uri, str(tmp_path / "artifacts")], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = child.stdout.readline().strip()
    assert killed, child.stderr.read()[-2000:]
    mlc = registry.client(uri)
    assert mlc.get_run(killed).info.status == "RUNNING"
    with runs.night_run("nights", str(tmp_path / "artifacts"), "live night", {}, {}, "a: 1") as live:
        # a live night (this process) is not closed by another night starting meanwhile
        exp = mlc.get_experiment_by_name("nights").experiment_id
        assert runs.close_stale_runs(exp) == []
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        time.sleep(0.2)
        closed = runs.close_stale_runs(exp)
        assert killed in closed and live not in closed and len(closed) == 2  # the night and its candidate
        assert mlc.get_run(live).info.status == "RUNNING"
    assert mlc.get_run(killed).info.status == "KILLED"
    kids = mlc.search_runs([exp], f"tags.mlflow.parentRunId = '{killed}'")
    assert [k.info.status for k in kids] == ["KILLED"]
    assert mlc.get_run(live).info.status == "FINISHED"


def test_an_owner_is_gone_only_when_its_process_certainly_is():
    """A dead pid of this host and namespace is gone; so is a live pid that started at another
    time (reused). Another host, another pid namespace (a container sharing the hostname) or a
    live process are not."""
    import subprocess

    from rsft.fsio import owner, owner_gone

    me = owner()
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    where = me["rsft.proc"].split("@")[0]
    assert not owner_gone(me)
    assert owner_gone({**me, "rsft.pid": str(child.pid)})
    assert owner_gone({**me, "rsft.proc": f"{where}@1"})  # this pid, but a process that started at tick 1
    assert not owner_gone({**me, "rsft.pid": str(child.pid), "rsft.host": "elsewhere"})
    assert not owner_gone({**me, "rsft.pid": str(child.pid), "rsft.proc": "another-boot/1@5"})


def test_a_killed_nights_runs_beyond_a_page_are_all_marked_crashed(prefect_harness):
    """Page size 2, five RUNNING runs of a dead process of this host (more than two pages) and one
    of this live process: the five are CRASHED, the live one stays RUNNING."""
    import uuid
    from datetime import datetime, timezone

    from prefect import get_client
    from prefect.states import Completed

    from flows.crashed import close_crashed
    from rsft.fsio import owner
    from benchmarks._nights import make_run

    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    dead, name = {**owner(), "rsft.pid": str(child.pid)}, f"killed-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        runs = [make_run(client, name, datetime.now(timezone.utc), end=False) for _ in range(6)]
        for run in runs[:5]:
            client.update_flow_run_labels(run.id, dead)
        client.update_flow_run_labels(runs[5].id, owner())
        closed = close_crashed(page=2)
        states = [client.read_flow_run(r.id).state_type.value for r in runs]
        client.set_flow_run_state(runs[5].id, Completed(), force=True)  # (no RUNNING run left to later tests)
    assert states == ["CRASHED"] * 5 + ["RUNNING"]
    assert sorted(set(closed) & {r.name for r in runs}) == sorted(r.name for r in runs[:5])
