"""A base model's fit at its step cap: was its validation loss still falling, and did more steps
help? (docs/architecture.md, trial 9 #12.)

    PYTHONPATH=. python benchmarks/base_fit_cap.py [--caps 3000 20000] [--rows 60000]

One fit per ``--caps`` value (``train.pretrain_max_steps``; the other train settings their defaults)
of the default model on a seeded synthetic nonlinear label (8 normal features, seed 0): steps
run, best step, early stopping, the best validation MSE, the last fifth's fall (of the loss, of
its whole fall) and whether :func:`rsft.pipeline.training.still_improving` calls it improving.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import numpy as np
    import torch

    from rsft.config import ModelConfig, TrainConfig
    from rsft.pipeline.training import late_fall, pretrain, still_improving

    p = argparse.ArgumentParser()
    p.add_argument("--caps", type=int, nargs="+", default=[3000, 20000])
    p.add_argument("--rows", type=int, default=60_000)
    a = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(a.rows, 8)).astype(np.float32)
    y = (np.sin(2 * x[:, 0]) * x[:, 1] + 0.5 * x[:, 2] ** 2 + 0.3 * x[:, 3] * x[:, 4]
         + 0.1 * rng.normal(size=a.rows)).astype(np.float32)
    for cap in a.caps:
        t0 = time.process_time()
        _, r = pretrain(ModelConfig(), x, y, TrainConfig(pretrain_max_steps=cap))
        of_level, of_fall = late_fall(r.history)
        print(json.dumps({"cap": cap, "steps": r.steps, "best_step": r.best_step, "stopped_early": r.stopped_early,
                          "best_val_mse": round(r.best_val_loss, 5), "late_fall_of_loss": round(of_level, 4),
                          "late_fall_of_whole_fall": round(of_fall, 4), "still_improving": still_improving(r.history),
                          "cpu_s": round(time.process_time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
