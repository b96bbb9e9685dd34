"""A seccomp program, built before, into the kernel: what create's pid 1 and exec need
when the program comes from seccomp_cache.py, without seccomp.py and its libseccomp
(ctypes) and tables, which only building a program needs.

seccomp(2) is called directly (syscalls.seccomp_set_mode_filter) rather than through
libseccomp's loader, which takes no flags of ours: the profile's flags, and
SECCOMP_FILTER_FLAG_NEW_LISTENER for a notify fd.
"""

from __future__ import annotations

import posix

from ..errors import SetupError

# flag name -> (seccomp(2) flag bit, enum scmp_filter_attr value that sets it)
_FLAG_BITS = {
    "SECCOMP_FILTER_FLAG_TSYNC": (1 << 0, 4),  # SCMP_FLTATR_CTL_TSYNC
    "SECCOMP_FILTER_FLAG_LOG": (1 << 1, 6),  # SCMP_FLTATR_CTL_LOG
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (1 << 2, 7),  # SCMP_FLTATR_CTL_SSB
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (1 << 5, 10),  # SCMP_FLTATR_CTL_WAITKILL (libseccomp >= 2.6)
}
FLAGS = tuple(_FLAG_BITS)
_FLAG_NEW_LISTENER = 1 << 3
_FLAG_TSYNC_ESRCH = 1 << 4


class PreparedFilter:
    """A filter ready for `load_prepared`: the BPF program and the seccomp(2) flags,
    computed by seccomp.prepare while libseccomp and the host's files are reachable."""

    __slots__ = ("program", "flags", "notify")

    def __init__(self, program: bytes, flags: int, notify: bool):
        self.program = program
        self.flags = flags
        self.notify = notify

    def __repr__(self) -> str:
        return f"PreparedFilter({len(self.program) // 8} instructions, flags={self.flags:#x}, notify={self.notify})"


def prepared(seccomp: dict, program: bytes, notify_used: bool) -> PreparedFilter:
    """The PreparedFilter of a program seccomp.prepare built for this profile (then, or
    before: seccomp_cache.py), without libseccomp: the flags are the profile's, plus
    SECCOMP_FILTER_FLAG_NEW_LISTENER when `notify_used` (a rule with SCMP_ACT_NOTIFY was
    added)."""
    flags = 0
    for flag in seccomp.get("flags") or []:
        flags |= _FLAG_BITS[flag][0]
    if notify_used:
        flags |= _FLAG_NEW_LISTENER
        if flags & _FLAG_BITS["SECCOMP_FILTER_FLAG_TSYNC"][0]:
            flags |= _FLAG_TSYNC_ESRCH  # TSYNC and NEW_LISTENER only go together with it
    else:
        flags &= ~_FLAG_BITS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"][0]  # meaningless without a listener
    from . import syscalls  # noqa: F401 - import (and load libc) now, not after pivot_root
    return PreparedFilter(program, flags, notify_used)


def load_prepared(prepared: PreparedFilter) -> int | None:
    """Install a prepared filter in the calling process (all its threads with
    SECCOMP_FILTER_FLAG_TSYNC).  Opens no file and imports nothing new.

    Returns the seccomp notify fd (close-on-exec, owned by the caller) when a rule
    uses SCMP_ACT_NOTIFY, else None.  Every later syscall is filtered: call it as
    late as possible before execve.  Without no_new_privs the kernel requires
    CAP_SYS_ADMIN (load before dropping capabilities in that case).
    """
    rc = _seccomp_set_filter(prepared.program, prepared.flags)
    return rc if prepared.notify else None


def _raw_seccomp(flags: int, program: bytes | None) -> tuple[int, int]:
    """(return value, errno) of seccomp(SECCOMP_SET_MODE_FILTER, flags, program), via syscalls.py."""
    from . import syscalls

    return syscalls.seccomp_set_mode_filter(flags, program)


def _seccomp_set_filter(program: bytes, flags: int) -> int:
    rc, err = _raw_seccomp(flags, program)
    if rc < 0:
        hint = " (needs no_new_privs or CAP_SYS_ADMIN)" if err == 13 else ""  # EACCES
        raise SetupError(f"error loading seccomp filter into kernel: {posix.strerror(err)}{hint}")
    if rc > 0 and not flags & _FLAG_NEW_LISTENER:
        # TSYNC without a listener returns the id of a thread it could not synchronise
        raise SetupError(f"error loading seccomp filter into kernel: thread {rc} could not be synchronised")
    return rc
