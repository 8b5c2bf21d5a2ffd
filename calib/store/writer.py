"""The ingest writer: one atomic, idempotent ingest into a store (``Store.begin_ingest``).

Why this shape (the reader side is ``calib.store.store``):
- **One directory per ingest.** An ingest writes into ``_staging/<id>/`` and becomes visible with
  one ``os.rename`` into ``parts/``: a killed ingest leaves nothing visible, and readers never see
  half an ingest.
- **Idempotent.** ``episode_id`` defaults to a content hash; an episode already in the store is
  skipped, and one whose id is taken by different content is quarantined, never overwritten.
- **Locks, not pid files.** Each ingest holds an exclusive ``flock`` on ``_staging/<id>.lock`` (its
  host and pid inside, for people) from before its folder exists until after the rename. Commits are
  serialised by ``_commit.lock``, under which the ingest re-checks ids committed since it started,
  so overlapping ingests of the same file commit each episode once.
- **Duplicate checks cost what the ingest holds.** Each staged chunk, and the whole ingest again
  under the commit lock, looks up only its own ids (``Store._lookup_ids``), never every id of the
  store.
- **Bounded memory.** Parts are flushed every :data:`CHUNK_EPISODES` episodes or
  :data:`CHUNK_BYTES` of buffered text, whichever comes first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from calib.errors import CalibError, StoreError
from calib.records import RecordError, canonical_json, normalize_episode, segment_turns
from calib.store import compact, schema
from calib.store.files import (
    ID_ROW_GROUP,
    MANIFEST,
    atomic_write_text,
    fsync_dir,
    lock_staging,
    release_staging,
    utc_now,
)
from calib.tools import ToolCatalogue, airline_catalogue


class Store(compact.Store, Protocol):
    """What the writer uses of :class:`calib.store.store.Store` (which imports this module, so this
    module does not import it back; ``calib.store.compact.Store`` is the part compaction needs)."""

    def _lookup_ids(self, ids: Iterable[str], columns: tuple[str, ...] = ...,
                    cache: dict[Any, Any] | None = None) -> pa.Table: ...
    def _manifests(self) -> list[dict[str, Any]]: ...

CHUNK_EPISODES = int(os.environ.get("CALIB_INGEST_CHUNK", "5000"))  # episodes per Parquet part: bounds ingest memory
# ... and text per part: a few very large accepted records flush early, so the writer's buffer stays
# bounded by bytes too (the readers bound each record by --max-record-bytes)
CHUNK_BYTES = int(os.environ.get("CALIB_INGEST_CHUNK_BYTES", str(256 * 2**20)))
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


class IngestWriter:
    """One atomic ingest. Use as a context manager; it commits on clean exit and discards on error.

    Episodes are checked against the store per staged chunk (so a re-ingest skips what the store has
    without staging it) and once more under the commit lock (for what concurrent ingests committed
    meanwhile); both checks look up only this ingest's ids (:meth:`Store._lookup_ids`)."""

    def __init__(self, store: Store, *, source: str, fmt: str, run_id: str | None, catalogue: ToolCatalogue | None,
                 strict: bool = False):
        self.store = store
        self.catalogue = catalogue or airline_catalogue()
        self.run_id = run_id
        self.strict = strict
        self.started = utc_now()
        self.ingest_id = f"{self.started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        self.result = IngestResult(self.ingest_id, source=source, run_id=run_id, format=fmt)
        self._lock_fd: int | None = None
        self._lock_path: Path | None = None
        self._qfile = None
        store.clean_staging()
        self._lock_fd = self._take_lock()
        self.staging = store.path / "_staging" / self.ingest_id
        try:
            self.staging.mkdir()
            store.drop_replaced()
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError):
                raise StoreError(f"cannot start an ingest in {store.path}: {e.strerror or e}") from None
            raise
        self._beat = time.monotonic()
        self._seen: dict[str, tuple[str, int]] = {}  # episode_id -> (hash, line) within this ingest
        self._eps: list[dict[str, Any]] = []
        self._turns: list[dict[str, Any]] = []
        self._buffered = 0  # characters of text in _eps (flushed past CHUNK_BYTES)
        self._chunk = 0
        self._id_cache: dict[Any, Any] = {}  # row groups of committed files read by the duplicate checks

    def _take_lock(self) -> int:
        """Create and lock ``_staging/<id>.lock`` before the folder exists (``files.lock_staging``); a
        failure (a full disk) leaves no lock file behind and says so in one line."""
        try:
            fd, self.ingest_id, self._lock_path = lock_staging(
                self.store.path / "_staging", lambda: f"{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
                self.started.isoformat())
        except OSError as e:
            raise StoreError(f"cannot start an ingest in {self.store.path}: {e.strerror or e}") from None
        self.result.ingest_id = self.ingest_id
        return fd

    def _heartbeat(self) -> None:
        if time.monotonic() - self._beat > _HEARTBEAT_S:
            with contextlib.suppress(OSError):
                os.utime(self._lock_path)
            self._beat = time.monotonic()

    def _release(self) -> None:
        release_staging(self._lock_fd, self._lock_path)
        self._lock_fd, self._lock_path = None, None

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
        if len(self._eps) >= CHUNK_EPISODES or self._buffered >= CHUNK_BYTES:
            self._flush()
        return True

    def claim(self, eid: str, h: str, *, line: int | None, file: str | None, raw: Any) -> bool:
        """Whether a validated episode is new *within this ingest*: a repeat of the same content is
        skipped, an id that held other content earlier in the file is quarantined. (What the store
        already holds is checked per staged chunk, :meth:`_stage`.) ``raw`` may be a callable."""
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
        self._stage(episodes, turns)
        self._heartbeat()

    def _flush(self) -> None:
        if not self._eps:
            return
        eps, turns = _rows_table(self._eps, schema.EPISODES), _rows_table(self._turns, schema.TURNS)
        self._eps, self._turns = [], []
        self._buffered = 0
        self._stage(eps, turns)

    def _stage(self, eps: pa.Table, turns: pa.Table) -> None:
        """Write one chunk into the staging folder, without the episodes the store already has."""
        found = self.store._lookup_ids(eps.column("episode_id").to_pylist(), cache=self._id_cache)
        if found.num_rows:
            eps, turns, _ = self._drop_known(eps, turns, found)
        if eps.num_rows == 0:
            return
        n = f"{self._chunk:05d}"
        # sorted by id in small row groups, so that later ingests' id lookups read a few row groups of it
        pq.write_table(eps.sort_by("episode_id"), self.staging / f"episodes-{n}.parquet", compression="zstd",
                       row_group_size=ID_ROW_GROUP)
        pq.write_table(turns, self.staging / f"turns-{n}.parquet", compression="zstd")
        self._chunk += 1
        self._count(eps, turns.num_rows)

    def _count(self, eps: pa.Table, n_turns: int, sign: int = 1) -> None:
        """Add (``sign`` 1) or take back (-1) staged episodes in the ingest's summary."""
        r = self.result
        r.episodes += sign * eps.num_rows
        r.turns += sign * n_turns
        is_err = pc.equal(eps.column("status"), "error")
        r.errors += sign * (pc.sum(pc.cast(is_err, pa.int64())).as_py() or 0)
        ok_success = pc.and_(pc.invert(is_err), eps.column("success"))
        r.successes += sign * (pc.sum(pc.cast(ok_success, pa.int64())).as_py() or 0)
        if sign > 0:
            r.groups.update(eps.column("group_id").to_pylist())

    def _drop_known(self, eps: pa.Table, turns: pa.Table, found: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Split off the episodes whose id the store holds (``found``): the same content is a skipped
        duplicate, other content is quarantined (or, for a verifiers/ART dump labelled before with
        another success threshold, the whole ingest is refused). Returns (kept, their turns, dropped)."""
        known = dict(zip(found.column("episode_id").to_pylist(), found.column("content_hash").to_pylist()))
        by_ingest = dict(zip(found.column("episode_id").to_pylist(), found.column("ingest_id").to_pylist()))
        mask = pc.is_in(eps["episode_id"], value_set=pa.array(list(known), pa.string()))
        gone, kept = eps.filter(mask), eps.filter(pc.invert(mask))
        clashes = [row for row in gone.to_pylist() if known[row["episode_id"]] != row["content_hash"]]
        if clashes and self.result.success_threshold is not None:
            self._refuse_other_threshold([row["episode_id"] for row in clashes])
        self.result.skipped_duplicates += gone.num_rows - len(clashes)
        when = self._committed_since({by_ingest[row["episode_id"]] for row in clashes}) if clashes else set()
        for row in clashes:
            iid = by_ingest[row["episode_id"]]
            how = "was committed with different content by a concurrent ingest" if iid in when else \
                "is already in the store with different content"
            raw = {k: row[k] for k in ("episode_id", "run_id", "task_id", "outcome", "success", "status")}
            raw["messages"] = json.loads(row["messages"])
            reason = f"episode_id {row['episode_id']!r} {how} (ingest {iid})"
            if self.strict:
                raise CalibError(f"{row['source']}:{row['source_line']}: {reason} (--strict: nothing from "
                                 f"{self.result.source} was ingested)")
            self.quarantine(line=row["source_line"], file=row["source"], raw=raw, reason=reason)
        gone_ids = pa.array(gone.column("episode_id").to_pylist(), pa.string())
        kept_turns = turns.filter(pc.invert(pc.is_in(turns["episode_id"], value_set=gone_ids)))
        return kept, kept_turns, gone

    def _committed_since(self, ingest_ids: set[str]) -> set[str]:
        """Which of ``ingest_ids`` finished after this ingest started (for the quarantine's wording)."""
        log = self.store._manifests()
        return {r["ingest_id"] for r in log
                if r["ingest_id"] in ingest_ids and r.get("finished_at", "") >= self.started.isoformat()}

    def _refuse_other_threshold(self, ids: list[str]) -> None:
        """An episode's id does not depend on ``--success-threshold`` (``components.threshold_free_id``),
        so the same rollouts ingested again with another threshold meet their earlier selves here, with
        another ``success`` label. One episode, one label: refuse, naming the threshold used before."""
        before = self.store._lookup_ids(ids[:50], columns=("episode_id", "info", "ingest_id"))
        for info_text, iid in zip(before.column("info").to_pylist(), before.column("ingest_id").to_pylist()):
            try:
                prev = json.loads(info_text or "{}").get("success_threshold")
            except ValueError:
                prev = None
            mine = self.result.success_threshold
            if isinstance(prev, (int, float)) and not isinstance(prev, bool) and float(prev) != mine:
                raise CalibError(
                    f"{self.result.source}: these rollouts are in the store already, labelled with "
                    f"--success-threshold {float(prev):g} (ingest {iid}); ingesting them again with {mine:g} would "
                    f"give them two success labels: use --success-threshold {float(prev):g}, or another store")

    def _recheck(self) -> None:
        """Under the commit lock: drop staged episodes that a concurrent ingest committed since our
        chunks were checked (skipped when identical, quarantined when the id holds different content)."""
        files = sorted(self.staging.glob("episodes-*.parquet"))
        if not files:
            return
        ids = pa.concat_tables([pq.read_table(f, columns=["episode_id"]) for f in files]).column("episode_id")
        found = self.store._lookup_ids(ids.to_pylist(), cache=self._id_cache)
        if not found.num_rows:
            return
        groups: set[str] = set()
        for ep_file in files:
            turns_file = ep_file.with_name(ep_file.name.replace("episodes-", "turns-"))
            eps, turns = pq.read_table(ep_file), pq.read_table(turns_file)
            kept, kept_turns, gone = self._drop_known(eps, turns, found)
            self._count(gone, turns.num_rows - kept_turns.num_rows, sign=-1)
            groups.update(kept.column("group_id").to_pylist())
            if gone.num_rows == 0:
                continue
            for path, t in ((ep_file, kept), (turns_file, kept_turns)):
                if kept.num_rows == 0:
                    path.unlink()
                else:
                    tmp = path.with_name(f".{path.name}.tmp")
                    pq.write_table(t, tmp, compression="zstd", row_group_size=ID_ROW_GROUP)
                    os.replace(tmp, path)
        self.result.groups = groups

    # -- commit / abort
    def commit(self) -> IngestResult:
        try:
            self._flush()
            with self.store._commit_lock():
                self._recheck()
                published = self._publish()
        except BaseException:
            self._close_quarantine()
            shutil.rmtree(self.staging, ignore_errors=True)  # not published: leave nothing behind
            raise
        finally:
            self._release()
        if published:
            self._compact_if_due()
            self.store.refresh_catalog()
        return self.result

    def _compact_if_due(self) -> None:
        """Automatic compaction (``calib.store.compact``) once enough small parts piled up. The ingest is
        committed already, so a failure here is a warning, not an error of the ingest."""

        try:
            compact.maybe_compact(self.store)
        except Exception as e:  # noqa: BLE001 - whatever it is, the ingest stands; compaction can run again
            warnings.warn(f"automatic compaction of {self.store.path} failed ({e}); the ingest is committed; "
                          "run `calib store compact` later", stacklevel=3)

    def _publish(self) -> bool:
        """Quarantine file, manifest, then the rename (the commit point). False when nothing to publish."""
        self._close_quarantine()
        r = self.result
        manifest = {
            "ingest_id": self.ingest_id,
            "source": r.source,
            "format": r.format,
            "run_id": r.run_id,
            "started_at": self.started.isoformat(),
            "finished_at": utc_now().isoformat(),
            "records": r.records,
            "episodes": r.episodes,
            "turns": r.turns,
            "skipped_duplicates": r.skipped_duplicates,
            "quarantined": r.quarantined,
            "success_threshold": r.success_threshold,
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
        atomic_write_text(self.staging / MANIFEST, json.dumps(manifest))
        fsync_dir(self.staging)
        os.rename(self.staging, self.store.path / "parts" / self.ingest_id)  # the commit point
        fsync_dir(self.store.path / "parts")
        return True

    def _close_quarantine(self) -> None:
        if self._qfile is not None:
            with contextlib.suppress(OSError):
                self._qfile.close()
            self._qfile = None

    def abort(self) -> None:
        """Discard the ingest: staging folder and lock file go, even when the disk is full."""
        self._close_quarantine()
        if getattr(self, "staging", None) is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._release()


def _rows_table(rows: list[dict[str, Any]], sch: pa.Schema) -> pa.Table:
    cols = {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in sch}
    return pa.table(cols, schema=sch)
