"""What a night publishes to the Prefect UI on the calling (parent) flow run: the selection report
and the promotion decision (with the adaptation search's candidates) as artifacts, and a line of
each in the run's log. Used by the nightly retrain and the fine-tune-only flow."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from rsft.config import PipelineConfig
from rsft.pipeline.results import Finetuned, Selection
from rsft.pipeline.summary import decision_markdown, selection_markdown


def publish_selection(cfg: PipelineConfig, selection: Selection) -> None:
    """The selection report as a markdown artifact of the calling (parent) flow run, its warnings
    in the run's log."""
    create_markdown_artifact(selection_markdown(cfg, selection), key="selection-report",
                             description=f"{selection.selected.rows_out:,} rows selected")
    log = get_run_logger()
    sel = selection.selected
    log.info("selected %s of %s kept pool rows (%s sampling, acceptance %.2f%%)", f"{sel.rows_out:,}",
             f"{sel.rows_in:,}", sel.mode, 100 * sel.acceptance_rate)
    for w in (selection.report or {}).get("warnings") or []:
        log.warning("selection: %s", w)


def publish_decision(result: Finetuned) -> None:
    """The decision (markdown, with the MLflow run's link) and the adaptation search's candidates
    (a table) as artifacts of the calling (parent) flow run, and a line in its log."""
    from rsft.adapt import candidate_table

    create_markdown_artifact(decision_markdown(result), key="promotion-decision",
                             description=f"{'promoted' if result.promoted else 'not promoted'}: {result.reason}"[:500])
    if result.adapt:
        a = result.adapt
        create_table_artifact(candidate_table(a), key="adapt-candidates",
                              description=f"chose {a['chosen']}: {a['why']} ({a['fits']} fits, {a['search_seconds']:.2f} s)")
    get_run_logger().info("%s v%s %s: %s", result.model_name, result.version or "-",
                          "promoted" if result.promoted else "not promoted", result.reason)
