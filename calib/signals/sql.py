"""The built-in signals for many episodes at once, in DuckDB (same definitions as ``builtin.py``).

Only one thing needs Python: the normal form of each *distinct* (tool, arguments) pair
(``matching.call_key``, schema validation, write flag), which is computed once per pair and joined
back. The rest is set logic: a call is gold when fewer copies of the same normalised call came
before it in the episode than the episode's expected actions hold (the greedy "match each expected
action at most once, in turn order" rule, without a loop); redundant when one came before it at all. ``soft_match_score`` needs the share of an expected
action's arguments that a call matches: computed in Python (``matching.arg_share``) once per distinct
(tool, call arguments, expected arguments) triple of the same episode, and joined back.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pandas as pd

from calib.signals.builtin import CHARS_PER_TOKEN, CONFIRM_PATTERN, NEGATION_PATTERN
from calib.signals.matching import arg_share, call_facts_row
from calib.sqlutil import sql_literal
from calib.tools import ToolCatalogue

_TURNS_SQL = """
CREATE OR REPLACE TEMP TABLE _t AS
SELECT t.episode_id, t.turn_idx, t.kind, t.tool_name, t.tool_args, t.n_tool_calls, t.tool_calls, t.tool_error,
       length(coalesce(t.text, '')) + coalesce(length(t.tool_calls),
           length(coalesce(t.tool_name, '')) + length(coalesce(t.tool_args, ''))) AS n_chars,
       regexp_matches(coalesce(t.observation, ''), '^\\s*(error|Error|ERROR)') AS error_obs,
       regexp_matches(coalesce(t.prev_user_text, ''), $confirm)
           AND NOT regexp_matches(coalesce(t.prev_user_text, ''), $negation) AS confirmed
FROM turns t JOIN _e USING (episode_id)
"""

_CALLS_SQL = """
CREATE OR REPLACE TEMP TABLE _calls AS
SELECT episode_id, turn_idx, 0 AS call_idx, tool_name AS name, coalesce(tool_args, '{}') AS args
FROM _t WHERE kind = 'tool_call' AND (n_tool_calls <= 1 OR tool_calls IS NULL)
UNION ALL
SELECT episode_id, turn_idx, i AS call_idx,
       json_extract_string(tool_calls, '$[' || i || '].name') AS name,
       coalesce(json_extract(tool_calls, '$[' || i || '].arguments')::VARCHAR, '{}') AS args
FROM (SELECT episode_id, turn_idx, tool_calls, unnest(range(json_array_length(tool_calls)::BIGINT)) AS i
      FROM _t WHERE kind = 'tool_call' AND n_tool_calls > 1 AND tool_calls IS NOT NULL)
"""

_EXPECTED_SQL = """
CREATE OR REPLACE TEMP TABLE _exp AS
SELECT episode_id,
       json_extract_string(expected_actions, '$[' || i || '].name') AS name,
       coalesce(json_extract(expected_actions, '$[' || i || '].arguments')::VARCHAR, '{}') AS args
FROM (SELECT episode_id, expected_actions, unnest(range(json_array_length(expected_actions)::BIGINT)) AS i
      FROM _e WHERE expected_actions IS NOT NULL)
"""

_SIGNALS_SQL = """
WITH c AS (
    SELECT c.*, f.key, f.ok, f.w FROM _calls c JOIN _facts f ON c.name = f.name AND c.args = f.args
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY episode_id, key ORDER BY turn_idx, call_idx) - 1 AS occ FROM c
), ek AS (
    SELECT x.episode_id, f.key, count(*) AS n
    FROM _exp x JOIN _facts f ON x.name = f.name AND x.args = f.args GROUP BY ALL
), en AS (
    SELECT DISTINCT episode_id, name FROM _exp
), sh AS (
    SELECT c.episode_id, c.turn_idx, c.call_idx, max(s.share) AS share
    FROM _calls c JOIN _exp x ON c.episode_id = x.episode_id AND c.name = x.name
    JOIN _shares s ON s.name = c.name AND s.cargs = c.args AND s.eargs = x.args
    GROUP BY ALL
), per_call AS (
    SELECT r.episode_id, r.turn_idx, r.occ < coalesce(ek.n, 0) AS gold,
           (en.name IS NOT NULL AND ek.n IS NULL) AS soft, r.occ > 0 AS redundant, r.ok, r.w,
           coalesce(sh.share, 0.0) AS share
    FROM ranked r
    LEFT JOIN ek ON r.episode_id = ek.episode_id AND r.key = ek.key
    LEFT JOIN en ON r.episode_id = en.episode_id AND r.name = en.name
    LEFT JOIN sh ON r.episode_id = sh.episode_id AND r.turn_idx = sh.turn_idx AND r.call_idx = sh.call_idx
), per_turn AS (
    SELECT episode_id, turn_idx, bool_or(gold) AS gold, bool_or(soft) AS soft, bool_or(redundant) AS redundant,
           max(CASE WHEN soft THEN 0.5 + 0.5 * share END) AS soft_score,
           bool_and(ok) AS all_ok, bool_or(coalesce(w, false) AND NOT gold) AS write_not_gold,
           bool_or(coalesce(w, false)) AS has_write, bool_or(w = false) AS has_read
    FROM per_call GROUP BY ALL
), prog AS (
    SELECT t.episode_id, t.turn_idx, json_extract(e.progress, t.turn_idx::BIGINT) AS cur,
           CASE WHEN t.turn_idx = 0 THEN '0'::JSON ELSE json_extract(e.progress, t.turn_idx::BIGINT - 1) END AS prev
    FROM _t t JOIN _e e USING (episode_id) WHERE e.progress IS NOT NULL
)
SELECT t.episode_id, t.turn_idx,
       CASE WHEN e.has_exp THEN coalesce(p.gold, false)::DOUBLE END AS gold_match,
       CASE WHEN e.has_exp THEN coalesce(p.soft, false)::DOUBLE END AS soft_match,
       CASE WHEN e.has_exp THEN coalesce(p.soft_score, 0.0)::DOUBLE END AS soft_match_score,
       coalesce(p.has_read, false)::DOUBLE AS read_only,
       coalesce(p.write_not_gold, false)::DOUBLE AS state_change,
       (t.kind = 'invalid' OR coalesce(t.tool_error, false)
        OR (t.kind = 'tool_call' AND (NOT coalesce(p.all_ok, false) OR t.error_obs)))::DOUBLE AS tool_error,
       (t.kind = 'tool_call' AND coalesce(p.all_ok, false))::DOUBLE AS valid_call,
       coalesce(p.redundant, false)::DOUBLE AS redundant_call,
       (t.kind = 'message')::DOUBLE AS message_only,
       (coalesce(p.has_write, false) AND t.confirmed)::DOUBLE AS confirm_before_write,
       CASE WHEN json_type(g.cur) IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')
             AND json_type(g.prev) IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')
            THEN g.cur::DOUBLE - g.prev::DOUBLE END AS progress,
       ceil(t.n_chars / $chars_per_token)::DOUBLE AS turn_tokens
FROM _t t
JOIN _e e USING (episode_id)
LEFT JOIN per_turn p USING (episode_id, turn_idx)
LEFT JOIN prog g USING (episode_id, turn_idx)
"""


def call_facts(pairs: pd.DataFrame, catalogue: ToolCatalogue) -> pd.DataFrame:
    """For distinct (name, args) rows: the normalised key, schema validity and write flag."""
    names = pairs["name"].tolist()
    args = pairs["args"].tolist()
    write = {n: catalogue.is_write(n) for n in set(names)}
    facts = [call_facts_row(n, a, catalogue) for n, a in zip(names, args)]
    return pd.DataFrame(
        {
            "name": names,
            "args": args,
            "key": pd.array([k for k, _ in facts], dtype="string"),
            "ok": pd.array([ok for _, ok in facts], dtype="boolean"),  # typed: a dump without calls is empty
            "w": pd.array([write[n] for n in names], dtype="boolean"),
        }
    )


def builtin_frame(
    con: duckdb.DuckDBPyConnection,
    catalogue: ToolCatalogue,
    *,
    episodes_sql: str = "SELECT episode_id FROM episodes",
    params: list | None = None,
    on_step: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Wide frame (episode_id, turn_idx, one column per built-in) for the episodes ``episodes_sql`` selects.

    ``con`` is a store connection (views ``episodes`` and ``turns``); temp tables ``_e``, ``_t``,
    ``_calls``, ``_exp`` and ``_facts`` are (re)created on it.
    """
    step = on_step or (lambda _msg: None)
    step("selecting turns")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _e AS SELECT episode_id, expected_actions, "
        "coalesce(json_array_length(expected_actions), 0) > 0 AS has_exp, "
        # info["progress"] cut out once per episode, so each turn parses a short array, not all of info
        "CASE WHEN json_type(info, '$.progress') = 'ARRAY' THEN json_extract(info, '$.progress') END AS progress "
        f"FROM episodes WHERE episode_id IN ({episodes_sql})",
        params or [],
    )
    # Only what the signals read: the long text columns are reduced to their features here.
    con.execute(_TURNS_SQL.replace("$confirm", sql_literal(CONFIRM_PATTERN)).replace("$negation", sql_literal(NEGATION_PATTERN)))
    con.execute(_CALLS_SQL)
    con.execute(_EXPECTED_SQL)
    step("normalising tool calls")
    pairs = con.execute(
        "SELECT DISTINCT name, args FROM (SELECT name, args FROM _calls UNION ALL SELECT name, args FROM _exp) "
        "WHERE name IS NOT NULL"
    ).df()
    facts = call_facts(pairs, catalogue)
    con.register("_facts_df", facts)
    con.execute("CREATE OR REPLACE TEMP TABLE _facts AS SELECT * FROM _facts_df")
    con.unregister("_facts_df")
    # Argument shares for soft_match_score: one Python call per distinct (tool, call args, expected
    # args) of a call and an expected action of the same tool in the same episode.
    triples = con.execute(
        "SELECT DISTINCT c.name, c.args AS cargs, x.args AS eargs FROM _calls c "
        "JOIN _exp x ON c.episode_id = x.episode_id AND c.name = x.name"
    ).df()
    triples["share"] = [arg_share(n, a, b, catalogue) for n, a, b in
                        zip(triples["name"].tolist(), triples["cargs"].tolist(), triples["eargs"].tolist())]
    con.register("_shares_df", triples)
    con.execute("CREATE OR REPLACE TEMP TABLE _shares AS SELECT name, cargs, eargs, share::DOUBLE AS share "
                "FROM _shares_df")
    con.unregister("_shares_df")
    step("computing signals")
    return con.execute(_SIGNALS_SQL.replace("$chars_per_token", f"{CHARS_PER_TOKEN:.1f}")).df()
