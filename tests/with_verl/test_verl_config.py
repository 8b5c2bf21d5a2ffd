"""docs/verl.md's recipe is a valid verl 0.9 configuration, and Ray runs calib's registration hook.

The recipe cannot train here (it needs GPUs, vLLM and the data files); what can be checked on CPU is
that every override composes with verl's own ``ppo_trainer`` Hydra config to the values the seed's
setting asks for, that the calib estimators find the spec in the composed ``algorithm`` config, and
that the ``worker_process_setup_hook`` the recipes name registers the estimators and the agent loops in
a Ray worker process (where verl's TaskRunner computes advantages and its AgentLoopWorkers play).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

import verl
from hydra import compose, initialize_config_dir

from trainer.verl.estimators import spec_path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "verl.md"


def _recipe(name: str = "verl-recipe") -> list[str]:
    text = DOC.read_text()
    block = re.search(rf"<!-- {name} -->\s*```bash\n(.*?)```", text, flags=re.DOTALL)
    assert block, f"docs/verl.md lost its <!-- {name} --> block"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "verl.trainer.main_ppo"], words[:3]
    return words[3:]


def test_the_recipe_composes_with_verls_config_to_the_seed_setting():
    overrides = _recipe()
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    rollout, actor = cfg.actor_rollout_ref.rollout, cfg.actor_rollout_ref.actor
    assert cfg.algorithm.adv_estimator == "calib_gtpo_hybrid"
    assert cfg.algorithm.use_kl_in_reward is False  # a per-token KL reward would break the layout
    assert (cfg.data.train_batch_size, rollout.n, rollout.temperature) == (8, 4, 0.9)
    assert (actor.optim.lr, actor.use_kl_loss, actor.kl_loss_coef) == (2e-6, True, 0.05)
    assert rollout.multi_turn.enable and rollout.multi_turn.format == "hermes"
    assert rollout.multi_turn.max_assistant_turns == 40
    assert rollout.agent.default_agent_loop == "calib_tool_agent" and cfg.calib.domain == "taubench:airline"
    assert cfg.trainer.rollout_data_dir == "/abs/path/rollouts"
    env = cfg.ray_kwargs.ray_init.runtime_env
    assert env.worker_process_setup_hook == "trainer.verl.plugin.register"
    assert env.env_vars.CALIB_SPEC == "/abs/path/spec.yaml"
    assert spec_path(cfg.algorithm) == "/abs/path/spec.yaml"  # what the estimators read


def test_the_calib_env_recipe_composes_and_its_loop_reads_it(tmp_path):
    """The recipe that plays airline-mini with calib_env composes with verl's config, its data rows come
    from `python -m trainer.verl.data`, and the loop's settings are the ones it sets."""
    from trainer.verl.agent_loop import CalibLoopConfig

    overrides = _recipe("verl-recipe-env")
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    rollout = cfg.actor_rollout_ref.rollout
    assert cfg.algorithm.adv_estimator == "calib_gtpo_hybrid" and cfg.trainer.use_v1 is True
    assert rollout.agent.default_agent_loop == "calib_env"
    assert (cfg.data.train_batch_size, rollout.n, rollout.temperature) == (8, 4, 0.9)
    assert rollout.multi_turn.max_assistant_turns == 40
    assert cfg.ray_kwargs.ray_init.runtime_env.worker_process_setup_hook == "trainer.verl.plugin.register"
    settings = CalibLoopConfig.from_config(cfg)
    assert (settings.domain, settings.user, settings.episodes_dir) == ("airline-mini", "scripted", "/abs/path/episodes")
    text = DOC.read_text()
    assert "python -m trainer.verl.data --domain airline-mini --split train --out /abs/path/airline-mini/train.parquet" in text
    assert cfg.data.train_files == "/abs/path/airline-mini/train.parquet"


def test_ray_runs_the_registration_hook_in_a_worker_process():
    import ray

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp,
             runtime_env={"worker_process_setup_hook": "trainer.verl.plugin.register",
                          "env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}})
    try:
        @ray.remote
        def registered() -> tuple[int, list[str], list[str]]:
            from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
            from verl.trainer.ppo import core_algos

            return (os.getpid(), sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if n.startswith("calib_")),
                    sorted(n for n in _agent_loop_registry if n.startswith("calib_")))

        pid, names, loops = ray.get(registered.remote(), timeout=300)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert pid != os.getpid()
    assert names == ["calib_grpo", "calib_gtpo_hybrid", "calib_mt_grpo"]
    assert loops == ["calib_env", "calib_tool_agent"]
