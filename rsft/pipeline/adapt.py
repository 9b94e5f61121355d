"""The adaptation search as a stage: choose tonight's recipe by cross-validation on the target sample.

The search itself (candidates, folds, rungs, the one-SE choice) is :mod:`rsft.adapt`; this module
feeds it the night's data — the target sample with its CV groups and a labelled pool sample — and
says which choice is the sampling stage's own recipe (trained at full scale on that stage's
selection instead of the search's pool sample).
"""

from __future__ import annotations

from typing import Any, Callable

from rsft.config import PipelineConfig
from rsft.pipeline.data import adapt_target, holdout_identity, pool_sample, without_holdout
from rsft.pipeline.results import Prefiltered
from rsft.pipeline.training import arrays


def is_sampling_recipe(c, cfg: PipelineConfig) -> bool:
    """Whether adapt candidate ``c`` is the sampling stage's own recipe: rsft by rejection with
    that stage's tempering β and M quantile (its selection is then the candidate's pool rows)."""
    sp = cfg.sampling
    return c.strategy == "rsft" and sp.mode == "rejection" and c.beta == sp.temper and c.m_quantile == sp.m_quantile


def adapt_inputs(cfg: PipelineConfig, prefiltered: Prefiltered):
    """What the search reads: the target sample as (x, y, CV groups), in time order, and its pool
    sample — ``adapt.pool_rows`` labelled rows of the kept pool (hashed, deterministic)."""
    from rsft.adapt import PoolSample

    f, a = cfg.features, cfg.adapt
    target, groups = adapt_target(cfg)  # in time order: time blocks and forward folds need it
    xt, yt = arrays(target, f)
    # without the hold-out's rows: the chosen recipe is scored on them (rsft.pipeline.data.holdout_identity)
    pool = without_holdout(pool_sample(prefiltered, a.pool_rows, cfg.train.seed + 2, labelled=f.label), holdout_identity(cfg))
    xp, yp = arrays(pool, f)
    return (xt, yt, groups), PoolSample(xp, yp)


def adapt_stage(cfg: PipelineConfig, warm, prefiltered: Prefiltered, map_units=None,
                final_fit: Callable[[Any], tuple[Any, dict[str, Any]] | None] | None = None,
                inputs=None, holdout: tuple[Any, Any] | None = None):
    """Run the search from the warm start; returns (the chosen recipe's model, report): retrained
    on the whole target sample (+ its pool rows from the search's pool sample), or by
    ``final_fit`` at full scale (``rsft.adapt.run_search``; ``report["final"]`` says which).
    ``map_units``: how the CV units run (threads, Dask; None = in order). ``inputs``:
    :func:`adapt_inputs` when already read; ``holdout`` (x, y): every candidate is also scored on
    it (``rsft adapt --config``)."""
    from rsft.adapt import run_search
    from rsft.features import feature_names

    target, pool = inputs if inputs is not None else adapt_inputs(cfg, prefiltered)
    return run_search(cfg.adapt, cfg.train, cfg.scorer, feature_names(cfg.features), warm, target,
                      pool, holdout, seed=cfg.train.seed, map_units=map_units, final_fit=final_fit)
