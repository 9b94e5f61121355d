"""The Prefect task runner a fan-out uses: a thread pool, or a Dask cluster (an existing one at
an address, or a LocalCluster of ``concurrency`` single-threaded worker processes)."""

from __future__ import annotations


def make_task_runner(kind: str, concurrency: int, dask_address: str | None = None):
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": concurrency, "threads_per_worker": 1, "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=concurrency)
