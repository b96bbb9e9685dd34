"""The benchmark's own code, without root: statistics, FAILED scenarios, JSON shape, arguments."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import scenarios as s, stats  # noqa: E402
from benchmarks.run import add_ratios, build_report, interpreter_of, parse_args, render_table, run_scenario, write_json  # noqa: E402
from benchmarks.scenarios import FULL_RESOURCES, CommandFailed, Runtime, Scenario, Spawner, host_resources  # noqa: E402


# ---------------------------------------------------------------- statistics

def _cgroup_root(tmp_path, files, controllers=None):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    if controllers is not None:  # a cgroup2 root: its controllers, none of io.weight or memory.swap.max
        (tmp_path / "cgroup.controllers").write_text(controllers + "\n")
    return str(tmp_path)


def test_host_resources_keeps_every_knob_the_host_offers(tmp_path):
    root = _cgroup_root(tmp_path, ["blkio/blkio.bfq.weight", "memory/memory.memsw.limit_in_bytes",
                                   "memory/memory.swappiness"])
    assert host_resources(root) == (FULL_RESOURCES, [])


def test_host_resources_leaves_out_what_the_host_lacks(tmp_path):
    """A kernel without BFQ has no blkio weight file: runc and ocipy would both fail create."""
    root = _cgroup_root(tmp_path, ["blkio/blkio.throttle.read_bps_device", "memory/memory.swappiness"])
    resources, omitted = host_resources(root)
    assert omitted == ["linux.resources.blockIO.weight", "linux.resources.memory.swap"]
    assert "blockIO" not in resources
    assert resources["memory"] == {"limit": 256 << 20, "reservation": 128 << 20, "swappiness": 10}
    assert "swap" in FULL_RESOURCES["memory"]  # the shared table is left as it was


def test_host_resources_on_cgroup2(tmp_path):
    root = _cgroup_root(tmp_path, ["cgroup.procs"], controllers="cpuset cpu io memory pids")
    resources, omitted = host_resources(root)
    assert omitted == ["linux.resources.memory.swappiness"]
    assert resources["blockIO"] == {"weight": 300}


def test_summarize_odd_and_even():
    s = stats.summarize([3, 1, 2])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert stats.summarize([4, 1, 3, 2])["median"] == 2.5


def test_summarize_keeps_samples_in_order():
    assert stats.summarize([5, 1])["samples"] == [5.0, 1.0]


def test_summarize_refuses_no_samples():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratio():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, None) is None
    assert stats.ratio(1.0, 0.0) is None


def test_meets_target():
    assert stats.meets(0.9, 1.0) is True
    assert stats.meets(1.0, 1.0) is True
    assert stats.meets(1.01, 1.0) is False
    assert stats.meets(None, 1.0) is None
    assert stats.meets(0.5, None) is None


def test_formatting():
    assert stats.fmt_stats({"median": 1.25, "min": 1.0, "max": 2.0}, "ms") == "1.2 [1.0-2.0]"
    assert stats.fmt_stats(None, "ms") == "-"
    assert stats.fmt_value(1234.6, "KiB") == "1235"
    assert stats.fmt_ratio(0.93, 1.0) == "0.93"
    assert stats.fmt_ratio(1.5, 1.0) == "1.50 (>1)"
    assert stats.fmt_ratio(None) == "-"


# ---------------------------------------------------------------- scenarios and failure

class FakeRuntime:
    def __init__(self, name):
        self.name = name


class Fixed(Scenario):
    """Each runtime returns its next value from a list; records the call order."""

    name = "fixed"
    rows = [("fixed", "ms", 1.0, True)]

    def __init__(self, values):
        super().__init__(host=None)
        self.values = {k: list(v) for k, v in values.items()}
        self.calls = []
        self.torn_down = []

    def measure(self, rt):
        self.calls.append(rt.name)
        return {"fixed": self.values[rt.name].pop(0)}

    def teardown(self, rt):
        self.torn_down.append(rt.name)


def test_run_scenario_alternates_and_summarizes():
    sc = Fixed({"ocipy": [99, 1, 2, 3], "runc": [99, 2, 4, 6]})
    rows = run_scenario(sc, [FakeRuntime("ocipy"), FakeRuntime("runc")], rounds=3, warmup=1)
    assert sc.calls == ["ocipy", "runc", "ocipy", "runc", "runc", "ocipy", "ocipy", "runc"]
    (row,) = rows
    assert row["status"] == "ok" and row["error"] is None
    assert row["ocipy"]["samples"] == [1.0, 2.0, 3.0]  # the warm-up value is not measured
    assert row["runc"]["median"] == 4.0
    add_ratios(rows, bare_median=1.0)
    assert row["ratio"] == 0.5 and row["meets_target"] is True
    assert row["ratio_to_bare"] == 2.0 and row["meets_bare_target"] is False
    assert sc.torn_down == ["ocipy", "runc"]


class FakeBare:
    """A bare start that returns its next value and records when it was timed, in `calls`."""

    def __init__(self, values, calls):
        self.values, self.calls = list(values), calls

    def measure(self, rt=None):
        self.calls.append("bare")
        return {"bare python start": self.values.pop(0)}


def test_bare_start_is_timed_in_the_rounds_of_the_rows_compared_to_it():
    """The host drifts: each round times the bare start right before the runtimes, and the row's
    ratio to bare uses those samples, not the run's opening bare row."""
    sc = Fixed({"ocipy": [99, 2, 4, 6], "runc": [99, 1, 1, 1]})
    bare = FakeBare([2, 4, 5], sc.calls)
    rows = run_scenario(sc, [FakeRuntime("ocipy"), FakeRuntime("runc")], rounds=3, warmup=1, bare=bare)
    assert sc.calls == ["ocipy", "runc", "bare", "ocipy", "runc", "bare", "runc", "ocipy", "bare", "ocipy", "runc"]
    (row,) = rows
    assert row["bare"]["samples"] == [2.0, 4.0, 5.0]
    add_ratios(rows, bare_median=100.0)
    assert row["ratio_to_bare"] == 1.0  # 4 / 4, not 4 / 100


def test_rows_not_compared_to_bare_time_no_bare_start():
    class NotBare(Fixed):
        rows = [("fixed", "ms", 1.0, False)]

    sc = NotBare({"ocipy": [1, 1], "runc": [1, 1]})
    rows = run_scenario(sc, [FakeRuntime("ocipy"), FakeRuntime("runc")], rounds=2, warmup=0, bare=FakeBare([], sc.calls))
    assert "bare" not in sc.calls and "bare" not in rows[0]


def test_exclusive_scenario_runs_one_runtime_after_the_other():
    class Exclusive(Fixed):
        exclusive = True
        note = "one runtime at a time"

        def setup(self, rt):
            self.calls.append(f"setup {rt.name}")

    sc = Exclusive({"ocipy": [1, 2], "runc": [3, 4]})
    rows = run_scenario(sc, [FakeRuntime("ocipy"), FakeRuntime("runc")], rounds=2, warmup=0)
    assert sc.calls == ["setup ocipy", "ocipy", "ocipy", "setup runc", "runc", "runc"]
    assert sc.torn_down == ["ocipy", "runc"]
    assert rows[0]["runc"]["samples"] == [3.0, 4.0] and rows[0]["note"] == "one runtime at a time"
    assert "note fixed: one runtime at a time" in render_table(add_ratios(rows))


class FailsFor(Scenario):
    """Runs a real command per runtime: /bin/true for one, /bin/false for the other."""

    name = "fails"
    rows = [("fails", "ms", 1.0, False), ("fails rss", "KiB", None, False)]

    def measure(self, rt):
        out = rt.invoke("anything")
        return {"fails": out.wall * 1000, "fails rss": out.maxrss}


def _runtime(tmp_path, name, command):
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return Runtime(name, [command], str(tmp_path / f"root-{name}"), Spawner(str(logs), timeout=10))


def test_failed_runtime_makes_the_scenario_failed_without_numbers(tmp_path):
    runtimes = [_runtime(tmp_path, "ocipy", "/bin/true"), _runtime(tmp_path, "runc", "/bin/false")]
    rows = add_ratios(run_scenario(FailsFor(None), runtimes, rounds=2, warmup=0))
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    for r in rows:
        assert r["ocipy"] is None and r["runc"] is None and r["ratio"] is None
        assert "runc" in r["error"] and "exit 1" in r["error"]
    table = render_table(rows)
    assert "FAILED" in table and "FAILED fails: runc" in table
    assert "ms  -" not in table  # no number printed for a failed row


def test_both_runtimes_ok_with_real_commands(tmp_path):
    runtimes = [_runtime(tmp_path, "ocipy", "/bin/true"), _runtime(tmp_path, "runc", "/bin/true")]
    rows = run_scenario(FailsFor(None), runtimes, rounds=2, warmup=1)
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["ocipy"]["n"] == 2 and rows[0]["ocipy"]["median"] > 0
    assert rows[1]["runc"]["median"] > 0  # ru_maxrss in KiB


def test_failure_in_setup_is_reported_and_teardown_runs():
    class SetupFails(Fixed):
        def setup(self, rt):
            if rt.name == "runc":
                raise CommandFailed("runc", ["runc", "create", "x"], 1, "boom: cannot create")

    sc = SetupFails({"ocipy": [1], "runc": [1]})
    rows = run_scenario(sc, [FakeRuntime("ocipy"), FakeRuntime("runc")], rounds=1, warmup=0)
    assert rows[0]["status"] == "FAILED" and "boom: cannot create" in rows[0]["error"]
    assert sc.calls == [] and sc.torn_down == ["ocipy", "runc"]


def test_command_failed_describes_timeout():
    e = CommandFailed("ocipy", ["ocipy", "run", "x"], None, "")
    assert "timed out" in e.describe() and "`run x`" in e.describe()


def test_spawner_times_out(tmp_path):
    out = Spawner(str(tmp_path), timeout=0.2).run(["/bin/sleep", "5"])
    assert out.rc is None and out.wall < 3


def test_spawner_captures_output_and_exit_code(tmp_path):
    out = Spawner(str(tmp_path)).run(["/bin/sh", "-c", "echo hello; echo err >&2; exit 3"])
    assert out.rc == 3 and "hello" in out.output and "err" in out.output
    assert list(tmp_path.iterdir()) == []  # logs are removed


# ---------------------------------------------------------------- JSON shape and table

def _sample_rows():
    rows = [
        {"scenario": "bare-python", "row": "bare python start", "unit": "ms", "status": "ok", "error": None,
         "reference": True, "ocipy": stats.summarize([6, 7]), "runc": None, "target_ratio": None, "compare_to_bare": False},
        {"scenario": "state", "row": "state (running)", "unit": "ms", "status": "ok", "error": None,
         "ocipy": stats.summarize([7, 8]), "runc": stats.summarize([4, 4]), "target_ratio": None, "compare_to_bare": True},
        {"scenario": "run", "row": "run", "unit": "ms", "status": "FAILED", "error": "runc: `run x` exit 1: no",
         "ocipy": None, "runc": None, "target_ratio": 1.0, "compare_to_bare": False},
    ]
    return add_ratios(rows, bare_median=6.5)


def test_json_shape(tmp_path):
    path = tmp_path / "out" / "results.json"
    write_json(str(path), build_report(_sample_rows(), {"rounds": 2}))
    data = json.loads(path.read_text())
    assert data["schema"] == "ocipy-benchmarks/1" and data["meta"] == {"rounds": 2}
    bare, state, run = data["results"]
    assert bare["reference"] is True and bare["runc"] is None
    assert set(state["ocipy"]) == {"median", "min", "max", "n", "samples"}
    assert state["ratio"] == pytest.approx(7.5 / 4) and state["ratio_to_bare"] == pytest.approx(7.5 / 6.5)
    assert state["bare_target"] == 1.2 and state["meets_bare_target"] is True
    assert run["status"] == "FAILED" and run["ratio"] is None and run["error"].startswith("runc")
    for r in data["results"]:
        assert {"scenario", "row", "unit", "status", "error", "ocipy", "runc", "ratio"} <= set(r)


def test_table_lists_every_row_with_ratios():
    table = render_table(_sample_rows())
    lines = table.splitlines()
    assert lines[0].startswith("scenario") and "ocipy/runc" in lines[0] and "ocipy/bare" in lines[0]
    state = next(line for line in lines if line.startswith("state (running)"))
    assert "7.5 [7.0-8.0]" in state and "4.0 [4.0-4.0]" in state and "1.88" in state and "1.15" in state
    assert any(line.startswith("run ") and "FAILED" in line for line in lines)


# ---------------------------------------------------------------- arguments

def test_defaults():
    a = parse_args([])
    assert a.rounds == 30 and a.heavy_rounds == 3 and a.list_counts == [1, 100, 1000]
    assert a.sequential == 100 and a.parallel == 20 and a.cpus == [0, 1] and a.warmup == 1
    assert a.runc == "/usr/bin/runc" and a.ocipy.endswith("/.venv/bin/ocipy")


def test_quick():
    a = parse_args(["--quick"])
    assert a.list_counts == [1, 100] and a.rounds == 10 and a.heavy_rounds == 1


def test_explicit_values_win_over_quick():
    a = parse_args(["--quick", "--rounds", "7", "--list-counts", "1,10,50", "--sequential", "20",
                    "--parallel", "0", "--cpus", "0", "--only", "run,state", "--json", "/tmp/x.json"])
    assert a.rounds == 7 and a.list_counts == [1, 10, 50] and a.sequential == 20 and a.parallel == 0
    assert a.cpus == [0] and a.only == ["run", "state"] and a.json_path == "/tmp/x.json"


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--list-counts", "a,b"], ["--warmup", "-1"],
                                  ["--sequential", "-5"], ["--bogus"]])
def test_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2


def test_interpreter_of_console_script(tmp_path):
    script = tmp_path / "ocipy"
    script.write_text("#!/some/venv/bin/python3\nprint()\n")
    assert interpreter_of(str(script)) == "/some/venv/bin/python3"
    assert interpreter_of(str(tmp_path / "missing")) == sys.executable


def test_only_list_of_one_container_is_held_to_the_bare_start_target():
    from benchmarks.scenarios import List

    assert [row[3] for row in List(None, 1).rows] == [True]
    assert [row[3] for row in List(None, 100).rows] == [False]


def test_docker_seccomp_profile_is_read_from_the_corpus_or_left_out(tmp_path):
    config = tmp_path / "docker-run-d.config.json"
    assert s.docker_seccomp_profile(str(config)) is None  # missing
    config.write_text(json.dumps({"linux": {}}))
    assert s.docker_seccomp_profile(str(config)) is None  # no profile in it
    config.write_text(json.dumps({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}}))
    assert s.docker_seccomp_profile(str(config)) == {"defaultAction": "SCMP_ACT_ERRNO"}


def test_bundle_carries_the_seccomp_profile(tmp_path):
    host = s.Host(str(tmp_path))
    host.rootfs = str(tmp_path / "rootfs")
    path = host.bundle("c1", ["true"], seccomp={"defaultAction": "SCMP_ACT_ALLOW"})
    config = json.loads((tmp_path / "bundles" / "c1" / "config.json").read_text())
    assert path.endswith("c1") and config["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert config["process"]["args"] == ["true"] and config["linux"]["cgroupsPath"].endswith("/c1")
