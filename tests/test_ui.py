"""What a person reads in the UIs: the candidates chart's error bars, the lineage tags, the
logged model's signature."""

from __future__ import annotations

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


def test_lineage_tags_sort_in_the_order_the_data_flowed():
    from rsft.tracking.lineage import tags

    keys = ["1_raw_files", "2_ingested", "3_kept", "4_selected", "5_training_set", "target_sample", "target_holdout"]
    t = tags([{"key": k, "rows": 10 - i, "digest": f"d{i}", "uri": "/x", "what": k} for i, k in enumerate(keys)])
    assert [k for k in sorted(t) if not k.endswith((".rows", ".digest"))] == [f"lineage.{k}" for k in sorted(keys)]
    assert sorted(keys)[:5] == keys[:5]
    assert t["lineage.3_kept.rows"] == "8" and t["lineage.3_kept.digest"] == "d2" and t["lineage.3_kept"] == "3_kept — /x"
