"""Chaos: a real ``rsft retrain`` SIGKILLed at points of its night (found by watching its real
progress in the state dir: an ingested file's manifest entry, a finished sampling chunk, the MLflow
store being created, the fit's checkpoint, a registered model version), then re-run until it
finishes, ends exactly as an unkilled night: the same ingested and selected rows, the same model,
exactly one model version, no MLflow run left RUNNING, no temporary file left in the state dir.
And a finished night run again registers nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import REPO
from tests.test_retrain_flow import small_config

PIPELINE = "factory"  # the name of examples/factory.yaml's pipeline (small_config keeps it)


def _data(state: Path) -> Path:
    return state / "data" / PIPELINE


def _versions(state: Path) -> int:
    """Model versions registered so far (read-only; 0 while the store is busy or not there)."""
    db = state / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05)) as con:
            return con.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    except sqlite3.Error:
        return 0


# where a night is, from what it has written (in the order a first night gets there)
POINTS: dict[str, Callable[[Path], bool]] = {
    "ingest": lambda s: any((_data(s) / "sensors" / "_manifest").glob("*.json")),  # one file ingested
    "select": lambda s: any(_data(s).glob("runs/*/chunks/chunk-*.json")),  # one sampling chunk done
    "mlflow-store": lambda s: any(s.glob(".mlflow.db.tmp-*")),  # the MLflow store being created
    "fine-tune": lambda s: any(_data(s).glob("runs/*/train-*/last.pt")),  # the fit's first checkpoint
    "registration": lambda s: _versions(s) > 0,  # the challenger's version exists
}


def _start(cfg_path: Path, state: Path, out: Path, group: bool = False) -> subprocess.Popen:
    """``rsft retrain`` on ``state`` (its summary to ``out``); ``group``: in a process group of its
    own, as systemd or a scheduler starts it (``setsid``)."""
    out.unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "rsft.cli", "retrain", "--config", str(cfg_path), "--set", f"state.dir={state}",
         "--json", str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=group,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PREFECT_HOME": str(state / "prefect")})


def _wait_for(child: subprocess.Popen, state: Path, point: str) -> None:
    reached = POINTS[point]
    deadline = time.monotonic() + 900
    while child.poll() is None and time.monotonic() < deadline and not reached(state):
        time.sleep(0.005)
    assert child.poll() is None, f"the night ended before reaching {point}: {child.stderr.read()[-3000:]}"


# how a night is stopped: SIGKILL to its pid; SIGTERM to its process group (systemd, a scheduler:
# the embedded Prefect server gets it too) or to its pid alone
HOW = ("sigkill", "sigterm-group", "sigterm-pid")
TERM_WITHIN = 30  # seconds from SIGTERM to the exit


def _retrain(cfg_path: Path, state: Path, kill_at: str | None = None, how: str = "sigkill") -> dict | None:
    """``rsft retrain`` on ``state``; with ``kill_at``, stopped as ``how`` says as soon as that point
    is reached (it must be reached: a night that ends first fails the test). Returns the summary,
    or None."""
    out = state.parent / f"{state.name}-summary.json"
    child = _start(cfg_path, state, out, group=how == "sigterm-group")
    if kill_at is None:
        _, err = child.communicate(timeout=900)
        assert child.returncode == 0, err[-3000:]
        return json.loads(out.read_text())
    if how != "sigkill":
        _terminate_at(child, state, kill_at, group=how == "sigterm-group", json_out=out)
        return None
    import psutil

    kids: list[psutil.Process] = []
    try:
        _wait_for(child, state, kill_at)
        kids = psutil.Process(child.pid).children(recursive=True)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        _reap(kids)  # a SIGKILLed night's ephemeral Prefect server outlives it: not left behind by the tests
    return None


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(procs: list) -> None:
    import psutil

    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=30)


def _terminate_at(child: subprocess.Popen, state: Path, point: str, group: bool, json_out: Path) -> None:
    """SIGTERM ``child`` (its group, or its pid alone) at ``point``: it dies of SIGTERM (status
    143 in a shell) within TERM_WITHIN seconds, its last stderr line (the only one naming the
    signal) says so, no traceback, no child process left (the ephemeral Prefect server), and
    --json-out holds the error."""
    import psutil

    kids: list[psutil.Process] = []
    try:
        _wait_for(child, state, point)
        kids = psutil.Process(child.pid).children(recursive=True)
        assert kids, "the night runs no ephemeral Prefect server"
        sent = time.monotonic()
        if group:
            os.killpg(child.pid, signal.SIGTERM)
        else:
            os.kill(child.pid, signal.SIGTERM)
        _, err = child.communicate(timeout=TERM_WITHIN)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        left = [k for k in kids if _alive(k)]
        _reap(kids)
    assert child.returncode == -signal.SIGTERM, (child.returncode, err[-3000:])  # died of it: 143 in a shell
    assert took < TERM_WITHIN, took
    lines = err.strip().splitlines()
    assert [ln for ln in lines if "SIGTERM" in ln] == lines[-1:], err[-3000:]
    assert lines[-1].startswith("error: rsft retrain stopped by SIGTERM; "), lines[-1]
    assert "Traceback" not in err and "Exception ignored" not in err and "TerminationSignal" not in err, err[-3000:]
    assert left == [], f"child processes left running: {[k.pid for k in left]}"
    assert "stopped by SIGTERM" in json.loads(json_out.read_text())["error"]


def _rows(state: Path) -> dict[str, pl.DataFrame]:
    """Every ingested dataset and the selected rows, in a stable order."""
    from rsft.ingest import scan_dataset

    out = {name: scan_dataset(_data(state) / name).collect().sort("_source", "_row")
           for name in ("sensors", "logs", "target_sample", "target_holdout")}
    (selected,) = _data(state).glob("runs/*/selected.parquet")
    out["selected"] = pl.read_parquet(selected).sort("_source", "_row")
    return out


def _registry(state: Path, name: str) -> tuple[list[dict], dict, list[str]]:
    """(history, the champion's state dict, the statuses of every MLflow run)."""
    from rsft.models import load_checkpoint
    from rsft.tracking import registry

    mlc = registry.client(f"sqlite:///{state / 'mlflow.db'}")
    champion = load_checkpoint(registry.download_checkpoint(mlc, registry.alias_version(mlc, name)))["state_dict"]
    runs = mlc.search_runs([e.experiment_id for e in mlc.search_experiments()], max_results=1000)
    return registry.history(mlc, name), champion, [r.info.status for r in runs]


def _running_flow_runs(state: Path) -> list[str]:
    """Flow runs the state's Prefect database still calls RUNNING (a killed night's, unless closed)."""
    with contextlib.closing(sqlite3.connect(state / "prefect" / "prefect.db", timeout=30)) as con:
        return [f"{n} ({t})" for n, t in con.execute("SELECT name, state_type FROM flow_run WHERE state_type = 'RUNNING'")]


def _temp_files(state: Path) -> list[str]:
    """Files a writer leaves only when killed: fsio's hidden temp names (``.…tmp-<pid>-…``,
    staging, split, …) and a killed night's challenger checkpoint."""
    from rsft.fsio import ORPHAN_NAME

    return sorted(str(p.relative_to(state)) for p in state.rglob("*")
                  if ORPHAN_NAME.search(p.name) or p.name.startswith(".challenger"))


def _check_like_unkilled(tmp_path: Path, kills: list[str | tuple[str, str]]) -> tuple[Path, Path, str]:
    import torch

    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    name = cfg.promotion.model_name

    reference = _retrain(cfg_path, tmp_path / "reference")
    chaos = tmp_path / "chaos"
    for kill in kills:  # each re-run is killed at the next point (a point, or (point, how)); the last one finishes
        point, how = (kill, "sigkill") if isinstance(kill, str) else kill
        _retrain(cfg_path, chaos, kill_at=point, how=how)
    summary = _retrain(cfg_path, chaos)

    want, got = _rows(tmp_path / "reference"), _rows(chaos)
    for what in want:
        assert_frame_equal(got[what], want[what], check_column_order=False)
    ref_hist, ref_model, _ = _registry(tmp_path / "reference", name)
    hist, model, statuses = _registry(chaos, name)
    assert [h["version"] for h in hist] == [1], hist  # exactly one version for the night
    assert hist[0]["decision"] == ref_hist[0]["decision"] and "champion" in hist[0]["aliases"]
    assert summary["model_version"] == reference["model_version"] == "1"
    assert summary[f"challenger_{cfg.promotion.metric}"] == reference[f"challenger_{cfg.promotion.metric}"]
    assert model.keys() == ref_model.keys()
    for k in model:
        assert torch.equal(model[k], ref_model[k]), k  # the same model as the unkilled night
    assert "RUNNING" not in statuses, statuses
    assert _running_flow_runs(chaos) == []  # the killed nights' Prefect flow runs are CRASHED, not RUNNING
    assert _temp_files(chaos) == []

    return cfg_path, chaos, name


def test_a_retrain_killed_at_registration_reruns_to_the_unkilled_result(tmp_path):
    _check_like_unkilled(tmp_path, ["registration"])


@pytest.mark.slow
def test_a_retrain_killed_at_every_point_reruns_to_the_unkilled_result(tmp_path):
    cfg_path, chaos, name = _check_like_unkilled(tmp_path, list(POINTS))
    # the night is decided: run again, it registers (and trains) nothing and says so
    again = _retrain(cfg_path, chaos)
    assert again["model_version"] == "1" and "already_decided" in again
    assert [h["version"] for h in _registry(chaos, name)[0]] == [1]


def test_sigterm_stops_a_retrain_at_once_with_one_line(tmp_path):
    """SIGTERM to the pid alone, mid-ingest: it dies of it (143) within seconds, one line, the ephemeral
    Prefect server stopped too (it got no signal of its own)."""
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    write_synthetic(load_config(cfg_path).synth, tmp_path / "raw", night=1)
    state = tmp_path / "state"
    _terminate_at(_start(cfg_path, state, tmp_path / "summary.json"), state, "ingest", group=False,
                  json_out=tmp_path / "summary.json")


@pytest.mark.slow
def test_a_retrain_stopped_by_sigterm_reruns_to_the_unkilled_result(tmp_path):
    """SIGTERM to the process group mid-selection (as systemd stops a service), then to the pid
    alone mid-fit: each exits at once; the re-run finishes the night as an unkilled one, one version."""
    _check_like_unkilled(tmp_path, [("select", "sigterm-group"), ("fine-tune", "sigterm-pid")])


def test_prefects_private_sigterm_hook_is_still_there():
    """flows.signals.hold_in_flows swaps Prefect's private ``_prefect_sigterm_handler`` (looked up
    by ``capture_sigterm`` when a flow starts) for rsft's; a Prefect upgrade that renames it would
    silently bring back trial 7's hang after a SIGTERM — this fails first."""
    import inspect

    from prefect.utilities import engine

    assert hasattr(engine, "_prefect_sigterm_handler")
    assert "_prefect_sigterm_handler" in inspect.getsource(engine.capture_sigterm)


def test_sigterm_leaves_no_child_talking_after_the_one_line(tmp_path):
    """A child that prints a traceback when it gets SIGTERM (as the ephemeral Prefect server did on
    its teardown under load, after rsft's line) says nothing: the children are killed, not asked
    to stop. The process still dies of SIGTERM (-15) with its one line."""
    ready = tmp_path / "child-ready"
    child = ("import signal, sys, time, pathlib\n"
             "def talk(*_):\n"
             "    sys.stderr.write('Traceback (most recent call last):\\n  teardown\\nCancelledError\\n'); sys.stderr.flush()\n"
             "    sys.exit(1)\n"
             "signal.signal(signal.SIGTERM, talk)\n"
             f"pathlib.Path({str(ready)!r}).touch()\n"
             "time.sleep(60)\n")
    parent = ("import subprocess, sys, time, pathlib\n"
              "from rsft import terminate\n"
              "terminate.install('rsft retrain')\n"
              f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the child did not start"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, err)
    time.sleep(0.5)  # a child still alive would have written by now
    assert err.strip().splitlines() == ["error: rsft retrain stopped by SIGTERM"], err
