"""`flowpo export` and what solve and serve load from it: the folder is self-contained (adapter, the
generator prompt spec, the run's config, a model card with the held-out results when evaluated), a
checkpoint of any kind resolves to the config that generates as it was trained, the merged weights
are the adapter's model, and --push-to-hub is one huggingface_hub call (tested up to the upload)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from driver.cli import main
from driver.export import export, held_out
from driver.prompt_spec import SPEC_FILE, drift, operator_library, read_spec, template_messages
from driver.rundir import RunDir
from driver.trained import load_trained
from flowpo.config import load_config, to_yaml
from flowpo.errors import FlowPOError

LOCAL = load_config("examples/local.yaml")


def make_run(root: Path, adapter: str, **sections) -> Path:
    """A run directory as training leaves it: config.yaml, adapters/round-1 (a peft adapter with
    random weights, the optimizer state, checkpoint.json)."""
    run = root / "run"
    round_dir = run / "adapters" / "round-1"
    round_dir.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(Path(adapter) / name, round_dir / name)
    (round_dir / "optimizer.pt").write_bytes(b"optimizer state")
    (round_dir / "checkpoint.json").write_text(json.dumps({"round": 1, "step": 4, "algorithm": "score_dpo"}))
    config = load_config("examples/local.yaml", [f"run_dir={run}"] + [f"{k}={v}" for k, v in sections.items()])
    (run / "config.yaml").write_text(to_yaml(config))
    return run


@pytest.fixture
def run_dir(tmp_path, random_adapter) -> Path:
    return make_run(tmp_path, random_adapter)


def test_the_export_is_a_self_contained_folder(run_dir, tmp_path):
    out = export(run_dir, None, tmp_path / "gen")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                     "config.yaml", SPEC_FILE]  # no optimizer state
    assert not (tmp_path / ".gen.partial").exists()
    spec = read_spec(out)
    g = LOCAL.generator
    assert (spec["family"], spec["response_prefix"], spec["stop"]) == ("code", g.response_prefix, ["</graph>"])
    assert spec["sampling"]["temperature"] == 0.5 and spec["sampling"]["max_tokens"] == 96
    assert spec["template"]["messages"] == template_messages("code", "")
    assert spec["template"]["messages"][-1]["content"].startswith("Problem:\n{problem}")
    assert spec["operator_library"] == operator_library() and spec["lora_rank"] == 8
    assert spec["source"]["round"] == 1 and spec["source"]["checkpoint"]["step"] == 4
    assert (out / "config.yaml").read_text() == RunDir(run_dir).config.read_text()
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n")  # the embedded model is a local path: no hub base_model
    assert "- flowpo\n" in card and "- score-dpo\n" in card and "- humaneval\n" in card
    assert "Not evaluated." in card and "flowpo solve THIS_FOLDER" in card and "| algorithm | score_dpo |" in card


def test_held_out_results_reach_the_card_and_a_hub_base_model_its_metadata(run_dir, tmp_path):
    rows = [{"method": "round-1", "label": "round-1 (generated)", "problems": 4, "scored": 4, "infra_failures": 0,
             "solved": 3.0, "solve_rate": 0.75, "invalid_workflows": 0, "tokens_per_problem": 120.0,
             "cost_per_problem": 0.0},
            {"method": "io", "label": "IO", "problems": 4, "scored": 4, "infra_failures": 0, "solved": 1.0,
             "solve_rate": 0.25, "invalid_workflows": 0, "tokens_per_problem": 80.0, "cost_per_problem": 0.0}]
    evaluation = RunDir(run_dir).evaluation("round-1")
    evaluation.mkdir(parents=True)
    (evaluation / "results.json").write_text(json.dumps({"split": "test", "repeats": 1, "seed": 0, "methods": rows}))
    assert held_out(RunDir(run_dir), "round-2") is None
    out = export(run_dir, "1", tmp_path / "gen", base_model_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlibrary_name: peft\n")
    assert "| round-1 (generated) | 3 | 4 | 75.0% |" in card and "| IO | 1 | 4 | 25.0% |" in card
    assert json.loads((out / "eval_results.json").read_text())["methods"] == rows
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_export_refuses_what_it_cannot_do(run_dir, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FlowPOError, match="exists and is not empty"):
        export(run_dir, None, tmp_path / "full")
    with pytest.raises(FlowPOError, match=r"--checkpoint 3: not a trained round of .* \(trained: 1; or latest\)"):
        export(run_dir, "3", tmp_path / "gen")
    with pytest.raises(FlowPOError, match="no config.yaml there"):
        export(tmp_path / "nowhere", None, tmp_path / "gen")
    shutil.rmtree(run_dir / "adapters")
    with pytest.raises(FlowPOError, match="no trained round to export"):
        export(run_dir, None, tmp_path / "gen")


def test_checkpoints_resolve_to_the_config_they_were_trained_with(run_dir, tmp_path):
    out = export(run_dir, None, tmp_path / "gen")
    other = tmp_path / "other.yaml"  # another user's config: the executor and task are theirs
    other.write_text("generator:\n  response_prefix: 'x'\n  temperature: 1.0\nexecutor_llm:\n  max_tokens: 99\n")
    for text, name, path in [(str(out), "gen", out), (str(run_dir), "round-1", run_dir / "adapters" / "round-1"),
                             (str(run_dir / "adapters" / "round-1"), "round-1", run_dir / "adapters" / "round-1")]:
        trained = load_trained(text, config_file=str(other), overrides=["generator.top_p=0.5"])
        assert (trained.checkpoint.name, Path(trained.checkpoint.path)) == (name, path.resolve())
        g = trained.config.generator
        assert (g.response_prefix, g.temperature, g.max_tokens) == (LOCAL.generator.response_prefix, 0.5, 96)
        assert g.top_p == 0.5  # the overrides have the last word
        assert trained.config.executor_llm.max_tokens == 99
        assert drift(trained.spec, "code", "") == []
    assert load_trained(str(run_dir)).home == run_dir and load_trained(str(out)).home is None
    base = load_trained("base", overrides=["generator.k=2"])
    assert (base.checkpoint.name, base.checkpoint.path, base.spec, base.config.generator.k) == ("base", "", None, 2)
    with pytest.raises(FlowPOError, match="--round 4: no adapter"):
        load_trained(str(run_dir), round_index=4)
    with pytest.raises(FlowPOError, match="holds no merged weights"):
        load_trained(str(out), merged=True)
    with pytest.raises(FlowPOError, match="neither a run directory"):
        load_trained(str(tmp_path))


def test_drift_is_named(run_dir, tmp_path):
    spec = read_spec(export(run_dir, None, tmp_path / "gen"))
    assert "asked as family 'math'" in drift(spec, "math", "")[0]
    spec["operator_library"] = {"flowpo_version": "0.0.1", "sha256": "0" * 16, "operators": ["Custom", "Gone"]}
    (note,) = drift(spec, "code", "")
    assert "operator library differs" in note and "removed Gone" in note and "added" in note
    spec = read_spec(tmp_path / "gen")
    spec["template"]["messages"][0]["content"] += " (an older wording)"
    assert "writes the generator's template differently" in drift(spec, "code", "")[0]


def test_push_to_hub_is_one_upload(run_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo, **kw: calls.append(("create", repo, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **kw: calls.append(("upload", kw)) or "https://huggingface.co/me/gen/commit/1")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "gen"), "--push-to-hub", "me/gen", "--private"]) == 0
    assert calls[0] == ("create", "me/gen", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(tmp_path / "gen") and calls[1][1]["repo_id"] == "me/gen"
    assert "pushed: https://huggingface.co/me/gen/commit/1" in capsys.readouterr().out


@pytest.mark.slow
def test_merged_weights_are_the_adapters_model(run_dir, tmp_path, model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = export(run_dir, None, tmp_path / "gen", merge=True)
    assert read_spec(out)["merged"] == "merged"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (out / "merged").iterdir()}
    ids = torch.tensor([[1, 504, 3458, 314, 253, 1789, 30]])
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(out))(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
    assert torch.allclose(adapted, merged, atol=1e-3)
    trained = load_trained(str(out), merged=True)
    assert trained.checkpoint.name == "base" and trained.config.model.path == str((out / "merged").resolve())


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_serves_the_exported_adapter_as_it_is(run_dir, tmp_path, model_dir, vllm_available):
    """vLLM's own OpenAI-compatible server, `--lora-modules flowpo=FOLDER`: the folder needs nothing
    more; prompted with the spec's template, the adapter writes (the start of) a workflow."""
    import httpx
    from transformers import AutoTokenizer

    from actors.llm_server import LLMServer

    out = export(run_dir, None, tmp_path / "gen")
    spec = read_spec(out)

    class WithLoRA(LLMServer):
        def command(self, port: int) -> list[str]:
            return super().command(port) + ["--enable-lora", "--max-lora-rank", "8", "--max-loras", "1",
                                            "--lora-modules", f"flowpo={out}"]

    server = WithLoRA(model_dir, "base", host="127.0.0.1", max_model_len=2048, kv_cache_gb=0.5,
                      gpu_memory_utilization=0.9, enforce_eager=True, log_path=str(tmp_path / "vllm.log"))
    url = server.start()
    try:
        assert {m["id"] for m in httpx.get(f"{url}/models", timeout=30).json()["data"]} == {"base", "flowpo"}
        messages = [{**m, "content": m["content"].replace(spec["template"]["placeholder"], "def add(a, b):")}
                    for m in spec["template"]["messages"]]
        prompt = AutoTokenizer.from_pretrained(model_dir).apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False) + spec["response_prefix"]
        reply = httpx.post(f"{url}/completions", json={"model": "flowpo", "prompt": prompt, "max_tokens": 16,
                                                       "temperature": 0}, timeout=600)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "flowpo" and reply.json()["choices"][0]["text"]
    finally:
        server.stop()
