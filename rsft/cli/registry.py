"""The registry's commands: ``history`` (the versions and decisions, with the hold-out each was
judged on), ``promote`` and ``rollback`` (the champion moved by hand)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from rsft.cli.common import ConfigOpt, SetOpt, console, err, fail, load_pipeline, say
from rsft.config import PipelineConfig
from rsft.readable import figures
from rsft.state import state_paths


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


def _by_holdout(rows: list[dict]) -> dict[str, list[dict]]:
    seen: dict[str, list[dict]] = {}
    for r in rows:
        if _holdout_id(r):
            seen.setdefault(_holdout_id(r), []).append(r)
    return seen


def _holdout_legend(rows: list[dict]) -> list[str]:
    """One line per hold-out the versions were judged on (newest first): its id, file(s) and rows,
    and the versions — which nights' hold-out figures compare with each other. Where no two
    versions shared one (a new draw every night: trial 10's 15 lines all named ``holdout.csv``),
    one line says so instead, and the table has no id column (:func:`_ids_shown`)."""
    seen = _by_holdout(rows)
    if seen and not _ids_shown(rows):
        files = sorted({r.get("holdout_files") or "files not recorded" for rs in seen.values() for r in rs})
        n = [int(r["holdout_rows"]) for rs in seen.values() for r in rs if (r.get("holdout_rows") or "").isdigit()]
        count = (f", {min(n):,} rows" if min(n) == max(n) else f", {min(n):,}–{max(n):,} rows") if n else ""
        return [f"hold-out: a new one each night ({', '.join(files)}{count}): a version's figure compares only "
                "with the champion's in its reason"]
    lines = []
    for hid, rs in seen.items():
        files, n = rs[0].get("holdout_files") or "files not recorded", rs[0].get("holdout_rows") or ""
        count = f", {int(n):,} rows" if n.isdigit() else ""
        lines.append(f"hold-out {hid}: {files}{count} — v{', v'.join(str(r['version']) for r in rs)}")
    return (["id: the hold-out each version was judged on (its figure compares only with the same id's):", *lines]
            if lines else [])


def _ids_shown(rows: list[dict]) -> bool:
    """The id column says something only where two versions shown were judged on the same hold-out."""
    return any(len(rs) > 1 for rs in _by_holdout(rows).values())


def history(config: str = ConfigOpt, sets: Optional[list[str]] = SetOpt,
            limit: int = typer.Option(20, "--limit", "-n", min=0, metavar="N",
                                      help="Show the newest N versions (and any older one holding an alias) "
                                           "and the newest N events; 0 = all.")) -> None:
    """Print the model's versions, aliases and promotion decisions (the audit trail)."""
    from rsft.tracking import registry

    cfg = load_pipeline(config, sets)
    every = registry.history(_client(cfg), cfg.promotion.model_name)
    if not every:
        console.print(f"no versions of '{cfg.promotion.model_name}' yet")
        return
    # a year of nights is hundreds of versions (trial 9: 192 lines after 54 nights): the newest, and
    # whatever serves or is the rollback target
    rows = [r for i, r in enumerate(every) if not limit or i < limit or r["aliases"]]
    from datetime import datetime, timezone

    # one precision for the column: 4 significant figures, trailing zeros kept (rmse 222.0 beside
    # 210.6, not 222), more where two versions would otherwise read the same
    shown = dict(zip([i for i, r in enumerate(rows) if r["metric"]],
                     figures(*[float(r["metric"]) for r in rows if r["metric"]])))
    cells, reasons = [], []
    for i, r in enumerate(rows):
        when = datetime.fromtimestamp(r["created"] / 1000, timezone.utc).strftime("%m-%d %H:%M") if r["created"] else ""
        # each version's own metric (promotion.metric may have changed between nights)
        name = r.get("metric_name") or cfg.promotion.metric
        metric = f"{name} {shown[i]}" if r["metric"] else ""
        # a version the gate rejected that holds the champion alias got there by hand (promote
        # --force, rollback): the row says so, not only the events below
        decision = r["decision"] + (" (champion by hand: see events)" if r["decision"] == "rejected"
                                    and "champion" in r["aliases"] else "")
        if r.get("model_removed"):  # rsft gc freed it (an old rejected version): the row stays, the model is gone
            decision += " (model removed)"
        cells.append({"v": str(r["version"]), "registered": when, "data to": r.get("data_to", ""),
                      "aliases": ", ".join(r["aliases"]), "decision": decision, "hold-out": metric,
                      "id": _holdout_id(r)})
        reasons.append(f"{r['recipe']}: {r['reason']}" if r.get("recipe") else r["reason"])
    # columns that say something: "data to" where a version has it (a backfill's nights, registered
    # on one day), the hold-out id where two versions shared a hold-out
    columns = [c for c in cells[0] if (c != "data to" or any(x[c] for x in cells)) and (c != "id" or _ids_shown(rows))]
    # the short facts are never cut or wrapped; the reason gets the rest of the line, or, where that
    # would be too narrow to read (trial 10: a zero-width column at 100 columns), lines of its own
    def width(cols: list[str]) -> int:
        return sum(max(len(c), *(len(x[c]) for x in cells)) + 3 for c in cols) + 1

    if width(columns) > console.width and "data to" in columns:  # the night's date says which night
        columns.remove("registered")
    inline = console.width - width(columns) >= 30
    t = Table(title=f"{cfg.promotion.model_name}: versions (newest first; times UTC)")
    for col in columns:
        t.add_column(col, no_wrap=True)
    if inline:
        t.add_column("recipe: reason (vs the champion then)", overflow="fold", min_width=16)
    for x, why in zip(cells, reasons):
        t.add_row(*(x[c] for c in columns), *([why] if inline else []))
    console.print(t)
    if not inline:  # one line a version, wrapped under its reason (a hanging indent), not under "v15"
        console.print("recipe: reason (vs the champion then):")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for x, why in zip(cells, reasons):
            grid.add_row(f"v{x['v']}", escape(why))
        console.print(grid, highlight=False)
    for line in _holdout_legend(rows):
        console.print(line, highlight=False, markup=False)
    events = sorted((stamp, r["version"], text) for r in every for stamp, text in r.get("events", []))
    if events:
        console.print("events (newest first): nights that kept the champion, promotions and rollbacks by hand:")
    grid = Table.grid(padding=(0, 2))  # wrapped under the event's text, as the reasons are
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for stamp, v, text in list(reversed(events))[:limit or None]:  # newest first, like the table
        grid.add_row(stamp[5:16].replace("T", " "), f"v{v}", escape(text))
    if events:
        console.print(grid, highlight=False)
    hidden = (len(every) - len(rows), max(0, len(events) - limit) if limit else 0)
    if any(hidden):
        console.print(f"… {hidden[0]} older version(s) and {hidden[1]} older event(s) not shown: "
                      f"--limit {limit * 5} or --limit 0 (all)", highlight=False, style="dim")


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

    cfg = load_pipeline(config, sets)
    name = cfg.promotion.model_name
    mlc = _client(cfg)
    known = [r["version"] for r in registry.history(mlc, name)]
    if version not in known:
        fail(f"{name} has no version {version}" + (f" (registered: {', '.join(map(str, sorted(known)))})" if known
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
        fail(str(e), 1)
    console.print(f"[green]{name}@champion[/] → v{version} ({decision.reason})")


def rollback(config: str = ConfigOpt, sets: Optional[list[str]] = SetOpt) -> None:
    """Make previous-champion the champion again; the current champion becomes previous-champion.

    Nothing is scored: `rsft promote --version N` judges a version on the hold-out."""
    from rsft.tracking import registry

    cfg = load_pipeline(config, sets)
    name = cfg.promotion.model_name
    mlc = _client(cfg)
    with _engine_lock(), registry.registry_lock(state_paths(cfg.state.dir).locks, name):
        try:
            new, old = registry.rollback(mlc, name)
        except RuntimeError as e:
            fail(str(e), 1)
    console.print(f"[green]{name}@champion[/] → v{new} (previous-champion → v{old})")
    refused = registry.refused_by_gate(mlc, name, new)
    if refused:  # (trial 6) rolled back onto a version its night's gate refused
        say(err, f"[yellow]warning[/] {escape(refused)}", markup=True)
