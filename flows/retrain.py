"""The nightly retrain: the night of ``rsft.pipeline.night.run_night``, its steps as Prefect
sub-flows (ingest, select, finetune) with per-file, per-chunk and per-CV-unit tasks."""

from __future__ import annotations

import logging

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.crashed import claim_and_close
from flows.finetune import finetune_selected
from flows.history import after_night as prune_history
from flows.publish import publish_decision, publish_selection
from flows.ingest import ingest_datasets
from flows.select import select_rows
from rsft.config import PipelineConfig, load_config
from rsft.pipeline.night import Steps, run_night
from rsft.pipeline.results import DatasetIngest, Finetuned, Ingested, Selection
from rsft.pipeline.summary import mlflow_line
from rsft.pipeline.warning_history import KINDS, in_full
from rsft.readable import counts, human

def _history(cfg: PipelineConfig) -> tuple[str, dict[str, Any] | None]:
    """The night's retention of the Prefect history (flows/history.py), ``state.keep_nights`` nights:
    the summary's line and its figures."""
    return prune_history(cfg)


PREFECT_STEPS = Steps(ingest=ingest_datasets, select=select_rows, finetune=finetune_selected, history=_history)


def _steps(seen: dict[str, Any]) -> Steps:
    """PREFECT_STEPS whose results are published on the nightly run itself as they finish (the
    decision also kept in ``seen["result"]``)."""

    def ingest(cfg: PipelineConfig) -> Ingested:
        out = ingest_datasets(cfg)
        for name, d in out.datasets.items():
            failed = len(d.files_failed)
            get_run_logger().info("ingested %s: %d new files, %s rows ok, %s quarantined%s", name,
                                  d.files - d.files_skipped - failed, f"{d.rows_ok:,}", f"{d.rows_quarantined:,}",
                                  f"; {failed} file(s) failed: {d.files_failed[0]}" if failed else "")
        return out

    def select(cfg: PipelineConfig) -> Selection:
        selection = select_rows(cfg)
        publish_selection(cfg, selection)
        return selection

    def finetune(cfg: PipelineConfig, ingested: DatasetIngest | None, selection: Selection,
                 started: float | None = None) -> Finetuned:
        seen["result"] = result = finetune_selected(cfg, ingested, selection, started)
        publish_decision(result)
        return result

    return Steps(ingest=ingest, select=select, finetune=finetune, history=_history)


def _night_name() -> str:
    """'retrain factory 2026-12-04 02:00' (UTC) while it runs (a killed night keeps it): the Prefect
    run list reads as a calendar; renamed at its end (:func:`_rename`). The pipeline's name, as the
    end's name has it (trial 11: 'retrain pv …' from pv.yaml, then 'retrain pvplant …'); the config
    file's stem where the config does not load (the flow then fails with the reason)."""
    from prefect.runtime import flow_run

    path = str(flow_run.parameters.get("config_path") or "pipeline")
    try:
        name = load_config(path, flow_run.parameters.get("overrides")).name
    except Exception:  # noqa: BLE001 (a name must not be the failure; the flow's body says why)
        name = Path(path).stem
    return f"retrain {name} {datetime.now(timezone.utc):%Y-%m-%d %H:%M}"


def _rename(title: str) -> None:
    """Name the finished night's flow run as its MLflow run: 'retrain factory 2026-12-06 (data to
    2026-01-27) promoted v2' — a backfill's nights, run on one day, read apart in the Prefect UI
    (trial 10: every run named by the wall clock). Bookkeeping: a failure is a warning."""
    from uuid import UUID

    from prefect import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(str(flow_run.id)), name=f"retrain {title}")
    except Exception as e:  # noqa: BLE001
        logging.getLogger("rsft.flows").warning("could not rename the flow run: %s: %s", type(e).__name__, e)


def _summary_markdown(summary: dict[str, Any], link: str = "") -> str:
    """The night's summary as a two-column markdown table, decision first, then its warnings as a
    list under the table (in a table cell the Prefect UI cut a warning's sentence at the page's
    edge): the new ones in full (:func:`in_full`), the unchanged ones counted in a line."""
    first = ("promoted", "reason", "model_version", "recipe", "mlflow_run", "champion_uri")
    # a table of its own; the JSON's figures of a line; the warnings' list below
    hidden = ("adapt_candidates", "state_disk_bytes", "gc_figures", "prefect_history_figures", "warnings",
              "warnings_unchanged", *KINDS)
    keys = [k for k in first if k in summary] + [k for k in summary if k not in first and k not in hidden]

    def cell(v: Any) -> str:  # numbers as the CLI's tables show them (137,129 · 0.01674 · yes)
        if isinstance(v, dict):  # counts per reason / rule: "a 3, b 2"
            text = counts(v) or "—"
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):  # lines, as sentences
            text = " ".join(f"{x}." for x in v) or "none"
        else:
            text = human(v)
        return text.replace("|", "/").replace("\n", " ")

    rows = [f"| {k.replace('_', ' ')} | {cell(summary[k])} |" for k in keys]
    warnings = [f"- ⚠ {KINDS[k]}: {line}" for k in KINDS if k in summary for line in in_full(summary, k)]
    if summary.get("warnings_unchanged"):
        warnings.append(f"- {summary['warnings_unchanged']}")
    return "\n".join(["# Nightly retrain", "", *([link, ""] if link else []), "| | |", "|---|---|", *rows,
                      *(["", "## Warnings", "", *warnings] if warnings else [])])


@flow(name="nightly-retrain", flow_run_name=_night_name)
def retrain(config_path: str = "examples/factory.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = load_config(config_path, overrides)
    claim_and_close(cfg)  # label this night's flow run (host, pipeline); a killed night's runs, left RUNNING: CRASHED
    seen: dict[str, Any] = {}
    summary = run_night(cfg, _steps(seen))
    if getattr(seen.get("result"), "title", None):
        _rename(seen["result"].title)
    link = mlflow_line(seen["result"]) if "result" in seen else ""
    create_markdown_artifact(_summary_markdown(summary, link), key="retrain-summary",
                             description=f"MLflow run {summary.get('mlflow_run')}")
    return summary


if __name__ == "__main__":
    import sys

    print(retrain(sys.argv[1] if len(sys.argv) > 1 else "examples/factory.yaml"))
