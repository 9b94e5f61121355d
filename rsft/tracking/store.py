"""The embedded MLflow store (a SQLite file) is created atomically, and a half-created one is
replaced.

MLflow creates a fresh SQLite store in place: ~60 schema migrations, seconds of work, none of it
one transaction (SQLite DDL under pysqlite commits as it goes). A process killed meanwhile left
a file every later MLflow call refused ("Detected out-of-date database schema", or "table
_alembic_tmp_latest_metrics already exists" when it retried the migration) — the state dir was
bricked. Here the store is built in a hidden temporary file beside it (``fsio.temp_path``: the
writer's pid is in the name, so a killed builder's file is removed by the next one) and renamed
into place when complete, under a file lock. A store that is not at MLflow's schema head but holds
nothing (no runs, models or experiments beyond ``Default``: a creation killed by an older rsft or
by MLflow itself) is replaced the same way; one that holds data is never touched (one-line error:
back it up, ``mlflow db upgrade``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
from pathlib import Path
from typing import Iterator

from rsft.fsio import file_lock, remove_orphans, temp_path

log = logging.getLogger(__name__)

# tables whose rows are a user's data (a store whose tables are all empty, bar the Default
# experiment and the seed rows of the migrations, holds nothing); "_alembic_tmp_<t>" is <t> mid-copy
DATA_TABLES = frozenset({"experiments", "runs", "metrics", "latest_metrics", "params", "tags", "registered_models",
                         "model_versions", "logged_models", "trace_info", "datasets", "inputs"})


class StoreError(RuntimeError):
    """An MLflow store rsft must not repair by itself (it holds data); one line."""


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI, or None (a server, an in-memory database)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    raw = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    return None if raw in ("", ":memory:") else Path(raw)


def ensure_store(tracking_uri: str) -> bool:
    """Make sure the SQLite store behind ``tracking_uri`` is complete before MLflow opens it:
    create it atomically when missing, replace it when a killed creation left it half-made.
    Returns whether a store was created. Other URIs: nothing to do."""
    path = sqlite_path(tracking_uri)
    if path is None or _at_head(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with _init_lock(path):
        remove_orphans(path.parent)  # a killed builder's temp store
        if _at_head(path):  # another process made it meanwhile
            return False
        if path.exists():
            rev = _revision(path)
            if _holds_data(path):
                raise StoreError(f"the MLflow store {path} is at schema {rev or 'none'}, not {_head()}, and holds runs "
                                 f"or models: back it up, then run `mlflow db upgrade sqlite:///{path}`")
            log.warning("MLflow store %s was half-created (schema %s; a process was killed while creating it) and "
                        "holds nothing: creating it again", path, rev or "none")
        _create(path)
    return True


def _create(path: Path) -> None:
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    tmp = temp_path(path)
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
            _verify_schema(engine)
        finally:
            engine.dispose()
        for suffix in ("-journal", "-wal", "-shm"):  # the half-made store's: never replayed into the new one
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
    finally:
        for p in (tmp, Path(f"{tmp}-journal")):
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def _init_lock(path: Path) -> Iterator[None]:
    with file_lock(path.with_name(f".{path.name}.init.lock")):
        yield


@functools.lru_cache(maxsize=1)
def _head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _tables(con: sqlite3.Connection) -> list[str]:
    return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def _revision(path: Path) -> str | None:
    """The store's alembic revision; None without one (or with a migration's temp table left)."""
    if not path.is_file():
        return None
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
        tables = _tables(con)
        if "alembic_version" not in tables or any(t.startswith("_alembic_tmp_") for t in tables):
            return None
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _at_head(path: Path) -> bool:
    try:
        return _revision(path) == _head()
    except sqlite3.DatabaseError:  # not a database (a half-written file): not at head
        return False


def _holds_data(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
            for t in _tables(con):
                if t.removeprefix("_alembic_tmp_") not in DATA_TABLES:
                    continue
                where = " WHERE experiment_id != 0" if t.endswith("experiments") else ""
                if con.execute(f'SELECT 1 FROM "{t}"{where} LIMIT 1').fetchone():
                    return True
    except sqlite3.DatabaseError:  # not a SQLite file we can read: never replaced
        return True
    return False
