"""The six benchmarks' loaders on small JSONL fixtures in each public format, the seeded 1:4 split,
the 1,000-problem subsets, loading by name (``datasets.load_dataset`` replaced: no test needs a
network), and the errors a bad file gets."""
from __future__ import annotations

import json

import pytest

from flowpo.config import Config, TaskConfig
from flowpo.dataset_rows import mbpp_entry_point
from flowpo.errors import ConfigError, FlowPOError
from flowpo.scoring import hidden_test
from flowpo.tasks import load_problems, split_problems
from flowpo.typed_config import from_dict

GSM8K_ROW = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
                         "to her friends in May. How many clips did Natalia sell altogether in April and May?",
             "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 "
                       "clips altogether in April and May.\n#### 72"}
MBPP_FULL_ROW = {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given "
                                        "character from the string.",
                 "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n"
                         "            s = s[0 : i] + s[i + 1:] \r\n            break\r\n"
                         "    for i in range(len(s) - 1,-1,-1):  \r\n        if (s[i] == ch): \r\n"
                         "            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ",
                 "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"',
                               'assert remove_Occ("PHP","P") == "H"'],
                 "test_setup_code": "", "challenge_test_list": []}
MBPP_SANITIZED_ROW = {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 2,
                      "prompt": "Write a function to find the shared elements from the given two lists.",
                      "code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & "
                              "set(test_tup2))\n  return (res) ",
                      "test_imports": [],
                      "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
                                    "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"]}
PASSAGE = ("Hoping to rebound from their loss to the Patriots, the Raiders stayed at home for a Week 16 duel with "
           "the Houston Texans. Oakland would get the early lead in the first quarter as quarterback JaMarcus "
           "Russell completed a 20-yard touchdown pass to rookie wide receiver Chaz Schilens.")
DROP_HF_ROW = {"section_id": "nfl_2201", "query_id": "f16c0ee7-f131-4a8b-a6ac-4d275ea68066", "passage": PASSAGE,
               "question": "Who caught the first touchdown pass?",
               "answers_spans": {"spans": ["Chaz Schilens", "Schilens"], "types": ["span", "span"]}}
DROP_ORIGINAL_ROW = {"passage": PASSAGE, "question": "How many yards was the touchdown pass?",
                     "query_id": "q-2", "answer": {"number": "20", "date": {"day": "", "month": "", "year": ""},
                                                   "spans": []},
                     "validated_answers": [{"number": "", "date": {"day": "", "month": "", "year": ""},
                                            "spans": ["20-yard"]}]}
DROP_AFLOW_ROW = {"id": "q-3", "context": f"Passage: {PASSAGE}\nQuestion: Which team was at home?\nAnswer:",
                  "ref_text": "Raiders|the Raiders"}
HOTPOT_TITLES = ["Ed Wood (film)", "Scott Derrickson"]
HOTPOT_SENTENCES = [["Ed Wood is a 1994 American biographical period comedy-drama film.", " It stars Johnny Depp."],
                    ["Scott Derrickson (born July 16, 1966) is an American director,", " screenwriter and producer."]]
HOTPOT_HF_ROW = {"id": "5a8b57f25542995d1e6f1371", "question": "Were Scott Derrickson and Ed Wood of the same "
                                                                "nationality?",
                 "answer": "yes", "type": "comparison", "level": "hard",
                 "supporting_facts": {"title": HOTPOT_TITLES, "sent_id": [0, 0]},
                 "context": {"title": HOTPOT_TITLES, "sentences": HOTPOT_SENTENCES}}
HOTPOT_ORIGINAL_ROW = {"_id": "5a8c7595554299585d9e36b6", "question": HOTPOT_HF_ROW["question"], "answer": "yes",
                       "context": [list(pair) for pair in zip(HOTPOT_TITLES, HOTPOT_SENTENCES)],
                       "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood (film)", 0]]}


def math_row(level, kind, answer="12", **extra):
    return {"problem": f"A {kind} problem at level {level}.", "level": level, "type": kind,
            "solution": f"Work... so the answer is $\\boxed{{{answer}}}$.", **extra}


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def load(tmp_path, name, rows, **config):
    return load_problems(TaskConfig(name=name, path=write_jsonl(tmp_path / f"{name}.jsonl", rows), **config))


# ---------------------------------------------------------------------------------------------
# One fixture per public format


def test_humaneval_hub_format_keeps_the_reference_program(tmp_path):
    row = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
           "test": "def check(candidate):\n    assert candidate(1) == 1\n", "entry_point": "f"}
    (problem,) = load(tmp_path, "humaneval", [row])
    assert (problem.family, problem.task, problem.entry_point) == ("code", "humaneval", "f")
    assert problem.answers == ("def f(x):\n    return x\n",)


def test_mbpp_full_and_sanitized_formats(tmp_path):
    full, sanitized = load(tmp_path, "mbpp", [MBPP_FULL_ROW, MBPP_SANITIZED_ROW])
    assert full.problem_id == "MBPP/11" and full.entry_point == "remove_Occ" and full.family == "code"
    # The statement and one assert (the function's name and shapes) are shown; all asserts are hidden tests.
    assert full.prompt.startswith("Write a python function") and 'remove_Occ("hello","l")' in full.prompt
    assert 'remove_Occ("abcda","a")' not in full.prompt and 'remove_Occ("PHP","P")' in full.test
    assert sanitized.entry_point == "similar_elements" and "shared elements" in sanitized.prompt
    harness = hidden_test(full)  # the test's side only: the solution never runs beside it
    assert harness["entry_point"] == "remove_Occ" and 'assert remove_Occ("hello","l")' in harness["test"]
    assert "def remove_Occ" not in harness["test"] + harness["prelude"]


def test_mbpp_entry_point_is_the_called_function():
    assert mbpp_entry_point("def helper(x):\n    pass\ndef main_fn(x):\n    pass\n",
                            ["assert main_fn(3) == helper(3)"]) == "main_fn"
    assert mbpp_entry_point("class Pair:\n    pass\n", ["assert math.isclose(area(2), 4.0)"]) == "area"


def test_gsm8k_gold_is_the_number_after_the_hashes(tmp_path):
    rows = [GSM8K_ROW, {"question": "How much?", "answer": "It costs 1,000 + 200.\n#### 1,200"}]
    first, second = load(tmp_path, "gsm8k", rows)
    assert (first.problem_id, first.family, first.answers) == ("GSM8K/0", "math", ("72",))
    assert second.answers == ("1200",) and second.prompt == "How much?"


def test_math_keeps_level_5_of_the_four_subjects(tmp_path):
    rows = [math_row("Level 5", "Counting & Probability", "\\frac{1}{2}"), math_row("Level 5", "Algebra"),
            math_row("Level 4", "Number Theory"),
            math_row("Level 5", "Precalculus", "\\begin{pmatrix} 1 \\end{pmatrix}"),
            math_row("Level 5", "Prealgebra"), math_row("Level 5", "Number Theory"),
            # MATH-500 style: integer level, subject, its own answer and id
            {"problem": "p", "level": 5, "subject": "Number Theory", "solution": "no box here", "answer": "7",
             "unique_id": "test/number_theory/1.json"}]
    problems = load(tmp_path, "math", rows)
    assert [p.problem_id for p in problems] == ["MATH/0", "MATH/3", "MATH/4", "MATH/5", "test/number_theory/1.json"]
    assert problems[0].answers == ("\\frac{1}{2}",) and problems[-1].answers == ("7",)
    assert problems[1].answers == ("\\begin{pmatrix} 1 \\end{pmatrix}",)  # nested braces kept whole
    assert {p.family for p in problems} == {"math"}


def test_drop_formats_and_gold_alternatives(tmp_path):
    hub, original, aflow = load(tmp_path, "drop", [DROP_HF_ROW, DROP_ORIGINAL_ROW, DROP_AFLOW_ROW], subset=0)
    assert hub.problem_id == DROP_HF_ROW["query_id"] and hub.answers == ("Chaz Schilens", "Schilens")
    assert hub.prompt.startswith("Passage: Hoping")
    assert hub.prompt.endswith("Question: Who caught the first touchdown pass?")
    assert original.answers == ("20", "20-yard")  # the answer and the validated answers
    assert aflow.answers == ("Raiders", "the Raiders") and aflow.prompt == DROP_AFLOW_ROW["context"]
    assert {p.family for p in (hub, original, aflow)} == {"qa"}


def test_hotpotqa_hub_and_original_formats(tmp_path):
    hub, original = load(tmp_path, "hotpotqa", [HOTPOT_HF_ROW, HOTPOT_ORIGINAL_ROW])
    assert hub.prompt == original.prompt
    assert hub.prompt.splitlines()[1] == ("Ed Wood (film): Ed Wood is a 1994 American biographical period "
                                          "comedy-drama film. It stars Johnny Depp.")
    assert hub.prompt.endswith("Question: Were Scott Derrickson and Ed Wood of the same nationality?")
    assert hub.answers == ("yes",) and hub.problem_id == HOTPOT_HF_ROW["id"] and hub.family == "qa"
    # The original distribution is one JSON list, not JSONL.
    path = tmp_path / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps([HOTPOT_ORIGINAL_ROW]))
    (from_json,) = load_problems(TaskConfig(name="hotpotqa", path=str(path)))
    assert from_json.problem_id == HOTPOT_ORIGINAL_ROW["_id"]


# ---------------------------------------------------------------------------------------------
# Split and subsets


def test_humaneval_split_is_1_to_4_disjoint_and_seeded():
    validation = load_problems(TaskConfig(split="validation"))
    test = load_problems(TaskConfig(split="test"))
    everything = load_problems(TaskConfig(split="all"))
    assert (len(validation), len(test), len(everything)) == (33, 131, 164)  # round(164 / 5) = 33
    ids = lambda problems: [p.problem_id for p in problems]  # noqa: E731
    assert not set(ids(validation)) & set(ids(test))
    assert sorted(ids(validation) + ids(test)) == sorted(ids(everything))
    assert ids(load_problems(TaskConfig(split="validation"))) == ids(validation)  # deterministic
    assert ids(load_problems(TaskConfig(split="validation", split_seed=1))) != ids(validation)
    assert ids(validation) == [i for i in ids(everything) if i in set(ids(validation))]  # source order kept


def test_split_does_not_depend_on_the_files_row_order(tmp_path):
    rows = [{**GSM8K_ROW, "id": f"q{i}"} for i in range(50)]
    forward = load(tmp_path, "gsm8k", rows, split="validation")
    backward = load(tmp_path, "gsm8k", rows[::-1], split="validation")
    assert len(forward) == 10 and {p.problem_id for p in forward} == {p.problem_id for p in backward}


@pytest.mark.parametrize("name, row", [("drop", DROP_HF_ROW), ("hotpotqa", HOTPOT_HF_ROW)])
def test_drop_and_hotpotqa_sample_1000_before_the_split(tmp_path, name, row):
    key = "query_id" if name == "drop" else "id"
    rows = [{**row, key: f"id-{i:04d}"} for i in range(1200)]
    validation = load(tmp_path, name, rows, split="validation")
    test = load(tmp_path, name, rows, split="test")
    assert (len(validation), len(test)) == (200, 800)
    subset = {p.problem_id for p in load(tmp_path, name, rows)}
    assert len(subset) == 1000 and {p.problem_id for p in validation + test} == subset
    assert subset != {p.problem_id for p in load(tmp_path, name, rows, split_seed=1)}
    assert len(load(tmp_path, name, rows, subset=0)) == 1200
    assert len(load(tmp_path, name, rows, subset=30, split="test")) == 24


def test_split_problems_rounds_the_validation_share():
    problems = load_problems(TaskConfig(limit=7))
    assert len(split_problems(problems, "validation", 0)) == 1 and len(split_problems(problems, "test", 0)) == 6


def test_problem_ids_are_looked_up_in_the_chosen_split():
    validation = load_problems(TaskConfig(split="validation"))
    chosen = [validation[3].problem_id, validation[0].problem_id]
    assert [p.problem_id for p in load_problems(TaskConfig(split="validation", problem_ids=chosen))] == chosen
    with pytest.raises(FlowPOError, match=rf"{chosen[0]} not in .*\(test split\)"):
        load_problems(TaskConfig(split="test", problem_ids=chosen[:1]))


# ---------------------------------------------------------------------------------------------
# By name through Hugging Face datasets (replaced: the hub is not reachable in tests)


def test_loading_by_name_asks_datasets_for_the_benchmarks_hub_copy(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        kind = {"number_theory": "Number Theory", "prealgebra": "Prealgebra"}.get(name, "Precalculus")
        return [math_row("Level 5", kind, answer=name), math_row("Level 3", kind)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_problems(TaskConfig(name="math"))
    assert calls == [("EleutherAI/hendrycks_math", config, "test") for config in
                     ("counting_and_probability", "number_theory", "prealgebra", "precalculus")]
    assert [p.answers[0] for p in problems] == ["counting_and_probability", "number_theory", "prealgebra",
                                                "precalculus"]


def test_unreachable_hub_says_to_download_and_set_task_path(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(path, name=None, split=None):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FlowPOError, match=r"task gsm8k: could not load openai/gsm8k \(main\) split test from the "
                                          r"Hugging Face hub \(ConnectionError: .*\); download it .* set task.path"):
        load_problems(TaskConfig(name="gsm8k"))


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("name, row, message", [
    ("gsm8k", {"question": "q"}, "missing field answer"),
    ("gsm8k", {"question": "q", "answer": "no number #### none"}, "no number after its final ####"),
    ("mbpp", {**MBPP_FULL_ROW, "test_list": "assert f() == 1"}, "field test_list must be list, got str"),
    ("mbpp", {key: v for key, v in MBPP_FULL_ROW.items() if key != "text"}, "missing field text or prompt"),
    ("math", {**math_row("Level 5", "Prealgebra"), "solution": "unboxed"}, r"no \\boxed\{\} answer"),
    ("math", {"problem": "p", "type": "Prealgebra", "solution": "x"}, "missing field level"),
    ("drop", {"passage": "p", "question": "q", "answers_spans": {"spans": []}}, "no gold answer"),
    ("hotpotqa", {**HOTPOT_HF_ROW, "context": "text"}, "field context must be dict or list"),
    ("hotpotqa", {**HOTPOT_HF_ROW, "context": {"sentences": []}}, "context must be {title"),
    ("hotpotqa", {**HOTPOT_HF_ROW, "context": [["Ed Wood", "one sentence"]]}, "paragraph 'Ed Wood' must be a title"),
])
def test_a_bad_row_names_file_line_and_field(tmp_path, name, row, message):
    path = write_jsonl(tmp_path / "data.jsonl", [DROP_HF_ROW if name == "drop" else
                                                 {"gsm8k": GSM8K_ROW, "mbpp": MBPP_FULL_ROW, "hotpotqa": HOTPOT_HF_ROW,
                                                  "math": math_row("Level 5", "Prealgebra")}[name], row])
    with pytest.raises(FlowPOError, match=rf"{path}:2: .*{message}"):
        load_problems(TaskConfig(name=name, path=path))


def test_malformed_json_and_duplicate_ids_name_the_line(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps(GSM8K_ROW) + "\n\n[1, 2]\n")
    with pytest.raises(FlowPOError, match=rf"{path}:3: expected a JSON object"):
        load_problems(TaskConfig(name="gsm8k", path=str(path)))
    with pytest.raises(FlowPOError, match=rf"{path}:3: problem id x already used at {path}:1"):
        load(tmp_path, "gsm8k", [{**GSM8K_ROW, "id": "x"}, {**GSM8K_ROW, "id": "y"}, {**GSM8K_ROW, "id": "x"}])
    bad_json = tmp_path / "h.json"
    bad_json.write_text('[\n{"_id": 1,\n')
    with pytest.raises(FlowPOError, match=rf"{bad_json}:3: not valid JSON"):
        load_problems(TaskConfig(name="hotpotqa", path=str(bad_json)))


def test_an_unknown_task_name_lists_the_known_ones():
    """Any name is a task of your own, but only with its data (task.path or task.hub)."""
    known = "humaneval, mbpp, gsm8k, math, drop, hotpotqa"
    with pytest.raises(ConfigError, match=rf"task.name: unknown benchmark 'mmlu' \(known: {known}\); a task of "
                                          r"your own needs its data: set task.path or task.hub"):
        from_dict(Config, {"task": {"name": "mmlu"}})
    with pytest.raises(FlowPOError, match=rf"task.name: unknown benchmark 'mmlu' \(known: {known}\)"):
        load_problems(TaskConfig(name="mmlu"))
    with pytest.raises(ConfigError, match="task.split: must be one of validation, test, all"):
        from_dict(Config, {"task": {"split": "train"}})


def test_selecting_nothing_is_an_error(tmp_path):
    with pytest.raises(FlowPOError, match="no math problems selected"):
        load(tmp_path, "math", [math_row("Level 1", "Prealgebra")])


def test_each_benchmark_is_defined_once_and_completely():
    """The registry is the one list, and every benchmark has what its family needs to be scored: a
    built-in scorer's name for math and QA, the hidden test's fields (check, prelude) for code."""
    from flowpo.benchmarks import BENCHMARKS
    from flowpo.tasks import check_task_scorer

    assert list(BENCHMARKS) == ["humaneval", "mbpp", "gsm8k", "math", "drop", "hotpotqa"]
    for name, spec in BENCHMARKS.items():
        assert bool(spec.scorer) == (spec.family != "code"), name
        check_task_scorer(TaskConfig(name=name))  # a name flowpo.scoring knows
    he = load_problems(TaskConfig(problem_ids=["HumanEval/2"]))[0]
    assert (he.prelude, he.check, he.scorer) == (he.prompt, "check", "")
