"""What the driver hands the learner: pairs or groups by ``train.algorithm``, settings from the config,
and a skipped round when there is no signal (no actors, no training)."""
import dataclasses
import json

import pytest

from driver.learn import learner_items, learner_settings, learner_stage_times, train_round
from driver.runlog import RunLog
from flowpo.config import Config, TrainConfig
from flowpo.maths.groups import PromptGroup, sample_groups
from flowpo.maths.pairs import Candidate, PreferencePair
from flowpo.records import Execution, ScoredSample, Workflow


def sample(problem, index, score):
    wf = Workflow(problem_id=problem, round=1, sample_index=index, adapter="base", prompt=f"P{problem}",
                  completion=f"{problem}-c{index}", code="class Workflow: ...", generate_s=0.1)
    ex = Execution(workflow=wf, answer="a", failure="", error="", llm_calls=1, prompt_tokens=5,
                   completion_tokens=7, execute_s=1.0)
    return ScoredSample(ex, score=score, evaluate_s=0.5)


def config(**train) -> Config:
    return dataclasses.replace(Config(), train=TrainConfig(**train))


def test_pair_algorithms_get_pairs_and_iogrpo_gets_sharpened_groups():
    samples = [sample("x", i, s) for i, s in enumerate([0.0, 1.0, 0.5, 1.0])] + [sample("y", 0, None)]
    pairs, _ = learner_items(1, samples, config(algorithm="dpo", num_pairs=5))
    assert len(pairs) == 5 and all(isinstance(p, PreferencePair) for p in pairs)
    # x's scores (0, 1, 0.5, 1), n = 3, t = 1: C(4,3) variances → top 2 (0,1,3) and (0,1,2) (see test_grpo_groups),
    # each sharpened to its lowest and highest: completions (c0, c3) and (c0, c1); y has one unscored sample
    groups, _ = learner_items(1, samples, config(algorithm="iogrpo", group_m=4, group_n=3, group_t=1, num_groups=2))
    assert [g.completions for g in groups] == [("x-c0", "x-c3"), ("x-c0", "x-c1")]
    assert all(g.prompt == "Px" and g.advantages == pytest.approx((-1.0, 1.0), abs=1e-5) for g in groups)


def test_sample_groups_keeps_problems_apart():
    cands = [Candidate("a", "Pa", f"a{i}", s) for i, s in enumerate([0.0, 1.0, 1.0])]
    cands += [Candidate("b", "Pb", f"b{i}", s) for i, s in enumerate([0.5, 0.5, 0.5])]  # zero variance: no group
    groups = sample_groups(cands, m=3, n=3, t=1, top_n=5, max_combinations=10, seed=0)
    # a: the one combination (0, 1, 2), sharpened to its lowest (a0) and highest (a2, the later of the tied 1.0s)
    assert groups == [PromptGroup("a", "Pa", ("a0", "a2"), (0.0, 1.0), groups[0].advantages)]


def test_reference_auto_follows_each_paper():
    assert learner_settings(1, config(), "m", "out", "").reference == "base"  # ScoreFlow
    assert learner_settings(1, config(algorithm="iogrpo"), "m", "out", "").reference == "previous"  # SPOGW
    c = config(algorithm="dpo", reference="previous", micro_batch_size=3)
    s = learner_settings(2, c, "m", "out", "a1")
    assert (s.reference, s.init_adapter, s.round_index, s.base_model, s.out_dir) == ("previous", "a1", 2, "m", "out")
    assert s.train is c.train  # the run's train section itself crosses to the learner, not a copy of its fields


def test_iogrpo_round_without_groups_is_skipped(tmp_path, capsys):
    log = RunLog(tmp_path)
    samples = [sample("x", i, s) for i, s in enumerate([0.0, 1.0, 1.0])]  # 3 scored < n = 6 (derived from k = 8)
    assert train_round(1, samples, config(algorithm="iogrpo"), log, "unused-model", "") == (0, None, "")
    assert "no problem has 6 scored workflows" in capsys.readouterr().out
    event = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "train_skipped" and "ioGRPO" in event["reason"]


def test_carry_optimizer_resumes_from_a_previous_checkpoint_only(tmp_path):
    from trainer.checkpoint import META_FILE, OPTIMIZER_FILE

    ckpt = tmp_path / "round-1"
    ckpt.mkdir()
    plain = learner_settings(2, config(carry_optimizer=True), "m", "out", str(ckpt))
    assert plain.resume_from == "" and plain.init_adapter == str(ckpt)  # adapter only: no optimizer state there
    (ckpt / META_FILE).write_text("{}")
    (ckpt / OPTIMIZER_FILE).write_bytes(b"")
    assert learner_settings(2, config(carry_optimizer=True), "m", "out", str(ckpt)).resume_from == str(ckpt)
    assert learner_settings(2, config(), "m", "out", str(ckpt)).resume_from == ""  # off by default
    assert learner_settings(1, config(carry_optimizer=True), "m", "out", "").resume_from == ""  # round 1: fresh


def test_learner_stage_times_split_optimizer_steps_from_the_rest():
    times = {"startup_s": 0.0, "reference_s": 1.0, "steps_s": 8.0, "save_s": 0.25, "wall_s": 10.0}
    stages = learner_stage_times(times, ship_s=0.5)
    # the learner's 10 s and the adapter's 0.5 s to the generators: 10.5 s, of which 8 s optimizer steps and
    # 1 s round-start log-probs (the loss's work), 1.5 s overhead: 1.5 / 10.5 = 14.3%; the generators waited 10.5 s
    assert stages["learner_overhead_s"] == 1.5 and stages["learner_overhead_pct"] == 14.3
    assert stages["generators_idle_training_s"] == 10.5 and stages["adapter_ship_s"] == 0.5
    assert (stages["learner_steps_s"], stages["learner_reference_s"], stages["learner_wall_s"]) == (8.0, 1.0, 10.0)
    assert learner_stage_times({}, ship_s=0.5) == {}  # a round that did not train here (skipped, or before a resume)
