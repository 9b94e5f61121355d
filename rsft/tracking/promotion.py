"""Register and promote under the registry lock: the one place alias moves are decided.

Both the nightly retrain (:func:`register_and_gate`) and ``rsft promote`` (:func:`promote_version`)
come here. MLflow allocates version numbers client-side, so registration and alias moves are
serialised by an inter-process lock, and the champion is re-read inside it: if another process
promoted meanwhile, the challenger is judged against the new champion.
"""

from __future__ import annotations

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


def register_and_gate(mlc, lock_dir: str | Path, name: str, policy: PromotionConfig, challenger: Challenger,
                      holdout_rows: int, seen, seen_scores: Scores | None, score: Callable[[Any], Scores],
                      keep_reason: str | None = None, run_label: str = "", base_scores: Scores | None = None,
                      diverged: str | None = None) -> Outcome:
    """Register ``challenger`` as a new version of ``name`` and promote it if it beats the champion.

    ``seen``: the champion version the night started from (its scores ``seen_scores``);
    ``score(version)`` scores another version if the champion moved meanwhile. ``keep_reason``:
    the adaptation search concluded the champion stays — if it is still ``seen``, nothing is
    registered and the night is an event on the champion's trail. ``base_scores``: the base
    model the challenger started from (first night): with no champion, the challenger must beat
    it. ``diverged``: the fit never had a finite loss — registered (the audit trail) and rejected.
    """
    with registry.registry_lock(lock_dir, name):
        current = registry.alias_version(mlc, name)
        same = current is not None and seen is not None and current.version == seen.version
        if keep_reason is not None and same:
            m = policy.metric
            ch = seen_scores[0] if seen_scores else {}
            decision = Decision(False, f"the adaptation search kept the champion: {keep_reason}",
                                m, float(challenger.holdout[m]), float(ch.get(m, float("nan"))))
            registry.record_event(mlc, name, current.version, f"kept by retrain {run_label} (no model registered): {keep_reason}")
            return Outcome(None, decision, ch, current.version)
        version = registry.log_model_version(challenger.model, challenger.checkpoint_path, challenger.input_example,
                                             name, challenger.tags)
        if current is None:
            champ, champ_pool = None, None
        elif same and seen_scores is not None:
            champ, champ_pool = seen_scores
        else:  # the champion moved while we trained: judge against the new one
            champ, champ_pool = score(current)
        base, base_pool = base_scores if base_scores is not None and current is None else (None, None)
        decision = registry.decide(policy, challenger.holdout, champ, holdout_rows, challenger.pool, champ_pool,
                                   diverged=diverged, base=base, base_pool=base_pool)
        registry.record_decision(mlc, name, version, decision)
        if decision.promote:
            registry.move_champion(mlc, name, version, current.version if current else None)
        return Outcome(version, decision, champ, version if decision.promote else (current.version if current else None))


def promote_version(mlc, lock_dir: str | Path, name: str, version: str, judge: Callable[[Any, Any], Decision] | None):
    """Make ``version`` the champion by hand. ``judge(version, champion)`` decides (None = forced);
    a rejected promotion raises ``PromotionRefused``. Returns (decision, the previous champion
    version or None). The nightly decision on the version stays; the promotion is an event."""
    with registry.registry_lock(lock_dir, name):
        mv = mlc.get_model_version(name, str(version))
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
