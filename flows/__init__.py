"""Prefect flows: composition only (flows -> tasks -> rsft).

Importing this package points Prefect at the project-local state directory before prefect
itself is imported (``RSFT_STATE_DIR`` or ``.rsft``), with telemetry off, and sends the ``rsft``
library's INFO records to the run's log in the Prefect UI (``PREFECT_LOGGING_EXTRA_LOGGERS=rsft``).
"""

import logging as _logging

from rsft.state import configure_environment as _configure_environment

_configure_environment()
if _logging.getLogger("rsft").level == _logging.NOTSET:
    _logging.getLogger("rsft").setLevel(_logging.INFO)
