"""Where a pipeline's data lives and how its stages are keyed.

Layout under ``<state>/data/<pipeline name>/``::

    sensors/ logs/ target_sample/ target_holdout/   ingested datasets (+ quarantine, manifest)
    prefiltered/<rules key>/                        the kept pool, ONE dataset per rule set (rsft.keptpool):
        days/<day>/<key>.parquet                    kept rows of a UTC day, keyed by its rows, contexts, rules
        ctx/<digest>.parquet                        small per-day context frames (window rules, rolling features)
        versions/<version>.json                     manifests: the day files of one night's pool, in order
        current.json                                the newest manifest
        samples/<day file>-<seed>-<cap>.parquet     a day's rows under a row-hash threshold (pool samples)
    runs/<key>/scorer.pt                            fitted density-ratio scorer
    runs/<key>/chunks/                              per-chunk selections + completion markers
    runs/<key>/selected.parquet                     the selected pool rows
    runs/<key>/report/                              selection report JSON + PNG
    base/<key>.pt                                   base model pretrained on the pool (first night)
    warnings.json                                   the last nights' warnings (rsft.pipeline.warning_history)

Every key is a digest of what decides the stage's output, so a re-run reuses finished work.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rsft.config import ContractConfig, PipelineConfig
from rsft.fsio import file_lock
from rsft.state import StatePaths, state_paths

log = logging.getLogger(__name__)

TARGET_SAMPLE = "target_sample"
TARGET_HOLDOUT = "target_holdout"


def state(cfg: PipelineConfig) -> StatePaths:
    return state_paths(cfg.state.dir)


@contextmanager
def night_lock(cfg: PipelineConfig) -> Iterator[None]:
    """One night at a time per pipeline on a state dir (a night, the fine-tune-only flow, `rsft gc`):
    a night's kept-pool update removes its superseded per-day files and the retention removes old
    intermediates, which another night on the same state dir could be about to read. A second one
    waits (saying so in the log); the lock goes with its holder's process. (Hourly ingests do not
    take it: they only add files, atomically.)"""
    path = state(cfg).locks / f"night-{cfg.name}.lock"
    with file_lock(path, waiting=lambda: log.warning(
            "another night of %s holds %s (a night or `rsft gc` on this state dir): waiting for it", cfg.name, path)):
        yield


def pipeline_root(cfg: PipelineConfig) -> Path:
    return state(cfg).run_dir(cfg.name)


def tracking_uri(cfg: PipelineConfig) -> str:
    return cfg.state.tracking_uri or state(cfg).tracking_uri


def pool_dataset(cfg: PipelineConfig) -> str:
    """The ingested dataset the pipeline selects from: ``sensors``, or ``logs`` for text."""
    return "logs" if cfg.features.kind == "text" else "sensors"


def contract(cfg: PipelineConfig, name: str) -> ContractConfig:
    """The schema contract ``ingest.<name>``; a clear error when it is not configured."""
    c = getattr(cfg.ingest, name)
    if c is None:
        raise ValueError(f"ingest.{name} contract is not configured")
    return c


def ingest_sources(cfg: PipelineConfig) -> dict[str, tuple[list[str], str]]:
    """dataset name -> (raw sources, contract name in cfg.ingest). The target sample and hold-out
    follow the pool's contract (sensor rows, or maintenance-log lines for a text pipeline)."""
    pool = pool_dataset(cfg)
    out: dict[str, tuple[list[str], str]] = {}
    if cfg.data.pool:
        out["sensors"] = ([cfg.resolve(p) for p in cfg.data.pool], "sensors")
    if cfg.data.logs and cfg.ingest.logs is not None:
        out["logs"] = ([cfg.resolve(p) for p in cfg.data.logs], "logs")
    out[TARGET_SAMPLE] = ([cfg.resolve(cfg.data.target_sample)], pool)
    out[TARGET_HOLDOUT] = ([cfg.resolve(cfg.data.target_holdout)], pool)
    return out


# settings that say where and how fast work runs, or what is kept on disk afterwards, not what a
# night computes: changing them does not make a new night (a re-run on a bigger cluster, or with
# a longer retention, is the same night and registers nothing new; nor is where its links point)
# settings that do not change a night's result: where it runs, and what it only warns of
EXECUTION_ONLY = frozenset({"task_runner", "concurrency", "dask_address", "compare_previous_files",
                            "linear_reference_by", "linear_reference_terms"})
STATE_EXECUTION_ONLY = frozenset({"keep_nights", "gc_after_night", "ui_url"})


def without_execution(d, keep: frozenset[str] = frozenset()):
    """A config section's dump without :data:`EXECUTION_ONLY` settings, at any depth (for keys);
    the sections named in ``keep`` keep theirs."""
    if not isinstance(d, dict):
        return d
    return {k: (v if k in keep else without_execution(v)) for k, v in d.items() if k not in EXECUTION_ONLY}


def night_config(cfg: PipelineConfig) -> dict:
    """The resolved config minus :data:`EXECUTION_ONLY` settings (in every section) and the
    state dir's retention: what decides a night's result."""
    # the search's CV units on threads share torch's global generator (dropout draws from it): where
    # they run can change the chosen recipe, so adapt's executor stays part of the night
    out = without_execution(cfg.model_dump(mode="json", exclude={"base_dir"}), keep=frozenset({"adapt"}))
    out["state"] = {k: v for k, v in out.get("state", {}).items() if k not in STATE_EXECUTION_ONLY}
    return out


def cfg_yaml(cfg: PipelineConfig, synth: bool = True) -> str:
    """The whole resolved config as YAML (saved with every checkpoint and MLflow run); without
    the ``synth`` section when ``synth`` is false. Without ``train.task``: implied by
    ``features.classes``, it is not a setting (its default read "regression" for a text classifier)."""
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json", exclude={"base_dir": True, "train": {"task"},
                                                               **({} if synth else {"synth": True})}),
                          sort_keys=False)
