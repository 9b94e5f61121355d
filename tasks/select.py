"""Selection tasks: prefilter, fit the scorer, sample chunks, merge, report."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

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
    report = data.report_stage(cfg, prefiltered, scored, selected)
    lines = [
        f"# Selection report ({cfg.scorer.kind} scorer, {cfg.sampling.mode} mode)",
        "",
        f"- pool rows: {selected.rows_in:,}; selected: {selected.rows_out:,}",
        f"- acceptance rate: {selected.acceptance_rate:.4f} (ideal {selected.ideal_acceptance or float('nan'):.4f})",
        f"- clipped share (w > M): {selected.clipped_share:.4%}",
    ]
    for k in ("ess", "auc_pool_vs_target", "auc_selected_vs_target"):
        if k in report:
            lines.append(f"- {k}: {report[k]:.4g}" if isinstance(report[k], (int, float)) else f"- {k}: {report[k]}")
    share = report.get("coverage", {}).get("uncovered_share")
    if share is not None:
        lines.append(f"- target rows with no comparable pool rows: {share:.1%}" if isinstance(share, float) else
                     f"- target rows with no comparable pool rows: {share}")
    warnings = report.get("warnings") or []
    lines += ["", f"## Warnings ({len(warnings)})", ""] + ([f"- ⚠ {w}" for w in warnings] or ["- none"])
    create_markdown_artifact("\n".join(lines), key="selection-report")
    return report
