"""Plain data across the hidden-test boundary: the only form in which a candidate's values reach
the trusted test harness. Standard library only (it runs inside the sandbox image's Python).

A value is plain when it is built, all the way down, from exactly these types (never a subclass,
whose comparison, hashing, truth value or string form could lie): None, bool, int, float, complex,
str, bytes, list, tuple, dict, set, frozenset, range, and a finished iterator (what a function that
returns a generator, ``map`` or ``zip`` produced, taken to a list and handed to the test as an
iterator again, so that ``list(candidate(x))`` works and ``candidate(x) == [...]`` stays False).

Encoding is JSON text with one-key tagged objects for the types JSON lacks. The encoder runs in the
candidate's process, so it is only a courtesy there: whatever bytes arrive, ``decode`` builds nothing
but exact builtin values, and anything else raises ``NotPlainData``. Safety rests on ``decode``.
"""
import base64
import json
import sys

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000  # an iterator is taken to a list; an endless one must stop somewhere
SCALARS = (type(None), bool, int, float, complex, str, bytes)
TAGS = {"t": tuple, "s": set, "f": frozenset, "d": dict, "y": bytes, "c": complex, "r": range, "it": iter}
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
    if kind is dict:
        return {"d": [[_tagged(k, depth + 1), _tagged(v, depth + 1)] for k, v in value.items()]}
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
    if tag == "d":
        pairs = [_pair(item, depth) for item in payload]
        return dict(pairs)
    items = [_untag(v, depth + 1) for v in payload]
    if tag == "it":
        return iter(items)
    return TAGS[tag](items)


def _pair(item, depth):
    if type(item) is not list or len(item) != 2:
        raise NotPlainData("a dict entry must be a [key, value] pair")
    return _untag(item[0], depth + 1), _untag(item[1], depth + 1)
