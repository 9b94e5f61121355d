"""Selection flow: prefilter -> fit scorer -> chunked rejection sampling -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped

from rsft.config import PipelineConfig
from rsft.pipeline.results import Selected, Selection
from tasks.runners import runner_for
from tasks.select import fit_scorer_task, merge_task, plan_chunks_task, prefilter_task, report_task, sample_chunk_task


def task_runner(cfg: PipelineConfig):
    """Thread pool by default; a Dask cluster (address or a LocalCluster) when configured."""
    return runner_for(cfg.sampling)


@flow(name="select", flow_run_name="select-{cfg.name}")
def select_rows(cfg: PipelineConfig) -> Selection:
    prefiltered = prefilter_task(cfg)
    scored = fit_scorer_task(cfg, prefiltered)
    specs = plan_chunks_task(prefiltered.output, cfg.sampling.chunk_rows)
    chunk_flow = sample_chunks.with_options(task_runner=task_runner(cfg))
    selected = Selected.from_summary(chunk_flow(cfg, specs, scored.scorer_path, scored.log_m, scored.run_dir))
    return Selection(prefiltered, scored, selected, report_task(cfg, prefiltered, scored, selected))


@flow(name="sample-chunks", flow_run_name="sample-{cfg.name}")
def sample_chunks(cfg: PipelineConfig, specs: list, scorer_path: str, log_m: float | None, run_dir: str) -> dict[str, Any]:
    futures = sample_chunk_task.map(
        specs, unmapped(scorer_path), unmapped(cfg.features), unmapped(cfg.sampling), unmapped(log_m),
        unmapped(str(Path(run_dir) / "chunks")),
    )
    return merge_task([f.result() for f in futures], str(Path(run_dir) / "selected.parquet"), cfg.sampling, log_m)
