"""ocipy.linux.seccomp_cache: a program is reused only for the same profile, built by the
same files; anything else is a miss, never an error."""

import json
import os
import subprocess
import sys

import pytest

from ocipy.launcher import module_roots
from ocipy.linux import seccomp_cache
from ocipy.linux.seccomp_cache import CACHE_DIR, Built

PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
PROGRAM = bytes(range(16))  # two instructions' worth: the cache does not look inside


@pytest.fixture
def library(tmp_path):
    """A stand-in for the libseccomp file that built the program."""
    path = tmp_path / "libseccomp.so.2"
    path.write_bytes(b"v1")
    return path


def entries(root):
    return sorted((root / CACHE_DIR).glob("seccomp-*.json"))


def test_a_kept_program_comes_back_for_the_same_profile_only(tmp_path, library):
    assert seccomp_cache.lookup(str(tmp_path), PROFILE) is None
    seccomp_cache.store(str(tmp_path), PROFILE, Built(PROGRAM, True, str(library)))
    found = seccomp_cache.lookup(str(tmp_path), PROFILE)
    assert (found.program, found.notify_used, found.library) == (PROGRAM, True, str(library))
    assert seccomp_cache.lookup(str(tmp_path), {**PROFILE, "defaultAction": "SCMP_ACT_LOG"}) is None
    assert oct(os.stat(tmp_path / CACHE_DIR).st_mode & 0o777) == "0o700"


def test_another_profile_under_the_same_index_is_a_miss(tmp_path, library):
    """The file name is only an index (a crc32): the whole key is compared."""
    other = {**PROFILE, "defaultAction": "SCMP_ACT_LOG"}
    seccomp_cache.store(str(tmp_path), other, Built(PROGRAM, False, str(library)))
    [entry] = entries(tmp_path)
    entry.rename(seccomp_cache._entry_path(str(tmp_path), seccomp_cache.key(PROFILE)))
    assert seccomp_cache.lookup(str(tmp_path), PROFILE) is None


def test_a_changed_builder_is_a_miss(tmp_path, library, monkeypatch):
    ld_cache = tmp_path / "ld.so.cache"
    ld_cache.write_bytes(b"a")
    source = tmp_path / "seccomp.py"
    source.write_text("# v1")
    monkeypatch.setattr(seccomp_cache, "_LD_SO_CACHE", str(ld_cache))
    monkeypatch.setattr(seccomp_cache, "_SECCOMP_SOURCE", str(source))
    root = str(tmp_path)
    for changed in (library, ld_cache, source):
        seccomp_cache.store(root, PROFILE, Built(PROGRAM, False, str(library)))
        assert seccomp_cache.lookup(root, PROFILE) is not None
        st = os.stat(changed)
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # as an upgrade would
        assert seccomp_cache.lookup(root, PROFILE) is None, changed
    library.unlink()
    assert seccomp_cache.lookup(root, PROFILE) is None


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # cut short
    lambda text: "not json",
    lambda text: json.dumps({**json.loads(text), "program": PROGRAM.hex()[:-2]}),  # not whole instructions
    lambda text: json.dumps({**json.loads(text), "program": ""}),
    lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "builders"}),
])
def test_a_damaged_entry_is_a_miss(tmp_path, library, damage):
    seccomp_cache.store(str(tmp_path), PROFILE, Built(PROGRAM, False, str(library)))
    [entry] = entries(tmp_path)
    entry.write_text(damage(entry.read_text()))
    assert seccomp_cache.lookup(str(tmp_path), PROFILE) is None


def test_nothing_is_kept_without_the_library_or_a_writable_root(tmp_path, library):
    seccomp_cache.store(str(tmp_path), PROFILE, Built(PROGRAM, False, None))
    assert entries(tmp_path) == []
    not_a_dir = tmp_path / "root"
    not_a_dir.write_text("")
    seccomp_cache.store(str(not_a_dir), PROFILE, Built(PROGRAM, False, str(library)))  # no exception
    assert seccomp_cache.lookup(str(not_a_dir), PROFILE) is None


def test_the_oldest_entries_go_beyond_the_limit(tmp_path, library, monkeypatch):
    monkeypatch.setattr(seccomp_cache, "_MAX_ENTRIES", 2)
    profiles = [{**PROFILE, "defaultErrnoRet": n} for n in range(4)]
    for n, profile in enumerate(profiles):
        seccomp_cache.store(str(tmp_path), profile, Built(PROGRAM, False, str(library)))
        written = seccomp_cache._entry_path(str(tmp_path), seccomp_cache.key(profile))
        os.utime(written, ns=(0, (n + 1) * 10**9))  # ages apart, whatever the filesystem's clock granularity
    kept = [p for p in profiles if seccomp_cache.lookup(str(tmp_path), p) is not None]
    assert kept == profiles[2:] and len(entries(tmp_path)) == 2


_PREPARE = """
import json, sys
sys.path += {roots!r}
from ocipy.linux import seccomp_cache
filt = seccomp_cache.prepare(sys.argv[1], json.loads(sys.argv[2]))
print(json.dumps([filt.program.hex(), filt.flags, filt.notify, "ctypes" in sys.modules or "ocipy.linux.seccomp" in sys.modules]))
"""


def test_prepare_builds_once_then_needs_no_libseccomp(tmp_path):
    """What exec does (and create, across its processes): the second prepare of a profile
    loads neither ctypes, libseccomp nor the builder (seccomp.py), and gives the same program
    and flags."""
    profile = {**PROFILE, "flags": ["SECCOMP_FILTER_FLAG_LOG"], "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-IS", "-c", _PREPARE.format(roots=module_roots()), str(tmp_path), json.dumps(profile)],
                             capture_output=True, text=True, check=True).stdout
        runs.append(json.loads(out))
    (program1, flags1, notify1, built1), (program2, flags2, notify2, built2) = runs
    assert built1 and not built2
    assert (program1, flags1, notify1) == (program2, flags2, notify2)
    assert notify1 and flags1 & 2  # SECCOMP_FILTER_FLAG_LOG; NEW_LISTENER for the notify rule
