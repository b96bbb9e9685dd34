"""Pure pieces of the lifecycle and the CLI surface (no root needed)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from ocipy import bundle as bundle_mod
from ocipy.cli import normalize_argv
from ocipy.state import write_pid_file
from ocipy.defaults import default_config
from ocipy.errors import OcipyError
from ocipy.linux import capabilities, device_rules, idmap, namespaces, process
from ocipy.linux.capnames import CAPABILITIES
from ocipy.logs import Logger
from ocipy.runtime import parse_signal
from ocipy.state import proc_start_time, validate_id

REPO = Path(__file__).resolve().parents[2]


def ocipy_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ocipy", *args], capture_output=True, text=True, timeout=60, cwd=REPO, **kw)


# --- argv -------------------------------------------------------------------------------
def test_single_dash_long_options_become_double_dash():
    assert normalize_argv(["-root", "/r", "run", "-no-subreaper", "-pid-file=p", "-d", "id"]) == [
        "--root", "/r", "run", "--no-subreaper", "--pid-file=p", "-d", "id",
    ]


def test_arguments_after_double_dash_are_untouched():
    assert normalize_argv(["exec", "id", "--", "sh", "-debug"]) == ["exec", "id", "--", "sh", "-debug"]


@pytest.mark.parametrize("text,num", [("SIGTERM", 15), ("TERM", 15), ("kill", 9), ("9", 9), (10, 10), ("SIGUSR1", 10)])
def test_parse_signal(text, num):
    assert parse_signal(text) == num


def test_parse_signal_rejects_unknown():
    with pytest.raises(OcipyError, match="unknown signal"):
        parse_signal("SIGFOO")


@pytest.mark.parametrize("text", ["SIG_DFL", "SIG_BLOCK", "SIG", "", "RTMIN+1"])
def test_parse_signal_rejects_what_is_not_a_signal_name(text):
    with pytest.raises(OcipyError, match="unknown signal"):
        parse_signal(text)


def test_parse_signal_knows_every_signal_the_signal_module_names():
    assert all(parse_signal(sig.name) == sig.value for sig in signal.Signals)


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "x\n"])
def test_invalid_ids(cid):
    with pytest.raises(OcipyError):
        validate_id(cid)


def test_valid_ids():
    for cid in ("abc", "a-b_c.d+e", "03997c612ae9"):
        validate_id(cid)


# --- plans --------------------------------------------------------------------------------
def test_namespace_plan_splits_new_and_joined_in_join_order():
    ns = [NS(type="mount", path=None), NS(type="network", path="/proc/1/ns/net"), NS(type="user", path="/u"),
          NS(type="pid", path=None), NS(type="time", path=None)]
    plan = namespaces.plan(ns)
    assert plan.join == [("user", "/u"), ("network", "/proc/1/ns/net")]
    assert not plan.new_user
    assert plan.is_new("mount") and plan.is_new("pid") and plan.is_new("time")
    assert not plan.is_new("network") and not plan.is_new("uts")


def test_namespace_plan_leaves_the_cgroup_namespace_to_pid_1():
    plan = namespaces.plan([NS(type="cgroup", path=None), NS(type="user", path=None), NS(type="pid", path=None)])
    assert plan.is_new("cgroup") and plan.new_cgroup
    assert plan.unshare_flags == namespaces.FLAGS["pid"]  # stage 1: neither user (done first) nor cgroup
    assert plan.new_user


def test_idmap_text():
    maps = [NS(container_id=0, host_id=100000, size=65536), NS(container_id=65536, host_id=5, size=1)]
    assert idmap.map_text(maps) == "0 100000 65536\n65536 5 1\n"


def test_implicit_device_rules_follow_the_configs_rules():
    res = {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 5}}
    dev = NS(type="c", major=10, minor=200)
    out = device_rules.effective_resources(res, [dev])
    assert out["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in out["devices"]
    assert out["devices"][-1] == {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]  # the input is not modified
    assert device_rules.effective_resources({"pids": {"limit": 5}}, [dev]) == {"pids": {"limit": 5}}


def test_capability_mask_by_number_including_ones_python_prctl_lacks():
    assert capabilities.mask(["CAP_CHOWN", "CAP_KILL"], CAPABILITIES) == (1 << 0) | (1 << 5)
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    expected = (1 << 40) if last >= 40 else 0
    assert capabilities.mask(["CAP_CHECKPOINT_RESTORE"], CAPABILITIES) == expected


def test_find_executable_messages(tmp_path):
    exe = tmp_path / "prog"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert process.find_executable("prog", [f"PATH=/nonexistent:{tmp_path}"]) == str(exe)
    with pytest.raises(OcipyError, match=r'exec: "nope": executable file not found in \$PATH'):
        process.find_executable("nope", [f"PATH={tmp_path}"])
    with pytest.raises(OcipyError, match="no such file or directory"):
        process.find_executable("/no/such", [])
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(OcipyError, match="permission denied"):
        process.find_executable(str(plain), [])


def test_home_from_passwd_or_slash():
    env = process.env_with_home(["PATH=/bin"], 0)
    assert env[-1].startswith("HOME=")
    assert process.env_with_home(["HOME=/x"], 0) == ["HOME=/x"]


def test_default_config_is_valid():
    bundle_mod.validate_config(default_config())
    bundle_mod.validate_config(default_config(rootless=True))


def test_proc_start_time_of_self_and_missing():
    assert proc_start_time(os.getpid()) > 0
    assert proc_start_time(2**22 + 12345) is None


def test_pid_file_has_no_newline(tmp_path):
    write_pid_file(str(tmp_path / "p"), 1234)
    assert (tmp_path / "p").read_bytes() == b"1234"


def test_json_log_line_shape(tmp_path):
    log = Logger(str(tmp_path / "log"), "json")
    log.error('bad "thing"')
    entry = json.loads((tmp_path / "log").read_text())
    assert entry["level"] == "error" and entry["msg"] == 'bad "thing"' and entry["time"].endswith("Z")


# --- CLI ----------------------------------------------------------------------------------
def test_version_in_runc_format():
    r = ocipy_cli("--version")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ocipy version ") and lines[1] == "spec: 1.3.0"


def test_spec_writes_a_valid_config_and_refuses_to_overwrite(tmp_path):
    assert ocipy_cli("spec", "--bundle", str(tmp_path)).returncode == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    bundle_mod.validate_config(cfg)
    r = ocipy_cli("spec", "--bundle", str(tmp_path))
    assert r.returncode == 1 and "exists" in r.stderr
    rootless = tmp_path / "rl"
    rootless.mkdir()
    assert ocipy_cli("spec", "--rootless", "-b", str(rootless)).returncode == 0
    cfg = json.loads((rootless / "config.json").read_text())
    assert {"type": "user"} in cfg["linux"]["namespaces"] and cfg["linux"]["uidMappings"][0]["hostID"] == os.geteuid()


def test_features_is_valid_and_truthful():
    r = ocipy_cli("features")
    data = json.loads(r.stdout)
    bundle_mod.validate_features(data)
    assert set(data["linux"]["namespaces"]) == set(namespaces.FLAGS)
    assert data["linux"]["cgroup"]["systemd"] is False
    assert "rbind" in data["mountOptions"]


def test_state_of_missing_container(tmp_path):
    r = ocipy_cli("--root", str(tmp_path), "state", "nope")
    assert r.returncode == 1 and r.stderr.strip() == "container does not exist"


def test_state_survives_a_closed_stderr(tmp_path):
    """podman runs `state` with stderr closed: the error must still be an exit code, not a crash."""
    r = subprocess.run(f"{sys.executable} -m ocipy --root {tmp_path} state nope 2>&-", shell=True, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1


@pytest.mark.parametrize("command", ["state", "start", "kill", "delete", "list"])
def test_hot_commands_import_no_schema_netlink_or_click_code(tmp_path, command):
    args = [] if command == "list" else ["nope"]
    code = (
        "import sys, runpy; sys.argv = ['ocipy', '--root', %r, %r, *%r]\n"
        "try:\n    runpy.run_module('ocipy', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'pyroute2', 'referencing', 'click')))"
    ) % (str(tmp_path), command, args)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr


# --- update / events ------------------------------------------------------------------------
def test_parse_bytes():
    from ocipy.update import parse_bytes

    assert parse_bytes("512m") == 512 << 20 and parse_bytes("1G") == 1 << 30 and parse_bytes("1024") == 1024
    assert parse_bytes("-1") == -1 and parse_bytes("2kb") == 2048
    with pytest.raises(OcipyError, match="invalid size"):
        parse_bytes("lots")


def test_resources_from_flags_sets_only_given_fields():
    from ocipy.update import resources_from_flags

    out = resources_from_flags(memory="64m", cpu_quota="5000", pids_limit="10", cpuset_cpus=None)
    assert out == {"memory": {"limit": 64 << 20}, "cpu": {"quota": 5000}, "pids": {"limit": 10}}


def test_merge_treats_docker_zeros_as_no_change():
    from ocipy.update import merge

    old = {"memory": {"limit": 100}, "cpu": {"shares": 512}}
    docker = {"memory": {"limit": 0, "reservation": 0, "swap": 200}, "cpu": {"shares": 0, "quota": 0, "cpus": ""}, "blockIO": {}}
    assert merge(old, docker) == {"memory": {"limit": 100, "swap": 200}, "cpu": {"shares": 512}}
    assert old == {"memory": {"limit": 100}, "cpu": {"shares": 512}}


def test_oom_count():
    from ocipy.events import oom_count

    assert oom_count({"memory": {"raw": {"oom_kill": 3}}}) == 3 and oom_count({}) == 0


# --- the fast path for hot commands ------------------------------------------------------------
def test_fast_path_parses_what_engines_send():
    from ocipy.main import parse_fast

    assert parse_fast(["--root", "/r", "--log", "l.json", "--log-format=json", "state", "c1"]) == (
        {"root": "/r", "log": "l.json", "log_format": "json"}, "state", {}, ["c1"])
    assert parse_fast(["-root=/r", "kill", "--all", "c1", "9"]) == ({"root": "/r"}, "kill", {"all": True}, ["c1", "9"])
    assert parse_fast(["delete", "-f", "c1"]) == ({}, "delete", {"force": True}, ["c1"])
    assert parse_fast(["--systemd-cgroup", "list", "--format=json", "-q"]) == ({"systemd_cgroup": True}, "list", {"format": "json", "quiet": True}, [])
    assert parse_fast(["kill", "c1", "-9"]) == ({}, "kill", {}, ["c1", "-9"])


def test_fast_path_parses_create_and_run_as_engines_send_them():
    from ocipy.main import parse_fast

    assert parse_fast(["--log-format=json", "--log", "l", "create", "--bundle", "/b", "--pid-file", "/p", "--no-pivot",
                       "--preserve-fds", "2", "--console-socket", "/s", "c1"]) == (
        {"log_format": "json", "log": "l"}, "create",
        {"bundle": "/b", "pid_file": "/p", "no_pivot": True, "preserve_fds": 2, "console_socket": "/s"}, ["c1"])
    assert parse_fast(["run", "-d", "-b=/b", "--keep", "-no-subreaper", "c1"]) == (
        {}, "run", {"detach": True, "bundle": "/b", "keep": True, "no_subreaper": True}, ["c1"])


def test_fast_path_parses_exec_as_engines_and_people_send_it():
    from ocipy.main import parse_fast

    # containerd's shim: everything in a process file
    assert parse_fast(["--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "--pid-file", "/p", "c1"]) == (
        {"root": "/r"}, "exec", {"process_file": "/tmp/p.json", "detach": True, "pid_file": "/p"}, ["c1"])
    # a person: repeated options, and the command's own flags after the container id are the command's
    assert parse_fast(["exec", "-t", "-e", "A=1", "--env=B=2", "-g", "10", "--cap", "CAP_KILL", "c1", "sh", "-c", "ls -l"]) == (
        {}, "exec", {"tty": True, "env": ["A=1", "B=2"], "additional_gids": [10], "caps": ["CAP_KILL"]},
        ["c1", "sh", "-c", "ls -l"])


@pytest.mark.parametrize("argv", [
    ["state"], ["state", "a", "b"], ["state", "--help", "c"], ["exec", "--cgroup", "x", "c", "true"], ["--weird", "state", "c"],
    ["exec"], ["exec", "-g", "staff", "c", "id"], ["exec", "--apparmor", "p", "c", "true"], ["pause", "c"],
    ["list", "--format=yaml"], ["--root"], ["--log-format=xml", "state", "c"], [], ["create", "--bundle"],
    ["create", "--preserve-fds", "x", "c"], ["run", "--console-socket", "s"],
])
def test_fast_path_leaves_everything_else_to_click(argv):
    from ocipy.main import parse_fast

    assert parse_fast(argv) is None


def test_fast_and_click_paths_print_the_same(tmp_path):
    fast = ocipy_cli("--root", str(tmp_path), "list", "--format=json")
    slow = subprocess.run([sys.executable, "-c", "from ocipy.cli import main; main()", "--root", str(tmp_path), "list", "--format", "json"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert fast.stdout == slow.stdout == "null\n"
    fast = ocipy_cli("--root", str(tmp_path), "kill", "nope")
    slow = ocipy_cli("--root", str(tmp_path), "kill", "-a", "nope", "KILL", "extra")
    assert fast.returncode == 1 and fast.stderr.strip() == "container does not exist"
    assert slow.returncode == 2  # click's usage error for the extra argument


# --- the exec trampoline (CVE-2019-5736 defence) ---------------------------------------------
def test_trampoline_is_a_minimal_static_elf():
    import struct

    from ocipy.linux.trampoline import elf

    image = elf()
    assert image[:4] == b"\x7fELF" and image[4] == 2  # ELF64
    e_type, e_machine, _, e_entry, e_phoff = struct.unpack_from("<HHIQQ", image, 16)
    assert (e_type, e_machine, e_phoff) == (2, 0x3E, 64) and e_entry == 0x400000 + 120
    p_type, p_flags, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", image, 64)
    assert (p_type, p_flags, p_offset, p_vaddr, p_filesz) == (1, 5, 0, 0x400000, len(image))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the trampoline exists for x86-64 only")
def test_trampoline_execs_its_argv0_with_the_rest_and_is_sealed():
    import fcntl

    from ocipy.linux.trampoline import open_trampoline

    fd = open_trampoline()
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execve(fd, ["/bin/sh", "given-argv0", "-c", 'echo "$0 $GREETING"'], {"GREETING": "hi"})
        os.close(w)
        out = os.read(r, 100)
        os.close(r)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert out == b"given-argv0 hi\n"
        pid = os.fork()
        if pid == 0:
            os.execve(fd, ["/no/such/program", "x"], {})
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 127
    finally:
        os.close(fd)


def test_entry_point_ignores_the_callers_python_variables(tmp_path):
    """dockerd passes its whole environment: a PYTHONPATH with a module named like one of ours
    must not be imported by the installed `ocipy` (ENGINES.md: run isolated from PYTHON*)."""
    entry = REPO / ".venv" / "bin" / "ocipy"
    if not entry.exists():
        pytest.skip(".venv/bin/ocipy is not installed (run .ci/install)")
    (tmp_path / "json.py").write_text("raise SystemExit('the caller PYTHONPATH was used')\n")
    r = subprocess.run([str(entry), "--root", str(tmp_path / "root"), "list"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=60)
    assert r.returncode == 0, r.stderr
