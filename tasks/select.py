"""Selection tasks: prefilter, fit the scorer, sample chunks, merge, report."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_table_artifact

from rsft import keptpool
from rsft.config import FeaturesConfig, PipelineConfig, SamplingConfig
from rsft.pipeline import data
from rsft.pipeline.results import Prefiltered, Scored, Selected
from rsft.sampling import ChunkSpec, merge_selection, plan_chunks, sample_chunk
from tasks.runners import task_mapper


def _day_run_name() -> str:
    from prefect.runtime import task_run

    job = task_run.parameters.get("job")
    return f"prefilter-{'edges' if isinstance(job, keptpool.EdgeJob) else 'day'}-{getattr(job, 'day', '?')}"


# inputs are paths and rules, the result the day's counts: nothing worth caching or persisting
@task(name="prefilter-day", retries=1, cache_policy=NO_CACHE, persist_result=False, task_run_name=_day_run_name)
def prefilter_day_task(job: Any) -> Any:
    return keptpool.run_job(job)


@task(name="prefilter", retries=1, task_run_name="prefilter-{cfg.name}")
def prefilter_task(cfg: PipelineConfig) -> Prefiltered:
    # the kept pool's per-day jobs as tasks on prefilter.task_runner (None: inline)
    with task_mapper(cfg.prefilter, prefilter_day_task, "job") as map_jobs:
        pre = data.prefilter_stage(cfg, map_jobs=map_jobs)
    rows = [{"rule": k, "dropped (first failing)": v, "would drop alone": pre.alone.get(k, "")}
            for k, v in pre.dropped.items()]
    rows.append({"rule": "kept", "dropped (first failing)": pre.rows_out, "would drop alone": ""})
    create_table_artifact(rows, key="prefilter-counts", description=f"Prefilter: {pre.rows_in} rows in")
    return pre


@task(name="fit-scorer", task_run_name="fit-{cfg.scorer.kind}-scorer")
def fit_scorer_task(cfg: PipelineConfig, prefiltered: Prefiltered) -> Scored:
    return data.fit_scorer_stage(cfg, prefiltered)


@task(name="plan-chunks")
def plan_chunks_task(source: str, chunk_rows: int) -> list[ChunkSpec]:
    return plan_chunks(source, chunk_rows)


def _chunk_name() -> str:
    from prefect.runtime import task_run

    spec = task_run.parameters.get("spec")
    return f"sample-chunk-{getattr(spec, 'chunk_id', '?')}"


@task(name="sample-chunk", retries=2, retry_delay_seconds=1, task_run_name=_chunk_name)
def sample_chunk_task(
    spec: ChunkSpec, scorer_path: str, feature_cfg: FeaturesConfig, cfg: SamplingConfig, log_m: float | None, out_dir: str
) -> Any:
    return sample_chunk(spec, scorer_path, feature_cfg, cfg, log_m, out_dir)


@task(name="merge-selection")
def merge_task(summaries: list[Any], out_path: str, cfg: SamplingConfig, log_m: float | None) -> dict[str, Any]:
    return merge_selection(summaries, out_path, cfg, log_m).to_dict()


@task(name="selection-report")
def report_task(cfg: PipelineConfig, prefiltered: Prefiltered, scored: Scored, selected: Selected) -> dict[str, Any]:
    """The selection report (its artifact is published on the nightly run: flows.retrain)."""
    return data.report_stage(cfg, prefiltered, scored, selected)
