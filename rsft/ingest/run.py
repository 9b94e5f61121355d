"""One file end to end, and a whole ingest: read the file, stream it through the contract into a
staging directory and a temporary quarantine part, rename both into place, write the manifest
entry last. A file that fails leaves nothing behind and reports a one-line error.
"""

from __future__ import annotations

import logging
import json
import os
import shutil
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import polars as pl

from rsft import progress as _progress
from rsft.config import ContractConfig
from rsft.fsio import temp_path
from rsft.ingest.manifest import (_forget_path, _manifest, _part_stem, _write_entry, contract_dtypes, data_stem,
                                  local_outputs, quarantine_part, read_entry, retyped_parts)
from rsft.ingest.plan import FilePlan, plan_ingest
from rsft.ingest.readers import _drop_blank_lines, _name_short_last_record, _read_jsonl, _scan_parquet, _scan_text_table, is_ragged_error
from rsft.ingest.results import FileError, FileResult, IngestSummary
from rsft.ingest.sources import _fetch, _gunzip, _is_remote, _size
from rsft.ingest.stream import _stream
from rsft.ingest.unique import (KeyLog, dataset_lock, earlier_keys, index_path, move_to_quarantine, resolve, scheme,
                                write_index)
from rsft.ingest.writers import _publish_parts

log = logging.getLogger("rsft.ingest")


def ingest(sources, dataset_dir, contract: ContractConfig, chunk_rows: int = 250_000, again: bool = False) -> IngestSummary:
    """Plan the sources (:func:`rsft.ingest.plan.plan_ingest`; ``again``: the files done before
    too), then ingest the files one by one."""
    summary = IngestSummary()
    for plan in plan_ingest(sources, dataset_dir, contract, again=again):
        summary.files.append(ingest_file(plan, dataset_dir, contract, chunk_rows))
    return summary


def ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000) -> FileResult:
    """Ingest one file: stream it through the contract into data parts (hive partitions when the
    contract names keys) and a quarantine part (temp names, renamed), then write its manifest
    entry last. Progress is reported as ``ingest.rows`` / ``ingest.file`` events (:mod:`rsft.progress`)."""
    res = _ingest_file(plan, dataset_dir, contract, chunk_rows)
    _file_done(plan, res.status)
    return res


def _file_done(plan: FilePlan, status: str) -> None:
    _progress.emit("ingest.file", file=plan.name, status=status, bytes=_size(plan.path) if plan.action == "ingest" else 0)


def report_remote(plan: FilePlan, result: dict[str, Any]) -> None:
    """The progress events of a file ingested in another process (a Dask worker's events reach
    nobody): its rows and the file itself, emitted here when its result arrives."""
    _progress.emit("ingest.rows", rows=int(result.get("rows_total") or 0))
    _file_done(plan, result["status"])


@dataclass
class _Scratch:
    """A file's temporary paths beside the dataset; pid and thread are in their names, so a killed
    run's are recognised (:func:`rsft.ingest.manifest.clean_orphans`)."""

    staging: Path  # data/.staging-<pid>-<thread>-<digest>/: the data parts until they are renamed into place
    tmp_bad: Path  # the quarantine part until it is renamed into place (an rsft.fsio temp name beside it)
    copy: str | None = None  # a local copy of the source: fetched (remote) or decompressed (.gz)
    blank_lines: int = 0  # empty lines of a CSV: no row (counted in the manifest entry)

    @classmethod
    def of(cls, plan: FilePlan, dataset_dir: Path) -> "_Scratch":
        staging = dataset_dir / "data" / f".staging-{os.getpid()}-{threading.get_ident()}-{plan.digest[:12]}"
        return cls(staging, temp_path(quarantine_part(dataset_dir, plan.digest)))

    def discard_outputs(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.tmp_bad.unlink(missing_ok=True)

    def remove_inputs(self) -> None:
        if self.copy:
            Path(self.copy).unlink(missing_ok=True)


def _ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000) -> FileResult:
    dataset_dir = Path(dataset_dir)
    if plan.action in ("skip", "duplicate"):
        return _not_ingested(plan, dataset_dir)
    work = _Scratch.of(plan, dataset_dir)
    keys = KeyLog(contract) if contract.unique else None
    try:
        rows_ok, rows_bad = _stage(plan, dataset_dir, contract, chunk_rows, work, keys)
        staged = sorted(p for p in work.staging.rglob("*.parquet"))
    except Exception as e:  # a failed file writes nothing; its error is one line, never a traceback
        work.discard_outputs()
        with dataset_lock(dataset_dir) if plan.reingest else nullcontext():
            return _failed(plan, e, dataset_dir)
    finally:
        work.remove_inputs()
    # one file at a time publishes (with a unique key: its keys against the dataset's and its own
    # first), so a failed re-ingest's clean-up never sees another's parts before their entry
    with dataset_lock(dataset_dir):
        entry: dict = {}
        if keys is not None:
            try:
                moved, entry = _resolve_keys(plan, dataset_dir, contract, keys, staged, work)
            except Exception as e:
                work.discard_outputs()
                return _failed(plan, e, dataset_dir)
            rows_ok, rows_bad = rows_ok - moved, rows_bad + moved
        _forget_path(dataset_dir, plan.path, plan.digest)
        # this file ingested before (another contract), under this dataset dir as it is now
        prev = read_entry(dataset_dir, plan.digest)
        before = [str(p) for p in local_outputs(dataset_dir, prev)]
        outputs = _publish_parts(staged, work.staging, dataset_dir / "data")
        qpart = quarantine_part(dataset_dir, plan.digest)
        if rows_bad:
            os.replace(work.tmp_bad, qpart)
            outputs.append(str(qpart))
        else:
            work.tmp_bad.unlink(missing_ok=True)
        if keys is not None:  # the kept keys' index, listed with the outputs (removed with them)
            index = index_path(dataset_dir, _part_stem(plan.digest))
            index.parent.mkdir(parents=True, exist_ok=True)
            os.replace(entry["keys"], index)
            entry["keys"] = str(index)
            outputs.append(entry["keys"])
        for p in set(before) - set(outputs):  # its earlier parts that no new part replaced
            Path(p).unlink(missing_ok=True)
        dtypes = contract_dtypes(contract)
        entry = {**entry, "dtypes": dtypes, **({"stem": _reingest_stem(plan, contract)} if plan.reingest else {}),
                 **({"blank_lines": work.blank_lines} if work.blank_lines else {})}
        _write_entry(dataset_dir, plan.digest, {"path": plan.path, "name": plan.name, "digest": plan.digest,
                                                "rows_total": rows_ok + rows_bad, "rows_ok": rows_ok,
                                                "rows_quarantined": rows_bad, "outputs": outputs,
                                                # not yet compared with the files before it (rsft.ingest.profile),
                                                # nor in a night's summary (rsft.pipeline.data.since_last_night);
                                                # a file ingested again keeps its marks (done before: not news)
                                                "compared": prev.get("compared", True) if plan.reingest else False,
                                                "reported": prev.get("reported", True) if plan.reingest else False,
                                                "ingested_at": round(time.time(), 3), **entry})
    return FileResult(plan.name, plan.digest, "ok", rows_total=rows_ok + rows_bad, rows_ok=rows_ok, rows_quarantined=rows_bad,
                      key_conflicts=entry["unique"]["conflict_rows"] if "unique" in entry else None)


REINGEST_FAILED = "not ingested again under the contract's new column types: its rows stay as ingested before"
AGAIN_FAILED = "not ingested again: its rows stay as ingested before"


def _reingest_stem(plan: FilePlan, contract: ContractConfig) -> str:
    """The stem of a re-ingested file's data parts: named by the contract's column types, and when
    the operator asked (``again``: the types did not change) by the whole contract — a fixed policy
    gives other rows under the same types, and new names keep whatever was computed from the old
    parts (kept-pool days, stage keys through the entry's ``stem``) from being reused."""
    dtypes = contract_dtypes(contract)
    if plan.again:
        dtypes = {**dtypes, "__contract": json.dumps(contract.model_dump(mode="json"), sort_keys=True)}
    return data_stem(plan.digest, dtypes)


def _failed(plan: FilePlan, e: Exception, dataset_dir: Path | None = None) -> FileResult:
    """A failed file's one-line result. A failed re-ingest removes its new-typed leftovers: called
    holding :func:`dataset_lock` (another process publishing the same file's new parts holds it
    until their manifest entry lists them)."""
    msg = str(e) if isinstance(e, FileError) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if plan.reingest and dataset_dir is not None:
        # nothing is lost: its parts of the old types and its entry stay; new-typed parts an earlier
        # killed attempt published go (the pipeline stops a night whose dataset would mix types)
        listed = [str(p) for p in local_outputs(dataset_dir, read_entry(dataset_dir, plan.digest))]
        for p in retyped_parts(dataset_dir, plan.digest, listed):
            p.unlink(missing_ok=True)
        msg += f" ({AGAIN_FAILED if plan.again else REINGEST_FAILED})"
    return FileResult(plan.name, plan.digest, "failed", error=f"{plan.name}: {msg}")


def _resolve_keys(plan: FilePlan, dataset_dir: Path, contract: ContractConfig, keys: KeyLog, staged: list[Path],
                  work: "_Scratch") -> tuple[int, dict]:
    """``unique``: the file's rows against every other file in the manifest (not an earlier version
    of this path, which it replaces) and among themselves; the losers move from the staged parts to
    the quarantine part. Returns (rows moved, the manifest entry's ``unique`` and ``keys`` (the
    kept keys' index, staged beside the quarantine part until it is renamed into place))."""
    rows = keys.frame()
    others = {d: e for d, e in _manifest(dataset_dir).items() if d != plan.digest and e.get("path") != plan.path}
    earlier = earlier_keys(dataset_dir, others, contract, rows["__k"].unique())
    moved, kept, counts = resolve(rows, earlier, contract)
    derived = set(contract.partition_by) - {c.name for c in contract.columns}  # "date": not a source column
    keep = [n for n in (pl.read_parquet_schema(staged[0]) if staged else {}) if n not in derived]
    n = move_to_quarantine(moved, staged, work.tmp_bad, keep)
    if n != moved.height:
        raise FileError(f"unique key: {moved.height} rows to move, {n} found in the staged parts")
    if counts["conflict_rows"]:
        log.warning("%s: %d rows in %d unique-key conflicts (%s): %s", plan.name, counts["conflict_rows"],
                    counts["conflict_keys"], ", ".join(contract.unique), contract.unique_conflicts)
    tmp_index = work.tmp_bad.with_name(work.tmp_bad.name + ".keys")
    write_index(tmp_index, kept)
    return n, {"unique": counts, "keys": str(tmp_index), "keys_scheme": scheme(contract)}


def _not_ingested(plan: FilePlan, dataset_dir: Path) -> FileResult:
    """The result of a file the plan skips (done before) or leaves out (a duplicate of another)."""
    if plan.action == "skip":  # its own manifest entry (not the whole manifest: once per skipped file)
        entry = read_entry(dataset_dir, plan.digest)
        return FileResult(plan.name, plan.digest, "skipped", rows_total=entry.get("rows_total"), rows_ok=0, rows_quarantined=0)
    return FileResult(plan.name, plan.digest, "duplicate", rows_total=None, rows_ok=0, rows_quarantined=0,
                      duplicate_of=plan.duplicate_of)


def _stage(plan: FilePlan, dataset_dir: Path, contract: ContractConfig, chunk_rows: int, work: _Scratch,
           keys: KeyLog | None = None) -> tuple[int, int]:
    """Read the file and stream it through the contract into ``work.staging`` (data parts) and
    ``work.tmp_bad`` (quarantine part): (rows ok, rows quarantined). Errors are one line."""
    raw, extra, tail, sliced = _reader(plan, dataset_dir, contract, chunk_rows, work)
    try:
        try:
            rows_ok, rows_bad = _stream_into(raw, plan, contract, extra, chunk_rows, sliced, work, keys)
        except Exception as e:
            # a CSV record with more fields than the header: only then, the slower scan that
            # quarantines such records (the file's partial output is discarded first)
            if sliced or not is_ragged_error(e):
                raise
            work.discard_outputs()
            if keys is not None:
                keys.frames.clear()
            raw, extra, tail = _scan_text_table(work.copy or plan.path, contract, ragged=True)
            rows_ok, rows_bad = _stream_into(raw, plan, contract, extra, chunk_rows, sliced, work, keys)
        if tail:
            _name_short_last_record(work.tmp_bad, rows_ok + rows_bad, tail, plan.name)
        if not sliced and rows_bad:  # CSV: empty lines were read as rows of nulls
            work.blank_lines = _drop_blank_lines(work.tmp_bad, work.copy or plan.path, contract)
            rows_bad -= work.blank_lines
    except Exception as e:  # polars errors are multi-line; the operator gets one
        if isinstance(e, FileError):
            raise
        raise FileError(f"unreadable: {str(e).strip().splitlines()[0]}") from None
    return rows_ok, rows_bad


def _stream_into(raw: pl.LazyFrame, plan: FilePlan, contract: ContractConfig, extra: list[str], chunk_rows: int,
                 sliced: bool, work: _Scratch, keys: KeyLog | None = None) -> tuple[int, int]:
    shutil.rmtree(work.staging, ignore_errors=True)
    work.staging.mkdir(parents=True)
    work.tmp_bad.parent.mkdir(parents=True, exist_ok=True)
    stem = _reingest_stem(plan, contract) if plan.reingest else _part_stem(plan.digest)
    return _stream(raw.with_columns(_source=pl.lit(plan.name)), contract, extra, work.staging,
                   stem, work.tmp_bad, chunk_rows, sliced=sliced, keys=keys)


def _reader(plan: FilePlan, dataset_dir: Path, contract: ContractConfig, chunk_rows: int,
            work: _Scratch) -> tuple[pl.LazyFrame, list[str], str | None, bool]:
    """The file as the reader of its format returns it: (text frame, unknown columns kept, reason
    for a cut-off last record (CSV), whether it needs the sliced batch reader (Parquet-backed))."""
    if not plan.digest:
        raise FileError("not found" if not _is_remote(plan.path) and not os.path.exists(plan.path) else "cannot read file")
    source = plan.path
    if _is_remote(source):  # stream an object-store file to local disk once, then as local
        work.copy = source = _fetch(source, dataset_dir / "data")
    if contract.format == "jsonl":  # blocks of parsed lines, straight to the contract check
        return (*_read_jsonl(source, contract, chunk_rows), None, True)
    if plan.path.endswith((".parquet", ".pq")):
        return (*_scan_parquet(source, contract), None, True)
    if plan.path.endswith(".gz"):
        plain = _gunzip(source, dataset_dir / "data")
        if work.copy:
            Path(work.copy).unlink(missing_ok=True)
        work.copy = source = plain
    return (*_scan_text_table(source, contract), False)
