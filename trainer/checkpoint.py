"""A round's checkpoint: the peft adapter, the optimizer state and the round's metadata, in one directory.

The directory is also what the generators load (they read only the adapter files), so a round's
adapter and the state to resume its training from never drift apart. Between nodes it travels
packed (``PackedCheckpoint``) through Ray's object store: no node needs a path another node wrote.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

OPTIMIZER_FILE = "optimizer.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's save_pretrained: the LoRA weights
META_FILE = "checkpoint.json"


def save_checkpoint(out_dir: str | Path, policy, optimizer, meta: dict) -> None:
    import torch

    out = Path(out_dir)
    policy.save_pretrained(out)
    torch.save(optimizer.state_dict(), out / OPTIMIZER_FILE)
    (out / META_FILE).write_text(json.dumps(meta, indent=1))


def is_checkpoint(path: str | Path) -> bool:
    return bool(path) and (Path(path) / META_FILE).is_file() and (Path(path) / OPTIMIZER_FILE).is_file()


def read_meta(checkpoint_dir: str | Path) -> dict:
    path = Path(checkpoint_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: not a learner checkpoint (no {META_FILE})")
    return json.loads(path.read_text())


def load_optimizer(optimizer, checkpoint_dir: str | Path) -> None:
    import torch

    # Optimizer state is plain tensors and numbers written by save_checkpoint above.
    optimizer.load_state_dict(torch.load(Path(checkpoint_dir) / OPTIMIZER_FILE, map_location="cpu",
                                         weights_only=True))


@dataclass(frozen=True)
class PackedCheckpoint:
    """A checkpoint directory's files in memory (a LoRA adapter and its optimizer state: tens of MB
    for a 7B model at r = 8), so that it can cross Ray's object store between nodes."""
    files: tuple[tuple[str, bytes], ...]

    @property
    def nbytes(self) -> int:
        return sum(len(data) for _, data in self.files)


def pack(directory: str | Path) -> PackedCheckpoint:
    """The files of a checkpoint directory (it is flat: peft's default adapter, our own files)."""
    entries = sorted(Path(directory).iterdir())
    nested = [e.name for e in entries if e.is_dir()]
    if nested:
        raise ValueError(f"{directory}: a checkpoint directory is flat, found subdirectories {nested}")
    return PackedCheckpoint(tuple((e.name, e.read_bytes()) for e in entries))


def unpack(packed: PackedCheckpoint, directory: str | Path) -> Path:
    """Write ``packed`` into ``directory`` (created; files of the same names replaced)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in packed.files:
        if Path(name).name != name:
            raise ValueError(f"a packed checkpoint file must be a plain name, got {name!r}")
        (out / name).write_bytes(data)
    return out


def unpack_local(packed: PackedCheckpoint, prefix: str) -> Path:
    """``packed`` in a fresh directory of this node's own temporary space; the caller removes it."""
    return unpack(packed, tempfile.mkdtemp(prefix=prefix))


def remove(directory: str | Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
