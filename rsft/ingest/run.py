"""One file end to end, and a whole ingest: read the file, stream it through the contract into a
staging directory and a temporary quarantine part, rename both into place, write the manifest
entry last. A file that fails leaves nothing behind and reports a one-line error.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import polars as pl

from rsft import progress as _progress
from rsft.config import ContractConfig
from rsft.ingest.manifest import _forget_path, _manifest, _part_stem, quarantine_part
from rsft.ingest.plan import FilePlan, plan_ingest
from rsft.ingest.readers import _name_short_last_record, _read_jsonl, _scan_parquet, _scan_text_table
from rsft.ingest.results import FileError, FileResult, IngestSummary
from rsft.ingest.sources import _fetch, _gunzip, _is_remote, _size
from rsft.ingest.stream import _stream


def ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000) -> FileResult:
    """Ingest one file: stream it through the contract into data parts (hive partitions when the
    contract names keys) and a quarantine part (temp names, renamed), then write its manifest
    entry last. Progress is reported as ``ingest.rows`` / ``ingest.file`` events (:mod:`rsft.progress`)."""
    res = _ingest_file(plan, dataset_dir, contract, chunk_rows)
    _progress.emit("ingest.file", file=plan.name, status=res.status, bytes=_size(plan.path) if plan.action == "ingest" else 0)
    return res


def _ingest_file(plan: FilePlan, dataset_dir: str | Path, contract: ContractConfig, chunk_rows: int = 250_000) -> FileResult:
    dataset_dir = Path(dataset_dir)
    if plan.action == "skip":
        entry = _manifest(dataset_dir).get(plan.digest, {})
        return FileResult(plan.name, plan.digest, "skipped", rows_total=entry.get("rows_total"), rows_ok=0, rows_quarantined=0)
    if plan.action == "duplicate":
        return FileResult(plan.name, plan.digest, "duplicate", rows_total=None, rows_ok=0, rows_quarantined=0,
                          duplicate_of=plan.duplicate_of)
    tag = f"{os.getpid()}-{threading.get_ident()}"
    stem = _part_stem(plan.digest)
    staging = dataset_dir / "data" / f".staging-{tag}-{plan.digest[:12]}"
    qpart = quarantine_part(dataset_dir, plan.digest)
    tmp_bad = qpart.with_name(f".{qpart.name}.tmp-{tag}")
    unzipped, tail, spool = None, None, None
    try:
        if not plan.digest:
            raise FileError("not found" if not _is_remote(plan.path) and not os.path.exists(plan.path) else "cannot read file")
        source = plan.path
        if _is_remote(source):  # stream an object-store file to local disk once, then as local
            unzipped = source = _fetch(source, dataset_dir / "data")
        if contract.format == "jsonl":
            # no .parquet suffix: readers that glob data/**/*.parquet with Polars (which does not
            # skip dot-files) must never pick up a half-written spool
            spool = staging.with_name(staging.name + ".jsonl-spool")
            spool.parent.mkdir(parents=True, exist_ok=True)
            raw, extra = _read_jsonl(source, contract, spool, chunk_rows)
        elif plan.path.endswith((".parquet", ".pq")):
            raw, extra = _scan_parquet(source, contract)
        else:
            if plan.path.endswith(".gz"):
                plain = _gunzip(source, dataset_dir / "data")
                if unzipped:
                    Path(unzipped).unlink(missing_ok=True)
                unzipped = source = plain
            raw, extra, tail = _scan_text_table(source, contract)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        qpart.parent.mkdir(parents=True, exist_ok=True)
        try:
            rows_ok, rows_bad = _stream(raw.with_columns(_source=pl.lit(plan.name)), contract, extra, staging, stem,
                                        tmp_bad, chunk_rows,
                                        sliced=contract.format == "jsonl" or plan.path.endswith((".parquet", ".pq")))
            if tail:
                _name_short_last_record(tmp_bad, rows_ok + rows_bad, tail, plan.name)
        except Exception as e:  # polars errors are multi-line; the operator gets one
            if isinstance(e, FileError):
                raise
            raise FileError(f"unreadable: {str(e).strip().splitlines()[0]}") from None
        staged = sorted(p for p in staging.rglob("*.parquet"))
    except Exception as e:  # a failed file writes nothing; its error is one line, never a traceback
        shutil.rmtree(staging, ignore_errors=True)
        tmp_bad.unlink(missing_ok=True)
        msg = str(e) if isinstance(e, FileError) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return FileResult(plan.name, plan.digest, "failed", error=f"{plan.name}: {msg}")
    finally:
        if unzipped:
            Path(unzipped).unlink(missing_ok=True)
        if spool is not None:  # the JSONL block spool (read back by then)
            spool.unlink(missing_ok=True)
    _forget_path(dataset_dir, plan.path, plan.digest)
    outputs = []
    for p in staged:  # each rename is atomic; names carry the digest, so a re-run overwrites, never duplicates
        dest = dataset_dir / "data" / p.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dest)
        outputs.append(str(dest))
    shutil.rmtree(staging, ignore_errors=True)
    if rows_bad:
        os.replace(tmp_bad, qpart)
        outputs.append(str(qpart))
    else:
        tmp_bad.unlink(missing_ok=True)
    entry = {"path": plan.path, "name": plan.name, "digest": plan.digest, "rows_total": rows_ok + rows_bad,
             "rows_ok": rows_ok, "rows_quarantined": rows_bad, "outputs": outputs}
    m = dataset_dir / "_manifest" / f"{plan.digest}.json"
    m.parent.mkdir(parents=True, exist_ok=True)
    tmp = m.with_name(f".{m.name}.tmp-{tag}")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, m)  # written last: the file counts as done only now
    return FileResult(plan.name, plan.digest, "ok", rows_total=rows_ok + rows_bad, rows_ok=rows_ok, rows_quarantined=rows_bad)


def ingest(sources, dataset_dir, contract: ContractConfig, chunk_rows: int = 250_000) -> IngestSummary:
    """Plan the sources (:func:`rsft.ingest.plan.plan_ingest`), then ingest the files one by one."""
    summary = IngestSummary()
    for plan in plan_ingest(sources, dataset_dir, contract):
        summary.files.append(ingest_file(plan, dataset_dir, contract, chunk_rows))
    return summary
