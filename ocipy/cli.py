"""The command line: runc's argv, flags, output and exit codes, over ocipy.Runtime.

No kernel code here: parse flags, call the library, print. Errors become one
log line (JSON with --log-format json, as engines read it) plus a message on
stderr, and the error's exit code.
"""

import json
import os
import sys

import click

from . import SPEC_VERSION, __version__, logs
from .errors import OcipyError

# Long options engines may spell with one dash (urfave/cli accepts both, so runc does).
_LONG_OPTIONS = {
    "root", "log", "log-format", "debug", "systemd-cgroup", "rootless", "cgroup-manager",
    "bundle", "pid-file", "console-socket", "no-pivot", "no-new-keyring", "preserve-fds",
    "detach", "keep", "no-subreaper", "all", "force", "format", "quiet",
    "process", "tty", "cwd", "env", "user", "additional-gids", "cap", "no-new-privs",
    "apparmor", "process-label", "cgroup", "ignore-paused",
    "resources", "memory", "memory-reservation", "memory-swap", "kernel-memory", "kernel-memory-tcp",
    "cpu-shares", "cpu-quota", "cpu-period", "cpu-rt-runtime", "cpu-rt-period", "cpuset-cpus",
    "cpuset-mems", "pids-limit", "blkio-weight", "stats", "interval",
}


def normalize_argv(argv: list[str]) -> list[str]:
    """`-no-subreaper` -> `--no-subreaper` (also `-pid-file=F`); everything after `--` is left alone."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if arg.startswith("-") and not arg.startswith("--") and arg[1:].split("=", 1)[0] in _LONG_OPTIONS:
            arg = "-" + arg
        out.append(arg)
    return out


def _runtime(ctx):
    from .runtime import Runtime

    return Runtime(ctx.obj["root"], cgroup_manager=ctx.obj["cgroup_manager"])


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OcipyError as e:
            logs.logger.error(str(e))
            sys.exit(e.exit_code)
        except OSError as e:
            logs.logger.error(str(e))
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", message=f"ocipy version %(version)s\nspec: {SPEC_VERSION}")
@click.option("--root", default=None, help="state directory (default /run/ocipy)")
@click.option("--log", "log_path", default=None, help="log file (default stderr)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@click.option("--debug", is_flag=True)
@click.option("--systemd-cgroup", is_flag=True, help="use the systemd cgroup driver")
@click.option("--rootless", default="auto", help="true|false|auto (accepted for runc compatibility)")
@click.option("--cgroup-manager", type=click.Choice(["cgroupfs", "systemd", "disabled"]), default=None)
@click.pass_context
def cli(ctx, root, log_path, log_format, debug, systemd_cgroup, rootless, cgroup_manager):
    """ocipy: an OCI runtime-spec 1.3.0 container runtime."""
    logs.configure(log_path, log_format, debug)
    # As euid 0 the default root is fixed: podman passes no --root and conmon sets XDG_RUNTIME_DIR empty.
    from .runtime import DEFAULT_ROOT

    ctx.obj = {
        "root": root or DEFAULT_ROOT,
        "cgroup_manager": cgroup_manager or ("systemd" if systemd_cgroup else "cgroupfs"),
    }


def _create_options(f):
    f = click.option("--bundle", "-b", default=".", help="bundle directory")(f)
    f = click.option("--pid-file", default=None)(f)
    f = click.option("--console-socket", default=None)(f)
    f = click.option("--no-pivot", is_flag=True)(f)
    f = click.option("--no-new-keyring", is_flag=True)(f)
    f = click.option("--preserve-fds", type=int, default=0)(f)
    return f


@cli.command()
@_create_options
@click.argument("container_id")
@click.pass_context
def create(ctx, bundle, pid_file, console_socket, no_pivot, no_new_keyring, preserve_fds, container_id):
    """Create a container; its process waits for `start`."""
    _runtime(ctx).create(
        container_id, bundle, pid_file=pid_file, console_socket=console_socket,
        no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
    )


@cli.command()
@_create_options
@click.option("--detach", "-d", is_flag=True)
@click.option("--keep", is_flag=True, help="do not delete the container after it exits")
@click.option("--no-subreaper", is_flag=True)
@click.argument("container_id")
@click.pass_context
def run(ctx, bundle, pid_file, console_socket, no_pivot, no_new_keyring, preserve_fds, detach, keep, no_subreaper, container_id):
    """Create and start a container; in the foreground, exit with its status."""
    code = _runtime(ctx).run(
        container_id, bundle, detach=detach, keep=keep, no_subreaper=no_subreaper, pid_file=pid_file,
        console_socket=console_socket, no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
    )
    sys.exit(code)


@cli.command()
@click.argument("container_id")
@click.pass_context
def start(ctx, container_id):
    """Start the user process of a created container."""
    _runtime(ctx).container(container_id).start()


@cli.command()
@click.argument("container_id")
@click.pass_context
def state(ctx, container_id):
    """Print the container's state as JSON."""
    from .output import state_json

    click.echo(state_json(_runtime(ctx).container(container_id).state()))


@cli.command()
@click.option("--all", "-a", "all_", is_flag=True, help="signal every process in the container")
@click.argument("container_id")
@click.argument("signal", default="SIGTERM")
@click.pass_context
def kill(ctx, all_, container_id, signal):
    """Send a signal (name or number, default SIGTERM) to the container."""
    _runtime(ctx).container(container_id).kill(signal, all=all_)


@cli.command()
@click.option("--force", "-f", is_flag=True, help="kill a running container first; no error when missing")
@click.argument("container_id")
@click.pass_context
def delete(ctx, force, container_id):
    """Delete a stopped (or, with --force, any) container."""
    _runtime(ctx).delete(container_id, force=force)


@cli.command("list")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True, help="print only the ids")
@click.pass_context
def list_(ctx, fmt, quiet):
    """List the containers under --root."""
    from .output import list_output

    states = [c.state() for c in _runtime(ctx).containers()]
    click.echo(list_output(states, fmt, quiet), nl=False)


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option("--process", "-p", "process_file", default=None, help="a Process JSON file (config.md#process)")
@click.option("--tty", "-t", is_flag=True)
@click.option("--console-socket", default=None)
@click.option("--detach", "-d", is_flag=True)
@click.option("--pid-file", default=None)
@click.option("--cwd", default=None)
@click.option("--env", "-e", multiple=True)
@click.option("--user", "-u", default=None, help="uid[:gid]")
@click.option("--additional-gids", "-g", type=int, multiple=True)
@click.option("--cap", "-c", multiple=True)
@click.option("--no-new-privs", is_flag=True)
@click.option("--preserve-fds", type=int, default=0)
@click.option("--apparmor", default=None)
@click.option("--process-label", default=None)
@click.option("--cgroup", "sub_cgroup", default=None)
@click.option("--ignore-paused", is_flag=True)
@click.argument("container_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def exec(ctx, process_file, tty, console_socket, detach, pid_file, cwd, env, user, additional_gids, cap, no_new_privs,
         preserve_fds, apparmor, process_label, sub_cgroup, ignore_paused, container_id, command):
    """Run a new process in a running container."""
    from .exec import exec_command

    code = exec_command(
        _runtime(ctx), container_id, list(command), process_file=process_file, tty=tty, console_socket=console_socket,
        detach=detach, pid_file=pid_file, cwd=cwd, env=list(env), user=user, additional_gids=list(additional_gids),
        caps=list(cap), no_new_privs=no_new_privs, preserve_fds=preserve_fds, ignore_paused=ignore_paused,
        apparmor=apparmor, process_label=process_label, sub_cgroup=sub_cgroup,
    )
    sys.exit(code)


@cli.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx, container_id):
    """Freeze every process of the container."""
    _runtime(ctx).container(container_id).pause()


@cli.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx, container_id):
    """Thaw a paused container."""
    _runtime(ctx).container(container_id).resume()


@cli.command()
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.argument("ps_args", nargs=-1)
@click.pass_context
def ps(ctx, fmt, container_id, ps_args):
    """List the container's processes (json: host pids)."""
    pids = _runtime(ctx).container(container_id).pids()
    if fmt == "json":
        click.echo(json.dumps(pids or None))
        return
    import subprocess

    if pids:
        subprocess.run(["ps", *(ps_args or ["-f"]), "-p", ",".join(map(str, pids))], check=False)


@cli.command()
@click.option("--resources", "-r", "resources_file", default=None, help="LinuxResources JSON file, or - for stdin")
@click.option("--memory", default=None)
@click.option("--memory-reservation", default=None)
@click.option("--memory-swap", default=None)
@click.option("--kernel-memory", default=None)
@click.option("--kernel-memory-tcp", default=None)
@click.option("--cpu-shares", default=None)
@click.option("--cpu-quota", default=None)
@click.option("--cpu-period", default=None)
@click.option("--cpu-rt-runtime", default=None)
@click.option("--cpu-rt-period", default=None)
@click.option("--cpuset-cpus", default=None)
@click.option("--cpuset-mems", default=None)
@click.option("--pids-limit", default=None)
@click.option("--blkio-weight", default=None)
@click.argument("container_id")
@click.pass_context
def update(ctx, resources_file, container_id, **flags):
    """Change the resource limits of a running container."""
    from .update import resources_from_flags

    if resources_file:
        from . import bundle

        try:
            text = sys.stdin.read() if resources_file == "-" else open(resources_file).read()
            resources = json.loads(text)
        except (OSError, ValueError) as e:
            raise OcipyError(f"read resources {resources_file}: {e}") from None
        bundle.validate_resources(resources, source="resources" if resources_file == "-" else os.path.basename(resources_file))
    else:
        resources = resources_from_flags(**flags)
    _runtime(ctx).container(container_id).update(resources)


@cli.command()
@click.option("--stats", is_flag=True, help="print one stats event and exit")
@click.option("--interval", default="5s", help="time between stats events (e.g. 5s, 500ms)")
@click.argument("container_id")
@click.pass_context
def events(ctx, stats, interval, container_id):
    """Print the container's stats as JSON events (runc's format)."""
    from . import events as ev

    container = _runtime(ctx).container(container_id)
    if stats:
        click.echo(json.dumps(ev.stats_event(container)))
        return
    seconds = float(interval[:-2]) / 1000 if interval.endswith("ms") else float(interval.rstrip("s"))
    ev.stream(container, seconds, click.echo)


@cli.command()
@click.option("--rootless", is_flag=True, help="a config for an unprivileged user (user namespace)")
@click.option("--bundle", "-b", default=".", help="where to write config.json")
@click.pass_context
def spec(ctx, rootless, bundle):
    """Write a default config.json into the bundle."""
    from .defaults import default_config

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise OcipyError("File config.json exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_config(rootless=rootless), f, indent="\t")
        f.write("\n")


@cli.command()
def features():
    """Print what this runtime implements (features.md) as JSON."""
    from .features import features as collect

    _print_json(collect())


def main(argv: list[str] | None = None) -> None:
    from .main import ensure_std_fds

    ensure_std_fds()
    cli.main(args=normalize_argv(sys.argv[1:] if argv is None else argv), prog_name="ocipy")
