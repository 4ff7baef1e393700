"""The round trip on the real stack (SmolLM2-135M in a vLLM generator actor with a LoRA adapter,
Docker sandboxes, the evaluator's two-sandbox harness for a question's own tests): `flowpo solve` from
the run directory, `flowpo export`, the run directory deleted, `flowpo solve` from the exported folder
alone, in a fresh output directory: the same workflows, sample for sample, for the same seed. The
executor LLM is a local OpenAI-compatible stand-in (tests/llm/test_broker.py's ChatServer over HTTP),
so only the generator decides the workflows."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.driver.test_export import make_run
from tests.llm.test_broker import ChatServer, Scripted, completion

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.docker, pytest.mark.vllm, pytest.mark.ray]

ADD = 'def add(a, b):\n    """Return the sum of a and b."""\n'
QUESTIONS = [{"id": "add", "question": ADD, "tests": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]},
             {"id": "sub", "question": 'def sub(a, b):\n    """Return a minus b."""\n'}]


def executor(request: dict) -> Scripted:
    """Writes the asked function (right for add and sub), else a short answer."""
    text = request["body"]["messages"][-1]["content"]
    if "def add" in text:
        return Scripted(body=completion("```python\ndef add(a, b):\n    return a + b\n```"))
    if "def sub" in text:
        return Scripted(body=completion("```python\ndef sub(a, b):\n    return a - b\n```"))
    return Scripted(body=completion("42"))


def by_slot(path) -> dict:
    return {(s["question_id"], s["sample_index"]): s for s in map(json.loads, path.read_text().splitlines())}


def test_solve_from_an_export_with_the_run_gone_writes_the_same_workflows(tmp_path, random_adapter, model_dir,
                                                                          docker_backend, ray_local, monkeypatch):
    from driver.cli import main

    server = ChatServer(respond=executor)
    server.start()
    monkeypatch.setenv("FLOWPO_ROUNDTRIP_KEY", "sk-roundtrip")
    try:
        run = make_run(tmp_path, random_adapter, **{
            "executor_llm.backend": "openai", "executor_llm.base_url": server.url,
            "executor_llm.api_key_env": "FLOWPO_ROUNDTRIP_KEY", "generator.max_tokens": 64,
            "sandbox.timeout_s": 30, "evaluator.timeout_s": 20})
        questions = tmp_path / "questions.jsonl"
        questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
        first, second = tmp_path / "from-run", tmp_path / "from-export"
        assert main(["solve", str(run), "--input", str(questions), "--samples", "2", "--out", str(first)]) == 0
        assert main(["export", str(run), "--out", str(tmp_path / "gen")]) == 0
        shutil.rmtree(run)
        assert main(["solve", str(tmp_path / "gen"), "--input", str(questions), "--samples", "2",
                     "--out", str(second)]) == 0
    finally:
        server.stop()

    before, after = by_slot(first / "samples.jsonl"), by_slot(second / "samples.jsonl")
    assert sorted(before) == sorted(after) == [("add", 0), ("add", 1), ("sub", 0), ("sub", 1)]
    for slot in before:
        assert (after[slot]["completion"], after[slot]["workflow"]) == (before[slot]["completion"],
                                                                       before[slot]["workflow"]), slot
    assert {s["adapter"] for s in before.values()} == {"round-1"} and {s["adapter"] for s in after.values()} == {"gen"}
    answers = {a["id"]: a for a in map(json.loads, (second / "answers.jsonl").read_text().splitlines())}
    assert answers["add"]["rule"] == "tests" and answers["sub"]["rule"] == "majority"
    assert {before[("add", i)]["test"] for i in (0, 1)} <= {"passed", "failed"}  # the harness ran the user's tests
    assert answers["add"]["passed"] == [i for i in (0, 1) if after[("add", i)]["test"] == "passed"]
    assert all(r["headers"]["authorization"] == "Bearer sk-roundtrip" for r in server.requests)
