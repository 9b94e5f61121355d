"""The ``rsft`` command.

The library never imports prefect; the commands that run flows (``retrain``, ``ingest``,
``serve``) import the ``flows`` package lazily, after the state directory is configured.
"""

from __future__ import annotations

from contextlib import contextmanager

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rsft.config import ConfigError, PipelineConfig, load_config
from rsft.readable import figures
from rsft.readable import counts as _counts
from rsft.readable import human as _cell
from rsft.readable import strict_json
from rsft.state import state_paths

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rsft: keep factory models current — ingest, prefilter, density-ratio rejection sampling, "
    "fine-tune, and champion/challenger promotion in MLflow, as Prefect flows.",
)
# output to a pipe or a log file: rich would lay tables out in 80 columns and cut their headers
# ("quaranti…"); a log line may be long. A terminal, or COLUMNS, decides the width as usual
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_PIPED_WIDTH)
err = Console(stderr=True)


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

ConfigOpt = typer.Option("examples/factory.yaml", "--config", "-c", metavar="FILE", help="Pipeline YAML (see examples/factory.yaml).")
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a config value: --set train.epochs=5 (repeatable; YAML values).")


def _line(con: Console, text: str, style: str | None = None, markup: bool = False) -> None:
    """One message (an error, a warning, a file's outcome) as one line however long: never
    wrapped at the console width (80 columns when the output is a log file or a pipe), so logs
    and grep see one line per message."""
    con.print(text, style=style, highlight=False, markup=markup, soft_wrap=True, overflow="ignore", crop=False)


def _fail(msg: str, code: int = 2) -> None:
    _line(err, f"[bold red]error:[/] {escape(msg)}", markup=True)
    raise typer.Exit(code)


def _overrides(items: Optional[list[str]]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            _fail(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:  # a value YAML cannot parse or construct: one line, not a traceback
            why = " ".join(str(getattr(e, "problem", None) or e).split())
            _fail(f"--set {key.strip()}: not a YAML value ({why}): {value!r}")
    return out


def _load(config: str, sets: Optional[list[str]] = None, first: dict[str, Any] | None = None,
          last: dict[str, Any] | None = None) -> PipelineConfig:
    """The config with its ``--set`` overrides (after ``first``'s, before ``last``'s); the state
    directory configured. A bad config is one line (exit 2)."""
    overrides = {**(first or {}), **_overrides(sets), **(last or {})}
    try:
        cfg = load_config(config, overrides)
    except ConfigError as e:
        _fail(str(e))
    from rsft.state import configure_environment

    try:
        configure_environment(cfg.state.dir)
    except ValueError as e:  # RSFT_STATE_DIR=s3://… (state.dir is checked with the config)
        _fail(str(e))
    return cfg


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows.items():
        t.add_row(k.replace("_", " "), _cell(v))
    return t


_HEADERS = {"cv_rmse": "cv rmse", "rung0_rmse": "rung 0", "cv_fits": "cv fits", "pool_rows": "pool rows", "seconds": "s",
            "holdout_rmse": "hold-out"}


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in rows[0]:
        t.add_column(_HEADERS.get(col, col))
    for r in rows:
        t.add_row(*[str(v) for v in r.values()])
    return t


@app.command()
def synth(
    config: str = ConfigOpt,
    out: Path = typer.Option(Path(".rsft/demo/raw"), help="Output directory for the raw exports."),
    night: int = typer.Option(1, min=1, help="Night number: night n adds new daily exports and a fresh target sample."),
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Generate a synthetic factory: pool exports (CSV/Parquet), maintenance logs (JSONL), target sample + hold-out."""
    from rich.progress import Progress

    from rsft.synth import write_synthetic

    cfg = _load(config, sets)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"night {night}: writing daily exports", total=None)

        def on_day(day: int, total: int) -> None:
            progress.update(task, total=total, completed=day + 1)

        try:
            summary = write_synthetic(cfg.synth, out, night=night, on_day=on_day)
        except OSError as e:  # --out under a file, not writable, disk full: one line
            _fail(f"--out {out}: cannot write: {e.strerror or e}")
    console.print(
        f"[green]synth[/] night {night}: {summary.pool_rows:,} pool rows in {len(summary.pool_files)} files, "
        f"{summary.log_rows:,} log lines, target sample {summary.target_sample_rows} rows, "
        f"hold-out {summary.target_holdout_rows} rows → {out}"
    )


@app.command()
def retrain(
    config: str = ConfigOpt,
    sets: Optional[list[str]] = SetOpt,
    json_out: Optional[Path] = typer.Option(None, "--json", "--json-out", help="Also write the run summary as JSON here."),
) -> None:
    """Run the nightly retrain flow once: ingest → prefilter → score → sample → fine-tune → register → promote."""
    cfg = _load(config, sets)
    _check_out_paths(("--json-out", json_out))  # before the night, not after a promotion
    from rsft import terminate

    terminate.describe(next_run="the next `rsft retrain` finishes the night (what this one did is kept)",
                       json_out=json_out, pipeline=cfg.name)
    with console.status("running the nightly retrain flow (Prefect, embedded)…"):
        from flows.retrain import retrain as retrain_flow
        from flows.signals import hold_in_flows

        hold_in_flows()  # SIGTERM: stop at once (status 143), even mid-flow (rsft.terminate)

        try:
            summary = retrain_flow(config_path=str(Path(config).resolve()), overrides=_overrides(sets))
        except Exception as e:  # one line for the operator; the Prefect log has the traceback
            msg = f"retrain failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if json_out:  # a scheduler reading the JSON learns why there is no summary
                json_out.write_text(strict_json({"pipeline": cfg.name, "error": msg}))
            _fail(msg + " (tracebacks: RSFT_LOG_LEVEL=DEBUG)", 1)
    shown = {_retrain_label(k): v for k, v in summary.items()
             if k not in ("prefilter_dropped", "adapt_candidates", "mlflow_ui", "mlflow_nights", "quarantine_reasons", "selection_warnings",
                          "already_decided", "failed_files", "files_mostly_quarantined", "files_unlike_earlier",
                          "fit_warnings", "model_warnings",
                          "target_rows_dropped", "target_rows_quarantined")}  # (said above or below the table)
    from rsft.pipeline.summary import fit_text

    for key in ("base_model_fit", "final_fit"):  # numbers in the JSON, one line in the table
        if isinstance(summary.get(key), dict):
            shown[_RETRAIN_LABELS[key]] = fit_text(summary[key])
    if summary.get("champion_uri") is None:  # a refused first night: nothing to serve yet
        shown[_retrain_label("champion_uri")] = "none yet — no model has passed the gate (nothing to serve)"
    if summary.get("model_version") is None:  # the search kept the champion: nothing was registered
        shown[_RETRAIN_LABELS.get("model_version", "model_version")] = "none registered (the champion stays)"
    decided = summary.get("already_decided")
    if decided:  # a re-run of a decided night: say so before a table that looks like a night's
        _line(console, f"this night was already decided (same inputs and config): {decided}", style="bold")
    console.print(_kv_table(f"rsft retrain — {cfg.name}" + (" (the recorded decision)" if decided else ""), shown))
    if summary.get("adapt_candidates"):
        cv = str(summary.get("search_cv", "grouped")).split(",")[0]
        from rsft.adapt import candidate_rows  # the summary's records are numbers: as the table shows them

        console.print(_rows_table(f"adapt: candidate recipes ({cv} CV on the target sample)",
                                  candidate_rows(summary["adapt_candidates"])))
    _night_warnings(summary)
    if cfg.sampling.mode == "rejection":  # a budget selection has no M: its acceptance is budget ÷ pool
        console.print("acceptance rate = selected ÷ prefiltered pool rows; ideal acceptance = E[min(w, M)] / M, what "
                      "rejection sampling accepts on average; clipped share = pool rows with w > M (accepted with "
                      "probability 1, so slightly under-weighted)", style="dim", highlight=False, markup=False)
    console.print(f"look at the runs: {summary['mlflow_ui']}", soft_wrap=True, highlight=False)
    if summary.get("mlflow_nights"):
        console.print(f"the nights, key figures as columns: {summary['mlflow_nights']}", soft_wrap=True, highlight=False)
    if json_out:
        json_out.write_text(strict_json(summary))


# what the retrain summary's keys mean, for the printed table (the JSON keeps the keys)
_RETRAIN_LABELS = {
    "files_new": "new files since the last night (pool and target)",
    "rows_ingested": "pool rows ingested (new files)",
    "rows_quarantined": "pool rows quarantined (new files)",
    "files_failed": "files failed (new files)",
    "rows_prefiltered_in": "pool rows prefiltered (all days)",
    "rows_kept_by_prefilter": "pool rows kept by the prefilter",
    "rows_selected": "pool rows selected",
    "train_rows": "training rows (final model)",
    "holdout_rows_left_out": "hold-out rows (and their spans) in the selection",
    "base_model_fit": "base model (first night) fit",
    "final_fit": "final model fit",
    "prefect_history": "Prefect history (old nights' flow runs)",
}


def _retrain_label(key: str) -> str:
    """The table's label of a summary key (the metric-named keys say what they are)."""
    if key.startswith("constant_"):
        return f"constant prediction {key.removeprefix('constant_')} (the target sample's mean / class shares)"
    if key.startswith("base_model_") and key != "base_model_fit":
        return f"base model {key.removeprefix('base_model_')} (the first night's starting point)"
    if key.startswith("fine_tune_"):
        return f"tonight's fine-tune {key.removeprefix('fine_tune_')} (lost to the base model)"
    return _RETRAIN_LABELS.get(key, key)


@app.command()
def ingest(
    config: str = ConfigOpt,
    sets: Optional[list[str]] = SetOpt,
    again: bool = typer.Option(False, "--again", metavar="",
                               help="Ingest the files done before again, under the contract as it is now (after a "
                                    "contract fix: their rows and quarantine are replaced, never doubled)."),
) -> None:
    """Ingest the exports the config names (incremental: already ingested files are skipped).

    Rows are judged by the contract when their file is ingested: after changing a policy (say
    naive_timestamps: assume_utc), --again ingests the files done before once more under it.
    Exit status 1 when a file failed to ingest (each named on stderr; the other files are ingested
    and a failed one is tried again next time), 2 for a bad config."""
    cfg = _load(config, sets)
    from rsft import terminate

    terminate.describe(next_run="the next `rsft ingest` ingests the files this one did not finish")
    from flows.ingest import ingest_datasets
    from flows.signals import hold_in_flows

    hold_in_flows()  # SIGTERM: stop at once (status 143), even mid-flow (rsft.terminate)
    from rsft.pipeline.data import check_files
    from rsft.pipeline.layout import ingest_sources
    from rsft.pipeline.targets import mostly_quarantined, unlike_earlier_files

    with ingest_progress():
        try:
            ingested = ingest_datasets(cfg, again=again)
            check_files(cfg, ingested)
        except Exception as e:  # one line for the operator; the Prefect log has the traceback
            _fail(f"ingest failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 1)
    t = Table(title="ingest" + (" --again: the files done before ingested again under the contract as it is now"
                                if again else ""))
    # (trial 7) --again reads the files done before too: their rows are not "new files"
    read = "rows read (new files and files ingested again)" if again else "rows read (new files)"
    for col in ("dataset", "files", "skipped (done before, or a duplicate)", read, "rows ok", "quarantined",
                "failed files"):
        t.add_column(col)
    for name, s in ingested.datasets.items():  # read = ok + quarantined (skipped files read nothing)
        t.add_row(name, str(s.files), str(s.files_skipped), f"{s.rows_ok + s.rows_quarantined:,}",
                  f"{s.rows_ok:,}", f"{s.rows_quarantined:,}", str(len(s.files_failed)))
    console.print(t)
    for name, s in ingested.datasets.items():
        if s.quarantine_reasons:
            _line(console, f"{name} quarantined: {_counts(s.quarantine_reasons)}")
    for name, s in ingested.datasets.items():  # the contract's unique key (kept rows are in no count above)
        conflicts = sum(int(f.get("key_conflicts") or 0) for f in s.file_results)
        if conflicts:
            _line(console, f"{name}: {conflicts:,} row(s) shared a unique key with different values "
                           f"(ingest.{ingest_sources(cfg)[name][1]}.unique_conflicts decided which were kept)")
    for name, s in ingested.datasets.items():  # a duplicate is counted as skipped above: name it
        for f in s.file_results:
            if f.get("status") == "duplicate":
                _line(console, f"duplicate {name}: {f['file']} skipped (same content as {f.get('duplicate_of')})", style="dim")
            elif f.get("status") == "ok" and not f.get("rows_total"):  # an outage, usually: someone should know
                _line(err, f"[yellow]warning[/] {escape(name)}: {escape(f['file'])}: 0 rows (an export without "
                           "readings: header only, or empty under empty_file: zero_rows)", markup=True)
    for name, s in ingested.datasets.items():
        if s.rows_quarantined:
            _line(console, f"{name}: quarantined rows (each with its reason, _source file and _row) in "
                           f"{Path(s.dataset) / 'quarantine'}", style="dim")
    # a file none of whose rows passed: the contract is likely wrong
    _file_warnings(mostly_quarantined(cfg, ingested), unlike_earlier_files(cfg, ingested))
    failed = 0
    for name, s in ingested.datasets.items():
        for line in s.files_failed:
            _line(err, f"[yellow]failed[/] {escape(name)}: {escape(line)}", markup=True)
            failed += 1
    if failed:
        raise typer.Exit(1)  # a cron job or CI notices; the files that did not fail are ingested


def _night_warnings(summary: dict[str, Any]) -> None:
    """The retrain's lines below its table: quarantine and prefilter counts, the files `rsft ingest`
    warns of — in its words, `--again` included (:func:`_file_warnings`) — and the selection's and
    model's warnings."""
    for what, key in (("quarantined (new files)", "quarantine_reasons"), ("prefilter dropped", "prefilter_dropped")):
        if summary.get(key):
            _line(console, f"{what}: {_counts(summary[key])}")
    _file_warnings(summary.get("files_mostly_quarantined") or [], summary.get("files_unlike_earlier") or [])
    for line in summary.get("failed_files") or []:  # as `rsft ingest` names them: left out of tonight's pool
        _line(err, f"[yellow]failed[/] {escape(line)} — left out of tonight's pool, tried again next night", markup=True)
    for which, n in (summary.get("target_rows_quarantined") or {}).items():  # the pool's are in the table
        _line(console, f"{which.replace('_', ' ')}: {n:,} rows of its new files quarantined "
                       f"(<state>/…/{which}/quarantine, each with its reason)")
    for which, d in (summary.get("target_rows_dropped") or {}).items():
        _line(console, f"{which.replace('_', ' ')}: {sum(d['dropped'].values()):,} of {d['rows']:,} rows dropped by the "
                       f"prefilter's rules ({_counts(d['dropped'])}; prefilter.targets)")
    for line in summary.get("selection_warnings") or []:
        _line(console, f"selection warning: {line}", style="yellow")
    for line in [*(summary.get("fit_warnings") or []), *(summary.get("model_warnings") or [])]:
        _line(console, f"model warning: {line}", style="yellow")


def _file_warnings(mostly_quarantined: list[str], unlike_earlier: list[str]) -> None:
    """The new files most of whose rows were quarantined (:func:`rsft.pipeline.targets.mostly_quarantined`),
    then — a contract fix does not reach the files already ingested — how to read them again, then
    the files unlike the earlier ones: `rsft ingest` and `rsft retrain` warn alike."""
    from rsft.pipeline.targets import AGAIN

    for line in mostly_quarantined:
        _line(err, f"[yellow]warning[/] {escape(line)}", markup=True)
    if any(" rows quarantined" in line for line in mostly_quarantined):  # not after a part out of range: widening lets the rest in
        _line(err, f"after changing the contract, `{AGAIN}` ingests the file(s) above again (files done are skipped "
                   "otherwise)")
    for line in unlike_earlier:  # a unit change within the contract's range
        _line(err, f"[yellow]warning[/] {escape(line)}", markup=True)


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


def _engine_lock():
    """For a command that moves aliases: with a Prefect server configured, the registry lock also
    holds its global concurrency limit (``tasks.locks``, imported by these commands only — the
    library itself never imports prefect)."""
    from rsft.tracking import registry
    from tasks.locks import registry_engine_lock

    return registry.engine_lock(registry_engine_lock())


def _client(cfg: PipelineConfig):
    from rsft.pipeline.layout import tracking_uri
    from rsft.tracking import registry

    return registry.client(tracking_uri(cfg))


def _holdout_id(row: dict) -> str:
    """A version's hold-out in the history table: the first 6 digits of its digest (the hold-out
    files' own digests: the same files, the same id); "" for a version registered without it."""
    return (row.get("holdout_digest") or "")[:6]


def _holdout_legend(rows: list[dict]) -> list[str]:
    """One line per hold-out the versions were judged on (newest first): its id, file(s) and rows,
    and the versions — which nights' hold-out figures compare with each other."""
    seen: dict[str, list[dict]] = {}
    for r in rows:
        if _holdout_id(r):
            seen.setdefault(_holdout_id(r), []).append(r)
    lines = []
    for hid, rs in seen.items():
        files, n = rs[0].get("holdout_files") or "files not recorded", rs[0].get("holdout_rows") or ""
        count = f", {int(n):,} rows" if n.isdigit() else ""
        lines.append(f"hold-out {hid}: {files}{count} — v{', v'.join(str(r['version']) for r in rs)}")
    return (["id: the hold-out each version was judged on (its figure compares only with the same id's):", *lines]
            if lines else [])


@app.command()
def history(config: str = ConfigOpt, sets: Optional[list[str]] = SetOpt) -> None:
    """Print the model's versions, aliases and promotion decisions (the audit trail)."""
    from rsft.tracking import registry

    cfg = _load(config, sets)
    rows = registry.history(_client(cfg), cfg.promotion.model_name)
    if not rows:
        console.print(f"no versions of '{cfg.promotion.model_name}' yet")
        return
    from datetime import datetime, timezone

    t = Table(title=f"{cfg.promotion.model_name}: versions (newest first; times UTC)")
    for col in ("v", "registered", "aliases", "decision", "hold-out", "id"):
        t.add_column(col, no_wrap=True)  # short facts: never cut or wrapped
    t.add_column("recipe: reason (vs the champion then)", overflow="fold", min_width=16)
    # one precision for the column: 4 significant figures, trailing zeros kept (rmse 222.0 beside
    # 210.6, not 222), more where two versions would otherwise read the same
    shown = dict(zip([i for i, r in enumerate(rows) if r["metric"]],
                     figures(*[float(r["metric"]) for r in rows if r["metric"]])))
    for i, r in enumerate(rows):
        when = datetime.fromtimestamp(r["created"] / 1000, timezone.utc).strftime("%m-%d %H:%M") if r["created"] else ""
        # each version's own metric (promotion.metric may have changed between nights)
        name = r.get("metric_name") or cfg.promotion.metric
        metric = f"{name} {shown[i]}" if r["metric"] else ""
        # a version the gate rejected that holds the champion alias got there by hand (promote
        # --force, rollback): the row says so, not only the events below
        decision = r["decision"] + (" (champion by hand: see events)" if r["decision"] == "rejected"
                                    and "champion" in r["aliases"] else "")
        t.add_row(str(r["version"]), when, ", ".join(r["aliases"]), decision, metric, _holdout_id(r),
                  f"{r['recipe']}: {r['reason']}" if r.get("recipe") else r["reason"])
    console.print(t)
    for line in _holdout_legend(rows):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    events = sorted((stamp, r["version"], text) for r in rows for stamp, text in r.get("events", []))
    if events:
        console.print("events since registration (newest first; promote, rollback):")
    for stamp, v, text in reversed(events):  # newest first, like the table
        console.print(f"{stamp[5:16].replace('T', ' ')}  v{v}  {text}", highlight=False)


@app.command()
def promote(
    version: int = typer.Option(..., "--version", help="Registered version to make champion."),
    config: str = ConfigOpt,
    force: bool = typer.Option(False, "--force", metavar="", help="Skip the guardrails and the comparison with the champion."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="Override a config value: --set data.target_holdout=holdout_2012-02.parquet "
                                                  "(the hold-out the versions are scored on; repeatable; YAML values)."),
) -> None:
    """Manually promote a version, scored against the champion on the target hold-out.

    Unless --force, the version must pass the nightly promotion gate against the champion; the output line and the
    version's event name the hold-out file(s) it was judged on."""
    from dataclasses import replace

    from rsft.pipeline import evaluate_frame, load_target
    from rsft.pipeline.targets import named_files
    from rsft.tracking import promotion, registry

    cfg = _load(config, sets)
    name = cfg.promotion.model_name
    mlc = _client(cfg)
    known = [r["version"] for r in registry.history(mlc, name)]
    if version not in known:
        _fail(f"{name} has no version {version}" + (f" (registered: {', '.join(map(str, sorted(known)))})" if known
                                                     else " (nothing registered yet)"))

    def judge(mv, current):
        try:
            holdout = load_target(cfg, "target_holdout")
        except ValueError as e:  # the hold-out did not ingest (or is not ingested yet): one line
            raise promotion.PromotionRefused(str(e)) from None
        score = lambda v: evaluate_frame(registry.load_version_model(mlc, v), holdout, cfg)  # noqa: E731
        d = registry.decide(cfg.promotion, score(mv), score(current) if current else None, holdout.height)
        # (trial 7) which hold-out judged it: the config's may be stale when the nights used --set
        return replace(d, reason=f"{d.reason} on hold-out {named_files(cfg, 'target_holdout')}")

    try:
        with _engine_lock():
            decision, _ = promotion.promote_version(mlc, state_paths(cfg.state.dir).locks, name, str(version),
                                                    None if force else judge)
    except promotion.PromotionRefused as e:
        _fail(str(e), 1)
    console.print(f"[green]{name}@champion[/] → v{version} ({decision.reason})")


@app.command()
def rollback(config: str = ConfigOpt, sets: Optional[list[str]] = SetOpt) -> None:
    """Make previous-champion the champion again; the current champion becomes previous-champion.

    Nothing is scored: `rsft promote --version N` judges a version on the hold-out."""
    from rsft.tracking import registry

    cfg = _load(config, sets)
    name = cfg.promotion.model_name
    mlc = _client(cfg)
    with _engine_lock(), registry.registry_lock(state_paths(cfg.state.dir).locks, name):
        try:
            new, old = registry.rollback(mlc, name)
        except RuntimeError as e:
            _fail(str(e), 1)
    console.print(f"[green]{name}@champion[/] → v{new} (previous-champion → v{old})")
    refused = registry.refused_by_gate(mlc, name, new)
    if refused:  # (trial 6) rolled back onto a version its night's gate refused
        _line(err, f"[yellow]warning[/] {escape(refused)}", markup=True)


@app.command()
def serve(config: str = ConfigOpt) -> None:
    """Serve the nightly-retrain and hourly ingest deployments from this process (no work pool needed)."""
    cfg = _load(config)
    from rsft import terminate

    terminate.describe(next_run="a night or ingest it was running is finished by the next one (rsft serve again, "
                                "or rsft retrain / rsft ingest)")
    from flows.serve import serve_deployments
    from flows.signals import hold_in_runner

    hold_in_runner()  # SIGTERM: stop at once (status 143), its flow runs' processes stopped too (rsft.terminate)

    serve_deployments(str(Path(config).resolve()))
    console.print(f"served {cfg.name}")


@contextmanager
def _tables():
    """rsft.tables' errors (a missing file, a value that does not parse) as one line."""
    from rsft.tables import TableError

    try:
        yield
    except TableError as e:
        _fail(str(e))


def _did_you_mean(name: str, names: list[str]) -> str:
    """"; did you mean 'x'? (columns: …)" for an unknown column name."""
    from rsft.config import did_you_mean
    from rsft.tables import other_separator

    shown = ", ".join(names[:40]) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
    sep = other_separator(names)
    hint = f"; the file looks {sep!r}-delimited (rsft reads ',' CSV)" if sep else ""
    return did_you_mean(name, names) + f" (columns: {shown}){hint}"


# rsft adapt --config: the options that are config settings too (given on the command line they
# override the config's, as --set does; --set wins), and the data options the config names itself
_ADAPT_KEYS = {"folds": ("adapt.folds",), "cv": ("adapt.cv",), "group_by": ("adapt.group_by",),
               "strategies": ("adapt.strategies",), "pool_rows": ("adapt.pool_rows",), "cv_epochs": ("adapt.epochs",),
               "epochs": ("train.epochs", "train.pretrain_epochs"), "max_steps": ("train.max_steps", "train.pretrain_max_steps"),
               "seed": ("train.seed",), "scorer": ("scorer.kind",), "model": ("model.kind",)}
_CONFIG_DATA = {"pool": ("--pool", "data.pool"), "target_sample": ("--target-sample", "data.target_sample"),
                "holdout": ("--holdout", "data.target_holdout"), "label": ("--label", "features.label"),
                "features": ("--features", "features.numeric")}


@app.command()
def adapt(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(None, "--config", "-c", metavar="FILE", help="A pipeline config: search on the pool as a night sees it — its exports ingested under the contract (new files only, into state.dir), prefiltered by its rules — with its target sample, hold-out, features, label, adapt.* and train.* (the step budget of every fit). Without it: --pool, --target-sample and --label, read as they are (no contract, no prefilter)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="With --config: override a config value, --set train.max_steps=2000 (repeatable; YAML values)."),
    pool: Optional[str] = typer.Option(None, "--pool", help="Historical pool (without --config): a CSV or Parquet file, or a directory of them (CSV and Parquet may mix), with numeric features + label; a file of a directory that cannot be read or lacks a column is skipped with a warning."),
    target_sample: Optional[str] = typer.Option(None, "--target-sample", help="Small labelled sample of the current regime (CSV/Parquet; without --config)."),
    label: Optional[str] = typer.Option(None, "--label", help="Name of the label column to predict (regression; without --config)."),
    holdout: Optional[str] = typer.Option(None, "--holdout", help="Optional target hold-out (without --config; with it, data.target_holdout): every candidate is also scored on it."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column grouping the target rows for CV (machine, batch); default: contiguous time blocks (adapt.group_by)."),
    features: Optional[str] = typer.Option(None, "--features", help="Comma-separated feature columns (without --config); default: every numeric column except label, group and ID-like columns (id, *_id, an integer *_no/*_number/serial, integers all distinct) and copies of the label (|r| ≥ 0.999 with it on the target sample), named in one line."),
    strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated candidates, cheapest first; any of: keep_champion, recalibrate, ridge_head, head_only, sample_only, random_mix, rsft, weighted (default: all but ridge_head and weighted; adapt.strategies)."),
    folds: int = typer.Option(4, "--folds", min=2, help="Grouped K-fold count (adapt.folds)."),
    cv: str = typer.Option("auto", "--cv", help="grouped: K folds of whole groups; forward: each fold trains on every earlier group (in the target sample's row order) and validates on the next block of its later half; auto: forward when every group is one contiguous run of rows (days, weeks, time blocks) and there are 2×--folds of them, else grouped (adapt.cv)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the training rows at most (train.epochs and pretrain_epochs): the warm start's pretraining, the survivor's full cross-validation round and the final retrain of the chosen recipe; default: no bound (the step budget decides), with --config the config's."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps per fit at most (train.max_steps and pretrain_max_steps; early stopping on a validation split ends fits sooner): the warm start, the survivor's full cross-validation round, the final retrain; the ranking round gets a quarter. Default: 5,000 per fine-tune, 20,000 for the warm start; with --config the config's train block."),
    cv_epochs: Optional[int] = typer.Option(None, "--cv-epochs", min=1, help="Passes per fit of the first, ranking round of cross-validation fits at most (adapt.epochs); default: a quarter of --epochs, at least 2, when --epochs is given, as in the retrain."),
    seed: int = typer.Option(0, "--seed", help="Seed for folds, sampling and training (train.seed)."),
    pool_rows: int = typer.Option(50_000, "--pool-rows", min=100, help="Pool rows the warm start and the candidates use: a seeded sample of the pool file, read in streaming passes (memory grows far slower than the file). Pool recipes gain from more (adapt.pool_rows)."),
    model: str = typer.Option("mlp", "--model", help="The warm start pretrained on the pool sample when there is no --champion: mlp (64-64), or autoencoder (an encoder first trained to reconstruct the pool rows, then a prediction head) (model.kind)."),
    scorer: str = typer.Option("gaussian", "--scorer", help="Density-ratio model behind the pool recipes' weights: gaussian, gmm or classifier (scorer.kind)."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write the candidate report as JSON here (with the feature columns and where the pool came from)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart of the candidates' CV (and hold-out) RMSE here."),
    champion: Optional[str] = typer.Option(None, "--champion", help="The model you already have, as the starting point of every candidate: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID (an rsft run) or an rsft checkpoint file; its input columns are the features. Default: with --config the config's registered champion (else its base model, as a first night), without it a model pretrained on the pool sample."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI for a models:/ or runs:/ --champion (default: $MLFLOW_TRACKING_URI, else the config's store, else this directory's .rsft/mlflow.db)."),
) -> None:
    """Try rsft on your own files: which adaptation recipe would tonight's retrain choose, and why.

    Every candidate recipe starts from the champion (--champion, or a model pretrained on a pool sample) and is scored by cross-validation on the target sample — forward-chaining folds when its groups are time blocks, grouped K-fold otherwise (--cv) — and, with --holdout, on the hold-out. With --config, on the config's pool as a night sees it (ingested under its contract, prefiltered) and with its training budget.
    """  # noqa: E501 - one line per paragraph: the help renders line breaks as they are
    if model not in ("mlp", "autoencoder"):
        _fail(f"--model must be mlp or autoencoder (got '{model}')")
    if champion and model != "mlp":
        _fail("--model chooses the warm start pretrained on the pool; with --champion the champion is the warm start")
    if cv not in ("auto", "grouped", "forward"):
        _fail(f"--cv must be auto, grouped or forward (got '{cv}')")
    if scorer not in ("gaussian", "gmm", "classifier"):
        _fail(f"--scorer must be gaussian, gmm or classifier (got '{scorer}')")
    _check_out_paths(("--json-out", json_out), ("--plot", plot))  # fail now, not after the search
    from rsft.config import Strategy

    known = get_args(Strategy)
    unknown = [x for x in (strategies or "").split(",") if x and x not in known]
    if unknown:
        _fail(f"--strategies: unknown {', '.join(unknown)} (have: {', '.join(known)})")
    if config:
        return _adapt_with_config(ctx, config, sets, champion, tracking_uri, json_out, plot)
    if sets:
        _fail("--set overrides a config's values: use it with --config")
    need = [opt for opt, v in (("--pool", pool), ("--target-sample", target_sample), ("--label", label)) if not v]
    if need:
        _fail(f"{', '.join(need)} needed (or --config FILE: the pool, target sample and label of a pipeline config)")
    _adapt_files(pool, target_sample, label, holdout, group_by, features, strategies, folds, cv, epochs, max_steps,
                 cv_epochs, seed, pool_rows, model, scorer, json_out, plot, champion, tracking_uri)


def _adapt_files(pool, target_sample, label, holdout, group_by, features, strategies, folds, cv, epochs, max_steps,
                 cv_epochs, seed, pool_rows, model, scorer, json_out, plot, champion, tracking_uri) -> None:
    """``rsft adapt --pool …``: the user's files read as they are (no contract, no prefilter)."""
    import polars as pl

    from rsft.adapt import PoolSample, run_search, time_blocks
    from rsft.config import AdaptConfig, FeaturesConfig, ModelConfig, ScorerConfig, TrainConfig
    from rsft.pipeline.training import arrays, fit_facts, pretrain
    from rsft.tables import read_table, sample_table

    acfg = AdaptConfig(
        enabled=True, folds=folds, cv=cv, epochs=cv_epochs, group_by=group_by, pool_rows=pool_rows,
        **({"strategies": strategies.split(",")} if strategies else {}),
    )
    with _tables():
        tgt_raw = read_table(target_sample)
    if label in tgt_raw.columns and (not group_by or group_by in tgt_raw.columns):  # else _adapt_columns says which
        # the folds before the pool is read (the target sample is small): its labelled rows now,
        # its complete rows below, once the features are known
        _check_cv(tgt_raw.filter(pl.col(label).is_not_null()), group_by, folds, cv, seed, acfg.time_blocks)
    start = None
    if champion:
        from rsft.tracking.registry import load_champion

        uri = tracking_uri or state_paths(None).tracking_uri
        with console.status(f"loading the champion {champion}…"):
            try:
                start, names = load_champion(champion, uri)
            except ValueError as e:
                _fail(f"--champion {e}")
        given = [c.strip() for c in (features or "").split(",") if c.strip()]
        if given and given != names:
            _fail(f"--features {','.join(given)} differ from the champion's inputs {','.join(names)} (omit --features)")
        if getattr(start, "out_features", 1) != 1:
            _fail(f"--champion {champion}: a model with {start.out_features} outputs; rsft adapt compares regression models")
        features = ",".join(names)
    skipped: list[tuple[str, str]] = []
    tgt_df, cols, files = _adapt_columns(pool, tgt_raw, label, group_by, features,
                                         "the champion's input" if champion else "--features", skipped)
    fcfg = FeaturesConfig(numeric=cols, label=label)
    incomplete = {c: n for c in cols if (n := _missing(tgt_df.filter(pl.col(label).is_not_null()), c))}
    if incomplete:  # said, not silent: the recipe rests on the rows left
        _line(console, "target sample: rows with a missing feature value are left out — " + ", ".join(
            f"{c} missing in {n:,}" for c, n in incomplete.items()), style="yellow")
    tgt_df = tgt_df.drop_nulls([*cols, label])
    _check_cv(tgt_df, group_by, folds, cv, seed, acfg.time_blocks)
    tcfg = TrainConfig(epochs=epochs, pretrain_epochs=epochs, seed=seed,
                       **({"max_steps": max_steps, "pretrain_max_steps": max_steps} if max_steps else {}))
    many = len(files) > 1 or Path(pool).is_dir()
    with console.status(f"sampling {pool_rows:,} pool rows from {pool}…"), _tables():
        pool_df, pool_total = sample_table(files if many else pool, [*cols, label], pool_rows, seed,
                                           skipped if many else None)
    _warn_skipped(skipped)
    read = len(files) - sum(f in files for f, _ in skipped)
    _line(console, f"pool: {pool_total:,} complete rows in {read} file(s) under {pool}"
          + (f" ({len(skipped)} skipped, named above)" if skipped else "")
          + " — read as they are: no ingest contract (ranges, aliases, quarantine, duplicates) and no prefilter "
            "rules were applied; --config FILE searches on the pool a night sees")
    xp, yp = arrays(pool_df, fcfg)
    xt, yt = arrays(tgt_df, fcfg)
    groups = tgt_df.get_column(group_by).to_numpy() if group_by else time_blocks(len(yt), acfg.time_blocks)
    hold = None
    if holdout:
        with _tables():
            hold = arrays(read_table(holdout).drop_nulls([*cols, label]), fcfg)
    warm_fit = None
    if start is not None:
        warm = start
    else:
        with console.status(f"pretraining the warm start on {len(yp):,} pool rows…"):
            warm, warm_fit = pretrain(ModelConfig(kind=model), xp, yp, tcfg)  # seeded: the same --seed, the same report
    with console.status(f"searching {len(acfg.strategies)} strategies × {folds} folds…"):
        try:
            _, report = run_search(acfg, tcfg, ScorerConfig(kind=scorer), cols, warm, (xt, yt, groups),
                                   PoolSample(xp, yp), hold, seed)
        except ValueError as e:
            _fail(f"{e} (the target sample has {len(yt)} complete rows)")
    report["pool_rows_sampled"], report["pool_rows_complete"] = len(yp), pool_total
    report["pool_source"] = {"kind": "files", "path": pool, "files_read": read, "contract": False, "prefilter": False,
                             "files_skipped": [{"file": f, "why": why} for f, why in skipped]}
    report["champion"] = champion or "pretrained on the pool sample"
    if warm_fit is not None:  # trained to convergence on the pool sample (its own validation split)
        report["warm_start"] = fit_facts(warm_fit)
    _show_adapt(report, len(yt), cols, label, json_out, plot)


def _adapt_with_config(ctx: typer.Context, config: str, sets: Optional[list[str]], champion: Optional[str],
                       tracking_uri: Optional[str], json_out: Optional[Path], plot: Optional[Path]) -> None:
    """``rsft adapt --config``: the search on the pool a night sees — the config's exports ingested
    under its contract (new files only, as ``rsft ingest``), its kept pool brought up to date by
    its prefilter rules (the night's own stages, :mod:`rsft.pipeline.data`), its target sample,
    hold-out, features and label, ``adapt.*``, and its ``train`` block as every fit's budget."""
    from rsft.pipeline import data
    from rsft.pipeline.adapt import adapt_inputs, adapt_stage
    from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE, night_lock, pool_dataset
    from rsft.pipeline.results import Ingested
    from rsft.pipeline.training import arrays

    def given(name: str) -> bool:  # on the command line (or from its environment variable), not the default
        source = ctx.get_parameter_source(name)  # typer's own copy of click's ParameterSource: by name
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    for name, (opt, key) in _CONFIG_DATA.items():
        if given(name):
            _fail(f"{opt}: with --config the config names it ({key}); change it with --set {key}=…")
    options: dict[str, Any] = {}  # the options given, as the config keys they set (--set wins)
    for name, keys in _ADAPT_KEYS.items():
        if given(name):
            value = ctx.params[name]
            for key in keys:
                options[key] = value.split(",") if name == "strategies" else value
    cfg = _load(config, sets, first=options, last={"adapt.enabled": True})  # the search is what this command runs
    f = cfg.features
    if f.kind == "text" or f.classes:
        _fail(f"{config}: rsft adapt compares regression models; this config's label {f.label} is "
              + ("text classes" if f.kind == "text" else "classes"))
    folds_name = "--folds" if given("folds") else "adapt.folds"
    pool_name = pool_dataset(cfg)
    with night_lock(cfg):  # not while a night of this pipeline updates the same kept pool
        with ingest_progress():
            try:  # the target sample first: its folds are checked before the pool is ingested
                targets = data.ingest_stage(cfg, only=(TARGET_SAMPLE, TARGET_HOLDOUT))
                data.check_targets(targets)
                data.check_adapt(cfg, folds_name, "--folds")
                ingested = Ingested({**targets.datasets, **data.ingest_stage(cfg, only=(pool_name,)).datasets})
                data.check_ingested(cfg, ingested)
            except (ValueError, RuntimeError) as e:
                _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        for line in ingested.failed:  # as the retrain names them: left out of the pool
            _line(err, f"[yellow]failed[/] {escape(line)} — left out of the pool, as a night leaves it out", markup=True)
        new = ingested.get(pool_name)
        if new is not None and new.quarantine_reasons:
            _line(console, f"quarantined (new files): {_counts(new.quarantine_reasons)}")
        with console.status("prefiltering the pool (new or changed days only)…"):
            prefiltered = data.prefilter_stage(cfg)
        if prefiltered.dropped:
            _line(console, f"prefilter dropped: {_counts(prefiltered.dropped)}")
        warm, who, warm_facts = _config_warm_start(cfg, prefiltered, champion, tracking_uri)
        with console.status("reading the target sample and the search's pool sample…"):
            inputs = adapt_inputs(cfg, prefiltered)
            hold = arrays(data.load_target(cfg, TARGET_HOLDOUT), f)
    (xt, yt, groups), pool_sample = inputs
    from rsft.features import feature_names

    for j, c in enumerate(feature_names(f)):  # the config names its features: kept, but said
        why = _label_copy_xy(xt[:, j], yt, f.label) if xt.ndim == 2 and j < xt.shape[1] else None
        if why:
            _line(err, f"[yellow]warning[/] features: {escape(c)}: {escape(why)} — a copy of the label, not a cause "
                       "of it: the CV and hold-out figures will look far better than any real prediction", markup=True)
    root = data.pipeline_root(cfg)
    _line(console, f"pool: {prefiltered.rows_out:,} rows — the kept pool of {config} as a night sees it: "
                   f"{prefiltered.rows_in:,} rows ingested under the contract ingest.{pool_name} into {root / pool_name}, "
                   f"{prefiltered.rows_out:,} kept by the prefilter rules; the search samples {len(pool_sample.y):,} "
                   "labelled rows of them (adapt.pool_rows)")
    _line(console, f"warm start: {who}; every fit's budget: the config's train block (max_steps {cfg.train.max_steps:,}"
                   f"{f', epochs {cfg.train.epochs}' if cfg.train.epochs else ''}; the ranking rung a quarter)")
    with console.status(f"searching {len(cfg.adapt.strategies)} strategies × {cfg.adapt.folds} folds…"):
        try:
            _, report = adapt_stage(cfg, warm, prefiltered, inputs=inputs, holdout=hold)
        except ValueError as e:
            _fail(f"{e} (the target sample has {len(yt)} labelled rows)")
    report["pool_rows_sampled"], report["pool_rows_complete"] = len(pool_sample.y), prefiltered.rows_out
    report["pool_source"] = {"kind": "config", "config": str(Path(config).resolve()), "state_dir": str(cfg.state.dir),
                             "dataset": str(root / pool_name), "contract": True, "prefilter": True,
                             "rows_ingested": prefiltered.rows_in, "rows_kept": prefiltered.rows_out,
                             "prefilter_dropped": prefiltered.dropped, "files_failed": list(ingested.failed)}
    report["champion"] = who
    report["train"] = cfg.train.model_dump(mode="json")
    if warm_facts:
        report["warm_start"] = warm_facts
    _show_adapt(report, len(yt), feature_names(f), f.label, json_out, plot, kept=True)


def _config_warm_start(cfg: PipelineConfig, prefiltered, champion: Optional[str], uri: Optional[str]):
    """(model, what it is, its fit's facts or None): ``--champion``; else the config's registered
    champion, as a night starts from it; else the config's base model (``rsft.pipeline.training.base_model``,
    pretrained on the kept pool with the train block's pretrain budget, cached as a first night's)."""
    from rsft.features import feature_names
    from rsft.pipeline.layout import state, tracking_uri as cfg_uri
    from rsft.pipeline.training import base_model
    from rsft.tracking import registry

    names = feature_names(cfg.features)
    if champion:
        with console.status(f"loading the champion {champion}…"):
            try:
                model, theirs = registry.load_champion(champion, uri or cfg_uri(cfg))
            except ValueError as e:
                _fail(f"--champion {e}")
        if theirs != names:
            _fail(f"--champion {champion}: its inputs {','.join(theirs)} are not the config's features {','.join(names)}")
        return model, champion, None
    name = cfg.promotion.model_name
    if cfg.state.tracking_uri or state(cfg).mlflow_db.exists():  # a fresh state dir has no registry yet
        with console.status(f"looking up {name}@champion…"):
            mlc = registry.client(cfg_uri(cfg))
            seen = registry.alias_version(mlc, name)
            if seen is not None:
                return registry.load_version_model(mlc, seen), f"models:/{name}/{seen.version} (the champion)", None
    with console.status("pretraining the base model on the kept pool (train.pretrain_*), as a first night…"):
        model, info = base_model(cfg, prefiltered)
    facts = {k.removeprefix("base_"): v for k, v in info.items()}
    steps = f"{facts['steps']:,} steps" if isinstance(facts.get("steps"), int) else "its steps not recorded"
    return model, f"the base model a first night trains ({'cached' if info.get('base_cached') else 'trained now'}, {steps})", facts


def _missing(df, column: str) -> int:
    """Rows of ``df`` whose ``column`` is null or NaN."""
    import polars as pl

    col = df.get_column(column)
    return int(col.is_null().sum() + (col.is_nan().sum() if col.dtype in (pl.Float32, pl.Float64) else 0))


def _adapt_columns(pool: str, target_sample, label: str, group_by: str | None, features: str | None,
                   what: str = "--features", skipped: list[tuple[str, str]] | None = None):
    """(the target sample, the feature columns, the pool files to read) of ``rsft adapt``: the
    label and group columns exist, the features are numeric in both the pool and the target
    sample; else one line. ``target_sample``: its path, or the frame already read.

    A directory of exports: a file that cannot be read, lacks a feature or the label, or holds
    one as text is left out and appended to ``skipped`` with why (one bad export does not stop
    the others; the caller warns); the default features are the target sample's numeric columns
    that at least half of the pool's readable files hold as numbers. A single pool file: any of
    these is one error line."""
    from rsft.tables import file_schemas, lacks, merge_schemas, read_table

    skipped = [] if skipped is None else skipped
    text_in: dict[str, str] = {}
    with _tables():
        tgt_df = read_table(target_sample) if isinstance(target_sample, str) else target_sample
        schemas, unreadable = file_schemas(pool)
    skipped += unreadable
    if not schemas:
        _fail(f"--pool {pool}: no file could be read ({unreadable[0][0]}: {unreadable[0][1]})")
    pool_schema = merge_schemas(schemas, text_in)
    for name, names in (("pool", list(pool_schema)), ("target sample", tgt_df.columns)):
        if label not in names:
            _fail(f"{name} has no column '{label}'{_did_you_mean(label, names)}")
    if group_by and group_by not in tgt_df.columns:
        _fail(f"target sample has no column '{group_by}' for --group-by{_did_you_mean(group_by, tgt_df.columns)}")
    if features:
        cols = [c.strip() for c in features.split(",") if c.strip()]
    else:  # every numeric column both have, less identifiers (numbers that name a row, not measure it)
        numeric_in = {c: sum(c in sc and sc[c].is_numeric() for sc in schemas.values()) for c in pool_schema}
        cols = [c for c, t in tgt_df.schema.items() if t.is_numeric() and c not in (label, group_by) and c in pool_schema]
        rare = {c: numeric_in[c] for c in cols if len(schemas) > 1 and 2 * numeric_in[c] < len(schemas)}
        cols = [c for c in cols if c not in rare]
        if rare:  # a column few exports have: using it would skip most of them
            _line(console, "features: left out " + ", ".join(f"{c} (numbers in only {n} of {len(schemas)} pool files)"
                                                             for c, n in rare.items())
                  + " — name them in --features to use them (the files without them are then skipped)")
        left = {c: why for c in cols if (why := _id_like(tgt_df, c))}
        cols = [c for c in cols if c not in left]
        if left:
            _line(console, "features: left out ID-like " + ", ".join(f"{c} ({why})" for c, why in left.items())
                  + " — name them in --features to use them")
        # a column missing in most target rows: every row without it would be dropped (trial 6:
        # wind_gust, missing in 80 % of rows, left 95 of 300 target rows and a fifth of the pool)
        import polars as pl

        labelled = tgt_df.filter(pl.col(label).is_not_null())
        sparse = {c: n for c in cols if 2 * (n := _missing(labelled, c)) > labelled.height}
        cols = [c for c in cols if c not in sparse]
        if sparse:
            _line(console, "features: left out mostly missing " + ", ".join(
                f"{c} ({n:,} of {labelled.height:,} target rows)" for c, n in sparse.items())
                  + " — name them in --features to use them (rows missing a feature are dropped)")
        # (trial 7) a copy of the label in other units (ac_w beside ac_pu = ac_w / 3400): the model
        # would read the answer off it (CV RMSE 0.0089), and nothing said so
        copies = {c: why for c in cols if (why := _label_copy(labelled, c, label))}
        cols = [c for c in cols if c not in copies]
        if copies:
            _line(console, "features: left out " + ", ".join(f"{c} ({why})" for c, why in copies.items())
                  + " — a copy of the label, not a cause of it; name it in --features to use it anyway")
    if not cols:
        _fail("no numeric feature columns shared by pool and target sample; pass --features")
    clash = [c for c in cols if c in (label, group_by)]
    if clash:
        _fail(f"{what}: {', '.join(clash)} is the label or --group-by column, not a feature")
    missing = [c for c in cols if c not in pool_schema or c not in tgt_df.columns]
    if missing:
        _fail(f"{what}: {', '.join(missing)} not in both the pool and the target sample")
    if features:  # asked for by name: kept, but said
        import polars as pl

        labelled = tgt_df.filter(pl.col(label).is_not_null())
        for c in cols:
            why = _label_copy(labelled, c, label)
            if why:
                _line(err, f"[yellow]warning[/] {escape(what)} {escape(c)}: {escape(why)} — a copy of the label, "
                           "not a cause of it: the CV and hold-out figures will look far better than any real "
                           "prediction", markup=True)
    files = list(schemas)
    if len(schemas) > 1 or Path(pool).is_dir():  # a directory: leave out the files that cannot give the columns
        why_not = {f: why for f, sc in schemas.items() if (why := lacks(f, sc, [*cols, label]))}
        skipped += list(why_not.items())
        files = [f for f in files if f not in why_not]
        if not files:
            _fail(f"--pool {pool}: no file has every column as numbers ({skipped[0][0]}: {skipped[0][1]})")
        pool_schema = merge_schemas({f: schemas[f] for f in files})
    for name, schema in (("pool", pool_schema), ("target sample", tgt_df.schema)):
        text = [f"{c} ({schema[c]}" + (f", in {text_in[c]}" if name == "pool" and c in text_in else "") + ")"
                for c in [*cols, label] if not schema[c].is_numeric()]
        if text:
            _fail(f"{name}: not numeric: {', '.join(text)} (features and label must be numbers)")
    return tgt_df, cols, files


def _warn_skipped(skipped: list[tuple[str, str]]) -> None:
    """One warning line per pool file left out (``rsft adapt --pool <dir>``), naming it and why."""
    for f, why in skipped:
        _line(err, f"[yellow]warning[/] pool file skipped: {escape(f)}: {escape(why)}", markup=True)


def _check_cv(df, group_by: str | None, folds: int, cv: str, seed: int, blocks: int) -> None:
    """``--folds`` against the target sample's groups, before the pool is read (one line)."""
    from rsft.adapt import check_folds, time_blocks

    groups = df.get_column(group_by).to_numpy() if group_by else time_blocks(df.height, blocks)
    try:
        check_folds(groups, folds, cv, seed, folds_name="--folds", cv_name="--cv",
                    what=f" of {group_by}" if group_by else f" ({df.height} rows in {min(blocks, df.height)} time blocks)")
    except ValueError as e:
        _fail(str(e))


# a column named like an identifier: its last word (or an "id" first word), snake_case or camelCase.
# any numeric type for id/uuid/guid (pandas writes an integer column with gaps as floats); the
# others only as integers ("reynolds_number" is a measurement, "batch_number" is not)
_ID_NAMES = frozenset({"id", "uuid", "guid"})
_ID_NUMBER_NAMES = frozenset({"no", "nr", "number", "serial"})
ID_DISTINCT_MIN_ROWS = 100  # fewer rows: an integer measurement may be all distinct by chance


def _id_like(df, col: str) -> str | None:
    """Why the target sample's numeric column ``col`` looks like an identifier (a row,
    batch or machine number) rather than a measurement, or None: ``id``, ``*_id``, ``*Id``; an
    integer ``*_no``/``*_nr``/``*_number``/``serial``; or integers all distinct over at
    least ``ID_DISTINCT_MIN_ROWS`` rows. A model would learn the numbering, not the process."""
    import re

    words = re.findall(r"[a-z]+|[0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", col).lower())
    integer = df.schema[col].is_integer()
    if words and (words[-1] in _ID_NAMES or words[0] == "id" or (integer and words[-1] in _ID_NUMBER_NAMES)):
        return "named like an ID"
    values = df.get_column(col).drop_nulls()
    if integer and len(values) >= ID_DISTINCT_MIN_ROWS and values.n_unique() == len(values):
        return f"integers, all {len(values):,} distinct"
    return None


LABEL_COPY_R = 0.999  # |Pearson r| with the label at or above this: the label in other units (or nearly)
LABEL_COPY_MIN_ROWS = 10  # fewer labelled rows: a high r may be chance


def _label_copy(df, col: str, label: str) -> str | None:
    """Why the numeric column ``col`` looks like the label itself (a linear function of it, up to
    rounding) on the target sample's labelled rows ``df``, or None: ``|r| ≥ LABEL_COPY_R`` over at
    least ``LABEL_COPY_MIN_ROWS`` rows where both are finite."""
    if not (df.schema[col].is_numeric() and df.schema[label].is_numeric()):  # text: said elsewhere, in one line
        return None
    both = df.select(col, label).drop_nulls().cast(float).to_numpy()
    return _label_copy_xy(both[:, 0], both[:, 1], label)


def _label_copy_xy(x, y, label: str) -> str | None:
    """:func:`_label_copy` of a feature's values ``x`` beside the label's ``y`` (numpy arrays)."""
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < LABEL_COPY_MIN_ROWS or x.std() == 0 or y.std() == 0:
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    if not abs(r) >= LABEL_COPY_R:
        return None
    return f"|r| {abs(r):.4f} with the label {label} over {len(x):,} target rows"


def _check_out_paths(*given: tuple[str, Optional[Path]]) -> None:
    """One line, before any work, for an output file whose folder does not exist."""
    for opt, path in given:
        if path is not None and not Path(path).resolve().parent.is_dir():
            _fail(f"{opt} {path}: the folder {Path(path).resolve().parent} does not exist")


def _show_adapt(report: dict[str, Any], target_rows: int, features: list[str], label: str, json_out: Optional[Path],
                plot: Optional[Path], kept: bool = False) -> None:
    """The feature columns, the candidate table, the choice and why; the JSON report (with the
    features and the label) and the chart when asked."""
    from rsft.adapt import candidate_records, candidate_table, plot_candidates

    report["features"], report["label"] = list(features), label
    # the retrain's --json-out records too (trial 7: a consumer sorting candidates[].cv_loss_mean
    # picks an eliminated one, whose short rung-0 figure can read lower: its cv_rmse is null here)
    report["adapt_candidates"] = candidate_records(report)
    units = report["units"]
    _line(console, f"features ({len(features)}): {', '.join(features)}; label: {label}")
    console.print(_rows_table(f"adapt: {label} from {len(features)} features, {target_rows} target rows, {report['groups']} groups, "
                              f"{report['folds']} {report.get('cv', 'grouped')} folds, "
                              f"pool sample {report['pool_rows_sampled']:,} of {report['pool_rows_complete']:,} "
                              + ("kept rows" if kept else "complete rows")
                              + f", search {report['search_seconds']:.2f} s ({report['fits']} models "
                              f"trained; {len(units)} units, {sum(len(u) > 1 for u in units)} of them model stacks)",
                              candidate_table(report)))
    console.print(f"chosen: [bold]{report['chosen']}[/] — {report['why']}")
    if json_out:
        json_out.write_text(strict_json(report, default=float))
    if plot:
        console.print(f"plot: {plot_candidates(report, str(plot))}")


@app.command()
def gc(
    config: str = ConfigOpt,
    sets: Optional[list[str]] = SetOpt,
    keep_nights: Optional[int] = typer.Option(None, "--keep-nights", min=1, help="Override state.keep_nights (the config's; 7 unless set): the newest nights' runs kept."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Only say what would be removed (a flag: no value)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write what was kept and removed as JSON here."),
) -> None:
    """Remove old nights' intermediates no registered version needs, saying what is kept and why.

    Runs, replaced kept-pool days and old manifests go, and older nights' Prefect flow runs (the
    database then vacuumed); ingested data and MLflow are never touched."""
    from rsft.pipeline import gc as gc_mod
    from rsft.pipeline.layout import night_lock, state
    from rsft.state import disk_usage, human_bytes

    cfg = _load(config, sets)
    _check_out_paths(("--json", json_out))
    before = disk_usage(state(cfg), cfg.name)["total"]
    try:
        with night_lock(cfg):  # not while a night of this pipeline runs on this state dir
            rep = gc_mod.collect(cfg, keep_nights=keep_nights, dry_run=dry_run)
            history = _prune_history(keep_nights or cfg.state.keep_nights, dry_run)
    except ValueError as e:
        _fail(str(e))
    root = state(cfg).root

    def rel(p: str) -> str:
        return os.path.relpath(p, root)

    def written(p: str) -> str:  # a night's folder is named by its key: when it was written tells which
        from datetime import datetime, timezone

        try:
            return datetime.fromtimestamp(os.path.getmtime(p), timezone.utc).strftime("%Y-%m-%d %H:%M")
        except OSError:  # removed already
            return ""

    t = Table(title=f"rsft gc — {cfg.name}: kept", title_justify="left")
    for col in ("path", "written (UTC)", "size", "why"):
        t.add_column(col, overflow="fold")
    for i in rep.kept:
        t.add_row(rel(i.path), written(i.path), human_bytes(i.bytes), i.why)
    if rep.kept:
        console.print(t)
    groups: dict[str, list] = {}
    for i in rep.removed:
        groups.setdefault(i.why, []).append(i)
    verb = "would remove" if dry_run else "removed"
    for why, items in groups.items():
        _line(console, f"{verb} {len(items)} ({human_bytes(sum(i.bytes for i in items))}): {why}")
        for i in items[:5]:
            _line(console, f"    {rel(i.path)}" + (f"  (written {w})" if (w := written(i.path)) else ""))
        if len(items) > 5:
            _line(console, f"    … and {len(items) - 5} more")
    _show_history(history, verb)
    after = disk_usage(state(cfg), cfg.name)["total"]
    _line(console, f"state dir {root}: {human_bytes(before)} before, {human_bytes(after)} after"
          + (f" ({human_bytes(rep.bytes_removed)} would be freed)" if dry_run else "")
          + "; ingested data and MLflow (registered models) are never removed")
    if json_out:
        json_out.write_text(strict_json({**rep.to_dict(), "prefect_history": history.to_dict() if history else None}))


def _prune_history(keep_nights: int, dry_run: bool):
    """The Prefect history's retention (flows/history.py; rsft never imports prefect itself),
    None when Prefect cannot be reached (said on one line: the state dir's gc is done)."""
    from flows.history import prune

    try:
        return prune(keep_nights, dry_run=dry_run)
    except Exception as e:  # noqa: BLE001 - e.g. a Prefect server that does not answer
        _line(err, f"[yellow]warning[/] Prefect history not pruned: {type(e).__name__}: "
                   f"{escape(str(e).splitlines()[0] if str(e) else '')}", markup=True)
        return None


def _show_history(rep, verb: str) -> None:
    """What the Prefect history's retention deleted (or would), and the database before and after."""
    from rsft.state import human_bytes

    if rep is None:
        return
    kept = (f"the newest {len(rep.kept_days)} night(s) ({rep.kept_days[-1]} to {rep.kept_days[0]})"
            if rep.kept_days else "no night yet")
    _line(console, f"{verb} {len(rep.nights)} old night(s) of Prefect history — {len(rep.runs)} flow run(s) with their "
                   f"task runs, states, logs and {'artifacts' if rep.dry_run else f'{rep.artifacts} artifact(s)'}; "
                   f"kept: {kept}"
          + (f"; {rep.logs_pending} run(s)' logs still being deleted by Prefect" if rep.logs_pending else ""))
    for n in rep.nights[:5]:
        _line(console, f"    {n['name']}  ({n['state'].lower()}, {n['started']} UTC; {n['subflows']} sub-flow runs)")
    if len(rep.nights) > 5:
        _line(console, f"    … and {len(rep.nights) - 5} more")
    if rep.db is None:
        _line(console, "Prefect database: a Prefect server's (PREFECT_API_URL): pruned through its API; its space is "
                       "the server's (its db_vacuum service, the database's own vacuum)")
    elif rep.bytes_before is not None:
        _line(console, f"Prefect database {rep.db}: {human_bytes(rep.bytes_before)} before"
              + (f", {human_bytes(rep.bytes_after)} after ({rep.vacuum})" if rep.bytes_after is not None else ""))


@app.command("check-config")
def check_config(config: str = ConfigOpt, sets: Optional[list[str]] = SetOpt) -> None:
    """Validate a config file and print it resolved (unknown keys and wrong types are errors).

    A data path it names that does not exist (yet) is a warning line on stderr."""
    import glob as globs

    cfg = _load(config, sets)
    from rsft.pipeline.layout import cfg_yaml

    console.print(f"# data paths below are relative to the config file's directory: {cfg.base_dir}", highlight=False,
                  markup=False, soft_wrap=True)
    # the synthetic factory's settings only for a config that names them (the demo's): a plant's
    # config reads its own exports, and `rsft synth` is the only reader of that section
    console.print(cfg_yaml(cfg, synth="synth" in cfg.model_fields_set), highlight=False)
    named = [("data.target_sample", cfg.data.target_sample), ("data.target_holdout", cfg.data.target_holdout),
             *[("data.pool", p) for p in cfg.data.pool], *[("data.logs", p) for p in cfg.data.logs]]
    for key, p in named:  # local paths only (an s3:// source is checked when it is read)
        if p and "://" not in p and not globs.glob(cfg.resolve(p), recursive=True):
            _line(err, f"[yellow]warning[/] {key}: {escape(cfg.resolve(p))}: no such file or directory (yet)", markup=True)
    for c in (cfg.ingest.sensors, cfg.ingest.logs):  # an unquoted 3,14 would be two fields
        if c is not None and c.format == "table" and c.decimal_comma and c.delimiter == "," and not c.sniff_delimiter:
            _line(err, f"[yellow]warning[/] {c.setting('decimal_comma')} with {c.setting('delimiter')} ',': an unquoted "
                       "decimal comma splits a value into two fields — exports with decimal commas use ';'", markup=True)
    t = cfg.train  # a step cap below the minimum: every fit ends before it may stop early (trial 8)
    for cap, value in (("max_steps", t.max_steps), ("pretrain_max_steps", t.pretrain_max_steps)):
        if value < t.min_steps:
            _line(err, f"[yellow]warning[/] train.{cap} {value:,} is below train.min_steps {t.min_steps:,}: every fit "
                       f"it caps stops at {value:,} steps, before early stopping may end it — raise train.{cap} or "
                       "lower train.min_steps", markup=True)
    # `key:` reads as enforced; `unique:` is what enforces one at ingest, a prefilter duplicate rule
    # on the same columns in the kept pool (the demo's)
    deduped = {frozenset(r.columns) for r in cfg.prefilter.rules if r.kind == "duplicate"}
    for c in (cfg.ingest.sensors, cfg.ingest.logs):
        if c is not None and c.key and not c.unique and frozenset(c.key) not in deduped:
            key = f"[{', '.join(c.key)}]"
            _line(err, f"[yellow]warning[/] {c.setting('key')} {escape(key)} is not enforced at ingest (a re-export under "
                       f"another file name is ingested again); set {c.setting('unique')}: {escape(key)} to enforce it",
                  markup=True)
    _check_holdout_spans(cfg)
    sensors = cfg.ingest.sensors
    if sensors is not None:  # a feature the contract lets be missing, that no rule removes: the night's scorer would refuse it
        covered = {c for r in cfg.prefilter.rules if r.kind == "not_null" for c in r.columns}
        loose = [c.name for c in sensors.columns if c.nullable and c.name in cfg.features.numeric and c.name not in covered]
        if loose:
            _line(err, f"[yellow]warning[/] features.numeric: {', '.join(loose)} may be missing (nullable in "
                       f"ingest.sensors) and no not_null prefilter rule removes such rows; the scorer cannot use "
                       f"them — add {escape('{kind: not_null, columns: [' + ', '.join(loose) + ']}')}", markup=True)


def _check_holdout_spans(cfg: PipelineConfig) -> None:
    """check-config's line when ``train.holdout_exclusion: span`` cannot draw spans: the pool's
    contract lacks ``features.group`` or ``time_column``, or the time is text — the fine-tune
    then leaves out the hold-out's own rows only, and the pool rows beside them stay."""
    from rsft.pipeline.layout import pool_dataset

    f, c = cfg.features, getattr(cfg.ingest, pool_dataset(cfg), None)
    if cfg.train.holdout_exclusion != "span" or c is None:
        return
    types = {col.name: col.dtype for col in c.columns}
    wrong = [f"features.{k} '{v}' ({'not a column' if v not in types else 'text'})"
             for k, v in (("group", f.group), ("time_column", f.time_column))
             if v not in types or (k == "time_column" and types[v] not in ("timestamp", "float64", "int64"))]
    if wrong:
        _line(err, f"[yellow]warning[/] train.holdout_exclusion span needs a machine and a time column in "
                   f"{c.setting('columns')}: {escape(', '.join(wrong))} — the fine-tune leaves out the hold-out's "
                   "own rows only; the pool readings beside them stay in training", markup=True)


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
        _line(err, f"error: {e}")
        sys.exit(2)

