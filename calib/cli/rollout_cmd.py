"""CLI: `calib rollout`: play fresh episodes (policy x simulated user x environment) into the store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import (
    DEFAULT_STORE,
    JsonOpt,
    JudgeBaseUrlOpt,
    JudgeModelOpt,
    SplitOpt,
    StoreOpt,
    judge_config,
)
from calib.jsonutil import dumps

_MISTAKE_HELP = "Per-episode rate of the oracle's {} mistake (overrides --mistake-rate)."


def rollout_command(
    domain: Annotated[str, typer.Option("--domain", help="airline-mini (embedded), airline-mini:SEED, taubench:PATH, or "
                      "tau2:DOMAIN (airline, retail, telecom, mock; needs calib[tau2]).")] = "airline-mini",
    split: SplitOpt = "all",
    policy: Annotated[str, typer.Option("--policy", help="oracle | openai | hf.")] = "oracle",
    user: Annotated[str, typer.Option("--user", help="Simulated customer: scripted | llm | hf.")] = "scripted",
    tasks: Annotated[str, typer.Option("--tasks", help="'all' or comma-separated task ids.")] = "all",
    samples: Annotated[int, typer.Option("--samples", "-G", help="Episodes per task (the GRPO group size).")] = 4,
    store: StoreOpt = Path(DEFAULT_STORE),
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id for the episodes (default: <policy>-<time>).")] = None,
    iteration: Annotated[int, typer.Option("--iteration", help="Loop iteration written on every episode.")] = 0,
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="Episodes in flight at once.")] = 8,
    max_turns: Annotated[int, typer.Option("--max-turns", help="Assistant turns per episode at most.")] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Run seed (episode seeds derive from it, the task and the sample).")] = 0,
    # oracle mistakes
    mistake_rate: Annotated[float, typer.Option("--mistake-rate", help="Oracle: rate of every mistake kind.")] = 0.0,
    wrong_argument: Annotated[float | None, typer.Option("--wrong-argument", help=_MISTAKE_HELP.format("wrong_argument"))] = None,
    extra_lookup: Annotated[float | None, typer.Option("--extra-lookup", help=_MISTAKE_HELP.format("extra_lookup"))] = None,
    skipped_confirmation: Annotated[float | None, typer.Option("--skipped-confirmation", help=_MISTAKE_HELP.format("skipped_confirmation"))] = None,
    premature_write: Annotated[float | None, typer.Option("--premature-write", help=_MISTAKE_HELP.format("premature_write"))] = None,
    early_stop: Annotated[float | None, typer.Option("--early-stop", help=_MISTAKE_HELP.format("early_stop"))] = None,
    # models and endpoints
    model: Annotated[str | None, typer.Option("--model", help="openai: model name; hf: local checkpoint path or 'tiny'.")] = None,
    base_url: Annotated[str, typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible endpoint of the policy (up to /v1).")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str | None, typer.Option("--api-key", help="Bearer token (default: $OPENAI_API_KEY; local servers need none).")] = None,
    user_model: Annotated[str | None, typer.Option("--user-model", help="llm user: model name; hf user: checkpoint path or 'tiny' (default: --model).")] = None,
    user_base_url: Annotated[str | None, typer.Option("--user-base-url", help="Endpoint of the llm user (default: --base-url).")] = None,
    user_api_key: Annotated[str | None, typer.Option("--user-api-key", help="Bearer token of the llm user (default: --api-key).")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Sampling temperature for model policies/users.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens per generated reply at most.")] = 512,
    generation_batch_size: Annotated[int | None, typer.Option("--generation-batch-size", help="hf policy: turns generated in one batch at most (default: every episode waiting; --concurrency bounds it).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per endpoint request before retrying.")] = 60.0,
    retries: Annotated[int, typer.Option("--retries", help="Retries per endpoint request (exponential backoff).")] = 4,
    judge_base_url: JudgeBaseUrlOpt = None,
    judge_model: JudgeModelOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Play --samples episodes of each task and write them to the store.

    The G samples of a task form its group. Endpoint failures are retried with backoff; an episode that still fails gets status `error` and is excluded from success rates (see `calib eval`).
    """
    from calib.envs import load_domain
    from calib.envs.splits import filter_split
    from calib.errors import UsageError
    from calib.rollout.evaluate import evaluate_run
    from calib.rollout.runner import RolloutConfig, arun_rollouts, select_tasks, write_episodes
    from calib.store import Store

    try:
        cfg = RolloutConfig(samples=samples, max_turns=max_turns, seed=seed, iteration=iteration,
                            concurrency=concurrency, run_id=run_id or f"{policy}-{time.strftime('%Y%m%dT%H%M%S')}")
        overrides = {k: v for k, v in {"wrong_argument": wrong_argument, "extra_lookup": extra_lookup,
                                       "skipped_confirmation": skipped_confirmation,
                                       "premature_write": premature_write, "early_stop": early_stop}.items()
                     if v is not None}
        if generation_batch_size is not None and generation_batch_size < 1:
            raise ValueError(f"--generation-batch-size {generation_batch_size}: should be >= 1")
        if policy != "oracle" and (mistake_rate or overrides):
            raise ValueError("mistake rates apply to --policy oracle only")
        dom = load_domain(domain, judge=judge_config(judge_base_url, judge_model))
        chosen = filter_split(dom, select_tasks(dom, tasks), split)
        unscorable = dom.unscorable(chosen) if hasattr(dom, "unscorable") else []
        if unscorable:
            raise UsageError(f"tasks {', '.join(unscorable)} of {dom.name} cannot be scored without an LLM judge for "
                             "their NL assertions: pass --judge-base-url and --judge-model, or leave them out with --tasks")
        pol, make_user = _build(policy, user, model=model, base_url=base_url, api_key=api_key, user_model=user_model,
                                user_base_url=user_base_url, user_api_key=user_api_key, temperature=temperature,
                                max_tokens=max_tokens, timeout=timeout, retries=retries, seed=seed,
                                mistake_rate=mistake_rate, overrides=overrides, max_batch=generation_batch_size)
    except ValueError as e:  # config dataclasses name the field
        raise UsageError(str(e)) from None

    import asyncio

    st = Store(store)
    t0 = time.perf_counter()
    episodes = asyncio.run(arun_rollouts(dom, pol, make_user, chosen, cfg, progress=not json_out))
    elapsed = time.perf_counter() - t0
    ingest = write_episodes(st, episodes, domain=dom, source=f"rollout:{cfg.run_id}")
    result = evaluate_run(st, cfg.run_id, cfg.iteration)
    mistakes: dict[str, int] = {}
    for e in episodes:
        for m in e["info"].get("mistakes", []):
            mistakes[m["kind"]] = mistakes.get(m["kind"], 0) + 1
    summary = {
        "run_id": cfg.run_id, "domain": dom.name, "split": split, "policy": pol.name, "user": user, "tasks": len(chosen),
        "episodes": len(episodes), "errors": sum(e["status"] == "error" for e in episodes),
        "success_rate": result.success_rate, "pass_hat_k": {str(k): v for k, v in result.pass_hat_k.items()},
        "mistakes": mistakes, "seconds": round(elapsed, 3), "store": str(st.path),
        "ingested": ingest.episodes, "skipped_duplicates": ingest.skipped_duplicates, "quarantined": ingest.quarantined,
    }
    if json_out:
        typer.echo(dumps(summary))
        return
    _print_summary(summary)


def _build(policy: str, user: str, *, model, base_url, api_key, user_model, user_base_url, user_api_key,
           temperature, max_tokens, timeout, retries, seed, mistake_rate, overrides, max_batch=None):
    """(policy, user factory) from the options; a loaded local model is shared by an hf policy and user."""
    from calib.hf_chat import GenerationConfig
    from calib.http import EndpointConfig
    from calib.policies.oracle import OracleConfig
    from calib.rollout.factories import load_chat_model, make_policy, user_factory

    def endpoint(url: str, name: str | None, key: str | None) -> EndpointConfig:
        return EndpointConfig(base_url=url, model=name or "default", api_key=key, timeout=timeout,
                              max_retries=retries, temperature=temperature, max_tokens=max_tokens)

    gen = GenerationConfig(max_new_tokens=max_tokens, temperature=0.7 if temperature is None else temperature)
    shared = None
    if policy == "hf" and user == "hf" and (user_model or model) == model and model:
        shared = load_chat_model(model, generation=gen)
    pol = make_policy(
        policy,
        oracle=OracleConfig.uniform(mistake_rate, **overrides) if policy == "oracle" else None,
        endpoint=endpoint(base_url, model, api_key) if policy == "openai" else None,
        chat_model=shared, model=model, generation=gen, max_batch=max_batch,
    )
    make_user = user_factory(
        user,
        endpoint=endpoint(user_base_url or base_url, user_model or model, user_api_key or api_key) if user == "llm" else None,
        chat_model=shared, model=user_model or model, generation=gen, seed=seed,
    )
    return pol, make_user


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"rollout {s['run_id']}", title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    rate = "-" if s["success_rate"] is None else f"{s['success_rate']:.1%}"
    rows = [("policy", s["policy"]), ("user", s["user"]), ("domain", s["domain"]), ("tasks", s["tasks"]), ("episodes", s["episodes"]), ("errors (excluded)", s["errors"]),
            ("success rate", rate)]
    rows += [(f"pass^{k}", f"{v:.3f}") for k, v in s["pass_hat_k"].items()]
    rows += [(f"mistakes: {k}", v) for k, v in sorted(s["mistakes"].items())]
    rows += [("seconds", f"{s['seconds']:.1f}"), ("written to", s["store"]),
             ("new episodes", s["ingested"]), ("duplicates skipped", s["skipped_duplicates"])]
    if s["quarantined"]:
        rows.append(("quarantined", s["quarantined"]))
    for k, v in rows:
        t.add_row(k, str(v))
    Console().print(t)


def register(app: typer.Typer) -> None:
    """Add `calib rollout` to the root app."""
    app.command("rollout")(rollout_command)
