"""User simulators: ``scripted`` (deterministic, from the task profile), ``llm``, ``hf``."""

from typing import Any


def make_user(name: str, **kw: Any) -> Any:
    """A fresh simulator for one episode: ``scripted`` (patience=), ``llm`` (client= or endpoint
    options: base_url=, model=, api_key=, ...), ``hf`` (chat=, an HFChatModel; seed=)."""
    if name == "scripted":
        from calib.envs.users.scripted import ScriptedUser

        return ScriptedUser(**kw)
    if name == "llm":
        from calib.envs.users.llm import LLMUser

        return LLMUser(**kw)
    if name == "hf":
        from calib.envs.users.hf import HFUser

        return HFUser(**kw)
    from calib.errors import UsageError

    raise UsageError(f"unknown user simulator {name!r}: use scripted, llm or hf")
