"""libc's functions, called through _ctypes (the C half of ctypes) without importing ctypes.

Why not ctypes itself: `import ctypes` costs ~2.5 ms here (its ~80 classes, and the
types, struct and ctypes._endian modules it imports), and every process that reaches the
kernel pays it on the way to a container: create's stage 1, exec, run. What syscalls.py
needs of ctypes is small: call a libc function with C long, pointer or NULL arguments and
get a C long back, read the errno it left, and hand the kernel a buffer to write into.
ctypes/__init__.py builds CDLL and create_string_buffer from the same _ctypes names used
here, which have kept their meaning since Python 2.5.

Structures are not declared here: syscalls.py packs them with `struct`, passes bytes
where the kernel only reads and a buffer() where it writes. seccomp.py and bpf_devices.py,
which declare libseccomp's and BPF's prototypes, import ctypes (only for a config that
asks for what they do).
"""

from _ctypes import (
    FUNCFLAG_CDECL,
    FUNCFLAG_PYTHONAPI,
    FUNCFLAG_USE_ERRNO,
    CFuncPtr,
    _SimpleCData,
    addressof,
    dlopen,
    dlsym,
    get_errno,
    set_errno,
)

__all__ = ["addressof", "buffer", "function", "get_errno", "set_errno"]


class c_long(_SimpleCData):
    """C long: how every integer argument is passed (see function)."""

    _type_ = "l"


class c_int(_SimpleCData):
    _type_ = "i"


class c_char(_SimpleCData):
    _type_ = "c"


# Result types are direct subclasses of _SimpleCData: a call returns them as Python ints.
class _IntFunction(CFuncPtr):
    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _LongFunction(CFuncPtr):
    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
    _restype_ = c_long


class _LongFunctionHoldingGil(CFuncPtr):
    """Called without releasing the GIL (as ctypes.PyDLL's functions are)."""

    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO | FUNCFLAG_PYTHONAPI
    _restype_ = c_long


# The interpreter already has libc loaded: dlopen(NULL) reaches it (and the interpreter's own
# C API) without a library search.
_process = dlopen(None)


def function(name: str, *, returns_long: bool = False, holding_gil: bool = False):
    """The C function `name` of this process (libc's, or the interpreter's C API), as a
    Python callable returning the C int it returns (a C long with `returns_long`, as
    syscall() does: an int there would lose a negative result's sign), errno kept for
    get_errno(). Integer arguments are passed as C long: right for syscall()'s variadic
    arguments and for any int, unsigned or long parameter on the 64-bit ABIs ocipy runs on,
    where bare Python ints would go as C int and lose their high bits. bytes and buffer()
    go as pointers, None as NULL. `holding_gil` (with returns_long): the call keeps the
    GIL, as os.fork() does around fork()."""
    if holding_gil:
        kind = _LongFunctionHoldingGil
    else:
        kind = _LongFunction if returns_long else _IntFunction
    target = kind(dlsym(_process, name))

    def call(*args):
        return target(*[c_long(a) if type(a) is int else a for a in args])

    call.__name__ = call.__qualname__ = name
    return call


def buffer(size: int, initial: bytes = b""):
    """A writable C buffer of `size` bytes, starting with `initial` and zeroes after it, for
    the kernel to fill; passed as a pointer, read back with .raw (all of it, as bytes)."""
    buf = (c_char * size)()
    buf.raw = initial
    return buf
