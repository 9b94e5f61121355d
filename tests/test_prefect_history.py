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
from tests.prefect_nights import make_night


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


def test_old_finished_nights_go_whole_the_newest_and_unfinished_stay(prefect_harness):
    """Nights on days -7 … -1, keep 3: nights -6 and -4 go with their sub-flow runs, task runs,
    logs and artifacts; -7 (finished, but a sub-flow run RUNNING) and -5 (its top-level run
    RUNNING) stay whole, as do -3, -2, -1 and a scheduled future run. A dry run lists the same runs and deletes nothing. Flow names unique to
    this test: the session's other runs are never candidates."""
    from prefect import get_client
    from prefect.states import Running, Scheduled

    from flows.history import prune
    from tests.prefect_nights import _flow

    tag = uuid.uuid4().hex[:8]
    top, subs = f"night-{tag}", (f"ingest-{tag}", f"select-{tag}")
    names = (top, *subs)
    day0 = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    with get_client(sync_client=True) as client:
        nights = {d: make_night(client, day0 - timedelta(days=d), tasks=2, log_lines=2, finished=d != 5, top=top,
                                subflows=subs) for d in (6, 5, 4, 3, 2, 1)}
        nights[7] = make_night(client, day0 - timedelta(days=7), tasks=1, log_lines=1, top=top, subflows=subs)
        client.set_flow_run_state(nights[7]["subs"][0], Running(), force=True)  # its top finished, a sub-flow not
        future = client.create_flow_run(_flow(top), state=Scheduled(scheduled_time=day0 + timedelta(days=1))).id
        ids = {d: {n["top"], *n["subs"]} for d, n in nights.items()}
        gone, stay = ids[6] | ids[4], ids[7] | ids[5] | ids[3] | ids[2] | ids[1] | {future}
        assert _children(client, gone)[0] == 2 * (2 * 2 + 2) and _children(client, gone)[1] == 4 * 2 * 2

        dry = prune(3, dry_run=True, flows=names)
        assert _flow_runs(client, gone | stay) == gone | stay  # nothing deleted
        rep = prune(3, flows=names)
        assert rep.db is None and "server" in rep.vacuum  # the harness is a server: the API only
        assert rep.kept_days == [(day0 - timedelta(days=d)).date().isoformat() for d in (1, 2, 3)]
        assert len(rep.runs) == len(dry.runs) == len(gone) and rep.runs == dry.runs and rep.artifacts == len(gone)
        assert [n["started"][:10] for n in rep.nights] == [(day0 - timedelta(days=d)).date().isoformat() for d in (6, 4)]
        assert _flow_runs(client, gone | stay) == stay
        assert _children(client, gone) == (0, 0, 0) and rep.logs_pending == 0
        assert _children(client, ids[3]) == (2 * 2 + 2, 2 * 2 * 2, 3)  # (+ the sub-flows' parent task runs)
        assert prune(3, flows=names).runs == []  # nothing more to do


_EMBEDDED = """
import json, sqlite3, sys
from datetime import datetime, timedelta, timezone
from prefect import get_client
from typer.testing import CliRunner
from flows.history import database_file, file_bytes, prune
from rsft.cli import app
from tests.prefect_nights import make_night

day0 = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
with get_client(sync_client=True) as client:
    for d in (4, 3, 2, 1):
        make_night(client, day0 - timedelta(days=d), tasks=4, log_lines=4)
db = database_file()
out = {"db": str(db)}
dry = CliRunner().invoke(app, ["gc", "--config", sys.argv[1], "--keep-nights", "2", "--dry-run"])
out["dry"] = (dry.exit_code, " ".join(dry.output.split()), file_bytes(db))
res = CliRunner().invoke(app, ["gc", "--config", sys.argv[1], "--keep-nights", "2", "--json", sys.argv[2]])
out["gc"] = (res.exit_code, " ".join(res.output.split()), file_bytes(db))
out["json"] = json.load(open(sys.argv[2]))["prefect_history"]
con = sqlite3.connect(db)
out["auto_vacuum"] = con.execute("PRAGMA auto_vacuum").fetchone()[0]
con.close()
with get_client(sync_client=True) as client:  # the night after: its retention's incremental vacuum
    make_night(client, day0, tasks=4, log_lines=4)
night = prune(2, vacuum="incremental")
con = sqlite3.connect(db)
out["night"] = (len(night.runs), night.vacuum, con.execute("PRAGMA freelist_count").fetchone()[0])
print(json.dumps(out))
"""


@pytest.mark.slow  # ~40-70 s wall: its own Prefect server, two CLI runs (the harness test above is the CI case)
def test_rsft_gc_prunes_and_vacuums_the_embedded_database(tmp_path):
    """A state dir's embedded Prefect database with 4 backdated nights: `rsft gc --dry-run` lists
    the 2 old nights' 8 runs and changes nothing; `rsft gc --keep-nights 2` deletes them, the
    file shrinks (VACUUM, write-ahead log truncated) and turns auto_vacuum=incremental; the
    next night's retention deletes one more night and leaves no free page."""
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
    assert "would remove 2 old night(s) of Prefect history — 8 flow run(s)" in dry and "kept: the newest 2 night(s)" in dry, dry
    assert "removed 2 old night(s) of Prefect history — 8 flow run(s)" in text and "VACUUM" in text and "auto_vacuum=incremental" in text, text
    assert after < dry_bytes / 2, (dry_bytes, after)  # the -wal file (MBs) truncated, the deleted rows' pages freed
    assert out["auto_vacuum"] == 2
    history = out["json"]  # `--json`: what went, the kept days, the sizes
    assert len(history["nights"]) == 2 and len(history["runs"]) == 8 and history["bytes_after"] < history["bytes_before"] / 2
    assert len(history["kept_days"]) == 2 and history["cutoff"].startswith(history["kept_days"][-1])
    runs, vacuum, free = out["night"]
    assert runs == 4 and vacuum.startswith("incremental_vacuum") and free == 0, out["night"]


def test_a_real_nights_nested_sub_flow_runs_go_with_it(prefect_harness):
    """Flows run by Prefect's engine (not made through the API): a night with two sub-flow runs,
    each with a sub-flow run of its own, task runs, logs and an artifact. The night is found with
    all 5 runs, and deleting it leaves no task run, log or artifact of any of them."""
    from prefect import flow, get_client, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact

    from flows.history import _delete, old_nights

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
        found = old_nights(client, datetime.now(timezone.utc) + timedelta(seconds=1), (f"night-{tag}",))
        assert len(found) == 1 and len(found[0]) == 5, found
        ids = {r.id for r in found[0]}
        assert _children(client, ids)[1:] == (4, 4) and _children(client, ids)[0] >= 4
        artifacts, pending = _delete(client, found[0])
        assert artifacts == 4 and pending == 0
        assert _flow_runs(client, ids) == set() and _children(client, ids) == (0, 0, 0)
