"""The columnar fast path of the native JSONL ingest: DuckDB parses, validates, canonicalises and segments.

Why: the per-record path (``calib.records`` in Python: parse, normalise, hash, segment, validate the
arguments) ran at a third of the speed of a plain ``json`` + pandas loader. Here a chunk of lines goes
into DuckDB as one column; SQL checks each record against a strict, common shape, builds the same
canonical JSON text that ``normalize_episode`` hashes (sorted keys, no spaces, whole numbers in
arguments and ``info`` as integers) and the turn rows that ``segment_turns`` would give; hashlib takes
the SHA-256 of that text straight from the Arrow buffers (``content_hashes``).

Everything the fast path is not sure about goes back to the per-record path, line by line, so a bad
record is still quarantined with its file, line and the same reason, and an unusual but valid record
is still ingested exactly as before. The fast shape (anything else is "not eligible"):

- a JSON object with only the native keys (no ``reward`` alias), a line under 1,000,000 bytes (so no
  string can exceed ``MAX_STRING``), no ``\\u0000``-``\\u001f`` escapes (DuckDB and Python write those
  in different hex case) and nothing that DuckDB's JSON reader accepts and Python's ``json`` rejects
  (a trailing comma, a bare nan/inf: ``LENIENT_RE``; the per-record path quarantines those lines);
- string ids (``task_id`` required), an integer ``iteration``, a number ``outcome`` (|x| < 1e15), a
  boolean or absent ``success``, ``status`` ok/error, an ``info`` object (a flat one is made canonical
  in SQL, a nested one, as calib's own rollouts write, in Python: ``nested_info``);
- messages with the four roles and string/null contents; assistant tool calls in OpenAI form (arguments
  a JSON string, or a string that is not JSON at all: the call keeps it with ``parse_error`` and the
  turn is ``invalid``) or native form (arguments an object), each with a string id and flat arguments, each
  answered by the tool message right after it, in order, with that ``tool_call_id``; no ``invalid``
  flag and no calls on user messages;
- expected actions ``{name, arguments}`` with flat arguments; the catalogue's schemas for the tools
  called are checked in SQL (types, enums, required and unexpected keys).

``tests/test_ingest_fast.py`` checks that both paths store the same episodes, turns and hashes. One
known difference: a record that repeats a key inside one JSON object is read with the key's first value
here and with its last value by Python's ``json`` (no writer we know of produces such records).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from calib.ingest.readers import RAW_KEPT, decode_line, iter_lines
from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES
from calib.records import canonical_json
from calib.sqlutil import lock, locked_connection, sql_list, sql_literal
from calib.store import schema
from calib.tools import ToolCatalogue

CHUNK_LINES = 20_000
CHUNK_BYTES = 64 * 1024 * 1024  # a chunk of lines holds at most this much text (plus one record)
MAX_LINE_BYTES = 1_000_000
TOP_KEYS = ["episode_id", "run_id", "iteration", "task_id", "group_id", "policy", "outcome", "success", "status",
            "messages", "expected_actions", "info"]
# what from_json reads (it casts leniently; the types are checked on json_structure)
TYPED = {"episode_id": "VARCHAR", "run_id": "VARCHAR", "iteration": "BIGINT", "task_id": "VARCHAR",
         "group_id": "VARCHAR", "policy": "VARCHAR", "outcome": "DOUBLE", "success": "BOOLEAN", "status": "VARCHAR",
         "messages": [{"role": "VARCHAR", "content": "VARCHAR", "tool_call_id": "VARCHAR", "name": "VARCHAR",
                       "tool_calls": [{"id": "VARCHAR", "type": "VARCHAR", "name": "VARCHAR", "arguments": "JSON",
                                       "function": {"name": "VARCHAR", "arguments": "VARCHAR"}}]}],
         "expected_actions": [{"name": "VARCHAR", "arguments": "JSON"}], "info": "JSON"}
_KINDS = {"string": ["string"], "integer": ["integer"], "number": ["integer", "float"], "boolean": ["boolean"],
          "null": ["null"], "array": [], "object": []}
_ALL_KINDS = ["string", "integer", "float", "boolean", "null"]
# JSON that DuckDB's reader accepts and Python's json rejects: a trailing comma, a bare nan/inf (any
# case). A line (or a call's arguments) where this matches, even inside a string, takes the
# per-record path, which quarantines it (or keeps the call with parse_error) as Python's json decides.
LENIENT_RE = r"[:,\[]\s*[-+]?(?i:nan|inf|infinity)\b|,\s*[\]}]"


# ----------------------------------------------------------------------------- catalogue as tables


def catalogue_tables(catalogue: ToolCatalogue) -> tuple[pa.Table, pa.Table, list[str]]:
    """``(tools, props, unsupported)``: what the SQL needs of the catalogue's write flags and schemas.

    A schema the SQL does not express (top level not an object schema, enums of non-strings) puts its
    tool in ``unsupported``: calls to it go to the per-record path.
    """
    tools: dict[str, list[Any]] = {"tool": [], "known": [], "is_write": [], "has_schema": [], "required": [], "allowed": [],
                                   "forbid_extra": []}
    props: dict[str, list[Any]] = {"tool": [], "key": [], "kinds": [], "enum": []}
    unsupported: list[str] = []
    names = sorted(catalogue.tool_names | set(catalogue.schemas))
    for name in names:
        sch = catalogue.schemas.get(name)
        params = None if sch is None else sch.get("parameters", sch)
        ok = params is None or (isinstance(params, dict) and params.get("type") in (None, "object")
                                and "enum" not in params)
        if ok and params is not None:
            pr = params.get("properties", {}) or {}
            if not isinstance(pr, dict):
                ok = False
            else:
                for key, sub in pr.items():
                    if not isinstance(sub, dict):
                        ok = False
                        break
                    typ = sub.get("type")
                    types = typ if isinstance(typ, list) else ([typ] if typ is not None else None)
                    kinds = _ALL_KINDS if types is None else sorted({k for t in types for k in _KINDS.get(t, _ALL_KINDS)})
                    enum = sub.get("enum")
                    if enum is not None and not all(isinstance(v, str) for v in enum):
                        ok = False
                        break
                    props["tool"].append(name)
                    props["key"].append(key)
                    props["kinds"].append(kinds)
                    props["enum"].append(None if enum is None else [json.dumps(v, ensure_ascii=False) for v in enum])
        if not ok:
            unsupported.append(name)
            continue
        pr = (params or {}).get("properties", {}) or {}
        tools["tool"].append(name)
        tools["known"].append(catalogue.is_known(name))
        tools["is_write"].append(catalogue.is_write(name))
        tools["has_schema"].append(params is not None and ("properties" in params or "required" in params))
        tools["required"].append(list((params or {}).get("required", []) or []))
        tools["allowed"].append(list(pr))
        ap = (params or {}).get
        tools["forbid_extra"].append(bool((ap("additionalProperties", True) is False or bool(pr))
                                          and ap("additionalProperties", False) is False))
    t = pa.table({"tool": pa.array(tools["tool"], pa.string()), "known": pa.array(tools["known"], pa.bool_()),
                  "is_write": pa.array(tools["is_write"], pa.bool_()),
                  "has_schema": pa.array(tools["has_schema"], pa.bool_()),
                  "required": pa.array(tools["required"], pa.list_(pa.string())),
                  "allowed": pa.array(tools["allowed"], pa.list_(pa.string())),
                  "forbid_extra": pa.array(tools["forbid_extra"], pa.bool_())})
    p = pa.table({"tool": pa.array(props["tool"], pa.string()), "key": pa.array(props["key"], pa.string()),
                  "kinds": pa.array(props["kinds"], pa.list_(pa.string())),
                  "enum": pa.array(props["enum"], pa.list_(pa.string()))})
    return t, p, unsupported


# ----------------------------------------------------------------------------- SQL

# Canonical text of a flat JSON object (sorted keys, scalars only; whole doubles as integers, as
# records._norm_value does). NULL when a value is not a scalar or a key needs escaping in a path.
_MACROS = r"""
CREATE OR REPLACE TEMP MACRO c_kind(t, v) AS CASE
    WHEN t = 'VARCHAR' THEN 'string' WHEN t IN ('BIGINT', 'UBIGINT') THEN 'integer'
    WHEN t = 'BOOLEAN' THEN 'boolean' WHEN t = 'NULL' THEN 'null'
    WHEN t = 'DOUBLE' THEN CASE WHEN v::DOUBLE = trunc(v::DOUBLE) AND abs(v::DOUBLE) < 9007199254740992
                                THEN 'integer' ELSE 'float' END
    ELSE 'nested' END;
-- (key, value, json type) of an object's entries, keys sorted as Python's sort_keys sorts them; a key
-- that a path cannot name (a quote, a backslash) gets no value and type 'KEY' (flat_ok is false then)
CREATE OR REPLACE TEMP MACRO kv(o) AS list_transform(list_sort(json_keys(o)),
    lambda k: CASE WHEN regexp_full_match(k, '[A-Za-z0-9_ .:/@-]*')
                   THEN {'k': k, 'v': json_extract(o, '$."' || k || '"'), 't': json_type(o, '$."' || k || '"')}
                   ELSE {'k': k, 'v': NULL::JSON, 't': 'KEY'} END);
-- a flat object: no duplicate keys, keys a path can name (kv's type 'KEY'), finite scalar values only
CREATE OR REPLACE TEMP MACRO flat_ok(p) AS
    len(p) = len(list_distinct(list_transform(p, lambda x: x.k)))
    AND len(list_filter(p, lambda x: x.t IN ('OBJECT', 'ARRAY', 'KEY')
                                     OR coalesce(x.t = 'DOUBLE' AND isinf(try_cast(x.v AS DOUBLE)), false))) = 0;
-- canonical text (records.canonical_json): whole doubles as integers, as records._norm_value does
CREATE OR REPLACE TEMP MACRO c_flat(p) AS
    '{' || array_to_string(list_transform(p, lambda x: to_json(x.k)::VARCHAR || ':' || CASE
        WHEN x.t = 'NULL' THEN 'null'
        WHEN x.t = 'DOUBLE' THEN CASE WHEN x.v::DOUBLE = trunc(x.v::DOUBLE) AND abs(x.v::DOUBLE) < 9007199254740992
                                      THEN (x.v::DOUBLE)::BIGINT::VARCHAR ELSE (x.v::DOUBLE)::VARCHAR END
        ELSE x.v::VARCHAR END), ',') || '}';
"""

_EPISODES = r"""
-- one parse into typed columns (from_json is lenient: it casts), one into the merged type structure
-- (json_structure: "JSON" where a field mixes types), which is what the type checks read
CREATE OR REPLACE TEMP TABLE _e0 AS
SELECT line, j, try(json_structure(j)) AS st FROM _raw
WHERE length(j) < {max_line} AND left(ltrim(j), 1) = '{{'
  AND NOT (contains(j, '\u000') OR contains(j, '\u001') OR regexp_matches(j, {lenient}));

CREATE OR REPLACE TEMP TABLE _s AS  -- the type checks, once per distinct structure
SELECT st, coalesce(
    json_merge_patch(st, '{{"info": null}}')::VARCHAR NOT LIKE '%"JSON"%'
    AND list_has_all({top_keys}, json_keys(st))
    AND coalesce(x[1], 'VARCHAR') IN ('VARCHAR', 'NULL') AND coalesce(x[2], 'VARCHAR') IN ('VARCHAR', 'NULL')
    AND coalesce(x[3], 'BIGINT') IN ('BIGINT', 'UBIGINT') AND x[4] = 'VARCHAR'
    AND coalesce(x[5], 'VARCHAR') IN ('VARCHAR', 'NULL') AND coalesce(x[6], 'VARCHAR') IN ('VARCHAR', 'NULL')
    AND x[7] IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND coalesce(x[8], 'BOOLEAN') IN ('BOOLEAN', 'NULL')
    AND coalesce(x[9], 'VARCHAR') = 'VARCHAR'
    AND json_type(st, '$.messages') = 'ARRAY' AND json_type(st, '$.messages[0]') = 'OBJECT'
    AND list_has_all(['role', 'content', 'tool_calls', 'tool_call_id', 'name'], json_keys(st, '$.messages[0]'))
    AND x[10] = 'VARCHAR' AND coalesce(x[11], 'NULL') IN ('VARCHAR', 'NULL')
    AND coalesce(x[12], 'NULL') IN ('VARCHAR', 'NULL') AND coalesce(x[13], 'NULL') IN ('VARCHAR', 'NULL')
    AND (json_type(st, '$.messages[0].tool_calls') IS NULL OR x[14] = 'NULL'
         OR (json_type(st, '$.messages[0].tool_calls') = 'ARRAY'
             AND (json_type(st, '$.messages[0].tool_calls[0]') IS NULL OR x[15] = 'NULL' OR (
                 json_type(st, '$.messages[0].tool_calls[0]') = 'OBJECT'
                 AND list_has_all(['id', 'type', 'function', 'name', 'arguments'], json_keys(st, '$.messages[0].tool_calls[0]'))
                 AND x[16] = 'VARCHAR' AND coalesce(x[17], 'VARCHAR') = 'VARCHAR'
                 AND (json_type(st, '$.messages[0].tool_calls[0].function') IS NULL OR (
                      json_type(st, '$.messages[0].tool_calls[0].function') = 'OBJECT'
                      AND list_has_all(['name', 'arguments'], json_keys(st, '$.messages[0].tool_calls[0].function'))
                      AND x[18] = 'VARCHAR' AND x[19] = 'VARCHAR'))
                 AND coalesce(x[20], 'VARCHAR') = 'VARCHAR'
                 AND (json_type(st, '$.messages[0].tool_calls[0].arguments') IS NULL
                      OR json_type(st, '$.messages[0].tool_calls[0].arguments') = 'OBJECT')))))
    AND (json_type(st, '$.expected_actions') IS NULL OR x[21] = 'NULL'
         OR (json_type(st, '$.expected_actions') = 'ARRAY'
             AND (json_type(st, '$.expected_actions[0]') IS NULL OR (
                  json_type(st, '$.expected_actions[0]') = 'OBJECT'
                  AND list_has_all(['name', 'arguments'], json_keys(st, '$.expected_actions[0]'))
                  AND x[22] = 'VARCHAR' AND json_type(st, '$.expected_actions[0].arguments') = 'OBJECT')))),
    false) AS ok
FROM (SELECT st, json_extract_string(st, ['$.episode_id', '$.run_id', '$.iteration', '$.task_id',
        '$.group_id', '$.policy', '$.outcome', '$.success', '$.status', '$.messages[0].role',
        '$.messages[0].content', '$.messages[0].tool_call_id', '$.messages[0].name', '$.messages[0].tool_calls',
        '$.messages[0].tool_calls[0]', '$.messages[0].tool_calls[0].id', '$.messages[0].tool_calls[0].type',
        '$.messages[0].tool_calls[0].function.name', '$.messages[0].tool_calls[0].function.arguments',
        '$.messages[0].tool_calls[0].name', '$.expected_actions', '$.expected_actions[0].name']) AS x FROM (SELECT DISTINCT st FROM _e0 WHERE st IS NOT NULL));

CREATE OR REPLACE TEMP TABLE _e AS
SELECT line, r, st, r.info AS info_j
FROM (SELECT line, from_json(j, {typed}) AS r, st FROM _e0 SEMI JOIN (SELECT st FROM _s WHERE ok) USING (st));

CREATE OR REPLACE TEMP TABLE _m AS
SELECT line, i, m.role, m.content, m.tool_calls, m.tool_call_id AS tcid, m.name
FROM (SELECT line, unnest(r.messages) AS m, generate_subscripts(r.messages, 1) - 1 AS i
      FROM _e);

CREATE OR REPLACE TEMP TABLE _c AS
SELECT line, i, c, nc, tc.id, coalesce(tc.function.name, tc.name) AS name,
       tc.function IS NOT NULL AS fn, tc.name IS NOT NULL OR tc.arguments IS NOT NULL AS native,
       CASE WHEN tc.function IS NOT NULL THEN
                 (CASE WHEN json_valid(tc.function.arguments) AND json_type(tc.function.arguments) = 'OBJECT'
                       AND NOT regexp_matches(tc.function.arguments, {lenient})
                       THEN json(tc.function.arguments) END)
            WHEN json_type(tc.arguments) = 'OBJECT' THEN tc.arguments END AS args,
       -- not JSON to DuckDB (which is more lenient than Python's json, except for \u escapes of lone
       -- surrogates, hence no \u), and not blank to Python's str.strip (it starts with a visible ASCII
       -- character): Python's json fails on it too, and the call is kept with parse_error
       coalesce(tc.function IS NOT NULL AND NOT json_valid(tc.function.arguments)
                AND regexp_matches(tc.function.arguments, '^[!-~]') AND NOT contains(tc.function.arguments, '\u'),
                false) AS perr,
       tc.function.arguments AS raw
FROM (SELECT line, i, unnest(tool_calls) AS tc, generate_subscripts(tool_calls, 1) - 1 AS c, len(tool_calls) AS nc
      FROM _m WHERE role = 'assistant' AND len(tool_calls) > 0);

-- entries, canonical text and flatness once per distinct arguments text: the rollouts of a group
-- repeat a task, so they repeat arguments (43% distinct in the bench's data: 0.13 -> 0.08 s per
-- 5,000 episodes; about even when every call's arguments differ)
CREATE OR REPLACE TEMP TABLE _cc AS
WITH a AS (
    SELECT args, p, c_flat(p) AS args_text, flat_ok(p) AS flat
    FROM (SELECT args, kv(args) AS p FROM (SELECT DISTINCT args FROM _c WHERE args IS NOT NULL))
)
SELECT line, i, c, nc, id, name, a.p, a.args_text, perr, raw,
       coalesce(id IS NOT NULL AND length(name) > 0 AND (perr OR (_c.args IS NOT NULL AND a.flat))
                AND NOT (fn AND native), false) AS ok
FROM _c LEFT JOIN a ON _c.args = a.args;

-- message-level checks and canonical text
CREATE OR REPLACE TEMP TABLE _mc AS
WITH call AS (
    SELECT line, i, c, nc, ok, perr,
           '{{"arguments":' || CASE WHEN perr THEN to_json(raw)::VARCHAR ELSE args_text END || ',"id":'
           || to_json(id)::VARCHAR || ',"name":' || to_json(name)::VARCHAR
           || CASE WHEN perr THEN ',"parse_error":true}}' ELSE '}}' END AS call_json
    FROM _cc
), calls AS (  -- most messages make one call: no ordered aggregate for those (it is the costly part)
    SELECT line, i, 1 AS n, ok, perr AS invalid, '[' || call_json || ']' AS calls_json FROM call WHERE nc = 1
    UNION ALL
    SELECT line, i, count(*) AS n, bool_and(ok) AS ok, bool_or(perr) AS invalid,
           '[' || string_agg(call_json, ',' ORDER BY c) || ']' AS calls_json
    FROM call WHERE nc > 1 GROUP BY line, i
), owner AS (  -- each call's tool message comes right after it, in order, with its id
    SELECT cc.line, cc.i + 1 + cc.c AS i, cc.id, cc.name AS call_name FROM _cc cc
)
SELECT m.line, m.i, m.role, m.content, coalesce(calls.n, 0) AS n_calls, calls.calls_json,
       coalesce(calls.invalid, false) AS invalid,
       coalesce(m.role IN ('system', 'user', 'assistant', 'tool')
       AND (m.role = 'assistant' OR coalesce(len(m.tool_calls), 0) = 0)
       AND (m.role <> 'tool' OR (o.call_name IS NOT NULL AND m.tcid = o.id))
       AND (o.call_name IS NULL OR m.role = 'tool')
       AND coalesce(calls.ok, true), false) AS ok,
       -- concat, not ||: fewer copies; it differs from || only where a part is NULL, and then the
       -- message is not ok (no owner, id, name or role) and its episode goes to the per-record path
       CASE m.role
         WHEN 'tool' THEN concat('{{"content":', coalesce(to_json(m.content)::VARCHAR, 'null'), ',"name":',
              to_json(coalesce(nullif(m.name, ''), o.call_name))::VARCHAR,
              ',"role":"tool","tool_call_id":', to_json(m.tcid)::VARCHAR, '}}')
         WHEN 'assistant' THEN concat('{{"content":', coalesce(to_json(m.content)::VARCHAR, 'null'), ',"role":"assistant"',
              CASE WHEN calls.n > 0 THEN ',"tool_calls":' || calls.calls_json ELSE '' END, '}}')
         ELSE concat('{{"content":', coalesce(to_json(m.content)::VARCHAR, 'null'), ',"role":', to_json(m.role)::VARCHAR, '}}')
       END AS canon
FROM _m m LEFT JOIN calls USING (line, i) LEFT JOIN owner o USING (line, i);

CREATE OR REPLACE TEMP TABLE _ea AS
SELECT line, count(*) AS n, bool_and(coalesce(a.name IS NOT NULL AND flat_ok(p), false)) AS ok,
       '[' || string_agg('{{"arguments":' || c_flat(p) || ',"name":' || to_json(a.name)::VARCHAR || '}}', ',' ORDER BY k)
       || ']' AS canon
FROM (SELECT line, a, k, CASE WHEN json_type(a.arguments) = 'OBJECT' THEN kv(a.arguments) END AS p
      FROM (SELECT line, unnest(r.expected_actions) AS a, generate_subscripts(r.expected_actions, 1) AS k
            FROM _e))
GROUP BY line;

CREATE OR REPLACE TEMP TABLE _ep AS
WITH msg AS (
    -- every tool message answers its own call (checked in _mc), so as many tool messages as calls
    -- means every call is answered
    SELECT line, count(*) AS n, bool_and(ok) AS ok, count(*) FILTER (WHERE role = 'assistant') AS n_asst,
           count(*) FILTER (WHERE role = 'tool') = sum(n_calls) AS paired,
           count(canon) AS n_canon  -- the messages text itself is joined in Arrow (episode_messages)
    FROM _mc GROUP BY line
), t AS (  -- the scalars only: carrying the messages struct through the joins costs
    SELECT line, info_j, CASE WHEN json_type(info_j) = 'OBJECT' THEN kv(info_j) END AS info_p,
           {{'episode_id': r.episode_id, 'run_id': r.run_id, 'iteration': r.iteration, 'task_id': r.task_id,
             'group_id': r.group_id, 'policy': r.policy, 'outcome': r.outcome, 'success': r.success,
             'status': r.status}} AS r, json_extract_string(st, '$.iteration') AS iteration_type
    FROM _e
), e AS (
    SELECT t.line, t.r.episode_id AS episode_id,
        CASE WHEN {cli_run} IS NOT NULL THEN {cli_run}
             WHEN t.r.run_id IS NULL THEN {default_run}
             ELSE coalesce(nullif(t.r.run_id, ''), 'default') END AS run_id,
        coalesce(t.r.iteration, 0) AS iteration, t.r.task_id AS task_id, nullif(t.r.group_id, '') AS group_id0,
        t.r.policy AS policy, t.r.outcome AS outcome, t.r.success AS success0, coalesce(t.r.status, 'ok') AS status,
        CASE WHEN t.info_j IS NULL OR json_type(t.info_j) = 'NULL' THEN '{{}}'
             WHEN flat_ok(t.info_p) THEN c_flat(t.info_p) END AS info,
        -- nested info (lists, objects): its text, made canonical in Python (nested_info)
        CASE WHEN json_type(t.info_j) = 'OBJECT' AND NOT flat_ok(t.info_p) THEN t.info_j::VARCHAR END AS info_raw,
        coalesce(ea.canon, '[]') AS expected_actions, msg.n_canon, msg.n_asst,
        coalesce(t.r.task_id IS NOT NULL AND abs(t.r.outcome) < 1e15 AND coalesce(t.r.status, 'ok') IN ('ok', 'error')
        AND (t.iteration_type IS NULL OR t.r.iteration IS NOT NULL)
        AND (t.info_j IS NULL OR json_type(t.info_j) IN ('NULL', 'OBJECT'))
        AND coalesce(ea.ok, true)
        AND coalesce(msg.n, 0) > 0 AND msg.ok AND msg.paired
        AND (msg.n_asst > 0 OR t.r.status = 'error'), false) AS eligible
    FROM t LEFT JOIN msg USING (line) LEFT JOIN _ea ea USING (line)
)
SELECT *, coalesce(group_id0, run_id || '/' || iteration::VARCHAR || '/' || task_id) AS group_id,
       coalesce(success0, outcome >= 1.0 - 1e-9) AS success,
       -- the text that records.normalize_episode hashes, minus the messages in the middle: Python
       -- hashes head + messages + tail (hashlib is ~3x faster than DuckDB's sha256 and needs no copy
       -- of the long text); concat, not ||: every part is non-NULL here
       concat('{{"expected_actions":', expected_actions,
           ',"group_id":', to_json(coalesce(group_id0, run_id || '/' || iteration::VARCHAR || '/' || task_id))::VARCHAR,
           ',"info":') AS hash_pre,
       concat(',"iteration":', iteration::VARCHAR, ',"messages":') AS hash_mid,
       concat(',"outcome":', outcome::VARCHAR, ',"policy":', coalesce(to_json(policy)::VARCHAR, 'null'),
           ',"run_id":', to_json(run_id)::VARCHAR, ',"status":', to_json(status)::VARCHAR,
           ',"success":', (CASE WHEN coalesce(success0, outcome >= 1.0 - 1e-9) THEN 'true' ELSE 'false' END),
           ',"task_id":', to_json(task_id)::VARCHAR, '}}') AS hash_tail
FROM e WHERE eligible AND n_canon > 0;
"""

_TURNS = r"""
-- the assistant messages of the eligible episodes with their calls' checks; turn numbers and the
-- texts around each turn (observation, user text, previous user text) are added in Arrow
-- (turn_texts), where a sort of the messages replaces a window and an ordered aggregate
CREATE OR REPLACE TEMP TABLE _t AS
WITH first_call AS (
    SELECT cc.line, cc.i, cc.name, cc.p, cc.args_text, cc.perr, cc.raw, list_transform(cc.p, lambda x: x.k) AS keys
    FROM _cc cc SEMI JOIN _ep USING (line) WHERE cc.c = 0
), bad_key AS (  -- schema checks of the first call's arguments, key by key
    SELECT f.line, f.i,
           bool_or(pr.tool IS NOT NULL AND (NOT list_contains(pr.kinds, c_kind(f.x.t, f.x.v))
                   OR (pr.enum IS NOT NULL AND NOT list_contains(pr.enum, f.x.v::VARCHAR)))) AS bad
    FROM (SELECT line, i, name, unnest(p) AS x FROM first_call) f
    LEFT JOIN _tools_props pr ON pr.tool = f.name AND pr.key = f.x.k
    GROUP BY f.line, f.i
)
SELECT m.line, m.i::INTEGER AS msg_idx,
       CASE WHEN m.invalid THEN 'invalid' WHEN m.n_calls > 0 THEN 'tool_call' ELSE 'message' END AS kind,
       fc.name AS tool_name, CASE WHEN fc.perr THEN fc.raw ELSE fc.args_text END AS tool_args,
       m.n_calls::INTEGER AS n_tool_calls,
       CASE WHEN m.n_calls > 1 THEN m.calls_json END AS tool_calls,
       CASE WHEN fc.name IS NOT NULL THEN tl.is_write END AS is_write,
       CASE WHEN m.invalid THEN true WHEN m.n_calls = 0 THEN false ELSE
            ({has_names} AND NOT coalesce(tl.known, false))
            OR coalesce(tl.has_schema AND (NOT list_has_all(fc.keys, tl.required)
                        OR (tl.forbid_extra AND NOT list_has_all(tl.allowed, fc.keys))
                        OR coalesce(bk.bad, false)), false)
       END AS call_error,  -- turn_texts adds an observation that starts with "error"
       m.content AS text
FROM (SELECT * FROM _mc SEMI JOIN _ep USING (line) WHERE role = 'assistant') m
LEFT JOIN first_call fc ON fc.line = m.line AND fc.i = m.i
LEFT JOIN _tools tl ON tl.tool = fc.name
LEFT JOIN bad_key bk ON bk.line = m.line AND bk.i = m.i;
"""
# an observation that starts (after white space) with "error" makes the call a tool error
# (records.segment_turns); RE2, as in DuckDB
_ERROR_RE = r"^[\s\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]*(error|Error|ERROR)"


def content_hashes(head: pa.ChunkedArray, body: pa.ChunkedArray, tail: pa.ChunkedArray) -> pa.Array:
    """``sha256(head + body + tail)[:32]`` per row, as ``records.normalize_episode`` computes it.

    Why here and not in SQL: DuckDB's sha256 ran at ~200 MB/s, hashlib at several times that; the
    long middle part (the messages) is hashed straight from the Arrow buffer, without a Python string.
    """
    body = body.combine_chunks().cast(pa.large_binary())
    if len(body) == 0:
        return pa.array([], pa.string())
    offsets = memoryview(body.buffers()[1]).cast("q")[body.offset:body.offset + len(body) + 1]
    data = memoryview(body.buffers()[2] or b"")
    out = []
    for k, (h, t) in enumerate(zip(head.to_pylist(), tail.to_pylist())):
        d = hashlib.sha256(h.encode("utf-8"))
        d.update(data[offsets[k]:offsets[k + 1]])
        d.update(t.encode("utf-8"))
        out.append(d.hexdigest()[:32])
    return pa.array(out, pa.string())


def episode_messages(lines: pa.ChunkedArray, canon: pa.Table) -> pa.Array:
    """Each episode's messages text, ``[`` + its messages' canonical texts joined by ``,`` + ``]``.

    ``canon``: ``(line, canon)`` sorted by line and message index, the lines of ``lines`` (sorted).
    Why in Arrow: a sort and one ``binary_join`` took 0.045 s per 5,000 episodes where the ordered
    ``string_agg(canon, ',' ORDER BY i)`` per episode took ~0.1 s.
    """
    ln = canon["line"].to_numpy()
    if len(ln) == 0:
        return pa.array([], pa.string())
    starts = np.flatnonzero(np.r_[True, ln[1:] != ln[:-1]])
    if not np.array_equal(ln[starts], lines.to_numpy()):
        raise RuntimeError("fast ingest: the messages do not line up with the episodes")
    texts = pa.ListArray.from_arrays(pa.array(np.r_[starts, len(ln)], pa.int32()), canon["canon"].combine_chunks())
    return pc.binary_join_element_wise("[", pc.binary_join(texts, ","), "]", "")


def _sorted(tbl: pa.Table, second: str) -> pa.Table:
    """``tbl`` sorted by line and ``second`` (unique together). Why not ORDER BY: the messages mostly come
    out of DuckDB in that order already, and a check plus, when needed, Arrow's sort cost a third of
    DuckDB's sort of the long texts."""
    line, sub = tbl["line"].to_numpy(), tbl[second].to_numpy()
    if np.all((line[1:] > line[:-1]) | ((line[1:] == line[:-1]) & (sub[1:] > sub[:-1]))):
        return tbl
    return tbl.sort_by([("line", "ascending"), (second, "ascending")])


def _joined_groups(keys: np.ndarray, texts: pa.Array, sep: str) -> tuple[np.ndarray, pa.Array]:
    """``(group keys, texts joined by sep)`` of the runs of equal ``keys`` (sorted)."""
    if len(keys) == 0:
        return keys, pa.array([], pa.string())
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    lists = pa.ListArray.from_arrays(pa.array(np.r_[starts, len(keys)], pa.int32()), texts)
    return keys[starts], pc.binary_join(lists, sep)


def _lookup(keys: np.ndarray, values: pa.Array, want: np.ndarray) -> pa.Array:
    """``values`` at ``want`` in the sorted, unique ``keys``; NULL where a key is missing."""
    if len(keys) == 0:
        return pa.nulls(len(want), pa.string())
    pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return values.take(pa.array(pos, mask=keys[pos] != want))  # a null index takes a NULL


def turn_texts(turns: pa.Table, msgs: pa.Table) -> pa.Table:
    """The turn rows completed as ``records.segment_turns`` makes them: turn index, the tool results and
    the user text after each assistant message (to the next one), the last user text before it, and
    ``tool_error`` when a call's observation starts with "error".

    ``turns``: the assistant messages from SQL (``_t``), sorted by line and message index; ``msgs``:
    every message ``(line, i, role, content)`` of the same episodes, sorted the same way. Why here: a
    window and ordered aggregates over every message cost DuckDB ~0.2 s per 5,000 episodes; on sorted
    arrays these are running sums and one ``binary_join`` per text.
    """
    line = msgs["line"].to_numpy()
    n = len(line)
    role, content = msgs["role"].combine_chunks(), msgs["content"].combine_chunks()
    is_a = pc.fill_null(pc.equal(role, "assistant"), False).to_numpy(zero_copy_only=False)
    first = np.maximum.accumulate(np.where(np.r_[True, line[1:] != line[:-1]], np.arange(n), 0)) if n else line
    done = np.cumsum(is_a)  # assistant messages up to and including each message, over the whole chunk
    turn = done - np.where(first > 0, done[first - 1], 0) - 1  # -1 before an episode's first assistant message
    if not (np.array_equal(line[is_a], turns["line"].to_numpy())
            and np.array_equal(msgs["i"].to_numpy()[is_a], turns["msg_idx"].to_numpy())):
        raise RuntimeError("fast ingest: the turns do not line up with the messages")
    key = line * (int(turn.max(initial=0)) + 2) + turn + 1  # (line, turn) as one sortable number
    a_key = key[is_a]
    tool = pc.fill_null(pc.equal(role, "tool"), False).to_numpy(zero_copy_only=False) & (turn >= 0)
    user = (pc.fill_null(pc.equal(role, "user"), False).to_numpy(zero_copy_only=False)
            & pc.is_valid(content).to_numpy(zero_copy_only=False))
    obs_keys, obs = _joined_groups(key[tool], pc.fill_null(content.filter(pa.array(tool)), ""), "\n")
    ut_keys, ut = _joined_groups(key[user & (turn >= 0)], content.filter(pa.array(user & (turn >= 0))), "\n")
    observation = _lookup(obs_keys, obs, a_key)
    # the last user text before each message, in its own episode
    last = np.maximum.accumulate(np.where(user, np.arange(n), -1)) if n else line
    before = np.r_[-1, last[:-1]] if n else line
    prev_user = content.take(pa.array(before[is_a], mask=(before < first)[is_a]))
    erred = pc.fill_null(pc.match_substring_regex(observation, _ERROR_RE), False)
    tool_error = pc.or_(turns["call_error"], pc.and_(pc.greater(turns["n_tool_calls"], 0), erred))
    cols = {"line": turns["line"], "turn_idx": pa.array(turn[is_a], pa.int32()), "msg_idx": turns["msg_idx"],
            "kind": turns["kind"], "tool_name": turns["tool_name"], "tool_args": turns["tool_args"],
            "n_tool_calls": turns["n_tool_calls"], "tool_calls": turns["tool_calls"], "is_write": turns["is_write"],
            "tool_error": tool_error, "text": turns["text"], "observation": observation,
            "user_text": _lookup(ut_keys, ut, a_key), "prev_user_text": prev_user}
    return pa.table(cols)


def nested_info(info: pa.ChunkedArray, raw: pa.ChunkedArray) -> pa.Array:
    """``info`` with the nested ones (NULL there, their text in ``raw``) made canonical as
    ``records.canonical_json`` makes them. Why Python: the canonical text of any JSON value (sorted
    keys at every depth, whole numbers as integers) is one call here and a recursion SQL does not
    have; calib's own rollouts carry nested info (per-turn progress, the reward's details)."""
    if raw.null_count == len(raw):  # the common case: every info is flat
        return info.combine_chunks() if isinstance(info, pa.ChunkedArray) else info
    out = info.to_pylist()
    for k, text in enumerate(raw.to_pylist()):
        if text is not None:
            out[k] = canonical_json(json.loads(text))
    return pa.array(out, pa.string())


def _with_hashes(eps: pa.Table) -> pa.Table:
    """``content_hash`` from ``hash_pre``/``info``/``hash_mid``/``messages``/``hash_tail``; the default
    episode id is the hash."""
    info = nested_info(eps["info"], eps["info_raw"])
    eps = eps.set_column(eps.schema.get_field_index("info"), "info", info)
    head = pc.binary_join_element_wise(eps["hash_pre"], info, eps["hash_mid"], "")
    h = content_hashes(head, eps["messages"], eps["hash_tail"])
    eps = eps.drop_columns(["info_raw", "hash_pre", "hash_mid", "hash_tail"]).append_column("content_hash", h)
    i = eps.schema.get_field_index("episode_id")
    return eps.set_column(i, "episode_id", pc.coalesce(eps["episode_id"], h))


class FastChunk:
    """One chunk's result: eligible episodes and their turns (Arrow), and the lines left for the slow path."""

    def __init__(self, episodes: pa.Table, turns: pa.Table, slow: list[int]):
        self.episodes, self.turns, self.slow = episodes, turns, slow


class FastNative:
    """Runs the SQL over chunks of ``(line, text)``; one DuckDB connection for the whole file."""

    def __init__(self, catalogue: ToolCatalogue, *, cli_run: str | None, default_run: str, threads: int = 1):
        # dump text arrives as registered Arrow rows; the connection reaches no file (calib.sqlutil.lock)
        self.con = locked_connection(threads=threads)
        tools, props, self.unsupported = catalogue_tables(catalogue)
        self.con.register("_tools_arrow", tools)
        self.con.register("_props_arrow", props)
        self.con.execute("CREATE TEMP TABLE _tools AS SELECT * FROM _tools_arrow")
        self.con.execute("CREATE TEMP TABLE _tools_props AS SELECT * FROM _props_arrow")
        self.con.execute(_MACROS)
        self.episodes_sql = _EPISODES.format(max_line=MAX_LINE_BYTES, typed=sql_literal(json.dumps(TYPED)),
                                             top_keys=sql_list(TOP_KEYS),
                                             lenient=sql_literal(LENIENT_RE),
                                             cli_run=sql_literal(cli_run), default_run=sql_literal(default_run))
        self.turns_sql = _TURNS.format(has_names="true" if catalogue.tool_names else "false")
        lock(self.con)

    def close(self) -> None:
        self.con.close()

    def profile(self, lines: list[int], texts: list[str], repeat: int = 3) -> list[tuple[str, float]]:
        """``(table, seconds)`` per SQL statement of ``run`` on one chunk, the least CPU time of
        ``repeat`` runs (``bench/ingest.py --sql-profile``): where the fast path's time goes."""
        steps = [s for s in re.split(r";\s*\n", self.episodes_sql + "\n" + self.turns_sql) if s.strip()]
        best: dict[str, float] = {}
        raw = pa.table({"line": pa.array(lines, pa.int64()), "j": pa.array(texts, pa.large_string())})
        self.con.register("_raw", raw)
        try:
            for _ in range(repeat):
                for sql in steps:
                    name = re.search(r"TEMP TABLE (\w+)", sql).group(1)  # type: ignore[union-attr]
                    t = time.process_time()
                    self.con.execute(sql)
                    best[name] = min(best.get(name, float("inf")), time.process_time() - t)
        finally:
            self.con.unregister("_raw")
        return list(best.items())

    def run(self, lines: list[int], texts: list[str]) -> FastChunk:
        raw = pa.table({"line": pa.array(lines, pa.int64()), "j": pa.array(texts, pa.large_string())})
        self.con.register("_raw", raw)
        try:
            self.con.execute(self.episodes_sql)
            if self.unsupported:  # calls to tools whose schema the SQL cannot check: per-record path
                self.con.execute("DELETE FROM _ep WHERE line IN (SELECT line FROM _cc WHERE list_contains(?, name))",
                                 [self.unsupported])
            self.con.execute(self.turns_sql)
            eps = self.con.sql(
                "SELECT line, episode_id, run_id, iteration, task_id, group_id, policy, outcome, success, status, "
                "n_asst::INTEGER AS n_turns, expected_actions, info, info_raw, hash_pre, hash_mid, hash_tail "
                "FROM _ep ORDER BY line"
            ).to_arrow_table()
            msgs = _sorted(self.con.sql("SELECT line, i, role, content, canon FROM _mc SEMI JOIN _ep USING (line)")
                           .to_arrow_table(), "i")
            canon = msgs.select(["line", "canon"]).filter(pc.is_valid(msgs["canon"]))
            eps = _with_hashes(eps.add_column(eps.schema.get_field_index("expected_actions"), "messages",
                                              episode_messages(eps["line"], canon)))
            turns = turn_texts(_sorted(self.con.sql("SELECT * FROM _t").to_arrow_table(), "msg_idx"), msgs)
            fast = set(eps.column("line").to_pylist())
        finally:
            self.con.unregister("_raw")
        slow = [n for n in lines if n not in fast]
        return FastChunk(eps, turns, slow)


def run_chunks(chunks: Iterator[tuple[list[int], list[str], list[tuple[int, str, bytes | str]]]],
               catalogue: ToolCatalogue, *, cli_run: str | None, default_run: str, threads: int = 1
               ) -> Iterator[tuple[FastChunk, list[int], list[str], list[tuple[int, str, bytes | str]]]]:
    """The SQL over every chunk, in file order, on one DuckDB connection.

    One thread by default: on the 2-core machines this was measured on, under load, a second DuckDB
    thread (or a second worker process) made the ingest slower, not faster (``CALIB_INGEST_THREADS``).
    """
    fast = FastNative(catalogue, cli_run=cli_run, default_run=default_run, threads=threads)
    try:
        for lines, texts, bad in chunks:
            yield fast.run(lines, texts), lines, texts, bad
    finally:
        fast.close()


def iter_line_chunks(path: Path, size: int = CHUNK_LINES, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
                     ) -> Iterator[tuple[list[int], list[str], list[tuple[int, str, bytes | str]]]]:
    """``(lines, texts, rejected)`` per chunk of non-blank lines: ``rejected`` holds ``(line, reason,
    raw)`` for the lines the reader refuses (not UTF-8, nested deeper than ``MAX_DEPTH``, longer than
    ``max_bytes``, cut by the end of a file that shrank), which the per-record path quarantines.

    A chunk ends after ``size`` lines or ``CHUNK_BYTES`` of text, so memory is bounded by the record
    size limit, not by the input; a refused line keeps at most ``RAW_KEPT`` bytes.
    """
    lines: list[int] = []
    texts: list[str] = []
    rejected: list[tuple[int, str, bytes | str]] = []
    held = 0
    with open(path, "rb") as f:
        for lineno, raw, err in iter_lines(f, max_bytes):
            text = None
            if err is None:
                text, err = decode_line(raw)
            if err is not None:
                rejected.append((lineno, err, (raw if text is None else text)[:RAW_KEPT]))
            else:
                texts.append(text)  # type: ignore[arg-type]
                lines.append(lineno)
                held += len(raw)
            if len(lines) + len(rejected) >= size or held >= CHUNK_BYTES:
                yield lines, texts, rejected
                lines, texts, rejected, held = [], [], [], 0
    if lines or rejected:
        yield lines, texts, rejected


def to_store_tables(chunk: FastChunk, keep: set[int] | None, *, source: str, ingest_id: str) -> tuple[pa.Table, pa.Table]:
    """The accepted episodes and their turns in the store's schemas (``keep``: lines to keep, None = all)."""
    eps, turns = chunk.episodes, chunk.turns
    if keep is not None:
        import pyarrow.compute as pc

        ks = pa.array(sorted(keep), pa.int64())
        eps = eps.filter(pc.is_in(eps["line"], value_set=ks))
        turns = turns.filter(pc.is_in(turns["line"], value_set=ks))
    n = eps.num_rows
    ep_cols = {f.name: eps[f.name].cast(f.type) for f in schema.EPISODES if f.name in eps.column_names}
    ep_cols["source"] = pa.array([source] * n, pa.string())
    ep_cols["source_line"] = eps["line"]
    ep_cols["ingest_id"] = pa.array([ingest_id] * n, pa.string())
    ep_tbl = pa.table({f.name: ep_cols[f.name].cast(f.type) for f in schema.EPISODES}, schema=schema.EPISODES)
    # turns carry the line; map to the episode id
    import pyarrow.compute as pc

    idx = pc.index_in(turns["line"], value_set=eps["line"])
    t_cols = {"episode_id": pc.take(ep_tbl["episode_id"], idx)}
    for f in schema.TURNS:
        if f.name != "episode_id":
            t_cols[f.name] = turns[f.name].cast(f.type)
    t_tbl = pa.table({f.name: t_cols[f.name] for f in schema.TURNS}, schema=schema.TURNS)
    return ep_tbl, t_tbl
