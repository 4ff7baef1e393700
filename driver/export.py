"""`flowpo export RUN_DIR --checkpoint K --out DIR`: what a run learned, as a self-contained folder
that `flowpo solve` and `flowpo serve` load on any machine, with no run directory:

    README.md               model card (base_model, library_name: peft, tags, the run's config, its
                            held-out results when `flowpo evaluate` has them)
    adapter_config.json     the peft adapter, at the top as the hub and vLLM's --lora-modules expect it
    adapter_model.safetensors
    flowpo_generator.json   the generator prompt spec (driver/prompt_spec.py): template, operator
                            library version, response prefix, stop strings, family, sampling defaults
    config.yaml             the run's config, as it ran
    eval_results.json       the checkpoint's held-out results (when evaluated)
    merged/                 with --merge: base + adapter merged (peft's merge_and_unload), a plain model
                            directory vLLM serves without LoRA

The folder is written beside its destination and renamed into place when complete, so a folder
under that name is always a whole export. ``--push-to-hub REPO`` uploads it with huggingface_hub.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from driver.prompt_spec import SPEC_FILE, build_spec, flowpo_revision, flowpo_version, write_spec
from driver.rundir import RunDir, adapter_name
from driver.trained import adapter_rank
from flowpo.config import Config, load_config
from flowpo.errors import FlowPOError
from flowpo.model import looks_like_path

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
MERGED = "merged"


def pick_round(run: RunDir, checkpoint: str | None) -> int:
    rounds = run.trained_rounds()
    if not rounds:
        raise FlowPOError(f"{run.path}: the run has no trained round to export (adapters/round-K)")
    if checkpoint in (None, "", "latest"):
        return rounds[-1]
    if not str(checkpoint).isdigit() or int(checkpoint) not in rounds:
        raise FlowPOError(f"--checkpoint {checkpoint}: not a trained round of {run.path} (trained: "
                          f"{', '.join(map(str, rounds))}; or latest)")
    return int(checkpoint)


def held_out(run: RunDir, name: str) -> dict | None:
    """The checkpoint's held-out results, as `flowpo evaluate` wrote them: its own evaluation
    (eval/round-K/) or the run's learning curve (eval/all-checkpoints/), this round's row beside the
    base model's and the baselines'."""
    for folder in (run.evaluation(name), run.evaluation("all-checkpoints")):
        path = folder / "results.json"
        if not path.is_file():
            continue
        try:
            results = json.loads(path.read_text())
        except ValueError:
            continue
        methods = [m for m in results.get("methods", []) if not m["method"].startswith("round-") or m["method"] == name]
        if any(m["method"] == name for m in methods):
            keep = ("task", "split", "repeats", "samples", "seed", "problem_ids")
            return {"source": str(path), **{k: results[k] for k in keep if k in results}, "methods": methods}
    return None


def results_table(results: dict) -> str:
    from driver.evaluate import MethodResult, render_table

    fields = MethodResult.__dataclass_fields__
    return render_table([MethodResult(**{k: v for k, v in m.items() if k in fields}) for m in results["methods"]])


def card_base_model(config: Config, base_model_id: str) -> str:
    """The card's base_model: ``--base-model-id``, else model.path when it is a hub id, else "" (a
    local directory means nothing on the hub; the card then names it in its text)."""
    spec = config.model.path
    return base_model_id or ("" if looks_like_path(spec) else spec.split("@", 1)[0])


def model_card(config: Config, *, round_index: int, spec: dict, results: dict | None, base_model_id: str,
               merged: bool, meta: dict) -> str:
    t, g, task = config.train, config.generator, config.task
    base = card_base_model(config, base_model_id)
    executor = config.executor_llm.model or (config.model.path if config.executor_llm.backend == "vllm"
                                             else config.model.served_name)
    front = ["---"] + ([f"base_model: {base}"] if base else []) + [
        "library_name: peft", "pipeline_tag: text-generation", "tags:", "- flowpo", "- agent-workflows",
        "- workflow-generation", "- lora", f"- {t.algorithm.replace('_', '-')}", f"- {task.name}", "---", ""]
    held = (f"{results_table(results)}\n\nFrom `{Path(results['source']).name}` of the run "
            f"({results.get('split', '?')} split, {results.get('repeats', '?')} run(s) per workflow, "
            f"seed {results.get('seed', '?')}).") if results \
        else (f"Not evaluated. `flowpo evaluate RUN_CONFIG --checkpoint {round_index}` writes them, and a new export "
              "puts them here.")
    rows = [("algorithm", t.algorithm), ("rounds trained", round_index), ("workflows per problem (k)", g.k),
            ("beta", t.beta), ("learning rate", t.learning_rate),
            ("LoRA", f"r={t.lora_r}, alpha={t.lora_alpha}, on {', '.join(t.target_modules)}"),
            ("task", f"{task.name} ({spec['family']}), split {task.split}"), ("executor LLM", executor),
            ("base model", config.model.path), ("seed", config.seed),
            ("FlowPO", f"{flowpo_version()} {flowpo_revision()}".strip()),
            ("optimizer steps", meta.get("step", "?"))]
    table = "\n".join(["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    merged_line = (f"- `{MERGED}/`: the base model with the adapter merged in (peft's merge_and_unload), served "
                   "without LoRA: `flowpo solve THIS_FOLDER --merged`\n") if merged else ""
    return "\n".join(front) + f"""# {config.name}: a FlowPO workflow generator

A LoRA adapter on {base or config.model.path} trained by FlowPO with {t.algorithm} for
{round_index} round(s) on {task.name}. Given a problem, it writes a Python workflow (a `Workflow` class)
that calls an executor LLM through FlowPO's operators; FlowPO runs the workflow in a sandbox and
returns its answer. The adapter writes good workflows only when prompted exactly as it was trained:
`{SPEC_FILE}` holds that prompt (template, operator library version, response prefix, stop strings,
family, sampling defaults), and FlowPO applies it.

## Held-out results

{held}

## Use it

```bash
flowpo solve THIS_FOLDER --question "..."            # or --input questions.jsonl [--samples 5]
flowpo serve THIS_FOLDER --port 8000                 # OpenAI-compatible: POST /v1/chat/completions
```

Only the workflow generator is here: the executor LLM, the sandbox and the operators are FlowPO's
(`config.yaml` names the executor it was trained with; pass `--config` or overrides such as
`executor_llm.model=...` to change them). vLLM loads the adapter as it is
(`--enable-lora --lora-modules flowpo=THIS_FOLDER`), but its completions are workflows, not answers.

## Training

{table}

## Files

- `adapter_config.json`, `adapter_model.safetensors`: the peft adapter
- `{SPEC_FILE}`: the generator prompt specification
- `config.yaml`: the run's whole config
{merged_line}"""


def merge_weights(model_path: str, adapter: Path, out: Path) -> None:
    """The base model with the adapter merged in, saved as a plain model directory (safetensors,
    with the tokenizer and its chat template) that vLLM serves without LoRA."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flowpo.model import resolve_model

    base = resolve_model(model_path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def push_to_hub(folder: Path, repo: str, *, private: bool = False) -> str:
    """Create the hub repository (if needed) and upload the folder; the commit's URL. The token is
    huggingface_hub's own (HF_TOKEN, or `hf auth login`)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                               commit_message=f"FlowPO export of {folder.name}")
    return str(getattr(commit, "commit_url", commit))


def export(run_dir: str | Path, checkpoint: str | None, out: str | Path, *, merge: bool = False,
           base_model_id: str = "", push: str = "", private: bool = False) -> Path:
    """Everything `flowpo export` does; returns the folder."""
    run = RunDir(Path(run_dir)).require("flowpo export")
    config = load_config(run.config, [])
    round_index = pick_round(run, checkpoint)
    adapter = run.adapter(round_index)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FlowPOError(f"--out {out}: it exists and is not empty; an export is never written over another")
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name in ADAPTER_FILES:
            if (adapter / name).is_file():
                shutil.copy2(adapter / name, partial / name)
        if base_model_id:  # peft reads the base from here: name the hub's, not a path of the training machine
            adapter_config = json.loads((partial / "adapter_config.json").read_text())
            adapter_config["base_model_name_or_path"] = base_model_id
            (partial / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        meta_path = adapter / "checkpoint.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        name = adapter_name(round_index)
        spec = build_spec(config, adapter=".", merged=MERGED if merge else "", lora_rank=adapter_rank(adapter),
                          source={"run": config.name, "run_dir": str(run.path.resolve()), "round": round_index,
                                  "algorithm": config.train.algorithm, "checkpoint": meta})
        write_spec(partial, spec)
        shutil.copy2(run.config, partial / "config.yaml")
        results = held_out(run, name)
        if results is not None:
            (partial / "eval_results.json").write_text(json.dumps(results, indent=1) + "\n")
        if merge:
            merge_weights(config.model.path, adapter, partial / MERGED)
        (partial / "README.md").write_text(model_card(config, round_index=round_index, spec=spec, results=results,
                                                      base_model_id=base_model_id, merged=merge, meta=meta))
        if out.exists():
            out.rmdir()  # empty (checked above)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if push:
        print(f"pushed: {push_to_hub(out, push, private=private)}")
    return out
