"""Compaction: merge the small parts that ingests leave, so that the store stays fast as it grows.

Every ingest commits one folder under ``parts/`` and every ``calib analyze`` one file per signal;
readers open every file, so a store of a thousand one-record ingests reads a thousand files. Compaction
merges them (``calib store compact``, and automatically once more than :data:`COMPACT_AFTER_PARTS`
small parts, or signal files of one signal version, pile up; automatic compaction is size-tiered,
:data:`TIER_RATIO`, so that an episode is not rewritten at every compaction).

How it stays atomic and safe for readers (``calib.store.files`` has the mechanism):

- A merge writes ``_staging/merged-<id>/`` (under a staging lock, like an ingest), holding the rows of
  the parts it merges, sorted by ``episode_id`` in row groups of :data:`ID_ROW_GROUP` rows (so an
  ingest's duplicate check reads a few row groups), ``replaces.json`` naming the parts it replaces,
  and a manifest carrying their ``ingests`` (the ingest_log keeps one row per original ingest).
- Under the commit lock it checks that those parts are still live (another compaction did not merge
  them meanwhile) and renames the folder into ``parts/``: the commit point. From then on readers skip
  the replaced parts; before it, they read them. Killed before the rename, nothing changed (the next
  writer removes the staging folder); after it, the merge is complete.
- The replaced parts stay until :data:`~calib.store.files.REPLACED_GRACE_S` has passed, so a reader
  that listed them before the merge still reads them; then a writer moves them to ``_trash/`` (one
  rename each) and deletes them.
- Signal files merge the same way inside ``signals/<name>/<version>/`` (a ``merged-<id>/`` folder),
  under the signal's lock, which signal writers hold too.

Only parts with fewer than :data:`SMALL_PART_EPISODES` episodes are merged, into parts of about that
size, so a big ingest is never rewritten and a merge holds at most twice that many episodes in memory.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from calib.store import schema
from calib.store.files import (
    ID_ROW_GROUP,
    MANIFEST,
    MERGED_PREFIX,
    REPLACES,
    atomic_write_text,
    flocked,
    fsync_dir,
    live_units,
    lock_staging,
    new_id,
    read_manifest,
    release_staging,
    replaces_closure,
    signal_files,
)


class Store(Protocol):
    """What compaction uses of :class:`calib.store.store.Store` (which imports this module, so this
    module does not import it back)."""

    path: Path

    def _live_part_names(self) -> list[str]: ...
    def _commit_lock(self) -> contextlib.AbstractContextManager[None]: ...
    def clean_staging(self) -> list[str]: ...
    def drop_replaced(self, grace_s: float | None = None) -> int: ...
    def signal_versions(self) -> dict[str, str]: ...
    def refresh_catalog(self, retries: int = 50) -> None: ...
    def _signal_dir(self, signal: str) -> Path: ...

# More small parts than this (or more files in one signal version) and the next writer compacts. Every
# reader opens every live file (about 1 ms each for `store info`), so this bounds what many small
# ingests cost a reader: with 16, `store info` stays within 1.5x of a store ingested in one go.
COMPACT_AFTER_PARTS = int(os.environ.get("CALIB_COMPACT_AFTER", "16"))
# Episodes per merged file: the ingest's chunk (calib.store.writer.CHUNK_EPISODES, read from the same setting).
CHUNK_EPISODES = int(os.environ.get("CALIB_INGEST_CHUNK", "5000"))
SMALL_PART_EPISODES = CHUNK_EPISODES  # a part with fewer episodes is merged; merged parts reach about this size
# Automatic compaction leaves out a part bigger than TIER_RATIO times all the smaller ones together (they
# merge with it later, once they have grown): each episode is rewritten a few times (log2 of the part
# size), not at every compaction, while the part count stays under COMPACT_AFTER_PARTS.
TIER_RATIO = 2.0


@dataclass
class CompactResult:
    """What one compaction did."""

    parts_before: int = 0
    parts_after: int = 0
    merged_parts: list[str] = field(default_factory=list)
    episodes_merged: int = 0
    signal_files_before: int = 0
    signal_files_after: int = 0
    removed: int = 0  # replaced parts and signal files deleted now (replaced longer ago than the grace period)
    busy: bool = False  # another compaction was running (automatic compaction does not wait)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def compact(store: Store, *, wait: bool = True, full: bool = True, refresh: bool = True) -> CompactResult:
    """Merge small parts, and every signal version with several files.

    ``full`` (``calib store compact``) merges every small part; otherwise (automatic compaction) a
    part much bigger than the smaller ones together is left for later (:data:`TIER_RATIO`). One
    compaction at a time (``_compact.lock``); with ``wait`` off, return at once (``busy``) when another
    one runs. Also removes staging leftovers of dead writers and the units replaced longer ago than
    the grace period. ``refresh``: rewrite ``catalog.duckdb`` when something was merged."""
    res = CompactResult()
    with flocked(store.path / "_compact.lock", blocking=wait) as held:
        if not held:
            res.busy = True
            return res
        store.clean_staging()
        res.removed = store.drop_replaced()
        live = store._live_part_names()
        res.parts_before = len(live)
        small = _small_parts(store, live)
        for group in _groups(small if full else _tiered(small)):
            merged = _merge_parts(store, [name for name, _ in group])
            if merged is not None:
                res.merged_parts.append(merged)
                res.episodes_merged += sum(n for _, n in group)
        res.parts_after = len(store._live_part_names())
        for name, version in store.signal_versions().items():
            before, after = _compact_signal(store, name, version)
            res.signal_files_before += before
            res.signal_files_after += after
        res.removed += store.drop_replaced()  # with a grace period of 0, what this merge replaced too
    if refresh and (res.merged_parts or res.signal_files_after < res.signal_files_before):
        store.refresh_catalog()
    return res


def maybe_compact(store: Store) -> CompactResult | None:
    """After an ingest: compact when more than :data:`COMPACT_AFTER_PARTS` small parts are live (cheap
    to check: a listing, and the small manifests only past the threshold)."""
    live = store._live_part_names()
    if len(live) <= COMPACT_AFTER_PARTS or len(_small_parts(store, live)) <= COMPACT_AFTER_PARTS:
        return None
    return compact(store, wait=False, full=False, refresh=False)  # the ingest refreshes the catalog next


def maybe_compact_signal(store: Store, name: str, version: str) -> None:
    """After a signal write, with the signal's lock held: merge its files past the threshold."""
    vdir = store._signal_dir(name) / version
    if len(live_units(vdir)) > COMPACT_AFTER_PARTS:
        _merge_signal(vdir)
        store.refresh_catalog()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat()


# ---------------------------------------------------------------------- parts


def _small_parts(store: Store, live: list[str]) -> list[tuple[str, int]]:
    """(name, episodes) of the live parts below :data:`SMALL_PART_EPISODES`, oldest first."""
    out = []
    for name in live:
        n = int(read_manifest(store.path / "parts" / name).get("episodes", 0))
        if n < SMALL_PART_EPISODES:
            out.append((name, n))
    return out


def _tiered(small: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The small parts an automatic compaction merges: all but the biggest ones that outweigh
    :data:`TIER_RATIO` times the rest together (a binary-counter-like shape: one-record ingests merge
    into 16, then 32, ... and a part is rewritten when the newer ones have caught up with it)."""
    keep = sorted(small, key=lambda x: x[1], reverse=True)
    rest = sum(n for _, n in keep)
    while len(keep) > 2 and keep[0][1] > TIER_RATIO * (rest - keep[0][1]):
        rest -= keep[0][1]
        keep.pop(0)
    chosen = {name for name, _ in keep}
    return [item for item in small if item[0] in chosen]  # oldest first, as listed


def _groups(small: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Consecutive runs of small parts of about :data:`SMALL_PART_EPISODES` episodes; a last run of
    one part is left alone (merging it alone would only rewrite it)."""
    groups: list[list[tuple[str, int]]] = [[]]
    total = 0
    for item in small:
        groups[-1].append(item)
        total += item[1]
        if total >= SMALL_PART_EPISODES:
            groups.append([])
            total = 0
    return [g for g in groups if len(g) > 1]


def _merge_parts(store: Store, names: list[str]) -> str | None:
    """Merge the parts ``names`` into one new part; None when another compaction merged one of them
    first (then nothing changed)."""
    parts = store.path / "parts"
    staging_root = store.path / "_staging"
    fd, mid, lock = lock_staging(staging_root, lambda: new_id(MERGED_PREFIX), _now())
    staging = staging_root / mid
    try:
        staging.mkdir()
        manifests = [read_manifest(parts / n) for n in names]
        eps = _read_parts(parts, names, "episodes", schema.EPISODES).sort_by("episode_id")
        turns = _read_parts(parts, names, "turns", schema.TURNS).sort_by(
            [("episode_id", "ascending"), ("turn_idx", "ascending")])
        _write_sorted(staging, eps, turns)
        ingests = [row for n, m in zip(names, manifests)
                   for row in (m["ingests"] if n.startswith(MERGED_PREFIX) else [m])]
        manifest = {"merged": True, "merge_id": mid, "created_at": _now(), "episodes": eps.num_rows,
                    "turns": turns.num_rows, "ingests": sorted(ingests, key=lambda r: r["ingest_id"])}
        atomic_write_text(staging / MANIFEST, json.dumps(manifest))
        atomic_write_text(staging / REPLACES, json.dumps(replaces_closure(parts, names)))
        fsync_dir(staging)
        with store._commit_lock():
            if not set(names) <= set(store._live_part_names()):
                return None
            os.rename(staging, parts / mid)  # the commit point
            fsync_dir(parts)
        return mid
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when committed
        release_staging(fd, lock)


def _read_parts(parts: Path, names: list[str], table: str, sch: pa.Schema) -> pa.Table:
    """All rows of ``table`` in the parts ``names``, in ``sch`` (columns an older part lacks are NULL;
    columns the schema does not know are kept after it)."""
    tables = [pq.read_table(f) for n in names for f in sorted((parts / n).glob(f"{table}-*.parquet"))]
    if not tables:
        return sch.empty_table()
    tbl = pa.concat_tables(tables, promote_options="permissive")
    cols, fields = [], []
    for f in sch:
        cols.append(tbl.column(f.name).cast(f.type) if f.name in tbl.column_names
                    else pa.nulls(tbl.num_rows, f.type))
        fields.append(f)
    for name in tbl.column_names:
        if name not in sch.names:
            cols.append(tbl.column(name))
            fields.append(tbl.schema.field(name))
    return pa.table(cols, schema=pa.schema(fields))


def _write_sorted(folder: Path, eps: pa.Table, turns: pa.Table) -> None:
    """Episodes (sorted by id) in files of :data:`CHUNK_EPISODES`, and each file's turns beside it."""
    turn_ids = turns.column("episode_id").to_pylist()
    start = 0
    offsets = range(0, max(eps.num_rows, 1), CHUNK_EPISODES)
    for k, i in enumerate(offsets):
        chunk = eps.slice(i, CHUNK_EPISODES)
        last = k == len(offsets) - 1
        end = len(turn_ids) if last else bisect.bisect_right(turn_ids, chunk.column("episode_id")[-1].as_py())
        pq.write_table(chunk, folder / f"episodes-{k:05d}.parquet", compression="zstd", row_group_size=ID_ROW_GROUP)
        pq.write_table(turns.slice(start, end - start), folder / f"turns-{k:05d}.parquet", compression="zstd")
        start = end


# ---------------------------------------------------------------------- signals


def _compact_signal(store: Store, name: str, version: str) -> tuple[int, int]:
    """Merge the files of one signal version under the signal's lock: (files before, files after)."""
    sdir = store._signal_dir(name)  # a hashed folder for names that are not safe folder names
    vdir = sdir / version
    if not vdir.is_dir():
        return 0, 0
    with flocked(sdir / ".lock"):
        _clear_dead(vdir)
        before = len(signal_files(vdir))
        if len(live_units(vdir)) > 1:
            _merge_signal(vdir)
        return before, len(signal_files(vdir))


def _merge_signal(vdir: Path) -> None:
    """One merged unit for every live file of ``vdir``. The caller holds the signal's lock, which every
    writer of the signal holds too, so hidden leftovers found here belong to dead writers."""
    _clear_dead(vdir)
    units = live_units(vdir)
    files = signal_files(vdir)
    if len(units) < 2 or not files:
        return
    tbl = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    tbl = tbl.cast(schema.SIGNALS).sort_by([("episode_id", "ascending"), ("turn_idx", "ascending")])
    mid = new_id(MERGED_PREFIX)
    tmp = vdir / f".{mid}"
    try:
        tmp.mkdir()
        pq.write_table(tbl, tmp / "part-00000.parquet", compression="zstd", row_group_size=64 * ID_ROW_GROUP)
        manifest = {"merged": True, "created_at": _now(), "rows": tbl.num_rows}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest))
        atomic_write_text(tmp / REPLACES, json.dumps(replaces_closure(vdir, units)))
        fsync_dir(tmp)
        os.rename(tmp, vdir / mid)  # the commit point
        fsync_dir(vdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when committed


def _clear_dead(vdir: Path) -> None:
    """Remove what killed signal writers or merges left in ``vdir`` (hidden temp files and folders)."""
    for entry in os.scandir(vdir):
        if entry.name.startswith((".part-", f".{MERGED_PREFIX}")):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
