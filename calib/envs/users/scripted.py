"""The ``scripted`` user simulator: deterministic, answers from the task's profile.

It reads the agent's message with keyword rules (no model), so tests and CPU demos get the same
conversation every time. Per agent message, in this order:

1. Note any required output the agent said, a refusal, or a mention of a transfer.
2. A confirmation request ("... do you confirm?", "shall I proceed?") gets ``yes`` when the profile
   says ``confirm: true`` (counted towards the stage's writes), else ``no`` -- unless the message also
   asks for an id not given yet, or for two or more new slots (then it is a question form).
3. A question (a sentence with "?" or "could you / please provide ...") about a known slot (user id,
   reservation id, payment, cabin, ...) gets the profile's fact for it; an unknown slot gets
   "I don't know". Only question sentences are read, so "Is there anything else?" after a report that
   mentions a credit card does not count as asking for a payment method.
4. When the current stage is satisfied (writes confirmed, outputs heard, refusal or transfer seen),
   the user moves to the next stage's request, or ends with :data:`~calib.envs.base.STOP`.
5. Otherwise the message made no headway: after ``patience`` such messages in a row the user gives
   up with :data:`STOP` (stuck); before that it nudges ("Okay.", then restates its request).

The profile keys are documented in docs/environments.md.
"""

from __future__ import annotations

import re
from typing import Any

from calib.envs.base import STOP, Task

# Slot -> phrases that, inside a question, mean the agent asks for it. Order matters: the first
# slots are the ones an agent asks for first, and ids beat generic words such as "date".
SLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("user_id", ("user id", "user-id", "userid", "user_id", "account id", "customer id", "user name", "username")),
    ("reservation_id", ("reservation id", "reservation number", "reservation code", "confirmation number",
                        "confirmation code", "booking reference", "booking number", "booking id", "booking code",
                        "which reservation", "reservation_id")),
    ("reason", ("reason", "why ")),
    ("payment", ("payment", "pay with", "pay for", "to pay", "charge", "which card", "credit card", "gift card",
                 "certificate")),
    ("cabin", ("cabin", "class")),
    ("passengers", ("passenger", "traveler", "traveller", "full name", "first name", "last name", "date of birth",
                    "birth")),
    ("baggage", ("bag", "luggage")),
    ("insurance", ("insurance",)),
    ("trip_type", ("one way", "one-way", "round trip", "round-trip", "trip type")),
    ("route", ("origin", "destination", "flying from", "fly from", "departure city", "arrival city", "where to",
               "from where", "which airport")),
    ("flight", ("which flight", "flight number", "what date", "which date", "which day", "new date", "new flight",
                "preferred flight", "when would", "date")),
)
ASKING = ("?", "please provide", "please tell", "please share", "please give", "please let me know",
          "could you", "can you", "can i have", "may i have", "let me know", "i need your", "i'll need your",
          "i will need your")
CONFIRM = ("confirm", "proceed", "go ahead", "(yes", "yes/no", "yes or no", "shall i", "should i",
           "do you want me to", "would you like me to", "is that correct", "is this correct", "do you agree")
REFUSAL = ("cannot", "can't", "can not", "unable to", "not able to", "not allowed", "not permitted",
           "not eligible", "not possible", "won't be able", "do not allow", "doesn't allow", "does not allow",
           "against our policy", "against the policy", "not something i can")
TRANSFER = ("transfer", "human agent", "hand you over", "connect you")
ID_SLOTS = ("user_id", "reservation_id")

_SENTENCE = re.compile(r"[^.?!\n]*[.?!\n]?")


def _squash(text: str) -> str:
    return text.lower().replace(",", "")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def asked_slots(message: str) -> list[str]:
    """Slots that a question sentence of ``message`` asks for, in :data:`SLOTS` order."""
    questions = [s.lower().replace("date of birth", "birthday") for s in _sentences(message)
                 if any(a in s.lower() for a in ASKING)]
    return [slot for slot, keys in SLOTS if any(k in q for q in questions for k in keys)]


def is_confirmation_request(message: str) -> bool:
    low = message.lower()
    return any(k in low for k in CONFIRM) and ("?" in low or "yes" in low)


def is_refusal(message: str) -> bool:
    low = message.lower().replace("\u2019", "'")
    return any(k in low for k in REFUSAL)


class ScriptedUser:
    """One customer for one episode; ``reset`` starts it on a task (it may be reused after reset)."""

    name = "scripted"

    def __init__(self, patience: int | None = None):
        self.patience_override = patience
        self.done = False
        self.task: Task | None = None
        self.transcript: list[tuple[str, str]] = []  # (agent message, reply), for debugging

    # -- protocol ---------------------------------------------------------------------------------
    def reset(self, task: Task) -> str:
        self.task = task
        p = task.profile or {}
        self.stages: list[dict[str, Any]] = list(p.get("stages") or [{"say": task.instruction, "writes": len(
            task.actions), "outputs": list(task.outputs)}])
        self.facts: dict[str, str] = dict(p.get("facts") or {})
        if "user_id" not in self.facts and task.user_id:
            self.facts["user_id"] = f"My user id is {task.user_id}."
        self.confirm = bool(p.get("confirm", True))
        self.patience = int(self.patience_override or p.get("patience", 4))
        self.done = False
        self.transcript = []
        self.given: set[str] = set()
        self._start_stage(0)
        return self.stage.get("say") or "Hi, I need some help with my booking."

    def step(self, agent_message: str) -> str:
        if self.task is None:
            raise RuntimeError("ScriptedUser.step called before reset")
        if self.done:
            return STOP
        reply = self._reply(agent_message or "")
        self.transcript.append((agent_message, reply))
        if STOP in reply:
            self.done = True
        return reply

    async def areset(self, task: Task) -> str:
        return self.reset(task)

    async def astep(self, agent_message: str) -> str:
        return self.step(agent_message)

    # -- state ------------------------------------------------------------------------------------
    def _start_stage(self, i: int) -> None:
        self.stage_idx = i
        self.stage = self.stages[i]
        self.confirmations = 0
        self.heard: set[str] = set()
        self.refused = False
        self.transferred = False
        self.idle = 0

    def _fact(self, slot: str) -> str | None:
        stage_facts = self.stage.get("facts") or {}
        return stage_facts.get(slot, self.facts.get(slot))

    def satisfied(self) -> bool:
        s = self.stage
        return (
            self.confirmations >= int(s.get("writes", 0))
            and all(str(o) in self.heard for o in s.get("outputs", []))
            and (self.refused or not s.get("refusal"))
            and (self.transferred or not s.get("transfer"))
        )

    # -- one reply --------------------------------------------------------------------------------
    def _reply(self, message: str) -> str:
        squashed = _squash(message)
        for o in self.stage.get("outputs", []):
            if _squash(str(o)) in squashed:
                self.heard.add(str(o))
        slots = asked_slots(message)
        fresh = [s for s in slots if s not in self.given]
        # "Could you confirm your user id?" or a form with several new questions is not a request to
        # approve a write; "Shall I proceed with the business class upgrade?" is.
        asking = any(s in ID_SLOTS for s in fresh) or len(fresh) >= 2
        if is_confirmation_request(message) and not asking:
            self.idle = 0
            if self.confirm:
                self.confirmations += 1
                return "Yes, please go ahead."
            return "No, I do not want to do that."
        if slots:
            answers = []
            for slot in slots:
                fact = self._fact(slot)
                answers.append(fact if fact else f"I'm not sure about the {slot.replace('_', ' ')}.")
            new = [s for s in slots if s not in self.given]
            self.given.update(slots)
            self.idle = 0 if new else self.idle + 1
            if self.idle >= self.patience:
                return f"I have already told you that. {STOP}"
            return " ".join(dict.fromkeys(answers))
        if is_refusal(message):
            self.refused = True
        low = message.lower()
        if any(k in low for k in TRANSFER):
            self.transferred = True
        if self.satisfied():
            if self.stage_idx + 1 < len(self.stages):
                self._start_stage(self.stage_idx + 1)
                return self.stage.get("say") or "I have one more request."
            if self.refused and self.stage.get("refusal"):
                return f"I see. Thank you anyway. {STOP}"
            return f"Thank you, that's all I needed. {STOP}"
        self.idle += 1
        if self.idle >= self.patience:
            return f"It seems we are not getting anywhere. {STOP}"
        if self.idle == 1:
            return "Okay."
        return "Just to repeat my request: " + (self.stage.get("say") or "")
