"""A user's own scorer: a Python function named ``"package.module:function"`` in the task's config.

The signature it must have::

    def my_scorer(answer: str, golds: list[str], row: dict) -> float:
        ...

``answer`` is the workflow's final answer (never empty: an empty answer scores 0 without a call),
``golds`` the problem's gold answers (maybe none), ``row`` the dataset row's other columns
(``Problem.extra``; a copy, so the function may change it). It returns a number in [0, 1] (a bool or an
int 0/1 too). It runs on the evaluator's host: it is trusted code, the user's own, and may import
anything (a tokenizer, a metric package) at module level; the module is found on the Python path or in
the current directory, as Ray's workers find it (they start in the driver's directory; ``ray job
submit --working-dir .`` ships it to a cluster).

Failure rule: an exception, a value that is not a number, NaN, a value outside [0, 1], or a call
still running after its time limit (``evaluator.scorer_timeout_s``) raises ``ScorerError``, naming
the problem and the function, and the evaluator lets it stop the run. Never a 0: a 0 would train
the generator on the scorer's bug. Never "unscored" either: a candidate could then write answers that
crash the scorer to turn its own failure into no score at all (the rule of the trust model: only what
the workflow cannot cause may leave a sample unscored). ``flowpo check`` scores every gold answer
first, so most such bugs show before any GPU time is spent; fix the function and ``--resume``.

The call runs in a daemon thread the caller abandons at the limit. A thread, not a subprocess: the
function keeps what its module loaded once (a model, a tokenizer), the row needs no pickling, and a
call costs microseconds; and it can be abandoned because a late call ends the run anyway (a daemon
thread does not keep the process alive). It cannot be killed, so a function that never returns
keeps a core busy until the evaluator exits.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import math
import numbers
import os
import sys
import threading
from typing import Callable

from flowpo.errors import FlowPOError

SPEC_FORMAT = "package.module:function"


class ScorerError(FlowPOError):
    """A user's scorer failed on an answer (raised, returned a bad value, or ran past its limit):
    the user's bug, which stops the run."""


def is_user_scorer(spec: str) -> bool:
    return ":" in spec


@functools.lru_cache(maxsize=None)
def resolve(spec: str) -> Callable:
    """The function ``spec`` names; FlowPOError naming the spec when it cannot be imported, is not
    callable, or cannot take (answer, golds, row)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or not all(part.isidentifier() for part in module_name.split(".")) \
            or not all(part.isidentifier() for part in attribute.split(".")):
        raise FlowPOError(f"scorer {spec!r}: a user's scorer is named {SPEC_FORMAT!r}")
    # a console script's path lacks the current directory; python -m and Ray's workers have it
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the import raised, the user must see it
        raise FlowPOError(f"scorer {spec!r}: cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise FlowPOError(f"scorer {spec!r}: {module_name} has no {attribute}")
        target = getattr(target, name)
    if not callable(target):
        raise FlowPOError(f"scorer {spec!r}: {attribute} is a {type(target).__name__}, not a function")
    try:
        inspect.signature(target).bind("answer", ["gold"], {})
    except TypeError as exc:
        raise FlowPOError(f"scorer {spec!r}: it must take (answer: str, golds: list[str], row: dict); "
                          f"{exc}") from None
    except ValueError:  # no signature to read (some builtins): the call will tell
        pass
    return target


def call_user_scorer(spec: str, answer: str, golds: list[str], row: dict, *, timeout_s: float,
                     problem_id: str) -> float:
    """``spec``'s score of ``answer``, checked; ScorerError (see the failure rule above) otherwise."""
    function = resolve(spec)
    done, box = threading.Event(), {}

    def run() -> None:
        try:
            box["value"] = function(answer, list(golds), dict(row))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, whatever it was
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"scorer {spec}", daemon=True).start()
    where = f"the scorer {spec} on problem {problem_id} (answer {answer[:80]!r}{'…' if len(answer) > 80 else ''})"
    fix = "; fix the function and resume the run (flowpo train --resume RUN_DIR)"
    if not done.wait(timeout_s):
        raise ScorerError(f"{where} did not return within {timeout_s:g} s (evaluator.scorer_timeout_s){fix}")
    if "error" in box:
        exc = box["error"]
        raise ScorerError(f"{where} raised {type(exc).__name__}: {str(exc)[:300]}{fix}") from exc
    value = box["value"]
    if isinstance(value, numbers.Real):  # bool, int, float, numpy's floats
        score = float(value)
    else:
        raise ScorerError(f"{where} returned {type(value).__name__} {str(value)[:80]!r}, not a number in [0, 1]{fix}")
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise ScorerError(f"{where} returned {score!r}, outside [0, 1]{fix}")
    return score
