"""Seeds derived from a run's seed and an item's own coordinates, never from the order in which
things happen to run: batching, placement, replicas and a resume that redoes only some slots then
change nothing where the backend is deterministic."""
from __future__ import annotations

import hashlib
import json


def derive_seed(*parts: object) -> int:
    """A 31-bit seed of ``parts`` (JSON-encodable: the run seed, ids, indices)."""
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def sample_seed(seed: int, problem_id: str, round_index: int, sample_index: int, attempt: int) -> int:
    """The sampling seed of one generated workflow."""
    return derive_seed("sample", seed, problem_id, round_index, sample_index, attempt)


def call_seed(seed: int, problem_id: str, round_index: int, sample_index: int, repeat: int | str,
              call: int) -> int:
    """The seed of one executor-LLM call: the workflow's ``call``-th request (numbered by the
    sandbox runtime in the order the workflow made them) in its ``repeat``-th execution."""
    return derive_seed("call", seed, problem_id, round_index, sample_index, repeat, call)
