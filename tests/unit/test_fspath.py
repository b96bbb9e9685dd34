"""ocipy.fspath: os.path's functions without os, compared with os.path on the same inputs."""

import os

import pytest

from ocipy import fspath

PATHS = ["", "/", "//", "///", "a", "/a", "a/", "/a/", "a/b", "/a/b/", "a//b", "//a//b//", "./a", "../a", "/a/./b/../c",
         "run/ocipy", "./a/../b", "/x//y/./z/", "/..", "a/b/../../..", "/sys/fs/cgroup/memory/x", "c1.json", ".", "..", "../../a/./b", "a/../../b", "a/..", "//a/../..", "/a/b/../../../c"]


@pytest.mark.parametrize("path", PATHS)
def test_dirname_basename_normpath_and_abspath_agree_with_os_path(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fspath.dirname(path) == os.path.dirname(path)
    assert fspath.basename(path) == os.path.basename(path)
    assert fspath.normpath(path) == os.path.normpath(path)
    assert fspath.isabs(path) == os.path.isabs(path)
    if path:
        assert fspath.abspath(path) == os.path.abspath(path)


@pytest.mark.parametrize("parts", [("a", "b"), ("/a", "b", "c"), ("a/", "b"), ("a", "/b", "c"), ("", "b"), ("a", ""),
                                   ("/", "x"), ("a//", "b/"), ("/sys/fs/cgroup", "memory", "ocipy/c1"), ("a",)])
def test_join_agrees_with_os_path(parts):
    assert fspath.join(*parts) == os.path.join(*parts)


def test_paths_like_objects_are_taken_as_os_path_takes_them(tmp_path):
    assert fspath.abspath(tmp_path / "a" / ".." / "b") == os.path.abspath(tmp_path / "a" / ".." / "b")
    assert fspath.join(tmp_path, "x") == os.path.join(tmp_path, "x")


def test_exists_isdir_isfile_follow_the_file_type(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "d", tmp_path / "to-d")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    os.mkfifo(tmp_path / "fifo")
    for name in ("d", "f", "to-d", "dangling", "fifo", "missing", "f/below"):
        p = str(tmp_path / name)
        assert (fspath.exists(p), fspath.isdir(p), fspath.isfile(p)) == (os.path.exists(p), os.path.isdir(p), os.path.isfile(p)), name
    assert not fspath.exists("bad\0path")


def test_makedirs_makes_the_missing_parents_and_accepts_a_directory_there(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    fspath.makedirs(str(target), 0o711)
    assert target.is_dir() and target.stat().st_mode & 0o777 == 0o711 & ~_umask()
    fspath.makedirs(str(target), 0o711)  # already there: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        fspath.makedirs(str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError):
        fspath.makedirs(str(tmp_path / "file" / "below"))


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@pytest.fixture
def link_tree(tmp_path, monkeypatch):
    """A tree of directories and symlinks: absolute and relative, chained, through "..",
    dangling, and two that loop."""
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_text("x")
    links = {
        "abs": tmp_path / "d", "rel": "d/e", "up": "../" + tmp_path.name + "/d", "chain": "rel",
        "d/e/back": "../..", "dangling": "gone/deeper", "loop1": "loop2", "loop2": "loop1", "self": "self/x",
        "d/dot": ".",
    }
    for link, target in links.items():
        os.symlink(target, tmp_path / link)
    monkeypatch.chdir(tmp_path)
    return tmp_path


REALPATHS = ["abs", "rel", "up", "chain", "chain/f", "rel/back/abs/e/f", "d/e/back/rel/../e", "dangling", "dangling/more/..",
             "loop1", "loop1/x", "self", "d/dot/dot/e", "missing/../d", "../x", ".", "", "/", "//", "d/../../..",
             "rel/..", "abs/./e/../e/f/", "d/e/f/g"]


@pytest.mark.parametrize("path", REALPATHS)
def test_realpath_agrees_with_os_path(link_tree, path):
    assert fspath.realpath(path) == os.path.realpath(path)
    assert fspath.realpath(link_tree / path) == os.path.realpath(link_tree / path)


@pytest.mark.parametrize("path", ["/a/b", "rel", "caf\u00e9", "bad-\udcff-byte", b"raw\xff"])
def test_fsencode_agrees_with_os(path):
    assert fspath.fsencode(path) == os.fsencode(path)
