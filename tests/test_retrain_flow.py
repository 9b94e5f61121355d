"""Integration: the real nightly-retrain flow (Prefect ephemeral server, MLflow SQLite, Torch), twice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def small_config(tmp_path: Path) -> Path:
    """The demo config shrunk to seconds: 4 machines × 6 days, short training."""
    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    data["state"]["dir"] = str(tmp_path / "state")
    data["synth"].update(machines=4, days=6, samples_per_day=400, target_sample_rows=200, target_holdout_rows=600,
                         target_like_share=0.2)
    raw = tmp_path / "raw"
    data["data"] = {
        "pool": [str(raw / "pool")],
        "logs": [str(raw / "logs")],
        "target_sample": str(raw / "target" / "sample.csv"),
        "target_holdout": str(raw / "target" / "holdout.parquet"),
    }
    data["scorer"]["pool_sample_rows"] = 5000
    data["sampling"]["chunk_rows"] = 3000
    # a step budget small enough for seconds, large enough that the model beats a constant (the
    # first night's gate, promotion.beat_constant_by)
    data["train"].update(max_steps=200, min_steps=100, eval_every=50, pretrain_max_steps=400, pretrain_rows=8000, patience=2)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_retrain_twice_registers_and_gates(tmp_path, prefect_harness):
    from flows.retrain import retrain
    from rsft.tracking import registry
    from rsft.config import load_config
    from rsft.pipeline import tracking_uri
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    raw = tmp_path / "raw"

    # ---- night 1: no champion yet -> base model pretrained on the pool, challenger promoted
    write_synthetic(cfg.synth, raw, night=1)
    s1 = retrain(config_path=str(cfg_path))
    assert s1["warm_start"] == "base"
    # the night's retention of the Prefect history ran (its first night: nothing is old)
    assert s1["prefect_history"].startswith("deleted 0 top-level run(s) older than the newest 7 nights (0 flow runs)"), s1["prefect_history"]
    assert s1["prefect_history_figures"]["flow_runs_deleted"] == 0 and s1["gc_figures"]["removed"] == 0
    from prefect import get_client  # the night's run carries its pipeline (flows/history.py prunes by it)
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        night = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly-retrain"])),
                                      sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    assert (night.labels.get("rsft.pipeline"), night.labels.get("rsft.state")) == (cfg.name, str(tmp_path / "state"))
    # named at its end as its MLflow run: the data's date and the decision (a backfill reads apart)
    assert night.name == f"retrain {registry.client(tracking_uri(cfg)).get_run(s1['mlflow_run']).info.run_name}", night.name
    assert night.name.startswith(f"retrain {cfg.name} ") and "(data to 2026-01-" in night.name and night.name.endswith(" promoted v1")
    # the base model was trained to convergence on the pool; the summary says how far
    base_fit, final_fit = s1["base_model_fit"], s1["final_fit"]  # numbers (the CLI prints a line)
    assert base_fit["steps"] > 0 and base_fit["loss"] == "mse" and final_fit["planned_steps"] >= final_fit["steps"] > 0
    assert s1["promoted"] is True and s1["model_version"] == "1"
    assert s1["rows_ingested"] > 0 and s1["rows_quarantined"] > 0  # the synth injects bad rows
    reasons = s1["quarantine_reasons"]  # per reason, top 5 + the rest: every quarantined row once
    assert sum(reasons.values()) == s1["rows_quarantined"] and len(reasons) <= 6
    assert any(k.startswith("missing s") or "out of range" in k for k in reasons)
    assert s1["rows_selected"] > 0 and 0 < s1["acceptance_rate"] <= 1
    assert s1["files_unlike_earlier"] == []  # the synthetic days drift, none leaves the range of those before it
    assert "logs" not in (s1.get("target_rows_quarantined") or {})  # the target files' counts only
    assert s1["rows_kept_by_prefilter"] + sum(s1["prefilter_dropped"].values()) == s1["rows_prefiltered_in"]

    mlc = registry.client(tracking_uri(cfg))
    name = cfg.promotion.model_name
    assert str(registry.alias_version(mlc, name).version) == "1"

    # ---- night 2: new exports; warm start from the champion; alias moves only if better
    write_synthetic(cfg.synth, raw, night=2)
    (raw / "pool" / "sensors_broken.csv").write_text("machine_id,when\nM01,2026-01-01\n")  # an export that fails
    import polars as pl  # an export whose every row is quarantined (the pressure sensor s05 in kPa, not bar)

    day = sorted((raw / "pool").glob("sensors_day*.csv"))[0]
    pl.read_csv(day, infer_schema=False).head(5).with_columns(s05=pl.lit("450.0")).write_csv(raw / "pool" / "sensors_kpa.csv")
    sample = raw / "target" / "sample.csv"  # a bad row in the target sample: counted, as the pool's are
    sample.write_text(sample.read_text().rstrip("\n") + "\nM01,not-a-time" + ",1.0" * 12 + ",RUN,0.5\n")
    # the next day's export with the vibration column s08 in in/s, not mm/s: every value passes the contract
    last = pl.read_csv(sorted((raw / "pool").glob("sensors_day*.csv"))[-1], infer_schema=False)
    last.with_columns((pl.col("ts").str.to_datetime(time_zone="UTC") + pl.duration(days=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      (pl.col("s08").cast(pl.Float64) / 25.4).round(3).cast(pl.String)).write_csv(raw / "pool" / "sensors_in_per_s.csv")
    s2 = retrain(config_path=str(cfg_path))
    assert s2["files_failed"] == 1  # left out of the night, named with why (not only counted)
    assert len(s2["failed_files"]) == 1 and s2["failed_files"][0].startswith("sensors: ")
    assert "sensors_broken.csv" in s2["failed_files"][0] and "missing column(s)" in s2["failed_files"][0]
    # (trial M5) named in one line with its reasons, not only counted among the night's quarantined rows
    assert s2["files_mostly_quarantined"] == ["sensors: sensors_kpa.csv: all 5 rows quarantined (s05 out of range "
                                           "[0.0, 10.0] 5) — widen min/max of column s05 of ingest.sensors"]
    assert s2["target_rows_quarantined"] == {"target_sample": 1}, s2.get("target_rows_quarantined")
    # named in one line (rsft.ingest.profile), and in the MLflow run's story below
    assert len(s2["files_unlike_earlier"]) == 1, s2["files_unlike_earlier"]
    assert s2["files_unlike_earlier"][0].startswith("sensors: sensors_in_per_s.csv: s08 (mm/s) median ")
    assert s2["warm_start"] == f"models:/{name}/1"
    assert s2["model_version"] == "2"
    # promoted when it wins beyond the hold-out's noise: by promotion.min_z standard errors of the
    # paired difference on the hold-out's rows (tagged on the version, said in the reason)
    v2tags = mlc.get_model_version(name, "2").tags
    z, se = float(v2tags["rsft.difference_z"]), float(v2tags["rsft.difference_se"])
    better = s2["challenger_rmse"] < s2["champion_rmse"] and z >= cfg.promotion.min_z
    assert s2["promoted"] is better
    assert se > 0 and " ± " in s2["reason"] and ("SE ≥ promotion.min_z=" in s2["reason"]) is better, s2["reason"]
    champ = registry.alias_version(mlc, name)
    assert str(champ.version) == ("2" if better else "1")
    if better:
        assert str(registry.alias_version(mlc, name, registry.PREVIOUS).version) == "1"
    hist = registry.history(mlc, name)
    assert [h["decision"] for h in hist] == ["promoted" if better else "rejected", "promoted"]
    assert [h["recipe"] for h in hist] == ["rsft (rejection sampling)"] * 2

    # ---- lineage: the datasets are run inputs (URI + digest + row count), in the order the data
    # flowed; the version carries them as tags with self-explaining names
    run = mlc.get_run(s2["mlflow_run"])
    chain = ["1_raw_files", "2_ingested", "3_kept", "4_selected", "5_training_set"]
    inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
    assert set(chain) | {"target_sample", "target_holdout"} == set(inputs)
    v2tags = mlc.get_model_version(name, "2").tags
    rows = [int(v2tags[f"lineage.{k}.rows"]) for k in chain]
    assert rows == [json.loads(inputs[k].profile)["num_rows"] for k in chain]
    assert rows[0] > rows[1] == s2["rows_prefiltered_in"] and rows[2] == s2["rows_kept_by_prefilter"]
    assert rows[3] == s2["rows_selected"] and rows[4] == s2["train_rows"]
    assert all(v2tags[f"lineage.{k}.digest"] == inputs[k].digest for k in chain)
    assert v2tags["lineage.2_ingested.digest"] == v2tags["rsft.data_digest"]  # rsft.data_digest is the ingested pool's
    # `rsft history` names the hold-out each version was judged on: the lineage's digest and rows, the
    # files; night 2's export of holdout.parquet is another hold-out (another id)
    v1tags = mlc.get_model_version(name, "1").tags
    assert [(h["holdout_digest"], h["holdout_rows"], h["holdout_files"]) for h in hist] == [
        (t["lineage.target_holdout.digest"], t["lineage.target_holdout.rows"], "holdout.parquet") for t in (v2tags, v1tags)]
    assert hist[0]["holdout_digest"] != hist[1]["holdout_digest"]
    # the day of each night's newest reading (a backfill's nights are registered on one day)
    assert [h["data_to"] for h in hist] == [v2tags["rsft.data_to"], v1tags["rsft.data_to"]]
    assert v2tags["rsft.data_to"] > v1tags["rsft.data_to"] >= "2026-01-01", (v2tags["rsft.data_to"], v1tags["rsft.data_to"])
    assert " export files read by ingest" in v2tags["lineage.1_raw_files"] and "target sample" in v2tags["lineage.5_training_set"]
    # the logged model: named input columns in its signature, its hold-out metric tied to the hold-out dataset
    import mlflow

    from rsft.features import feature_names
    from rsft.tracking.serving import logged_model_id

    info = mlflow.models.get_model_info(f"models:/{name}/2")
    assert info.signature.inputs.input_names() == feature_names(cfg.features)
    linked = {(m.key, m.dataset_name) for m in mlc.get_logged_model(logged_model_id(mlc.get_model_version(name, "2"))).metrics}
    assert ("challenger_holdout_rmse", "target_holdout") in linked and ("train_rows", "5_training_set") in linked
    assert {k for k, _ in linked} <= {"challenger_holdout_rmse", "challenger_holdout_mae", "challenger_holdout_r2",
                                      "challenger_holdout_n", "train_rows"}  # not the champion's or the warm start's
    assert {"training/curves.png"} <= {a.path for a in mlc.list_artifacts(s2["mlflow_run"], "training")}
    assert run.data.params["train.max_steps"] == "200"  # the resolved config is logged as params
    # ---- the run explains itself: named after the night and the decision, a markdown story,
    # the key figures as metrics with unambiguous names, a short list of params
    from datetime import datetime, timezone

    night = datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).date().isoformat()
    # the run spans the night: it began before the night's selection (its scorer, its selected rows)
    from rsft.pipeline.layout import pipeline_root

    run_dir = pipeline_root(cfg) / "runs" / run.data.tags["rsft.run_key"]
    first_write = min(f.stat().st_mtime for f in run_dir.rglob("*") if f.is_file())
    assert run.info.start_time / 1000 < first_write, (run.info.start_time, first_write)
    # the synthetic data is dated 2026-01: the name says the date of the data too (a backfill's nights)
    from rsft.pipeline.finetune import newest_day, night_label
    from rsft.pipeline.data import load_target

    both = [load_target(cfg, w) for w in ("target_sample", "target_holdout")]
    night = night_label(datetime.fromisoformat(night).date(), newest_day(both, cfg.features.time_column))
    assert run.info.run_name == f"{cfg.name} {night} {'promoted' if better else 'rejected'} v2"
    assert "(data to 2026-01-" in night
    story = run.data.tags["mlflow.note.content"]
    assert f"night of {night}" in story and "selected for tonight's regime" in story and s2["reason"] in story
    assert f"Input warnings:\n- **new:** {s2['files_unlike_earlier'][0]}" in story  # night 1 had none
    assert "warnings unchanged since" in story  # the selection warnings night 1 gave: one line
    assert {"rows_pool", "rows_kept", "rows_selected", "acceptance_rate", "ess", "auc_selected_vs_target",
            "ks_max_selected_vs_target", "challenger_holdout_rmse", "champion_holdout_rmse", "train_rows"} <= set(run.data.metrics)
    assert run.data.metrics["rows_kept"] == s2["rows_kept_by_prefilter"]
    assert run.data.metrics["champion_holdout_rmse"] == pytest.approx(s2["champion_rmse"], abs=1e-4)
    assert not {"rows_prefiltered", "selected_rows", "lr", "holdout_rmse"} & set(run.data.metrics)
    assert len(run.data.params) <= 25
    # the nights view: the runs table with those figures as columns, linked from the experiment
    exp = mlc.get_experiment(run.info.experiment_id)
    view = json.loads(exp.tags["mlflow.sharedViewState.rsft-nights"])
    assert "metrics.`rows_selected`" in view["selectedColumns"] and "metrics.`champion_holdout_rmse`" in view["selectedColumns"]
    assert all(c.removeprefix("metrics.`").rstrip("`") in run.data.metrics for c in view["selectedColumns"])
    assert "viewStateShareKey=rsft-nights" in exp.tags["mlflow.note.content"]
    assert s2["mlflow_nights"].endswith(f"#/experiments/{exp.experiment_id}/runs?viewStateShareKey=rsft-nights")
    assert "night of" in mlc.get_model_version(name, "2").description
    assert mlc.get_registered_model(name).description.startswith("rsft model of pipeline")
    arts = {a.path for a in mlc.list_artifacts(s2["mlflow_run"])}
    assert {"config", "lineage", "scorer", "checkpoint", "decision.json"} <= arts
    decided = json.loads(Path(mlc.download_artifacts(s2["mlflow_run"], "decision.json", str(tmp_path))).read_text())
    assert decided["details"]["difference_se"] == pytest.approx(se, rel=1e-5) and decided["details"]["min_z"] == 2
    from rsft.models import load_checkpoint

    ckpt = load_checkpoint(registry.download_checkpoint(mlc, champ))  # the whole resolved config rides along
    assert ckpt["config"]["name"] == cfg.name and ckpt["config"]["train"]["max_steps"] == 200
    assert ckpt["config"]["features"]["numeric"] == cfg.features.numeric

    # ---- as a person checks it (make ui-check): the MLflow UI started on this state, the night read
    # through its REST API (the screenshots: tests/test_ui.py, slow)
    import subprocess
    import sys

    check = subprocess.run([sys.executable, str(REPO / "scripts" / "ui_check.py"), "--state", str(cfg.state.dir),
                            "--out", str(tmp_path / "ui-check"), "--browser", "none"],
                           capture_output=True, text=True, timeout=300, cwd=REPO)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    checked = json.loads((tmp_path / "ui-check" / "checks.json").read_text())
    assert len(checked) >= 8 and all(c["ok"] for c in checked), checked

    # ---- the CLI audit trail and rollback
    from typer.testing import CliRunner

    from rsft.cli import app

    out = CliRunner().invoke(app, ["history", "--config", str(cfg_path)])
    assert out.exit_code == 0 and "promoted" in out.output
    out = CliRunner().invoke(app, ["promote", "--version", "99", "--config", str(cfg_path)])
    assert out.exit_code == 2 and "has no version 99 (registered: 1, 2)" in " ".join(out.output.split())
    assert better, "night 2 of this small config promotes (the rollback/promote checks below need it)"
    if better:
        out = CliRunner().invoke(app, ["rollback", "--config", str(cfg_path)])
        assert out.exit_code == 0, out.output
        assert str(registry.alias_version(mlc, name).version) == "1"
        assert str(registry.alias_version(mlc, name, registry.PREVIOUS).version) == "2"
        out = CliRunner().invoke(app, ["promote", "--version", "2", "--config", str(cfg_path)])
        assert out.exit_code == 0, out.output
        assert str(registry.alias_version(mlc, name).version) == "2"
        v2 = registry.history(mlc, name)[0]  # the nightly decision stays; rollback and promotion are events
        assert v2["decision"] == "promoted" and v2["reason"] == s2["reason"]
        texts = [t for _, t in v2["events"]]
        assert len(texts) == 2 and texts[0].startswith("rolled back: champion again is v1 (by ")
        assert texts[1].startswith("promoted manually: rmse ") and "(champion was v1)" in texts[1]
        out = CliRunner().invoke(app, ["history", "--config", str(cfg_path)])
        assert "v2  promoted manually" in out.output and "v1  champion again (rollback from v2)" in out.output

    # ---- re-running the same night is idempotent: the data stages are reused, and the night is
    # decided (v2): nothing is trained or registered, the recorded decision is reported
    s3 = retrain(config_path=str(cfg_path))
    assert s3["rows_selected"] == s2["rows_selected"] and s3["quarantine_reasons"] == {}  # no new files
    assert s3["model_version"] == "2" and s3["reason"] == s2["reason"] and s3["mlflow_run"] == s2["mlflow_run"]
    assert "already_decided" in s3 and [h["version"] for h in registry.history(mlc, name)] == [2, 1]

    # ---- fine-tune only: other train.* settings on the same (cached) selection, no ingest;
    # here the training rows stream from Parquet (ParquetStream) instead of memory
    from flows.finetune import finetune

    before = registry.alias_version(mlc, name).version
    f4 = finetune(config_path=str(cfg_path), overrides={"train.epochs": 2, "train.stream": "on"})
    assert f4["version"] == "3" and f4["train"]["epochs_run"] <= 2
    assert f4["train"]["streamed"] == 1 and f4["train"]["selected_rows"] == s3["rows_selected"]
    assert f4["train"]["train_rows"] == s3["train_rows"]  # the same rows as the in-memory path
    assert math.isfinite(f4["challenger"]["rmse"])
    assert f4["warm_start"] == f"models:/{name}/{before}"

    # ---- a target export that does not ingest stops the retrain: no model is trained or judged
    # on the earlier night's target rows still in the dataset, nothing is registered
    with pytest.raises(ValueError, match=r"the target sample did not ingest \(nope.csv: not found\)"):
        retrain(config_path=str(cfg_path), overrides={"data.target_sample": str(tmp_path / "nope.csv")})
    assert registry.history(mlc, name)[0]["version"] == 3


def test_cli_ingest_runs_the_flow_and_reports(tmp_path, prefect_harness):
    from typer.testing import CliRunner

    from rsft.cli import app
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw")
    out = CliRunner().invoke(app, ["ingest", "--config", str(cfg_path)])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if "sensors" in ln)
    assert int(line.split("│")[2]) == 6 and int(line.split("│")[3]) == 0  # 6 daily files, none skipped
    again = CliRunner().invoke(app, ["ingest", "--config", str(cfg_path)])  # incremental: everything skipped
    line = next(ln for ln in again.output.splitlines() if "sensors" in ln)
    assert again.exit_code == 0 and int(line.split("│")[3]) == 6
    parts = list((tmp_path / "state").rglob("date=*/part-*.parquet"))
    assert parts, "the demo contract writes hive partitions"


@pytest.mark.slow
def test_retrain_with_rolling_features_feeds_them_to_scorer_and_model(tmp_path):
    """features.rolling end to end: the prefiltered pool carries the rolling columns (computed in
    the block pass), the scorer and the challenger read them, the gate compares on the hold-out."""
    from rsft import pipeline as stages
    from rsft.config import load_config
    from rsft.density import load_scorer
    from rsft.keptpool import scan_pool
    from rsft.synth import write_synthetic

    rolling = [{"columns": ["s01", "s05"], "window": 4, "stats": ["mean", "std"]}]
    cfg = load_config(small_config(tmp_path), {"features.rolling": rolling})
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    out = stages.run_night(cfg)
    names = ["s01_mean4", "s01_std4", "s05_mean4", "s05_std4"]
    pre = stages.prefilter_stage(cfg)  # cached: the run's own prefiltered pool
    assert set(names) <= set(scan_pool(pre.output).collect_schema().names())
    scored = stages.fit_scorer_stage(cfg, pre)
    assert load_scorer(scored.scorer_path).feature_names[-4:] == names
    assert out["promoted"] is True and out["model_version"] == "1"


def test_prefilter_write_excluded_keeps_the_dropped_rows_with_their_rule(tmp_path):
    """prefilter.write_excluded: every dropped row lands beside the kept pool, once, under the first
    rule that dropped it; kept + excluded = the rows in."""
    import dataclasses

    import polars as pl

    from rsft import pipeline
    from rsft.config import load_config
    from rsft.keptpool import excluded_files
    from rsft.synth import write_synthetic

    cfg = load_config(small_config(tmp_path), {"prefilter.write_excluded": True})
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    pipeline.ingest_stage(cfg)
    pre = pipeline.prefilter_stage(cfg)
    excluded = pl.read_parquet(excluded_files(pre.excluded))
    assert excluded.height == sum(pre.dropped.values()) > 0
    assert excluded.group_by("rule").len().sort("rule").rows() == sorted((k, v) for k, v in pre.dropped.items() if v)
    again = pipeline.prefilter_stage(cfg)  # cached: the same kept pool, no day computed again
    assert again == dataclasses.replace(pre, days_computed=0) and pre.days_computed == pre.days_total > 0


@pytest.mark.slow
def test_a_diverged_first_night_is_registered_but_not_promoted(tmp_path):
    """--set train.lr=1e6: every epoch's loss is NaN and the fit keeps the warm start's weights;
    with no champion yet the gate must still reject it, saying the fit diverged."""
    from rsft import pipeline as stages
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg = load_config(small_config(tmp_path), {"train.lr": 1e6})
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    out = stages.run_night(cfg)
    assert out["promoted"] is False, out
    assert out["reason"].startswith("the fit diverged: no finite loss"), out["reason"]


def test_a_killed_nights_temp_files_are_removed_by_the_next(tmp_path):
    """Temp files of a dead process (its pid in the name) in prefiltered/ and the run's folders
    are removed when the next night reaches those stages; a live process's are kept."""
    import os
    import subprocess
    import sys

    from rsft import pipeline
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg = load_config(small_config(tmp_path))
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    pipeline.ingest_stage(cfg)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    pre_dir = pipeline.pipeline_root(cfg) / "prefiltered"
    pre_dir.mkdir(parents=True)
    left = [pre_dir / f".split-{pid}-abc.parquet", pre_dir / f".x.parquet.tmp-{pid}-1-deadbeef"]
    live = pre_dir / f".split-{os.getpid()}-mine.parquet"
    for p in [*left, live]:
        p.write_bytes(b"partial")
    pre = pipeline.prefilter_stage(cfg)
    assert not any(p.exists() for p in left) and live.exists()
    scored = pipeline.fit_scorer_stage(cfg, pre)
    chunk_tmp = Path(scored.run_dir) / "chunks" / f".c.parquet.tmp-{pid}-1-feed"
    chunk_tmp.parent.mkdir(parents=True, exist_ok=True)
    chunk_tmp.write_bytes(b"partial")
    pipeline.fit_scorer_stage(cfg, pre)
    assert not chunk_tmp.exists()


def test_a_running_night_is_named_by_its_pipeline(tmp_path, prefect_harness):
    """While a night runs (and if it is killed) its flow run reads 'retrain <pipeline> <date> <time>',
    the pipeline's name as the finished night's has it — not the config file's stem (trial 11:
    'retrain pv …' from pv.yaml, 'retrain pvplant …' at the end); a config that does not load
    leaves the stem (the flow's body then fails with the reason)."""
    import re
    import shutil

    from prefect import flow, get_client

    from flows.retrain import _night_name

    @flow(flow_run_name=_night_name)
    def named(config_path: str, overrides: dict | None = None) -> str:
        from prefect.runtime import flow_run

        with get_client(sync_client=True) as client:
            return client.read_flow_run(flow_run.id).name

    cfg_path = tmp_path / "pv.yaml"
    shutil.copy(small_config(tmp_path), cfg_path)
    assert re.fullmatch(r"retrain factory \d{4}-\d\d-\d\d \d\d:\d\d", named(str(cfg_path))), named(str(cfg_path))
    assert named(str(cfg_path), {"name": "pvplant"}).startswith("retrain pvplant ")
    assert named(str(tmp_path / "missing.yaml")).startswith("retrain missing ")
