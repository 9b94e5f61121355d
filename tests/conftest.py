"""Shared test setup: an isolated state dir and one session-scoped Prefect test harness.

The environment is set at import time, before anything imports prefect.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="rsft-test-state-"))
os.environ["RSFT_STATE_DIR"] = str(_STATE)
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

REPO = Path(__file__).resolve().parents[1]
# the shared bad-export corpus, vendored so a clean clone anywhere tests against it
BAD_INPUTS = REPO / "tests" / "data" / "bad-inputs"


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect server for every test that runs a real flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture()
def one_torch_thread():
    """Small tensors: intra-op threads only add overhead (and stall on a shared, loaded machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
