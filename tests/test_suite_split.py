"""`make test`'s split across its two xdist workers holds: every test carries its group in its node id
(xdist's loadgroup). Without it the stack tests would run two at a time, silently (pytest 9.2 broke
it: pytest-dev/pytest-xdist#1386)."""
import pytest

from tests.conftest import IN_CI


def test_this_test_runs_in_its_modules_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under `make test`'s xdist workers (-n 2 --dist loadgroup)")
    assert request.node.nodeid.endswith("@tests/test_suite_split.py"), request.node.nodeid


@pytest.mark.stack
def test_a_stack_test_runs_in_the_stack_group(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under `make test`'s xdist workers (-n 2 --dist loadgroup)")
    assert request.node.nodeid.endswith("@stack"), request.node.nodeid


def test_every_test_of_the_sessions_executor_llm_server_runs_in_the_stack_group(request):
    """The server is a session fixture: on one worker it starts once a session (tests/conftest.py)."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under `make test`'s xdist workers (-n 2 --dist loadgroup)")
    users = [item.nodeid for item in request.session.items if "executor_llm_url" in item.fixturenames]
    if not users and not IN_CI:  # CI runs the whole suite, which has them: there the check is never blind
        pytest.skip("no test of the executor-LLM server is collected in this run")
    assert users and all(nodeid.endswith("@stack") for nodeid in users), users
