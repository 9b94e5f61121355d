"""What every ``rsft`` command shares: the consoles, the one-line messages and errors, the config
with its ``--set`` overrides, the ``--config``/``--set`` options, the tables, and the ingest
progress bar (``rsft ingest`` and ``rsft adapt --config`` both ingest)."""

from __future__ import annotations

from contextlib import contextmanager

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rsft.config import ConfigError, PipelineConfig, load_config
from rsft.readable import human


# output to a pipe or a log file: rich would lay tables out in 80 columns and cut their headers
# ("quaranti…"); a log line may be long. A terminal, or COLUMNS, decides the width as usual
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_PIPED_WIDTH)
err = Console(stderr=True)


ConfigOpt = typer.Option("examples/factory.yaml", "--config", "-c", metavar="FILE", help="Pipeline YAML (see examples/factory.yaml).")
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value: --set train.epochs=5 (repeatable; YAML values).")


def say(con: Console, text: str, style: str | None = None, markup: bool = False) -> None:
    """One message (an error, a warning, a file's outcome) as one line however long: never
    wrapped at the console width (80 columns when the output is a log file or a pipe), so logs
    and grep see one line per message."""
    con.print(text, style=style, highlight=False, markup=markup, soft_wrap=True, overflow="ignore", crop=False)


def fail(msg: str, code: int = 2) -> None:
    say(err, f"[bold red]error:[/] {escape(msg)}", markup=True)
    raise typer.Exit(code)


def parse_sets(items: Optional[list[str]]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            fail(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:  # a value YAML cannot parse or construct: one line, not a traceback
            why = " ".join(str(getattr(e, "problem", None) or e).split())
            fail(f"--set {key.strip()}: not a YAML value ({why}): {value!r}")
    return out


def load_pipeline(config: str, sets: Optional[list[str]] = None, first: dict[str, Any] | None = None,
                  last: dict[str, Any] | None = None) -> PipelineConfig:
    """The config with its ``--set`` overrides (after ``first``'s, before ``last``'s); the state
    directory configured. A bad config is one line (exit 2)."""
    overrides = {**(first or {}), **parse_sets(sets), **(last or {})}
    try:
        cfg = load_config(config, overrides)
    except ConfigError as e:
        fail(str(e))
    from rsft.state import configure_environment

    try:
        configure_environment(cfg.state.dir)
    except ValueError as e:  # RSFT_STATE_DIR=s3://… (state.dir is checked with the config)
        fail(str(e))
    return cfg


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows.items():
        t.add_row(k.replace("_", " "), human(v))
    return t


_HEADERS = {"cv_rmse": "cv rmse", "rung0_rmse": "rung 0", "cv_fits": "cv fits", "pool_rows": "pool rows", "seconds": "s",
            "holdout_rmse": "hold-out"}


def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in rows[0]:
        t.add_column(_HEADERS.get(col, col))
    for r in rows:
        t.add_row(*[str(v) for v in r.values()])
    return t


@contextmanager
def ingest_progress():
    """A progress bar over the bytes of the files being ingested (rows counted as they stream)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from rsft import progress as events

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                   console=err, transient=True)
    state = {"rows": 0, "files": 0, "todo": 0}
    task = bar.add_task("ingest: planning…", total=None)

    def on(event: str, **f) -> None:
        if event == "ingest.plan":
            state["todo"] += f["files"]
            total = (bar.tasks[0].total or 0) + f["bytes"]
            bar.update(task, total=total or None)
        elif event == "ingest.rows":
            state["rows"] += f["rows"]
        elif event == "ingest.file":
            state["files"] += f["status"] not in ("skipped", "duplicate")
            bar.advance(task, f["bytes"])
        bar.update(task, description=f"ingest: {state['files']}/{state['todo']} files, {state['rows']:,} rows")

    with bar, events.listen(on):
        yield


def check_out_paths(*given: tuple[str, Optional[Path]]) -> None:
    """One line, before any work, for an output file whose folder does not exist."""
    for opt, path in given:
        if path is not None and not Path(path).resolve().parent.is_dir():
            fail(f"{opt} {path}: the folder {Path(path).resolve().parent} does not exist")
