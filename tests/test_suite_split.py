"""`make test`'s split across its two xdist workers holds: every test carries its group in its node id
(xdist's loadgroup). Without it the stack tests would run two at a time, silently (pytest 9.2 broke
it: pytest-dev/pytest-xdist#1386)."""
import pytest


def test_this_test_runs_in_its_modules_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under `make test`'s xdist workers (-n 2 --dist loadgroup)")
    assert request.node.nodeid.endswith("@tests/test_suite_split.py"), request.node.nodeid


@pytest.mark.stack
def test_a_stack_test_runs_in_the_stack_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under `make test`'s xdist workers (-n 2 --dist loadgroup)")
    assert request.node.nodeid.endswith("@stack"), request.node.nodeid
