"""The operator library workflows are written against (ScoreFlow/AFlow set, typed results).

Standard library only: it runs inside the sandbox. Each operator holds ``llm``, an async callable
``prompt -> str`` that the runtime routes to the host-side broker; its exceptions propagate.
The executor LLM is small and often ignores the requested format, so every parser falls back to
something usable instead of failing; likewise a result object passed where text is expected (a
small generator often forgets ``.code``) stands for its ``as_answer`` text.

The generator's prompt is built from the operators' docstrings and annotated ``__call__``
signatures (``flowpo.prompts.operator_reference``): keep each operator's docstring one short
sentence and its annotations accurate. It belongs to the core (what a workflow may call is part of
the task) and is imported two ways: as ``flowpo.operators`` on the host (prompts, static
validation) and as the top-level module ``flowpo_operators`` in the sandbox, where the backends
stage it beside the runtime (``sandbox.backend.runtime_stage``). One long file, because a split
into sibling modules would have to paper over that with path tricks.
"""
import ast
import asyncio
import doctest
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class CodeResult:
    code: str


@dataclass(frozen=True)
class TextResult:
    response: str


@dataclass(frozen=True)
class AnswerResult:
    thought: str
    answer: str


@dataclass(frozen=True)
class ProgramResult:
    code: str
    output: str


@dataclass(frozen=True)
class TestResult:
    result: bool
    solution: str


@dataclass(frozen=True)
class ReviewResult:
    review_result: bool
    feedback: str


@dataclass(frozen=True)
class RunResult:
    """How one nested program ended; ``output`` is its stdout and stderr, interleaved."""
    ok: bool
    output: str
    timed_out: bool


# ---------------------------------------------------------------------------------------------
# Parsing the executor LLM's text

FENCE_RE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)
ANSWER_LINE_RE = re.compile(r"^[^\n]*?\banswer\s*(?:is\b\s*:?|[:=])\s*(.*)$", re.IGNORECASE | re.MULTILINE)
ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
DEF_NAME_RE = re.compile(r"def\s+(\w+)\s*\(")
LETTER_RE = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
VERDICT_RE = re.compile(r"(?:verdict|review_result|result)\W{0,4}(incorrect|correct|true|false|yes|no|pass|fail)\b",
                        re.IGNORECASE)
# Decoration around a verdict label: markdown, punctuation, XML-ish tags.
MARKUP_EDGES_RE = re.compile(r"^(?:[\s*:.>\-]|</?\w+>)+|(?:[\s*<\-]|</?\w+>)+$")
# Without a labelled verdict the first judgement word decides; "no"/"yes" are too common to count.
JUDGEMENT_RE = re.compile(r"\b(not correct|incorrect|wrong|false|fails?|correct|true|right|passes)\b",
                          re.IGNORECASE)
NEGATIVE = {"not correct", "incorrect", "wrong", "false", "fail", "fails", "no"}


def extract_code(text, entry_point=""):
    """The code block that defines ``entry_point`` (else the first block, else the text)."""
    blocks = FENCE_RE.findall(text) or [text]
    for block in blocks:
        if entry_point and defines(block, entry_point):
            return block.strip("\n")
    return blocks[0].strip("\n")


def defines(code, name):
    return bool(name) and re.search(rf"def\s+{re.escape(name)}\s*\(", code) is not None


def complete_function(problem, code, entry_point):
    """A body without its ``def`` line is continued from the problem's signature and docstring."""
    if defines(code, entry_point):
        return code
    return problem.rstrip() + "\n" + code


def split_answer(text):
    """(thought, answer): the last ``Answer:`` line or <answer> tag, else the last non-empty line."""
    tagged = ANSWER_TAG_RE.findall(text)
    if tagged and tagged[-1].strip():
        return _untag(text[:text.lower().rfind("<answer>")]), tagged[-1].strip()
    marked = list(ANSWER_LINE_RE.finditer(text))
    if marked:
        last = marked[-1]
        answer = last.group(1).strip() or _first_line(text[last.end():])
        if answer:
            return text[:last.start()].strip(), _unmark(answer)
    return text.strip(), _unmark(_last_line(text))


def _first_line(text):
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _last_line(text):
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def _unmark(answer):
    # Markdown emphasis and a closing period are decoration, not part of the answer.
    return re.sub(r"^[\s*`]+|[\s*`.]+$", "", answer)


def _untag(text):
    return re.sub(r"</?thought>", "", text, flags=re.IGNORECASE).strip()


def pick_letter(text, count):
    """The index of the first standalone capital letter naming one of ``count`` options, or None."""
    for match in LETTER_RE.finditer(text):
        index = ord(match.group(1)) - ord("A")
        if index < count:
            return index
    return None


def parse_verdict(text):
    """True unless the review judges the solution wrong; an unreadable review is no rejection,
    since revising on noise tends to break a working solution."""
    labelled = VERDICT_RE.search(text)
    word = labelled.group(1) if labelled else None
    if word is None:
        judged = JUDGEMENT_RE.search(text)
        word = judged.group(1) if judged else "correct"
    return word.lower() not in NEGATIVE


def review_feedback(text):
    """The review without its verdict label (the text after it, else before it, else all of it)."""
    labelled = VERDICT_RE.search(text)
    if labelled:
        for part in (text[labelled.end():], text[:labelled.start()]):
            if MARKUP_EDGES_RE.sub("", part):
                return MARKUP_EDGES_RE.sub("", part)
    return text.strip()


def letter_listing(solutions):
    return "\n\n".join(f"{chr(ord('A') + i)}:\n{s}" for i, s in enumerate(solutions))


# ---------------------------------------------------------------------------------------------
# Running nested Python programs

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_OUTPUT_CAP = 64 * 1024
INHERITED_ENV = ("PATH", "HOME", "TMPDIR")
REPORT_NOISE_RE = re.compile(r"\*{5,}$|Line \d+, in examples$")  # doctest's separators
# The program's source goes in as a string and runs under a name other than __main__, so a
# main-guarded call in LLM code does not run twice; linecache lets tracebacks quote its lines.
LOADER = '''import linecache, sys
_src = {source!r}
linecache.cache["<solution>"] = (len(_src), None, _src.splitlines(True), "<solution>")
_g = {{"__name__": "solution"}}
exec(compile(_src, "<solution>", "exec"), _g)
'''
SOLVE_CALL = '''_solve = _g.get("solve")
if callable(_solve):
    _value = _solve()
    if _value is not None:
        print(_value)
'''
# Outputs that are equal Python literals also match: docstrings write "21" where repr gives '21'.
DOCTEST_RUN = '''import ast, doctest
class _Checker(doctest.OutputChecker):
    def check_output(self, want, got, flags):
        if super().check_output(want, got, flags):
            return True
        try:
            return ast.literal_eval(want.strip()) == ast.literal_eval(got.strip())
        except Exception:
            return False
_test = doctest.DocTest([doctest.Example(s, w) for s, w in {examples!r}], _g, "examples", None, 0, None)
_runner = doctest.DocTestRunner(checker=_Checker(), optionflags=doctest.NORMALIZE_WHITESPACE)
_runner.run(_test, out=sys.stdout.write, clear_globs=False)
sys.exit(1 if _runner.failures else 0)
'''


def run_python(source, timeout_s=DEFAULT_TIMEOUT_S, output_cap=DEFAULT_OUTPUT_CAP):
    """Run ``source`` in a fresh isolated interpreter in its own session; at the deadline (and after
    it ends) its whole process group is SIGKILLed, so children it spawned do not outlive it."""
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    try:
        # The source comes in on stdin: no file to write, and input() in the program sees EOF.
        # -u: unbuffered, so prints and a traceback come back in the order they happened.
        proc = subprocess.Popen([sys.executable, "-I", "-u", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as exc:  # e.g. the sandbox's process limit: report it like a failed run
        return RunResult(ok=False, output=f"[could not start Python: {exc}]", timed_out=False)
    reader = _CappedReader(proc.stdout, output_cap)
    timed_out = _wait(proc, source, timeout_s)
    # A descendant that left the group with setsid() can hold the pipe open: do not wait on it.
    reader.thread.join(1.0)
    text, notes = reader.text(), _notes(reader, timed_out, timeout_s)
    return RunResult(ok=proc.returncode == 0 and not timed_out,
                     output=text + notes if text else notes.lstrip("\n"), timed_out=timed_out)


def _wait(proc, source, timeout_s):
    """Feed the source, wait until the deadline, then kill the group and reap; True if timed out."""
    try:
        _feed(proc.stdin, source)
        proc.wait(timeout_s)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        _kill_group(proc.pid)
        proc.wait()


def _feed(stdin, source):
    # Python reads the whole script before running it, so these writes cannot wait on the program.
    try:
        stdin.write(source.encode("utf-8", errors="replace"))
    except BrokenPipeError:  # Python died before reading its script; its exit status tells why
        pass
    try:
        stdin.close()  # after a broken pipe this closes the pipe without flushing again
    except BrokenPipeError:
        pass


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _notes(reader, timed_out, timeout_s):
    notes = ""
    if reader.total > reader.cap:
        notes += f"\n[output cut: {reader.total} bytes, only the first {reader.cap} kept]"
    if timed_out:
        notes += f"\n[killed: the program ran over its {timeout_s:g} s time limit]"
    return notes


class _CappedReader:
    """Drains a pipe in a thread, keeping the first ``cap`` bytes: a chatty program neither
    blocks on a full pipe nor fills memory."""

    def __init__(self, pipe, cap):
        self.pipe, self.cap = pipe, cap
        self.data = bytearray()
        self.total = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        while True:
            chunk = self.pipe.read1(65536)
            if not chunk:
                return
            self.total += len(chunk)
            self.data += chunk[:max(0, self.cap - len(self.data))]

    def text(self):
        return bytes(self.data).decode("utf-8", errors="replace")


async def run_python_async(source, timeout_s, output_cap):
    # In a thread, so the event loop keeps relaying LLM replies for parallel operator calls.
    return await asyncio.to_thread(run_python, source, timeout_s, output_cap)


def public_examples(problem):
    """(source, expected output) pairs of the doctest-style ``>>>`` examples in the problem."""
    try:
        examples = doctest.DocTestParser().get_examples(problem)
    except ValueError:  # inconsistent indentation inside an example: treat as no examples
        return []
    pairs = [(example.source, _expected(example.source, example.want)) for example in examples]
    return [(source, want) for source, want in pairs if want is not None]


def _expected(source, want):
    """What an example must print; None where the docstring does not say (the example is left out)."""
    want = re.split(r"^\s*(?:\"{3}|'{3})", want, maxsplit=1, flags=re.MULTILINE)[0]  # the docstring's end
    if want.strip():
        return want
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    if len(body) == 1 and isinstance(body[0], ast.Expr):
        # `f(x) == y` alone means "is true"; any other bare expression states no result.
        return "True\n" if isinstance(body[0].value, ast.Compare) else None
    return ""  # a statement (setup such as `x = 3`) prints nothing


def error_tail(output, limit=1500):
    # Tracebacks and doctest reports end with the useful part.
    output = output.strip()
    return output if len(output) <= limit else "..." + output[-limit:]


# ---------------------------------------------------------------------------------------------
# Operators


class Custom:
    """Asks the LLM with the instruction; .response is its free text."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, input: str, instruction: str = "") -> TextResult:
        return TextResult(await self.llm(f"{instruction}\n{as_answer(input)}".strip()))


class CustomCodeGenerate:
    """Writes the function; .code is the complete function."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, problem: str, entry_point: str, instruction: str = "") -> CodeResult:
        prompt = (f"{instruction}\n\nComplete this Python function `{entry_point}`. "
                  f"Answer with the whole function in one ```python block.\n\n{problem}").strip()
        text = await self.llm(prompt)
        return CodeResult(complete_function(problem, extract_code(text, entry_point), entry_point))


class AnswerGenerate:
    """Thinks step by step; .answer is the final answer alone."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, input: str) -> AnswerResult:
        text = await self.llm(f"{as_answer(input)}\n\nThink step by step and explain your reasoning. "
                              "Then write the final answer alone on the last line, as: Answer: <answer>")
        thought, answer = split_answer(text)
        return AnswerResult(thought=thought, answer=answer)


class ScEnsemble:
    """Picks the solution most others agree with (self-consistency)."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, solutions: list[str], problem: str) -> TextResult:
        solutions = [as_answer(s) for s in solutions]
        if not solutions:
            return TextResult("")
        text = await self.llm(f"Problem:\n{problem}\n\nSolutions:\n{letter_listing(solutions)}\n\n"
                              "Which solution is most consistent with the others? Answer with one letter.")
        index = pick_letter(text, len(solutions))
        return TextResult(solutions[0 if index is None else index])


class MdEnsemble:
    """Votes vote_count times over shuffled solutions; the majority choice wins."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, solutions: list[str], problem: str, vote_count: int = 3) -> TextResult:
        solutions = [as_answer(s) for s in solutions]
        if len(set(solutions)) <= 1:
            return TextResult(solutions[0] if solutions else "")
        # Seeded from the inputs: the same workflow on the same problem asks the same questions.
        digest = hashlib.sha256("\0".join([str(problem), *solutions]).encode("utf-8", "replace")).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        votes = Counter()
        for _ in range(vote_count):
            order = rng.sample(solutions, len(solutions))
            text = await self.llm(f"Problem:\n{problem}\n\nSolutions:\n{letter_listing(order)}\n\n"
                                  "Which solution is best? Answer with one letter.")
            index = pick_letter(text, len(order))
            if index is not None:
                votes[order[index]] += 1  # by text: identical solutions pool their votes
        # max keeps the first of equals: ties (and no votes at all) go to the earliest solution.
        return TextResult(max(solutions, key=lambda s: votes[s]))


class Programmer:
    """Writes and runs a Python solve(), retrying on errors; .output is its result or last error."""

    def __init__(self, llm, timeout_s=DEFAULT_TIMEOUT_S, output_cap=DEFAULT_OUTPUT_CAP, attempts=3):
        self.llm = llm
        self.timeout_s, self.output_cap, self.attempts = timeout_s, output_cap, attempts

    async def __call__(self, problem: str, analysis: str = "") -> ProgramResult:
        code, output, feedback, analysis = "", "", "", as_answer(analysis)
        for _ in range(self.attempts):
            code = extract_code(await self.llm(self._prompt(problem, analysis, feedback)), "solve")
            run = await run_python_async(LOADER.format(source=code) + SOLVE_CALL, self.timeout_s, self.output_cap)
            output = run.output.strip()
            if run.ok and output:
                return ProgramResult(code=code, output=output)
            output = "Error: " + (error_tail(output) or "solve() returned None and nothing was printed")
            feedback = f"Your previous program:\n```python\n{code}\n```\nfailed with:\n{output}\n\nFix it."
        return ProgramResult(code=code, output=output)

    @staticmethod
    def _prompt(problem, analysis, feedback):
        analysis = f"\n\nAnalysis:\n{analysis}" if analysis else ""
        feedback = f"\n\n{feedback}" if feedback else ""
        return (f"Problem:\n{problem}{analysis}{feedback}\n\nWrite a self-contained Python program that "
                "defines a function solve() with no parameters that computes and returns the answer. "
                "Use only the standard library. Answer with the code in one ```python block.")


class Test:
    """Runs the problem's >>> examples, asking for fixes while they fail; .result is True when they pass."""

    def __init__(self, llm, timeout_s=DEFAULT_TIMEOUT_S, output_cap=DEFAULT_OUTPUT_CAP):
        self.llm = llm
        self.timeout_s, self.output_cap = timeout_s, output_cap

    async def __call__(self, problem: str, solution: str, entry_point: str, test_loop: int = 3) -> TestResult:
        solution, examples = as_answer(solution), public_examples(problem)
        if not examples:
            # Nothing to test against: pass the solution through rather than reject it unseen.
            return TestResult(result=True, solution=solution)
        for attempt in range(max(0, test_loop) + 1):  # like AFlow: test_loop fixes, each of them tested
            failure = await self._failure(solution, examples)
            if not failure:
                return TestResult(result=True, solution=solution)
            if attempt < test_loop:
                text = await self.llm(self._prompt(problem, solution, entry_point, failure))
                solution = complete_function(problem, extract_code(text, entry_point), entry_point)
        return TestResult(result=False, solution=solution)

    async def _failure(self, solution, examples):
        """'' when every example passes, else the report of what went wrong."""
        source = LOADER.format(source=solution) + DOCTEST_RUN.format(examples=examples)
        run = await run_python_async(source, self.timeout_s, self.output_cap)
        if run.ok:
            return ""
        report = "\n".join(line for line in run.output.splitlines() if not REPORT_NOISE_RE.match(line))
        return error_tail(report) or "the tests failed without output"

    @staticmethod
    def _prompt(problem, solution, entry_point, failure):
        return (f"Problem:\n{problem}\n\nThis solution fails the examples:\n```python\n{solution}\n```\n\n"
                f"Test report:\n{failure}\n\nFind the mistake and write the corrected complete function "
                f"`{entry_point}` in one ```python block.")


class Review:
    """Judges the solution; .review_result is False when it looks wrong, .feedback says why."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, problem: str, solution: str) -> ReviewResult:
        solution = as_answer(solution)
        text = await self.llm(f"Problem:\n{problem}\n\nSolution:\n{solution}\n\nReview the solution. "
                              "Start with 'Verdict: correct' or 'Verdict: incorrect', then explain what is "
                              "wrong and how to fix it.")
        return ReviewResult(review_result=parse_verdict(text), feedback=review_feedback(text))


class Revise:
    """Rewrites the solution following the feedback (code stays code)."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, problem: str, solution: str, feedback: str) -> TextResult:
        solution, feedback = as_answer(solution), as_answer(feedback)
        name = _function_name(problem, solution)
        ask = (f"the whole revised function `{name}` in one ```python block" if name
               else "the revised solution only")
        text = await self.llm(f"Problem:\n{problem}\n\nSolution:\n{solution}\n\nFeedback:\n{feedback}\n\n"
                              f"Revise the solution following the feedback. Answer with {ask}.")
        return TextResult(_revised_code(problem, solution, text, name) if name else text.strip())


def _function_name(problem, solution):
    """The function a code solution defines: the problem's last def it keeps, else its first."""
    defined = DEF_NAME_RE.findall(solution)
    kept = [name for name in DEF_NAME_RE.findall(problem) if name in defined]
    if kept:
        return kept[-1]
    return defined[0] if defined else ""


def _revised_code(problem, solution, text, name):
    # A reply with no usable code keeps the old solution: prose is never a better program.
    code = extract_code(text, name)
    if defines(code, name):
        return code
    if FENCE_RE.search(text) and defines(problem, name):
        return complete_function(problem, code, name)
    return solution


class Format:
    """Extracts the short final answer from a worked solution."""

    def __init__(self, llm):
        self.llm = llm

    async def __call__(self, problem: str, solution: str) -> TextResult:
        solution = as_answer(solution)
        text = await self.llm(f"Question:\n{problem}\n\nSolution:\n{solution}\n\nGive only the final answer, "
                              "in a few words or a number, with no explanation. Answer: ")
        # An empty reply still leaves the solution's own final answer.
        return TextResult(split_answer(text)[1] or split_answer(solution)[1])


# The order is the order of the generator prompt's operator list: the code writer comes first.
OPERATORS = {cls.__name__: cls for cls in (CustomCodeGenerate, Custom, ScEnsemble, AnswerGenerate, MdEnsemble,
                                           Programmer, Test, Review, Revise, Format)}
RESULT_TYPES = {cls.__name__: cls for cls in (CodeResult, TextResult, AnswerResult, ProgramResult, TestResult,
                                              ReviewResult)}
ANSWER_FIELDS = {CodeResult: "code", TextResult: "response", AnswerResult: "answer", ProgramResult: "output",
                 TestResult: "solution", ReviewResult: "feedback"}


def as_answer(value):
    """The final answer string a workflow's return value stands for."""
    field = ANSWER_FIELDS.get(type(value))
    if field:
        return str(getattr(value, field))
    if isinstance(value, tuple) and value:
        return as_answer(value[0])
    return value if isinstance(value, str) else str(value)
