"""Promotion gate (pure) and alias moves on a real MLflow SQLite registry."""

import getpass
import math
import threading
from pathlib import Path

import pytest
import torch

from rsft.tracking import registry
from rsft.config import PromotionConfig

POLICY = PromotionConfig(metric="rmse", min_improvement=0.02, min_holdout_rows=50, max_pool_regression=0.10)


def test_first_model_is_promoted():
    d = registry.decide(POLICY, {"rmse": 1.0}, None, 100)
    assert d.promote and d.reason == "no champion yet"


@pytest.mark.parametrize(
    "challenger, base, promote, why",
    [
        (8.70, 1.28, False, "rmse 8.700 does not beat the base model 1.280"),  # the diverged night's numbers
        (1.27, 1.28, False, "does not beat the base model"),  # not by the 2 % margin
        (1.00, 1.28, True, "rmse 1.000 < the base model 1.280"),
    ],
)
def test_first_night_challenger_must_beat_the_base_model(challenger, base, promote, why):
    """No champion yet: the bar is the base model the challenger was fine-tuned from."""
    d = registry.decide(POLICY, {"rmse": challenger}, None, 100, base={"rmse": base})
    assert d.promote is promote and why in d.reason and "vs the base model" in d.reason
    # decision.json names the model it was judged against: the base model, there is no champion
    assert d.to_dict()["base_model"] == base and d.to_dict()["champion"] is None
    assert registry.decide(POLICY, {"rmse": challenger}, {"rmse": base}, 100).to_dict()["champion"] == base
    assert "base_model" not in registry.decide(POLICY, {"rmse": challenger}, {"rmse": base}, 100).to_dict()
    # the pool guardrail, too, against the base model's pool metrics
    d = registry.decide(POLICY, {"rmse": 1.0}, None, 100, {"rmse": 2.0}, None, base={"rmse": 1.28}, base_pool={"rmse": 1.0})
    assert not d.promote and "regressed" in d.reason and "vs the base model" in d.reason


def test_a_diverged_fit_is_rejected_even_on_a_first_night():
    why = "no finite loss in 4 epoch(s)"
    for champion in (None, {"rmse": 9.0}):
        d = registry.decide(POLICY, {"rmse": 1.0}, champion, 100, diverged=why)
        assert not d.promote and d.reason == f"the fit diverged: {why}"


@pytest.mark.parametrize(
    "challenger, champion, rows, promote, why",
    [
        (0.90, 1.00, 100, True, "<"),
        (0.99, 1.00, 100, False, "does not beat"),  # better, but not by the 2 % margin
        (1.10, 1.00, 100, False, "does not beat"),
        (math.nan, 1.00, 100, False, "not finite"),
        (math.inf, None, 100, False, "not finite"),
        (0.50, 1.00, 10, False, "min_holdout_rows"),
    ],
)
def test_gate(challenger, champion, rows, promote, why):
    d = registry.decide(POLICY, {"rmse": challenger}, None if champion is None else {"rmse": champion}, rows)
    assert d.promote is promote
    assert why in d.reason


def test_decision_reasons_show_comparable_figures():
    """The reason's numbers share their significant digits, trailing zeros kept (16.70 beside 16.74,
    not 16.7), and two numbers that differ never read equal (more digits when needed)."""
    d = registry.decide(POLICY, {"rmse": 16.7}, {"rmse": 17.2}, 100)
    assert d.reason.startswith("rmse 16.70 < champion 17.20 (bar 16.86)"), d.reason
    d = registry.decide(POLICY, {"rmse": 1.13512}, {"rmse": 1.13518}, 100)
    assert "1.1351 does not beat champion 1.1352" in d.reason, d.reason  # 5 digits tell them apart
    d = registry.decide(POLICY, {"rmse": 1000.0}, {"rmse": 2000.0}, 100)
    assert d.reason.startswith("rmse 1000 < champion 2000 (bar 1960)"), d.reason


def test_pool_regression_guardrail():
    d = registry.decide(POLICY, {"rmse": 0.5}, {"rmse": 1.0}, 100, {"rmse": 1.2}, {"rmse": 1.0})
    assert not d.promote and "pool hold-out" in d.reason
    d = registry.decide(POLICY, {"rmse": 0.5}, {"rmse": 1.0}, 100, {"rmse": 1.05}, {"rmse": 1.0})
    assert d.promote


@pytest.mark.parametrize(
    "challenger, champion, pool, promote, why",
    [
        (0.90, 0.80, None, True, ">"),
        (0.81, 0.80, None, False, "does not beat"),  # better, but not by the 2 % margin
        (0.70, 0.80, None, False, "does not beat"),
        (0.90, 0.80, (0.60, 0.80), False, "pool hold-out"),  # forgot the pool: > 10 % worse
    ],
)
def test_gate_on_a_higher_is_better_metric(challenger, champion, pool, promote, why):
    policy = POLICY.model_copy(update={"metric": "macro_f1"})
    cp, chp = ({"macro_f1": pool[0]}, {"macro_f1": pool[1]}) if pool else (None, None)
    d = registry.decide(policy, {"macro_f1": challenger}, {"macro_f1": champion}, 100, cp, chp)
    assert d.promote is promote
    assert why in d.reason


@pytest.fixture()
def mlc(tmp_path):
    return registry.client(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _register(mlc, tmp_path, name, n_versions):
    import mlflow

    versions = []
    registry.use_experiment("registry-test", tmp_path / "artifacts")
    mlc.create_registered_model(name)
    for i in range(n_versions):
        with mlflow.start_run():
            p = tmp_path / f"ckpt{i}.pt"
            torch.save({"i": i}, p)
            mlflow.log_artifact(str(p), "checkpoint")
            mlflow.log_text("x", "model/placeholder.txt")
            run = mlflow.active_run().info.run_id
        versions.append(mlc.create_model_version(name, f"runs:/{run}/model", run_id=run).version)
    return versions


def test_alias_moves_rollback_and_history(mlc, tmp_path):
    name = "m"
    v1, v2 = _register(mlc, tmp_path, name, 2)
    registry.move_champion(mlc, name, v1, None)
    registry.record_decision(mlc, name, v1, registry.Decision(True, "no champion yet", "rmse", 1.0, None))
    registry.record_decision(mlc, name, v2, registry.Decision(True, "better", "mae", 0.8, 0.9))
    assert [(r["metric_name"], float(r["metric"])) for r in registry.history(mlc, name)] == [("mae", 0.8), ("rmse", 1.0)]
    registry.move_champion(mlc, name, v2, v1)
    assert str(registry.alias_version(mlc, name).version) == str(v2)
    assert str(registry.alias_version(mlc, name, registry.PREVIOUS).version) == str(v1)
    # a decision made against a stale champion must not overwrite the newer one
    with pytest.raises(RuntimeError, match="changed"):
        registry.move_champion(mlc, name, v1, v1)
    assert registry.rollback(mlc, name) == (str(v1), str(v2))
    assert str(registry.alias_version(mlc, name).version) == str(v1)
    rows = registry.history(mlc, name)
    assert [r["version"] for r in rows] == [2, 1]
    # the rollback is appended to both versions' trails; v1's nightly decision is not overwritten
    assert "champion" in rows[1]["aliases"] and rows[1]["decision"] == "promoted" and rows[1]["reason"] == "no champion yet"
    assert [t for _, t in rows[1]["events"]] == [f"champion again (rollback from v{v2}) (by {getpass.getuser()})"]
    assert [t for _, t in rows[0]["events"]] == [f"rolled back: champion again is v{v1} (by {getpass.getuser()})"]
    assert registry.refused_by_gate(mlc, name, v1) is None  # its night promoted it
    registry.record_decision(mlc, name, v2, registry.Decision(False, "mae 0.9 does not beat champion 0.8", "mae", 0.9, 0.8))
    assert registry.rollback(mlc, name) == (str(v2), str(v1))  # and back: events accumulate
    # (trial 6) back onto a version its night's gate refused: `rsft rollback` says so in one line
    assert registry.refused_by_gate(mlc, name, v2) == (f"v{v2} was rejected by its night's gate (mae 0.9 does not beat "
                                                       "champion 0.8): it is the champion now by hand")
    rows = registry.history(mlc, name)
    assert len(rows[0]["events"]) == 2 and len(rows[1]["events"]) == 2
    assert rows[0]["events"][0][0] < rows[0]["events"][1][0]  # in time order


def test_old_rejected_versions_lose_their_models_and_cannot_serve_again(mlc, tmp_path):
    """Versions registered from a run's folder (``runs:/<run>/model``, MLflow 2's way): v1 champion,
    v2-v4 rejected, v2 holding an alias. Keep 1: v3 alone loses its model folder and checkpoint
    (the run's other artifacts and the version stay, tagged); a rollback onto it (an alias set by
    hand), a promotion and a checkpoint download are each refused in one line."""
    from urllib.parse import urlparse

    from rsft.tracking import promotion
    from rsft.tracking.retention import free_rejected

    name = "m"
    v1, v2, v3, v4 = _register(mlc, tmp_path, name, 4)
    registry.move_champion(mlc, name, v1, None)
    for v in (v2, v3, v4):
        registry.record_decision(mlc, name, v, registry.Decision(False, "worse", "rmse", 2.0, 1.0))
    mlc.set_registered_model_alias(name, "audit", v2)
    runs = {v: Path(urlparse(mlc.get_run(mlc.get_model_version(name, v).run_id).info.artifact_uri).path)
            for v in (v1, v2, v3, v4)}
    (runs[v3] / "decision.json").write_text("{}")  # (a night's other artifacts stay)
    assert [f.version for f in free_rejected(mlc, name, 1, tmp_path, dry_run=True)] == [3]
    assert (runs[v3] / "model").exists()
    freed = free_rejected(mlc, name, 1, tmp_path)
    assert [f.version for f in freed] == [3] and freed[0].bytes > 0
    assert not (runs[v3] / "model").exists() and not (runs[v3] / "checkpoint").exists()
    assert (runs[v3] / "decision.json").exists()
    assert all((runs[v] / "model").exists() and (runs[v] / "checkpoint").exists() for v in (v1, v2, v4))
    assert [r["model_removed"] != "" for r in registry.history(mlc, name)] == [False, True, False, False]
    assert free_rejected(mlc, name, 1, tmp_path) == []  # nothing left
    mlc.set_registered_model_alias(name, registry.PREVIOUS, v3)  # by hand: gc never frees an aliased version
    with pytest.raises(RuntimeError, match=f"v{v3}'s model was removed by rsft gc on "):
        registry.rollback(mlc, name)
    with pytest.raises(promotion.PromotionRefused, match="cannot be promoted"):
        promotion.promote_version(mlc, tmp_path, name, v3, None)
    with pytest.raises(ValueError, match="model was removed"):
        registry.download_checkpoint(mlc, mlc.get_model_version(name, v3))
    assert str(registry.alias_version(mlc, name).version) == str(v1)


def test_registry_lock_serialises(tmp_path):
    order = []

    def worker(i):
        with registry.registry_lock(tmp_path, "m"):
            order.append(("in", i))
            threading.Event().wait(0.05)
            order.append(("out", i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # every "in" is immediately followed by its own "out": no interleaving
    assert all(order[k][0] == "in" and order[k + 1] == ("out", order[k][1]) for k in range(0, 6, 2))


def test_pip_requirements_install_from_the_public_index():
    """A local build tag (torch 2.13.0+cpu) is not on PyPI: the logged requirements pin the release."""
    from rsft.tracking.registry import pip_requirements

    reqs = pip_requirements()
    assert any(r.startswith("torch==") for r in reqs) and not any("+" in r for r in reqs)


def _promote_cli(mlc, tmp_path, monkeypatch, evaluate, *args):
    """`rsft promote --version 2 ARGS` with v1 the champion, hold-out rows read as 500 zeros and
    ``evaluate(version number, hold-out)`` as evaluate_frame; (result, versions, the hold-outs read)."""
    from pathlib import Path

    import polars as pl
    import yaml
    from typer.testing import CliRunner

    from rsft.cli import app
    from rsft.cli import registry as commands
    import rsft.pipeline as stages
    import rsft.pipeline.targets as targets

    name = "m"
    v1, v2 = _register(mlc, tmp_path, name, 2)
    registry.move_champion(mlc, name, v1, None)
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "factory.yaml").read_text())
    data["state"]["dir"] = str(tmp_path / "state")
    data["promotion"]["model_name"] = name
    cfg_path = tmp_path / "p.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    seen = []

    def load_target(cfg, which):
        seen.append(cfg.data.target_holdout)
        return pl.DataFrame({"y": [0.0] * 500})

    monkeypatch.setattr(commands, "_client", lambda cfg: mlc)
    monkeypatch.setattr(stages, "load_target", load_target)
    monkeypatch.setattr(registry, "load_version_model", lambda mlc_, v: str(v.version))
    monkeypatch.setattr(stages, "evaluate_frame", lambda model, df, cfg: evaluate(model, df))
    monkeypatch.setattr(targets, "named_entries",
                        lambda cfg, which: {"d": {"name": Path(cfg.data.target_holdout).name}})
    out = CliRunner().invoke(app, ["promote", "--version", str(v2), "--config", str(cfg_path), *args])
    return out, (v1, v2), seen


def test_promote_takes_set_and_names_the_holdout_it_judged_on(mlc, tmp_path, monkeypatch):
    """(trial 7) `rsft promote` scored on the config's hold-out, which was stale, and said nothing of
    it: --set data.target_holdout=… picks the hold-out; the line and the version's event name it."""
    out, _, seen = _promote_cli(mlc, tmp_path, monkeypatch, lambda v, df: {"rmse": 0.1 if v == "2" else 0.2},
                                "--set", "data.target_holdout=/x/holdout_2012-02.parquet")
    assert out.exit_code == 0, out.output
    assert seen == ["/x/holdout_2012-02.parquet"]
    assert "on hold-out holdout_2012-02.parquet" in " ".join(out.output.split())
    event = [t for _, t in registry.history(mlc, "m")[0]["events"]]
    assert len(event) == 1 and "on hold-out holdout_2012-02.parquet (champion was v" in event[0]


def test_promote_refuses_a_version_that_wins_within_the_holdouts_noise(mlc, tmp_path, monkeypatch):
    """`rsft promote` pairs the two versions' rows like the nightly gate: v2, the champion's
    predictions with a jitter (seed 0, sd 0.01 on errors of sd 1) that lowers the rmse by luck, is
    refused in one line."""
    import numpy as np

    from rsft.evaluate import RowMetrics, Rows, regression_metrics

    rng = np.random.default_rng(0)
    y, champ = np.zeros(500), rng.normal(0, 1, 500)
    jittered = next(p for p in (champ + rng.normal(0, 0.01, 500) for _ in range(50))
                    if regression_metrics(y, p)["rmse"] < regression_metrics(y, champ)["rmse"])

    def evaluate(version, df):
        p = jittered if version == "2" else champ
        return RowMetrics(regression_metrics(y, p), rows=Rows("regression", y, p))

    out, _, _ = _promote_cli(mlc, tmp_path, monkeypatch, evaluate)
    assert out.exit_code == 1 and "within the hold-out's noise" in out.output and "Traceback" not in out.output
    assert str(registry.alias_version(mlc, "m").version) == "1"


def test_the_paired_difference_and_its_se_are_tagged_on_the_version(mlc, tmp_path):
    """The version carries the difference, its SE and z (rsft.paired), read back with the decision;
    a decision without them (plain metric dicts) writes none of these tags."""
    import numpy as np

    from rsft.evaluate import RowMetrics, Rows, regression_metrics

    rng = np.random.default_rng(0)  # seed 0: a challenger with 80 % of the champion's error, z ≫ 2
    y = rng.normal(0, 3, 400)
    err = rng.normal(0, 1, 400)
    ch, champ = (RowMetrics(regression_metrics(y, p), rows=Rows("regression", y, p)) for p in (y + 0.8 * err, y + err))
    decision = registry.decide(PromotionConfig(metric="rmse"), ch, champ, 400)
    assert decision.promote and decision.details["z"] > 2
    v1, v2 = _register(mlc, tmp_path, "m", 2)
    registry.record_decision(mlc, "m", v1, decision)
    registry.record_decision(mlc, "m", v2, registry.decide(PromotionConfig(metric="rmse"), dict(ch), dict(champ), 400))
    tags = mlc.get_model_version("m", v1).tags
    assert float(tags["rsft.difference_se"]) == pytest.approx(decision.details["difference_se"], rel=1e-5)
    assert float(tags["rsft.difference"]) == pytest.approx(decision.details["difference"], rel=1e-5)
    back = registry.recorded_decision(mlc.get_model_version("m", v1))
    assert back.details["z"] == pytest.approx(decision.details["z"], rel=1e-5) and back.details["min_z"] == 2
    assert not {"rsft.difference", "rsft.difference_se"} & set(mlc.get_model_version("m", v2).tags)
    assert registry.recorded_decision(mlc.get_model_version("m", v2)).details == {}
