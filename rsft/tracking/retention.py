"""Rejected versions' models freed (``rsft gc`` and the night's retention), their history kept.

A version the nightly gate rejected never served; after ``state.keep_nights`` newer versions its
model is only weight (the trial: 14 of 27 versions rejected, ~1 MB each on the demo model,
hundreds of MB on a real one). What goes is the model itself: the logged model's artifacts
(MLflow 3's ``models:/m-…``: MLmodel, weights, code, environment) and rsft's state-dict
checkpoint in the night's run (``checkpoint/``). What stays: the registered version (its
decision, metrics, lineage and event tags: ``rsft history`` lists it), the logged model's entry
and metrics, the night's run (params, metrics, scorer, selection report, config, decision).
The version is tagged ``rsft.model_removed=<UTC date>`` (the logged model too) before anything is
deleted, so a killed removal is finished by the next ``rsft gc``, and ``rsft promote`` /
``rollback`` refuse it in one line.

Why not MLflow's own deletion: ``MlflowClient.delete_model_version`` only marks the version
deleted (its source and run id redacted, the artifacts left: no space freed, the audit trail
loses the version), and ``delete_logged_model`` only marks the logged model deleted — its files go
with ``mlflow gc``, which needs the backend database itself, not the tracking API. The artifact
repository's ``delete_artifacts`` (what ``mlflow gc`` calls) works through the tracking URI:
local files, and a tracking server's proxied artifacts (``mlflow-artifacts:``, the server's
``--artifacts-destination``) alike.

Never a version holding an alias (champion, previous-champion: it serves or is the rollback
target, any other alias), never one of the newest ``keep_nights`` versions (a night registers
at most one: they hold every version of the newest ``keep_nights`` nights), never a promoted or
undecided one. The alias check and the tag are made under the registry lock, as promotions are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rsft.tracking import registry
from rsft.tracking.registry import MODEL_REMOVED, removed_on
from rsft.tracking.serving import logged_model_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Freed:
    """A version whose model was removed (or, in a dry run, would be), with the bytes."""

    version: int
    bytes: int
    why: str
    removed_before: str = ""  # tagged by an earlier, interrupted removal (its date): finished now


def _locations(mlc, version) -> list[tuple[str, str | None]]:
    """(artifact root URI, path under it; None: all of it) of a version's model: the logged
    model's artifacts (or, for a version registered from a run's path, that path) and the night
    run's checkpoint folder."""
    out: list[tuple[str, str | None]] = []
    src = str(version.source or "")
    if model_id := logged_model_id(version):
        out.append((mlc.get_logged_model(model_id).artifact_location, None))
    elif src.startswith("runs:/") and "/" in src[len("runs:/"):].strip("/"):  # (MLflow 2: a run's model folder)
        run_id, _, path = src[len("runs:/"):].strip("/").partition("/")
        out.append((mlc.get_run(run_id).info.artifact_uri, path))
    if version.run_id:
        out.append((mlc.get_run(version.run_id).info.artifact_uri, Path(registry.CHECKPOINT_ARTIFACT).parent.as_posix()))
    return out


def _bytes(repo, path: str | None) -> int:
    """The bytes under ``path`` of an artifact repository (0 when nothing is left there)."""
    return sum(_bytes(repo, f.path) if f.is_dir else (f.file_size or 0) for f in repo.list_artifacts(path))


def _candidates(mlc, name: str, keep_nights: int, finish: bool) -> list:
    """Rejected versions older than the newest ``keep_nights``, holding no alias, never served
    (:func:`_served`), not removed yet
    (with ``finish``: also those an interrupted removal tagged)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = sorted(mlc.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)
        aliased = {str(v) for v in (mlc.get_registered_model(name).aliases or {}).values()}
    except MlflowException:  # nothing registered yet
        return []
    return [v for v in versions[keep_nights:] if dict(v.tags or {}).get(registry.DECISION) == "rejected"
            and not _served(v) and str(v.version) not in aliased and (finish or not removed_on(v))]


def _served(v) -> bool:
    """A version with an event in its audit trail — promoted by hand (`rsft promote`), or champion
    and rolled back from: it served, whatever its night's gate said, so its model stays."""
    return any(k.startswith(registry.EVENT_PREFIX) for k in (v.tags or {}))


def free_rejected(mlc, name: str, keep_nights: int, lock_dir: str | Path, *, dry_run: bool = False,
                  finish: bool = True) -> list[Freed]:
    """Remove (``dry_run``: list) the models of ``name``'s rejected versions older than the newest
    ``keep_nights`` (see the module doc). ``finish``: also re-check versions an earlier removal
    tagged and delete what a kill left (``rsft gc``; the night's retention skips them: its cost
    stays that of the new candidates)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    why = (f"rejected by its night's gate, older than the newest {keep_nights} versions, no alias: its model "
           f"(logged model, checkpoint) removed; the version, decision and metrics stay (tag {MODEL_REMOVED})")
    plan = []
    for v in _candidates(mlc, name, keep_nights, finish):
        try:
            places = [(get_artifact_repository(uri), path) for uri, path in _locations(mlc, v)]
            size = sum(_bytes(repo, path) for repo, path in places)
        except (MlflowException, OSError) as e:  # its run or logged model deleted by hand: left, said
            log.warning("v%s's model left in place: %s", v.version, str(e).splitlines()[0] if str(e) else type(e).__name__)
            continue
        if removed_on(v) and not size:  # removed earlier: nothing left
            continue
        plan.append((v, places, size))
    if dry_run or not plan:
        return [Freed(int(v.version), size, why, removed_on(v)) for v, _, size in plan]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    with registry.registry_lock(lock_dir, name):  # tagged first, as promotions check: never a version gaining an alias now
        aliased = {str(x) for x in (mlc.get_registered_model(name).aliases or {}).values()}
        plan = [p for p in plan if str(p[0].version) not in aliased]
        for v, _, _ in plan:
            if not removed_on(v):
                mlc.set_model_version_tag(name, str(v.version), MODEL_REMOVED, today)
                if model_id := logged_model_id(v):
                    mlc.set_logged_model_tags(model_id, {MODEL_REMOVED: today})
    for _, places, _ in plan:
        for repo, path in places:
            repo.delete_artifacts(path)
    return [Freed(int(v.version), size, why, removed_on(v)) for v, _, size in plan]
