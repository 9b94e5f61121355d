"""The project-local state directory and the environment that points tools at it.

Everything embedded lives under one folder (default ``.rsft/``)::

    .rsft/
      mlflow.db          MLflow tracking + registry store (SQLite)
      mlartifacts/       MLflow artifacts
      prefect/           PREFECT_HOME (ephemeral server database, settings)
      data/              datasets made by the pipeline (ingested, prefiltered, selected)
      locks/             file locks (registry alias moves)

``RSFT_STATE_DIR`` overrides the default; a config's ``state.dir`` overrides both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "RSFT_STATE_DIR"


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def run_dir(self, pipeline: str) -> Path:
        return self.data / pipeline


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (files removed meanwhile count 0)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:  # removed meanwhile
                pass
    return total


def disk_usage(paths: StatePaths, pipeline: str) -> dict[str, int]:
    """Bytes on disk under the state dir: ``total``, and by part — ``ingested`` (every dataset
    of the pipeline), ``kept_pool`` (prefiltered/), ``runs`` (runs/: scorers, selections,
    reports, checkpoints), ``base`` (pretrained base models), ``mlflow`` (mlflow.db + artifacts:
    the registered models), ``prefect`` (PREFECT_HOME: the embedded server's database and
    logs), ``other`` (locks, other pipelines, anything else under the state dir)."""
    data = paths.run_dir(pipeline)
    out = {"ingested": 0, "kept_pool": 0, "runs": 0, "base": 0}
    if data.is_dir():
        for p in data.iterdir():
            key = {"prefiltered": "kept_pool", "runs": "runs", "base": "base"}.get(p.name, "ingested")
            out[key] += size_of(p)
    out["mlflow"] = sum(size_of(p) for p in (paths.mlflow_db, paths.artifacts) if p.exists())
    out["prefect"] = size_of(paths.prefect_home) if paths.prefect_home.exists() else 0
    total = size_of(paths.root) if paths.root.exists() else 0
    out["other"] = max(0, total - sum(out.values()))
    return {"total": total, **out}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def state_paths(configured: str | None = None) -> StatePaths:
    raw = configured or os.environ.get(ENV_VAR) or ".rsft"
    if "://" in raw:  # see StateConfig: datasets are published by atomic renames under file locks
        raise ValueError(f"{'state.dir' if configured else ENV_VAR}={raw}: the state dir must be a local directory (its datasets are published "
                         "by atomic renames under file locks, which object stores do not offer)")
    root = Path(raw).expanduser().resolve()
    return StatePaths(root)


def configure_environment(configured: str | None = None) -> StatePaths:
    """Create the state dir and point Prefect at it, quietly. Call before importing prefect.

    Values already present in the environment win (team scale sets PREFECT_API_URL etc.).
    """
    paths = state_paths(configured)
    for d in (paths.root, paths.artifacts, paths.prefect_home, paths.data, paths.locks):
        d.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(ENV_VAR, str(paths.root))
    os.environ.setdefault("PREFECT_HOME", str(paths.prefect_home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a fresh ephemeral server migrates its SQLite database first: on a busy 2-core box that
    # can exceed Prefect's 20 s default and fail the run before it starts
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # INFO records go to the run's log in the Prefect UI (Prefect's own; rsft's: flows/__init__);
    # the console shows warnings only (the CLI prints its own summaries)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    return paths
