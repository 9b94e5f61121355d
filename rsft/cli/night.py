"""The night's commands: ``synth`` (the demo factory), ``retrain`` (one night), ``ingest`` and
``serve`` (the deployments), with the lines they print below their tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from rsft.cli.common import (ConfigOpt, SetOpt, check_out_paths, console, err, fail, ingest_progress, kv_table,
                             load_pipeline, parse_sets, rows_table, say)
from rsft.readable import counts as _counts
from rsft.readable import strict_json


def synth(
    config: str = ConfigOpt,
    out: Path = typer.Option(Path(".rsft/demo/raw"), help="Output directory for the raw exports."),
    night: int = typer.Option(1, min=1, help="Night number: night n adds new daily exports and a fresh target sample."),
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Generate a synthetic factory: pool exports (CSV/Parquet), maintenance logs (JSONL), target sample + hold-out."""
    from rich.progress import Progress

    from rsft.synth import write_synthetic

    cfg = load_pipeline(config, sets)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"night {night}: writing daily exports", total=None)

        def on_day(day: int, total: int) -> None:
            progress.update(task, total=total, completed=day + 1)

        try:
            summary = write_synthetic(cfg.synth, out, night=night, on_day=on_day)
        except OSError as e:  # --out under a file, not writable, disk full: one line
            fail(f"--out {out}: cannot write: {e.strerror or e}")
    console.print(
        f"[green]synth[/] night {night}: {summary.pool_rows:,} pool rows in {len(summary.pool_files)} files, "
        f"{summary.log_rows:,} log lines, target sample {summary.target_sample_rows} rows, "
        f"hold-out {summary.target_holdout_rows} rows → {out}"
    )


def retrain(
    config: str = ConfigOpt,
    sets: Optional[list[str]] = SetOpt,
    json_out: Optional[Path] = typer.Option(None, "--json", "--json-out", help="Also write the run summary as JSON here."),
) -> None:
    """Run the nightly retrain flow once: ingest → prefilter → score → sample → fine-tune → register → promote."""
    cfg = load_pipeline(config, sets)
    check_out_paths(("--json-out", json_out))  # before the night, not after a promotion
    from rsft import terminate

    terminate.describe(next_run="the next `rsft retrain` finishes the night (what this one did is kept)",
                       json_out=json_out, pipeline=cfg.name)
    with console.status("running the nightly retrain flow (Prefect, embedded)…"):
        from flows.retrain import retrain as retrain_flow
        from flows.signals import hold_in_flows

        hold_in_flows()  # SIGTERM: stop at once (status 143), even mid-flow (rsft.terminate)

        try:
            summary = retrain_flow(config_path=str(Path(config).resolve()), overrides=parse_sets(sets))
        except Exception as e:  # one line for the operator; the Prefect log has the traceback
            msg = f"retrain failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if json_out:  # a scheduler reading the JSON learns why there is no summary
                json_out.write_text(strict_json({"pipeline": cfg.name, "error": msg}))
            fail(msg + " (tracebacks: RSFT_LOG_LEVEL=DEBUG)", 1)
    shown = {_retrain_label(k): v for k, v in summary.items()
             if k not in ("prefilter_dropped", "adapt_candidates", "mlflow_ui", "mlflow_nights", "quarantine_reasons", "selection_warnings",
                          "already_decided", "failed_files", "files_mostly_quarantined", "files_unlike_earlier",
                          "fit_warnings", "model_warnings", "warnings", "warnings_compared_with", "warnings_unchanged",
                          "target_rows_dropped", "target_rows_quarantined",
                          "state_disk_bytes", "gc_figures", "prefect_history_figures")}  # (said above or below the table; JSON figures of a line)
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
        say(console, f"this night was already decided (same inputs and config): {decided}", style="bold")
    console.print(kv_table(f"rsft retrain — {cfg.name}" + (" (the recorded decision)" if decided else ""), shown))
    if summary.get("adapt_candidates"):
        cv = str(summary.get("search_cv", "grouped")).split(",")[0]
        from rsft.adapt import candidate_rows  # the summary's records are numbers: as the table shows them

        console.print(rows_table(f"adapt: candidate recipes ({cv} CV on the target sample)",
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
    if key.startswith("linear_"):
        return f"linear reference {key.removeprefix('linear_')} (fitted on the target sample alone)"
    if key.startswith("base_model_") and key != "base_model_fit":
        return f"base model {key.removeprefix('base_model_')} (the first night's starting point)"
    if key.startswith("fine_tune_"):
        return f"tonight's fine-tune {key.removeprefix('fine_tune_')} (lost to the base model)"
    return _RETRAIN_LABELS.get(key, key)


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
    cfg = load_pipeline(config, sets)
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
            fail(f"ingest failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 1)
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
            say(console, f"{name} quarantined: {_counts(s.quarantine_reasons)}")
    for name, s in ingested.datasets.items():  # the contract's unique key (kept rows are in no count above)
        conflicts = sum(int(f.get("key_conflicts") or 0) for f in s.file_results)
        if conflicts:
            say(console, f"{name}: {conflicts:,} row(s) shared a unique key with different values "
                         f"(ingest.{ingest_sources(cfg)[name][1]}.unique_conflicts decided which were kept)")
    for name, s in ingested.datasets.items():  # a duplicate is counted as skipped above: name it
        for f in s.file_results:
            if f.get("status") == "duplicate":
                say(console, f"duplicate {name}: {f['file']} skipped (same content as {f.get('duplicate_of')})", style="dim")
            elif f.get("status") == "ok" and not f.get("rows_total"):
                if getattr(cfg.ingest, ingest_sources(cfg)[name][1]).format == "jsonl":  # a quiet day's log: normal
                    say(console, f"{name}: {f['file']}: no lines (no events in this export)", style="dim")
                else:  # a sensor export without readings is an outage, usually: someone should know
                    say(err, f"[yellow]warning[/] {escape(name)}: {escape(f['file'])}: 0 rows (an export without "
                             "readings: header only, or empty under empty_file: zero_rows)", markup=True)
    for name, s in ingested.datasets.items():
        if s.rows_quarantined:
            say(console, f"{name}: quarantined rows (each with its reason, _source file and _row) in "
                         f"{Path(s.dataset) / 'quarantine'}", style="dim")
    # a file none of whose rows passed: the contract is likely wrong (lines alike but for the file: one)
    from rsft.pipeline.warning_history import grouped

    _file_warnings(grouped("files_mostly_quarantined", mostly_quarantined(cfg, ingested)),
                   grouped("files_unlike_earlier", unlike_earlier_files(cfg, ingested)))
    failed = 0
    for name, s in ingested.datasets.items():
        for line in s.files_failed:
            say(err, f"[yellow]failed[/] {escape(name)}: {escape(line)}", markup=True)
            failed += 1
    if failed:
        raise typer.Exit(1)  # a cron job or CI notices; the files that did not fail are ingested


def _night_warnings(summary: dict[str, Any]) -> None:
    """The retrain's lines below its table: quarantine and prefilter counts, the files `rsft ingest`
    warns of — in its words, `--again` included (:func:`_file_warnings`) — and the selection's and
    model's warnings — those given on earlier nights as one line (rsft.pipeline.warning_history)."""
    for what, key in (("quarantined (new files)", "quarantine_reasons"), ("prefilter dropped", "prefilter_dropped")):
        if summary.get(key):
            say(console, f"{what}: {_counts(summary[key])}")
    from rsft.pipeline.warning_history import in_full  # those given on earlier nights: one line at the end

    _file_warnings(in_full(summary, "files_mostly_quarantined"), in_full(summary, "files_unlike_earlier"))
    for line in in_full(summary, "failed_files"):  # as `rsft ingest` names them: left out of tonight's pool
        say(err, f"[yellow]failed[/] {escape(line)} — left out of tonight's pool, tried again next night", markup=True)
    for line in in_full(summary, "target_rows_quarantined") + in_full(summary, "target_rows_dropped"):  # the pool's: the table
        say(console, line)
    for line in in_full(summary, "selection_warnings"):
        say(console, f"selection warning: {line}", style="yellow")
    for kind in ("fit", "model"):
        for line in in_full(summary, f"{kind}_warnings"):
            say(console, f"{kind} warning: {line}", style="yellow")
    if summary.get("warnings_unchanged"):
        say(console, summary["warnings_unchanged"], style="dim")


def _file_warnings(mostly_quarantined: list[str], unlike_earlier: list[str]) -> None:
    """The new files most of whose rows were quarantined (:func:`rsft.pipeline.targets.mostly_quarantined`),
    then — a contract fix does not reach the files already ingested — how to read them again, then
    the files unlike the earlier ones: `rsft ingest` and `rsft retrain` warn alike."""
    from rsft.pipeline.targets import AGAIN

    for line in mostly_quarantined:
        say(err, f"[yellow]warning[/] {escape(line)}", markup=True)
    if any(" rows quarantined" in line for line in mostly_quarantined):  # not after a part out of range: widening lets the rest in
        say(err, f"after changing the contract, `{AGAIN}` ingests the file(s) above again (files done are skipped "
                 "otherwise)")
    for line in unlike_earlier:  # a unit change within the contract's range
        say(err, f"[yellow]warning[/] {escape(line)}", markup=True)


def serve(config: str = ConfigOpt) -> None:
    """Serve the nightly-retrain and hourly ingest deployments from this process (no work pool needed)."""
    cfg = load_pipeline(config)
    from rsft import terminate

    terminate.describe(next_run="a night or ingest it was running is finished by the next one (rsft serve again, "
                                "or rsft retrain / rsft ingest)")
    from flows.serve import serve_deployments
    from flows.signals import hold_in_runner

    hold_in_runner()  # SIGTERM: stop at once (status 143), its flow runs' processes stopped too (rsft.terminate)

    serve_deployments(str(Path(config).resolve()))
    console.print(f"served {cfg.name}")
