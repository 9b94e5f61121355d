"""Flow runs of a killed night: Prefect leaves them RUNNING forever (nobody is left to report the
end), in the UI and in every "what is running" query. Each top-level rsft run (a night, the hourly
and the standalone ingest, the fine-tune-only flow) labels itself with its host and process id
(``rsft.host``, ``rsft.pid``) and its pipeline (``rsft.pipeline``, ``rsft.state``: what
:mod:`flows.history` prunes by); the next night marks CRASHED the RUNNING flow
runs of this host whose process is gone (:func:`rsft.fsio.owner_gone`: same boot and pid
namespace, pid free or reused) — with their sub-flow runs (the ingest, select and
fine-tune sub-flows of the killed night). Runs of other machines and of live processes are left
alone. The MLflow side of the same rule: ``rsft.tracking.runs.close_stale_runs``.
"""

from __future__ import annotations

import logging
import socket
from uuid import UUID

from flows.paging import PAGE, paged
from rsft.config import PipelineConfig
from rsft.fsio import owner, owner_gone
from rsft.pipeline.layout import state

log = logging.getLogger("rsft.flows")


def claim_and_close(cfg: PipelineConfig | None = None) -> list[str]:
    """At a night's start: label its flow run (:func:`claim`), then close a killed night's runs
    (:func:`close_crashed`). Bookkeeping: a failure is a warning, never the night's failure."""
    claim(cfg)
    try:
        return close_crashed()
    except Exception as e:  # noqa: BLE001
        log.warning("could not check for a killed night's flow runs: %s: %s", type(e).__name__, e)
        return []


def pipeline_labels(cfg: PipelineConfig) -> dict[str, str]:
    """Whose run it is: the pipeline's name and its resolved state dir (two state dirs reporting to
    one Prefect server may hold pipelines of the same name; their histories stay apart)."""
    return {"rsft.pipeline": cfg.name, "rsft.state": str(state(cfg).root)}


def claim(cfg: PipelineConfig | None = None) -> None:
    """Label the current flow run with this host and process (what :func:`close_crashed` reads)
    and, given ``cfg``, its pipeline (what :mod:`flows.history` selects by). Bookkeeping: a failure
    is a warning, never the run's failure."""
    from prefect import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(str(flow_run.id)), {**owner(), **(pipeline_labels(cfg) if cfg else {})})
    except Exception as e:  # noqa: BLE001
        log.warning("could not label the flow run: %s: %s", type(e).__name__, e)


def close_crashed(page: int = PAGE) -> list[str]:
    """Mark CRASHED the RUNNING flow runs whose labelled owner (the run or its nearest labelled
    parent flow run) ran on this host in a process that is gone. Returns their names. Every
    RUNNING run is read, ``page`` at a time, before any is closed (closing one shifts the pages)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Crashed

    host, closed = socket.gethostname(), []
    with get_client(sync_client=True) as client:
        running = list(paged(client, page, sort=FlowRunSort.ID_DESC, flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])))))
        by_id = {r.id: r for r in running}

        def labelled(run, depth: int = 0) -> dict[str, str] | None:
            """The owner labels of the run or of its nearest labelled parent flow run."""
            labels = {k: str(v) for k, v in (run.labels or {}).items()}
            if "rsft.pid" in labels:
                return labels
            if run.parent_task_run_id is None or depth > 8:
                return None
            parent_id = client.read_task_run(run.parent_task_run_id).flow_run_id
            parent = by_id.get(parent_id) or (client.read_flow_run(parent_id) if parent_id else None)
            return labelled(parent, depth + 1) if parent is not None else None

        for run in running:
            who = labelled(run)
            if who and owner_gone(who):
                client.set_flow_run_state(run.id, Crashed(message=f"its process ({who['rsft.pid']} on {host}) is gone: "
                                                                  "the night was killed"), force=True)
                closed.append(run.name)
    if closed:
        log.info("marked %d flow run(s) of a killed night CRASHED: %s", len(closed), ", ".join(closed))
    return closed
