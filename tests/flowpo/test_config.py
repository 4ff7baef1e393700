import pytest

from flowpo.config import Config, load_config
from flowpo.errors import ConfigError
from flowpo.typed_config import apply_override


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_example_config_loads_with_its_values():
    config = load_config("examples/local.yaml")
    assert config.name == "local"
    assert config.task.problem_ids[0] == "HumanEval/23"
    assert config.generator.k == 8
    assert config.train.target_modules == ["q_proj", "v_proj"]
    assert str(config.resolved_run_dir) == "runs/local"


def test_unknown_key_names_dotted_path_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\ntrain:\n  beta: 0.1\n  betaa: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:4" in message
    assert "train.betaa: unknown key" in message
    assert "beta" in message  # the known keys are listed


def test_wrong_type_names_dotted_path(tmp_path):
    path = write(tmp_path, "generator:\n  k: eight\n")
    with pytest.raises(ConfigError, match=r"run.yaml:2: generator.k: expected int, got str 'eight'"):
        load_config(path)


def test_bool_is_not_an_int_and_int_is_a_float(tmp_path):
    with pytest.raises(ConfigError, match="generator.k: expected int"):
        load_config(write(tmp_path, "generator:\n  k: true\n"))
    assert load_config(write(tmp_path, "train:\n  beta: 1\n")).train.beta == 1.0


def test_literal_choices_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="sandbox.backend: must be one of docker"):
        load_config(write(tmp_path, "sandbox:\n  backend: chroot\n"))


def test_list_items_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"train.target_modules\[1\]: expected str"):
        load_config(write(tmp_path, "train:\n  target_modules: [q_proj, [v]]\n"))


def test_overrides_parse_values_and_reject_unknown_keys():
    config = apply_override(Config(), "train.beta=0.25")
    config = apply_override(config, "task.problem_ids=[HumanEval/0, HumanEval/1]")
    assert config.train.beta == 0.25
    assert config.task.problem_ids == ["HumanEval/0", "HumanEval/1"]
    with pytest.raises(ConfigError, match="override 'train.bta=1': train.bta: unknown key"):
        apply_override(config, "train.bta=1")
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        apply_override(config, "rounds")
    with pytest.raises(ConfigError, match="rounds: not a config section"):
        apply_override(config, "rounds.x=1")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))


def test_every_field_has_a_doc():
    import dataclasses

    def walk(cls, prefix=""):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{prefix}{f.name} has no doc"
            if dataclasses.is_dataclass(f.type if not isinstance(f.type, str) else None):
                walk(f.type, prefix + f.name + ".")

    walk(Config)


def test_an_iogrpo_config_that_can_never_form_a_group_fails_at_load_naming_the_fields():
    from pathlib import Path

    local = Path(__file__).resolve().parents[2] / "examples" / "local.yaml"
    with pytest.raises(ConfigError, match=r"local.yaml: train.group_n=14 exceeds min\(generator.k=8, "
                                          r"train.group_m=16\) = 8: ioGRPO could never form a group"):
        load_config(local, ["train.algorithm=iogrpo", "train.group_m=16", "train.group_n=14", "train.group_t=4"])
    with pytest.raises(ConfigError, match=r"train.group_t=3 with train.group_n=6"):
        load_config(local, ["train.algorithm=iogrpo", "train.group_m=8", "train.group_n=6", "train.group_t=3"])
    with pytest.raises(ConfigError, match=r"train.group_t=1 with train.group_n=2"):
        load_config(local, ["train.algorithm=iogrpo", "generator.k=4"])  # too few workflows to sharpen


def test_iogrpo_group_sizes_follow_k_in_spogws_proportions_unless_set():
    from pathlib import Path

    from flowpo.algorithms import group_sizes

    local = Path(__file__).resolve().parents[2] / "examples" / "local.yaml"
    assert group_sizes(load_config(local, ["train.algorithm=iogrpo", "generator.k=16"])) == (16, 14, 4)  # SPOGW
    assert group_sizes(load_config(local, ["train.algorithm=iogrpo"])) == (8, 6, 2)  # the local run, k = 8
    assert group_sizes(load_config(local, ["train.algorithm=iogrpo", "train.group_n=5"])) == (8, 5, 1)


def test_the_configuration_reference_is_generated_from_the_code():
    """docs/config.md lists every key with its type, default and doc, as the code has them now."""
    from pathlib import Path

    from flowpo.config import reference_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert page.read_text() == reference_markdown(), (
        "docs/config.md is stale: .venv/bin/python -c \"from flowpo.config import reference_markdown as r; "
        "print(r(), end='')\" > docs/config.md")
    assert "| `train.max_tokens_per_pass` | `int` | `16384` |" in page.read_text()
