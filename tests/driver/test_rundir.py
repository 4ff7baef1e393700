"""The run directory's layout, adapter names and readers (driver/rundir.py)."""
from __future__ import annotations

import pytest

from driver.rundir import RunDir, adapter_name, base_or_round, read_repairing, read_strict, read_tolerant, round_of
from flowpo.errors import FlowPOError


def test_adapter_names_round_trip_and_base_is_no_round():
    assert adapter_name(3) == "round-3" and round_of("round-3") == 3
    assert round_of("base") is None and round_of("round-x") is None and round_of("my-round-3") is None
    assert base_or_round("base") == "base" and base_or_round("round-12") == "round-12"
    with pytest.raises(FlowPOError, match="adapter version 'final': expected 'base' or round-<k>"):
        base_or_round("final")


def test_layout_and_trained_rounds_in_numeric_order(tmp_path):
    run = RunDir(tmp_path)
    assert run.samples == tmp_path / "samples.jsonl" and run.adapter(2) == tmp_path / "adapters" / "round-2"
    assert run.report(2) == tmp_path / "reports" / "round-2.md"
    for k in (10, 2, 1):
        run.adapter(k).mkdir(parents=True)
        (run.adapter(k) / "adapter_config.json").write_text("{}")
    run.adapter(3).mkdir()  # a round whose adapter never finished saving
    assert run.trained_rounds() == [1, 2, 10]
    with pytest.raises(FlowPOError, match=r"--resume .*: no config.yaml there"):
        run.require("--resume")


def test_the_strict_reader_names_the_bad_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(FlowPOError, match=r"samples.jsonl:3: expected a JSON object, got list"):
        read_strict(path)
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(FlowPOError, match=r"samples.jsonl:2: not valid JSON"):
        read_strict(path)
    with pytest.raises(FlowPOError, match="no such file"):
        read_strict(tmp_path / "missing.jsonl")


def test_the_repairing_reader_cuts_a_torn_tail_and_refuses_damage(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')  # the crash cut the third line's write short
    assert read_repairing(path) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'  # cut: the next append starts a clean line
    path.write_text('{"a": 1}\n{"a"\n{"a": 3}\n')
    with pytest.raises(FlowPOError, match=r"samples.jsonl:2: not valid JSON .*damaged there and cannot be resumed"):
        read_repairing(path)
    assert read_repairing(tmp_path / "missing.jsonl") == []


def test_the_tolerant_reader_skips_what_is_not_a_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "run_start"}\nnot json\n[1]\n{"event": "round_end"}\n{"event": ')
    assert read_tolerant(path) == [{"event": "run_start"}, {"event": "round_end"}]
    assert read_tolerant(tmp_path / "missing.jsonl") == []
