"""Each ingested file's column profile, and the check of a new file against the files before it.

A unit change that stays inside the contract's range (a week of °C in a °F column, kPa where the
column was bar × 100) passes every row check: each value is a plausible reading. It shows only
against the exports before it — the whole file sits somewhere none of them did. The profile of a
file is a few quantiles of each numeric column of its kept rows, kept in its manifest entry
(``profile``, with its first reading's time ``ts_min``; computed once, when first needed). :func:`unlike_earlier` compares
a file with the files before it in time and returns one line per column whose median lies outside
the range those files covered. Drift is rsft's premise, so this is a warning, never a quarantine:
a new regime that leaves every earlier range is worth a look too, once (the files after it have
it among their own references).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import polars as pl

from rsft.ingest.manifest import _manifest, _write_entry, data_parts, read_entry

PROFILE_VERSION = 2
MAX_GROUPS = 64  # a file's machines/sites recorded (more: it is compared with every file)
SAMPLE_ROWS = 50_000  # quantiles of a file's rows read on at most about this many (every k-th row)
MIN_VALUES = 20  # a column with fewer readings in a file is not judged (nor used as a reference)
MIN_REFERENCES = 3  # files before it with the column needed to judge a file

# conversions named when one of them puts a shifted file back where the earlier files were (a
# hint for the person reading the line, not a decision): (factor, offset, from unit, to unit);
# None = any unit (a power of ten: a prefix, or a decimal point moved)
_CONVERSIONS = (
    (1.8, 32.0, "°C", "°F"), (5 / 9, -160 / 9, "°F", "°C"), (1.0, 273.15, "°C", "K"), (1.0, -273.15, "K", "°C"),
    (6.894757, 0.0, "psi", "kPa"), (1 / 6.894757, 0.0, "kPa", "psi"), (14.50377, 0.0, "bar", "psi"),
    (1 / 14.50377, 0.0, "psi", "bar"), (68.94757, 0.0, "psi", "mbar"), (1 / 68.94757, 0.0, "mbar", "psi"),
    (3.6, 0.0, "m/s", "km/h"), (1 / 3.6, 0.0, "km/h", "m/s"), (25.4, 0.0, "in", "mm"), (1 / 25.4, 0.0, "mm", "in"),
    (25.4, 0.0, "in/s", "mm/s"), (1 / 25.4, 0.0, "mm/s", "in/s"),
    (0.3048, 0.0, "ft", "m"), (1 / 0.3048, 0.0, "m", "ft"), (60.0, 0.0, "min", "s"), (1 / 60, 0.0, "s", "min"),
    *((10.0 ** e, 0.0, None, None) for e in (1, 2, 3, -1, -2, -3)),
)
# a column's ``unit`` as written in contracts → the names above
_UNIT_NAMES = {"degc": "°C", "c": "°C", "celsius": "°C", "degf": "°F", "f": "°F", "fahrenheit": "°F", "kelvin": "K",
               "hpa": "mbar", "millibar": "mbar", "mps": "m/s", "kph": "km/h", "kmh": "km/h", "inch": "in", "feet": "ft"}


def _unit(unit: str | None) -> str | None:
    if not unit:
        return None
    u = unit.strip().replace(" ", "")
    return _UNIT_NAMES.get(u.lower().replace("°", "deg"), u)


def group_columns(contract) -> list[str]:
    """The text columns of the contract's ``unique`` key (else its ``key``): the machine or site a
    row is of. A file is compared only with files sharing one of its machines (a per-site export
    is not judged by another site's)."""
    types = {c.name: c.dtype for c in contract.columns}
    return [k for k in (contract.unique or contract.key) if types.get(k) == "str"]


def profiled_columns(contract) -> list[str]:
    """The contract's numeric columns that are readings: not the unique key's, not a partition key."""
    skip = set(contract.unique) | set(contract.partition_by)
    return [c.name for c in contract.columns if c.dtype in ("float64", "int64") and c.name not in skip]


def file_profile(dataset_dir: str | Path, entry: dict, contract) -> dict[str, Any] | None:
    """The profile of one file's kept rows: ``{"v", "columns": {name: {n, q01, q50, q99}}}``
    (quantiles and count of every k-th row, at most about :data:`SAMPLE_ROWS`; n scaled back by k);
    None when it has no data part."""
    parts = data_parts(dataset_dir, entry)
    cols = profiled_columns(contract)
    if not parts:
        return None
    lf = pl.scan_parquet(parts, hive_partitioning=False)
    names = set(lf.collect_schema().names())
    cols = [c for c in cols if c in names]
    step = max(1, int(entry.get("rows_ok") or 0) // SAMPLE_ROWS)
    sample = lf.select(cols).gather_every(step) if step > 1 else lf.select(cols)
    aggs = [e for c in cols for e in (pl.col(c).count().alias(f"{c}\0n"),
                                      *(pl.col(c).cast(pl.Float64).quantile(q, "linear").alias(f"{c}\0{q}")
                                        for q in (0.01, 0.5, 0.99)))]
    row = sample.select(aggs).collect().row(0, named=True) if aggs else {}
    out: dict[str, Any] = {"v": PROFILE_VERSION, "columns": {}}
    groups = [g for g in group_columns(contract) if g in names]
    if groups:  # the file's machines (None: more than MAX_GROUPS — compared with any file)
        seen = lf.select(pl.concat_str([pl.col(g).fill_null("") for g in groups], separator="\x1f")).unique().head(MAX_GROUPS + 1).collect()
        out["groups"] = sorted(seen.to_series().to_list()) if seen.height <= MAX_GROUPS else None
    for c in cols:
        stats = {"n": int(row[f"{c}\0n"]) * step,
                 **{k: row[f"{c}\0{q}"] for k, q in (("q01", 0.01), ("q50", 0.5), ("q99", 0.99))}}
        if all(isinstance(stats[k], float) and math.isfinite(stats[k]) for k in ("q01", "q50", "q99")):
            out["columns"][c] = stats
    return out


def profiles(dataset_dir: str | Path, entries: dict[str, dict], contract, digests) -> dict[str, dict]:
    """The profiles of the given files (digest → profile), each computed once and then kept in the
    file's manifest entry (re-read there before it is written: an entry replaced meanwhile keeps
    the newer content)."""
    out = {}
    for d in digests:
        entry = entries.get(d) or {}
        prof = entry.get("profile")
        if not prof or prof.get("v") != PROFILE_VERSION or set(prof.get("for", [])) != set(profiled_columns(contract)):
            prof = file_profile(dataset_dir, entry, contract)
            if prof is None:
                continue
            prof["for"] = profiled_columns(contract)
            _record(dataset_dir, d, entry, profile=prof)
            entries[d] = {**entry, "profile": prof}
        out[d] = prof
    return out


def _record(dataset_dir: str | Path, d: str, entry: dict, **fields) -> None:
    """Add ``fields`` to a file's manifest entry — re-read first, and left alone when it no longer
    lists the parts ``entry`` did (the file was ingested again meanwhile: its new parts were not
    what was profiled)."""
    from rsft.ingest.unique import dataset_lock

    with dataset_lock(Path(dataset_dir)):  # an ingest publishing this file's entry meanwhile waits, or wins
        current = read_entry(dataset_dir, d)
        if current and current.get("outputs") == entry.get("outputs"):
            _write_entry(Path(dataset_dir), d, {**current, **fields})


RECENT = 3  # the files just before a file: a jump away from all of them is judged too
JUMP = 4.0  # … when it is this many times the usual step between consecutive earlier files' medians
# A median outside the earlier files' range is named without a conversion that explains it only
# when it lies beyond that range by more than this share of the range's width. Real weather made
# the narrower rule noise (trial 9: daily PV exports, 72 lines in 54 nights for cold fronts and
# humid days — a day's median 2.2 °C below a 21 °C-wide range); a unit change, a swapped column or
# a new set-point lands far outside it (or a conversion puts it back, and is named).
FAR = 0.5


def _carries_a_trend(m: float, medians: list[float]) -> bool:
    """Whether the reference files' medians (the latest first) rise — or fall — from each file to
    the next, and ``m`` carries on the same way: a counter or a total (run hours, energy, cycles)
    whose every new file lies beyond the earlier ones by design (review: 2 lines a day otherwise) —
    by a step like the earlier ones (a unit change along the trend is a jump: still judged)."""
    steps = [a - b for a, b in zip([m, *medians], medians)]  # newest minus the one before it
    if len(medians) < MIN_REFERENCES or not (all(x > 0 for x in steps) or all(x < 0 for x in steps)):
        return False
    return abs(steps[0]) <= JUMP * max(abs(x) for x in steps[1:])  # a step like the earlier ones, not a jump


def _outside(m: float, ref: list[dict]) -> tuple[str, bool] | None:
    """Why a file's median ``m`` is unlike its reference files' (``ref``, the latest first), and
    whether that alone is enough to name it (far: beyond the range by more than :data:`FAR` of its
    width), or None. Either it lies outside the range they covered — below the k-th lowest of their
    1 % quantiles or above the k-th highest 99 % quantile (k a quarter of them) — or, where they span
    a season (monthly files: the year's range holds a winter file in °F), outside the range of the
    :data:`RECENT` files just before it and more than :data:`JUMP` times the usual step between
    consecutive files' medians away from the last one (never far alone: weather jumps like that
    from day to day; named only with a conversion that puts it back)."""
    if _carries_a_trend(m, [r["q50"] for r in ref]):  # a counter (run hours, kWh totals): it always leaves the range
        return None
    k = max(1, len(ref) // 4)
    lo, hi = sorted(r["q01"] for r in ref)[k - 1], sorted((r["q99"] for r in ref), reverse=True)[k - 1]
    if not lo <= m <= hi:
        return (f"outside the range of the {len(ref)} files before it ({_fmt(lo)} to {_fmt(hi)})",
                max(lo - m, m - hi) > FAR * (hi - lo))
    recent = ref[:RECENT]
    rlo, rhi = min(r["q01"] for r in recent), max(r["q99"] for r in recent)
    steps = sorted(abs(a["q50"] - b["q50"]) for a, b in zip(ref, ref[1:]))
    if len(steps) < RECENT or rlo <= m <= rhi:
        return None
    usual, jump = steps[len(steps) // 2], abs(m - ref[0]["q50"])
    if jump <= JUMP * usual:
        return None
    return (f"outside the range of the {len(recent)} files just before it ({_fmt(rlo)} to {_fmt(rhi)}), "
            f"{_fmt(jump)} from the last one's median" + (f" ({jump / usual:.0f}× the usual step between files)" if usual else ""),
            False)


def _references(dataset_dir, entries: dict[str, dict], contract, before: list[str], groups: set[str],
                references: int) -> dict[str, dict]:
    """The profiles of the last ``references`` files of ``before`` (in time order) that share one of
    ``groups``' machines — every file when ``groups`` is empty or a file recorded more than
    :data:`MAX_GROUPS` (a per-site export is not judged by another site's files)."""
    out: dict[str, dict] = {}
    for e in reversed(before):
        prof = profiles(dataset_dir, entries, contract, [e]).get(e)
        if prof is None or (groups and prof.get("groups") is not None and not groups & set(prof["groups"])):
            continue
        out[e] = prof
        if len(out) >= references:
            break
    return out


def _first_times(dataset_dir: str | Path, entries: dict[str, dict], contract) -> dict[str, tuple]:
    """Every file's place in time: its first reading's time (the entry's ``ts_min``, read from its
    data parts once and then kept in the entry), else — no timestamp column, or no data part — when
    it was ingested (``ingested_at``; an entry written before it was recorded: its file's time)."""
    ts, out = contract.timestamp_column, {}
    for d, entry in entries.items():
        if ts and "ts_min" not in entry:
            parts = data_parts(dataset_dir, entry)
            if parts:
                try:
                    first = pl.scan_parquet(parts, hive_partitioning=False).select(pl.col(ts).min()).collect().item()
                except Exception:  # no such column in an old part: placed by its entry's time
                    first = None
                entry["ts_min"] = None if first is None else first.isoformat()
                _record(dataset_dir, d, entry, ts_min=entry["ts_min"])
        if entry.get("ts_min"):
            out[d] = (0, entry["ts_min"])
        elif entry.get("ingested_at"):  # written by the ingest (an entry's file time changes when it is marked)
            out[d] = (1, float(entry["ingested_at"]))
        else:
            try:
                out[d] = (1, os.stat(Path(dataset_dir) / "_manifest" / f"{d}.json").st_mtime)
            except OSError:
                out[d] = (1, 0.0)
    return out


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:,.0f}"


def _conversion(s: dict, ref: list[dict], unit: str | None) -> str | None:
    """The conversion that best puts the file's median and spread (1–99 %) where the earlier
    files' were — a power of ten, or a named conversion into the column's declared ``unit`` — if
    it puts the median inside the earlier medians' range (widened by half of it) and the spread
    within a factor of 2 of the :data:`RECENT` files just before it: 'as °F → °C it would be
    8.55'. None when none does (``ref``: the latest first)."""
    medians = sorted(r["q50"] for r in ref)
    lo, hi, mid = medians[0], medians[-1], medians[len(medians) // 2]
    pad = 0.5 * (hi - lo) or 0.05 * abs(hi) or 1.0
    recent = ref[:RECENT]  # the spread of the files just before it (a season changes it too)
    spread = sorted(r["q99"] - r["q01"] for r in recent)[len(recent) // 2]
    width, to = s["q99"] - s["q01"], _unit(unit)
    best = None
    for a, b, frm, into in _CONVERSIONS:
        if into is not None and into != to:  # a named unit only into the column's declared one
            continue
        v = a * s["q50"] + b
        if not lo - pad <= v <= hi + pad:
            continue
        off = abs(math.log(a * width / spread)) if width > 0 and spread > 0 else 0.0
        if off > math.log(2):  # the spread must come back too, within a factor of 2
            continue
        score = abs(v - mid) / (spread or pad) + off
        if best is None or score < best[0]:
            best = (score, v, f"{frm} → {into}" if frm else (f"× {a:g}" if a >= 1 else f"÷ {1 / a:g}"))
    return None if best is None else f"as {best[2]} it would be {_fmt(best[1])}"


def unlike_earlier(dataset_dir: str | Path, contract, digests, references: int = 14, mark: bool = True) -> list[str]:
    """One line per (new file, column) whose median lies outside the range the ``references``
    files before it covered: below the k-th lowest of their 1 % quantiles or above the k-th
    highest of their 99 % quantiles (k = a quarter of the references, at least 1: one or two odd
    files among them — the first days of the same unit change — do not widen the range). Files
    before it = earlier first reading (else earlier manifest entry). ``file: temp (degF) median
    20.4 is outside the range of the 14 files before it (55.0–96.1): …``.

    New files are ``digests`` and every file an ingest left unjudged (``compared: false`` in its
    entry: a night that failed after its ingest, `rsft adapt --config`'s ingest); each is marked
    ``compared: true`` once judged (``mark``), so its lines are said once."""
    if references <= 0 or not profiled_columns(contract):
        return []
    entries = _manifest(dataset_dir)
    new = list(dict.fromkeys([d for d in digests if d in entries]
                             + sorted(d for d, e in entries.items() if e.get("compared") is False)))
    if not new:
        return []
    mine = profiles(dataset_dir, entries, contract, new)
    when = _first_times(dataset_dir, entries, contract)
    order = sorted(entries, key=when.__getitem__)
    units = {c.name: c.unit for c in contract.columns}
    out = []
    for d in new:
        if d not in mine:
            continue
        refs = _references(dataset_dir, entries, contract, order[:order.index(d)], set(mine[d].get("groups") or []),
                           references)
        for c, s in mine[d]["columns"].items():
            ref = [p["columns"][c] for p in refs.values() if c in p.get("columns", {}) and p["columns"][c]["n"] >= MIN_VALUES]
            if s["n"] < MIN_VALUES or len(ref) < MIN_REFERENCES:
                continue
            outside = _outside(s["q50"], ref)
            if outside is None:
                continue
            (why, far), hint = outside, _conversion(s, ref, units.get(c))
            if not (far or hint):  # just outside, nothing converts it back: weather, a new season
                continue
            unit = f" ({units[c]})" if units.get(c) else ""
            out.append(f"{entries[d].get('name', d[:12])}: {c}{unit} median {_fmt(s['q50'])} is {why}"
                       + (f"; {hint}" if hint else "")
                       + " — a unit change, a swapped column or a new regime? check the export")
    for d in new:
        if mark and entries[d].get("compared") is False:
            _record(dataset_dir, d, entries[d], compared=True)
    return out
