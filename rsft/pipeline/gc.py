"""``rsft gc``: bounded state. Removes the intermediates of old nights that no registered
version needs, and says what it keeps and why.

Never touched: the ingested datasets (the history itself), MLflow's entries (every registered
version, its run, metrics, tags, scorer and report), Prefect's home, locks. Of MLflow's files only
the models of rejected versions older than the newest ``keep_nights`` go, never one holding an
alias (:mod:`rsft.tracking.retention`: the version stays, tagged ``rsft.model_removed``).
(Prefect's history — old nights' flow runs in its database — has its own retention with the same
``keep_nights``, in ``flows/history.py``: rsft never imports prefect; ``rsft gc`` and the Prefect
night run both.)

Under ``data/<pipeline>/``:

* ``runs/<key>/`` — a night's scorer, sampling chunks, selection, report, training checkpoints.
  The newest ``state.keep_nights`` runs are kept whole. Of an older run, a version that holds an
  alias (champion, previous-champion, …: it serves, or is the rollback target) keeps what it was
  trained on and judged by — ``selected.parquet``, ``scorer.pt``, ``report/`` — and the rest
  (chunks, checkpoints, challenger files) goes. Any other run goes entirely: its registered
  version (a rejected or retired challenger) keeps its MLflow run — scorer, report, config and
  the digests of the datasets it came from; the model too, unless it was rejected (below) — but
  not the rows themselves.
* ``prefiltered/`` — manifests are kept when current, among the newest ``keep_nights``, or named
  by the lineage (``3_kept``) of a version with an alias; day files are kept when a kept
  manifest lists them (they are shared: one changed day adds one file); context frames when a
  kept manifest's day records name them; each seed's pool-sample reservoir named by its index;
  anything else, other rule sets' datasets no longer used and old single-file pools
  (``prefiltered/<key>.parquet``) go. Names are compared, not resolved paths. ``rsft gc``
  (``sweep=True``) lists each directory once and reads the kept manifests (O(days)); the night's
  retention (``sweep=False``) reads instead the journals of the manifests it keeps and removes
  (``journal/<version>.json``: what each manifest added and replaced; :func:`rsft.keptpool.journal_plan`),
  so its cost does not grow with the history; without journals (an older rsft) it sweeps. Files
  no manifest ever listed (a killed night's) are found only by the sweep.
* ``base/`` — pretrained base models (first-night warm starts) other than the newest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsft.config import PipelineConfig
from rsft.fsio import atomic_write_text
from rsft.keptpool import journal_path, journal_plan, listed, reservoir_parts
from rsft.state import size_of

LINEAGE_FILES = ("selected.parquet", "scorer.pt", "report")


@dataclass(frozen=True)
class Item:
    path: str
    bytes: int
    why: str


@dataclass
class GcReport:
    kept: list[Item] = field(default_factory=list)
    removed: list[Item] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)  # rejected versions whose model went (rsft.tracking.retention.Freed)
    dry_run: bool = False

    @property
    def bytes_removed(self) -> int:
        """The state dir's intermediates removed (the models' bytes are :attr:`model_bytes_removed`)."""
        return sum(i.bytes for i in self.removed)

    @property
    def model_bytes_removed(self) -> int:
        return sum(f.bytes for f in self.models)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "bytes_removed": self.bytes_removed,
                "model_bytes_removed": self.model_bytes_removed, "models_removed": [vars(f) for f in self.models],
                "kept": [vars(i) for i in self.kept], "removed": [vars(i) for i in self.removed]}


def _registry(cfg: PipelineConfig):
    """The MLflow client of the pipeline's registry, or None when its embedded store does not exist
    yet (nothing registered: gc creates no store)."""
    from rsft.pipeline.layout import state, tracking_uri
    from rsft.tracking.registry import client

    uri = tracking_uri(cfg)
    if uri.startswith("sqlite") and not state(cfg).mlflow_db.exists():
        return None
    return client(uri)


def registered_lineage(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """The registered versions holding an alias, with their runs' dataset inputs (local paths):
    what gc keeps rows for (a constant number of run reads, however many versions exist)."""
    from rsft.tracking.lineage import version_lineage

    mlc = _registry(cfg)
    return [] if mlc is None else version_lineage(mlc, cfg.promotion.model_name, aliased_only=True)


def rejected_models(cfg: PipelineConfig, keep_nights: int, *, dry_run: bool, finish: bool) -> list[Any]:
    """The rejected versions older than the newest ``keep_nights`` whose models go
    (:func:`rsft.tracking.retention.free_rejected`: the versions and their history stay)."""
    from rsft.state import state_paths
    from rsft.tracking.retention import free_rejected

    mlc = _registry(cfg)
    return [] if mlc is None else free_rejected(mlc, cfg.promotion.model_name, keep_nights,
                                                state_paths(cfg.state.dir).locks, dry_run=dry_run, finish=finish)


def _newest(paths: list[Path], n: int) -> list[Path]:
    return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)[:n]


def _versions(labels: list[str]) -> str:
    return ", ".join(labels)


def _entries(directory: Path) -> dict[str, os.DirEntry]:
    """A directory's entries by name (none when it does not exist); temp files (dot names) left out."""
    try:
        with os.scandir(directory) as it:
            return {e.name: e for e in it if not e.name.startswith(".")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _sweep_pool_dir(d: Path, kept_m: list[Path], gone_m: list[Path], remove, rep: GcReport, *, dry_run: bool,
                    sizes: bool) -> None:
    """A kept pool dir's day files and context frames that no kept manifest lists go: every
    directory listed once, names compared (no resolving)."""
    lst: set[str] = set()
    for m in kept_m:
        lst |= listed(json.loads(m.read_text())["days"])
    kept_bytes = kept_files = 0
    for day_name, day in sorted(_entries(d / "days").items()):
        names = _entries(Path(day.path))
        gone = 0
        for name, e in sorted(names.items()):
            if os.path.join("days", day_name, name) in lst:
                kept_files += 1
                kept_bytes += e.stat().st_size if sizes else 0
            elif name.endswith(".parquet"):
                remove(Path(e.path), "a day's result replaced since (its rows, context or rules changed)")
                gone += 1
        if not dry_run and gone == len(names):
            try:
                os.rmdir(day.path)
            except OSError:  # a temp file of a running night
                pass
    for name in sorted(_entries(d / "ctx")):
        if name.endswith(".parquet") and f"ctx/{name}" not in lst:
            remove(d / "ctx" / name, "context of a replaced day")
    named = {m.stem for m in kept_m + gone_m}  # (the removed manifests' journals went with them)
    for name in sorted(_entries(d / "journal")):  # journals without a manifest (a killed night's)
        if name.endswith(".json") and name[:-len(".json")] not in named:
            remove(d / "journal" / name, "the journal of a removed manifest")
    if kept_files:
        rep.kept.append(Item(str(d / "days"), kept_bytes, f"{kept_files} day files listed by the kept manifests"))


def collect(cfg: PipelineConfig, *, keep_nights: int | None = None, dry_run: bool = False,
            lineage: list[dict[str, Any]] | None = None, sizes: bool = True, sweep: bool = True,
            models: bool = True) -> GcReport:
    """Remove (or, with ``dry_run``, list) what the retention policy lets go; see the module doc.
    ``sizes=False`` leaves the bytes of what is kept uncounted (the night's retention run only
    reports what it removed). ``sweep=False`` (the night's retention) finds a kept pool's old
    day files and context frames from the journals of the manifests it removes, not by listing
    its directories: what it costs does not grow with the history (files no manifest ever
    listed — a killed night's — are left to ``rsft gc``, which sweeps). ``models``: the registry's
    rejected versions older than the newest ``keep_nights`` lose their models too
    (:mod:`rsft.tracking.retention`; a model a killed removal left only ``sweep`` finishes)."""
    from rsft.pipeline.data import kept_pool_dir
    from rsft.pipeline.layout import pipeline_root

    n = cfg.state.keep_nights if keep_nights is None else keep_nights
    if n < 1:
        raise ValueError("state.keep_nights must be >= 1 (tonight's run is always kept)")
    root = pipeline_root(cfg)
    lineage = registered_lineage(cfg) if lineage is None else lineage
    rep = GcReport(dry_run=dry_run)

    def label(v: dict[str, Any]) -> str:
        return f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v["aliases"] else "")

    def need(*names: str) -> dict[str, list[dict[str, Any]]]:
        """Paths a version's lineage names under any of ``names`` (the current step name first,
        then the name versions registered before the ordered lineage used)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for v in lineage:
            p = next((v["datasets"][k] for k in names if v["datasets"].get(k)), None)
            if p:
                out.setdefault(str(Path(p).resolve()), []).append(v)
        return out

    def remove(p: Path, why: str) -> None:
        rep.removed.append(Item(str(p), size_of(p), why))
        if not dry_run:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def keep(p: Path, why: str) -> None:
        rep.kept.append(Item(str(p), size_of(p) if sizes else 0, why))

    # ---- runs/<key>/
    selected_by = need("4_selected", "selected")
    runs = [p for p in (root / "runs").glob("*") if p.is_dir()] if (root / "runs").is_dir() else []
    recent = set(_newest(runs, n))
    for run in sorted(runs, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        users = selected_by.get(str((run / "selected.parquet").resolve()), [])
        serving = [v for v in users if v["aliases"]]
        if run in recent:
            keep(run, f"one of the newest {n} nights (state.keep_nights)"
                 + (f"; lineage of {_versions([label(v) for v in users])}" if users else ""))
        elif serving:
            keep(run, f"lineage of {_versions([label(v) for v in serving])}: kept {', '.join(LINEAGE_FILES)}")
            night = run.stat()  # its mtime is its night's (the order above): removing files in it must not renew it
            for p in sorted(run.iterdir()):
                if p.name not in LINEAGE_FILES:
                    remove(p, f"intermediate of an old night (lineage of {label(serving[0])} keeps {', '.join(LINEAGE_FILES)})")
            if not dry_run:  # (else the next retention counts it among the newest nights, one night's folder less)
                os.utime(run, ns=(night.st_atime_ns, night.st_mtime_ns))
        else:
            why = ("old night; no version holding an alias was trained on it (a registered version keeps its MLflow "
                   "run: model, scorer, report, config, the datasets' digests)")
            remove(run, why)

    # ---- prefiltered/
    pre = root / "prefiltered"
    if pre.is_dir():
        # a manifest pins one day file per night it is older than (its last day, computed before
        # the next day's context existed): kept for the versions that serve or are rollback targets
        pool_by = {p: [v for v in vs if v["aliases"]] for p, vs in need("3_kept", "pool-prefiltered").items()}
        pool_by = {p: vs for p, vs in pool_by.items() if vs}
        current_dir = kept_pool_dir(cfg)
        manifests = [m for d in pre.glob("*/versions") for m in d.glob("*.json")]
        recent_m = set(_newest(manifests, n))
        current = set()
        for d in pre.glob("*/current.json"):
            try:
                current.add((d.parent / "versions" / f"{json.loads(d.read_text())['version']}.json").resolve())
            except (OSError, ValueError, KeyError):
                pass
        kept_m: list[Path] = []
        removed_m: list[Path] = []
        for m in sorted(manifests):
            users = pool_by.get(str(m.resolve()), [])
            reasons = []
            if m.resolve() in current and m.parent.parent == current_dir:
                reasons.append("the current kept pool")
            if m in recent_m:
                reasons.append(f"one of the newest {n} nights")
            if users:
                reasons.append(f"lineage of {_versions([label(v) for v in users])}")
            if reasons:
                kept_m.append(m)
                keep(m, "; ".join(reasons))
            else:
                removed_m.append(m)
        for d in sorted(p for p in pre.iterdir()):
            if d.is_file():  # a single-file pool of an older rsft (prefiltered/<key>.parquet + .json)
                stem = d.name.split(".")[0]
                users = [v for p, vs in pool_by.items() if Path(p).name.split(".")[0] == stem for v in vs]
                if d.name.startswith("."):
                    continue
                if users:
                    keep(d, f"lineage of {_versions([label(v) for v in users])}")
                else:
                    remove(d, "a whole-pool copy of an old night (the kept pool is now one dataset)")
                continue
            kept_here = [m for m in kept_m if m.parent.parent == d]
            if not kept_here:
                remove(d, "another rule set's kept pool, no longer current nor named by a registered version")
                continue
            gone_here = [m for m in removed_m if m.parent.parent == d]
            # what removing the old manifests frees, from their journals (a night's few changed
            # days); None when they cannot tell (an older rsft's manifests): the directories are listed
            plan = journal_plan(d, [m.stem for m in kept_here + gone_here], {m.stem for m in kept_here})
            for m in gone_here:
                remove(m, "an old night's kept-pool manifest no version with an alias names")
                if journal_path(d, m.stem).exists():
                    remove(journal_path(d, m.stem), "the journal of a removed manifest")
            if plan is not None and not dry_run:
                for v, j in plan["journals"].items():  # relative to the nearest kept manifest now
                    atomic_write_text(journal_path(d, v), json.dumps(j))
            if plan is not None and not sweep:
                for rel in plan["remove"]:
                    path = d / rel
                    if not path.exists():  # removed meanwhile (a sweep)
                        continue
                    remove(path, "context of a replaced day" if rel.startswith("ctx/")
                           else "a day's result replaced since (its rows, context or rules changed)")
                    if not dry_run and rel.startswith("days/"):
                        try:
                            os.rmdir(path.parent)  # the day's last file
                        except OSError:  # other files (or a temp file of a running night)
                            pass
            else:
                _sweep_pool_dir(d, kept_here, gone_here, remove, rep, dry_run=dry_run, sizes=sizes)
            # pool samples: each seed's reservoir named by its index; anything else (an older
            # reservoir, the per-day sample files of an older rsft) goes
            samples = _entries(d / "samples")
            named = set()
            for name in samples:
                if name.startswith("pool-") and name.endswith(".json"):
                    try:
                        named.update(p["file"] for p in reservoir_parts(json.loads(Path(samples[name].path).read_text())))
                    except (OSError, ValueError, KeyError):
                        pass
            for name in sorted(samples):
                if name.endswith(".parquet") and name not in named:
                    remove(d / "samples" / name, "pool-sample rows superseded by tonight's reservoir (or of an older layout)")

    # ---- base/ (pretrained base models: the newest is the one a first night would reuse)
    base = root / "base"
    if base.is_dir():
        models = [p for p in base.iterdir() if p.is_file() and not p.name.startswith(".")]
        for p in _newest(models, 1):
            keep(p, "the newest pretrained base model")
        for p in set(models) - set(_newest(models, 1)):
            remove(p, "an older pretrained base model (first-night warm start of another config)")
    if models:  # ---- MLflow: rejected versions' models (the versions, their decisions and metrics stay)
        rep.models = rejected_models(cfg, n, dry_run=dry_run, finish=sweep)
    return rep


def after_night(cfg: PipelineConfig) -> tuple[str, dict[str, int] | None]:
    """The retention run at the end of a night (``state.gc_after_night``): one line for the night's
    summary, and its figures for the JSON (None when it failed). A failure is reported, never
    raised: the night's model is already registered."""
    from rsft.state import human_bytes

    try:
        rep = collect(cfg, sizes=False, sweep=False)
    except Exception as e:  # noqa: BLE001 - retention must not fail a finished night
        logging.getLogger(__name__).warning("gc after the night failed: %s", e, exc_info=True)
        return f"failed: {type(e).__name__}: {e}", None
    models = (f"; the models of {len(rep.models)} old rejected version(s), {human_bytes(rep.model_bytes_removed)}"
              if rep.models else "")
    figures = {"keep_nights": cfg.state.keep_nights, "removed": len(rep.removed), "bytes_removed": rep.bytes_removed,
               "model_versions_removed": len(rep.models), "model_bytes_removed": rep.model_bytes_removed}
    return (f"removed {len(rep.removed)} old intermediate(s), {human_bytes(rep.bytes_removed)}{models} "
            f"(state.keep_nights={cfg.state.keep_nights}; `rsft gc --dry-run` lists what is kept and why)", figures)
