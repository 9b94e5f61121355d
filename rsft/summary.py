"""The small, human-readable summary a retrain ends with."""

from __future__ import annotations

from typing import Any

from rsft.adapt import candidate_table
from rsft.config import PipelineConfig
from rsft.stages import pool_dataset, tracking_uri


def run_summary(cfg: PipelineConfig, ingested: dict, selected: dict, result: dict) -> dict[str, Any]:
    sensors = ingested[pool_dataset(cfg)]
    sel = selected["selection"]
    pre = selected["prefilter"]
    metric = result["metric"]
    champ = result["champion"]
    uri = tracking_uri(cfg)
    return {
        "files_new": sensors["files"] - sensors["files_skipped"],
        "rows_ingested": sensors["rows_ok"],  # this run (earlier files are skipped)
        "rows_quarantined": sensors["rows_quarantined"],
        "quarantine_reasons": sensors.get("quarantine_reasons", {}),
        "files_failed": len(sensors["files_failed"]),
        "rows_prefiltered_in": pre["rows_in"],
        "rows_kept_by_prefilter": pre["rows_out"],
        "prefilter_dropped": pre["dropped"],
        "rows_selected": sel["rows_out"],
        "acceptance_rate": round(sel["acceptance_rate"], 5),
        "ideal_acceptance": None if sel.get("ideal_acceptance") is None else round(sel["ideal_acceptance"], 5),
        "clipped_share": round(sel.get("clipped_share", 0.0), 5),
        "train_rows": result["train"]["train_rows"],
        "warm_start": result["warm_start"],
        **({"recipe": result["adapt"]["chosen"], "recipe_why": result["adapt"]["why"],
            "recipe_trained_on": result["adapt"]["final"]["trained_on"],
            "search_seconds": round(result["adapt"]["search_seconds"], 2),
            "search_models_trained": result["adapt"]["fits"],
            "adapt_candidates": candidate_table(result["adapt"])} if result.get("adapt") else {}),
        f"challenger_{metric}": round(result["challenger"][metric], 5),
        f"champion_{metric}": None if champ is None else round(champ[metric], 5),
        "promoted": result["promoted"],
        "reason": result["reason"],
        "model_version": result["version"],
        "champion_uri": f"models:/{result['model_name']}@champion",
        "mlflow_run": result["run_id"],
        "mlflow_ui": f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else uri,
    }
