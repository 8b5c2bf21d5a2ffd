"""Build policies and user simulators by name (what `calib rollout --policy P --user U` calls).

Users are stateful per episode, so the runner takes a *factory* that makes a fresh simulator for each
episode; resources that are expensive or pooled (an HTTP client, a loaded model) are created once
here and shared by every simulator the factory makes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from calib.envs.base import UserSimulator
from calib.errors import UsageError
from calib.policies.base import Policy

POLICIES = ("oracle", "openai", "hf")
USERS = ("scripted", "llm", "hf")


def load_chat_model(model: str, *, device: str = "cpu", gguf_file: str | None = None, generation: Any = None) -> Any:
    """A :class:`~calib.hf_chat.HFChatModel` from a local path, or ``tiny`` for the SmolLM2 test model."""
    from calib.hf_chat import HFChatModel
    from calib.models import resolve_model

    return HFChatModel.from_path(resolve_model(model), device=device, gguf_file=gguf_file, generation=generation)


def make_policy(
    name: str,
    *,
    oracle: Any = None,
    endpoint: Any = None,
    chat_model: Any = None,
    model: str | None = None,
    device: str = "cpu",
    generation: Any = None,
    max_batch: int | None = None,
) -> Policy:
    """``oracle`` (with an OracleConfig), ``openai`` (with an EndpointConfig), ``hf`` (a model path or a
    loaded HFChatModel)."""
    if name == "oracle":
        from calib.policies.oracle import OracleConfig, OraclePolicy

        return OraclePolicy(oracle or OracleConfig())
    if name == "openai":
        from calib.http import EndpointConfig
        from calib.policies.openai import OpenAIPolicy

        return OpenAIPolicy(endpoint or EndpointConfig())
    if name == "hf":
        from calib.policies.hf import HFPolicy

        if chat_model is None:
            if not model:
                raise UsageError("--policy hf needs --model PATH (a local transformers checkpoint, or 'tiny')")
            chat_model = load_chat_model(model, device=device, generation=generation)
        return HFPolicy(chat_model, name=f"hf:{model}" if model else None, max_batch=max_batch)
    raise UsageError(f"unknown policy {name!r}: use one of {', '.join(POLICIES)}")


def user_factory(
    name: str,
    *,
    endpoint: Any = None,
    chat_model: Any = None,
    model: str | None = None,
    device: str = "cpu",
    generation: Any = None,
    seed: int = 0,
    **kw: Any,
) -> Callable[[], UserSimulator]:
    """A zero-argument callable that returns a fresh simulator per episode."""
    if name == "llm":
        from calib.http import ChatClient, EndpointConfig

        client = ChatClient(endpoint or EndpointConfig())  # one connection pool for every episode

        def make_llm() -> UserSimulator:
            from calib.envs.users.llm import LLMUser

            return LLMUser(client=client)

        return make_llm
    if name == "hf":
        if chat_model is None:
            if not model:
                raise UsageError("--user hf needs --user-model PATH (a local transformers checkpoint, or 'tiny')")
            chat_model = load_chat_model(model, device=device, generation=generation)
        counter = iter(range(10**12))

        def make_hf() -> UserSimulator:
            from calib.envs.users.hf import HFUser

            return HFUser(chat_model, seed=seed * 1_000_003 + next(counter))

        return make_hf
    if name == "scripted":
        from calib.envs.users import make_user

        return lambda: make_user("scripted", **kw)
    raise UsageError(f"unknown user simulator {name!r}: use one of {', '.join(USERS)}")
