"""MLflow tracking, registration and the champion/challenger promotion gate.

Small idempotent functions; the promotion policy is data (:class:`PromotionConfig`).
Aliases only (``champion``, ``previous-champion``), never the deprecated stages. Alias moves
happen under a lock and re-read the current champion right before writing, so two retrains
finishing together cannot promote a loser.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import math
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from rsft.config import PromotionConfig
from rsft.fsio import file_lock
from rsft.paired import Paired, paired_difference
from rsft.readable import figures

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous-champion"
CHECKPOINT_ARTIFACT = "checkpoint/model.pt"


def _mlflow():
    import mlflow  # heavy import: only when the registry is used

    return mlflow


def client(tracking_uri: str):
    """The MLflow client of ``tracking_uri`` (also the process's tracking and registry URI). A
    SQLite store is made complete first (:func:`rsft.tracking.store.ensure_store`)."""
    from rsft.tracking.store import ensure_store

    ensure_store(tracking_uri)
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# A lock that holds across machines, plugged in by the orchestration layer (the library never
# imports prefect): ``name -> context manager``. flows/tasks set it to a Prefect global
# concurrency limit when a Prefect server is configured (tasks/locks.py); unset = the file lock only.
_ENGINE_LOCK: contextvars.ContextVar[Callable[[str], ContextManager[Any]] | None] = contextvars.ContextVar(
    "rsft_engine_lock", default=None)


@contextlib.contextmanager
def engine_lock(factory: Callable[[str], ContextManager[Any]] | None) -> Iterator[None]:
    """Within this block, :func:`registry_lock` also holds ``factory(model name)`` (after the file
    lock): the orchestrator's cross-machine lock. ``None`` leaves the file lock alone."""
    token = _ENGINE_LOCK.set(factory)
    try:
        yield
    finally:
        _ENGINE_LOCK.reset(token)


@contextlib.contextmanager
def registry_lock(lock_dir: str | Path, name: str) -> Iterator[None]:
    """Exclusive lock around version allocation and alias moves: a file lock under the state dir
    (processes of one machine), plus the engine lock when one is plugged in (:func:`engine_lock`:
    processes of every machine that share the orchestrator). Always taken in that order."""
    factory = _ENGINE_LOCK.get()
    with file_lock(Path(lock_dir) / f"registry-{name}.lock"), \
            (factory(name) if factory is not None else contextlib.nullcontext()):
        yield


def use_experiment(name: str, artifact_root: str | Path | None = None) -> str:
    """Set the active experiment, creating it with a local artifact root when embedded."""
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = Path(artifact_root).resolve().as_uri() if artifact_root else None
        exp_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


# --------------------------------------------------------------------------------------
# reading the registry
# --------------------------------------------------------------------------------------
def alias_version(mlclient, name: str, alias: str = CHAMPION):
    """The ModelVersion behind ``name@alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlclient.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


MODEL_REMOVED = "rsft.model_removed"  # on a version (and its logged model): the UTC date rsft gc removed its model


def removed_on(version) -> str:
    """The date ``rsft gc`` removed a version's model ("" when it did not: rsft.tracking.retention)."""
    return dict(version.tags or {}).get(MODEL_REMOVED, "")


def model_removed(version) -> str | None:
    """One line when ``version``'s model was removed (it can never serve again), else None."""
    when = removed_on(version)
    return (f"v{version.version}'s model was removed by rsft gc on {when} (a rejected version older than the newest "
            "state.keep_nights nights): it cannot be promoted or rolled back to, or scored; its decision and metrics "
            "stay in `rsft history`" if when else None)


def download_checkpoint(mlclient, version) -> str:
    """Local path of the state-dict checkpoint logged with a model version's run (a version whose
    model ``rsft gc`` removed: ``ValueError``, one line)."""
    if refused := model_removed(version):
        raise ValueError(refused)
    dst = tempfile.mkdtemp(prefix="rsft-ckpt-")
    return mlclient.download_artifacts(version.run_id, CHECKPOINT_ARTIFACT, dst)


def load_version_model(mlclient, version):
    """The torch model of a registered version, rebuilt from its state-dict checkpoint."""
    from rsft.models import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(download_checkpoint(mlclient, version)))


def load_champion(ref: str, tracking_uri: str | None = None):
    """A model to compare candidates against, from ``ref``: ``models:/<name>@<alias>``,
    ``models:/<name>/<version>``, ``runs:/<run id>`` (a run that logged rsft's checkpoint) or a
    checkpoint file (``rsft.models.checkpoint``). Returns (model, feature names). The registry
    and runs are read from ``tracking_uri``. Errors are one line (``ValueError``)."""
    from rsft.models import load_checkpoint, model_from_checkpoint

    if ref.startswith(("models:/", "runs:/")):
        if not tracking_uri:
            raise ValueError(f"{ref}: an MLflow URI needs a tracking server or store (--tracking-uri)")
        path = _checkpoint_of(client(tracking_uri), ref)
    else:
        path = ref
        if not Path(path).is_file():
            raise ValueError(f"{ref}: no such checkpoint file (or use models:/<name>@<alias>, runs:/<run id>)")
    try:
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt)
    except Exception as e:  # noqa: BLE001 - a pickle, a foreign state dict: one line
        raise ValueError(f"{ref}: not an rsft checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    names = list(ckpt.get("feature_names") or [])
    if not names:
        raise ValueError(f"{ref}: the checkpoint names no input features")
    return model, names


def _checkpoint_of(mlc, ref: str) -> str:
    """Local path of the rsft checkpoint behind a ``models:/`` or ``runs:/`` URI."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.startswith("runs:/"):
            run_id = ref[len("runs:/"):].strip("/").split("/")[0]
            return mlc.download_artifacts(run_id, CHECKPOINT_ARTIFACT, tempfile.mkdtemp(prefix="rsft-ckpt-"))
        spec = ref[len("models:/"):].strip("/")
        if "@" in spec:
            name, alias = spec.split("@", 1)
            version = alias_version(mlclient=mlc, name=name, alias=alias)
            if version is None:
                raise ValueError(f"{ref}: the registry has no model '{name}' with alias '{alias}'")
        else:
            name, _, number = spec.partition("/")
            version = mlc.get_model_version(name, number)
        return download_checkpoint(mlc, version)
    except (MlflowException, OSError) as e:
        raise ValueError(f"{ref}: {str(e).splitlines()[0][:200]}") from None


HOLDOUT_FILES = "rsft.holdout_files"  # the hold-out file(s) a version's night judged it on, set at registration
DATA_TO = "rsft.data_to"  # the day of the newest reading its night was trained and judged on (YYYY-MM-DD)


def history(mlclient, name: str) -> list[dict[str, Any]]:
    """Every version with its decision tags, newest first (the audit trail)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = mlclient.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    try:
        for alias, ver in (mlclient.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(ver), []).append(alias)
    except MlflowException:
        pass
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = dict(v.tags or {})
        rows.append(
            {
                "version": int(v.version),
                "created": v.creation_timestamp,
                "run_id": v.run_id,
                "aliases": aliases.get(str(v.version), []),
                "decision": tags.get("rsft.decision", ""),
                "reason": tags.get("rsft.reason", ""),
                "recipe": tags.get("rsft.recipe", ""),
                "events": sorted((k.removeprefix(EVENT_PREFIX), v) for k, v in tags.items() if k.startswith(EVENT_PREFIX)),
                "metric": tags.get("rsft.challenger_metric", ""),
                "metric_name": tags.get("rsft.metric", ""),  # the night's promotion.metric
                "champion_metric": tags.get("rsft.champion_metric", ""),
                # the hold-out its night judged it on (versions registered before these tags: "")
                "holdout_digest": tags.get("lineage.target_holdout.digest", ""),
                "holdout_rows": tags.get("lineage.target_holdout.rows", ""),
                "holdout_files": tags.get(HOLDOUT_FILES, ""),
                "data_to": tags.get(DATA_TO, ""),  # versions registered before the tag: ""
                "model_removed": tags.get(MODEL_REMOVED, ""),  # the date rsft gc removed its model ("": it is there)
            }
        )
    return rows


# --------------------------------------------------------------------------------------
# the promotion gate
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None  # the metric of the model the challenger was judged against (compared_with)
    details: dict[str, Any] = field(default_factory=dict)
    # "champion", or "base model": a first night (no champion yet) judges against the base model
    compared_with: str = "champion"

    def to_dict(self) -> dict[str, Any]:
        """As ``decision.json`` holds it: the reference metric under its model's name — ``base_model``
        on a first night (and ``champion`` null: there is none yet), else ``champion``."""
        d = asdict(self)
        if self.compared_with == "base model":
            d["base_model"], d["champion"] = d.pop("champion"), None
        return d


# promotion metrics where a larger value is better (every other metric is an error: lower wins)
HIGHER_IS_BETTER = frozenset({"r2", "accuracy", "macro_f1", "auroc"})


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def decide(
    policy: PromotionConfig,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    holdout_rows: int,
    challenger_pool: dict[str, float] | None = None,
    champion_pool: dict[str, float] | None = None,
    *,
    diverged: str | None = None,
    base: dict[str, float] | None = None,
    base_pool: dict[str, float] | None = None,
    constant: dict[str, float] | None = None,
) -> Decision:
    """Promote only when every guardrail passes and the challenger wins by the margin.

    Error metrics (rmse, mae, log_loss) are lower-is-better, scores (:data:`HIGHER_IS_BETTER`)
    higher-is-better. ``champion`` None = there is no champion yet: then the challenger must beat
    ``base`` (the hold-out metrics of the base model it was fine-tuned from; pool guardrail
    against ``base_pool``) by the same rule, or, without one, it is promoted. ``diverged``: the
    fit never had a finite loss (its weights are the warm start's) — rejected, with that reason.
    ``constant``: the hold-out metrics of the constant prediction the target sample gives
    (:func:`rsft.evaluate.constant_metrics`): with no champion, a challenger that does not beat it
    by ``policy.beat_constant_by`` (relative) is rejected (with a champion, beating the champion decides).

    When ``challenger`` and the reference (champion or base) carry their per-row outputs on the
    same hold-out rows (:class:`rsft.evaluate.RowMetrics`, as ``evaluate_frame`` returns them), the
    challenger must also win by ``policy.min_z`` standard errors of the paired difference
    (:func:`rsft.paired.paired_difference`): a new hold-out each night moves both models' metric
    far more than it moves their difference. The reason and ``details`` give the difference and
    its SE. Plain metric dicts (no rows) are judged on the metric and the bar alone, and so is a
    first night's challenger against its base model: with no champion there is nothing to keep,
    and the one of the two that measured better is served (a fine-tune better within the noise,
    rejected, left the text pipeline's first night with no champion at all).
    """
    m = policy.metric
    up = m in HIGHER_IS_BETTER
    c = challenger.get(m)
    vs_base = champion is None and base is not None
    ref, ref_pool = (base, base_pool) if vs_base else (champion, champion_pool)
    ch = ref.get(m) if ref else None
    who = "the base model" if vs_base else "champion"
    note = " (no champion yet: judged vs the base model)" if vs_base else ""
    against = "base model" if vs_base else "champion"

    def no(reason: str) -> Decision:
        return Decision(False, reason, m, float(c) if c is not None else float("nan"), ch, compared_with=against)

    if diverged:
        return no(f"the fit diverged: {diverged}")
    if not _finite(c):
        return no(f"challenger {m} is not finite ({c})")
    if holdout_rows < policy.min_holdout_rows:
        return no(f"hold-out has {holdout_rows} rows < min_holdout_rows={policy.min_holdout_rows}")
    if policy.max_pool_regression is not None and challenger_pool and ref_pool:
        cp, chp = challenger_pool.get(m), ref_pool.get(m)
        x = policy.max_pool_regression
        if _finite(cp) and _finite(chp) and (cp < chp * (1 - x) if up else cp > chp * (1 + x)):
            op, sign = ("<", "-") if up else (">", "+")
            return no(f"pool hold-out {m} regressed {cp:.4g} {op} {chp:.4g} × (1 {sign} {x}){' vs the base model' if vs_base else ''}")
    x = policy.beat_constant_by
    k = constant.get(m) if constant and champion is None and x is not None else None
    if _finite(k):
        cs, ks = figures(c, k)
        if not (c > k + abs(k) * x if up else c < k - abs(k) * x):
            by = f"{x:.0%} " if x else ""
            return no(f"{m} {cs} is not {by}better than a constant prediction ({ks}: {constant_kind(constant)}), and "
                      "there is no champion yet (promotion.beat_constant_by)")
    if ref is None:
        first = "no champion yet" + (f": the first champion ({m} {cs} beats the constant prediction {ks})" if _finite(k) else "")
        return Decision(True, first, m, c, None)
    if not _finite(ch):
        return Decision(True, f"{who} {m} is not finite ({ch}){note}", m, c, ch, compared_with=against)
    bar = ch * (1 + policy.min_improvement) if up else ch * (1 - policy.min_improvement)
    cs, chs, bars = figures(c, ch, bar)
    gap = paired_difference(m, getattr(challenger, "rows", None), getattr(ref, "rows", None))
    details = gap.to_dict() | {"min_z": policy.min_z} if gap is not None else {}
    beats = f"{m} {cs} {'>' if up else '<'} {who} {chs} (bar {bars})"
    if not (c > bar if up else c < bar):
        said = f"; {_difference(gap)}" if gap is not None else ""
        return dataclasses.replace(no(f"{m} {cs} does not beat {who} {chs} (bar {bars}){said}{note}"), details=details)
    if gap is None or vs_base:  # a first night: no champion to keep, so the better measured of the two serves
        said = f"; {_difference(gap)}" if gap is not None else ""
        return Decision(True, f"{beats}{said}{note}", m, c, ch, details, compared_with=against)
    if not gap.z >= policy.min_z:
        return dataclasses.replace(no(f"{beats}, but the {_difference(gap, policy.min_z)}: within the hold-out's "
                                      f"noise{note}"), details=details)
    return Decision(True, f"{beats}; {_difference(gap, policy.min_z)}{note}", m, c, ch, details, compared_with=against)


def _difference(gap: Paired, min_z: float | None = None) -> str:
    """The paired difference in words — "difference 0.042 ± 0.011 (3.8 SE ≥ promotion.min_z=2)" —
    positive when the challenger is better; without ``min_z``, no comparison with it."""
    d, se = figures(gap.difference, gap.se)
    if min_z is None:
        return f"difference {d} ± {se}"
    return f"difference {d} ± {se} ({gap.z:.1f} SE {'≥' if gap.z >= min_z else '<'} promotion.min_z={min_z:g})"


DECISION = "rsft.decision"  # written last: a version has a decision once this tag exists
JUDGED_AGAINST = "rsft.judged_against"  # the champion's version when the decision was made ("" = none)
PAIRED_TAGS = {"difference": "rsft.difference", "difference_se": "rsft.difference_se", "z": "rsft.difference_z",
               "min_z": "rsft.min_z"}


def record_decision(mlclient, name: str, version: str, decision: Decision, judged_against: str | None = None) -> None:
    """The gate's decision as version tags. MLflow writes one tag per call, so ``rsft.decision``
    goes last: a night killed half-way leaves a version without a decision (finished by the
    re-run, :func:`rsft.tracking.promotion.register_and_gate`), never a half-recorded one."""
    tags = {
        "rsft.reason": decision.reason,
        "rsft.metric": decision.metric,
        "rsft.challenger_metric": f"{decision.challenger:.6g}",
        "rsft.champion_metric": "" if decision.champion is None else f"{decision.champion:.6g}",
        JUDGED_AGAINST: "" if judged_against is None else str(judged_against),
        # the paired difference on the hold-out's rows and its standard error (rsft.paired), when judged so
        **{tag: f"{decision.details[key]:.6g}" for key, tag in PAIRED_TAGS.items() if key in decision.details},
        DECISION: "promoted" if decision.promote else "rejected",
    }
    for k, v in tags.items():
        mlclient.set_model_version_tag(name, version, k, v)


def constant_kind(constant: dict[str, float]) -> str:
    """What the constant prediction of :func:`rsft.evaluate.constant_metrics` predicts, from its
    metrics (a classifier's have an accuracy)."""
    return "the target sample's class shares" if "accuracy" in constant else "the target sample's mean"


def refused_by_gate(mlc, name: str, version: str) -> str | None:
    """One line when ``version``'s night rejected it (a rollback or a forced promotion made it the
    champion by hand), else None."""
    was = recorded_decision(mlc.get_model_version(name, str(version)))
    if was is None or was.promote:
        return None
    return f"v{version} was rejected by its night's gate ({was.reason}): it is the champion now by hand"


def recorded_decision(version) -> Decision | None:
    """The decision recorded on a version (:func:`record_decision`), or None when it has none."""
    tags = dict(version.tags or {})
    if tags.get(DECISION) not in ("promoted", "rejected"):
        return None

    def num(key: str) -> float | None:
        try:
            return float(tags[key]) if tags.get(key) else None
        except ValueError:
            return None

    ch = num("rsft.challenger_metric")
    paired = {key: x for key, tag in PAIRED_TAGS.items() if (x := num(tag)) is not None}
    return Decision(tags[DECISION] == "promoted", tags.get("rsft.reason", ""), tags.get("rsft.metric", ""),
                    float("nan") if ch is None else ch, num("rsft.champion_metric"), paired)


# --------------------------------------------------------------------------------------
# a night's version (at most one per night, however often the night is re-run)
# --------------------------------------------------------------------------------------
NIGHT = "rsft.night"  # the night's identity (digest of its inputs and config), set at registration


def night_version(mlclient, name: str, night: str):
    """The version a night with identity ``night`` registered (the lowest, should there be more),
    or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = mlclient.search_model_versions(f"name = '{name}' and tags.`{NIGHT}` = '{night}'")
    except MlflowException:
        return None
    return min(found, key=lambda v: int(v.version)) if found else None


KEPT = "rsft.kept."  # + a night's identity: on the champion that night's adaptation search kept


def record_kept(mlclient, name: str, version: str, night: str, run_id: str | None, decision: Decision) -> None:
    """A night whose search kept the champion (nothing registered) is decided too: the decision
    rides on the champion it kept, so a re-run of the night reports it (:func:`kept_by`)."""
    mlclient.set_model_version_tag(name, str(version), KEPT + night, json.dumps(
        {"run": run_id, "reason": decision.reason[:1000], "metric": decision.metric,
         "challenger": decision.challenger, "champion": decision.champion}))


def kept_by(version, night: str) -> tuple[str | None, Decision] | None:
    """(the deciding run, the decision) of night ``night`` if its search kept ``version``, else None."""
    raw = dict(version.tags or {}).get(KEPT + night)
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return d.get("run"), Decision(False, d["reason"], d["metric"], float(d["challenger"]), d.get("champion"))
    except (ValueError, KeyError, TypeError):
        return None


def finish_promotion(mlclient, name: str, version) -> bool:
    """A version recorded as promoted whose night was killed before the alias moved: move it now —
    only while the champion is still the version it was judged against and nobody has acted on
    the version since (no events, not ``previous-champion``: a rollback is not undone). Returns
    whether the alias moved."""
    tags = dict(version.tags or {})
    if tags.get(DECISION) != "promoted" or JUDGED_AGAINST not in tags:
        return False
    if any(k.startswith(EVENT_PREFIX) for k in tags):
        return False
    current, previous = alias_version(mlclient, name), alias_version(mlclient, name, PREVIOUS)
    v = str(version.version)
    if (current is not None and str(current.version) == v) or (previous is not None and str(previous.version) == v):
        return False
    if (str(current.version) if current else "") != tags[JUDGED_AGAINST]:
        return False  # another night promoted meanwhile: that decision stands
    move_champion(mlclient, name, v, current.version if current else None)
    return True


EVENT_PREFIX = "rsft.event."


def describe(mlclient, name: str, version: str | None, model_text: str, version_text: str | None = None) -> None:
    """Descriptions a person reads on the model pages: the registered model's (set once, when it
    has none) and the version's."""
    if not (mlclient.get_registered_model(name).description or "").strip():
        mlclient.update_registered_model(name, description=model_text)
    if version is not None and version_text:
        mlclient.update_model_version(name, str(version), description=version_text)


def record_event(mlclient, name: str, version: str, text: str) -> None:
    """Append an event to a version's audit trail (a ``rsft.event.<UTC time>`` tag, never
    overwritten): manual promotions and rollbacks, beside the nightly decision they do not erase."""
    import getpass
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        who = "unknown"
    mlclient.set_model_version_tag(name, version, EVENT_PREFIX + stamp, f"{text} (by {who})")


def move_champion(mlclient, name: str, version: str, expected_champion: str | None) -> None:
    """Point ``champion`` at ``version``; the old one becomes ``previous-champion``.

    ``expected_champion`` is the version the decision was made against; if the champion
    moved meanwhile (another run promoted), raise instead of overwriting a newer decision.
    """
    current = alias_version(mlclient, name, CHAMPION)
    current_v = current.version if current else None
    if str(current_v) != str(expected_champion):
        raise RuntimeError(
            f"champion of {name} changed from {expected_champion} to {current_v} during the decision; re-evaluate"
        )
    if current is not None and str(current.version) != str(version):
        mlclient.set_registered_model_alias(name, PREVIOUS, current.version)
    mlclient.set_registered_model_alias(name, CHAMPION, version)


def rollback(mlclient, name: str) -> tuple[str, str]:
    """Swap ``champion`` and ``previous-champion``; returns (new champion, new previous)."""
    cur = alias_version(mlclient, name, CHAMPION)
    prev = alias_version(mlclient, name, PREVIOUS)
    if prev is None:
        raise RuntimeError(f"{name} has no '{PREVIOUS}' alias to roll back to")
    if refused := model_removed(prev):  # (gc never removes an aliased version's model: one of an older rsft's, by hand)
        raise RuntimeError(refused)
    mlclient.set_registered_model_alias(name, CHAMPION, prev.version)
    if cur is not None:
        mlclient.set_registered_model_alias(name, PREVIOUS, cur.version)
        record_event(mlclient, name, cur.version, f"rolled back: champion again is v{prev.version}")
    record_event(mlclient, name, prev.version, "champion again (rollback" + (f" from v{cur.version})" if cur else ")"))
    return str(prev.version), str(cur.version) if cur else ""


# --------------------------------------------------------------------------------------
# logging a challenger
# --------------------------------------------------------------------------------------
def pip_requirements() -> list[str]:
    from importlib.metadata import version

    # a local build tag (torch 2.13.0+cpu) is not on the public index: pin the public release
    return [f"{pkg}=={version(pkg).split('+')[0]}" for pkg in ("torch", "numpy", "polars", "mlflow")]


def log_json(obj: Any, artifact_file: str) -> None:
    _mlflow().log_text(json.dumps(obj, indent=2, default=str), artifact_file)


def log_flat_params(params: dict[str, Any]) -> None:
    """Log a flattened config as params (values truncated to MLflow's limit, batched)."""
    mlflow = _mlflow()
    items = [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()]
    for i in range(0, len(items), 90):
        mlflow.log_params({k: v[:6000] for k, v in items[i : i + 90]})


def log_model_version(
    model,
    checkpoint_path: str | Path,
    input_example,
    name: str,
    tags: dict[str, str],
) -> str:
    """Log the model (pyfunc-loadable, with signature) and its state-dict checkpoint in the
    active run, register it, tag the version; returns the version number."""
    import shutil

    mlflow = _mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / Path(CHECKPOINT_ARTIFACT).name
        shutil.copyfile(checkpoint_path, dst)
        mlflow.log_artifact(str(dst), artifact_path=Path(CHECKPOINT_ARTIFACT).parent.as_posix())
    from rsft.tracking.serving import classes_by_value, log_model_args  # named input columns (tabular)

    with classes_by_value(model):
        info = mlflow.pytorch.log_model(
            model,
            name=name,  # the logged model's name on its page: the registered model's, not "model"
            pip_requirements=pip_requirements(),
            **log_model_args(input_example, model),
        )
    import io

    # register_model prints "Created version …" to stderr itself: keep that in the debug log, pass
    # anything else on as a warning; one redirect at a time (it swaps the process's sys.stderr)
    said = io.StringIO()
    with _STDERR_LOCK, contextlib.redirect_stderr(said):
        mv = mlflow.register_model(info.model_uri, name, tags=tags)
    for line in filter(None, (x.strip() for x in said.getvalue().splitlines())):
        routine = line.startswith(("Successfully registered model", "Created version", "Registered model"))
        log.log(logging.DEBUG if routine else logging.WARNING, "mlflow: %s", line)
    return str(mv.version)


_STDERR_LOCK = threading.Lock()


def log_dataset_inputs(datasets: dict[str, tuple[str, str]], context: str = "training") -> None:
    """Record datasets as MLflow run inputs by URI + digest, without loading them."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    mlflow = _mlflow()
    for name, (uri, digest) in datasets.items():
        with warnings.catch_warnings():  # "can be interpreted in multiple ways" for file:// URIs
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(Path(uri).resolve().as_uri() if "://" not in uri else uri)
        mlflow.log_input(MetaDataset(source=source, name=name, digest=digest[:36]), context=context)


def environment_tags() -> dict[str, str]:
    tags = {"rsft.version": _rsft_version()}
    sha = os.environ.get("RSFT_GIT_SHA") or _git_sha()
    if sha:
        tags["rsft.git_sha"] = sha
    return tags


def _rsft_version() -> str:
    from rsft import __version__

    return __version__


def _git_sha() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""
