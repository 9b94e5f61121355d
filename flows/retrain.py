"""The nightly retrain: the night of ``rsft.pipeline.night.run_night``, its steps as Prefect
sub-flows (ingest, select, finetune) with per-file, per-chunk and per-CV-unit tasks."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.finetune import finetune_selected
from flows.ingest import ingest_datasets
from flows.select import select_rows
from rsft.config import load_config
from rsft.pipeline.night import Steps, run_night

PREFECT_STEPS = Steps(ingest=ingest_datasets, select=select_rows, finetune=finetune_selected)


@flow(name="nightly-retrain", flow_run_name="retrain-{config_path}")
def retrain(config_path: str = "examples/factory.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    summary = run_night(load_config(config_path, overrides), PREFECT_STEPS)
    create_table_artifact([{"what": k, "value": str(v)} for k, v in summary.items()], key="retrain-summary")
    return summary


if __name__ == "__main__":
    import sys

    print(retrain(sys.argv[1] if len(sys.argv) > 1 else "examples/factory.yaml"))
