"""Thin black-box driver for an OCI runtime command line (runc-compatible CLI).

Every call has a timeout so that a broken runtime fails a test instead of
hanging the suite.  Only the operations of runtime.md#operations are used:
state, create, start, kill, delete (plus `--root` to keep state in a temp dir).
"""

import json
import os
import subprocess
import time

TIMEOUT = float(os.environ.get("OCI_CONFORMANCE_TIMEOUT", "30"))


class Result:
    """Outcome of one runtime invocation."""

    def __init__(self, argv, returncode, stdout="", stderr="", timed_out=False):
        self.argv, self.returncode = argv, returncode
        self.stdout, self.stderr, self.timed_out = stdout, stderr, timed_out

    @property
    def ok(self):
        return self.returncode == 0 and not self.timed_out

    def __repr__(self):
        return (f"<{' '.join(self.argv[-3:])}: rc={self.returncode}"
                f"{' TIMEOUT' if self.timed_out else ''} out={self.stdout[-300:]!r} err={self.stderr[-500:]!r}>")


class Runtime:
    def __init__(self, binary, root):
        self.binary = binary
        self.root = root
        self.created = []  # every id we ever passed to create, for teardown

    @property
    def name(self):
        return os.path.basename(self.binary)

    def run(self, *args, timeout=TIMEOUT, stdout=None, stderr=None, stdin=subprocess.DEVNULL,
            pass_fds=()):
        """Run `RUNTIME --root ROOT args...`; capture output unless files are given."""
        argv = [self.binary, "--root", self.root, *args]
        capture_out = stdout is None
        capture_err = stderr is None
        env = dict(os.environ, OCF_RUNTIME_ENV_CANARY="1")  # must not leak into hooks
        try:
            p = subprocess.run(argv, stdin=stdin, env=env,
                               stdout=subprocess.PIPE if capture_out else stdout,
                               stderr=subprocess.PIPE if capture_err else stderr,
                               timeout=timeout, pass_fds=pass_fds)
        except subprocess.TimeoutExpired as e:
            return Result(argv, -1, _txt(e.stdout), _txt(e.stderr), timed_out=True)
        return Result(argv, p.returncode, _txt(p.stdout), _txt(p.stderr))

    # -- operations ---------------------------------------------------------
    def create(self, cid, bundle, stdout=None, stderr=None, pass_fds=()):
        """`create --bundle B ID`.  The container inherits stdout/stderr, so these
        must be files (never pipes we would wait on).  Defaults: files in the bundle."""
        self.created.append(cid)
        own_out = own_err = None
        if stdout is None:
            stdout = own_out = open(os.path.join(bundle, "stdout.txt"), "ab")
        if stderr is None:
            stderr = own_err = open(os.path.join(bundle, "stderr.txt"), "ab")
        try:
            r = self.run("create", "--bundle", bundle, cid, stdout=stdout, stderr=stderr,
                         pass_fds=pass_fds)
        finally:
            for f in (own_out, own_err):
                if f:
                    f.close()
        if own_err is not None:  # runtime errors land in the stderr file
            r.stderr = _read(os.path.join(bundle, "stderr.txt"))
        return r

    def start(self, cid):
        return self.run("start", cid)

    def kill(self, cid, sig="KILL"):
        return self.run("kill", cid, str(sig))

    def delete(self, cid, force=False):
        return self.run("delete", *(["--force"] if force else []), cid)

    def state(self, cid):
        """Return (Result, parsed-state-or-None)."""
        r = self.run("state", cid)
        st = None
        if r.ok:
            try:
                st = json.loads(r.stdout)
            except ValueError:
                st = None
        return r, st

    def status(self, cid):
        _, st = self.state(cid)
        return st.get("status") if st else None

    def wait_status(self, cid, want, timeout=TIMEOUT):
        """Poll `state` until status == want; return the last status seen."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.status(cid)
            if status == want:
                return status
            time.sleep(0.05)
        return status

    def cleanup(self):
        """Force-delete every container this driver created (teardown)."""
        for cid in self.created:
            r, st = self.state(cid)
            if st is None and not r.ok:
                continue
            self.kill(cid, "KILL")
            self.delete(cid, force=True)
            if self.state(cid)[0].ok:  # some runtimes need the process gone first
                time.sleep(0.2)
                self.delete(cid, force=True)


def _txt(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
