"""Prefect flows: composition only (flows -> tasks -> rsft).

Importing this package points Prefect at the project-local state directory before prefect
itself is imported (``RSFT_STATE_DIR`` or ``.rsft``), with telemetry off.
"""

from rsft.state import configure_environment as _configure_environment

_configure_environment()
