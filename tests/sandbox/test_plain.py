"""The plain-data codec of the hidden-test boundary (sandbox/runtime/flowpo_plain.py): what may
cross from the candidate to the test, exactly, and that nothing else is ever built from its bytes."""
from __future__ import annotations

import collections
import json
import math

import pytest

from sandbox.runtime.flowpo_plain import NotPlainData, decode, encode

PLAIN = [None, True, False, 0, -7, 10 ** 5000, 1.5, -0.0, math.inf, "", "héllo\udc80", b"\x00\xff", 3 - 4j,
         [1, [2, [3]]], (1, (2,)), (), {"a": 1, 2: [3], (4, 5): None}, {1, 2}, frozenset({(1, 2)}), set(),
         range(1, 10, 3), collections.Counter("abca"), collections.OrderedDict([(2, "b"), (1, "a")]),
         collections.defaultdict(list, {1: [2]}), collections.deque([1, 2]), int, str, type(None)]


@pytest.mark.parametrize("value", PLAIN, ids=[repr(v)[:30] for v in PLAIN])
def test_plain_values_cross_with_their_exact_type(value):
    back = decode(encode(value))
    assert type(back) is type(value) and back == value
    if isinstance(value, dict):
        assert list(back) == list(value)  # order kept


def test_nan_crosses_as_nan():
    assert math.isnan(decode(encode(float("nan"))))


def test_a_tuple_is_not_a_list_and_an_iterator_is_not_its_items():
    assert decode(encode((1, 2))) != [1, 2]  # as in Python: the test sees the tuple the function returned
    produced = decode(encode(x * 2 for x in range(3)))
    assert produced != [0, 2, 4] and list(produced) == [0, 2, 4]
    assert (list(decode(encode(map(str, [1, 2])))) == ["1", "2"]
            and list(decode(encode(zip("ab", [1, 2])))) == [("a", 1), ("b", 2)])


class AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class LyingInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class LyingStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class LyingList(list):
    def __eq__(self, other):
        return True


class LyingDict(dict):
    def __eq__(self, other):
        return True


def custom_factory():
    return 0


@pytest.mark.parametrize("value", [AlwaysEqual(), LyingInt(3), LyingStr("x"), LyingList([1]), LyingDict(),
                                   [1, AlwaysEqual()], {"k": LyingInt(1)}, {LyingStr("k"): 1}, (LyingInt(2),),
                                   collections.defaultdict(custom_factory), print, object(), type(AlwaysEqual())],
                         ids=lambda v: type(v).__name__)
def test_anything_else_is_refused_by_name(value):
    with pytest.raises(NotPlainData, match="not plain data"):
        encode(value)


@pytest.mark.parametrize("text", [
    "", "not json", '{"x": 1}', '{"t": 1}', '{"t": [1], "s": [2]}', '{"s": [[1]]}', '{"d": [[[1], 2]]}',
    '{"d": [[1]]}', '{"y": "%%%"}', '{"y": 5}', '{"c": ["1", 0]}', '{"r": [1, 2]}', '{"r": [1.5, 2, 1]}',
    '{"T": "eval"}', '{"T": "__import__"}', '{"D": ["exec", []]}', '{"D": [null, {}]}', "[" * 5000 + "]" * 5000,
    json.dumps({"__class__": "os.system"})], ids=lambda t: t[:24])
def test_the_trusted_side_builds_nothing_from_a_bad_encoding(text):
    with pytest.raises(NotPlainData):
        decode(text)


def test_only_strings_are_decoded():
    with pytest.raises(NotPlainData, match="must be a string"):
        decode(b"[1]")
