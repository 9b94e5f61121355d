"""Integration: examples/maintenance-logs.yaml end to end on a small sample — ngram scorer,
budget selection, text classifier, MLflow registry and the macro-F1 promotion gate, through the
real Prefect flow."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def small_text_config(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "examples" / "maintenance-logs.yaml").read_text())
    data["state"]["dir"] = str(tmp_path / "state")
    data["synth"].update(machines=4, days=8, samples_per_day=400, target_sample_rows=200, target_holdout_rows=400,
                         target_like_share=0.25, event_rate=0.1)
    raw = tmp_path / "raw"
    data["data"] = {
        "logs": [str(raw / "logs")],
        "target_sample": str(raw / "target" / "logs_sample.jsonl"),
        "target_holdout": str(raw / "target" / "logs_holdout.jsonl"),
    }
    data["scorer"]["pool_sample_rows"] = 2000
    data["sampling"].update(budget=300, chunk_rows=500)
    data["train"].update(epochs=4, pretrain_epochs=3, pretrain_rows=2000, patience=2)
    path = tmp_path / "logs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_maintenance_logs_retrain_end_to_end(tmp_path, prefect_harness):
    from flows.retrain import retrain
    from rsft.tracking import registry
    from rsft.config import load_config
    from rsft.features import labels, to_matrix
    from rsft.models import load_checkpoint, model_from_checkpoint
    from rsft.pipeline import evaluate_frame, load_target, pipeline_root, tracking_uri
    from rsft.synth import write_synthetic

    cfg_path = small_text_config(tmp_path)
    cfg = load_config(cfg_path)
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    s = retrain(config_path=str(cfg_path))

    # selection: budget mode draws exactly k log lines, and they read like the crew's shorthand
    assert s["rows_selected"] == 300
    assert s["rows_kept_by_prefilter"] + sum(s["prefilter_dropped"].values()) == s["rows_prefiltered_in"]
    root = pipeline_root(cfg)
    run_dir = next((root / "runs").iterdir())
    selected = pl.read_parquet(run_dir / "selected.parquet")
    pool = pl.read_parquet(list((root / "logs" / "data").rglob("*.parquet")))
    shorthand = r"\b(brg|lkg|snsr|insp|nff|oring|cbl|greased|drip)\b"
    share = lambda df: float(df.get_column("text").str.contains(shorthand).mean())  # noqa: E731
    assert share(selected) > 2 * share(pool)  # stated margin: the pool holds ~25 % crew lines
    # the figure that says so in the summary: the selection's n-gram KL to the target below the pool's;
    # no ESS warning (log w of text sums over n-grams: the ESS says nothing about text)
    kl = re.fullmatch(r"pool (\S+) → selected (\S+) nats \(a random subset with as many n-grams: (\S+)\) \(hashed n-gram KL\)",
                      s["text_kl_to_target"])
    assert kl and float(kl[2]) < float(kl[1]) and float(kl[2]) < float(kl[3]), s["text_kl_to_target"]
    assert not any("no closer to the target" in w for w in s["selection_warnings"])
    assert not any("degenerate" in w for w in s["selection_warnings"])
    # a budget selection has no M: no acceptance probability (it underflowed to 0 on real documents)
    assert selected["accept_prob"].null_count() == selected.height and s["clipped_share"] == 0

    # training + gate: a classifier with a finite macro-F1, promoted as the first champion
    assert s["warm_start"] == "base" and s["promoted"] is True and s["model_version"] == "1"
    f1 = s["challenger_macro_f1"]
    assert 0.2 < f1 <= 1.0  # five classes: chance is ~0.2

    # the registered checkpoint reloads as the same classifier and scores the hold-out the same
    mlc = registry.client(tracking_uri(cfg))
    champ = registry.alias_version(mlc, cfg.promotion.model_name)
    model = model_from_checkpoint(load_checkpoint(registry.download_checkpoint(mlc, champ)))
    holdout = load_target(cfg, "target_holdout")
    again = evaluate_frame(model, holdout, cfg)
    assert again["macro_f1"] == pytest.approx(f1, abs=1e-5)
    x, y = to_matrix(holdout, cfg.features), labels(holdout, cfg.features)
    assert x.dtype == np.int64 and x.shape == (len(y), cfg.features.text_max_tokens) and set(np.unique(y)) <= set(range(5))
