"""Unit tests for ocipy.linux.seccomp.

Every test that loads a filter does it in a forked child, which reports back
through a pipe (or by how it dies), so the pytest process itself is never
filtered.  Loading needs CAP_SYS_ADMIN because the filter does not set
no_new_privs itself: these tests run as root but need no namespaces.
"""

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from ocipy.errors import ConfigError, SetupError
from ocipy.linux import seccomp
from shared_paths import CORPUS  # noqa: E402


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading a filter without no_new_privs needs root")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def raw_syscall(name, *args):
    """(return value, errno) of syscall `name` with full 64-bit arguments."""
    nr = seccomp.syscall_number(name)
    assert nr is not None and nr >= 0, name
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return rc, ctypes.get_errno()


def in_child(body, timeout=20):
    """Fork; the child runs body() and sends its JSON-able result back.

    Returns (wait status, {"ok": result} or {"error": text} or None)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            msg = {"ok": body()}
            code = 0
        except BaseException as exc:  # noqa: BLE001 - report everything
            msg = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            os.write(w, json.dumps(msg).encode())
        finally:
            os._exit(code)
    os.close(w)
    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.alarm(timeout)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.close(r)
    data = b"".join(chunks)
    return status, (json.loads(data) if data else None)


def child_result(body):
    status, msg = in_child(body)
    assert msg is not None and "ok" in msg, (status, msg)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return msg["ok"]


def corpus_profile(name):
    with open(os.path.join(CORPUS, name)) as f:
        return json.load(f)["linux"]["seccomp"]


def allow_all_but(*rules, **extra):
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


def try_mkdir(path):
    try:
        os.mkdir(path)
    except OSError as exc:
        return exc.errno
    os.rmdir(path)
    return 0


# --- import cost ---------------------------------------------------------------------


def test_import_is_cheap():
    code = "import sys, ocipy.linux.seccomp; print('pyseccomp' in sys.modules, 'ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- the engines' default profiles ---------------------------------------------------


@pytest.mark.parametrize("config", ["docker-run-d.config.json", "podman-run-d.config.json"])
def test_engine_default_profile_loads_and_exec_works(config):
    profile = corpus_profile(config)
    assert seccomp.validate(profile) == []

    def body():
        seccomp.load(profile)
        os.execv("/bin/true", ["/bin/true"])

    status, msg = in_child(body)
    assert msg is None, msg
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def expected_errno(profile, name):
    """What the profile makes syscall `name` fail with; None when it is allowed."""
    for rule in profile["syscalls"]:
        if name in rule["names"] and not rule.get("args"):
            if rule["action"] == "SCMP_ACT_ALLOW":
                return None
            return rule.get("errnoRet", errno.EPERM)
    return profile.get("defaultErrnoRet", errno.EPERM)


PROBES = {"clone3": (0, 0), "kexec_load": (0, 0, 0, 0), "add_key": (0, 0, 0, 0, 0), "bpf": (99, 0, 0), "getpid": ()}


@pytest.mark.parametrize("config", ["docker-run-d.config.json", "podman-run-d.config.json"])
def test_engine_default_profile_blocks(config):
    profile = corpus_profile(config)

    def body():
        assert seccomp.load(profile) is None
        return {name: raw_syscall(name, *args) for name, args in PROBES.items()}

    got = child_result(body)
    blocked = 0
    for name in PROBES:
        want = expected_errno(profile, name)
        if want is not None:
            assert got[name] == [-1, want], name
            blocked += 1
    assert blocked >= 2
    assert got["getpid"][0] > 0 and got["getpid"][1] == 0


# --- errno actions -------------------------------------------------------------------


def test_errno_default_is_eperm(tmp_path):
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    assert child_result(lambda: (seccomp.load(profile), try_mkdir(str(tmp_path / "d")))[1]) == errno.EPERM


def test_errno_ret_is_returned(tmp_path):
    profile = allow_all_but(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOMEDIUM},
    )

    def body():
        seccomp.load(profile)
        try:
            os.getcwd()
            cwd = 0
        except OSError as exc:
            cwd = exc.errno
        return [try_mkdir(str(tmp_path / "d")), cwd]

    assert child_result(body) == [errno.EROFS, errno.ENOMEDIUM]


def test_default_errno_ret_with_default_errno(tmp_path):
    needed = ["write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
              "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "futex", "close", "getpid",
              "gettid", "sigaltstack"]  # fmt: skip
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EADDRNOTAVAIL,
        "syscalls": [{"names": needed, "action": "SCMP_ACT_ALLOW"}],
    }
    assert child_result(lambda: (seccomp.load(profile), try_mkdir(str(tmp_path / "d")))[1]) == errno.EADDRNOTAVAIL


def test_rule_equal_to_default_is_skipped():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # EPERM == default: skipped
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},  # same
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        ],
    }
    assert seccomp.build_filter(profile) is not None


def test_trace_without_tracer_is_enosys():
    profile = allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_TRACE"})
    assert child_result(lambda: (seccomp.load(profile), raw_syscall("getpgid", 0))[1]) == [-1, errno.ENOSYS]


def test_log_allows():
    profile = allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_LOG"}, flags=["SECCOMP_FILTER_FLAG_LOG"])
    assert child_result(lambda: (seccomp.load(profile), raw_syscall("getpgid", 0))[1]) == [os.getpgid(0), 0]


# --- killing actions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"]
)
def test_kill_actions_end_in_sigsys(action):
    profile = allow_all_but({"names": ["getcwd"], "action": action})

    def body():
        seccomp.load(profile)
        os.getcwd()
        return "survived"

    status, msg = in_child(body)
    assert msg is None, msg
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, status


def test_kill_default_action_allows_only_listed():
    # SCMP_ACT_KILL_PROCESS by default; only what the child needs to write and exit
    needed = ["write", "exit_group", "getpid", "rt_sigprocmask", "rt_sigaction", "brk", "mmap", "munmap"]
    profile = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"names": needed, "action": "SCMP_ACT_ALLOW"}]}

    def body():
        seccomp.load(profile)
        raw_syscall("getppid")
        return "survived"

    status, msg = in_child(body)
    assert msg is None, msg
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


# --- argument filters ----------------------------------------------------------------

MARK = errno.EXDEV  # errno a matching getpgid() returns; unmatched ones run for real


def matches(args, *values_sets):
    """Load a filter on getpgid with `args`; which of values_sets does it match?"""
    profile = allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK, "args": args})

    def body():
        seccomp.load(profile)
        return [raw_syscall("getpgid", *vals) == (-1, MARK) for vals in values_sets]

    return child_result(body)


BIG = 1 << 40  # beyond 32 bits: compared as 64-bit values
TOP = (1 << 64) - 1


@pytest.mark.parametrize(
    "op,value,hit,miss",
    [
        ("SCMP_CMP_NE", 5, [4, 6, BIG + 5, TOP], [5]),
        ("SCMP_CMP_LT", 5, [0, 4], [5, 6, BIG, TOP]),
        ("SCMP_CMP_LE", 5, [0, 4, 5], [6, BIG, TOP]),
        ("SCMP_CMP_EQ", 5, [5], [4, 6, BIG + 5]),
        ("SCMP_CMP_EQ", BIG + 5, [BIG + 5], [5, BIG]),
        ("SCMP_CMP_GE", 5, [5, 6, BIG, TOP], [0, 4]),
        ("SCMP_CMP_GT", 5, [6, BIG, TOP], [0, 4, 5]),
    ],
)
def test_operators(op, value, hit, miss):
    got = matches([{"index": 0, "value": value, "op": op}], *[[v] for v in hit + miss])
    assert got == [True] * len(hit) + [False] * len(miss)


def test_operator_masked_eq():
    # value is the mask, valueTwo the expected value (runc/libseccomp order)
    arg = {"index": 0, "value": 0xF0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}
    hit, miss = [0x30, 0x3F, 0x130, BIG + 0x35], [0x20, 0x0, 0xF0, 0x40]
    assert matches([arg], *[[v] for v in hit + miss]) == [True] * len(hit) + [False] * len(miss)


def test_masked_eq_without_value_two_means_zero():
    # docker's clone rule: allow only when no CLONE_NEW* bit is set
    arg = {"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}
    assert matches([arg], [0x11], [0x10000000 | 0x11]) == [True, False]


def test_conditions_on_different_indexes_are_anded():
    args = [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]
    assert matches(args, [5, 9], [5, 8], [4, 9]) == [True, False, False]


def test_conditions_on_same_index_become_separate_rules():
    # runc: two conditions on one index -> one rule each, so they are ORed
    args = [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]
    assert matches(args, [5], [7], [6]) == [True, True, False]
    args = [{"index": 0, "value": 3, "op": "SCMP_CMP_GE"}, {"index": 0, "value": 1, "op": "SCMP_CMP_LE"}]
    assert matches(args, [0], [1], [2], [3], [BIG]) == [True, True, False, True, True]


# --- names, actions, validation ------------------------------------------------------


def test_unknown_syscall_name_is_skipped(tmp_path):
    profile = allow_all_but(
        {"names": ["no_such_syscall_ocipy", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}
    )
    assert child_result(lambda: (seccomp.load(profile), try_mkdir(str(tmp_path / "d")))[1]) == errno.EROFS


def test_other_arch_syscall_is_accepted():
    # socketcall does not exist on x86_64 but does on x86: libseccomp handles it
    profile = allow_all_but(
        {"names": ["socketcall", "getpgid"], "action": "SCMP_ACT_ERRNO"},
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    )
    assert child_result(lambda: (seccomp.load(profile), raw_syscall("getpgid", 0))[1]) == [-1, errno.EPERM]


def test_unknown_action_errors_clearly():
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}, {"names": ["getcwd"], "action": "SCMP_ACT_FOO"})
    with pytest.raises(ConfigError, match=r'/linux/seccomp/syscalls/1/action: "SCMP_ACT_FOO" is not a seccomp action'):
        seccomp.build_filter(profile)
    with pytest.raises(ConfigError, match="is not a seccomp action"):
        seccomp.build_filter({"defaultAction": "SCMP_ACT_NOPE"})


def test_validate_messages():
    profile = {
        "defaultAction": "SCMP_ACT_KILL",
        "defaultErrnoRet": 5,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_BOGUS"],
        "listenerMetadata": "x",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": [], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_LOG", "errnoRet": 3},
            {"names": ["getcwd"], "action": "SCMP_ACT_FOO"},
            {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_XX"}]},
            {"names": ["write"], "action": "SCMP_ACT_NOTIFY"},
        ],
    }
    p = "/linux/seccomp"
    assert seccomp.validate(profile) == [
        f'{p}/defaultErrnoRet: errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not "SCMP_ACT_KILL"',
        f'{p}/architectures/1: "SCMP_ARCH_Z80" is not a seccomp architecture',
        f'{p}/flags/1: "SECCOMP_FILTER_FLAG_BOGUS" is not a seccomp flag',
        f"{p}/listenerMetadata: must not be set when listenerPath is not set",
        f"{p}/syscalls/1/names: must be an array of at least one syscall name",
        f'{p}/syscalls/2/errnoRet: errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not "SCMP_ACT_LOG"',
        f'{p}/syscalls/3/action: "SCMP_ACT_FOO" is not a seccomp action',
        f"{p}/syscalls/4/args/0/index: 6 is not a syscall argument index (0-5)",
        f'{p}/syscalls/4/args/0/op: "SCMP_CMP_XX" is not a seccomp operator',
        f"{p}/syscalls/5/names: SCMP_ACT_NOTIFY cannot be used for the write syscall",
        f"{p}/listenerPath: seccomp listenerPath is not set but SCMP_ACT_NOTIFY is used",
    ]


def test_validate_accepts_spec_example_and_corpus():
    example = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert seccomp.validate(example) == []
    assert seccomp.validate(corpus_profile("podman-run-t.config.json")) == []
    assert seccomp.validate(corpus_profile("docker-run-t.config.json")) == []


def test_validate_survives_wrong_types():
    assert seccomp.validate([]) == ["/linux/seccomp: must be an object"]
    got = seccomp.validate(
        {"defaultAction": "SCMP_ACT_ALLOW", "flags": [["x"]], "syscalls": [3, {"names": "read", "action": 1, "args": {}}]}
    )
    assert got == [
        "/linux/seccomp/flags/0: \"['x']\" is not a seccomp flag",
        "/linux/seccomp/syscalls/0: must be an object",
        "/linux/seccomp/syscalls/1/names: must be an array of at least one syscall name",
        '/linux/seccomp/syscalls/1/action: "1" is not a seccomp action',
        "/linux/seccomp/syscalls/1/args: must be an array",
    ]


def test_notify_default_action_refused():
    with pytest.raises(ConfigError, match="SCMP_ACT_NOTIFY cannot be used as default action"):
        seccomp.build_filter({"defaultAction": "SCMP_ACT_NOTIFY"})


# --- architectures and flags ---------------------------------------------------------


def test_arch_unknown_to_libseccomp_errors():
    features = seccomp.supported_features()
    missing = [a for a in seccomp.ARCHITECTURES if a not in features["archs"]]
    if not missing:
        pytest.skip("this libseccomp knows every architecture in the spec")
    with pytest.raises(ConfigError, match=f'"{missing[0]}" is not supported by libseccomp'):
        seccomp.build_filter({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [missing[0]]})


def test_supported_flags_load():
    features = seccomp.supported_features()
    flags = features["supportedFlags"]
    assert set(flags) <= set(features["knownFlags"]) == set(seccomp.FLAGS)
    profile = allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}, flags=flags)
    assert child_result(lambda: (seccomp.load(profile), raw_syscall("getpgid", 0))[1]) == [-1, errno.EPERM]


def test_unsupported_flag_errors_clearly(monkeypatch):
    monkeypatch.setitem(seccomp._flag_cache, 1 << 2, False)  # SECCOMP_FILTER_FLAG_SPEC_ALLOW
    with pytest.raises(SetupError, match="seccomp flag SECCOMP_FILTER_FLAG_SPEC_ALLOW is not supported by this kernel"):
        seccomp.build_filter({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]})
    assert "SECCOMP_FILTER_FLAG_SPEC_ALLOW" not in seccomp.supported_features()["supportedFlags"]


def test_wait_killable_recv_with_notify_loads():
    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" not in seccomp.supported_features()["supportedFlags"]:
        pytest.skip("kernel older than 6.0")
    profile = allow_all_but(
        {"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"},
        flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
        listenerPath="/x",
    )
    fd = child_result(lambda: seccomp.load(profile))
    assert isinstance(fd, int) and fd > 2
    # without a listener the flag is dropped (the kernel would refuse it alone)
    profile = allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}, flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    assert child_result(lambda: (seccomp.load(profile), raw_syscall("getpgid", 0))[1]) == [-1, errno.EPERM]


def test_tsync_filters_other_threads(tmp_path):
    import threading

    profile = allow_all_but(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
        flags=["SECCOMP_FILTER_FLAG_TSYNC"],
    )

    def body():
        loaded, result = threading.Event(), []
        thread = threading.Thread(target=lambda: (loaded.wait(10), result.append(try_mkdir(str(tmp_path / "t")))))
        thread.start()
        seccomp.load(profile)
        loaded.set()
        thread.join(10)
        return result

    assert child_result(body) == [errno.EROFS]


def test_tsync_with_notify_loads():
    profile = allow_all_but(
        {"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"}, flags=["SECCOMP_FILTER_FLAG_TSYNC"], listenerPath="/x"
    )
    fd = child_result(lambda: seccomp.load(profile))
    assert isinstance(fd, int) and fd > 2


def test_prepare_then_load_prepared_without_any_files(tmp_path):
    # init.py prepares before pivot_root and loads after: nothing may be opened then
    empty = tmp_path / "empty"
    empty.mkdir()
    profile = allow_all_but(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
        {"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"},
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
    )
    prepared = seccomp.prepare(profile)
    assert prepared.notify and len(prepared.program) % 8 == 0

    def body():
        ready = seccomp.prepare(profile)
        os.chroot(str(empty))
        os.chdir("/")
        events = []
        sys.addaudithook(lambda event, _: events.append(event) if event in ("open", "import", "ctypes.dlopen") else None)
        fd = seccomp.load_prepared(ready)
        return [fd, events, try_mkdir("/d")]

    fd, events, err = child_result(body)
    assert fd > 2 and err == errno.EROFS
    assert events == []  # load_prepared opened nothing and imported nothing


def test_load_does_not_set_no_new_privs():
    def body():
        seccomp.load(allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"}))
        with open("/proc/self/status") as f:
            return [line.split()[1] for line in f if line.startswith(("NoNewPrivs:", "Seccomp:"))]

    assert child_result(body) == ["0", "2"]  # no_new_privs off, seccomp mode 2 (filter)


def test_features_shape():
    f = seccomp.supported_features()
    assert f["enabled"] is True
    assert f["actions"] == sorted(seccomp.ACTIONS)
    assert f["operators"] == sorted(seccomp.OPERATORS)
    with open(os.path.join(CORPUS, "runc-features.json")) as fh:
        runc = json.load(fh)["linux"]["seccomp"]
    assert runc["actions"] == f["actions"] and runc["operators"] == f["operators"]
    assert set(runc["archs"]) <= set(f["archs"])
    assert "SECCOMP_FILTER_FLAG_LOG" in f["supportedFlags"]
    assert seccomp.libseccomp_version().count(".") == 2


# --- ENOSYS stub for syscalls newer than the profile ---------------------------------

x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64", reason="raw x86_64 syscall numbers")
NR_FCHMODAT2 = 452  # x86_64; newer than libseccomp 2.5.4 and the corpus profiles
NR_UNUSED = 1000
_X32 = 0x40000000  # x32 syscalls arrive as x86_64 with this bit set


def raw_nr(nr, *args):
    ctypes.set_errno(0)
    rc = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return [rc, ctypes.get_errno()]


@x86_64_only
def test_docker_profile_newer_syscalls_get_enosys():
    profile = corpus_profile("docker-run-d.config.json")  # default EPERM
    assert seccomp.enosys_stub(profile)

    def body():
        seccomp.load(profile)
        return [raw_nr(NR_FCHMODAT2, (1 << 32) - 100, 0, 0, 0x100), raw_nr(NR_UNUSED), raw_nr(_X32 | NR_UNUSED)]

    assert child_result(body) == [[-1, errno.ENOSYS]] * 3


@x86_64_only
def test_stub_only_above_the_last_named_syscall():
    needed = ["write", "exit", "exit_group", "brk", "mmap", "munmap", "rt_sigaction", "rt_sigprocmask", "futex",
              "close", "getpid", "madvise"]  # fmt: skip
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [{"names": needed + ["futex_waitv"], "action": "SCMP_ACT_ALLOW"}],
    }
    nr_waitv = seccomp.syscall_number("futex_waitv")

    def body():
        seccomp.load(profile)
        return {
            "below": raw_nr(seccomp.syscall_number("getppid")),  # not listed, below the last: default
            "last+1": raw_nr(nr_waitv + 1),
            "x32 above": raw_nr(_X32 | NR_UNUSED),
        }

    got = child_result(body)
    assert got["below"] == [-1, errno.EPERM]
    assert got["last+1"] == [-1, errno.ENOSYS]
    assert got["x32 above"] == [-1, errno.ENOSYS]


@x86_64_only
def test_kill_default_gives_enosys_for_unknown_numbers():
    needed = ["write", "exit_group", "getpid", "rt_sigprocmask", "rt_sigaction", "brk", "mmap", "munmap"]
    profile = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"names": needed, "action": "SCMP_ACT_ALLOW"}]}
    assert child_result(lambda: (seccomp.load(profile), raw_nr(NR_UNUSED))[1]) == [-1, errno.ENOSYS]


def test_no_stub_when_permissive_or_already_enosys():
    rules = [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    assert seccomp.enosys_stub({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}) == b""
    assert seccomp.enosys_stub({"defaultAction": "SCMP_ACT_LOG", "syscalls": rules}) == b""
    podman = corpus_profile("podman-run-d.config.json")
    assert podman["defaultErrnoRet"] == errno.ENOSYS and seccomp.enosys_stub(podman) == b""
    docker = corpus_profile("docker-run-d.config.json")
    stub = seccomp.enosys_stub(docker)
    assert len(stub) % 8 == 0 and seccomp.program(docker).startswith(stub)


def test_permissive_default_keeps_unknown_numbers_running():
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    # the kernel itself answers ENOSYS for a number it does not have
    assert child_result(lambda: (seccomp.load(profile), raw_nr(NR_UNUSED))[1]) == [-1, errno.ENOSYS]


# --- SCMP_ACT_NOTIFY -----------------------------------------------------------------


def recv_state(conn):
    """Read the container process state and the fds sent with it."""
    data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
    while chunk := conn.recv(65536):
        data += chunk
    return json.loads(data), fds


def test_notify_fd_reaches_listener_and_agent_answers(tmp_path):
    listener_path = str(tmp_path / "agent.sock")
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/b", "annotations": {"k": "v"}}
    profile = allow_all_but(
        {"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"},
        listenerPath=listener_path,
        listenerMetadata="MKNOD=/dev/null",
    )
    assert seccomp.validate(profile) == []

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(listener_path)
        server.listen(1)
        server.settimeout(15)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                fd = seccomp.load(profile)
                seccomp.send_to_listener(profile["listenerPath"], fd, state, profile["listenerMetadata"])
                answer = raw_syscall("getpgid", 12345)  # blocks until the agent answers
                os.write(w, json.dumps({"fd": fd, "answer": answer}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(15)
                msg, fds = recv_state(conn)
            assert len(fds) == 1
            assert msg == {
                "ociVersion": "1.3.0",
                "fds": ["seccompFd"],
                "pid": 4242,
                "metadata": "MKNOD=/dev/null",
                "state": state,
            }
            notify_fd = fds[0]
            try:
                note = seccomp.notify_receive(notify_fd)
                assert note["pid"] == pid
                assert note["syscall"] == seccomp.syscall_number("getpgid")
                assert note["args"][0] == 12345
                seccomp.notify_respond(notify_fd, note["id"], val=777)
            finally:
                os.close(notify_fd)
            _, status = os.waitpid(pid, 0)
            pid = 0
            report = json.loads(os.read(r, 65536))
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert isinstance(report["fd"], int) and report["fd"] >= 0
    assert report["answer"] == [777, 0]


def test_notify_agent_can_fail_the_syscall(tmp_path):
    listener_path = str(tmp_path / "agent.sock")
    profile = allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_NOTIFY"}, listenerPath=listener_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(listener_path)
        server.listen(1)
        server.settimeout(15)

        def body():
            fd = seccomp.load(profile)
            seccomp.send_to_listener(listener_path, fd, {"pid": os.getpid(), "status": "creating"}, None)
            return raw_syscall("getpgid", 1)

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.write(w, json.dumps(body()).encode())
            finally:
                os._exit(0)
        os.close(w)
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(15)
                msg, fds = recv_state(conn)
            assert "metadata" not in msg and msg["pid"] == pid and msg["fds"] == ["seccompFd"]
            note = seccomp.notify_receive(fds[0])
            seccomp.notify_respond(fds[0], note["id"], error=errno.EOWNERDEAD)
            os.close(fds[0])
            os.waitpid(pid, 0)
            pid = 0
            assert json.loads(os.read(r, 65536)) == [-1, errno.EOWNERDEAD]
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(r)


def test_load_without_notify_returns_none():
    assert child_result(lambda: seccomp.load(allow_all_but({"names": ["getpgid"], "action": "SCMP_ACT_LOG"}))) is None


def test_send_to_listener_fails_clearly(tmp_path):
    r, w = os.pipe()
    try:
        with pytest.raises(SetupError, match="failed to send seccomp state to listenerPath"):
            seccomp.send_to_listener(str(tmp_path / "nobody.sock"), r, {"pid": 1}, None)
    finally:
        os.close(r)
        os.close(w)
