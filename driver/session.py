"""The run's lifecycle, written once: check this machine's sandbox, join Ray with the executor
LLM's key withheld from its workers, start the actors, and shut them down however the work ends.
``flowpo train``, ``evaluate``, ``execute`` and the benches call ``prepare`` first (checks that
need no cluster), then run inside ``session``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import ray

from actors.launch import (
    Actors,
    check_local_sandbox,
    cluster_address_for_workers,
    start_actors,
    withhold_from_workers,
)
from flowpo.config import Config
from flowpo.model import model_spec


def connect(config: Config) -> None:
    """Join the Ray cluster this process was started in (``ray job submit``), or start a local one.
    Before it: the key's environment variable leaves the job's runtime env, so only the brokers,
    which get it as a constructor argument, ever hold it; the cluster's address joins it, so that
    Ray's own helpers in the workers find their cluster (``cluster_address_for_workers``)."""
    if not ray.is_initialized():
        withhold_from_workers([config.executor_llm.key_env])
        ray.init(include_dashboard=False, log_to_driver=False,
                 runtime_env=cluster_address_for_workers(os.environ))


def prepare(config: Config, *, generators: bool = True) -> str:
    """The checks that need no Ray, done before anything is written: this machine's sandbox works
    (unless the executors run on other nodes, which check their own) and the base model resolves.
    Returns its path or id (a hub id stays an id: each node resolves it itself); "" when nothing
    needs it (a replay without generators against an API)."""
    model_path = model_spec(config.model.path) if generators or config.executor_llm.backend == "vllm" else ""
    check_local_sandbox(config)
    return model_path


@contextmanager
def session(config: Config, home: Path, model_path: str, *, generators: bool = True) -> Iterator[Actors]:
    """Every actor the config asks for, ready, until the block ends, then shut down whatever
    happened (``generators=False``: a replay of recorded workflows starts no generator replica).
    ``home`` is where the actors' run files (the executor LLM's log) are collected."""
    connect(config)
    actors = start_actors(config, model_path, home, generators=generators)
    try:
        yield actors
    finally:
        actors.shutdown()
