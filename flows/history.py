"""Retention of the Prefect history: the flow runs of old nights go, with their events, so the
embedded Prefect database (``<state>/prefect/prefect.db``) stops growing (about 5 MB a night otherwise).

Prefect's own ``db_vacuum`` service deletes old flow runs on a server, but not in ephemeral mode
(``run_in_ephemeral=False``), the mode of an rsft state dir: rsft prunes through the Prefect
client instead. Only the pipeline's own history: top-level runs of rsft's flows labelled with
its name and resolved state dir (``rsft.pipeline``, ``rsft.state``: :func:`flows.crashed.claim`
sets them on each night, hourly and standalone ingest, fine-tune-only run), with their sub-flow
runs — other pipelines sharing the database or the server, and other projects' flows of the same
names, are never candidates nor counted. Runs written before those labels (no ``rsft.pipeline``)
are removed by ``rsft gc`` only, and only in the state dir's own embedded database (rsft's alone:
there they are this state dir's pipelines' old runs, counted with the pipeline's); a night never
touches them, nor anything on a server (they may be another project's there).
The measure is ``state.keep_nights``, as for the state dir's intermediates
(:mod:`rsft.pipeline.gc`): nights, counted, whatever the calendar. A night is a top-level run of
the pipeline's night flows (:data:`NIGHT_FLOWS`: ``nightly-retrain``, ``finetune-only``) that
started; the newest ``keep_nights`` of them (by when each was meant to start,
``expected_start_time``) are kept with everything after the oldest of them (their sub-flow runs,
task runs, the hourly ingests between them). Older top-level runs — nights, ingests — go whole,
each with every sub-flow run under it, once all of them are finished (COMPLETED, FAILED, CANCELLED,
CRASHED): a night with a run still RUNNING, PENDING, SCHEDULED or PAUSED is left whole. Deleting
a flow run deletes its task runs and states (cascades) and, in the background, its logs (Prefect
queues that; :func:`prune` waits for it); its artifacts are deleted first (Prefect leaves them).
Never touched: deployments, schedules, work pools, concurrency limits, other pipelines' and other
projects' runs.

Events: Prefect stores an event for each state of each flow and task run (and artifact), with a
row for each resource it names (trial 10, 25 nights: 88 % of the database's pages). Prefect deletes
them by age only (``server.events.retention_period``, 7 days, its ``db_vacuum`` event service, in
ephemeral mode too) and its API deletes none, so nights run faster than one a day (a backfill, a
catch-up) kept all theirs: +4.2 MB a night in trial 10's. In the state dir's embedded SQLite
database the retention deletes them with the runs (:func:`drop_events`, direct SQL confined to
that file, in short transactions, while the server runs): every event that names a pruned flow
run (its states, its task runs', its artifacts'), and those that occurred before the oldest kept
night naming a flow run no longer there (pruned before this, deleted by hand) — these even when
no night is old enough to prune. On a Prefect server (``PREFECT_API_URL``) rsft deletes no event:
the server's are its own (its retention period).

Space: SQLite reuses the pages of deleted rows, so the embedded database stops growing once
``keep_nights`` nights are kept — about ``keep_nights + 1`` nights' runs and events, whatever
the nights' dates. The file only shrinks by a vacuum. ``rsft gc`` runs ``VACUUM``
(no flow may run then: it first marks CRASHED this host's runs whose process is gone, then a run
still RUNNING skips it, named; a writer holding the database past ``BUSY_TIMEOUT_S`` skips it too,
said — it never waits 30 s with Prefect's writers queued behind it) and switches the file to
``auto_vacuum=INCREMENTAL``, after which the night's retention returns freed pages with a cheap
``PRAGMA incremental_vacuum``. With a Prefect server (``PREFECT_API_URL``) only the API is used:
the server's database and its space are its own (its ``db_vacuum`` service, Postgres autovacuum).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flows.paging import PAGE, paged

if TYPE_CHECKING:
    from rsft.config import PipelineConfig

log = logging.getLogger("rsft.flows")

# the names of rsft's flows (flows/*.py; tests/test_prefect_history.py checks the list): only
# their runs are pruned, a team server's other flows are not rsft's to delete
RSFT_FLOWS = ("nightly-retrain", "ingest", "ingest-exports", "select", "sample-chunks", "finetune", "finetune-only")
# the flows whose top-level runs are a pipeline's nights: what ``keep_nights`` counts (a night a
# run, so nights run back to back on one date — a backfill, a catch-up — are as many nights)
NIGHT_FLOWS = ("nightly-retrain", "finetune-only")
LABEL = "rsft.pipeline"  # a top-level run's pipeline label (flows.crashed.pipeline_labels); without it: written before labels
BUSY_TIMEOUT_S = 2.0  # how long a VACUUM or a batch of events' deletion waits for a writer before skipping
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
FLOW_RUN = "prefect.flow-run."  # a flow run's resource id in Prefect's events: this and its id
BULK = 50  # flow runs per bulk delete request (Prefect's limit)
LOGS_WAIT_S = 30.0  # how long to wait for Prefect's background deletion of the logs

Vacuum = Literal["full", "incremental", "none"]


@dataclass
class HistoryReport:
    """What the retention deleted (or, ``dry_run``, would delete) and the database's size."""

    dry_run: bool = False
    kept_nights: list[dict[str, str]] = field(default_factory=list)  # the kept nights (name, state, started), newest first
    cutoff: datetime | None = None  # finished runs meant to start before it go (None: no more nights than keep_nights)
    nights: list[dict[str, Any]] = field(default_factory=list)  # each old top-level run (a night, an ingest): name, state, started, subflows
    runs: list[dict[str, str]] = field(default_factory=list)  # name, state, started (UTC) of each deleted run
    artifacts: int = 0
    logs_pending: int = 0  # runs whose logs Prefect had not deleted yet when we stopped waiting
    more_left: bool = False  # older nights left for the next time (``limit``)
    db: str | None = None  # the SQLite file; None with a Prefect server
    bytes_before: int | None = None
    bytes_after: int | None = None
    vacuum: str = ""  # what was done for space, in words
    events: int = 0  # Prefect events deleted (dry run: that would be) from the embedded database (:func:`drop_events`)
    events_note: str = ""  # why events were left for the next prune (a busy database), in words; "" when none

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["cutoff"] = self.cutoff.isoformat() if self.cutoff else None
        return out


def database_file() -> Path | None:
    """The embedded server's SQLite file, or None with a Prefect server (``PREFECT_API_URL``) or
    a non-SQLite database: then the space is not rsft's to reclaim."""
    from prefect.settings import get_current_settings
    from sqlalchemy.engine import make_url

    from tasks.locks import prefect_server_configured

    if prefect_server_configured():
        return None
    url = get_current_settings().server.database.connection_url
    url = make_url(url.get_secret_value() if url is not None else "")
    if not url.drivername.startswith("sqlite") or not url.database or url.database.startswith(":") \
            or "memory" in url.database:
        return None
    return Path(url.database)


def file_bytes(db: Path) -> int:
    """The database with its write-ahead log and shared-memory index (all three take disk)."""
    return sum(os.path.getsize(p) for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


@dataclass(frozen=True)
class Scope:
    """Whose top-level runs are pruned: those labelled ``labels`` (a pipeline's; None: none), and
    with ``unlabelled`` those without a pipeline label (written before labels)."""

    labels: dict[str, str] | None
    unlabelled: bool = False

    def __contains__(self, run) -> bool:
        have = {k: str(v) for k, v in (run.labels or {}).items()}
        if LABEL not in have:
            return self.unlabelled
        return self.labels is not None and all(have.get(k) == v for k, v in self.labels.items())


def _runs(client, flows: tuple[str, ...], scope: Scope, *, nights: bool = False, before: datetime | None = None,
          page: int = PAGE):
    """The top-level flow runs of ``flows`` in ``scope``, page by page, by when they were meant to
    start (``expected_start_time``: a scheduled night's time, else when the run was created).
    ``nights``: those that started, newest first; ``before``: the finished ones meant to start
    before it (runs cancelled before they began too), oldest first. (Prefect's API filters no
    labels: the scope is applied to each page read.)"""
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter,
                                                FlowRunFilterExpectedStartTime, FlowRunFilterParentTaskRunId,
                                                FlowRunFilterStartTime, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.sorting import FlowRunSort

    f = FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True))
    if nights:
        f.start_time = FlowRunFilterStartTime(is_null_=False)
        sort = FlowRunSort.EXPECTED_START_TIME_DESC
    else:
        f.expected_start_time = FlowRunFilterExpectedStartTime(before_=before)
        f.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=sorted(TERMINAL)))
        sort = FlowRunSort.EXPECTED_START_TIME_ASC
    for run in paged(client, page, flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))),
                      flow_run_filter=f, sort=sort):
        if run in scope:
            yield run


def _subflows(client, run_id, page: int = PAGE) -> list:
    """Every sub-flow run under a flow run (the night's ingest, select, finetune, and theirs),
    level by level, each level read in pages (a night may have more sub-flow runs than a page)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    out, level = [], [run_id]
    while level:
        children = []
        for i in range(0, len(level), page):  # (a level's parents in batches: one filter, not thousands of ids)
            children += paged(client, page, sort=FlowRunSort.ID_DESC, flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=level[i:i + page])))
        out += children
        level = [c.id for c in children]
    return out


def kept_nights(client, keep_nights: int, night_flows: tuple[str, ...], scope: Scope,
                page: int = PAGE) -> tuple[list, datetime | None]:
    """The newest ``keep_nights`` nights in ``scope`` (top-level runs of ``night_flows`` that started,
    newest first) and the cutoff: when the oldest of them was meant to start (None when there are
    not more nights than that: nothing is old enough). Nights are counted, not dated: a backfill's
    nights, all run on one date, are as many nights. Reads the newest runs only, however long the history."""
    kept: list = []
    for run in _runs(client, night_flows, scope, nights=True, page=page):
        if len(kept) == keep_nights:  # an older night: everything meant to start before the cutoff goes
            return kept, kept[-1].expected_start_time
        kept.append(run)
    return kept, None


def old_nights(client, cutoff: datetime, flows: tuple[str, ...], scope: Scope, limit: int | None = None,
               page: int = PAGE) -> list[list]:
    """The finished top-level runs meant to start before ``cutoff``, oldest first, each with its
    sub-flow runs (``[top, *subflows]``): a night goes whole, so one with a sub-flow run not
    finished (a killed night's, left RUNNING) is left whole. At most ``limit`` nights."""
    nights = []
    # the API's before_ is inclusive: the run that sets the cutoff stays
    for top in _runs(client, flows, scope, before=cutoff - timedelta(microseconds=1), page=page):
        tree = [top, *_subflows(client, top.id, page)]
        if all(r.state_type is not None and r.state_type.value in TERMINAL for r in tree):
            nights.append(tree)
            if limit is not None and len(nights) == limit:
                break
    return nights


def _delete(client, runs: list) -> tuple[int, int]:
    """Delete the runs' artifacts, then the runs (task runs and states cascade); wait for
    Prefect's background deletion of their logs. Returns (artifacts deleted, runs whose logs are
    still there)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.exceptions import ObjectNotFound

    artifacts, t0 = 0, time.monotonic()
    ids = [r.id for r in runs]
    for i in range(0, len(ids), PAGE):
        batch = ids[i:i + PAGE]
        while arts := client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=batch)), limit=PAGE):
            for a in arts:
                try:
                    client.delete_artifact(a.id)
                    artifacts += 1
                except ObjectNotFound:  # deleted meanwhile
                    pass
        for i in range(0, len(batch), BULK):
            _delete_runs(client, batch[i:i + BULK])
    log.debug("deleted %d runs, %d artifacts in %.1f s", len(ids), artifacts, time.monotonic() - t0)
    deadline = time.monotonic() + LOGS_WAIT_S

    def logs_of(ids: list) -> list:
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=1)

    while any(logs_of(ids[i:i + PAGE]) for i in range(0, len(ids), PAGE)) and time.monotonic() < deadline:
        time.sleep(0.5)
    pending = [i for i in ids if logs_of([i])] if time.monotonic() >= deadline else []
    return artifacts, len(pending)


def _delete_runs(client, ids: list) -> None:
    """Delete these flow runs (≤ :data:`BULK`) in one request to Prefect's bulk endpoint: one
    ``delete_flow_run`` request took ~1.3 s of the server's time each, with no CPU (trial 11: 5 a
    night, +10 s a night's wall; 6 one by one 7.8 s, in bulk 2.3 s). A server without the endpoint
    gets them one by one."""
    from prefect.exceptions import ObjectNotFound

    try:
        client.request("POST", "/flow_runs/bulk_delete",
                       json={"flow_runs": {"id": {"any_": [str(i) for i in ids]}}, "limit": len(ids)}).raise_for_status()
        return
    except Exception as e:  # noqa: BLE001 (an older server: 404 / 405)
        log.debug("bulk delete unavailable (%s): one by one", e)
    for run_id in ids:
        try:
            client.delete_flow_run(run_id)
        except ObjectNotFound:
            pass


def _event_ids(con: sqlite3.Connection, run_ids: list, before: datetime | None) -> list[str]:
    """The ids of the events about these flow runs (a flow run's own, its task runs', its
    artifacts': each names the run as a resource, related or not), and, with ``before``, of those
    that occurred before it about flow runs no longer in the database (pruned before events
    were, deleted by hand): reads Prefect's ``event_resources`` index (resource id, occurred)."""
    ids: set[str] = set()
    resources = [f"{FLOW_RUN}{i}" for i in run_ids]
    for i in range(0, len(resources), PAGE):
        batch = resources[i:i + PAGE]
        ids.update(r[0] for r in con.execute(
            f"SELECT DISTINCT event_id FROM event_resources WHERE resource_id IN ({','.join('?' * len(batch))})", batch))
    if before is not None:  # ('/' sorts right after '.': the range is every flow-run resource)
        ids.update(r[0] for r in con.execute(
            "SELECT DISTINCT er.event_id FROM event_resources er WHERE er.resource_id >= ? AND er.resource_id < ? "
            "AND er.occurred < ? AND NOT EXISTS (SELECT 1 FROM flow_run f WHERE f.id = substr(er.resource_id, ?))",
            (FLOW_RUN, FLOW_RUN[:-1] + "/", before.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
             len(FLOW_RUN) + 1)))
    return sorted(ids)


def drop_events(db: Path, run_ids: list, before: datetime | None, *, dry_run: bool = False) -> tuple[int, str]:
    """Delete from the embedded database the Prefect events of the pruned flow runs and the older
    events of runs already gone (:func:`_event_ids`): Prefect deletes events only by age
    (``server.events.retention_period``, 7 days, its ``db_vacuum`` service, in ephemeral mode too)
    and its API deletes none, so a backfill's nights (many a day) would keep all theirs. Direct
    SQL, and only on the state dir's own SQLite file (never a server's database): a batch of
    ``PAGE`` events a transaction (``BEGIN IMMEDIATE``), each a few milliseconds, so Prefect's
    writers (tonight's server runs meanwhile) wait at most that; a writer holding the database
    past ``BUSY_TIMEOUT_S`` stops it, said — the rest goes next time (``before`` finds them).
    Returns (events deleted, or that would be; a note, "" when all went)."""
    con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    done = 0
    try:
        ids = _event_ids(con, run_ids, before)
        if dry_run:
            return len(ids), ""
        for i in range(0, len(ids), PAGE):
            batch = ids[i:i + PAGE]
            marks = ",".join("?" * len(batch))
            con.execute("BEGIN IMMEDIATE")
            try:  # (no foreign key: the resources first, as Prefect's own vacuum does)
                con.execute(f"DELETE FROM event_resources WHERE event_id IN ({marks})", batch)
                con.execute(f"DELETE FROM events WHERE id IN ({marks})", batch)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            done += len(batch)
        return done, ""
    except sqlite3.OperationalError as e:  # locked past the timeout (or a Prefect without these tables)
        why = "database busy" if "locked" in str(e) or "busy" in str(e) else str(e)
        return done, f"events left for next time: {why}"
    finally:
        con.close()


def _describe(run) -> dict[str, str]:
    when = run.expected_start_time
    return {"name": run.name, "state": run.state_type.value if run.state_type else "",
            "started": when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if when else ""}


def _running(client) -> list[str]:
    """The flow runs RUNNING on this database (a night or an ingest of any pipeline on this state
    dir), named for the line that says why the VACUUM was skipped: a stale one (its process killed
    on another host, or before runs were labelled) is then found and can be cancelled by its id."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType.RUNNING]))), limit=6)
    named = [f"{r.name} ({r.id}, since {_describe(r)['started']} UTC)" for r in runs[:5]]
    return named + ["…"] * (len(runs) > 5)


def reclaim(db: Path, how: Vacuum) -> str:
    """Return freed pages to the disk. ``full``: ``VACUUM`` (rewrites the file; switches it to
    ``auto_vacuum=INCREMENTAL`` so later nights can use the cheap form), then the write-ahead log
    truncated. ``incremental``: ``PRAGMA incremental_vacuum`` where the file is in that mode (a
    short write, safe while Prefect writes), and the write-ahead log truncated in either mode;
    else the free pages are reused. A busy
    database (another process writing for ``BUSY_TIMEOUT_S``) is said, never raised: the VACUUM does
    not wait long for it, as Prefect's next writers would queue behind the waiting VACUUM."""
    con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        mode = con.execute("PRAGMA auto_vacuum").fetchone()[0]  # 0 none, 1 full, 2 incremental
        if how == "full":
            if mode != 2:
                con.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect with the VACUUM
            con.execute("VACUUM")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return f"VACUUM ({free:,} free pages returned; auto_vacuum=incremental)"
        if how == "incremental":
            # TRUNCATE: the write-ahead log otherwise stays at its largest (trial 11: 11.6 MB left
            # beside the database after every night); busy readers make it a no-op
            if mode == 2:  # (execute() steps the pragma once: one page; a script runs it to the end)
                con.executescript("PRAGMA incremental_vacuum;")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if mode == 2:
                return f"incremental_vacuum ({free:,} free pages returned)"
        return (f"{free:,} free pages kept for reuse (the file shrinks after `rsft gc`'s VACUUM)" if how != "none"
                else "no vacuum")
    except sqlite3.OperationalError as e:  # locked past the timeout
        busy = "locked" in str(e) or "busy" in str(e)
        return (f"{'VACUUM' if how == 'full' else 'vacuum'} skipped: database busy (another process wrote to it for "
                f"{BUSY_TIMEOUT_S:g} s; the free pages are reused)" if busy else f"vacuum skipped: {e}")
    finally:
        con.close()


def prune(keep_nights: int, *, pipeline: PipelineConfig | None = None, unlabelled: bool = True, dry_run: bool = False,
          vacuum: Vacuum = "full", limit: int | None = None, flows: tuple[str, ...] = RSFT_FLOWS,
          night_flows: tuple[str, ...] = NIGHT_FLOWS, page: int = PAGE) -> HistoryReport:
    """Delete (or, ``dry_run``, list) the finished flow runs of ``pipeline`` older than its newest
    ``keep_nights`` nights (runs of ``night_flows``; see the module doc), at most ``limit`` old
    top-level runs with their sub-flow runs (the rest next time), then
    reclaim the space the ``vacuum`` way when the database is this state dir's SQLite file.
    ``unlabelled``: also the runs written before pipeline labels — in the embedded database only
    (``rsft gc``; the night passes False). ``pipeline`` None: those unlabelled runs alone."""
    from prefect import get_client

    from flows.crashed import close_crashed, pipeline_labels

    if keep_nights < 1:
        raise ValueError("state.keep_nights must be >= 1 (tonight's run is always kept)")
    rep = HistoryReport(dry_run=dry_run)
    db = database_file()
    rep.db = str(db) if db else None
    if db is not None and not db.exists():  # no night has run here: no server to start for nothing
        rep.vacuum = "no Prefect database yet"
        return rep
    rep.bytes_before = file_bytes(db) if db else None
    scope = Scope(pipeline_labels(pipeline) if pipeline is not None else None, unlabelled and db is not None)
    with get_client(sync_client=True) as client:
        kept, rep.cutoff = kept_nights(client, keep_nights, night_flows, scope, page)
        rep.kept_nights = [_describe(r) for r in kept]
        nights = (old_nights(client, rep.cutoff, flows, scope, None if limit is None else limit + 1, page)
                  if rep.cutoff else [])
        if limit is not None and len(nights) > limit:
            rep.more_left, nights = True, nights[:limit]
        runs = [r for night in nights for r in reversed(night)]  # sub-flow runs before their night
        rep.runs = [_describe(r) for r in runs]
        rep.nights = [{**_describe(night[0]), "subflows": len(night) - 1} for night in nights]
        # the events of runs already gone, older than the oldest kept night (even with nothing older to prune)
        gone_before = kept[-1].expected_start_time if kept else None
        events = db is not None and (runs or gone_before is not None)  # (a server's are its own: its retention period)
        if dry_run:
            if events:
                rep.events, rep.events_note = drop_events(db, [r.id for r in runs], gone_before, dry_run=True)
            return rep
        if runs:
            rep.artifacts, rep.logs_pending = _delete(client, runs)
        if events:
            rep.events, rep.events_note = drop_events(db, [r.id for r in runs], gone_before)
        if db is None:
            rep.vacuum = "none: the Prefect server's database (its db_vacuum service and the database reclaim space)"
        elif vacuum == "full":
            close_crashed()  # this host's runs whose process is gone (a killed `rsft ingest`): no writers
            if running := _running(client):
                vacuum = "incremental"  # a flow runs on this database: VACUUM would hold its writes
                rep.vacuum = f"VACUUM skipped: still RUNNING: {', '.join(running)}; "
    if db is not None and db.exists():
        rep.vacuum += reclaim(db, vacuum)
        rep.bytes_after = file_bytes(db)
    return rep


def after_night(cfg: PipelineConfig) -> tuple[str, dict[str, Any] | None]:
    """The night's retention of its pipeline's Prefect history, ``state.keep_nights`` nights: one
    line for the summary and its figures for the JSON (None when it failed): at most 30 old
    top-level runs a night (a long backlog drains over nights), the cheap vacuum, never the runs
    written before labels (``rsft gc``'s). Never raises."""
    from rsft.state import human_bytes

    keep_nights = cfg.state.keep_nights
    try:
        rep = prune(keep_nights, pipeline=cfg, unlabelled=False, vacuum="incremental", limit=30)
    except Exception as e:  # noqa: BLE001 - retention must not fail a finished night
        log.warning("pruning the Prefect history failed: %s", e, exc_info=True)
        return f"failed: {type(e).__name__}: {e}", None
    figures = {"keep_nights": keep_nights, "top_level_runs_deleted": len(rep.nights), "flow_runs_deleted": len(rep.runs),
               "artifacts_deleted": rep.artifacts, "events_deleted": rep.events, "more_left": rep.more_left,
               "database_bytes_before": rep.bytes_before, "database_bytes_after": rep.bytes_after}
    size = (f"; database {human_bytes(rep.bytes_before)} → {human_bytes(rep.bytes_after)}"
            if rep.bytes_before is not None and rep.bytes_after is not None else "")
    return (f"deleted {len(rep.nights)} top-level run(s) older than the newest {keep_nights} nights ({len(rep.runs)} "
            "flow runs)" + (f"; {rep.events} Prefect event(s)" if rep.db else "")
            + (f" ({rep.events_note})" if rep.events_note else "")
            + ("; more next night" if rep.more_left else "") + size, figures)
