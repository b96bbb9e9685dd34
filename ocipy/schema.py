"""A small validator for ocipy's own JSON Schemas (schemas/*.json), without jsonschema.

Why: every ocipy command is a fresh interpreter, and `create` validates config.json. jsonschema
costs ~70 ms to import and several ms to validate; this module costs well under a millisecond
for both, because it implements only what our schemas use.

What it implements is the subset of JSON Schema draft 2020-12 that schemas/ actually uses
(see KEYWORDS). A schema that uses any other keyword is refused when it is loaded, with a
SchemaError naming the keyword and where it is: a new keyword must be implemented here (and
cross-checked against jsonschema by tests/unit/test_schema.py), never silently ignored.

What it reports is exactly what ocipy reported when it used jsonschema: the same problem
lines, `<source>: <JSON pointer>: <rule>`, in the same order (sorted by the path of each
failure, failures about one value in the order of the schema's keywords), with the same
de-duplication, and with a type error hiding the other rules about the same value.

Two behaviours are kept from jsonschema on purpose, although they are not the letter of the
standard:

* `pattern` is Python's `re.search`, not ECMA-262: `$` also matches just before a final
  newline, so "1.0.0\\n" is a valid ociVersion. The seven patterns of our schemas are
  hand-written predicates (PATTERNS) that a test compares with `re.search` on many strings;
  any other pattern falls back to `re`, imported only then.
* "integer" accepts a float with no fractional part (1.0), as jsonschema does.

`$ref`s are file names in the schema directory, optionally with a JSON pointer
(`defs.json#/$defs/Process`) or a pointer into the same file (`#/$defs/uint32`).

Importing this module costs almost nothing: no `re`, `json`, `typing` or `pathlib`.
"""

from __future__ import annotations

import _json

from ocipy import fspath, jsonfast

__all__ = [
    "Schemas", "SchemaError", "Failure", "problems", "default_schemas", "schema_dir", "pointer", "show", "matches",
    "KEYWORDS", "PATTERNS",
]


class SchemaError(Exception):
    """A schema this module cannot apply: an unimplemented keyword, a bad $ref, an unreadable file.

    This is a bug in schemas/ (or in this module), never in the document being validated.
    """


# ---------------------------------------------------------------------------------------------
# Showing values and paths (also used by ocipy.bundle for its semantic checks)


def pointer(parts) -> str:
    """RFC 6901 JSON pointer of a path; the document itself is shown as `/`."""
    text = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return text or "/"


def _not_json(value):
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def show(value, limit: int = 80) -> str:
    """A value as `json.dumps(value, ensure_ascii=False)` writes it, cut to `limit` characters.

    Uses the `_json` C encoder directly (jsonfast only has the ASCII one); a fresh encoder per
    call, as json.dumps makes, so that a failed encoding leaves nothing behind.
    """
    encode = _json.make_encoder({}, _not_json, _json.encode_basestring, None, ": ", ", ", False, False, True)
    try:
        text = "".join(encode(value, 0))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Patterns: Python `re.search` semantics, written out by hand for the patterns we use.


def _chomp(text: str) -> str:
    """The part of `text` a Python `...$` must match: `$` also matches before one final newline.

    None of our patterns can match a newline just before `$`, so "matches `text`, or `text`
    without its final newline" is "matches `text` without its final newline".
    """
    return text[:-1] if text.endswith("\n") else text


_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_IDENTIFIER = _DIGITS + _UPPER + "abcdefghijklmnopqrstuvwxyz-"


def _only(text: str, chars: str) -> bool:
    """Every character of `text` is one of `chars` (true for "")."""
    return not text.strip(chars)


def _semver_number(text: str) -> bool:
    """`0|[1-9][0-9]*`"""
    return text == "0" or (text != "" and text[0] != "0" and _only(text, _DIGITS))


def _dotted_identifiers(text: str) -> bool:
    """`[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*`"""
    return all(part and _only(part, _IDENTIFIER) for part in text.split("."))


def _semver(text: str) -> bool:
    """`^N\\.N\\.N(-IDS)?(\\+IDS)?$` with N a number without leading zeros.

    The core holds only digits and dots and the pre-release no "+", so the first "+" starts
    the build metadata and the first "-" before it starts the pre-release.
    """
    text = _chomp(text)
    text, plus, build = text.partition("+")
    if plus and not _dotted_identifiers(build):
        return False
    core, dash, prerelease = text.partition("-")
    if dash and not _dotted_identifiers(prerelease):
        return False
    numbers = core.split(".")
    return len(numbers) == 3 and all(_semver_number(n) for n in numbers)


def _cpu_list(text: str) -> bool:
    """`^[0-9, -]*$`"""
    return _only(_chomp(text), _DIGITS + ", -")


def _device_access(text: str) -> bool:
    """`^[rwm]*$`"""
    return _only(_chomp(text), "rwm")


def _page_size(text: str) -> bool:
    """`^[1-9][0-9]*[KMG]B$`"""
    text = _chomp(text)
    return (
        len(text) >= 3 and text[0] in "123456789" and text[-2] in "KMG" and text[-1] == "B"
        and _only(text[1:-2], _DIGITS)
    )


def _one_line(text: str) -> bool:
    """`^[^\\n]*$`"""
    return "\n" not in _chomp(text)


def _mb_schema(text: str) -> bool:
    """`^MB:[^\\n]*$`"""
    text = _chomp(text)
    return text.startswith("MB:") and "\n" not in text


def _capability(text: str) -> bool:
    """`^CAP_[A-Z_]+$`"""
    text = _chomp(text)
    return len(text) > 4 and text.startswith("CAP_") and _only(text[4:], _UPPER + "_")


# Pattern text (exactly as in the schemas) -> predicate equal to `re.search(pattern, s)`.
PATTERNS = {
    "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?"
    "(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$": _semver,
    "^[0-9, -]*$": _cpu_list,
    "^[rwm]*$": _device_access,
    "^[1-9][0-9]*[KMG]B$": _page_size,
    "^[^\\n]*$": _one_line,
    "^MB:[^\\n]*$": _mb_schema,
    "^CAP_[A-Z_]+$": _capability,
}


def matches(pattern: str, text: str) -> bool:
    """`re.search(pattern, text)`, without importing `re` for the patterns of PATTERNS."""
    predicate = PATTERNS.get(pattern)
    if predicate is not None:
        return predicate(text)
    import re  # a pattern nobody wrote a predicate for: correct, only slower

    return re.search(pattern, text) is not None


# ---------------------------------------------------------------------------------------------
# JSON values, as JSON Schema sees them (bool is not a number; 1.0 is an integer)


def _is_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


TYPE_TESTS = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}


def _unbool(value):
    """True and False as themselves rather than 1 and 0, for equality."""
    return ("bool", value) if isinstance(value, bool) else value


def same(a, b) -> bool:
    """JSON equality (`enum`, `const`): like ==, except that true is not 1 and false is not 0."""
    if a is b:
        return True
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(key in b and same(value, b[key]) for key, value in a.items())
    return _unbool(a) == _unbool(b)


# ---------------------------------------------------------------------------------------------
# Failures and the walk over a document


class Failure:
    """One rule a value breaks.

    `path` is where the value is in the document, `keyword` the rule's keyword, `expected` the
    keyword's value in the schema, `schema` the schema object holding the keyword. An anyOf
    failure keeps, in `context`, (branch index, failure) for every branch. `of_key` is set for
    failures found by propertyNames, where the value is a key of the object at `path`.
    """

    __slots__ = ("path", "keyword", "expected", "value", "schema", "context", "of_key")

    def __init__(self, path: tuple, keyword: str, expected, value, schema: dict, context: list | None = None):
        self.path = path
        self.keyword = keyword
        self.expected = expected
        self.value = value
        self.schema = schema
        self.context = context or []
        self.of_key = False

    def mark_of_key(self) -> None:
        self.of_key = True
        for _, inner in self.context:
            inner.mark_of_key()

    def __repr__(self) -> str:
        return f"Failure({pointer(self.path)}, {self.keyword}={self.expected!r}, value={self.value!r})"


class _Walk:
    """One validation: applies schemas to values and collects the failures, in schema order."""

    def __init__(self, schemas: Schemas):
        self.schemas = schemas
        self.failures: list[Failure] = []

    def check(self, value, schema: dict, path: tuple) -> None:
        """Apply every keyword of `schema`, in the schema's own order, to `value` at `path`."""
        for keyword, expected in schema.items():
            rule = _RULES.get(keyword)
            if rule is not None:
                rule(self, value, expected, schema, path)

    def fail(self, path: tuple, keyword: str, expected, value, schema: dict, context: list | None = None) -> None:
        self.failures.append(Failure(path, keyword, expected, value, schema, context))

    def collect(self, value, schema: dict, path: tuple) -> list[Failure]:
        """The failures of `value` against `schema` alone (for anyOf, if and propertyNames)."""
        outer, self.failures = self.failures, []
        try:
            self.check(value, schema, path)
            return self.failures
        finally:
            self.failures = outer


# One function per keyword: (walk, value, keyword's value, schema holding it, path). Like
# jsonschema, a keyword about one kind of value (properties, minLength...) ignores the others:
# `type` alone reports a value of the wrong kind.


def _rule_type(walk: _Walk, value, expected, schema: dict, path: tuple) -> None:
    if isinstance(expected, str):
        ok = TYPE_TESTS[expected](value)
    else:
        ok = any(TYPE_TESTS[name](value) for name in expected)
    if not ok:
        walk.fail(path, "type", expected, value, schema)


def _rule_properties(walk: _Walk, value, expected: dict, schema: dict, path: tuple) -> None:
    if isinstance(value, dict):
        for name, subschema in expected.items():
            if name in value:
                walk.check(value[name], subschema, path + (name,))


def _rule_additional_properties(walk: _Walk, value, expected, schema: dict, path: tuple) -> None:
    """Keys not in `properties`. With a schema, each value is checked against it, in the
    object's order (jsonschema takes them from a set; the final sort by path hides that,
    except inside an anyOf branch, where ours is the deterministic order)."""
    if not isinstance(value, dict):
        return
    known = schema.get("properties", {})
    extras = [key for key in value if key not in known]
    if isinstance(expected, dict):
        for key in extras:
            walk.check(value[key], expected, path + (key,))
    elif expected is False and extras:
        walk.fail(path, "additionalProperties", expected, value, schema)


def _rule_property_names(walk: _Walk, value, expected: dict, schema: dict, path: tuple) -> None:
    if isinstance(value, dict):
        for key in value:
            for failure in walk.collect(key, expected, path):
                failure.mark_of_key()
                walk.failures.append(failure)


def _rule_items(walk: _Walk, value, expected: dict, schema: dict, path: tuple) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            walk.check(item, expected, path + (index,))


def _rule_required(walk: _Walk, value, expected: list, schema: dict, path: tuple) -> None:
    # One failure for all missing names: the explanation lists each of them.
    if isinstance(value, dict) and any(name not in value for name in expected):
        walk.fail(path, "required", expected, value, schema)


def _rule_dependent_required(walk: _Walk, value, expected: dict, schema: dict, path: tuple) -> None:
    if isinstance(value, dict) and any(
        name in value and need not in value for name, needs in expected.items() for need in needs
    ):
        walk.fail(path, "dependentRequired", expected, value, schema)


def _rule_enum(walk: _Walk, value, expected: list, schema: dict, path: tuple) -> None:
    if isinstance(value, str):
        ok = value in expected  # a string equals only a string: plain == is JSON equality
    else:
        ok = any(same(choice, value) for choice in expected)
    if not ok:
        walk.fail(path, "enum", expected, value, schema)


def _rule_const(walk: _Walk, value, expected, schema: dict, path: tuple) -> None:
    if not same(value, expected):
        walk.fail(path, "const", expected, value, schema)


def _rule_pattern(walk: _Walk, value, expected: str, schema: dict, path: tuple) -> None:
    if isinstance(value, str) and not matches(expected, value):
        walk.fail(path, "pattern", expected, value, schema)


def _rule_minimum(walk: _Walk, value, expected, schema: dict, path: tuple) -> None:
    if _is_number(value) and value < expected:
        walk.fail(path, "minimum", expected, value, schema)


def _rule_maximum(walk: _Walk, value, expected, schema: dict, path: tuple) -> None:
    if _is_number(value) and value > expected:
        walk.fail(path, "maximum", expected, value, schema)


def _rule_min_length(walk: _Walk, value, expected: int, schema: dict, path: tuple) -> None:
    if isinstance(value, str) and len(value) < expected:
        walk.fail(path, "minLength", expected, value, schema)


def _rule_min_items(walk: _Walk, value, expected: int, schema: dict, path: tuple) -> None:
    if isinstance(value, list) and len(value) < expected:
        walk.fail(path, "minItems", expected, value, schema)


def _rule_any_of(walk: _Walk, value, expected: list, schema: dict, path: tuple) -> None:
    context = []
    for branch, subschema in enumerate(expected):
        failures = walk.collect(value, subschema, path)
        if not failures:
            return
        context.extend((branch, failure) for failure in failures)
    walk.fail(path, "anyOf", expected, value, schema, context)


def _rule_if(walk: _Walk, value, expected: dict, schema: dict, path: tuple) -> None:
    """`if` decides whether `then` or `else` applies; its own failures are never reported."""
    branch = "then" if not walk.collect(value, expected, path) else "else"
    if branch in schema:
        walk.check(value, schema[branch], path)


def _rule_ref(walk: _Walk, value, expected: str, schema: dict, path: tuple) -> None:
    walk.check(value, walk.schemas.target(expected), path)


_RULES = {
    "type": _rule_type,
    "properties": _rule_properties,
    "additionalProperties": _rule_additional_properties,
    "propertyNames": _rule_property_names,
    "items": _rule_items,
    "required": _rule_required,
    "dependentRequired": _rule_dependent_required,
    "enum": _rule_enum,
    "const": _rule_const,
    "pattern": _rule_pattern,
    "minimum": _rule_minimum,
    "maximum": _rule_maximum,
    "minLength": _rule_min_length,
    "minItems": _rule_min_items,
    "anyOf": _rule_any_of,
    "if": _rule_if,
    "$ref": _rule_ref,
}

# Keywords that are read by another keyword (then/else by if) or say nothing about the value.
_PASSIVE = frozenset({"then", "else", "$defs", "$schema", "description"})

KEYWORDS = frozenset(_RULES) | _PASSIVE


# ---------------------------------------------------------------------------------------------
# Loading schemas


# Where each keyword's value holds schemas: one schema, a name -> schema map, or a list.
_ONE_SCHEMA = frozenset({"items", "propertyNames", "if", "then", "else"})
_SCHEMA_MAPS = frozenset({"properties", "$defs"})


def _prepare(schema, name: str, where: tuple) -> None:
    """Refuse what this module does not implement, anywhere in `schema` (the part of file `name`
    at path `where`), and turn every `$ref` into the absolute form `file.json#pointer`.

    Runs once per file per process, on every keyword of it: kept cheap (no strings built
    unless something is wrong).
    """
    if not isinstance(schema, dict):
        raise SchemaError(f"{_where(name, where)}: a schema must be an object here, not {show(schema)}")
    if not KEYWORDS.issuperset(schema):
        unknown = [keyword for keyword in schema if keyword not in KEYWORDS]
        raise SchemaError(
            f"{_where(name, where)}: keyword {unknown[0]!r} is not implemented by ocipy.schema"
            f" (it implements {', '.join(sorted(KEYWORDS))})"
        )
    for keyword, value in schema.items():
        if keyword in _ONE_SCHEMA:
            _prepare(value, name, where + (keyword,))
        elif keyword in _SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise SchemaError(f"{_where(name, where + (keyword,))}: must be an object of schemas")
            for key, subschema in value.items():
                _prepare(subschema, name, where + (keyword, key))
        elif keyword == "additionalProperties":
            if not isinstance(value, bool):
                _prepare(value, name, where + (keyword,))
        elif keyword == "anyOf":
            if not isinstance(value, list) or not value:
                raise SchemaError(f"{_where(name, where + (keyword,))}: must be a non-empty list of schemas")
            for index, subschema in enumerate(value):
                _prepare(subschema, name, where + (keyword, index))
        elif keyword == "type":
            if not (value in TYPE_TESTS if isinstance(value, str) else _type_list(value)):
                raise SchemaError(f"{_where(name, where + (keyword,))}: unknown type {show(value)}")
        elif keyword == "$ref":
            schema[keyword] = _absolute_ref(value, name, where)


def _type_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) and n in TYPE_TESTS for n in value)


def _where(name: str, where: tuple) -> str:
    """`file.json#/pointer`, for messages about a schema."""
    return f"{name}#{pointer(where) if where else ''}"


def _absolute_ref(ref, name: str, where: tuple) -> str:
    """`#/x` in file `name` -> `name#/x`; `other.json` -> `other.json#`. Only our own files."""
    if not isinstance(ref, str):
        raise SchemaError(f"{_where(name, where)}: $ref must be a string")
    file, _, fragment = ref.partition("#")
    if "/" in file or ":" in file or (fragment and not fragment.startswith("/")):
        raise SchemaError(f"{_where(name, where)}: $ref {ref!r} is not a schema file of this directory")
    return f"{file or name}#{fragment}"


class Schemas:
    """The schema files of one directory, each read and checked once, when first needed."""

    def __init__(self, directory: str):
        self.directory = directory
        self._documents: dict[str, dict] = {}
        self._targets: dict[str, dict] = {}

    def document(self, name: str) -> dict:
        """The schema in file `name`, checked (SchemaError if it uses what we do not implement)."""
        document = self._documents.get(name)
        if document is None:
            path = fspath.join(self.directory, name)
            try:
                with open(path, "rb") as f:
                    document = jsonfast.loads(f.read())
            except (OSError, ValueError) as e:
                raise SchemaError(f"cannot load schema {path}: {e}") from None
            _prepare(document, name, ())
            self._documents[name] = document
        return document

    def target(self, ref: str) -> dict:
        """The schema a `file.json` or `file.json#/pointer` reference names."""
        found = self._targets.get(ref)
        if found is None:
            file, _, fragment = (ref if "#" in ref else ref + "#").partition("#")
            node = self.document(file)
            for token in fragment.split("/")[1:]:
                token = token.replace("~1", "/").replace("~0", "~")
                try:
                    node = node[int(token)] if isinstance(node, list) else node[token]
                except (KeyError, IndexError, ValueError, TypeError):
                    raise SchemaError(f"$ref {ref!r} does not resolve") from None
            if not isinstance(node, dict):
                raise SchemaError(f"$ref {ref!r} does not name a schema object")
            found = self._targets[ref] = node
        return found

    def failures(self, instance, target: str) -> list[Failure]:
        """Every rule of schema `target` that `instance` breaks, in jsonschema's order."""
        walk = _Walk(self)
        walk.check(instance, self.target(target), ())
        return walk.failures

    def problems(self, instance, target: str, source: str) -> list[str]:
        """Problem lines (`<source>: <pointer>: <rule>`) of `instance` against schema `target`."""
        failures = sorted(self.failures(instance, target), key=_path_order)
        explained = [item for failure in failures for item in _explain(failure)]
        # A value of the wrong type says enough: drop the other rules about the same value.
        mistyped = {where for where, _, keyword in explained if keyword == "type"}
        lines: list[str] = []
        for where, rule, keyword in explained:
            line = f"{source}: {where}: {rule}"
            if (keyword == "type" or where not in mistyped) and line not in lines:
                lines.append(line)
        return lines


def _path_order(failure: Failure) -> list:
    """Sort key: by path, array indexes before keys (a stable sort keeps schema order within)."""
    return [(isinstance(part, str), part) for part in failure.path]


def schema_dir() -> str:
    """schemas/ beside the ocipy package (a checkout or an editable install), else the
    installed package directory ocipy/schemas/ (setup maps ocipy.schemas to schemas/).
    Looked for beside the package's real path too, when it is reached through a symlink."""
    package = fspath.dirname(fspath.abspath(__file__))
    found = _schemas_of(package)
    if found is None:
        import os  # only here: create's path has no other use for it (see fspath.py)

        found = _schemas_of(os.path.dirname(os.path.realpath(__file__)))
    return found or fspath.join(package, "schemas")


def _schemas_of(package: str) -> str | None:
    for directory in (fspath.join(fspath.dirname(package), "schemas"), fspath.join(package, "schemas")):
        if fspath.isfile(fspath.join(directory, "config-schema.json")):
            return directory
    return None


_default: Schemas | None = None


def default_schemas() -> Schemas:
    """Our schemas, shared by the whole process."""
    global _default
    if _default is None:
        _default = Schemas(schema_dir())
    return _default


def problems(instance, target: str, source: str) -> list[str]:
    """Problem lines of `instance` against one of our schemas: a file in schemas/
    (`config-schema.json`) or a pointer into one (`defs.json#/$defs/Process`)."""
    return default_schemas().problems(instance, target, source)


# ---------------------------------------------------------------------------------------------
# Explaining failures in a person's words (the texts tests and engines see)


_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a number", "object": "an object",
    "array": "an array", "boolean": "a boolean", "null": "null",
}


def _explain(failure: Failure) -> list[tuple[str, str, str]]:
    """(pointer, short rule, keyword) for each problem one failure stands for."""
    path, keyword, expected, value = failure.path, failure.keyword, failure.expected, failure.value

    if failure.of_key:
        return [(pointer(path), f"key {show(value)}: {_rule_text(failure)}", keyword)]
    if keyword == "required":
        return [(pointer(path + (name,)), "is required", keyword) for name in expected if name not in value]
    if keyword == "dependentRequired":
        return [
            (pointer(path + (name,)), f"needs {show(need)} to be set", keyword)
            for name, needs in expected.items() if name in value
            for need in needs if need not in value
        ]
    if keyword == "additionalProperties":
        known = failure.schema.get("properties", {})
        return [(pointer(path + (key,)), "is not a property the spec defines here", keyword)
                for key in value if key not in known]
    if keyword == "anyOf":
        explained = _explain_any_of(failure)
        if explained:
            return explained
    return [(pointer(path), _rule_text(failure), keyword)]


def _explain_any_of(failure: Failure) -> list[tuple[str, str, str]]:
    """"must set at least one of" for branches that each require a name; for a nullable value
    (features.md: `null` or X), why the value is not an X. Else nothing: the plain message."""
    branches = failure.expected
    if all(set(branch) == {"required"} for branch in branches):
        names = ", ".join(show(name) for branch in branches for name in branch["required"])
        return [(pointer(failure.path), f"must set at least one of {names}", "anyOf")]
    real = [index for index, branch in enumerate(branches) if branch != {"type": "null"}]
    if failure.value is None or len(real) != 1:
        return []
    out = []
    for branch, inner in failure.context:
        if branch == real[0]:
            out.extend(_explain(inner))
    return out


def _rule_text(failure: Failure) -> str:
    """The rule a value breaks, about the value itself."""
    keyword, expected, value = failure.keyword, failure.expected, failure.value
    if keyword == "type":
        types = [expected] if isinstance(expected, str) else expected
        return f"{show(value)} is not " + " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    if keyword == "enum":
        return f"{show(value)} is not one of " + ", ".join(show(v) for v in expected)
    if keyword == "const":
        return f"{show(value)} is not {show(expected)}"
    if keyword == "pattern":
        return f"{show(value)} does not match {expected}"
    if keyword == "minimum":
        return f"{show(value)} is less than the minimum {expected}"
    if keyword == "maximum":
        return f"{show(value)} is greater than the maximum {expected}"
    if keyword == "minItems":
        return "must not be empty" if expected == 1 else f"must have at least {expected} items"
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if keyword == "anyOf":  # jsonschema's own words, as before
        return f"{value!r} is not valid under any of the given schemas"
    return f"breaks the {keyword} rule of the schema"
