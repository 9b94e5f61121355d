"""What each stage of a night hands to the next: small frozen dataclasses.

A stage's inputs and outputs are read from its signature. Big data never travels in these
objects: they carry paths, counts, digests and a few statistics; the rows stay in Parquet under
the state directory. ``to_dict()`` gives the JSON-able form used for Prefect artifacts, MLflow
lineage and the run summary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


class _Result:
    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetIngest(_Result):
    """One dataset's ingest this run (files already ingested on earlier nights are skipped)."""

    dataset: str  # the dataset directory under the state dir
    files: int  # files planned this run (new + skipped)
    files_skipped: int  # already ingested, or an identical copy of an ingested file
    rows_total: int  # rows read from this run's new files
    rows_ok: int  # rows written to the dataset
    rows_quarantined: int  # rows written to quarantine (with a reason)
    files_failed: tuple[str, ...] = ()  # "<file>: <why>", one line each
    quarantine_reasons: dict[str, int] = field(default_factory=dict)  # this run's quarantined rows per reason
    file_results: tuple[dict[str, Any], ...] = ()  # per file: status, digest, rows, error

    @property
    def fresh(self) -> bool:
        """Whether at least one new file of this dataset ingested tonight."""
        return any(f.get("status") == "ok" for f in self.file_results)


@dataclass(frozen=True)
class Ingested(_Result):
    """Every dataset of the pipeline: the pool (``sensors`` or ``logs``), the target sample and
    the target hold-out."""

    datasets: dict[str, DatasetIngest]

    def __getitem__(self, name: str) -> DatasetIngest:
        return self.datasets[name]

    def get(self, name: str) -> DatasetIngest | None:
        return self.datasets.get(name)

    @property
    def failed(self) -> list[str]:
        return [f for d in self.datasets.values() for f in d.files_failed]


# --------------------------------------------------------------------------------------
# prefilter, scorer, selection
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prefiltered(_Result):
    """The kept pool rows (a manifest of per-day Parquet files, :mod:`rsft.keptpool`) and what
    each rule dropped."""

    output: str  # the kept pool's manifest (versions/<version>.json; rsft.keptpool.scan_pool reads it)
    rows_in: int
    rows_out: int  # rows kept
    dropped: dict[str, int] = field(default_factory=dict)  # rule -> rows it dropped first
    alone: dict[str, int] = field(default_factory=dict)  # rule -> rows it would drop on its own
    # with prefilter.write_excluded: the manifest whose day records name each day's dropped rows
    # (Parquet, with the first rule that dropped each row)
    excluded: str | None = None
    version: str = ""  # digest of every day's result key: the kept pool's content
    days_total: int = 0  # partitions (UTC days) in the kept pool
    days_computed: int = 0  # of which prefiltered tonight (new, changed, or a changed neighbour)
    whole_pool_why: str = ""  # why the pool is one partition, prefiltered whole every night ("" = by day)


@dataclass(frozen=True)
class Scored(_Result):
    """The fitted density-ratio scorer of tonight's (pool, target) and its calibrated log M."""

    run_key: str  # digest of prefiltered pool + target + features/scorer/sampling config
    run_dir: str  # runs/<run_key>/: scorer, chunks, selection, report, checkpoints
    scorer_path: str
    scorer: str  # scorer kind
    log_m: float | None  # log M of the acceptance rule min(1, w^β / M), on the pool sample (None: budget mode)
    pool_sample_rows: int
    target_rows: int
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Selected(_Result):
    """The selected pool rows (one Parquet file) and the sampler's statistics."""

    output: str
    mode: str  # rejection | budget
    rows_in: int
    rows_out: int
    acceptance_rate: float  # rows_out / rows_in
    ideal_acceptance: float | None  # E[min(w^β, M)] / M: what rejection sampling accepts on average
    clipped_share: float  # pool rows with w^β > M
    log_m: float | None
    details: dict[str, Any] = field(default_factory=dict)  # the sampler's full summary

    @classmethod
    def from_summary(cls, d: dict[str, Any]) -> Selected:
        return cls(output=d["output"], mode=d["mode"], rows_in=d["rows_in"], rows_out=d["rows_out"],
                   acceptance_rate=d["acceptance_rate"], ideal_acceptance=d.get("ideal_acceptance"),
                   clipped_share=d.get("clipped_share") or 0.0, log_m=d.get("log_m"), details=d)


@dataclass(frozen=True)
class Selection(_Result):
    """The select stage as a whole: prefilter → scorer → sampling → report."""

    prefiltered: Prefiltered
    scored: Scored
    selected: Selected
    report: dict[str, Any] | None  # the selection report (report.json), None when not made


# --------------------------------------------------------------------------------------
# fine-tune, evaluate, register, promote
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finetuned(_Result):
    """The night's model decision: what was trained, how it scored, what the registry did."""

    run_id: str  # the MLflow run of the night
    model_name: str
    version: str | None  # the registered challenger; None when the search kept the champion
    promoted: bool
    reason: str
    metric: str  # the gate's metric (hold-out)
    challenger: dict[str, float]  # hold-out metrics of the challenger
    champion: dict[str, float] | None  # hold-out metrics of the champion it was judged against
    warm_start: str  # models:/<name>/<v> or "base"
    train: dict[str, Any]  # rows and epochs of the final fit
    adapt: dict[str, Any] | None  # the adaptation search's report (adapt.enabled)
    holdout_rows: int
    champion_version: str | None  # the champion after the decision
    tracking_uri: str
    ui_url: str | None = None  # state.ui_url: where the links to the run point (None: the default, runs.ui_base)
    # an earlier run of the same night (same inputs and config) registered ``version`` and decided
    # it: nothing was registered by this run; ``run_id`` is that run when nothing was trained either
    recorded: bool = False
    # hold-out metrics of the constant prediction the target sample gives (its label mean or class
    # shares): the floor a model must beat to be worth serving; None where there is none
    constant: dict[str, float] | None = None
    # hold-out metrics of a linear model fitted on the target sample alone (promotion.linear_reference_by)
    linear: dict[str, float] | None = None
    # the night's fine-tune did not beat the base model it started from on a first night: the base
    # model was registered in its place (these are the fine-tune's hold-out metrics)
    fine_tune_lost: dict[str, float] | None = None
    # a first night: the hold-out metrics of the base model the fine-tune started from
    base: dict[str, float] | None = None
    # the night's date (ISO) its warnings are dated by night to night: its data's in a backfill
    # (the "(data to …)" of its run's name), else the day it ran (rsft.pipeline.finetune.night_date)
    night_date: str | None = None
    # the night's MLflow run name ("factory 2026-12-06 (data to 2026-01-27) promoted v2"); None for
    # a decided night's re-run (its deciding run has the name)
    title: str | None = None
