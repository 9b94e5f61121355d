"""Prefect specifics: prefect.yaml is valid, Dask and thread runners select identical rows."""

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


@pytest.mark.slow
def test_dask_and_thread_runners_select_identical_rows(tmp_path, prefect_harness):
    from flows.select import sample_chunks
    from rsft import stages
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg = load_config(small_config(tmp_path))
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    stages.ingest_stage(cfg)
    pre = stages.prefilter_stage(cfg)
    scored = stages.fit_scorer_stage(cfg, pre)
    from rsft.sampling import plan_chunks

    specs = plan_chunks(pre["output"], cfg.sampling.chunk_rows)
    assert len(specs) >= 4
    rows = {}
    for runner in ("thread", "dask"):
        c = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"task_runner": runner, "concurrency": 2})})
        from flows.select import task_runner

        flow = sample_chunks.with_options(task_runner=task_runner(c))
        out = flow(c, specs, scored["scorer_path"], scored["log_m"], str(tmp_path / runner))
        rows[runner] = pl.read_parquet(out["output"]).select("_source", "_row").sort("_source", "_row")
        assert out["rows_out"] == rows[runner].height > 0
    assert rows["thread"].equals(rows["dask"])
