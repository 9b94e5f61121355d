"""Fine-tune + register + promote, one task (one MLflow run)."""

from __future__ import annotations

from contextlib import nullcontext

from prefect import task

from rsft.config import PipelineConfig
from rsft.pipeline.finetune import finetune_stage
from rsft.pipeline.results import DatasetIngest, Finetuned, Selection
from tasks.adapt import unit_mapper


@task(name="finetune-register-promote", task_run_name="finetune-{cfg.promotion.model_name}")
def finetune_task(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection) -> Finetuned:
    """The decision's artifacts are published by the calling flow (flows.retrain.publish_decision)."""
    with unit_mapper(cfg.adapt) if cfg.adapt.enabled else nullcontext() as map_units:
        return finetune_stage(cfg, ingested, selection, map_units=map_units)
