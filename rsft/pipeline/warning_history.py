"""Which of a night's warnings earlier nights gave already, so the terminal and the night's story
repeat only the new ones (a 54-night trial on weather data: the hold-out-range model warning on
42 nights, a selection warning on 32 — read as noise, and the new line among them was missed).

**Same warning** (``key``, :func:`fingerprint`): the same kind (the summary key it is listed
under) and the same words in any order, numbers aside. A row count, a metric, a percentage, a
version (``v3``) or the order of a listing may move from night to night without making a warning
new; another column, machine, rule or side of a range (below / above) makes it another warning.
A file warning's file name (``sensors: A01-2026-03-07.csv: …``) is not part of it: the same
warning on the next night's new files is the old one (trial 10: one weather station's unit
change, one line per area file, never "unchanged"); the night's alike lines print as one
(:func:`grouped`).

**Same subject** (``subject``, :func:`subject`): the key without a listing of ``name (details)``
items after a colon — the columns out of the target sample's range, the features the selection
matches worse: which ones, and on which side, follow the weather (trial 10: "new" on 16 of 19
nights). Such a warning whose subject an earlier night gave is ``changed``, not new: counted in
the one line of unchanged warnings ("…; 2 name other columns tonight"), its text in the JSON.

**Earlier nights**: a warning given on any of the last :data:`SEEN_NIGHTS` recorded nights within
:data:`SEEN_DAYS` days is not new (a warning that comes and goes is still the old one); after a
longer gap every warning is shown again. A re-run of the last recorded night (the same night key:
same inputs and config) is compared with the nights before it and replaces its record, so it says
what the first run said. A night's date is its data's (the newest reading of its target sample
and hold-out, where that is before the day before it ran: a backfill, "(data to …)" in its run's
name), else the day it ran; the record keeps both (``date``, ``ran``).

**Record**: ``<state>/data/<pipeline>/warnings.json``, the last ``SEEN_NIGHTS + 1`` nights'
warnings in full (a few KB), written atomically under the night lock. It is not under ``runs/``:
``rsft gc`` never removes it; deleting it only makes the next night's warnings all new. Keys and
subjects are computed again from a recorded warning's kind and text, so an older record (without
``subject`` or ``ran``) compares by today's rules.
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

# the kinds whose lines are "<dataset>: <file>: <what>" (rsft.pipeline.targets, the ingest's failures)
FILE_KINDS = ("files_mostly_quarantined", "files_unlike_earlier", "failed_files")
FILES_NAMED = 5  # alike file warnings printed as one line name this many files (the rest: "…")

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?[%×]?|v\d+", re.IGNORECASE)
_PUNCT = "()[]{}:;,.!?'\"`"
_FILE_LINE = re.compile(r"(?P<dataset>[^:]+): (?P<file>[^:]+?): (?P<what>.*)", re.DOTALL)
# a listing after a colon, up to the next colon or the end: "temp_air (208 above its max 12.8);
# rel_humidity (128 below its min 33)", "ghi (KS 0.10 → 0.21), poa (KS 0.11 → 0.25)"
_ITEM = r"[^\s:;,()]+ \([^()]*\)"
_LISTING = re.compile(rf":\s+{_ITEM}(?:[,;]\s+{_ITEM})*(?=:|\s*$)")


def fingerprint(kind: str, text: str) -> str:
    """What makes two warnings the same: ``kind`` and the bag of ``text``'s words (a file
    warning's without its file name), punctuation stripped, every number (``1,234``, ``0.3%``,
    ``1e-05``, ``v3``, ``5×``) one placeholder and the noun after it singular (``1 row``, ``3 rows``)."""
    return _hash(kind, _unnamed(kind, text))


def subject(kind: str, text: str) -> str:
    """What a warning is about: :func:`fingerprint` without a listing of ``name (details)``
    items after a colon (which columns, on which side: the night's weather)."""
    return _hash(kind, _LISTING.sub(": …", _unnamed(kind, text)))


def _unnamed(kind: str, text: str) -> str:
    """``text`` without its file name where ``kind`` names a file in each line."""
    m = _FILE_LINE.fullmatch(text) if kind in FILE_KINDS else None
    return f"{m['dataset']}: {m['what']}" if m else text


def _hash(kind: str, text: str) -> str:
    words: list[str] = []
    for token in text.split():
        w = token.strip(_PUNCT)
        counted = bool(words) and words[-1] == "#"
        words.append("#" if _NUMBER.fullmatch(w) else w[:-1] if counted and len(w) > 2 and w.endswith("s") else w)
    return hashlib.sha1("\x1f".join([kind, *sorted(words)]).encode()).hexdigest()[:16]


def grouped(kind: str, lines: list[str]) -> list[str]:
    """A file kind's lines, those alike but for their file (:func:`fingerprint`) as one: the
    first's words and how many files besides, named (trial 10: one weather station's unit change
    once per area file — ``sensors: A01-….csv and 3 more files alike (A02-….csv, …): wind_speed …``).
    Other kinds' lines as they are."""
    if kind not in FILE_KINDS:
        return lines
    groups: dict[str, list[str]] = {}
    for line in lines:
        groups.setdefault(fingerprint(kind, line), []).append(line)
    return [_one(kind, same) for same in groups.values()]


def _one(kind: str, same: list[str]) -> str:
    first = _FILE_LINE.fullmatch(same[0]) if len(same) > 1 else None
    if first is None:
        return same[0]
    files = [m["file"] for line in same[1:] if (m := _FILE_LINE.fullmatch(line))]
    named = ", ".join(files[:FILES_NAMED]) + (", …" if len(files) > FILES_NAMED else "")
    return (f"{first['dataset']}: {first['file']} and {len(files)} more file{'s' if len(files) > 1 else ''} alike "
            f"({named}): {first['what']}")


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


class Seen:
    """The earlier nights' warnings: key → the date first seen (a newer night's record wins: it
    carries the first date on), subject → the earliest date first seen."""

    def __init__(self, nights: list[dict[str, Any]]):
        self.keys: dict[str, str] = {}
        self.subjects: dict[str, str] = {}
        for n in nights:
            for w in n["warnings"]:
                ids = _ids(w)
                if ids is None:
                    continue
                first = str(w.get("first_seen", n["date"]))
                self.keys[ids[0]] = first
                self.subjects[ids[1]] = min(first, self.subjects.get(ids[1], first))


def _ids(w: Any) -> tuple[str, str] | None:
    """A recorded warning's (key, subject), from its kind and text by today's rules; a record
    written without them (hand-edited): its ``key`` for both."""
    if not isinstance(w, dict):
        return None
    if isinstance(w.get("kind"), str) and isinstance(w.get("text"), str):
        return fingerprint(w["kind"], w["text"]), subject(w["kind"], w["text"])
    return (str(w["key"]),) * 2 if "key" in w else None


def annotate(pairs: list[tuple[str, str]], seen: Seen, day: str) -> list[dict[str, Any]]:
    """Each warning with ``first_seen`` (a date), ``new`` and ``changed`` (not new: an earlier
    night gave its subject, with another listing)."""
    out = []
    for kind, text in pairs:
        key, about = fingerprint(kind, text), subject(kind, text)
        first = seen.keys.get(key) or seen.subjects.get(about)
        out.append({"kind": kind, "text": text, "first_seen": first or day, "new": first is None,
                    "changed": key not in seen.keys and first is not None, "key": key, "subject": about})
    return out


# a new warning whose text sends the reader to another kind's warnings brings those back in full
# (trial 11: the fault nights' "look at the selection's warnings" pointed at lines folded into
# "6 warnings unchanged …")
POINTS_AT = {"the selection's warnings": "selection_warnings"}


def recall(warnings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``warnings`` (:func:`annotate`'s) with ``recalled: True`` on the old ones of a kind that a
    new warning points at (:data:`POINTS_AT`): said again in full, marked ``(again)``; their
    ``first_seen`` stays."""
    wanted = {kind for w in warnings if w["new"] for words, kind in POINTS_AT.items() if words in w["text"]}
    return [{**w, "recalled": True} if not w["new"] and w["kind"] in wanted else w for w in warnings]


def unchanged_line(old: list[dict[str, Any]], where: str) -> str | None:
    """'3 warnings unchanged since 2026-11-30 (selection 2, model 1; 2 name other columns tonight): …'
    — the warnings not repeated."""
    from rsft.readable import counts

    if not old:
        return None
    first, last = min(w["first_seen"] for w in old), max(w["first_seen"] for w in old)
    per = Counter(KINDS.get(w["kind"], w["kind"]) for w in old)
    changed = sum(bool(w.get("changed")) for w in old)
    return (f"{len(old)} warning{'s' if len(old) > 1 else ''} unchanged since {first} ({counts(dict(per))}"
            + (f"; {changed} name{'s' if changed == 1 else ''} other columns tonight" if changed else "")
            + (f"; the newest first seen {last}" if last != first else "") + f"): not repeated — {where}")


def night_warnings(cfg: PipelineConfig, selection: Selection, started: float, summary: dict[str, Any],
                   day: str | None = None) -> dict[str, Any]:
    """The summary's keys for its warnings, each compared with the earlier nights', and the night
    recorded for the next: ``warnings`` (every one: kind, text, first_seen, new, changed, key,
    subject), ``warnings_compared_with`` (the newest earlier night's date, None when there was
    none to compare with) and ``warnings_unchanged`` (the line said instead of the old ones).
    ``started``: epoch seconds; ``day``: the night's date (its data's in a backfill:
    :attr:`rsft.pipeline.results.Finetuned.night_date`; None: the day it ran). A failure (the
    record not writable) gives nothing — every warning is then shown — and never fails the
    night: it is decided."""
    from rsft.pipeline.lineage import night_key

    try:
        ran = _date(started)
        return _record(cfg, night_key(cfg, selection.scored.run_key), day or ran, summary, ran)
    except Exception as e:  # noqa: BLE001 - the night is decided
        log.warning("comparing tonight's warnings with earlier nights' failed: %s", e, exc_info=True)
        return {}


def _record(cfg: PipelineConfig, key: str, day: str, summary: dict[str, Any], ran: str | None = None) -> dict[str, Any]:
    """:func:`night_warnings` for the night ``key`` (:func:`rsft.pipeline.lineage.night_key`) of
    ``day`` (run on ``ran``, default ``day``)."""
    from rsft.fsio import atomic_write_text

    nights = recorded_nights(cfg)
    before, recent, day = earlier(nights, key, day)
    warnings = annotate(summary_warnings(summary), Seen(recent), day)
    # a re-run of the night keeps what its first run warned of and a re-run cannot tell (a recorded
    # night's summary has no fit warnings: nothing was trained)
    warnings = recall(warnings)
    said = {w["key"] for w in warnings}
    again = ([w for w in nights[-1]["warnings"] if (_ids(w) or ("",))[0] not in said]
             if len(before) < len(nights) else [])
    kept = [*before[-SEEN_NIGHTS:], {"night": key, "date": day, "ran": ran or day, "warnings": warnings + again}]
    atomic_write_text(record_path(cfg), json.dumps({"nights": kept}, indent=1))
    line = unchanged_line([w for w in warnings if not (w["new"] or w.get("recalled"))],
                          f"all in the summary JSON's warnings (rsft retrain --json FILE) and {record_path(cfg)}")
    return {"warnings": warnings, "warnings_compared_with": recent[-1]["date"] if recent else None,
            **({"warnings_unchanged": line} if line else {})}


def _date(started: float) -> str:
    return datetime.fromtimestamp(started, timezone.utc).date().isoformat()


def in_full(summary: dict[str, Any], kind: str) -> list[str]:
    """The lines of ``kind`` to say in full: the new ones, marked ``(new)`` when there was an
    earlier night to compare with; every line of a summary without the comparison. A file kind's
    lines alike but for their file as one (:func:`grouped`)."""
    if "warnings" not in summary:
        return grouped(kind, [text for k, text in summary_warnings(summary) if k == kind])
    compared = bool(summary.get("warnings_compared_with"))
    mine = [w for w in summary["warnings"] if w["kind"] == kind]
    new = [("(new) " if compared else "") + line for line in grouped(kind, [w["text"] for w in mine if w["new"]])]
    return new + ["(again) " + line for line in grouped(kind, [w["text"] for w in mine if w.get("recalled")])]


class StoryWarnings:
    """The comparison for the night's story (written before the summary records the night): the
    story lists the new warnings, marked, and one line for the old ones."""

    def __init__(self, nights: list[dict[str, Any]], key: str, day: str):
        _, recent, self.day = earlier(nights, key, day)
        self.seen, self.compared = Seen(recent), bool(recent)

    def split(self, kind: str, lines: list[str]) -> tuple[list[str], list[str]]:
        """(the new lines, marked when compared, alike file lines as one; the markdown item for
        the rest, or none)."""
        ann = annotate([(kind, line) for line in lines], self.seen, self.day)
        new = [("**new:** " if self.compared else "") + line for line in grouped(kind, [w["text"] for w in ann if w["new"]])]
        line = unchanged_line([w for w in ann if not w["new"]], "all in the night's summary JSON (warnings)")
        return new, [f"- {line}"] if line else []


def story_warnings(cfg: PipelineConfig, selection: Selection, day: str | None) -> StoryWarnings:
    """:class:`StoryWarnings` for the night of ``selection`` dated ``day`` (ISO; its data's date
    in a backfill: :attr:`rsft.pipeline.results.Finetuned.night_date`; None: today)."""
    from rsft.pipeline.lineage import night_key

    return StoryWarnings(recorded_nights(cfg), night_key(cfg, selection.scored.run_key),
                         day or datetime.now(timezone.utc).date().isoformat())
