"""The rollout store's reader side: Parquet parts behind DuckDB views, plus the small writes of
signal values and side tables. Ingesting episodes is ``calib.store.writer`` (``Store.begin_ingest``).

Why this shape:
- **Nothing is rewritten in place.** An ingest becomes visible with one ``os.rename`` into
  ``parts/`` (``calib.store.writer``), so readers need no lock and never see half an ingest.
- **Views built per connection.** Each :meth:`Store.connect` opens an in-memory DuckDB with views
  over the committed files, so any number of readers work while a writer ingests, and the store
  directory can be moved. ``catalog.duckdb`` also holds the same views (absolute paths) and the
  ``ingest_log`` table for people who open it with the duckdb CLI; it is refreshed after each write.
- **Stale staging folders.** Only a writer removes a staging folder, and only when it can take that
  folder's lock (the owner is gone) and the owner was this machine, or the folder is older than
  :data:`STALE_AFTER_S` (an ingest of another machine, whose locks a network file system may not
  share). Readers delete nothing.
- **Id lookups cost what the caller holds.** :meth:`Store._lookup_ids` reads Parquet row-group
  statistics, then the few row groups that can hold the ids asked for, never every id of the store.
- **Compaction** (``calib.store.compact``, ``calib.store.files``) merges small parts into
  ``parts/merged-<id>/``, which replaces them by one rename; readers list *live* parts only
  (:meth:`Store._parts`), and replaced ones are deleted by a writer after a grace period.
- **Signals are written once.** ``write_signals`` holds the signal's lock while it drops the rows
  of episodes that already have values in that version, so concurrent ``calib analyze`` runs store
  each (episode, turn, signal) once.
"""

from __future__ import annotations

import bisect
import contextlib
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
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from calib.errors import StoreError
from calib.sqlutil import lock, locked_connection, sql_ident, sql_literal
from calib.store import schema
from calib.store.files import (
    MERGED_PREFIX,
    TRASH,
    atomic_write_text,
    drop_replaced,
    empty_trash,
    flocked,
    live_units,
    read_manifest,
    signal_files,
    utc_now,
)
from calib.store.selection import Selection, SelectionLike
from calib.store.writer import IngestResult, IngestWriter
from calib.tools import ToolCatalogue

TABLE_VIEWS = ("episodes", "turns", "signals")
# A staging folder of another machine (whose lock we cannot test) is removed only after this long
# without a sign of life; a live ingest refreshes its lock file's mtime at least once a minute.
STALE_AFTER_S = 3600.0


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
        # Committed parts never change, so what was read of them once is kept for this object's life:
        # the file names of each part, and each episodes file's row-group id ranges.
        self._part_files: dict[str, list[str]] = {}
        self._id_ranges: dict[Any, Any] = {}
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
        """The files of ``table`` (episodes or turns) that readers read: those of the live parts (a part
        a merge replaced is skipped: its rows are in the merged part; see ``calib.store.files``)."""
        files: list[str] = []
        prefix = f"{table}-"
        for name in self._live_part_names():
            names = self._part_files.get(name)
            if names is None:
                try:
                    names = self._part_files[name] = sorted(os.listdir(self.path / "parts" / name))
                except FileNotFoundError:  # deleted after its grace period since the listing: not live
                    continue
            files += [str(self.path / "parts" / name / f) for f in names
                      if f.startswith(prefix) and f.endswith(".parquet")]
        return sorted(files)

    def _signal_parts(self) -> list[str]:
        """The files of the current version of every signal (live units only)."""
        files: list[str] = []
        for name, version in self.signal_versions().items():
            files += signal_files(self._signal_dir(name) / version)
        return files

    def _signal_dir(self, signal: str) -> Path:
        """``signals/<name>/`` for a plain name; ``signals/~<hash>/`` (with the name in ``NAME``) for one that
        is not a safe folder name: imported names come from dumps and may hold ``/``, NUL, 10 kB, ..."""
        return self.path / "signals" / signal_folder(signal)

    def _live_part_names(self) -> list[str]:
        return live_units(self.path / "parts")

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

    def _lookup_ids(self, ids: Iterable[str], columns: tuple[str, ...] = ("episode_id", "content_hash", "ingest_id"),
                    cache: dict[Any, Any] | None = None) -> pa.Table:
        """The committed episodes whose ``episode_id`` is in ``ids`` (only ``columns``).

        Costs what ``ids`` holds, not what the store holds: of each episodes file it reads the footer and
        then only the row groups whose id range (Parquet min/max statistics) holds one of the ids.
        Compaction writes parts sorted by id in small row groups, so a few ids read a few row groups.
        A ``cache`` (one per ingest, always with the same ``columns``) keeps what was read: an ingest of
        many chunks reads each row group of the store at most once, as a single full read would.
        """
        want = sorted(set(ids))
        cols = list(dict.fromkeys(["episode_id", *columns]))
        found: list[pa.Table] = []
        if want:
            value_set = pa.array(want, pa.string())
            for f in self._parts("episodes"):
                tbl = _read_matching_row_groups(Path(f), want, cols, self._id_ranges, cache)
                if tbl is not None:
                    found.append(tbl.filter(pc.is_in(tbl["episode_id"], value_set=value_set)))
        if not found:
            return pa.table({c: pa.array([], schema.EPISODES.field(c).type) for c in cols})
        return pa.concat_tables(found, promote_options="permissive").select(cols)

    # ------------------------------------------------------------------ catalog + recovery

    def _manifests(self) -> list[dict[str, Any]]:
        """One ingest_log row per committed ingest: a live ingest part's manifest, and the ``ingests``
        that a merged part's manifest carries over from the parts it replaced."""
        out: list[dict[str, Any]] = []
        for name in self._live_part_names():
            m = read_manifest(self.path / "parts" / name)
            out.extend(m["ingests"] if name.startswith(MERGED_PREFIX) else [m])
        return sorted(out, key=lambda r: r["ingest_id"])

    def _read_ingest_log(self) -> pd.DataFrame:
        """The ingest log comes from each part's manifest: it is committed with the data, by the same rename."""
        rows = self._manifests()
        cols = ["ingest_id", "source", "format", "run_id", "started_at", "finished_at", "records",
                "episodes", "turns", "skipped_duplicates", "quarantined", "success_threshold"]
        df = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
        for c in ("started_at", "finished_at"):
            df[c] = pd.to_datetime(df[c])
        for c in ("records", "episodes", "turns", "skipped_duplicates", "quarantined"):
            df[c] = df[c].astype("int64")
        df["success_threshold"] = df["success_threshold"].astype("Float64")  # NULL: not a verifiers/ART ingest
        return df

    def clean_staging(self) -> list[str]:
        """Remove what dead ingests left in ``_staging/`` (writers call this; readers never do).

        An entry goes only when its lock can be taken (so its owner is gone) and the owner was this
        machine (or it is empty: its start died before writing its owner), or when nothing about it
        changed for :data:`STALE_AFTER_S` (another machine's ingest, or a folder without a lock).
        Returns the ingest ids removed.
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
                    data = os.pread(fd, 4096, 0)
                    try:
                        owner = json.loads(data or b"{}")
                    except ValueError:
                        owner = {}
                    # An empty lock we could take is a start that died before writing its owner (its
                    # folder never existed); a creator still before its own flock retries with a new id.
                    if data and owner.get("host") != host and _age(folder, lock) < STALE_AFTER_S:
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

    def drop_replaced(self, grace_s: float | None = None) -> int:
        """Delete the parts and signal files that compaction replaced at least ``grace_s`` ago (default
        :data:`calib.store.files.REPLACED_GRACE_S`), and what a killed deletion left in ``_trash/``.
        Writers call this (an ingest when it starts, compaction); readers never delete anything."""
        trash = self.path / TRASH
        empty_trash(trash)
        gone = drop_replaced(self.path / "parts", trash, grace_s)
        for vdir in sorted(self.path.glob("signals/*/*")):
            if vdir.is_dir():
                gone += drop_replaced(vdir, trash, grace_s)
        return gone

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
        strict: bool = False,
    ) -> IngestWriter:
        """An atomic ingest. With ``strict``, an episode whose id the store holds with other content
        raises (a CalibError) instead of being quarantined."""
        return IngestWriter(self, source=source, fmt=fmt, run_id=run_id, catalogue=catalogue, strict=strict)

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
        """Add one signal's values (columns episode_id, turn_idx, value) under its version; returns the
        rows written.

        Idempotent under concurrency: the signal's lock (``signals/<name>/.lock``) is held while the
        writer drops the rows of episodes that already have values in this version and writes the
        rest, so two ``calib analyze`` at once store each (episode, turn, signal) once. A new version
        starts a fresh folder and becomes current only after its part is written, so a reader sees
        either the old version or the complete new one.
        """
        sdir = self._signal_dir(signal)
        vdir = sdir / check_name("signal version", str(version))
        vdir.mkdir(parents=True, exist_ok=True)
        if sdir.name != signal and not (sdir / "NAME").exists():
            atomic_write_text(sdir / "NAME", signal)
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
        with flocked(sdir / ".lock"):
            have = self._signal_episode_ids(vdir)
            if len(have):
                tbl = tbl.filter(pc.invert(pc.is_in(tbl["episode_id"], value_set=have)))
            if tbl.num_rows:
                tmp = vdir / f".part-{uuid.uuid4().hex}.tmp"
                pq.write_table(tbl, tmp)
                os.replace(tmp, vdir / f"part-{utc_now():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}.parquet")
            cur = sdir / "CURRENT"
            if not cur.exists() or cur.read_text().strip() != str(version):
                atomic_write_text(cur, str(version))
            if tbl.num_rows:
                from calib.store.compact import maybe_compact_signal

                maybe_compact_signal(self, signal, str(version))
        return tbl.num_rows

    def _signal_episode_ids(self, vdir: Path) -> pa.Array:
        """Distinct episode ids with values in a signal version (its live files)."""
        files = signal_files(vdir)
        if not files:
            return pa.array([], pa.string())
        ids = pa.concat_tables([pq.read_table(f, columns=["episode_id"]) for f in files]).column("episode_id")
        return pc.unique(ids.combine_chunks())

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
        os.replace(tmp, tdir / f"part-{utc_now():%Y%m%d%H%M%S%f}-{uuid.uuid4().hex[:6]}.parquet")

    def read_table(self, name: str) -> pd.DataFrame | None:
        check_name("table", name)
        files = sorted(glob.glob(str(self.path / "tables" / name / "*.parquet")))
        if not files:
            return None
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    # ------------------------------------------------------------------ export

    def iter_episodes(self, runs: SelectionLike = None, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Canonical episode records (as ingested) of ``runs`` (run ids or a Selection; all when None),
        streamed in batches."""
        sel = Selection.of(runs)
        con = self.connect()
        try:
            cur = con.execute(
                "SELECT episode_id, run_id, iteration, task_id, group_id, policy, outcome, success, status, "
                f"messages, expected_actions, info FROM episodes WHERE true{sel.where_sql()} "
                "ORDER BY ingest_id, source_line",
                sel.params(),
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


# ---------------------------------------------------------------------- helpers


def _read_matching_row_groups(path: Path, want: list[str], columns: list[str], ranges: dict[Any, Any],
                              cache: dict[Any, Any] | None = None) -> pa.Table | None:
    """``columns`` of the row groups of ``path`` whose episode_id min/max range holds one of ``want``
    (sorted); None when no row group can hold one. ``ranges`` keeps each file's row-group ranges and
    ``cache`` the row groups read (committed files never change), so a writer reads each at most once."""
    cache = {} if cache is None else cache
    pf = None
    if path not in ranges:
        pf = pq.ParquetFile(path)
        ranges[path] = _row_group_ranges(pf)
    groups = []
    for i, (lo, hi) in enumerate(ranges[path]):
        k = bisect.bisect_left(want, lo) if lo is not None else 0
        if lo is None or (k < len(want) and want[k] <= hi):
            groups.append(i)
    missing = [g for g in groups if (path, g) not in cache]
    if missing:
        pf = pf or pq.ParquetFile(path)
        tbl = pf.read_row_groups(missing, columns=[c for c in columns if c in pf.schema_arrow.names])
        offset = 0
        for g in missing:
            n = pf.metadata.row_group(g).num_rows
            cache[(path, g)] = tbl.slice(offset, n)
            offset += n
    if not groups:
        return None
    return pa.concat_tables([cache[(path, g)] for g in groups])


def _row_group_ranges(pf: pq.ParquetFile) -> list[tuple[str | None, str | None]]:
    """(min, max) episode_id of each row group from the footer; (None, None) when unknown."""
    md = pf.metadata
    ci = pf.schema_arrow.get_field_index("episode_id")
    out: list[tuple[str | None, str | None]] = []
    for i in range(md.num_row_groups):
        stats = md.row_group(i).column(ci).statistics if ci >= 0 else None
        if stats is None or not stats.has_min_max or not isinstance(stats.min, str):
            out.append((None, None))
        else:
            out.append((stats.min, stats.max))
    return out


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
