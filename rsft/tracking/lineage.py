"""What a registered version was made from: the datasets its run logged as inputs, as local paths
(read by ``rsft gc`` to keep them)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlparse


def _path(source: str) -> str | None:
    try:
        uri = json.loads(source).get("uri", "")
    except (ValueError, AttributeError):
        return None
    u = urlparse(uri)
    return unquote(u.path) if u.scheme in ("file", "") else None


def version_lineage(mlclient, name: str, aliased_only: bool = False) -> list[dict[str, Any]]:
    """Every registered version of ``name`` (with ``aliased_only``, those holding an alias:
    one query for the versions, one run read per version returned): version, aliases, run id,
    and its run's dataset inputs by name (``selected``, ``pool-prefiltered``, …) as local paths."""
    from mlflow.exceptions import MlflowException

    from rsft.tracking.registry import history

    out = []
    for v in history(mlclient, name):
        if aliased_only and not v["aliases"]:
            continue
        datasets: dict[str, str] = {}
        try:
            run = mlclient.get_run(v["run_id"]) if v["run_id"] else None
        except MlflowException:
            run = None
        for di in (run.inputs.dataset_inputs if run and run.inputs else []) or []:
            p = _path(di.dataset.source)
            if p:
                datasets[di.dataset.name] = p
        out.append({"version": v["version"], "aliases": v["aliases"], "run_id": v["run_id"], "datasets": datasets})
    return out
