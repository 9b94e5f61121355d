"""Prefect flows: composition only (flows -> tasks -> rsft).

Importing this package points Prefect at the project-local state directory before prefect
itself is imported (``RSFT_STATE_DIR`` or ``.rsft``), with telemetry off, and sends the ``rsft``
library's INFO records to the log of the flow or task run they happen in (the Prefect UI's Logs
tab), as ``PREFECT_LOGGING_EXTRA_LOGGERS=rsft`` would, whenever prefect was imported.
"""

import logging as _logging

from rsft.state import configure_environment as _configure_environment

_configure_environment()

from prefect.logging.handlers import APILogHandler as _APILogHandler  # noqa: E402


class RunLogHandler(_APILogHandler):
    """Prefect's API log handler for the ``rsft`` logger, silent outside a flow or task run
    (a library call from a notebook logs nowhere instead of warning)."""

    def emit(self, record: _logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get():
            super().emit(record)


_rsft = _logging.getLogger("rsft")
if not any(isinstance(h, RunLogHandler) for h in _rsft.handlers):
    _rsft.addHandler(RunLogHandler())
if _rsft.level == _logging.NOTSET:
    _rsft.setLevel(_logging.INFO)
