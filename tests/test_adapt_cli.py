"""`rsft adapt` on plain files, and a retrain whose recipe is chosen by the search (nested MLflow runs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.test_retrain_flow import small_config

REPO = Path(__file__).resolve().parents[1]


def registry_recipe(cfg, out) -> str:
    from rsft import pipeline as stages
    from rsft.tracking import registry

    mlc = registry.client(stages.tracking_uri(cfg))
    return mlc.get_model_version(cfg.promotion.model_name, str(out["model_version"])).tags["rsft.recipe"]


def test_rsft_adapt_on_csv_files(tmp_path):
    from rsft.config import SynthConfig
    from rsft.synth import generate_day, generate_target

    cfg = SynthConfig(seed=2, machines=4, days=4, samples_per_day=300)
    pool = pl.concat([generate_day(cfg, d)[0] for d in range(cfg.days)]).with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    pool.write_csv(tmp_path / "pool.csv")
    generate_target(cfg, 1, 160, 0).write_csv(tmp_path / "target.csv")
    generate_target(cfg, 1, 300, 1).write_parquet(tmp_path / "holdout.parquet")
    def run(json_name: str):
        return subprocess.run(
            [sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "pool.csv"), "--target-sample",
             str(tmp_path / "target.csv"), "--label", "quality", "--holdout", str(tmp_path / "holdout.parquet"),
             "--group-by", "machine_id", "--folds", "3", "--epochs", "8", "--max-steps", "400",
             "--strategies", "keep_champion,recalibrate,sample_only,random_mix,rsft", "--json-out", str(tmp_path / json_name),
             "--plot", str(tmp_path / "candidates.png"), "--pool-rows", "1500"],
            capture_output=True, text=True, cwd=REPO, timeout=600,
        )

    out = run("r.json")
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    # the same --seed, the same report (the warm start's initial weights are seeded too)
    assert run("again.json").returncode == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert [c["fold_losses"] for c in again["candidates"]] == [c["fold_losses"] for c in rep["candidates"]]
    assert [c["name"] for c in rep["candidates"]] == ["keep_champion", "recalibrate", "sample_only", "random_mix", "rsft β=1 q=0.99"]
    assert rep["chosen"] in out.stdout and all("holdout_rmse" in c for c in rep["candidates"])
    # the retrain's candidate records too: an eliminated candidate has no cv_rmse (trial 7)
    recs = {r["candidate"]: r for r in rep["adapt_candidates"]}
    assert list(recs) == [c["name"] for c in rep["candidates"]]
    assert all(recs[n]["cv_rmse"] is None and recs[n]["rung0_rmse"] is not None for n in rep["halving"]["eliminated"])
    assert rep["folds"] == 3 and rep["groups"] == 4
    # the pool is read in one streaming pass and sampled down to --pool-rows complete rows
    assert rep["pool_rows_sampled"] == 1500 and rep["pool_rows_complete"] > 4000
    assert f"pool sample 1,500 of {rep['pool_rows_complete']:,} complete rows" in " ".join(out.stdout.split())
    assert (tmp_path / "candidates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # as in the retrain: rung 0 ranks at a quarter of the budget (--max-steps 400 → 100; --epochs 8
    # → 2, at least 2), the survivor re-runs every fold at the full budget
    assert rep["cv_epochs"] == 2 and rep["full_epochs"] == 8 and rep["cv_steps"] == 100 and rep["full_steps"] == 400
    # the warm start: 8 passes over the 1,275 pool rows outside its validation split, 5 batches each
    # (--epochs bounds it before --max-steps does), and its best validation loss
    assert rep["warm_start"]["steps"] == 40 and 0 < rep["warm_start"]["best_val_loss"] < float("inf")
    survivor = next(c for c in rep["candidates"] if c["name"] in rep["halving"]["kept"])
    assert len(survivor["short_losses"]) == 1 and len(survivor["fold_losses"]) == 3
    # the printed table: → marks the choice; how each CV figure was obtained
    from rsft.adapt import candidate_table

    rows = {r["candidate"].removeprefix("→ "): r for r in candidate_table(rep)}
    assert rows[rep["chosen"]]["candidate"] == "→ " + rep["chosen"]
    assert rows["keep_champion"]["cv_fits"] == "3 folds" and rows[survivor["name"]]["cv_fits"] == "3×≤400 steps, ≤8 ep"
    assert all(rows[n]["cv_fits"] == "1×≤100 steps, ≤2 ep, dropped after it" for n in rep["halving"]["eliminated"])
    assert all(rows[n]["cv_rmse"] == "dropped" for n in rep["halving"]["eliminated"])
    assert rows[survivor["name"]]["cv_rmse"][0].isdigit()
    # each candidate's figure in rung 0 beside its final one: the survivor's short fit too
    assert rows[survivor["name"]]["rung0_rmse"] == f"{survivor['short_losses'][0]:#.4g}"
    table = " ".join(out.stdout.split())
    assert "rung 0" in table and rows[survivor["name"]]["rung0_rmse"] in table


def _halving_report():
    """A search report after successive halving on 3 folds (rung 0: fold 0, short fits): the
    training-free keep_champion on every fold, sample_only re-run at the full budget (its rung-0
    loss kept as short_losses), rsft eliminated after rung 0, random_mix skipped by the budget."""
    def cand(name, losses, folds, short=(), eliminated="", skipped="", holdout=1.0):
        n = len(losses)
        return {"name": name, "strategy": name.split()[0], "fold_losses": list(losses), "folds": list(folds),
                "short_losses": list(short), "eliminated": eliminated, "skipped": skipped,
                "cv_loss_mean": sum(losses) / n if n else float("inf"),
                "cv_loss_se": 0.01 if n > 1 else 0.0, "pool_rows_mean": 120.0 if n else 0.0, "seconds": 0.5,
                "holdout_rmse": holdout}
    return {"chosen": "sample_only", "halving": {"rung0_folds": 1, "kept": ["sample_only"]},
            "cv_steps": 100, "full_steps": 400, "cv_epochs": None, "full_epochs": None,
            "candidates": [cand("keep_champion", [1.5, 1.7, 1.6], [0, 1, 2]),
                           cand("sample_only", [1.1, 1.3, 1.2], [0, 1, 2], short=[1.4]),
                           cand("rsft β=1 q=0.99", [1.45], [0], eliminated="rung 0: …"),
                           cand("random_mix", [], [], skipped="time budget")]}


def test_candidate_records_are_numbers_and_the_table_shows_rung_0():
    """The retrain summary's ``adapt_candidates`` (its --json-out) carries numbers — the table's
    strings are for people; the table shows every candidate's rung-0 figure beside its CV one."""
    import json as _json

    from rsft.adapt import candidate_records, candidate_rows, candidate_table

    report = _halving_report()
    recs = {r["candidate"]: r for r in candidate_records(report)}
    assert recs["sample_only"] == {
        "candidate": "sample_only", "chosen": True, "cv_rmse": pytest.approx(1.2), "cv_rmse_se": 0.01, "cv_folds": 3,
        "rung0_rmse": 1.4, "rung0_folds": 1, "eliminated": False, "skipped": None, "cv_fits": "3×≤400 steps",
        "pool_rows": 120, "seconds": 0.5, "holdout_rmse": 1.0}
    assert recs["keep_champion"]["rung0_rmse"] == 1.5 and recs["keep_champion"]["rung0_folds"] == 1
    assert recs["rsft β=1 q=0.99"]["rung0_rmse"] == 1.45 and recs["rsft β=1 q=0.99"]["eliminated"] is True
    # (trial 7) no CV figure for an eliminated one: its short rung-0 fits can read lower than the chosen's
    assert recs["rsft β=1 q=0.99"]["cv_rmse"] is None and recs["rsft β=1 q=0.99"]["cv_rmse_se"] is None
    assert recs["random_mix"]["cv_rmse"] is None and recs["random_mix"]["rung0_rmse"] is None
    for r in recs.values():  # numbers stay numbers through JSON (no "1.200±0.01" strings, no Infinity)
        back = _json.loads(_json.dumps(r, allow_nan=False))
        assert all(isinstance(back[k], (int, float)) or back[k] is None
                   for k in ("cv_rmse", "cv_rmse_se", "rung0_rmse", "pool_rows", "seconds", "holdout_rmse"))
    rows = {r["candidate"].removeprefix("→ "): r for r in candidate_rows(candidate_records(report))}
    assert rows == {r["candidate"].removeprefix("→ "): r for r in candidate_table(report)}
    assert list(rows["sample_only"]) == ["candidate", "rung0_rmse", "cv_rmse", "cv_fits", "pool_rows", "seconds",
                                         "holdout_rmse"]
    assert rows["sample_only"]["candidate"] == "→ sample_only"
    assert (rows["sample_only"]["rung0_rmse"], rows["sample_only"]["cv_rmse"]) == ("1.400", "1.200±0.010")
    from rsft.adapt.table import _se2  # trial 11: "1.967±1" beside "2.119±1.1"

    assert [_se2(v) for v in (1.0, 1.1, 0.01, 12.0, 0.000123)] == ["1.0", "1.1", "0.010", "12", "0.00012"]
    assert (rows["rsft β=1 q=0.99"]["rung0_rmse"], rows["rsft β=1 q=0.99"]["cv_rmse"]) == ("1.450", "dropped")
    assert (rows["random_mix"]["rung0_rmse"], rows["random_mix"]["cv_rmse"]) == ("—", "skipped")
    no_halving = {**report, "halving": None}
    assert "rung0_rmse" not in candidate_records(no_halving)[0] and "rung0_rmse" not in candidate_table(no_halving)[0]


def test_retrain_prints_the_summarys_candidate_records_as_the_table(monkeypatch, tmp_path):
    """`rsft retrain` formats the summary's numeric candidates for its table and writes them to
    --json-out as numbers."""
    import json as _json

    from typer.testing import CliRunner

    import flows.retrain
    from rsft.cli import app, night
    from rsft.adapt import candidate_records
    from rsft.config import load_config

    summary = {"recipe": "sample_only", "search_cv": "grouped, 3 folds over 4 groups", "mlflow_ui": "mlflow ui",
               "adapt_candidates": candidate_records(_halving_report()), "model_version": 2}
    monkeypatch.setattr(flows.retrain, "retrain", lambda **kw: summary)
    monkeypatch.setattr(night, "load_pipeline", lambda config, sets=None: load_config(config))  # no state dir to set up
    res = CliRunner().invoke(app, ["retrain", "--config", str(REPO / "examples" / "factory.yaml"),
                                       "--json-out", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "rung 0" in said and "1.200±0.010" in said and "1.450 │ dropped" in said and "→ sample_only" in said
    assert _json.loads((tmp_path / "s.json").read_text())["adapt_candidates"][1]["cv_rmse"] == pytest.approx(1.2)


def test_rsft_adapt_leaves_id_like_columns_out_of_the_default_features(tmp_path, capsys):
    """A plant's export: an integer batch number, *_id / id columns and a row
    number are identifiers, not measurements — the default features leave them out and one line
    says which and why; named in --features they are used."""
    from rsft.cli.adapt import _adapt_columns

    n = 150
    df = pl.DataFrame({
        "id": list(range(n)), "row": [1000 + 7 * i for i in range(n)],  # all distinct integers
        "year": [2013] * n, "month": [1 + i % 12 for i in range(n)], "dep_time": [500 + (i * 37) % 100 for i in range(n)],
        "batch_no": [1 + i % 40 for i in range(n)], "carrier_id": [float(i % 9) for i in range(n)],
        "dep_delay": [0.5 * (i % 17) for i in range(n)], "distance": [200 + (i * 13) % 120 for i in range(n)],
        "reynolds_number": [1e5 + i for i in range(n)],  # a float measurement, whatever its name says
        "arr_delay": [0.1 * ((i * 37) % n) for i in range(n)],  # not a linear function of a feature (a label copy)
    })
    df.write_csv(tmp_path / "export.csv")
    path = str(tmp_path / "export.csv")
    _, cols, _ = _adapt_columns(path, path, "arr_delay", None, None)
    assert cols == ["year", "month", "dep_time", "dep_delay", "distance", "reynolds_number"]
    said = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert said == ["features: left out ID-like id (named like an ID), row (integers, all 150 distinct), "
                    "batch_no (named like an ID), carrier_id (named like an ID) — name them in --features to use them"]
    _, cols, _ = _adapt_columns(path, path, "arr_delay", None, "batch_no,distance")
    assert cols == ["batch_no", "distance"] and not capsys.readouterr().out.strip()


def test_rsft_adapt_leaves_a_mostly_missing_column_out_of_the_default_features(tmp_path, capsys):
    """(trial 6) wind_gust, missing in 80 % of the rows, was a default feature: every row without it
    was dropped (95 of 300 target rows left), silently. Missing in most labelled target rows: left
    out, in one line; named in --features it is used."""
    from rsft.cli.adapt import _adapt_columns

    n = 100
    df = pl.DataFrame({"temp": [float(i) for i in range(n)], "wind_gust": [float(i) if i % 5 == 0 else None for i in range(n)],
                       "pressure": [float("nan") if i % 10 == 0 else 1000.0 + i for i in range(n)],
                       "dewp": [0.5 * ((i * 37) % n) for i in range(n)]})  # not a copy of temp (a label copy)
    df.write_csv(tmp_path / "export.csv")
    path = str(tmp_path / "export.csv")
    _, cols, _ = _adapt_columns(path, path, "dewp", None, None)
    assert cols == ["temp", "pressure"]  # pressure: 10 % NaN stays a feature
    said = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert said == ["features: left out mostly missing wind_gust (80 of 100 target rows) — name them in --features to use "
                    "them (rows missing a feature are dropped)"]
    _, cols, _ = _adapt_columns(path, path, "dewp", None, "temp,wind_gust")
    assert cols == ["temp", "wind_gust"]


def test_rsft_adapt_leaves_a_copy_of_the_label_out_of_the_default_features(tmp_path, capsys):
    """(trial 7) ac_w beside the label ac_pu = ac_w / 3400 was a default feature: CV RMSE 0.0089,
    no word. A column (nearly) a linear function of the label on the labelled target rows is left
    out in one line naming it; named in --features it stays, with a warning line."""
    from rsft.cli.adapt import _adapt_columns

    n = 120
    ghi = [float((i * 37) % 100) for i in range(n)]
    ac_w = [30.0 * g + (i * 53) % 400 for i, g in enumerate(ghi)]  # a cause of the label, plus noise
    df = pl.DataFrame({"ghi": ghi, "temp_air": [float(i % 30) for i in range(n)], "ac_w": ac_w,
                       "ac_pu": [w / 3400 for w in ac_w],
                       "neg": [-2.0 * w + 1e-9 * (i % 3) for i, w in enumerate(ac_w)]})  # negated, rounding noise
    df.write_csv(tmp_path / "export.csv")
    path = str(tmp_path / "export.csv")
    _, cols, _ = _adapt_columns(path, path, "ac_pu", None, None)
    assert cols == ["ghi", "temp_air"]
    said = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("features: left out ac_w (|r| 1.0000 with the label ac_pu over 120 "
                                                 "target rows), neg (|r| 1.0000 ") and "a copy of the label" in said[0]
    _, cols, _ = _adapt_columns(path, path, "ac_pu", None, "ghi,ac_w")
    assert cols == ["ghi", "ac_w"]
    out = capsys.readouterr()
    warned = [line for line in out.err.splitlines() if line.strip()]
    assert len(warned) == 1 and "warning --features ac_w: |r| 1.0000 with the label ac_pu" in warned[0], out
    # a feature that explains most of the label, not all of it, stays
    _, cols, _ = _adapt_columns(path, path, "ac_w", None, None)
    assert "ghi" in cols


def test_rsft_adapt_errors_are_one_line(tmp_path):
    # 16 rows: 8 time blocks, enough for the default 4 folds (checked before the pool is read)
    pl.DataFrame({"a": [1.0, 2.0] * 8, "y": [1.0, 3.0, 2.0, 5.0] * 4}).write_csv(tmp_path / "t.csv")  # a is no copy of y
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "t.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "nope"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "no column 'nope'" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "t.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "yy"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "did you mean 'y'?" in out.stderr
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "t.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "y", "--strategies", "rsft,magic"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "unknown magic" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.csv").write_text("a,y\n" + "1.0,2.0\n" * 20 + "oops,3.0\n")  # a text value past the inferred rows
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "bad.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "y"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "pool: not numeric: a (String, in bad.csv)" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "t.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "y", "--features", "a, y"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "--features: y is the label or --group-by column" in out.stderr
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "t.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "y", "--plot", str(tmp_path / "no" / "p.png")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "--plot" in out.stderr and "does not exist" in out.stderr
    (tmp_path / "late.csv").write_text("a,y\n" + "1.0,2.0\n" * 10_001 + "oops,3.0\n")  # past the inferred rows
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "late.csv"), "--target-sample",
                          str(tmp_path / "t.csv"), "--label", "y"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "late.csv" in out.stderr and "Traceback" not in out.stderr
    for extra, said in ((["--model", "banana"], "--model must be mlp or autoencoder"),
                        (["--cv", "sideways"], "--cv must be auto, grouped or forward"),
                        (["--model", "autoencoder", "--champion", str(tmp_path / "m.pt")], "with --champion the champion is")):
        out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "t.csv"), "--target-sample",
                              str(tmp_path / "t.csv"), "--label", "y", *extra], capture_output=True, text=True, cwd=REPO,
                             timeout=120)
        assert out.returncode == 2 and said in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    for opt in ("--pool", "--target-sample", "--label", "--holdout", "--group-by", "--json-out", "--pool-rows", "--scorer",
                "--cv", "--model"):
        assert opt in out.stdout


def test_rsft_adapt_unreadable_pool_files_are_one_line(tmp_path):
    """A pool file cut short, empty, with a broken Parquet footer or another delimiter: one line
    naming the file and what is wrong (it was a traceback for the pool, one line for the target)."""
    import gzip

    pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 4, "y": [1.0, 2.0, 3.0, 4.0] * 4}).write_csv(tmp_path / "t.csv")  # 8 time blocks
    body = gzip.compress(("a,y\n" + "1.0,2.0\n" * 5000).encode())
    (tmp_path / "cut.csv.gz").write_bytes(body[: len(body) // 2])
    (tmp_path / "empty.csv").write_text("")
    pl.DataFrame({"a": [1.0] * 100, "y": [2.0] * 100}).write_parquet(tmp_path / "p.parquet")
    (tmp_path / "broken.parquet").write_bytes((tmp_path / "p.parquet").read_bytes()[:-20])
    (tmp_path / "semi.csv").write_text("a;y\n1.0;2.0\n")
    for name, said in (("cut.csv.gz", "truncated or corrupt gzip stream"), ("empty.csv", "empty.csv"),
                       ("broken.parquet", "broken.parquet"), ("semi.csv", "looks ';'-delimited")):
        out = subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / name), "--target-sample",
                              str(tmp_path / "t.csv"), "--label", "y"], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr, (name, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (name, out.stderr)


@pytest.mark.slow
def test_retrain_with_adapt_logs_nested_candidates(tmp_path, prefect_harness):
    """The Prefect retrain with the search on: CV units run as task runs inside the fine-tune task,
    every candidate is a nested MLflow run, the plot is logged, the table is a Prefect artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.retrain import retrain
    from rsft import pipeline as stages
    from rsft.tracking import registry
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    overrides = {
        "adapt.enabled": True, "adapt.epochs": 2, "adapt.folds": 3, "adapt.group_by": "machine_id",
        "adapt.strategies": ["keep_champion", "recalibrate", "sample_only", "rsft"],
    }
    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path, overrides)
    write_synthetic(cfg.synth, tmp_path / "raw")
    from datetime import datetime, timezone

    t0 = datetime.now(timezone.utc)
    state = retrain(config_path=str(cfg_path), overrides=overrides, return_state=True)
    out, night_id = state.result(), state.state_details.flow_run_id
    names = ["keep_champion", "recalibrate", "sample_only", "rsft β=1 q=0.99"]
    assert out["recipe"] in names
    assert len(out["adapt_candidates"]) == 4
    # the summary's (--json-out's) candidates carry numbers, not the table's display strings
    rec = next(c for c in out["adapt_candidates"] if c["candidate"] == "keep_champion")
    assert isinstance(rec["cv_rmse"], float) and isinstance(rec["pool_rows"], int) and rec["cv_folds"] == 3
    # first night, no champion: even keep_champion (the base model) is registered; the version records
    # its recipe — keep_champion's as the base model it is (trial 11's v1 read "keep_champion")
    assert registry_recipe(cfg, out) == (out["recipe"] if out["recipe"] != "keep_champion"
                                         else "base model (the search kept it: no champion yet)")
    mlc = registry.client(stages.tracking_uri(cfg))
    kids = mlc.search_runs([mlc.get_run(out["mlflow_run"]).info.experiment_id],
                           filter_string=f"tags.mlflow.parentRunId = '{out['mlflow_run']}'")
    assert sorted(r.data.tags["rsft.candidate"] for r in kids) == sorted(names)
    assert "adapt/candidates.png" in [a.path for a in mlc.list_artifacts(out["mlflow_run"], "adapt")]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["adapt-candidates"])))
        assert arts and any("chose" in (a.description or "") for a in arts)
        # the night's report, candidates and decision sit on the nightly run itself, the decision
        # linking the MLflow run; rsft's own log records reach the runs' logs
        from prefect.client.schemas.filters import ArtifactFilterFlowRunId, LogFilter, LogFilterTimestamp

        on_night = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[night_id])))}
        assert {"selection-report", "promotion-decision", "adapt-candidates", "retrain-summary"} <= set(on_night)
        assert f"/runs/{out['mlflow_run']}" in on_night["promotion-decision"].data
        assert f"/runs/{out['mlflow_run']}" in on_night["retrain-summary"].data
        assert "Coverage per machine_id" in on_night["selection-report"].data
        logs = client.read_logs(log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=t0)), limit=200)
    assert any(rec.name.startswith("rsft.") for rec in logs), sorted({rec.name for rec in logs})


@pytest.mark.slow
def test_retrain_trains_an_rsft_choice_on_the_sampling_stages_selection(tmp_path, prefect_harness):
    """When the search picks rsft at β = 1 (the sampling stage's recipe), the final model is not
    trained on the search's pool sample but on the sampling stage's selection from the whole pool:
    the same rows and fit as a retrain without the search, so the same challenger."""
    import shutil

    from flows.retrain import retrain
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    write_synthetic(load_config(cfg_path).synth, tmp_path / "raw")
    plain_path = tmp_path / "plain.yaml"  # the same pipeline in its own state dir
    shutil.copy(cfg_path, plain_path)
    plain_over = {"state.dir": str(tmp_path / "state-plain")}
    plain = retrain(config_path=str(plain_path), overrides=plain_over)
    over = {"adapt.enabled": True, "adapt.epochs": 2, "adapt.folds": 3, "adapt.group_by": "machine_id",
            "adapt.strategies": ["rsft"], "adapt.target_shares": [2.0], "adapt.pool_rows": 1000}  # = train.target_weight
    out = retrain(config_path=str(cfg_path), overrides=over)
    assert out["recipe"] == "rsft β=1 q=0.99"
    assert "sampling stage's selection" in out["recipe_trained_on"]
    assert out["rows_selected"] == plain["rows_selected"] and out["train_rows"] == plain["train_rows"]
    assert out["adapt_candidates"][0]["pool_rows"] < (out["train_rows"] - 2 * 200) / 3  # CV drew from the 1,000-row sample
    assert out["challenger_rmse"] == plain["challenger_rmse"]


def test_rsft_adapt_reads_a_directory_of_mixed_csv_and_parquet_exports(tmp_path):
    """`--pool <dir>`: every CSV and Parquet file under it (a plant's daily exports alternate),
    dot-files skipped; numbers typed differently per file still count as numeric."""
    from rsft.tables import sample_table as _pool_sample, table_schema as _table_schema

    d = tmp_path / "pool"
    (d / "sub").mkdir(parents=True)
    pl.DataFrame({"a": [1, 2, 3], "y": [0.5, None, 1.5]}).write_csv(d / "day0.csv")  # a: int in this file
    pl.DataFrame({"a": [4.0, 5.0], "y": [2.0, 3.0], "extra": ["x", "y"]}).write_parquet(d / "sub" / "day1.parquet")
    pl.DataFrame({"a": [9.0], "y": [9.0]}).write_parquet(d / ".staging.parquet")  # not an export
    schema = _table_schema(str(d))
    assert schema["a"].is_numeric() and schema["y"].is_numeric() and not schema["extra"].is_numeric()
    (d / "day2.csv").write_text("a,y\n,1.0\n,2.0\n")  # a: no value at all (reads as text) — still numbers
    assert _table_schema(str(d))["a"].is_numeric()
    df, total = _pool_sample(str(d), ["a", "y"], 100, 0)
    assert total == 4  # its rows lack a: not complete
    (d / "day2.csv").unlink()
    df, total = _pool_sample(str(d), ["a", "y"], 100, 0)
    assert total == 4 and sorted(df["a"].to_list()) == [1.0, 3.0, 4.0, 5.0]
    df, total = _pool_sample(str(d), ["a", "y"], 2, 0)
    assert total == 4 and df.height == 2


def test_pool_sample_hashes_row_numbers_not_contents(tmp_path):
    """Repeated rows are sampled independently (a content hash kept or dropped all copies of a row:
    a pool of few distinct rows came back as one row repeated, or empty); the sample is never short."""
    from rsft.tables import sample_table as _pool_sample

    base = pl.DataFrame({"a": [float(i % 10) for i in range(30)], "y": [float(i % 3) for i in range(30)]})
    pl.concat([base] * 400).write_parquet(tmp_path / "rep.parquet")  # 12,000 rows, 30 distinct
    for seed in range(3):
        df, total = _pool_sample(str(tmp_path / "rep.parquet"), ["a", "y"], 1000, seed)
        assert total == 12_000 and df.height == 1000 and df.unique().height == 30
        assert df.equals(_pool_sample(str(tmp_path / "rep.parquet"), ["a", "y"], 1000, seed)[0])  # deterministic
    assert all(_pool_sample(str(tmp_path / "rep.parquet"), ["a", "y"], 100, s)[0].height == 100 for s in range(20))


def test_retrain_checks_the_adapt_folds_before_touching_the_pool(tmp_path):
    """More folds than the target sample's groups (or a missing group column) fail right after
    ingest, in one line, not after prefilter, scoring and sampling."""
    from rsft import pipeline as stages
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path, {"adapt.enabled": True, "adapt.group_by": "machine_id", "adapt.folds": 5})
    write_synthetic(cfg.synth, tmp_path / "raw")
    stages.check_ingested(cfg, stages.ingest_stage(cfg))
    with pytest.raises(ValueError, match=r"^adapt.folds=5 but the target sample has only 4 groups of machine_id; use "
                                         r"adapt.folds=4 or fewer \(each CV fold then trains on about [0-9]+ of the [0-9]+ target rows\)$"):
        stages.check_adapt(cfg)
    with pytest.raises(ValueError, match="adapt.group_by: the target sample has no column 'line'"):
        stages.check_adapt(load_config(cfg_path, {"adapt.enabled": True, "adapt.group_by": "line"}))
    stages.check_adapt(load_config(cfg_path, {"adapt.enabled": True, "adapt.group_by": "machine_id", "adapt.folds": 4}))


@pytest.mark.slow
def test_a_night_where_the_search_keeps_the_champion_registers_nothing(tmp_path, prefect_harness):
    """The search concludes that no candidate beats the champion: no copy of it is registered and
    gated against itself; the night is an event on the champion's audit trail."""
    from flows.retrain import retrain
    from rsft import pipeline as stages
    from rsft.tracking import registry
    from rsft.config import load_config
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw")
    first = retrain(config_path=str(cfg_path))
    assert first["model_version"] == "1" and first["promoted"]
    out = retrain(config_path=str(cfg_path), overrides={"adapt.enabled": True, "adapt.strategies": ["keep_champion"],
                                                        "adapt.group_by": "machine_id", "adapt.folds": 3})
    assert out["recipe"] == "keep_champion" and out["model_version"] is None and out["promoted"] is False
    assert out["reason"].startswith("the adaptation search kept the champion")
    assert out["challenger_rmse"] == out["champion_rmse"]
    mlc = registry.client(stages.tracking_uri(cfg))
    hist = registry.history(mlc, cfg.promotion.model_name)
    assert [h["version"] for h in hist] == [1] and "champion" in hist[0]["aliases"]
    # the event names the night (its date; its data's in a backfill) and its MLflow run
    assert len(hist[0]["events"]) == 1 and re.match(rf"kept by the night \d{{4}}-\d\d-\d\d( \(data to [\d-]+\))? "
                                                    rf"\(MLflow run {out['mlflow_run']}\), no model registered: ",
                                                    hist[0]["events"][0][1]), hist[0]["events"]


@pytest.mark.slow  # ~40 s: two CLI runs with a registered champion; the --config case stays in make test
def test_rsft_adapt_starts_from_the_users_champion(tmp_path):
    """--champion: a checkpoint file and the same model as models:/NAME@champion in an MLflow
    registry give the same keep_champion row, which is that model's own hold-out RMSE (tolerance
    1e-4, float32); its inputs are the features; a champion whose columns the files lack, a
    missing file and a URI without its registry are one-line errors."""
    import numpy as np

    from rsft.config import FeaturesConfig, ModelConfig, SynthConfig, TrainConfig
    from rsft.evaluate import evaluate_model
    from rsft.models import checkpoint, save_checkpoint
    from rsft.pipeline.training import arrays, pretrain
    from rsft.synth import generate_day, generate_target
    from rsft.tracking import registry

    cfg = SynthConfig(seed=3, machines=4, days=2, samples_per_day=200)
    pool = pl.concat([generate_day(cfg, d)[0] for d in range(cfg.days)]).drop("ts")
    pool.write_parquet(tmp_path / "pool.parquet")
    generate_target(cfg, 1, 120, 0).drop("ts").write_csv(tmp_path / "target.csv")
    hold = generate_target(cfg, 1, 200, 1).drop("ts")
    hold.write_parquet(tmp_path / "holdout.parquet")
    names = ["s01", "s02", "s03", "s04"]  # the champion reads 4 of the 12 sensors
    f = FeaturesConfig(numeric=names, label="quality")
    model, _ = pretrain(ModelConfig(hidden=[16]), *arrays(pool.drop_nulls([*names, "quality"]), f), TrainConfig(epochs=3))
    save_checkpoint(checkpoint(model, ModelConfig(hidden=[16]), 4, names), tmp_path / "champ.pt")
    hdf = hold.drop_nulls([*names, "quality"])
    own = evaluate_model(model, *arrays(hdf, f))["rmse"]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlc = registry.client(uri)
    registry.use_experiment("user", tmp_path / "artifacts")
    import mlflow

    with mlflow.start_run():
        v = registry.log_model_version(model, tmp_path / "champ.pt", arrays(hdf.head(2), f)[0], "plant-model", {})
    mlc.set_registered_model_alias("plant-model", "champion", v)

    def run(*extra: str, json_name: str = "r.json"):
        return subprocess.run(
            [sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "pool.parquet"), "--target-sample",
             str(tmp_path / "target.csv"), "--label", "quality", "--holdout", str(tmp_path / "holdout.parquet"),
             "--folds", "3", "--epochs", "4", "--strategies", "keep_champion,sample_only", "--pool-rows", "600",
             "--json-out", str(tmp_path / json_name), *extra],
            capture_output=True, text=True, cwd=REPO, timeout=600)

    for ref, extra in ((str(tmp_path / "champ.pt"), []), ("models:/plant-model@champion", ["--tracking-uri", uri])):
        out = run("--champion", ref, *extra)
        assert out.returncode == 0, out.stderr[-2000:]
        rep = json.loads((tmp_path / "r.json").read_text())
        assert rep["champion"] == ref
        keep = next(c for c in rep["candidates"] if c["name"] == "keep_champion")
        assert np.isclose(keep["holdout_rmse"], own, atol=1e-4), (keep["holdout_rmse"], own)

    (tmp_path / "narrow.csv").write_text(pl.read_csv(tmp_path / "target.csv").drop("s03").write_csv())
    bad = subprocess.run(
        [sys.executable, "-m", "rsft.cli", "adapt", "--pool", str(tmp_path / "pool.parquet"), "--target-sample",
         str(tmp_path / "narrow.csv"), "--label", "quality", "--champion", str(tmp_path / "champ.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert bad.returncode == 2 and "the champion's input: s03 not in both the pool and the target sample" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    for ref, why in ((str(tmp_path / "nope.pt"), "no such checkpoint file"),
                     (str(tmp_path / "target.csv"), "not an rsft checkpoint"),
                     ("models:/plant-model@gone", "has no model 'plant-model' with alias 'gone'")):
        out = run("--champion", ref, "--tracking-uri", uri)
        assert out.returncode == 2 and why in out.stderr, out.stderr[-500:]
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def _linear_files(tmp_path, pool_files: int = 3, rows: int = 200):
    """A pool directory of CSV/Parquet exports and an 80-row target sample (groups g = 0, 1) of
    y = 2a + b + noise."""
    import numpy as np

    rng = np.random.default_rng(0)

    def frame(n: int, shift: float = 0.0) -> pl.DataFrame:
        a, b = rng.normal(shift, 1, n), rng.normal(0, 1, n)
        return pl.DataFrame({"a": a, "b": b, "y": 2 * a + b + rng.normal(0, 0.1, n)})

    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(pool_files):
        df = frame(rows)
        df.write_csv(pool / f"day{i}.csv") if i % 2 == 0 else df.write_parquet(pool / f"day{i}.parquet")
    frame(80, 0.5).with_columns(g=pl.Series([0] * 40 + [1] * 40)).write_csv(tmp_path / "t.csv")
    return pool, tmp_path / "t.csv"


def _adapt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsft.cli", "adapt", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_a_skipped_european_csv_is_one_plain_line(tmp_path):
    """(trial 7) a ';'-separated export with decimal commas was skipped with Polars' own text
    ("found more fields than defined in 'Schema'"): plain words, and the separator it was written with."""
    from rsft.tables import file_schemas

    pl.DataFrame({"a": [1.0, 2.0], "y": [1.0, 2.0]}).write_csv(tmp_path / "ok.csv")
    (tmp_path / "eu.csv").write_text("site;a;y\nS50;0,5;1,0\nS50;0,7;2,5\n")
    _, skipped = file_schemas(str(tmp_path))
    assert skipped == [(str(tmp_path / "eu.csv"), "a row has more fields than the header — its header reads as one "
                                                  "field: the file is ';'-separated, not ',' (with decimal commas)")]


def test_rsft_adapt_skips_a_directorys_file_that_lacks_a_column_or_cannot_be_read(tmp_path):
    """A directory of exports where one file renamed a column, one is ';'-separated, one is empty
    and one holds text past the inferred rows: each is skipped with one warning line naming it and
    why (it stopped the whole command with exit 2; the nightly retrain leaves such a file out and
    goes on), the output says no contract or prefilter was applied, and the feature columns are
    listed in the output and in --json-out."""
    pool, target = _linear_files(tmp_path)
    pl.DataFrame({"a_min": [1.0, 2.0, 3.0] * 20, "b": [1.0] * 60, "y": [1.0, 2.0, 3.0] * 20}).write_csv(pool / "renamed.csv")
    (pool / "semi.csv").write_text("a;b;y\n1.0;2.0;3.0\n")
    (pool / "empty.csv").write_text("")
    (pool / "late.csv").write_text("a,b,y\n" + "1.0,2.0,3.0\n" * 10_001 + "oops,1.0,3.0\n")  # text past the inferred rows
    out = _adapt("--pool", str(pool), "--target-sample", str(target), "--label", "y", "--group-by", "g", "--folds", "2",
                 "--max-steps", "20", "--strategies", "keep_champion,recalibrate", "--pool-rows", "300",
                 "--json-out", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    warned = [line for line in out.stderr.splitlines() if line.startswith("warning")]
    assert len(warned) == 4, out.stderr
    said = "\n".join(warned)
    assert "pool file skipped: " + str(pool / "renamed.csv") + ": no column(s) a (it has: a_min, b, y)" in said
    assert "semi.csv: no column(s) a, b, y — its header reads as one field: the file is ';'-separated" in said
    assert "empty.csv: " in said and "late.csv: " in said
    text = " ".join(out.stdout.split())
    assert "pool: 600 complete rows in 3 file(s) under " + str(pool) + " (4 skipped, named above) — read as they are: no " \
           "ingest contract (ranges, aliases, quarantine, duplicates) and no prefilter rules were applied" in text
    assert "features (2): a, b; label: y" in text and "adapt: y from 2 features" in text
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["features"] == ["a", "b"] and rep["label"] == "y"
    src = rep["pool_source"]
    assert src["kind"] == "files" and src["contract"] is False and src["prefilter"] is False and src["files_read"] == 3
    assert sorted(Path(s["file"]).name for s in src["files_skipped"]) == ["empty.csv", "late.csv", "renamed.csv", "semi.csv"]
    # a column only one export of the directory has is left out of the default features, said in one line
    pl.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [3.0, 4.0], "y": [1.0, 2.0]}).write_csv(pool / "day9.csv")
    pl.read_csv(target).with_columns(c=pl.lit(1.0)).write_csv(tmp_path / "tc.csv")
    from rsft.cli.adapt import _adapt_columns

    _, cols, files = _adapt_columns(str(pool), str(tmp_path / "tc.csv"), "y", "g", None)
    assert cols == ["a", "b"]  # late.csv's text value shows only when it is read (then skipped, as above)
    assert sorted(Path(f).name for f in files) == ["day0.csv", "day1.parquet", "day2.csv", "day9.csv", "late.csv"]
    # every file unusable: one line
    for f in pool.glob("day*"):
        f.unlink()
    out = _adapt("--pool", str(pool), "--target-sample", str(target), "--label", "y", "--features", "a")
    assert out.returncode == 2 and "no file" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_rsft_adapt_checks_the_folds_before_reading_the_pool(tmp_path):
    """More --folds than the target sample's groups: one line naming --folds (not the config key),
    the folds the groups allow and what each then trains on — before any pool file is read (an
    unreadable pool is not even noticed)."""
    pool, target = _linear_files(tmp_path)
    for f in pool.iterdir():
        f.write_bytes(b"\x00garbage")
    out = _adapt("--pool", str(pool), "--target-sample", str(target), "--label", "y", "--group-by", "g", "--folds", "4")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("error: --folds 4 but the target sample has only 2 groups of g; use --folds 2 or fewer "
                                  "(each CV fold then trains on about 40 of the 80 target rows)"), out.stderr


def test_rsft_adapt_with_a_config_searches_the_pool_a_night_sees_with_its_train_budget(tmp_path):
    """`rsft adapt --config`: the config's exports ingested under its contract (a file the contract
    rejects is named and left out, as a night does — it is not an abort), its kept pool after the
    prefilter, its target sample, hold-out, features and label, and its `train` block as every
    fit's budget (it used a budget of its own, so it could not show that the configured one was
    the problem); one line says where the pool came from and how many rows; the folds are checked
    against the target sample's groups before the pool is ingested."""
    from rsft.config import load_config
    from rsft.pipeline.data import kept_pool_dir
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw")
    day0 = tmp_path / "raw" / "pool" / "sensors_day000.csv"
    (tmp_path / "raw" / "pool" / "sensors_renamed.csv").write_text(day0.read_text().replace("s01", "s01_new", 1))
    fresh = tmp_path / "fresh-state"
    out = _adapt("--config", str(cfg_path), "--set", f"state.dir={fresh}", "--set", "adapt.group_by=machine_id",
                 "--folds", "9")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("error: --folds 9 but the target sample has only 4 groups of machine_id; use --folds 4 "
                                  "or fewer (each CV fold then trains on about 150 of the 200 target rows)"), out.stderr
    assert not (fresh / "data" / cfg.name / "sensors").exists()  # checked before the pool was ingested
    out = _adapt("--config", str(cfg_path), "--pool", str(tmp_path / "raw" / "pool"))
    assert out.returncode == 2 and "--pool: with --config the config names it (data.pool)" in out.stderr

    out = _adapt("--config", str(cfg_path), "--set", "train.max_steps=40", "--set", "train.pretrain_max_steps=60",
                 "--set", "adapt.strategies=[keep_champion,recalibrate,sample_only]", "--set", "adapt.pool_rows=2000",
                 "--json-out", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sensors_renamed.csv" in out.stderr and "left out of the pool, as a night leaves it out" in out.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    src = rep["pool_source"]
    assert src["kind"] == "config" and src["contract"] is True and src["prefilter"] is True
    assert 0 < src["rows_kept"] < src["rows_ingested"] and sum(src["prefilter_dropped"].values()) > 0
    assert any("sensors_renamed.csv" in f for f in src["files_failed"])
    # the config's train block: the survivor's folds and the final fit at train.max_steps, the
    # ranking rung a quarter of it, the warm start (the base model a first night trains) within
    # train.pretrain_max_steps
    assert rep["full_steps"] == 40 and rep["cv_steps"] == 10 and 0 < rep["warm_start"]["steps"] <= 60
    assert rep["train"]["max_steps"] == 40 and rep["train"]["pretrain_max_steps"] == 60
    assert rep["features"] == cfg.features.numeric and rep["label"] == cfg.features.label
    assert all(c["holdout_rmse"] is not None for c in rep["candidates"])  # the config's hold-out
    text = " ".join(out.stdout.split())
    assert (f"pool: {src['rows_kept']:,} rows — the kept pool of {cfg_path} as a night sees it: {src['rows_ingested']:,} "
            f"rows ingested under the contract ingest.sensors into {src['dataset']}, {src['rows_kept']:,} kept by the "
            "prefilter rules") in text
    assert "warm start: the base model a first night trains" in text and "the config's train block (max_steps 40" in text
    assert "features (12): s01, s02" in text and "quarantined (new files): " in text and "prefilter dropped: " in text
    assert kept_pool_dir(cfg).is_dir()  # the night's own kept pool: the next night reuses it


def test_a_first_nights_kept_warm_start_is_named_the_base_model():
    """A first night's search that keeps its warm start registers the base model (there is no
    champion to keep): its recipe tag says so (trial 11's v1 read "keep_champion"); later nights'
    choices, a base model that beat the fine-tune and the plain retrain keep their names."""
    from rsft.config import load_config
    from rsft.pipeline.finetune import _recipe
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "factory.yaml")
    kept = {"chosen": "keep_champion"}
    assert _recipe(cfg, kept, False, first_night=True) == "base model (the search kept it: no champion yet)"
    assert _recipe(cfg, kept, False) == "keep_champion" and _recipe(cfg, {"chosen": "recalibrate"}, False, True) == "recalibrate"
    assert _recipe(cfg, None, True, True) == "base model (tonight's fine-tune did not beat it)"
    assert _recipe(cfg, None, False) == "rsft (rejection sampling)"
