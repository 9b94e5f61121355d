"""How values read for people — one formatting for the CLI's tables and the Prefect artifacts:
137,129 · 0.01674 · 1.363 · yes · — (none); counts per reason as "a 12, b 3"."""

from __future__ import annotations

import json
import math
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


def figures(*xs: float, least: int = 4, most: int = 8) -> list[str]:
    """Numbers read side by side (a decision's, a column's): the same significant digits for all,
    trailing zeros kept (222.0 beside 210.6, not 222), and enough of them (``least`` to ``most``)
    that different numbers read differently. A number with more integer digits than that is shown
    whole (123457, not 1.235e+05)."""
    def fmt(x: float, d: int) -> str:
        if math.isfinite(x) and abs(x) >= 10 ** d:
            return f"{x:.0f}"
        s = f"{x:#.{d}g}"
        return s[:-1] if s.endswith(".") else s

    vals = [float(x) for x in xs]
    distinct = len({x for x in vals if math.isfinite(x)})
    for d in range(least, most + 1):
        out = [fmt(x, d) for x in vals]
        if len({o for o, x in zip(out, vals) if math.isfinite(x)}) == distinct:
            return out
    return out


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
