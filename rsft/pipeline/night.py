"""The night, wired once: ingest → checks → select (prefilter, scorer, sampling, report) →
fine-tune → evaluate → register → promote → summary.

:func:`run_night` is the only place the order of a night is written. *How* each step runs is a
:class:`Steps` object: :data:`LOCAL` calls the library functions in this process, one after
another (notebooks, tests, debugging); ``flows/retrain.py`` passes Prefect sub-flows and tasks
over the same functions (per-file and per-chunk fan-out, retries, artifacts, the UI).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from rsft.config import PipelineConfig
from rsft.pipeline import data
from rsft.pipeline.finetune import finetune_stage
from rsft.pipeline.layout import night_lock, pool_dataset
from rsft.pipeline.results import DatasetIngest, Finetuned, Ingested, Selection
from rsft.pipeline.summary import run_summary
from rsft.pipeline.warning_history import night_warnings


def select_local(cfg: PipelineConfig) -> Selection:
    """prefilter → fit the scorer → sample (chunk after chunk) → report, in this process."""
    prefiltered = data.prefilter_stage(cfg)
    scored = data.fit_scorer_stage(cfg, prefiltered)
    selected = data.select_stage(cfg, prefiltered, scored)
    return Selection(prefiltered, scored, selected, data.report_stage(cfg, prefiltered, scored, selected))


@dataclass(frozen=True)
class Steps:
    """How each step of a night runs (same inputs and results whatever runs them)."""

    ingest: Callable[[PipelineConfig], Ingested] = data.ingest_stage
    select: Callable[[PipelineConfig], Selection] = select_local
    # (cfg, the pool's ingest, the selection, when the night began: the MLflow run's start time)
    finetune: Callable[[PipelineConfig, DatasetIngest | None, Selection, float | None], Finetuned] = finetune_stage
    # the retention of the orchestrator's own history, with the state dir's (``state.gc_after_night``):
    # a line for the summary. None: no orchestrator keeps one (LOCAL); flows/retrain.py: Prefect's
    # (the summary's line, and its counts and bytes for the JSON)
    history: Callable[[PipelineConfig], tuple[str, dict[str, Any] | None]] | None = None


LOCAL = Steps()


def run_night(cfg: PipelineConfig, steps: Steps = LOCAL) -> dict[str, Any]:
    """One night; returns the run summary (:func:`rsft.pipeline.summary.run_summary`). One night
    of a pipeline at a time on a state dir (:func:`rsft.pipeline.layout.night_lock`)."""
    with night_lock(cfg):
        return _night(cfg, steps)


def _night(cfg: PipelineConfig, steps: Steps) -> dict[str, Any]:
    started = time.time()  # the night's MLflow run spans the whole night, not its last step
    ingested = steps.ingest(cfg)
    data.check_ingested(cfg, ingested)  # a failed target export, or fail_run_on_file_error
    data.check_adapt(cfg)  # the search's folds, before the pool is touched
    ingested = data.since_last_night(ingested)  # + files other runs ingested since the last night
    selection = steps.select(cfg)
    result = steps.finetune(cfg, ingested.get(pool_dataset(cfg)), selection, started)
    summary = run_summary(cfg, ingested, selection, result)
    # repeated ones: said in one line; dated as the night's data in a backfill
    summary.update(night_warnings(cfg, selection, started, summary, result.night_date))
    try:  # the next night does not report them again (a failure here: it reports them once more)
        data.mark_reported(ingested)
    except Exception as e:  # noqa: BLE001 - the night is decided: never fail it now
        import logging

        logging.getLogger("rsft.pipeline").warning("marking tonight's files reported failed: %s", e)
    if cfg.state.gc_after_night:  # bounded state: old nights' intermediates go (rsft.pipeline.gc)
        from rsft.pipeline.gc import after_night

        summary["gc"], summary["gc_figures"] = after_night(cfg)  # (the line, and its counts and bytes for JSON)
        if steps.history is not None:
            summary["prefect_history"], summary["prefect_history_figures"] = steps.history(cfg)
    return summary
