"""Ingest flow: raw exports -> Parquet datasets (+ quarantine, manifest), one task per file."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from rsft import stages
from rsft.config import PipelineConfig, load_config
from tasks.ingest import ingest_file_task, plan_ingest_task


@flow(name="ingest", flow_run_name="ingest-{cfg.name}", task_runner=ThreadPoolTaskRunner(max_workers=2))
def ingest_datasets(cfg: PipelineConfig) -> dict[str, Any]:
    """Ingest every configured dataset; a failing file never stops the others."""
    root = stages.pipeline_root(cfg)
    summary: dict[str, Any] = {}
    for name, (sources, contract_name) in stages.ingest_sources(cfg).items():
        contract = getattr(cfg.ingest, contract_name)
        dataset_dir = str(root / name)
        plans = plan_ingest_task(name, sources, dataset_dir, contract)
        futures = ingest_file_task.map(plans, unmapped(dataset_dir), unmapped(contract), unmapped(cfg.ingest.chunk_rows))
        files = [f.result() for f in futures]
        summary[name] = {**stages.ingest_totals(files, dataset_dir), "dataset": dataset_dir, "file_results": files}
    create_table_artifact(
        [{"dataset": k, **{c: v[c] for c in ("files", "files_skipped", "rows_total", "rows_ok", "rows_quarantined")},
          "failed": len(v["files_failed"])} for k, v in summary.items()],
        key="ingest-summary",
    )
    failed = [f for v in summary.values() for f in v["files_failed"]]
    if failed and cfg.ingest.fail_run_on_file_error:
        raise RuntimeError(f"{len(failed)} file(s) failed to ingest: {failed[0]}")
    return summary


@flow(name="ingest-exports")
def ingest(config_path: str = "examples/factory.yaml") -> dict[str, Any]:
    """Deployment entry point: ingest the exports a config names (hourly)."""
    return ingest_datasets(load_config(config_path))
