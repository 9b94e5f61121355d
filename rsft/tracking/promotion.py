"""Register and promote under the registry lock: the one place alias moves are decided.

Both the nightly retrain (:func:`register_and_gate`) and ``rsft promote`` (:func:`promote_version`)
come here. MLflow allocates version numbers client-side, so registration and alias moves are
serialised by an inter-process lock, and the champion is re-read inside it: if another process
promoted meanwhile, the challenger is judged against the new champion.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rsft.config import PromotionConfig
from rsft.tracking import registry
from rsft.tracking.registry import Decision

# (hold-out metrics, pool metrics) of a registered version, computed on demand
Scores = tuple[dict[str, float], dict[str, float] | None]


@dataclass(frozen=True)
class Challenger:
    """A trained model ready to be registered, with its scores on the night's hold-out."""

    model: Any
    checkpoint_path: str  # the state-dict checkpoint (warm starts of later nights)
    input_example: Any
    tags: dict[str, str]
    holdout: dict[str, float]  # hold-out metrics
    pool: dict[str, float] | None = None  # metrics on a pool sample (the pool-regression guardrail)


@dataclass(frozen=True)
class Outcome:
    version: str | None  # the registered challenger; None when nothing was registered
    decision: Decision
    champion_scores: dict[str, float] | None  # hold-out metrics of the champion judged against
    champion_after: str | None  # the champion's version after the decision
    # the scores the decision used, when they are not the challenger's own: the version an earlier,
    # killed run of the night registered, scored from its registered checkpoint
    challenger_scores: dict[str, float] | None = None
    recorded_by: str | None = None  # the night was already decided: the MLflow run that decided it


def recorded_night(mlc, lock_dir: str | Path, name: str, night: str) -> Outcome | None:
    """The outcome of the night ``night`` when an earlier run of it registered a version and
    recorded its decision (a finished night re-run with the same inputs and config registers
    nothing), else None. A decision whose alias move a kill interrupted is completed here."""
    with registry.registry_lock(lock_dir, name):
        mine = registry.night_version(mlc, name, night)
        done = registry.recorded_decision(mine) if mine is not None else None
        if done is not None:
            return _recorded(mlc, name, mine, done)
        current = registry.alias_version(mlc, name)
        kept = registry.kept_by(current, night) if current is not None and mine is None else None
        if kept is None:
            return None
        run_id, decision = kept  # the night's search kept this champion: nothing was registered
        champ = {decision.metric: decision.champion} if decision.champion is not None else None
        return Outcome(None, decision, champ, current.version, recorded_by=run_id or "")


def _recorded(mlc, name: str, mine, done: Decision) -> Outcome:
    registry.finish_promotion(mlc, name, mine)
    current = registry.alias_version(mlc, name)
    champ = {done.metric: done.champion} if done.champion is not None else None
    return Outcome(str(mine.version), done, champ, current.version if current else None, recorded_by=mine.run_id)


def register_and_gate(mlc, lock_dir: str | Path, name: str, policy: PromotionConfig, challenger: Challenger,
                      holdout_rows: int, seen, seen_scores: Scores | None, score: Callable[[Any], Scores],
                      keep_reason: str | None = None, run_label: str = "", base_scores: Scores | None = None,
                      diverged: str | None = None, night: str | None = None, run_id: str | None = None,
                      constant: dict[str, float] | None = None, preface: str = "", night_name: str = "") -> Outcome:
    """Register ``challenger`` as a new version of ``name`` and promote it if it beats the champion.

    ``seen``: the champion version the night started from (its scores ``seen_scores``);
    ``score(version)`` scores another version if the champion moved meanwhile. ``keep_reason``:
    the adaptation search concluded the champion stays — if it is still ``seen``, nothing is
    registered and the night is an event on the champion's trail. ``base_scores``: the base
    model the challenger started from (first night): with no champion, the challenger must beat
    it. ``diverged``: the fit never had a finite loss — registered (the audit trail) and rejected.
    ``constant``: the hold-out metrics of the target sample's constant prediction (the floor a
    first night's model must beat, :func:`registry.decide`). ``preface``: what the decision's
    reason starts with (e.g. why the registered model is not the night's fine-tune).

    ``night``: the night's identity (tagged on the version): a night registers one version however
    often it runs. If a run of it already registered one, nothing is registered: a decided version's
    decision is returned (``recorded_by``); one without a decision (the run was killed between
    registering and deciding) is gated now, on its own registered checkpoint's scores. A night
    whose search keeps the champion is recorded on the champion (:func:`registry.record_kept`).
    """
    with registry.registry_lock(lock_dir, name):
        mine = registry.night_version(mlc, name, night) if night else None
        if mine is not None and (done := registry.recorded_decision(mine)) is not None:
            return _recorded(mlc, name, mine, done)
        current = registry.alias_version(mlc, name)
        same = current is not None and seen is not None and current.version == seen.version
        if keep_reason is not None and same and mine is None:
            m = policy.metric
            ch = seen_scores[0] if seen_scores else {}
            decision = Decision(False, f"the adaptation search kept the champion: {keep_reason}",
                                m, float(challenger.holdout[m]), float(ch.get(m, float("nan"))))
            who = f"MLflow run {run_id}" if run_id else run_label  # the id the retrain printed, not the state's run key
            # the night by its name (its data's date in a backfill): trial 11's history listed these
            # events by a 32-digit run id and a wall-clock time only
            by = f"the night {night_name} ({who})" if night_name else f"retrain {who}"
            registry.record_event(mlc, name, current.version, f"kept by {by}, no model registered: {keep_reason}")
            if night:  # the night is decided (``run_id``: the night's MLflow run)
                registry.record_kept(mlc, name, current.version, night, run_id, decision)
            return Outcome(None, decision, ch, current.version)
        if mine is not None:  # registered by a killed run of this night: gate that version, register nothing
            version, (holdout, pool) = str(mine.version), score(mine)
        else:
            holdout, pool = challenger.holdout, challenger.pool
            version = registry.log_model_version(challenger.model, challenger.checkpoint_path, challenger.input_example,
                                                 name, {**challenger.tags, **({registry.NIGHT: night} if night else {})})
        if current is None:
            champ, champ_pool = None, None
        elif same and seen_scores is not None:
            champ, champ_pool = seen_scores
        else:  # the champion moved while we trained: judge against the new one
            champ, champ_pool = score(current)
        base, base_pool = base_scores if base_scores is not None and current is None else (None, None)
        decision = registry.decide(policy, holdout, champ, holdout_rows, pool, champ_pool,
                                   diverged=diverged, base=base, base_pool=base_pool, constant=constant)
        if preface:
            decision = dataclasses.replace(decision, reason=preface + decision.reason)
        registry.record_decision(mlc, name, version, decision, current.version if current else None)
        if decision.promote:
            registry.move_champion(mlc, name, version, current.version if current else None)
        if mine is not None:  # the audit trail says so (after the alias move: see finish_promotion)
            registry.record_event(mlc, name, version, f"decided by a re-run of its night {run_label}: the run that "
                                  "registered it was killed before deciding")
        return Outcome(version, decision, champ, version if decision.promote else (current.version if current else None),
                       challenger_scores=holdout if mine is not None else None)


def promote_version(mlc, lock_dir: str | Path, name: str, version: str, judge: Callable[[Any, Any], Decision] | None):
    """Make ``version`` the champion by hand. ``judge(version, champion)`` decides (None = forced);
    a rejected promotion raises ``PromotionRefused``. Returns (decision, the previous champion
    version or None). The nightly decision on the version stays; the promotion is an event."""
    with registry.registry_lock(lock_dir, name):
        mv = mlc.get_model_version(name, str(version))
        if refused := registry.model_removed(mv):  # rsft gc removed it (checked under the lock gc tags under)
            raise PromotionRefused(refused)
        current = registry.alias_version(mlc, name)
        if current is not None and str(current.version) == str(version):
            raise PromotionRefused(f"v{version} is already {name}@champion")
        decision = (Decision(True, "manual promotion (--force)", "", float("nan"), None) if judge is None
                    else judge(mv, current))
        if not decision.promote:
            raise PromotionRefused(f"not promoted: {decision.reason} (use --force to override)")
        registry.move_champion(mlc, name, str(version), current.version if current else None)
        registry.record_event(mlc, name, str(version), f"promoted manually: {decision.reason}"
                              + (f" (champion was v{current.version})" if current else ""))
    return decision, (current.version if current else None)


class PromotionRefused(RuntimeError):
    """A manual promotion the gate (or the registry's state) does not allow; one line."""
