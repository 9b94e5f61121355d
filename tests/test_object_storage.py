"""Object storage for real: an S3-compatible server on loopback (moto in server mode, started
here), raw exports read from ``s3://`` through the normal ingest and retrain path, and MLflow
artifacts written to an S3 bucket through a loopback ``mlflow server --artifacts-destination s3://``.
The client finds the server the way it would find MinIO or Ceph: ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.loopback import S3_ENV, mlflow_server, s3_server
from tests.test_retrain_flow import small_config


@pytest.fixture()
def s3(monkeypatch):
    """The loopback S3 endpoint, with this process's AWS settings pointing at it."""
    with s3_server() as endpoint:
        for k, v in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(k, v)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()  # a cached client would keep an earlier endpoint
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()


def _exports(tmp_path: Path, bucket: str) -> tuple[Path, dict]:
    """Night 1's synthetic exports (one pool CSV gzipped) on local disk and copied to ``bucket``;
    returns the config and the ``data`` section that reads them from S3."""
    import boto3
    import fsspec

    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    raw = tmp_path / "raw"
    write_synthetic(load_config(cfg_path).synth, raw, night=1)
    first_csv = sorted((raw / "pool").glob("*.csv"))[0]
    with open(first_csv, "rb") as src, gzip.open(f"{first_csv}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    first_csv.unlink()
    boto3.client("s3").create_bucket(Bucket=bucket)
    fs = fsspec.filesystem("s3")
    for p in raw.rglob("*"):
        if p.is_file():
            fs.put_file(str(p), f"{bucket}/plant-a/{p.relative_to(raw)}")
    remote = {"pool": [f"s3://{bucket}/plant-a/pool"], "logs": [f"s3://{bucket}/plant-a/logs/*.jsonl"],
              "target_sample": f"s3://{bucket}/plant-a/target/sample.csv",
              "target_holdout": f"s3://{bucket}/plant-a/target/holdout.parquet"}
    return cfg_path, remote


def _with(cfg_path: Path, out: Path, **sections) -> Path:
    data = yaml.safe_load(cfg_path.read_text())
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    out.write_text(yaml.safe_dump(data))
    return out


def _rows(dataset_dir: Path) -> pl.DataFrame:
    from rsft.ingest import scan_dataset

    df = scan_dataset(dataset_dir).collect()
    return df.sort(df.columns)


def test_raw_exports_on_s3_ingest_exactly_like_local_files(tmp_path, s3):
    """Every dataset (CSV, CSV.gz, Parquet, JSONL; directories and globs) ingested from the S3
    bucket holds exactly the rows and quarantine of the same files ingested from disk; a second
    run skips every S3 file by its manifest entry."""
    from rsft import progress
    from rsft.config import load_config
    from rsft.pipeline import ingest_stage
    from rsft.pipeline.layout import pipeline_root

    cfg_path, remote = _exports(tmp_path, "raw-exports")
    local = load_config(cfg_path)
    from_s3 = load_config(_with(cfg_path, tmp_path / "s3.yaml", data=remote, state={"dir": str(tmp_path / "s3-state")}))
    planned: dict[str, list[int]] = {"local": [], "s3": []}
    with progress.listen(lambda event, **f: planned["local"].append(f["bytes"]) if event == "ingest.plan" else None):
        a = ingest_stage(local)
    with progress.listen(lambda event, **f: planned["s3"].append(f["bytes"]) if event == "ingest.plan" else None):
        b = ingest_stage(from_s3)
    assert planned["s3"] == planned["local"] and all(planned["s3"])  # the progress bar's bytes, per dataset
    assert set(a.datasets) == set(b.datasets) == {"sensors", "logs", "target_sample", "target_holdout"}
    for name in a.datasets:
        assert b[name].files == a[name].files and not b[name].files_failed, b[name].files_failed
        assert (b[name].rows_ok, b[name].rows_quarantined) == (a[name].rows_ok, a[name].rows_quarantined) != (0, 0)
        assert _rows(pipeline_root(from_s3) / name).equals(_rows(pipeline_root(local) / name)), name
    assert any(f["file"].endswith(".csv.gz") and f["status"] == "ok" for f in b["sensors"].file_results)
    again = ingest_stage(from_s3)
    assert all(f["status"] == "skipped" for d in again.datasets.values() for f in d.file_results)


def test_a_long_running_process_sees_new_and_rewritten_exports_in_the_bucket(tmp_path, s3):
    """`rsft serve` ingests hourly from one process: a new object under a listed prefix or glob is
    found, and an export rewritten under the same key is read anew (not from a stale listing)."""
    import boto3

    from rsft.config import load_config
    from rsft.pipeline import ingest_stage

    cfg_path, remote = _exports(tmp_path, "raw-exports")
    cfg = load_config(_with(cfg_path, tmp_path / "s3.yaml", data=remote))
    first = ingest_stage(cfg)
    bucket = boto3.client("s3")
    logs = sorted((tmp_path / "raw" / "logs").glob("*.jsonl"))
    def cut(path: Path, skip: int) -> bytes:  # another export: one without its lines 1..skip
        lines = path.read_bytes().splitlines(keepends=True)
        return b"".join(lines[:1] + lines[1 + skip:])

    bucket.put_object(Bucket="raw-exports", Key="plant-a/logs/maintenance_day900.jsonl", Body=cut(logs[0], 1))
    bucket.put_object(Bucket="raw-exports", Key="plant-a/pool/sensors_day900.csv",
                      Body=cut(sorted((tmp_path / "raw" / "pool").glob("*.csv"))[0], 1))
    bucket.put_object(Bucket="raw-exports", Key=f"plant-a/logs/{logs[1].name}", Body=cut(logs[1], 2))
    second = ingest_stage(cfg)

    def status(d, name):
        return {f["file"]: f["status"] for f in d.file_results}.get(name)

    assert status(second["sensors"], "sensors_day900.csv") == "ok"  # a new object under a prefix
    assert status(second["logs"], "maintenance_day900.jsonl") == "ok"  # a new object matching a glob
    assert status(second["logs"], logs[1].name) == "ok"  # rewritten: new content, ingested again
    assert status(first["logs"], logs[1].name) == "ok" and status(second["logs"], logs[2].name) == "skipped"


def test_state_dir_on_object_storage_is_refused_with_the_reason():
    import subprocess
    import sys

    from rsft.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="state.dir.*local"):
        parse_config({"state": {"dir": "s3://bucket/rsft"}, "data": {"pool": ["p"], "target_sample": "t",
                                                                       "target_holdout": "h"}})
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "history", "--config", "examples/factory.yaml"], cwd=repo,
                         env={**os.environ, "RSFT_STATE_DIR": "s3://bucket/rsft"}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "RSFT_STATE_DIR=s3://bucket/rsft: the state dir must be a local directory" in " ".join(out.stderr.split())


@pytest.mark.slow
def test_retrain_reads_s3_exports_and_logs_models_to_an_s3_artifact_store(tmp_path, s3, prefect_harness):
    """The nightly retrain flow with raw exports on S3 and an MLflow server whose artifacts live in
    an S3 bucket: the champion's model and checkpoint are objects in the bucket (none on local
    disk), and they load back through the server."""
    import boto3

    from flows.retrain import retrain
    from rsft.config import load_config
    from rsft.tracking import registry

    cfg_path, remote = _exports(tmp_path, "raw-exports")
    boto3.client("s3").create_bucket(Bucket="ml-artifacts")
    server_env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3}
    with mlflow_server(tmp_path / "mlflow.db", "s3://ml-artifacts/mlflow", env=server_env) as uri:
        path = _with(cfg_path, tmp_path / "team.yaml", data=remote, state={"tracking_uri": uri})
        summary = retrain(config_path=str(path))
        assert summary["promoted"] and summary["model_version"] == "1" and summary["rows_ingested"] > 0

        keys = [o["Key"] for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(
            Bucket="ml-artifacts", Prefix="mlflow/") for o in page.get("Contents", [])]
        assert any(k.endswith("/checkpoint/model.pt") for k in keys), keys
        assert any(k.endswith("/MLmodel") for k in keys), keys
        assert any("selection_report/" in k for k in keys), keys
        cfg = load_config(path)
        assert not list(Path(cfg.state.dir).rglob("MLmodel"))  # nothing went to the state dir
        mlc = registry.client(uri)
        champ = registry.alias_version(mlc, cfg.promotion.model_name)
        assert str(champ.version) == "1"
        from rsft.models import load_checkpoint, model_from_checkpoint

        model = model_from_checkpoint(load_checkpoint(registry.download_checkpoint(mlc, champ)))
        assert sum(p.numel() for p in model.parameters()) > 0
