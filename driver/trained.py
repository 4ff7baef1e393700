"""What a CHECKPOINT of `flowpo solve` and `flowpo serve` names, and the config that generates with it.

CHECKPOINT is one of:

- ``base``: the base model, no adapter (the config: ``--config`` or the defaults);
- a run directory: its latest trained round, or ``--round K`` (the run's config.yaml);
- an adapter directory (a peft adapter; inside a run, ``adapters/round-K``, the run's config);
- a folder written by ``flowpo export`` (its ``flowpo_generator.json`` and config.yaml): on any
  machine, with no run directory; ``merged=True`` uses its merged weights instead of the adapter.

The generator's prompt settings come from the checkpoint (driver/prompt_spec.py) over whatever
config is used; dotted overrides come last, so a user can still change any of them.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from driver.evaluate import Checkpoint
from driver.prompt_spec import apply_spec, build_spec, is_export, read_spec
from driver.rundir import RunDir, adapter_name
from flowpo.baselines import LABELS
from flowpo.config import Config, inconsistency, load_config
from flowpo.errors import ConfigError, FlowPOError
from flowpo.records import BASE_ADAPTER
from flowpo.typed_config import apply_override


@dataclass(frozen=True)
class Trained:
    checkpoint: Checkpoint  # the version the generators serve it as, and its adapter ("" : none)
    config: Config  # the config that generates with it (prompt spec applied, overrides last)
    spec: dict | None  # the generator prompt spec (None: the base model under a config of its own)
    home: Path | None  # the run directory it came from, where outputs go by default
    label: str  # what it is, for people: "round-2 of runs/local", "export ./gen", "base"


def lane_name(path: Path) -> str:
    name = path.resolve().name
    return f"adapter-{name}" if name in (BASE_ADAPTER, *LABELS) else name  # not "no adapter", not a baseline


def config_of(path: Path | None, overrides: list[str]) -> Config:
    """The config at ``path`` with the overrides, or the defaults with them."""
    if path is not None:
        return load_config(path, overrides)
    config = Config()
    for item in overrides:
        config = apply_override(config, item)
    problem = inconsistency(config)
    if problem:
        raise ConfigError(problem)
    return config


def finish(config: Config, spec: dict | None, overrides: list[str], model_path: str = "") -> Config:
    """The spec over the config, then the overrides again: they have the last word."""
    if spec is None:
        return config
    config = apply_spec(config, spec, model_path=model_path)
    for item in overrides:
        config = apply_override(config, item)
    return config


def adapter_rank(path: Path) -> int:
    try:
        return int(json.loads((path / "adapter_config.json").read_text()).get("r", 0))
    except (OSError, ValueError) as exc:
        raise FlowPOError(f"{path}: unreadable adapter_config.json ({exc})") from None


def load_trained(text: str, *, config_file: str | None = None, overrides: list[str] = (),
                 round_index: int | None = None, merged: bool = False) -> Trained:
    overrides = list(overrides)
    given = Path(config_file) if config_file else None
    if given is not None and not given.is_file():
        raise FlowPOError(f"--config {given}: config file not found")
    if text.strip() == BASE_ADAPTER:
        return Trained(Checkpoint(BASE_ADAPTER, ""), config_of(given, overrides), None, None, "base")
    path = Path(text).expanduser()
    if not path.exists():
        raise FlowPOError(f"checkpoint {text}: no such file or directory (pass a run directory, an adapter "
                          "directory, a folder of `flowpo export`, or base)")
    if is_export(path):
        return _exported(path, given, overrides, merged)
    if merged:
        raise FlowPOError(f"--merged: {path} is not a folder of `flowpo export` (no flowpo_generator.json)")
    if RunDir(path).config.is_file():
        rounds = RunDir(path).trained_rounds()
        if round_index is None and not rounds:
            raise FlowPOError(f"checkpoint {path}: the run has no trained round yet (adapters/round-K); pass base "
                              "with --config to use the base model")
        round_index = rounds[-1] if round_index is None else round_index
        adapter = RunDir(path).adapter(round_index)
        if not (adapter / "adapter_config.json").is_file():
            known = ", ".join(adapter_name(k) for k in rounds) or "none"
            raise FlowPOError(f"--round {round_index}: no adapter at {adapter} (trained rounds: {known})")
        return _adapter(adapter, path, given, overrides, adapter_name(round_index),
                        f"{adapter_name(round_index)} of {path}")
    if round_index is not None:
        raise FlowPOError(f"--round {round_index}: {path} is not a run directory (no config.yaml)")
    if (path / "adapter_config.json").is_file():
        run = path.parent.parent if path.parent.name == "adapters" else None
        run = run if run is not None and RunDir(run).config.is_file() else None
        return _adapter(path, run, given, overrides, lane_name(path), f"adapter {path}")
    raise FlowPOError(f"checkpoint {path}: neither a run directory (config.yaml), a peft adapter "
                      "(adapter_config.json) nor a folder of `flowpo export` (flowpo_generator.json)")


def _adapter(adapter: Path, run: Path | None, given: Path | None, overrides: list[str], name: str,
             label: str) -> Trained:
    """A peft adapter, generating with its run's prompt (when it has a run) over ``--config``."""
    rank = adapter_rank(adapter)
    spec = None
    if run is not None:
        run_config = load_config(RunDir(run).config, [])
        spec = build_spec(run_config, lora_rank=rank, source={"run_dir": str(run.resolve()), "adapter": name})
    config = finish(config_of(given or (RunDir(run).config if run else None), overrides), spec, overrides)
    if rank > config.generator.max_lora_rank:
        config = dataclasses.replace(config, generator=dataclasses.replace(config.generator, max_lora_rank=rank))
    return Trained(Checkpoint(name, str(adapter.resolve())), config, spec, run, label)


def _exported(folder: Path, given: Path | None, overrides: list[str], merged: bool) -> Trained:
    spec = read_spec(folder)
    own = folder / "config.yaml"
    if given is None and own.is_file():
        try:
            base = load_config(own, overrides)
        except ConfigError as exc:  # written by another FlowPO: the spec alone still generates
            warnings.warn(f"{own} does not load here ({exc}); using the defaults with the generator spec",
                          stacklevel=2)
            base = config_of(None, overrides)
    else:
        base = config_of(given, overrides)
    if merged:
        if not spec.get("merged") or not (folder / spec["merged"] / "config.json").is_file():
            raise FlowPOError(f"--merged: {folder} holds no merged weights (export it with --merge)")
        model = str((folder / spec["merged"]).resolve())
        return Trained(Checkpoint(BASE_ADAPTER, ""), finish(base, spec, overrides, model), spec, None,
                       f"export {folder} (merged weights)")
    adapter = folder / spec.get("adapter", ".")
    if not (adapter / "adapter_config.json").is_file():
        raise FlowPOError(f"{folder}: no peft adapter at {adapter} (adapter_config.json is missing)")
    return Trained(Checkpoint(lane_name(folder), str(adapter.resolve())), finish(base, spec, overrides), spec, None,
                   f"export {folder}")
