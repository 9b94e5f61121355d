"""The candidate recipes a search tries: the strategy grid of ``AdaptConfig`` expanded into
named candidates, cheapest first (their order is their cost: the one-SE rule prefers lower)."""

from __future__ import annotations

from dataclasses import dataclass

from rsft.config import AdaptConfig

from rsft.adapt.cv import TRAINING_FREE

FREE = TRAINING_FREE  # candidates that train nothing (closed form or as is)
POOL_STRATEGIES = ("rsft", "random_mix", "weighted")  # candidates that draw pool rows (need log w)


@dataclass(frozen=True)
class Candidate:
    name: str
    strategy: str
    cost: int  # rank: lower = cheaper / simpler (wins ties under the one-SE rule)
    beta: float | None = None
    m_quantile: float | None = None
    target_share: float = 1.0


def make_candidates(cfg: AdaptConfig) -> list[Candidate]:
    out: list[Candidate] = []
    for strategy in cfg.strategies:
        base_cost = len(out)
        if strategy in FREE:
            out.append(Candidate(strategy, strategy, base_cost))
            continue
        shares = cfg.target_shares
        grid: list[tuple[float | None, float | None]] = [(None, None)]
        if strategy == "rsft":
            grid = [(b, q) for b in cfg.betas for q in cfg.m_quantiles]
        for b, q in grid:
            for s in shares:
                suffix = "".join(
                    [f" β={b:g}" if b is not None else "", f" q={q:g}" if q is not None else "",
                     f" share={s:g}" if len(shares) > 1 else ""]
                )
                out.append(Candidate(f"{strategy}{suffix}", strategy, len(out), b, q, s))
    return out
