"""How a tool is declared: its OpenAI-style schema sits right above its behaviour.

A tool function takes the episode's :class:`~calib.envs.airline.db.AirlineDB` and the call's
arguments, and returns the observation text. Bad calls return ``"Error: ..."``; the environment
also catches anything a tool raises, so a tool bug can never crash a rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ToolFn = Callable[..., str]

REGISTRY: dict[str, Tool] = {}


@dataclass(frozen=True)
class Tool:
    name: str
    schema: dict[str, Any]  # OpenAI function object: {name, description, parameters}
    run: ToolFn
    terminates: bool = False  # the episode ends after this call (transfer to a human)
    write: bool = False  # the call can change the database (tau2-bench's ToolType.WRITE)


def tool(description: str, properties: dict[str, Any], required: list[str] | None = None, *,
         terminates: bool = False, write: bool = False) -> Callable[[ToolFn], ToolFn]:
    """Register ``fn`` under its own name with the given parameter schema. ``write``: the call can change
    the database; the store's ``is_write``, the signals and the oracle read this flag (no second list)."""

    def wrap(fn: ToolFn) -> ToolFn:
        schema = {
            "name": fn.__name__,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(required if required is not None else properties),
            },
        }
        REGISTRY[fn.__name__] = Tool(fn.__name__, schema, fn, terminates, write)
        return fn

    return wrap


# -- schema builders (our own descriptions; names, types and enums follow tau-bench) -------------
CABINS = ["basic_economy", "economy", "business"]


def string(description: str, enum: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "description": description}
    if enum:
        out["enum"] = list(enum)
    return out


def integer(description: str) -> dict[str, Any]:
    return {"type": "integer", "description": description}


def number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def array_of(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "array",
        "description": description,
        "items": {"type": "object", "properties": properties, "required": list(properties)},
    }


FLIGHTS_PARAM = array_of(
    "Flight segments in travel order; each names a flight number and a date.",
    {
        "flight_number": string("Flight number, e.g. 'HAT001'."),
        "date": string("Departure date as YYYY-MM-DD."),
    },
)
PASSENGERS_PARAM = array_of(
    "Travellers on the reservation.",
    {
        "first_name": string("Given name."),
        "last_name": string("Family name."),
        "dob": string("Date of birth as YYYY-MM-DD."),
    },
)
