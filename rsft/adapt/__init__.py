"""Choose tonight's adaptation recipe by grouped cross-validation on the target sample.

No single recipe wins on every drift: sometimes rejection-sampled pool rows help, sometimes any
pool data hurts, sometimes an affine recalibration of the champion is all that is needed, and
sometimes the champion should stay. So every candidate recipe is trained on the training folds
of the target sample (plus its pool rows) and scored on the held-out fold; folds are grouped
(machine, batch or contiguous time blocks) so neighbouring rows never straddle a fold. The
choice is the lowest mean loss, with a one-standard-error rule toward the cheaper candidate.

Recipes (cheapest first): ``keep_champion``, ``recalibrate`` (affine correction of the output,
folded into the last linear layer), ``head_only`` (fine-tune only the last layer on the target
sample), ``sample_only`` (fine-tune on the target sample), ``random_mix`` (a uniform pool subset
of the RS size + target), ``rsft`` (rejection-sampled pool rows with weights ``w**beta`` + target),
``weighted`` (importance-weighted fine-tune on a pool subset + target).

The modules, each importing only those above it:

- ``cv``          grouped folds, the loss (RMSE), per-candidate results, the one-SE ``choose``
- ``candidates``  the strategy grid expanded into ``Candidate`` s (``make_candidates``; ``FREE``)
- ``pool``        ``PoolSample``, the density-ratio cache per split (``PoolRatios``: log w, log M)
                  and ``rejection_indices`` (the sampling stage's acceptance rule)
- ``recipes``     what each candidate trains on (``training_set``) or does to the champion
                  (``recalibrate``, ``head_only_freeze``)
- ``stacking``    which cells train as one model stack (``Unit``, ``STACK_MIN_FILL``), padding, scoring
- ``search``      ``Search`` and ``run_search``; ``run_unit`` / ``UnitCall`` / ``UnitResult`` for executors
- ``table``       the report for people: ``candidate_table``, ``plot_candidates``

A search goes: ``make_folds`` (``grouped_folds`` or ``forward_folds``) → ``Search.prepare`` (warm predictions; each fold's log w) →
rung 0 (every candidate on the first folds, short epochs; units planned by ``stacking``, run by
``run_unit``, each cell's rows from ``recipes``) → rung 1 (free candidates on the rest, the best
trained ones again) → ``choose`` → ``Search.final`` on the whole target sample → ``candidate_table``.
"""

from rsft.adapt.candidates import FREE, POOL_STRATEGIES, Candidate, make_candidates
from rsft.adapt.cv import CandidateResult, check_folds, choose, forward_folds, grouped_folds, make_folds, rmse, time_blocks
from rsft.adapt.pool import PoolSample, rejection_indices
from rsft.adapt.recipes import affine_fit, head_only_freeze, last_linear, recalibrate
from rsft.adapt.search import MapUnits, Search, UnitCall, UnitResult, run_search, run_unit
from rsft.adapt.stacking import STACK_MIN_FILL, Unit
from rsft.adapt.table import candidate_records, candidate_rows, candidate_table, plot_candidates

__all__ = [
    "FREE", "POOL_STRATEGIES", "STACK_MIN_FILL", "Candidate", "CandidateResult", "MapUnits",
    "PoolSample", "Search", "Unit", "UnitCall", "UnitResult", "affine_fit", "candidate_records", "candidate_rows",
    "candidate_table", "check_folds", "choose",
    "forward_folds", "grouped_folds", "make_folds", "head_only_freeze", "last_linear", "make_candidates",
    "plot_candidates", "recalibrate",
    "rejection_indices", "rmse", "run_search", "run_unit", "time_blocks",
]
