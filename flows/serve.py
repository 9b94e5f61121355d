"""Serve the nightly-retrain, hourly ingest and on-demand finetune deployments from one process (no work pool)."""

from __future__ import annotations

from prefect import serve

from flows.finetune import finetune
from flows.ingest import ingest
from flows.retrain import retrain


def serve_deployments(config_path: str) -> None:
    serve(
        retrain.to_deployment(name="nightly-retrain", cron="0 2 * * *", parameters={"config_path": config_path}),
        ingest.to_deployment(name="ingest", cron="0 * * * *", parameters={"config_path": config_path}),
        finetune.to_deployment(name="finetune", parameters={"config_path": config_path}),
    )
