"""Fixtures, markers, the report plugin and the leak checks of the conformance suite.

Markers:
  @requirement("runtime.md#start", "quote of the MUST")   which sentence a test checks
  @runc_deviation("why")   expected failure, only when the runtime's basename is runc
"""

import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
import uuid

import pytest

from . import hostcheck
from .bundle_factory import Bundle, CGROUP_PARENT
from .runtime_driver import Runtime


HERE = os.path.dirname(os.path.abspath(__file__))


# -- options & configuration ---------------------------------------------------
def pytest_addoption(parser):
    g = parser.getgroup("conformance")
    g.addoption("--runtime", default=os.environ.get("OCI_RUNTIME"),
                help="OCI runtime binary under test (default: $OCI_RUNTIME)")
    g.addoption("--report", default=None,
                help="JSON report path (default: conformance/report-<runtime>.json)")


def pytest_configure(config):
    config.addinivalue_line("markers", "requirement(ref, quote): spec sentence checked by the test")
    config.addinivalue_line("markers", "runc_deviation(reason): known runc deviation (xfail on runc)")
    if config.option.help or config.option.collectonly:
        return
    runtime = config.getoption("--runtime")
    if not runtime:
        raise pytest.UsageError("set OCI_RUNTIME=/path/to/runtime (or --runtime)")
    found = shutil.which(runtime)
    if not found:
        raise pytest.UsageError(f"runtime {runtime!r} not found")
    if os.geteuid() != 0:
        raise pytest.UsageError("the conformance suite needs root")
    config._oci_runtime = os.path.abspath(found)
    config._oci_results = []
    config._oci_session_problems = []
    session = uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix=f"ocipy-conformance-{session}-")
    os.chmod(tmp, 0o755)
    config._oci_tmp = tmp
    config._oci_session = session
    for d in hostcheck.parent_dirs():  # leftovers of an earlier aborted run
        hostcheck.rmdir_tree(d)


def runtime_name(config):
    return os.path.basename(getattr(config, "_oci_runtime", "") or "runtime")


def pytest_collection_modifyitems(config, items):
    is_runc = runtime_name(config) == "runc"
    for item in items:
        m = item.get_closest_marker("runc_deviation")
        if m and is_runc:
            item.add_marker(pytest.mark.xfail(reason="runc deviation: " + m.args[0], strict=True))


# -- fixtures -------------------------------------------------------------------
class Harness:
    """What a test uses: a runtime driver with its own --root and bundle factory."""

    def __init__(self, runtime_path, tmpdir, session):
        self.tmp = tmpdir
        self.session = session
        self.rt = Runtime(runtime_path, os.path.join(tmpdir, "state"))
        os.makedirs(self.rt.root, exist_ok=True)
        self._n = 0

    def new_id(self):
        self._n += 1
        return f"ocf-{self.session}-{uuid.uuid4().hex[:6]}-{self._n}"

    def bundle(self, args=("/bin/true",), cid=None):
        cid = cid or self.new_id()
        return Bundle(os.path.join(self.tmp, cid), cid, args)

    # -- common sequences ------------------------------------------------------
    def create(self, b, check=True):
        b.write()
        r = self.rt.create(b.id, b.path)
        if check:
            assert r.ok, f"create failed: {r}"
        return r

    def start(self, b, check=True):
        r = self.rt.start(b.id)
        if check:
            assert r.ok, f"start failed: {r}"
        return r

    def wait_stopped(self, b, timeout=20):
        st = self.rt.wait_status(b.id, "stopped", timeout)
        assert st == "stopped", f"container did not stop (status {st!r})"

    def run(self, b, timeout=20, delete=True):
        """create + start + wait for exit (+ delete); return the container's stdout."""
        self.create(b)
        self.start(b)
        self.wait_stopped(b, timeout)
        if delete:
            r = self.rt.delete(b.id)
            assert r.ok, f"delete failed: {r}"
        return b.read_stdout()

    def run_ok(self, b, script, timeout=20):
        """Run `sh -c script` to completion; return its stdout."""
        b.sh(script)
        return self.run(b, timeout)


@pytest.fixture(scope="session")
def runtime_path(pytestconfig):
    return pytestconfig._oci_runtime


@pytest.fixture
def oci(pytestconfig, runtime_path):
    tmp = tempfile.mkdtemp(prefix="t-", dir=pytestconfig._oci_tmp)
    os.chmod(tmp, 0o755)
    h = Harness(runtime_path, tmp, pytestconfig._oci_session)
    yield h
    h.rt.cleanup()
    problems = _leak_check(h.rt.created, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        pytest.fail("left behind: " + "; ".join(problems), pytrace=False)


def _leak_check(ids, tmp):
    problems = []
    procs = hostcheck.processes_matching([f"{CGROUP_PARENT}/{i}" for i in ids] + [tmp])
    for pid in procs:
        problems.append(f"process {pid} still alive")
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    for m in hostcheck.mounts_matching(tmp):
        problems.append(f"mount {m}")
        subprocess.run(["umount", "-l", m], capture_output=True, timeout=10)
    for cid in ids:
        for d in hostcheck.container_cgroup_dirs(cid):
            for left in hostcheck.rmdir_tree(d):
                problems.append(f"cgroup {left} cannot be removed")
    return problems


# -- report -----------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    results = getattr(item.config, "_oci_results", None)
    if results is None:
        return
    reqs = [(m.args[0], m.args[1] if len(m.args) > 1 else "") for m in item.iter_markers("requirement")]
    entry = next((e for e in results if e["test"] == item.nodeid), None)
    if entry is None:
        entry = {"test": item.nodeid, "requirements": [{"ref": r, "quote": q} for r, q in reqs],
                 "result": "pass", "reason": ""}
        results.append(entry)
    if rep.when == "call" or rep.outcome != "passed":
        result, reason = _classify(rep)
        if rep.when != "call" and result == "fail":
            result = "error"
        if entry["result"] in ("pass",) or result == "error":
            entry["result"], entry["reason"] = result, reason


def _classify(rep):
    if hasattr(rep, "wasxfail"):
        if rep.skipped:
            return "xfail", rep.wasxfail
        return "xpass", rep.wasxfail
    if rep.passed:
        return "pass", ""
    if rep.skipped:
        lr = rep.longrepr
        reason = lr[2] if isinstance(lr, tuple) else str(lr)
        return "skip", reason.replace("Skipped: ", "")
    crash = getattr(rep.longrepr, "reprcrash", None)
    msg = crash.message if crash else str(rep.longrepr)
    first = msg.strip().splitlines()[0] if msg.strip() else msg
    return "fail", first[:400]


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not hasattr(config, "_oci_tmp"):
        return
    problems = config._oci_session_problems
    tmp = config._oci_tmp
    for pid in hostcheck.processes_matching([CGROUP_PARENT + "/ocf-" + config._oci_session, tmp]):
        problems.append(f"process {pid} of a conformance container still alive")
    for m in hostcheck.mounts_matching(tmp):
        problems.append(f"mount {m} still present")
    for d in hostcheck.parent_dirs():
        hostcheck.rmdir_tree(d)
    for d in hostcheck.leftover_conformance_cgroups():
        problems.append(f"cgroup {d} still present")
    shutil.rmtree(tmp, ignore_errors=True)
    if problems and session.exitstatus == 0:
        session.exitstatus = 1
    write_report(config)


def write_report(config):
    runtime = config._oci_runtime
    try:
        version = subprocess.run([runtime, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.splitlines()[:1]
    except (OSError, subprocess.TimeoutExpired):
        version = []
    report = {
        "runtime": runtime,
        "runtime_name": runtime_name(config),
        "runtime_version": version[0] if version else "",
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "session_problems": config._oci_session_problems,
        "results": config._oci_results,
    }
    path = config.getoption("--report") or os.path.join(HERE, f"report-{runtime_name(config)}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    config._oci_report_path = path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not hasattr(config, "_oci_results"):
        return
    from .report import format_table, counts
    tr = terminalreporter
    tr.section(f"OCI conformance: {runtime_name(config)}")
    for line in format_table(config._oci_results, runtime_name(config)):
        tr.write_line(line)
    tr.write_line(counts(config._oci_results))
    for p in config._oci_session_problems:
        tr.write_line(f"LEAK: {p}", red=True)
    path = getattr(config, "_oci_report_path", None) or config.getoption("--report") \
        or os.path.join(HERE, f"report-{runtime_name(config)}.json")
    tr.write_line(f"JSON report: {path}")
