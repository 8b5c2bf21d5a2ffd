"""calib's verl agent loops (trainer/verl/agent_loop.py) on CPU, as verl 0.9.1 runs them.

What is verl's own code here: the agent-loop registry and ``hydra.utils.instantiate`` that build the
loop (as ``AgentLoopWorker._run_agent_loop`` does), the Continuous Token builder that renders the
context messages, ``ToolAgentLoop`` itself (under ``calib_tool_agent``), the v1 worker's
``AgentLoopWorkerTQ._agent_loop_postprocess`` (which calls ``as_dict`` and puts each trajectory in
TransferQueue), ``RLHFDataset`` reading the data rows, and the v1 trainer's
``PPOTrainer._compute_advantage`` (TransferQueue -> padded ``DataProto`` -> ``rm_scores`` as
``token_level_rewards`` -> ``compute_advantage`` -> calib's estimator). What stands in:

- the LLM server: :class:`OracleServer` (calib's oracle agent reading the conversation from the token
  ids it is given, then writing its reply as hermes text) and :class:`TinyModelServer` (the tiny
  SmolLM2 model sampling tokens); both have the signature of verl's ``LLMServerClient.generate``,
  which a test checks with ``inspect``;
- TransferQueue's key-value store: :class:`MemoryTQ`, a dict with the three calls verl makes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import types
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from tensordict import NonTensorStack, TensorDict
from transfer_queue import KVBatchMeta
from typer.testing import CliRunner
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.llm_server import LLMServerClient
from verl.workers.rollout.replica import TokenOutput

from calib.advantages import turn_advantages
from calib.cli import app
from calib.envs import load_domain
from calib.ingest.chat_text import parse_chat_text
from calib.policies.base import EpisodeContext
from calib.policies.oracle import OracleConfig, OraclePolicy
from calib.spec import load_spec
from calib.store import Store
from trainer.rewards import batch_rewards, episode_turn_rewards
from trainer.verl import agent_loop, layout, plugin
from trainer.verl.data import task_rows

try:
    from verl_dumps import QWEN25_TEMPLATE  # the chat template verl's hermes tool format is written for
except ImportError as e:
    pytest.fail(f"tests/with_verl runs in the verl venv (`make test` does): {e}", pytrace=False)

SPEC = "preset:paper-v6-calibrated"  # gtpo_hybrid, gamma 0.9, lambda 0.3, the seed's calibrated turn rewards
MARKER = "<|im_start|>assistant\n"
CONFIG_DIR = Path(verl.__file__).parent / "trainer" / "config"


# ----------------------------------------------------------------------------- stand-ins


class OracleServer:
    """An LLM server whose 'model' is calib's oracle agent: it decodes the prompt ids it is sent back
    into the conversation (calib's chat-template parser), asks the oracle for the next message and
    returns it as the token ids of hermes text ending with ``<|im_end|>``. So the episode only goes
    right if the token ids the agent loop builds carry the whole conversation."""

    def __init__(self, tokenizer: Any, domain: Any, oracle: OracleConfig | None = None):
        self.tok, self.domain = tokenizer, domain
        self.policy = OraclePolicy(oracle or OracleConfig())
        self.contexts: dict[str, EpisodeContext] = {}
        self.task: Any = None  # the task of the episode being played (episodes are played one by one)
        self.sample = 0
        self.calls: list[dict[str, Any]] = []

    async def generate(self, request_id, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: list[Any] | None = None, video_data: list[Any] | None = None,
                       audio_data: list[Any] | None = None, mm_processor_kwargs: dict[str, Any] | None = None,
                       **kwargs: Any) -> TokenOutput:
        self.calls.append({"request_id": request_id, "n_prompt": len(prompt_ids), "sampling_params": dict(sampling_params)})
        text = self.tok.decode(prompt_ids, skip_special_tokens=False)
        assert text.endswith(MARKER), text[-80:]
        messages = parse_chat_text(text[: -len(MARKER)])
        ctx = self.contexts.setdefault(request_id, EpisodeContext(
            task=self.task, sample=self.sample, seed=self.sample, rng=__import__("random").Random(self.sample)))
        reply = await self.policy.act(messages, self.domain.catalogue.openai_tools(), ctx)
        body = reply.get("content") or ""
        for call in reply.get("tool_calls") or []:
            body += "\n<tool_call>\n" + json.dumps({"name": call["name"], "arguments": call["arguments"]}) + "\n</tool_call>"
        ids = self.tok.encode(body.strip() + "<|im_end|>", add_special_tokens=False)
        return TokenOutput(token_ids=ids[: sampling_params["max_tokens"]], log_probs=None, num_preempted=0)


class TinyModelServer:
    """An LLM server that samples from the tiny SmolLM2 model (transformers, CPU)."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 24):
        self.model, self.tok, self.max_new_tokens = model, tokenizer, max_new_tokens

    async def generate(self, request_id, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: list[Any] | None = None, video_data: list[Any] | None = None,
                       audio_data: list[Any] | None = None, mm_processor_kwargs: dict[str, Any] | None = None,
                       **kwargs: Any) -> TokenOutput:
        torch.manual_seed(len(prompt_ids))
        ids = torch.tensor([prompt_ids[-1500:]])  # the tiny model's context is short; the test needs tokens, not sense
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                  max_new_tokens=min(self.max_new_tokens, sampling_params["max_tokens"]),
                                  eos_token_id=self.tok.convert_tokens_to_ids("<|im_end|>"),
                                  pad_token_id=self.tok.pad_token_id or 0)
        return TokenOutput(token_ids=out[0, ids.shape[1]:].tolist(), log_probs=None, num_preempted=0)


class MemoryTQ:
    """TransferQueue's key-value calls that verl's v1 worker and trainer make, over a dict."""

    def __init__(self):
        self.rows: dict[str, dict[str, Any]] = {}

    def _put(self, keys, fields=None, tags=None, partition_id=None):
        for i, key in enumerate(keys):
            row = self.rows.setdefault(key, {})
            for name in fields.keys():  # noqa: SIM118 (iterating a TensorDict walks its batch, not its keys)
                value = fields[name]
                row[name] = value[i] if not hasattr(value, "tolist") or isinstance(value, torch.Tensor) else value.tolist()[i]
        return types.SimpleNamespace(keys=list(keys), partition_id=partition_id)

    async def async_kv_batch_put(self, keys, fields=None, tags=None, partition_id=None):
        return self._put(keys, fields, tags, partition_id)

    def kv_batch_put(self, keys, partition_id=None, fields=None, tags=None):
        return self._put(keys, fields, tags, partition_id)

    def kv_batch_get(self, keys, partition_id=None, select_fields=None):
        """Per-token fields come back as jagged nested tensors (what verl's trainer asserts), other
        fields as a non-tensor stack; fields no trajectory has (old_log_probs before the actor ran,
        values without a critic) are left out."""
        names = [f for f in select_fields if all(f in self.rows[k] for k in keys)]
        data = {}
        for f in names:
            values = [self.rows[k][f] for k in keys]
            if all(isinstance(v, torch.Tensor) and v.dim() >= 1 for v in values):
                data[f] = torch.nested.as_nested_tensor(values, layout=torch.jagged)
            else:
                data[f] = NonTensorStack(*values)
        return TensorDict(data, batch_size=[len(keys)])


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    t.chat_template = QWEN25_TEMPLATE  # tools in the system prompt, tool results as <tool_response> (hermes)
    return t


def verl_config(*extra: str, response_length: int = 6000, n: int = 3):
    overrides = [
        "algorithm.adv_estimator=calib_gtpo_hybrid", f"+algorithm.calib_spec={SPEC}",
        f"actor_rollout_ref.rollout.n={n}", f"actor_rollout_ref.rollout.response_length={response_length}",
        "actor_rollout_ref.rollout.prompt_length=8192", "actor_rollout_ref.rollout.multi_turn.enable=True",
        "actor_rollout_ref.rollout.multi_turn.format=hermes",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=16",
        "actor_rollout_ref.rollout.agent.default_agent_loop=calib_env", *extra]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture(autouse=True)
def verl_event_loop():
    """One event loop per test, current while the agent loop is built: verl's AgentLoopBase keeps the
    loop it is built in (``get_event_loop()``) and runs its tokenizer work there, as in verl's worker,
    which builds each agent loop inside its running loop."""
    ev = asyncio.new_event_loop()
    asyncio.set_event_loop(ev)
    yield ev
    asyncio.set_event_loop(None)
    ev.close()


def run(coro):
    return asyncio.get_event_loop().run_until_complete(coro)


def build_loop(name: str, cfg, server, tok, tools: list | None = None):
    """The agent loop as verl's AgentLoopWorker._run_agent_loop builds it: from the registry, by Hydra."""
    plugin.register()
    return hydra.utils.instantiate(
        config=_agent_loop_registry[name], trainer_config=DictConfigWrap(config=cfg), server_manager=server,
        tokenizer=tok, processor=None, hf_model_type="qwen2", dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(cfg.data), tools=ToolListWrap(tools or []))


def v1_worker(cfg, tok, tq: MemoryTQ, monkeypatch):
    """verl's v1 agent-loop worker class (unwrapped from its Ray actor), with what its postprocess reads."""
    from verl.trainer.ppo.v1 import agent_loop_tq

    monkeypatch.setattr(agent_loop_tq, "tq", tq)
    cls = agent_loop_tq.AgentLoopWorkerTQ.__ray_metadata__.modified_class.__mro__[1]
    assert cls.__name__ == "AgentLoopWorkerTQ"
    worker = object.__new__(cls)
    worker.config, worker.tokenizer, worker.processor = cfg, tok, None
    worker.reward_loop_worker_handles, worker.distillation_enabled = None, False
    worker.mm_processor_kwargs = {}
    return worker


def v1_advantages(cfg, keys: list[str], tq: MemoryTQ, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's v1 trainer's advantage step on the stored trajectories: (advantages, response_mask)
    padded, in ``keys`` order."""
    from verl.trainer.ppo.v1 import trainer_base

    monkeypatch.setattr(trainer_base, "tq", tq)
    trainer = types.SimpleNamespace(config=cfg)
    batch = KVBatchMeta(partition_id="train", keys=list(keys), tags=[{} for _ in keys])
    trainer_base.PPOTrainer._compute_advantage(trainer, batch, metrics={})
    adv = [tq.rows[k]["advantages"] for k in keys]
    mask = [tq.rows[k]["response_mask"] for k in keys]
    width = max(len(m) for m in mask)
    pad = lambda rows: torch.stack([torch.nn.functional.pad(torch.as_tensor(r, dtype=torch.float32), (0, width - len(r)))
                                    for r in rows])
    return pad(adv), pad(mask)


def play(loop, server, tasks, n: int, worker, *, step: int = 1) -> tuple[list[str], list[Any]]:
    """Play ``n`` samples of each task through the loop and the v1 worker's postprocess (one by one,
    so the oracle server knows the task); returns the TransferQueue keys and the loop outputs."""
    keys, outputs = [], []
    for t_i, task in enumerate(tasks):
        uid = f"u{t_i}"
        for s in range(n):
            server.task, server.sample = task, s
            kwargs = {"raw_prompt": [{"role": "system", "content": "x"}], "extra_info": {"task_id": task.task_id},
                      "uid": uid, "session_id": s, "global_steps": step, "index": t_i, "agent_name": "calib_env"}
            out = run(loop.run({"temperature": 1.0, "top_p": 1.0, "top_k": -1}, **kwargs))
            run(worker._agent_loop_postprocess(out, False, **kwargs))
            keys.append(f"{uid}_{s}_0")
            outputs.append(out)
    return keys, outputs


# ----------------------------------------------------------------------------- tests


def test_the_stand_in_servers_have_verls_generate_signature():
    want = inspect.signature(LLMServerClient.generate)
    for server in (OracleServer, TinyModelServer):
        got = inspect.signature(server.generate)
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
               [(p.name, p.kind, p.default) for p in want.parameters.values()], server


def test_registration_is_idempotent_and_guards_calibs_names():
    first = plugin.register()
    assert plugin.register() == {"estimators": [], "agent_loops": []}
    assert set(first["agent_loops"]) <= {"calib_env", "calib_tool_agent"}
    assert _agent_loop_registry["calib_env"] == {"_target_": "trainer.verl.agent_loop.CalibEnvAgentLoop"}
    saved = _agent_loop_registry["calib_tool_agent"]
    _agent_loop_registry["calib_tool_agent"] = {"_target_": "someone.Else"}
    try:
        with pytest.raises(agent_loop.AgentLoopError, match="not calib's"):
            agent_loop.register()
    finally:
        _agent_loop_registry["calib_tool_agent"] = saved


@pytest.mark.parametrize("domain_name,n_tasks", [("airline-mini", 3), ("tau2:airline", 1)])
def test_calib_env_episodes_reach_verls_advantages_as_calib_computes_them(
        domain_name, n_tasks, tok, tmp_path, monkeypatch):
    """verl plays calib episodes (oracle with seeded mistakes behind verl's server interface); the
    advantages verl's v1 trainer computes from the rm_scores the loop wrote equal calib's
    ``turn_advantages`` of the same episodes (spec turn rewards + outcome, groups = verl uids), spread
    over each assistant turn's tokens; tool and user tokens get 0."""
    domain = load_domain(domain_name)
    cfg = verl_config(f"+calib.domain={domain_name}", f"+calib.episodes_dir={tmp_path / 'episodes'}")
    server = OracleServer(tok, domain, OracleConfig(wrong_argument=0.5, extra_lookup=0.5, early_stop=0.2))
    loop = build_loop("calib_env", cfg, server, tok)
    assert isinstance(loop, agent_loop.CalibEnvAgentLoop)
    tq = MemoryTQ()
    tasks = [t for t in domain.tasks if t.actions][:n_tasks]
    keys, outputs = play(loop, server, tasks, 3, v1_worker(cfg, tok, tq, monkeypatch))

    episodes = [json.loads(line) for f in sorted((tmp_path / "episodes").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(episodes) == len(keys)
    assert {e["task_id"] for e in episodes} == {t.task_id for t in tasks}
    assert any(e["success"] for e in episodes), "the oracle should solve some episodes through the token ids"
    spec = load_spec(SPEC)
    outcome, per_turn = batch_rewards(episodes, spec, domain.catalogue)
    groups = np.array([e["group_id"] for e in episodes])
    assert len(set(groups)) == len(tasks)
    for e, out, r in zip(episodes, outputs, per_turn):
        runs = layout.turn_runs(torch.tensor(out.response_mask))
        assert len(runs) == e["info"]["n_turns"] == len(r)  # one run of assistant tokens per turn
        assert out.calib_turn_rewards == pytest.approx(r.tolist())
        assert out.reward_score == e["outcome"]
    assert any(np.any(r != 0) for r in per_turn), "the spec's turn rewards should not all be 0 here"

    if domain_name == "airline-mini":  # docs/verl.md's commands on the episodes the loop wrote
        store, report = tmp_path / "st", tmp_path / "report"
        files = [str(f) for f in sorted((tmp_path / "episodes").glob("*.jsonl"))]  # the shell's episodes/*.jsonl
        res = CliRunner().invoke(app, ["ingest", *files, "--store", str(store), "--run-id", "verl"])
        assert res.exit_code == 0, res.output
        assert Store(store).query("SELECT count(*) AS n FROM episodes")["n"][0] == len(episodes)
        res = CliRunner().invoke(app, ["analyze", "--store", str(store), "--runs", "verl", "--out", str(report)])
        assert res.exit_code == 0, res.output

    adv, mask = v1_advantages(cfg, keys, tq, monkeypatch)
    want = turn_advantages(outcome, per_turn, groups, mode="gtpo_hybrid", gamma=0.9, lam=0.3, turn_norm="index")
    expected = layout.expand(want, [layout.turn_runs(m) for m in mask], adv)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert torch.all(adv[mask == 0] == 0)
    assert adv.abs().sum() > 0


def test_calib_env_with_a_real_tiny_model(tok, tiny_model_dir, monkeypatch):
    """The tiny SmolLM2 model samples the agent's turns: whatever it writes (text, broken or valid tool
    calls), each turn is one run of mask-1 tokens holding exactly what it generated, and rm_scores
    follow calib's layout."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    cfg = verl_config("actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3", response_length=200, n=2)
    loop = build_loop("calib_env", cfg, TinyModelServer(model, tok), tok)
    tq = MemoryTQ()
    task = load_domain("airline-mini").tasks[0]
    for s in range(2):
        kwargs = {"raw_prompt": [], "extra_info": {"task_id": task.task_id}, "uid": "u", "session_id": s,
                  "global_steps": 1, "index": 0}
        out = run(loop.run({"temperature": 1.0, "top_p": 1.0, "top_k": -1}, **kwargs))
        runs = layout.turn_runs(torch.tensor(out.response_mask))
        assert 1 <= len(runs) <= 3 and len(out.calib_turn_rewards) == len(runs)
        assert len(out.response_ids) == len(out.response_mask) <= 200
        assert out.extra_fields["calib_termination"] in {"max_turns", "user_stop", "response_length"}
        d = out.as_dict()
        outcome, turn, _ = layout.unpack(d["rm_scores"][None], d["response_mask"][None])
        assert outcome[0] == out.reward_score and turn[0].tolist() == pytest.approx(out.calib_turn_rewards)
        run(v1_worker(cfg, tok, tq, monkeypatch)._agent_loop_postprocess(out, False, **kwargs))
    adv, mask = v1_advantages(cfg, ["u_0_0", "u_1_0"], tq, monkeypatch)
    assert torch.all(adv[mask == 0] == 0)


def test_a_spent_token_budget_ends_the_episode(tok, monkeypatch):
    """With a small rollout.response_length the loop stops before the budget runs out (never a one-token
    last turn), the environment scores the episode, and the layout still holds."""
    domain = load_domain("airline-mini")
    cfg = verl_config(response_length=120, n=1)
    server = OracleServer(tok, domain)
    loop = build_loop("calib_env", cfg, server, tok)
    task = next(t for t in domain.tasks if len(t.actions) >= 2)
    server.task = task
    out = run(loop.run({"temperature": 1.0}, extra_info={"task_id": task.task_id}, uid="u", session_id=0))
    assert out.extra_fields["calib_termination"] == "response_length"
    assert len(out.response_mask) <= 120
    assert all(c["sampling_params"]["max_tokens"] == 120 - c["n_prompt"] + len(out.prompt_ids) for c in server.calls)
    runs = layout.turn_runs(torch.tensor(out.response_mask))
    assert all(end - start >= 2 for start, end in runs)
    layout.unpack(out.as_dict()["rm_scores"][None], torch.tensor([out.response_mask]))


def test_calib_tool_agent_measures_the_spec_on_verls_tool_agent_loop(tok, monkeypatch):
    """verl's ToolAgentLoop with the user's own tools; calib adds the spec's turn rewards, the ones
    calib computes for the same conversation, and lays them out with the scorer's outcome."""
    from verl.tools.function_tool import FUNCTION_TOOL_REGISTRY, function_tool

    calls = []

    @function_tool
    def get_user_details(user_id: str) -> str:
        """Look a user up.

        Args:
            user_id: The user's id.
        """
        calls.append(user_id)
        return json.dumps({"user_id": user_id, "reservations": ["ABC123"]})

    @function_tool
    def cancel_reservation(reservation_id: str) -> str:
        """Cancel a reservation.

        Args:
            reservation_id: The reservation's id.
        """
        return json.dumps({"reservation_id": reservation_id, "status": "cancelled"})

    replies = [
        '<tool_call>\n{"name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}}\n</tool_call>',
        '<tool_call>\n{"name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}}\n</tool_call>',
        '<tool_call>\n{"name": "cancel_reservation", "arguments": {"reservation_id": "ABC123"}}\n</tool_call>',
        "Your reservation ABC123 is cancelled.",
    ]

    class ScriptServer(OracleServer):
        async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None,
                           audio_data=None, mm_processor_kwargs=None, **kwargs):
            text = replies[len(self.calls)]
            self.calls.append({})
            return TokenOutput(token_ids=tok.encode(text + "<|im_end|>", add_special_tokens=False), num_preempted=0)

    cfg = verl_config("actor_rollout_ref.rollout.agent.default_agent_loop=calib_tool_agent", response_length=2000)
    loop = build_loop("calib_tool_agent", cfg, ScriptServer(tok, load_domain("airline-mini")), tok,
                      tools=[FUNCTION_TOOL_REGISTRY.pop(f.__name__) for f in (get_user_details, cancel_reservation)])
    assert isinstance(loop, agent_loop.CalibToolAgentLoop)
    prompt = [{"role": "system", "content": "You are an airline agent."},
              {"role": "user", "content": "Cancel my trip please, I am mia_li_3668."}]
    out = run(loop.run({"temperature": 1.0}, raw_prompt=prompt))
    assert calls == ["mia_li_3668", "mia_li_3668"]
    assert len(layout.turn_runs(torch.tensor(out.response_mask))) == 4

    # the same conversation, written by hand in calib's record format
    def call(i, name, args):
        return {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{i}", "name": name, "arguments": args}]}

    def result(i, name, obj):
        return {"role": "tool", "tool_call_id": f"c{i}", "name": name, "content": json.dumps(obj)}

    messages = prompt + [
        call(0, "get_user_details", {"user_id": "mia_li_3668"}),
        result(0, "get_user_details", {"user_id": "mia_li_3668", "reservations": ["ABC123"]}),
        call(1, "get_user_details", {"user_id": "mia_li_3668"}),
        result(1, "get_user_details", {"user_id": "mia_li_3668", "reservations": ["ABC123"]}),
        call(2, "cancel_reservation", {"reservation_id": "ABC123"}),
        result(2, "cancel_reservation", {"reservation_id": "ABC123", "status": "cancelled"}),
        {"role": "assistant", "content": "Your reservation ABC123 is cancelled."}]
    spec = load_spec(SPEC)
    want = episode_turn_rewards({"episode_id": "e", "run_id": "r", "task_id": "t", "outcome": 1.0, "messages": messages},
                                spec.turn_weights(), load_domain("airline-mini").catalogue)
    assert out.calib_turn_rewards == pytest.approx(want.tolist())
    assert want[1] < 0 and want[2] < 0  # the repeated lookup (redundant_call) and the write (state_change)

    out.reward_score = 1.0  # what verl's reward loop (the user's compute_score) sets before as_dict
    d = out.as_dict()
    outcome, turn, _ = layout.unpack(d["rm_scores"][None], d["response_mask"][None])
    assert outcome[0] == 1.0 and turn[0].tolist() == pytest.approx(want.tolist())


def test_refusals(tok, tmp_path):
    domain = load_domain("airline-mini")
    server = OracleServer(tok, domain)
    loop = build_loop("calib_env", verl_config(f"algorithm.calib_spec={tmp_path / 'nope.yaml'}"), server, tok)
    server.task = domain.tasks[0]
    with pytest.raises(agent_loop.AgentLoopError, match="cannot read the reward spec"):
        run(loop.run({}, extra_info={"task_id": domain.tasks[0].task_id}))
    loop = build_loop("calib_env", verl_config("trainer.use_v1=False"), server, tok)
    with pytest.raises(agent_loop.AgentLoopError, match="v1 trainer"):
        run(loop.run({}, extra_info={"task_id": domain.tasks[0].task_id}))
    loop = build_loop("calib_env", verl_config(), server, tok)
    with pytest.raises(agent_loop.AgentLoopError, match="task_id"):
        run(loop.run({}, extra_info={}))
    with pytest.raises(Exception, match=r"unknown key\(s\) \['domian'\]") as e:  # Hydra wraps what the loop raised
        build_loop("calib_env", verl_config("+calib.domian=airline-mini"), server, tok)
    assert isinstance(e.value.__cause__, agent_loop.AgentLoopError)


def test_a_one_token_last_turn_keeps_the_outcome():
    """An empty last reply (its end-of-turn token alone) cannot hold a turn reward and the outcome: the
    outcome keeps the token, the turn reward is dropped and logged, and the layout reads back."""
    extra: dict[str, Any] = {}
    runs = [(0, 3), (5, 6)]
    spec = load_spec(SPEC)
    rewards = agent_loop._turn_rewards(spec, lambda: [0.5, -0.2], runs, "t", extra)
    assert rewards == [0.5, 0.0] and extra == {"calib_dropped_turn_reward": -0.2}
    mask = torch.tensor([[1, 1, 1, 0, 0, 1]])
    outcome, turn, _ = layout.unpack(layout.pack([rewards], [1.0], mask), mask)
    assert outcome[0] == 1.0 and turn[0].tolist() == [0.5, 0.0]
    with pytest.raises(layout.LayoutError, match="2 assistant turns but response_mask has 1"):
        agent_loop._turn_rewards(spec, lambda: [0.5, -0.2], [(0, 3)], "t", {})
    # a spec whose mode ignores turn rewards (calib_grpo refuses them) and no spec: zeros
    grpo = spec.model_copy(update={"advantage": spec.advantage.model_copy(update={"mode": "grpo"})})
    assert agent_loop._turn_rewards(grpo, lambda: [0.5, -0.2], runs, "t", {}) == [0.0, 0.0]
    assert agent_loop._turn_rewards(None, lambda: [0.5, -0.2], runs, "t", {}) == [0.0, 0.0]


def test_the_llm_customer_is_built_from_the_calib_section():
    from calib.envs.users.llm import LLMUser
    from calib.errors import UsageError

    with pytest.raises(UsageError, match="user_base_url"):
        agent_loop._user_factory("llm", None, "default")
    assert isinstance(agent_loop._user_factory("llm", "http://127.0.0.1:9/v1", "m")(), LLMUser)  # no request yet


def test_data_rows_load_in_verls_dataset(tok, tmp_path):
    """``python -m trainer.verl.data`` rows, read by verl's RLHFDataset, give the agent loop its task."""
    import subprocess
    import sys

    path = tmp_path / "airline-mini" / "train.parquet"
    done = subprocess.run([sys.executable, "-m", "trainer.verl.data", "--domain", "airline-mini", "--split", "train",
                           "--out", str(path)], check=False, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and path.exists()
    cfg = verl_config(f"data.train_files={path}", "data.max_prompt_length=8192")
    ds = RLHFDataset(data_files=[str(path)], tokenizer=tok, config=cfg.data)
    domain = load_domain("airline-mini")
    assert len(ds) == len(task_rows("airline-mini", "train")) > 0
    item = ds[0]
    assert item["agent_name"] == "calib_env"
    assert item["extra_info"]["calib_domain"] == "airline-mini"
    assert domain.task(item["extra_info"]["task_id"]).task_id == item["extra_info"]["task_id"]
    assert item["raw_prompt"][0]["content"] == domain.policy
