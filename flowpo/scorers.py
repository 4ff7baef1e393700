"""Rule-based scorers for the math and question-answering benchmarks (pure functions).

GSM8K: the last number, commas removed, equal within 1e-6. MATH: the last ``\\boxed{}`` answer,
equal as normalized strings, as numbers, or symbolically (sympy, under a time limit). DROP and
HotpotQA: SQuAD-style token F1 after normalization, the maximum over the gold alternatives.
Also the parser of the optional LLM judge's verdict.
"""
from __future__ import annotations

import multiprocessing
import re
import string
from collections import Counter

NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def score_text(task: str, answer: str, golds: tuple[str, ...], *, math_timeout_s: float = 5.0) -> tuple[float, dict]:
    """Score of a math or QA answer against the gold answers, and what the scorer read."""
    if task == "gsm8k":
        predicted = last_number(answer)
        return gsm8k_score(answer, golds[0]), {"scorer": "gsm8k", "extracted": predicted}
    if task == "math":
        predicted = math_prediction(answer)
        ok = predicted is not None and math_equal(predicted, golds[0], timeout_s=math_timeout_s)
        return float(ok), {"scorer": "math", "extracted": predicted}
    if task in ("drop", "hotpotqa"):
        return f1_score(answer, list(golds)), {"scorer": "f1"}
    raise ValueError(f"no rule-based scorer for task {task!r} (code tasks run their hidden tests)")


# ---------------------------------------------------------------------------------------------
# GSM8K


def last_number(text: str) -> float | None:
    matches = NUMBER_RE.findall(text.replace("−", "-"))
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:
        return None


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer is the text after the final ``####``, thousands commas removed."""
    return solution.split("####")[-1].strip().replace(",", "")


def gsm8k_score(answer: str, gold: str) -> float:
    predicted, expected = last_number(answer), last_number(gold)
    if predicted is None or expected is None:
        return 0.0
    return 1.0 if abs(predicted - expected) <= 1e-6 else 0.0


# ---------------------------------------------------------------------------------------------
# MATH


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[brace + 1:i]
    return None


ANSWER_PREFIX_RE = re.compile(r"^.*?\b(?:final answer|answer)\s*(?:is|:)\s*", re.IGNORECASE)


def math_prediction(answer: str) -> str | None:
    """The last ``\\boxed{}``; without one, the answer's last line (a workflow usually returns the
    final answer alone, e.g. from AnswerGenerate or Format), minus an "answer is" lead-in."""
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    return ANSWER_PREFIX_RE.sub("", lines[-1]).strip().strip("$").rstrip(".").strip() or None


def _fix_fracs(s: str) -> str:
    # \frac12 → \frac{1}{2}, \frac1{2} → \frac{1}{2}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    return re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)


# A unit after a value: "5 \text{ cm}^2", "12 \mbox{inches}", "3 dollars" (not a lone "\text{Bob}").
UNIT_RE = re.compile(r"(?<=[\d}])\s*(?:\\(?:text|mbox|mathrm)\{\s*[a-zA-Z ]*\}"
                     r"|\s(?!(?:pi|sqrt|sin|cos|tan|log|ln|exp)\b)[a-zA-Z]{2,}(?:\s[a-zA-Z]{2,})*)"
                     r"(?:\^\{?\d\}?)?\s*$")


def normalize_math(answer: str) -> str:
    s = answer.strip().replace("−", "-").replace("{,}", ",")
    s = UNIT_RE.sub("", s)
    s = re.sub(r"^\\(?:text|mbox|mathrm)\{([^{}]*)\}$", r"\1", s)  # an answer that is a word: keep it
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""),
                     ("dfrac", "frac"), ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""),
                     ("%", ""), ("\\$", ""), ("$", "")):
        s = s.replace(old, new)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")  # thousands separators
    if re.fullmatch(r"[a-zA-Z]=.+", s):
        s = s.split("=", 1)[1]  # x=5 → 5
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)  # 5.00 → 5
    return s.rstrip(".")


def _as_number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        pass
    match = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if match and int(match.group(3)) != 0:
        value = int(match.group(2)) / int(match.group(3))
        return -value if match.group(1) else value
    return None


def _split_top_level(s: str) -> list[str]:
    """``s`` split at the commas outside any brackets or braces."""
    parts, depth, current = [], 0, ""
    for ch in s:
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def _bracketed_items(s: str) -> tuple[str, list[str], str] | None:
    """(opening, items, closing) of an interval or tuple like ``(1,\\frac{1}{2}]``."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    items = _split_top_level(s[1:-1])
    return (s[0], items, s[-1]) if len(items) > 1 else None


def math_equal(predicted: str, gold: str, *, timeout_s: float = 5.0) -> bool:
    a, b = normalize_math(predicted), normalize_math(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return abs(x - y) <= 1e-6 * max(1.0, abs(y))
    left, right = _bracketed_items(a), _bracketed_items(b)
    if left or right:  # intervals and tuples: same brackets, items equal one by one
        return bool(left and right and left[0] == right[0] and left[2] == right[2]
                    and len(left[1]) == len(right[1])
                    and all(math_equal(p, q, timeout_s=timeout_s) for p, q in zip(left[1], right[1])))
    if "," in a + b:
        return False  # lists of answers compare as normalized strings only
    return symbolic_equal(a, b, timeout_s)


def math_score(answer: str, gold_solution: str, *, timeout_s: float = 5.0) -> float:
    predicted, gold = math_prediction(answer), last_boxed(gold_solution)
    if gold is None:
        gold = gold_solution
    if predicted is None:
        return 0.0
    return 1.0 if math_equal(predicted, gold, timeout_s=timeout_s) else 0.0


# ---------------------------------------------------------------------------------------------
# MATH: symbolic equality. The predicted text comes from untrusted workflow code and sympy parses
# with eval, so only a whitelisted alphabet and whitelisted names ever reach it.

SYMPY_NAMES = {"sqrt", "pi", "sin", "cos", "tan", "log", "exp", "oo"}
SAFE_TEXT_RE = re.compile(r"[0-9A-Za-z+\-*/().!\s]*")  # ! : factorials


def latex_to_sympy_text(s: str) -> str | None:
    """Plain sympy syntax for simple LaTeX, or None when the text is not safe to hand to sympy."""
    for _ in range(20):  # innermost first, so nested \frac{\sqrt{3}}{2} resolves
        before = s
        s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
        s = re.sub(r"\\sqrt\[([^{}\]]*)\]\{([^{}]*)\}", r"((\2)**(1/(\1)))", s)
        s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
        s = re.sub(r"\\sqrt(\d)", r"sqrt(\1)", s)
        if s == before:
            break
    for old, new in (("\\pi", "pi"), ("\\cdot", "*"), ("\\times", "*"), ("\\infty", "oo"), ("\\ln", "log"),
                     ("\\log", "log"), ("\\sin", "sin"), ("\\cos", "cos"), ("\\tan", "tan"), ("^", "**"),
                     ("{", "("), ("}", ")")):
        s = s.replace(old, new)
    s = re.sub(r"(\d)([a-zA-Z(])", r"\1*\2", s)  # 2x → 2*x
    s = re.sub(r"\)\(", ")*(", s)
    if not SAFE_TEXT_RE.fullmatch(s) or re.search(r"\.(?!\d)|(?<!\d)\.", s):  # no attribute access
        return None
    if any(len(name) > 1 and name not in SYMPY_NAMES for name in re.findall(r"[A-Za-z]+", s)):
        return None
    return s


def _parse(text: str):
    import sympy

    # Single letters are variables, except MATH's conventions i (imaginary unit) and e (Euler's number).
    constants = {"i": sympy.I, "e": sympy.E}
    letters = set(re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", text))
    return sympy.sympify(text, locals={c: constants.get(c) or sympy.Symbol(c) for c in letters})


def _symbolic_equal_worker(a: str, b: str, queue) -> None:
    import resource

    import sympy

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a huge power fails, not the host
    try:
        queue.put(sympy.simplify(_parse(a) - _parse(b)) == 0)
    except BaseException:  # noqa: BLE001 - unparsable or too big means "not shown equal": scored 0
        queue.put(False)


def _context():
    # A forkserver child is forked from a small single-threaded server that imported sympy once,
    # which is safe inside a threaded Ray actor (plain fork is not) and starts in milliseconds.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sympy", "flowpo.scorers"])
    return context


def symbolic_equal(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """sympy equality in a child process, killed after ``timeout_s`` (simplify can run forever)."""
    left, right = latex_to_sympy_text(a), latex_to_sympy_text(b)
    if left is None or right is None:
        return False
    context = _context()
    queue = context.Queue()
    process = context.Process(target=_symbolic_equal_worker, args=(left, right, queue), daemon=True)
    process.start()
    process.join(timeout_s)
    if process.is_alive():
        process.kill()
        process.join()
        return False
    try:
        return bool(queue.get(timeout=1.0))
    except Exception:  # noqa: BLE001 - the child died without an answer
        return False


# ---------------------------------------------------------------------------------------------
# DROP, HotpotQA


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(predicted: str, gold: str) -> float:
    """SQuAD v2.0's ``compute_f1`` (an empty side scores 1 only against another empty side)."""
    pred_tokens, gold_tokens = normalize_answer(predicted).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(predicted: str, golds: list[str]) -> float:
    """The best token F1 over the gold alternatives."""
    return max((token_f1(predicted, gold) for gold in golds), default=0.0)


# ---------------------------------------------------------------------------------------------
# LLM judge

VERDICT_RE = re.compile(r"verdict\W{0,6}(not correct|incorrect|correct|wrong|right|yes|no)\b", re.IGNORECASE)
JUDGEMENT_RE = re.compile(r"\b(not correct|incorrect|wrong|correct|right)\b", re.IGNORECASE)
NEGATIVE = {"not correct", "incorrect", "wrong", "no"}


def parse_verdict(text: str) -> float | None:
    """1.0 or 0.0 from a judge's reply: the last "Verdict: ..." label, else its judgement words
    if they all agree; None when the reply says neither or both (an unreadable verdict is no score)."""
    labelled = VERDICT_RE.findall(text)
    words = [labelled[-1]] if labelled else JUDGEMENT_RE.findall(text)
    verdicts = {word.lower() not in NEGATIVE for word in words}
    return float(verdicts.pop()) if len(verdicts) == 1 else None
