"""Split an OCI mount's `options` list into what mount(2) and mount_setattr(2) take.

Pure functions only: no syscall, no file access. The split follows the table in
config.md#linux-mount-options and the behaviour runc has shipped for years:

* filesystem-independent options ("ro", "nosuid", "relatime", ...) become MS_* bits
  in `flags`; their negations ("rw", "suid", ...) clear the bit and are remembered
  in `clear_flags` (a later option wins over an earlier one);
* propagation options ("private", "rslave", ...) become a list of MS_* values that
  are applied, in order, with separate mount(2) calls after the mount itself;
* recursive attributes ("rro", "rnosuid", ...) become MOUNT_ATTR_* bits for one
  mount_setattr(AT_RECURSIVE) call;
* "tmpcopyup", "idmap" and "ridmap" are runtime extensions, never passed to the kernel;
* everything else is filesystem specific and joins `data`, comma separated, in order.
"""

from __future__ import annotations

from ocipy.linux import syscalls as sc
from ocipy.record import Record, factory

# mount_setattr(2) attributes (linux/mount.h)
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR__ATIME = 0x00000070
MOUNT_ATTR_RELATIME = 0x00000000
MOUNT_ATTR_NOATIME = 0x00000010
MOUNT_ATTR_STRICTATIME = 0x00000020
MOUNT_ATTR_NODIRATIME = 0x00000080
MOUNT_ATTR_IDMAP = 0x00100000
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000

MS_I_VERSION = 1 << 23
MS_POSIXACL = 1 << 16

# option -> (clears?, MS_* bit)
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL),
    "async": (True, sc.MS_SYNCHRONOUS),
    "atime": (True, sc.MS_NOATIME),
    "bind": (False, sc.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, sc.MS_NODEV),
    "diratime": (True, sc.MS_NODIRATIME),
    "dirsync": (False, sc.MS_DIRSYNC),
    "exec": (True, sc.MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, sc.MS_LAZYTIME),
    "loud": (True, sc.MS_SILENT),
    "mand": (False, sc.MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL),
    "noatime": (False, sc.MS_NOATIME),
    "nodev": (False, sc.MS_NODEV),
    "nodiratime": (False, sc.MS_NODIRATIME),
    "noexec": (False, sc.MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, sc.MS_LAZYTIME),
    "nomand": (True, sc.MS_MANDLOCK),
    "norelatime": (True, sc.MS_RELATIME),
    "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosuid": (False, sc.MS_NOSUID),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "rbind": (False, sc.MS_BIND | sc.MS_REC),
    "relatime": (False, sc.MS_RELATIME),
    "remount": (False, sc.MS_REMOUNT),
    "ro": (False, sc.MS_RDONLY),
    "rw": (True, sc.MS_RDONLY),
    "silent": (False, sc.MS_SILENT),
    "strictatime": (False, sc.MS_STRICTATIME),
    "suid": (True, sc.MS_NOSUID),
    "symfollow": (True, sc.MS_NOSYMFOLLOW),
    "sync": (False, sc.MS_SYNCHRONOUS),
}

PROPAGATION_OPTIONS: dict[str, int] = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# option -> (clears?, MOUNT_ATTR_* bit)
RECURSIVE_OPTIONS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME),
    "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}

EXTENSION_OPTIONS = ("tmpcopyup", "idmap", "ridmap")

# the atime family is one 3-bit field in mount_setattr, not independent bits
_ATIME_MODES = (MOUNT_ATTR_RELATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME)

# MS_* bits that only a remount of a bind mount can apply (mount(2) ignores
# them on the first MS_BIND call)
BIND_REMOUNT_MASK = ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT | sc.MS_SILENT) & 0xFFFFFFFF


class MountOptions(Record):
    flags: int = 0
    clear_flags: int = 0
    propagation: list[int] = factory(list)
    data: str = ""
    rec_attr_set: int = 0
    rec_attr_clr: int = 0
    extensions: set[str] = factory(set)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)

    @property
    def is_recursive_bind(self) -> bool:
        return self.flags & (sc.MS_BIND | sc.MS_REC) == (sc.MS_BIND | sc.MS_REC)

    @property
    def has_rec_attrs(self) -> bool:
        return bool(self.rec_attr_set or self.rec_attr_clr)

    @property
    def idmap(self) -> str | None:
        for name in ("ridmap", "idmap"):
            if name in self.extensions:
                return name
        return None

    def as_tuple(self):
        """(flags, clear_flags, propagation_flags, data, (attr_set, attr_clr))."""
        return (self.flags, self.clear_flags, list(self.propagation), self.data, (self.rec_attr_set, self.rec_attr_clr))


def parse_mount_options(options) -> MountOptions:
    """Turn an OCI `options` list into a MountOptions. Never raises on unknown options:
    they are filesystem specific and go to `data` as the spec asks."""
    out = MountOptions()
    data: list[str] = []
    for opt in options or ():
        if opt in FLAG_OPTIONS:
            clears, bit = FLAG_OPTIONS[opt]
            if clears:
                out.flags &= ~bit
                out.clear_flags |= bit
            else:
                out.flags |= bit
                out.clear_flags &= ~bit
        elif opt in PROPAGATION_OPTIONS:
            out.propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt in RECURSIVE_OPTIONS:
            clears, bit = RECURSIVE_OPTIONS[opt]
            if bit in _ATIME_MODES:
                # the atime modes are one 3-bit field: mount_setattr wants the whole
                # field in attr_clr and the new mode in attr_set. Undoing a mode
                # falls back to the kernel default (relatime), except "rnorelatime"
                # which means "update atime every time" (strictatime), as in mount(8).
                if clears:
                    bit = MOUNT_ATTR_STRICTATIME if bit == MOUNT_ATTR_RELATIME else MOUNT_ATTR_RELATIME
                out.rec_attr_set = (out.rec_attr_set & ~MOUNT_ATTR__ATIME) | bit
                out.rec_attr_clr |= MOUNT_ATTR__ATIME
            elif clears:
                out.rec_attr_clr |= bit
                out.rec_attr_set &= ~bit
            else:
                out.rec_attr_set |= bit
                out.rec_attr_clr &= ~bit
        elif opt in EXTENSION_OPTIONS:
            out.extensions.add(opt)
        elif opt == "":
            continue
        else:
            data.append(opt)
    out.data = ",".join(data)
    return out


def split_options(options):
    """The 5-tuple form: (flags, clear_flags, propagation_flags, data, (attr_set, attr_clr))."""
    return parse_mount_options(options).as_tuple()


# statvfs f_flag bits (ST_*) -> MS_* bits for a remount that must keep locked flags
_ST_TO_MS = {
    1: sc.MS_RDONLY,  # ST_RDONLY
    2: sc.MS_NOSUID,  # ST_NOSUID
    4: sc.MS_NODEV,  # ST_NODEV
    8: sc.MS_NOEXEC,  # ST_NOEXEC
    16: sc.MS_SYNCHRONOUS,  # ST_SYNCHRONOUS
    64: sc.MS_MANDLOCK,  # ST_MANDLOCK
    1024: sc.MS_NOATIME,  # ST_NOATIME
    2048: sc.MS_NODIRATIME,  # ST_NODIRATIME
    4096: sc.MS_RELATIME,  # ST_RELATIME
    0x2000: sc.MS_NOSYMFOLLOW,  # ST_NOSYMFOLLOW
}

# flags a user namespace locks on a mount it did not create: a remount must repeat them
LOCKED_FLAGS = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME | sc.MS_NODIRATIME | sc.MS_RELATIME


def statvfs_to_ms(f_flag: int) -> int:
    """Convert os.statvfs().f_flag into the MS_* bits mount(2) understands."""
    out = 0
    for st, ms in _ST_TO_MS.items():
        if f_flag & st:
            out |= ms
    return out


def remount_flags(wanted: int, cleared: int, current_f_flag: int) -> int:
    """Flags for a MS_REMOUNT|MS_BIND of a mount currently carrying `current_f_flag`
    (statvfs): the wanted bits plus every locked bit the config did not ask to clear.
    The atime mode is only carried over when the config names none."""
    current = statvfs_to_ms(current_f_flag) & LOCKED_FLAGS
    atime_bits = sc.MS_NOATIME | sc.MS_RELATIME | sc.MS_STRICTATIME
    if wanted & atime_bits:
        current &= ~atime_bits
    return (wanted | (current & ~cleared)) & BIND_REMOUNT_MASK
