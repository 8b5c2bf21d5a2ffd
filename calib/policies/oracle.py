"""The `oracle` policy: plays the task's expected actions like a careful agent, with seeded mistakes.

Without mistakes it does what a good airline agent does: ask the customer who they are and which
reservation they mean, look the user or the reservation up before changing anything, describe the
change and wait for the customer's "yes", make the call, then say the answers the task requires. The
task's expected actions say what to do, but every identifier passed to a tool (``*_id`` arguments,
flight numbers) is first heard from the customer or read in a tool result (see :func:`_find_source`
and :func:`unsourced_identifiers`), so its episodes are demonstrations a model could learn from
without learning to invent ids. With mistakes it produces the failure modes that reward calibration must
tell apart, each kind with its own per-episode rate (so that rollouts with known causes of failure
exist on CPU, without a model):

| kind                   | what happens                                               | outcome |
|------------------------|------------------------------------------------------------|---------|
| `wrong_argument`       | one expected call (a write when there is one) gets one argument changed | usually fails |
| `extra_lookup`         | an unneeded read-only call is inserted                      | harmless |
| `skipped_confirmation` | writes are made without asking the customer first           | harmless to the reward |
| `premature_write`      | a wrong write before any lookup or confirmation (a changed copy of an expected write, or cancelling a reservation the task never mentions) | usually fails |
| `early_stop`           | the agent says goodbye before finishing the expected actions | fails |

Every mistake that was actually made is recorded in ``ctx.info["mistakes"]`` (the runner writes it to
the episode's ``info["mistakes"]``) as ``{"kind", "turn", ...details}``, so each kind is visible in the
store. A mistake that cannot apply to a task (no write to skip confirming) is not drawn.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field, fields
from typing import Any

from calib.policies.base import EpisodeContext, Policy, assistant_call, assistant_text
from calib.tools import AIRLINE_WRITE_TOOLS

MISTAKE_KINDS = ("wrong_argument", "extra_lookup", "skipped_confirmation", "premature_write", "early_stop")

_YES = re.compile(r"\b(yes|yeah|yep|sure|confirm|confirmed|proceed|go ahead|please do|correct|ok|okay|that'?s right)\b",
                  re.IGNORECASE)
_NO = re.compile(r"\b(no|nope|don'?t|do not|cancel that|stop|wait)\b", re.IGNORECASE)


@dataclass
class OracleConfig:
    """Per-episode probability of each mistake kind (each drawn independently, seeded per episode)."""

    # Parameters that control mistakes
    wrong_argument: float = field(default=0.0, metadata={"help": "Rate of changing one argument of one expected call."})
    extra_lookup: float = field(default=0.0, metadata={"help": "Rate of inserting an unneeded read-only call."})
    skipped_confirmation: float = field(default=0.0, metadata={"help": "Rate of writing without asking the user first."})
    premature_write: float = field(default=0.0, metadata={"help": "Rate of a wrong write before any lookup or confirmation."})
    early_stop: float = field(default=0.0, metadata={"help": "Rate of ending before all expected actions are done."})
    # Parameters that control style
    lookups: bool = field(default=True, metadata={"help": "Look up the user/reservation before each write, as agents should."})

    def __post_init__(self) -> None:
        for k in MISTAKE_KINDS:
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{k}={v!r} should be a probability in [0, 1]")

    @classmethod
    def uniform(cls, rate: float, **overrides: Any) -> OracleConfig:
        """Every kind at ``rate``, except the ones given explicitly."""
        return cls(**{**{k: rate for k in MISTAKE_KINDS}, **overrides})

    def rates(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in MISTAKE_KINDS}


# ----------------------------------------------------------------------------- plan


@dataclass
class Step:
    """One planned agent turn: a tool call, a confirmation question, or a message."""

    kind: str  # "call" | "confirm" | "say" | "cancel_from_lookup"
    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    mistake: dict[str, Any] | None = None  # recorded when this step is played
    truth: dict[str, Any] | None = None  # the unmutated arguments whose identifiers are sourced first
    exempt: bool = False  # a mistake step played as drawn: its identifiers are not sourced


def _args(action: dict[str, Any]) -> dict[str, Any]:
    return dict(action.get("arguments", action.get("kwargs", {})) or {})


def describe(name: str, arguments: dict[str, Any]) -> str:
    """A plain description of a call, for the confirmation question."""
    parts = ", ".join(f"{k.replace('_', ' ')}: {json.dumps(v) if not isinstance(v, str) else v}"
                      for k, v in arguments.items())
    return f"{name.replace('_', ' ')} ({parts})" if parts else name.replace("_", " ")


def _lookups_for(action: dict[str, Any], user_id: str | None) -> list[tuple[str, dict[str, Any]]]:
    """What a careful agent reads before this write."""
    a = _args(action)
    out: list[tuple[str, dict[str, Any]]] = []
    uid = a.get("user_id") or user_id
    if uid:
        out.append(("get_user_details", {"user_id": uid}))
    if "reservation_id" in a:
        out.append(("get_reservation_details", {"reservation_id": a["reservation_id"]}))
    if action["name"] == "book_reservation" and a.get("flights"):
        flights = a["flights"]
        first = flights[0]
        if a.get("origin") and a.get("destination") and isinstance(first, dict) and first.get("date"):
            outbound = len(flights) if a.get("flight_type") != "round_trip" else max(1, len(flights) // 2)
            search = "search_direct_flight" if outbound == 1 else "search_onestop_flight"
            out.append((search, {"origin": a["origin"], "destination": a["destination"], "date": first["date"]}))
    return out


def mutate_arguments(name: str, arguments: dict[str, Any], rng: random.Random,
                     schemas: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Change one leaf argument plausibly; return (new arguments, {"path", "from", "to"}) or None.

    Enum values become another allowed value (wrong cabin, wrong insurance choice), ids get one
    character changed (a wrong reservation number), numbers move (a wrong amount or bag count),
    booleans flip. Schemas, when given, supply the enums.
    """
    props = ((schemas or {}).get(name, {}).get("parameters", {}) or {}).get("properties", {})
    leaves: list[tuple[tuple[Any, ...], Any, dict[str, Any]]] = []

    def walk(v: Any, path: tuple[Any, ...], schema: dict[str, Any]) -> None:
        if isinstance(v, dict):
            sub = schema.get("properties", {}) if isinstance(schema, dict) else {}
            for k, x in v.items():
                walk(x, (*path, k), sub.get(k, {}))
        elif isinstance(v, list):
            item = schema.get("items", {}) if isinstance(schema, dict) else {}
            for i, x in enumerate(v):
                walk(x, (*path, i), item)
        elif isinstance(v, (str, int, float, bool)) and v != "":
            leaves.append((path, v, schema if isinstance(schema, dict) else {}))

    walk(arguments, (), {"properties": props})
    if not leaves:
        return None
    path, old, schema = leaves[rng.randrange(len(leaves))]
    new = _mutate_leaf(old, schema, rng)
    out = json.loads(json.dumps(arguments))
    ref = out
    for p in path[:-1]:
        ref = ref[p]
    ref[path[-1]] = new
    return out, {"path": ".".join(str(p) for p in path), "from": old, "to": new}


def _mutate_leaf(v: Any, schema: dict[str, Any], rng: random.Random) -> Any:
    enum = schema.get("enum")
    if enum and v in enum and len(enum) > 1:
        return rng.choice([e for e in enum if e != v])
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + rng.choice([1, 2, 3]) if v < 3 else v + rng.choice([-1, 1]) * max(1, v // 10)
    if isinstance(v, float):
        return round(v * rng.choice([0.5, 1.5]) + 1.0, 2)
    s = str(v)
    i = len(s) - 1 - rng.randrange(min(3, len(s)))
    ch = s[i]
    pool = "0123456789" if ch.isdigit() else ("ABCDEFGHJKLMNPQRSTUVWXYZ" if ch.isupper() else "abcdefghijkmnpqrstuvwxyz")
    return s[:i] + rng.choice([c for c in pool if c != ch]) + s[i + 1:]


def build_plan(ctx: EpisodeContext, cfg: OracleConfig, schemas: dict[str, dict[str, Any]]) -> list[Step]:
    """The turns this episode will play, with the mistakes drawn for it."""
    task, rng = ctx.task, ctx.rng
    actions = [{"name": a["name"], "arguments": _args(a)} for a in task.actions]
    writes = [i for i, a in enumerate(actions) if a["name"] in AIRLINE_WRITE_TOOLS]
    # Draw every kind (always, in a fixed order) so that one kind's rate does not shift another's draws.
    draws = {k: rng.random() < rate for k, rate in cfg.rates().items()}
    if not writes:
        draws["skipped_confirmation"] = False
    if not actions and not task.outputs:
        draws["early_stop"] = False

    if draws["wrong_argument"]:
        candidates = writes or [i for i, a in enumerate(actions) if a["arguments"]]
        if candidates:
            i = rng.choice(candidates)
            m = mutate_arguments(actions[i]["name"], actions[i]["arguments"], rng, schemas)
            if m is not None:
                actions[i] = {"name": actions[i]["name"], "arguments": m[0], "truth": actions[i]["arguments"],
                              "mistake": {"kind": "wrong_argument", "tool": actions[i]["name"], **m[1]}}

    steps: list[Step] = []
    seen: set[str] = set()

    def call(name: str, arguments: dict[str, Any], mistake: Any = None, truth: dict[str, Any] | None = None) -> None:
        key = name + json.dumps(arguments, sort_keys=True)
        if mistake is None and name not in AIRLINE_WRITE_TOOLS and key in seen:
            return  # a careful agent does not read the same thing twice
        seen.add(key)
        steps.append(Step("call", name, arguments, mistake=mistake, truth=truth))

    # Between the stages of a multi-request task, ask what else the customer needs, so that the next
    # request (and the identifiers it names) is heard before it is acted on.
    stage_ends = {max(s["actions"]) for s in (task.profile or {}).get("stages", [])[:-1] if s.get("actions")}

    for j, a in enumerate(actions):
        if a["name"] in AIRLINE_WRITE_TOOLS:
            if cfg.lookups:
                for name, args in _lookups_for(a, task.user_id):
                    call(name, args)
            if not draws["skipped_confirmation"]:
                steps.append(Step("confirm", a["name"], a["arguments"], truth=a.get("truth"),
                                  text=f"Before I go ahead, please confirm: I will {describe(a['name'], a['arguments'])}. "
                                       "Shall I proceed (yes/no)?"))
            mistake = a.get("mistake")
            if draws["skipped_confirmation"]:
                mistake = [mistake, {"kind": "skipped_confirmation", "tool": a["name"]}]
            call(a["name"], a["arguments"], mistake, a.get("truth"))
        else:
            call(a["name"], a["arguments"], a.get("mistake"), a.get("truth"))
        if j in stage_ends:
            steps.append(Step("say", text="Done. Is there anything else I can help you with?"))

    closing: list[Step] = []
    if task.kind == "forbidden":
        closing.append(Step("say", text="I am sorry, but our policy does not allow me to do that for you."))
    if task.outputs:
        closing.append(Step("say", text="Here is what you asked for: " + "; ".join(map(str, task.outputs)) + "."))
    if not (actions and actions[-1]["name"] == "transfer_to_human_agents"):
        closing.append(Step("say", text="Is there anything else I can help you with?"))

    if draws["early_stop"]:
        # Cut before one of the expected calls (or before the required answers when there are none).
        cut_points = [i for i, s in enumerate(steps) if s.kind == "call" and s.name in {a["name"] for a in actions}]
        if not cut_points:
            cut_points = [len(steps)]
            closing = [s for s in closing if not s.text.startswith("Here is")]
        cut = rng.choice(cut_points)
        done = sum(1 for s in steps[:cut] if s.kind == "call")
        steps = steps[:cut]
        closing = [Step("say", text="I think that is everything for now. Thank you for calling, goodbye!",
                        mistake={"kind": "early_stop", "calls_made": done})]

    if draws["extra_lookup"]:
        extra = ("get_user_details", {"user_id": task.user_id}) if task.user_id and rng.random() < 0.5 \
            else ("list_all_airports", {})
        pos = rng.randrange(len(steps) + 1)
        steps.insert(pos, Step("call", extra[0], extra[1], mistake={"kind": "extra_lookup", "tool": extra[0]},
                               exempt=True))

    if draws["premature_write"]:
        if writes:
            a = actions[writes[0]]
            m = mutate_arguments(a["name"], a["arguments"], rng, schemas)
            if m is not None:
                steps.insert(0, Step("call", a["name"], m[0], exempt=True,
                                     mistake={"kind": "premature_write", "tool": a["name"], **m[1]}))
        elif task.user_id:
            steps.insert(0, Step("call", "get_user_details", {"user_id": task.user_id}, exempt=True))
            steps.insert(1, Step("cancel_from_lookup",
                                 mistake={"kind": "premature_write", "tool": "cancel_reservation"}))
    return steps + closing


# ----------------------------------------------------------------------------- identifiers

# Argument names whose values are identifiers: they must be heard or read before they are used.
_SLOT_OF = {"user_id": "user_id", "reservation_id": "reservation_id", "payment_id": "payment",
            "flight_number": "flight"}
_ASK_FIRST = ("user_id", "reservation_id")  # who the customer is and what they mean: theirs to say
_QUESTIONS = {
    "user_id": "Could you please tell me your user id?",
    "reservation_id": "Could you please tell me the reservation id?",
    "payment": "Which payment method would you like to use?",
    "flight": "Which flight would you like, with its flight number and date?",
}


def is_identifier(key: str) -> bool:
    """``*_id`` arguments and flight numbers: values an agent must not invent."""
    return key.endswith("_id") or key == "flight_number"


def identifiers(arguments: Any) -> list[tuple[str, str]]:
    """Every (argument name, value) identifier in ``arguments``, nested lists and objects included."""
    out: list[tuple[str, str]] = []

    def walk(v: Any, key: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, str(k))
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif isinstance(v, str) and v and is_identifier(key):
            out.append((key, v))

    walk(arguments, "")
    return list(dict.fromkeys(out))


def conversation_text(messages: list[dict[str, Any]], roles: tuple[str, ...] = ("user", "tool")) -> str:
    """What the agent has heard (``user``) and read (``tool``) so far, as one string."""
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") in roles)


def mentions(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` as a whole token (``HAT001`` is not in ``HAT0012``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])", text) is not None


def unsourced_identifiers(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Identifiers of tool calls that appear in no earlier customer message or tool result."""
    bad: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        known = conversation_text(messages[:i])
        for c in m.get("tool_calls") or []:
            bad += [{"turn": i, "tool": c["name"], "argument": k, "value": v}
                    for k, v in identifiers(c.get("arguments") or {}) if not mentions(known, v)]
    return bad


# ----------------------------------------------------------------------------- policy


class OraclePolicy(Policy):
    """Plays the plan one turn at a time; waits for a yes after each confirmation question."""

    def __init__(self, config: OracleConfig | None = None, *, schemas: dict[str, dict[str, Any]] | None = None):
        self.config = config or OracleConfig()
        self.schemas = schemas
        nonzero = {k: v for k, v in self.config.rates().items() if v}
        self.name = "oracle" + ("(" + ",".join(f"{k}={v:g}" for k, v in nonzero.items()) + ")" if nonzero else "")

    def _schemas(self, tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if self.schemas is None:
            self.schemas = {t.get("function", t)["name"]: t.get("function", t) for t in tools}
        return self.schemas

    async def act(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext
    ) -> dict[str, Any]:
        st = ctx.state
        if "plan" not in st:
            st["plan"] = build_plan(ctx, self.config, self._schemas(tools))
            st["i"] = 0
            ctx.info["mistakes"] = []
            ctx.info["mistake_rates"] = self.config.rates()
        turn = sum(1 for m in messages if m["role"] == "assistant")
        plan: list[Step] = st["plan"]

        pending = st.pop("awaiting_confirmation", None)
        if pending is not None:
            answer = _last_user_text(messages)
            if _NO.search(answer) and not _YES.search(answer):
                # The customer declined: drop the write it was about.
                while st["i"] < len(plan) and not (plan[st["i"]].kind == "call" and plan[st["i"]].name == pending):
                    st["i"] += 1
                st["i"] += 1
                ctx.info.setdefault("declined", []).append({"tool": pending, "turn": turn})
                return assistant_text("Understood, I will not make that change.")

        while st["i"] < len(plan):
            step = plan[st["i"]]
            if step.kind in {"call", "confirm"} and not step.exempt:
                found = self._find_source(step, messages, ctx, turn)
                if found is not None:
                    return found  # this turn goes to learning an identifier; the step is played later
            st["i"] += 1
            msg = self._play(step, messages, turn)
            if msg is None:
                continue
            for m in step.mistake if isinstance(step.mistake, list) else [step.mistake]:
                if m is not None:
                    ctx.info["mistakes"].append({**m, "turn": turn})
            if step.kind == "confirm":
                st["awaiting_confirmation"] = step.name
            return msg
        return assistant_text("You are welcome. Have a good day!")

    def _find_source(self, step: Step, messages: list[dict[str, Any]], ctx: EpisodeContext,
                     turn: int) -> dict[str, Any] | None:
        """A question or lookup that brings a still-unknown identifier of ``step`` into the conversation.

        Identifiers (user, reservation and payment ids, flight numbers) must come from the customer or
        from a tool result, never from the task's hidden data. The customer is asked first for who
        they are and which reservation they mean; anything else is taken from tool results when they
        already show it, else asked for, else looked up. Returns None when every identifier is sourced
        (or nothing more can be tried: then the call is made as planned and the gap stays visible).
        """
        st = ctx.state
        asked: set[str] = st.setdefault("asked", set())
        fetched: set[str] = st.setdefault("fetched", set())
        said = conversation_text(messages, roles=("user",))
        known = conversation_text(messages)
        for key, value in identifiers(step.truth if step.truth is not None else step.arguments):
            slot = _SLOT_OF.get(key, "")
            if key in _ASK_FIRST and not mentions(said, value) and slot not in asked:
                asked.add(slot)
                return assistant_text(_QUESTIONS[slot])
            if mentions(known, value):
                continue
            if slot in _QUESTIONS and slot not in asked:
                asked.add(slot)
                return assistant_text(_QUESTIONS[slot])
            for name, args in self._lookups(ctx.task, key, known):
                k = name + json.dumps(args, sort_keys=True)
                if k not in fetched:
                    fetched.add(k)
                    return assistant_call(name, args, f"call_{turn}")
            ctx.info.setdefault("unsourced", []).append({"tool": step.name, "argument": key, "turn": turn})
        return None

    @staticmethod
    def _lookups(task: Any, key: str, known: str) -> list[tuple[str, dict[str, Any]]]:
        """Read-only calls, on identifiers already known, whose results may show the missing one."""
        out: list[tuple[str, dict[str, Any]]] = []
        if task.user_id and mentions(known, task.user_id):
            out.append(("get_user_details", {"user_id": task.user_id}))
        if key != "user_id":
            res_ids = list((task.profile or {}).get("reservation_ids") or [])
            for a in task.actions:
                rid = _args(a).get("reservation_id")
                if rid and rid not in res_ids:
                    res_ids.append(rid)
            out += [("get_reservation_details", {"reservation_id": r}) for r in res_ids if mentions(known, r)]
        return out

    def _play(self, step: Step, messages: list[dict[str, Any]], turn: int) -> dict[str, Any] | None:
        if step.kind == "call":
            return assistant_call(step.name, step.arguments, f"call_{turn}")
        if step.kind in {"confirm", "say"}:
            return assistant_text(step.text)
        if step.kind == "cancel_from_lookup":
            rid = _first_reservation(messages)
            return None if rid is None else assistant_call("cancel_reservation", {"reservation_id": rid}, f"call_{turn}")
        raise ValueError(f"unknown plan step kind {step.kind!r}")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m["role"] == "user":
            return m.get("content") or ""
        if m["role"] == "assistant":
            break
    return ""


def _first_reservation(messages: list[dict[str, Any]]) -> str | None:
    """A reservation id from the last get_user_details result (the wrong write's target)."""
    for m in reversed(messages):
        if m["role"] == "tool" and m.get("name") == "get_user_details":
            try:
                rs = json.loads(m.get("content") or "").get("reservations") or []
            except (json.JSONDecodeError, AttributeError):
                return None
            return str(rs[0]) if rs else None
    return None
