"""One tabular version's logged MLflow model: bytes and files (its ``code/`` part apart), the CPU
of ``registry.log_model_version`` (the first log apart: it imports), and whether the pyfunc
model predicts what torch does. A fresh SQLite + local store; the demo-sized MLP (40 inputs,
hidden [64, 64], seed 0). Run it with two checkouts to compare:

    PYTHONPATH=<checkout> python benchmarks/logged_model_size.py [--logs 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def sizes(root: Path) -> dict[str, int]:
    """Bytes and files of a downloaded model directory, and of its ``code/`` part."""
    files = [f for f in root.rglob("*") if f.is_file()]
    code = [f for f in files if f.relative_to(root).parts[0] == "code"]
    return {"model_bytes": sum(f.stat().st_size for f in files), "model_files": len(files),
            "code_bytes": sum(f.stat().st_size for f in code), "code_files": len(code)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--logs", type=int, default=5)
    args = ap.parse_args()
    import mlflow
    import pandas as pd
    import torch

    from rsft.config import ModelConfig
    from rsft.models import build_model, checkpoint, save_checkpoint
    from rsft.tracking import registry, serving

    tmp, names, cfg = Path(tempfile.mkdtemp()), [f"s{i:02d}" for i in range(40)], ModelConfig(hidden=[64, 64])
    torch.manual_seed(0)
    model = build_model(cfg, len(names), 1).eval()
    save_checkpoint(checkpoint(model, cfg, len(names), names, {}), tmp / "c.pt")
    x = np.random.default_rng(0).normal(size=(5, len(names))).astype(np.float32)
    registry.client(f"sqlite:///{tmp / 'mlflow.db'}")
    registry.use_experiment("bench", tmp / "art")
    cpu = []
    for _ in range(args.logs):
        with mlflow.start_run():
            t0 = time.process_time()
            v = registry.log_model_version(model, tmp / "c.pt", serving.input_example(x, names), "m", {})
            cpu.append(round(time.process_time() - t0, 3))
    out = sizes(Path(mlflow.artifacts.download_artifacts(f"models:/m/{v}", dst_path=str(tmp / "dl"))))
    got = mlflow.pyfunc.load_model(f"models:/m/{v}").predict(pd.DataFrame(x.astype(np.float64), columns=names))
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    out.update(checkpoint_bytes=(tmp / "c.pt").stat().st_size, log_cpu_s=cpu,
               pyfunc_max_abs_diff=float(np.abs(got.to_numpy().ravel() - want).max()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
