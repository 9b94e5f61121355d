"""The JSONL contract as strong as the CSV/Parquet one: ``unknown_columns: reject`` (a line with a
key outside the contract is quarantined, naming it), ``aliases`` for keys, and a file that is not
JSON Lines at all (UTF-16, a JSON array, pretty-printed JSON) failing in one line. Every case is
run through the bulk parse and the line parser, which must agree."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from rsft.config import ColumnContract, ContractConfig
from rsft.ingest import ingest, readers, scan_dataset
from rsft.pipeline.targets import setting_for


def _contract(**kw) -> ContractConfig:
    return ContractConfig(name="j", format="jsonl", timestamp_column="ts", columns=[
        ColumnContract(name="id", dtype="str", pattern="^M[0-9]{2}$"), ColumnContract(name="ts", dtype="timestamp"),
        ColumnContract(name="x", dtype="float64", min=0, max=100, aliases=["x_old"]),
        ColumnContract(name="text", dtype="str", nullable=True, aliases=["note", "remark"])], **kw)


def _line(i: int, **keys) -> str:
    obj = {"id": f"M{i % 7:02d}", "ts": f"2026-01-01T{i // 60 % 24:02d}:{i % 60:02d}:00Z", "x": i % 90 + 0.5,
           "text": f"reading {i}: ok"}
    for k, v in keys.items():
        if v is _DROP:
            obj.pop(k, None)
        else:
            obj[k] = v
    return json.dumps(obj)


_DROP = object()


def _run(src: Path, root: Path, contract: ContractConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    res = ingest(str(src), root, contract, chunk_rows=5).files[0]
    assert res.status == "ok" and res.rows_total == res.rows_ok + res.rows_quarantined, res
    parts = list((root / "quarantine").glob("*.parquet"))
    q = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed").sort("_row") if parts else pl.DataFrame()
    return scan_dataset(root).sort("_row").collect(), q


def _both(src: Path, tmp: Path, contract: ContractConfig, monkeypatch) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The file through the bulk parse and through the line parser only: the same rows, values,
    reasons and line texts; and how many lines the bulk run gave the line parser."""
    per_line = []
    real = readers._JsonlLines.row
    with monkeypatch.context() as m:
        m.setattr(readers._JsonlLines, "row", lambda self, i, line: per_line.append(i) or real(self, i, line))
        bulk = _run(src, tmp / "bulk", contract)
    with monkeypatch.context() as m:
        m.setattr(readers._JsonlBlock, "block", lambda self, blk, first, ends=None: self._per_line(blk, first))
        lines = _run(src, tmp / "lines", contract)
    assert bulk[0].equals(lines[0])
    if bulk[1].height or lines[1].height:
        def same(q: pl.DataFrame) -> pl.DataFrame:
            return q.select(sorted(q.columns)).with_columns(pl.col("x").cast(pl.Float64, strict=False))
        assert same(bulk[1]).equals(same(lines[1]))
    return bulk[0], bulk[1], len(per_line)


# lines of every kind, spread among good ones (some 5-line blocks clean, some not)
_ODD = {
    "extra": _line(1, extra=1),  # a key outside the contract
    "two_extra": _line(2, extra={"a": "b:c"}, site="S1"),
    "underscore": _line(3, _id="abc"),  # a key starting with _: not judged (as a CSV column's)
    "extra_null": _line(4, extra=None),  # a key with a null value
    "renamed": _line(5, text=_DROP, note="renamed: text"),
    "renamed_x": _line(6, x=_DROP, x_old=7.5),
    "second_alias": _line(7, text=_DROP, remark="the second alias"),
    "name_and_alias": _line(8, note="also the alias"),  # the name wins; the alias is a key outside the contract
    "name_null_alias": _line(9, text=None, note="alias"),  # the name (null) wins, as in a CSV header
    "unknown_not_alias": _line(10, text=_DROP, comment="a renamed key not in aliases"),
    "colon_text": _line(11, text='a "quoted": b: c'),  # colons and quotes inside a value
    "escaped_colon": _line(12, text="\\u003a"),  # a text that is a backslash, u003a (no escaped colon)
    "nested": _line(13, text={"k": "v:w"}),  # an object for a text: wrong type
    "key_twice": _line(14)[:-1] + ', "id": "M03"}',
    "spacing": _line(15).replace('": ', '" :\t'),
    "space_colon": _line(18, text="ratio : 3 \\: 1"),  # blanks and a backslash before colons in a text
    "hidden_extra": _line(19, text='q": r')[:-1] + ', "site" :\t"S1"}',  # a key colon after a blank, an escaped quote's colon
    "missing": _line(16, ts=_DROP),
    "missing_extra": _line(17, ts=_DROP, time="2026-01-01T00:00:00Z"),
}


@pytest.mark.parametrize("unknown", ["reject", "drop"])
def test_jsonl_unknown_keys_and_aliases_bulk_and_line_parser_agree(tmp_path, monkeypatch, unknown):
    """``unknown_columns: reject``: each line with a key outside the contract (not an alias read, not
    starting with _) is quarantined, the reason naming the keys and the setting, its text kept;
    ``drop`` (the JSONL default) ingests it without them, as before. Aliases: a line without a
    column's key is read from its first alias; a line with the name has it (a null too). A line
    missing a key names the line's unknown keys and aliases. Bulk and line parser agree on all."""
    contract = _contract(unknown_columns=unknown)
    lines = []
    for i, line in enumerate(_ODD.values()):
        lines += [_line(100 + 3 * i), _line(101 + 3 * i), line]
    src = tmp_path / "logs.jsonl"
    src.write_text("\n".join(lines) + "\n")
    data, q, _ = _both(src, tmp_path, contract, monkeypatch)
    row = {k: 3 + 3 * i for i, k in enumerate(_ODD)}
    reasons = dict(zip(q["_row"].to_list(), q["reason"].to_list()))
    text = dict(zip(data["_row"].to_list(), data["text"].to_list()))
    assert text[row["renamed"]] == "renamed: text" and text[row["second_alias"]] == "the second alias"
    assert data.filter(pl.col("_row") == row["renamed_x"])["x"].to_list() == [7.5]
    assert text[row["colon_text"]] == 'a "quoted": b: c'
    assert text[row["escaped_colon"]] == "\\u003a" and text[row["underscore"]] == "reading 3: ok"
    assert text[row["space_colon"]] == "ratio : 3 \\: 1"
    assert reasons[row["nested"]] == "text wrong type (dict)"
    assert reasons[row["missing"]] == "missing key ts"
    assert reasons[row["missing_extra"]] == ("missing key ts (the line has unknown key(s) time: if one is ts under "
                                             "another name, list it in aliases: [...] of column ts in the contract's columns)")
    assert reasons[row["unknown_not_alias"]].startswith("missing key text (the line has unknown key(s) comment:")
    judged = ["extra", "two_extra", "extra_null", "name_and_alias", "name_null_alias", "hidden_extra"]
    if unknown == "reject":
        assert reasons[row["two_extra"]] == ("unknown key(s) extra, site (the contract's unknown_columns: drop would "
                                             "accept the line)")
        assert reasons[row["name_and_alias"]].startswith("unknown key(s) note ")
        assert {r for r, why in reasons.items() if why.startswith("unknown key")} == {row[k] for k in judged}
        assert q.filter(pl.col("_row") == row["extra"])["__line"].to_list() == [_ODD["extra"]]  # nothing lost
    else:
        assert set(data["_row"].to_list()) >= {row[k] for k in judged}
        assert text[row["name_null_alias"]] is None and text[row["name_and_alias"]] == "reading 8: ok"
        assert not any(why.startswith("unknown key") for why in reasons.values())
    assert set(reasons) | set(data["_row"].to_list()) == set(range(1, len(lines) + 1))


def test_jsonl_clean_blocks_stay_on_the_bulk_path(tmp_path, monkeypatch):
    """The checks cost the bulk path no line parsing where a block is clean: under ``reject`` a
    file whose lines have only the contract's keys (colons in its texts too), and a renamed export
    (every line under an alias) under either setting, go through the line parser not at all."""
    src = tmp_path / "clean.jsonl"
    src.write_text("".join(_line(i) + "\n" for i in range(40)))
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(_line(i, text=_DROP, note=f"n{i}", x=_DROP, x_old=1.5) + "\n" for i in range(40)))
    for path, unknown in ((src, "reject"), (renamed, "reject"), (renamed, "drop")):
        data, q, per_line = _both(path, tmp_path / f"{path.stem}-{unknown}", _contract(unknown_columns=unknown), monkeypatch)
        assert (data.height, q.height, per_line) == (40, 0, 0), (path.name, unknown)
    assert data["text"].to_list()[:2] == ["n0", "n1"] and set(data["x"].to_list()) == {1.5}


@pytest.mark.parametrize("unknown", ["reject", "drop"])
def test_jsonl_two_aliases_in_a_line_quarantine_that_line_in_both_parsers(tmp_path, monkeypatch, unknown):
    """Two of a column's aliases in one JSONL line (the name absent; the second null too: the key is
    there) quarantine that line, its reason naming the keys and the aliases setting, its text kept;
    the file's other lines are ingested (keys differ per line: one such line must not fail a
    night's file). Bulk parse and line parser agree. A line with the name and an alias is read
    from the name (the alias is a key outside the contract: test above). A CSV or Parquet header
    with two of them still fails its file (a header holds for every row)."""
    two = {13: _line(13, text=_DROP, note="a", remark="a second"), 15: _line(15, text=_DROP, note="a", remark=None),
           17: _line(17, text=_DROP, ts=_DROP, note="a", remark="b")}  # an earlier column's fault comes first
    src = tmp_path / "two.jsonl"
    src.write_text("".join((two.get(i) or _line(i)) + "\n" for i in range(1, 21)))
    data, q, _ = _both(src, tmp_path, _contract(unknown_columns=unknown), monkeypatch)
    why = ("2 aliases of column text in the line (note, remark): keep the exports' one in the aliases of column text "
           "in the contract's columns")
    assert dict(zip(q["_row"].to_list(), q["reason"].to_list())) == {13: why, 15: why, 17: "missing key ts"}
    assert q["__line"].to_list() == list(two.values()) and q["text"].to_list() == [None] * 3
    assert data["_row"].to_list() == [i for i in range(1, 21) if i not in two]
    assert setting_for(why, "logs") == "keep only the exports' name among note, remark in the aliases of column text of ingest.logs"
    table = _contract().model_copy(update={"format": "table", "unknown_columns": "reject", "empty_file": "error"})
    header = pl.DataFrame({"id": ["M01"], "ts": ["2026-01-01T00:00:00Z"], "x": [1.5], "note": ["a"], "remark": ["b"]})
    header.write_csv(tmp_path / "two.csv")
    header.write_parquet(tmp_path / "two.parquet")
    for name in ("two.csv", "two.parquet"):
        res = ingest(str(tmp_path / name), tmp_path / f"ds-{name}", table).files[0]
        assert res.status == "failed" and res.error == (f"{name}: column text: the file has 2 of its aliases (note, remark); "
                                                        "keep one of them in the aliases of column text in the contract's columns"), res


def test_jsonl_contract_settings_and_hints():
    """A JSONL contract takes aliases; ``unknown_columns`` defaults to drop and ``empty_file`` to
    zero_rows there (what JSONL did before they were enforced for it), reject and error as for a
    table; either set explicitly is kept; keep is refused for JSONL. The quarantine reasons lead to
    the setting that accepts the rows."""
    assert (_contract().unknown_columns, _contract().empty_file) == ("drop", "zero_rows")
    explicit = _contract(unknown_columns="reject", empty_file="error")
    assert (explicit.unknown_columns, explicit.empty_file) == ("reject", "error")
    table = ContractConfig(columns=[ColumnContract(name="a", dtype="str")])
    assert (table.unknown_columns, table.empty_file) == ("reject", "error")
    with pytest.raises(ValueError, match="unknown_columns: keep: CSV and Parquet exports only"):
        _contract(unknown_columns="keep")
    assert setting_for("unknown key(s) extra (x: drop would accept the line)", "logs") == "set ingest.logs.unknown_columns: drop"
    hint = setting_for("missing key text (the line has unknown key(s) note: if one is text under another name, list "
                       "it in aliases: [...] of column text in ingest.logs.columns)", "logs")
    assert hint.startswith("add the exports' name for it (one of: note) to aliases of column text of ingest.logs")
    assert setting_for("missing key text", "logs").startswith("drop column text from ingest.logs.columns")


_OBJS = [{"id": "M01", "ts": "2026-01-01T00:00:00Z", "x": 1.5, "text": "a"},
         {"id": "M02", "ts": "2026-01-01T00:01:00Z", "x": 2.5, "text": "b \u00e9\u65e5"}]
_JSONL = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in _OBJS)


@pytest.mark.parametrize("name,data,says", [
    ("u16.jsonl", _JSONL.encode("utf-16"), "UTF-16LE text, not UTF-8 — JSON Lines must be UTF-8 (convert it: iconv -f UTF-16LE"),
    ("u16be.jsonl", _JSONL.encode("utf-16-be"), "UTF-16BE text, not UTF-8"),  # no BOM: the NUL bytes tell
    ("u16le.jsonl.gz", gzip.compress(_JSONL.encode("utf-16-le")), "UTF-16LE text, not UTF-8"),
    ("u32.jsonl", _JSONL.encode("utf-32"), "UTF-32LE text, not UTF-8"),
    ("u32be.jsonl", _JSONL.encode("utf-32-be"), "UTF-32BE text, not UTF-8"),
    ("array.jsonl", json.dumps(_OBJS, indent=2).encode(),
     "a JSON array, not JSON Lines (one object per line) — convert it: jq -c '.[]' FILE > FILE.jsonl"),
    ("array1.jsonl", b"\xef\xbb\xbf " + json.dumps(_OBJS).encode(), "a JSON array, not JSON Lines"),  # one line
    ("pretty.jsonl", "".join(json.dumps(o, indent=2) + "\n" for o in _OBJS).encode(),
     "pretty-printed JSON (an object over several lines), not JSON Lines (one object per line) — convert it: jq -c ."),
    ("pretty_big.jsonl", b"{\n" + b'  "text": "' + b"x" * (2 << 20) + b'"\n}\n', "pretty-printed JSON"),  # past the head
    ("p.jsonl", b"PAR1" + b"\x00" * 64, "binary file, not JSON Lines text — looks like Parquet"),
    ("g.jsonl", gzip.compress(_JSONL.encode()), "binary file, not JSON Lines text — looks like gzip (name it .jsonl.gz)"),
])
def test_a_file_that_is_not_json_lines_fails_in_one_line(tmp_path, name, data, says):
    """UTF-16/32 (by BOM, or by the NUL bytes of its ASCII characters), a JSON array, pretty-printed
    JSON and binary files fail alone in one line that says what the file is and how to convert it,
    instead of every line quarantined as invalid JSON."""
    (tmp_path / name).write_bytes(data)
    res = ingest(str(tmp_path / name), tmp_path / "ds", _contract()).files[0]
    assert res.status == "failed" and res.error.startswith(f"{name}: {says}") and "\n" not in res.error, res


def test_json_lines_that_only_look_like_those_are_read_line_by_line(tmp_path, monkeypatch):
    """A first line that is a whole array followed by object lines, or a broken first object, is a
    bad line of a JSONL file (quarantined), not a file of another shape."""
    for name, first in (("arr.jsonl", "[1, 2]"), ("broken.jsonl", '{"id": "M01", "ts": "2026-')):
        (tmp_path / name).write_text(first + "\n" + _JSONL)
        data, q, _ = _both(tmp_path / name, tmp_path / name.split(".")[0], _contract(), monkeypatch)
        assert (data.height, q["_row"].to_list()) == (2, [1])


def test_a_utf16_csv_fails_in_one_line_naming_its_encoding(tmp_path):
    """The same check in the CSV reader (it named a BOM-less UTF-16 CSV "binary data", and read a
    UTF-16 CSV with a BOM as a header of garbled names)."""
    csv = "a,ts\n1.5,2026-01-01T00:00:00Z\n"
    contract = ContractConfig(timestamp_column="ts", columns=[ColumnContract(name="a", dtype="float64"),
                                                             ColumnContract(name="ts", dtype="timestamp")])
    for name, enc in (("bom.csv", "utf-16"), ("le.csv", "utf-16-le")):
        (tmp_path / name).write_bytes(csv.encode(enc))
        res = ingest(str(tmp_path / name), tmp_path / f"ds-{name}", contract).files[0]
        assert res.status == "failed" and res.error.startswith(f"{name}: UTF-16LE text, not UTF-8 — CSV must be UTF-8"), res


def test_the_checks_before_reading_leave_a_corrupt_gzip_to_the_reader(tmp_path):
    """A truncated .jsonl.gz (blank lines, or lines) still fails as the reader names it
    ("unreadable: Compressed file ended…"), not as an empty file or a traceback's EOFError."""
    for name, raw in (("lines.jsonl.gz", _JSONL.encode() * 2000), ("blank.jsonl.gz", b"\n" * 100_000)):
        data = gzip.compress(raw)
        (tmp_path / name).write_bytes(data[:len(data) // 2])
        res = ingest(str(tmp_path / name), tmp_path / f"ds-{name}", _contract()).files[0]
        assert res.status == "failed" and res.error.startswith(f"{name}: unreadable: Compressed file ended"), res


def test_jsonl_drop_says_the_keys_it_ignores(tmp_path, caplog):
    """(last session's note) the CSV reader says which columns ``unknown_columns: drop`` drops;
    JSONL said nothing: a renamed key's values vanished silently. One line per file names the keys
    outside the contract in its first lines (an alias or a key starting with _ is not one); none
    for a file with none, nor under reject (its lines are quarantined, naming them)."""
    import logging

    src = tmp_path / "logs.jsonl"
    src.write_text("\n".join([_line(1), _line(2, site="S1"), _line(3, x=_DROP, x_old=2.0, _id="a"),
                              _line(4, comment="c", site="S2")]) + "\n")
    with caplog.at_level(logging.WARNING, logger="rsft.ingest"):
        res = ingest(str(src), tmp_path / "drop", _contract()).files[0]
    assert res.status == "ok" and res.rows_ok == 4, res
    said = [r.getMessage() for r in caplog.records if "unknown key" in r.getMessage()]
    assert said == ["ignoring unknown key(s): site, comment (in the first 4 lines; the contract's unknown_columns: "
                    "reject would quarantine their lines)"], said
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(_line(i, x=_DROP, x_old=1.0) for i in range(5)) + "\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rsft.ingest"):
        ingest(str(clean), tmp_path / "clean", _contract())
        ingest(str(src), tmp_path / "reject", _contract(unknown_columns="reject"))
    assert not [r for r in caplog.records if "unknown key" in r.getMessage()]
