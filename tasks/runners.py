"""The Prefect task runner a fan-out uses: a thread pool, or a Dask cluster (an existing one at
an address, or a LocalCluster of ``concurrency`` single-threaded worker processes).

Every fanned-out stage has the same three settings in its config section (``ingest``,
``prefilter``, ``sampling``, ``adapt``): ``task_runner``, ``concurrency``, ``dask_address``;
:func:`runner_for` makes the runner from such a section and :func:`task_mapper` maps a task over
a list on it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator


def make_task_runner(kind: str, concurrency: int, dask_address: str | None = None):
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": concurrency, "threads_per_worker": 1, "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=concurrency)


def runner_for(section: Any):
    """The task runner of a config section with ``task_runner``, ``concurrency``, ``dask_address``."""
    return make_task_runner(section.task_runner, section.concurrency, section.dask_address)


@contextmanager
def task_mapper(section: Any, task: Any, parameter: str) -> Iterator[Callable[[list], list] | None]:
    """``map(items) -> results``: one run of ``task`` per item (passed as ``parameter``), at most
    ``section.concurrency`` at a time on the section's runner, which stays open while the context
    does (a Dask cluster starts once); ``None`` for ``task_runner: inline``."""
    if section.task_runner == "inline":
        yield None
        return
    with runner_for(section) as runner:

        def map_items(items: list) -> list:
            futures = [runner.submit(task, parameters={parameter: x}) for x in items]
            return [f.result() for f in futures]

        yield map_items
