"""The `ocipy` launcher: python -IS with the paths site would have added, nothing else."""

import os
import subprocess

import pytest

from ocipy import launcher


def test_render_runs_the_interpreter_isolated_and_without_site():
    text = launcher.render("/opt/venv/bin/python", ["/src", "/opt/venv/lib/python3.11/site-packages"])
    lines = text.splitlines()
    assert lines[0] == "#!/opt/venv/bin/python -IS"  # one argument: Linux passes the rest of the line as one
    assert "sys.path += ['/src', '/opt/venv/lib/python3.11/site-packages']" in lines
    assert lines[-2:] == ["from ocipy.main import launch", "launch()"]
    with pytest.raises(ValueError):
        launcher.render("/path with space/python", [])


def test_module_roots_hold_ocipy_and_its_dependencies():
    roots = launcher.module_roots()
    assert os.path.isdir(os.path.join(roots[0], "ocipy"))
    for name in ("click", "pyroute2"):
        assert any(os.path.exists(os.path.join(r, name)) for r in roots), name


def test_installed_launcher_runs_commands_without_site_or_the_callers_environment(tmp_path):
    dest = tmp_path / "ocipy"
    launcher.install(str(dest))
    assert os.access(dest, os.X_OK)
    # A PYTHONPATH with a poisoned `ocipy` must not be seen (-I), nor a usercustomize/site (-S).
    poison = tmp_path / "poison" / "ocipy"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise SystemExit('poisoned')\n")
    env = {**os.environ, "PYTHONPATH": str(poison.parent)}
    r = subprocess.run([str(dest), "--root", str(tmp_path / "state"), "list", "--format", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "null\n", "")
    r = subprocess.run([str(dest), "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ocipy version"), r.stdout + r.stderr
