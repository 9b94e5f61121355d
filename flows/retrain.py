"""The nightly retrain: ingest -> select -> fine-tune -> evaluate -> register -> promote."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.finetune import finetune_selected
from flows.ingest import ingest_datasets
from flows.select import select_rows
from rsft.config import load_config
from rsft.stages import check_adapt, pool_dataset, require_targets
from rsft.summary import run_summary


@flow(name="nightly-retrain", flow_run_name="retrain-{config_path}")
def retrain(config_path: str = "examples/factory.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = load_config(config_path, overrides)
    ingested = ingest_datasets(cfg)
    require_targets(ingested)
    check_adapt(cfg)
    sel = select_rows(cfg)
    result = finetune_selected(cfg, ingested[pool_dataset(cfg)], sel)
    summary = run_summary(cfg, ingested, sel, result)
    create_table_artifact([{"what": k, "value": str(v)} for k, v in summary.items()], key="retrain-summary")
    return summary


if __name__ == "__main__":
    import sys

    print(retrain(sys.argv[1] if len(sys.argv) > 1 else "examples/factory.yaml"))
