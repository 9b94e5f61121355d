"""The state directory's and the config's commands: ``gc`` (old nights' intermediates and Prefect
history removed, saying what is kept and why) and ``check-config``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from rsft.cli.common import ConfigOpt, SetOpt, check_out_paths, console, err, fail, load_pipeline, say
from rsft.config import PipelineConfig
from rsft.readable import strict_json


def gc(
    config: str = ConfigOpt,
    sets: Optional[list[str]] = SetOpt,
    keep_nights: Optional[int] = typer.Option(None, "--keep-nights", min=1, help="Override state.keep_nights (the config's; 7 unless set): the newest nights' runs kept."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Only say what would be removed (a flag: no value)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write what was kept and removed as JSON here."),
) -> None:
    """Remove old nights' intermediates no registered version needs, saying what is kept and why.

    Runs, replaced kept-pool days and old manifests go, the models of rejected versions older than
    the newest nights (the versions, decisions and metrics stay), and older nights' Prefect flow
    runs (the database then vacuumed); ingested data and the registry's entries are never touched."""
    from rsft.pipeline import gc as gc_mod
    from rsft.pipeline.layout import night_lock, state
    from rsft.state import disk_usage, human_bytes

    cfg = load_pipeline(config, sets)
    check_out_paths(("--json", json_out))
    before = disk_usage(state(cfg), cfg.name)["total"]
    from rsft.cli.registry import _engine_lock

    try:  # (the registry's cross-machine lock too: rejected versions' models are tagged under it, as promotions check)
        with night_lock(cfg), _engine_lock():  # not while a night of this pipeline runs on this state dir
            rep = gc_mod.collect(cfg, keep_nights=keep_nights, dry_run=dry_run)
            history = _prune_history(cfg, keep_nights or cfg.state.keep_nights, dry_run)
    except ValueError as e:
        fail(str(e))
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
        say(console, f"{verb} {len(items)} ({human_bytes(sum(i.bytes for i in items))}): {why}")
        for i in items[:5]:
            say(console, f"    {rel(i.path)}" + (f"  (written {w})" if (w := written(i.path)) else ""))
        if len(items) > 5:
            say(console, f"    … and {len(items) - 5} more")
    _show_models(rep, cfg.promotion.model_name, verb)
    _show_history(history, verb)
    after = disk_usage(state(cfg), cfg.name)["total"]
    say(console, f"state dir {root}: {human_bytes(before)} before, {human_bytes(after)} after"
        + (f" ({human_bytes(rep.bytes_removed + rep.model_bytes_removed)} would be freed)" if dry_run else "")
        + "; ingested data and the registry's versions, runs and metrics are never removed")
    if json_out:
        json_out.write_text(strict_json({**rep.to_dict(), "state_dir_bytes_before": before, "state_dir_bytes_after": after,
                                         "prefect_history": history.to_dict() if history else None}))


def _show_models(rep, name: str, verb: str) -> None:
    """The rejected versions whose models went (or would): how many, the bytes, which versions."""
    from rsft.state import human_bytes

    if not rep.models:
        return
    say(console, f"{verb} the models of {len(rep.models)} rejected version(s) of {name} "
                 f"({human_bytes(rep.model_bytes_removed)}): {rep.models[0].why}")
    say(console, "    " + ", ".join(f"v{f.version} ({human_bytes(f.bytes)})" for f in rep.models[:20])
        + (f" … and {len(rep.models) - 20} more" if len(rep.models) > 20 else ""))


def _prune_history(cfg: PipelineConfig, keep_nights: int, dry_run: bool):
    """The Prefect history's retention of this pipeline's runs (flows/history.py; rsft never
    imports prefect itself), None when Prefect cannot be reached (said on one line: the state dir's gc is done)."""
    from flows.history import prune

    try:
        return prune(keep_nights, pipeline=cfg, dry_run=dry_run)
    except Exception as e:  # noqa: BLE001 - e.g. a Prefect server that does not answer
        say(err, f"[yellow]warning[/] Prefect history not pruned: {type(e).__name__}: "
                 f"{escape(str(e).splitlines()[0] if str(e) else '')}", markup=True)
        return None


def _show_history(rep, verb: str) -> None:
    """What the Prefect history's retention deleted (or would), and the database before and after."""
    from rsft.state import human_bytes

    if rep is None:
        return
    kept = (f"the newest {len(rep.kept_nights)} night(s) (started {rep.kept_nights[-1]['started']} to "
            f"{rep.kept_nights[0]['started']} UTC) and the runs since" if rep.kept_nights else "no night yet")
    say(console, f"{verb} {len(rep.nights)} old top-level run(s) of Prefect history (nights, ingests) — {len(rep.runs)} "
             f"flow run(s) with their task runs, states, logs and "
             f"{'artifacts' if rep.dry_run else f'{rep.artifacts} artifact(s)'}; kept: {kept}"
        + (f"; {rep.logs_pending} run(s)' logs still being deleted by Prefect" if rep.logs_pending else ""))
    if rep.db is not None:
        say(console, f"{verb} {rep.events:,} Prefect event(s) of those runs and of runs already gone"
            + (f" ({rep.events_note})" if rep.events_note else ""))
    for n in rep.nights[:5]:
        say(console, f"    {n['name']}  ({n['state'].lower()}, {n['started']} UTC; {n['subflows']} sub-flow runs)")
    if len(rep.nights) > 5:
        say(console, f"    … and {len(rep.nights) - 5} more")
    if rep.db is None:
        say(console, "Prefect database: a Prefect server's (PREFECT_API_URL): pruned through its API; its space is "
                     "the server's (its db_vacuum service, the database's own vacuum)")
    elif rep.bytes_before is not None:
        say(console, f"Prefect database {rep.db}: {human_bytes(rep.bytes_before)} before"
            + (f", {human_bytes(rep.bytes_after)} after ({rep.vacuum})" if rep.bytes_after is not None else ""))


def check_config(config: str = ConfigOpt, sets: Optional[list[str]] = SetOpt) -> None:
    """Validate a config file and print it resolved (unknown keys and wrong types are errors).

    A data path it names that does not exist (yet) is a warning line on stderr."""
    import glob as globs

    cfg = load_pipeline(config, sets)
    from rsft.pipeline.data import holdout_span_problems
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
            say(err, f"[yellow]warning[/] {key}: {escape(cfg.resolve(p))}: no such file or directory (yet)", markup=True)
    for c in (cfg.ingest.sensors, cfg.ingest.logs):  # an unquoted 3,14 would be two fields
        if c is not None and c.format == "table" and c.decimal_comma and c.delimiter == "," and not c.sniff_delimiter:
            say(err, f"[yellow]warning[/] {c.setting('decimal_comma')} with {c.setting('delimiter')} ',': an unquoted "
                     "decimal comma splits a value into two fields — exports with decimal commas use ';'", markup=True)
    t = cfg.train  # a step cap below the minimum: every fit ends before it may stop early (trial 8)
    for cap, value in (("max_steps", t.max_steps), ("pretrain_max_steps", t.pretrain_max_steps)):
        if value < t.min_steps:
            say(err, f"[yellow]warning[/] train.{cap} {value:,} is below train.min_steps {t.min_steps:,}: every fit "
                     f"it caps stops at {value:,} steps, before early stopping may end it — raise train.{cap} or "
                     "lower train.min_steps", markup=True)
    # `key:` reads as enforced; `unique:` is what enforces one at ingest, a prefilter duplicate rule
    # on the same columns in the kept pool (the demo's)
    deduped = {frozenset(r.columns) for r in cfg.prefilter.rules if r.kind == "duplicate"}
    for c in (cfg.ingest.sensors, cfg.ingest.logs):
        if c is not None and c.key and not c.unique and frozenset(c.key) not in deduped:
            key = f"[{', '.join(c.key)}]"
            say(err, f"[yellow]warning[/] {c.setting('key')} {escape(key)} is not enforced at ingest (a re-export under "
                     f"another file name is ingested again); set {c.setting('unique')}: {escape(key)} to enforce it",
                markup=True)
    for w in holdout_span_problems(cfg):  # train.holdout_exclusion: span that cannot draw or compare spans
        say(err, f"[yellow]warning[/] {escape(w)}", markup=True)
    sensors = cfg.ingest.sensors
    if sensors is not None:  # a feature the contract lets be missing, that no rule removes: the night's scorer would refuse it
        covered = {c for r in cfg.prefilter.rules if r.kind == "not_null" for c in r.columns}
        loose = [c.name for c in sensors.columns if c.nullable and c.name in cfg.features.numeric and c.name not in covered]
        if loose:
            say(err, f"[yellow]warning[/] features.numeric: {', '.join(loose)} may be missing (nullable in "
                     f"ingest.sensors) and no not_null prefilter rule removes such rows; the scorer cannot use "
                     f"them — add {escape('{kind: not_null, columns: [' + ', '.join(loose) + ']}')}", markup=True)
