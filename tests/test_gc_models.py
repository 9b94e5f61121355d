"""``rsft gc`` and the night's retention free the models of old rejected versions: real nights
(LOCAL steps, MLflow in the state dir, Torch), the registry's versions, decisions and metrics
kept, a version holding any alias and the newest nights' versions never touched, promotion and
rollback of a freed version refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_retrain_flow import small_config


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _model_files(mlc, mv) -> tuple[Path, Path]:
    """A version's logged-model folder and its run's checkpoint folder, on disk."""
    from urllib.parse import urlparse

    from rsft.tracking.serving import logged_model_id

    lm = Path(urlparse(mlc.get_logged_model(logged_model_id(mv)).artifact_location).path)
    run = Path(urlparse(mlc.get_run(mv.run_id).info.artifact_uri).path)
    return lm, run / "checkpoint"


# ~35 s idle (four real nights): the same rules on registered versions run in make test
# (tests/test_registry.py: free_rejected, dry run, history, refusals; test_review_findings: a served version)
@pytest.mark.slow
def test_gc_frees_old_rejected_versions_models_and_keeps_their_history(tmp_path):
    """Four nights (v1 promoted; v2-v4 rejected: promotion.min_improvement 0.9), v2 given an
    alias by hand. `rsft gc --keep-nights 1 --dry-run` lists v3 only and removes nothing; `rsft gc`
    removes v3's logged model and checkpoint (the bytes it reports are those on disk), tags it,
    keeps its decision and metrics; v1 (champion), v2 (alias) and v4 (newest) keep theirs;
    `rsft history` says so; promoting v3 is refused in one line; a second gc finds nothing; a fifth
    night with keep_nights 1 frees v4 in its own retention (its summary's gc line and gc_figures say
    so; state_disk_bytes gives the state dir's parts in bytes)."""
    import json

    from typer.testing import CliRunner

    from rsft import pipeline as stages
    from rsft.cli import app
    from rsft.config import load_config
    from rsft.tracking import registry
    from rsft.synth import write_synthetic

    cfg_path = small_config(tmp_path)
    cfg = load_config(cfg_path)
    strict = load_config(cfg_path, {"promotion.min_improvement": 0.9})
    name = cfg.promotion.model_name
    for night in (1, 2, 3, 4):
        write_synthetic(cfg.synth, tmp_path / "raw", night=night)
        out = stages.run_night(cfg if night == 1 else strict)
        assert out["promoted"] is (night == 1), out
    mlc = registry.client(stages.tracking_uri(cfg))
    mlc.set_registered_model_alias(name, "audit", "2")
    versions = {int(v.version): v for v in mlc.search_model_versions(f"name='{name}'")}
    assert sorted(versions) == [1, 2, 3, 4]
    files = {v: _model_files(mlc, mv) for v, mv in versions.items()}
    on_disk = {v: _bytes(lm) + _bytes(ck) for v, (lm, ck) in files.items()}
    assert all(b > 50_000 for b in on_disk.values()), on_disk  # (~68 KB each: weights, MLmodel, checkpoint)

    gc = ["gc", "--config", str(cfg_path), "--keep-nights", "1"]
    dry = CliRunner().invoke(app, [*gc, "--dry-run", "--json", str(tmp_path / "dry.json")])
    assert dry.exit_code == 0, dry.output
    said = json.loads((tmp_path / "dry.json").read_text())
    assert [m["version"] for m in said["models_removed"]] == [3] and said["model_bytes_removed"] == on_disk[3]
    assert all(_bytes(lm) for lm, _ in files.values())  # a dry run removes nothing
    assert "would remove the models of 1 rejected version(s)" in " ".join(dry.output.split())

    res = CliRunner().invoke(app, [*gc, "--json", str(tmp_path / "gc.json")])
    assert res.exit_code == 0, res.output
    said = json.loads((tmp_path / "gc.json").read_text())
    assert [m["version"] for m in said["models_removed"]] == [3] and said["model_bytes_removed"] == on_disk[3]
    freed = said["state_dir_bytes_before"] - said["state_dir_bytes_after"]  # (mlflow.db grows by the tags: a few KB)
    assert freed >= 0.9 * (on_disk[3] + said["bytes_removed"]), (freed, on_disk[3], said["bytes_removed"])
    assert _bytes(files[3][0]) == 0 and not files[3][1].exists()
    assert all(_bytes(files[v][0]) and files[v][1].exists() for v in (1, 2, 4))
    v3 = mlc.get_model_version(name, "3")  # the version, its decision and metrics stay
    assert v3.tags["rsft.decision"] == "rejected" and v3.tags[registry.MODEL_REMOVED]
    assert mlc.get_logged_model(v3.source.split("/")[-1]).tags[registry.MODEL_REMOVED]
    assert mlc.get_run(v3.run_id).data.metrics and (files[3][1].parent / "decision.json").exists()

    text = " ".join(CliRunner().invoke(app, ["history", "--config", str(cfg_path)]).output.split())
    assert "rejected (model removed)" in text, text  # the date is the tag's (MLflow UI)
    refused = CliRunner().invoke(app, ["promote", "--version", "3", "--force", "--config", str(cfg_path)])
    assert refused.exit_code == 1 and "v3's model was removed by rsft gc" in refused.output, refused.output
    assert "Traceback" not in refused.output and str(mlc.get_model_version_by_alias(name, "champion").version) == "1"

    again = CliRunner().invoke(app, [*gc, "--json", str(tmp_path / "again.json")])
    assert again.exit_code == 0 and json.loads((tmp_path / "again.json").read_text())["models_removed"] == []

    write_synthetic(cfg.synth, tmp_path / "raw", night=5)  # the night's own retention: v4 is old now
    out = stages.run_night(strict.model_copy(update={"state": strict.state.model_copy(update={"keep_nights": 1})}))
    assert out["model_version"] == "5" and "the models of 1 old rejected version(s)" in out["gc"], out["gc"]
    # (trial finding #11) the JSON's figures beside the lines: counts and bytes, not prose to parse
    assert out["gc_figures"]["model_versions_removed"] == 1 and out["gc_figures"]["model_bytes_removed"] == on_disk[4]
    assert out["gc_figures"]["keep_nights"] == 1 and out["gc_figures"]["removed"] >= 1
    disk = out["state_disk_bytes"]
    assert disk["total"] == sum(v for k, v in disk.items() if k != "total") and disk["mlflow"] > 0, disk
    assert _bytes(files[4][0]) == 0 and _bytes(files[2][0]) and _bytes(files[1][0])
