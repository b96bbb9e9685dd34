"""Host inspection: cgroup hierarchies, leftovers (processes, mounts, cgroups).

Used by the fixtures to clean up after each test and to prove that nothing a
container created outlives it.
"""

import os
import time

from .bundle_factory import CGROUP_PARENT


def own_cgroups():
    """[(mountpoint, own path in that hierarchy, controllers-set)] for every cgroup fs."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            own[ctrls] = path
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            fstype, _src, sopts = post.split()[:3]
            mnt = pre.split()[4]
            if fstype == "cgroup2":
                result.append((mnt, own.get("", "/"), set()))
            elif fstype == "cgroup":
                opts = set(sopts.split(","))
                for ctrls, path in own.items():
                    if ctrls and set(ctrls.split(",")) <= opts:
                        result.append((mnt, path, set(ctrls.split(","))))
                        break
    return result


def controller_mount(controller):
    """Mountpoint and own path of the v1 hierarchy holding `controller`, or None."""
    for mnt, path, ctrls in own_cgroups():
        if controller in ctrls:
            return mnt, path
    return None


def container_cgroup_dirs(cid):
    """Candidate dirs of a container whose cgroupsPath is `ocipy-conformance/<cid>`."""
    dirs = []
    for mnt, path, _ in own_cgroups():
        for base in {os.path.join(mnt, path.lstrip("/")), mnt}:
            d = os.path.join(base, CGROUP_PARENT, cid)
            if os.path.isdir(d):
                dirs.append(d)
    return dirs


def cgroup_dir(controller, cid):
    """Host dir of the container cgroup in `controller`'s hierarchy (or None)."""
    m = controller_mount(controller)
    if not m:
        return None
    d = os.path.join(m[0], m[1].lstrip("/"), CGROUP_PARENT, cid)
    return d if os.path.isdir(d) else None


def rmdir_tree(d):
    """Remove a cgroup dir bottom-up; return the dirs that could not be removed."""
    left = []
    for root, subdirs, _ in os.walk(d, topdown=False):
        for attempt in range(10):
            try:
                os.rmdir(root)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
        else:
            left.append(root)
    return left


def parent_dirs():
    out = []
    for mnt, path, _ in own_cgroups():
        for base in {os.path.join(mnt, path.lstrip("/")), mnt}:
            d = os.path.join(base, CGROUP_PARENT)
            if os.path.isdir(d):
                out.append(d)
    return out


def processes_matching(needles):
    """PIDs whose cgroup or root directory mentions one of `needles`."""
    hits = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cg = f.read()
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if any(n in cg or n in root for n in needles):
            hits.append(int(pid))
    return hits


def mounts_matching(prefix):
    """Mount points in our mount namespace below `prefix`."""
    hits = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].startswith(prefix) or fields[3].startswith(prefix):
                hits.append(fields[4])
    return hits


def leftover_conformance_cgroups():
    """Any cgroup dir whose name contains 'conformance' below our own cgroups."""
    found = []
    for mnt, path, _ in own_cgroups():
        for base in {os.path.join(mnt, path.lstrip("/")), mnt}:
            try:
                names = os.listdir(base)
            except OSError:
                continue
            found += [os.path.join(base, n) for n in names
                      if "conformance" in n and os.path.isdir(os.path.join(base, n))]
    return found
