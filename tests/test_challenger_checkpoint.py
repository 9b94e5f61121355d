"""Concurrent retrains of the same inputs share ``runs/<key>/`` and write the challenger
checkpoint before taking the registry lock: each must write its own file, or a version's
``checkpoint/model.pt`` can hold another retrain's weights."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from rsft.config import load_config
from rsft.models import build_model, load_checkpoint
from rsft.pipeline import finetune
from tests.conftest import REPO


def test_two_challengers_of_the_same_run_key_never_share_a_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(REPO / "examples" / "factory.yaml", {"state.dir": str(tmp_path / "state")})
    monkeypatch.setattr(finetune, "arrays", lambda df, features: (None, None))
    monkeypatch.setattr(finetune, "dataset_digest", lambda path: "digest")
    run_dir = tmp_path / "runs" / "samekey"
    run_dir.mkdir(parents=True)
    selection = SimpleNamespace(scored=SimpleNamespace(run_dir=str(run_dir), run_key="samekey" * 4),
                                selected=SimpleNamespace(rows_out=10, acceptance_rate=0.5))
    n_in = finetune.model_io(cfg.features)[0]
    made = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = build_model(cfg.model, n_in)
        holdout = SimpleNamespace(head=lambda n: None)
        made.append((model, finetune._challenger(cfg, model, holdout, ({"rmse": 1.0}, None), selection, None)))
    (m1, c1), (m2, c2) = made
    assert c1.checkpoint_path != c2.checkpoint_path  # the second save must not overwrite the first
    for model, c in made:  # each file still holds its own model's weights
        saved = load_checkpoint(c.checkpoint_path)["state_dict"]
        for k, v in model.state_dict().items():
            assert torch.equal(saved[k], v), k
