"""Ingest tasks: plan the files, then one task per file (retried on transient I/O)."""

from __future__ import annotations

from typing import Any

from prefect import task

from rsft.config import ContractConfig
from rsft.ingest import FilePlan, ingest_file, plan_ingest


@task(name="plan-ingest", retries=2, retry_delay_seconds=2, task_run_name="plan-ingest-{name}")
def plan_ingest_task(name: str, sources: list[str], dataset_dir: str, contract: ContractConfig,
                     again: bool = False) -> list[FilePlan]:
    return plan_ingest(sources, dataset_dir, contract, again=again)


def _file_run_name() -> str:
    from prefect.runtime import task_run

    plan = task_run.parameters.get("plan")
    return f"ingest-{getattr(plan, 'name', None) or getattr(plan, 'path', 'file')}".replace("/", "_")[-80:]


@task(name="ingest-file", retries=2, retry_delay_seconds=2, task_run_name=_file_run_name)
def ingest_file_task(plan: FilePlan, dataset_dir: str, contract: ContractConfig, chunk_rows: int) -> dict[str, Any]:
    return ingest_file(plan, dataset_dir, contract, chunk_rows=chunk_rows).to_dict()
