r"""MATH answers (pure functions), after hendrycks/math is_equiv: the last \boxed{}, then strip_string,
then string equality. Where FlowPO differs, the list says how and why (tests/flowpo/test_scorers_official.py
has a test per difference):
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
"""
from __future__ import annotations

import multiprocessing
import re
from fractions import Fraction

# ---------------------------------------------------------------------------------------------
# The prediction and its normal form


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
