"""How values read for people — one formatting for the CLI's tables and the Prefect artifacts:
137,129 · 0.01674 · 1.363 · yes · — (none); counts per reason as "a 12, b 3"."""

from __future__ import annotations

import json
from typing import Any


def human(v: Any) -> str:
    """A value as a person reads it: 137,129 · 0.01674 · 1.363 · yes · — (none)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:,.6g}"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def counts(d: dict[str, Any]) -> str:
    """"a 12, b 3" — rows per reason or rule, in the order given."""
    return ", ".join(f"{k} {human(v)}" for k, v in d.items())


def strict_json(obj: Any, default: Any = str, indent: int | None = 2) -> str:
    """JSON that every parser reads: NaN and ±inf (a candidate the time budget skipped has an
    infinite loss) are written as null, not as JavaScript's ``NaN`` / ``Infinity``."""

    def finite(v: Any) -> Any:
        if isinstance(v, float):
            return v if v == v and v not in (float("inf"), float("-inf")) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    def fallback(v: Any) -> Any:  # NumPy scalars and the like: their Python value, made finite too
        return finite(default(v))

    return json.dumps(finite(obj), indent=indent, default=fallback, allow_nan=False)
