"""JSON for every command, without `import json`.

`import json` costs about 6 ms on this interpreter (json.decoder compiles regular
expressions at import, which pulls in `re`, `enum`, `functools` and `collections`),
as much as the whole interpreter start that `state` is measured against. The C
accelerator `_json`, which `json` itself uses, does the real work: its scanner
parses and its encoder serialises. This module drives it directly and adds the
two things `json` adds in Python: whitespace around the document, and indentation.

Output is byte-for-byte what `json.dumps` gives with the same arguments
(ensure_ascii, no NaN checks beyond json's defaults); tests compare the two.
Decoding errors are json's own `JSONDecodeError` (a ValueError), imported only
when there is an error to report.
"""

import _json

__all__ = ["loads", "dumps", "load", "dump"]

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _DecoderSettings:
    """The attributes `_json.make_scanner` reads from a json.JSONDecoder (its defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict = {}


_scan = _json.make_scanner(_DecoderSettings)


def _decode_error(msg: str, doc: str, pos: int) -> ValueError:
    from json import JSONDecodeError  # only on the error path

    return JSONDecodeError(msg, doc, pos)


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WHITESPACE:
        i += 1
    return i


def loads(text) -> object:
    """json.loads for str or UTF-8 bytes."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if text.startswith("\ufeff"):
        raise _decode_error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    start = _skip_space(text, 0)
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise _decode_error("Expecting value", text, stop.value) from None
    end = _skip_space(text, end)
    if end != len(text):
        raise _decode_error("Extra data", text, end)
    return value


def load(f) -> object:
    return loads(f.read())


def _default(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float_repr(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _encoder(item_separator: str, key_separator: str, sort_keys: bool):
    return _json.make_encoder(
        {}, _default, _json.encode_basestring_ascii, None, key_separator, item_separator, sort_keys, False, True
    )


_COMPACT = _encoder(",", ":", False)


def dumps(value, *, indent: int | None = None, separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """json.dumps(value, indent=..., separators=..., sort_keys=...) with ensure_ascii."""
    if indent is None:
        item_sep, key_sep = separators or (", ", ": ")
        if (item_sep, key_sep, sort_keys) == (",", ":", False):
            encode = _COMPACT
        else:
            encode = _encoder(item_sep, key_sep, sort_keys)
        return "".join(encode(value, 0))
    item_sep, key_sep = separators or (",", ": ")
    out: list[str] = []
    _indented(value, " " * indent, "\n", item_sep, key_sep, sort_keys, out)
    return "".join(out)


def _indented(value, step: str, newline: str, item_sep: str, key_sep: str, sort_keys: bool, out: list) -> None:
    """json's pure-Python indenting encoder, for the few types the spec's documents hold."""
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float_repr(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + step
        out.append("{")
        items = sorted(value.items()) if sort_keys else value.items()
        first = True
        for key, item in items:
            if isinstance(key, str):
                pass
            elif isinstance(key, float):
                key = _float_repr(key)
            elif key is True or key is False or key is None:
                key = {True: "true", False: "false", None: "null"}[key]
            elif isinstance(key, int):
                key = int.__repr__(key)
            else:
                raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
            out.append(inner if first else item_sep + inner)
            first = False
            out.append(_json.encode_basestring_ascii(key) + key_sep)
            _indented(item, step, inner, item_sep, key_sep, sort_keys, out)
        out.append(newline + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = newline + step
        out.append("[")
        for i, item in enumerate(value):
            out.append(inner if i == 0 else item_sep + inner)
            _indented(item, step, inner, item_sep, key_sep, sort_keys, out)
        out.append(newline + "]")
    else:
        _default(value)


def dump(value, f, **kwargs) -> None:
    f.write(dumps(value, **kwargs))
