r"""Rule-based scorers for the math and question-answering benchmarks (pure functions).

Each scorer follows its benchmark's official evaluation script; where FlowPO differs, the list below
says how and why, and tests/flowpo/test_scorers_official.py has a test per difference. HumanEval and MBPP
are not scored here: the evaluator runs their hidden tests in the sandbox.

GSM8K (grade-school-math dataset.py: the number after the first "#### ", compared as a string;
FlowPO scores as ScoreFlow/AFlow do):
  G1. The prediction is the last number in the answer, not the one after "#### " (workflows return
      free text with no "####").
  G2. Numbers compare as values within 1e-6, not as strings: "72.00" = "72" (a correct answer
      written with decimals is right).
  G3. A Unicode minus ("−8") is a minus sign (models write it; the official regex misses it).
MATH (hendrycks/math is_equiv: the last \boxed{}, then strip_string, then string equality):
  M1. Without a \boxed{}, the answer's last line minus an "answer is" lead-in, math delimiters
      ($...$, \(...\), \[...\]) and closing punctuation is the prediction (workflows often return
      the final answer alone, e.g. from AnswerGenerate or Format); officially that scores 0.
  M2. Numbers compare as exact rationals: "\frac{2}{4}" = "\frac12" = "1/2" = "0.5", "-0" = "0"
      (officially only "0.5" and "a/b" are rewritten to \frac). Distinct integers and fractions
      stay distinct, however close.
  M3. A decimal also equals a fraction it rounds, to its last place and within 1e-6 (relative
      above 1): "0.3333333" = "\frac13" (the value is right, only written out).
  M4. Anything else is compared symbolically with sympy, exactly (decimals read as rationals),
      under a time limit: "x^2+2x+1" = "(x+1)^2"; intervals and tuples item by item.
  M5. Units go after any number: "5\text{inches}", "12\mbox{ inches}", "12 inches" (officially only
      a unit after "\text{ " with a space); "50%" loses its "%" like "50\%" (officially it keeps it).
  M6. A word in \text{} is the word: "\text{Evelyn}" = "Evelyn" (the same answer).
  M7. Thousands separators go: "1,000" = "1{,}000" = "1000" (the same number).
  M8. An empty answer is never right (officially "" equals "").
DROP (allenai drop_eval.py get_metrics' F1, max over the gold answers):
  D1. A token's surrounding punctuation goes before the number test: "2.5." ending a sentence,
      "$2.5" and "2.5%" are the number 2.5; officially they lose every punctuation mark and become
      25, a different number. Thousands separators in a decimal go too: "1,234.5" = 1234.5.
  D2. Golds arrive as one string per alternative (flowpo.dataset_rows joins the spans of a multi-span
      answer with spaces), so each is one bag; officially each span is a bag, matched one to one.
      drop_f1 does that when given a tuple of spans; score_text gets strings.
  D3. The span alignment tries every matching up to 8! of them (always, for one predicted string),
      and is greedy beyond, so it may score lower than the optimum (scipy is not a dependency).
HotpotQA: hotpot_evaluate_v1.py's normalize_answer and f1_score (SQuAD-style token F1, 0 when
either side is yes/no/noanswer and they differ, 0 when either side normalizes to nothing), as is.
Also the parser of the optional LLM judge's verdict.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing
import re
import string
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def score_gsm8k(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    return gsm8k_score(answer, golds[0]), {"scorer": "gsm8k", "extracted": last_number(answer)}


def score_math(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    predicted = math_prediction(answer)
    ok = predicted is not None and math_equal(predicted, golds[0], timeout_s=timeout_s)
    return float(ok), {"scorer": "math", "extracted": predicted}


def score_drop(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    return drop_f1(answer, golds), {"scorer": "drop_f1"}


def score_hotpotqa(answer: str, golds: tuple[str, ...], timeout_s: float) -> tuple[float, dict]:
    return f1_score(answer, list(golds)), {"scorer": "f1"}


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


ANSWER_PREFIX_RE = re.compile(r"^.*?\b(?:final answer|answer)\s*(?:is\s*:?|:)\s*", re.IGNORECASE)
# Closing punctuation of a sentence ("!" is not one: 5! is a factorial).
CLOSING_PUNCTUATION = ".,;:"


def strip_math_delimiters(text: str) -> str:
    r"""``text`` without the math delimiters around it (``$...$``, ``$$...$$``, ``\(...\)``,
    ``\[...\]``) and the sentence punctuation after them, nested in any order:
    ``$\text{Tuesday}$.`` → ``\text{Tuesday}``."""
    s = text.strip()
    while True:
        before = s
        s = s.rstrip(CLOSING_PUNCTUATION).strip()
        for opening, closing in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            inner = s[len(opening):-len(closing)]
            # "$1$ or $2$" is not one formula: an unescaped delimiter inside means leave it
            if (len(s) > len(opening) + len(closing) and s.startswith(opening) and s.endswith(closing)
                    and not re.search(r"(?<!\\)" + re.escape(closing), inner)):
                s = inner.strip()
                break
        if s == before:
            return s


def math_prediction(answer: str) -> str | None:
    """The last ``\\boxed{}``; without one, the answer's last line (a workflow usually returns the
    final answer alone, e.g. from AnswerGenerate or Format), minus an "answer is" lead-in."""
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    return strip_math_delimiters(ANSWER_PREFIX_RE.sub("", lines[-1])) or None


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
    s = strip_math_delimiters(answer.replace("\n", " ").replace("−", "-")).replace("{,}", ",")
    # Currency and inner math delimiters, spacing commands first: "$5$ inches" and "5\,\text{cm}"
    # must end in the number for the unit to be seen.
    for old, new in (("\\$", ""), ("$", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", " ")):
        s = s.replace(old, new)
    s = UNIT_RE.sub("", s.strip())
    s = re.sub(r"^\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}$", r"\1", s)  # an answer that is a word: keep it
    for old, new in (("\\left", ""), ("\\right", ""), ("dfrac", "frac"), ("tfrac", "frac"), ("^\\circ", ""),
                     ("^{\\circ}", ""), ("\\%", ""), ("%", "")):
        s = s.replace(old, new)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")  # thousands separators
    if re.fullmatch(r"[a-zA-Z]=.+", s):
        s = s.split("=", 1)[1]  # x=5 → 5
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)  # 5.00 → 5
    return s.rstrip(".")


DECIMAL_RE = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")


def _rational(s: str) -> Fraction | None:
    r"""The exact value of a normalized integer, decimal or fraction (``-\frac{3}{4}``, ``3/4``,
    ``0.75``), else None. Exact, so that 1000001 ≠ 1000000 however close."""
    sign = -1 if s.startswith("-") else 1
    match = re.fullmatch(r"\\frac\{([^{}]+)\}\{([^{}]+)\}|([^/]+)/([^/]+)", s.removeprefix("-"))
    parts = [part for part in match.groups() if part is not None] if match else [s.removeprefix("-")]
    if not all(DECIMAL_RE.fullmatch(part) for part in parts):
        return None
    try:
        values = [Fraction(part) for part in parts]
    except ValueError:  # past Python's 4300-digit limit on int(str): not a number we can read
        return None
    if len(values) == 2 and values[1] == 0:
        return None
    return sign * (values[0] / values[1] if len(values) == 2 else values[0])


def _rounds_to(decimal: str, value: Fraction) -> bool:
    """Whether the decimal ``decimal`` is ``value`` rounded to its last place, with an error within
    1e-6 (relative above 1): "0.3333333" for 1/3, but neither "0.33" (too coarse) nor "1000000.5"
    for 1000000 (wrong in its last place)."""
    match = re.fullmatch(r"-?\d*\.(\d+)", decimal)
    if match is None:
        return False
    error = abs(Fraction(decimal) - value)
    return error <= Fraction(1, 2 * 10 ** len(match.group(1))) and error <= Fraction(1, 10**6) * max(1, abs(value))


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
    x, y = _rational(a), _rational(b)
    if x is not None and y is not None:  # exact, a tolerance only for a decimal standing for a fraction
        return x == y or _rounds_to(a, y) or _rounds_to(b, x)
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
    # rational=True reads 0.1 as 1/10: the comparison stays exact (no float rounding, no evalf).
    return sympy.sympify(text, rational=True, locals={c: constants.get(c) or sympy.Symbol(c) for c in letters})


def _symbolic_equal_worker(a: str, b: str, queue) -> None:
    import resource

    import sympy

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a huge power fails, not the host
    try:
        # Rationals compare exactly: 4036083/4036081 - 4036082/4036081 is the Rational 1/4036081, not 0.
        queue.put(bool(sympy.simplify(_parse(a) - _parse(b)) == 0))
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
# DROP: drop_eval.py's F1 (allenai/allennlp-reading-comprehension), numbers compared as numbers.

ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _is_number(text: str) -> bool:
    try:  # as drop_eval.py: whatever Python's float reads
        float(text)
        return True
    except ValueError:
        return False


def _drop_token(token: str) -> str:
    """drop_eval.py's per-token normalization: lower case, punctuation removed unless the token is a
    number, numbers as floats ("25" → "25.0", "2.50" → "2.5"), articles removed."""
    token = token.lower()
    # FlowPO (D1): surrounding punctuation is not part of a number ("2.5." ending a sentence, "$2.5",
    # "2.5%", "(2.5)"); removing it mark by mark, as drop_eval.py does, would make them 25.
    core = token.lstrip(string.punctuation.replace(".", "")).rstrip(string.punctuation)
    core = core.replace(",", "") if THOUSANDS_RE.fullmatch(core) else core
    if not _is_number(token):
        token = core if _is_number(core) else "".join(ch for ch in token if ch not in string.punctuation)
    if _is_number(token):
        token = str(float(token))
    return " ".join(ARTICLES_RE.sub(" ", token).split())


def drop_normalize(text: str) -> str:
    """drop_eval.py's ``_normalize_answer``: tokens split at spaces and hyphens, each normalized."""
    return " ".join(part for part in map(_drop_token, re.split(" |-", text)) if part.strip())


def _drop_bags(answer: str | Sequence[str]) -> list[set[str]]:
    """One set of tokens per span (DROP's bags are sets: a repeated token counts once)."""
    spans = [answer] if isinstance(answer, str) else list(answer)
    return [set(drop_normalize(span).split()) for span in spans]


def _bag_f1(predicted: set[str], gold: set[str]) -> float:
    intersection = len(predicted & gold)
    precision = intersection / len(predicted) if predicted else 1.0
    recall = intersection / len(gold) if gold else 1.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _numbers_match(gold: set[str], predicted: set[str]) -> bool:
    """If the gold span has numbers, the predicted span must share one (else its F1 is 0)."""
    gold_numbers = {word for word in gold if _is_number(word)}
    return not gold_numbers or bool(gold_numbers & {word for word in predicted if _is_number(word)})


def _align_bags(predicted: list[set[str]], gold: list[set[str]]) -> float:
    """Mean F1 over max(#gold, #predicted) spans of the best one-to-one matching of predicted to gold
    spans. drop_eval.py solves it with scipy's linear_sum_assignment; answers have a few spans (one
    predicted string: as many matchings as gold spans), so trying every matching is exact and cheap.
    Past 8! matchings (D3), a greedy one: the best remaining pair first."""
    if not predicted or not gold:
        return 0.0
    scores = [[_bag_f1(p, g) if _numbers_match(g, p) else 0.0 for p in predicted] for g in gold]
    rows, columns = len(gold), len(predicted)
    if math.perm(max(rows, columns), min(rows, columns)) <= math.factorial(8):
        if rows <= columns:
            best = max(sum(scores[r][c] for r, c in enumerate(chosen))
                       for chosen in itertools.permutations(range(columns), rows))
        else:
            best = max(sum(scores[r][c] for c, r in enumerate(chosen))
                       for chosen in itertools.permutations(range(rows), columns))
    else:
        pairs = sorted(((scores[r][c], r, c) for r in range(rows) for c in range(columns)), reverse=True)
        used_rows, used_columns, best = set(), set(), 0.0
        for score, r, c in pairs:
            if r not in used_rows and c not in used_columns:
                used_rows.add(r)
                used_columns.add(c)
                best += score
    return round(best / max(rows, columns), 2)  # drop_eval.py reports F1 to two decimals


def drop_f1(predicted: str | Sequence[str], golds: Sequence[str | Sequence[str]]) -> float:
    """DROP's F1 of the predicted answer, the best over the gold answers. An answer is a string
    or a tuple of spans (a multi-span answer); blank gold answers are skipped, as drop_eval.py does."""
    predicted_bags = _drop_bags(predicted)
    scores = [_align_bags(predicted_bags, _drop_bags(gold)) for gold in golds
              if (gold if isinstance(gold, str) else "".join(gold)).strip()]
    return max(scores, default=0.0)


# ---------------------------------------------------------------------------------------------
# HotpotQA: hotpot_evaluate_v1.py's answer F1, kept as is (SQuAD's normalization and token F1, with
# its yes/no/noanswer rule). DROP does not use it: removing "." from "2.5" would make it 25.

YES_NO = {"yes", "no", "noanswer"}


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(predicted: str, gold: str) -> float:
    """hotpot_evaluate_v1.py's ``f1_score``: token F1, but 0 when either side is yes/no/noanswer and
    they differ ("yes, it is" is not "yes"), and 0 when no token is shared (an empty side included)."""
    pred_norm, gold_norm = normalize_answer(predicted), normalize_answer(gold)
    if (pred_norm in YES_NO or gold_norm in YES_NO) and pred_norm != gold_norm:
        return 0.0
    pred_tokens, gold_tokens = pred_norm.split(), gold_norm.split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(predicted: str, golds: list[str]) -> float:
    """The best token F1 over the gold alternatives (HotpotQA has one)."""
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
