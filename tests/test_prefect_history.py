"""The Prefect history's retention (flows/history.py): old finished nights go whole, with their
task runs, logs and artifacts; the newest ``keep_nights`` nights and unfinished nights stay; the
embedded SQLite database shrinks after ``rsft gc``'s VACUUM. Real Prefect: the session's test
harness (a server: the API only), and a standalone PREFECT_HOME in a child process (the
embedded database, as in a state dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from datetime import datetime, timedelta, timezone

from tests.conftest import REPO
from benchmarks._nights import make_night


def _pipeline(name: str, state_dir) -> "PipelineConfig":  # noqa: F821
    """A pipeline's identity for the history: the demo config under another name and state dir."""
    from rsft.config import load_config

    return load_config(REPO / "examples" / "factory.yaml", {"name": name, "state.dir": str(state_dir)})


def _labels(cfg) -> dict[str, str]:
    from flows.crashed import pipeline_labels

    return pipeline_labels(cfg)


def test_rsft_flows_names_every_flow_rsft_defines():
    """Only rsft's flows are pruned (a team server's other flows are not rsft's): the list must
    name every flow in flows/, or a new flow's history would grow again."""
    import importlib
    import pkgutil

    import flows
    from flows.history import RSFT_FLOWS
    from prefect import Flow

    names = set()
    for m in pkgutil.iter_modules(flows.__path__):
        mod = importlib.import_module(f"flows.{m.name}")
        names |= {v.name for v in vars(mod).values() if isinstance(v, Flow)}
    assert names == set(RSFT_FLOWS)


def _flow_runs(client, ids) -> set:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return {r.id for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))}


def _children(client, ids) -> tuple[int, int, int]:
    """Task runs, logs and artifacts of these flow runs."""
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter,
                                                FlowRunFilterId, LogFilter, LogFilterFlowRunId)

    ids = list(ids)
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    return len(tasks), len(logs), len(arts)


def _days(rep) -> list[str]:
    """The UTC dates of the nights a prune kept, newest first."""
    return [n["started"][:10] for n in rep.kept_nights]


def test_old_finished_nights_go_whole_the_newest_and_unfinished_stay(prefect_harness, tmp_path):
    """Nights on days -7 … -1, keep 3: nights -6 and -4 go with their sub-flow runs, task runs,
    logs and artifacts; -7 (finished, but a sub-flow run RUNNING) and -5 (its top-level run
    RUNNING) stay whole, as do -3, -2, -1 and a scheduled future run. A dry run lists the same runs and deletes nothing. Flow names unique to
    this test: the session's other runs are never candidates."""
    from prefect import get_client
    from prefect.states import Running, Scheduled

    from flows.history import prune
    from benchmarks._nights import make_flow

    tag = uuid.uuid4().hex[:8]
    top, subs = f"night-{tag}", (f"ingest-{tag}", f"select-{tag}")
    names = (top, *subs)
    cfg = _pipeline("factory", tmp_path / "state")
    day0 = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    with get_client(sync_client=True) as client:
        nights = {d: make_night(client, day0 - timedelta(days=d), tasks=2, log_lines=2, finished=d != 5, top=top,
                                subflows=subs, labels=_labels(cfg)) for d in (6, 5, 4, 3, 2, 1)}
        nights[7] = make_night(client, day0 - timedelta(days=7), tasks=1, log_lines=1, top=top, subflows=subs,
                               labels=_labels(cfg))
        client.set_flow_run_state(nights[7]["subs"][0], Running(), force=True)  # its top finished, a sub-flow not
        future = client.create_flow_run(make_flow(top), state=Scheduled(scheduled_time=day0 + timedelta(days=1))).id
        client.update_flow_run_labels(future, _labels(cfg))
        ids = {d: {n["top"], *n["subs"]} for d, n in nights.items()}
        gone, stay = ids[6] | ids[4], ids[7] | ids[5] | ids[3] | ids[2] | ids[1] | {future}
        assert _children(client, gone)[0] == 2 * (2 * 2 + 2) and _children(client, gone)[1] == 4 * 2 * 2

        dry = prune(3, pipeline=cfg, dry_run=True, flows=names, night_flows=(top,))
        assert _flow_runs(client, gone | stay) == gone | stay  # nothing deleted
        rep = prune(3, pipeline=cfg, flows=names, night_flows=(top,))
        assert rep.db is None and "server" in rep.vacuum  # the harness is a server: the API only
        assert _days(rep) == [(day0 - timedelta(days=d)).date().isoformat() for d in (1, 2, 3)]
        assert len(rep.runs) == len(dry.runs) == len(gone) and rep.runs == dry.runs and rep.artifacts == len(gone)
        assert [n["started"][:10] for n in rep.nights] == [(day0 - timedelta(days=d)).date().isoformat() for d in (6, 4)]
        assert _flow_runs(client, gone | stay) == stay
        assert _children(client, gone) == (0, 0, 0) and rep.logs_pending == 0
        assert _children(client, ids[3]) == (2 * 2 + 2, 2 * 2 * 2, 3)  # (+ the sub-flows' parent task runs)
        assert prune(3, pipeline=cfg, flows=names, night_flows=(top,)).runs == []  # nothing more to do


def test_a_pipeline_prunes_only_its_own_nights_and_counts_only_its_own_days(prefect_harness, tmp_path):
    """One Prefect server (or one state dir's database), flow names shared: pipeline A (nights on
    days -6 -5 -4 -1), pipeline B on the same state dir (-7 -3 -2), a pipeline named A on another
    state dir (-8), and another project's flow of the same name (-9, no rsft labels). Pruning A
    with keep 2 keeps A's days -1 and -4 (B's nights are not A's days) and deletes A's -6 and -5
    only; pruning B then deletes B's -7 only; the others are never touched (on a server the
    unlabelled run is never a candidate, even with ``unlabelled=True``)."""
    from prefect import get_client

    from flows.history import prune

    tag = uuid.uuid4().hex[:8]
    top, subs = f"nightly-{tag}", (f"ingest-{tag}",)
    names = (top, *subs)
    a, b = _pipeline("a", tmp_path / "state"), _pipeline("b", tmp_path / "state")
    a_elsewhere = _pipeline("a", tmp_path / "other-state")
    day0 = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)

    def night(days: int, labels) -> set:
        n = make_night(client, day0 - timedelta(days=days), tasks=1, log_lines=1, top=top, subflows=subs, labels=labels)
        return {n["top"], *n["subs"]}

    with get_client(sync_client=True) as client:
        ours = {d: night(d, _labels(a)) for d in (6, 5, 4, 1)}
        theirs = {d: night(d, _labels(b)) for d in (7, 3, 2)}
        others = night(8, _labels(a_elsewhere)) | night(9, None)
        everything = set().union(*ours.values(), *theirs.values(), others)

        rep = prune(2, pipeline=a, flows=names, night_flows=(top,), unlabelled=True)
        assert _days(rep) == [(day0 - timedelta(days=d)).date().isoformat() for d in (1, 4)]
        assert len(rep.nights) == 2 and _flow_runs(client, everything) == everything - ours[6] - ours[5]
        rep = prune(2, pipeline=b, flows=names, night_flows=(top,))
        assert _days(rep) == [(day0 - timedelta(days=d)).date().isoformat() for d in (2, 3)]
        assert _flow_runs(client, everything) == everything - ours[6] - ours[5] - theirs[7]
        assert others <= _flow_runs(client, others)


def test_nights_run_back_to_back_on_one_date_are_counted_as_nights(prefect_harness, tmp_path):
    """(trial: a 54-night backfill pruned nothing) Five nights run ten minutes apart on one date,
    a standalone ingest after night 1 and one after night 4: keep 2 keeps nights 4 and 5 and the
    ingest between them; nights 1-3 go with their sub-flow runs, and the ingest after night 1 goes
    too (older than the oldest kept night). A night counts as one whatever its date."""
    from prefect import get_client

    from flows.history import prune

    tag = uuid.uuid4().hex[:8]
    top, subs, ingest = f"night-{tag}", (f"select-{tag}",), f"ingest-{tag}"
    cfg = _pipeline("factory", tmp_path / "state")
    t0 = datetime.now(timezone.utc).replace(hour=1, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with get_client(sync_client=True) as client:
        nights = [make_night(client, t0 + timedelta(minutes=10 * k), tasks=1, log_lines=1, top=top, subflows=subs,
                             labels=_labels(cfg)) for k in range(5)]
        ingests = [make_night(client, t0 + timedelta(minutes=10 * k + 5), tasks=1, log_lines=0, top=ingest, subflows=(),
                              labels=_labels(cfg))["top"] for k in (0, 3)]
        ids = [{n["top"], *n["subs"]} for n in nights]
        everything = set().union(*ids, ingests)
        rep = prune(2, pipeline=cfg, flows=(top, ingest, *subs), night_flows=(top,))
        assert [n["started"] for n in rep.kept_nights] == [f"{t0 + timedelta(minutes=m):%Y-%m-%d %H:%M}" for m in (40, 30)]
        assert len(rep.nights) == 4 and len(rep.runs) == 3 * 2 + 1, rep.nights
        assert _flow_runs(client, everything) == ids[3] | ids[4] | {ingests[1]}
        assert prune(2, pipeline=cfg, flows=(top, ingest, *subs), night_flows=(top,)).runs == []


def test_nights_and_sub_flow_runs_beyond_a_page_are_all_read(prefect_harness, tmp_path):
    """Page size 2: three old nights (more top-level runs than a page) each with three sub-flow
    runs (more than a page at one level) all go, every sub-flow run with its night."""
    from prefect import get_client

    from flows.history import prune

    tag = uuid.uuid4().hex[:8]
    top, subs = f"nightly-{tag}", (f"ingest-{tag}", f"select-{tag}", f"finetune-{tag}")
    cfg = _pipeline("factory", tmp_path / "state")
    day0 = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    with get_client(sync_client=True) as client:
        nights = [make_night(client, day0 - timedelta(days=d), tasks=0, log_lines=0, top=top, subflows=subs,
                             labels=_labels(cfg)) for d in (4, 3, 2, 1)]
        old = {i for n in nights[:3] for i in (n["top"], *n["subs"])}
        rep = prune(1, pipeline=cfg, flows=(top, *subs), night_flows=(top,), page=2)
        assert len(rep.nights) == 3 and [n["subflows"] for n in rep.nights] == [3, 3, 3]
        assert _flow_runs(client, old) == set() and len(_flow_runs(client, {nights[3]["top"], *nights[3]["subs"]})) == 4


def test_a_vacuum_under_a_writer_is_skipped_after_a_short_wait(tmp_path):
    """Another process holds the database's write lock: the VACUUM gives up after BUSY_TIMEOUT_S
    (not 30 s, while Prefect's writers would queue behind it) and says the database is busy."""
    import sqlite3
    import time

    from flows.history import BUSY_TIMEOUT_S, reclaim

    db = tmp_path / "prefect.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE t (x)")
    con.execute("BEGIN IMMEDIATE")  # a writer mid-transaction
    con.execute("INSERT INTO t VALUES (1)")
    t0 = time.monotonic()
    said = reclaim(db, "full")
    waited = time.monotonic() - t0
    con.execute("ROLLBACK")
    con.close()
    assert said.startswith("VACUUM skipped: database busy") and waited < BUSY_TIMEOUT_S + 3, (said, waited)


_EMBEDDED = """
import json, sqlite3, sys
from datetime import datetime, timedelta, timezone
from prefect import get_client
from typer.testing import CliRunner
from prefect.states import Running
from flows.crashed import pipeline_labels
from flows.history import after_night, database_file, file_bytes, prune
from rsft.cli import app
from rsft.config import load_config
from benchmarks._nights import make_night, make_run

ORPHANS = ("SELECT COUNT(DISTINCT er.event_id) FROM event_resources er WHERE er.resource_id LIKE 'prefect.flow-run.%' "
           "AND NOT EXISTS (SELECT 1 FROM flow_run f WHERE 'prefect.flow-run.' || f.id = er.resource_id)")


def count(sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def settle():  # the event persister writes every few seconds: all the runs' events written
    import time
    seen, since = -1, time.monotonic()
    while time.monotonic() - since < 6:
        time.sleep(0.5)
        if (n := count("SELECT COUNT(*) FROM events")) != seen:
            seen, since = n, time.monotonic()
    return seen


day0 = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
with get_client(sync_client=True) as client:
    for d in (4, 3, 2, 1):
        make_night(client, day0 - timedelta(days=d), tasks=4, log_lines=4)
db = database_file()
out = {"db": str(db), "events": [settle()]}
dry = CliRunner().invoke(app, ["gc", "--config", sys.argv[1], "--keep-nights", "2", "--dry-run"])
out["dry"] = (dry.exit_code, " ".join(dry.output.split()), file_bytes(db))
res = CliRunner().invoke(app, ["gc", "--config", sys.argv[1], "--keep-nights", "2", "--json", sys.argv[2]])
out["gc"] = (res.exit_code, " ".join(res.output.split()), file_bytes(db))
out["events"] += [count("SELECT COUNT(*) FROM events"), count(ORPHANS)]
out["json"] = json.load(open(sys.argv[2]))["prefect_history"]
con = sqlite3.connect(db)
out["auto_vacuum"] = con.execute("PRAGMA auto_vacuum").fetchone()[0]
con.close()
cfg = load_config(sys.argv[1], {"state.keep_nights": 2})
other = load_config(sys.argv[1], {"name": "other"})
with get_client(sync_client=True) as client:  # nights written with labels: this pipeline's, another's
    for d in (5, 3, 0):
        make_night(client, day0 - timedelta(days=d), tasks=4, log_lines=4, labels=pipeline_labels(cfg))
    make_night(client, day0 - timedelta(days=9), tasks=1, log_lines=1, labels=pipeline_labels(other))
settle()
line, figures = after_night(cfg)  # the night's retention: its own night -5 only, the unlabelled -2 -1 stay
out["events"] += [count(ORPHANS)]
con = sqlite3.connect(db)
out["night"] = (line, con.execute("PRAGMA freelist_count").fetchone()[0], figures)
con.close()
with get_client(sync_client=True) as client:  # a killed run of before labels, left RUNNING
    stale = make_run(client, "ingest", day0, run_name="stale-ingest", end=False)
gc = prune(2, pipeline=cfg)  # `rsft gc` with the pipeline: the unlabelled -2 -1 count as its days
out["events"] += [count(ORPHANS), gc.events]
soon = datetime.now(timezone.utc)
with get_client(sync_client=True) as client:  # two nights to come (kept), a run deleted by hand after each prune
    for h in (1, 2):
        make_night(client, soon + timedelta(hours=h), tasks=1, log_lines=0, labels=pipeline_labels(cfg))
    client.delete_flow_run(make_run(client, "ingest", day0, run_name="by-hand").id)
settle()
prune(2, pipeline=cfg)
with get_client(sync_client=True) as client:
    client.delete_flow_run(make_run(client, "ingest", day0, run_name="by-hand-2").id)
settle()
late = count(ORPHANS)
alone = prune(2, pipeline=cfg)  # no night old enough to prune: the events of the run gone still go
out["alone"] = (late, len(alone.runs), alone.events, count(ORPHANS))
out["gc2"] = ([n["started"][:10] for n in gc.nights], [n["started"][:10] for n in gc.kept_nights], gc.vacuum, str(stale.id))
print(json.dumps(out))
"""


@pytest.mark.slow  # ~40-70 s wall: its own Prefect server, two CLI runs (the harness test above is the CI case)
def test_rsft_gc_prunes_and_vacuums_the_embedded_database(tmp_path):
    """A state dir's embedded Prefect database with 4 backdated nights written before pipeline
    labels: `rsft gc --dry-run` lists the 2 old nights' 8 runs and changes nothing; `rsft gc
    --keep-nights 2` deletes them, the file shrinks (VACUUM, write-ahead log truncated) and turns
    auto_vacuum=incremental. Then labelled nights (days -5 -3 0) and another pipeline's (-9): the
    night's retention deletes its own -5 only (the unlabelled -2 -1 are not its to delete) and
    leaves no free page; `rsft gc` with the pipeline counts the unlabelled nights as its days
    (kept 0 and -1) and deletes -3 and -2, never the other pipeline's; a RUNNING run of before
    labels skips its VACUUM, named."""
    from tests.test_retrain_flow import small_config

    cfg = small_config(tmp_path)
    env = {**os.environ, "RSFT_STATE_DIR": str(tmp_path / "state"), "PREFECT_HOME": str(tmp_path / "state" / "prefect"),
           "PYTHONPATH": str(REPO), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-c", _EMBEDDED, str(cfg), str(tmp_path / "gc.json")], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["db"] == str(tmp_path / "state" / "prefect" / "prefect.db")
    (dry_code, dry, dry_bytes), (code, text, after) = out["dry"], out["gc"]
    assert dry_code == 0 and code == 0, (dry, text)
    assert "would remove 2 old top-level run(s) of Prefect history (nights, ingests) — 8 flow run(s)" in dry \
        and "kept: the newest 2 night(s)" in dry, dry
    assert "removed 2 old top-level run(s) of Prefect history (nights, ingests) — 8 flow run(s)" in text and "VACUUM" in text and "auto_vacuum=incremental" in text, text
    assert after < dry_bytes / 2, (dry_bytes, after)  # the -wal file (MBs) truncated, the deleted rows' pages freed
    assert out["auto_vacuum"] == 2
    history = out["json"]  # `--json`: what went, the kept days, the sizes
    assert len(history["nights"]) == 2 and len(history["runs"]) == 8 and history["bytes_after"] < history["bytes_before"] / 2
    assert len(history["kept_nights"]) == 2 and history["cutoff"][:16] == history["kept_nights"][-1]["started"].replace(" ", "T")
    line, free, figures = out["night"]
    assert line.startswith("deleted 1 top-level run(s) older than the newest 2 nights (4 flow runs)") and free == 0, out["night"]
    assert figures["top_level_runs_deleted"] == 1 and figures["flow_runs_deleted"] == 4 and figures["keep_nights"] == 2
    assert min(figures["database_bytes_before"], figures["database_bytes_after"]) > 0, figures  # (the -wal may grow)
    day = lambda d: (datetime.now(timezone.utc).replace(hour=2) - timedelta(days=d)).date().isoformat()  # noqa: E731
    gone, kept, vacuum, stale = out["gc2"]
    assert gone == [day(3), day(2)] and kept == [day(0), day(1)], out["gc2"]
    assert vacuum.startswith(f"VACUUM skipped: still RUNNING: stale-ingest ({stale}, since ") and "incremental" in vacuum, vacuum
    # Prefect's events of the pruned runs go with them (trial 10: 88 % of the database), none left behind
    first, after_gc, gc_orphans, night_orphans, last_orphans, last = out["events"]
    assert first > 4 * 5 * 3 and after_gc < first * 0.7 and gc_orphans == night_orphans == last_orphans == 0, out["events"]
    assert "Prefect event(s)" in line and figures["events_deleted"] > 0 and last > 0, (line, out["events"])
    late, runs, events, orphans = out["alone"]
    assert late > 0 and runs == 0 and events == late and orphans == 0, out["alone"]


@pytest.mark.slow  # ~10 s: real nested flows; the backdated-nights cases stay in make test
def test_a_real_nights_nested_sub_flow_runs_go_with_it(prefect_harness):
    """Flows run by Prefect's engine (not made through the API): a night with two sub-flow runs,
    each with a sub-flow run of its own, task runs, logs and an artifact. The night is found with
    all 5 runs, and deleting it leaves no task run, log or artifact of any of them."""
    from prefect import flow, get_client, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact

    from flows.history import Scope, _delete, old_nights

    tag = uuid.uuid4().hex[:8]

    @task
    def chunk(i: int) -> int:
        get_run_logger().warning("chunk %d", i)  # WARNING: sent to the API whatever the test's log level
        create_markdown_artifact(f"chunk {i}")
        return i

    @flow(name=f"inner-{tag}")
    def inner() -> int:
        return chunk(1)

    @flow(name=f"mid-{tag}")
    def mid() -> int:
        return inner() + chunk(2)

    @flow(name=f"night-{tag}")
    def night() -> int:
        return mid() + mid()

    assert night() == 6
    with get_client(sync_client=True) as client:
        found = old_nights(client, datetime.now(timezone.utc) + timedelta(seconds=1), (f"night-{tag}",),
                           Scope(None, unlabelled=True))
        assert len(found) == 1 and len(found[0]) == 5, found
        ids = {r.id for r in found[0]}
        assert _children(client, ids)[1:] == (4, 4) and _children(client, ids)[0] >= 4
        artifacts, pending = _delete(client, found[0])
        assert artifacts == 4 and pending == 0
        assert _flow_runs(client, ids) == set() and _children(client, ids) == (0, 0, 0)


def _harness_db():
    """The harness server's SQLite file (a state dir's embedded database is the same schema)."""
    from pathlib import Path

    from prefect.settings import get_current_settings
    from sqlalchemy.engine import make_url

    return Path(make_url(get_current_settings().server.database.connection_url.get_secret_value()).database)


def _events_about(db, ids) -> int:
    """The events that name any of these flow runs as a resource (theirs, their task runs', artifacts')."""
    import sqlite3

    from flows.history import FLOW_RUN

    con = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(ids))
        return con.execute(f"SELECT COUNT(DISTINCT event_id) FROM event_resources WHERE resource_id IN ({marks})",
                           [f"{FLOW_RUN}{i}" for i in ids]).fetchone()[0]
    finally:
        con.close()


def test_a_pruned_nights_events_go_with_it_and_a_servers_are_left(prefect_harness, tmp_path):
    """(trial 10: Prefect's events were 88 % of the embedded database, +4.2 MB a night in a
    backfill: Prefect deletes them by age only, 7 days) Real flows run by Prefect's engine, four
    nights back to back, keep 2. On a server (the harness: PREFECT_API_URL) the prune deletes the
    old nights' runs through the API and leaves the events: the server's own. In a state dir's
    database :func:`drop_events` deletes every event about the pruned runs (their states, their
    task runs', artifacts') and the kept nights' stay; a second pass finds nothing; a run pruned
    before (its events left, as rsft did before) has its events found by age."""
    import time

    from prefect import flow, get_client, get_run_logger, runtime, task
    from prefect.artifacts import create_markdown_artifact

    from flows.history import drop_events, prune

    tag = uuid.uuid4().hex[:8]
    cfg = _pipeline("factory", tmp_path / "state")

    @task
    def step(i: int) -> int:
        get_run_logger().warning("step %d", i)
        create_markdown_artifact(f"step {i}")
        return i

    @flow(name=f"select-{tag}")
    def select() -> int:
        return sum(step(i) for i in range(3))

    @flow(name=f"night-{tag}")
    def night() -> int:
        with get_client(sync_client=True) as c:
            c.update_flow_run_labels(runtime.flow_run.id, _labels(cfg))
        return select() + step(9)

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    for _ in range(4):
        night()
    with get_client(sync_client=True) as client:
        every = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[f"night-{tag}", f"select-{tag}"])))
        ids = {r.id for r in every}
        assert len(ids) == 8
        db = _harness_db()
        deadline = time.monotonic() + 90  # the event persister writes in batches (every few seconds): all written
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline and (seen < 8 * 3 + 4 * 4 * 3 or time.monotonic() - since < 6):
            time.sleep(0.5)
            if (now := _events_about(db, ids)) != seen:
                seen, since = now, time.monotonic()
        before = _events_about(db, ids)
        assert before >= 8 * 3 + 4 * 4 * 3, before  # each run's Pending/Running/Completed, each task run's

        rep = prune(2, pipeline=cfg, flows=(f"night-{tag}", f"select-{tag}"), night_flows=(f"night-{tag}",))
        gone = ids - _flow_runs(client, ids)
        kept = ids - gone
        assert len(gone) == 4 and rep.db is None and rep.events == 0  # a server: its events are its own
        assert _events_about(db, ids) == before
        old, old_events = sorted(gone)[:1], _events_about(db, sorted(gone)[:1])
        assert old_events >= 3
        kept_events = _events_about(db, kept)
        gone_events = _events_about(db, gone)
        assert drop_events(db, sorted(gone), rep.cutoff, dry_run=True)[0] >= gone_events
        n, note = drop_events(db, sorted(gone - set(old)), rep.cutoff)  # (one run's left to the sweep by age)
        assert note == "" and n >= gone_events and _events_about(db, gone) == 0, (n, gone_events)
        assert _events_about(db, kept) == kept_events
        assert drop_events(db, sorted(gone), rep.cutoff) == (0, "")


def test_the_nightly_reclaim_truncates_the_write_ahead_log(tmp_path):
    """Trial 11: an 11.6 MB write-ahead log stayed beside the embedded database after every night
    (a checkpoint that copies pages back leaves the file at its largest). The nightly reclaim
    truncates it while another connection (the night's server) keeps the database open, in either
    auto_vacuum mode."""
    import sqlite3

    from flows.history import reclaim

    for incremental in (False, True):
        db = tmp_path / f"prefect-{incremental}.db"
        server = sqlite3.connect(db, isolation_level=None)
        if incremental:
            server.execute("PRAGMA auto_vacuum = INCREMENTAL")
        server.execute("PRAGMA journal_mode = WAL")
        server.execute("PRAGMA wal_autocheckpoint = 0")  # as a busy server's log grows between checkpoints
        server.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT)")
        server.executemany("INSERT INTO events (payload) VALUES (?)", [("x" * 500,)] * 5000)
        server.execute("DELETE FROM events WHERE id % 2 = 0")
        wal = tmp_path / f"{db.name}-wal"
        assert wal.stat().st_size > 2_000_000
        said = reclaim(db, "incremental")
        assert wal.stat().st_size == 0, (incremental, said, wal.stat().st_size)
        assert server.execute("SELECT count(*) FROM events").fetchone()[0] == 2500
        server.close()
