"""The jsonschema-based schema check ocipy used before ocipy.schema: kept as the tests' oracle.

This is the implementation `ocipy.bundle.schema_problems` had (jsonschema's Draft 2020-12
validator + `_explain`), moved here unchanged in behaviour so that tests/unit/test_schema.py
can assert that ocipy.schema gives exactly the same problem lines. Only the tests import it;
jsonschema is a test dependency now.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def _ptr(parts) -> str:
    """RFC 6901 JSON pointer of a path; the document itself is shown as `/`."""
    text = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return text or "/"


def _show(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=None)
def _validator(target: str, directory: Path = SCHEMA_DIR):
    """A Draft 2020-12 validator for `file.json` or `file.json#/pointer`, refs resolved in `directory`."""
    resources = []
    for entry in directory.iterdir():
        if entry.name.endswith(".json"):
            contents = json.loads(entry.read_text(encoding="utf-8"))
            resources.append((entry.name, Resource.from_contents(contents, default_specification=DRAFT202012)))
    registry = Registry().with_resources(resources)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": target}
    return Draft202012Validator(schema, registry=registry)


def schema_problems(instance: Any, schema: str, source: str, directory: Path = SCHEMA_DIR) -> list[str]:
    """Problem lines (`<source>: <pointer>: <rule>`) of `instance` against one of the schemas."""
    validator = _validator(schema, directory)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [(isinstance(p, str), p) for p in e.absolute_path])
    explained = [item for error in errors for item in _explain(error)]
    # A value of the wrong type says enough: drop the other rules about the same value.
    mistyped = {pointer for pointer, _, kind in explained if kind == "type"}
    lines: list[str] = []
    for pointer, rule, kind in explained:
        line = f"{source}: {pointer}: {rule}"
        if (kind == "type" or pointer not in mistyped) and line not in lines:
            lines.append(line)
    return lines


_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a number", "object": "an object",
    "array": "an array", "boolean": "a boolean", "null": "null",
}


def _explain(error) -> list[tuple[str, str, str]]:
    """Turn one jsonschema error into (pointer, short rule, failing keyword) triples."""
    path = list(error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance

    if "propertyNames" in error.absolute_schema_path:
        rule = _explain_simple(kind, expected, value, error)
        return [(_ptr(path), f"key {_show(value)}: {rule}", kind)]
    if kind == "required":
        missing = [name for name in expected if isinstance(value, dict) and name not in value]
        return [(_ptr(path + [name]), "is required", kind) for name in missing] or [(_ptr(path), error.message, kind)]
    if kind == "dependentRequired":
        out = []
        for name, needs in expected.items():
            if isinstance(value, dict) and name in value:
                for need in needs:
                    if need not in value:
                        out.append((_ptr(path + [name]), f"needs {_show(need)} to be set", kind))
        return out or [(_ptr(path), error.message, kind)]
    if kind == "additionalProperties" and expected is False and isinstance(value, dict):
        known = error.schema.get("properties", {})
        extra = [key for key in value if key not in known]
        return [(_ptr(path + [key]), "is not a property the spec defines here", kind) for key in extra]
    if kind in ("anyOf", "oneOf"):
        branches = list(expected)
        if branches and all(set(b) == {"required"} for b in branches):
            names = ", ".join(_show(n) for b in branches for n in b["required"])
            return [(_ptr(path), f"must set at least one of {names}", kind)]
        # A nullable value (features.md): explain why the non-null branch failed.
        real = [i for i, b in enumerate(branches) if b != {"type": "null"}]
        if value is not None and len(real) == 1:
            inner = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == real[0]]
            if inner:
                out = []
                for e in inner:
                    out.extend(_explain(e))
                return out
    return [(_ptr(path), _explain_simple(kind, expected, value, error), kind)]


def _explain_simple(kind: str, expected: Any, value: Any, error) -> str:
    if kind == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return f"{_show(value)} is not " + " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    if kind == "enum":
        return f"{_show(value)} is not one of " + ", ".join(_show(v) for v in expected)
    if kind == "const":
        return f"{_show(value)} is not {_show(expected)}"
    if kind == "pattern":
        return f"{_show(value)} does not match {expected}"
    if kind == "minimum":
        return f"{_show(value)} is less than the minimum {expected}"
    if kind == "maximum":
        return f"{_show(value)} is greater than the maximum {expected}"
    if kind == "minItems":
        return "must not be empty" if expected == 1 else f"must have at least {expected} items"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    return error.message
