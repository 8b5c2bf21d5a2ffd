"""The built-in per-turn signals of docs/architecture.md section 3, computed for one episode in plain Python.

This is the readable definition of every built-in and what the trainer uses for rollouts that are
not in a store; ``calib.signals.sql`` computes the same values for a whole store in one DuckDB
query, and a test checks that the two agree turn for turn.

Conventions: a value is 1.0 when the signal fires on the turn and 0.0 when it does not; ``None``
means "cannot be measured here" (``gold_match``/``soft_match``/``soft_match_score`` without expected actions,
``progress`` without ``info["progress"]``). A turn's calls are its ``tool_calls`` (tau-bench agents
make one per message; with several, a call-level signal fires if any call fires).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from calib.records import is_error_observation, segment_turns
from calib.signals.matching import arg_share, call_key, schema_ok
from calib.tools import ToolCatalogue

# Explicit confirmation in the user's last message before a write ("yes", "go ahead", ...), unless
# the message opens with a refusal or says "don't proceed"/"not yet". RE2-compatible, so that the
# SQL implementation uses the very same patterns.
CONFIRM_PATTERN = r"(?i)\b(yes|yeah|yep|yup|sure|confirm|confirmed|confirms|go ahead|proceed|please do|do it|correct)\b"
NEGATION_PATTERN = (
    r"(?i)(^\W*(no|nope|not|wait|hold on|stop)\b)|"
    r"(\b(don'?t|do not|not|never)\s+(proceed|go ahead|confirm|do it)\b)|(\bnot yet\b)"
)
CHARS_PER_TOKEN = 4  # the usual rule of thumb for BPE tokenizers on English text and JSON

_CONFIRM = re.compile(CONFIRM_PATTERN.removeprefix("(?i)"), re.IGNORECASE | re.ASCII)
_NEGATION = re.compile(NEGATION_PATTERN.removeprefix("(?i)"), re.IGNORECASE | re.ASCII)

# name -> (version, one-line description). Bump a version when its definition changes: the store
# keeps values per version and recomputes a signal whose version is not the current one.
BUILTIN_SIGNALS: dict[str, tuple[str, str]] = {
    "gold_match": ("1", "tool call equals a not-yet-matched expected action (deep argument comparison)"),
    "soft_match": ("1", "tool name of an expected action, with arguments that differ from every such action"),
    "soft_match_score": ("1", ("graded soft_match: 0.5 + 0.5 x the best share of an expected action's "
                               "arguments that the call matches (0 where soft_match is 0)")),
    "read_only": ("1", "call to a read-only tool"),
    "state_change": ("1", "call to a state-changing tool that is not gold"),
    "tool_error": ("1", "unparseable call, unknown tool, schema-invalid arguments, or an error result"),
    "valid_call": ("1", "parseable call to a known tool with schema-valid arguments (the naive +0.3 bonus)"),
    "redundant_call": ("1", "identical call (same tool, same normalised arguments) made earlier in the episode"),
    "message_only": ("1", "assistant turn with no tool call (a message to the user)"),
    "confirm_before_write": ("1", "write call whose preceding user message gives explicit confirmation"),
    "progress": ("1", "increase at this turn of the share of expected database changes that hold"),
    "turn_tokens": ("1", "length of the assistant message (text + tool calls) in tokens, at 4 characters a token"),
}


def is_confirmation(text: str | None) -> bool:
    """Explicit confirmation words, and no refusal (see CONFIRM_PATTERN / NEGATION_PATTERN)."""
    return bool(text) and _CONFIRM.search(text) is not None and _NEGATION.search(text) is None


def count_tokens(turn: dict[str, Any]) -> int:
    """ceil(characters / 4) of the message text and its tool calls (name + JSON arguments).

    Tokenizer-free on purpose: the analysis must not depend on which model produced the rollouts,
    and a character count is one ``length()`` in SQL.
    """
    calls = turn.get("tool_calls") or f"{turn.get('tool_name') or ''}{turn.get('tool_args') or ''}"
    n = len(turn.get("text") or "") + len(calls)
    return -(-n // CHARS_PER_TOKEN)


def turn_calls(turn: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, arguments) of each call of a ``tool_call`` turn, in order."""
    if turn["kind"] != "tool_call":
        return []
    if turn.get("n_tool_calls", 1) > 1 and turn.get("tool_calls"):
        return [(c["name"], c.get("arguments", {})) for c in json.loads(turn["tool_calls"])]
    return [(turn["tool_name"], turn["tool_args"])]


def progress_increments(info: Any, n_turns: int) -> list[float | None]:
    """p_t - p_{t-1} (p_{-1} = 0) from ``info["progress"]``; None where absent or not a number."""
    p = info.get("progress") if isinstance(info, dict) else None
    if not isinstance(p, list):
        return [None] * n_turns

    def num(x: Any) -> float | None:
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None

    out: list[float | None] = []
    for t in range(n_turns):
        cur = num(p[t]) if t < len(p) else None
        prev = 0.0 if t == 0 else (num(p[t - 1]) if t - 1 < len(p) else None)
        out.append(None if cur is None or prev is None else cur - prev)
    return out


def episode_signals(
    episode: dict[str, Any],
    catalogue: ToolCatalogue,
    names: Iterable[str] | None = None,
    *,
    turns: list[dict[str, Any]] | None = None,
) -> dict[str, list[float | None]]:
    """Every requested built-in signal for one canonical episode: ``{name: [value per turn]}``.

    ``turns`` defaults to ``segment_turns(episode, catalogue)``.
    """
    wanted = list(BUILTIN_SIGNALS) if names is None else list(names)
    unknown = [n for n in wanted if n not in BUILTIN_SIGNALS]
    if unknown:
        raise KeyError(f"not a built-in signal: {', '.join(unknown)}")
    turns = segment_turns(episode, catalogue) if turns is None else turns
    expected = episode.get("expected_actions") or []
    has_expected = bool(expected)
    exp_keys = [call_key(a["name"], a.get("arguments", {}), catalogue) for a in expected]
    remaining = Counter(exp_keys)
    exp_key_set = set(exp_keys)
    exp_names = {a["name"] for a in expected}
    exp_args: dict[str, list[Any]] = {}
    for a in expected:
        exp_args.setdefault(a["name"], []).append(a.get("arguments", {}))
    seen: set[str] = set()
    out: dict[str, list[float | None]] = {n: [] for n in wanted}
    progress = progress_increments(episode.get("info"), len(turns))

    for t, turn in enumerate(turns):
        gold = soft = redundant = write_not_gold = has_read = has_write = False
        soft_score = 0.0
        all_ok = True
        calls = turn_calls(turn)
        for name, args in calls:
            k = call_key(name, args, catalogue)
            is_gold = remaining[k] > 0
            if is_gold:
                remaining[k] -= 1
            gold |= is_gold
            is_soft = (not is_gold) and name in exp_names and k not in exp_key_set
            soft |= is_soft
            if is_soft:
                share = max(arg_share(name, args, ea, catalogue) for ea in exp_args[name])
                soft_score = max(soft_score, 0.5 + 0.5 * share)
            redundant |= k in seen
            seen.add(k)
            w = catalogue.is_write(name)
            has_write |= w is True
            write_not_gold |= (w is True) and not is_gold
            has_read |= w is False
            all_ok &= schema_ok(name, args, catalogue)
        is_call = turn["kind"] == "tool_call"
        error = turn["kind"] == "invalid" or bool(turn.get("tool_error")) or (
            is_call and (not all_ok or is_error_observation(turn.get("observation")))
        )
        values = {
            "gold_match": float(gold) if has_expected else None,
            "soft_match": float(soft) if has_expected else None,
            "soft_match_score": soft_score if has_expected else None,
            "read_only": float(has_read),
            "state_change": float(write_not_gold),
            "tool_error": float(error),
            "valid_call": float(is_call and all_ok),
            "redundant_call": float(redundant),
            "message_only": float(turn["kind"] == "message"),
            "confirm_before_write": float(has_write and is_confirmation(turn.get("prev_user_text"))),
            "progress": progress[t],
            "turn_tokens": float(count_tokens(turn)),
        }
        for n in wanted:
            out[n].append(values[n])
    return out
