"""Reading every flow run a query matches. Prefect's API answers one page per call (at most
``PAGE`` runs, its default limit): a query that reads one page silently misses the rest once
there are more (a long history, a host with many killed runs). Used by :mod:`flows.crashed` and
:mod:`flows.history` (which imports :mod:`flows.crashed`: the helper lives apart from both)."""

from __future__ import annotations

PAGE = 200  # the API's default page size


def paged(client, page: int = PAGE, **query):
    """Every flow run ``query`` (``read_flow_runs``' filters and sort) matches, ``page`` at a time.
    Give a ``sort`` for a stable order between pages; a caller that changes the runs it reads
    (their state, say) reads them all first: offsets shift under a changed result set."""
    offset = 0
    while True:
        runs = client.read_flow_runs(limit=page, offset=offset, **query)
        yield from runs
        if len(runs) < page:
            return
        offset += page
