"""mountopts: OCI option strings -> mount(2) flags, propagation, data, mount_setattr attrs."""

import pytest

from ocipy.linux import mountopts as mo
from ocipy.linux import syscalls as sc
from ocipy.linux.mountopts import parse_mount_options, split_options

# every option of config.md#linux-mount-options that maps to a MS_* flag:
# option -> (set bits, cleared bits)
FLAG_CASES = {
    "async": (0, sc.MS_SYNCHRONOUS),
    "atime": (0, sc.MS_NOATIME),
    "bind": (sc.MS_BIND, 0),
    "defaults": (0, 0),
    "dev": (0, sc.MS_NODEV),
    "diratime": (0, sc.MS_NODIRATIME),
    "dirsync": (sc.MS_DIRSYNC, 0),
    "exec": (0, sc.MS_NOEXEC),
    "iversion": (mo.MS_I_VERSION, 0),
    "lazytime": (sc.MS_LAZYTIME, 0),
    "loud": (0, sc.MS_SILENT),
    "mand": (sc.MS_MANDLOCK, 0),
    "noatime": (sc.MS_NOATIME, 0),
    "nodev": (sc.MS_NODEV, 0),
    "nodiratime": (sc.MS_NODIRATIME, 0),
    "noexec": (sc.MS_NOEXEC, 0),
    "noiversion": (0, mo.MS_I_VERSION),
    "nolazytime": (0, sc.MS_LAZYTIME),
    "nomand": (0, sc.MS_MANDLOCK),
    "norelatime": (0, sc.MS_RELATIME),
    "nostrictatime": (0, sc.MS_STRICTATIME),
    "nosuid": (sc.MS_NOSUID, 0),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0),
    "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "relatime": (sc.MS_RELATIME, 0),
    "remount": (sc.MS_REMOUNT, 0),
    "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY),
    "silent": (sc.MS_SILENT, 0),
    "strictatime": (sc.MS_STRICTATIME, 0),
    "suid": (0, sc.MS_NOSUID),
    "symfollow": (0, sc.MS_NOSYMFOLLOW),
    "sync": (sc.MS_SYNCHRONOUS, 0),
}

PROPAGATION_CASES = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# option -> (attr_set, attr_clr)
RECURSIVE_CASES = {
    "rro": (mo.MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, mo.MOUNT_ATTR_RDONLY),
    "rnosuid": (mo.MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, mo.MOUNT_ATTR_NOSUID),
    "rnodev": (mo.MOUNT_ATTR_NODEV, 0),
    "rdev": (0, mo.MOUNT_ATTR_NODEV),
    "rnoexec": (mo.MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, mo.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (mo.MOUNT_ATTR_NODIRATIME, 0),
    "rdiratime": (0, mo.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (mo.MOUNT_ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, mo.MOUNT_ATTR_NOSYMFOLLOW),
    # the atime modes: the whole field is cleared and one mode set
    "rrelatime": (mo.MOUNT_ATTR_RELATIME, mo.MOUNT_ATTR__ATIME),
    "rnoatime": (mo.MOUNT_ATTR_NOATIME, mo.MOUNT_ATTR__ATIME),
    "rstrictatime": (mo.MOUNT_ATTR_STRICTATIME, mo.MOUNT_ATTR__ATIME),
    "ratime": (mo.MOUNT_ATTR_RELATIME, mo.MOUNT_ATTR__ATIME),
    "rnostrictatime": (mo.MOUNT_ATTR_RELATIME, mo.MOUNT_ATTR__ATIME),
    "rnorelatime": (mo.MOUNT_ATTR_STRICTATIME, mo.MOUNT_ATTR__ATIME),
}

SPEC_TABLE = [
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion", "lazytime",
    "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
    "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind", "rdev",
    "rdiratime", "relatime", "remount", "rexec", "rnoatime", "rnodiratime", "rnoexec", "rnorelatime",
    "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared",
    "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave",
    "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable", "idmap", "ridmap",
]


@pytest.mark.parametrize("opt", sorted(FLAG_CASES))
def test_flag_options(opt):
    set_bits, clear_bits = FLAG_CASES[opt]
    o = parse_mount_options([opt])
    assert o.flags == set_bits
    assert o.clear_flags == clear_bits
    assert o.data == "" and o.propagation == [] and not o.has_rec_attrs


@pytest.mark.parametrize("opt", sorted(PROPAGATION_CASES))
def test_propagation_options(opt):
    o = parse_mount_options([opt])
    assert o.propagation == [PROPAGATION_CASES[opt]]
    assert o.flags == 0 and o.data == ""


@pytest.mark.parametrize("opt", sorted(RECURSIVE_CASES))
def test_recursive_options(opt):
    o = parse_mount_options([opt])
    assert (o.rec_attr_set, o.rec_attr_clr) == RECURSIVE_CASES[opt]
    assert o.flags == 0 and o.data == "" and o.has_rec_attrs


def test_every_option_of_the_spec_table_is_known():
    """None of the spec's option names may fall through to the data string."""
    for opt in SPEC_TABLE:
        assert parse_mount_options([opt]).data == "", opt


@pytest.mark.parametrize("opt", ["tmpcopyup", "idmap", "ridmap"])
def test_extensions_never_reach_the_kernel(opt):
    o = parse_mount_options([opt, "size=1m"])
    assert opt in o.extensions and o.data == "size=1m" and o.flags == 0


def test_idmap_property():
    assert parse_mount_options(["bind", "idmap"]).idmap == "idmap"
    assert parse_mount_options(["rbind", "ridmap"]).idmap == "ridmap"
    assert parse_mount_options(["rbind"]).idmap is None


def test_data_passthrough_keeps_order_and_values():
    o = parse_mount_options(["nosuid", "mode=755", "size=65536k", "strictatime", "uid=0", "context=\"x\"", "newinstance"])
    assert o.data == 'mode=755,size=65536k,uid=0,context="x",newinstance'
    assert o.flags == sc.MS_NOSUID | sc.MS_STRICTATIME


def test_devpts_like_runc_spec():
    o = parse_mount_options(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])
    assert o.flags == sc.MS_NOSUID | sc.MS_NOEXEC
    assert o.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_later_option_wins():
    assert parse_mount_options(["ro", "rw"]).flags & sc.MS_RDONLY == 0
    assert parse_mount_options(["ro", "rw"]).clear_flags == sc.MS_RDONLY
    o = parse_mount_options(["rw", "ro"])
    assert o.flags == sc.MS_RDONLY and o.clear_flags == 0
    o = parse_mount_options(["nosuid", "suid", "nosuid"])
    assert o.flags == sc.MS_NOSUID and o.clear_flags == 0
    o = parse_mount_options(["rro", "rrw"])
    assert (o.rec_attr_set, o.rec_attr_clr) == (0, mo.MOUNT_ATTR_RDONLY)
    o = parse_mount_options(["rnoatime", "rrelatime"])
    assert (o.rec_attr_set, o.rec_attr_clr) == (mo.MOUNT_ATTR_RELATIME, mo.MOUNT_ATTR__ATIME)


def test_propagation_order_is_kept():
    o = parse_mount_options(["rbind", "rprivate", "shared", "unbindable"])
    assert o.propagation == [sc.MS_PRIVATE | sc.MS_REC, sc.MS_SHARED, sc.MS_UNBINDABLE]


def test_bind_properties():
    assert parse_mount_options(["bind"]).is_bind and not parse_mount_options(["bind"]).is_recursive_bind
    assert parse_mount_options(["rbind"]).is_recursive_bind
    assert not parse_mount_options(["ro"]).is_bind


def test_docker_bind():
    flags, clear, prop, data, rec = split_options(["rbind", "rprivate"])
    assert flags == sc.MS_BIND | sc.MS_REC and clear == 0 and prop == [sc.MS_PRIVATE | sc.MS_REC] and data == "" and rec == (0, 0)


def test_combination_tuple():
    flags, clear, prop, data, rec = split_options(["rbind", "ro", "nosuid", "rw", "rnodev", "rslave", "foo=bar", "exec"])
    assert flags == sc.MS_BIND | sc.MS_REC | sc.MS_NOSUID
    assert clear == sc.MS_RDONLY | sc.MS_NOEXEC
    assert prop == [sc.MS_SLAVE | sc.MS_REC]
    assert data == "foo=bar"
    assert rec == (mo.MOUNT_ATTR_NODEV, 0)


def test_empty_and_none():
    assert parse_mount_options([]).as_tuple() == (0, 0, [], "", (0, 0))
    assert parse_mount_options(None).as_tuple() == (0, 0, [], "", (0, 0))
    assert parse_mount_options(["", "ro"]).flags == sc.MS_RDONLY


def test_unknown_options_are_data_not_errors():
    assert parse_mount_options(["x-gvfs-show", "errors=remount-ro"]).data == "x-gvfs-show,errors=remount-ro"


def test_statvfs_to_ms():
    # ST_RDONLY|ST_NOSUID|ST_NODEV|ST_NOEXEC|ST_NOATIME|ST_RELATIME
    assert mo.statvfs_to_ms(1 | 2 | 4 | 8 | 1024 | 4096) == sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME | sc.MS_RELATIME
    assert mo.statvfs_to_ms(0) == 0


def test_remount_flags_keep_locked_bits_unless_cleared():
    current = 2 | 4 | 4096  # nosuid, nodev, relatime
    f = mo.remount_flags(sc.MS_RDONLY, 0, current)
    assert f == sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_RELATIME
    # the config asked for "dev": do not carry nodev over
    f = mo.remount_flags(sc.MS_RDONLY, sc.MS_NODEV, current)
    assert f & sc.MS_NODEV == 0
    # an explicit atime mode replaces the current one
    f = mo.remount_flags(sc.MS_NOATIME, 0, current)
    assert f & sc.MS_RELATIME == 0 and f & sc.MS_NOATIME
    # bind/rec never leak into a remount
    assert mo.remount_flags(sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY, 0, 0) == sc.MS_RDONLY
