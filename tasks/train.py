"""Fine-tune + register + promote, one task (one MLflow run)."""

from __future__ import annotations

from contextlib import nullcontext

from prefect import task

from rsft.config import PipelineConfig
from rsft.pipeline.finetune import finetune_stage
from rsft.pipeline.results import DatasetIngest, Finetuned, Selection
from rsft.tracking import registry
from tasks.adapt import unit_mapper
from tasks.locks import registry_engine_lock


@task(name="finetune-register-promote", task_run_name="finetune-{cfg.promotion.model_name}")
def finetune_task(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection,
                  started: float | None = None) -> Finetuned:
    """The decision's artifacts are published by the calling flow (flows.retrain.publish_decision).
    Registration and alias moves: with a Prefect server, also under its global concurrency limit."""
    with registry.engine_lock(registry_engine_lock()), \
            unit_mapper(cfg.adapt) if cfg.adapt.enabled else nullcontext() as map_units:
        return finetune_stage(cfg, ingested, selection, started, map_units=map_units)
