"""SIGTERM while Prefect runs in this process: keep :func:`rsft.terminate.stop` as the handler.

Prefect replaces the SIGTERM handler during a flow run (its engine) and in ``rsft serve``'s runner;
these hooks make it install rsft's instead (rsft.terminate says why). They touch Prefect, so they
live here, not in the library (flows -> tasks -> rsft; rsft never imports prefect).
"""

from __future__ import annotations

import signal
from typing import Any

from prefect.runner import Runner
from prefect.utilities import engine

from rsft.terminate import stop


def hold_in_flows() -> None:
    """Keep :func:`stop` as the SIGTERM handler while a flow runs in this process.

    Prefect's flow engine installs its own handler for the run (``capture_sigterm``, which
    raises ``TerminationSignal``) and restores the previous one after; it installs the function
    named ``_prefect_sigterm_handler``, looked up when it does. Naming :func:`stop` so makes the
    engine install (and recognise) this handler instead (a Prefect that renamed it keeps its own
    handling; tests/test_chaos.py pins the name). Only for the ``rsft`` command's own process: a
    flow run that ``rsft serve``'s runner starts keeps Prefect's handling (its cancellation uses it)."""
    if hasattr(engine, "_prefect_sigterm_handler"):
        engine._prefect_sigterm_handler = stop  # type: ignore[attr-defined]


def hold_in_runner() -> None:
    """``rsft serve``: SIGTERM stops the process as :func:`stop` says, the flow runs it started
    (subprocesses) and the ephemeral server included, instead of Prefect's runner handler (which
    exits 0 after a stop that, in Prefect 3.8, is never awaited and may leave a run's process)."""

    def handle_sigterm(self: Any, *args: Any, **kwargs: Any) -> None:
        stop(signal.SIGTERM)

    Runner.handle_sigterm = handle_sigterm  # type: ignore[method-assign]
