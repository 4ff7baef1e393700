"""A round's checkpoint: the peft adapter, the optimizer state and the round's metadata, in one directory.

The directory is also what the generators load (they read only the adapter files), so a round's
adapter and the state to resume its training from never drift apart.
"""
from __future__ import annotations

import json
from pathlib import Path

OPTIMIZER_FILE = "optimizer.pt"
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
