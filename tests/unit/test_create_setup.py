"""How create hands stage 1 its work: when stage 1 is forked, and the "setup" message (ocipy/prefork.py, ocipy/create.py, ocipy/init.py)."""

import json
import os
import struct

import pytest

from ocipy import defaults, prefork
from ocipy.create import setup_message
from ocipy.errors import SetupError
from ocipy.init import context_from_setup
from ocipy.sync import PACKET, Channel, split_packets


def _config(*namespaces):
    config = defaults.default_config(terminal=False, args=["true"])
    config["linux"]["namespaces"] = list(namespaces)
    return config


@pytest.mark.parametrize("namespaces", [
    [{"type": "pid"}, {"type": "mount"}, {"type": "network"}],
    [{"type": "pid"}, {"type": "cgroup"}],
    [{"type": "network", "path": "/proc/1/ns/net"}, {"type": "mount"}],  # a pod's shared netns
])
def test_stage1_forks_pid1_into_the_cgroup_while_it_keeps_the_hosts_credentials(namespaces):
    assert prefork.forks_into_cgroup(_config(*namespaces))


@pytest.mark.parametrize("namespaces", [
    [{"type": "pid"}, {"type": "user"}],
    [{"type": "pid"}, {"type": "user", "path": "/proc/1/ns/user"}],
    [{"type": "pid"}, {"type": "cgroup", "path": "/proc/1/ns/cgroup"}],
])
def test_a_user_namespace_or_a_joined_cgroup_namespace_forks_stage1_into_the_cgroup(namespaces):
    assert not prefork.forks_into_cgroup(_config(*namespaces))


@pytest.mark.parametrize("config", [None, {}, {"linux": None}, {"linux": {"namespaces": "pid"}}, [1, 2]])
def test_an_unreadable_config_leaves_the_error_to_validation(config):
    assert prefork.forks_into_cgroup(config)


def _setup(config, *, console, hold=False):
    return setup_message(container_id="c1", config=config, bundle="/b", rootfs="/b/rootfs",
                         cgroup_paths={"memory": "/sys/fs/cgroup/memory/x", "unified": "/sys/fs/cgroup/unified/x"},
                         cgroup_join="fork", console=console, hold=hold, preserve_fds=2, no_pivot=True,
                         no_new_keyring=False)


def test_stage1_builds_its_context_from_the_setup_message():
    config = _config({"type": "pid"}, {"type": "cgroup"})
    config["annotations"] = {"a": "b"}
    r, w = os.pipe()
    try:
        ctx = context_from_setup(_setup(config, console=True), [r, w], channel=None)
        assert (ctx.container_id, ctx.bundle, ctx.rootfs) == ("c1", "/b", "/b/rootfs")
        assert (ctx.fifo_fd, ctx.console_fd, ctx.hold_fd) == (r, w, None)
        assert not os.get_inheritable(r) and not os.get_inheritable(w)
        assert ctx.cgroup.v2_dir() == "/sys/fs/cgroup/unified/x" and ctx.cgroup_join == "fork"
        assert ctx.spec.process.args == ["true"] and ctx.annotations == {"a": "b"}
        assert ctx.ns_plan.is_new("pid") and ctx.ns_plan.new_cgroup
        assert (ctx.preserve_fds, ctx.no_pivot, ctx.no_new_keyring) == (2, True, False)
    finally:
        os.close(r)
        os.close(w)


def test_the_hold_fd_comes_last():
    r, w = os.pipe()
    try:
        ctx = context_from_setup(_setup(_config({"type": "pid"}), console=False, hold=True), [r, w], channel=None)
        assert (ctx.fifo_fd, ctx.console_fd, ctx.hold_fd) == (r, None, w)
    finally:
        os.close(r)
        os.close(w)


def test_a_setup_without_its_fds_is_refused():
    with pytest.raises(SetupError, match="unexpected message"):
        context_from_setup(_setup(_config({"type": "pid"}), console=True), [5], channel=None)


def test_split_packets():
    data = bytes(range(256)) * 600  # 153600 bytes
    packets = split_packets(data)
    assert [len(p) for p in packets] == [PACKET, PACKET, len(data) - 2 * PACKET]
    assert b"".join(packets) == data


def test_a_message_longer_than_a_packet_arrives_whole_with_its_fds():
    """A config with a large seccomp profile does not fit one SEQPACKET packet."""
    a, b = Channel.pair()
    r, w = os.pipe()
    try:
        msg = {"type": "setup", "config": {"blob": "x" * (3 * PACKET)}}
        a.send(msg, [r])
        a.send({"type": "next"})
        got, fds = b.recv()
        assert got == msg and len(fds) == 1
        assert os.path.sameopenfile(fds[0], r)
        os.close(fds[0])
        assert b.recv() == ({"type": "next"}, [])
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()


def test_a_sender_dying_halfway_reads_as_eof():
    a, b = Channel.pair()
    data = b'{"type": "setup", "x": "' + b"y" * (2 * PACKET) + b'"}'
    a.sock.send(struct.pack("=cQ", b"\0", len(data)))
    a.sock.send(data[:PACKET])
    a.close()
    assert b.recv() == (None, [])
    b.close()


def _bundle_dir(tmp_path, config) -> str:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_stage1_is_forked_with_the_config_it_was_forked_for(tmp_path):
    config = _config({"type": "pid"}, {"type": "mount"})
    stage1 = prefork.start(_bundle_dir(tmp_path, config))
    pid = stage1.pid
    try:
        assert pid > 0 and stage1.config == config
    finally:
        stage1.abandon()
    # abandoned, it saw its channel close, exited and was reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not os.path.exists(f"/proc/{pid}")


def test_create_takes_stage1_once(tmp_path):
    stage1 = prefork.start(_bundle_dir(tmp_path, _config({"type": "pid"})))
    channel, pid, config = stage1.take()
    try:
        assert stage1.take()[:2] == (None, 0)
        stage1.abandon()  # taken: not its to end
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still waiting for "setup"
    finally:
        channel.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # a closed channel before "setup": a quiet exit


def test_a_user_namespace_config_forks_no_stage1_yet(tmp_path):
    config = _config({"type": "pid"}, {"type": "user"})
    stage1 = prefork.start(_bundle_dir(tmp_path, config))
    assert (stage1.channel, stage1.pid, stage1.config) == (None, 0, config)


def test_an_unreadable_config_is_left_for_create_to_report(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    stage1 = prefork.start(str(tmp_path))
    try:
        assert stage1.pid > 0 and stage1.config is None
    finally:
        stage1.abandon()


def test_run_asks_the_config_prefork_read_whether_it_wants_a_terminal(tmp_path):
    """`run` takes the pty itself for process.terminal: it reads that from the config the CLI's
    prefork parsed (no second read), or from the bundle for a library caller."""
    from ocipy.foreground import _wants_terminal

    read = prefork.Stage1(None, 0, {"process": {"terminal": True}})
    assert _wants_terminal(str(tmp_path), read)  # the bundle has no config.json: not read again
    assert not _wants_terminal(str(tmp_path), prefork.Stage1(None, 0, None))
    assert not _wants_terminal(str(tmp_path), None)
    (tmp_path / "config.json").write_text(json.dumps({"process": {"terminal": True}}))
    assert _wants_terminal(str(tmp_path), None)
    (tmp_path / "config.json").write_text(json.dumps({"process": "not an object"}))
    assert not _wants_terminal(str(tmp_path), None)


# --- stage 1 kept off the parent's CPU until the setup (prefork.keep_apart, cpu_rejoin) -----------
@pytest.mark.parametrize("text, cpus", [("0", {0}), ("0-1\n", {0, 1}), ("0-3,8-9,12", {0, 1, 2, 3, 8, 9, 12})])
def test_parse_cpu_list(text, cpus):
    assert prefork.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "0-", "1,,2"])
def test_parse_cpu_list_refuses_what_is_not_a_list(text):
    with pytest.raises(ValueError):
        prefork.parse_cpu_list(text)


def _our_cpu() -> int:
    with open("/proc/thread-self/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[36])


def _child_waiting():
    """A forked child blocked on a pipe until the returned function releases and reaps it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)

    def release():
        os.close(w)
        os.waitpid(pid, 0)

    return pid, release


@pytest.mark.parametrize("cpus, online, runnable, apart", [
    ({0, 1}, 2, 2, True),  # us and the child, one CPU each
    ({0, 1}, 2, 3, True),  # and one passing task
    ({0, 1, 2, 3}, 4, 5, True),
    ({0, 1}, 2, 4, False),  # no CPU to spare: the scheduler shares them out
    ({0, 1, 2, 3}, 4, 6, False),
    ({0}, 1, 1, False),  # one CPU
    ({1}, 2, 1, False),  # a narrowed caller: cpu_rejoin could not give back just that
    ({0, 1}, 4, 1, False),
    ({0, 1}, None, 1, False),  # online CPUs unknown
])
def test_spare_cpu(cpus, online, runnable, apart):
    assert prefork.spare_cpu(cpus, online, runnable) is apart


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed on 2 CPUs or more")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) != os.cpu_count(), reason="needs a process allowed on every online CPU")
def test_keep_apart_moves_the_child_off_our_cpu_only(monkeypatch):
    monkeypatch.setattr(prefork, "_runnable_now", lambda: 1)  # an idle machine, whatever runs beside this test
    cpus = os.sched_getaffinity(0)
    ours = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # so that "our CPU" holds from the decision to the check
    try:
        apart = prefork.away_from_us(cpus)
        assert apart == cpus - {min(cpus)}
        pid, release = _child_waiting()
        try:
            assert prefork.keep_apart(pid, apart)
            assert os.sched_getaffinity(pid) == cpus - {min(cpus)}
        finally:
            release()
    finally:
        os.sched_setaffinity(0, ours)


def test_keep_apart_leaves_the_child_alone_without_a_spare_cpu(monkeypatch):
    """Us, the child to come and as many others as CPUs: the scheduler shares them out."""
    cpus = os.sched_getaffinity(0)
    monkeypatch.setattr(prefork, "_runnable_now", lambda: 1 + len(cpus))
    assert prefork.away_from_us(cpus) is None


def _in_a_child(work):
    """What work() returns when a forked child of ours calls it (as JSON, through a pipe);
    we wait on the pipe meanwhile."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.write(w, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1000).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(got)


def _stage1_stepping_aside(cpus, *, child_cpu=None) -> tuple[set, bool]:
    """Fork a child while we run on CPU min(cpus) only (the child is born there too), let it
    first move to `child_cpu` if given, then call step_aside(cpus) as stage 1 does; return
    (its affinity after, what step_aside returned). We wait on a pipe meanwhile, still on
    that CPU as the kernel sees it."""

    def stage1():
        if child_cpu is not None:
            os.sched_setaffinity(0, {child_cpu})
        moved = prefork.step_aside(cpus)
        return sorted(os.sched_getaffinity(0)), moved

    ours = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        affinity, moved = _in_a_child(stage1)
    finally:
        os.sched_setaffinity(0, ours)
    return set(affinity), moved


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed on 2 CPUs or more")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) != os.cpu_count(), reason="needs a process allowed on every online CPU")
def test_stage1_born_on_its_parents_cpu_moves_itself_off_it(monkeypatch):
    monkeypatch.setattr(prefork, "_runnable_now", lambda: 2)  # the two of us: an idle machine otherwise
    cpus = os.sched_getaffinity(0)
    assert _stage1_stepping_aside(cpus) == (cpus - {min(cpus)}, True)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed on 2 CPUs or more")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) != os.cpu_count(), reason="needs a process allowed on every online CPU")
def test_stage1_on_another_cpu_than_its_parent_stays_there(monkeypatch):
    monkeypatch.setattr(prefork, "_runnable_now", lambda: 2)
    cpus = os.sched_getaffinity(0)
    other = max(cpus)
    assert _stage1_stepping_aside(cpus, child_cpu=other) == ({other}, False)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed on 2 CPUs or more")
def test_stage1_stays_on_its_parents_cpu_without_a_spare_one(monkeypatch):
    cpus = os.sched_getaffinity(0)
    monkeypatch.setattr(prefork, "_runnable_now", lambda: len(cpus) + 2)
    assert _stage1_stepping_aside(cpus) == ({min(cpus)}, False)


def test_runnable_now_and_current_cpu_read_this_kernel():
    assert prefork._runnable_now() >= 1  # this test runs
    assert prefork._current_cpu() in os.sched_getaffinity(0)
    assert prefork._cpu_of(os.getpid()) in os.sched_getaffinity(0)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed on 2 CPUs or more")
def test_cpu_rejoin_gives_a_kept_apart_child_every_cpu_back():
    cpus = os.sched_getaffinity(0)

    def stage1():  # kept apart as keep_apart would, then rejoins
        rejoin = prefork.cpu_rejoin(cpus)
        os.sched_setaffinity(0, {min(cpus)})
        rejoin()
        return sorted(os.sched_getaffinity(0))

    assert _in_a_child(stage1) == sorted(cpus)
