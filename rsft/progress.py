"""In-process progress events: long-running library code reports, a front end (the CLI) listens.

The library never draws anything itself; without a listener an event costs one list check.
Work that runs in another process (a Dask or Prefect worker) reports there, to nobody.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_listeners: list[Callable[..., None]] = []
_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    for fn in list(_listeners):
        fn(event, **fields)


@contextmanager
def listen(fn: Callable[..., None]) -> Iterator[None]:
    """Call ``fn(event, **fields)`` for every event emitted (from any thread) while inside."""
    with _lock:
        _listeners.append(fn)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(fn)
