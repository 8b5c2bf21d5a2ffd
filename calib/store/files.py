"""File-level building blocks of the store: which units are live, staging locks, atomic writes, the trash.

A *unit* is what a reader reads as a whole: a committed ingest (``parts/<ingest_id>/``), a signal part
(``signals/<name>/<version>/part-*.parquet``), or a *merged unit* (``merged-<id>/``, written by
compaction) whose ``replaces.json`` names every unit whose rows it holds (the units it merged and,
transitively, what those had replaced and is still on disk). A unit is **live** when no merged unit
present in the same folder replaces it. Readers read live units only, so a merged unit becomes
visible, and the units it replaces invisible, by one ``rename`` of its folder: no reader can see a row
twice or miss one. Replaced units stay on disk for :data:`REPLACED_GRACE_S` (a reader that listed them
before the merge keeps reading them) and are then moved to ``_trash/`` by a writer and deleted.

Nothing here imports the rest of calib's store, so ``store.py`` and ``compact.py`` both build on it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from calib.errors import StoreError

MERGED_PREFIX = "merged-"
# Episodes files (an ingest's chunks and merged parts) are sorted by episode_id in row groups of this
# many rows: an id lookup reads the footer, then only the row groups whose id range can hold an id.
ID_ROW_GROUP = 1024
MANIFEST = "manifest.json"
REPLACES = "replaces.json"
TRASH = "_trash"
# A replaced unit is deleted only this long after the merge that replaced it: a reader that listed the
# store's files before the merge reads the replaced units meanwhile. A connection kept open longer than
# this may fail on a file that is gone (open a new one). CALIB_COMPACT_GRACE_S overrides it.
REPLACED_GRACE_S = float(os.environ.get("CALIB_COMPACT_GRACE_S", "3600"))


def read_manifest(unit: Path) -> dict[str, Any]:
    """The ``manifest.json`` of a part or merged unit (``{}`` for a plain signal file)."""
    if not unit.is_dir():
        return {}
    return json.loads((unit / MANIFEST).read_text(encoding="utf-8"))


def read_replaces(unit: Path) -> list[str]:
    """What a merged unit replaces: its ``replaces.json``, a small file of its own so that listing a
    folder does not parse the merged part's manifest (which carries every ingest_log row)."""
    return json.loads((unit / REPLACES).read_text(encoding="utf-8"))


def live_units(folder: Path) -> list[str]:
    """Names of the units in ``folder`` that readers use: every visible name no merged unit replaces.

    Hidden names (``.tmp`` files, merges in progress) are never units. A merged unit that disappears
    between the listing and the reading of its manifest was itself replaced and deleted meanwhile:
    then the folder is listed again.
    """
    for _ in range(20):
        try:
            names = [n for n in os.listdir(folder) if not n.startswith(".")]
        except FileNotFoundError:
            return []
        replaced: set[str] = set()
        try:
            # Newest first, and a merged unit known to be replaced is not read: what it replaced and is
            # still on disk is in its replacer's list too (``replaces_closure``).
            for n in sorted((n for n in names if n.startswith(MERGED_PREFIX)), reverse=True):
                if n not in replaced:
                    replaced.update(read_replaces(folder / n))
        except FileNotFoundError:
            continue
        return sorted(n for n in names if n not in replaced)
    raise StoreError(f"{folder} keeps changing while it is listed; try again")


def signal_files(vdir: Path) -> list[str]:
    """The Parquet files of a signal version's live units (plain ``part-*.parquet`` files and merged
    folders)."""
    files: list[str] = []
    for name in live_units(vdir):
        unit = vdir / name
        if name.startswith(MERGED_PREFIX):
            files += sorted(str(f) for f in unit.glob("*.parquet"))
        elif name.endswith(".parquet"):
            files.append(str(unit))
    return files


def replaces_closure(folder: Path, names: list[str]) -> list[str]:
    """What a new merged unit of ``names`` replaces: ``names``, and what the merged ones among them
    replaced that is still on disk.

    Listing the older units too keeps each of them hidden even if the merged unit that replaced it is
    deleted first (so deletion order does not matter); a name no longer on disk never comes back
    (names are unique), so the list stays as short as what is left to delete."""
    out = set(names)
    present = set(os.listdir(folder))
    for n in names:
        if n.startswith(MERGED_PREFIX):
            out.update(r for r in read_replaces(folder / n) if r in present)
    return sorted(out)


def utc_now() -> _dt.datetime:
    """The current UTC time without a time zone (how the store's timestamps are written)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def new_id(prefix: str = "") -> str:
    """A unique id that sorts by creation time: ``<prefix><UTC time to the microsecond>-<8 hex digits>``."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    return f"{prefix}{stamp}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- locks


def lock_staging(staging: Path, make_id: Callable[[], str], started: str) -> tuple[int, str, Path]:
    """Create and ``flock`` ``staging/<id>.lock`` (owner: host, pid, start) before ``<id>/`` exists.

    Returns ``(fd, id, lock path)``. A fresh id is drawn when a cleaner removed the file between its
    creation and our lock (then the lock is on a dead inode). If anything fails after the file was
    created (a full disk refusing the owner's few bytes), the file is removed before the error goes
    up: a failed start leaves nothing in ``_staging/``.
    """
    staging.mkdir(exist_ok=True)
    for _ in range(100):
        uid = make_id()
        lock = staging / f"{uid}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        mine = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                mine = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                mine = False
            if mine:
                os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                         "started_at": started}).encode())
                return fd, uid, lock
        except BaseException:
            if mine:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
            os.close(fd)
            raise
        os.close(fd)
    raise StoreError(f"could not lock a staging folder in {staging}")


def release_staging(fd: int | None, lock: Path | None) -> None:
    """Remove our lock file, then close it (which releases the lock). Safe to call twice."""
    if lock is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


@contextlib.contextmanager
def flocked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing). Yields False, without the lock,
    when ``blocking`` is off and another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------- writes


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:  # names may hold \r or lone surrogates
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- deleting replaced units


def empty_trash(trash: Path) -> None:
    """Delete what a writer moved to ``_trash/`` (a killed deletion leaves its rest there)."""
    try:
        names = os.listdir(trash)
    except FileNotFoundError:
        return
    for n in names:
        p = trash / n
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def drop_replaced(folder: Path, trash: Path, grace_s: float | None = None) -> int:
    """Move the units of ``folder`` that a merge replaced at least ``grace_s`` ago into ``trash``, then
    delete them. Each move is one ``rename``, so a unit is either whole in ``folder`` (still hidden by
    the merged unit that replaces it) or gone. Returns how many units went."""
    grace = REPLACED_GRACE_S if grace_s is None else grace_s
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return 0
    gone = 0
    now = time.time()
    for m in sorted(n for n in names if n.startswith(MERGED_PREFIX)):
        try:
            if now - (folder / m / REPLACES).stat().st_mtime < grace:
                continue  # (a stat, not a read: most merges are recent while a store is being filled)
            replaces = read_replaces(folder / m)
        except (FileNotFoundError, ValueError):
            continue
        for r in replaces:
            if r in names and _to_trash(folder / r, trash):
                names.discard(r)
                gone += 1
    if gone:
        empty_trash(trash)
    return gone


def _to_trash(path: Path, trash: Path) -> bool:
    trash.mkdir(exist_ok=True)
    try:
        os.rename(path, trash / f"{uuid.uuid4().hex[:8]}-{path.name}")
    except FileNotFoundError:
        return False  # another writer took it
    return True
