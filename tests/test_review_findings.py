"""Findings of the eighth session's review, each a regression test (each failed on main at db64336)."""

from pathlib import Path
from urllib.parse import urlparse

from rsft.tracking import promotion, registry
from rsft.tracking.retention import free_rejected
from tests.test_registry import _register, mlc  # noqa: F401 - the fixture


def test_a_version_promoted_by_hand_keeps_its_model(mlc, tmp_path):  # noqa: F811
    """v2 was rejected by its night, then `rsft promote --version 2 --force` made it the champion:
    it served. Two promotions later it holds no alias; gc (keep 1) must not remove a served model
    ("Promoted versions keep their models", docs/operations.md)."""
    name = "m"
    v1, v2, v3, v4 = _register(mlc, tmp_path, name, 4)
    registry.move_champion(mlc, name, v1, None)
    registry.record_decision(mlc, name, v2, registry.Decision(False, "worse", "rmse", 2.0, 1.0))
    promotion.promote_version(mlc, tmp_path, name, v2, None)  # served from now on
    for v in (v3, v4):
        registry.record_decision(mlc, name, v, registry.Decision(True, "better", "rmse", 0.5, 1.0))
        registry.move_champion(mlc, name, v, registry.alias_version(mlc, name).version)
    assert str(registry.alias_version(mlc, name).version) == str(v4)
    freed = free_rejected(mlc, name, 1, tmp_path)
    run = Path(urlparse(mlc.get_run(mlc.get_model_version(name, v2).run_id).info.artifact_uri).path)
    assert [f.version for f in freed] == [] and (run / "model").exists(), freed


def test_a_first_night_never_serves_the_model_with_the_worse_holdout_metric():
    """Seed 0, 300 rows: the fine-tune's rmse 0.9705 beats its base model's 0.9752 by 0.8 SE; the
    base model must not be registered (and promoted) in its place for losing within the noise."""
    import numpy as np

    from rsft.config import load_config
    from rsft.evaluate import RowMetrics, Rows, constant_metrics, regression_metrics
    from rsft.pipeline.finetune import _base_instead

    cfg = load_config(Path(__file__).parents[1] / "examples" / "factory.yaml")
    rng = np.random.default_rng(0)
    y = rng.normal(size=300) * 3
    base = y + rng.normal(size=300)
    ft = y + (base - y) * 0.985 + rng.normal(scale=0.1, size=300)
    rm = lambda p: RowMetrics(regression_metrics(y, p), rows=Rows("regression", y, p))  # noqa: E731
    scores = {"challenger": (rm(ft), None), "start": (rm(base), None)}
    assert scores["challenger"][0]["rmse"] < scores["start"][0]["rmse"]
    assert not _base_instead(cfg.promotion, scores, 300, None, constant_metrics(y[:100], y))


def test_the_linear_reference_counts_the_rows_it_fits_on():
    """Seed 0: 50 target rows, 45 of them with a NaN label (a contract with finite: false, or none):
    the reference needs 10 fitted rows; with every label NaN it must not raise."""
    import numpy as np

    from rsft.evaluate import linear_metrics

    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    y = x.sum(1)
    few, none = y.copy(), np.full_like(y, np.nan)
    few[:45] = np.nan
    assert linear_metrics(x, few, x, y) is None
    assert linear_metrics(x, none, x, y) is None


def test_the_prefect_summary_does_not_repeat_what_it_says_it_does_not_repeat():
    from flows.retrain import _summary_markdown

    text = "pool has 3 rows below the hold-out's range of temp"
    s = {"promoted": False, "reason": "x", "selection_warnings": [text],
         "warnings": [{"kind": "selection_warnings", "text": text, "new": False, "first_seen": "2026-12-01", "key": "k"}],
         "warnings_compared_with": "2026-12-04",
         "warnings_unchanged": "1 warning unchanged since 2026-12-01 (selection 1): not repeated"}
    assert text not in _summary_markdown(s)


def test_a_jsonl_head_that_is_the_whole_file_reads_its_last_line():
    from rsft.ingest.readers import _ignored_keys

    assert _ignored_keys(b'{"a": 1, "renamed": 2}', {"a"})[0] == ["renamed"]
