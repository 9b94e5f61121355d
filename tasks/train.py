"""Fine-tune + register + promote, one task (one MLflow run)."""

from __future__ import annotations

from contextlib import nullcontext

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from rsft.adapt import candidate_table
from rsft.config import PipelineConfig
from rsft.pipeline.finetune import finetune_stage
from rsft.pipeline.results import DatasetIngest, Finetuned, Selection
from rsft.tracking import registry
from tasks.adapt import unit_mapper
from tasks.locks import registry_engine_lock


@task(name="finetune-register-promote", task_run_name="finetune-{cfg.promotion.model_name}")
def finetune_task(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection) -> Finetuned:
    # registration and alias moves: with a Prefect server, also under its global concurrency limit
    with registry.engine_lock(registry_engine_lock()), \
            unit_mapper(cfg.adapt) if cfg.adapt.enabled else nullcontext() as map_units:
        out = finetune_stage(cfg, ingested, selection, map_units=map_units)
    champ = out.champion[out.metric] if out.champion else None
    md = [
        f"# Promotion decision: {out.model_name} v{out.version}",
        "",
        f"- decision: **{'promoted' if out.promoted else 'kept champion'}** — {out.reason}",
        f"- challenger {out.metric}: {out.challenger[out.metric]:.4f}",
        f"- champion {out.metric}: {'—' if champ is None else f'{champ:.4f}'}",
        f"- warm start: {out.warm_start}; MLflow run {out.run_id}",
    ]
    create_markdown_artifact("\n".join(md), key="promotion-decision")
    if out.adapt:
        a = out.adapt
        create_table_artifact(candidate_table(a), key="adapt-candidates",
                              description=f"chose {a['chosen']}: {a['why']} ({a['fits']} fits, {a['search_seconds']:.2f} s)")
    return out
