"""Fine-tune + register + promote, one task (one MLflow run)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from rsft import stages
from rsft.config import PipelineConfig


@task(name="finetune-register-promote", task_run_name="finetune-{cfg.promotion.model_name}")
def finetune_task(
    cfg: PipelineConfig, ingested: dict, prefiltered: dict, scored: dict, selection: dict, report: dict | None
) -> dict[str, Any]:
    out = stages.finetune_register_stage(cfg, ingested, prefiltered, scored, selection, report)
    champ = out["champion"][out["metric"]] if out["champion"] else None
    md = [
        f"# Promotion decision: {out['model_name']} v{out['version']}",
        "",
        f"- decision: **{'promoted' if out['promoted'] else 'kept champion'}** — {out['reason']}",
        f"- challenger {out['metric']}: {out['challenger'][out['metric']]:.4f}",
        f"- champion {out['metric']}: {'—' if champ is None else f'{champ:.4f}'}",
        f"- warm start: {out['warm_start']}; MLflow run {out['run_id']}",
    ]
    create_markdown_artifact("\n".join(md), key="promotion-decision")
    return out
