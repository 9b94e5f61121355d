"""Which of a night's warnings earlier nights gave already, so the terminal and the night's story
repeat only the new ones (a 54-night trial on weather data: the hold-out-range model warning on
42 nights, a selection warning on 32 — read as noise, and the new line among them was missed).

**Same warning**: the same kind (the summary key it is listed under) and the same words in any
order, numbers aside (:func:`fingerprint`). A row count, a metric, a percentage, a version (``v3``)
or the order of a listing may move from night to night without making a warning new; another
column, machine, rule, file name or side of a range (below / above) makes it new. File names
(``day-2026-12-01.csv``) are names, not numbers: each file is its own subject.

**Earlier nights**: a warning given on any of the last :data:`SEEN_NIGHTS` recorded nights within
:data:`SEEN_DAYS` days is not new (a warning that comes and goes is still the old one); after a
longer gap every warning is shown again. A re-run of the last recorded night (the same night key:
same inputs and config) is compared with the nights before it and replaces its record, so it says
what the first run said.

**Record**: ``<state>/data/<pipeline>/warnings.json``, the last ``SEEN_NIGHTS + 1`` nights'
warnings in full (a few KB), written atomically under the night lock. It is not under ``runs/``:
``rsft gc`` never removes it; deleting it only makes the next night's warnings all new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from rsft.config import PipelineConfig
from rsft.pipeline.results import Selection

log = logging.getLogger(__name__)

SEEN_NIGHTS = 7  # a warning one of this many earlier recorded nights gave is not new ...
SEEN_DAYS = 14  # ... when that night is at most this many days before tonight
RECORD = "warnings.json"

# the summary's warning lists, in the order the CLI prints them, with a short name for counts
KINDS = {"files_mostly_quarantined": "quarantined file", "files_unlike_earlier": "unlike-earlier file",
         "failed_files": "failed file", "target_rows_quarantined": "target quarantine",
         "target_rows_dropped": "target prefilter", "selection_warnings": "selection", "fit_warnings": "fit",
         "model_warnings": "model"}

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?%?|v\d+", re.IGNORECASE)
_PUNCT = "()[]{}:;,.!?'\"`"


def fingerprint(kind: str, text: str) -> str:
    """What makes two warnings the same: ``kind`` and the bag of ``text``'s words, punctuation
    stripped and every number (``1,234``, ``0.3%``, ``1e-05``, ``v3``) one placeholder."""
    words = sorted("#" if _NUMBER.fullmatch(w := token.strip(_PUNCT)) else w for token in text.split())
    return hashlib.sha1("\x1f".join([kind, *words]).encode()).hexdigest()[:16]


def summary_warnings(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Every warning of a night's summary as ``(kind, line)``; the target sample's and hold-out's
    quarantined and prefilter-dropped rows (counts in the summary) as the CLI says them."""
    from rsft.readable import counts

    q, d = summary.get("target_rows_quarantined") or {}, summary.get("target_rows_dropped") or {}
    lines = {"target_rows_quarantined": [f"{which.replace('_', ' ')}: {n:,} rows of its new files quarantined "
                                         f"(<state>/…/{which}/quarantine, each with its reason)" for which, n in q.items()],
             "target_rows_dropped": [f"{which.replace('_', ' ')}: {sum(t['dropped'].values()):,} of {t['rows']:,} rows "
                                     f"dropped by the prefilter's rules ({counts(t['dropped'])}; prefilter.targets)"
                                     for which, t in d.items()]}
    return [(kind, line) for kind in KINDS for line in lines.get(kind, summary.get(kind) or [])]


def record_path(cfg: PipelineConfig) -> Path:
    from rsft.pipeline.layout import pipeline_root

    return pipeline_root(cfg) / RECORD


def recorded_nights(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """The record's nights, oldest first; none when there is no record or it cannot be read (then
    every warning is new tonight: nothing is hidden on a guess)."""
    path = record_path(cfg)
    try:
        nights = json.loads(path.read_text())["nights"]
        return [n for n in nights if isinstance(n, dict) and {"night", "date", "warnings"} <= n.keys()
                and isinstance(n["warnings"], list)]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s cannot be read (%s): tonight's warnings are all shown as new", path, e)
        return []


def earlier(nights: list[dict[str, Any]], key: str, day: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(the nights before tonight, those tonight's warnings are compared with, tonight's date).
    A re-run of the last recorded night (same ``key``) keeps that night's date and is compared
    with the nights before it."""
    if nights and nights[-1]["night"] == key:
        nights, day = nights[:-1], nights[-1]["date"]
    recent = [n for n in nights[-SEEN_NIGHTS:] if _days(n["date"], day) <= SEEN_DAYS]
    return nights, recent, day


def _days(then: str, now: str) -> int:
    try:
        return (date.fromisoformat(now) - date.fromisoformat(then)).days
    except (TypeError, ValueError):  # a hand-edited record: that night does not count
        return SEEN_DAYS + 1


def seen_before(nights: list[dict[str, Any]]) -> dict[str, str]:
    """fingerprint → the date the warning was first seen (a newer night's record wins)."""
    return {w["key"]: str(w.get("first_seen", n["date"])) for n in nights for w in n["warnings"]
            if isinstance(w, dict) and "key" in w}


def annotate(pairs: list[tuple[str, str]], seen: dict[str, str], day: str) -> list[dict[str, Any]]:
    """Each warning with ``first_seen`` (a date) and ``new``."""
    out = []
    for kind, text in pairs:
        key = fingerprint(kind, text)
        out.append({"kind": kind, "text": text, "first_seen": seen.get(key, day), "new": key not in seen, "key": key})
    return out


def unchanged_line(old: list[dict[str, Any]], where: str) -> str | None:
    """'3 warnings unchanged since 2026-11-30 (selection 2, model 1): …' — the warnings not repeated."""
    from rsft.readable import counts

    if not old:
        return None
    first, last = min(w["first_seen"] for w in old), max(w["first_seen"] for w in old)
    per = Counter(KINDS.get(w["kind"], w["kind"]) for w in old)
    return (f"{len(old)} warning{'s' if len(old) > 1 else ''} unchanged since {first} ({counts(dict(per))}"
            + (f"; the newest first seen {last}" if last != first else "") + f"): not repeated — {where}")


def night_warnings(cfg: PipelineConfig, selection: Selection, started: float, summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's keys for its warnings, each compared with the earlier nights', and the night
    recorded for the next: ``warnings`` (every one: kind, text, first_seen, new, key),
    ``warnings_compared_with`` (the newest earlier night's date, None when there was none to
    compare with) and ``warnings_unchanged`` (the line said instead of the old ones).
    ``started``: epoch seconds. A failure (the record not writable) gives nothing — every warning
    is then shown — and never fails the night: it is decided."""
    from rsft.pipeline.lineage import night_key

    try:
        return _record(cfg, night_key(cfg, selection.scored.run_key), _date(started), summary)
    except Exception as e:  # noqa: BLE001 - the night is decided
        log.warning("comparing tonight's warnings with earlier nights' failed: %s", e, exc_info=True)
        return {}


def _record(cfg: PipelineConfig, key: str, day: str, summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`night_warnings` for the night ``key`` (:func:`rsft.pipeline.lineage.night_key`) of ``day``."""
    from rsft.fsio import atomic_write_text

    nights = recorded_nights(cfg)
    before, recent, day = earlier(nights, key, day)
    warnings = annotate(summary_warnings(summary), seen_before(recent), day)
    # a re-run of the night keeps what its first run warned of and a re-run cannot tell (a recorded
    # night's summary has no fit warnings: nothing was trained)
    said = {w["key"] for w in warnings}
    again = [w for w in nights[-1]["warnings"] if w.get("key") not in said] if len(before) < len(nights) else []
    kept = [*before[-SEEN_NIGHTS:], {"night": key, "date": day, "warnings": warnings + again}]
    atomic_write_text(record_path(cfg), json.dumps({"nights": kept}, indent=1))
    line = unchanged_line([w for w in warnings if not w["new"]],
                          f"all in the summary JSON's warnings (rsft retrain --json FILE) and {record_path(cfg)}")
    return {"warnings": warnings, "warnings_compared_with": recent[-1]["date"] if recent else None,
            **({"warnings_unchanged": line} if line else {})}


def _date(started: float) -> str:
    return datetime.fromtimestamp(started, timezone.utc).date().isoformat()


def in_full(summary: dict[str, Any], kind: str) -> list[str]:
    """The lines of ``kind`` to say in full: the new ones, marked ``(new)`` when there was an
    earlier night to compare with; every line of a summary without the comparison."""
    if "warnings" not in summary:
        return [text for k, text in summary_warnings(summary) if k == kind]
    mark = "(new) " if summary.get("warnings_compared_with") else ""
    return [mark + w["text"] for w in summary["warnings"] if w["kind"] == kind and w["new"]]


class StoryWarnings:
    """The comparison for the night's story (written before the summary records the night): the
    story lists the new warnings, marked, and one line for the old ones."""

    def __init__(self, nights: list[dict[str, Any]], key: str, night: str):
        _, recent, self.day = earlier(nights, key, night)
        self.seen, self.compared = seen_before(recent), bool(recent)

    def split(self, kind: str, lines: list[str]) -> tuple[list[str], list[str]]:
        """(the new lines, marked when compared; the markdown item for the rest, or none)."""
        ann = annotate([(kind, line) for line in lines], self.seen, self.day)
        new = [("**new:** " if self.compared else "") + w["text"] for w in ann if w["new"]]
        line = unchanged_line([w for w in ann if not w["new"]], "all in the night's summary JSON (warnings)")
        return new, [f"- {line}"] if line else []


def story_warnings(cfg: PipelineConfig, selection: Selection, night: str) -> StoryWarnings:
    """:class:`StoryWarnings` for the night of ``selection`` (``night``: its label, the date it ran
    first — ``2026-12-05 (data to 2026-01-26)`` for a backfilled night)."""
    from rsft.pipeline.lineage import night_key

    return StoryWarnings(recorded_nights(cfg), night_key(cfg, selection.scored.run_key), night.split()[0])
