"""The operator library, in-process with a scripted executor LLM.

Operators are plain standard-library Python, so they run here directly; the real executor-LLM
path (the sandbox runtime asking a vLLM server over HTTP through the broker, in the real Docker
and bubblewrap sandboxes) is covered in tests/sandbox/test_sandbox.py.
"""
import asyncio
import os
import time

import pytest

# The module, not its names: pytest would try to collect the classes Test and TestResult.
import flowpo.operators as ops
from flowpo.prompts import OPERATOR_REFERENCE, SIMPLE_WORKFLOW
from flowpo.validate import reason_kind, validate_workflow


class ScriptedLLM:
    """Returns queued replies in order and records the prompts. A reply may be a function of the
    prompt or an exception to raise; a call with nothing queued fails the test."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.prompts = []

    async def __call__(self, prompt):
        self.prompts.append(prompt)
        assert self.replies, f"unexpected LLM call:\n{prompt}"
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply(prompt) if callable(reply) else reply


def call(operator, **kwargs):
    return asyncio.run(operator(**kwargs))


def fenced(code):
    return f"Here it is:\n```python\n{code}\n```\nDone."


# ---------------------------------------------------------------------------------------------
# Text operators: typed results and parsing fallbacks


@pytest.mark.parametrize("reply, thought, answer", [
    ("First 2+2 is 4.\nThen double it.\nAnswer: 8", "First 2+2 is 4.\nThen double it.", "8"),
    ("<thought>2+2=4, doubled</thought>\n<answer>8</answer>", "2+2=4, doubled", "8"),
    ("Doubling 4 gives 8.\nThe final answer is **8**.", "Doubling 4 gives 8.", "8"),
    ("Answer:\n8", "", "8"),  # the answer on the line after its label
    ("I think it is 4 doubled\n8\n", "I think it is 4 doubled\n8", "8"),  # no label: the last line
])
def test_answer_generate_splits_thought_and_answer(reply, thought, answer):
    llm = ScriptedLLM(reply)
    result = call(ops.AnswerGenerate(llm), input="What is (2+2)*2?")
    assert result == ops.AnswerResult(thought=thought, answer=answer)
    assert "What is (2+2)*2?" in llm.prompts[0]


def test_format_extracts_a_short_answer_and_falls_back_to_the_solution():
    assert call(ops.Format(ScriptedLLM(" 42.\n")), problem="q", solution="...") == ops.TextResult("42")
    assert call(ops.Format(ScriptedLLM("Answer: Paris")), problem="q", solution="...").response == "Paris"
    # An empty reply leaves the worked solution's own final line.
    solution = "The capital is found in the atlas.\nAnswer: Paris"
    assert call(ops.Format(ScriptedLLM("")), problem="q", solution=solution).response == "Paris"


@pytest.mark.parametrize("reply, verdict, feedback", [
    ("Verdict: incorrect\nThe loop stops one early.", False, "The loop stops one early."),
    ("**Verdict:** correct", True, "**Verdict:** correct"),
    ("<review_result>false</review_result> off by one", False, "off by one"),
    ("This solution is wrong: it ignores negatives.", False, "This solution is wrong: it ignores negatives."),
    ("It is not correct for empty lists.", False, "It is not correct for empty lists."),
    ("hmm, lists and loops", True, "hmm, lists and loops"),  # unreadable: no rejection
])
def test_review_reads_the_verdict_with_fallbacks(reply, verdict, feedback):
    result = call(ops.Review(ScriptedLLM(reply)), problem="p", solution="s")
    assert result == ops.ReviewResult(review_result=verdict, feedback=feedback)


PROBLEM = '''def add(a, b):
    """Add two numbers.
    >>> add(2, 3)
    5
    >>> add(-1, 1) == 0
    """
'''
RIGHT = PROBLEM + "    return a + b\n"
WRONG = PROBLEM + "    return a - b\n"


def test_revise_returns_revised_code_and_keeps_the_old_one_for_prose():
    fixed = "def add(a, b):\n    return a + b"
    llm = ScriptedLLM(fenced(fixed))
    assert call(ops.Revise(llm), problem=PROBLEM, solution=WRONG, feedback="use +") == ops.TextResult(fixed)
    assert "use +" in llm.prompts[0] and "`add`" in llm.prompts[0]
    # A body-only block is continued from the problem's signature.
    body = call(ops.Revise(ScriptedLLM("```python\n    return a + b\n```")), problem=PROBLEM, solution=WRONG,
                feedback="f")
    assert body.response == RIGHT.rstrip("\n")
    prose = call(ops.Revise(ScriptedLLM("You should add instead.")), problem=PROBLEM, solution=WRONG, feedback="f")
    assert prose.response == WRONG
    text = call(ops.Revise(ScriptedLLM(" Paris is the capital. ")), problem="Capital of France?",
                solution="Lyon", feedback="wrong city")
    assert text.response == "Paris is the capital."


def test_sc_ensemble_picks_the_named_letter():
    solutions = ["x = 1", "x = 2"]
    assert call(ops.ScEnsemble(ScriptedLLM("Answer: B")), solutions=solutions, problem="p").response == "x = 2"
    assert call(ops.ScEnsemble(ScriptedLLM("none of them")), solutions=solutions, problem="p").response == "x = 1"


def picker(votes):
    """A fake voter: answers the letter under which the solution ``votes.pop(0)`` is listed."""
    def vote(prompt):
        wanted = votes.pop(0)
        for line_above, line in zip(prompt.splitlines(), prompt.splitlines()[1:]):
            if line == wanted:
                return f"The best is {line_above.rstrip(':')}."
        raise AssertionError(f"{wanted!r} not listed")
    return vote


def test_md_ensemble_majority_over_shuffled_deterministic_orders():
    solutions = ["x = 1", "x = 2", "x = 3"]
    votes = ["x = 3", "x = 2", "x = 2"]
    llm = ScriptedLLM(*[picker(votes)] * 3)
    result = call(ops.MdEnsemble(llm), solutions=solutions, problem="pick", vote_count=3)
    assert result == ops.TextResult("x = 2")
    assert len(set(llm.prompts)) > 1  # the orders differ between votes
    again = ScriptedLLM(*[picker(["x = 3", "x = 2", "x = 2"])] * 3)
    call(ops.MdEnsemble(again), solutions=solutions, problem="pick", vote_count=3)
    assert again.prompts == llm.prompts  # seeded from the inputs


def test_md_ensemble_fallbacks():
    # Unreadable votes: the first solution. A single distinct solution: no vote at all.
    nonsense = ScriptedLLM("hmm", "no idea")
    assert call(ops.MdEnsemble(nonsense), solutions=["a = 1", "b = 2"], problem="p", vote_count=2).response == "a = 1"
    assert call(ops.MdEnsemble(ScriptedLLM()), solutions=["same", "same"], problem="p").response == "same"
    assert call(ops.MdEnsemble(ScriptedLLM()), solutions=[], problem="p").response == ""


# ---------------------------------------------------------------------------------------------
# Programmer and the nested-process runner


def test_programmer_runs_solve_and_returns_its_value():
    code = "def solve():\n    print('working')\n    return 6 * 7\n\nif __name__ == '__main__':\n    print(solve())"
    result = call(ops.Programmer(ScriptedLLM(fenced(code))), problem="six times seven")
    # The main-guarded call does not run a second time.
    assert result == ops.ProgramResult(code=code, output="working\n42")


def test_programmer_feeds_the_error_back_and_recovers():
    broken, good = "def solve():\n    return 1 / 0", "def solve():\n    return 7"
    llm = ScriptedLLM(fenced(broken), fenced(good))
    result = call(ops.Programmer(llm), problem="seven", analysis="it is 7")
    assert result == ops.ProgramResult(code=good, output="7")
    assert "it is 7" in llm.prompts[0]
    assert "ZeroDivisionError" in llm.prompts[1] and broken in llm.prompts[1]


def test_programmer_gives_up_with_the_last_error():
    llm = ScriptedLLM("no code at all, sorry", fenced("def solve():\n    return None"), fenced("x = ("))
    result = call(ops.Programmer(llm), problem="p")
    assert result.code == "x = ("
    assert result.output.startswith("Error: ") and "SyntaxError" in result.output
    assert "nothing was printed" in llm.prompts[2]  # the second attempt's failure, fed to the third


def alive(pid):
    """Whether ``pid`` still runs; a zombie waiting for a reaper has already died."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


SLEEPER = "import time\ntime.sleep(1000)"
SPAWNER = '''import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
with open({path!r}, "w") as f:
    f.write(str(child.pid))
time.sleep(1000)
'''


@pytest.mark.parametrize("program", ["sleeper", "spawner"])
def test_programmer_kills_a_program_that_never_ends(program, tmp_path):
    pid_file = tmp_path / "pid"
    code = SLEEPER if program == "sleeper" else SPAWNER.format(path=str(pid_file))
    began = time.monotonic()
    result = call(ops.Programmer(ScriptedLLM(fenced(code)), timeout_s=1.0, attempts=1), problem="p")
    assert time.monotonic() - began < 3.0
    assert result.output.startswith("Error:") and "time limit" in result.output
    if program == "spawner":
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 2.0  # killed at once; reaping by init may lag a little
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)


def test_run_python_cuts_output_over_the_cap():
    run = ops.run_python("print('x' * 5000)", timeout_s=5.0, output_cap=1000)
    assert run.ok and not run.timed_out
    assert run.output.startswith("x" * 1000 + "\n[output cut: 5001 bytes")
    result = call(ops.Programmer(ScriptedLLM(fenced("def solve():\n    return 'y' * 5000")), output_cap=100),
                  problem="p")
    assert result.output.startswith("y" * 100) and "[output cut" in result.output


def test_run_python_reports_a_program_that_cannot_start(monkeypatch):
    monkeypatch.setattr(ops.sys, "executable", "/nonexistent/python3")
    run = ops.run_python("print(1)")
    assert not run.ok and run.output.startswith("[could not start Python:")


def test_run_python_isolation():
    # -I and an environment of PATH/HOME/TMPDIR only; input() meets EOF instead of hanging.
    run = ops.run_python("import os, sys\nprint(*sorted(os.environ))\nprint(sys.flags.isolated)\ninput()", 5.0)
    names, isolated = run.output.splitlines()[:2]
    assert set(names.split()) <= {"PATH", "HOME", "TMPDIR", "LC_CTYPE"}  # LC_CTYPE: Python's C-locale coercion
    assert isolated == "1"
    assert not run.ok and "EOFError" in run.output


# ---------------------------------------------------------------------------------------------
# Test: public examples from the docstring


def test_test_passes_a_correct_solution_without_the_llm():
    assert call(ops.Test(ScriptedLLM()), problem=PROBLEM, solution=RIGHT, entry_point="add") == \
        ops.TestResult(result=True, solution=RIGHT)


def test_test_fixes_a_wrong_solution_with_the_llm():
    fixed = "def add(a, b):\n    return b + a"
    llm = ScriptedLLM(fenced(fixed))
    result = call(ops.Test(llm), problem=PROBLEM, solution=WRONG, entry_point="add")
    assert result == ops.TestResult(result=True, solution=fixed)
    assert "add(2, 3)" in llm.prompts[0] and "Expected" in llm.prompts[0] and "-1" in llm.prompts[0]


def test_test_fails_after_test_loop_fixes():
    forever = "def add(a, b):\n    while True:\n        pass"
    llm = ScriptedLLM(fenced(WRONG), fenced(forever))
    result = call(ops.Test(llm, timeout_s=0.5), problem=PROBLEM, solution=WRONG, entry_point="add", test_loop=2)
    assert result == ops.TestResult(result=False, solution=forever)
    assert len(llm.prompts) == 2  # test_loop fixes, and the last fix was tested too


def test_a_result_object_stands_for_its_text():
    # A small generator often writes solution=solution instead of solution=solution.code.
    result = call(ops.Test(ScriptedLLM()), problem=PROBLEM, solution=ops.CodeResult(RIGHT), entry_point="add")
    assert result == ops.TestResult(result=True, solution=RIGHT)
    llm = ScriptedLLM("B")
    picked = call(ops.ScEnsemble(llm), solutions=[ops.CodeResult("x = 1"), ops.TextResult("x = 2")], problem="p")
    assert picked.response == "x = 2" and "CodeResult" not in llm.prompts[0]


def test_test_without_examples_passes_the_solution_through():
    # Nothing to check against: the solution is passed on unchanged rather than rejected unseen.
    problem = 'def f(x):\n    """Double x, e.g. f(2) == 4."""\n'
    assert call(ops.Test(ScriptedLLM()), problem=problem, solution="garbage", entry_point="f") == \
        ops.TestResult(result=True, solution="garbage")


def test_public_examples_follow_docstring_conventions():
    problem = 'def f():\n    """\n    >>> x = 1\n    >>> f() == 2\n    >>> f()\n    "21"\n    >>> g()\n    """\n'
    # Setup prints nothing, a bare comparison means True, a bare call states no result (dropped).
    assert ops.public_examples(problem) == [("x = 1\n", ""), ("f() == 2\n", "True\n"), ("f()\n", '"21"\n')]
    solution = "def f():\n    return '21'"  # repr quotes differ from the docstring's: equal literals pass
    assert call(ops.Test(ScriptedLLM()), problem='def f():\n    """\n    >>> f()\n    "21"\n    """\n',
                solution=solution, entry_point="f").result


# ---------------------------------------------------------------------------------------------
# Across operators


BROKEN = RuntimeError("broker down")
CALLS = [
    (ops.Custom, {"input": "x"}),
    (ops.CustomCodeGenerate, {"problem": PROBLEM, "entry_point": "add"}),
    (ops.AnswerGenerate, {"input": "x"}),
    (ops.ScEnsemble, {"solutions": ["a", "b"], "problem": "p"}),
    (ops.MdEnsemble, {"solutions": ["a", "b"], "problem": "p"}),
    (ops.Programmer, {"problem": "p"}),
    (ops.Test, {"problem": PROBLEM, "solution": WRONG, "entry_point": "add"}),
    (ops.Review, {"problem": "p", "solution": "s"}),
    (ops.Revise, {"problem": "p", "solution": "s", "feedback": "f"}),
    (ops.Format, {"problem": "p", "solution": "s"}),
]


@pytest.mark.parametrize("operator, kwargs", CALLS, ids=[c[0].__name__ for c in CALLS])
def test_llm_errors_propagate(operator, kwargs):
    with pytest.raises(RuntimeError, match="broker down"):
        call(operator(ScriptedLLM(BROKEN)), **kwargs)


def test_every_operator_and_result_type_is_registered_and_answers():
    assert {cls.__name__ for cls, _ in CALLS} == set(ops.OPERATORS)
    assert [ops.as_answer(value) for value in (
        ops.CodeResult("c"), ops.TextResult("t"), ops.AnswerResult("why", "a"), ops.ProgramResult("code", "out"),
        ops.TestResult(False, "sol"), ops.ReviewResult(True, "fb"), (ops.TextResult("first"), 2), 3,
    )] == ["c", "t", "a", "out", "sol", "fb", "first", "3"]
    assert set(ops.RESULT_TYPES) == {cls.__name__ for cls in ops.ANSWER_FIELDS}


def test_the_generator_prompt_documents_every_operator():
    for name in ops.OPERATORS:
        line = next(line for line in OPERATOR_REFERENCE.splitlines() if line.startswith(f"- {name}(llm)"))
        result = next(r for r in ops.RESULT_TYPES.values() if f"-> {r.__name__} with" in line)
        assert all(f".{field}" in line for field in result.__dataclass_fields__)
    assert "test_loop: int = 3" in OPERATOR_REFERENCE


NEW_OPERATORS_WORKFLOW = '''
class Workflow:
    def __init__(self, llm):
        self.generate = CustomCodeGenerate(llm)
        self.test = Test(llm)
        self.review = Review(llm)
        self.revise = Revise(llm)
        self.programmer = Programmer(llm)

    async def __call__(self, problem, entry_point):
        hint = await self.programmer(problem=problem, analysis="none")
        solution = await self.generate(problem=problem, entry_point=entry_point, instruction=hint.output)
        review = await self.review(problem=problem, solution=solution.code)
        code = solution.code
        if not review.review_result:
            code = (await self.revise(problem=problem, solution=code, feedback=review.feedback)).response
        tested = await self.test(problem=problem, solution=code, entry_point=entry_point, test_loop=2)
        return tested.solution
'''


def test_validate_accepts_new_operators_and_rejects_unknown_arguments():
    assert validate_workflow(NEW_OPERATORS_WORKFLOW) == ""
    bad = NEW_OPERATORS_WORKFLOW.replace("test_loop=2", "rounds=2")
    reason = validate_workflow(bad)
    assert reason_kind(reason) == "arguments" and "Test takes no argument rounds" in reason
    assert validate_workflow(SIMPLE_WORKFLOW.replace("CustomCodeGenerate(llm)", "Planner(llm)")).startswith(
        "operator: unknown operator Planner")
