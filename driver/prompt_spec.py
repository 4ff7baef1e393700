"""The generator prompt specification: what a trained adapter was trained to continue, saved beside
it by ``flowpo export`` (``flowpo_generator.json``) and applied by ``flowpo solve`` and ``flowpo serve``.

An adapter alone is useless: the generator learned to continue one prompt (the task family's
template with its operator reference and few-shot turns, the task's description, the chat template,
then ``generator.response_prefix``) and to stop at ``generator.stop``. The spec records those and the
sampling defaults of the run, and the rendered template itself, so that a later FlowPO whose
template or operator library changed says so (``drift``) instead of silently prompting the adapter
with something it never saw.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

from flowpo.config import Config
from flowpo.errors import FlowPOError
from flowpo.operators import OPERATORS
from flowpo.prompts import OPERATOR_REFERENCE, workflow_messages
from flowpo.records import Problem

SPEC_FILE = "flowpo_generator.json"
SPEC_FORMAT = 1
PLACEHOLDER = "{problem}"  # where a question's text goes in the template's last user turn


def flowpo_version() -> str:
    try:
        return metadata.version("flowpo")
    except metadata.PackageNotFoundError:
        return "unknown"


def flowpo_revision() -> str:
    """The checkout's git revision, when there is one (a wheel install has none)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def operator_library() -> dict:
    """The operators a workflow may call, and a digest of the reference the prompt shows of them."""
    return {"flowpo_version": flowpo_version(), "operators": list(OPERATORS),
            "sha256": hashlib.sha256(OPERATOR_REFERENCE.encode()).hexdigest()[:16]}


def template_messages(family: str, description: str) -> list[dict]:
    """The chat messages of the family's template, the question's text standing as ``PLACEHOLDER``."""
    return workflow_messages(Problem(problem_id="spec", prompt=PLACEHOLDER, family=family,  # type: ignore[arg-type]
                                     description=description))


def build_spec(config: Config, *, adapter: str = ".", merged: str = "", lora_rank: int = 0,
               source: dict | None = None) -> dict:
    """The spec of a generator trained under ``config`` (the run's own); ``adapter`` and ``merged``
    are paths relative to the exported folder ("" when absent)."""
    g, task = config.generator, config.task
    family, description = task.resolved_family, task.description
    return {
        "format": SPEC_FORMAT,
        "base_model": config.model.path,
        "adapter": adapter,
        "merged": merged,
        "lora_rank": lora_rank,
        "family": family,
        "description": description,
        "response_prefix": g.response_prefix,
        "stop": list(g.stop),
        "template": {
            "messages": template_messages(family, description),
            "placeholder": PLACEHOLDER,
            "how": "the question goes where the placeholder stands (problem text over 2,400 characters keeps its "
                   "start and end); the base model's chat template renders the messages with "
                   "add_generation_prompt=True, then response_prefix follows; the workflow is the code between "
                   "<graph> and </graph> of response_prefix + the completion",
        },
        "operator_library": operator_library(),
        "sampling": {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens,
                     "max_attempts": g.max_attempts, "seed": g.seed, "max_model_len": g.max_model_len,
                     "dry_run": g.dry_run},
        "source": {**(source or {}), "flowpo_version": flowpo_version(), "flowpo_revision": flowpo_revision()},
    }


def write_spec(folder: Path, spec: dict) -> Path:
    path = Path(folder) / SPEC_FILE
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


def is_export(folder: Path) -> bool:
    return (Path(folder) / SPEC_FILE).is_file()


REQUIRED = ("base_model", "family", "response_prefix", "stop", "sampling", "template", "operator_library")


def read_spec(folder: Path) -> dict:
    path = Path(folder) / SPEC_FILE
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FlowPOError(f"{path}: not a readable generator spec ({exc})") from None
    missing = [key for key in REQUIRED if key not in spec] if isinstance(spec, dict) else list(REQUIRED)
    if missing:
        raise FlowPOError(f"{path}: the generator spec lacks {', '.join(missing)}; export the run again")
    if spec.get("format", 0) > SPEC_FORMAT:
        raise FlowPOError(f"{path}: spec format {spec['format']} is newer than this FlowPO reads ({SPEC_FORMAT}); "
                          "upgrade FlowPO")
    return spec


def apply_spec(config: Config, spec: dict, *, model_path: str = "") -> Config:
    """``config`` generating as the spec says: its base model (or ``model_path``: merged weights),
    response prefix, stop strings and sampling defaults, and LoRA room for its rank."""
    s = spec["sampling"]
    generator = dataclasses.replace(
        config.generator, response_prefix=spec["response_prefix"], stop=list(spec["stop"]),
        temperature=s["temperature"], top_p=s["top_p"], max_tokens=s["max_tokens"], max_attempts=s["max_attempts"],
        seed=s["seed"], max_model_len=max(config.generator.max_model_len, s["max_model_len"]),
        dry_run=s.get("dry_run", config.generator.dry_run),
        max_lora_rank=max(config.generator.max_lora_rank, spec.get("lora_rank", 0)))
    return dataclasses.replace(config, generator=generator,
                               model=dataclasses.replace(config.model, path=model_path or spec["base_model"]))


def drift(spec: dict, family: str, description: str) -> list[str]:
    """How the prompt this FlowPO writes for these questions differs from the one the generator was
    trained on ([] when it is the same): a warning for the user, never an error, since the adapter
    still works, only less well than its held-out results say."""
    notes = []
    library = operator_library()
    trained = spec["operator_library"]
    if trained.get("sha256") != library["sha256"]:
        added = sorted(set(library["operators"]) - set(trained.get("operators", [])))
        removed = sorted(set(trained.get("operators", [])) - set(library["operators"]))
        notes.append(f"the operator library differs from the one the generator was trained with (FlowPO "
                     f"{trained.get('flowpo_version', '?')}, reference {trained.get('sha256')}; here "
                     f"{library['flowpo_version']}, {library['sha256']}"
                     + (f"; added {', '.join(added)}" if added else "")
                     + (f"; removed {', '.join(removed)}" if removed else "")
                     + ")")
    if (family, description) != (spec["family"], spec.get("description", "")):
        notes.append(f"the questions are asked as family {family!r}"
                     + (" with another task description" if description != spec.get("description", "") else "")
                     + f"; the generator was trained on family {spec['family']!r}")
    elif template_messages(family, description) != spec["template"]["messages"]:
        notes.append("this FlowPO writes the generator's template differently from the one it was trained with "
                     f"(FlowPO {spec['source'].get('flowpo_version', '?')} "
                     f"{spec['source'].get('flowpo_revision', '')})")
    return notes
