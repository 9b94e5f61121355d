"""What a person reads in the UIs: the candidates chart's error bars, the lineage tags, the
logged model's signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _cand(name, losses, eliminated=""):
    return {"name": name, "strategy": name, "fold_losses": losses, "cv_loss_mean": float(np.mean(losses)),
            "cv_loss_se": float(np.std(losses, ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else 0.0,
            "eliminated": eliminated, "pool_rows_mean": 0.0}


def test_candidates_chart_gives_every_candidate_an_error_bar(tmp_path):
    """Two candidates on 4 folds keep their own SE; a one-fold (eliminated) candidate gets the
    pooled fold-to-fold sd of the others; the chart is written with the champion line."""
    from rsft.adapt.table import _error_bars, plot_candidates

    a, b = [1.0, 1.2, 1.1, 1.3], [2.0, 2.4, 2.2, 2.2]
    rows = [_cand("keep_champion", a), _cand("rsft", b), _cand("head_only", [1.5], "rung 0")]
    err, own = _error_bars(rows)
    assert own == [True, True, False]
    assert err[:2] == [pytest.approx(rows[0]["cv_loss_se"]), pytest.approx(rows[1]["cv_loss_se"])]
    assert err[2] == pytest.approx(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))
    report = {"candidates": rows, "chosen": "rsft"}
    assert (tmp_path / "c.png").exists() is False
    plot_candidates(report, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 5000
    # (trial 6) hold-out RMSEs far above the CV bars: the axis reaches them
    from rsft.adapt.table import _axis_top

    held = [{**r, "holdout_rmse": h} for r, h in zip(rows, (1.97, 2.6, 2.3))]
    cv = [r["cv_loss_mean"] for r in held]
    assert _axis_top(held, cv, err, True) > 2.6 > _axis_top(held, cv, err, False)
    plot_candidates({"candidates": held, "chosen": "rsft"}, str(tmp_path / "h.png"))
    assert (tmp_path / "h.png").stat().st_size > 5000


def test_a_registered_tabular_model_names_its_input_columns(tmp_path):
    """A real MLflow store: the version's signature lists the feature names; the pyfunc model
    takes a float64 DataFrame with those columns and predicts what the torch model does; the
    state-dict checkpoint is logged beside it; a frame missing a column is refused."""
    import mlflow
    import pandas as pd
    import torch

    from rsft.config import ModelConfig
    from rsft.models import build_model, checkpoint, save_checkpoint
    from rsft.tracking import registry, serving

    names = ["s01", "s02_mean5", "machine_id=M01"]
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=[4]), len(names), 1)
    save_checkpoint(checkpoint(model, ModelConfig(hidden=[4]), len(names), names, {}), tmp_path / "c.pt")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    example = serving.input_example(x, names)
    assert list(example.columns) == names
    assert isinstance(serving.input_example(x.astype(np.int64), ["text"]), np.ndarray)  # text ids: a tensor
    mlc = registry.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.use_experiment("t", tmp_path / "art")
    with mlflow.start_run():
        v = registry.log_model_version(model, tmp_path / "c.pt", example, "m", {})
    info = mlflow.models.get_model_info(f"models:/m/{v}")
    assert info.signature.inputs.input_names() == names
    pm = mlflow.pyfunc.load_model(f"models:/m/{v}")
    got = pm.predict(pd.DataFrame(x.astype(np.float64), columns=names)).to_numpy().ravel()
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy().ravel()
    assert np.allclose(got, want, atol=1e-5)
    assert registry.CHECKPOINT_ARTIFACT in [a.path for a in mlc.list_artifacts(mlc.get_model_version("m", v).run_id, "checkpoint")]
    with pytest.raises(Exception, match="s01"):
        pm.predict(pd.DataFrame(x[:, 1:].astype(np.float64), columns=names[1:]))


@pytest.mark.parametrize("kind", ["mlp", "autoencoder"])
def test_a_logged_tabular_model_is_small_and_loads_without_rsft(tmp_path, kind):
    """A real MLflow store: the logged model carries no copy of rsft's source (``code/`` was
    1,004,787 bytes in 76 files a version; the model is now ~52 KB in 9 files), and a fresh
    process in which ``import rsft`` fails loads it through pyfunc and through
    ``mlflow.pytorch.load_model`` and predicts what the trained model does (pyfunc: atol 1e-5,
    as above; the raw module: bit for bit). The by-value registration is undone after logging."""
    import json
    import os
    import subprocess
    import sys

    import cloudpickle
    import mlflow
    import torch

    from rsft.config import ModelConfig
    from rsft.models import build_model, checkpoint, save_checkpoint
    from rsft.tracking import registry, serving

    names = [f"s{i:02d}" for i in range(6)]
    cfg = ModelConfig(kind="autoencoder", hidden=[8], latent=4) if kind == "autoencoder" else ModelConfig(hidden=[8])
    torch.manual_seed(0)  # seed 0: weights; inputs seed 0
    model = build_model(cfg, len(names), 1).eval()
    save_checkpoint(checkpoint(model, cfg, len(names), names, {}), tmp_path / "c.pt")
    x = np.random.default_rng(0).normal(size=(7, len(names))).astype(np.float32)
    registry.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.use_experiment("t", tmp_path / "art")
    with mlflow.start_run():
        v = registry.log_model_version(model, tmp_path / "c.pt", serving.input_example(x, names), "m", {})
    assert cloudpickle.list_registry_pickle_by_value() == set()
    local = Path(mlflow.artifacts.download_artifacts(f"models:/m/{v}", dst_path=str(tmp_path / "dl")))
    files = [f for f in local.rglob("*") if f.is_file()]
    assert not (local / "code").exists() and sum(f.stat().st_size for f in files) < 150_000 and len(files) < 20
    np.save(tmp_path / "x.npy", x)
    load = f"""
import sys, json
sys.modules["rsft"] = None  # import rsft raises ImportError
import numpy as np, pandas as pd, torch, mlflow
x = np.load({str(tmp_path / "x.npy")!r})
pm = mlflow.pyfunc.load_model({str(local)!r})
raw = mlflow.pytorch.load_model({str(local)!r})
with torch.no_grad():
    r = raw(torch.as_tensor(x)).numpy()
p = pm.predict(pd.DataFrame(x.astype(np.float64), columns={names!r})).to_numpy().ravel()
print(json.dumps({{"pyfunc": p.tolist(), "raw": r.tolist(), "cls": type(raw).__name__}}))
"""
    env = {k: val for k, val in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    assert got["cls"] == type(model).__name__
    assert np.array_equal(np.asarray(got["raw"], np.float32), want)
    assert np.allclose(got["pyfunc"], want.ravel(), atol=1e-5)


def test_lineage_tags_sort_in_the_order_the_data_flowed():
    from rsft.tracking.lineage import tags

    keys = ["1_raw_files", "2_ingested", "3_kept", "4_selected", "5_training_set", "target_sample", "target_holdout"]
    t = tags([{"key": k, "rows": 10 - i, "digest": f"d{i}", "uri": "/x", "what": k} for i, k in enumerate(keys)])
    assert [k for k in sorted(t) if not k.endswith((".rows", ".digest"))] == [f"lineage.{k}" for k in sorted(keys)]
    assert sorted(keys)[:5] == keys[:5]
    assert t["lineage.3_kept.rows"] == "8" and t["lineage.3_kept.digest"] == "d2" and t["lineage.3_kept"] == "3_kept — /x"


def test_selection_markdown_leads_with_warnings_and_lists_coverage_per_group():
    from rsft.config import PipelineConfig
    from rsft.pipeline.results import Prefiltered, Scored, Selected, Selection
    from rsft.pipeline.summary import selection_markdown
    from tests.test_retrain_flow import REPO

    import yaml

    cfg = PipelineConfig.model_validate(yaml.safe_load((REPO / "examples" / "factory.yaml").read_text()))
    report = {"ess": 812.3, "auc_selected_vs_target": 0.71, "warnings": ["machine_id M05 is 13 % of the target ..."],
              "coverage": {"uncovered_share": 0.58, "group_column": "machine_id", "by_group": [
                  {"machine_id": "M05", "target_share": 0.13, "selected_share": 0.0, "pool_share": 0.125,
                   "uncovered_share": 0.69, "flagged": True},
                  {"machine_id": "M01", "target_share": 0.10, "selected_share": 0.31, "pool_share": 0.125,
                   "uncovered_share": None, "flagged": False}]}}
    sel = Selection(Prefiltered("k.parquet", 1000, 900), Scored("key", "/r", "/r/s.pt", "gaussian", 1.0, 500, 300),
                    Selected("s.parquet", "rejection", 900, 45, 0.05, 0.06, 0.01, 1.0), report)
    md = selection_markdown(cfg, sel)
    lines = md.splitlines()
    assert lines[0] == "# Selection report: 45 pool rows selected for the target"
    assert lines[2].startswith("## ⚠ 1 warning") and "M05 is 13 %" in lines[4]
    assert "| target rows with no comparable pool rows | 58.0% |" in md
    assert "| M05 | 13% | 0% | 12% | 69% | ⚠ missed |" in md and "| M01 | 10% | 31% | 12% | — |  |" in md


@pytest.mark.slow
def test_ui_check_screenshots_every_page_of_a_night(tmp_path):
    """`make ui-check` over a one-night state: the REST checks pass and every page is a real
    screenshot (not blank: the pixels vary), the nights view included. Skipped without Chromium."""
    import json
    import subprocess
    import sys

    from matplotlib.image import imread

    from rsft.config import load_config
    from rsft.pipeline.night import run_night
    from rsft.synth import write_synthetic
    from scripts.ui_check import find_browser
    from tests.test_retrain_flow import REPO, small_config

    if find_browser() is None:
        pytest.skip("no Chromium on this machine (/usr/bin/chromium, chromium-browser, google-chrome)")
    cfg = load_config(small_config(tmp_path))
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    run_night(cfg)
    out = tmp_path / "ui-check"
    check = subprocess.run([sys.executable, str(REPO / "scripts" / "ui_check.py"), "--state", cfg.state.dir,
                            "--out", str(out)], capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert all(c["ok"] for c in json.loads((out / "checks.json").read_text()))
    shots = sorted(out.glob("*.png"))
    names = {p.name.split("-", 1)[1] for p in shots}
    assert {"runs-table.png", "runs-nights-view.png", "night-run.png", "model-version.png",
            "artifact-log_w_hist.png", "artifact-marginals.png"} <= names, names
    for p in shots:
        img = imread(p)
        assert img.shape[0] > 500 and float(img[..., :3].std()) > 0.02, f"{p.name} looks blank"


def test_night_summary_artifact_reads_numbers_as_the_cli_tables_do():
    """The Prefect retrain-summary table: 11,433 rows, yes/no, counts with thousands — not JSON."""
    from flows.retrain import _summary_markdown

    md = _summary_markdown({"rows_ingested": 11433, "promoted": True, "acceptance_rate": 0.0130212345,
                            "quarantine_reasons": {"duplicate row": 1200, "missing s05": 8}, "warm_start": None,
                            "reason": "rmse 1.135 < champion 1.392"})
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in md.splitlines()[3:] if line.startswith("| ")}
    assert rows["promoted"] == "yes" and md.index("| promoted |") < md.index("| rows ingested |")  # decision first
    assert rows["rows ingested"] == "11,433"
    assert rows["acceptance rate"] == "0.0130212"
    assert rows["quarantine reasons"] == "duplicate row 1,200, missing s05 8"
    assert rows["warm start"] == "—"


def test_night_summary_artifact_lists_warnings_under_the_table():
    """Warnings are sentences: in a table cell the Prefect UI cut them at the page's edge. They are
    a list under the table, each whole, with its kind; the unchanged ones counted in one line."""
    from flows.retrain import _summary_markdown

    long = "machine_id M02 is 15 % of the target sample but 3 % of the selected rows, " * 3
    md = _summary_markdown({"promoted": True, "reason": "x", "selection_warnings": [long.strip()],
                            "model_warnings": [], "warnings_unchanged": "4 warnings unchanged since 2026-01-26"})
    table, _, below = md.partition("## Warnings")
    assert "M02" not in table and "selection warnings" not in table and "unchanged" not in table
    assert below.strip().splitlines() == [f"- ⚠ selection: {long.strip()}", "- 4 warnings unchanged since 2026-01-26"]
    assert "## Warnings" not in _summary_markdown({"promoted": True, "reason": "x", "model_warnings": []})


def test_links_point_where_the_mlflow_ui_listens(tmp_path):
    """A local store's UI on another port (`mlflow ui --port 5001`: port 5000 is often taken):
    state.ui_url moves the run and nights links and the start command with it; without it, the
    tracking server's own address, else mlflow ui's default. Where links point is not the night."""
    import mlflow

    from rsft.config import ConfigError, load_config
    from rsft.pipeline.layout import night_config
    from rsft.tracking.runs import nights_link, run_link, ui_command

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mlflow.MlflowClient(store).create_experiment("plant")
    run = mlflow.MlflowClient(store).create_run(exp).info.run_id
    ui = "http://127.0.0.1:5001"
    assert nights_link(store, "plant", ui).startswith(f"{ui}/#/experiments/{exp}/runs?")
    assert run_link(store, run, ui + "/") == (f"{ui}/#/experiments/{exp}/runs/{run}",
                                              f"mlflow ui --backend-store-uri {store} --port 5001")
    assert ui_command(store, "http://ml-box:8080") == f"mlflow ui --backend-store-uri {store} --host ml-box --port 8080"
    # no ui_url: mlflow ui's default for a local store, the server's own address for a tracking server
    assert nights_link(store, "plant").startswith("http://127.0.0.1:5000/#/experiments/")
    assert ui_command(store) == f"mlflow ui --backend-store-uri {store}"
    assert ui_command("http://mlflow:5000", ui) is None
    demo = str(Path(__file__).resolve().parents[1] / "examples" / "factory.yaml")
    moved = load_config(demo, {"state.ui_url": ui})
    assert moved.state.ui_url == ui and night_config(moved) == night_config(load_config(demo))
    with pytest.raises(ConfigError, match="state.ui_url"):
        load_config(demo, {"state.ui_url": "127.0.0.1:5001"})
