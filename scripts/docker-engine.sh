#!/usr/bin/env bash
# scripts/docker-engine.sh -- run a real Docker engine for tx's integration tests and CI,
# without any container registry and without the default bridge network.
#
#   bash scripts/docker-engine.sh up          # install docker.io + debootstrap if missing, start dockerd
#   bash scripts/docker-engine.sh base-image  # build/import tx-base:bookworm (debootstrap, no registry)
#                                             # stdout: the image id, nothing else
#   bash scripts/docker-engine.sh status      # "up (...)" exit 0, or "down" exit 1
#   bash scripts/docker-engine.sh down        # stop the dockerd (and its containerd) started by `up`
#
# Environment:
#   TX_DOCKER_DIR        log, pid files, lock            (default /tmp/tx-docker)
#   TX_DOCKER_DATA_ROOT  dockerd --data-root             (default /var/lib/docker)
#   TX_DOCKER_TIMEOUT    seconds to wait for dockerd     (default 90)
#   XDG_CACHE_HOME       rootfs tarball cache lives in ${XDG_CACHE_HOME:-~/.cache}/tx/docker/
#   TX_DEBIAN_MIRROR     debootstrap mirror              (default http://deb.debian.org/debian)
#
# dockerd always runs with --bridge=none --iptables=false --ip-masq=false --ip-forward=false:
# no docker0 bridge, no 172.17.x addresses, no NAT rules. Containers use `--network none`
# (or `--network host` when they must reach a service on loopback).
#
# Verified 2026-11 on Debian bookworm, root, 2 CPUs, only deb.debian.org + PyPI reachable
# (docker.io 20.10.24+dfsg1, containerd 1.6.20, runc 1.1.5, overlay2 on ext4, cgroup v1;
# docker CLI 28.2.2 in /usr/local/bin and Debian's 20.10 CLI; docker SDK 7.1.0), wall times:
#   up, first time: apt-get install docker.io debootstrap + start ......... 18 s
#   up, packages present (dockerd answering `docker info`) ................. 0.7 s
#   up, dockerd already answering (no-op) .................................. 0.1 s
#   base-image, cold: debootstrap 64 s + tar to cache + import + py check .. 67 s
#     (cached rootfs tar 190 MB; image 191 MB; python 3.11.2)
#   base-image, cached tar, dockerd data root empty (TX_DOCKER_DATA_ROOT) .. 3.7 s
#   base-image, image present ............................................. 0.1 s
#   docker run --rm --network none tx-base:bookworm python3 -c 'import sys; print(sys.version)'
#     -> 3.11.2 ........................................................... 0.3 s
#   docker build --no-cache --network none: FROM tx-base:bookworm, COPY wheels, python3 -m venv
#     /opt/venv && /opt/venv/bin/pip install --no-index --find-links /wheels requests
#     (wheelhouse from `pip download -d wheels requests` on the host) ........ 7 s
#   docker run --network none --user 1234:1234 -v DIR:/out ... -> files in DIR owned 1234:1234
#     (and 0:0 for --user $(id -u):$(id -g) as root)
#   docker run --network host ... reaches a server on 127.0.0.1 of the host
#   SDK: docker.from_env().ping() -> True; client.images.build(path=, network_mode="none")
#     builds and returns (image, logs) after the build; client.api.build(..., decode=True)
#     streams "Step n/m" progress live (~7 s for the build above)
#   down: no dockerd/containerd/shim/mount left ........ 2.5 s (12.6 s with a container running)
#   up again after down .................................................... 0.7 s
#   up with TX_DOCKER_TIMEOUT=0 / with dockerd refusing to start -> exit 1 + dockerd log tail
set -euo pipefail

TX_DOCKER_DIR=${TX_DOCKER_DIR:-/tmp/tx-docker}
case $TX_DOCKER_DIR in /*) ;; *) TX_DOCKER_DIR=$PWD/$TX_DOCKER_DIR ;; esac
DATA_ROOT=${TX_DOCKER_DATA_ROOT:-/var/lib/docker}
TIMEOUT=${TX_DOCKER_TIMEOUT:-90}
MIRROR=${TX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tx/docker"

IMAGE=tx-base:bookworm
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,ca-certificates

PIDFILE="$TX_DOCKER_DIR/dockerd.pid"
CTRD_PIDFILE="$TX_DOCKER_DIR/containerd.pid"
LOG="$TX_DOCKER_DIR/dockerd.log"
# dockerd's default exec root; its managed containerd lives under it.
EXEC_ROOT=/var/run/docker
CTRD_SOCK="$EXEC_ROOT/containerd/containerd.sock"

say() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# helpers

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# pid_is NAME PID: the process PID runs executable NAME (guards against recycled pids).
pid_is() {
    local comm
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    [[ $comm == "$1" ]]
}

docker_answers() { command -v docker >/dev/null && timeout 15 docker info >/dev/null 2>&1; }

lock() {
    mkdir -p "$TX_DOCKER_DIR"
    exec 9>"$TX_DOCKER_DIR/lock"
    flock -w 1800 9 || die "could not lock $TX_DOCKER_DIR/lock (another docker-engine.sh running?)"
}

apt_has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $c && $c != "(none)" ]]
}

# ensure_packages PKG...: apt-get install the given packages if any is not installed.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local aptopts=(-o DPkg::Lock::Timeout=900 -o Acquire::Retries=3
                   -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30)
    for p in "${missing[@]}"; do
        if ! apt_has_candidate "$p"; then
            say "apt-get update (no candidate for $p)"
            # Unreachable third-party sources make `update` fail; what matters is the candidate.
            apt-get "${aptopts[@]}" update -q >&2 || say "apt-get update reported errors (continuing)"
            break
        fi
    done
    for p in "${missing[@]}"; do
        apt_has_candidate "$p" || die "apt has no candidate for $p (is deb.debian.org in sources?)"
    done
    say "apt-get install ${missing[*]}"
    # The package's maintainer scripts must not start a dockerd with the default bridge:
    # block service starts with a policy-rc.d for the duration of the install.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    apt-get "${aptopts[@]}" install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >&2 || rc=$?
    ((made_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
}

engine_packages() {
    local pkgs=(docker.io debootstrap debian-archive-keyring)
    # With AppArmor enabled in the kernel, dockerd needs apparmor_parser for its default profile.
    if [[ $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null) == Y* ]]; then
        pkgs+=(apparmor)
    fi
    ensure_packages "${pkgs[@]}"
}

warn_if_bridge() {
    if docker network inspect bridge >/dev/null 2>&1; then
        say "WARNING: the running dockerd has a 'bridge' network (172.17.x addresses)."
        say "WARNING: it was not started by this script; tx tests expect --bridge=none."
    fi
}

# ---------------------------------------------------------------------------------------------
# up

cmd_up() {
    lock
    if docker_answers; then
        say "dockerd already answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null)); nothing to do"
        warn_if_bridge
        return 0
    fi
    engine_packages
    command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"

    local pid=""
    [[ -f $PIDFILE ]] && pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if pid_alive "$pid" && pid_is dockerd "$pid"; then
        say "dockerd (pid $pid) is running but not answering yet; waiting"
    else
        rm -f "$PIDFILE" "$CTRD_PIDFILE"
        mkdir -p "$TX_DOCKER_DIR" "$DATA_ROOT"
        {
            echo "=== $(date -Is) docker-engine.sh up"
        } >>"$LOG"
        # setsid: dockerd must outlive the shell/session that ran `up`.
        # 9>&- : do not let dockerd inherit our lock.
        setsid dockerd \
            --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
            --data-root "$DATA_ROOT" \
            </dev/null >>"$LOG" 2>&1 9>&- &
        pid=$!   # setsid execs dockerd in place (we are not a process-group leader)
        echo "$pid" >"$PIDFILE"
        say "started dockerd (pid $pid), log $LOG"
    fi

    local deadline=$((SECONDS + TIMEOUT))
    until docker_answers; do
        if ! pid_alive "$pid"; then
            say "dockerd exited; last lines of $LOG:"
            tail -n 40 "$LOG" >&2 || true
            die "dockerd failed to start"
        fi
        if ((SECONDS >= deadline)); then
            say "dockerd did not answer within ${TIMEOUT}s; last lines of $LOG:"
            tail -n 40 "$LOG" >&2 || true
            die "dockerd did not come up (pid $pid still running; stop it with: $0 down)"
        fi
        sleep 0.5
    done
    # dockerd starts its own containerd; remember it so `down` can make sure it is gone.
    local cpid
    cpid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null || true)
    if pid_alive "$cpid"; then echo "$cpid" >"$CTRD_PIDFILE"; fi
    say "dockerd answers (server $(docker version -f '{{.Server.Version}}' 2>/dev/null), pid $pid)"
    warn_if_bridge
}

# ---------------------------------------------------------------------------------------------
# base-image

# Unmount anything debootstrap left mounted under $1 (deepest first), then delete $1 without
# crossing into other file systems.
remove_rootfs() {
    local dir=$1 m
    [[ -n $dir && -d $dir ]] || return 0
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r)
    rm -rf --one-file-system "$dir"
}

build_rootfs_tarball() {
    local tarball=$1 rootfs dlog="$TX_DOCKER_DIR/debootstrap.log" t0=$SECONDS
    ensure_packages debootstrap debian-archive-keyring
    mkdir -p "$CACHE_DIR"
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/tx-rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "remove_rootfs '$rootfs'; rm -f '$tarball.part'" EXIT
    say "debootstrap $SUITE into $rootfs (log $dlog; takes a minute or two)"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
            >"$dlog" 2>&1; then
        tail -n 30 "$dlog" >&2 || true
        tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
        die "debootstrap failed"
    fi
    # Anything still mounted inside the tree must not end up in the image.
    awk -v d="$rootfs" 'index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
    # Smaller image; apt caches are useless without a registry/mirror anyway.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log "$rootfs"/debootstrap
    tar --numeric-owner --one-file-system -C "$rootfs" -cf "$tarball.part" .
    mv -f "$tarball.part" "$tarball"
    remove_rootfs "$rootfs"
    trap - EXIT
    say "rootfs tarball $tarball ($(du -h "$tarball" | cut -f1), $((SECONDS - t0))s)"
}

cmd_base_image() {
    lock
    docker_answers || die "dockerd does not answer; run: bash $0 up"
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        docker image inspect -f '{{.Id}}' "$IMAGE"
        return 0
    fi
    # The cache key changes when the recipe does.
    local key tarball t0=$SECONDS
    key=$(printf '%s|%s|%s|%s' "$SUITE" "$INCLUDE" "$MIRROR" minbase | sha256sum | cut -c1-12)
    tarball="$CACHE_DIR/tx-base-$SUITE-$key.tar"
    if [[ -s $tarball ]]; then
        say "using cached rootfs $tarball"
    else
        build_rootfs_tarball "$tarball"
    fi
    say "docker import $tarball -> $IMAGE"
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'LABEL org.tx.base-image=debootstrap-bookworm-minbase' \
        -c 'CMD ["python3"]' \
        "$tarball" "$IMAGE" >/dev/null
    # The project installs cp311 wheels into images built on this one.
    local ver
    ver=$(docker run --rm --network none "$IMAGE" python3 -c \
        'import sys; print("%d.%d" % sys.version_info[:2])') || die "python3 does not run in $IMAGE"
    [[ $ver == 3.11 ]] || die "$IMAGE has python $ver, expected 3.11"
    say "$IMAGE ready (python $ver, $((SECONDS - t0))s)"
    docker image inspect -f '{{.Id}}' "$IMAGE"
}

# ---------------------------------------------------------------------------------------------
# down

# stop_pid NAME PID SECONDS: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 wait_s=$3 i
    pid_alive "$pid" && pid_is "$name" "$pid" || return 0
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 5; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.2
    done
    say "$name (pid $pid) ignored SIGTERM for ${wait_s}s; killing"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.2
    done
    say "WARNING: $name (pid $pid) is still alive"
}

# containerd shims that belong to the containerd dockerd started (matched by its socket path).
leftover_shims() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == containerd-shim* ]] || continue
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$CTRD_SOCK" && echo "${p#/proc/}"
    done
    return 0
}

# Mounts dockerd leaves behind once it is gone: its default network namespace, and (when it was
# stopped while starting) the bind mount of the data root onto itself that it makes to get
# shared mount propagation. A data root that is a file system of its own is left alone: only
# a self-bind (mountinfo root == mount point) is removed.
cleanup_mounts() {
    local ns root
    ns=$(readlink -f "$EXEC_ROOT/netns/default" 2>/dev/null || true)
    if [[ -n $ns ]] && grep -q " $ns nsfs " /proc/mounts 2>/dev/null; then
        umount "$ns" 2>/dev/null || true
    fi
    root=$(readlink -f "$DATA_ROOT" 2>/dev/null || true)
    if [[ -n $root && $root != / ]] &&
        awk -v r="$root" '$4 == r && $5 == r {found = 1} END {exit !found}' /proc/self/mountinfo; then
        umount "$root" 2>/dev/null || say "WARNING: could not unmount the self-bind of $root"
    fi
}

cmd_down() {
    lock
    local pid cpid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    cpid=$(cat "$CTRD_PIDFILE" 2>/dev/null || true)
    if ! pid_alive "$pid" || ! pid_is dockerd "$pid"; then
        if docker_answers; then
            say "a dockerd answers but was not started by this script ($PIDFILE); leaving it alone"
        else
            say "dockerd is not running"
            cleanup_mounts
        fi
        rm -f "$PIDFILE" "$CTRD_PIDFILE"
        return 0
    fi
    [[ -n $cpid ]] || cpid=$(cat "$EXEC_ROOT/containerd/containerd.pid" 2>/dev/null || true)
    # dockerd stops running containers (up to 10s each) and its containerd on SIGTERM.
    stop_pid dockerd "$pid" 60
    stop_pid containerd "$cpid" 15
    local s c
    for s in $(leftover_shims); do
        say "removing leftover shim $s and its container processes"
        for c in $(ps -o pid= --ppid "$s" 2>/dev/null); do
            kill -KILL "$c" 2>/dev/null || true
        done
        stop_pid "$(cat "/proc/$s/comm" 2>/dev/null || echo containerd-shim-runc-v2)" "$s" 5
    done
    cleanup_mounts
    rm -f "$PIDFILE" "$CTRD_PIDFILE"
    say "dockerd stopped"
}

cmd_status() {
    if docker_answers; then
        local img=missing
        docker image inspect "$IMAGE" >/dev/null 2>&1 && img=present
        echo "up (server $(docker version -f '{{.Server.Version}}' 2>/dev/null), $IMAGE $img)"
        warn_if_bridge
    else
        echo "down"
        return 1
    fi
}

case ${1:-} in
    up) cmd_up ;;
    base-image) cmd_base_image ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: bash $0 up|base-image|down|status" >&2
        exit 2
        ;;
esac
