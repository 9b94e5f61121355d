"""Warnings repeated night after night become noise (a 54-night weather trial: the hold-out-range
model warning on 42 nights): a warning an earlier night gave is said as one line in the terminal and the
night's story, the new ones in full and marked; the summary JSON keeps every one with
``first_seen`` and ``new`` (rsft.pipeline.warning_history)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import REPO

RANGE = ("the hold-out reaches beyond the target sample's range — of its {n:,} rows: temp ({b:,} below its min {lo:.4g}): "
         "the gate judges conditions the sample (and so the fine-tune) has not seen")


@pytest.mark.parametrize("a, b, same", [
    # figures move: a row count, a minimum, a share, a metric, a version, a listing's order
    (RANGE.format(n=600, b=344, lo=28), RANGE.format(n=612, b=351, lo=27.5), True),
    ("the champion v3 is no better than a constant (rmse 1.029 vs 1.031)",
     "the champion v4 is no better than a constant (rmse 0.98 vs 0.97)", True),
    ("worse on 2 features: s08 (KS 0.14 → 0.81), s09 (KS 0.13 → 0.70)",
     "worse on 2 features: s09 (KS 0.2 → 0.9), s08 (KS 0.1 → 0.8)", True),
    ("95 % of target rows have no comparable pool rows (1,234 of 5,048; 1e-05)",
     "100 % of target rows have no comparable pool rows (12 of 50; 2.5e-3)", True),
    # a count's noun, singular or plural
    ("target sample: 1 row of its new files quarantined", "target sample: 12 rows of its new files quarantined", True),
    # substance changes: another column, another side of the range, another machine
    (RANGE.format(n=600, b=344, lo=28), RANGE.format(n=600, b=344, lo=28).replace("temp", "humidity"), False),
    (RANGE.format(n=600, b=344, lo=28), RANGE.format(n=600, b=344, lo=28).replace("below its min", "above its max"), False),
    ("machine_id M03 is 27 % of the target sample", "machine_id M04 is 27 % of the target sample", False),
])
def test_a_warning_is_the_same_when_only_its_figures_or_order_moved(a, b, same):
    from rsft.pipeline.warning_history import fingerprint

    assert (fingerprint("model_warnings", a) == fingerprint("model_warnings", b)) is same
    assert fingerprint("model_warnings", a) != fingerprint("fit_warnings", a)  # the kind is part of it


def _cfg(tmp_path):
    from rsft.config import load_config

    return load_config(REPO / "examples" / "factory.yaml", {"state.dir": str(tmp_path / "state")})


def _night(cfg, key, day, *model, selection=()):
    from rsft.pipeline.warning_history import _record

    return _record(cfg, key, day, {"model_warnings": list(model), "selection_warnings": list(selection),
                                   "target_rows_quarantined": {"target_sample": 3}})


def test_old_warnings_are_counted_new_ones_marked_a_re_run_says_the_same(tmp_path):
    """First night: all new, nothing to compare with. Next night: a moved figure is old (first
    seen kept), another warning is new. A re-run of that night (same key) says what it said; a
    warning that skipped a night is still old; after a gap of more than SEEN_DAYS all is new."""
    from rsft.pipeline.warning_history import SEEN_NIGHTS, record_path

    cfg = _cfg(tmp_path)
    r1 = _night(cfg, "k1", "2026-11-30", RANGE.format(n=600, b=344, lo=28), selection=["ESS 24.9 of 5,048 rows"])
    assert [w["new"] for w in r1["warnings"]] == [True, True, True] and r1["warnings_compared_with"] is None
    assert "warnings_unchanged" not in r1
    other = "the target sample repeats rows: 40 of its 300 rows repeat another's inputs and label"
    r2 = _night(cfg, "k2", "2026-12-01", RANGE.format(n=610, b=350, lo=27), other, selection=["ESS 6.8 of 5,011 rows"])
    assert [(w["kind"], w["new"], w["first_seen"]) for w in r2["warnings"]] == [
        ("target_rows_quarantined", False, "2026-11-30"), ("selection_warnings", False, "2026-11-30"),
        ("model_warnings", False, "2026-11-30"), ("model_warnings", True, "2026-12-01")]
    assert r2["warnings"][3]["text"] == other
    assert r2["warnings_compared_with"] == "2026-11-30"
    assert r2["warnings_unchanged"].startswith("3 warnings unchanged since 2026-11-30 (target quarantine 1, "
                                               "selection 1, model 1): not repeated — all in the summary JSON")
    again = _night(cfg, "k2", "2026-12-02", RANGE.format(n=610, b=350, lo=27), other, selection=["ESS 6.8 of 5,011 rows"])
    assert again == r2  # compared with night 1 again, dated as the night it re-runs
    assert [n["night"] for n in json.loads(record_path(cfg).read_text())["nights"]] == ["k1", "k2"]
    _night(cfg, "k3", "2026-12-02", other)  # the temp warning skips a night: still the old one
    r4 = _night(cfg, "k4", "2026-12-03", RANGE.format(n=600, b=300, lo=28), other)
    assert [(w["text"], w["new"], w["first_seen"]) for w in r4["warnings"][1:]] == [
        (RANGE.format(n=600, b=300, lo=28), False, "2026-11-30"), (other, False, "2026-12-01")]
    gap = _night(cfg, "k5", "2026-12-18", other)  # 15 days later: shown in full again
    assert [w["new"] for w in gap["warnings"]] == [True, True] and gap["warnings_compared_with"] is None
    for i in range(2 * SEEN_NIGHTS):  # the record stays small
        _night(cfg, f"n{i}", "2026-12-19", other)
    assert len(json.loads(record_path(cfg).read_text())["nights"]) == SEEN_NIGHTS + 1


def test_an_unreadable_record_shows_every_warning_and_gc_leaves_the_record(tmp_path, caplog):
    from rsft.pipeline.gc import collect
    from rsft.pipeline.warning_history import record_path

    cfg = _cfg(tmp_path)
    _night(cfg, "k1", "2026-11-30", "a warning")
    collect(cfg, keep_nights=1, lineage=[])  # `rsft gc`: old runs go, the record stays
    assert _night(cfg, "k2", "2026-12-01", "a warning")["warnings"][0]["new"] is False
    record_path(cfg).write_text("{not json")
    with caplog.at_level(logging.WARNING, "rsft.pipeline.warning_history"):
        r = _night(cfg, "k3", "2026-12-02", "a warning")
    assert r["warnings"][1]["new"] is True and "cannot be read" in caplog.text
    assert json.loads(record_path(cfg).read_text())["nights"][-1]["night"] == "k3"  # rewritten whole


def test_the_retrain_says_old_warnings_in_one_line_and_marks_the_new(tmp_path, capsys):
    from rsft.cli import night

    cfg = _cfg(tmp_path)
    _night(cfg, "k1", "2026-11-30", "the champion v1 is no better than a constant (rmse 1.03 vs 1.02)")
    summary = {"model_warnings": ["the champion v2 is no better than a constant (rmse 1.01 vs 1.00)",
                                  "a linear reference beats the champion"],
               "target_rows_quarantined": {"target_sample": 4}}
    summary.update(_night(cfg, "k2", "2026-12-01", *summary["model_warnings"]))
    night._night_warnings(summary)
    out = capsys.readouterr().out.splitlines()
    assert out == ["model warning: (new) a linear reference beats the champion",
                   "2 warnings unchanged since 2026-11-30 (target quarantine 1, model 1): not repeated — all in the "
                   f"summary JSON's warnings (rsft retrain --json FILE) and {tmp_path / 'state' / 'data' / cfg.name / 'warnings.json'}"]
    night._night_warnings({k: v for k, v in summary.items() if not k.startswith("warnings")})  # an older summary: all
    assert len(capsys.readouterr().out.splitlines()) == 3
    # (trial 10) a fit warning is printed as one, not as a model warning
    night._night_warnings({"fit_warnings": ["the base model's fit was still improving"]})
    assert capsys.readouterr().out.splitlines() == ["fit warning: the base model's fit was still improving"]


def test_real_nights_repeat_only_new_warnings_in_the_story(tmp_path, one_torch_thread):
    """Two real (tiny) nights and a re-run: the synthetic target is unlike the pool, so both
    nights warn of the degenerate weights and the uncovered target rows. Night 2's story says
    them in one line; its summary keeps them, not new; the re-run reports what night 2 did."""
    from rsft.config import load_config
    from rsft.pipeline import run_night
    from rsft.pipeline.warning_history import record_path
    from rsft.synth import write_synthetic
    from tests.test_retrain_flow import small_config

    cfg = load_config(small_config(tmp_path))
    write_synthetic(cfg.synth, tmp_path / "raw", night=1)
    s1 = run_night(cfg)
    assert s1["warnings"] and all(w["new"] for w in s1["warnings"]) and s1["warnings_compared_with"] is None
    # the demo's data are in the past: dated by the data, as the run's name (not the day it ran)
    assert f"(data to {s1['warnings'][0]['first_seen']})" in _run(cfg, s1["mlflow_run"]).info.run_name
    write_synthetic(cfg.synth, tmp_path / "raw", night=2)
    s2 = run_night(cfg)
    old = [w for w in s2["warnings"] if not w["new"]]
    degenerate = next(w for w in old if w["text"].startswith("the weights are degenerate"))
    assert degenerate["first_seen"] == s1["warnings"][0]["first_seen"] == s2["warnings_compared_with"]
    assert len(s2["warnings"]) == len(s2["selection_warnings"]) + len(s2["fit_warnings"]) + len(s2["model_warnings"])
    story = _story(cfg, s2["mlflow_run"])
    assert "the weights are degenerate" not in story
    assert f"unchanged since {degenerate['first_seen']} (selection" in story, story
    assert s2["warnings_unchanged"].startswith(f"{len(old)} warning")
    s3 = run_night(cfg)  # the same night again: recorded, compared with night 1 as before
    assert s3.get("already_decided") and s3["warnings"] and all(w in s2["warnings"] for w in s3["warnings"])
    # (a recorded night trains nothing: its fit warnings are night 2's record's, kept for night 3)
    recorded = json.loads(record_path(cfg).read_text())["nights"]
    assert len(recorded) == 2 and sorted(map(str, recorded[-1]["warnings"])) == sorted(map(str, s2["warnings"]))


def _story(cfg, run_id: str) -> str:
    return _run(cfg, run_id).data.tags["mlflow.note.content"]


def _run(cfg, run_id: str):
    from rsft.pipeline.layout import tracking_uri
    from rsft.tracking import registry

    return registry.client(tracking_uri(cfg)).get_run(run_id)


def test_a_record_that_cannot_be_written_never_fails_the_night(tmp_path, caplog):
    """The night is decided when its warnings are compared: a failure gives no comparison keys
    (the CLI then prints every warning) and one log line, never an exception."""
    from types import SimpleNamespace

    from rsft.pipeline.warning_history import in_full, night_warnings, record_path

    cfg = _cfg(tmp_path)
    record_path(cfg).mkdir(parents=True)  # a directory where the file goes: the write fails
    selection = SimpleNamespace(scored=SimpleNamespace(run_key="k"))
    summary = {"model_warnings": ["a warning"]}
    with caplog.at_level(logging.WARNING, "rsft.pipeline.warning_history"):
        assert night_warnings(cfg, selection, 1_764_547_200.0, summary) == {}
    assert "comparing tonight's warnings with earlier nights' failed" in caplog.text
    assert in_full(summary, "model_warnings") == ["a warning"]


# trial 10 (25 real weather nights): the two warnings that were "new" on 16 of 19 nights, and a
# weather station's unit-change warning once per area file
T10_RANGE = [
    "the hold-out reaches beyond the target sample's range — of its 320 rows: temp_air (208 above its max 12.8); "
    "rel_humidity (128 below its min 33 and 24 above its max 90.8); t_module (53 above its max 30.66): the gate judges "
    "conditions the sample (and so the fine-tune) has not seen; a target sample that spans them makes the comparison fairer",
    "the hold-out reaches beyond the target sample's range — of its 333 rows: temp_air (36 above its max 12.8); "
    "rel_humidity (167 above its max 91): the gate judges conditions the sample (and so the fine-tune) has not seen; "
    "a target sample that spans them makes the comparison fairer"]
T10_WORSE = ["the selected rows match the target worse than the raw pool on 4 features: ghi (KS 0.19 → 0.37), "
             "rel_humidity (KS 0.18 → 0.34), poa (KS 0.21 → 0.33), dni (KS 0.28 → 0.38)",
             "the selected rows match the target worse than the raw pool on 1 feature: ghi (KS 0.12 → 0.21)"]
T10_UNIT = ("sensors: A0{a}-2026-03-0{d}.csv: wind_speed (m/s) median 6.7 is outside the range of the 3 files just before "
            "it (0 to 4.93{a}), 4.22 from the last one's median (5× the usual step between files); as km/h → m/s it would "
            "be 1.861 — a unit change, a swapped column or a new regime? check the export")


def test_a_warning_whose_listed_columns_changed_is_the_same_subject():
    """The subject drops a listing of ``name (details)`` after a colon — and nothing else: every
    other warning kind's subject is its key (no listing found in it), and another column outside a
    listing (the unit-change warning's) or another range side's column set keeps its key apart."""
    from rsft.pipeline.warning_history import fingerprint, subject

    for kind, (a, b) in (("model_warnings", T10_RANGE), ("selection_warnings", T10_WORSE)):
        assert fingerprint(kind, a) != fingerprint(kind, b) and subject(kind, a) == subject(kind, b)
    assert subject("model_warnings", T10_RANGE[0]) != subject("selection_warnings", T10_WORSE[0])
    assert subject("model_warnings", T10_RANGE[0]) != subject("model_warnings", RANGE.format(n=1, b=1, lo=1).replace(
        "beyond the target sample's range", "beyond the pool's range"))
    unit = T10_UNIT.format(a=1, d=7)
    assert subject("files_unlike_earlier", unit) != subject("files_unlike_earlier", unit.replace("wind_speed", "ghi"))
    plain = {  # no listing: subject == key
        "fit_warnings": "the final fit was still improving when it reached its 5,000 steps (best at step 5,000; the "
                        "validation loss fell 1.4% in the fit's last fifth): raise train.max_steps (or train.epochs, if set)",
        "model_warnings": "the champion v3 is no better than a constant on tonight's hold-out (rmse 1.03 vs 1.02 for "
                          "predicting the sample's mean): look at its training budget and features",
        "selection_warnings": "the weights are degenerate: the pool sample's 5,000 rows have an effective sample size of "
                              "3.2 (a few rows carry almost all of w: the density ratio is extreme, e.g. on a heavy-tailed "
                              "feature, or the target lies outside the pool); a smaller sampling.temper flattens them",
        "files_mostly_quarantined": "sensors: a.csv: all 336 rows quarantined (ghi not a number 336) — set "
                                    "ingest.sensors.decimal_comma: true",
        "target_rows_dropped": "target sample: 1,571 of 2,682 rows dropped by the prefilter's rules (range:sun_elev "
                               "1,571; prefilter.targets)"}
    for kind, text in plain.items():
        assert subject(kind, text) == fingerprint(kind, text), text


def test_changed_columns_are_counted_not_repeated_and_dated_by_the_data(tmp_path):
    """Trial 10's nights, dated by their data (a backfill run on one day): a range or selection
    warning naming other columns is not new — ``changed``, first seen on its subject's night, and
    counted in the unchanged line; without the subject it would be printed in full every night."""
    from rsft.pipeline.warning_history import _record, in_full, record_path

    cfg = _cfg(tmp_path)

    def night(key, day, i):
        return _record(cfg, key, day, {"model_warnings": [T10_RANGE[i]], "selection_warnings": [T10_WORSE[i]]},
                       "2026-12-05")

    night("k1", "2026-02-11", 0)
    r2 = night("k2", "2026-02-12", 1)
    assert [(w["new"], w["changed"], w["first_seen"]) for w in r2["warnings"]] == [(False, True, "2026-02-11")] * 2
    assert r2["warnings_unchanged"].startswith("2 warnings unchanged since 2026-02-11 (selection 1, model 1; "
                                               "2 name other columns tonight): not repeated")
    assert in_full(r2, "model_warnings") == in_full(r2, "selection_warnings") == []
    r3 = night("k3", "2026-02-13", 1)  # the same columns again: unchanged, no longer "changed"
    assert [w["changed"] for w in r3["warnings"]] == [False, False]
    assert r3["warnings_unchanged"].startswith("2 warnings unchanged since 2026-02-11 (selection 1, model 1): ")
    recorded = json.loads(record_path(cfg).read_text())["nights"]
    assert [(n["date"], n["ran"]) for n in recorded] == [(d, "2026-12-05") for d in ("2026-02-11", "2026-02-12", "2026-02-13")]


def test_night_warnings_are_dated_by_the_nights_data(tmp_path):
    """``night_warnings`` dates the night by the day it is given (the data's), recording the day it
    ran beside it; ``night_date`` is the label's "(data to …)" date, else the day it ran."""
    from datetime import date, datetime
    from types import SimpleNamespace

    import polars as pl

    from rsft.pipeline.finetune import newest_day, night_date
    from rsft.pipeline.warning_history import night_warnings, record_path

    today = date(2026, 12, 5)
    old = pl.DataFrame({"ts": [datetime(2026, 2, 10, 23), datetime(2026, 2, 9)]})
    assert night_date(today, newest_day((old, old.head(1)), "ts")) == "2026-02-10"
    assert night_date(today, newest_day(pl.DataFrame({"ts": [datetime(2026, 12, 4, 23)]}), "ts")) == "2026-12-05"  # fresh
    assert night_date(today, newest_day(pl.DataFrame({"x": [1]}), "ts")) == "2026-12-05"  # no time column
    cfg, started = _cfg(tmp_path), datetime(2026, 12, 5, 1).timestamp()
    for key, day in (("k1", "2026-02-10"), ("k2", "2026-02-11")):
        r = night_warnings(cfg, SimpleNamespace(scored=SimpleNamespace(run_key=key)), started,
                           {"model_warnings": ["a warning"]}, day)
    assert r["warnings_unchanged"].startswith("1 warning unchanged since 2026-02-10 (model 1)")
    assert [(n["date"], n["ran"]) for n in json.loads(record_path(cfg).read_text())["nights"]] == [
        ("2026-02-10", "2026-12-05"), ("2026-02-11", "2026-12-05")]


def test_the_story_compares_by_the_date_it_is_given(tmp_path):
    """The night's story is compared as of ``Finetuned.night_date`` (its data's), not the date
    in its label: a backfilled night run on 12-05 after a night whose data ended 02-10 says the
    selection warning once (by the label's date the earlier night is 298 days old: all new)."""
    from types import SimpleNamespace

    from rsft.pipeline.results import Finetuned
    from rsft.pipeline.summary import night_story

    cfg = _cfg(tmp_path)
    _night(cfg, "k1", "2026-02-10", selection=[T10_WORSE[0]])
    sel = SimpleNamespace(prefiltered=SimpleNamespace(rows_in=10, rows_out=10), report={"warnings": [T10_WORSE[1]]},
                          selected=SimpleNamespace(rows_out=5, acceptance_rate=0.5, mode="rejection"),
                          scored=SimpleNamespace(run_key="k2"))
    result = Finetuned(run_id="r", model_name="m", version="1", promoted=True, reason="…", metric="rmse",
                       challenger={"rmse": 1.0}, champion=None, warm_start="base", train={"train_rows": 5}, adapt=None,
                       holdout_rows=3, champion_version="1", tracking_uri="", night_date="2026-02-11")
    story = night_story(cfg, "2026-12-05 (data to 2026-02-11)", None, sel, result)
    assert "Selection warnings:\n- 1 warning unchanged since 2026-02-10 (selection 1; 1 names other columns tonight)" in story
    assert "ghi (KS" not in story


def test_file_warnings_alike_but_for_the_file_are_one_line_and_the_same_next_night(tmp_path, capsys):
    """Trial 10, 03-07: one weather station's unit change, once per area file (4 lines). They print
    as one line naming the other files; the next night's same warning on its new files is unchanged."""
    from rsft.cli import night
    from rsft.pipeline.warning_history import FILES_NAMED, _record, fingerprint, grouped

    day7 = [T10_UNIT.format(a=a, d=7) for a in range(1, 5)]
    assert len({fingerprint("files_unlike_earlier", t) for t in day7 + [T10_UNIT.format(a=1, d=8)]}) == 1
    one = ("sensors: A01-2026-03-07.csv and 3 more files alike (A02-2026-03-07.csv, A03-2026-03-07.csv, "
           "A04-2026-03-07.csv): wind_speed (m/s) median 6.7 is outside the range")
    assert len(grouped("files_unlike_earlier", day7)) == 1 and grouped("files_unlike_earlier", day7)[0].startswith(one)
    assert grouped("model_warnings", day7) == day7  # only the file kinds name a file
    many = grouped("failed_files", [f"sensors: f{i}.csv: no header" for i in range(FILES_NAMED + 3)])
    assert many == ["sensors: f0.csv and 7 more files alike (f1.csv, f2.csv, f3.csv, f4.csv, f5.csv, …): no header"]
    cfg = _cfg(tmp_path)
    _record(cfg, "k0", "2026-03-06", {"model_warnings": ["a warning"]})
    r7 = _record(cfg, "k1", "2026-03-07", {"files_unlike_earlier": day7})
    night._night_warnings(r7 | {"files_unlike_earlier": day7})
    err = capsys.readouterr().err.replace("\n", " ")
    assert err.count("warning (new) ") == 1 and err.startswith(f"warning (new) {one}"), err
    from flows.retrain import _summary_markdown  # the Prefect artifact says them alike

    assert _summary_markdown(r7 | {"files_unlike_earlier": day7}).count("wind_speed") == 1
    r8 = _record(cfg, "k2", "2026-03-08", {"files_unlike_earlier": [T10_UNIT.format(a=a, d=8) for a in (1, 2)]})
    assert [w["new"] for w in r8["warnings"]] == [False, False]
    assert r8["warnings_unchanged"].startswith("2 warnings unchanged since 2026-03-07 (unlike-earlier file 2)")


def test_an_older_record_still_loads_and_compares_by_todays_rules(tmp_path):
    """A record written before subjects, ``ran`` and file-free keys (trial 10's format: stale keys,
    no ``subject``): it loads, its warnings are compared by their kind and text, and it is
    rewritten with the new fields."""
    from rsft.pipeline.warning_history import _record, record_path

    cfg = _cfg(tmp_path)
    record_path(cfg).parent.mkdir(parents=True)
    old = {"nights": [{"night": "k1", "date": "2026-12-05", "warnings": [
        {"kind": "model_warnings", "text": T10_RANGE[0], "first_seen": "2026-12-05", "new": True, "key": "0123456789abcdef"},
        {"kind": "files_unlike_earlier", "text": T10_UNIT.format(a=1, d=7), "first_seen": "2026-12-05", "new": True,
         "key": "fedcba9876543210"}, {"key": "a hand-edited entry"}, "not a warning"]}]}
    record_path(cfg).write_text(json.dumps(old))
    r = _record(cfg, "k2", "2026-12-06", {"model_warnings": [T10_RANGE[1]],
                                          "files_unlike_earlier": [T10_UNIT.format(a=2, d=8)]})
    assert [(w["new"], w["first_seen"]) for w in r["warnings"]] == [(False, "2026-12-05")] * 2
    last = json.loads(record_path(cfg).read_text())["nights"][-1]
    assert last["ran"] == "2026-12-06" and all({"subject", "changed"} <= w.keys() for w in last["warnings"])


def test_a_new_warning_that_points_at_old_ones_brings_them_back(tmp_path):
    """Trial 11's fault nights: the linear reference's new model warning said "look at the
    selection's warnings", which were folded into "N warnings unchanged". A new warning that points
    at another kind's brings those back in full, marked (again), first seen as before; without a
    pointing warning they stay folded."""
    from rsft.pipeline.warning_history import _record, in_full

    cfg = _cfg(tmp_path)
    sel = "machine_id A03 is 25 % of the target sample but 2 % of the selected rows"
    _record(cfg, "k1", "2026-02-20", {"selection_warnings": [sel]})
    quiet = _record(cfg, "k2", "2026-02-21", {"selection_warnings": [sel], "model_warnings": ["a new hold-out warning"]})
    assert in_full(quiet, "selection_warnings") == [] and "selection 1" in quiet["warnings_unchanged"]
    lin = ("the champion v8 is worse than a ridge regression with poa×dc_kw fitted on the target sample alone: the pool "
           "is not helping tonight — look at the selection's warnings, the training budget and train.target_weight")
    loud = _record(cfg, "k3", "2026-02-22", {"selection_warnings": [sel], "model_warnings": [lin]})
    assert in_full(loud, "selection_warnings") == [f"(again) {sel}"]
    assert in_full(loud, "model_warnings") == [f"(new) {lin}"]
    assert "warnings_unchanged" not in loud
    (w,) = [w for w in loud["warnings"] if w["kind"] == "selection_warnings"]
    assert (w["new"], w["first_seen"], w["recalled"]) == (False, "2026-02-20", True)
