"""Selection tasks: prefilter, fit the scorer, sample chunks, merge, report."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from rsft.config import FeaturesConfig, PipelineConfig, SamplingConfig
from rsft.pipeline import data
from rsft.pipeline.results import Prefiltered, Scored, Selected
from rsft.sampling import ChunkSpec, merge_selection, plan_chunks, sample_chunk


@task(name="prefilter", retries=1, task_run_name="prefilter-{cfg.name}")
def prefilter_task(cfg: PipelineConfig) -> Prefiltered:
    pre = data.prefilter_stage(cfg)
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
