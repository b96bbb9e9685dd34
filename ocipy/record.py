"""Record and TupleRecord: what @dataclass and typing.NamedTuple give, without importing them.

Importing dataclasses and building dataclasses costs ~10 ms, typing ~2 ms, and every
ocipy command is a fresh interpreter: the config views (ocipy.spec) and the linux
layer's plan steps are declared on these small bases instead.
"""

from __future__ import annotations

__all__ = ["Record", "TupleRecord", "factory"]


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make

    def __repr__(self) -> str:
        return f"factory({self.make!r})"


def factory(make) -> _Factory:
    """A default built anew for every record (dataclasses' `field(default_factory=make)`)."""
    return _Factory(make)


def _declare(cls) -> None:
    """Collect a record class's annotated attributes (in order) and their defaults."""
    own = cls.__dict__.get("__annotations__", {})
    cls._fields = cls._fields + tuple(name for name in own if name not in cls._fields)
    cls._defaults = {**cls._defaults, **{name: cls.__dict__[name] for name in own if name in cls.__dict__}}


def _arguments(cls, args: tuple, kwargs: dict) -> list:
    """The attribute values, in field order, of the call cls(*args, **kwargs); TypeError as for a signature."""
    name, fields = cls.__name__, cls._fields
    if len(args) > len(fields):
        raise TypeError(f"{name}() takes {len(fields)} positional arguments but {len(args)} were given")
    values = list(args)
    defaults = cls._defaults
    for field in fields[len(args):]:
        if field in kwargs:
            values.append(kwargs.pop(field))
        elif field in defaults:
            default = defaults[field]
            values.append(default.make() if type(default) is _Factory else default)
        else:
            raise TypeError(f"{name}() missing required argument: {field!r}")
    if kwargs:
        extra = next(iter(kwargs))
        if extra in fields:  # given by position too
            raise TypeError(f"{name}() got multiple values for argument {extra!r}")
        raise TypeError(f"{name}() got an unexpected keyword argument {extra!r}")
    return values


def _repr(self) -> str:
    shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._fields if field not in self._hidden)
    return f"{type(self).__qualname__}({shown})"


def _refuse_set(self, name, value):
    raise AttributeError(f"cannot assign to field {name!r}")


def _refuse_delete(self, name):
    raise AttributeError(f"cannot delete field {name!r}")


def _hash_values(self) -> int:
    return hash(self._values())


class Record:
    """Base of ocipy's data classes (what @dataclass gave them).

    A subclass lists its attributes as annotated class attributes, in constructor
    order, each optionally with a default (`factory(list)` for a fresh list per
    instance); `class X(Record, frozen=True)` makes instances immutable and
    hashable. Instances take their attributes by keyword or position, equal an
    instance of the same class with equal attributes, and have a repr naming them
    (but those in the class's `_hidden`). `_replace(**changes)` is dataclasses.replace.
    """

    _fields: tuple = ()  # attribute names, in constructor order
    _defaults: dict = {}  # name -> default value or _Factory
    _hidden: tuple = ()  # attribute names left out of the repr

    def __init_subclass__(cls, frozen: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        _declare(cls)
        if frozen:
            cls.__setattr__ = _refuse_set
            cls.__delattr__ = _refuse_delete
            cls.__hash__ = _hash_values

    def __init__(self, *args, **kwargs):
        # through __dict__, not setattr: frozen records refuse setattr
        self.__dict__.update(zip(self._fields, _arguments(type(self), args, kwargs)))

    def _values(self) -> tuple:
        return tuple(getattr(self, field) for field in self._fields)

    def _replace(self, **changes):
        """A copy with `changes` applied."""
        return type(self)(**{**dict(zip(self._fields, self._values())), **changes})

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # unhashable unless frozen, as a dataclass
    __repr__ = _repr


class TupleRecord(tuple):
    """typing.NamedTuple without typing: a tuple whose items are also named attributes.

    Declared like a Record (annotated attributes, defaults); instances compare,
    sort and hash as tuples. `_replace(**changes)` as namedtuple's.
    """

    __slots__ = ()
    _fields: tuple = ()
    _defaults: dict = {}
    _hidden: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _declare(cls)
        for index, field in enumerate(cls._fields):
            setattr(cls, field, property(lambda self, index=index: self[index]))

    def __new__(cls, *args, **kwargs):
        return tuple.__new__(cls, _arguments(cls, args, kwargs))

    def __getnewargs__(self) -> tuple:
        return tuple(self)  # copy and pickle call cls(*items)

    def _replace(self, **changes):
        """A copy with `changes` applied."""
        return type(self)(**{**dict(zip(self._fields, self)), **changes})

    __repr__ = _repr
