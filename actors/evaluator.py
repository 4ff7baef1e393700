"""Evaluator: scores executions, as flowpo/scoring.py says from each Problem. Code answers run with
their hidden tests (a benchmark's or a user's) in a warm sandbox pool; other answers are scored on the
host by their problem's scorer: a built-in, a user's function (whose failure stops the run), or the LLM
judge with the task's rubric (the executor LLM through a broker, asked and read as flowpo/judge.py says, so
that the answer cannot talk it into a verdict). Optionally the judge also gives its own verdict on
rule-scored answers, kept apart from the score. Repeated executions of one workflow are scored together:
their mean, beside the per-repeat scores."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

from actors.executor import release_if_actor
from flowpo.errors import BudgetExceeded, LLMCallError, RequestRejected
from flowpo.judge import Question, control_question, judge_question, read_reply, screen
from flowpo.llm.broker import LLMBroker, WorkflowUsage
from flowpo.records import Execution, Problem, ScoredSample
from flowpo.scoring import JUDGE, hidden_test, is_user_scorer, score_text
from sandbox.backend import SandboxBackend
from sandbox.hidden_tests import HiddenTests
from sandbox.pool import INFRA_FAILURES


class Evaluator:
    """Plain class; ``actors.launch`` wraps it as an async Ray actor. ``await ready()`` first.

    ``sandboxes`` may be 0 for tasks without hidden tests (no pool); ``broker`` is the LLM judge's, needed
    by problems whose scorer is "judge" (graded by ``rubric``, unless a problem's row has its own
    ``rubric`` column) and by ``judge_apart``: a verdict on every rule-scored answer too, kept apart from
    its score. ``judge_screen``: an answer that addresses its grader scores 0 unasked (flowpo/judge.py)."""

    def __init__(self, backend: SandboxBackend | None, *, sandboxes: int, broker: LLMBroker | None = None,
                 math_timeout_s: float = 5.0, scorer_timeout_s: float = 10.0, rubric: str = "",
                 judge_apart: bool = False, judge_screen: bool = True):
        self.backend = backend
        # Half the sandboxes run candidates, half run tests: a sandbox never changes role.
        self.pool = HiddenTests(backend, max(1, sandboxes // 2)) if sandboxes else None
        self.broker = broker
        self.math_timeout_s = math_timeout_s
        self.scorer_timeout_s = scorer_timeout_s  # a user's scorer function, on one answer
        self.rubric = rubric
        self.judge_apart = judge_apart
        self.judge_screen = judge_screen
        self.judge_counts: Counter = Counter()

    async def ready(self) -> bool:
        if self.pool is not None:
            await asyncio.to_thread(self.backend.check)
            await self.pool.start()
        return True

    async def evaluate(self, execution: Execution, problem: Problem) -> ScoredSample:
        """Score in [0, 1]; ``None`` when infrastructure failed (never scored as a bad workflow)."""
        began = time.monotonic()
        score, details = await self._rule_score(execution, problem)
        if execution.suspect:  # what the executor's host saw (a flood, a broken sandbox): counted per round
            details["suspect"] = execution.suspect
        if self.judge_apart and score is not None and problem.scorer != JUDGE:
            details.update(await self._second_opinion(execution, problem))
        return ScoredSample(execution, score=score, evaluate_s=time.monotonic() - began, details=details)

    async def evaluate_repeats(self, executions: list[Execution], problem: Problem) -> ScoredSample:
        """One workflow's repeated executions scored concurrently: the mean over the scored repeats
        (None when every repeat failed for infrastructure reasons), each repeat's score beside it."""
        if not executions:
            raise ValueError(f"{problem.problem_id}: evaluate_repeats needs at least one execution")
        workflows = {(e.workflow.problem_id, e.workflow.round, e.workflow.sample_index) for e in executions}
        if len(workflows) > 1 or executions[0].workflow.problem_id != problem.problem_id:
            raise ValueError(f"{problem.problem_id}: repeats must be executions of one workflow for this "
                             f"problem, got {sorted(workflows)}")
        began = time.monotonic()
        samples = await asyncio.gather(*(self.evaluate(e, problem) for e in executions))
        scores = [s.score for s in samples]
        details = {"repeat_scores": scores, "repeat_details": [s.details for s in samples],
                   "repeat_usage": repeat_usage(executions)}
        if self.judge_apart and problem.scorer != JUDGE:
            details["repeat_judge_scores"] = [s.details.get("judge_score") for s in samples]
            details["judge_score"] = mean_or_none(details["repeat_judge_scores"])
        return ScoredSample(executions[0], score=mean_or_none(scores), evaluate_s=time.monotonic() - began,
                            details=details)

    async def _rule_score(self, execution: Execution, problem: Problem) -> tuple[float | None, dict]:
        if execution.failure in INFRA_FAILURES:
            return None, {"unscored": execution.failure}
        if execution.failure or not execution.answer.strip():
            return 0.0, {"test" if problem.family == "code" else "failure": execution.failure or "empty answer"}
        if problem.family == "code":
            return await self._run_hidden_tests(problem, execution.answer)
        if problem.scorer == JUDGE:
            score, details = await self._judged(problem, execution.answer)
            return score, {"scorer": JUDGE, **details}
        # In a thread: a symbolic MATH check may take up to math_timeout_s, a user's scorer up to
        # scorer_timeout_s. A user's scorer that fails raises ScorerError, which stops the run (flowpo/user_scorer.py).
        timeout_s = self.scorer_timeout_s if is_user_scorer(problem.scorer) else self.math_timeout_s
        return await asyncio.to_thread(score_text, problem, execution.answer, timeout_s=timeout_s)

    async def _run_hidden_tests(self, problem: Problem, answer: str) -> tuple[float | None, dict]:
        """1.0 when the hidden test passed, judged out of the candidate's reach; None when a
        sandbox broke (infrastructure)."""
        if self.pool is None:
            raise ValueError(f"{problem.problem_id}: code problems need an evaluator with sandboxes > 0")
        verdict = await self.pool.run(answer, hidden_test(problem))
        if verdict.failure == "sandbox_error":
            return None, {"unscored": "sandbox_error", "error": verdict.reason[-500:]}
        details = {"test": "passed" if verdict.passed else verdict.failure or "failed",
                   "test_reason": verdict.reason[-500:], "test_calls": verdict.calls,
                   "test_output": verdict.output[-500:]}
        if verdict.suspect:
            details["suspect"] = verdict.suspect
        return (1.0 if verdict.passed else 0.0), details

    # -- the LLM judge (flowpo/judge.py: the question, the labels, the screen) -------------------

    async def _second_opinion(self, execution: Execution, problem: Problem) -> dict:
        """judge_apart: the judge's verdict as ``judge_score`` (1, 0, or None when the judge failed)."""
        if execution.failure or not execution.answer.strip():
            return {"judge_score": 0.0}  # nothing to judge: no call
        score, details = await self._judged(problem, execution.answer)
        renamed = {("judge_verdict" if key == "judge" else key): value for key, value in details.items()
                   if key not in ("unscored", "suspect")}
        return {"judge_score": score, **renamed, **({"judge_suspect": details["suspect"]} if "suspect" in details
                                                    else {})}

    async def _judged(self, problem: Problem, answer: str) -> tuple[float | None, dict]:
        """The judge's score of ``answer``: 1 or 0 from its label; 0 and suspected gaming when the answer
        addresses its grader, when the LLM refused the request for its content, or when the reply has no
        label (or repeats the answer) while a control question is answered with one; None (unscored)
        when the judge itself failed: its LLM (with the broker's control request) or its control question."""
        if self.broker is None:
            raise ValueError(f"{problem.problem_id}: scorer 'judge' needs an evaluator with a judge broker")
        rubric = problem.extra.get("rubric") if isinstance(problem.extra.get("rubric"), str) else ""
        question = judge_question(problem, answer, rubric=rubric or self.rubric)
        self.judge_counts["questions"] += 1
        addressed = screen(question.answer) if self.judge_screen else ""
        if addressed:
            self.judge_counts["screened"] += 1
            return 0.0, {"judge": "answer addresses its grader: not sent", "judge_injection": addressed,
                         "suspect": "judge_injection"}
        try:
            reply = await self._ask(question)
        except LLMCallError as exc:  # the broker's control request failed too: not the answer's doing
            self.judge_counts["errors"] += 1
            return None, {"unscored": "judge_error", "judge_error": str(exc)[:300]}
        except (RequestRejected, BudgetExceeded) as exc:  # refused, or failed while a control was answered
            self.judge_counts["rejected"] += 1
            return 0.0, {"judge": "rejected", "judge_error": str(exc)[:300], "suspect": "judge_rejected"}
        verdict = read_reply(question, reply)
        if verdict in ("pass", "fail"):
            return (1.0 if verdict == "pass" else 0.0), {"judge": verdict}
        failed = await self._control()
        if failed:
            self.judge_counts["errors"] += 1
            return None, {"unscored": "judge_error", "judge_reply": reply[-300:],
                          "judge_error": f"the judge's reply has no verdict label, nor had its reply to a "
                                         f"control question: {failed}"}
        self.judge_counts[verdict] += 1
        return 0.0, {"judge": verdict, "judge_reply": reply[-300:], "suspect": f"judge_{verdict}"}

    async def _ask(self, question: Question) -> str:
        usage = WorkflowUsage()
        self.judge_counts["calls"] += 1
        try:
            return (await self.broker.complete(question.messages, usage))["content"]
        finally:
            self.judge_counts["tokens"] += usage.tokens

    async def _control(self) -> str:
        """"" when the judge labels a control question of FlowPO's own (no candidate text), else what failed."""
        self.judge_counts["control_questions"] += 1
        question = control_question()
        try:
            reply = await self._ask(question)
        except Exception as exc:  # noqa: BLE001 - any failure of the control is the judge's
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return "" if read_reply(question, reply) in ("pass", "fail") else f"it replied {reply[-200:]!r}"

    def stats(self) -> dict:
        stats = {"pool": self.pool.stats() if self.pool else {}}
        if self.broker is not None:
            stats["judge"] = {**dict(self.judge_counts), "broker": self.broker.stats()}
        return stats

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.broker is not None:
            await self.broker.close()
        release_if_actor()


def mean_or_none(values: list[float | None]) -> float | None:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None


def repeat_usage(executions: list[Execution]) -> dict:
    """What all repeats together cost (the sample's own execution is the first repeat)."""
    return {"llm_calls": sum(e.llm_calls for e in executions),
            "prompt_tokens": sum(e.prompt_tokens for e in executions),
            "completion_tokens": sum(e.completion_tokens for e in executions),
            "cost_usd": round(sum(e.cost_usd for e in executions), 6),
            "execute_s": round(sum(e.execute_s for e in executions), 3)}
