"""Rejected versions' models freed by ``rsft gc`` (rsft/tracking/retention.py): real demo nights
(LOCAL steps, MLflow in the state dir), the first promoted and the rest rejected
(``promotion.min_improvement 0.9``), no retention during the nights (``state.keep_nights 30``);
then ``rsft gc --keep-nights K`` (a dry run, then for real). Prints the bytes gc reports and
``du -sb`` of ``mlartifacts/`` before and after.

    PYTHONPATH=. python benchmarks/rejected_models.py [--nights 6] [--keep-nights 2] [--work /tmp/rejected]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def main() -> None:
    from typer.testing import CliRunner

    from rsft import pipeline as stages
    from rsft.cli import app
    from rsft.config import load_config
    from rsft.synth import write_synthetic
    from tests.test_retrain_flow import small_config

    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=6)
    ap.add_argument("--keep-nights", type=int, default=2)
    ap.add_argument("--work", default="/tmp/rsft-rejected-models")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=False)
    cfg_path = small_config(work)
    first = load_config(cfg_path, {"state.keep_nights": 30})
    strict = load_config(cfg_path, {"state.keep_nights": 30, "promotion.min_improvement": 0.9})
    decided = []
    for night in range(1, a.nights + 1):
        write_synthetic(first.synth, work / "raw", night=night)
        out = stages.run_night(first if night == 1 else strict)
        decided.append((out["model_version"], out["promoted"]))
    art = work / "state" / "mlartifacts"
    before = du(art)
    gc = ["gc", "--config", str(cfg_path), "--keep-nights", str(a.keep_nights), "--json", str(work / "gc.json")]
    dry = CliRunner().invoke(app, [*gc, "--dry-run"])
    would = json.loads((work / "gc.json").read_text())["model_bytes_removed"]
    assert dry.exit_code == 0 and du(art) == before, dry.output
    res = CliRunner().invoke(app, gc)
    assert res.exit_code == 0, res.output
    rep = json.loads((work / "gc.json").read_text())
    print(json.dumps({"nights": decided, "versions_freed": [m["version"] for m in rep["models_removed"]],
                      "bytes_per_version": [m["bytes"] for m in rep["models_removed"]],
                      "dry_run_bytes": would, "model_bytes_removed": rep["model_bytes_removed"],
                      "mlartifacts_before": before, "mlartifacts_after": du(art)}))


if __name__ == "__main__":
    main()
