"""Serve the nightly-retrain and hourly ingest deployments from one process (no work pool)."""

from __future__ import annotations

from prefect import serve

from flows.ingest import ingest
from flows.retrain import retrain


def serve_deployments(config_path: str) -> None:
    serve(
        retrain.to_deployment(name="nightly-retrain", cron="0 2 * * *", parameters={"config_path": config_path}),
        ingest.to_deployment(name="ingest", cron="0 * * * *", parameters={"config_path": config_path}),
    )
