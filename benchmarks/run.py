"""Command line: run every scenario against ocipy and runc, alternating, print the table, write JSON.

    flock /tmp/ocipy-root-tests.lock .venv/bin/python -m benchmarks [--quick] [--rounds N] ...
"""

import argparse
import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

from . import stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = "/tmp/ocipy-root-tests.lock"
BARE_ROW = "bare python start"
BARE_TARGET = 1.2  # ocipy state/kill/start/delete/list vs the bare interpreter start


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"need non-negative integers: {text!r}")
    return values


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="Benchmark ocipy against runc on the same bundles, alternating the two.")
    p.add_argument("--quick", action="store_true",
                   help="short run: list with 1 and 100 containers, 10 rounds, 1 round of the heavy scenarios")
    p.add_argument("--rounds", type=_positive, help="measured rounds per scenario (default 30; --quick 10)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds per scenario, not measured (default 1)")
    p.add_argument("--heavy-rounds", type=_positive,
                   help="rounds of the sequential and parallel scenarios (default 3; --quick 1)")
    p.add_argument("--list-counts", type=_int_list, help="containers for the list scenarios (default 1,100,1000; --quick 1,100)")
    p.add_argument("--sequential", type=int, default=100, help="containers run one after another (default 100; 0 skips)")
    p.add_argument("--parallel", type=int, default=20, help="containers run at once (default 20; 0 skips)")
    p.add_argument("--cpus", type=_int_list, default=[0, 1], help="CPUs the parallel scenario is pinned to (default 0,1)")
    p.add_argument("--only", type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
                   help="comma-separated scenario names (bare-python always runs), e.g. run,state,list-1")
    p.add_argument("--ocipy", default=os.path.join(REPO, ".venv", "bin", "ocipy"), help="ocipy command (default: the repo venv's)")
    p.add_argument("--runc", default="/usr/bin/runc", help="runc command (default /usr/bin/runc)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before one runtime command is killed (default 120)")
    p.add_argument("--json", dest="json_path", default=os.path.join(REPO, "benchmarks", "results.json"),
                   help="where to write the results (default benchmarks/results.json)")
    args = p.parse_args(argv)
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.sequential < 0 or args.parallel < 0:
        p.error("--sequential and --parallel must be >= 0")
    if args.rounds is None:
        # This host's times are bimodal (a run is ~1.3x slower now and then, for bare python
        # as much as for either runtime): with 10 samples a ratio moved by 0.1 to 0.2 between
        # runs of the same code (benchmarks/README.md, "Why 30 rounds").
        args.rounds = 10 if args.quick else 30
    if args.heavy_rounds is None:
        args.heavy_rounds = 1 if args.quick else 3
    if args.list_counts is None:
        args.list_counts = [1, 100] if args.quick else [1, 100, 1000]
    return args


def interpreter_of(command):
    """The python a console script runs with (its #! line), else this interpreter."""
    try:
        with open(command, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    if first.startswith("#!"):
        parts = first[2:].split()
        if parts and "python" in os.path.basename(parts[0]):
            return parts[0]
    return sys.executable


# ---------------------------------------------------------------- measuring


def run_scenario(scenario, runtimes, rounds, warmup, log=lambda msg: None, bare=None):
    """Set up, warm up, measure `rounds` alternating rounds, tear down. Returns one result per row.

    A CommandFailed for any runtime (setup, warm-up, measure or teardown) makes every row FAILED
    with the error: no number is reported for a scenario where either runtime failed.

    `bare` (a BareStart): for a scenario with rows compared to the bare start, every round also
    times the bare start, right before the runtimes. This host's speed drifts over minutes, so
    a ratio to a bare start timed at another moment of the run would measure the drift."""
    from .scenarios import CommandFailed

    samples = {row[0]: {rt.name: [] for rt in runtimes} for row in scenario.rows}
    if not any(row[3] for row in scenario.rows):
        bare = None
    bare_samples = []
    error = None
    # normally all runtimes are set up, then each round runs them in turn (who goes first alternates);
    # an exclusive scenario (too big to hold both) does set-up, rounds and tear-down per runtime
    groups = [[rt] for rt in runtimes] if scenario.exclusive else [list(runtimes)]
    for group in groups:
        if error:
            break
        set_up = []
        try:
            for rt in group:
                set_up.append(rt)
                scenario.setup(rt)
            for i in range(warmup):
                for rt in (group if i % 2 == 0 else group[::-1]):
                    scenario.warmup(rt)
            for i in range(rounds):
                if bare is not None:
                    bare_samples.append(bare.measure()[BARE_ROW])
                for rt in (group if i % 2 == 0 else group[::-1]):  # alternate who goes first
                    values = scenario.measure(rt)
                    for row, value in values.items():
                        samples[row][rt.name].append(value)
                log(f"  {scenario.name}: {'/'.join(rt.name for rt in group)} round {i + 1}/{rounds}")
        except CommandFailed as e:
            error = e.describe()
        except Exception as e:  # a broken measurement is reported, not fatal for the other scenarios
            error = f"{type(e).__name__}: {e}"
        finally:
            for rt in set_up:
                try:
                    scenario.teardown(rt)
                except CommandFailed as e:
                    error = error or e.describe()
                except Exception as e:
                    error = error or f"teardown: {type(e).__name__}: {e}"
    results = []
    for row, unit, target, vs_bare in scenario.rows:
        r = {"scenario": scenario.name, "row": row, "unit": unit, "target_ratio": target,
             "compare_to_bare": vs_bare, "status": "FAILED" if error else "ok", "error": error,
             "note": getattr(scenario, "note", None)}
        for rt in runtimes:
            r[rt.name] = None if error else stats.summarize(samples[row][rt.name])
        if vs_bare and bare_samples and not error:
            r["bare"] = stats.summarize(bare_samples)  # timed in the same rounds
        results.append(r)
    return results


def add_ratios(results, bare_median=None, a="ocipy", b="runc"):
    """ocipy/runc median ratio per ok row; ocipy/bare-start for the rows that ask for it, to the
    bare start timed in the row's own rounds when there is one (else `bare_median`)."""
    for r in results:
        ok = r["status"] == "ok"
        med_a = r[a]["median"] if ok and r.get(a) else None
        med_b = r[b]["median"] if ok and r.get(b) else None
        r["ratio"] = stats.ratio(med_a, med_b)
        r["meets_target"] = stats.meets(r["ratio"], r.get("target_ratio"))
        if r.get("compare_to_bare"):
            own = r.get("bare")
            r["ratio_to_bare"] = stats.ratio(med_a, own["median"] if own else bare_median)
            r["bare_target"] = BARE_TARGET
            r["meets_bare_target"] = stats.meets(r["ratio_to_bare"], BARE_TARGET)
    return results


def render_table(results, runtimes=("ocipy", "runc")):
    """The report as text: one line per row, median [min-max] per runtime and the ratios."""
    head = ["scenario", "unit"] + [f"{n} median [min-max]" for n in runtimes] + ["ocipy/runc", "ocipy/bare"]
    lines = []
    for r in results:
        if r["status"] != "ok":
            lines.append([r["row"], r["unit"], "FAILED", "", "", ""])
            continue
        cols = [r["row"], r["unit"]] + [stats.fmt_stats(r.get(n), r["unit"]) for n in runtimes]
        cols.append(stats.fmt_ratio(r.get("ratio"), r.get("target_ratio")))
        cols.append(stats.fmt_ratio(r.get("ratio_to_bare"), r.get("bare_target")) if r.get("compare_to_bare") else "")
        lines.append(cols)
    widths = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    for cols in lines:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip())
    errors = [r for r in results if r["status"] != "ok"]
    seen = set()
    for r in errors:
        if r["scenario"] not in seen:
            seen.add(r["scenario"])
            out.append(f"FAILED {r['scenario']}: {r['error']}")
    noted = set()
    for r in results:
        if r.get("note") and r["scenario"] not in noted:
            noted.add(r["scenario"])
            out.append(f"note {r['scenario']}: {r['note']}")
    out.append("targets: ocipy/runc <= 1.0 for run, create+start+delete, exec; "
               f"ocipy/bare <= {BARE_TARGET:g} for state, kill, start, delete, list. (>x) marks a miss.")
    return "\n".join(out)


def build_report(results, meta):
    return {"schema": "ocipy-benchmarks/1", "meta": meta, "results": results}


def write_json(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- the lock and main


def _holding_lock():
    """True when an inherited fd is the root-tests lock file (we run under `flock LOCK ...`)."""
    try:
        target = os.stat(LOCK)
    except OSError:
        return False
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(int(fd))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _take_lock():
    """Hold the shared root-tests lock for the whole run (unless `flock` already holds it for us)."""
    if _holding_lock():
        return None
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for {LOCK} (another root test run holds it)", file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception as e:
        return f"unknown ({e})"


def build_scenarios(args, host, bare):
    from . import scenarios as s

    chosen = [s.Run(host), s.Lifecycle(host), s.ResourcesLifecycle(host), s.State(host), s.Kill(host), s.Exec(host)]
    profile = s.docker_seccomp_profile()
    if profile is not None:
        chosen.insert(1, s.SeccompRun(host, profile))
    else:
        print(f"run-seccomp: left out, {s.DOCKER_CONFIG} is missing", file=sys.stderr)
    chosen += [s.List(host, n) for n in args.list_counts]
    chosen.append(s.CreatedMemory(host))
    if args.sequential:
        chosen.append(s.Sequential(host, args.sequential))
    if args.parallel:
        chosen.append(s.Parallel(host, args.parallel, args.cpus))
    if args.only:
        known = {sc.name for sc in chosen}
        unknown = [n for n in args.only if n not in known and n != bare.name]
        if unknown:
            raise SystemExit(f"unknown scenario(s) {unknown}; known: {sorted(known)}")
        chosen = [sc for sc in chosen if sc.name in args.only]
    return chosen


def _on_term(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks create real containers: run as root", file=sys.stderr)
        return 2
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from .scenarios import BareStart, CommandFailed, Host, Spawner, build_launcher

    for name in ("ocipy", "runc"):
        path = shutil.which(getattr(args, name))
        if not path:
            print(f"{name} command not found: {getattr(args, name)}", file=sys.stderr)
            return 2
        setattr(args, name, os.path.abspath(path))

    lock_fd = _take_lock()
    signal.signal(signal.SIGTERM, _on_term)
    host = Host()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = []
    interrupted = False
    try:
        host.build_rootfs()
        launcher = build_launcher(os.path.join(REPO, "benchmarks", "maxrss.c"), os.path.join(host.tmp, "maxrss"))
        if not launcher:
            log("no C compiler: peak RSS includes the benchmark's own Python RSS (wait4 from the parent)")
        spawner = Spawner(os.path.join(host.tmp, "logs"), timeout=args.timeout, launcher=launcher)
        runtimes = [host.add_runtime("ocipy", [args.ocipy], spawner), host.add_runtime("runc", [args.runc], spawner)]
        python = interpreter_of(args.ocipy)
        bare = BareStart(host, python, spawner)
        chosen = build_scenarios(args, host, bare)
        meta = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "ocipy": args.ocipy, "ocipy_python": python, "python_version": _version([python, "--version"]),
            "runc": args.runc, "runc_version": _version([args.runc, "--version"]),
            "rounds": args.rounds, "heavy_rounds": args.heavy_rounds, "warmup": args.warmup,
            "list_counts": args.list_counts, "sequential": args.sequential, "parallel": args.parallel,
            "parallel_cpus": args.cpus, "quick": args.quick,
            "bundle": "default spec config (terminal off) on busybox, pid/mount/uts/ipc/network namespaces, "
                      "cgroupsPath ocipy-bench/<run>/<id>",
            "rss_method": "ru_maxrss via benchmarks/maxrss.c launcher" if launcher else "wait4 ru_maxrss from the Python parent (inflated)",
            "timing_method": "wall time fork+exec..wait4 in the launcher" if launcher else "wall time around posix_spawn..wait4",
            "units": {"ms": "wall milliseconds", "s": "wall seconds", "KiB": "KiB (ru_maxrss or Pss)"},
        }
        log(f"ocipy-bench: {host.tmp}, cgroups {host.cgroup_rel}; {args.rounds} rounds (heavy {args.heavy_rounds}), warm-up {args.warmup}")
        # the reference row: bare interpreter start, measured like a one-runtime scenario
        try:
            for _ in range(args.warmup):
                bare.measure()
            bare_samples = [bare.measure()[BARE_ROW] for _ in range(args.rounds)]
            bare_row = {"scenario": bare.name, "row": BARE_ROW, "unit": "ms", "status": "ok", "error": None,
                        "reference": True, "ocipy": stats.summarize(bare_samples), "runc": None,
                        "target_ratio": None, "compare_to_bare": False}
        except CommandFailed as e:
            bare_row = {"scenario": bare.name, "row": BARE_ROW, "unit": "ms", "status": "FAILED", "error": e.describe(),
                        "reference": True, "ocipy": None, "runc": None, "target_ratio": None, "compare_to_bare": False}
        results.append(bare_row)
        for sc in chosen:
            log(f"{sc.name} ...")
            rounds = args.heavy_rounds if sc.heavy else args.rounds
            warmup = min(args.warmup, 1) if sc.heavy else args.warmup
            results += run_scenario(sc, runtimes, rounds, warmup, log=log, bare=bare)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = host.cleanup(log=log)
        if left:
            log("cleanup left behind: " + "; ".join(left))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if lock_fd is not None:
            os.close(lock_fd)
    if interrupted:
        return 130
    bare_median = results[0]["ocipy"]["median"] if results and results[0]["status"] == "ok" else None
    add_ratios(results, bare_median)
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(render_table(results))
    write_json(args.json_path, build_report(results, meta))
    print(f"results written to {args.json_path}")
    return 1 if any(r["status"] != "ok" for r in results) else 0
