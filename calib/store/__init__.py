"""The rollout store: Parquet parts + a DuckDB catalog (docs/architecture.md section 2).

Layout of a store directory::

    catalog.duckdb            views over the parts + the ingest_log table (for the duckdb CLI)
    parts/<ingest_id>/        one committed ingest: episodes-00000.parquet, turns-00000.parquet, ...
    signals/<name>/<version>/ part-*.parquet (long format: episode_id, turn_idx, signal, value)
    tables/<name>/            side tables written by other stages (calibration_history, ...)
    quarantine/<ingest_id>.jsonl  bad records with file, line and reason
    _staging/                 work in progress; never read

Use :class:`Store` (``from calib.store import Store``).
"""

from calib.store.store import Store
from calib.store.writer import IngestResult, IngestWriter

__all__ = ["IngestResult", "IngestWriter", "Store"]
