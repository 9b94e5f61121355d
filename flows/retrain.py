"""The nightly retrain: the night of ``rsft.pipeline.night.run_night``, its steps as Prefect
sub-flows (ingest, select, finetune) with per-file, per-chunk and per-CV-unit tasks."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.finetune import finetune_selected
from flows.ingest import ingest_datasets
from flows.select import select_rows
from rsft.config import load_config
from rsft.pipeline.night import Steps, run_night

PREFECT_STEPS = Steps(ingest=ingest_datasets, select=select_rows, finetune=finetune_selected)


def _night_name() -> str:
    """'retrain factory 2026-12-04 02:00' (UTC): the Prefect run list reads as a calendar."""
    from prefect.runtime import flow_run

    stem = Path(str(flow_run.parameters.get("config_path") or "pipeline")).stem
    return f"retrain {stem} {datetime.now(timezone.utc):%Y-%m-%d %H:%M}"


def _summary_markdown(summary: dict[str, Any]) -> str:
    """The night's summary as a two-column markdown table, decision first."""
    first = ("promoted", "reason", "model_version", "recipe", "mlflow_run", "champion_uri")
    keys = [k for k in first if k in summary] + [k for k in summary if k not in first and k != "adapt_candidates"]

    def cell(v: Any) -> str:
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        return text.replace("|", "/").replace("\n", " ")

    rows = [f"| {k.replace('_', ' ')} | {cell(summary[k])} |" for k in keys]
    return "\n".join(["# Nightly retrain", "", "| | |", "|---|---|", *rows])


@flow(name="nightly-retrain", flow_run_name=_night_name)
def retrain(config_path: str = "examples/factory.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    summary = run_night(load_config(config_path, overrides), PREFECT_STEPS)
    create_markdown_artifact(_summary_markdown(summary), key="retrain-summary",
                             description=f"MLflow run {summary.get('mlflow_run')}")
    return summary


if __name__ == "__main__":
    import sys

    print(retrain(sys.argv[1] if len(sys.argv) > 1 else "examples/factory.yaml"))
