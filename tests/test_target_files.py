"""The target sample and hold-out are the rows of the files the config names now (not every file
ever ingested), and a night without usable rows says why in one line (a new user's trial on text:
findings M1, H2, M6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsft.config import load_config
from rsft.pipeline.data import check_ingested, ingest_stage, load_target, run_key
from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE
from rsft.pipeline.lineage import night_key
from rsft.pipeline.targets import named_digest

REPO = Path(__file__).resolve().parents[1]
CLEAN = REPO / "tests" / "data" / "bad-inputs" / "clean.csv"


def _write(path: Path, lines: list[str], naive: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [ln + "0.9" if ln.endswith(",") else ln for ln in lines]  # every row labelled
    rows = [ln.replace("Z,", ",", 1) for ln in rows] if naive else rows
    path.write_text("\n".join([CLEAN.read_text().splitlines()[0], *rows]) + "\n")
    return str(path)


def _config(tmp_path: Path, **data) -> Path:
    cfg = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    cfg["state"]["dir"] = str(tmp_path / "state")
    cfg["data"] = {"pool": [str(tmp_path / "raw" / "pool")], "logs": [], **data}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture()
def files(tmp_path):
    rows = CLEAN.read_text().splitlines()[1:]
    raw = tmp_path / "raw"
    _write(raw / "pool" / "day01.csv", rows[:30])
    # target A and B: the same file name in two directories (as a new regime's export often is)
    return {"a": _write(raw / "a" / "sample.csv", rows[30:36]), "a_h": _write(raw / "a" / "holdout.csv", rows[36:42]),
            "b": _write(raw / "b" / "sample.csv", rows[42:46]), "b_h": _write(raw / "b" / "holdout.csv", rows[46:50])}


def _night_ingest(cfg):
    ingested = ingest_stage(cfg)
    check_ingested(cfg, ingested)
    return ingested


def test_target_and_holdout_are_the_files_named_now(tmp_path, files):
    path = _config(tmp_path, target_sample=files["a"], target_holdout=files["a_h"])
    a = load_config(path)
    _night_ingest(a)
    assert load_target(a).height == 6 and load_target(a, TARGET_HOLDOUT).height == 6
    keys_a = (named_digest(a, TARGET_SAMPLE), night_key(a, "k"))

    b = load_config(path, {"data.target_sample": f"{files['b']}", "data.target_holdout": f"{files['b_h']}"})
    ingested = _night_ingest(b)
    assert ingested[TARGET_SAMPLE].files == 1 and ingested[TARGET_SAMPLE].files_skipped == 0
    sample, holdout = load_target(b), load_target(b, TARGET_HOLDOUT)
    assert sample.height == 4 and holdout.height == 4  # only B's rows: A's are not added
    assert set(sample["_source"]) == {"sample.csv"}
    assert named_digest(b, TARGET_SAMPLE) != keys_a[0] and night_key(b, "k") != keys_a[1]

    # back to A: its rows again, without ingesting anything (its files are done); the same keys
    ingested = _night_ingest(a)
    assert ingested[TARGET_SAMPLE].files_skipped == 1 and ingested[TARGET_HOLDOUT].files_skipped == 1
    assert load_target(a).height == 6 and load_target(a, TARGET_HOLDOUT).height == 6
    assert (named_digest(a, TARGET_SAMPLE), night_key(a, "k")) == keys_a

    # a glob names every file it matches: A's and B's rows, each once
    both = load_config(path, {"data.target_sample": f"{tmp_path / 'raw' / '*' / 'sample.csv'}"})
    _night_ingest(both)
    assert load_target(both).height == 10


def test_a_target_whose_rows_were_all_quarantined_names_the_reason_the_setting_and_again(tmp_path, files):
    raw = tmp_path / "raw"
    rows = CLEAN.read_text().splitlines()[1:]
    naive = _write(raw / "n" / "sample.csv", rows[30:36], naive=True)
    path = _config(tmp_path, target_sample=naive, target_holdout=files["a_h"])
    cfg = load_config(path)
    with pytest.raises(ValueError) as e:
        _night_ingest(cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("target sample has no usable rows: all 6 rows of sample.csv")
    assert "6 × ts: timestamp without time zone" in msg and "ingest.sensors.naive_timestamps: assume_utc" in msg
    assert "rsft ingest --again" in msg
    with pytest.raises(ValueError, match="naive_timestamps: assume_utc"):  # outside a night too (promote, adapt)
        load_target(cfg)

    # the contract fixed: the file is done, so a plain ingest skips it and nothing changes …
    fixed = load_config(path, {"ingest.sensors.naive_timestamps": 'assume_utc'})
    assert ingest_stage(fixed)[TARGET_SAMPLE].files_skipped == 1
    with pytest.raises(ValueError, match="rsft ingest --again"):
        load_target(fixed)
    # … `rsft ingest --again` ingests it (and every file done before) under the contract as it is now
    out = _rsft("ingest", "--config", str(path), "--again", "--set", "ingest.sensors.naive_timestamps=assume_utc")
    assert out.returncode == 0, out.stderr
    _night_ingest(fixed)
    df = load_target(fixed)
    assert df.height == 6 and df["_row"].is_unique().all()  # nothing doubled
    ds = Path(fixed.state.dir) / "data" / fixed.name / TARGET_SAMPLE
    assert not list((ds / "quarantine").glob("*.parquet"))  # the old quarantine part went with its rows
    pool = load_config(path)  # the pool, ingested twice: its rows once
    from rsft.ingest import scan_dataset

    assert scan_dataset(Path(pool.state.dir) / "data" / pool.name / "sensors").collect().height == 30


def test_ingest_warns_when_every_row_of_a_file_was_quarantined(tmp_path, files):
    raw = tmp_path / "raw"
    naive = _write(raw / "n" / "holdout.csv", CLEAN.read_text().splitlines()[1:7], naive=True)
    path = _config(tmp_path, target_sample=files["a"], target_holdout=naive)
    out = _rsft("ingest", "--config", str(path))
    assert out.returncode == 0, out.stderr
    said = [ln for ln in out.stderr.splitlines() if "rows quarantined" in ln]
    assert said == ["warning target_holdout: holdout.csv: all 6 rows quarantined (ts: timestamp without time zone 6) — "
                    "set ingest.sensors.naive_timestamps: assume_utc (or assume_local with ingest.sensors.local_timezone, "
                    "for wall-clock exports)"], out.stderr
    assert "`rsft ingest --again` ingests the file(s) above again" in out.stderr


def test_ingest_names_an_export_without_readings(tmp_path, files):
    """(trial 6) A header-only export (a historian outage, usually) is a file of 0 rows — as the
    bad-inputs corpus expects — and was said nowhere: `rsft ingest` names it."""
    _write(tmp_path / "raw" / "pool" / "day09_outage.csv", [])
    (tmp_path / "raw" / "logs").mkdir(parents=True)
    (tmp_path / "raw" / "logs" / "maintenance_day09.jsonl").write_bytes(b"")  # a quiet day: no events
    path = _config(tmp_path, target_sample=files["a"], target_holdout=files["a_h"], logs=[str(tmp_path / "raw" / "logs")])
    out = _rsft("ingest", "--config", str(path))
    assert out.returncode == 0, out.stderr
    said = [ln for ln in out.stderr.splitlines() if "0 rows" in ln]
    assert said == ["warning sensors: day09_outage.csv: 0 rows (an export without readings: header only, or empty under "
                    "empty_file: zero_rows)"], out.stderr
    # an empty maintenance log is no outage (JSONL's empty_file default is zero_rows): a plain line, no warning
    assert "logs: maintenance_day09.jsonl: no lines (no events in this export)" in " ".join(out.stdout.split()), out.stdout


def _kpa(path: Path, lines: list[str]) -> str:
    """An export in kPa, not bar: every s05 (bar, [0, 10]) ×100 is out of range; one row also lacks s01."""
    def kpa(ln: str, i: int) -> str:
        f = ln.split(",")
        f[6] = f"{float(f[6]) * 100:.1f}"
        if i == 0:
            f[2] = ""
        return ",".join(f)
    return _write(path, [kpa(ln, i) for i, ln in enumerate(lines)])


def test_a_file_whose_rows_were_all_quarantined_is_named_with_its_own_reasons(tmp_path, files):
    """(trial M5) The kPa export: each such file named in one line with its own rows' reasons and
    the setting that would accept the most frequent — the lines `rsft ingest` warns with and the
    retrain's summary lists (files_mostly_quarantined)."""
    from rsft.pipeline.targets import mostly_quarantined

    rows = CLEAN.read_text().splitlines()[1:]
    _kpa(tmp_path / "raw" / "pool" / "day02_v2_kpa.csv", rows[10:18])
    bad = rows[20].split(",")
    bad[14] = "??"  # status not one of RUN|IDLE|MAINT
    _write(tmp_path / "raw" / "pool" / "day03.csv", rows[18:20] + [",".join(bad)])  # one bad row of three: not named
    # (trial 6) an export whose readings are mostly in other units, its empty fields allowed: 2 of 3
    kpa = [",".join(f[:6] + [f"{float(f[6]) * 100:.1f}"] + f[7:]) for f in (ln.split(",") for ln in rows[22:24])]
    _write(tmp_path / "raw" / "pool" / "day04_kpa_part.csv", [rows[21], *kpa])  # its first row before the change
    cfg = load_config(_config(tmp_path, target_sample=files["a"], target_holdout=files["a_h"]))
    ingested = _night_ingest(cfg)
    assert ingested["sensors"].rows_quarantined == 11
    lines = mostly_quarantined(cfg, ingested)
    assert lines[0] == ("sensors: day02_v2_kpa.csv: all 8 rows quarantined (s05 out of range [0.0, 10.0] 7, missing s01 1) — "
                        "widen min/max of column s05 of ingest.sensors")
    assert len(lines) == 2 and lines[1].startswith("sensors: day04_kpa_part.csv: 2 of 3 rows quarantined (s05 out of range")
    assert mostly_quarantined(cfg, ingest_stage(cfg)) == []  # a later run: the file is done, nothing new to name


def test_a_wrong_pool_path_is_named(tmp_path, files):
    path = _config(tmp_path, target_sample=files["a"], target_holdout=files["a_h"])
    cfg = load_config(path, {"data.pool": [str(tmp_path / 'raw' / 'nothere')]})
    with pytest.raises(ValueError) as e:
        _night_ingest(cfg)
    assert str(e.value).startswith(f"data.pool: {tmp_path / 'raw' / 'nothere'}: not found"), str(e.value)


def test_run_key_follows_the_named_target_files(tmp_path, files):
    """The scorer is fitted again for another target sample, and reused when pointed back."""
    from rsft.pipeline.results import Prefiltered

    path = _config(tmp_path, target_sample=files["a"], target_holdout=files["a_h"])
    a = load_config(path)
    b = load_config(path, {"data.target_sample": f"{files['b']}"})
    pre = Prefiltered(output="x", rows_in=1, rows_out=1, dropped={}, alone={}, excluded=None, version="v")
    _night_ingest(a)
    ka = run_key(a, pre)
    _night_ingest(b)
    assert run_key(b, pre) != ka and run_key(a, pre) == ka


def test_again_in_a_copied_state_dir_leaves_the_original_alone(tmp_path, files):
    """Manifest entries record where their parts were written: ingesting a copy of a state dir
    again replaces the copy's parts, never the original's (a trial copied its state dir to try a
    setting, and the copy's re-ingest deleted the original's parts)."""
    import shutil

    from rsft.ingest import ingest, scan_dataset

    c = load_config(_config(tmp_path, target_sample=files["a"], target_holdout=files["a_h"])).ingest.sensors
    ds = tmp_path / "ds"
    ingest(files["a"], ds, c)
    before = sorted(p.name for p in (ds / "data").rglob("*.parquet"))
    shutil.copytree(ds, tmp_path / "copy")
    assert [f.status for f in ingest(files["a"], tmp_path / "copy", c, again=True).files] == ["ok"]
    assert sorted(p.name for p in (ds / "data").rglob("*.parquet")) == before  # the original untouched
    assert scan_dataset(ds).collect().height == scan_dataset(tmp_path / "copy").collect().height == 6
    assert len(list((tmp_path / "copy" / "data").rglob("*.parquet"))) == 1  # the copy's old part replaced


def _rsft(*args):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "rsft.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=env)


def test_the_hint_for_a_reexport_is_not_duplicate_rows_keep():
    """Trial 7: a corrected re-export (77 rows identical to ingested ones, 67 changed) was told to
    set duplicate_rows: keep — which admits the repeats and still rejects the corrections."""
    from rsft.ingest.unique import DUP_EARLIER
    from rsft.pipeline.targets import setting_for

    hint = setting_for(DUP_EARLIER, "sensors")
    assert "unique_conflicts" in hint and "duplicate_rows" not in hint, hint
    assert setting_for("duplicate row", "sensors") == "set ingest.sensors.duplicate_rows: keep"  # within one file
