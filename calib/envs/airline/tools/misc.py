"""Tools that touch no data: arithmetic, a scratchpad, and handing over to a human."""

from __future__ import annotations

import ast
import operator

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.tools._registry import string, tool

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_ALLOWED_CHARS = set("0123456789+-*/(). ")


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ValueError("unsupported expression")


@tool(
    "Evaluate an arithmetic expression with numbers, + - * /, and parentheses; the result is "
    "rounded to two decimals.",
    {"expression": string("The expression, e.g. '2 * (120 + 35)'.")},
)
def calculate(db: AirlineDB, expression: str) -> str:
    if not set(expression) <= _ALLOWED_CHARS:
        return "Error: invalid characters in expression"
    try:
        value = _eval(ast.parse(expression, mode="eval"))
        return str(round(float(value), 2))
    except ZeroDivisionError:
        return "Error: division by zero"
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError) as e:
        return f"Error: cannot evaluate expression ({e.__class__.__name__})"


@tool(
    "Write down a thought or plan. Nothing is looked up or changed; use it to reason step by step.",
    {"thought": string("The thought.")},
)
def think(db: AirlineDB, thought: str) -> str:
    return ""


@tool(
    "Hand the conversation to a human agent with a short summary of the issue. Only for requests "
    "the agent's tools and policy cannot handle; the conversation ends.",
    {"summary": string("What the user needs and what has been done so far.")},
    terminates=True,
)
def transfer_to_human_agents(db: AirlineDB, summary: str) -> str:
    return "Transfer successful"
