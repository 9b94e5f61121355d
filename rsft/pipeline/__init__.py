"""The retrain pipeline as library functions (no orchestrator needed).

Where things are:

- :mod:`~rsft.pipeline.night` — **the one place a night is wired**: ``run_night(cfg, steps)``;
  ``steps`` says how each step runs (in this process, or as Prefect flows and tasks).
- :mod:`~rsft.pipeline.layout` — the state directory's layout, digests, stage keys.
- :mod:`~rsft.pipeline.results` — the frozen dataclasses each stage returns.
- :mod:`~rsft.pipeline.data` — ingest, checks, prefilter, scorer, selection, report.
- :mod:`~rsft.pipeline.training` — warm start, fine-tune rows, evaluation.
- :mod:`~rsft.pipeline.adapt` — the adaptation search as a stage.
- :mod:`~rsft.pipeline.finetune` — fine-tune → evaluate → register → promote (one MLflow run).
- :mod:`~rsft.pipeline.summary` — the night's summary table.

Every MLflow call lives in :mod:`rsft.tracking`.
"""

from rsft.pipeline.adapt import adapt_stage, is_sampling_recipe
from rsft.pipeline.data import (
    check_adapt,
    check_ingested,
    fit_scorer_stage,
    hashed_sample,
    ingest_stage,
    load_target,
    prefilter_stage,
    report_stage,
    select_stage,
    target_groups,
)
from rsft.pipeline.finetune import finetune_stage
from rsft.ingest.manifest import dataset_digest
from rsft.fsio import digest
from rsft.pipeline.layout import cfg_yaml, pipeline_root, pool_dataset, tracking_uri
from rsft.pipeline.night import LOCAL, Steps, run_night, select_local
from rsft.pipeline.results import DatasetIngest, Finetuned, Ingested, Prefiltered, Scored, Selected, Selection
from rsft.pipeline.training import evaluate_frame, pretrain

__all__ = [
    "LOCAL", "DatasetIngest", "Finetuned", "Ingested", "Prefiltered", "Scored", "Selected", "Selection", "Steps",
    "adapt_stage", "cfg_yaml", "check_adapt", "check_ingested", "dataset_digest", "digest", "evaluate_frame",
    "finetune_stage", "fit_scorer_stage", "hashed_sample", "ingest_stage", "is_sampling_recipe", "load_target",
    "pipeline_root", "pool_dataset", "prefilter_stage", "pretrain", "report_stage", "run_night", "select_local",
    "select_stage", "target_groups", "tracking_uri",
]
