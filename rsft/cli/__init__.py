"""The ``rsft`` command: the typer app and its commands, one room per subject — the night's
(:mod:`rsft.cli.night`), the registry's (:mod:`rsft.cli.registry`), ``adapt``
(:mod:`rsft.cli.adapt`), the state directory's and the config's (:mod:`rsft.cli.state`) — over
what they share (:mod:`rsft.cli.common`). They are registered here, in the order the help lists
them.

The library never imports prefect; the commands that run flows (``retrain``, ``ingest``,
``serve``) import the ``flows`` package lazily, after the state directory is configured.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys

import typer

from rsft.cli import adapt, night, registry, state
from rsft.cli.common import console, err, say
from rsft.config import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rsft: keep factory models current — ingest, prefilter, density-ratio rejection sampling, "
    "fine-tune, and champion/challenger promotion in MLflow, as Prefect flows.",
)


def _version(show: bool) -> None:
    if show:
        from rsft import __version__

        console.print(f"rsft {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _app(version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True,
                                      help="Print rsft's version and exit.")) -> None:
    """rsft: keep factory models current — ingest, prefilter, density-ratio rejection sampling,
    fine-tune, and champion/challenger promotion in MLflow, as Prefect flows."""


def reflowed(doc: str | None) -> str | None:
    """A command's docstring as its help: each paragraph one line, for the help to wrap at the
    terminal's width (the source's line breaks, kept by the help, left ragged lines at 80 columns)."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


# the commands in the order the help lists them (the rooms define them; this is where they are wired)
for command in (night.synth, night.retrain, night.ingest, registry.history, registry.promote, registry.rollback,
                night.serve, adapt.adapt, state.gc):
    app.command(help=reflowed(command.__doc__))(command)
app.command("check-config", help=reflowed(state.check_config.__doc__))(state.check_config)


def main() -> None:
    # MLflow's INFO lines ("Creating initial MLflow database tables…", "Successfully registered
    # model…") would interleave with the summaries; MLFLOW_LOGGING_LEVEL=INFO brings them back
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # a failed flow prints one line here ("retrain failed: …"); Prefect's console handler would add
    # every task's and flow's traceback (the run's log in Prefect keeps them). RSFT_LOG_LEVEL=DEBUG
    # (or INFO) shows them
    quiet = os.environ.get("RSFT_LOG_LEVEL", "WARNING").upper() not in ("DEBUG", "INFO")
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    level = os.environ.get("RSFT_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:  # rsft's INFO records go to the Prefect run log, not here
        h.setLevel(level)
    if quiet:  # Prefect's records also propagate to the root handler
        for h in logging.getLogger().handlers:
            h.addFilter(lambda r: not r.name.startswith("prefect"))
    from rsft import terminate

    # SIGTERM (systemd, a scheduler, kill; to the process or its group): one line, status 143 at
    # once, the ephemeral Prefect server stopped too; the next run carries on (rsft.terminate)
    words = [a for a in sys.argv[1:2] if not a.startswith("-")]
    terminate.install(" ".join(["rsft", *words]))
    try:
        app()
    except ConfigError as e:
        say(err, f"error: {e}")
        sys.exit(2)
