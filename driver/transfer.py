"""The transfer table of a replay (``flowpo execute``): per original round, the recorded and the
replayed scores of the same workflows side by side, as running sums (constant memory however many
workflows stream by). Pure: it reads samples.jsonl lines and nothing else, so the table can always
be recomputed from the replay's own samples.jsonl (each line's ``origin`` holds the recorded side).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def _ratio(a: float, b: int) -> float | None:
    return a / b if b else None


@dataclass
class Tally:
    """One group's running sums: constant memory however many workflows stream by."""
    workflows: int = 0
    recorded_scored: int = 0
    recorded_sum: float = 0.0
    recorded_passed: int = 0
    scored: int = 0
    score_sum: float = 0.0
    passed: int = 0
    paired: int = 0  # scored both times
    delta_sum: float = 0.0
    crashes: int = 0
    invalid: int = 0
    tokens: int = 0  # executor-LLM tokens, all repeats
    cost_usd: float = 0.0

    def add(self, recorded: float | None, line: dict) -> None:
        """``recorded``: the original score; ``line``: the replayed samples.jsonl line."""
        score = line["score"]
        self.workflows += 1
        if recorded is not None:
            self.recorded_scored += 1
            self.recorded_sum += recorded
            self.recorded_passed += recorded >= 1.0
        if score is not None:
            self.scored += 1
            self.score_sum += score
            self.passed += score >= 1.0
        if score is not None and recorded is not None:
            self.paired += 1
            self.delta_sum += score - recorded
        self.crashes += line["failure"] == "crash"
        self.invalid += line["failure"] == "invalid_workflow"
        usage = (line.get("details") or {}).get("repeat_usage") or line["usage"]
        self.tokens += usage["prompt_tokens"] + usage["completion_tokens"]
        self.cost_usd += usage["cost_usd"]

    def row(self, group: str) -> dict:
        return {"group": group, "workflows": self.workflows,
                "recorded_mean": _ratio(self.recorded_sum, self.recorded_scored),
                "replayed_mean": _ratio(self.score_sum, self.scored),
                "delta": _ratio(self.delta_sum, self.paired), "paired": self.paired,
                "recorded_pass_rate": _ratio(self.recorded_passed, self.recorded_scored),
                "replayed_pass_rate": _ratio(self.passed, self.scored),
                "crash_rate": _ratio(self.crashes, self.workflows),
                "invalid_rate": _ratio(self.invalid, self.workflows),
                "infra_failures": self.workflows - self.scored,
                "tokens_per_workflow": _ratio(self.tokens, self.workflows),
                "cost_per_workflow": _ratio(self.cost_usd, self.workflows)}


@dataclass
class Transfer:
    rounds: dict[int, Tally] = field(default_factory=dict)
    total: Tally = field(default_factory=Tally)

    def add(self, origin: dict, line: dict) -> None:
        self.rounds.setdefault(origin["round"], Tally()).add(origin["score"], line)
        self.total.add(origin["score"], line)

    def rows(self) -> list[dict]:
        return [self.rounds[r].row(f"round {r}") for r in sorted(self.rounds)] + [self.total.row("all")]


TABLE_HEADER = ("| recorded in | workflows | recorded mean | replayed mean | Δ mean (paired) | recorded pass "
                "| replayed pass | crash | invalid | infra failures | executor tokens / workflow |\n"
                "|---|" + "---:|" * 10)


def render_table(rows: list[dict]) -> str:
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}%"

    def num(x):
        return "—" if x is None else f"{x:.3f}"

    lines = [TABLE_HEADER]
    for r in rows:
        delta = "—" if r["delta"] is None else f"{r['delta']:+.3f} (n={r['paired']})"
        lines.append(f"| {r['group']} | {r['workflows']} | {num(r['recorded_mean'])} | {num(r['replayed_mean'])} "
                     f"| {delta} | {pct(r['recorded_pass_rate'])} | {pct(r['replayed_pass_rate'])} "
                     f"| {pct(r['crash_rate'])} | {pct(r['invalid_rate'])} | {r['infra_failures']} "
                     f"| {r['tokens_per_workflow']:.0f} |")
    return "\n".join(lines)


def render_report(rows: list[dict], meta: dict) -> str:
    return (f"# Replay of {meta['source']}\n\n"
            f"{meta['selected']} recorded workflow(s) (selection: {meta['selection']}) run {meta['repeats']} time(s) "
            f"each on {meta['task']} ({meta['split']} split) with executor LLM `{meta['executor_model']}`, scored by "
            "the mean. Means are over scored workflows (infrastructure failures are not scored); Δ is the mean of "
            "replayed − recorded over the workflows scored both times; pass = score 1 (every repeat passed); crash "
            "and invalid are shares of all replayed workflows (their first run).\n\n" + render_table(rows) + "\n")
