from pathlib import Path

import pytest
import yaml

from rsft.config import ConfigError, PipelineConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "factory.yaml"


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_config_loads_and_resolves_paths():
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.features.numeric[0] == "s01"
    assert cfg.ingest.sensors is not None and len(cfg.ingest.sensors.columns) == 16
    assert Path(cfg.resolve(cfg.data.target_sample)).is_absolute()
    assert cfg.resolve("s3://bucket/x.csv") == "s3://bucket/x.csv"


def test_misspelled_key_names_the_key(tmp_path):
    data = _example()
    data["train"]["epoch"] = 3  # typo of "epochs"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "train.epoch" in msg and "unknown key" in msg
    assert "\n" not in msg


def test_wrong_type_names_the_key():
    data = _example()
    data["sampling"]["chunk_rows"] = "lots"
    with pytest.raises(ConfigError, match=r"sampling\.chunk_rows"):
        parse_config(data)


def test_unknown_rule_kind_is_an_error():
    data = _example()
    data["prefilter"]["rules"].append({"kind": "telepathy", "columns": ["s01"]})
    with pytest.raises(ConfigError, match="prefilter.rules"):
        parse_config(data)


def test_budget_mode_requires_budget():
    data = _example()
    data["sampling"]["mode"] = "budget"
    with pytest.raises(ConfigError, match="budget"):
        parse_config(data)


def test_overrides_and_flat_params():
    cfg = load_config(EXAMPLE, {"train.epochs": 3, "scorer.kind": "gmm"})
    assert cfg.train.epochs == 3 and cfg.scorer.kind == "gmm"
    flat = cfg.flat()
    assert flat["train.epochs"] == 3 and flat["promotion.metric"] == "rmse"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "x.yaml"
    p.write_text("name: x\na: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as exc:
        load_config(p)
    assert "line 3, column 1" in str(exc.value) and "\n" not in str(exc.value)  # where the parser gave up
    with pytest.raises(ConfigError, match="a directory, not a config file"):
        load_config(tmp_path)


def test_a_bad_set_value_is_blamed_on_the_set_not_the_file():
    with pytest.raises(ConfigError) as exc:
        load_config(REPO / "examples" / "factory.yaml", {"train.lr": "abc"})
    assert str(exc.value).startswith("--set train.lr='abc': invalid value for 'train.lr'"), str(exc.value)
    with pytest.raises(ConfigError, match=r"^--set train.lr.x: 'train.lr' is a value, not a section$"):
        load_config(REPO / "examples" / "factory.yaml", {"train.lr.x": 1})
    with pytest.raises(ConfigError) as exc:  # an unknown key the --set introduced
        load_config(REPO / "examples" / "factory.yaml", {"train.epochs": 3, "train.lrr": 1})
    assert "unknown key 'train.lrr'" in str(exc.value)
    # a check across sections that only the --set breaks: the --set's
    with pytest.raises(ConfigError, match=r"^--set train.task='regression': train.task is implied"):
        load_config(REPO / "examples" / "factory.yaml", {"train.task": "regression"})


def test_a_file_error_in_a_section_is_not_blamed_on_a_set_below_it(tmp_path):
    p = tmp_path / "s3.yaml"
    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    data["state"] = {**data.get("state", {}), "dir": "s3://bucket/state"}  # the file's own error
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_config(p, {"state.keep_nights": 3})
    assert str(exc.value).startswith(f"{p}: invalid value for 'state'") and "local directory" in str(exc.value)
    with pytest.raises(ConfigError, match='a tab is written'):  # a tab spelt as two characters
        load_config(REPO / "examples" / "factory.yaml", {"ingest.sensors.delimiter": "\\t"})


def test_rolling_features_are_refused_for_text_pipelines():
    data = yaml.safe_load((REPO / "examples" / "maintenance-logs.yaml").read_text())
    data.setdefault("features", {})["rolling"] = [{"columns": ["s01"], "window": 5, "stats": ["mean"]}]
    with pytest.raises(ConfigError, match="features.rolling is for sensor readings") as exc:
        parse_config(data)
    assert "\n" not in str(exc.value)


def test_adapt_rsft_candidate_defaults_to_the_sampling_stages_recipe():
    """Unset adapt.m_quantiles = [sampling.m_quantile]: the search's rsft candidate is the sampling
    stage's recipe, so a winner trains on that stage's selection (rsft.pipeline.is_sampling_recipe);
    a candidate with other settings does not."""
    from rsft.adapt import make_candidates
    from rsft.pipeline import is_sampling_recipe

    cfg = load_config(EXAMPLE, {"adapt.enabled": True, "sampling.m_quantile": 0.95})
    assert cfg.adapt.m_quantiles == [0.95]
    rsft = [c for c in make_candidates(cfg.adapt) if c.strategy == "rsft"]
    assert [is_sampling_recipe(c, cfg) for c in rsft] == [True]
    grid = load_config(EXAMPLE, {"adapt.enabled": True, "adapt.m_quantiles": [0.9, 0.95], "adapt.betas": [0.5, 1.0],
                                 "sampling.m_quantile": 0.95})
    own = [c.name for c in make_candidates(grid.adapt) if is_sampling_recipe(c, grid)]
    assert own == ["rsft β=1 q=0.95"]
    tempered = load_config(EXAMPLE, {"adapt.enabled": True, "sampling.m_quantile": 0.95, "sampling.temper": 0.5})
    assert tempered.adapt.betas == [0.5]  # unset betas follow sampling.temper too
    assert [c.name for c in make_candidates(tempered.adapt) if is_sampling_recipe(c, tempered)] == ["rsft β=0.5 q=0.95"]
    full_rs = load_config(EXAMPLE, {"adapt.enabled": True, "adapt.betas": [1.0], "sampling.temper": 0.5})
    assert not any(is_sampling_recipe(c, full_rs) for c in make_candidates(full_rs.adapt))
    budget = load_config(EXAMPLE, {"adapt.enabled": True, "sampling.mode": "budget", "sampling.budget": 100})
    assert not any(is_sampling_recipe(c, budget) for c in make_candidates(budget.adapt))


def test_adapt_refuses_classification_labels_in_one_line():
    data = _example()
    data["features"]["classes"] = ["ok", "scrap"]
    data["adapt"] = {"enabled": True}
    with pytest.raises(ConfigError, match="regression labels only") as exc:
        parse_config(data)
    assert "\n" not in str(exc.value)


def test_feature_columns_must_exist_in_the_contract_one_line():
    """A typo in a feature/label column fails at load time, naming the key and the closest column
    (it used to surface as a Polars query-plan dump deep in the retrain)."""
    with pytest.raises(ConfigError) as exc:
        load_config(EXAMPLE, {"features.label": "qualty"})
    assert str(exc.value).endswith("features.label: 'qualty' is not a column of the sensors contract; did you mean 'quality'?")
    with pytest.raises(ConfigError, match=r"features.numeric: 's13' is not a column"):
        load_config(EXAMPLE, {"features.numeric": ["s01", "s13"]})
    with pytest.raises(ConfigError, match=r"features.rolling: 'x1' is not a column"):
        load_config(EXAMPLE, {"features.rolling": [{"columns": ["x1"], "window": 4}]})
    logs = REPO / "examples" / "maintenance-logs.yaml"
    with pytest.raises(ConfigError, match=r"features.text_column: 'txt' is not a column of the maintenance contract"):
        load_config(logs, {"features.text_column": "txt"})
    # (a new user's trial) a prefilter rule's columns too, and the model a text pipeline needs
    with pytest.raises(ConfigError, match=r"prefilter.rules\[0\] \(text_duplicate\): 'body' is not a column of the "
                                          r"maintenance contract"):
        load_config(logs, {"prefilter.rules": [{"kind": "text_duplicate", "column": "body"}]})
    with pytest.raises(ConfigError, match=r"prefilter.rules\[1\] \(stuck\): 'machine' is not a column.*did you mean 'machine_id'"):
        load_config(EXAMPLE, {"prefilter.rules": [{"kind": "duplicate", "columns": ["machine_id", "ts"]},
                                                  {"kind": "stuck", "columns": ["s01"], "window": 4, "by": "machine"}]})
    with pytest.raises(ConfigError, match=r"features.kind 'text' needs model.kind 'text' \(got 'mlp'\)"):
        load_config(logs, {"model.kind": "mlp"})
    data = _example()  # a contract that keeps unknown columns: the features may use them
    data["ingest"]["sensors"]["unknown_columns"] = "keep"
    data["features"]["numeric"] = ["s01", "extra_sensor"]
    assert parse_config(data).features.numeric == ["s01", "extra_sensor"]


def test_require_targets_stops_only_when_no_target_file_ingested():
    from rsft.pipeline import DatasetIngest, Ingested
    from rsft.pipeline.data import check_targets

    def ds(*statuses, failed=("old.csv: unreadable",)):
        return DatasetIngest("d", len(statuses), 0, 0, 0, 0, files_failed=failed,
                             file_results=tuple({"status": s} for s in statuses))

    bad = ds("failed")
    with pytest.raises(ValueError, match=r"the target sample did not ingest \(old.csv: unreadable\)"):
        check_targets(Ingested({"target_sample": bad, "target_holdout": ds(failed=())}))
    with pytest.raises(ValueError, match="target holdout"):  # the skipped (unchanged) file is an earlier night's
        check_targets(Ingested({"target_holdout": ds("failed", "skipped")}))
    # a directory of daily samples whose old bad file fails every night: tonight's new file ingested
    check_targets(Ingested({"target_sample": ds("failed", "ok")}))


def test_train_task_is_implied_by_the_labels_not_set():
    with pytest.raises(ConfigError, match="train.task is implied by features.classes"):
        load_config(EXAMPLE, {"train.task": "classification"})


def test_removed_fields_are_unknown_keys():
    """Fields nothing read were removed: a config that still sets one fails, naming it."""
    with pytest.raises(ConfigError, match="standardize_sample_rows"):
        load_config(EXAMPLE, {"features.standardize_sample_rows": 1000})


def test_config_errors_name_list_items_and_list_the_others():
    """A bad column of a contract is named by its name, not its index; further errors are listed,
    not counted ("+1 more" hid which)."""
    data = yaml.safe_load((REPO / "examples" / "factory.yaml").read_text())
    cols = data["ingest"]["sensors"]["columns"]
    cols[2]["dtype"] = "flaot"
    del data["data"]["target_sample"], data["data"]["target_holdout"]
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    msg = str(exc.value)
    assert "\n" not in msg and "(also: " in msg and "more)" not in msg, msg
    assert f"ingest.sensors.columns[{cols[2]['name']}].dtype" in msg and "data.target_holdout" in msg, msg


def test_a_night_stopped_by_its_target_says_how_many_pool_files_failed_and_why():
    """(trial M4) The hold-out failed beside 20 pool files for the same reason: the one line that
    stops the night names the hold-out and counts the pool's failures by reason."""
    from rsft.pipeline import DatasetIngest, Ingested
    from rsft.pipeline.data import check_targets

    def ds(failed):
        return DatasetIngest("d", len(failed), 0, 0, 0, 0, files_failed=tuple(failed),
                             file_results=tuple({"status": "failed"} for _ in failed))

    why = "column ts: expected timestamp, found string"
    pool = ds([f"p{i}.parquet: {why}" for i in range(20)] + ["x.csv: empty file (no header)"])
    with pytest.raises(ValueError) as e:
        check_targets(Ingested({"sensors": pool, "target_holdout": ds([f"holdout.parquet: {why}"])}))
    assert str(e.value).startswith(f"the target holdout did not ingest (holdout.parquet: {why}); ")
    assert str(e.value).endswith(f" (also 21 pool files failed: 20 × {why}; 1 × empty file (no header); "
                                 "`rsft ingest` names each)")
    with pytest.raises(ValueError) as e:  # no pool file failed: nothing added
        check_targets(Ingested({"sensors": ds([]), "target_holdout": ds([f"holdout.parquet: {why}"])}))
    assert "pool" not in str(e.value)


def test_sequence_rules_group_by_features_group_unless_they_say_otherwise():
    """(trial 7) stuck / spike (and rate_of_change) grouped by machine_id whatever features.group
    said, and `by: [site_id]` failed with "Input should be a valid string": a rule without its own
    `by` / `order_by` takes features.group / time_column; a one-column list reads as the column."""
    from rsft.pipeline.layout import night_config

    keep = {"ingest.sensors.unknown_columns": "keep"}  # the demo contract has no site_id / t column
    cfg = load_config(EXAMPLE, {**keep, "features.group": "site_id", "features.time_column": "t"})
    seq = [r for r in cfg.prefilter.rules if r.kind in ("stuck", "spike")]
    assert len(seq) == 2 and all((r.by, r.order_by) == ("site_id", "t") for r in seq)
    rules = _example()["prefilter"]["rules"]
    own = [{**r, "by": "line", "order_by": "when"} if r["kind"] == "stuck" else r for r in rules]
    cfg = load_config(EXAMPLE, {**keep, "features.group": "site_id", "prefilter.rules": own})
    assert [(r.by, r.order_by) for r in cfg.prefilter.rules if r.kind in ("stuck", "spike")] == [("line", "when"),
                                                                                              ("site_id", "ts")]
    listed = [{**r, "by": ["machine_id"]} if r["kind"] in ("stuck", "spike") else r for r in rules]
    assert all(r.by == "machine_id" for r in load_config(EXAMPLE, {"prefilter.rules": listed}).prefilter.rules
               if r.kind in ("stuck", "spike"))
    # a config whose group is machine_id (the examples) resolves to the rules it had: the same night key
    spelled = [{**r, "by": "machine_id", "order_by": "ts"} if r["kind"] in ("stuck", "spike") else r for r in rules]
    assert night_config(load_config(EXAMPLE)) == night_config(load_config(EXAMPLE, {"prefilter.rules": spelled}))
    two = [{**r, "by": ["machine_id", "line"]} if r["kind"] == "spike" else r for r in rules]
    with pytest.raises(ConfigError) as exc:
        load_config(EXAMPLE, {"prefilter.rules": two})
    msg = str(exc.value)
    assert "\n" not in msg and "by takes one column (got ['machine_id', 'line'])" in msg
