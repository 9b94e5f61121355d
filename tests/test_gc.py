"""``rsft gc``: old nights' intermediates go, what a registered version needs stays (and says
why), tonight's incremental prefilter still reuses the kept pool afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.test_retrain_flow import small_config


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _night(cfg, raw: Path, night: int):
    from rsft import pipeline as stages
    from rsft.synth import write_synthetic

    write_synthetic(cfg.synth, raw, night=night)
    stages.ingest_stage(cfg)
    pre = stages.prefilter_stage(cfg)
    scored = stages.fit_scorer_stage(cfg, pre)
    stages.select_stage(cfg, pre, scored)
    return pre, Path(scored.run_dir)


def test_gc_keeps_lineage_and_recent_nights_and_removes_the_rest(tmp_path):
    from rsft.pipeline import gc
    from rsft.config import load_config
    from rsft.keptpool import manifest_files, scan_pool
    from rsft.pipeline import pipeline_root

    cfg = load_config(small_config(tmp_path))
    raw = tmp_path / "raw"
    (pre1, run1), (pre2, run2), (pre3, run3) = [_night(cfg, raw, n) for n in (1, 2, 3)]
    assert len({run1, run2, run3}) == 3 and len({pre1.output, pre2.output, pre3.output}) == 3
    root = pipeline_root(cfg)
    legacy = root / "prefiltered" / "0123456789abcdef.parquet"  # a whole-pool copy of an older rsft
    pl.DataFrame({"a": [1]}).write_parquet(legacy)
    lineage = [  # as rsft.tracking.lineage reads it from MLflow
        {"version": 1, "aliases": ["champion"], "run_id": "r1",
         "datasets": {"selected": str(run1 / "selected.parquet"), "pool-prefiltered": pre1.output}},
        {"version": 2, "aliases": [], "run_id": "r2",
         "datasets": {"selected": str(run2 / "selected.parquet"), "pool-prefiltered": pre2.output}},
    ]
    samples = Path(pre3.output).parent.parent / "samples"  # a seed's reservoir, an older one, an older layout's file
    samples.mkdir(exist_ok=True)
    for name in ("pool-3-aaaa.parquet", "pool-3-bbbb.parquet", "0123456789abcdef-3-2000.parquet"):
        pl.DataFrame({"a": [1]}).write_parquet(samples / name)
    (samples / "pool-3.json").write_text('{"cap": 2000, "file": "pool-3-bbbb.parquet", "files": []}')
    before = _files(root)
    dry = gc.collect(cfg, keep_nights=1, dry_run=True, lineage=lineage)
    assert _files(root) == before and dry.bytes_removed > 0  # a dry run removes nothing
    rep = gc.collect(cfg, keep_nights=1, lineage=lineage)
    assert [(i.path, i.why) for i in rep.removed] == [(i.path, i.why) for i in dry.removed]
    why = {i.path: i.why for i in rep.kept}
    removed = {i.path: i.why for i in rep.removed}
    # tonight's run whole; the champion's selection, scorer and report; v2's run (no alias) gone
    assert "newest 1 nights" in why[str(run3)] and (run3 / "chunks").is_dir()
    assert "lineage of v1 (champion)" in why[str(run1)]
    assert (run1 / "chunks").exists() is False  # (no report: these nights stop at the selection)
    assert sorted(p.name for p in run1.iterdir()) == ["scorer.pt", "selected.parquet"]
    assert pl.read_parquet(run1 / "selected.parquet").height > 0
    assert not run2.exists() and "no version holding an alias" in removed[str(run2)]
    # the kept pool: night 3's manifest (current) and night 1's (v1's lineage) with all their
    # day files; night 2's manifest (v2 holds no alias) and the day it alone listed (day 7,
    # recomputed on night 3 with its right context) gone
    assert "the current kept pool" in why[str(Path(pre3.output))] and "lineage of v1" in why[str(Path(pre1.output))]
    assert not Path(pre2.output).exists() and "no version with an alias" in removed[pre2.output]
    assert all(Path(f).exists() for f in manifest_files(pre1.output) + manifest_files(pre3.output))
    days_removed = [p for p in removed if "/days/" in p]
    assert len(days_removed) == 1 and "replaced since" in removed[days_removed[0]]
    assert scan_pool(pre1.output).collect().height == pre1.rows_out
    assert not legacy.exists() and "whole-pool copy" in removed[str(legacy)]
    assert sorted(p.name for p in samples.iterdir()) == ["pool-3-bbbb.parquet", "pool-3.json"]
    assert "superseded by tonight's reservoir" in removed[str(samples / "pool-3-aaaa.parquet")]
    # night 4 after gc: still incremental (the current pool's contexts were kept)
    pre4, _ = _night(cfg, raw, 4)
    assert 0 < pre4.days_computed <= 4 < pre4.days_total


def test_a_retention_run_right_after_another_removes_nothing_more(tmp_path):
    """(trial 10: `rsft gc --dry-run` right after a night's retention still found one old run
    folder) Four run folders written a minute apart, the oldest the champion's lineage, keep 2:
    the retention keeps the newest two, trims the champion's to its lineage files, removes the
    other; a second run (the night's, then `rsft gc`'s) finds nothing more to remove — trimming
    the champion's folder does not make it one of the newest nights."""
    import os
    import time

    from rsft.config import load_config
    from rsft.pipeline import gc, pipeline_root

    cfg = load_config(small_config(tmp_path))
    runs = pipeline_root(cfg) / "runs"
    t0 = time.time() - 3600
    dirs = []
    for k in range(4):
        d = runs / f"run{k}"
        (d / "chunks").mkdir(parents=True)
        for name in ("selected.parquet", "scorer.pt", "chunks/0.parquet"):
            (d / name).write_bytes(b"x")
        os.utime(d, (t0 + 60 * k, t0 + 60 * k))
        dirs.append(d)
    lineage = [{"version": 1, "aliases": ["champion"], "run_id": "r1",
                "datasets": {"4_selected": str(dirs[0] / "selected.parquet")}}]
    night = gc.collect(cfg, keep_nights=2, lineage=lineage, sweep=False, sizes=False, models=False)
    assert sorted(Path(i.path).name for i in night.removed) == ["chunks", "run1"]
    assert sorted(p.name for p in dirs[0].iterdir()) == ["scorer.pt", "selected.parquet"]
    again = gc.collect(cfg, keep_nights=2, lineage=lineage, dry_run=True, models=False)
    assert again.removed == [], again.removed
    assert dirs[0].stat().st_mtime == t0  # the trimmed folder keeps its night's time
    assert {Path(i.path).name for i in again.kept} == {"run0", "run2", "run3"}


@pytest.mark.slow
def test_gc_reads_the_registered_versions_lineage_from_mlflow(tmp_path):
    """Two real nights (LOCAL steps, MLflow in the state dir), then `rsft gc --keep-nights 1`:
    the first night's run is kept for v1's lineage (champion or previous-champion) with only its
    selection, scorer and report; the CLI says so; the summary reported the state dir's disk use."""
    from typer.testing import CliRunner

    from rsft import pipeline as stages
    from rsft.cli import app
    from rsft.config import load_config
    from rsft.pipeline.gc import registered_lineage
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    runs = []
    for night in (1, 2):
        write_synthetic(cfg.synth, tmp_path / "raw", night=night)
        # night 2 keeps one night: its own gc (state.gc_after_night) trims night 1 to v1's lineage
        out = stages.run_night(cfg if night == 1 else cfg.model_copy(
            update={"state": cfg.state.model_copy(update={"keep_nights": 1})}))
        assert out["state_disk"].split(" (")[0].endswith("MB") and "kept pool" in out["state_disk"]
        assert out["gc"].startswith("removed "), out["gc"]
        runs.append(out)
    assert runs[0]["gc"].startswith("removed 0 ") and not runs[1]["gc"].startswith("removed 0 "), runs
    lineage = {v["version"]: v for v in registered_lineage(cfg)}  # the versions holding an alias
    assert 1 in lineage and set(lineage) <= {1, 2}
    first = Path(lineage[1]["datasets"]["4_selected"]).parent
    assert lineage[1]["aliases"] and lineage[1]["datasets"]["3_kept"].endswith(".json")
    res = CliRunner().invoke(app, ["gc", "--config", str(cfg_path), "--keep-nights", "1"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "lineage of v1" in text and "never removed" in text
    import re  # (trial 6) the kept nights' folders, named by hash, say when they were written

    assert "written (UTC)" in text and re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d", text), text
    assert sorted(p.name for p in first.iterdir()) == ["report", "scorer.pt", "selected.parquet"]


def _pool_night(cfg, raw: Path, night: int):
    """Night ``night``'s exports, ingest and kept pool (what the kept pool's gc concerns)."""
    from rsft import pipeline as stages
    from rsft.synth import write_synthetic

    write_synthetic(cfg.synth, raw, night=night)
    stages.ingest_stage(cfg)
    return stages.prefilter_stage(cfg)


def test_the_nights_retention_finds_old_files_from_journals_as_a_sweep_does(tmp_path):
    """The night's retention (``sweep=False``: the journals of the manifests it removes) removes
    exactly what the sweep (every directory listed) removes, with a version pinning an old kept
    pool; the pinned pool and the current one stay whole."""
    from rsft.config import load_config
    from rsft.keptpool import journal_path, manifest_files, scan_pool
    from rsft.pipeline import gc, pipeline_root

    cfg = load_config(small_config(tmp_path))
    raw = tmp_path / "raw"
    pres = [_pool_night(cfg, raw, n) for n in range(1, 6)]
    assert len({p.output for p in pres}) == 5
    lineage = [{"version": 1, "aliases": ["champion"], "run_id": "r1", "datasets": {"3_kept": pres[1].output}}]
    root = pipeline_root(cfg)

    def removed(rep):
        return sorted((i.path, i.why) for i in rep.removed)

    before = _files(root)
    swept = gc.collect(cfg, keep_nights=1, lineage=lineage, dry_run=True)
    dry = gc.collect(cfg, keep_nights=1, lineage=lineage, dry_run=True, sweep=False)
    assert _files(root) == before and removed(dry) == removed(swept)
    night = gc.collect(cfg, keep_nights=1, lineage=lineage, sweep=False)
    assert removed(night) == removed(swept)
    assert any("/days/" in i.path for i in night.removed)
    pinned, current = Path(pres[1].output), Path(pres[-1].output)
    assert all(Path(f).exists() for f in manifest_files(pinned) + manifest_files(current))
    assert scan_pool(pinned).collect().height == pres[1].rows_out
    assert sorted(p.name for p in pinned.parent.iterdir()) == sorted([pinned.name, current.name])
    # the current pool's journal now names the pinned one (the nights between are gone)
    assert json.loads(journal_path(current.parent.parent, current.stem).read_text())["previous"] == pinned.stem
    # the next night, the pinned pool unpinned: the days only it listed go, and a sweep after
    # finds nothing more in the kept pool
    pre = _pool_night(cfg, raw, 6)
    assert 0 < pre.days_computed < pre.days_total
    rep = gc.collect(cfg, keep_nights=1, lineage=[], sweep=False)
    assert str(pinned) in {i.path for i in rep.removed} and any("/days/" in i.path for i in rep.removed)
    assert all(Path(f).exists() for f in manifest_files(pre.output))
    swept = gc.collect(cfg, keep_nights=1, lineage=[], dry_run=True)
    assert [i.path for i in swept.removed if "/prefiltered/" in i.path and "/samples/" not in i.path] == []


def test_the_nights_retention_reads_what_changed_not_the_history(tmp_path, monkeypatch):
    """The night's retention lists as many directories and reads as many files on a 22-day history
    as on a 6-day one (the sweep lists every day's directory and reads the kept manifests: 30 vs 14
    listings)."""
    import os as _os

    from rsft.config import load_config
    from rsft.pipeline import gc

    cfg = load_config(small_config(tmp_path))
    cfg = cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"days": 2})})
    raw = tmp_path / "raw"
    counts = {}
    real_scandir, real_listdir, real_read = _os.scandir, _os.listdir, Path.read_text
    calls: list[str] = []
    for night in range(1, 12):
        pre = _pool_night(cfg, raw, night)
        if night in (3, 11):
            calls.clear()
            monkeypatch.setattr(_os, "scandir", lambda p=".": (calls.append("dir"), real_scandir(p))[1])
            monkeypatch.setattr(_os, "listdir", lambda p=".": (calls.append("dir"), real_listdir(p))[1])
            monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (calls.append("read"), real_read(self, *a, **k))[1])
            rep = gc.collect(cfg, keep_nights=1, lineage=[], sweep=False, sizes=False)
            monkeypatch.undo()
            assert rep.removed
            counts[pre.days_total] = (calls.count("dir"), calls.count("read"))
        else:
            gc.collect(cfg, keep_nights=1, lineage=[], sweep=False, sizes=False)
    (short, c_short), (long_, c_long) = sorted(counts.items())
    assert long_ >= short + 8, counts
    assert c_long == c_short, counts
