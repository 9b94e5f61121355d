"""Team scale on loopback: a real `mlflow server` and `prefect server`, a retrain against both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.loopback import mlflow_server, prefect_server
from tests.test_retrain_flow import small_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_retrain_against_mlflow_and_prefect_servers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    with mlflow_server(tmp_path / "server.db", (tmp_path / "server-artifacts").as_uri()) as uri, \
            prefect_server(tmp_path / "prefect-server") as api:
        cfg_path = small_config(tmp_path)
        data = yaml.safe_load(cfg_path.read_text())
        data["state"]["tracking_uri"] = uri
        cfg_path.write_text(yaml.safe_dump(data))
        from rsft.config import load_config
        from rsft.synth import write_synthetic

        write_synthetic(load_config(cfg_path).synth, tmp_path / "raw")
        client_env = {**env, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-client")}
        summary_path = tmp_path / "summary.json"
        run = subprocess.run([sys.executable, "-m", "rsft.cli", "retrain", "--config", str(cfg_path), "--json", str(summary_path)],
                             env=client_env, capture_output=True, text=True, cwd=REPO, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]

        from mlflow import MlflowClient

        summary = json.loads(summary_path.read_text())
        mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)  # explicit: earlier tests set a global registry URI
        versions = [(v.version, v.run_id, dict(v.tags).get("rsft.decision")) for v in mlc.search_model_versions("name='factory-quality'")]
        assert summary["promoted"] and summary["mlflow_ui"] == uri
        champ = mlc.get_model_version_by_alias("factory-quality", "champion")
        assert str(champ.version) == str(summary["model_version"]), versions
        assert champ.run_id == summary["mlflow_run"], versions
        # the flow run was recorded by the Prefect server, not an ephemeral one
        with urllib.request.urlopen(urllib.request.Request(
            f"{api}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"},
            method="POST"), timeout=10) as r:
            runs = json.loads(r.read())
        assert any(fr["state_type"] == "COMPLETED" for fr in runs)
