"""ocipy.jsonfast must read and write exactly what the standard json module does."""

import json
import random

import pytest

from ocipy import jsonfast
from shared_paths import SHARED


def _documents():
    for base in (SHARED / "corpus", SHARED / "reference"):
        for path in sorted(base.rglob("*.json")):
            try:
                yield path.name, path.read_text()
            except UnicodeDecodeError:
                continue


def _random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**70), 2**70)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e300, -2.5, 1 / 3, float("inf"), float("-inf")])
    if kind in (3, 4, 5):
        return "".join(rng.choice(['a', '"', "\\", "\n", "\x00", "\x1f", "é", "\u2028", "😀", "/", " "]) for _ in range(rng.randrange(6)))
    if kind in (6, 7):
        return {str(_random_value(rng, 9)): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_reads_and_writes_every_document_of_the_corpus_as_json_does():
    seen = 0
    for name, text in _documents():
        try:
            expected = json.loads(text)
        except ValueError:
            continue
        assert jsonfast.loads(text) == expected, name
        assert jsonfast.loads(text.encode()) == expected, name
        for indent in (None, 2, 4):
            for sort_keys in (False, True):
                assert jsonfast.dumps(expected, indent=indent, sort_keys=sort_keys) == json.dumps(expected, indent=indent, sort_keys=sort_keys), name
        assert jsonfast.dumps(expected, separators=(",", ":")) == json.dumps(expected, separators=(",", ":")), name
        seen += 1
    assert seen > 20


def test_random_values_round_trip_byte_for_byte():
    rng = random.Random(7)
    for _ in range(3000):
        value = _random_value(rng)
        for indent in (None, 2):
            text = jsonfast.dumps(value, indent=indent)
            assert text == json.dumps(value, indent=indent)
            assert jsonfast.dumps(jsonfast.loads(text)) == json.dumps(json.loads(text))


def test_keys_of_other_types_are_written_as_json_writes_them():
    value = {1: "a", 2.5: "b", False: "c", None: "d"}
    assert jsonfast.dumps(value, indent=2) == json.dumps(value, indent=2)
    assert jsonfast.dumps(value) == json.dumps(value)
    with pytest.raises(TypeError):
        jsonfast.dumps({(1, 2): 3}, indent=2)
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonfast.dumps({"a": object()})


@pytest.mark.parametrize("text", ["", "  ", "{", "[1,]", '{"a":1} x', "nul", '{"a" 1}', '"\x01"', "[1 2]", "\ufeff{}"])
def test_errors_are_jsons_own(text):
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as ours:
        jsonfast.loads(text)
    assert (ours.value.msg, ours.value.pos, ours.value.lineno, ours.value.colno) == (
        theirs.value.msg, theirs.value.pos, theirs.value.lineno, theirs.value.colno)
