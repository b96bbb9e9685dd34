#!/bin/bash
# Install and run the container engines the e2e tests drive (Debian 12, as root).
#
#   setup_engines.sh install                 apt: podman, conmon, docker.io, containerd, runc, busybox-static
#   setup_engines.sh start-docker DIR OCIPY RUNC
#                                            dockerd with everything private under DIR: data root, exec root,
#                                            socket DIR/docker.sock, its own containerd, networking off;
#                                            runtimes "ocipy" -> OCIPY and "runcw" -> RUNC in DIR/daemon.json
#   setup_engines.sh start-containerd DIR    containerd with its own config, root, state and socket
#                                            (DIR/containerd.sock), the CRI plugin off
#   setup_engines.sh stop DIR                stop whatever start-* started under DIR (pid files), wait for exit
#
# start-* print the daemon's log tail and exit 1 when the daemon does not come up; the tests then skip
# with that text. Nothing is written outside DIR, except what the daemons themselves insist on
# (containerd's shim sockets in /run/containerd/s, removed with each shim).
set -u

die() { echo "setup_engines: $*" >&2; exit 1; }

wait_socket() {  # wait_socket SOCK PIDFILE LOG NAME
    local sock=$1 pidfile=$2 log=$3 name=$4 i
    for i in $(seq 1 150); do
        if [ -S "$sock" ]; then return 0; fi
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
        sleep 0.2
    done
    echo "$name did not start (no socket $sock); last lines of its log:" >&2
    tail -n 15 "$log" >&2
    return 1
}

cmd=${1:-install}
case "$cmd" in
install)
    [ "$(id -u)" = 0 ] || die "must run as root"
    pkgs="podman conmon containernetworking-plugins catatonit docker.io containerd runc busybox-static"
    missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        apt-get update -q || die "apt-get update failed"
        # --no-install-recommends: podman would pull crun, docker.io would pull more than the tests need.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing || die "apt-get install failed"
    fi
    # The packages' init scripts may have started system daemons; the tests use private ones only.
    for p in dockerd containerd; do
        if pgrep -x "$p" >/dev/null && [ ! -e /tmp/ocipy-e2e-keep-system-daemons ]; then
            echo "note: a system $p is running; the tests do not use it" >&2
        fi
    done
    for b in podman conmon dockerd containerd ctr containerd-shim-runc-v2 runc; do
        command -v "$b" >/dev/null || die "$b missing after install"
    done
    echo "engines installed: $(podman --version), $(/usr/bin/docker --version), $(containerd --version | cut -d' ' -f1-3)"
    ;;
start-docker)
    dir=${2:?DIR} ocipy=${3:?OCIPY} runc=${4:?RUNC}
    mkdir -p "$dir"
    cat > "$dir/daemon.json" <<EOF
{
  "runtimes": {
    "ocipy": {"path": "$ocipy"},
    "runcw": {"path": "$runc"}
  }
}
EOF
    rm -f "$dir/docker.sock"
    # setsid: the daemon must not get the terminal's or pytest's signals; cwd DIR so nothing lands elsewhere.
    (cd "$dir" && exec setsid /usr/sbin/dockerd \
        --config-file "$dir/daemon.json" \
        --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        -H "unix://$dir/docker.sock" \
        --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
        --storage-driver vfs --exec-opt native.cgroupdriver=cgroupfs \
        </dev/null >"$dir/dockerd.log" 2>&1 &)
    wait_socket "$dir/docker.sock" "$dir/dockerd.pid" "$dir/dockerd.log" dockerd || exit 1
    for i in $(seq 1 50); do
        /usr/bin/docker -H "unix://$dir/docker.sock" version >/dev/null 2>&1 && exit 0
        sleep 0.2
    done
    echo "dockerd does not answer on $dir/docker.sock:" >&2; tail -n 15 "$dir/dockerd.log" >&2; exit 1
    ;;
start-containerd)
    dir=${2:?DIR}
    mkdir -p "$dir"
    cat > "$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
    rm -f "$dir/containerd.sock"
    (cd "$dir" && exec setsid /usr/bin/containerd --config "$dir/config.toml" </dev/null >"$dir/containerd.log" 2>&1 &
     echo $! > "$dir/containerd.pid")
    wait_socket "$dir/containerd.sock" "$dir/containerd.pid" "$dir/containerd.log" containerd || exit 1
    ;;
stop)
    dir=${2:?DIR}
    for pidfile in "$dir/dockerd.pid" "$dir/containerd.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || { rm -f "$pidfile"; continue; }
        for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$pidfile: $pid ignored SIGTERM for 20s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        rm -f "$pidfile"
    done
    ;;
*)
    die "usage: $0 install | start-docker DIR OCIPY RUNC | start-containerd DIR | stop DIR"
    ;;
esac
