"""The registry lock across machines: with a Prefect server configured, registration and alias
moves are serialised by a global concurrency limit on it, not only by the state dir's file lock.

"Machines" are processes with separate state dirs (so separate file locks) that share only the
Prefect server — and, for the retrains, the MLflow server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.loopback import mlflow_server, prefect_server
from tests.test_retrain_flow import small_config

REPO = Path(__file__).resolve().parents[1]
LIMIT = "rsft-registry-factory-quality"  # tasks.locks.limit_name of the demo model

HOLD = """
import json, os, sys, time
from rsft.tracking import registry
from tasks.locks import registry_engine_lock
lock_dir, barrier, mode = sys.argv[1], sys.argv[2], sys.argv[3]
factory = registry_engine_lock()
assert (factory is not None) == (mode == "engine"), (mode, os.environ.get("PREFECT_API_URL"))
open(lock_dir + ".ready", "w").close()
while not os.path.exists(barrier):
    time.sleep(0.05)
spans = []
with registry.engine_lock(factory):
    for _ in range(2):
        with registry.registry_lock(lock_dir, "factory-quality"):
            t0 = time.time()
            time.sleep(0.5)
            spans.append((t0, time.time()))
print(json.dumps(spans))
"""


def _overlaps(spans: list[list[float]]) -> int:
    spans = sorted(spans)
    return sum(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def _hold_in_processes(tmp_path: Path, envs: dict[str, dict[str, str]]) -> dict[str, list[list[float]]]:
    """Each process (own lock dir) takes the registry lock twice for 0.5 s, all starting together."""
    barrier = tmp_path / "go"
    procs = {k: subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / f"locks-{k}"), str(barrier), env["MODE"]],
                                 cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, env in envs.items()}
    t0 = time.time()
    while not all((tmp_path / f"locks-{k}.ready").exists() for k in envs):
        assert time.time() - t0 < 300 and all(p.poll() is None for p in procs.values()), \
            [p.stderr.read()[-2000:] for p in procs.values() if p.poll() is not None]
        time.sleep(0.1)
    barrier.touch()
    out = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        out[k] = json.loads(stdout.strip().splitlines()[-1])
    return out


@pytest.mark.slow  # ~20 s: its own Prefect server (server mode; make test-all)
def test_registry_lock_holds_across_state_dirs_with_a_prefect_server(tmp_path):
    """Four processes with four state dirs: under the Prefect limit their critical sections never
    overlap; without a server (file locks only, embedded default) the same processes do overlap —
    the file lock serialises one state dir, not machines."""
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    with prefect_server(tmp_path / "prefect-server") as api:
        # an operator loosened the limit (3 slots, inactive): rsft sets it back to one active slot
        urllib.request.urlopen(urllib.request.Request(
            f"{api}/v2/concurrency_limits/", data=json.dumps({"name": LIMIT, "limit": 3, "active": False}).encode(),
            headers={"Content-Type": "application/json"}, method="POST"), timeout=10).close()
        envs = {f"engine{i}": {**base, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / f"ph{i}"), "MODE": "engine"}
                for i in range(4)}
        envs |= {f"file{i}": {**base, "PREFECT_HOME": str(tmp_path / f"pf{i}"), "MODE": "file"} for i in range(2)}
        spans = _hold_in_processes(tmp_path, envs)
        with urllib.request.urlopen(f"{api}/v2/concurrency_limits/{LIMIT}", timeout=10) as r:
            limit = json.loads(r.read())
    engine = [s for k, v in spans.items() if k.startswith("engine") for s in v]
    assert len(engine) == 8 and _overlaps(engine) == 0, sorted(engine)
    assert limit["limit"] == 1 and limit["active_slots"] == 0  # one slot; every holder released it
    assert _overlaps([s for k, v in spans.items() if k.startswith("file") for s in v]) > 0


CHILD = """
import json, sys
from flows.finetune import finetune
out = finetune(sys.argv[1], {"train.seed": int(sys.argv[2]), "train.epochs": 3})
print(json.dumps({"version": out["version"], "promoted": out["promoted"]}))
"""


@pytest.mark.slow
def test_four_concurrent_retrains_on_four_machines_leave_one_champion(tmp_path):
    """Four fine-tune + promote flows at once, each with its own state dir (its own file lock),
    sharing a loopback Prefect server and MLflow server: every version gets a decision, and the
    champion is the best version on the shared hold-out (a lost race would leave a worse one)."""
    import shutil

    from rsft.config import load_config
    from rsft.evaluate import evaluate_regression
    from rsft.models import load_checkpoint, model_from_checkpoint
    from rsft.pipeline import ingest_stage, load_target, run_night
    from rsft.synth import write_synthetic
    from rsft.tracking import registry

    base_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    with prefect_server(tmp_path / "prefect-server") as api, \
            mlflow_server(tmp_path / "mlflow.db", (tmp_path / "mlartifacts").as_uri()) as uri:
        cfg_path = small_config(tmp_path)
        data = yaml.safe_load(cfg_path.read_text())
        data["state"]["tracking_uri"] = uri
        data["promotion"]["min_z"] = 0.0  # the lock is under test, not the noise: any gain promotes
        cfg_path.write_text(yaml.safe_dump(data))
        cfg = load_config(cfg_path)
        write_synthetic(cfg.synth, tmp_path / "raw", night=1)
        first = run_night(cfg)  # version 1 = champion
        assert first["promoted"] and first["model_version"] == "1"
        ingest_stage(cfg)
        # four machines: a copy of the prepared state dir each (own data cache, own locks/)
        paths = []
        for i in range(4):
            shutil.copytree(tmp_path / "state", tmp_path / f"state{i}", ignore=shutil.ignore_patterns("locks", "prefect"))
            d = {**data, "state": {**data["state"], "dir": str(tmp_path / f"state{i}")}}
            paths.append(tmp_path / f"machine{i}.yaml")
            paths[-1].write_text(yaml.safe_dump(d))
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(p), str(11 + i)], cwd=REPO,
                                  env={**base_env, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / f"ph{i}"),
                                       "RSFT_STATE_DIR": str(tmp_path / f"state{i}")},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, p in enumerate(paths)]
        outs = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=900)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        assert sorted(o["version"] for o in outs) == ["2", "3", "4", "5"]
        # the flows took the server's limit (not only their file locks), and released it
        with urllib.request.urlopen(f"{api}/v2/concurrency_limits/{LIMIT}", timeout=10) as r:
            limit = json.loads(r.read())
        assert limit["limit"] == 1 and limit["active_slots"] == 0

        mlc = registry.client(uri)
        name = cfg.promotion.model_name
        decisions = {str(h["version"]): h["decision"] for h in registry.history(mlc, name)}
        assert sorted(decisions) == ["1", "2", "3", "4", "5"]
        assert set(decisions.values()) <= {"promoted", "rejected"}, decisions
        holdout = load_target(cfg, "target_holdout")
        rmse = {v: evaluate_regression(model_from_checkpoint(load_checkpoint(registry.download_checkpoint(
            mlc, mlc.get_model_version(name, v)))), holdout, cfg.features)["rmse"] for v in decisions}
        champ = str(registry.alias_version(mlc, name).version)
        assert rmse[champ] == min(rmse.values()), (champ, rmse, decisions)
        if champ != "1":
            assert decisions[champ] == "promoted"
