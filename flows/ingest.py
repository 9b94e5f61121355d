"""Ingest flow: raw exports -> Parquet datasets (+ quarantine, manifest), one task per file."""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from flows.crashed import claim
from rsft.config import PipelineConfig, load_config
from rsft.ingest.run import report_remote
from rsft.pipeline.data import check_files, dataset_ingest
from rsft.pipeline.layout import contract, ingest_sources, pipeline_root
from rsft.pipeline.results import Ingested
from tasks.ingest import ingest_file_task, plan_ingest_task
from tasks.runners import runner_for


@flow(name="ingest", flow_run_name="ingest-{cfg.name}")
def ingest_files(cfg: PipelineConfig, again: bool = False) -> Ingested:
    """Ingest every configured dataset; a failing file never stops the others. ``again``: the
    files done before too, under the contract as it is now (``rsft ingest --again``)."""
    claim(cfg)  # `rsft ingest` runs it top-level: its history is this pipeline's (flows/history.py)
    root = pipeline_root(cfg)
    out = {}
    for name, (sources, contract_name) in ingest_sources(cfg).items():
        c = contract(cfg, contract_name)
        dataset_dir = str(root / name)
        plans = plan_ingest_task(name, sources, dataset_dir, c, again)
        futures = ingest_file_task.map(plans, unmapped(dataset_dir), unmapped(c), unmapped(cfg.ingest.chunk_rows))
        results = []
        for plan, future in zip(plans, futures):  # in plan order, as they finish
            results.append(future.result())
            if cfg.ingest.task_runner == "dask":  # a Dask worker's progress events reach nobody
                report_remote(plan, results[-1])
        out[name] = dataset_ingest(results, dataset_dir)
    create_table_artifact(
        [{"dataset": k, "files": v.files, "files_skipped": v.files_skipped, "rows_total": v.rows_total,
          "rows_ok": v.rows_ok, "rows_quarantined": v.rows_quarantined, "failed": len(v.files_failed)}
         for k, v in out.items()],
        key="ingest-summary",
    )
    return Ingested(out)


def ingest_datasets(cfg: PipelineConfig, again: bool = False) -> Ingested:
    """The ingest sub-flow with ``ingest.concurrency`` files at a time, on ``ingest.task_runner``
    (a thread pool, or a Dask cluster as for sampling)."""
    return ingest_files.with_options(task_runner=runner_for(cfg.ingest))(cfg, again)


@flow(name="ingest-exports")
def ingest(config_path: str = "examples/factory.yaml") -> Ingested:
    """Deployment entry point: ingest the exports a config names (hourly)."""
    cfg = load_config(config_path)
    claim(cfg)  # whose run it is (flows/history.py prunes by it; flows/crashed.py closes it if killed)
    ingested = ingest_datasets(cfg)
    check_files(cfg, ingested)
    return ingested
