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
    # substance changes: another column, another side of the range, another machine, another file
    (RANGE.format(n=600, b=344, lo=28), RANGE.format(n=600, b=344, lo=28).replace("temp", "humidity"), False),
    (RANGE.format(n=600, b=344, lo=28), RANGE.format(n=600, b=344, lo=28).replace("below its min", "above its max"), False),
    ("machine_id M03 is 27 % of the target sample", "machine_id M04 is 27 % of the target sample", False),
    ("sensors: day-2026-11-30.csv: all 336 rows quarantined", "sensors: day-2026-12-01.csv: all 336 rows quarantined", False),
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
    seen kept), another column is new. A re-run of that night (same key) says what it said; a
    warning that skipped a night is still old; after a gap of more than SEEN_DAYS all is new."""
    from rsft.pipeline.warning_history import SEEN_NIGHTS, record_path

    cfg = _cfg(tmp_path)
    r1 = _night(cfg, "k1", "2026-11-30", RANGE.format(n=600, b=344, lo=28), selection=["ESS 24.9 of 5,048 rows"])
    assert [w["new"] for w in r1["warnings"]] == [True, True, True] and r1["warnings_compared_with"] is None
    assert "warnings_unchanged" not in r1
    humid = RANGE.format(n=600, b=5, lo=40).replace("temp", "humidity")
    r2 = _night(cfg, "k2", "2026-12-01", RANGE.format(n=610, b=350, lo=27), humid, selection=["ESS 6.8 of 5,011 rows"])
    assert [(w["kind"], w["new"], w["first_seen"]) for w in r2["warnings"]] == [
        ("target_rows_quarantined", False, "2026-11-30"), ("selection_warnings", False, "2026-11-30"),
        ("model_warnings", False, "2026-11-30"), ("model_warnings", True, "2026-12-01")]
    assert r2["warnings"][3]["text"] == humid
    assert r2["warnings_compared_with"] == "2026-11-30"
    assert r2["warnings_unchanged"].startswith("3 warnings unchanged since 2026-11-30 (target quarantine 1, "
                                               "selection 1, model 1): not repeated — all in the summary JSON")
    again = _night(cfg, "k2", "2026-12-02", RANGE.format(n=610, b=350, lo=27), humid, selection=["ESS 6.8 of 5,011 rows"])
    assert again == r2  # compared with night 1 again, dated as the night it re-runs
    assert [n["night"] for n in json.loads(record_path(cfg).read_text())["nights"]] == ["k1", "k2"]
    _night(cfg, "k3", "2026-12-02", humid)  # the temp warning skips a night: still the old one
    r4 = _night(cfg, "k4", "2026-12-03", RANGE.format(n=600, b=300, lo=28), humid)
    assert [(w["text"], w["new"], w["first_seen"]) for w in r4["warnings"][1:]] == [
        (RANGE.format(n=600, b=300, lo=28), False, "2026-11-30"), (humid, False, "2026-12-01")]
    gap = _night(cfg, "k5", "2026-12-18", humid)  # 15 days later: shown in full again
    assert [w["new"] for w in gap["warnings"]] == [True, True] and gap["warnings_compared_with"] is None
    for i in range(2 * SEEN_NIGHTS):  # the record stays small
        _night(cfg, f"n{i}", "2026-12-19", humid)
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
    from rsft.pipeline.layout import tracking_uri
    from rsft.tracking import registry

    return registry.client(tracking_uri(cfg)).get_run(run_id).data.tags["mlflow.note.content"]


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
