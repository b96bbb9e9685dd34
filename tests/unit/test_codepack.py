"""ocipy.codepack: modules come from the pack only while their sources are those it was built
from; anything else is imported the usual way. Each check runs in a fresh interpreter, whose
sys.meta_path the pack may change."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ocipy import codepack

OCIPY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(codepack.__file__)))


@pytest.fixture
def package(tmp_path):
    """A small package `pk` (with a subpackage) in tmp_path, and the path of its pack."""
    root = tmp_path / "src"
    (root / "pk" / "sub").mkdir(parents=True)
    (root / "pk" / "__init__.py").write_text("NAME = 'pk'\n")
    (root / "pk" / "a.py").write_text("VALUE = 1\n\ndef fail():\n    raise RuntimeError('from a')  # the line a traceback shows\n")
    (root / "pk" / "sub" / "__init__.py").write_text("")
    (root / "pk" / "sub" / "b.py").write_text("from pk.a import VALUE\nDOUBLE = VALUE * 2\n")
    pack = str(tmp_path / "pk.pack")
    assert codepack.build(str(root / "pk"), pack) == 4
    return root, pack


def run(root, pack, body: str) -> dict:
    """Run `body` in a fresh interpreter that installed `pack` first; what it printed as JSON."""
    script = textwrap.dedent(f"""\
        import json, os, sys
        sys.path[:0] = [{OCIPY_ROOT!r}, {str(root)!r}]
        from ocipy import codepack
        out = {{"installed": codepack.install({pack!r})}}
        def packed(module):
            return type(module.__spec__.loader).__name__ == "PackFinder"
        """) + textwrap.dedent(body) + "print(json.dumps(out))\n"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_modules_come_from_the_pack_with_their_sources_as_files(package):
    root, pack = package
    out = run(root, pack, """
        fds = len(os.listdir("/proc/self/fd"))
        import pk.sub.b, pk.a
        out["packed"] = [packed(pk), packed(pk.a), packed(pk.sub), packed(pk.sub.b)]
        out["double"] = pk.sub.b.DOUBLE
        out["file"] = pk.a.__file__
        out["fds_left"] = len(os.listdir("/proc/self/fd")) - fds
        """)
    assert out["installed"] and out["packed"] == [True, True, True, True]
    assert out["double"] == 2
    assert out["file"] == str(root / "pk" / "a.py")
    assert out["fds_left"] == 0  # each read opens and closes the pack


def test_a_traceback_through_packed_code_shows_its_source(package):
    root, pack = package
    out = run(root, pack, """
        import traceback, pk.a
        try:
            pk.a.fail()
        except RuntimeError:
            out["tb"] = traceback.format_exc()
        """)
    assert "raise RuntimeError('from a')  # the line a traceback shows" in out["tb"]
    assert str(root / "pk" / "a.py") in out["tb"]


def test_a_source_changed_since_the_build_is_imported_from_itself(package):
    root, pack = package
    (root / "pk" / "a.py").write_text("VALUE = 21\n")  # another size
    out = run(root, pack, """
        import pk.a, pk.sub.b
        out["packed"] = [packed(pk.a), packed(pk.sub.b)]
        out["double"] = pk.sub.b.DOUBLE
        """)
    assert out["packed"] == [False, True] and out["double"] == 42


def test_a_source_touched_since_the_build_is_imported_from_itself(package):
    root, pack = package
    path = root / "pk" / "a.py"
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    out = run(root, pack, "import pk.a\nout['packed'] = packed(pk.a)\n")
    assert out["packed"] is False


def test_a_module_the_pack_lacks_is_imported_as_usual(package):
    root, pack = package
    (root / "pk" / "new.py").write_text("HERE = True\n")
    out = run(root, pack, "import pk.new\nout['packed'] = packed(pk.new)\nout['here'] = pk.new.HERE\n")
    assert out == {"installed": True, "packed": False, "here": True}


def test_a_pack_rebuilt_after_its_index_was_read_is_left_alone(package):
    """Its offsets belong to the file whose index was read: a rebuilt pack at the same path
    is not read with them."""
    root, pack = package
    out = run(root, pack, f"""
        from ocipy import codepack as cp
        cp.build({str(root / "pk")!r}, {pack!r})  # a new file under the same name
        import pk.a
        out["packed"] = packed(pk.a)
        out["value"] = pk.a.VALUE
        """)
    assert out["packed"] is False and out["value"] == 1


@pytest.mark.parametrize("damage", ["missing", "garbage", "other python"])
def test_an_unusable_pack_is_not_installed(package, damage):
    root, pack = package
    if damage == "missing":
        os.unlink(pack)
    elif damage == "garbage":
        with open(pack, "wb") as f:
            f.write(b"not a pack at all")
    else:
        with open(pack, "rb") as f:
            data = f.read()
        import marshal

        magic = len(b"ocipy-codepack\n")
        size = int.from_bytes(data[magic:magic + 4], "little")
        version, index = marshal.loads(data[magic + 4:magic + 4 + size])
        head = marshal.dumps((version + 1, index))
        assert len(head) == size
        with open(pack, "wb") as f:
            f.write(data[:magic + 4] + head + data[magic + 4 + size:])
    out = run(root, pack, "import pk.a\nout['packed'] = packed(pk.a)\nout['value'] = pk.a.VALUE\n")
    assert out == {"installed": False, "packed": False, "value": 1}


def test_the_launcher_builds_the_pack_that_create_uses(tmp_path):
    """`python -m ocipy.launcher` builds ocipy's pack where main.py looks for it."""
    from ocipy import launcher, main

    launcher.install(str(tmp_path / "ocipy"))
    package_dir = os.path.dirname(os.path.abspath(main.__file__))
    pack = codepack.default_path(package_dir)
    assert os.path.isfile(pack)
    finder = codepack.PackFinder(pack)
    assert {"ocipy.create", "ocipy.init", "ocipy.linux.rootfs", "ocipy.linux.cgroups"} <= set(finder.index)


def test_a_module_that_does_not_compile_is_left_to_the_usual_import(tmp_path):
    """A source being edited must not stop the launcher's install: the pack goes without it."""
    (tmp_path / "pk").mkdir()
    (tmp_path / "pk" / "__init__.py").write_text("")
    (tmp_path / "pk" / "good.py").write_text("OK = True\n")
    (tmp_path / "pk" / "broken.py").write_text("def (:\n")
    pack = str(tmp_path / "pk.pack")
    assert codepack.build(str(tmp_path / "pk"), pack) == 2
    assert set(codepack.PackFinder(pack).index) == {"pk", "pk.good"}
