"""Records that cross process boundaries: small frozen dataclasses with explicit fields."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Family = Literal["code", "math", "qa", "text"]  # text: any other task (a plain answer, any scorer)
BASE_ADAPTER = "base"  # the adapter version that means the base model, no adapter


@dataclass(frozen=True)
class Problem:
    problem_id: str
    prompt: str  # the text handed to workflows
    entry_point: str = ""  # function the final code must define (code tasks); "" otherwise
    test: str = ""  # hidden test (code tasks); never shown to the generator or the workflow
    task: str = "humaneval"  # benchmark name (TaskConfig.name): picks the scorer and test program
    family: Family = "code"  # picks the generator's template and how the answer is scored
    # Gold answers, never shown to the workflow: math one, QA its alternatives (F1 takes the best),
    # code the reference program (the optional LLM judge compares against it).
    answers: tuple[str, ...] = ()
    # How a non-code answer is scored: a built-in scorer's name (flowpo.scorers), a user's
    # "package.module:function", or "judge" (the LLM judge with the task's rubric). Code problems run
    # their hidden test instead.
    scorer: str = ""
    prelude: str = ""  # code: trusted code the hidden test leans on (HumanEval: the prompt's helpers)
    check: str = ""  # code: the function the test defines and calls with the candidate; "": asserts run top to bottom
    description: str = ""  # the task's own description, put in the generator's prompt; "" for none
    # The row's other columns, for a user's scorer; never shown to the generator or the workflow.
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Workflow:
    problem_id: str
    round: int
    sample_index: int
    adapter: str  # adapter version that generated it ("base" for the base model)
    prompt: str  # the generator prompt, chat template applied
    completion: str  # the generator's raw answer
    code: str  # code extracted from <graph>…</graph>; "" if none was found
    generate_s: float
    invalid_reason: str = ""  # static validation's reason; "" when valid
    attempts: int = 1  # generations it took (invalid samples are regenerated)
    logprobs: tuple[float, ...] = ()  # per-token log-probs of the completion, when requested


@dataclass(frozen=True)
class Execution:
    workflow: Workflow
    answer: str  # the workflow's final code / answer
    failure: str  # "" when ok; else the failure class (timeout, crash, invalid_workflow, …)
    error: str  # short message for a failure
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    execute_s: float
    cache_hits: int = 0  # LLM calls answered from the broker's cache (temperature 0)
    cost_usd: float = 0.0  # executor-LLM cost at the configured prices
    suspect: str = ""  # what the host saw that looks like reward gaming (flood, broke_sandbox); "" if nothing


@dataclass(frozen=True)
class ScoredSample:
    execution: Execution
    score: float | None  # None: infrastructure failed, not scored
    evaluate_s: float
    details: dict = field(default_factory=dict)

    def to_log(self) -> dict:
        """One line of samples.jsonl (the run-directory contract)."""
        ex, wf = self.execution, self.execution.workflow
        return {
            "problem_id": wf.problem_id,
            "round": wf.round,
            "sample_index": wf.sample_index,
            "adapter": wf.adapter,
            "workflow": wf.code,
            "prompt": wf.prompt,  # what the learner conditions on; kept so a resumed run can train
            "completion": wf.completion,
            "invalid_reason": wf.invalid_reason,
            "attempts": wf.attempts,
            "answer": ex.answer,
            "score": self.score,
            "failure": ex.failure,
            "error": ex.error,
            "usage": {"llm_calls": ex.llm_calls, "prompt_tokens": ex.prompt_tokens,
                      "completion_tokens": ex.completion_tokens, "cache_hits": ex.cache_hits,
                      "cost_usd": round(ex.cost_usd, 6)},
            "timings": {"generate_s": round(wf.generate_s, 3), "execute_s": round(ex.execute_s, 3),
                        "evaluate_s": round(self.evaluate_s, 3)},
            "details": self.details,
        }

    @classmethod
    def from_log(cls, record: dict) -> "ScoredSample":
        """The sample a samples.jsonl line records (``to_log``'s inverse, minus log-probs)."""
        usage, timings = record.get("usage", {}), record.get("timings", {})
        workflow = Workflow(
            problem_id=record["problem_id"], round=record["round"], sample_index=record["sample_index"],
            adapter=record["adapter"], prompt=record.get("prompt", ""), completion=record["completion"],
            code=record["workflow"], generate_s=timings.get("generate_s", 0.0),
            invalid_reason=record.get("invalid_reason", ""), attempts=record.get("attempts", 1))
        execution = Execution(
            workflow=workflow, answer=record.get("answer", ""), failure=record.get("failure", ""),
            error=record.get("error", ""), llm_calls=usage.get("llm_calls", 0),
            prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
            execute_s=timings.get("execute_s", 0.0), cache_hits=usage.get("cache_hits", 0),
            cost_usd=usage.get("cost_usd", 0.0))
        return cls(execution, score=record["score"], evaluate_s=timings.get("evaluate_s", 0.0),
                   details=record.get("details", {}))
