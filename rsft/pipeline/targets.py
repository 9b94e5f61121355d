"""The rows a night uses from its ingested datasets, and one line for why there are none.

The target sample and the hold-out are the rows of the files ``data.target_sample`` /
``data.target_holdout`` name *now* (:func:`named_entries`): their datasets keep every file ever
ingested into them (ingest is incremental; a file is never re-read), but a new regime's sample
replaces the old one — pointing the config at a new file must not add to the old file's rows in
training, nor judge the challenger on old + new hold-out rows. The files are found as the ingest
found them (:func:`rsft.ingest.list_sources` over the configured path, directory or glob), by the
path each manifest entry records; pointing the config back at an earlier file uses its rows again
without re-ingesting it. The pool is every file ever ingested (it accumulates by design).

When a dataset has no usable rows, :func:`no_rows_why` says why in one line: the files were not
found, or every row was quarantined — how many, of which files, for which reasons, the contract
setting that would accept them, and ``rsft ingest --again`` (a file once ingested is skipped, so
a fixed contract alone does not bring its rows back).
"""

from __future__ import annotations

import json
import os
import re

import polars as pl

from rsft.config import PipelineConfig
from rsft.pipeline.layout import TARGET_HOLDOUT, TARGET_SAMPLE, ingest_sources, pipeline_root, pool_dataset
from rsft.pipeline.results import Ingested

AGAIN = "rsft ingest --again"  # the way out once the contract is fixed (files done before are skipped)


def configured(cfg: PipelineConfig, name: str) -> tuple[str, list[str]]:
    """(the config key, its value(s) as written) of a dataset's sources: ``data.target_sample`` …"""
    if name == TARGET_SAMPLE:
        return "data.target_sample", [cfg.data.target_sample]
    if name == TARGET_HOLDOUT:
        return "data.target_holdout", [cfg.data.target_holdout]
    return (f"data.{'logs' if name == 'logs' else 'pool'}", list(cfg.data.logs if name == "logs" else cfg.data.pool))


def named_entries(cfg: PipelineConfig, name: str) -> dict[str, dict]:
    """digest -> manifest entry of each ingested file the config names now for dataset ``name``.

    A file is matched by the path its entry records (the ingest's own listing of the sources); a
    listed file without an entry of its own that was left out as byte-identical to an ingested one
    (``file_dedupe: skip_identical``) stands for that one's rows (the digest cache of the plan)."""
    from rsft.ingest import list_sources
    from rsft.ingest.manifest import _manifest
    from rsft.ingest.plan import DIGEST_CACHE

    ds = pipeline_root(cfg) / name
    done = _manifest(ds)
    by_path = {e.get("path"): d for d, e in done.items()}
    try:
        cache = json.loads((ds / DIGEST_CACHE).read_text())
    except (OSError, ValueError):
        cache = {}
    out = {}
    for path in list_sources(ingest_sources(cfg)[name][0]):
        d = by_path.get(path) or (cache.get(path) or [None, None, None])[2]
        if d in done:
            out[d] = done[d]
    return out


def scan_named(cfg: PipelineConfig, name: str) -> pl.LazyFrame:
    """The ingested rows of the files the config names now for ``name``; a ``ValueError`` with
    :func:`no_rows_why`'s line when they have none."""
    from rsft.ingest.manifest import data_parts

    ds = pipeline_root(cfg) / name
    entries = named_entries(cfg, name)
    why = no_rows_why(cfg, name, entries)
    if why:
        raise ValueError(why)
    parts = sorted({p for e in entries.values() for p in data_parts(ds, e)})
    if not parts:
        raise ValueError(f"{_what(name)}: the data parts of {_files(entries)} are missing from {ds / 'data'} "
                         f"(removed by hand?): `{AGAIN}` writes them again")
    return pl.scan_parquet(parts, hive_partitioning=False)  # keys are stored in the files too


def named_digest(cfg: PipelineConfig, name: str) -> str:
    """:func:`rsft.ingest.manifest.dataset_digest` of the files the config names now (stage keys,
    lineage and tags: a sample pointed back at an earlier file is that night's sample again)."""
    from rsft.ingest.manifest import entries_digest

    return entries_digest(named_entries(cfg, name))


def named_files(cfg: PipelineConfig, name: str) -> str:
    """The file(s) the config names now for dataset ``name``, as ingested (their names, at most
    three; the configured path's name before any is): what a decision was judged on."""
    entries = named_entries(cfg, name)
    return _files(entries) if entries else os.path.basename((configured(cfg, name)[1] or [""])[0])


def _what(name: str) -> str:
    return {TARGET_SAMPLE: "target sample", TARGET_HOLDOUT: "target hold-out"}.get(name, "pool")


def _files(entries: dict[str, dict], most: int = 3) -> str:
    names = sorted(e.get("name") or os.path.basename(e.get("path", "")) for e in entries.values())
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def no_rows_why(cfg: PipelineConfig, name: str, entries: dict[str, dict] | None = None) -> str | None:
    """One line when the files of dataset ``name`` (the named ones for the target sample and
    hold-out, every ingested file for the pool) hold no row that passed the contract; None when
    they do. It names the configured path that matched nothing or was not found, or how many rows
    of which files were quarantined with the top reasons, the contract setting that would accept
    them (:func:`setting_for`) and ``rsft ingest --again``."""
    from rsft.ingest import list_sources, quarantine_reasons
    from rsft.ingest.manifest import _manifest

    ds = pipeline_root(cfg) / name
    if entries is None:
        entries = _manifest(ds) if name == pool_dataset(cfg) else named_entries(cfg, name)
    if sum(int(e.get("rows_ok") or 0) for e in entries.values()):
        return None
    key, values = configured(cfg, name)
    if not entries:
        missing = []
        for v in values:
            found = list_sources(cfg.resolve(v))
            if not found:
                missing.append(f"{v}: matched no files")
            elif all("://" not in f and not os.path.exists(f) for f in found):
                missing.append(f"{v}: not found")
        if missing:
            return f"{key}: {'; '.join(missing)} — the {_what(name)} has no ingested rows"
        return f"{_what(name)}: no file of {key} ({', '.join(values)}) has been ingested yet: run `rsft ingest` (a file that fails is named there)"
    bad = sum(int(e.get("rows_quarantined") or 0) for e in entries.values())
    if not bad:
        return f"{_what(name)} has no rows: {_files(entries)} ({key}) ingested as empty"
    reasons = quarantine_reasons(ds, list(entries), top=3)
    contract_name = ingest_sources(cfg)[name][1]
    shown = "; ".join(f"{n:,} × {r}" + (f" → {s}" if (s := setting_for(r, contract_name)) else "")
                      for r, n in reasons.items())
    return (f"{_what(name)} has no usable rows: all {bad:,} rows of {_files(entries)} ({key}) were quarantined at ingest"
            + (f" ({shown})" if shown else "")
            + f"; after changing the contract, `{AGAIN}` ingests the files again (they are skipped as done otherwise)")


# quarantine reasons (rsft.ingest.contract, readers, unique) -> the contract setting that accepts the rows
_SETTINGS: list[tuple[str, str]] = [
    (r"^(?P<c>.+): timestamp without time zone$", "set ingest.{k}.naive_timestamps: assume_utc (or assume_local with ingest.{k}.local_timezone, for wall-clock exports)"),
    (r"^(?P<c>.+): non-UTC offset$", "set ingest.{k}.utc_only: false"),
    # a row an earlier file already brought: a re-export (keeping it would count the reading twice;
    # rows of it with other values are unique-key conflicts, which unique_conflicts decides)
    (r"^duplicate row \(already in the dataset\)", "a re-export of rows already ingested: nothing to fix if it "
     "repeats them; a corrected re-export's changed rows are decided by ingest.{k}.unique_conflicts "
     "(published rows are never replaced)"),
    (r"^duplicate row", "set ingest.{k}.duplicate_rows: keep"),
    # a JSONL line without the key but with others outside the contract (readers._JsonlLines._missing)
    (r"^missing key (?P<c>.+?) \(the line has unknown key\(s\) (?P<u>.+?): if one is ",
     "add the exports' name for it (one of: {u}) to aliases of column {c} of ingest.{k}; or drop column {c} from "
     "ingest.{k}.columns (the exports do not have it)"),
    (r"^missing key (?P<c>.+?)(?: \(|$)", "drop column {c} from ingest.{k}.columns (the exports do not have it), or list "
     "the exports' name for it in its aliases"),
    (r"^unknown key", "set ingest.{k}.unknown_columns: drop"),
    # a JSONL line with two of a column's aliases (readers._JsonlLines._two_aliases)
    (r"^\d+ aliases of column (?P<c>.+?) in the line \((?P<u>.+?)\)",
     "keep only the exports' name among {u} in the aliases of column {c} of ingest.{k}"),
    (r"^missing (?P<c>.+)$", "set nullable: true on column {c} of ingest.{k}"),
    (r"^(?P<c>.+) is null$", "set nullable: true on column {c} of ingest.{k}"),
    (r"^invalid UTF-8", "set ingest.{k}.decode_errors: latin1"),
    (r"^(?P<c>.+) non-finite$", "set finite: false on column {c} of ingest.{k}"),
    (r"^(?P<c>.+) out of range", "widen min/max of column {c} of ingest.{k}"),
    (r"^(?P<c>.+) not one of ", "extend allowed of column {c} of ingest.{k}"),
    (r"^(?P<c>.+) does not match ", "loosen the pattern of column {c} of ingest.{k}"),
    (r"^(?P<c>.+?)(:)? (not a number|not an integer|not a boolean|wrong type|unparseable timestamp)",
     "check the dtype of column {c} of ingest.{k}"),
]


def setting_for(reason: str, contract_name: str) -> str | None:
    """The contract setting that would accept rows quarantined for ``reason``; None when no
    setting does (invalid JSON, a unique-key conflict…)."""
    for pattern, hint in _SETTINGS:
        m = re.match(pattern, reason)
        if m:
            return hint.format(k=contract_name, **{"c": "", **m.groupdict()})
    return None


def mostly_quarantined(cfg: PipelineConfig, ingested: Ingested) -> list[str]:
    """One line for each of the run's new files most of whose rows (all, or more than half) failed
    the contract — likely a wrong contract or a changed export (a unit change, a naive clock)
    rather than bad rows: ``sensors: a_kpa.csv: all 336 rows quarantined (pressure out of range
    [850.0, 1100.0] 326, missing temp_air 10) — widen min/max of column pressure of
    ingest.sensors``, or ``… 387 of 504 rows quarantined (…)`` where the rest passed (an inHg
    export whose empty pressure fields are allowed). The file's own reasons (the top 3), and the
    setting that would accept the most frequent (:func:`setting_for`). A file most of whose rows
    passed gets a line when a notable share failed one column's range (:func:`_partly_out_of_range`).
    ``rsft ingest`` warns with these lines, ``rsft retrain`` names them (and ``--json-out`` lists them)."""
    from rsft.ingest import quarantine_reasons
    from rsft.readable import counts

    out = []
    for name, d in ingested.datasets.items():
        for f in d.file_results:
            bad, ok = int(f.get("rows_quarantined") or 0), int(f.get("rows_ok") or 0)
            if f.get("status") != "ok" or not bad:
                continue
            reasons = quarantine_reasons(d.dataset, [f["digest"]], top=3)
            if bad <= ok:  # most rows passed: a column out of its range in a notable share is said
                out += _partly_out_of_range(name, f["file"], reasons, bad + ok)
                continue
            hint = setting_for(next(iter(reasons)), ingest_sources(cfg)[name][1]) if reasons else None
            hint = _decimal_comma_hint(cfg, name, d.dataset, f["digest"], next(iter(reasons), "")) or hint
            out.append(f"{name}: {f['file']}: " + (f"all {bad:,}" if not ok else f"{bad:,} of {bad + ok:,}")
                       + " rows quarantined" + (f" ({counts(reasons)})" if reasons else "") + (f" — {hint}" if hint else ""))
    return out


def _decimal_comma_hint(cfg: PipelineConfig, name: str, dataset: str, digest: str, reason: str) -> str | None:
    """``set ingest.sensors.decimal_comma: true`` when a file's rows were quarantined as ``ghi not a
    number`` and its quarantined values of that column read as decimal-comma numbers (``3,14``: a
    European locale's export; trial 7). None otherwise."""
    from rsft.ingest.manifest import quarantine_part
    from rsft.pipeline.layout import contract

    m = re.match(r"^(?P<c>.+) not a number$", reason)
    c = contract(cfg, ingest_sources(cfg)[name][1])
    if not m or c.decimal_comma:
        return None
    try:
        vals = pl.read_parquet(quarantine_part(dataset, digest), columns=[m["c"]]).get_column(m["c"]).drop_nulls().head(200)
    except Exception:
        return None
    if vals.len() and vals.str.contains(r"^\s*[-+]?\d*,\d+\s*$").mean() > 0.5:
        return f"its values have decimal commas ({vals[0]}): set {c.setting('decimal_comma')}: true"
    return None


RANGE_WARN_SHARE, RANGE_WARN_ROWS = 0.05, 10  # a file's rows one column's range check failed: worth a line


def _partly_out_of_range(name: str, file: str, reasons: dict[str, int], rows: int) -> list[str]:
    """``sensors: a.csv: 50 of 144 rows have ac_pu out of range [-0.05, 1.2] — …``: a file most of
    whose rows passed but :data:`RANGE_WARN_SHARE` (and at least :data:`RANGE_WARN_ROWS`) of them
    failed one column's range — the part of a unit change that left the range; the rest of the
    same change may be inside it, and in the pool (trial 7: a label in percent, not a fraction:
    50 rows quarantined, 94 passed, 10 of them daylight readings 100× too large)."""
    return [f"{name}: {file}: {n:,} of {rows:,} rows have {reason} — the other rows passed and are in the pool: "
            "a unit change in this file? check its values" for reason, n in reasons.items()
            if " out of range " in reason and n >= max(RANGE_WARN_ROWS, RANGE_WARN_SHARE * rows)]


def unlike_earlier_files(cfg: PipelineConfig, ingested: Ingested) -> list[str]:
    """One line per column of a run's new file whose median lies outside the range of the files
    before it (:func:`rsft.ingest.profile.unlike_earlier`; ``compare_previous_files`` of its
    contract): ``sensors: day-07.csv: temp (degF) median 20.4 is outside …``. ``rsft ingest``
    warns with these lines, ``rsft retrain`` too (``--json-out``: ``files_unlike_earlier``); a file
    an earlier run ingested without judging it (a night that failed after ingest) is judged too."""
    return [line for name, d in ingested.datasets.items() for line in dataset_unlike_earlier(cfg, name, d)]


def dataset_unlike_earlier(cfg: PipelineConfig, name: str, d, mark: bool = True) -> list[str]:
    """:func:`unlike_earlier_files` of one dataset's ingest (a :class:`DatasetIngest`); ``mark``
    false: the files judged stay unjudged for the summary (the MLflow story is written first)."""
    from rsft.ingest.profile import unlike_earlier
    from rsft.pipeline.layout import contract

    new = [f["digest"] for f in d.file_results if f.get("status") == "ok" and f.get("rows_ok")]
    c = contract(cfg, ingest_sources(cfg)[name][1])
    return [f"{name}: {line}" for line in unlike_earlier(d.dataset, c, new, c.compare_previous_files, mark=mark)]


def check_usable(cfg: PipelineConfig) -> None:
    """Stop a night right after ingest when the pool, the target sample or the hold-out has no row
    that passed the contract (:func:`no_rows_why`'s line), rather than fail later on an empty
    dataset with a message that names neither the files nor the reason."""
    for name in (pool_dataset(cfg), TARGET_SAMPLE, TARGET_HOLDOUT):
        if name == pool_dataset(cfg):
            # the pool grows every night: a data part found is enough (the line below reads every
            # file's manifest entry — it is only needed when there is none)
            if not ingest_sources(cfg).get(name) or next((pipeline_root(cfg) / name / "data").rglob("*.parquet"), None):
                continue
        why = no_rows_why(cfg, name)
        if why:
            raise ValueError(why)

