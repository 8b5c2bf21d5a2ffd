"""``calib ingest``: stream rollout dumps into the store, one atomic ingest per file.

Formats: ``native`` (docs/architecture.md section 2 JSONL), ``taubench`` (tau-bench results JSON), ``tau2``
(tau2-bench results: one file, or a directory with ``results.json`` and ``simulations/``), ``chat``
(TRL/verifiers/ART-style chat JSONL), ``verifiers`` (a verifiers output folder: ``results.jsonl`` +
``metadata.json``, or ``traces.jsonl``), ``art`` (OpenPipe ART trajectory logs: Parquet, JSONL or
YAML, one file or a folder of them), ``verl`` (verl's rollout dumps: one ``{step}.jsonl`` or the
``rollout_data_dir`` holding them); ``auto`` sniffs the first bytes (and recognises the folders).

Limits (``docs/importing.md``): a record nested deeper than ``calib.jsonlimits.MAX_DEPTH`` or longer than
``max_record_bytes`` is quarantined with its file and line, never held whole; a file that was cut
while it was read commits what came before the cut and says so (``IngestResult.ended_early``).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from calib.errors import CalibError, UsageError
from calib.ingest.art import is_art_dir
from calib.ingest.chat import chat_to_native
from calib.ingest.components import DEFAULT_SUCCESS_THRESHOLD
from calib.ingest.readers import EndedEarly, iter_json_array, iter_jsonl
from calib.ingest.sniff import is_json_array_file, sniff_format
from calib.ingest.tau2 import is_tau2_dir
from calib.ingest.taubench import taubench_to_native
from calib.ingest.verifiers import is_verifiers_dir
from calib.ingest.verl import is_verl_dir, verl_files
from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES
from calib.records import RecordError
from calib.store import IngestResult, Store
from calib.tools import ToolCatalogue

_FAST_OFF = os.environ.get("CALIB_INGEST_FAST", "1") == "0"  # the per-record path only (for comparisons)
FORMATS = ("auto", "native", "taubench", "tau2", "chat", "verifiers", "art", "verl")
DIR_FORMATS = ("tau2", "verifiers", "art", "verl")

__all__ = ["FORMATS", "chat_to_native", "check_ingest_args", "check_source", "ingest_file", "ingest_paths",
           "taubench_to_native"]


def check_ingest_args(paths: list[Path], *, fmt: str = "auto", success_threshold: float = DEFAULT_SUCCESS_THRESHOLD,
                      max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
    """Refuse (``UsageError``, one line) any argument of an ingest before anything is read or created:
    ``calib ingest`` calls it before it opens (or creates) the store, so a refusal leaves no trace."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not math.isfinite(success_threshold):
        raise UsageError(f"--success-threshold {success_threshold}: expected a finite number")
    if max_record_bytes < 1:
        raise UsageError(f"--max-record-bytes {max_record_bytes}: expected a positive number of bytes")
    for p in paths:
        check_source(Path(p), fmt)


def check_source(path: Path, fmt: str = "auto") -> str | None:
    """Refuse (``UsageError``) a path that cannot be ingested as ``fmt``: missing, a folder that is not
    a results folder, or neither a regular file nor a folder. Returns the folder's format, or None for
    a file.

    Why refuse devices, pipes and sockets: ``/dev/zero`` never ends and holds no newline, and a pipe
    cannot be sniffed and then read again, nor told apart from a file cut while it was read; save the
    stream to a file and ingest that."""
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if path.is_dir():
        if fmt == "auto":
            dir_fmt = _dir_format(path)
        elif fmt == "verl":  # forced: any folder of <step>.jsonl files
            dir_fmt = fmt if verl_files(path) else None
        else:
            dir_fmt = fmt if fmt in DIR_FORMATS and _dir_format(path) == fmt else None
        if dir_fmt is None:
            raise UsageError(f"{path} is a directory: pass the files to ingest (or a tau2 results directory, "
                             "a verifiers output folder with results.jsonl or traces.jsonl, a folder of ART "
                             "trajectory logs, or a verl rollout_data_dir of <step>.jsonl files)")
        return dir_fmt
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file or folder (a device, pipe or socket): save the dump to a "
                         "file and ingest that")
    return None


def _records(path: Path, fmt: str, run_id: str, max_bytes: int) -> Iterator[tuple[int, Any, str | None, Any]]:
    """Yield ``(line, native_record | None, error | None, raw)``."""
    if fmt == "taubench":
        with open(path, "rb") as f:
            first = f.read(4096).lstrip()[:1]
        array = first == b"" or (first == b"[" and is_json_array_file(path, max_bytes))
        items = iter_json_array(path, max_bytes=max_bytes) if array else iter_jsonl(path, max_bytes)
        convert: Callable[[Any], dict[str, Any]] | None = lambda r: taubench_to_native(r, run_id=run_id)
    elif fmt == "chat":
        items = iter_jsonl(path, max_bytes)
        convert = lambda r: chat_to_native(r, run_id=run_id)
    else:
        items = iter_jsonl(path, max_bytes)
        convert = None
    for line, rec, err, raw in items:
        if err is not None:
            yield line, None, err, raw
            continue
        if convert is not None:
            try:
                rec = convert(rec)
            except RecordError as e:
                yield line, None, str(e), rec
                continue
        yield line, rec, None, None


def ingest_file(
    store: Store,
    path: Path,
    *,
    fmt: str = "auto",
    run_id: str | None = None,
    strict: bool = False,
    catalogue: ToolCatalogue | None = None,
    on_progress: Callable[[int], None] | None = None,
    success_threshold: float = DEFAULT_SUCCESS_THRESHOLD,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> IngestResult:
    """Ingest one file (or one results folder) atomically. With ``strict``, the first bad record aborts
    the whole file. ``success_threshold``: for verifiers, ART and verl dumps, whose rewards need not be 0/1,
    ``success`` is ``reward >= success_threshold``. ``max_record_bytes``: a longer record (line,
    array element, whole tau2 or YAML file) is quarantined without being held whole."""
    check_ingest_args([], fmt=fmt, success_threshold=success_threshold, max_record_bytes=max_record_bytes)
    dir_fmt = check_source(path, fmt)
    if dir_fmt is not None:
        fmt = dir_fmt
    elif fmt == "auto":
        fmt = sniff_format(path, max_record_bytes) if path.stat().st_size else "native"
    limit = max_record_bytes
    if fmt == "tau2":
        return _ingest_tau2(store, path, run_id=run_id, strict=strict, catalogue=catalogue, on_progress=on_progress,
                            max_bytes=limit)
    if fmt in ("verifiers", "art", "verl"):
        return _ingest_library(store, path, fmt, run_id=run_id, strict=strict, catalogue=catalogue,
                               on_progress=on_progress, threshold=success_threshold, max_bytes=limit)
    # tau-bench and chat dumps carry no run id: default to the file's name.
    default_run = run_id or path.stem
    if fmt == "native" and not strict and not _FAST_OFF:
        return _ingest_native_fast(store, path, run_id=run_id, default_run=default_run, catalogue=catalogue,
                                   on_progress=on_progress, max_bytes=limit)
    writer = store.begin_ingest(source=str(path), fmt=fmt, run_id=run_id, catalogue=catalogue, strict=strict)
    empty = True
    try:
        for line, rec, err, raw in _records(path, fmt, default_run, limit):
            empty = False
            if err is None and fmt == "native" and isinstance(rec, dict) and rec.get("run_id") is None and run_id is None:
                rec = {**rec, "run_id": default_run}
            _take(writer, rec, err, raw, file=str(path), line=line, strict=strict, where=f"{path}:{line}",
                  scope="this file")
            if on_progress is not None:
                on_progress(writer.result.records)
        if empty:
            writer.quarantine(line=None, reason="empty file: no records", file=str(path))
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _take(writer, rec: Any, err: str | None, raw: Any, *, file: str, line: int | None, strict: bool, where: str,
          scope: str) -> None:
    """Add one converted record, or quarantine the reason it was refused. With ``strict`` the first
    refusal raises instead (``where``: the record's place; ``scope``: what is then not ingested)."""
    if err is not None:
        if strict:
            raise CalibError(f"{where}: {err} (--strict: nothing from {scope} was ingested)")
        _refuse(writer, line=line, reason=err, raw=raw, file=file)
        return
    if not writer.add(rec, line=line, file=file) and strict and writer.result.quarantined:
        raise CalibError(f"{writer.result.reasons[-1]} (--strict: nothing from {scope} was ingested)")


def _refuse(writer, *, line: int | None, reason: str, raw: Any, file: str) -> None:
    """Quarantine one record the reader or the converter refused; a file that ended early is also
    recorded on the result, so ``calib ingest`` can report it and exit 1."""
    writer.result.records += 1
    writer.quarantine(line=line, reason=reason, raw=raw, file=file)
    if isinstance(reason, EndedEarly):
        writer.result.ended_early = f"{file}:{line}"


def _ingest_tau2(
    store: Store,
    path: Path,
    *,
    run_id: str | None,
    strict: bool,
    catalogue: ToolCatalogue | None,
    on_progress: Callable[[int], None] | None,
    max_bytes: int,
) -> IngestResult:
    """One tau2 results file or directory as one atomic ingest; a bad simulation is quarantined with its
    file and its index in the file's ``simulations`` list (in the quarantine's ``line`` field). tau2
    writes each results file as one JSON object, read whole: ``max_bytes`` bounds each file."""
    from calib.ingest.tau2 import domain_of, iter_tau2, tau2_to_native
    from calib.tools import tau2_catalogue

    default_run = run_id or path.stem
    items = iter_tau2(path, max_bytes=max_bytes)
    first = next(items, None)
    if catalogue is None:  # the results say which tau2 domain they are from; no tau2 import needed
        catalogue = tau2_catalogue(domain_of(first[4]) if first is not None else None)
    writer = store.begin_ingest(source=str(path), fmt="tau2", run_id=run_id, catalogue=catalogue, strict=strict)
    try:
        for file, index, sim, err, header in itertools.chain([first] if first is not None else [], items):
            where = f"simulations[{index}]" if index is not None else "simulation"
            rec = None
            if err is None:
                try:
                    rec = tau2_to_native(sim, run_id=default_run, header=header)
                except RecordError as e:
                    err = f"{where}: {e}"
            else:
                err = f"{where}: {err}" if index is not None else err
            _take(writer, rec, err, sim, file=file, line=index, strict=strict, where=file, scope=str(path))
            if on_progress is not None:
                on_progress(writer.result.records)
        if first is None:
            writer.quarantine(line=None, reason="no simulations in the tau2 results", file=str(path))
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _ingest_native_fast(
    store: Store,
    path: Path,
    *,
    run_id: str | None,
    default_run: str,
    catalogue: ToolCatalogue | None,
    on_progress: Callable[[int], None] | None,
    max_bytes: int,
) -> IngestResult:
    """Native JSONL through the columnar path (``calib.ingest.fast``); the lines it does not take go
    through the per-record path, in line order, so quarantine and duplicate handling are unchanged.
    The lines the reader refuses (too long, too deep, not UTF-8, cut) never reach DuckDB."""
    from calib.ingest.fast import iter_line_chunks, run_chunks, to_store_tables
    from calib.ingest.readers import _loads
    from calib.store.writer import CHUNK_EPISODES

    writer = store.begin_ingest(source=str(path), fmt="native", run_id=run_id, catalogue=catalogue)
    threads = int(os.environ.get("CALIB_INGEST_THREADS", "1"))
    file = str(path)
    empty = True
    try:
        chunks = iter_line_chunks(path, CHUNK_EPISODES, max_bytes)  # also bounds memory
        for chunk, lines, texts, rejected in run_chunks(chunks, writer.catalogue, cli_run=run_id,
                                                        default_run=default_run, threads=threads):
            empty = False
            text_of = dict(zip(lines, texts))
            slow = sorted([(n, None, None) for n in chunk.slow] + rejected, key=lambda x: x[0])
            f_lines = chunk.episodes.column("line").to_pylist()
            f_ids = chunk.episodes.column("episode_id").to_pylist()
            f_hash = chunk.episodes.column("content_hash").to_pylist()
            keep: set[int] = set()
            si = 0
            for k, line in enumerate(f_lines + [None]):
                while si < len(slow) and (line is None or slow[si][0] < line):  # slow lines before this one
                    n, reason, raw = slow[si]
                    si += 1
                    if reason is not None:
                        _refuse(writer, line=n, reason=reason, raw=raw, file=file)
                    else:
                        _ingest_slow_line(writer, n, text_of[n], run_id=run_id, default_run=default_run, file=file)
                if line is None:
                    break
                writer.result.records += 1
                if writer.claim(f_ids[k], f_hash[k], line=line, file=file,
                                raw=lambda n=line, t=text_of: _loads(t[n])):
                    keep.add(line)
            eps, turns = to_store_tables(chunk, keep if len(keep) < len(f_lines) else None, source=file,
                                         ingest_id=writer.ingest_id)
            writer.add_tables(eps, turns)
            if on_progress is not None:
                on_progress(writer.result.records)
        if empty:
            writer.quarantine(line=None, reason="empty file: no records", file=file)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _ingest_slow_line(writer, line: int, text: str, *, run_id: str | None, default_run: str, file: str) -> None:
    """One line the fast path did not take through the per-record path (what ``iter_jsonl`` +
    ``IngestWriter.add`` do)."""
    from calib.ingest.readers import _loads

    try:
        rec = _loads(text)
    except (ValueError, RecursionError) as e:
        _refuse(writer, line=line, reason=f"invalid JSON: {e}", raw=text, file=file)
        return
    if isinstance(rec, dict) and rec.get("run_id") is None and run_id is None:
        rec = {**rec, "run_id": default_run}
    writer.add(rec, line=line, file=file)


def _dir_format(path: Path) -> str | None:
    if is_tau2_dir(path):
        return "tau2"
    if is_verifiers_dir(path):
        return "verifiers"
    if is_verl_dir(path):  # before ART, whose logs may also be <step>.jsonl files
        return "verl"
    if is_art_dir(path):
        return "art"
    return None


def _ingest_library(
    store: Store,
    path: Path,
    fmt: str,
    *,
    run_id: str | None,
    strict: bool,
    catalogue: ToolCatalogue | None,
    on_progress: Callable[[int], None] | None,
    threshold: float,
    max_bytes: int,
) -> IngestResult:
    """A verifiers, ART or verl dump (one file or one folder) as one atomic ingest; each bad record is
    quarantined with its file and line (Parquet: row number), the rest is ingested."""
    from calib.ingest.art import iter_art
    from calib.ingest.verifiers import iter_verifiers
    from calib.ingest.verl import default_run as verl_run
    from calib.ingest.verl import iter_verl

    if fmt == "verifiers":
        default_run = run_id or (path.name if path.is_dir() else path.parent.name or path.stem)
        items = iter_verifiers(path, run_id=default_run, threshold=threshold, max_bytes=max_bytes)
    elif fmt == "verl":
        items = iter_verl(path, run_id=run_id or verl_run(path), threshold=threshold, max_bytes=max_bytes)
    else:
        items = iter_art(path, run_id=run_id, threshold=threshold, max_bytes=max_bytes)
    writer = store.begin_ingest(source=str(path), fmt=fmt, run_id=run_id, catalogue=catalogue, strict=strict)
    writer.result.success_threshold = threshold
    empty = True
    try:
        for file, line, rec, err, raw in items:
            empty = False
            _take(writer, rec, err, raw, file=file, line=line, strict=strict, where=f"{file}:{line}", scope=str(path))
            if on_progress is not None:
                on_progress(writer.result.records)
        if empty:
            writer.quarantine(line=None, reason=f"no {fmt} records found", file=str(path))
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def ingest_paths(store: Store, paths: list[Path], **kw: Any) -> list[IngestResult]:
    return [ingest_file(store, Path(p), **kw) for p in paths]
