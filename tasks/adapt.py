"""The adapt search's CV units as Prefect tasks: one task run per unit (a candidate on a fold, or
several such cells trained as one model stack), at most ``adapt.concurrency`` at a time, on a
thread pool or a Dask cluster (``adapt.task_runner``).

The search itself (rungs, halving, the choice) stays in ``rsft.adapt``; this module only supplies
the ``map_units`` executor it calls, so the result is the same whichever runner executes it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from rsft.adapt import UnitCall, UnitResult, make_candidates, run_unit
from rsft.config import AdaptConfig
from tasks.runners import task_mapper


def _unit_run_name() -> str:
    from prefect.runtime import task_run

    call = task_run.parameters.get("call")
    if call is None:
        return "adapt-unit"
    u = call.unit
    cands = make_candidates(call.search.cfg)
    names = list(dict.fromkeys(cands[i].name for i, _ in u.cells))
    folds = list(dict.fromkeys(f for _, f in u.cells))
    where = f"fold {folds[0]}" if len(folds) == 1 else f"folds {','.join(map(str, folds))}"
    return (f"cv {' + '.join(names)} {where}" + (" (stacked)" if len(u.cells) > 1 else "")
            + (" (full epochs)" if u.full else ""))


# inputs are arrays and a model: never hashed for a cache key, never persisted as a result
@task(name="adapt-cv-unit", cache_policy=NO_CACHE, persist_result=False, task_run_name=_unit_run_name)
def adapt_unit_task(call: UnitCall) -> UnitResult:
    return run_unit(call)


@contextmanager
def unit_mapper(cfg: AdaptConfig) -> Iterator[Callable[[Any, list[UnitCall]], list[UnitResult]] | None]:
    """A ``map_units`` for ``rsft.adapt.run_search`` backed by one task runner kept open for the
    whole search (a Dask cluster starts once); ``None`` for ``task_runner: inline``."""
    with task_mapper(cfg, adapt_unit_task, "call") as map_calls:
        yield None if map_calls is None else (lambda fn, calls: map_calls(calls))
