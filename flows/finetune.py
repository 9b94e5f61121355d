"""Fine-tune flow: warm start -> fine-tune -> evaluate champion and challenger -> register -> gate.

``finetune_selected`` is the retrain flow's last step (a sub-flow); ``finetune`` re-runs it on the
current selection without ingesting, e.g. to try other ``train.*`` settings on tonight's rows:
the data stages are cached by their inputs, so only a changed ``train.*`` does new work.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.crashed import claim
from flows.publish import publish_decision, publish_selection
from flows.select import select_rows
from rsft.config import PipelineConfig, load_config
from rsft.pipeline.layout import night_lock
from rsft.pipeline.results import DatasetIngest, Finetuned, Selection
from tasks.train import finetune_task


@flow(name="finetune", flow_run_name="finetune-{cfg.name}")
def finetune_selected(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection,
                      started: float | None = None) -> Finetuned:
    """Fine-tune on a finished selection (``select_rows`` output); returns the decision.
    ``started``: when the night began (epoch seconds; the MLflow run's start time)."""
    return finetune_task(cfg, ingested, selection, started)


@flow(name="finetune-only")
def finetune(config_path: str = "examples/factory.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune + gate on the current selection (no ingest; cached selection stages are reused)."""
    cfg = load_config(config_path, overrides)
    claim(cfg)  # whose run it is (flows/history.py prunes by it)
    with night_lock(cfg):  # the selection stages update the kept pool: not beside a night
        selection = select_rows(cfg)
        publish_selection(cfg, selection)
        result = finetune_selected(cfg, None, selection)
    publish_decision(result)
    return result.to_dict()


if __name__ == "__main__":
    import sys

    print(finetune(sys.argv[1] if len(sys.argv) > 1 else "examples/factory.yaml"))
