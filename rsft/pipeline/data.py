"""The data stages of a night: ingest → checks → prefilter → fit the scorer → sample → report.

Each stage takes the config section(s) it needs plus the previous stage's result and returns a
small frozen result (:mod:`rsft.pipeline.results`); rows stay in Parquet under the state
directory. The sequential forms here are what the local runner calls; the Prefect flows map the
per-file and per-chunk work as tasks over the same library functions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from rsft.config import AdaptConfig, FeaturesConfig, PipelineConfig
from rsft.fsio import digest, remove_orphans
from rsft.pipeline.layout import (
    TARGET_HOLDOUT,
    TARGET_SAMPLE,
    contract,
    ingest_sources,
    pipeline_root,
    pool_dataset,
    without_execution,
)
from rsft.pipeline.results import DatasetIngest, Ingested, Prefiltered, Scored, Selected
from rsft.prefilter import apply_rules, target_rules
from rsft.pipeline.targets import check_usable, named_digest, scan_named

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------
def dataset_ingest(files: list[dict[str, Any]], dataset_dir: str | Path) -> DatasetIngest:
    """Sum per-file ingest results into the dataset's result (with the rows quarantined by this
    run's files per reason)."""
    from rsft.ingest import quarantine_reasons

    keys = ("rows_total", "rows_ok", "rows_quarantined")
    sums = {k: sum(int(f.get(k) or 0) for f in files) for k in keys}
    reasons = quarantine_reasons(
        dataset_dir, [f["digest"] for f in files if f.get("status") == "ok" and f.get("rows_quarantined")])
    return DatasetIngest(
        dataset=str(dataset_dir), files=len(files),
        files_skipped=sum(f.get("status") in ("skipped", "duplicate") for f in files),
        files_failed=tuple(f["error"] for f in files if f.get("status") == "failed"),  # "<file>: <why>"
        quarantine_reasons=reasons, file_results=tuple(files), **sums)


def ingest_stage(cfg: PipelineConfig, only: tuple[str, ...] | None = None) -> Ingested:
    """Ingest every dataset (``only``: those named), one file after another (the flow maps files
    as tasks instead)."""
    from rsft.ingest import ingest

    root = pipeline_root(cfg)
    out = {}
    for name, (sources, contract_name) in ingest_sources(cfg).items():
        if only is not None and name not in only:
            continue
        result = ingest(sources, root / name, contract(cfg, contract_name), chunk_rows=cfg.ingest.chunk_rows)
        out[name] = dataset_ingest([f.to_dict() for f in result.files], root / name)
    return Ingested(out)


def since_last_night(ingested: Ingested) -> Ingested:
    """Tonight's ingest plus the files another run ingested since the last night's summary (the
    hourly ingest deployment, `rsft ingest`, a night that failed after its ingest): a file tonight's
    plan skipped as done whose manifest entry says ``reported: false`` counts as new tonight — its
    rows, quarantine reasons and warnings are the night's to report (:func:`mark_reported` after
    the summary). Entries written before the mark existed count as reported."""
    from rsft.ingest.manifest import _manifest

    out = {}
    for name, d in ingested.datasets.items():
        entries = _manifest(d.dataset)
        earlier = {dig: e for dig, e in entries.items() if e.get("reported") is False}
        tonight = {f.get("digest") for f in d.file_results if f.get("status") == "ok"}
        earlier = {dig: e for dig, e in earlier.items() if dig not in tonight}
        if not earlier:
            out[name] = d
            continue

        def as_new(f: dict, e: dict) -> dict:
            return {**f, "status": "ok", "ingested_earlier": True,
                    **{k: int(e.get(k) or 0) for k in ("rows_total", "rows_ok", "rows_quarantined")}}

        files = [as_new(f, earlier[f["digest"]]) if f.get("status") == "skipped" and f.get("digest") in earlier else f
                 for f in d.file_results]
        planned = {f.get("digest") for f in files}
        # an entry no source lists tonight (the inbox was archived after the hourly ingest took it)
        files += [as_new({"file": e.get("name", dig[:12]), "digest": dig}, e) for dig, e in earlier.items()
                  if dig not in planned]
        out[name] = dataset_ingest(files, d.dataset)
    return Ingested(out)


def mark_reported(ingested: Ingested) -> None:
    """Mark the night's new files (:func:`since_last_night`) as reported in their manifest entries."""
    from rsft.ingest.profile import _record
    from rsft.ingest.manifest import _manifest

    for d in ingested.datasets.values():
        ok = [f["digest"] for f in d.file_results if f.get("status") == "ok"]
        entries = _manifest(d.dataset) if ok else {}
        for dig in ok:
            if entries.get(dig, {}).get("reported") is False:
                _record(d.dataset, dig, entries[dig], reported=True)


def check_files(cfg: PipelineConfig, ingested: Ingested) -> None:
    """With ``ingest.fail_run_on_file_error``, a file that failed to ingest stops the run."""
    failed = ingested.failed
    if failed and cfg.ingest.fail_run_on_file_error:
        raise RuntimeError(f"{len(failed)} file(s) failed to ingest: {failed[0]}")


def check_targets(ingested: Ingested) -> None:
    """Stop a night whose target sample or hold-out export failed to ingest while no other file
    of it did: the dataset still holds only earlier nights' rows, and training or judging on those
    would promote silently. (A target directory whose old bad file fails every night does not
    stop a night whose new file ingested.)"""
    for name in (TARGET_SAMPLE, TARGET_HOLDOUT):
        d = ingested.get(name)
        if d is not None and d.files_failed and not d.fresh:
            raise ValueError(f"the {name.replace('_', ' ')} did not ingest ({d.files_failed[0]}); the retrain stops "
                             "rather than train or judge on an earlier night's target rows" + _pool_failures(ingested))


def _pool_failures(ingested: Ingested, most: int = 2) -> str:
    """`` (also 20 pool files failed: 20 × <why>)``: the pool's failed files of the night, counted
    by reason (the most common first), for the line that stops a night on its target files — the
    files failing beside them are often failing for the same reason. '' when none failed."""
    from collections import Counter

    lines = [f for n, d in ingested.datasets.items() if n not in (TARGET_SAMPLE, TARGET_HOLDOUT) for f in d.files_failed]
    if not lines:
        return ""
    why = Counter(line.split(": ", 1)[-1] for line in lines)  # "<file>: <why>"
    shown = "; ".join(f"{n} × {w}" for w, n in why.most_common(most)) + ("; …" if len(why) > most else "")
    return f" (also {len(lines)} pool file{'s' if len(lines) > 1 else ''} failed: {shown}; `rsft ingest` names each)"


def check_retyped(ingested: Ingested) -> None:
    """Stop a night when a file could not be ingested again after the contract changed its column
    types: its rows stay under the old types beside files written under the new ones, which no
    stage can read as one dataset (nothing is lost; fix the file or revert the contract's dtype)."""
    from rsft.ingest.run import REINGEST_FAILED

    stuck = [f for f in ingested.failed if REINGEST_FAILED in f]
    if stuck:
        raise ValueError(f"{len(stuck)} ingested file(s) could not be ingested again under the contract's new column "
                         f"types ({stuck[0].replace(f' ({REINGEST_FAILED})', '')}); their rows stay as they were — fix "
                         "the export or revert the contract's dtype; the retrain stops rather than mix two types")


def check_ingested(cfg: PipelineConfig, ingested: Ingested) -> None:
    """Whether the night may go on after ingest: :func:`check_files`, :func:`check_targets`,
    :func:`check_retyped`, then :func:`rsft.pipeline.targets.check_usable` (rows that passed the
    contract in the pool, the target sample and the hold-out)."""
    check_files(cfg, ingested)
    check_targets(ingested)
    check_retyped(ingested)
    check_usable(cfg)


def target_groups(a: AdaptConfig, target: pl.DataFrame) -> np.ndarray:
    """The adapt search's CV group of every target row: ``adapt.group_by``'s value, or its
    contiguous time block (rows in the frame's order)."""
    from rsft.adapt import time_blocks

    if not a.group_by:
        return time_blocks(target.height, a.time_blocks)
    if a.group_by not in target.columns:
        raise ValueError(f"adapt.group_by: the target sample has no column '{a.group_by}'")
    return target.get_column(a.group_by).to_numpy()


def adapt_target(cfg: PipelineConfig) -> tuple[pl.DataFrame, np.ndarray]:
    """The adapt search's target sample (labelled rows, in time order when it has ``ts``: time
    blocks and forward folds need it) and each row's CV group (:func:`target_groups`)."""
    target = load_target(cfg)
    if "ts" in target.columns:
        target = target.sort("ts")
    return target, target_groups(cfg.adapt, target)


def check_adapt(cfg: PipelineConfig, folds_name: str = "adapt.folds", fix_name: str | None = None) -> None:
    """With ``adapt.enabled``, fail before the pool is touched when the target sample cannot make
    ``adapt.folds`` folds (a missing group column, fewer groups than folds; ``rsft.adapt.check_folds``:
    one line with the folds the groups allow and each one's training rows). ``folds_name``: how
    the message names the fold count (``--folds`` when ``rsft adapt`` was given it), ``fix_name``
    how its fix does (``rsft adapt``: ``--folds``)."""
    from rsft.adapt import check_folds

    a = cfg.adapt
    if not a.enabled:
        return
    target, groups = adapt_target(cfg)
    check_folds(groups, a.folds, a.cv, cfg.train.seed, folds_name=folds_name, fix_name=fix_name,
                what=f" of {a.group_by}" if a.group_by else f" ({target.height} rows in adapt.time_blocks={a.time_blocks})")


# --------------------------------------------------------------------------------------
# target rows and pool samples
# --------------------------------------------------------------------------------------
def load_target(cfg: PipelineConfig, which: str = TARGET_SAMPLE) -> pl.DataFrame:
    """The (small) target sample or hold-out, labelled rows only: the rows of the files
    ``data.target_sample`` / ``data.target_holdout`` name now, not of every file ever ingested
    into the dataset (:mod:`rsft.pipeline.targets`; one line naming the files and the reasons when
    none passed the contract). With ``features.rolling``, the rolling aggregates are computed
    over all of its readings first (it must be a time series of the same machines, like the pool).
    The prefilter's rules for the targets (``prefilter.targets``) drop rows first
    (:func:`target_dropped` counts them)."""
    from rsft.features import add_rolling_features

    f = cfg.features
    rows, kept, dropped = _judged_target(cfg, which)
    if rows and not kept.height:
        from rsft.readable import counts

        raise ValueError(f"the {which.replace('_', ' ')}: the prefilter's rules drop all of its {rows:,} rows "
                         f"({counts(dropped)}); check the rules against it, or prefilter.targets: none keeps the "
                         "target files as ingested")
    lf = kept.lazy()
    if f.rolling:
        have = lf.collect_schema().names()
        missing = [c for c in (f.group, f.time_column) if c not in have]
        if missing:
            raise ValueError(f"features.rolling: the {which} has no column(s) {', '.join(missing)}")
        lf = add_rolling_features(lf, f)
    return lf.filter(pl.col(f.label).is_not_null()).collect()


class HoldoutIdentity(NamedTuple):
    """What :func:`without_holdout` leaves out: pool rows whose ``cols`` values are a row of
    ``keys`` (the hold-out's own rows), and with ``spans`` (:func:`holdout_spans`) the rows of a
    machine inside its hold-out spans (``span_cols``: the group and time column). A plain
    ``(cols, keys)`` pair works too."""

    cols: list[str]
    keys: pl.DataFrame
    spans: pl.DataFrame | None = None
    span_cols: tuple[str, ...] = ()
    # the hold-out's time type (spans are drawn in its units), and why no spans were drawn ("": drawn,
    # or not asked for): the night says so instead of falling back to exact rows unnoticed
    time_dtype: pl.DataType | None = None
    no_spans: str = ""

    def columns(self) -> list[str]:
        """Every column the exclusion reads from a frame."""
        return list(dict.fromkeys([*self.cols, *(self.span_cols if self.spans is not None else ())]))


def holdout_identity(cfg: PipelineConfig, holdout: pl.DataFrame | None = None) -> HoldoutIdentity:
    """What identifies a hold-out row in the pool, and the hold-out's values of it: the pool
    contract's ``unique`` key, else its ``key``, else ``features.group`` and ``time_column``, else
    every raw model input and the label — the same example. Exports and hold-outs come from the same
    historian: the hold-out's readings are in the pool too, and rows the challenger trained on
    must not judge it (:func:`without_holdout`). With ``train.holdout_exclusion: span`` (the
    default) and a hold-out with the group and time column, the pool rows beside them go too
    (:func:`holdout_spans`): sensor readings are autocorrelated, the next interval's reading is
    almost the hold-out's. ``holdout``: the hold-out when already read."""
    from rsft.features import rolling_names

    f = cfg.features
    if holdout is None:
        try:
            holdout = load_target(cfg, TARGET_HOLDOUT)
        except (ValueError, FileNotFoundError):  # no hold-out rows (`rsft adapt --config` without one): none to leave out
            return HoldoutIdentity([], pl.DataFrame())
    c = getattr(cfg.ingest, pool_dataset(cfg), None)
    cols = list((c.unique or c.key) if c is not None else [])
    if not cols or any(k not in holdout.columns for k in cols):  # the machine and its time, else the example
        cols = [k for k in (f.group, f.time_column) if k]
        if len(cols) < 2 or any(k not in holdout.columns for k in cols):
            # raw inputs only: rolling features are computed over the hold-out alone, and over the kept pool
            # for pool rows — the same reading's values differ near gaps (review)
            inputs = [f.text_column] if f.kind == "text" else [*f.numeric, *f.categorical]
            cols = [k for k in dict.fromkeys([*inputs, f.label]) if k in holdout.columns and k not in rolling_names(f)]
    spans = (holdout_spans(holdout, f.group, f.time_column, cfg.train.holdout_gap_s)
             if cfg.train.holdout_exclusion == "span" else None)
    why = _no_spans_why(holdout.schema, f.group, f.time_column, "hold-out") if cfg.train.holdout_exclusion == "span" else ""
    return HoldoutIdentity(cols, holdout.select(cols).unique(), spans, (f.group, f.time_column) if spans is not None else (),
                           holdout.schema.get(f.time_column) if spans is not None else None, why)


def _no_spans_why(schema, group: str, time: str, what: str) -> str:
    """Why no hold-out spans can be drawn for (or applied to) a frame of ``schema`` named ``what``
    ("": they can): it lacks the group or time column, or its time is neither a date/time nor a
    number. No group or time column configured is no reason: exact rows are then the documented
    rule (``train.holdout_exclusion``)."""
    if not group or not time:
        return ""
    missing = [k for k in (group, time) if k not in schema]
    if missing:
        return f"the {what} has no column {', '.join(missing)}"
    if _seconds(time, schema[time]) is None:
        return f"the {what}'s {time} is {schema[time]}, not a date/time or a number"
    return ""


def span_problem(identity: HoldoutIdentity, schema, what: str = "pool") -> str:
    """Why ``identity``'s spans cannot leave rows out of a frame of ``schema`` ("": they can, or
    none were asked for): none were drawn (:attr:`HoldoutIdentity.no_spans`), the frame lacks the
    columns, or its time is of another kind than the hold-out's — epoch numbers against a
    date/time would compare milliseconds (or seconds) with seconds since 1970 and match nothing."""
    if identity.no_spans or identity.spans is None or len(identity.span_cols) != 2:
        return identity.no_spans
    g, t = identity.span_cols
    why = _no_spans_why(schema, g, t, what)
    if why or identity.time_dtype is None:
        return why
    if _temporal(schema[t]) != _temporal(identity.time_dtype):
        return (f"the hold-out's {t} is {identity.time_dtype} and the {what}'s {schema[t]}: a date/time and a number "
                "cannot be compared (export both the same way)")
    return ""


def _temporal(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.Datetime, pl.Date))


# the contract dtypes a span's time can be: a date/time, or a number (read as seconds: _seconds)
_SPAN_TIME_TYPES = {"timestamp": "a date/time", "int64": "a number", "float64": "a number"}


def holdout_span_problems(cfg: PipelineConfig) -> list[str]:
    """check-config's lines (no markup) when ``train.holdout_exclusion: span`` cannot draw or apply
    spans, from the contracts of the pool, the target sample and the hold-out (the targets follow
    the pool's contract today: :func:`rsft.pipeline.layout.ingest_sources`): a contract lacking
    ``features.group`` or ``time_column``, a text time, or a time that is a date/time in one and a
    number in another — the fine-tune then leaves out the hold-out's own rows only, and the pool
    rows beside them stay. With a numeric time and ``train.holdout_gap_s``, a line saying the gap
    is in the column's units (:func:`_seconds`)."""
    f = cfg.features
    if cfg.train.holdout_exclusion != "span":
        return []
    users: dict[str, list[str]] = {}  # contract name -> the datasets it reads
    for ds, label in ((pool_dataset(cfg), "the pool"), (TARGET_SAMPLE, "the target sample"), (TARGET_HOLDOUT, "the hold-out")):
        users.setdefault(ingest_sources(cfg).get(ds, (None, pool_dataset(cfg)))[1], []).append(label)
    out, kinds = [], {}
    for name, whose in users.items():
        c = getattr(cfg.ingest, name, None)
        if c is None:
            continue
        types = {col.name: col.dtype for col in c.columns}
        wrong = [f"features.{k} '{v}' ({'not a column' if v not in types else 'text'})"
                 for k, v in (("group", f.group), ("time_column", f.time_column))
                 if v not in types or (k == "time_column" and types[v] not in _SPAN_TIME_TYPES)]
        if wrong:
            out.append(f"train.holdout_exclusion span needs a machine and a time column in {c.setting('columns')} "
                       f"({' and '.join(whose)}): {', '.join(wrong)} — the fine-tune leaves out the hold-out's own rows "
                       "only; the pool readings beside them stay in training")
        else:
            kinds[c.setting("columns")] = types[f.time_column]
    if len({_SPAN_TIME_TYPES[t] for t in kinds.values()}) > 1:
        out.append(f"train.holdout_exclusion span: features.time_column '{f.time_column}' is "
                   + ", ".join(f"{t} in {where}" for where, t in kinds.items())
                   + " — a date/time and a number cannot be compared: no spans, the hold-out's own rows only")
    elif cfg.train.holdout_gap_s and any(t != "timestamp" for t in kinds.values()):
        out.append(f"train.holdout_gap_s {cfg.train.holdout_gap_s:g} is in the units of features.time_column "
                   f"'{f.time_column}' ({next(iter(kinds.values()))}: read as seconds; epoch milliseconds need 1000× the gap)")
    return out


def _seconds(col: str, dtype: pl.DataType) -> pl.Expr | None:
    """A time column as seconds (a datetime or date since the epoch, a number as it is); None for
    another type (a time stored as text: no span can be drawn). A number is taken to be in
    seconds: the spans' margins come from the readings' own spacing and need no unit, only
    ``train.holdout_gap_s`` does — it is in the column's units (seconds for epoch seconds, 1000×
    for epoch milliseconds; check-config says so: :func:`holdout_span_problems`). Refusing spans
    for numbers would leave the neighbours of every epoch-number hold-out in training."""
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        return pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6
    return pl.col(col).cast(pl.Float64) if dtype.is_numeric() else None


def holdout_spans(holdout: pl.DataFrame, group: str, time: str, gap_s: float | None = None) -> pl.DataFrame | None:
    """Each machine's hold-out time span(s) as (``group``, ``_start``, ``_end``) in seconds: a
    machine's hold-out readings sorted, a new span where two of them lie more than ``gap_s``
    (None: never) and more than two sampling intervals apart, each span widened by one sampling
    interval on both sides. The interval is the median spacing of the machine's own hold-out
    readings: the pool's own interval for a hold-out exported whole, longer — a wider margin — for
    a subsample. A machine with one hold-out reading has no spacing of its own and gets no margin
    (its own row only): another machine's spacing says nothing of its sampling (review: one reading
    at t=100 beside another machine's daily hold-out left out ± 1 day), and the pool's interval per
    machine is not known here without reading the pool. Why spans, not the hold-out's times
    ± an interval: a subsampled hold-out leaves pool readings between its readings that are as
    close to them as the next reading, and a hold-out is exported by period (a machine's last days),
    so the period is what must not be trained on; ``gap_s`` keeps the pool rows between periods.
    Spans do not overlap (the split needs a gap over two intervals). None where the hold-out lacks
    either column or its time is text."""
    if not group or not time or any(k not in holdout.columns for k in (group, time)):
        return None
    secs = _seconds(time, holdout.schema[time])
    if secs is None:
        return None
    h = (holdout.select(pl.col(group), secs.alias("_t")).drop_nulls().unique().sort(group, "_t")
         .with_columns(_step=pl.col("_t").diff().over(group)))
    h = h.with_columns(_iv=pl.col("_step").median().over(group).fill_null(0.0))
    split = pl.col("_step") > pl.max_horizontal(pl.lit(gap_s), 2 * pl.col("_iv")) if gap_s else pl.lit(False)
    return (h.with_columns(_span=split.fill_null(False).cum_sum().over(group))
            .group_by(group, "_span")
            .agg(_start=pl.col("_t").min() - pl.col("_iv").first(), _end=pl.col("_t").max() + pl.col("_iv").first())
            .drop("_span").sort(group, "_start"))


def without_holdout(frame, identity: HoldoutIdentity | tuple[list[str], pl.DataFrame]):
    """``frame`` (eager or lazy) without the rows that are hold-out rows (:func:`holdout_identity`)
    and, with spans, without the rows inside them; a frame lacking one of the identity's columns
    is returned as it is (by that part of the identity)."""
    return without_holdout_parts(frame, identity)[1]


def without_holdout_parts(frame, identity: HoldoutIdentity | tuple[list[str], pl.DataFrame]):
    """(``frame`` without the hold-out's own rows, and without those and the rows inside its spans):
    :func:`without_holdout` in its two steps, so that each can be counted (exact rows vs spans)."""
    cols, keys, *rest = identity
    spans, span_cols, time_dtype = (rest + [None, (), None])[:3]
    rows = _without_rows(frame, cols, keys)
    return rows, _without_spans(rows, spans, span_cols, time_dtype)


def _without_rows(frame, cols: list[str], keys: pl.DataFrame):
    """:func:`without_holdout` by the hold-out's own rows: an anti-join on ``cols``."""
    schema = frame.collect_schema()
    if not cols or not keys.height or any(k not in schema for k in cols):
        return frame
    # non-strict: a hold-out value the frame's type cannot hold ("M01" against an integer machine,
    # a machine missing from an Enum) is no row of the frame — dropped, not matched to its nulls
    lost = pl.any_horizontal([pl.col(k).cast(schema[k], strict=False).is_null() & pl.col(k).is_not_null() for k in cols])
    keys = keys.filter(~lost).with_columns(pl.col(k).cast(schema[k], strict=False) for k in cols)
    # a null in the identity matches a null (a hold-out row with an empty reading is still that row)
    return frame.join(keys.lazy() if isinstance(frame, pl.LazyFrame) else keys, on=cols, how="anti", nulls_equal=True)


def _without_spans(frame, spans: pl.DataFrame | None, span_cols: tuple[str, ...], time_dtype: pl.DataType | None = None):
    """:func:`without_holdout` by the machines' hold-out spans (:func:`holdout_spans`): each row's
    latest span of its machine starting at or before its time (spans do not overlap), left out
    when the row lies before that span's end. Rows keep their order; a frame the spans cannot be
    applied to (:func:`span_problem`) is returned as it is."""
    if spans is None or not spans.height or len(span_cols) != 2:
        return frame
    g, t = span_cols
    schema = frame.collect_schema()
    if span_problem(HoldoutIdentity([], pl.DataFrame(), spans, span_cols, time_dtype), schema):
        return frame  # the night names the problem (training's counts: holdout_no_spans)
    secs = _seconds(t, schema[t])
    # non-strict: a hold-out machine the pool's type cannot hold matches no pool row
    spans = spans.lazy().with_columns(pl.col(g).cast(schema[g], strict=False)).drop_nulls(g)
    lf = frame.lazy().with_row_index("_holdout_i")
    inside = (lf.select("_holdout_i", pl.col(g), secs.alias("_t")).drop_nulls().sort("_t")
              .join_asof(spans.sort("_start"),
                         left_on="_t", right_on="_start", by=g, strategy="backward", check_sortedness=False)
              .filter(pl.col("_t") <= pl.col("_end")).select("_holdout_i"))
    out = lf.join(inside, on="_holdout_i", how="anti", maintain_order="left").drop("_holdout_i")
    return out if isinstance(frame, pl.LazyFrame) else out.collect()


def _judged_target(cfg: PipelineConfig, which: str) -> tuple[int, pl.DataFrame, dict[str, int]]:
    """(rows of the target file(s) as ingested, the rows ``prefilter.targets``' rules keep, the rows
    each rule that dropped any dropped): what :func:`load_target` reads and :func:`target_dropped` counts."""
    df = scan_named(cfg, which).collect()
    rules = target_rules(cfg.prefilter)
    if not rules.rules:
        return df.height, df, {}
    kept, dropped = apply_rules(df, rules)
    return df.height, kept, {k: v for k, v in dropped.items() if v}


def target_dropped(cfg: PipelineConfig, which: str) -> tuple[int, dict[str, int]]:
    """(rows of the target file(s) as ingested, rows each of ``prefilter.targets``' rules dropped)."""
    rows, _, dropped = _judged_target(cfg, which)
    return rows, dropped


def hashed_sample(lf: pl.LazyFrame, rows_total: int, rows: int, seed: int) -> pl.LazyFrame:
    """A deterministic ~``rows`` sample of a lazy frame, in one streaming pass (row-hash filter)."""
    if rows_total <= rows:
        return lf
    keep = int(rows / rows_total * 1_000_000) + 1
    return lf.filter(pl.struct("_source", "_row").hash(seed) % 1_000_000 < keep)


def pool_sample(prefiltered: Prefiltered, rows: int, seed: int, labelled: str | None = None) -> pl.DataFrame:
    """~``rows`` kept pool rows (hashed, deterministic); with ``labelled``, rows with that label only."""
    from rsft.keptpool import sample_pool

    # the rows of hashed_sample over the whole kept pool, read from per-day sample files
    lf = sample_pool(prefiltered.output, rows, prefiltered.rows_out, seed)
    if labelled:
        lf = lf.filter(pl.col(labelled).is_not_null())
    return lf.collect()


# --------------------------------------------------------------------------------------
# prefilter
# --------------------------------------------------------------------------------------
def rolling_derive(f: FeaturesConfig):
    """``features.rolling`` as the prefilter's derived columns (computed on the kept pool rows)."""
    from rsft.features import rolling_feature_exprs
    from rsft.prefilter import Derive

    if not f.rolling:
        return None
    return Derive(tuple(rolling_feature_exprs(f)), f.group, f.time_column, max(r.window for r in f.rolling) - 1)


def prefilter_rules_key(cfg: PipelineConfig) -> str:
    """What decides a day's kept rows besides its data: the rules, the rolling features, and
    whether the dropped rows are written too (``prefilter.block_rows`` only sizes memory)."""
    f = cfg.features
    return digest("kept-pool-v1", [r.model_dump(mode="json") for r in cfg.prefilter.rules], cfg.prefilter.write_excluded,
                  *([[r.model_dump(mode="json") for r in f.rolling], f.group, f.time_column] if f.rolling else []))


def kept_pool_dir(cfg: PipelineConfig) -> Path:
    """``prefiltered/<rules key>/``: the kept pool of this rule set, one partitioned dataset."""
    return pipeline_root(cfg) / "prefiltered" / prefilter_rules_key(cfg)


def prefilter_stage(cfg: PipelineConfig, map_jobs=None) -> Prefiltered:
    """Bring the kept pool up to date with the ingested pool (:mod:`rsft.keptpool`): only days
    that are new or changed, and the neighbours whose window context changed, are prefiltered
    again (with the rolling features); the result is a new manifest over per-day files.
    ``map_jobs`` runs the per-day jobs (default: one after another; the flow's task maps them
    on ``prefilter.task_runner``)."""
    from rsft import keptpool

    root = pipeline_root(cfg)
    out = kept_pool_dir(cfg)
    if (root / "prefiltered").is_dir():  # a killed night's temp files
        remove_orphans(root / "prefiltered")
    m = keptpool.update(root / pool_dataset(cfg), out, cfg.prefilter, derive=rolling_derive(cfg.features),
                        time_column=cfg.features.time_column, write_excluded=cfg.prefilter.write_excluded,
                        rules_key=prefilter_rules_key(cfg), map_jobs=map_jobs)
    log.info("prefilter: %d of %d day(s) computed, manifest %s", m["days_computed"], m["days_total"], m["path"])
    return Prefiltered(output=m["path"], rows_in=m["rows_in"], rows_out=m["rows_out"], dropped=m["dropped"],
                       alone=m["alone"], excluded=m["path"] if cfg.prefilter.write_excluded else None,
                       version=m["version"], days_total=m["days_total"], days_computed=m["days_computed"],
                       whole_pool_why=m.get("whole_pool_why", ""))


# --------------------------------------------------------------------------------------
# scorer, selection, report
# --------------------------------------------------------------------------------------
def scorer_key(scorer_cfg: Any) -> dict[str, Any]:
    """The scorer config in a run key, ``ngram_score`` only when not its default ``sum``: keys made
    before the field existed stay valid (the runs they name scored sums)."""
    dump = scorer_cfg.model_dump(mode="json")
    if dump.get("ngram_score") == "sum":
        dump.pop("ngram_score")
    return dump


def run_key(cfg: PipelineConfig, prefiltered: Prefiltered) -> str:
    from rsft.density.ngram import NGRAM_HASH

    # an n-gram scorer's hash scheme decides its buckets: a run made with another scheme (its
    # scorer, log w and selection) is not reused; other scorers' keys are as they were
    scheme = [{"ngram_hash": NGRAM_HASH}] if cfg.scorer.kind == "ngram" else []
    return digest(
        prefiltered.output,
        named_digest(cfg, TARGET_SAMPLE),
        cfg.features.model_dump(mode="json"),
        scorer_key(cfg.scorer),
        without_execution(cfg.sampling.model_dump(mode="json")),  # the rows do not depend on where chunks ran
        *scheme,
        # the prefilter rules the target sample passes (none: the key as before they applied)
        *([{"target_rules": [r.model_dump(mode="json") for r in rules]}] if (rules := target_rules(cfg.prefilter).rules) else []),
    )


def check_features_complete(cfg: PipelineConfig, df: pl.DataFrame, what: str) -> None:
    """One line naming the model features with missing (null) or NaN/±inf values in ``df`` and the
    prefilter rule that removes such rows: a scorer cannot be fitted on them (a nullable contract
    column used as a feature needs a ``not_null`` rule; ``finite`` keeps nulls by design)."""
    cols = [c for c in cfg.features.numeric if c in df.columns and df.schema[c].is_numeric()]
    if not cols or df.height == 0:
        return
    counts = df.select([pl.col(c).is_null().sum().alias(f"n:{c}") for c in cols]
                       + [(~pl.col(c).cast(pl.Float64).is_finite()).fill_null(False).sum().alias(f"f:{c}") for c in cols]).row(0, named=True)
    nulls = {c: counts[f"n:{c}"] for c in cols if counts[f"n:{c}"]}
    bad = {c: counts[f"f:{c}"] for c in cols if counts[f"f:{c}"]}
    if not nulls and not bad:
        return
    parts = []
    if nulls:
        parts.append(f"missing values (null) in {', '.join(f'{c} ({n:,} rows)' for c, n in nulls.items())}: add the "
                     f"prefilter rule {{kind: not_null, columns: [{', '.join(nulls)}]}}")
    if bad:
        parts.append(f"NaN or ±inf in {', '.join(f'{c} ({n:,} rows)' for c, n in bad.items())}: add the prefilter rule "
                     f"{{kind: finite, columns: [{', '.join(bad)}]}}")
    if what.startswith("the target"):
        parts.append("the prefilter's row rules apply to the target sample too (prefilter.targets), so the rule above "
                     "removes them there as well" if cfg.prefilter.targets != "none" else
                     "the target sample is not prefiltered (prefilter.targets: none): its contract can quarantine such "
                     "rows (nullable: false)")
    raise ValueError(f"{what} has model features the scorer cannot use — " + "; ".join(parts))


def fit_scorer_stage(cfg: PipelineConfig, prefiltered: Prefiltered) -> Scored:
    """Fit (or reuse) the density-ratio scorer on the target sample vs a pool sample, score that
    sample and calibrate log M on it."""
    from rsft.density import load_scorer, make_scorer
    from rsft.features import feature_names
    from rsft.sampling import calibrate_log_m

    key = run_key(cfg, prefiltered)
    run_dir = pipeline_root(cfg) / "runs" / key
    run_dir.mkdir(parents=True, exist_ok=True)
    os.utime(run_dir)  # used tonight (`rsft gc` keeps the newest state.keep_nights runs)
    for d in (run_dir, run_dir / "chunks"):  # a killed night's temp files
        if d.is_dir():
            remove_orphans(d)
    scorer_path = run_dir / "scorer.pt"
    pool = pool_sample(prefiltered, cfg.scorer.pool_sample_rows, cfg.scorer.seed)
    target = load_target(cfg)
    if target.height == 0:  # rows passed the contract (load_target says so when none did), none labelled
        raise ValueError(f"target sample has no labelled rows: {cfg.features.label} is empty in every row of "
                         f"data.target_sample ({cfg.data.target_sample})")
    check_features_complete(cfg, pool, "the pool sample (kept by the prefilter)")
    check_features_complete(cfg, target, "the target sample")
    if scorer_path.exists():
        scorer = load_scorer(scorer_path)
    else:
        scorer = make_scorer(cfg.scorer, feature_names(cfg.features))
        scorer.fit_frames(target, pool, cfg.features)
        scorer.save(scorer_path)
    log_w = np.asarray(scorer.log_ratio_frame(pool, cfg.features), dtype=np.float64)
    # rejection's M; a budget selection (the top k of log w + Gumbel keys) has none, and no
    # acceptance probability to report (exp(log w − log M) of real documents underflows to 0)
    log_m = calibrate_log_m(cfg.sampling.temper * log_w, cfg.sampling.m_quantile) if cfg.sampling.mode == "rejection" else None
    pool.select("_source", "_row").with_columns(log_w=pl.Series(log_w)).write_parquet(run_dir / "pool_sample_logw.parquet")
    return Scored(run_key=key, run_dir=str(run_dir), scorer_path=str(scorer_path), scorer=cfg.scorer.kind,
                  log_m=None if log_m is None else float(log_m), pool_sample_rows=pool.height, target_rows=target.height,
                  diagnostics=scorer.diagnostics())


def select_stage(cfg: PipelineConfig, prefiltered: Prefiltered, scored: Scored) -> Selected:
    """Chunked selection, ``sampling.concurrency`` chunks at a time on threads in this process (the
    flow maps chunks as tasks on ``sampling.task_runner`` instead); the rows do not depend on it."""
    from rsft.sampling import select

    run_dir = Path(scored.run_dir)
    return Selected.from_summary(select(
        prefiltered.output, scored.scorer_path, cfg.features, cfg.sampling, str(run_dir / "chunks"),
        log_m=scored.log_m, out_path=str(run_dir / "selected.parquet"), workers=cfg.sampling.concurrency,
    ).to_dict())


REPORT_SELECTED_ROWS = 50_000  # the selection report's statistics and plots use at most this many selected rows


def report_stage(cfg: PipelineConfig, prefiltered: Prefiltered, scored: Scored, selected: Selected) -> dict[str, Any]:
    """The selection report (JSON + plots under ``runs/<key>/report``): how the selected rows
    compare with the target and the pool."""
    from rsft.report import selection_report

    run_dir = Path(scored.run_dir)
    logw = pl.read_parquet(run_dir / "pool_sample_logw.parquet")
    pool = pool_sample(prefiltered, cfg.scorer.pool_sample_rows, cfg.scorer.seed).join(logw, on=["_source", "_row"], how="inner")
    chosen, total, per_group = pl.read_parquet(selected.output), None, None
    if chosen.height > REPORT_SELECTED_ROWS:  # the statistics on a seeded sample; counts of all rows
        g = cfg.features.group
        total = chosen.height
        per_group = chosen.group_by(g).agg(pl.len().alias("selected_rows")) if g and g in chosen.columns else None
        chosen = chosen.sample(REPORT_SELECTED_ROWS, seed=cfg.sampling.seed)
    c = getattr(cfg.ingest, pool_dataset(cfg), None)  # its columns' units label the plots
    return selection_report(
        load_target(cfg), pool, chosen, cfg.features, pool.get_column("log_w").to_numpy(), run_dir / "report",
        log_m=scored.log_m, temper=cfg.sampling.temper, pool_rows=prefiltered.rows_out,
        units={col.name: col.unit for col in c.columns if col.unit} if c is not None else None,
        selected_rows=total, selected_counts=per_group,
    )
