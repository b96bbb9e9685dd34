"""launch.py's reads of the process's own namespace settings, in a real user namespace (root)."""

import os

import pytest

from nsharness import no_mount_left_behind, run_in_namespaces  # noqa: F401 - an autouse fixture
from ocipy import launch

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def test_setgroups_is_allowed_in_the_initial_user_namespace():
    assert launch._setgroups_allowed() is True


def test_setgroups_denied_in_a_user_namespace_is_read_as_denied():
    """The harness writes "deny" to /proc/self/setgroups before its uid_map (as an unprivileged
    mapping must): become_root_in_userns must then not call setgroups."""
    assert run_in_namespaces(launch._setgroups_allowed, userns=True) is False
