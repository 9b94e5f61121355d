"""A night registers exactly one version however often it runs: a night killed between
registering its version and deciding it (or between deciding and moving the alias) is finished
by the re-run, which registers nothing; a decided night re-run with the same inputs and config
reports the recorded decision and trains nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_retrain_flow import small_config

# the night, run by a real process that stops (sleeps) at one step of the registration, to be
# SIGKILLed there: after the version is registered (before its decision is written), or after
# the decision is written (before the champion alias moves)
CHILD = """
import sys, time
from rsft.config import load_config
from rsft.pipeline import run_night
from rsft.tracking import registry

step = sys.argv[2]

def stop_here(mlc, name, version, *args, **kwargs):
    print("AT", step, version, flush=True)
    time.sleep(600)

setattr(registry, step, stop_here)
run_night(load_config(sys.argv[1]))
"""


def _kill_at(cfg_path, step: str) -> str:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg_path), step], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = child.stdout.readline().split()
        assert line[:2] == ["AT", step], child.stderr.read()[-3000:] if child.poll() is not None else line
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    return line[2]


def _runs(mlc, cfg):
    exp = mlc.get_experiment_by_name(cfg.state.experiment)
    return mlc.search_runs([exp.experiment_id], "tags.`rsft.pipeline` != ''") if exp else []


@pytest.mark.parametrize("step", ["record_decision", pytest.param("move_champion", marks=pytest.mark.slow)])  # ~18 s each
def test_a_night_killed_at_registration_registers_one_version(tmp_path, step):
    from rsft.config import load_config
    from rsft.pipeline import run_night, tracking_uri
    from rsft.synth import write_synthetic
    from rsft.tracking import registry

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    name = cfg.promotion.model_name

    killed_version = _kill_at(cfg_path, step)
    assert killed_version == "1"
    mlc = registry.client(tracking_uri(cfg))
    v1 = mlc.get_model_version(name, "1")
    assert v1.tags.get(registry.NIGHT)  # the night's identity rides on its version
    assert ("rsft.decision" in v1.tags) is (step == "move_champion")
    assert registry.alias_version(mlc, name) is None  # killed before the alias moved

    s = run_night(cfg)  # the re-run finishes that version's gate instead of registering another
    hist = registry.history(mlc, name)
    assert [h["version"] for h in hist] == [1], hist
    assert s["model_version"] == "1" and hist[0]["decision"] == ("promoted" if s["promoted"] else "rejected")
    assert s["promoted"], s["reason"]  # a first night of this config beats its base model
    assert str(registry.alias_version(mlc, name).version) == "1"
    assert not any(r.info.status == "RUNNING" for r in _runs(mlc, cfg))  # the killed night's run is closed
    if step == "move_champion":  # decided before the kill: the re-run reports that decision
        assert "already_decided" in s
    else:  # gated by the re-run, which says so on the version's trail
        assert "already_decided" not in s and s["mlflow_run"] != v1.run_id
        texts = [t for _, t in hist[0]["events"]]
        assert len(texts) == 1 and texts[0].startswith("decided by a re-run of its night "), texts

    # a finished night re-run with the same inputs and config: nothing trained, nothing registered
    n_runs = len(_runs(mlc, cfg))
    again = run_night(cfg)
    assert [h["version"] for h in registry.history(mlc, name)] == [1]
    assert again["model_version"] == "1" and again["promoted"] is s["promoted"] and again["reason"] == s["reason"]
    assert again["already_decided"].startswith("v1 was registered and decided by MLflow run ")
    assert len(_runs(mlc, cfg)) == n_runs  # no new MLflow run either
    assert again[f"challenger_{cfg.promotion.metric}"] == s[f"challenger_{cfg.promotion.metric}"]

    # another config is another night: it registers its own version
    other = run_night(load_config(cfg_path, {"train.seed": cfg.train.seed + 1}))
    assert other["model_version"] == "2" and "already_decided" not in other


CONCURRENT = """
import json, sys
from rsft.config import load_config
from rsft.pipeline import run_night
s = run_night(load_config(sys.argv[1]))
print(json.dumps({"version": s["model_version"], "already": "already_decided" in s, "run": s["mlflow_run"]}))
"""


def test_concurrent_runs_of_one_night_register_one_version(tmp_path):
    """Two processes run the same night at once: one version, both report it (the second finds it
    inside the registry lock, or before training)."""
    import json

    from rsft.config import load_config
    from rsft.pipeline import ingest_stage, tracking_uri
    from rsft.synth import write_synthetic
    from rsft.tracking import registry

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    ingest_stage(cfg)  # (concurrent ingests of one dataset are another matter)
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(cfg_path)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for _ in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [o["version"] for o in outs] == ["1", "1"]
    assert sorted(o["already"] for o in outs) == [False, True]
    assert outs[0]["run"] == outs[1]["run"]  # both name the run that decided the version
    mlc = registry.client(tracking_uri(cfg))
    assert [h["version"] for h in registry.history(mlc, cfg.promotion.model_name)] == [1]


def test_an_interrupted_alias_move_is_completed_but_never_undoes_a_later_decision(tmp_path):
    """finish_promotion moves the alias of a version recorded as promoted only while the champion
    is still the one it was judged against and no one has acted on the version since."""
    from rsft.tracking import registry

    mlc = registry.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlc.create_registered_model("m")
    for _ in range(3):
        mlc.create_model_version("m", str(tmp_path), tags={registry.NIGHT: "n"})
    registry.move_champion(mlc, "m", "1", None)
    promoted = registry.Decision(True, "rmse 1 < champion 2", "rmse", 1.0, 2.0)
    registry.record_decision(mlc, "m", "2", promoted, judged_against="1")  # killed before the alias moved
    v2 = mlc.get_model_version("m", "2")
    assert registry.recorded_decision(v2).promote and str(registry.night_version(mlc, "m", "n").version) == "1"
    assert registry.finish_promotion(mlc, "m", v2)
    assert str(registry.alias_version(mlc, "m").version) == "2"
    assert str(registry.alias_version(mlc, "m", registry.PREVIOUS).version) == "1"
    assert not registry.finish_promotion(mlc, "m", mlc.get_model_version("m", "2"))  # already champion

    registry.rollback(mlc, "m")  # a person rolled back: a re-run of v2's night must not re-promote it
    assert not registry.finish_promotion(mlc, "m", mlc.get_model_version("m", "2"))
    assert str(registry.alias_version(mlc, "m").version) == "1"

    registry.record_decision(mlc, "m", "3", promoted, judged_against="2")  # judged against a champion gone since
    assert not registry.finish_promotion(mlc, "m", mlc.get_model_version("m", "3"))
    assert str(registry.alias_version(mlc, "m").version) == "1"


def test_a_night_whose_search_kept_the_champion_is_decided_too(tmp_path):
    """The search keeps the champion (nothing registered, an event on the champion): run again,
    the night reports that decision — no second search, no second event."""
    from rsft.config import load_config
    from rsft.pipeline import run_night, tracking_uri
    from rsft.synth import write_synthetic
    from rsft.tracking import registry

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    assert run_night(cfg)["model_version"] == "1"
    kept_cfg = load_config(cfg_path, {"adapt.enabled": True, "adapt.strategies": ["keep_champion"],
                                      "adapt.group_by": "machine_id", "adapt.folds": 3})
    first = run_night(kept_cfg)
    assert first["model_version"] is None and first["recipe"] == "keep_champion" and "already_decided" not in first
    again = run_night(kept_cfg)
    assert again["model_version"] is None and again["promoted"] is False and again["reason"] == first["reason"]
    assert again["already_decided"] == f"the champion v1 was kept by MLflow run {first['mlflow_run']}; this run registered nothing"
    assert again["mlflow_run"] == first["mlflow_run"] and again["challenger_rmse"] == first["challenger_rmse"]
    hist = registry.history(registry.client(tracking_uri(cfg)), cfg.promotion.model_name)
    assert [h["version"] for h in hist] == [1] and len(hist[0]["events"]) == 1  # one search, one event


def test_where_and_how_fast_a_night_runs_is_not_a_new_night(tmp_path):
    """Executors, concurrency, a Dask address, the state's retention and the linear reference's
    terms (it only warns) do not change the night's identity nor the selection's key; a training
    setting does."""
    from rsft.config import load_config
    from rsft.pipeline.data import run_key
    from rsft.pipeline.lineage import night_key
    from rsft.pipeline.results import Prefiltered
    from tests.test_retrain_flow import small_config

    path = small_config(tmp_path)
    base = load_config(path)
    pre = Prefiltered("kept/versions/v.json", 10, 9)
    same = load_config(path, {"sampling.concurrency": 7, "sampling.task_runner": "dask", "ingest.concurrency": 5,
                              "sampling.dask_address": "tcp://10.0.0.1:8786",
                              "prefilter.task_runner": "inline", "prefilter.concurrency": 3,
                              "state.keep_nights": 30, "state.gc_after_night": False,
                              "promotion.linear_reference_terms": [base.features.numeric[:2]]})  # it only warns
    other = load_config(path, {"train.lr": base.train.lr * 2})
    assert run_key(same, pre) == run_key(base, pre)
    assert night_key(same, "k") == night_key(base, "k") != night_key(other, "k")
    # the search's units share torch's generator on threads: where they run can change the recipe
    assert night_key(load_config(path, {"adapt.task_runner": "inline"}), "k") != night_key(base, "k")
    assert run_key(load_config(path, {"sampling.chunk_rows": 999}), pre) != run_key(base, pre)  # the random streams change


def test_the_ngram_hash_scheme_is_part_of_the_selection_key(tmp_path, monkeypatch):
    """A run (scorer, log w, selection) made with another n-gram hash scheme is never reused; the
    keys of other scorers do not depend on it."""
    import rsft.density.ngram
    from rsft.config import load_config
    from rsft.pipeline.data import run_key
    from rsft.pipeline.results import Prefiltered
    from tests.test_retrain_flow import small_config

    path = small_config(tmp_path)
    gauss, ngram = load_config(path), load_config(path, {"scorer.kind": "ngram"})
    pre = Prefiltered("kept/versions/v.json", 10, 9)
    keys = run_key(gauss, pre), run_key(ngram, pre)
    monkeypatch.setattr(rsft.density.ngram, "NGRAM_HASH", 1)
    assert run_key(gauss, pre) == keys[0] and run_key(ngram, pre) != keys[1]


def test_one_night_of_a_pipeline_at_a_time_on_a_state_dir(tmp_path, caplog):
    """A second night (or `rsft gc`) of the same pipeline on the same state dir waits for the
    first, saying so; the lock goes with its holder (here: released at the block's end)."""
    import logging
    import threading
    import time

    from rsft.config import load_config
    from rsft.pipeline.layout import night_lock

    cfg = load_config(small_config(tmp_path))
    order: list[str] = []
    entered = threading.Event()

    def first():
        with night_lock(cfg):
            entered.set()
            time.sleep(0.5)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    entered.wait(10)
    with caplog.at_level(logging.WARNING, logger="rsft.pipeline.layout"), night_lock(cfg):
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]
    assert "another night of factory holds" in caplog.text


def test_a_decided_night_re_run_reports_the_constant_it_recorded(tmp_path, monkeypatch):
    """(trial 7) the summary of a re-run of a decided night had no constant-prediction figure:
    it is the deciding run's constant_holdout_* metrics (and a first night's base model's)."""
    from rsft.config import load_config
    from rsft.pipeline import finetune
    from rsft.tracking import promotion, registry

    cfg = load_config(REPO / "examples" / "factory.yaml", {"state.dir": str(tmp_path / "state")})
    metrics = {"challenger_holdout_rmse": 0.19, "constant_holdout_rmse": 0.28, "constant_holdout_mae": 0.2,
               "linear_holdout_rmse": 0.21, "warm_start_holdout_rmse": 0.22, "train_rows": 302.0}
    monkeypatch.setattr(finetune.runs, "night_record", lambda run_id: (metrics, {"rsft.warm_start": "base"}))
    outcome = promotion.Outcome("1", registry.Decision(True, "rmse 0.19 < the base model 0.22", "rmse", 0.19, None),
                                None, "1", recorded_by="run1")
    out = finetune._recorded(cfg, outcome, 300)
    assert out.constant == {"rmse": 0.28, "mae": 0.2} and out.base == {"rmse": 0.22} and out.linear == {"rmse": 0.21}
    monkeypatch.setattr(finetune.runs, "night_record", lambda run_id: ({"challenger_holdout_rmse": 0.18},
                                                                       {"rsft.warm_start": "models:/m/1"}))
    out = finetune._recorded(cfg, outcome, 300)
    assert out.constant is None and out.base is None and out.linear is None  # a run that logged none: nothing made up


def test_the_ngram_score_enters_the_selection_key_only_when_not_sum(tmp_path, monkeypatch):
    """scorer.ngram_score: per_ngram is a new selection (another log w); the default, sum, keeps
    the keys made before the field existed (the runs they name scored sums), so an upgrade does not
    redo every cached selection."""
    from pydantic import BaseModel

    from rsft.config import ScorerConfig, load_config
    from rsft.pipeline.data import run_key
    from rsft.pipeline.results import Prefiltered
    from tests.test_retrain_flow import small_config

    path = small_config(tmp_path)
    ngram = load_config(path, {"scorer.kind": "ngram"})
    per = load_config(path, {"scorer.kind": "ngram", "scorer.ngram_score": "per_ngram"})
    pre = Prefiltered("kept/versions/v.json", 10, 9)
    now = run_key(ngram, pre)
    assert run_key(per, pre) != now
    # the scorer config as it dumped before ngram_score existed
    monkeypatch.setattr(ScorerConfig, "model_dump", lambda self, **kw: {
        k: v for k, v in BaseModel.model_dump(self, **kw).items() if k != "ngram_score"})
    assert run_key(ngram, pre) == now


def test_a_backfilled_night_is_named_after_its_data(tmp_path):
    """(trial 9 #10) 54 nights run back-to-back on one day had 54 MLflow runs of the same name: a
    night whose target sample ends before yesterday names the date of its data too."""
    from datetime import date, datetime

    import polars as pl

    from rsft.pipeline.finetune import newest_day, night_label

    today = date(2026, 12, 5)
    old = pl.DataFrame({"ts": [datetime(2026, 10, 11, 23), datetime(2026, 10, 12, 6)]})
    assert night_label(today, newest_day(old, "ts")) == "2026-12-05 (data to 2026-10-12)"
    fresh = pl.DataFrame({"ts": [datetime(2026, 12, 4, 22)]})
    assert night_label(today, newest_day(fresh, "ts")) == "2026-12-05"
    assert night_label(today, newest_day(old.with_columns(pl.col("ts").dt.date()), "ts")) == "2026-12-05 (data to 2026-10-12)"
    for no_time in (old.rename({"ts": "t"}), old.with_columns(pl.col("ts").cast(pl.String)), old.clear(),
                    pl.DataFrame({"ts": [None]}, schema={"ts": pl.Datetime})):
        assert night_label(today, newest_day(no_time, "ts")) == "2026-12-05"
    # (trial 10) the newest of the sample and the hold-out: the sample ends days before its hold-out
    holdout = pl.DataFrame({"ts": [datetime(2026, 10, 14, 12)]})
    assert night_label(today, newest_day((old, holdout), "ts")) == "2026-12-05 (data to 2026-10-14)"
    assert night_label(today, newest_day((old.rename({"ts": "t"}), holdout), "ts")) == "2026-12-05 (data to 2026-10-14)"
