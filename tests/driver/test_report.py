"""The per-round report: its tables from small hand-made records, then a rendered report with its PNGs."""
from __future__ import annotations

import json
import re

import pytest

from driver.report import fenced, write_round_report
from driver.report_tables import dedupe_samples, extremes, failure_counts, loss_points, round_rows, scores


def sample(round_index, problem, index, score, failure="", usage=None, **extra):
    record = {"problem_id": problem, "round": round_index, "sample_index": index, "adapter": "base",
              "workflow": f"class Workflow:  # {problem} {index}", "completion": "", "answer": "", "score": score,
              "failure": failure, "error": "", "usage": usage if usage is not None else {}}
    return {**record, **extra}


def usage(calls, prompt, completion, hits=None, cost=None):
    u = {"llm_calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}
    if hits is not None:
        u["cache_hits"] = hits
    if cost is not None:
        u["cost_usd"] = cost
    return u


SAMPLES = [
    # Round 1: an old-format run (no cache_hits / cost_usd recorded).
    sample(1, "p1", 0, 1.0, usage=usage(2, 100, 50)),
    sample(1, "p1", 1, 0.0, "crash", usage(1, 80, 20), error="NameError: x"),
    sample(1, "p2", 0, None, "llm_error", usage(3, 10, 0), error="429 after 3 retries"),
    # Round 2: scores in between, an unscored sample without a failure class, a sample logged twice.
    sample(2, "p1", 0, 0.5, usage=usage(2, 100, 40, hits=1, cost=0.001)),
    sample(2, "p1", 1, 0.25, usage=usage(2, 100, 40, hits=0, cost=0.002)),
    sample(2, "p1", 1, 0.75, usage=usage(2, 100, 40, hits=1, cost=0.002)),  # the resumed copy wins
    sample(2, "p2", 0, None, usage=usage(0, 0, 0, hits=0, cost=0.0)),
    sample(2, "p2", 1, 0.0, "timeout", usage=usage(4, 200, 10, hits=2, cost=0.003)),
    {"round": 2, "score": "not a number"},  # a foreign line: counted as a workflow, never as a score
]
EVENTS = [
    {"event": "run_start", "name": "t"},
    {"event": "train", "round": 1, "pairs": 4, "loss": 0.6},
    {"event": "round_end", "round": 1, "mean_score": 0.5},
    {"event": "train_skipped", "round": 2, "reason": "no problem has two different scores"},
]
HISTORIES = {1: [{"step": 1, "loss": 0.69}, {"step": 2, "loss": 0.6}, {"step": 3, "accuracy": 1.0}]}


def test_tables_from_hand_made_records():
    samples = dedupe_samples(SAMPLES)
    assert len(samples) == len(SAMPLES) - 1
    assert [s["score"] for s in samples if s.get("round") == 2 and s.get("problem_id") == "p1"] == [0.5, 0.75]
    assert scores(samples) == [1.0, 0.0, 0.5, 0.75, 0.0]  # None and the string are not scores

    r1, r2 = round_rows(samples, EVENTS, HISTORIES, up_to=2)
    # Round 1: scores 1.0 and 0.0 (the None is an infrastructure failure): mean 0.5.
    assert (r1.round, r1.workflows, r1.scored, r1.mean_score) == (1, 3, 2, 0.5)
    assert (r1.llm_calls, r1.prompt_tokens, r1.completion_tokens) == (6, 190, 70)
    assert r1.cache_hits is None and r1.cost_usd is None and r1.cache_hit_rate is None  # not recorded
    assert r1.loss == 0.6 and r1.training == "4 pairs"  # the last logged loss of the round
    # Round 2: scores 0.5, 0.75, 0.0 -> mean 1.25 / 3; calls 2+2+0+4 = 8 with 1+1+0+2 = 4 hits.
    assert (r2.workflows, r2.scored) == (5, 3) and r2.mean_score == pytest.approx(1.25 / 3)
    assert (r2.llm_calls, r2.cache_hits, r2.cache_hit_rate) == (8, 4, 0.5)
    assert r2.cost_usd == pytest.approx(0.006)
    assert r2.loss is None and r2.training == "skipped: no problem has two different scores"
    assert round_rows(samples, EVENTS, HISTORIES, up_to=1) == [r1]
    assert round_rows([], [], {}, up_to=3) == []

    round2 = [s for s in samples if s.get("round") == 2]
    assert failure_counts(round2) == {"ok": 2, "timeout": 1, "unscored": 2}
    assert failure_counts([s for s in samples if s.get("round") == 1]) == {"crash": 1, "llm_error": 1, "ok": 1}

    # Loss curve: round 1's three steps (the third has no loss); a later round continues at step 4.
    points = loss_points({**HISTORIES, 3: [{"loss": 0.5}]})
    assert [(p.round, p.global_step, p.loss) for p in points] == [(1, 1, 0.69), (1, 2, 0.6), (3, 4, 0.5)]


def test_extremes_pick_scored_samples_without_repeats():
    round2 = [s for s in dedupe_samples(SAMPLES) if s.get("round") == 2]
    best, worst = extremes(round2, n=2)
    assert [(s["problem_id"], s["score"]) for s in best] == [("p1", 0.75), ("p1", 0.5)]
    assert [(s["problem_id"], s["score"]) for s in worst] == [("p2", 0.0)]  # no repeats from best
    best, worst = extremes(round2, n=1)
    assert [s["score"] for s in best] == [0.75] and [s["score"] for s in worst] == [0.0]
    assert extremes([sample(1, "p", 0, None)]) == ([], [])


def test_fence_outgrows_backticks_in_the_code():
    assert fenced("x = 1", "python") == "```python\nx = 1\n```"
    block = fenced('s = """```"""\nt = "````"', "python")
    assert block.startswith("`````python\n") and block.endswith("\n`````")


def write_run(run_dir, samples, events, histories):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("name: tiny\nrounds: 2\n")
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples) + '{"torn": ')
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    for k, history in histories.items():
        (run_dir / "adapters" / f"round-{k}").mkdir(parents=True)
        (run_dir / "adapters" / f"round-{k}" / "train_metrics.json").write_text(json.dumps(history))


def test_report_is_rendered_with_its_plots(tmp_path):
    best_code = "class Workflow:\n    async def __call__(self, problem, entry_point):\n        return '```'"
    samples = [s for s in SAMPLES if s.get("round") != 2 or s.get("problem_id") != "p1" or s["score"] != 0.75]
    samples.append(sample(2, "p1", 1, 0.9, workflow=best_code, answer="def f(): pass", usage=usage(1, 10, 5, 0, 0.0)))
    write_run(tmp_path, samples, EVENTS, HISTORIES)

    path = write_round_report(tmp_path, 2)
    assert path == tmp_path / "reports" / "round-2.md"
    text = path.read_text()
    assert text.startswith("# tiny: round 2")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"round-2-scores.png", "round-2-mean-score.png", "round-2-loss.png", "round-2-failures.png",
            "round-2-usage.png", "round-2-cache.png", "round-2-tradeoff.png"} == set(images)
    for name in images:
        assert (tmp_path / "reports" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 | 3 | 2 | 0.500 | 4 pairs | 0.600 |" in text  # the all-rounds table
    assert "skipped: no problem has two different scores" in text
    best = text.split("## Best workflows")[1].split("## Worst workflows")[0]
    assert "### 1. p1 #1: score 0.900 (ok)" in best and f"````python\n{best_code}\n````" in best
    worst = text.split("## Worst workflows")[1]
    assert "### 1. p2 #1: score 0.000 (timeout)" in worst

    # Round 1 alone (before round 2 existed in the files, or rewritten later): its own plots.
    text1 = write_round_report(tmp_path, 1).read_text()
    # Its accuracy against cost, in tokens (the config names no cost unit: usd, and no prices): p1 #0 150
    # tokens and score 1, p1 #1 100 and 0 (a crash), p2 #0 10 and unscored. Pass rate: p1 only, 0.5.
    # Cost per problem: p1 125, p2 10 (an unscored workflow's calls were paid too): mean 67.5, s/√2 = 57.5,
    # t_{.975,1} = 12.706205 → ± 730.6 → [0 (clipped), 798.1]; per solved 67.5 / 0.5 = 135. No answer: all
    # three (these records carry no answer), so no cost per answer; crash: one of three.
    assert "| round-1 | 50.0 | 67.5 [0.0, 798.1] | 135.0 | – | 100.0 | 33.3 | ● |" in text1
    assert "executor cost / problem, tokens" in text1 and "round-1-tradeoff.png" in text1
    assert "NameError: x" in text1 and "round-1-loss.png" in text1
    assert "round-1-cache.png" not in text1 and "No cache hit rate" in text1  # old samples: no cache counts


def test_report_of_an_empty_or_untrained_run(tmp_path):
    path = write_round_report(tmp_path / "empty", 1)
    text = path.read_text()
    assert "No samples were logged for this round." in text and "No learner metrics yet" in text
    assert "No scored workflows in this round." in text and "![" not in text

    # All samples unscored, no training, samples missing most fields.
    run = tmp_path / "unscored"
    write_run(run, [{"round": 1}, sample(1, "p", 0, None, "sandbox_error")],
              [{"event": "train_skipped", "round": 1}], {})
    text = write_round_report(run, 1).read_text()
    assert "round-1-scores.png" not in text and "round-1-failures.png" in text
    assert "skipped: no reason logged" in text and "No learner metrics yet" in text
