"""The five capability sets of process.capabilities.

Everything goes through syscalls.py by number: the bounding and ambient sets with
prctl(2), effective/permitted/inheritable with capset(2). (python-prctl knows no
ambient set nor names past CAP_BPF, and importing it costs ~1 ms.)
"""

from . import syscalls


def mask(names, numbers: dict[str, int]) -> int:
    """Pure: capability names -> a 64-bit mask. Names this kernel lacks are skipped, as runc does."""
    last = syscalls.last_cap()
    out = 0
    for name in names or []:
        n = numbers.get(name)
        if n is not None and n <= last:
            out |= 1 << n
    return out


def drop_bounding(keep: int) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP)."""
    for n in range(syscalls.last_cap() + 1):
        if not keep & (1 << n):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, n, what=f"drop capability {n} from the bounding set")


def apply_sets(effective: int, permitted: int, inheritable: int, ambient: int) -> None:
    """After the user switch: set E/P/I exactly, then raise the ambient ones."""
    syscalls.capset(effective, permitted, inheritable)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL, what="clear ambient capabilities")
    for n in range(syscalls.last_cap() + 1):
        if ambient & (1 << n):
            # The kernel refuses an ambient capability not in both permitted and inheritable:
            # runc ignores that case, and so do we.
            try:
                syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, n, what=f"raise ambient capability {n}")
            except PermissionError:
                pass
