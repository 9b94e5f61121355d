"""A fit whose losses are never finite is flagged (TrainResult.diverged) and the night's gate
rejects it — on a first night too, where the bar is the base model it started from."""

from __future__ import annotations

import numpy as np
import pytest

from rsft.config import ModelConfig, TrainConfig
from rsft.models import build_model
from rsft.pipeline.finetune import _diverged
from rsft.train import fit


@pytest.mark.parametrize("lr, diverged", [(1e6, True), (1e-3, False)])
def test_a_fit_without_a_finite_loss_is_flagged_diverged(lr, diverged):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) * 1e3).astype(np.float32)
    model = build_model(ModelConfig(), 4)
    res = fit(model, (x, y), TrainConfig(epochs=3, lr=lr, device="cpu"))
    assert res.diverged is diverged
    assert res.to_dict()["diverged"] is diverged
    why = _diverged(res)
    assert (why is not None) is diverged
    if diverged:
        assert "no finite loss in 3 epoch(s)" in why and "warm start" in why
