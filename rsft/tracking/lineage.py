"""The night's lineage in MLflow, in the order the data flowed (steps from
:func:`rsft.pipeline.lineage.night_lineage`):

- the model version's tags, self-explaining and sorted as the data flowed:
  ``lineage.1_raw_files`` (what it is), ``lineage.1_raw_files.rows``, ``lineage.1_raw_files.digest``,
  … ``lineage.5_training_set.*``, ``lineage.target_sample.*``, ``lineage.target_holdout.*``;
- the night's run: ``lineage/chain.json`` (the steps as JSON);
- each step as a run input (dataset ``1_raw_files`` … with its row count as the profile);
- the logged model's datasets: the challenger's hold-out metrics linked to the model and the
  ``target_holdout`` dataset, its training-set size to ``5_training_set``.

And back: what a registered version was made from — its run's dataset inputs as local paths
(:func:`version_lineage`, read by ``rsft gc`` to keep them).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from rsft.tracking.serving import logged_model_id

TAG_PREFIX = "lineage."


def tags(steps: list[dict[str, Any]]) -> dict[str, str]:
    """``lineage.<key>`` = what it is and where, ``.rows``, ``.digest`` per step."""
    out = {}
    for s in steps:
        k = TAG_PREFIX + s["key"]
        out[k] = f"{s['what']} — {s['uri']}"[:5000]
        out[f"{k}.rows"] = str(int(s["rows"]))
        out[f"{k}.digest"] = str(s["digest"])
    return out


def _dataset(step: dict[str, Any]):
    """A dataset entity: name, digest, source URI and the row count as its profile."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    class _Counted(MetaDataset):
        @property
        def profile(self):
            return {"num_rows": int(step["rows"])}

        def to_dict(self):
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    uri = step["uri"].split(", ")[0]
    with warnings.catch_warnings():  # "can be interpreted in multiple ways" for file:// URIs
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(Path(uri).resolve().as_uri() if "://" not in uri else uri)
    return _Counted(source=source, name=step["key"], digest=str(step["digest"])[:36])


def record(mlc, run_id: str, steps: list[dict[str, Any]], model_name: str | None = None, version: str | None = None,
           holdout_metrics: dict[str, float] | None = None) -> dict[str, str]:
    """Write the lineage to the run (``lineage/chain.json``, dataset inputs) and, when a
    version was registered, to the version (tags) and its logged model (metrics with their
    datasets). Returns the tags."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    t = tags(steps)  # on the version only: on the run page they would bury the run's own tags
    mlc.log_text(run_id, json.dumps(steps, indent=2), "lineage/chain.json")
    datasets = {s["key"]: _dataset(s) for s in steps}
    mlc.log_inputs(run_id, datasets=[
        DatasetInput(d._to_mlflow_entity(), [InputTag("mlflow.data.context", "evaluation" if k == "target_holdout" else "training")])
        for k, d in datasets.items()])
    if version is None:
        return t
    for k, v in t.items():
        mlc.set_model_version_tag(model_name, str(version), k, v)
    model_id = logged_model_id(mlc.get_model_version(model_name, str(version)))
    if model_id:
        for key, value in (holdout_metrics or {}).items():
            mlflow.log_metric(f"challenger_holdout_{key}", float(value), run_id=run_id, model_id=model_id,
                              dataset=datasets["target_holdout"])
        train = next(s for s in steps if s["key"] == "5_training_set")
        mlflow.log_metric("train_rows", float(train["rows"]), run_id=run_id, model_id=model_id, dataset=datasets["5_training_set"])
    return t


# --------------------------------------------------------------------------------------
# reading it back (rsft gc)
# --------------------------------------------------------------------------------------
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
