"""Rule-based scorers for the math and question-answering benchmarks (pure functions).

GSM8K: the last number, commas removed, equal within 1e-6. MATH: the last ``\\boxed{}`` answer,
equal as normalized strings, as numbers, or symbolically (sympy, under a time limit). DROP and
HotpotQA: SQuAD-style token F1 after normalization, the maximum over the gold alternatives.
"""
from __future__ import annotations

import multiprocessing
import re
import string
from collections import Counter

NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


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
    """GSM8K's gold answer is the text after the final ``####``."""
    return solution.split("####")[-1].strip()


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


def _fix_fracs(s: str) -> str:
    # \frac12 → \frac{1}{2}, \frac1{2} → \frac{1}{2}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    return re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)


def normalize_math(answer: str) -> str:
    s = answer.strip().replace("−", "-")
    s = re.sub(r"\\text\{\s*[a-zA-Z ]*\}", "", s)  # units: 5 \text{ cm}
    s = re.sub(r"\\mbox\{[^{}]*\}", "", s)
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


def _latex_to_sympy_text(s: str) -> str:
    s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
    s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    s = s.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*").replace("^", "**")
    s = s.replace("{", "(").replace("}", ")")
    return re.sub(r"(\d)([a-zA-Z(])", r"\1*\2", s)  # 2x → 2*x


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


def _symbolic_equal_worker(a: str, b: str, queue) -> None:
    import sympy

    try:
        difference = sympy.simplify(sympy.sympify(_latex_to_sympy_text(a)) - sympy.sympify(_latex_to_sympy_text(b)))
        queue.put(difference == 0)
    except Exception:  # noqa: BLE001 - unparsable means "not shown equal", which the caller scores 0
        queue.put(False)


def symbolic_equal(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """sympy equality in a child process, killed after ``timeout_s`` (simplify can run forever)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_symbolic_equal_worker, args=(a, b, queue), daemon=True)
    process.start()
    process.join(timeout_s)
    if process.is_alive():
        process.kill()
        process.join()
        return False
    return bool(queue.get()) if not queue.empty() else False


def math_equal(predicted: str, gold: str, *, timeout_s: float = 5.0) -> bool:
    a, b = normalize_math(predicted), normalize_math(gold)
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return abs(x - y) <= 1e-6 * max(1.0, abs(y))
    if not a or not b:
        return False
    if "," in a + b and any(c in a + b for c in "[]()"):
        return False  # intervals and tuples compare as normalized strings only
    return symbolic_equal(a, b, timeout_s)


def math_score(answer: str, gold_solution: str, *, timeout_s: float = 5.0) -> float:
    predicted, gold = last_boxed(answer), last_boxed(gold_solution)
    if gold is None:
        gold = gold_solution
    if predicted is None:
        return 0.0
    return 1.0 if math_equal(predicted, gold, timeout_s=timeout_s) else 0.0


# ---------------------------------------------------------------------------------------------
# DROP, HotpotQA


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(predicted: str, gold: str) -> float:
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
