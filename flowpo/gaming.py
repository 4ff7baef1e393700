"""Suspected reward gaming, counted per round so that a user sees at once if the generator drifts
toward it. Pure functions over samples.jsonl records (the driver passes ``to_log()`` dicts).

What counts, per sample (a sample may show several):
- ``not_plain``: a hidden test got a result that was not plain data (an object that could lie);
- ``exited``: the candidate exited, or ended its process, before the tests ended;
- ``forged``: the candidate answered calls the test never made;
- ``forged_protocol``: the workflow wrote a malformed or forbidden line on the sandbox channel;
- ``forged_infra``: the workflow claimed an LLM error or budget stop that the host never saw;
- ``flood``: the workflow timed out while its LLM calls queued behind its own (more than its fair
  share of its actor's slots, or its own requests filling the run's rate window);
- ``broke_sandbox``: the job broke two sandboxes in turn while a control job ran on a third.
- ``judge_injection``, ``judge_echo``, ``judge_unreadable``, ``judge_rejected``: an answer scored by the LLM
  judge addressed its grader, got a reply that repeats it or has no verdict label (while the judge labels a
  control question), or a request the LLM refused for its content (flowpo/judge.py); with evaluator.judge on,
  the second opinion's own kind is ``details["judge_suspect"]``, kept apart as its score is.
"""
from __future__ import annotations

from typing import Iterable

# Phrases of sandbox/pool.py's crash errors: (kind, phrase).
WORKFLOW_SIGNS = (("forged_protocol", "malformed protocol line"), ("forged_infra", "the broker never saw"),
                  ("forged_infra", "budget stop that the host never made"))


def sample_suspects(record: dict) -> set[str]:
    """The kinds of suspected gaming one sample's record shows."""
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    found = {details["suspect"]} if details.get("suspect") else set()
    for repeat in details.get("repeat_details") or []:
        if isinstance(repeat, dict) and repeat.get("suspect"):
            found.add(repeat["suspect"])
    if record.get("failure") == "crash":
        error = str(record.get("error", ""))
        found |= {kind for kind, phrase in WORKFLOW_SIGNS if phrase in error}
    return found


def suspected_gaming(records: Iterable[dict]) -> dict[str, list[str]]:
    """{kind: sorted "problem_id#sample_index" ids} over the records of one round."""
    by_kind: dict[str, list[str]] = {}
    for record in records:
        for kind in sample_suspects(record):
            by_kind.setdefault(kind, []).append(f"{record.get('problem_id')}#{record.get('sample_index')}")
    return {kind: sorted(ids) for kind, ids in sorted(by_kind.items())}
