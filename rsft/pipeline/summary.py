"""The small, human-readable summary a night ends with (the CLI's table, ``--json``)."""

from __future__ import annotations

from typing import Any

from rsft.config import PipelineConfig
from rsft.pipeline.layout import pool_dataset, tracking_uri
from rsft.pipeline.results import Finetuned, Ingested, Selection


def run_summary(cfg: PipelineConfig, ingested: Ingested, selection: Selection, result: Finetuned) -> dict[str, Any]:
    from rsft.adapt import candidate_table

    pool = ingested[pool_dataset(cfg)]
    sel, pre = selection.selected, selection.prefiltered
    metric, champ, search = result.metric, result.champion, result.adapt
    uri = tracking_uri(cfg)
    return {
        "files_new": pool.files - pool.files_skipped,
        "rows_ingested": pool.rows_ok,  # this run (earlier files are skipped)
        "rows_quarantined": pool.rows_quarantined,
        "quarantine_reasons": pool.quarantine_reasons,
        "files_failed": len(pool.files_failed),
        "rows_prefiltered_in": pre.rows_in,
        "rows_kept_by_prefilter": pre.rows_out,
        "prefilter_dropped": pre.dropped,
        "rows_selected": sel.rows_out,
        "acceptance_rate": round(sel.acceptance_rate, 5),
        "ideal_acceptance": None if sel.ideal_acceptance is None else round(sel.ideal_acceptance, 5),
        "clipped_share": round(sel.clipped_share, 5),
        # the selection report's warnings (uncovered target rows, missed groups, worse features)
        "selection_warnings": list((selection.report or {}).get("warnings") or []),
        "train_rows": result.train["train_rows"],
        "warm_start": result.warm_start,
        **({"recipe": search["chosen"], "recipe_why": search["why"],
            "recipe_trained_on": search["final"]["trained_on"],
            "search_seconds": round(search["search_seconds"], 2),
            "search_models_trained": search["fits"],
            "adapt_candidates": candidate_table(search)} if search else {}),
        f"challenger_{metric}": round(result.challenger[metric], 5),
        f"champion_{metric}": None if champ is None else round(champ[metric], 5),
        "promoted": result.promoted,
        "reason": result.reason,
        "model_version": result.version,
        "champion_uri": f"models:/{result.model_name}@champion",
        "mlflow_run": result.run_id,
        "mlflow_ui": f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else uri,
    }
