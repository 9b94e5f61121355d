"""SIGTERM for the ``rsft`` command: stop now, say so in one line, die of the signal (status 143).

systemd, a scheduler or ``kill`` sends SIGTERM, often to the whole process group (the embedded
Prefect server included). Prefect's flow engine turns SIGTERM into a ``TerminationSignal``
exception raised wherever the main thread happens to be; raised inside a weakref callback or a
``__del__`` it is printed ("Exception ignored in …") and lost, and the night carried on against a
dead API server, then hung on it (trial 7, finding 3). Here SIGTERM ends the process itself, at
once: the children (the ephemeral Prefect server) are stopped, one line goes to stderr, and the
process dies of SIGTERM (status 128 + 15 = 143 in a shell) without unwinding (no ``finally``
talks to a server that is gone).

Stopping at any point is safe: every write to the state dir is atomic or resumable, as a SIGKILL
at any point of a night is (tests/test_chaos.py); the next run finishes what this one started
and closes its MLflow and Prefect runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

# what the line says, set by the command that runs (rsft.cli)
_context: dict[str, Any] = {"command": "rsft", "next": "", "json_out": None, "pipeline": None}


def line(signum: int) -> str:
    """The one stderr line of a command stopped by ``signum``."""
    name = signal.Signals(signum).name
    text = f"error: {_context['command']} stopped by {name}"
    return text + (f"; {_context['next']}" if _context["next"] else "")


def _stop_children(grace: float = 2.0) -> None:
    """SIGKILL this process's children (the ephemeral Prefect server) and reap them (no zombie,
    waiting at most ``grace`` seconds). Not SIGTERM first: a server stopped that way tears down and,
    under load, printed its teardown's traceback (sqlalchemy, CancelledError) to the terminal the
    two share — after the one line. A kill at any point is safe: its SQLite database rolls back an
    unfinished write, and the chaos tests kill whole process groups at random points of a night."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
        for c in children:
            try:
                c.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=grace)
    except Exception:  # noqa: BLE001 (exiting anyway: never let this stop the exit)
        pass


def stop(signum: int, frame: Any = None) -> None:
    """The SIGTERM handler: children stopped, one line on stderr, then the signal's default action
    (``os._exit(128 + signum)`` should that return)."""
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM (systemd's after the group's) changes nothing
    msg = line(signum)
    out = _context["json_out"]
    if out is not None:  # a scheduler reading the JSON learns why there is no summary
        try:
            from rsft.readable import strict_json

            Path(out).write_text(strict_json({"pipeline": _context["pipeline"], "error": msg}))
        except Exception:  # noqa: BLE001
            pass
    _stop_children()
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 (a write of the main thread's under way)
        pass
    try:
        if sys.stdout.isatty():  # a progress spinner hid the cursor
            os.write(sys.stdout.fileno(), b"\x1b[?25h\n")
    except Exception:  # noqa: BLE001
        pass
    try:
        os.write(2, (msg + "\n").encode())
    finally:
        # die of the signal itself (the shell's status 143; systemd counts a stop by SIGTERM as
        # clean, an exit status 143 as a failure without SuccessExitStatus=143)
        try:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        finally:
            os._exit(128 + signum)


def install(command: str = "rsft") -> None:
    """SIGTERM stops this process as :func:`stop` says (main thread only; a no-op elsewhere)."""
    _context["command"] = command
    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        pass


def describe(*, next_run: str = "", json_out: Path | None = None, pipeline: str | None = None) -> None:
    """What the line says about the next run, and where ``--json-out`` writes the error."""
    _context.update(next=next_run, json_out=json_out, pipeline=pipeline)
