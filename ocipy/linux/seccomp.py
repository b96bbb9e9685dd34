"""Seccomp: turn `linux.seccomp` into a libseccomp filter, load it, hand the
notify fd to a seccomp agent.

Public API
----------
- `validate(seccomp)`        -> list of problems, `"<json path>: <rule>"` strings.
- `build_filter(seccomp)`    -> a `Filter` (libseccomp filter context), not loaded.
- `load(seccomp)`            -> builds and loads into the calling process; returns the
                                notify fd when a rule uses SCMP_ACT_NOTIFY, else None.
- `prepare(seccomp)` + `load_prepared(prepared)` -> the same in two steps: prepare
                                before pivot_root (needs libseccomp and the stdlib on
                                disk), load_prepared after (opens no file).
- `program(seccomp)`         -> the exact BPF bytes `load` installs (stub + libseccomp).
- `send_to_listener(path, fd, state, metadata)` -> sends the container process state
                                and the notify fd (SCM_RIGHTS) to `listenerPath`.
- `supported_features()`     -> the `linux.seccomp` object of `ocipy features`.
- `libseccomp_version()`     -> "2.5.4" (for the features annotation), or None.
- `notify_receive(fd)` / `notify_respond(fd, ...)` -> answer a notification; used by
                                tests and by anyone writing a small seccomp agent.

Behaviour follows runc (libcontainer/seccomp), studied, not copied:
- SCMP_ACT_ERRNO and SCMP_ACT_TRACE without errnoRet/defaultErrnoRet return EPERM.
  errnoRet on any other action is an error (the spec says the runtime MUST fail).
- A syscall name libseccomp does not know at all is skipped; a name known to
  libseccomp but absent on one of the filter's architectures is handled by
  libseccomp itself (the rule is added only where the syscall exists).
- A rule whose action equals the default action is skipped (libseccomp refuses it).
- Conditions on different argument indexes are ANDed in one rule. When two or more
  conditions name the same index, every condition becomes a rule of its own (so
  they are ORed), exactly what runc does for compatibility with old profiles.
- MASKED_EQ: `value` is the mask and `valueTwo` the expected value, as in runc.
- The filter never sets no_new_privs itself (SCMP_FLTATR_CTL_NNP=0): the caller
  decides that from process.noNewPrivileges.  Without no_new_privs the load needs
  CAP_SYS_ADMIN, so load before dropping it in that case.
- SCMP_ACT_NOTIFY is refused as the default action and on `write`, like runc
  (the process could never report its notify fd).
- Flags go straight to seccomp(2) (load() installs the program itself, as runc
  does), so all four spec flags work when the kernel knows them, even
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV with libseccomp 2.5 (kernel >= 6.0; it is
  only passed along with a notify listener, the kernel refuses it otherwise).
  TSYNC with a listener adds SECCOMP_FILTER_FLAG_TSYNC_ESRCH.  A flag the kernel
  does not know fails the build with a clear error; `supportedFlags` lists the
  ones this kernel knows.
- ENOSYS stub (runc's patchbpf idea, written here from scratch): when the default
  action denies, syscalls numbered above the largest one the profile names get
  ENOSYS instead of the default errno, so libc fallbacks keep working (see
  `enosys_stub`).  Unlike runc, the native arch is stubbed even when
  `architectures` is empty.

libseccomp.so.2 is driven through ctypes here (`Filter`, `_libseccomp`), not
through pyseccomp: importing pyseccomp costs ~20 ms (it imports ctypes.util, hence
subprocess and shutil, and typing), on every create of a docker or podman
container (their configs always carry a profile). seccomp(2) itself goes through
syscalls.seccomp_set_mode_filter (the one layer to the kernel's calls) to load the
patched program with our own flags and get the notify fd.

ctypes is imported only inside functions, so importing this module costs nothing
for commands that never touch seccomp.
"""

from __future__ import annotations

import errno
import os
import struct

from ..errors import ConfigError, SetupError
from .seccomp_load import (  # noqa: F401 - part of this module's API
    _FLAG_BITS,
    _FLAG_NEW_LISTENER,
    FLAGS,
    PreparedFilter,
    _raw_seccomp,
    load_prepared,
    prepared,
)

# --- names from the spec (config-linux.md#seccomp, libseccomp v2.6.0 lists) ---------

ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
)

# seccomp(2) return values (include/uapi/linux/seccomp.h); ERRNO and TRACE carry
# a 16-bit datum in the low bits.
_ACTION_VALUES = {
    "SCMP_ACT_KILL": 0x00000000,  # == KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_ACTIONS_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_EPERM = 1

# enum scmp_compare in seccomp.h
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

ARCHITECTURES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
)


_ATTR_CTL_NNP = 3
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

_NR_SCMP_ERROR = -1  # __NR_SCMP_ERROR: name unknown to libseccomp
_MAX_ARGS = 6
_U64 = (1 << 64) - 1
_OPTIMIZE_OVER = 32  # binary-tree optimisation for filters with more syscalls than this

OCI_VERSION = "1.3.0"
SECCOMP_FD_NAME = "seccompFd"


# --- validation (pure, no libseccomp) ----------------------------------------------


def _is_uint(value, top: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top


def _known(name, names) -> bool:
    return isinstance(name, str) and name in names


def _array(container: dict, key: str, path: str, out: list[str]) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        out.append(f"{path}/{key}: must be an array")
        return []
    return value


def _problems(seccomp, base: str, for_build: bool) -> list[str]:
    out: list[str] = []
    if not isinstance(seccomp, dict):
        return [f"{base}: must be an object"]

    default = seccomp.get("defaultAction")
    if default is None:
        out.append(f"{base}/defaultAction: is required")
    elif not _known(default, ACTIONS):
        out.append(f'{base}/defaultAction: "{default}" is not a seccomp action')
    elif default == "SCMP_ACT_NOTIFY":
        out.append(f"{base}/defaultAction: SCMP_ACT_NOTIFY cannot be used as default action")
    if "defaultErrnoRet" in seccomp:
        ret = seccomp["defaultErrnoRet"]
        if not _is_uint(ret, 0xFFFF):
            out.append(f"{base}/defaultErrnoRet: {ret!r} is not an errno value (0-65535)")
        elif _known(default, ACTIONS) and default not in _ACTIONS_WITH_ERRNO:
            out.append(
                f'{base}/defaultErrnoRet: errnoRet is only valid with SCMP_ACT_ERRNO '
                f'and SCMP_ACT_TRACE, not "{default}"'
            )

    for i, arch in enumerate(_array(seccomp, "architectures", base, out)):
        if not _known(arch, ARCHITECTURES):
            out.append(f'{base}/architectures/{i}: "{arch}" is not a seccomp architecture')

    for i, flag in enumerate(_array(seccomp, "flags", base, out)):
        if not _known(flag, _FLAG_BITS):
            out.append(f'{base}/flags/{i}: "{flag}" is not a seccomp flag')

    if seccomp.get("listenerMetadata") and not seccomp.get("listenerPath"):
        out.append(f"{base}/listenerMetadata: must not be set when listenerPath is not set")

    syscalls = _array(seccomp, "syscalls", base, out)
    uses_notify = False
    for i, call in enumerate(syscalls):
        p = f"{base}/syscalls/{i}"
        if not isinstance(call, dict):
            out.append(f"{p}: must be an object")
            continue
        names = call.get("names")
        if not isinstance(names, list) or not names:
            out.append(f"{p}/names: must be an array of at least one syscall name")
            names = []
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                out.append(f"{p}/names/{j}: {name!r} is not a syscall name")
        action = call.get("action")
        if action is None:
            out.append(f"{p}/action: is required")
        elif not _known(action, ACTIONS):
            out.append(f'{p}/action: "{action}" is not a seccomp action')
        elif action == "SCMP_ACT_NOTIFY":
            uses_notify = True
            if "write" in names:
                out.append(f"{p}/names: SCMP_ACT_NOTIFY cannot be used for the write syscall")
        if "errnoRet" in call:
            ret = call["errnoRet"]
            if not _is_uint(ret, 0xFFFF):
                out.append(f"{p}/errnoRet: {ret!r} is not an errno value (0-65535)")
            elif _known(action, ACTIONS) and action not in _ACTIONS_WITH_ERRNO:
                out.append(
                    f"{p}/errnoRet: errnoRet is only valid with SCMP_ACT_ERRNO "
                    f'and SCMP_ACT_TRACE, not "{action}"'
                )
        for k, arg in enumerate(_array(call, "args", p, out)):
            q = f"{p}/args/{k}"
            if not isinstance(arg, dict):
                out.append(f"{q}: must be an object")
                continue
            index = arg.get("index")
            if not _is_uint(index, _MAX_ARGS - 1):
                out.append(f"{q}/index: {index!r} is not a syscall argument index (0-5)")
            op = arg.get("op")
            if not _known(op, OPERATORS):
                out.append(f'{q}/op: "{op}" is not a seccomp operator')
            if not _is_uint(arg.get("value"), _U64):
                out.append(f"{q}/value: {arg.get('value')!r} is not a uint64")
            if "valueTwo" in arg and not _is_uint(arg["valueTwo"], _U64):
                out.append(f"{q}/valueTwo: {arg['valueTwo']!r} is not a uint64")

    if uses_notify and not for_build and not seccomp.get("listenerPath"):
        out.append(f"{base}/listenerPath: seccomp listenerPath is not set but SCMP_ACT_NOTIFY is used")
    return out


def validate(seccomp, path: str = "/linux/seccomp") -> list[str]:
    """Semantic problems of a `linux.seccomp` object, one string each.

    Every string is `<json path>: <rule>`, e.g.
    `/linux/seccomp/syscalls/3/action: "SCMP_ACT_FOO" is not a seccomp action`.
    Needs no libseccomp: it checks names against the spec's lists.  Whether this
    host's libseccomp knows an architecture or can set a flag is found out by
    `build_filter` (and reported by `supported_features`).
    """
    return _problems(seccomp, path, for_build=False)


def action_value(action: str, errno_ret: int | None = None) -> int:
    """The seccomp return value for an action name (errno datum for ERRNO/TRACE)."""
    try:
        value = _ACTION_VALUES[action]
    except KeyError:
        raise ConfigError(f'"{action}" is not a seccomp action') from None
    if action in _ACTIONS_WITH_ERRNO:
        value |= (_EPERM if errno_ret is None else errno_ret) & 0xFFFF
    elif errno_ret is not None:
        raise ConfigError(f'errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not "{action}"')
    return value


# --- libseccomp through ctypes -------------------------------------------------------

_lib = None


def _libseccomp():
    """A ctypes handle on libseccomp with the prototypes this module uses."""
    global _lib
    if _lib is not None:
        return _lib
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        import ctypes.util  # imports subprocess and shutil (~10 ms): only when the soname is not found

        found = ctypes.util.find_library("seccomp")
        if not found:
            raise SetupError("seccomp: libseccomp is not installed") from None
        lib = ctypes.CDLL(found)

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib.seccomp_version.argtypes = ()
    lib.seccomp_version.restype = ctypes.POINTER(Version)
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_release.restype = None
    lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_api_get.argtypes = ()
    lib.seccomp_api_get.restype = ctypes.c_uint
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    lib.seccomp_arch_native.argtypes = ()
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_notify_alloc.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    lib.seccomp_notify_alloc.restype = ctypes.c_int
    lib.seccomp_notify_free.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    lib.seccomp_notify_free.restype = None
    lib.seccomp_notify_receive.argtypes = (ctypes.c_int, ctypes.c_void_p)
    lib.seccomp_notify_receive.restype = ctypes.c_int
    lib.seccomp_notify_respond.argtypes = (ctypes.c_int, ctypes.c_void_p)
    lib.seccomp_notify_respond.restype = ctypes.c_int
    lib.seccomp_notify_id_valid.argtypes = (ctypes.c_int, ctypes.c_uint64)
    lib.seccomp_notify_id_valid.restype = ctypes.c_int
    _lib = lib
    return lib


def _check_rc(rc: int) -> None:
    """libseccomp returns -errno on failure."""
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


class Filter:
    """A libseccomp filter context (scmp_filter_ctx): the calls a profile needs.

    Methods raise OSError(errno) when libseccomp refuses, as pyseccomp's
    SyscallFilter (whose method names these are) does.
    """

    _ctx = None  # released by __del__; None when seccomp_init failed

    def __init__(self, default_action: int):
        self._lib = _libseccomp()
        self._ctx = self._lib.seccomp_init(default_action)
        if not self._ctx:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # seccomp_init only says NULL

    def __del__(self):
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def set_attr(self, attr: int, value: int) -> None:
        _check_rc(self._lib.seccomp_attr_set(self._ctx, attr, value))

    def add_arch(self, arch_token: int) -> None:
        _check_rc(self._lib.seccomp_arch_add(self._ctx, arch_token))

    def add_rule(self, action: int, syscall_nr: int, *conditions: tuple) -> None:
        """Conditions (ANDed) are (arg index, SCMP_CMP_* operator, value, value two) tuples."""
        # an array of struct scmp_arg_cmp {unsigned int arg; enum scmp_compare op; u64 datum_a, datum_b}
        array = b"".join(struct.pack("IiQQ", *condition) for condition in conditions)
        _check_rc(self._lib.seccomp_rule_add_array(self._ctx, action, syscall_nr, len(conditions), array))

    def export_bpf(self, file) -> None:
        """Write the classic-BPF program to `file` (anything with fileno())."""
        _check_rc(self._lib.seccomp_export_bpf(self._ctx, file.fileno()))


def libseccomp_version() -> str | None:
    """libseccomp's version as "major.minor.micro", or None when it is missing."""
    try:
        v = _libseccomp().seccomp_version().contents
    except (SetupError, OSError, AttributeError):
        return None
    return f"{v.major}.{v.minor}.{v.micro}"


def _arch_token(name: str) -> int:
    """SCMP_ARCH_X86_64 -> libseccomp's token; 0 when this libseccomp lacks it."""
    short = name.removeprefix("SCMP_ARCH_").lower()
    return int(_libseccomp().seccomp_arch_resolve_name(short.encode()))


def syscall_number(name: str) -> int | None:
    """Native-arch syscall number for `name` (negative for libseccomp's pseudo
    numbers of syscalls that exist only on other arches); None if libseccomp
    does not know the name at all."""
    nr = _libseccomp().seccomp_syscall_resolve_name(name.encode())
    return None if nr == _NR_SCMP_ERROR else nr


# --- building and loading -----------------------------------------------------------


def _build(seccomp: dict):
    """(filter, notify_used) for a `linux.seccomp` object."""
    problems = _problems(seccomp, "/linux/seccomp", for_build=True)
    if problems:
        raise ConfigError("; ".join(problems))
    _libseccomp()  # fail early and clearly when libseccomp is missing

    default = action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    try:
        flt = Filter(default)
    except OSError as exc:
        raise SetupError(f"seccomp: error creating filter: {exc}") from None

    try:
        flt.set_attr(_ATTR_CTL_NNP, 0)  # no_new_privs is the caller's business
    except OSError as exc:
        raise SetupError(f"seccomp: error unsetting no new privileges: {exc}") from None
    try:
        flt.set_attr(_ATTR_API_SYSRAWRC, 1)  # report the kernel's errno from seccomp_load
    except OSError:
        pass

    for i, arch in enumerate(seccomp.get("architectures") or []):
        token = _arch_token(arch)
        if token == 0:
            raise ConfigError(
                f'/linux/seccomp/architectures/{i}: "{arch}" is not supported by '
                f"libseccomp {libseccomp_version()}"
            )
        try:
            flt.add_arch(token)
        except OSError as exc:
            if exc.errno != 17:  # EEXIST: the native arch is always there
                raise SetupError(f"seccomp: error adding architecture {arch}: {exc}") from None

    for flag in seccomp.get("flags") or []:
        if not _kernel_has_flag(flag):
            raise SetupError(f"seccomp flag {flag} is not supported by this kernel")
        try:
            # Only for whoever loads this filter with libseccomp: load() passes
            # the flags to seccomp(2) itself, so libseccomp < 2.6 lacking
            # SCMP_FLTATR_CTL_WAITKILL does not matter there.
            flt.set_attr(_FLAG_BITS[flag][1], 1)
        except OSError:
            pass

    syscalls = seccomp.get("syscalls") or []
    if sum(len(c["names"]) for c in syscalls) > _OPTIMIZE_OVER:
        try:
            flt.set_attr(_ATTR_CTL_OPTIMIZE, 2)  # binary tree; libseccomp <= 2.5.4 breaks with 0 rules
        except OSError:
            pass

    notify_used = False
    for call in syscalls:
        act = action_value(call["action"], call.get("errnoRet"))
        if act == default:
            continue  # redundant, and libseccomp refuses it
        conds = [
            (a["index"], OPERATORS[a["op"]], a["value"], a.get("valueTwo", 0))
            for a in call.get("args") or []
        ]
        indexes = [a["index"] for a in call.get("args") or []]
        if len(set(indexes)) < len(indexes):
            rules = [[c] for c in conds]  # same index twice: one rule per condition (OR)
        else:
            rules = [conds]  # all conditions in one rule (AND); [] = unconditional
        for name in call["names"]:
            nr = syscall_number(name)
            if nr is None:
                continue  # unknown to libseccomp: skipped, as runc does
            for rule in rules:
                try:
                    flt.add_rule(act, nr, *rule)
                except OSError as exc:
                    why = exc.strerror
                    if exc.errno == 17:  # EEXIST
                        why = "it conflicts with another rule for the same syscall and arguments"
                    raise SetupError(f"seccomp: error adding rule for syscall {name}: {why}") from None
            if call["action"] == "SCMP_ACT_NOTIFY":
                notify_used = True

    if notify_used and not _kernel_accepts(_FLAG_NEW_LISTENER):
        raise SetupError("seccomp notify unsupported: this kernel has no SECCOMP_FILTER_FLAG_NEW_LISTENER (Linux >= 5.0)")
    return flt, notify_used


def build_filter(seccomp: dict) -> Filter:
    """A libseccomp `Filter` for `linux.seccomp` (rules, arches, attributes).

    Use `load()` to install a profile: that adds the ENOSYS stub, the flags and
    the notify listener.

    Raises ConfigError for a profile that breaks the spec or names an architecture
    this libseccomp does not know; SetupError when the kernel lacks a flag (or
    notify) or libseccomp refuses a rule (e.g. two conflicting rules).
    """
    return _build(seccomp)[0]


def prepare(seccomp: dict) -> PreparedFilter:
    """Build everything `load_prepared` needs, so that it can run after pivot_root,
    when neither libseccomp nor Python's standard library can be opened any more.

    The program is libseccomp's (seccomp_export_bpf) with the ENOSYS stub in front
    (see `enosys_stub`); the flags are the profile's, plus
    SECCOMP_FILTER_FLAG_NEW_LISTENER when a rule uses SCMP_ACT_NOTIFY.
    """
    flt, notify_used = _build(seccomp)
    prog = enosys_stub(seccomp) + _export_bpf(flt)
    count = len(prog) // 8
    if count == 0 or count > _BPF_MAXINSNS:
        raise SetupError(f"seccomp: a filter of {count} instructions cannot be loaded (at most {_BPF_MAXINSNS})")
    return prepared(seccomp, prog, notify_used)


def library_path() -> str | None:
    """The file of the libseccomp this process loaded (from /proc/self/maps), or None
    before one is loaded: what seccomp_cache.py watches for a change."""
    if _lib is None:
        return None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) == 6 and "/libseccomp.so" in fields[5]:
                    return fields[5].strip()
    except OSError:
        pass
    return None


def load(seccomp: dict) -> int | None:
    """`prepare` + `load_prepared` in one call: build the filter and install it in
    the calling process.  Returns the notify fd when a rule uses SCMP_ACT_NOTIFY,
    else None."""
    return load_prepared(prepare(seccomp))


def program(seccomp: dict) -> bytes:
    """The classic-BPF program `load` would install (struct sock_filter array,
    host byte order): the ENOSYS stub followed by libseccomp's filter."""
    return prepare(seccomp).program


def _export_bpf(flt) -> bytes:
    fd = os.memfd_create("ocipy-seccomp-bpf", os.MFD_CLOEXEC)
    with open(fd, "w+b") as f:
        try:
            flt.export_bpf(f)
        except OSError as exc:
            raise SetupError(f"seccomp: error exporting BPF from libseccomp: {exc.strerror}") from None
        f.seek(0)
        return f.read()


# --- which seccomp(2) flags the kernel takes (loading: seccomp_load.py) -----------------

_EFAULT = 14
_BPF_MAXINSNS = 4096


_flag_cache: dict[int, bool] = {}


def _kernel_accepts(bits: int) -> bool:
    """Does this kernel accept these seccomp(2) flags?  Probed like libseccomp does:
    with a NULL program the kernel answers EFAULT once it has accepted the flags,
    EINVAL if not; nothing is loaded."""
    if bits not in _flag_cache:
        rc, err = _raw_seccomp(bits, None)
        _flag_cache[bits] = rc < 0 and err == _EFAULT
    return _flag_cache[bits]


def _kernel_has_flag(flag: str) -> bool:
    bits = _FLAG_BITS[flag][0]
    if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
        bits |= _FLAG_NEW_LISTENER  # the kernel refuses it alone
    return _kernel_accepts(bits)


# --- the ENOSYS stub (runc's patchbpf idea, our own code) ---------------------------
#
# A syscall the profile does not mention gets the default action, usually EPERM.
# For syscalls newer than anything the profile (and libseccomp) knows, that breaks
# libc fallbacks, which expect ENOSYS from an old kernel (glibc's fchmodat2 ->
# fchmodat, clone3 -> clone).  Like runc, when the default action denies, a short
# program in front of libseccomp's returns ENOSYS for every syscall number above
# the largest one the profile names on that architecture.

_AUDIT_ARCH_X86_64 = 0xC000003E
_SCMP_ARCH_X32 = 0x4000003E  # libseccomp's token; the kernel reports x32 as x86_64
_X32_SYSCALL_BIT = 0x40000000
_AUDIT_ARCH_S390 = (0x00000016, 0x80000016)  # syscall 0 multiplexes unknown numbers
_ENOSYS = 38
_PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JA = 0x05  # BPF_JMP | BPF_JA
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGT = 0x25  # BPF_JMP | BPF_JGT | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_OFF_NR, _OFF_ARCH = 0, 4  # struct seccomp_data


def _last_syscalls(seccomp: dict) -> dict[int, dict[str, int]]:
    """{audit arch: {"plain" | "x32": largest syscall number the profile names}}
    for the native architecture and every listed one."""
    lib = _libseccomp()
    names = {n for call in seccomp.get("syscalls") or [] for n in call["names"]}
    tokens = {int(lib.seccomp_arch_native())}
    tokens.update(_arch_token(a) for a in seccomp.get("architectures") or [])
    tokens.discard(0)
    last: dict[int, dict[str, int]] = {}
    for token in tokens:
        numbers = [lib.seccomp_syscall_resolve_name_arch(token, n.encode()) for n in names]
        top = max((nr for nr in numbers if nr > 0), default=0)  # < 0: pseudo number
        if top:
            audit, mode = (_AUDIT_ARCH_X86_64, "x32") if token == _SCMP_ARCH_X32 else (token, "plain")
            last.setdefault(audit, {})[mode] = top
    return last


def enosys_stub(seccomp: dict) -> bytes:
    """The ENOSYS stub for this profile (b"" when the default action is
    permissive or already ENOSYS, or the profile names no syscall).

    Layout:  ld arch; jeq <arch_i> -> section_i ...; ja filter;
             section_i: ld nr; [s390: jeq 0 -> enosys]; [x86_64: jset x32 bit -> x32 part];
                        jgt <last> -> enosys, else -> filter
             enosys: ret ERRNO(ENOSYS);  filter: libseccomp's program.
    """
    if seccomp.get("defaultAction") in _PERMISSIVE or seccomp.get("defaultErrnoRet") == _ENOSYS:
        return b""
    last = _last_syscalls(seccomp)
    if not last:
        return b""
    code: list[list] = []  # [op, jt, jf, k]; jumps may name a label
    labels: dict[str, int] = {}

    def emit(op: int, k=0, jt=0, jf=0) -> None:
        code.append([op, jt, jf, k])

    arches = sorted(last)
    emit(_LD_W_ABS, _OFF_ARCH)
    for i, audit in enumerate(arches):
        emit(_JEQ, audit, jt=f"arch{i}")
    emit(_JA, "filter")
    for i, audit in enumerate(arches):
        labels[f"arch{i}"] = len(code)
        emit(_LD_W_ABS, _OFF_NR)
        if audit in _AUDIT_ARCH_S390:
            emit(_JEQ, 0, jt="enosys")
        parts = ["plain"]
        if audit == _AUDIT_ARCH_X86_64:
            emit(_JSET, _X32_SYSCALL_BIT, jt=f"x32_{i}")
            parts.append("x32")
        for part in parts:
            if part == "x32":
                labels[f"x32_{i}"] = len(code)
            if part in last[audit]:
                emit(_JGT, last[audit][part], jt="enosys", jf="filter")
            else:
                emit(_JA, "filter")  # this mode is not in the profile: libseccomp decides
    labels["enosys"] = len(code)
    emit(_RET, _ACTION_VALUES["SCMP_ACT_ERRNO"] | _ENOSYS)
    labels["filter"] = len(code)

    out = bytearray()
    for idx, (op, jt, jf, k) in enumerate(code):
        if op == _JA and isinstance(k, str):
            k = labels[k] - idx - 1
        jumps = [labels[j] - idx - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= j <= 255 for j in jumps):
            raise SetupError("seccomp: ENOSYS stub jump out of range")
        out += struct.pack("=HBBI", op, jumps[0], jumps[1], k)
    return bytes(out)


# --- seccomp agent side -------------------------------------------------------------


def container_process_state(state: dict, metadata: str | None = None, pid: int | None = None) -> dict:
    """The spec's "container process state" object sent to listenerPath."""
    msg = {
        "ociVersion": OCI_VERSION,
        "fds": [SECCOMP_FD_NAME],
        "pid": state.get("pid") if pid is None else pid,
        "state": state,
    }
    if metadata:
        msg["metadata"] = metadata
    return msg


def send_to_listener(
    listener_path: str, notify_fd: int, state: dict, metadata: str | None, pid: int | None = None
) -> None:
    """Connect to the AF_UNIX SOCK_STREAM socket at `listener_path` and send the
    container process state as JSON with `notify_fd` in SCM_RIGHTS (fds only in
    the first sendmsg), then close the connection.

    `state` is the container's state (runtime.md#state); `pid` defaults to
    `state["pid"]`.  Raises SetupError when anything fails (the spec says the
    runtime MUST generate an error).  `notify_fd` stays open; the caller closes it.
    """
    import socket  # only with a listenerPath

    from .. import jsonfast

    payload = jsonfast.dumps(container_process_state(state, metadata, pid)).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(listener_path)
            sent = socket.send_fds(sock, [payload], [notify_fd])
            if sent < len(payload):
                sock.sendall(payload[sent:])
    except OSError as exc:
        raise SetupError(
            f"failed to send seccomp state to listenerPath {listener_path}: {exc.strerror or exc}"
        ) from None


def notify_receive(fd: int) -> dict:
    """Block for the next notification on a seccomp notify fd (seccomp_notify_receive).

    Returns {"id", "pid", "flags", "syscall", "arch", "ip", "args"}.
    """
    import ctypes

    class Data(ctypes.Structure):
        _fields_ = [
            ("nr", ctypes.c_int),
            ("arch", ctypes.c_uint32),
            ("instruction_pointer", ctypes.c_uint64),
            ("args", ctypes.c_uint64 * 6),
        ]

    class Notif(ctypes.Structure):
        _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("data", Data)]

    lib = _libseccomp()
    req = ctypes.POINTER(Notif)()
    rc = lib.seccomp_notify_alloc(ctypes.byref(req), None)
    if rc < 0:
        raise OSError(-rc, f"seccomp_notify_alloc: {os.strerror(-rc)}")
    try:
        rc = lib.seccomp_notify_receive(fd, req)
        if rc < 0:
            raise OSError(-rc, f"seccomp_notify_receive: {os.strerror(-rc)}")
        n = req.contents
        return {
            "id": n.id,
            "pid": n.pid,
            "flags": n.flags,
            "syscall": n.data.nr,
            "arch": n.data.arch,
            "ip": n.data.instruction_pointer,
            "args": list(n.data.args),
        }
    finally:
        lib.seccomp_notify_free(req, None)


def notify_respond(fd: int, notif_id: int, val: int = 0, error: int = 0, flags: int = 0) -> None:
    """Answer notification `notif_id`: the syscall returns `val`, or fails with
    `error` (a positive errno) when it is non-zero.  flags=1
    (SECCOMP_USER_NOTIF_FLAG_CONTINUE) lets the syscall run for real."""
    import ctypes

    class Resp(ctypes.Structure):
        _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32), ("flags", ctypes.c_uint32)]

    lib = _libseccomp()
    resp = ctypes.POINTER(Resp)()
    rc = lib.seccomp_notify_alloc(None, ctypes.byref(resp))
    if rc < 0:
        raise OSError(-rc, f"seccomp_notify_alloc: {os.strerror(-rc)}")
    try:
        r = resp.contents
        r.id = notif_id
        r.val = val
        r.error = -error if error > 0 else error  # the kernel wants a negative errno
        r.flags = flags
        rc = lib.seccomp_notify_respond(fd, resp)
        if rc < 0:
            raise OSError(-rc, f"seccomp_notify_respond: {os.strerror(-rc)}")
    finally:
        lib.seccomp_notify_free(None, resp)


# --- features -----------------------------------------------------------------------


def supported_features() -> dict:
    """The `linux.seccomp` object of `ocipy features` (features-linux.md#seccomp).

    actions/operators/knownFlags: what ocipy recognises.  archs: the spec's names
    this host's libseccomp resolves.  supportedFlags: the flags this kernel accepts
    (probed with seccomp(2) and a NULL program, so nothing is loaded).  Without
    libseccomp: {"enabled": False}.
    """
    try:
        lib = _libseccomp()
        lib.seccomp_version()
    except (SetupError, OSError, AttributeError):
        return {"enabled": False}
    archs = sorted(a for a in ARCHITECTURES if _arch_token(a) != 0)
    try:
        supported = [flag for flag in FLAGS if _kernel_has_flag(flag)]
    except (SetupError, OSError):
        supported = []
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": list(FLAGS),
        "supportedFlags": supported,
    }
