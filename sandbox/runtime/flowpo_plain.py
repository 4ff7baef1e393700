"""Plain data across the hidden-test boundary: the only form in which a candidate's values reach
the trusted test harness. Standard library only (it runs inside the sandbox image's Python).

A value is plain when it is built, all the way down, from exactly these types (never a subclass,
whose comparison, hashing, truth value or string form could lie): None, bool, int, float, complex,
str, bytes, list, tuple, dict, set, frozenset, range, the ``collections`` containers Counter,
OrderedDict, defaultdict (with a builtin factory) and deque, the builtin types themselves (``int``,
``str``, … as values: MBPP passes them), and a finished iterator (what a function that returns a
generator, ``map`` or ``zip`` produced, taken to a list and handed to the test as an iterator
again, so that ``list(candidate(x))`` works and ``candidate(x) == [...]`` stays False).

Encoding is JSON text with one-key tagged objects for the types JSON lacks. The encoder runs in the
candidate's process, so it is only a courtesy there: whatever bytes arrive, ``decode`` builds nothing
but exact builtin values, and anything else raises ``NotPlainData``. Safety rests on ``decode``.
"""
import base64
import collections
import json
import sys

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000  # an iterator is taken to a list; an endless one must stop somewhere
SCALARS = (type(None), bool, int, float, complex, str, bytes)
TAGS = {"t": tuple, "s": set, "f": frozenset, "d": dict, "y": bytes, "c": complex, "r": range, "it": iter,
        "C": collections.Counter, "O": collections.OrderedDict, "D": collections.defaultdict,
        "q": collections.deque, "T": type}
MAPPINGS = {dict: "d", collections.Counter: "C", collections.OrderedDict: "O"}
BUILTIN_TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset,
                                         type(None), object)}
BUILTIN_ITERATORS = {type(iter([])), type(iter(())), type(iter("")), type(iter(range(0))), type(iter({})),
                     type(iter(set())), type(reversed([])), type(x for x in ()), map, filter, zip,
                     enumerate, reversed, type({}.keys()), type({}.values()), type({}.items())}

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)  # big integers are plain data too; the time limit bounds them


class NotPlainData(TypeError):
    """A value that is not plain data, or an encoding that does not describe one."""


# ---------------------------------------------------------------------------------------------
# Encoding (both sides: the harness encodes arguments, the candidate encodes results)


def encode(value):
    """JSON text of a plain value; ``NotPlainData`` names the first type that is not."""
    return json.dumps(_tagged(value, 0), allow_nan=True, separators=(",", ":"))


def _items(mapping, depth):
    return [[_tagged(k, depth + 1), _tagged(v, depth + 1)] for k, v in mapping.items()]


def _tagged(value, depth):
    if depth > MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if kind in (type(None), bool, int, float, str):
        return value
    if kind is bytes:
        return {"y": base64.b64encode(value).decode()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    if kind is list:
        return [_tagged(v, depth + 1) for v in value]
    if kind in (tuple, set, frozenset):
        tag = {tuple: "t", set: "s", frozenset: "f"}[kind]
        return {tag: [_tagged(v, depth + 1) for v in value]}
    if kind in MAPPINGS:
        return {MAPPINGS[kind]: _items(value, depth)}
    if kind is collections.defaultdict:
        factory = value.default_factory
        if factory is not None and BUILTIN_TYPES.get(getattr(factory, "__name__", None)) is not factory:
            raise NotPlainData("a defaultdict whose factory is not a builtin type is not plain data")
        return {"D": [factory.__name__ if factory else None, _items(value, depth)]}
    if kind is collections.deque:
        return {"q": [_tagged(v, depth + 1) for v in value]}
    if kind is type and BUILTIN_TYPES.get(value.__name__) is value:
        return {"T": value.__name__}
    if kind is range:
        return {"r": [value.start, value.stop, value.step]}
    if kind in BUILTIN_ITERATORS:
        items = []
        for item in value:
            if len(items) >= MAX_ITEMS:
                raise NotPlainData(f"an iterator of more than {MAX_ITEMS} items")
            items.append(_tagged(item, depth + 1))
        return {"it": items}
    raise NotPlainData(f"{kind.__module__}.{kind.__qualname__} is not plain data")


# ---------------------------------------------------------------------------------------------
# Decoding (the trusted side)


def decode(text):
    """The plain value that ``text`` describes; ``NotPlainData`` for anything else."""
    if not isinstance(text, str):
        raise NotPlainData(f"an encoded value must be a string, got {type(text).__name__}")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NotPlainData(f"not a valid encoding ({type(exc).__name__})") from None
    return _untag(raw, 0)


def _untag(raw, depth):
    if depth > MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    kind = type(raw)
    if kind in (type(None), bool, int, float, str):
        return raw
    if kind is list:
        return [_untag(v, depth + 1) for v in raw]
    if kind is not dict or len(raw) != 1:
        raise NotPlainData(f"not a valid encoding: {str(raw)[:80]}")
    (tag, payload), = raw.items()
    if tag not in TAGS:
        raise NotPlainData(f"unknown tag {tag[:20]!r}")
    try:
        return _build(tag, payload, depth)
    except NotPlainData:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # unhashable set items, bad base64, ...
        raise NotPlainData(f"not a valid {tag!r} encoding ({type(exc).__name__}: {str(exc)[:80]})") from None


def _build(tag, payload, depth):
    if tag == "y":
        if type(payload) is not str:
            raise NotPlainData("bytes must be base64 text")
        return base64.b64decode(payload.encode("ascii"), validate=True)
    if tag == "T":
        if type(payload) is not str or payload not in BUILTIN_TYPES:
            raise NotPlainData(f"not a builtin type: {str(payload)[:40]!r}")
        return BUILTIN_TYPES[payload]
    if type(payload) is not list:
        raise NotPlainData(f"tag {tag!r} needs a list")
    if tag == "c":
        real, imag = payload
        if not all(type(x) in (int, float) for x in payload):
            raise NotPlainData("complex parts must be numbers")
        return complex(real, imag)
    if tag == "r":
        if len(payload) != 3 or not all(type(x) is int for x in payload):
            raise NotPlainData("range needs three integers")
        return range(*payload)
    if tag in ("d", "C", "O"):
        return TAGS[tag](dict(_pair(item, depth) for item in payload))  # Counter(pairs) would count them
    if tag == "D":
        factory, items = payload
        if factory is not None and (type(factory) is not str or factory not in BUILTIN_TYPES):
            raise NotPlainData("a defaultdict's factory must be a builtin type")
        if type(items) is not list:
            raise NotPlainData("a defaultdict needs a list of pairs")
        return collections.defaultdict(BUILTIN_TYPES.get(factory), [_pair(item, depth) for item in items])
    items = [_untag(v, depth + 1) for v in payload]
    if tag == "it":
        return iter(items)
    return TAGS[tag](items)  # tuple, set, frozenset, deque


def _pair(item, depth):
    if type(item) is not list or len(item) != 2:
        raise NotPlainData("a dict entry must be a [key, value] pair")
    return _untag(item[0], depth + 1), _untag(item[1], depth + 1)
