"""The rollout store: Parquet parts behind DuckDB views, written atomically and idempotently.

Why this shape:
- **Parquet parts, one directory per ingest.** An ingest writes into ``_staging/<id>/`` and becomes
  visible with one ``os.rename`` into ``parts/``: a killed ingest leaves nothing visible, and readers
  never see half an ingest. Nothing is rewritten in place, so readers need no lock.
- **Views built per connection.** Each :meth:`Store.connect` opens an in-memory DuckDB with views
  over the committed files, so any number of readers work while a writer ingests, and the store
  directory can be moved. ``catalog.duckdb`` also holds the same views (absolute paths) and the
  ``ingest_log`` table for people who open it with the duckdb CLI; it is refreshed after each write.
- **Idempotent.** ``episode_id`` defaults to a content hash; an episode already in the store is
  skipped, and one whose id is taken by different content is quarantined, never overwritten.
- **Locks, not pid files.** Each ingest holds an exclusive ``flock`` on ``_staging/<id>.lock`` (its
  host and pid inside, for people) from before its folder exists until after the rename; only a
  writer removes a staging folder, and only when it can take that lock (the owner is gone) and the
  owner was this machine, or the folder is older than :data:`STALE_AFTER_S` (an ingest of another
  machine, whose locks a network file system may not share). Readers delete nothing. Commits are
  serialised by ``_commit.lock``, under which the ingest re-checks ids committed since it started,
  so overlapping ingests of the same file commit each episode once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from calib.errors import StoreError
from calib.records import RecordError, canonical_json, normalize_episode, segment_turns
from calib.sqlutil import lock, locked_connection, sql_ident, sql_literal
from calib.store import schema
from calib.tools import ToolCatalogue, airline_catalogue

CHUNK_EPISODES = int(os.environ.get("CALIB_INGEST_CHUNK", "5000"))  # episodes per Parquet part: bounds ingest memory
# ... and text per part: a few very large accepted records flush early, so the writer's buffer stays
# bounded by bytes too (the readers bound each record by --max-record-bytes)
CHUNK_BYTES = int(os.environ.get("CALIB_INGEST_CHUNK_BYTES", str(256 * 2**20)))
TABLE_VIEWS = ("episodes", "turns", "signals")
# A staging folder of another machine (whose lock we cannot test) is removed only after this long
# without a sign of life; a live ingest refreshes its lock file's mtime at least once a minute.
STALE_AFTER_S = 3600.0
_HEARTBEAT_S = 60.0


@dataclass
class IngestResult:
    """What one ingest did. ``quarantined`` records are in ``quarantine_file`` with their reasons."""

    ingest_id: str
    source: str
    run_id: str | None = None
    format: str = "native"
    records: int = 0
    episodes: int = 0
    turns: int = 0
    skipped_duplicates: int = 0
    quarantined: int = 0
    successes: int = 0
    errors: int = 0
    groups: set[str] = field(default_factory=set, repr=False)
    quarantine_file: str | None = None
    reasons: list[str] = field(default_factory=list, repr=False)  # first few, for the summary
    success_threshold: float | None = None  # verifiers/ART: success is reward >= this (None: the format's rule)
    ended_early: str | None = None  # "file:line" where a file cut while it was read ended (calib ingest exits 1)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("groups")
        d.pop("reasons")
        d["groups"] = self.n_groups
        scored = self.episodes - self.errors
        d["success_rate"] = (self.successes / scored) if scored else None
        return d


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def check_name(kind: str, name: str) -> str:
    """A signal or side-table name is one plain path component: no separators, no ``.``/``..``."""
    if (not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name
            or "\0" in name or os.sep in name):
        raise StoreError(f"invalid {kind} name {name!r}: one path component, without '/' or '\\' and not "
                         "starting with '.'")
    return name


_SCHEMAS = {"episodes": schema.EPISODES, "turns": schema.TURNS, "signals": schema.SIGNALS}
_SAFE_FOLDER = re.compile(r"[^/\\\x00-\x1f\x7f]+")
_MAX_FOLDER_BYTES = 200


def signal_folder(signal: str) -> str:
    """The folder name under ``signals/`` of a signal: the name itself when it is one safe path component
    (no separator, control character, leading ``.`` or ``~``, at most 200 bytes), else ``~`` and a hash of
    it. The rows always carry the full name; :meth:`Store.signal_versions` reads it back from ``NAME``."""
    if not isinstance(signal, str) or not signal:
        raise StoreError(f"invalid signal name {signal!r}: a non-empty string")
    if (_SAFE_FOLDER.fullmatch(signal) and not signal.startswith((".", "~"))
            and len(signal.encode("utf-8", "surrogatepass")) <= _MAX_FOLDER_BYTES):
        return signal
    return "~" + hashlib.sha256(signal.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Store:
    """A store directory. Cheap to construct; every method opens what it needs and closes it."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True):
        """Open the store at ``path``. With ``create``, a missing or empty directory becomes a new store
        (``self.created`` says so); an existing directory with other content is refused, so that no
        folder is turned into a store by a typo. Opening never deletes anything."""
        self.path = Path(path).absolute()
        self.created = False
        if not self.path.exists():
            if not create:
                raise StoreError(
                    f"no store at {self.path}: ingest something first (calib ingest FILE --store {path}) "
                    "or set $CALIB_STORE"
                )
            try:
                self.path.mkdir(parents=True)
            except OSError as e:
                raise StoreError(f"cannot create a store at {self.path}: {e.strerror or e}") from None
            self.created = True
        elif not self.path.is_dir():
            raise StoreError(f"{self.path} is a file, not a store directory")
        elif not (self.path / "parts").is_dir():
            if not create:
                raise StoreError(f"{self.path} is not a calib store (no parts/ folder)")
            if any(self.path.iterdir()):
                raise StoreError(f"{self.path} is not a calib store (no parts/ folder) and is not empty: "
                                 "give a new or empty directory for a new store")
            self.created = True
        if create:
            try:
                for sub in ("parts", "signals", "tables", "quarantine", "_staging"):
                    (self.path / sub).mkdir(exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot write to the store {self.path}: {e.strerror or e}") from None

    # ------------------------------------------------------------------ reading

    def _parts(self, table: str) -> list[str]:
        return sorted(glob.glob(str(self.path / "parts" / "*" / f"{table}-*.parquet")))

    def _signal_parts(self) -> list[str]:
        files: list[str] = []
        for name, version in self.signal_versions().items():
            files += sorted(glob.glob(str(self._signal_dir(name) / version / "*.parquet")))
        return files

    def _signal_dir(self, signal: str) -> Path:
        """``signals/<name>/`` for a plain name; ``signals/~<hash>/`` (with the name in ``NAME``) for one that
        is not a safe folder name: imported names come from dumps and may hold ``/``, NUL, 10 kB, ..."""
        return self.path / "signals" / signal_folder(signal)

    def _view_sql(self, table: str) -> str:
        """The view over ``table``'s files that ``catalog.duckdb`` holds for people who open it with the
        duckdb CLI (calib itself reads through :meth:`connect`). File names are quoted by ``sql_literal``."""
        files = self._signal_parts() if table == "signals" else self._parts(table)
        if not files:
            cols_sql = ", ".join(f"CAST(NULL AS {_duck_type(f.type)}) AS {sql_ident(f.name)}" for f in _SCHEMAS[table])
            return f"SELECT {cols_sql} WHERE false"
        files_sql = "[" + ", ".join(sql_literal(f) for f in files) + "]"
        return f"SELECT * FROM read_parquet({files_sql}, union_by_name = true)"

    def _datasets(self) -> dict[str, Any]:
        """Each table as an Arrow object over its committed files (pyarrow opens them, not SQL)."""
        import pyarrow.dataset as pads

        out: dict[str, Any] = {}
        for t in TABLE_VIEWS:
            files = self._signal_parts() if t == "signals" else self._parts(t)
            sch = _SCHEMAS[t]
            out[t] = pads.dataset(files, schema=sch, format="parquet") if files else sch.empty_table()
        return out

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with tables ``episodes``, ``turns``, ``signals``, ``ingest_log``,
        for the analysis, the reports, training and export; it cannot reach the file system.

        The tables are Arrow datasets over the committed files, registered before the connection is
        locked (:func:`calib.sqlutil.lock`: external access off, no temp folder, configuration
        locked). So SQL that calib builds, even from a hostile dump that some bug let through, can read,
        write, attach, install or load nothing. Temp tables and registering frames still work.
        """
        con = locked_connection()
        try:
            for t, data in self._datasets().items():
                con.register(t, data)
            con.register("_ingest_log_df", self._read_ingest_log())
            con.execute("CREATE TABLE ingest_log AS SELECT * FROM _ingest_log_df")
            con.unregister("_ingest_log_df")
            lock(con)
        except BaseException:
            con.close()
            raise
        return con

    def sandbox(self) -> duckdb.DuckDBPyConnection:
        """A connection for user SQL (``calib store query``): the same locked connection as :meth:`connect`.

        Nothing of the file system is reachable from it, not even a temp folder (``temp_directory`` is
        empty, so nothing spills and no folder can be written through it).
        """
        return self.connect()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        con = self.connect()
        try:
            return con.execute(sql, params or []).df()
        finally:
            con.close()

    def _scalar_rows(self, sql: str) -> list[tuple]:
        con = self.connect()
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def runs(self) -> list[str]:
        return [r for (r,) in self._scalar_rows("SELECT DISTINCT run_id FROM episodes ORDER BY 1")]

    def count(self, table: str = "episodes") -> int:
        if table not in (*TABLE_VIEWS, "ingest_log"):
            raise StoreError(f"unknown table {table!r}: one of {', '.join((*TABLE_VIEWS, 'ingest_log'))}")
        return int(self._scalar_rows(f"SELECT count(*) FROM {sql_ident(table)}")[0][0])

    def _part_names(self) -> set[str]:
        try:
            return {p.name for p in os.scandir(self.path / "parts") if p.is_dir()}
        except FileNotFoundError:
            return set()

    def _existing_ids(self, parts: Iterable[str] | None = None) -> dict[str, str]:
        """episode_id -> content_hash of the committed parts named (all when None)."""
        if parts is None:
            files = self._parts("episodes")
        else:
            files = sorted(f for p in parts for f in glob.glob(str(self.path / "parts" / p / "episodes-*.parquet")))
        if not files:
            return {}
        tbl = pa.concat_tables([pq.read_table(f, columns=["episode_id", "content_hash"]) for f in files])
        return dict(zip(tbl.column("episode_id").to_pylist(), tbl.column("content_hash").to_pylist()))

    # ------------------------------------------------------------------ catalog + recovery

    def _manifests(self) -> list[dict[str, Any]]:
        out = []
        for m in sorted(glob.glob(str(self.path / "parts" / "*" / "manifest.json"))):
            out.append(json.loads(Path(m).read_text()))
        return out

    def _read_ingest_log(self) -> pd.DataFrame:
        """The ingest log comes from each part's manifest: it is committed with the data, by the same rename."""
        rows = self._manifests()
        cols = ["ingest_id", "source", "format", "run_id", "started_at", "finished_at", "records",
                "episodes", "turns", "skipped_duplicates", "quarantined"]
        df = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
        for c in ("started_at", "finished_at"):
            df[c] = pd.to_datetime(df[c])
        for c in ("records", "episodes", "turns", "skipped_duplicates", "quarantined"):
            df[c] = df[c].astype("int64")
        return df

    def clean_staging(self) -> list[str]:
        """Remove what dead ingests left in ``_staging/`` (writers call this; readers never do).

        An entry goes only when its lock can be taken (so its owner is gone) and the owner was this
        machine, or when nothing about it changed for :data:`STALE_AFTER_S` (another machine's ingest,
        or a folder without a lock). Returns the ingest ids removed.
        """
        staging = self.path / "_staging"
        try:
            names = os.listdir(staging)
        except FileNotFoundError:
            return []
        removed = []
        host = socket.gethostname()
        for iid in sorted({n.removesuffix(".lock") for n in names}):
            folder, lock = staging / iid, staging / f"{iid}.lock"
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                fd = None
            try:
                if fd is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a live ingest
                    try:
                        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
                    except ValueError:
                        owner = {}
                    if owner.get("host") != host and _age(folder, lock) < STALE_AFTER_S:
                        continue
                elif _age(folder) < STALE_AFTER_S:
                    continue  # no lock: a folder being renamed right now, or a very old one
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
                removed.append(iid)
            finally:
                if fd is not None:
                    os.close(fd)
        return removed

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        """Store-wide: one commit at a time (a commit is a few renames: short)."""
        fd = os.open(self.path / "_commit.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def refresh_catalog(self, retries: int = 50) -> None:
        """Rewrite ``catalog.duckdb`` (views with absolute paths + ingest_log) for the duckdb CLI.

        Best effort: the Parquet parts and manifests are the truth, so a busy catalog is retried a few
        times and then left for the next write to refresh.
        """
        for attempt in range(retries):
            try:
                con = duckdb.connect(str(self.path / "catalog.duckdb"))
            except duckdb.IOException:
                time.sleep(0.1 * (attempt + 1))
                continue
            try:
                con.execute("BEGIN")
                for t in TABLE_VIEWS:
                    con.execute(f"CREATE OR REPLACE VIEW {t} AS {self._view_sql(t)}")
                con.execute("DROP TABLE IF EXISTS ingest_log")
                con.execute(schema.INGEST_LOG_DDL)
                log = self._read_ingest_log()
                if len(log):
                    con.register("_log", log)
                    con.execute("INSERT INTO ingest_log SELECT * FROM _log")
                con.execute("COMMIT")
            finally:
                con.close()
            return

    # ------------------------------------------------------------------ read-only stores

    def is_writable(self) -> bool:
        """Whether this process may write signal values into the store (False on a read-only mount,
        a store owned by someone else, ...)."""
        return all(os.access(p, os.W_OK) for p in (self.path, self.path / "signals") if p.exists())

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Store]:
        """A temporary store that reads this one's parts and starts from a copy of its signal values;
        whatever is written to it is dropped on exit. For computing on a store one must not write."""
        tmp = Path(tempfile.mkdtemp(prefix="calib-scratch-"))
        try:
            os.symlink(self.path / "parts", tmp / "parts")
            if (self.path / "signals").is_dir():
                shutil.copytree(self.path / "signals", tmp / "signals", ignore=shutil.ignore_patterns(".*"))
            yield Store(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ writing episodes

    def begin_ingest(
        self,
        *,
        source: str,
        fmt: str = "native",
        run_id: str | None = None,
        catalogue: ToolCatalogue | None = None,
    ) -> IngestWriter:
        return IngestWriter(self, source=source, fmt=fmt, run_id=run_id, catalogue=catalogue)

    def add_episodes(
        self,
        records: Iterable[dict[str, Any]],
        *,
        source: str,
        run_id: str | None = None,
        catalogue: ToolCatalogue | None = None,
        fmt: str = "native",
    ) -> IngestResult:
        """Validate, segment and write native records in one atomic ingest (bad ones are quarantined)."""
        with self.begin_ingest(source=source, fmt=fmt, run_id=run_id, catalogue=catalogue) as w:
            for i, rec in enumerate(records):
                w.add(rec, line=i + 1)
        return w.result

    # ------------------------------------------------------------------ signals

    def signal_versions(self) -> dict[str, str]:
        """Signal name -> its current version (a folder ``~<hash>`` holds its real name in ``NAME``)."""
        out = {}
        for cur in sorted(glob.glob(str(self.path / "signals" / "*" / "CURRENT"))):
            folder = Path(cur).parent
            name = folder.name
            if name.startswith("~"):
                try:
                    name = (folder / "NAME").read_bytes().decode("utf-8", "surrogatepass")  # no newline translation
                except FileNotFoundError:
                    continue  # written before its NAME: not a signal yet
            out[name] = Path(cur).read_text().strip()
        return out

    def write_signals(self, df: pd.DataFrame, *, signal: str, version: str) -> int:
        """Append one signal's values (columns episode_id, turn_idx, value) under its version.

        A new version starts a fresh folder and becomes current only after its part is written, so a
        reader sees either the old version or the complete new one.
        """
        sdir = self._signal_dir(signal)
        vdir = sdir / check_name("signal version", str(version))
        vdir.mkdir(parents=True, exist_ok=True)
        if sdir.name != signal and not (sdir / "NAME").exists():
            _atomic_write_text(sdir / "NAME", signal)
        # from_pandas=True turns NaN into NULL, so "no value at this turn" is SQL NULL (count(value)
        # skips it), and converts columns without a Python loop.
        tbl = pa.table(
            {
                "episode_id": pa.array(df["episode_id"].astype(str), pa.string(), from_pandas=True),
                # NULL turn_idx: an episode-level signal (docs/architecture.md section 3, e.g. tau2:db_match)
                "turn_idx": pa.array(pd.array(df["turn_idx"], dtype="Int32"), pa.int32(), from_pandas=True),
                "signal": pa.array(np.full(len(df), signal, dtype=object), pa.string()),
                "value": pa.array(pd.to_numeric(df["value"], errors="coerce").astype("float64"), pa.float64(),
                                  from_pandas=True),
            },
            schema=schema.SIGNALS,
        )
        tmp = vdir / f".part-{uuid.uuid4().hex}.tmp"
        pq.write_table(tbl, tmp)
        os.replace(tmp, vdir / f"part-{_now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}.parquet")
        cur = sdir / "CURRENT"
        if not cur.exists() or cur.read_text().strip() != str(version):
            _atomic_write_text(cur, str(version))
        return len(df)

    def drop_signal(self, signal: str) -> None:
        shutil.rmtree(self._signal_dir(signal), ignore_errors=True)

    # ------------------------------------------------------------------ side tables

    def write_table(self, name: str, df: pd.DataFrame, mode: str = "append") -> None:
        """Side tables (``calibration_history``, ...): Parquet parts under ``tables/<name>/``."""
        if mode not in {"append", "replace"}:
            raise ValueError("mode must be 'append' or 'replace'")
        check_name("table", name)
        tdir = self.path / "tables" / name
        if mode == "replace":
            new = self.path / "tables" / f".{name}.{uuid.uuid4().hex}"
            new.mkdir()
            df.to_parquet(new / "part-00000.parquet", index=False)
            old = self.path / "tables" / f".{name}.old.{uuid.uuid4().hex}"
            if tdir.exists():
                os.replace(tdir, old)
            os.replace(new, tdir)
            shutil.rmtree(old, ignore_errors=True)
            return
        tdir.mkdir(parents=True, exist_ok=True)
        tmp = tdir / f".tmp-{uuid.uuid4().hex}"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, tdir / f"part-{_now():%Y%m%d%H%M%S%f}-{uuid.uuid4().hex[:6]}.parquet")

    def read_table(self, name: str) -> pd.DataFrame | None:
        check_name("table", name)
        files = sorted(glob.glob(str(self.path / "tables" / name / "*.parquet")))
        if not files:
            return None
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    # ------------------------------------------------------------------ export

    def iter_episodes(self, runs: Iterable[str] | None = None, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Canonical episode records (as ingested) of ``runs`` (all when None), streamed in batches."""
        runs = list(runs) if runs is not None else None
        con = self.connect()
        try:
            cur = con.execute(
                "SELECT episode_id, run_id, iteration, task_id, group_id, policy, outcome, success, status, "
                "messages, expected_actions, info FROM episodes WHERE ?::VARCHAR[] IS NULL OR list_contains(?, run_id) "
                "ORDER BY ingest_id, source_line",
                [runs, runs],
            )
            cols = [d[0] for d in cur.description]
            while rows := cur.fetchmany(batch):
                for row in rows:
                    rec = dict(zip(cols, row))
                    for k in ("messages", "expected_actions", "info"):
                        rec[k] = json.loads(rec[k]) if rec[k] is not None else None
                    yield rec
        finally:
            con.close()


class IngestWriter:
    """One atomic ingest. Use as a context manager; it commits on clean exit and discards on error."""

    def __init__(self, store: Store, *, source: str, fmt: str, run_id: str | None, catalogue: ToolCatalogue | None):
        self.store = store
        self.catalogue = catalogue or airline_catalogue()
        self.run_id = run_id
        self.ingest_id = f"{_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        self.result = IngestResult(self.ingest_id, source=source, run_id=run_id, format=fmt)
        self.started = _now()
        store.clean_staging()
        self._lock_fd = self._take_lock()
        self.staging = store.path / "_staging" / self.ingest_id
        self.staging.mkdir()
        self._beat = time.monotonic()
        self._known_parts = store._part_names()  # listed before their ids are read (see _recheck)
        self._existing = store._existing_ids(self._known_parts)
        self._seen: dict[str, tuple[str, int]] = {}  # episode_id -> (hash, line) within this ingest
        self._eps: list[dict[str, Any]] = []
        self._turns: list[dict[str, Any]] = []
        self._buffered = 0  # characters of text in _eps (flushed past CHUNK_BYTES)
        self._chunk = 0
        self._qfile = None

    def _take_lock(self) -> int:
        """Create and lock ``_staging/<id>.lock`` before the folder exists; retry with a fresh id if a
        cleaner removed the file between its creation and our lock (then our lock is on a dead inode)."""
        staging = self.store.path / "_staging"
        staging.mkdir(exist_ok=True)
        for _ in range(100):
            lock = staging / f"{self.ingest_id}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                         "started_at": self.started.isoformat()}).encode())
                self._lock_path = lock
                return fd
            os.close(fd)
            self.ingest_id = f"{_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
            self.result.ingest_id = self.ingest_id
        raise StoreError(f"could not lock a staging folder in {staging}")

    def _heartbeat(self) -> None:
        if time.monotonic() - self._beat > _HEARTBEAT_S:
            with contextlib.suppress(OSError):
                os.utime(self._lock_path)
            self._beat = time.monotonic()

    def _release(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._lock_path)
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- context manager
    def __enter__(self) -> IngestWriter:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # -- records
    def quarantine(self, *, line: int | None, reason: str, raw: Any = None, file: str | None = None) -> None:
        if self._qfile is None:
            # open across add() calls until commit/abort closes it, so no with-block
            self._qfile = open(self.staging / "quarantine.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        if isinstance(raw, (bytes, bytearray)):
            raw = raw[:2000].decode("utf-8", errors="replace")
        elif raw is not None and not isinstance(raw, str):
            try:
                raw = json.dumps(raw, ensure_ascii=False, default=str)
            except (TypeError, ValueError):
                raw = repr(raw)
        if isinstance(raw, str) and len(raw) > 2000:
            raw = raw[:2000] + f"... [{len(raw):,} characters]"
        entry = {"file": file or self.result.source, "line": line, "reason": reason, "record": raw}
        self._qfile.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.result.quarantined += 1
        if len(self.result.reasons) < 20:
            self.result.reasons.append(f"{entry['file']}:{line}: {reason}")

    def add(self, rec: Any, *, line: int | None = None, file: str | None = None) -> bool:
        """Validate and buffer one native record; quarantine it (and return False) when it is bad."""
        self.result.records += 1
        self._heartbeat()
        try:
            ep = normalize_episode(rec, run_id=self.run_id, with_hash=True)
            h = ep.pop("_content_hash")
        except RecordError as e:
            self.quarantine(line=line, reason=str(e), raw=rec, file=file)
            return False
        except (TypeError, ValueError, RecursionError) as e:  # e.g. absurdly nested JSON
            self.quarantine(line=line, reason=f"invalid record: {e}", raw=rec, file=file)
            return False
        eid = ep["episode_id"]
        if not self.claim(eid, h, line=line, file=file, raw=rec):
            return False
        turns = segment_turns(ep, self.catalogue)
        self._eps.append(
            {
                "episode_id": eid,
                "run_id": ep["run_id"],
                "iteration": ep["iteration"],
                "task_id": ep["task_id"],
                "group_id": ep["group_id"],
                "policy": ep["policy"],
                "outcome": ep["outcome"],
                "success": ep["success"],
                "status": ep["status"],
                "n_turns": len(turns),
                "messages": json.dumps(ep["messages"], ensure_ascii=False),
                "expected_actions": canonical_json(ep["expected_actions"]),
                "info": json.dumps(ep["info"], ensure_ascii=False, default=str),
                "content_hash": h,
                "source": file or self.result.source,
                "source_line": line,
                "ingest_id": self.ingest_id,
            }
        )
        self._turns.extend(turns)
        row = self._eps[-1]
        self._buffered += len(row["messages"]) + len(row["info"]) + len(row["expected_actions"] or "")
        r = self.result
        r.episodes += 1
        r.turns += len(turns)
        r.groups.add(ep["group_id"])
        if ep["status"] == "error":
            r.errors += 1
        elif ep["success"]:
            r.successes += 1
        if len(self._eps) >= CHUNK_EPISODES or self._buffered >= CHUNK_BYTES:
            self._flush()
        return True

    def claim(self, eid: str, h: str, *, line: int | None, file: str | None, raw: Any) -> bool:
        """Whether a validated episode is new: a re-ingest of the same content is skipped, an id that holds
        other content (in the store, or earlier in this ingest) is quarantined. ``raw`` may be a callable."""
        if eid in self._existing:
            if self._existing[eid] == h:
                self.result.skipped_duplicates += 1
                return False
            self.quarantine(line=line, reason=f"episode_id {eid!r} is already in the store with different content",
                            raw=raw() if callable(raw) else raw, file=file)
            return False
        if eid in self._seen:
            prev_hash, prev_line = self._seen[eid]
            if prev_hash == h:
                self.result.skipped_duplicates += 1
                return False
            self.quarantine(line=line, reason=f"duplicate episode_id {eid!r} (first seen at line {prev_line})",
                            raw=raw() if callable(raw) else raw, file=file)
            return False
        self._seen[eid] = (h, line or 0)
        return True

    def add_tables(self, episodes: pa.Table, turns: pa.Table) -> None:
        """Stage episodes and turns that the columnar path validated and claimed (``calib.ingest.fast``)."""
        if episodes.num_rows == 0:
            return
        self._flush()
        n = f"{self._chunk:05d}"
        pq.write_table(episodes, self.staging / f"episodes-{n}.parquet", compression="zstd")
        pq.write_table(turns, self.staging / f"turns-{n}.parquet", compression="zstd")
        self._chunk += 1
        r = self.result
        r.episodes += episodes.num_rows
        r.turns += turns.num_rows
        r.groups.update(episodes.column("group_id").to_pylist())
        status = episodes.column("status")
        is_err = pc.equal(status, "error")
        r.errors += pc.sum(pc.cast(is_err, pa.int64())).as_py() or 0
        ok_success = pc.and_(pc.invert(is_err), episodes.column("success"))
        r.successes += pc.sum(pc.cast(ok_success, pa.int64())).as_py() or 0
        self._heartbeat()

    def _flush(self) -> None:
        if not self._eps:
            return
        n = f"{self._chunk:05d}"
        _write_rows(self._eps, schema.EPISODES, self.staging / f"episodes-{n}.parquet")
        _write_rows(self._turns, schema.TURNS, self.staging / f"turns-{n}.parquet")
        self._eps, self._turns = [], []
        self._buffered = 0
        self._chunk += 1

    def _recheck(self) -> None:
        """Under the commit lock: drop staged episodes that an ingest committed since we started
        (skipped when identical, quarantined when the id holds different content)."""
        new_parts = self.store._part_names() - self._known_parts
        theirs = self.store._existing_ids(new_parts) if new_parts and self._seen else {}
        clash = [eid for eid in self._seen if eid in theirs]
        if not clash:
            return
        r = self.result
        value_set = pa.array(clash, pa.string())
        groups: set[str] = set()
        for ep_file in sorted(self.staging.glob("episodes-*.parquet")):
            tbl = pq.read_table(ep_file)
            mask = pc.is_in(tbl["episode_id"], value_set=value_set)
            gone = tbl.filter(mask).to_pylist()
            kept = tbl.filter(pc.invert(mask))
            for row in gone:
                r.episodes -= 1
                r.turns -= row["n_turns"]
                if row["status"] == "error":
                    r.errors -= 1
                elif row["success"]:
                    r.successes -= 1
                if theirs[row["episode_id"]] == row["content_hash"]:
                    r.skipped_duplicates += 1
                else:
                    raw = {k: row[k] for k in ("episode_id", "run_id", "task_id", "outcome", "success", "status")}
                    raw["messages"] = json.loads(row["messages"])
                    self.quarantine(line=row["source_line"], file=row["source"], raw=raw,
                                    reason=f"episode_id {row['episode_id']!r} was committed with different "
                                           "content by a concurrent ingest")
            groups.update(kept.column("group_id").to_pylist())
            turns_file = ep_file.with_name(ep_file.name.replace("episodes-", "turns-"))
            turns = pq.read_table(turns_file)
            turns = turns.filter(pc.invert(pc.is_in(turns["episode_id"], value_set=value_set)))
            for path, t in ((ep_file, kept), (turns_file, turns)):
                if kept.num_rows == 0:
                    path.unlink()
                else:
                    tmp = path.with_name(f".{path.name}.tmp")
                    pq.write_table(t, tmp, compression="zstd")
                    os.replace(tmp, path)
        r.groups = groups

    # -- commit / abort
    def commit(self) -> IngestResult:
        self._flush()
        try:
            with self.store._commit_lock():
                self._recheck()
                published = self._publish()
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)  # not published: leave nothing behind
            raise
        finally:
            self._release()
        if published:
            self.store.refresh_catalog()
        return self.result

    def _publish(self) -> bool:
        """Quarantine file, manifest, then the rename (the commit point). False when nothing to publish."""
        if self._qfile is not None:
            self._qfile.close()
        r = self.result
        manifest = {
            "ingest_id": self.ingest_id,
            "source": r.source,
            "format": r.format,
            "run_id": r.run_id,
            "started_at": self.started.isoformat(),
            "finished_at": _now().isoformat(),
            "records": r.records,
            "episodes": r.episodes,
            "turns": r.turns,
            "skipped_duplicates": r.skipped_duplicates,
            "quarantined": r.quarantined,
        }
        qsrc = self.staging / "quarantine.jsonl"
        if qsrc.exists():
            qdst = self.store.path / "quarantine" / f"{self.ingest_id}.jsonl"
            os.replace(qsrc, qdst)
            r.quarantine_file = str(qdst)
        if r.episodes == 0:
            # Nothing to publish; the quarantine (if any) is kept for the user to inspect.
            shutil.rmtree(self.staging, ignore_errors=True)
            return False
        _atomic_write_text(self.staging / "manifest.json", json.dumps(manifest))
        _fsync_dir(self.staging)
        os.rename(self.staging, self.store.path / "parts" / self.ingest_id)  # the commit point
        _fsync_dir(self.store.path / "parts")
        return True

    def abort(self) -> None:
        if self._qfile is not None:
            self._qfile.close()
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()


# ---------------------------------------------------------------------- helpers


def _write_rows(rows: list[dict[str, Any]], sch: pa.Schema, path: Path) -> None:
    cols = {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in sch}
    pq.write_table(pa.table(cols, schema=sch), path, compression="zstd")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age(*paths: Path) -> float:
    """Seconds since the newest of ``paths`` (the missing ones ignored) last changed."""
    times = []
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            times.append(p.stat().st_mtime)
    return time.time() - max(times) if times else float("inf")


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_string(t):
        return "VARCHAR"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    raise TypeError(t)
