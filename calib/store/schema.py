"""Arrow schemas of the store's tables (docs/architecture.md section 2). One place, so writers and readers agree."""

from __future__ import annotations

import pyarrow as pa

EPISODES = pa.schema(
    [
        ("episode_id", pa.string()),
        ("run_id", pa.string()),
        ("iteration", pa.int64()),
        ("task_id", pa.string()),
        ("group_id", pa.string()),
        ("policy", pa.string()),
        ("outcome", pa.float64()),
        ("success", pa.bool_()),
        ("status", pa.string()),
        ("n_turns", pa.int32()),
        ("messages", pa.string()),  # canonical messages as JSON text
        ("expected_actions", pa.string()),  # JSON text
        ("info", pa.string()),  # JSON text
        ("content_hash", pa.string()),  # hash of the canonical record, to tell a re-ingest from a clash
        ("source", pa.string()),  # file (or "rollout:<run>") the episode came from
        ("source_line", pa.int64()),
        ("ingest_id", pa.string()),
    ]
)

TURNS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("turn_idx", pa.int32()),
        ("msg_idx", pa.int32()),
        ("kind", pa.string()),  # tool_call | message | invalid
        ("tool_name", pa.string()),
        ("tool_args", pa.string()),  # canonical JSON text (raw text when unparseable)
        ("n_tool_calls", pa.int32()),
        ("tool_calls", pa.string()),  # JSON of every call when there is more than one
        ("is_write", pa.bool_()),  # null for unknown tools and for turns without a call
        ("tool_error", pa.bool_()),
        ("text", pa.string()),
        ("observation", pa.string()),
        ("user_text", pa.string()),  # the user's reply after this turn
        ("prev_user_text", pa.string()),  # the last user message before this turn
    ]
)

SIGNALS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("turn_idx", pa.int32()),
        ("signal", pa.string()),
        ("value", pa.float64()),
    ]
)

INGEST_LOG_DDL = """
CREATE TABLE IF NOT EXISTS ingest_log (
    ingest_id VARCHAR PRIMARY KEY,
    source VARCHAR,
    format VARCHAR,
    run_id VARCHAR,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    records BIGINT,
    episodes BIGINT,
    turns BIGINT,
    skipped_duplicates BIGINT,
    quarantined BIGINT,
    success_threshold DOUBLE  -- verifiers/ART: success was reward >= this; NULL for other formats
)
"""
