"""A full disk during an ingest leaves nothing in ``_staging/`` (issue 23, item 10): neither an empty
lock file (the owner's few bytes refused) nor a lock without its folder (the last chunk refused at commit).
"""

from __future__ import annotations

import errno
import json
import os
from itertools import islice
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from calib.errors import StoreError
from calib.ingest import ingest_file
from calib.sample_episodes import synthetic_records
from calib.store import Store


def _write(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(ep) + "\n" for ep in islice(synthetic_records(n, 1, seed=1), n))
    return path



def _fail_on_lock_files(real):
    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".lock"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    return write


def test_a_disk_full_start_leaves_no_lock_file(tmp_path: Path, monkeypatch, skip_or_fail):
    if not Path("/proc/self/fd").is_dir():
        skip_or_fail("needs /proc/self/fd to tell the lock file's writes")
    st = Store(tmp_path / "store")
    monkeypatch.setattr(os, "write", _fail_on_lock_files(os.write))
    with pytest.raises(Exception) as err:  # its type is checked below, after the leftovers
        st.add_episodes(list(synthetic_records(1, 2, seed=1)), source="x")
    monkeypatch.undo()
    assert list((st.path / "_staging").iterdir()) == []
    assert err.type is StoreError and "No space left on device" in str(err.value)  # one line for the CLI
    assert st.add_episodes(list(synthetic_records(1, 2, seed=1)), source="x").episodes == 2


def test_a_disk_full_commit_leaves_nothing_in_staging(tmp_path: Path, monkeypatch):
    """The per-record path writes its last chunk at commit; a full disk there discards the ingest and
    its lock (the lock used to stay, holding nothing)."""
    src = _write(tmp_path / "a.jsonl", 3)
    st = Store(tmp_path / "store")
    real = pq.write_table

    def full(table, where, *a, **kw):
        if "_staging" in str(where):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(table, where, *a, **kw)

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError, match="No space left on device"):
        ingest_file(st, src, strict=True)  # --strict takes the per-record path
    monkeypatch.undo()
    assert list((st.path / "_staging").iterdir()) == []
    assert ingest_file(st, src).episodes == 3
