"""Driver pieces that need no actors: round summaries, pair candidates, the no-pair round."""
import json

from driver.learn import candidates_of, train_round
from driver.runlog import RunLog
from driver.train import add_counts, summarize
from flowpo.config import Config
from flowpo.records import Execution, ScoredSample, Workflow


def sample(index, score, failure=""):
    wf = Workflow(problem_id="HumanEval/23", round=1, sample_index=index, adapter="base", prompt="P",
                  completion=f"c{index}", code="class Workflow: ...", generate_s=0.1)
    ex = Execution(workflow=wf, answer="a", failure=failure, error="", llm_calls=1, prompt_tokens=5,
                   completion_tokens=7, execute_s=1.0)
    return ScoredSample(ex, score=score, evaluate_s=0.5)


def test_round_without_pairs_skips_training_and_says_so(tmp_path, capsys):
    log = RunLog(tmp_path)
    samples = [sample(0, 0.0), sample(1, 0.0, "crash"), sample(2, None, "llm_error")]
    assert train_round(1, samples, Config(), log, "unused-model", "") == (0, None, "")
    assert "training skipped" in capsys.readouterr().out
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "train_skipped" and events[-1]["round"] == 1
    assert not (tmp_path / "adapters").exists()


def test_unscored_samples_are_not_candidates():
    cands = candidates_of([sample(0, 1.0), sample(1, None, "sandbox_error"), sample(2, 0.0)])
    assert [c.completion for c in cands] == ["c0", "c2"]


def test_the_learners_items_do_not_depend_on_the_order_samples_finished_in():
    """Streaming order changes from run to run, and a resumed round puts its recorded samples first:
    the same scored slots must give the same pairs (and groups) for the same seed."""
    import random

    from driver.learn import learner_items

    samples = [sample(i, score) for i, score in enumerate([0.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.75, 0.0])]
    config = Config()
    config.generator.k = 8
    shuffled = samples[:]
    random.Random(3).shuffle(shuffled)
    assert [c.completion for c in candidates_of(shuffled)] == [f"c{i}" for i in range(8)]
    assert learner_items(1, shuffled, config) == learner_items(1, samples, config)
    config.train.algorithm = "iogrpo"
    assert learner_items(1, shuffled, config) == learner_items(1, samples, config)


def test_summary_counts_valid_and_mean_over_scored_only():
    samples = [sample(0, 1.0), sample(1, 0.0, "invalid_workflow"), sample(2, None, "llm_error"), sample(3, 0.0)]
    summary = summarize(1, "base", samples, pairs=2, loss=0.5)
    assert (summary.workflows, summary.valid, summary.scored) == (4, 3, 3)
    assert abs(summary.mean_score - 1 / 3) < 1e-12
    assert "3/4 valid workflows" in summary.line() and "loss 0.5000" in summary.line()


def test_sample_log_line_has_the_contract_fields():
    line = sample(0, 1.0).to_log()
    assert {"problem_id", "round", "adapter", "workflow", "answer", "score", "failure", "timings"} <= set(line)
    assert line["timings"] == {"generate_s": 0.1, "execute_s": 1.0, "evaluate_s": 0.5}
    json.dumps(line)


def test_stats_of_several_actors_add_up_per_key():
    total = {}
    add_counts(total, {"jobs": 3, "failures": {"ok": 2, "timeout": 1}})
    add_counts(total, {"jobs": 4, "failures": {"ok": 4}, "cost_usd": 0.5})
    assert total == {"jobs": 7, "failures": {"ok": 6, "timeout": 1}, "cost_usd": 0.5}


def test_the_round_line_speaks_of_groups_for_iogrpo():
    from driver.train import RoundSummary

    grpo = RoundSummary(round=1, adapter="base", workflows=8, valid=8, scored=8, mean_score=0.5, pairs=3, loss=0.7,
                        unit="groups")
    assert "3 groups, loss 0.7000" in grpo.line()
    skipped = RoundSummary(round=1, adapter="base", workflows=8, valid=8, scored=8, mean_score=0.0, pairs=0, loss=None,
                           unit="groups")
    assert "skipped (no groups)" in skipped.line() and "pairs" not in skipped.line()


def test_a_learner_worker_group_lost_mid_round_trains_the_round_again(tmp_path, capsys):
    """A worker's process killed under a round ends its group (LearnerFailed): the driver trains the
    round once more on a new group instead of stopping the run, and counts the fault; a second
    failure stops it."""
    import pytest

    from actors.streaming import Faults
    from trainer.warm import LearnerFailed

    class FlakyLearner:
        running = True

        def __init__(self, failures):
            self.failures, self.calls = failures, 0

        def train(self, items, settings):
            self.calls += 1
            if self.calls <= self.failures:
                raise LearnerFailed("learner: the Ray Train worker group ended in round 1 (killed). More advice.")
            return {"loss": 0.25, "items": len(items)}

    log, samples = RunLog(tmp_path), [sample(0, 1.0), sample(1, 0.0), sample(2, 1.0), sample(3, 0.0)]
    faults = Faults(notify=lambda kind, stage: log.event("fault", round=1, kind=kind, stage=stage))
    learner = FlakyLearner(failures=1)
    pairs, loss, adapter = train_round(1, samples, Config(), log, "unused-model", "", learner, faults=faults)
    assert (learner.calls, loss) == (2, 0.25) and pairs > 0 and adapter
    assert faults.by_stage == {"train": 1}
    assert "training the round again on a new worker group" in capsys.readouterr().out
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(e["event"], e.get("kind"), e.get("stage")) for e in events] == [
        ("fault", "actor_failure", "train"), ("train", None, None)]
    with pytest.raises(LearnerFailed):
        train_round(1, samples, Config(), RunLog(tmp_path / "again"), "unused-model", "", FlakyLearner(failures=2))
