"""The one place that reads the config, builds the plain classes and wraps them as Ray actors."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ray

from actors.evaluator import Evaluator
from actors.executor import Executor
from actors.generator import Generator, SamplingSettings, engine_kwargs
from actors.llm_server import LLMServer, engine_env
from actors.placement import reserve_or_explain
from actors.rate_limiter import RemoteLimiter
from flowpo.config import Config
from flowpo.errors import FlowPOError
from flowpo.llm.broker import Budget, LLMBroker, Pricing
from flowpo.llm.limiter import RateLimits, SharedRateLimiter
from sandbox.backend import SandboxBackend, SandboxLimits
from sandbox.docker_backend import DockerBackend
from sandbox.process_backend import ProcessBackend


@dataclass
class Actors:
    generators: list
    executors: list
    evaluators: list
    llm_server: object | None
    placement_groups: list = field(default_factory=list)
    limiter: object | None = None  # the run's executor-LLM rate limiter (start_limiter), or None
    llm_log: Path | None = None  # where the driver keeps the hosted executor LLM server's log

    def shutdown(self, timeout_s: float = 60) -> None:
        """Ask every actor to stop its own processes, all at once, then kill the actors: the pools
        tear their sandboxes down (killing the actors alone would leave that to --rm), the generators
        and the LLM server stop their vLLM engines, whose processes then unlink their shared memory
        (after a kill, a resource tracker does: actors.llm_server.use_detached_resource_tracker)."""
        deadline = time.monotonic() + timeout_s
        closing = [h.close.remote() for h in [*self.executors, *self.evaluators]]
        stopping = [h.shutdown.remote() for h in self.generators]
        serving = [self.llm_server.stop.remote()] if self.llm_server is not None else []
        settle(closing, "sandbox pools did not close cleanly", deadline)
        settle(stopping, "generator engines did not stop cleanly", deadline)
        settle(serving, "executor LLM server did not stop cleanly", deadline)
        if self.llm_server is not None and self.llm_log is not None:
            keep_server_log(self.llm_server, self.llm_log, deadline)
        for handle in [*self.generators, *self.executors, *self.evaluators, self.llm_server, self.limiter]:
            if handle is not None:
                ray.kill(handle)
        for group in self.placement_groups:
            ray.util.remove_placement_group(group)


def settle(refs: list, failure: str, deadline: float) -> None:
    """Wait for ``refs`` until ``deadline``; shutdown goes on either way (the actors are killed next)."""
    if not refs:
        return
    try:
        ray.get(refs, timeout=max(deadline - time.monotonic(), 0.1))
    except Exception as exc:  # noqa: BLE001 - a warning, not a second failure on top of the run's
        print(f"warning: {failure}: {exc}")


def keep_server_log(server, path: Path, deadline: float) -> None:
    """Append the executor LLM server's log, written on its own node, to ``path`` on the driver's."""
    try:
        text = ray.get(server.take_log.remote(), timeout=max(deadline - time.monotonic(), 5.0))
    except Exception as exc:  # noqa: BLE001 - a warning, not a second failure on top of the run's
        print(f"warning: the executor LLM server's log was not kept: {exc}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        log.write(text)


def build_backend(config: Config, timeout_s: float | None = None) -> SandboxBackend:
    sb = config.sandbox
    limits = SandboxLimits.from_config(sb, timeout_s=timeout_s)
    if sb.backend == "process":
        return ProcessBackend(limits, python=sb.process_python)
    return DockerBackend(sb.image, limits)


NO_KEY = "EMPTY"  # what the openai client sends to a server that needs no key (it must send something)


def start_llm_server(config: Config, model_path: str):
    """Return (actor or None, base_url, api_key) for the executor LLM."""
    llm = config.executor_llm
    if llm.backend == "openai":
        if not llm.base_url:
            raise FlowPOError("executor_llm.base_url must be set when executor_llm.backend is openai")
        if not llm.key_env:  # a server of your own (vLLM, llama.cpp) started without a key takes any
            return None, llm.base_url, NO_KEY
        key = os.environ.get(llm.key_env, "")
        if not key:
            raise FlowPOError(f"executor_llm.api_key_env: environment variable {llm.key_env} is not set"
                              + ("" if llm.api_key_env else " (OpenAI's API needs a key; a server of your own "
                                 "needs only executor_llm.base_url and executor_llm.model)"))
        return None, llm.base_url, key
    actor = ray.remote(num_cpus=llm.num_cpus, num_gpus=llm.num_gpus)(LLMServer).remote(
        model_path, config.model.served_name, host=llm.host, max_model_len=llm.max_model_len,
        kv_cache_gb=llm.kv_cache_gb, gpu_memory_utilization=llm.gpu_memory_utilization,
        enforce_eager=llm.enforce_eager, dtype=llm.dtype,
        env=engine_env(llm.num_cpus))  # its log: on its node, then Actors.llm_log
    return actor, ray.get(actor.start.remote()), NO_KEY  # the hosted vLLM server has no key


def actor_name(config: Config, role: str, index: int) -> str:
    """Names show up in Ray's dashboard and state API, and let operators (and tests) find an actor."""
    return f"{config.name}-{config.run_id}-{role}-{index}"


def replica_bundle(num_cpus: float, num_gpus: float, resources: dict[str, float]) -> dict:
    """What one generator replica reserves: its CPUs, its GPUs (tensor-parallel ranks) and its custom
    resources (generator.resources, which pick its node type), together."""
    return {k: v for k, v in {"CPU": num_cpus, "GPU": num_gpus, **resources}.items() if v > 0}


def generator_plan(config: Config, model_path: str) -> tuple[dict, dict]:
    """(vLLM engine arguments, the placement-group bundle) of one generator replica.

    A replica's tensor-parallel ranks run as vLLM's own processes inside its actor (engine_kwargs
    picks the "mp" backend for them), so the actor's one bundle must hold a GPU for every rank."""
    g = config.generator
    if 0 < g.num_gpus < g.tensor_parallel_size:
        raise FlowPOError(
            f"generator.num_gpus ({g.num_gpus:g}) is less than generator.tensor_parallel_size "
            f"({g.tensor_parallel_size}): a replica needs one GPU per tensor-parallel rank; set "
            f"generator.num_gpus={g.tensor_parallel_size}.")
    kwargs = engine_kwargs(model_path, seed=g.seed, dtype=g.dtype, max_model_len=g.max_model_len,
                           enforce_eager=g.enforce_eager,
                           max_lora_rank=g.max_lora_rank, kv_cache_gb=g.kv_cache_gb,
                           gpu_memory_utilization=g.gpu_memory_utilization,
                           tensor_parallel_size=g.tensor_parallel_size)
    return kwargs, replica_bundle(g.num_cpus, g.num_gpus, g.resources)


def start_generators(config: Config, model_path: str) -> tuple[list, list]:
    """One actor per replica, each in its own placement group so that a replica's GPUs (tensor
    parallel ranks) land on one node; replica i seeds its engine with seed + i."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    g = config.generator
    kwargs, bundle = generator_plan(config, model_path)
    sampling = SamplingSettings(k=g.k, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens,
                                stop=tuple(g.stop), response_prefix=g.response_prefix, max_attempts=g.max_attempts,
                                return_logprobs=g.return_logprobs, seed=g.seed)
    groups = [ray.util.placement_group([bundle], strategy="STRICT_PACK") for _ in range(g.num_replicas)]
    # A fresh cluster's GPU nodes join after their set-up: the wait lasts while the autoscaler works.
    reserve_or_explain(groups, "generator replicas", bundle, patience_s=g.start_timeout_s)
    remote = ray.remote(num_cpus=g.num_cpus, num_gpus=g.num_gpus, resources=g.resources or None,
                        max_concurrency=1000, max_restarts=config.pipeline.max_restarts)(Generator)
    handles = [remote.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg),
                              name=actor_name(config, "generator", i)).remote(
                   {**kwargs, "seed": g.seed + i}, sampling, engine_env(g.num_cpus))
               for i, pg in enumerate(groups)]
    return handles, groups


def rate_limits(config: Config) -> RateLimits:
    """The run-wide executor-LLM limits; none (inactive) unless executor_llm.shared_limits applies them."""
    llm = config.executor_llm
    if llm.shared_limits == "never" or (llm.shared_limits == "auto" and llm.backend != "openai"):
        return RateLimits()
    rpm, tpm = llm.run_limits  # OpenAI's tier 1 by default at its API, none at a server of your own
    # a grant outlives its request only when its broker died: free it a minute after the call's timeout
    return RateLimits(rpm=rpm, tpm=tpm, max_concurrent=llm.max_concurrent_requests,
                      window_s=llm.rate_window_s, default_backoff_s=llm.retry_base_s,
                      grant_timeout_s=llm.request_timeout_s + 60)


# Every waiting acquire holds one of the actor's concurrency slots: far more slots than calls can
# wait at once, so that a release (which wakes them) never queues behind them.
LIMITER_MAX_CONCURRENCY = 100_000


def start_limiter(config: Config):
    """One async actor holding the run's limit for every broker, or None when no limit applies."""
    limits = rate_limits(config)
    if not limits.active:
        return None
    remote = ray.remote(num_cpus=0, max_concurrency=LIMITER_MAX_CONCURRENCY, max_restarts=-1)(SharedRateLimiter)
    return remote.options(name=actor_name(config, "llm-rate-limiter", 0)).remote(limits)


def build_broker(config: Config, base_url: str, api_key: str, *, temperature: float | None = None,
                 limiter=None) -> LLMBroker:
    """``limiter``: the handle start_limiter returned, or None (each broker limited alone)."""
    llm = config.executor_llm
    return LLMBroker(base_url, api_key, llm.model or config.model.served_name,
                     temperature=llm.temperature if temperature is None else temperature,
                     max_tokens=llm.max_tokens, max_concurrency=llm.max_concurrency, timeout_s=llm.request_timeout_s,
                     max_retries=llm.max_retries, retry_base_s=llm.retry_base_s, retry_cap_s=llm.retry_cap_s,
                     cache_size=llm.cache_size,
                     budget=Budget(llm.max_calls_per_workflow, llm.max_tokens_per_workflow),
                     pricing=Pricing(llm.prompt_usd_per_mtok, llm.completion_usd_per_mtok),
                     limiter=RemoteLimiter(limiter) if limiter is not None else None,
                     # the run's window: a workflow whose own requests fill it queues behind itself
                     rate_limits=rate_limits(config) if limiter is not None else None)


def executor_options(config: Config) -> dict:
    """``ray.remote`` options of an executor actor: it runs sandboxes, so it goes where they may run."""
    sb = config.sandbox
    # Extra concurrency beyond the sandboxes lets stats and close calls through while all are busy.
    return dict(num_cpus=sb.executor_num_cpus, resources=sb.executor_resources or None,
                max_concurrency=sb.sandboxes_per_executor + 4, max_restarts=config.pipeline.max_restarts)


def evaluator_sandboxes(config: Config) -> int:
    """Hidden tests need sandboxes only for code tasks (two each: the candidate's and the test's);
    math and QA answers are scored on the host."""
    if config.task.resolved_family != "code":
        return 0
    if config.evaluator.sandboxes_per_evaluator < 2:
        raise FlowPOError(f"evaluator.sandboxes_per_evaluator: a hidden test of {config.task.name} takes two "
                          "sandboxes (the candidate's and the test's); "
                          f"got {config.evaluator.sandboxes_per_evaluator}, set at least 2")
    return config.evaluator.sandboxes_per_evaluator


def evaluator_options(config: Config) -> dict:
    """``ray.remote`` options of an evaluator actor. One without sandboxes does not ask for
    sandbox.executor_resources: it would take a sandbox node's slot (and keep the autoscaler
    adding sandbox nodes) for work that runs anywhere."""
    ev, sandboxes = config.evaluator, evaluator_sandboxes(config)
    return dict(num_cpus=ev.num_cpus, resources=(config.sandbox.executor_resources or None) if sandboxes else None,
                max_concurrency=max(sandboxes, 4) + 4, max_restarts=config.pipeline.max_restarts)


def start_executors(config: Config, base_url: str, api_key: str, limiter=None) -> list:
    """The key reaches an executor only as its broker's constructor argument (see withhold_from_workers)."""
    sb = config.sandbox
    executor_cls = ray.remote(**executor_options(config))(Executor)
    return [executor_cls.options(name=actor_name(config, "executor", i)).remote(
                build_backend(config), build_broker(config, base_url, api_key, limiter=limiter),
                sandboxes=sb.sandboxes_per_executor, recycle_after=sb.recycle_after, seed=config.seed)
            for i in range(sb.num_executors)]


def start_evaluators(config: Config, base_url: str, api_key: str, limiter=None) -> list:
    ev, sandboxes = config.evaluator, evaluator_sandboxes(config)
    judged = ev.judge or config.task.resolved_scorer == "judge"  # the judge's broker: the executor LLM's endpoint
    evaluator_cls = ray.remote(**evaluator_options(config))(Evaluator)
    return [evaluator_cls.options(name=actor_name(config, "evaluator", i)).remote(
        build_backend(config, ev.timeout_s) if sandboxes else None, sandboxes=sandboxes,
        broker=build_broker(config, base_url, api_key, temperature=ev.judge_temperature, limiter=limiter)
        if judged else None,
        math_timeout_s=ev.math_timeout_s, scorer_timeout_s=ev.scorer_timeout_s, rubric=config.task.rubric,
        judge_apart=ev.judge, judge_screen=ev.judge_screen)
        for i in range(ev.num_evaluators)]


def check_local_sandbox(config: Config) -> bool:
    """Check the sandbox backend (Docker engine and image, or bubblewrap) on this machine, early,
    when executors may run here; return False without checking when sandbox.executor_resources
    places them on other nodes (a cluster's driver needs no Docker): each executor and evaluator
    checks its own node in ``ready()``."""
    if config.sandbox.executor_resources:
        return False
    build_backend(config).check()
    return True


# Set by `ray job submit` for the entrypoint: the job's runtime env, which ray.init hands on to every
# worker process of the job (ray._private.runtime_env.constants.RAY_JOB_CONFIG_JSON_ENV_VAR).
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def withhold_from_workers(names: Iterable[str]) -> list[str]:
    """Drop environment variables ``names`` from the submitted job's runtime env; call before ray.init.

    `ray job submit --runtime-env-json '{"env_vars": {...}}'` is how the executor LLM's key reaches
    the driver, but Ray would set it in every worker of the job too (generators, learners, their vLLM
    and torch processes). The driver keeps it in its own environment and hands it to the brokers
    alone, as constructor arguments. Returns the names dropped."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        return []
    job = json.loads(raw)
    env_vars = (job.get("runtime_env") or {}).get("env_vars") or {}
    dropped = [name for name in names if name in env_vars]
    for name in dropped:
        del env_vars[name]
    if dropped:
        os.environ[JOB_CONFIG_ENV] = json.dumps(job)
    return dropped


def cluster_address_for_workers(environ: Mapping[str, str]) -> dict | None:
    """The runtime env for ``ray.init`` that tells every worker of the job which cluster it is in:
    ``RAY_ADDRESS``, the GCS address this driver joins (`ray job submit` sets it for the entrypoint).

    A worker that asks Ray's state API with no address (Ray Train's PlacementGroupCleaner does, every
    second) finds its cluster by the node's ``ray_current_cluster`` file, and failing that by scanning
    the machine's processes for raylets: on a head started with ``--temp-dir`` that shares its machine
    with another Ray instance, that scan finds two and raises, the cleaner's watch ends, and when the
    driver is then stopped (`ray job stop`) the detached cleaner stays for the cluster's life. None
    when the driver starts a Ray of its own, names it by URL or "auto", or the job sets it already."""
    address = environ.get("RAY_ADDRESS", "")
    if not address or address == "auto" or "://" in address:
        return None
    job = json.loads(environ.get(JOB_CONFIG_ENV) or "{}")
    if "RAY_ADDRESS" in ((job.get("runtime_env") or {}).get("env_vars") or {}):
        return None  # ray.init refuses a variable set twice; the job's own value reaches the workers
    return {"env_vars": {"RAY_ADDRESS": address}}


def check_prompts_fit(actors: Actors, problems: list, config: Config, *, training: bool = False) -> None:
    """Before any work: every problem's generator prompt, measured by a replica's own tokenizer,
    fits ``generator.max_model_len`` (else a clear error), with a warning for those that leave the
    workflow less than ``generator.max_tokens``; when ``training``, with a workflow of that length it
    fits ``train.max_seq_len`` too (else a clear error)."""
    from flowpo.prompts import check_prompt_room, check_training_room

    if not actors.generators:  # a replay of recorded workflows generates nothing
        return
    lengths = ray.get(actors.generators[0].prompt_lengths.remote(problems))
    warning = check_prompt_room(lengths, config.generator.max_model_len, config.generator.max_tokens)
    if training:
        check_training_room(lengths, config.train.max_seq_len, config.generator.max_tokens)
    if warning:
        print(f"warning: {warning}")


STARTING_RETRY_S = 2.0  # before asking an actor that died while starting again: Ray is restarting it


def wait_ready(handles: list, max_restarts: int) -> None:
    """Every actor answers ``ready()``. One that dies while it starts (killed, out of memory) is
    restarted by Ray up to ``max_restarts`` times, as during a round, and is asked again each time;
    the error is raised once it cannot come back (a resumed run's start met exactly this in the
    chaos bench: its executor was killed mid-start)."""
    tries_left = {handle: (max_restarts if max_restarts >= 0 else 10) for handle in handles}
    pending = {handle.ready.remote(): handle for handle in handles}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        handle = pending.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed or tries_left[handle] <= 0:  # its constructor failed: it says why
                raise
            tries_left[handle] -= 1
            time.sleep(STARTING_RETRY_S)
            pending[handle.ready.remote()] = handle


def start_actors(config: Config, model_path: str, run_dir: Path, *, generators: bool = True) -> Actors:
    """Start every stage and wait until all are ready; on any failure, stop what was started.
    ``generators=False`` (a replay of recorded workflows) starts no generator replica."""
    actors = Actors([], [], [], None)
    try:
        # Actor creation returns at once: the generator engines start while we wait for the server.
        if generators:
            actors.generators, actors.placement_groups = start_generators(config, model_path)
        actors.llm_server, base_url, api_key = start_llm_server(config, model_path)
        actors.llm_log = run_dir / "logs" / "executor_llm.log"
        actors.limiter = start_limiter(config)
        actors.executors = start_executors(config, base_url, api_key, actors.limiter)
        actors.evaluators = start_evaluators(config, base_url, api_key, actors.limiter)
        wait_ready([*actors.generators, *actors.executors, *actors.evaluators], config.pipeline.max_restarts)
    except BaseException as exc:
        actors.shutdown()
        cause = getattr(exc, "cause", None)
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, FlowPOError):
            raise cause from None
        raise
    return actors
