"""Seeds depend on an item's coordinates only."""
from flowpo.seeds import call_seed, derive_seed, sample_seed


def test_a_seed_is_a_pure_function_of_its_coordinates():
    assert sample_seed(0, "HumanEval/23", 1, 5, 1) == sample_seed(0, "HumanEval/23", 1, 5, 1)
    others = {sample_seed(1, "HumanEval/23", 1, 5, 1), sample_seed(0, "HumanEval/35", 1, 5, 1),
              sample_seed(0, "HumanEval/23", 2, 5, 1), sample_seed(0, "HumanEval/23", 1, 6, 1),
              sample_seed(0, "HumanEval/23", 1, 5, 2)}
    assert sample_seed(0, "HumanEval/23", 1, 5, 1) not in others and len(others) == 5


def test_calls_and_samples_never_share_a_seed_space():
    assert call_seed(0, "p", 1, 0, 0, 1) != sample_seed(0, "p", 1, 0, 1)
    assert len({call_seed(0, "p", 1, 0, repeat, call) for repeat in range(3) for call in range(1, 4)}) == 9


def test_seeds_fit_every_backend():
    """31 bits: vLLM, the OpenAI API and numpy all take it."""
    assert all(0 <= derive_seed("x", i) < 2 ** 31 for i in range(1000))
