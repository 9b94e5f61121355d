"""Prefect specifics: prefect.yaml is valid, Dask and thread runners select identical rows and
ingest identical datasets."""

from __future__ import annotations

import importlib
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.test_retrain_flow import small_config

REPO = Path(__file__).resolve().parents[1]


def test_prefect_yaml_deployments_are_valid():
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert {"nightly-retrain", "ingest", "finetune"} <= set(deps)
    for d in deps.values():
        module, _, attr = d["entrypoint"].partition(":")
        assert (REPO / module).exists()
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
        assert isinstance(flow, Flow)
        assert set(d["parameters"]) <= set(flow.parameters.properties)
        for s in d.get("schedules", []):  # on-demand deployments have none
            CronSchedule(cron=s["cron"], timezone=s["timezone"])  # raises on an invalid cron / zone
    assert deps["nightly-retrain"]["concurrency_limit"] == 1
    from flows.serve import serve_deployments  # `rsft serve` entry point imports cleanly

    assert callable(serve_deployments)


@pytest.mark.slow  # ~20 s: a Dask LocalCluster (team scale; make test-all)
def test_ingest_files_fan_out_on_a_dask_cluster_with_the_local_result(tmp_path, prefect_harness):
    """``ingest.task_runner: dask``: the per-file tasks run on a LocalCluster of ``concurrency``
    worker processes, and every dataset (rows, quarantine, per-file results) equals the one the
    library's sequential ingest writes from the same files."""
    from flows.ingest import ingest_datasets
    from rsft import pipeline as stages
    from rsft import progress
    from rsft.config import load_config
    from rsft.ingest import scan_dataset, scan_quarantine
    from rsft.pipeline.layout import pipeline_root
    from rsft.synth import write_synthetic

    cfg = load_config(small_config(tmp_path))
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    local = stages.ingest_stage(cfg)
    c = cfg.model_copy(update={"state": cfg.state.model_copy(update={"dir": str(tmp_path / "dask-state")}),
                               "ingest": cfg.ingest.model_copy(update={"task_runner": "dask", "concurrency": 2})})
    seen: list[tuple[str, dict]] = []
    with progress.listen(lambda event, **f: seen.append((event, f))):
        dask = ingest_datasets(c)
    # the plan ran here; the files ran in the cluster's worker processes, whose events reach nobody:
    # the flow reports each file once as its result arrives (the CLI's progress bar moves)
    events = [e for e, _ in seen]
    results = [r for d in dask.datasets.values() for r in d.file_results]
    assert "ingest.plan" in events and events.count("ingest.file") == len(results), events
    assert sum(f["rows"] for e, f in seen if e == "ingest.rows") == sum(r["rows_total"] or 0 for r in results)

    def frame(lf: pl.LazyFrame) -> pl.DataFrame:
        df = lf.collect()
        return df.sort(df.columns)

    def files(d) -> list:
        return sorted((f["file"], f["status"], f["rows_ok"], f["rows_quarantined"]) for f in d.file_results)

    assert set(dask.datasets) == set(local.datasets)
    for name in local.datasets:
        a, b = local[name], dask[name]
        assert files(b) == files(a) and (b.rows_ok, b.rows_quarantined) == (a.rows_ok, a.rows_quarantined)
        assert frame(scan_dataset(pipeline_root(c) / name)).equals(frame(scan_dataset(pipeline_root(cfg) / name)))
        assert frame(scan_quarantine(pipeline_root(c) / name)).equals(frame(scan_quarantine(pipeline_root(cfg) / name)))
    assert sum(len(d.file_results) for d in dask.datasets.values()) > 4
    # `rsft ingest`'s top-level run carries its pipeline (what flows/history.py prunes by)
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest"])),
                                    sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    assert {k: run.labels.get(k) for k in ("rsft.pipeline", "rsft.state")} == \
        {"rsft.pipeline": c.name, "rsft.state": str(tmp_path / "dask-state")}, run.labels


@pytest.mark.slow
def test_dask_and_thread_runners_select_identical_rows(tmp_path, prefect_harness):
    from flows.select import sample_chunks
    from rsft import pipeline as stages
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg = load_config(small_config(tmp_path))
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    stages.ingest_stage(cfg)
    pre = stages.prefilter_stage(cfg)
    scored = stages.fit_scorer_stage(cfg, pre)
    from rsft.sampling import plan_chunks

    specs = plan_chunks(pre.output, cfg.sampling.chunk_rows)
    assert len(specs) >= 4
    rows = {}
    for runner in ("thread", "dask"):
        c = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"task_runner": runner, "concurrency": 2})})
        from flows.select import task_runner

        flow = sample_chunks.with_options(task_runner=task_runner(c))
        out = flow(c, specs, scored.scorer_path, scored.log_m, str(tmp_path / runner))
        rows[runner] = pl.read_parquet(out["output"]).select("_source", "_row").sort("_source", "_row")
        assert out["rows_out"] == rows[runner].height > 0
    assert rows["thread"].equals(rows["dask"])


@pytest.mark.slow
def test_adapt_units_fan_out_as_prefect_tasks_on_threads_and_dask_with_the_same_result(prefect_harness):
    """Each CV unit (a candidate on one fold, or its stacked rung-1 folds) is one Prefect task run; the thread pool and a Dask
    LocalCluster give the same fold losses, choice and fit count as plain in-order calls."""
    import numpy as np
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from rsft.adapt import PoolSample, run_search, time_blocks
    from rsft.config import AdaptConfig, ScorerConfig, TrainConfig
    from tasks.adapt import unit_mapper
    from tests.test_adapt import _warm, _world

    x, y = _world()
    warm = _warm(x, y)
    xt, _ = _world(3, 240)
    yt = (xt @ np.array([-1.0, 1.0, 2.0])).astype(np.float32)
    base = AdaptConfig(enabled=True, strategies=["keep_champion", "recalibrate", "sample_only", "rsft"], folds=4,
                       epochs=3, pool_rows=4000, concurrency=2)
    tcfg = TrainConfig(seed=0, lr=1e-2, epochs=6)

    @task(name="search", cache_policy=NO_CACHE)
    def search(cfg):  # as in the retrain: the runner is opened inside the fine-tune task
        with unit_mapper(cfg) as map_units:
            return run_search(cfg, tcfg, ScorerConfig(), list("abc"), warm, (xt, yt, time_blocks(240, 8)),
                              PoolSample(x, y), map_units=map_units)[1]

    @flow(name="adapt-fan-out")
    def fan_out(runner: str):
        from prefect.runtime import flow_run

        flow_ids[runner] = flow_run.id
        return search(base.model_copy(update={"task_runner": runner}))

    reports, flow_ids = {}, {}
    for runner in ("inline", "thread", "dask"):
        reports[runner] = fan_out(runner)
    key = lambda rep: (rep["chosen"], rep["fits"], [(r["name"], r["fold_losses"], r["pool_rows"]) for r in rep["candidates"]])  # noqa: E731
    assert key(reports["thread"]) == key(reports["inline"])
    assert key(reports["dask"]) == key(reports["inline"])
    # one task per unit: a (candidate, fold), or the kept candidate's rung-1 folds as one model stack
    rep = reports["inline"]
    assert rep["stacked"] and rep["halving"]["kept"] == ["rsft β=1 q=0.99"]
    assert [f"rsft β=1 q=0.99 @ fold {f}" for f in range(4)] in rep["units"]
    units = len(rep["units"])
    with get_client(sync_client=True) as client:
        for runner, n in (("inline", 0), ("thread", units)):
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_ids[runner]])))
            assert sum(r.name.startswith("cv ") for r in runs) == n, (runner, [r.name for r in runs])
            if n:
                assert "cv rsft β=1 q=0.99 folds 0,1,2,3 (stacked) (full epochs)" in [r.name for r in runs]


@pytest.mark.slow  # two LocalClusters: ~22 s on 2 shared cores
def test_prefilter_days_fan_out_on_a_dask_cluster_with_the_local_result(tmp_path, prefect_harness):
    """``prefilter.task_runner: dask``: the flow's prefilter task runs the per-day jobs (edges,
    the rules on a day) on a LocalCluster of ``concurrency`` worker processes; on a first night
    (every day) and an incremental second night the kept pool — manifest, kept rows with rolling
    features, dropped rows — equals the one the local runner writes one day after another."""
    from rsft import keptpool, progress
    from rsft import pipeline as stages
    from rsft.config import load_config
    from rsft.synth import write_synthetic
    from tasks.select import prefilter_task

    cfg = load_config(small_config(tmp_path), {
        "features.rolling": [{"columns": ["s01", "s05"], "window": 8, "stats": ["mean", "std"]}],
        "prefilter.write_excluded": True})
    dask_cfg = cfg.model_copy(update={
        "state": cfg.state.model_copy(update={"dir": str(tmp_path / "dask-state")}),
        "prefilter": cfg.prefilter.model_copy(update={"task_runner": "dask", "concurrency": 2})})

    def frame(files: list[str]) -> pl.DataFrame:
        return pl.read_parquet(files)

    for night in (1, 2):
        write_synthetic(cfg.synth, tmp_path / "raw", night=night)
        local_events: list[str] = []
        stages.ingest_stage(cfg)
        with progress.listen(lambda event, **_: local_events.append(event)):
            local = stages.prefilter_stage(cfg)
        stages.ingest_stage(dask_cfg)
        dask_events: list[str] = []
        with progress.listen(lambda event, **_: dask_events.append(event)):
            dask = prefilter_task(dask_cfg)
        # the local runner judged the days here; the flow's task ran them in the cluster's workers
        assert local_events.count("prefilter.day") == local.days_computed > 0
        assert "prefilter.day" not in dask_events, dask_events
        assert (dask.version, dask.days_total, dask.days_computed) == (local.version, local.days_total, local.days_computed)
        assert (dask.rows_in, dask.rows_out, dask.dropped, dask.alone) == \
               (local.rows_in, local.rows_out, local.dropped, local.alone)
        names = lambda files: [Path(f).relative_to(Path(files[0]).parents[2]) for f in files]  # noqa: E731
        assert names(keptpool.manifest_files(dask.output)) == names(keptpool.manifest_files(local.output))
        kept = frame(keptpool.manifest_files(local.output))
        assert {"s01_mean8", "s05_std8"} <= set(kept.columns) and kept.height == local.rows_out > 0
        assert frame(keptpool.manifest_files(dask.output)).equals(kept)
        assert frame(keptpool.excluded_files(dask.output)).equals(frame(keptpool.excluded_files(local.output)))
        if night == 2:
            assert 0 < dask.days_computed < dask.days_total
