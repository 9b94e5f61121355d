"""Two retrains finishing together must leave exactly one consistent champion: the best one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_retrain_flow import small_config

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from rsft.config import load_config
from rsft import pipeline as stages
cfg = load_config(sys.argv[1], {"train.seed": int(sys.argv[2]), "train.epochs": 3})
pre = stages.prefilter_stage(cfg)
scored = stages.fit_scorer_stage(cfg, pre)
sel = stages.select_stage(cfg, pre, scored)
out = stages.finetune_stage(cfg, None, stages.Selection(pre, scored, sel, None))
print(json.dumps({"version": out.version, "promoted": out.promoted, "rmse": out.challenger["rmse"]}))
"""


@pytest.mark.slow
def test_concurrent_retrains_leave_one_consistent_champion(tmp_path):
    from rsft.tracking import registry
    from rsft.config import load_config
    from rsft.pipeline import ingest_stage, load_target, tracking_uri, run_night
    from rsft.evaluate import evaluate_regression
    from rsft.models import load_checkpoint, model_from_checkpoint
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    data = yaml.safe_load(cfg_path.read_text())
    data["promotion"]["min_z"] = 0.0  # the lock is under test, not the noise: any gain promotes
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    first = run_night(cfg)  # version 1 = champion
    assert first["promoted"] and first["model_version"] == "1"
    ingest_stage(cfg)

    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(cfg_path), str(seed)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (11, 12)
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(o["version"] for o in outs) == ["2", "3"]

    mlc = registry.client(tracking_uri(cfg))
    name = cfg.promotion.model_name
    holdout = load_target(cfg, "target_holdout")
    rmse = {
        str(v): evaluate_regression(
            model_from_checkpoint(load_checkpoint(registry.download_checkpoint(mlc, mlc.get_model_version(name, str(v))))),
            holdout, cfg.features)["rmse"]
        for v in (1, 2, 3)
    }
    champ = str(registry.alias_version(mlc, name).version)
    # the champion is the best of the three on the shared hold-out (strict gate, no margin)
    assert rmse[champ] == min(rmse.values())
    decisions = {str(h["version"]): h["decision"] for h in registry.history(mlc, name)}
    assert set(decisions.values()) <= {"promoted", "rejected"}
    if champ != "1":
        assert decisions[champ] == "promoted"
        prev = registry.alias_version(mlc, name, registry.PREVIOUS)
        assert prev is not None and str(prev.version) != champ
