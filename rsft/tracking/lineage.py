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


def _datasets(mlclient, run_id: str | None) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        run = mlclient.get_run(run_id) if run_id else None
    except MlflowException:
        return {}
    out: dict[str, str] = {}
    for di in (run.inputs.dataset_inputs if run and run.inputs else []) or []:
        p = _path(di.dataset.source)
        if p:
            out[di.dataset.name] = p
    return out


def version_lineage(mlclient, name: str, aliased_only: bool = False) -> list[dict[str, Any]]:
    """Registered versions of ``name`` — every one, or with ``aliased_only`` those holding an
    alias (read from the model's aliases: a constant number of queries, however many versions
    exist) — each with version, aliases, run id, and its run's dataset inputs by name
    (``selected``, ``pool-prefiltered``, …) as local paths."""
    from mlflow.exceptions import MlflowException

    from rsft.tracking.registry import history

    if not aliased_only:
        return [{"version": v["version"], "aliases": v["aliases"], "run_id": v["run_id"],
                 "datasets": _datasets(mlclient, v["run_id"])} for v in history(mlclient, name)]
    try:
        aliases = mlclient.get_registered_model(name).aliases or {}
    except MlflowException:  # nothing registered yet
        return []
    by_version: dict[str, list[str]] = {}
    for alias, ver in aliases.items():
        by_version.setdefault(str(ver), []).append(alias)
    out = []
    for ver, names in sorted(by_version.items(), key=lambda kv: int(kv[0]), reverse=True):
        run_id = mlclient.get_model_version(name, ver).run_id
        out.append({"version": int(ver), "aliases": sorted(names), "run_id": run_id, "datasets": _datasets(mlclient, run_id)})
    return out
