"""A new file whose column sits where none of the files before it did (a unit change that stays
within the contract's min/max) is named in one warning line; gradual drift is not
(rsft.ingest.profile)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from rsft.config import ColumnContract, ContractConfig
from rsft.ingest import ingest
from rsft.ingest.profile import unlike_earlier

CONTRACT = ContractConfig(name="sensors", columns=[
    ColumnContract(name="machine_id", dtype="str"),
    ColumnContract(name="ts", dtype="timestamp"),
    ColumnContract(name="temp", dtype="float64", min=-60, max=200, unit="degF"),  # °C readings pass it too
    ColumnContract(name="load", dtype="float64", min=0, max=100),
], unique=["machine_id", "ts"])


def _day(path, day: int, temp_f_mid: float, celsius: bool = False, seed: int = 0, site: str = "M") -> None:
    """One day of hourly readings of 4 machines: temp around ``temp_f_mid`` °F (±10 over the day,
    noise sd 2), in °C when ``celsius``; load 40–60 (never shifted)."""
    rng = np.random.default_rng(seed + day)
    start = datetime(2026, 3, 1, tzinfo=timezone.utc) + timedelta(days=day)
    rows = []
    for m in range(4):
        for h in range(24):
            f = temp_f_mid + 10 * np.sin(2 * np.pi * h / 24) + rng.normal(0, 2)
            rows.append({"machine_id": f"{site}{m}", "ts": (start + timedelta(hours=h)).isoformat(),
                         "temp": round((f - 32) / 1.8 if celsius else f, 2), "load": round(float(rng.uniform(40, 60)), 2)})
    pl.DataFrame(rows).write_csv(path)


def _ingest(tmp_path, files):
    res = ingest([str(p) for p in files], tmp_path / "ds", CONTRACT)
    return [f.digest for f in res.files if f.status == "ok"]


def test_unit_change_named_drift_not(tmp_path):
    """Seed 0: 12 days drifting +1.5 °F a day (spring) pass unflagged — each day's median inside the
    range of the days before it; a 13th day exported in °C (median ≈ 24 where the °F days sat at
    66–88, all within the contract's −60…200) gets one line naming the column, its unit, the
    range and the conversion that puts it back; the untouched `load` column is never named."""
    src = tmp_path / "src"
    src.mkdir()
    drift = [src / f"day{d:02d}.csv" for d in range(12)]
    for d, p in enumerate(drift):
        _day(p, d, 60 + 1.5 * d)
    quiet = _ingest(tmp_path, drift)
    assert len(quiet) == 12
    assert unlike_earlier(tmp_path / "ds", CONTRACT, quiet) == []
    bad = src / "day12.csv"
    _day(bad, 12, 60 + 1.5 * 12, celsius=True)
    new = _ingest(tmp_path, [*drift, bad])
    assert len(new) == 1
    lines = unlike_earlier(tmp_path / "ds", CONTRACT, new)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("day12.csv: temp (degF) median 2") and "the 12 files before it" in line
    assert "°C → °F" in line and "unit change" in line and "load" not in line
    # the profiles are kept in the manifest entries (each file read once): every entry has one now
    entries = [json.loads(p.read_text()) for p in (tmp_path / "ds" / "_manifest").glob("*.json")]
    assert all("profile" in e and "ts_min" in e for e in entries)
    # 0 = off
    assert unlike_earlier(tmp_path / "ds", CONTRACT, new, references=0) == []


def test_unit_change_flagged_until_it_is_the_majority(tmp_path):
    """Seed 0: 14 °F days, then 6 °C days arriving one a night. The range of the files before is the
    k-th lowest 1 % / highest 99 % quantile (k = a quarter of them), so the first °C days among the
    references do not hide the next: days 1–3 of °C are named, later ones (by then ≥ k references
    are °C) are not — the new level is the past by then."""
    src = tmp_path / "src"
    src.mkdir()
    files = []
    named = []
    for d in range(20):
        p = src / f"day{d:02d}.csv"
        _day(p, d, 70, celsius=d >= 14)
        files.append(p)
        new = _ingest(tmp_path, files)
        if unlike_earlier(tmp_path / "ds", CONTRACT, new):
            named.append(d)
    assert named == [14, 15, 16]


def test_backfilled_file_judged_by_the_files_before_it_in_time(tmp_path):
    """A file ingested last but holding the earliest readings is compared with nothing before it
    (fewer than 3 references: not judged) — not with the later files ingested before it."""
    src = tmp_path / "src"
    src.mkdir()
    later = [src / f"day{d:02d}.csv" for d in range(5, 10)]
    for d, p in zip(range(5, 10), later):
        _day(p, d, 70)
    _ingest(tmp_path, later)
    early = src / "day00.csv"
    _day(early, 0, 70, celsius=True)  # odd, but nothing in time before it to say so
    new = _ingest(tmp_path, [*later, early])
    assert unlike_earlier(tmp_path / "ds", CONTRACT, new) == []


def test_rsft_ingest_warns_of_a_file_unlike_the_ones_before(tmp_path):
    """`rsft ingest` on the demo's synthetic days plus two more days whose vibration column s08
    (mm/s, contract 0–50) was exported in in/s — every value passes the contract — warns with one
    line naming the files and the column (seed: the demo config's synth seed)."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from rsft.config import load_config
    from rsft.synth import write_synthetic

    repo = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((repo / "examples" / "factory.yaml").read_text())
    data["synth"].update(machines=3, days=7, samples_per_day=200, target_sample_rows=100, target_holdout_rows=100)
    raw = tmp_path / "raw"
    data["data"] = {"pool": [str(raw / "pool")], "logs": [], "target_sample": str(raw / "target" / "sample.csv"),
                    "target_holdout": str(raw / "target" / "holdout.parquet")}
    data["state"]["dir"] = str(tmp_path / "state")
    cfg_path = tmp_path / "plant.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    write_synthetic(load_config(cfg_path).synth, raw, night=1)
    last = sorted((raw / "pool").glob("sensors_day*.csv"))[-1]
    day = pl.read_csv(last, infer_schema=False)
    ts = pl.col("ts").str.to_datetime(time_zone="UTC")
    for n, name in ((1, "z_next_day_in_per_s.csv"), (2, "z_two_days_in_per_s.csv")):  # the same export two days
        day.with_columns((ts + pl.duration(days=n)).dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("ts"),
                         (pl.col("s08").cast(pl.Float64) / 25.4).round(3).cast(pl.String)).write_csv(raw / "pool" / name)
    # and one whose vibration column s09 is ×100 on a fifth of its rows: those leave the range (0–50)
    first = pl.read_csv(sorted((raw / "pool").glob("sensors_day*.csv"))[0], infer_schema=False).with_row_index("i")
    first.with_columns(pl.when(pl.col("i") % 5 == 0).then((pl.col("s09").cast(pl.Float64) * 100).round(3).cast(pl.String))
                       .otherwise(pl.col("s09")).alias("s09")).drop("i").write_csv(raw / "pool" / "a_partly_in_percent.csv")
    out = subprocess.run([sys.executable, "-m", "rsft", "ingest", "--config", str(cfg_path)], capture_output=True,
                         text=True, cwd=repo, timeout=300)
    assert out.returncode == 0, out.stderr
    partly = [line for line in out.stderr.splitlines() if "a_partly_in_percent.csv" in line]
    assert len(partly) == 1 and " rows have s09 out of range [0.0, 50.0] — the other rows passed" in partly[0], out.stderr
    assert not [line for line in out.stderr.splitlines() if "sensors_day" in line], out.stderr  # the clean days: nothing
    warned = [line for line in out.stderr.splitlines() if "is outside the range of the" in line]
    assert len(warned) == 1, out.stderr  # (trial 10) the two files' alike lines as one
    assert warned[0].startswith("warning sensors: z_next_day_in_per_s.csv and 1 more file alike (z_two_days_in_per_s.csv): "
                                "s08 (mm/s) median "), warned
    assert "as in/s → mm/s it would be" in warned[0], warned


def test_a_file_no_night_judged_is_judged_by_the_next(tmp_path):
    """A file ingested without a comparison after it (a night that failed after its ingest, `rsft
    adapt --config`'s ingest) is judged by the next comparison, though it is not among that run's new
    files — and only once."""
    src = tmp_path / "src"
    src.mkdir()
    files = [src / f"day{d:02d}.csv" for d in range(6)]
    for d, p in enumerate(files):
        _day(p, d, 70, celsius=d == 5)
    _ingest(tmp_path, files)  # nothing compared them
    entries = [json.loads(p.read_text()) for p in (tmp_path / "ds" / "_manifest").glob("*.json")]
    assert [e["compared"] for e in entries] == [False] * 6
    lines = unlike_earlier(tmp_path / "ds", CONTRACT, [])
    assert len(lines) == 1 and lines[0].startswith("day05.csv: temp (degF)"), lines
    assert unlike_earlier(tmp_path / "ds", CONTRACT, []) == []  # said once
    entries = [json.loads(p.read_text()) for p in (tmp_path / "ds" / "_manifest").glob("*.json")]
    assert [e["compared"] for e in entries] == [True] * 6


def test_a_site_is_judged_by_its_own_files(tmp_path):
    """Per-site exports (seed 0): a hall's files (around 70 °F) from day 0, a cold store's (around
    5 °F) from day 6 — its first files are not judged by the hall's (each file is compared with its
    own site's files: the contract's unique key's text column, machine_id, tells which); the cold
    store's day 11 in °C (around −15) is named, its references the cold store's 5 files before it."""
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for d in range(12):
        hall = src / f"hall{d:02d}.csv"
        _day(hall, d, 70, site="H")
        files.append(hall)
        if d >= 6:
            cold = src / f"cold{d:02d}.csv"
            _day(cold, d, 5, site="C", celsius=d == 11)
            files.append(cold)
    new = _ingest(tmp_path, files)
    lines = unlike_earlier(tmp_path / "ds", CONTRACT, new)
    assert len(lines) == 1 and lines[0].startswith("cold11.csv: temp (degF) median -1"), lines
    assert "the 5 files before it" in lines[0] and "°C → °F" in lines[0]


def test_a_jump_away_from_the_recent_files_inside_the_years_range(tmp_path):
    """Monthly files of a °C column over a seasonal cycle (seed 0; medians from −2 to 22 °C, ±10 in
    a file): the winter file exported in °F (median ≈ 31) lies inside the range of the year of files
    before it (summer reached 33 °C) but far outside the 3 files just before it and ~7× the usual
    step between files from the last one — named, with °F → °C; the 13 months before are not."""
    import math

    contract = CONTRACT.model_copy(update={"columns": [
        c.model_copy(update={"unit": "degC"}) if c.name == "temp" else c for c in CONTRACT.columns]})
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for m in range(14):
        mid = 10 + 12 * math.cos(2 * math.pi * (m - 6) / 12)
        p = src / f"month{m:02d}.csv"
        _day(p, m * 30, mid * 1.8 + 32 if m == 13 else mid)
        files.append(p)
    res = ingest([str(p) for p in files], tmp_path / "ds", contract)
    lines = unlike_earlier(tmp_path / "ds", contract, [f.digest for f in res.files])
    assert len(lines) == 1 and lines[0].startswith("month13.csv: temp (degC) median 3"), lines
    assert "outside the range of the 3 files just before it" in lines[0] and "as °F → °C" in lines[0], lines


def test_weather_just_outside_the_range_is_not_named(tmp_path):
    """Trial 9 (real weather, daily files: 72 lines in 54 nights): seed 0, 14 days whose mid
    temperature cycles 50–70 °F, then a cold day at 34 °F — its median is below the range of the
    days before it (the old rule named it), but by less than FAR of the range's width and no
    conversion puts it back: a cold front, not named. The same day 40 °F colder is (far)."""
    from rsft.ingest.profile import FAR, _outside

    src = tmp_path / "src"
    src.mkdir()
    files = []
    for d in range(14):
        p = src / f"day{d:02d}.csv"
        _day(p, d, 60 + 10 * np.sin(d))
        files.append(p)
    _ingest(tmp_path, files)
    cold = src / "day14.csv"
    _day(cold, 14, 34)
    new = _ingest(tmp_path, [*files, cold])
    assert unlike_earlier(tmp_path / "ds", CONTRACT, new, mark=False) == []
    entries = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in (tmp_path / "ds" / "_manifest").glob("*.json")}
    ref = [entries[f"day{d:02d}.csv"]["profile"]["columns"]["temp"] for d in range(13, -1, -1)]
    why, far = _outside(entries["day14.csv"]["profile"]["columns"]["temp"]["q50"], ref)
    assert why.startswith("outside the range of the 14 files before it") and not far and FAR == 0.5
    colder = src / "day15.csv"
    _day(colder, 15, -6)
    lines = unlike_earlier(tmp_path / "ds", CONTRACT, _ingest(tmp_path, [*files, cold, colder]))
    assert len(lines) == 1 and lines[0].startswith("day15.csv: temp (degF) median"), lines


def test_a_counter_column_is_not_named_every_day(tmp_path):
    """Review: a column that only rises (run hours) leaves every earlier file's range by design —
    not named; the same counter exported ×1000 one day (a jump, not a step) still is."""
    src = tmp_path / "src"
    src.mkdir()
    contract = CONTRACT.model_copy(update={"columns": [*CONTRACT.columns,
                                                       ColumnContract(name="run_hours", dtype="float64", min=0, max=1e9)]})
    files = []
    for d in range(10):
        p = src / f"day{d:02d}.csv"
        _day(p, d, 70)
        df = pl.read_csv(p)
        hours = 1000 + 24 * d + pl.int_range(pl.len()).cast(pl.Float64) % 24
        df.with_columns(run_hours=hours * (1000 if d == 9 else 1)).write_csv(p)
        files.append(p)
    res = ingest([str(p) for p in files], tmp_path / "ds", contract)
    lines = unlike_earlier(tmp_path / "ds", contract, [f.digest for f in res.files])
    assert len(lines) == 1 and lines[0].startswith("day09.csv: run_hours median "), lines


def test_marks_survive_a_reingest_and_a_failing_check_is_one_line(tmp_path):
    """Review: `--again` rewrote every entry as unjudged and unreported (the next night re-said the
    whole history); a summary check that raises (after the night's decision) is one line, not a
    failed night."""
    from rsft.pipeline.summary import warned

    src = tmp_path / "src"
    src.mkdir()
    files = [src / f"day{d:02d}.csv" for d in range(4)]
    for d, p in enumerate(files):
        _day(p, d, 70)
    new = _ingest(tmp_path, files)
    unlike_earlier(tmp_path / "ds", CONTRACT, new)  # judged: compared true
    first = {p.stem: json.loads(p.read_text())["ingested_at"] for p in (tmp_path / "ds" / "_manifest").glob("*.json")}
    ingest([str(p) for p in files], tmp_path / "ds", CONTRACT, again=True)
    entries = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "ds" / "_manifest").glob("*.json")}
    assert all(e["ingested_at"] > first[d] for d, e in entries.items())  # ingested again, not skipped
    assert [e["compared"] for e in entries.values()] == [True] * 4

    def broken(*a):
        raise FileNotFoundError("part-x.parquet")

    assert warned(broken, 1, what="the check") == ["the check skipped: FileNotFoundError: part-x.parquet"]
