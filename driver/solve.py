"""`flowpo solve`: a trained generator answers new questions. For each question the checkpoint writes
a workflow (or ``--samples N``), the workflow runs through the same executors, sandboxes, broker and
rate limiter as training, and the answer is kept with its workflow, failure class, executor-LLM
usage and times. Questions have no gold answers and no scorer: nothing is scored, except a code
question's own tests (``tests``), which run in the evaluator's two-sandbox harness and pick the
answer (driver/vote.py states every rule).

The flow is the round's (driver/flow.py), ending at execute; the run's lifecycle is
driver/session.py. The question file is read twice, one line at a time: once to check every line
before any actor starts, once to feed the engine a bounded window, so a file of 10,000+ questions
holds the window. Output, in a directory that is never written over:

    solve.json      what was asked (checkpoint, questions, samples, rule): what --resume reads
    config.yaml     the resolved config
    samples.jsonl   one line per workflow, as it finishes
    answers.jsonl   one line per question, once all its workflows have finished
    summary.md/.json  counts, failure classes, usage, throughput

``--resume DIR`` finishes an interrupted solve: answered questions are skipped, and a question's
finished workflows are kept (only its missing sample slots are generated, with the seeds they would
have had). A workflow that ended in an infrastructure failure (llm_error, sandbox_error, or its tests
unscored) did not finish: its slot runs again, its question is answered again, and the lines it
replaces move to retried.jsonl.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from driver.rundir import read_repairing
from driver.trained import Trained
from driver.vote import NORMAL_FORMS, RULES, pick, rule_for
from flowpo.config import Config, TaskConfig, to_yaml
from flowpo.errors import FlowPOError
from flowpo.records import Execution, Problem, ScoredSample
from sandbox.pool import INFRA_FAILURES

JOB_FILE, SAMPLES_FILE, ANSWERS_FILE = "solve.json", "samples.jsonl", "answers.jsonl"
RETRIED_FILE = "retried.jsonl"  # lines a --resume answered again (infrastructure failures)
TEXT_KEYS = ("question", "problem", "prompt", "input")  # a question line's text, without a column map
ID_KEYS = ("id", "question_id", "problem_id", "task_id")
CHUNK = 64  # questions whose prompt lengths are measured in one call
DEF_RE = re.compile(r"^\s*def\s+(\w+)\s*\(", re.MULTILINE)


# ---------------------------------------------------------------------------------------------
# Questions


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    entry_point: str = ""  # code: the function the answer must define
    tests: str = ""  # code: the user's own tests (asserts); they pick among --samples, never a gold


def question_of(row, number: int, task: TaskConfig, where: str) -> Question:
    """A line of a question file: its text by the task's column map (task.columns.problem or
    task.template) or from the first of TEXT_KEYS; its id (task.columns.id, else the first of
    ID_KEYS, else the line number); a code question's ``entry_point`` and ``tests`` (text or a list)."""
    from flowpo.dataset_rows import RowError, row_problem_text

    if not isinstance(row, dict):
        raise FlowPOError(f"{where}: expected a JSON object with a {' or '.join(TEXT_KEYS)} field")
    try:
        if task.template or task.columns.problem:
            text = row_problem_text(row, task)
        else:
            key = next((k for k in TEXT_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
            if key is None:
                raise RowError(f"no question: give it as one of {', '.join(TEXT_KEYS)} (the row has: "
                               f"{', '.join(map(str, row)) or 'no fields'})")
            text = row[key]
    except RowError as exc:
        raise FlowPOError(f"{where}: {exc}") from None
    id_key = task.columns.id or next((k for k in ID_KEYS if k in row), "")
    qid = str(row[id_key]).strip() if id_key and row.get(id_key) not in (None, "") else str(number)
    tests = row.get("tests", "")
    tests = "\n".join(map(str, tests)) if isinstance(tests, list) else str(tests or "")
    entry = row.get(task.columns.entry_point or "entry_point") or ""
    return Question(qid, text, str(entry).strip(), tests)


def read_questions(path: Path, task: TaskConfig) -> Iterator[Question]:
    """The questions of a JSONL file (one object a line), or of a .txt file (one question a line),
    read one line at a time; a bad line is an error naming it."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                yield Question(str(number), line.strip())
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise FlowPOError(f"{path}:{number}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
            yield question_of(row, number, task, f"{path}:{number}")


@dataclass(frozen=True)
class Source:
    """Where the questions are: a file, ``--question`` texts, or the config's task split."""
    path: str = ""
    inline: tuple[str, ...] = ()

    def questions(self, config: Config) -> Iterator[Question]:
        if self.path:
            return read_questions(Path(self.path), config.task)
        if self.inline:
            return (Question(str(i), text) for i, text in enumerate(self.inline, start=1))
        from flowpo.tasks import load_problems

        # The split's problems as questions: their golds and hidden tests stay behind.
        return (Question(p.problem_id, p.prompt, p.entry_point) for p in load_problems(config.task))

    def describe(self, config: Config) -> str:
        if self.path:
            return self.path
        if self.inline:
            return f"{len(self.inline)} question(s) on the command line"
        return f"task {config.task.name}, {config.task.split} split"

    def to_json(self) -> dict:
        return {"path": self.path, "inline": list(self.inline)}


def problem_of(question: Question, family: str, description: str) -> Problem:
    """The question as the flow's Problem: no gold answer, and its own tests as a code test."""
    entry = question.entry_point
    if family == "code" and not entry:
        found = DEF_RE.findall(question.text)
        entry = found[-1] if found else ""
    return Problem(problem_id=question.id, prompt=question.text, entry_point=entry, test=question.tests,
                   task="solve", family=family, description=description)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Plan:
    total: int
    with_tests: int


def plan_questions(questions: Iterable[Question], family: str) -> Plan:
    """One pass before any actor starts: ids unique, texts present, tests usable (for code only)."""
    from flowpo.scoring import check_hidden_test

    seen: set[str] = set()
    total = with_tests = 0
    for question in questions:
        if question.id in seen:
            raise FlowPOError(f"question id {question.id!r} appears twice; ids must be unique (they name the "
                              "answers and seed the workflows)")
        seen.add(question.id)
        total += 1
        if question.tests:
            if family != "code":
                raise FlowPOError(f"question {question.id}: tests are for code questions, and these are asked as "
                                  f"family {family!r} (--family code, or a code task's --config)")
            check_hidden_test(problem_of(question, family, ""))
            with_tests += 1
    if not total:
        raise FlowPOError("no question to solve")
    return Plan(total, with_tests)


# ---------------------------------------------------------------------------------------------
# Lines: one per workflow, one per question (pure; serve builds its answers with them too)


def sample_line(execution: Execution, scored: ScoredSample | None = None) -> dict:
    """One workflow's line of samples.jsonl; ``scored``: its run through the question's tests."""
    wf = execution.workflow
    line = {"question_id": wf.problem_id, "sample_index": wf.sample_index, "adapter": wf.adapter,
            "workflow": wf.code, "completion": wf.completion, "invalid_reason": wf.invalid_reason,
            "attempts": wf.attempts, "answer": execution.answer, "failure": execution.failure,
            "error": execution.error,
            "usage": {"llm_calls": execution.llm_calls, "prompt_tokens": execution.prompt_tokens,
                      "completion_tokens": execution.completion_tokens, "cache_hits": execution.cache_hits,
                      "cost_usd": round(execution.cost_usd, 6)},
            "timings": {"generate_s": round(wf.generate_s, 3), "execute_s": round(execution.execute_s, 3)}}
    if scored is not None:
        details = scored.details.get("repeat_details", [scored.details])[0] if scored.details else {}
        line["test"] = "unscored" if scored.score is None else "passed" if scored.score == 1.0 else "failed"
        line["test_reason"] = str(details.get("test_reason") or details.get("test")
                                  or details.get("unscored", ""))[-300:]
        line["timings"]["test_s"] = round(scored.evaluate_s, 3)
    return line


USAGE_KEYS = ("llm_calls", "prompt_tokens", "completion_tokens", "cache_hits", "cost_usd")


def answer_line(question: Question, lines: list[dict], rule: str, family: str, checkpoint: str) -> dict:
    """The question's answer from its workflows' lines, by ``rule``; usage and times are their sums."""
    choice = pick(lines, rule, family)
    chosen = next(line for line in lines if line["sample_index"] == choice["chosen"])
    usage = {k: sum(line["usage"][k] for line in lines) for k in USAGE_KEYS}
    usage["cost_usd"] = round(usage["cost_usd"], 6)
    timings = Counter()
    for line in lines:
        timings.update(line["timings"])
    failures = Counter(line["failure"] for line in lines if line["failure"])
    return {"id": question.id, "question": question.text, "answer": chosen["answer"], "failure": chosen["failure"],
            "error": chosen["error"], "workflow": chosen["workflow"], "rule": rule, **choice,
            "samples": len(lines), "sample_failures": dict(failures), "usage": usage,
            "timings": {k: round(v, 3) for k, v in timings.items()}, "checkpoint": checkpoint}


def refused_line(question: Question, failure: str, error: str, rule: str, checkpoint: str) -> dict:
    """A question no workflow was written for (its prompt leaves the generator no room)."""
    return {"id": question.id, "question": question.text, "answer": "", "failure": failure, "error": error,
            "workflow": "", "rule": rule, "chosen": None, "samples": 0, "sample_failures": {},
            "usage": {k: 0 for k in USAGE_KEYS}, "timings": {}, "checkpoint": checkpoint}


# ---------------------------------------------------------------------------------------------
# Running: the flow's lane for the checkpoint, ending at execute


def ship(checkpoint) -> tuple[str, object]:
    """(version, adapter) as every generator receives it: only the peft files of the adapter folder
    (an exported folder also holds its card, spec, config and merged weights), through the object store."""
    import ray

    from trainer.checkpoint import PackedCheckpoint

    if not checkpoint.path:
        return checkpoint.name, ""
    folder = Path(checkpoint.path)
    files = tuple((name, (folder / name).read_bytes())
                  for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
                  if (folder / name).is_file())
    return checkpoint.name, ray.put(PackedCheckpoint(files))


class Sink:
    """Writes each workflow's line as it arrives, and a question's answer once all its slots are in."""

    def __init__(self, out_dir: Path, *, samples: int, family: str, checkpoint: str,
                 partial: dict[str, dict[int, dict]], on_answer: Callable[[dict], None]):
        self.samples, self.family, self.checkpoint = samples, family, checkpoint
        self.partial = partial  # question id -> sample index -> line (recorded before a resume, then new)
        self.asked: dict[str, Question] = {}  # the questions in flight
        self.on_answer = on_answer
        self.samples_file = open(out_dir / SAMPLES_FILE, "a", encoding="utf-8")
        self.answers_file = open(out_dir / ANSWERS_FILE, "a", encoding="utf-8")
        self.written = 0  # workflows finished in this run

    def close(self) -> None:
        self.samples_file.close()
        self.answers_file.close()

    def missing(self, question: Question) -> list[int]:
        have = self.partial.get(question.id, {})
        return [i for i in range(self.samples) if i not in have]

    def expect(self, question: Question) -> None:
        self.asked[question.id] = question

    def add(self, line: dict) -> None:
        self.samples_file.write(json.dumps(line) + "\n")
        self.samples_file.flush()  # one whole line at a time: a crash tears at most the last
        self.written += 1
        slots = self.partial.setdefault(line["question_id"], {})
        slots[line["sample_index"]] = line
        if len(slots) == self.samples:
            self.answer(line["question_id"])

    def answer(self, qid: str) -> None:
        question = self.asked.pop(qid)
        lines = list(self.partial.pop(qid).values())
        self.write(answer_line(question, lines, rule_for(self.samples, bool(question.tests)), self.family,
                               self.checkpoint))

    def refuse(self, question: Question, failure: str, error: str) -> None:
        self.partial.pop(question.id, None)
        self.write(refused_line(question, failure, error, rule_for(self.samples, bool(question.tests)),
                                self.checkpoint))

    def write(self, line: dict) -> None:
        self.answers_file.write(json.dumps(line) + "\n")
        self.answers_file.flush()
        self.on_answer(line)


def window_of(actors, config: Config) -> int:
    """Questions in flight: twice what the generators and executors hold at once."""
    g, sb = config.generator, config.sandbox
    return max(8, 2 * (len(actors.generators) * g.max_inflight_problems
                       + len(actors.executors) * sb.sandboxes_per_executor))


def run_questions(actors, config: Config, checkpoint, questions: Iterable[Question], sink: Sink, *,
                  family: str, description: str, done: set[str]) -> Counter:
    """Every question not in ``done`` through the flow; returns the items re-sent after an actor died."""
    import ray

    from driver.flow import Generate, stream_flow

    lane = checkpoint.name
    limit = config.generator.max_model_len

    def requests() -> Iterator[Generate]:
        todo = (q for q in questions if q.id not in done)
        while chunk := list(itertools.islice(todo, CHUNK)):
            problems = [problem_of(q, family, description) for q in chunk]
            lengths = ray.get(actors.generators[0].prompt_lengths.remote(problems))
            for question, problem in zip(chunk, problems):
                if lengths[problem.problem_id] >= limit:  # vLLM would refuse it, and stop the whole flow
                    sink.refuse(question, "prompt_too_long", f"the generator prompt is {lengths[problem.problem_id]} "
                                f"tokens; generator.max_model_len is {limit}")
                    continue
                sink.expect(question)
                missing = sink.missing(question)
                if missing:
                    yield Generate(lane, problem, missing)
                else:  # every workflow had finished before the interruption
                    sink.answer(question.id)

    def on_executed(_: str, executions: list[Execution]) -> bool:
        if sink.asked[executions[0].workflow.problem_id].tests:
            return True  # on to the evaluator: the question's own tests
        sink.add(sample_line(executions[0]))
        return False

    faults = stream_flow(actors, config, round_index=0, adapters={lane: ship(checkpoint)}, generate=requests(),
                         on_sample=lambda _, scored: sink.add(sample_line(scored.execution, scored)),
                         on_executed=on_executed, window=window_of(actors, config),
                         advice=", then finish it with `flowpo solve --resume OUT_DIR`")
    return faults.by_stage


def answer_one(actors, config: Config, adapters: dict, lane: str, question: Question, *, samples: int,
               family: str, description: str) -> tuple[dict, list[dict]]:
    """One question, answered at once (``flowpo serve``): its answer line and its workflows' lines."""
    import ray

    from driver.flow import Generate, stream_flow

    problem = problem_of(question, family, description)
    rule = rule_for(samples, bool(question.tests))
    length = ray.get(actors.generators[0].prompt_lengths.remote([problem]))[problem.problem_id]
    if length >= config.generator.max_model_len:  # vLLM would refuse it
        return refused_line(question, "prompt_too_long", f"the generator prompt is {length} tokens; "
                            f"generator.max_model_len is {config.generator.max_model_len}", rule, lane), []
    lines: list[dict] = []

    def on_executed(_: str, executions: list[Execution]) -> bool:
        if question.tests:
            return True
        lines.append(sample_line(executions[0]))
        return False

    stream_flow(actors, config, round_index=0, adapters=adapters,
                generate=[Generate(lane, problem, list(range(samples)))],
                on_sample=lambda _, scored: lines.append(sample_line(scored.execution, scored)),
                on_executed=on_executed)
    lines.sort(key=lambda line: line["sample_index"])
    return answer_line(question, lines, rule, family, lane), lines


# ---------------------------------------------------------------------------------------------
# The command


@dataclass(frozen=True)
class SolveJob:
    trained: Trained
    checkpoint_arg: dict  # what --resume needs to find the checkpoint again (text, round, merged)
    source: Source
    samples: int
    family: str
    description: str
    notes: tuple[str, ...] = ()  # how the prompt differs from the trained one (driver.prompt_spec.drift)

    @property
    def config(self) -> Config:
        return self.trained.config


def new_job(checkpoint: str, *, config_file: str | None = None, overrides: list[str] = (),
            round_index: int | None = None, merged: bool = False, source: Source = Source(), samples: int = 1,
            family: str = "", description: str | None = None) -> SolveJob:
    """The job of a new solve: the checkpoint and its config, and how the questions are asked
    (``family``, ``description``: else the config's task's)."""
    from driver.prompt_spec import drift
    from driver.trained import load_trained

    if samples < 1:
        raise FlowPOError(f"--samples {samples}: workflows per question must be at least 1")
    if source.path and not Path(source.path).is_file():
        raise FlowPOError(f"--input {source.path}: file not found")
    trained = load_trained(checkpoint, config_file=config_file, overrides=list(overrides), round_index=round_index,
                           merged=merged)
    family = family or trained.config.task.resolved_family
    description = trained.config.task.description if description is None else description
    notes = tuple(drift(trained.spec, family, description)) if trained.spec else ()
    # What --resume finds it by: the adapter itself (a run's latest round may have moved on), the export, or base.
    where = (str(Path(checkpoint).resolve()) if merged else trained.checkpoint.path) or "base"
    return SolveJob(trained, {"checkpoint": where, "merged": merged}, source, samples, family, description, notes)


def resumed_job(out_dir: Path, overrides: list[str] = ()) -> SolveJob:
    """The job an interrupted solve in ``out_dir`` was running, with its own config (and ``overrides``)."""
    from driver.trained import load_trained

    job = read_job(out_dir)
    trained = load_trained(job["checkpoint"], config_file=str(out_dir / "config.yaml"), overrides=list(overrides),
                           merged=job["merged"])
    source = Source(job["source"]["path"], tuple(job["source"]["inline"]))
    return SolveJob(trained, {"checkpoint": job["checkpoint"], "merged": job["merged"]}, source, job["samples"],
                    job["family"], job["description"], tuple(job["notes"]))


def solve_config(config: Config) -> Config:
    """One execution per workflow: a question's answer is what its workflow returned once."""
    return dataclasses.replace(config, evaluator=dataclasses.replace(config.evaluator, repeats=1))


def output_dir(out: str | None, home: Path | None) -> Path:
    """``--out``, else ``<run_dir>/solves/<timestamp>`` (``./solves/<timestamp>`` without a run);
    never one that already holds a solve. ``solve`` creates it once the questions are checked."""
    if out:
        path = Path(out)
        if (path / ANSWERS_FILE).exists() or (path / JOB_FILE).exists():
            raise FlowPOError(f"--out {path}: it already holds a solve, which is never written over; finish it with "
                              f"--resume {path}, or choose another directory")
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = (home / "solves") if home is not None else Path("solves")
    return next(root / (stamp if n == 1 else f"{stamp}-{n}") for n in itertools.count(1)
                if not (root / (stamp if n == 1 else f"{stamp}-{n}")).exists())


def read_job(out_dir: Path) -> dict:
    path = out_dir / JOB_FILE
    if not path.is_file():
        raise FlowPOError(f"--resume {out_dir}: no {JOB_FILE} there; is it the output of `flowpo solve`?")
    return json.loads(path.read_text())


def unfinished(line: dict) -> bool:
    """A workflow that ended for a reason outside it (the executor LLM, a sandbox, the test harness):
    not an answer of the checkpoint's, so --resume runs its slot again."""
    return line["failure"] in INFRA_FAILURES or line.get("test") == "unscored"


def recorded(out_dir: Path, samples: int) -> tuple[list[dict], dict[str, dict[int, dict]], int]:
    """What an interrupted solve left: its answer lines, the finished workflows of the questions still
    to answer (a line torn by the crash is cut off and redone), and how many questions are answered
    again because a workflow of theirs ended in an infrastructure failure. Those questions' answer
    lines and unfinished workflow lines move to retried.jsonl, so each file keeps one line per
    question and per slot and nothing recorded is lost."""
    answers = read_repairing(out_dir / ANSWERS_FILE)
    workflows = read_repairing(out_dir / SAMPLES_FILE)
    again = {line["question_id"] for line in workflows if unfinished(line)}
    again |= {line["id"] for line in answers if line["failure"] in INFRA_FAILURES}
    if again:
        answers, moved_answers = split(answers, lambda line: line["id"] in again)
        workflows, moved_workflows = split(workflows, lambda line: line["question_id"] in again and unfinished(line))
        set_aside(out_dir, {ANSWERS_FILE: (answers, moved_answers), SAMPLES_FILE: (workflows, moved_workflows)})
    answered = {line["id"] for line in answers}
    partial: dict[str, dict[int, dict]] = {}
    for line in workflows:
        if line["question_id"] not in answered and line["sample_index"] < samples:
            partial.setdefault(line["question_id"], {})[line["sample_index"]] = line
    return answers, partial, len(again)


def split(lines: list[dict], moved: Callable[[dict], bool]) -> tuple[list[dict], list[dict]]:
    """(the lines that stay, the lines ``moved`` picks), each in file order."""
    stay, go = [], []
    for line in lines:
        (go if moved(line) else stay).append(line)
    return stay, go


def set_aside(out_dir: Path, files: dict[str, tuple[list[dict], list[dict]]]) -> None:
    """For each file, its (kept, moved) lines: the moved ones are appended to retried.jsonl first, then
    each file is replaced by its kept lines, answers before workflows. A crash between two steps
    leaves the unfinished workflow lines in place, so the next --resume finds the same questions (the
    archive may then hold a line twice, never miss one)."""
    with open(out_dir / RETRIED_FILE, "a", encoding="utf-8") as archive:
        archive.writelines(json.dumps({"file": name, "line": line}) + "\n"
                           for name, (_, moved) in files.items() for line in moved)
    for name, (kept, _) in files.items():  # answers first: the dict keeps the order given
        temporary = out_dir / f".{name}.tmp"
        temporary.write_text("".join(json.dumps(line) + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, out_dir / name)


@dataclass
class Tally:
    answered: int = 0
    failures: Counter = dataclasses.field(default_factory=Counter)
    usage: Counter = dataclasses.field(default_factory=Counter)

    def add(self, line: dict) -> None:
        self.answered += 1
        if line["failure"]:
            self.failures[line["failure"]] += 1
        self.usage.update(line["usage"])


@dataclass(frozen=True)
class SolveReport:
    out_dir: Path
    summary: dict
    markdown: str


def solve(job: SolveJob, out_dir: Path, *, resume: bool = False, actors=None) -> SolveReport:
    """Everything `flowpo solve` does once its job is built; ``actors``: an already started session
    (tests share one), else this starts and stops its own."""
    from tqdm import tqdm

    from driver.session import prepare, session

    config, family = solve_config(job.config), job.family
    plan = plan_questions(job.source.questions(config), family)
    if plan.with_tests and config.task.resolved_family != "code":
        raise FlowPOError(f"{plan.with_tests} question(s) carry tests, which the evaluator's sandboxes run for a "
                          f"code task only: pass a code task's --config (this config's task is "
                          f"{config.task.resolved_family})")
    out_dir.mkdir(parents=True, exist_ok=True)
    answers, partial, retried = recorded(out_dir, job.samples) if resume else ([], {}, 0)
    done = {line["id"] for line in answers}
    tally = Tally()
    for line in answers:
        tally.add(line)
    if not resume:
        (out_dir / JOB_FILE).write_text(json.dumps({
            **job.checkpoint_arg, "label": job.trained.label, "source": job.source.to_json(),
            "questions": job.source.describe(config), "samples": job.samples, "family": family,
            "description": job.description, "rules": RULES,
            "normal_form": NORMAL_FORMS.get(family, NORMAL_FORMS["text"]),
            "notes": list(job.notes), "created": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
        (out_dir / "config.yaml").write_text(to_yaml(config))
    todo = plan.total - len(done)
    began = time.monotonic()
    bar = tqdm(total=todo, desc=f"solve {job.trained.checkpoint.name}", unit="question", dynamic_ncols=True)

    def on_answer(line: dict) -> None:
        tally.add(line)
        bar.update(1)

    sink = Sink(out_dir, samples=job.samples, family=family, checkpoint=job.trained.checkpoint.name,
                partial=partial, on_answer=on_answer)
    resent, flow_began = Counter(), time.monotonic()
    try:
        if todo and actors is not None:
            flow_began = time.monotonic()
            resent = run_questions(actors, config, job.trained.checkpoint, job.source.questions(config), sink,
                                   family=family, description=job.description, done=done)
        elif todo:
            model_path = prepare(config)
            with session(config, out_dir, model_path) as started:
                flow_began = time.monotonic()
                resent = run_questions(started, config, job.trained.checkpoint, job.source.questions(config), sink,
                                       family=family, description=job.description, done=done)
    finally:
        sink.close()
        bar.close()
    ended = time.monotonic()
    flow_s = ended - flow_began if todo else 0.0
    summary = {
        "checkpoint": job.trained.label, "questions": plan.total, "answered": tally.answered,
        "answered_before_resume": len(done), "answered_now": tally.answered - len(done),
        "answered_again_after_infra_failure": retried,
        "workflows_now": sink.written, "samples": job.samples, "rule": rule_for(job.samples, bool(plan.with_tests)),
        "with_tests": plan.with_tests, "failures": dict(tally.failures),
        "ok": tally.answered - sum(tally.failures.values()),
        "usage": {k: round(v, 6) for k, v in tally.usage.items()},
        "wall_s": round(ended - began, 1), "startup_s": round(flow_began - began, 1) if todo else 0.0,
        "flow_s": round(flow_s, 1),
        "questions_per_s": round((tally.answered - len(done)) / flow_s, 3) if flow_s else None,
        "workflows_per_s": round(sink.written / flow_s, 3) if flow_s else None,
        "resent_after_actor_death": dict(resent), "notes": list(job.notes)}
    markdown = render_summary(summary, out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "summary.md").write_text(markdown)
    return SolveReport(out_dir, summary, markdown)


def render_summary(s: dict, out_dir: Path) -> str:
    failures = ", ".join(f"{k} {v}" for k, v in sorted(s["failures"].items())) or "none"
    usage = s["usage"]
    rate = (f"{s['questions_per_s']} questions/s, {s['workflows_per_s']} workflows/s over {s['flow_s']} s of flow "
            f"(actors started in {s['startup_s']} s)") if s["questions_per_s"] else "nothing left to run"
    resumed = f" ({s['answered_before_resume']} before the resume)" if s["answered_before_resume"] else ""
    if s.get("answered_again_after_infra_failure"):
        resumed += (f"; {s['answered_again_after_infra_failure']} answered again after an infrastructure "
                    f"failure ({RETRIED_FILE} keeps the lines they replace)")
    notes = "".join(f"\nwarning: {note}" for note in s["notes"])
    infra = {k: v for k, v in s["failures"].items() if k in INFRA_FAILURES}
    if infra:
        notes += (f"\nwarning: {sum(infra.values())} question(s) failed for infrastructure reasons "
                  f"({', '.join(sorted(infra))}: the executor LLM or a sandbox, not the workflow); "
                  f"`flowpo solve --resume {out_dir}` answers them again")
    return (f"# flowpo solve: {s['checkpoint']}\n\n"
            f"{s['answered']} of {s['questions']} questions answered{resumed}; {s['samples']} workflow(s) each, "
            f"answer by {s['rule']} ({RULES[s['rule']]}).\n\n"
            f"- workflow failures (the chosen one's class): {failures}\n"
            f"- executor LLM: {usage.get('llm_calls', 0):.0f} calls, "
            f"{usage.get('prompt_tokens', 0) + usage.get('completion_tokens', 0):.0f} tokens, "
            f"${usage.get('cost_usd', 0):.4f}\n"
            f"- {rate}\n"
            f"- answers: {out_dir / ANSWERS_FILE}; workflows: {out_dir / SAMPLES_FILE}\n{notes}\n")
