"""The command line: help texts, config errors as one line with a non-zero exit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def rsft(*args, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # output to a pipe, as cron's
    return subprocess.run([sys.executable, "-m", "rsft.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env=env)


def test_help_lists_commands():
    out = rsft("--help")
    assert out.returncode == 0
    for cmd in ("synth", "retrain", "ingest", "history", "promote", "rollback", "serve"):
        assert cmd in out.stdout


def test_retrain_help_explains_options():
    out = rsft("retrain", "--help")
    assert out.returncode == 0
    assert "--config" in out.stdout and "--set" in out.stdout


def test_command_help_wraps_its_paragraphs_not_the_source_lines():
    """The docstring's line breaks were kept by the help and then wrapped at 80 columns: ragged
    lines ("after changing a policy (say" / "naive_timestamps: ..."). Each paragraph flows now."""
    out = rsft("ingest", "--help")
    assert out.returncode == 0
    text = " ".join(line.strip() for line in out.stdout.splitlines())
    assert "after changing a policy (say naive_timestamps: assume_utc), --again" in text
    lines = [line.rstrip() for line in out.stdout.splitlines()[:12] if line.strip()]
    # no line of the description ends far short of the width unless its paragraph ends there
    short = [line for line in lines[1:] if len(line) < 60 and not line.endswith((".", ")", ":"))]
    assert not short, short


def test_misspelled_key_is_one_line_nonzero(tmp_path):
    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    data["sampling"]["chunk_row"] = 5
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    out = rsft("retrain", "--config", str(p))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sampling.chunk_row" in lines[0]
    assert "Traceback" not in out.stderr


def test_check_config_prints_resolved(tmp_path):
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", "train.epochs=2")
    assert out.returncode == 0, out.stderr
    assert "epochs: 2" in out.stdout


def test_core_library_does_not_import_prefect():
    code = (
        "import sys, rsft.config, rsft.synth, rsft.pipeline, rsft.tracking.registry, rsft.features, rsft.cli;"
        "assert 'prefect' not in sys.modules, 'rsft imported prefect'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr


def test_ingest_messages_are_one_line_each_when_not_a_terminal(tmp_path):
    """Output to a pipe (80 columns for rich): every failed-file line stays one line however long,
    and a skipped duplicate file is named, not only counted."""
    import shutil

    bad = REPO / "tests" / "data" / "bad-inputs"
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(bad / "clean.csv", pool / "day01.csv")
    shutil.copy(bad / "clean.csv", pool / "day01_copy_of_the_same_export.csv")
    long_name = "missing_column_" + "x" * 90 + ".csv"
    shutil.copy(bad / "missing_column.csv", pool / long_name)
    for name in ("semicolon_delimited.csv", "extra_column.csv", "empty.csv", "out_of_range.csv"):
        shutil.copy(bad / name, pool / name)
    out = rsft("ingest", "--config", "examples/factory.yaml", "--set", f"data.pool=['{pool}']",
               "--set", "data.logs=[]", "--set", f"data.target_sample={bad / 'clean.csv'}",
               "--set", f"data.target_holdout={bad / 'clean.parquet'}", "--set", f"state.dir={tmp_path / 'state'}")
    assert out.returncode == 1, out.stderr  # a file failed: the exit status says so (the others are ingested)
    failed = [line for line in out.stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 4, out.stderr
    assert any(long_name in f and "missing column(s)" in f for f in failed), out.stderr
    # each failure names the contract setting that would accept the file
    assert any("semicolon_delimited.csv" in f and "delimiter: ';'" in f for f in failed), out.stderr
    assert any("extra_column.csv" in f and "unknown_columns: drop or keep" in f for f in failed), out.stderr
    assert any("empty.csv" in f and "empty_file: zero_rows" in f for f in failed), out.stderr
    where = [line for line in out.stdout.splitlines() if "quarantined rows (each with its reason" in line]
    assert len(where) == 1 and str(tmp_path / "state") in where[0] and where[0].rstrip().endswith("quarantine"), out.stdout
    dup = [line for line in out.stdout.splitlines() if line.startswith("duplicate")]
    assert len(dup) == 1 and "day01_copy_of_the_same_export.csv" in dup[0] and "day01.csv" in dup[0], out.stdout
    # the table's headers whole in a log (rich lays a pipe out in 80 columns unless told otherwise)
    assert "target_holdout" in out.stdout and "quarantined" in out.stdout and "…" not in out.stdout, out.stdout


def test_ingest_names_unique_key_conflicts_it_kept_by_policy(tmp_path):
    """Two exports with the same (machine_id, ts) but different readings under keep_first: the
    later file's row is quarantined, and the CLI says how many rows were in a key conflict."""
    bad = REPO / "tests" / "data" / "bad-inputs"
    pool = tmp_path / "pool"
    pool.mkdir()
    lines = (bad / "clean.csv").read_text().splitlines()
    (pool / "a.csv").write_text("\n".join(lines[:3]) + "\n")
    changed = lines[1].split(",")
    changed[2] = "12.345"  # same key as a.csv's first row, another s01
    (pool / "b.csv").write_text("\n".join([lines[0], ",".join(changed)]) + "\n")
    out = rsft("ingest", "--config", "examples/factory.yaml", "--set", f"data.pool=['{pool}']",
               "--set", "data.logs=[]", "--set", f"data.target_sample={bad / 'clean.csv'}",
               "--set", f"data.target_holdout={bad / 'clean.parquet'}", "--set", f"state.dir={tmp_path / 'state'}",
               "--set", "ingest.sensors.unique=[machine_id, ts]", "--set", "ingest.sensors.unique_conflicts=keep_first")
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stdout.splitlines() if "shared a unique key" in line]
    assert len(said) == 1 and said[0].startswith("sensors: ") and "1 row(s) shared a unique key" in said[0], out.stdout


def test_ingest_again_does_not_call_the_files_done_before_new(tmp_path):
    """(trial 7) `rsft ingest --again` counted 23,457 re-read rows under "rows read (new files)"."""
    bad = REPO / "tests" / "data" / "bad-inputs"
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "a.csv").write_text((bad / "clean.csv").read_text())
    args = ["ingest", "--config", "examples/factory.yaml", "--set", f"data.pool=['{pool}']", "--set", "data.logs=[]",
            "--set", f"data.target_sample={bad / 'clean.csv'}", "--set", f"data.target_holdout={bad / 'clean.parquet'}",
            "--set", f"state.dir={tmp_path / 'state'}"]
    first = rsft(*args)
    assert first.returncode == 0, first.stderr
    assert "rows read (new files)" in first.stdout and "ingested again" not in first.stdout, first.stdout
    again = rsft(*args, "--again")
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert "rows read (new files and files ingested again)" in said and "rows read (new files) " not in said, said
    assert "ingest --again: the files done before ingested again under the contract as it is now" in said, said


def test_a_set_value_yaml_cannot_read_is_one_line(tmp_path):
    """--set values YAML cannot construct (a python tag) or parse: one line, exit 2, no traceback."""
    for value in ("!!python/object:os.system x", "[unclosed", "{a: 1", "@x"):
        out = rsft("check-config", "--config", "examples/factory.yaml", "--set", f"train.lr={value}")
        assert out.returncode == 2, (value, out.stderr)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--set train.lr" in lines[0], (value, out.stderr)
        assert "Traceback" not in out.stderr


def test_a_set_key_below_a_plain_value_is_one_line():
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", "train.lr.x=1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--set train.lr.x: 'train.lr' is a value, not a section" in lines[0], out.stderr


def test_path_mistakes_are_one_line(tmp_path):
    """A directory given as the config, an --out below a file: one line, exit 2, no traceback."""
    (tmp_path / "file").write_text("x")
    for args, said in ((("check-config", "--config", "examples"), "a directory, not a config file"),
                       (("synth", "--config", "examples/factory.yaml", "--out", str(tmp_path / "file" / "raw")),
                        "cannot write")):
        out = rsft(*args)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1 and said in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_summary_values_read_as_numbers_not_json():
    """The retrain table's cells: thousands separators, 4 significant digits, yes/no, — for none."""
    from rsft.readable import human as cell

    assert [cell(v) for v in (137129, 0.0167432, 1.36312, None, True, False, 1234567.8, 12345.67, "x")] == [
        "137,129", "0.0167432", "1.36312", "—", "yes", "no", "1,234,568", "12,345.7", "x"]


def test_check_config_warns_about_data_paths_that_do_not_exist(tmp_path):
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", f"data.target_sample={tmp_path / 'sampel.csv'}")
    assert out.returncode == 0
    said = [line for line in out.stderr.splitlines() if line.startswith("warning data.target_sample")]
    assert len(said) == 1 and "sampel.csv: no such file or directory" in said[0], out.stderr


def test_version():
    from rsft import __version__

    out = rsft("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"rsft {__version__}"
    out = subprocess.run([sys.executable, "-m", "rsft", "--version"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"rsft {__version__}"  # python -m rsft, as the docs' users try


def test_check_config_warns_about_a_nullable_feature_no_rule_removes(tmp_path):
    """A contract column that may be missing, used as a model feature, with no not_null rule: the
    night's scorer would refuse it; check-config says so (and which rule to add) beforehand."""
    text = (REPO / "examples" / "factory.yaml").read_text()
    assert "features.numeric" not in rsft("check-config", "--config", "examples/factory.yaml").stderr
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(text.replace("{name: s01, dtype: float64, min: 0, max: 150, unit: degC}",
                                "{name: s01, dtype: float64, min: 0, max: 150, unit: degC, nullable: true}"))
    out = rsft("check-config", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    warning = [line for line in out.stderr.splitlines() if "features.numeric" in line]
    assert len(warning) == 1 and "s01 may be missing" in warning[0] and "{kind: not_null, columns: [s01]}" in warning[0]


def test_check_config_shows_synth_only_for_a_config_that_uses_it(tmp_path):
    """The synthetic factory's settings are the demo's: a plant's config (no synth: section) is
    printed without them; the demo's config (or a --set synth.… override) keeps them."""
    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    del data["synth"]
    plant = tmp_path / "plant.yaml"
    plant.write_text(yaml.safe_dump(data))
    out = rsft("check-config", "--config", str(plant))
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert "synth" not in shown and "data" in shown and "train" in shown
    assert "task" not in shown["train"]  # implied by features.classes: it read "regression" for a text classifier
    shown = yaml.safe_load(rsft("check-config", "--config", "examples/factory.yaml").stdout)
    assert shown["synth"]["seed"] == 7
    assert yaml.safe_load(rsft("check-config", "--config", str(plant), "--set", "synth.seed=3").stdout)["synth"]["seed"] == 3


def test_json_outputs_are_strict_json():
    """--json-out files are read by other tools: NaN / ±inf (a candidate the time budget skipped
    has an infinite loss) are null, not JavaScript's NaN / Infinity, NumPy scalars included."""
    import numpy as np

    from rsft.readable import strict_json

    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    text = strict_json({"cv_loss_mean": float("inf"), "x": [np.float32("nan"), np.float64("-inf"), 1.5],
                        "n": np.int64(3), "ok": {"a": 0.25}}, default=float)
    assert json.loads(text, parse_constant=refuse) == {"cv_loss_mean": None, "x": [None, None, 1.5], "n": 3.0,
                                                      "ok": {"a": 0.25}}


def test_retrain_json_out_into_a_missing_folder_fails_before_the_night(tmp_path):
    """(a new user's trial) the whole night ran and promoted, then writing --json-out crashed with
    a traceback and exit 1: the folder is checked first, in one line; a night that fails still
    writes its JSON (the error), so a scheduler has something to read."""
    state = ["--set", f"state.dir={tmp_path / 'state'}"]
    out = rsft("retrain", "--config", "examples/factory.yaml", *state, "--json-out", str(tmp_path / "no" / "s.json"))
    assert out.returncode != 0 and "Traceback" not in out.stdout + out.stderr
    assert f"--json-out {tmp_path / 'no' / 's.json'}: the folder {tmp_path / 'no'} does not exist" in " ".join(out.stderr.split())
    assert not list((tmp_path / "state").rglob("*.parquet"))  # nothing ingested: the night never started
    # a night that fails (no pool exports where the config says): its error in the JSON
    out = rsft("retrain", "--config", "examples/factory.yaml", *state, "--set", f"data.pool=[{tmp_path / 'nothere'}]",
               "--json-out", str(tmp_path / "s.json"))
    assert out.returncode == 1
    said = json.loads((tmp_path / "s.json").read_text())
    assert said["pipeline"] == "factory" and said["error"].startswith("retrain failed: ")


def test_history_shows_every_version_s_metric_with_one_precision(monkeypatch):
    """(trial L4) `rmse 222` for v1 beside `rmse 210.6` for v2: one precision for the column, 4
    significant figures with trailing zeros kept (more only where two versions would read the same)."""
    from typer.testing import CliRunner

    from rsft.cli import app
    from rsft.cli import registry as commands
    from rsft.tracking import registry

    def version(v, metric):
        return {"version": v, "created": 0, "aliases": [], "decision": "promoted", "metric": metric,
                "metric_name": "rmse", "reason": "r", "recipe": None, "events": []}

    rows = [version(3, ""), version(2, "210.595"), version(1, "221.969")]
    monkeypatch.setattr(registry, "history", lambda client, name: rows)
    monkeypatch.setattr(commands, "_client", lambda cfg: None)
    monkeypatch.setenv("COLUMNS", "200")
    out = CliRunner().invoke(app, ["history", "--config", str(REPO / "examples" / "factory.yaml")])
    assert out.exit_code == 0, out.output
    assert "rmse 210.6 " in out.output and "rmse 222.0 " in out.output, out.output
    rows[1:] = [version(2, "210.52"), version(1, "210.51")]  # the same at 4 figures: both shown with 5
    out = CliRunner().invoke(app, ["history", "--config", str(REPO / "examples" / "factory.yaml")])
    assert "rmse 210.52 " in out.output and "rmse 210.51 " in out.output, out.output
    # (trial 6) a gate-rejected version made champion by hand: its row says so
    rows[1:] = [{**version(2, "4.236"), "decision": "rejected", "aliases": ["champion"]}, version(1, "1.971")]
    out = CliRunner().invoke(app, ["history", "--config", str(REPO / "examples" / "factory.yaml")])
    assert "rejected (champion by hand: see events)" in out.output, out.output


def test_history_shows_the_newest_versions_and_every_alias_holder(monkeypatch):
    """Trial 9: after 54 nights `rsft history` was 192 lines. The default shows the newest 20
    versions, an older one that holds an alias (the champion, the rollback target) and the newest
    20 events, and says what it left out; --limit 0 shows all."""
    from typer.testing import CliRunner

    from rsft.cli import app
    from rsft.cli import registry as commands
    from rsft.tracking import registry

    rows = [{"version": v, "created": 0, "aliases": ["champion"] if v == 3 else [], "decision": "rejected",
             "metric": "1.0", "metric_name": "rmse", "reason": f"reason-{v}", "recipe": None,
             "events": [(f"2026-12-05T{v % 24:02d}:00:00", f"event-{v}")]} for v in range(60, 0, -1)]
    monkeypatch.setattr(registry, "history", lambda client, name: rows)
    monkeypatch.setattr(commands, "_client", lambda cfg: None)
    monkeypatch.setenv("COLUMNS", "200")
    cfg = str(REPO / "examples" / "factory.yaml")
    out = CliRunner().invoke(app, ["history", "--config", cfg])
    assert out.exit_code == 0, out.output
    shown = {v for v in range(1, 61) if f"reason-{v} " in out.output or out.output.count(f"reason-{v}\n")}
    assert shown == set(range(41, 61)) | {3}, sorted(shown)
    assert out.output.count("  event-") == 20
    assert "… 39 older version(s) and 40 older event(s) not shown: --limit 100 or --limit 0 (all)" in out.output
    out = CliRunner().invoke(app, ["history", "--config", cfg, "--limit", "0"])
    assert all(f"reason-{v}" in out.output for v in range(1, 61)) and "not shown" not in out.output


def test_check_config_says_a_key_without_unique_is_not_enforced():
    """(trial L5) `key:` is documentation; `unique:` enforces a key at ingest. A user read the
    example's key as enforced: check-config says in one line that it is not, and what does."""
    # the example's duplicate rule on the key's columns enforces it in the kept pool: no warning there
    out = rsft("check-config", "--config", "examples/factory.yaml")
    assert out.returncode == 0 and "ingest.sensors.key" not in out.stderr, out.stderr
    no_rule = "prefilter.rules=[{kind: stuck, columns: [s01], window: 8}]"
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", no_rule)
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stderr.splitlines() if "ingest.sensors.key" in line]
    assert said == ["warning ingest.sensors.key [machine_id, ts] is not enforced at ingest (a re-export under another "
                    "file name is ingested again); set ingest.sensors.unique: [machine_id, ts] to enforce it"], out.stderr
    assert "not enforced at ingest" in (REPO / "examples" / "factory.yaml").read_text().lower()  # the example's comment says it too
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", "ingest.sensors.unique=[machine_id, ts]")
    assert out.returncode == 0 and "ingest.sensors.key" not in out.stderr, out.stderr


def test_a_decimal_comma_export_is_named_then_ingested(tmp_path, capsys):
    """Trial 7: a ';'-separated export with decimal commas (3,14) — every row 'not a number' under
    the right dtype. The warning names ingest.sensors.decimal_comma and that the files done need
    `rsft ingest --again` — the retrain's summary says it in the same words; with it set, `--again`
    ingests every row, with the same values as the '.'-decimal original."""
    import polars as pl

    from rsft.cli import common, night

    bad = REPO / "tests" / "data" / "bad-inputs"
    pool = tmp_path / "pool"
    pool.mkdir()
    lines = (bad / "clean.csv").read_text().splitlines()
    (pool / "eu.csv").write_text("\n".join([lines[0].replace(",", ";")]
                                           + [line.replace(",", ";").replace(".", ",") for line in lines[1:]]) + "\n")
    target = tmp_path / "target_eu.csv"  # the contract's delimiter is the target sample's too
    target.write_text((pool / "eu.csv").read_text())
    args = ["--set", f"data.pool=['{pool}']", "--set", "data.logs=[]", "--set", f"data.target_sample={target}",
            "--set", f"data.target_holdout={bad / 'clean.parquet'}", "--set", f"state.dir={tmp_path / 'state'}",
            "--set", "ingest.sensors.delimiter=';'"]
    out = rsft("ingest", "--config", "examples/factory.yaml", *args)
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "sensors: eu.csv" in line]
    assert len(warned) == 1 and "set ingest.sensors.decimal_comma: true" in warned[0], out.stderr
    lost = [line for line in out.stderr.splitlines() if " rows quarantined " in line]  # eu.csv and the target sample
    again = [line for line in out.stderr.splitlines() if "--again" in line]
    assert again == ["after changing the contract, `rsft ingest --again` ingests the file(s) above again (files done "
                     "are skipped otherwise)"], out.stderr
    common.err.width = 10_000  # one line per warning, as the piped subprocess writes them
    night._night_warnings({"files_mostly_quarantined": [line.removeprefix("warning ") for line in lost]})
    assert capsys.readouterr().err.splitlines() == [*lost, *again]  # the retrain's lines: the same
    out = rsft("ingest", "--config", "examples/factory.yaml", *args, "--set", "ingest.sensors.decimal_comma=true", "--again")
    assert out.returncode == 0, out.stderr
    parts = list((tmp_path / "state").rglob("sensors/data/**/*.parquet"))
    got = pl.read_parquet(parts).sort("_row")
    want = pl.read_csv(bad / "clean.csv")
    assert got.height == want.height and got["s01"].to_list() == want["s01"].to_list()


def test_check_config_warns_of_a_step_cap_below_min_steps():
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", "train.max_steps=300", "--set", "train.min_steps=500")
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "below train.min_steps" in line]
    assert len(warned) == 1 and "train.max_steps 300" in warned[0], out.stderr


def test_check_config_warns_of_decimal_comma_with_a_comma_delimiter():
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", "ingest.sensors.decimal_comma=true")
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "decimal_comma" in line]
    assert len(warned) == 1 and "use ';'" in warned[0], out.stderr
    out = rsft("check-config", "--config", "examples/factory.yaml", "--set", "ingest.sensors.decimal_comma=true",
               "--set", "ingest.sensors.delimiter=';'")
    assert "decimal_comma" not in out.stderr, out.stderr


def test_check_config_names_a_holdout_span_it_cannot_draw(tmp_path):
    """train.holdout_exclusion: span (the default) with a time column stored as text: one warning
    line naming it (the fine-tune leaves out the hold-out's own rows only); the demo's config, and
    holdout_exclusion: rows, have none."""
    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    data["ingest"]["sensors"]["columns"][1]["dtype"] = "str"  # ts
    p = tmp_path / "text-time.yaml"
    p.write_text(yaml.safe_dump(data))
    lines = [s for s in rsft("check-config", "--config", str(p)).stderr.splitlines() if "holdout_exclusion" in s]
    assert len(lines) == 1 and "features.time_column 'ts' (text)" in lines[0], lines
    assert "holdout_exclusion" not in rsft("check-config", "--config", "examples/factory.yaml").stderr
    assert "holdout_exclusion" not in rsft("check-config", "--config", str(p), "--set", "train.holdout_exclusion=rows").stderr


def test_history_names_the_holdout_each_version_was_judged_on(monkeypatch):
    """Two nights on one hold-out, a third on a new one: each row has the hold-out's short id, and
    one line per hold-out gives its files, rows and versions; every line fits 120 columns. A version
    registered before the hold-out tags has an empty id and no line."""
    from typer.testing import CliRunner

    from rsft.cli import app, common
    from rsft.cli import registry as commands
    from rsft.tracking import registry

    def version(v, digest, files, rows):
        return {"version": v, "created": 0, "aliases": ["champion"] if v == 4 else [], "decision": "promoted",
                "metric": "1.5", "metric_name": "rmse", "reason": "rmse 1.5 < champion 1.6 (bar 1.6) " * 3,
                "recipe": None, "events": [], "holdout_digest": digest, "holdout_files": files, "holdout_rows": rows}

    rows = [version(4, "9f8e7d6c5b4a3210", "holdout_2026-02.parquet", "2000"),
            version(3, "0123456789abcdef", "holdout.parquet", "1500"),
            version(2, "0123456789abcdef", "holdout.parquet", "1500"), version(1, "", "", "")]
    monkeypatch.setattr(registry, "history", lambda client, name: rows)
    monkeypatch.setattr(commands, "_client", lambda cfg: None)
    monkeypatch.setattr(common.console, "width", 120)  # a 120-column terminal (piped, it lays out in 160)
    out = CliRunner().invoke(app, ["history", "--config", str(REPO / "examples" / "factory.yaml")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert max(map(len, lines)) <= 120, out.output
    assert [line.split("│")[6].strip() for line in lines if line.startswith("│ ") and line.split("│")[1].strip().isdigit()] \
        == ["9f8e7d", "012345", "012345", ""], out.output
    assert "hold-out 9f8e7d: holdout_2026-02.parquet, 2,000 rows — v4" in lines, out.output
    assert "hold-out 012345: holdout.parquet, 1,500 rows — v3, v2" in lines, out.output


def test_history_of_nightly_holdouts_stays_readable_at_80_columns(monkeypatch):
    """Trial 10: 15 versions each judged on its own night's draw of holdout.csv gave 15 legend lines
    of the same file name, an id column that told nothing, and a zero-width reason column at 100
    columns. Now: no id column, one legend line with the rows' range, a "data to" column (the
    night's data date; the registration time left out where the short facts would not fit), and
    where the short facts leave under 30 columns the reasons on lines of their own — every fact
    and reason shown in full."""
    from typer.testing import CliRunner

    from rsft.cli import app, common
    from rsft.cli import registry as commands
    from rsft.tracking import registry

    rows = [{"version": v, "created": 0, "aliases": [], "decision": "rejected (model removed 2026-12-05)"
             if v % 3 == 0 else "promoted", "metric": f"{v}.5", "metric_name": "rmse",
             "reason": f"rmse {v}.5 < champion {v + 1}.5 (bar {v + 1}.5); difference 1.0 ± 0.1 (10.0 SE ≥ promotion.min_z=2)",
             "recipe": "recalibrate", "events": [], "holdout_digest": f"{v:02d}abcdef", "holdout_files": "holdout.csv",
             "holdout_rows": str(760 + v), "data_to": f"2026-02-{v:02d}"} for v in range(15, 0, -1)]
    monkeypatch.setattr(registry, "history", lambda client, name: rows)
    monkeypatch.setattr(commands, "_client", lambda cfg: None)
    monkeypatch.setattr(common.console, "width", 80)
    out = CliRunner().invoke(app, ["history", "--config", str(REPO / "examples" / "factory.yaml")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    assert "data to" in header and " id " not in header and "reason" not in header, header
    assert "┃┃" not in out.output
    assert [line for line in lines if line.startswith("hold-out")] == [
        "hold-out: a new one each night (holdout.csv, 761–775 rows): a version's figure compares only with the "
        "champion's in its reason"] or "hold-out: a new one each night (holdout.csv, 761–775 rows)" in out.output
    assert "2026-02-15" in out.output and "…" not in out.output, out.output
    flat = " ".join(out.output.split())
    for r in rows:
        assert f"v{r['version']} recalibrate: {r['reason']}" in flat, r["version"]
