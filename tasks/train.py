"""Fine-tune + register + promote, one task (one MLflow run)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from rsft import stages
from rsft.adapt import candidate_table
from rsft.config import PipelineConfig
from tasks.adapt import unit_mapper


@task(name="finetune-register-promote", task_run_name="finetune-{cfg.promotion.model_name}")
def finetune_task(
    cfg: PipelineConfig, ingested: dict, prefiltered: dict, scored: dict, selection: dict, report: dict | None
) -> dict[str, Any]:
    with unit_mapper(cfg.adapt) if cfg.adapt.enabled else nullcontext() as map_units:
        out = stages.finetune_register_stage(cfg, ingested, prefiltered, scored, selection, report, map_units=map_units)
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
    if out.get("adapt"):
        a = out["adapt"]
        create_table_artifact(candidate_table(a), key="adapt-candidates",
                              description=f"chose {a['chosen']}: {a['why']} ({a['fits']} fits, {a['search_seconds']:.2f} s)")
    return out
