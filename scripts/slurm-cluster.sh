#!/usr/bin/env bash
# slurm-cluster.sh - a real single-node Slurm cluster for tx's integration tests and CI.
#
#   bash scripts/slurm-cluster.sh up       # install (apt) if needed, start, wait until the node is idle
#   bash scripts/slurm-cluster.sh status   # "up ..." (exit 0) or "down ..." (exit 1)
#   bash scripts/slurm-cluster.sh down     # cancel jobs, stop munged/slurmctld/slurmd, no process left
#
#   out=$(bash scripts/slurm-cluster.sh up) && eval "$out"   # sets SLURM_CONF in the caller
#
# `up` prints exactly one line on stdout: `export SLURM_CONF=<dir>/slurm.conf`; all else goes
# to stderr. Must run as root (slurmd runs jobs as the submitting user).
# Env: TX_SLURM_DIR (default /tmp/tx-slurm), TX_SLURM_TIMEOUT (seconds to wait for the node,
# default 60), TX_SLURM_CTLD_PORT / TX_SLURMD_PORT (default 6817 / 6818).
#
# Verified on Debian bookworm (slurm-wlm 22.05.8, munge 0.5.15), root, 2 CPUs, no systemd:
#   `up` on a fresh machine (apt-get update + install) ~30 s, then ~0.5 s when installed and
#   ~0.1 s when already up; `down` ~1 s (+5 s if a job ignores SIGTERM).
#   sbatch --wrap 'hostname; sleep 2' -> COMPLETED; scancel -> CANCELLED; scontrol requeue
#   <running id> -> Restarts=1, job runs again ~12 s later; scancel --signal=USR1 --batch
#   <id> -> the batch script's `trap ... USR1` runs; two --cpus-per-task=1 jobs RUNNING at
#   once; srun -N1 --ntasks-per-node=1 hostname inside sbatch works; finished jobs stay in
#   `scontrol show job`; down leaves no daemon/slurmstepd/job process; down -> up works;
#   concurrent `up` calls serialise on a lock; a drained node is resumed by `up`.
set -euo pipefail

DIR=${TX_SLURM_DIR:-/tmp/tx-slurm}
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
TIMEOUT=${TX_SLURM_TIMEOUT:-60}
CTLD_PORT=${TX_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${TX_SLURMD_PORT:-6818}
CONF=$DIR/slurm.conf
MUNGE_SOCK=$DIR/munge/munge.socket.2
MARKER=TX_SLURM_CLUSTER_DIR=$DIR   # put in slurmd's environment; slurmstepd inherits it
export SLURM_CONF=$CONF

log() { printf '[slurm-cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $DIR =~ ^[A-Za-z0-9_./+-]+$ ]] || die "TX_SLURM_DIR must be a plain path (got '$DIR')"

node_name() {
    local h
    h=$(hostname -s 2>/dev/null) || h=$(uname -n)
    printf '%s\n' "${h%%.*}"
}
NODE=$(node_name)

# --- processes ---------------------------------------------------------------------------

# pid_of NAME: print the pid from $DIR/run/NAME.pid if that process is alive and is NAME.
pid_of() {
    local name=$1 f=$DIR/run/$1.pid p comm
    [[ -s $f ]] || return 1
    p=$(<"$f")
    [[ $p =~ ^[0-9]+$ ]] || return 1
    read -r comm 2>/dev/null <"/proc/$p/comm" || return 1
    [[ $comm == "$name" ]] && alive "$p" || return 1
    printf '%s\n' "$p"
}

# alive PID: the process exists and is not a zombie (init may be slow to reap here).
alive() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# wait_gone PID SECONDS: wait for a process to exit; return 1 if it is still alive.
wait_gone() {
    local p=$1 n=$(($2 * 10))
    while ((n-- > 0)); do
        alive "$p" || return 0
        sleep 0.1
    done
    ! alive "$p"
}

# stop_daemon NAME: SIGTERM (SIGKILL after 10 s) the daemon named in $DIR/run/NAME.pid.
stop_daemon() {
    local name=$1 p t0=$SECONDS
    if p=$(pid_of "$name"); then
        kill -TERM "$p" 2>/dev/null || true
        if ! wait_gone "$p" 10; then
            log "$name did not exit on SIGTERM; sending SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
            wait_gone "$p" 5 || log "WARNING: $name (pid $p) survived SIGKILL"
        fi
        log "stopped $name (pid $p) in $((SECONDS - t0)) s"
    fi
    rm -f "$DIR/run/$name.pid"
}

# Processes left over from jobs, children listed after parents: our slurmstepds (found by
# the marker in their environment) and everything below them, plus job processes that left
# that tree (proctrack/linuxproc loses a child whose parent exited first), found by
# SLURM_JOB_ID and our SLURM_CONF in their environment. This shell's ancestors are spared.
job_procs() {
    local p kv comm stat rest ppid is_root is_job has_conf
    local roots=() all=() queue=()
    local -A kids=() spare=() seen=()
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        read -r stat 2>/dev/null <"/proc/$p/stat" || continue
        rest=${stat##*) } # "S PPID ...": the comm field before ") " may contain spaces
        ppid=${rest#* }
        ppid=${ppid%% *}
        kids[$ppid]+=" $p"
        read -r comm 2>/dev/null <"/proc/$p/comm" || continue
        is_root='' is_job='' has_conf=''
        while IFS= read -r -d '' kv; do
            case $kv in
            "$MARKER") is_root=1 ;;
            SLURM_JOB_ID=*) is_job=1 ;;
            "SLURM_CONF=$CONF") has_conf=1 ;;
            esac
        done 2>/dev/null <"/proc/$p/environ" || true
        if [[ ($comm == slurmstepd && -n $is_root) || (-n $is_job && -n $has_conf) ]]; then
            roots+=("$p")
        fi
    done
    p=$BASHPID
    while [[ -n $p && $p != 0 ]]; do
        spare[$p]=1
        read -r stat 2>/dev/null <"/proc/$p/stat" || break
        rest=${stat##*) }
        p=${rest#* }
        p=${p%% *}
    done
    queue=("${roots[@]}")
    while ((${#queue[@]})); do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        [[ -n ${seen[$p]:-} ]] && continue
        seen[$p]=1
        [[ -n ${spare[$p]:-} ]] || all+=("$p")
        # shellcheck disable=SC2206
        [[ -n ${kids[$p]:-} ]] && queue+=(${kids[$p]})
    done
    ((${#all[@]})) && printf '%s\n' "${all[@]}"
    return 0
}

# --- health ------------------------------------------------------------------------------

node_state() { timeout 20 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

# healthy: all three daemons alive, slurmctld answers, the node is usable.
healthy() {
    [[ -f $CONF ]] || return 1
    pid_of munged >/dev/null && pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null || return 1
    timeout 20 scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
    [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]
}

show_logs() {
    local f
    log "---- diagnostics (config dir $DIR) ----"
    if pid_of slurmctld >/dev/null; then
        timeout 10 sinfo -N -l >&2 2>&1 || true
        timeout 10 scontrol show node "$NODE" >&2 2>&1 || true
    fi
    for f in "$DIR"/log/munged.log "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log "$DIR"/log/*.out; do
        [[ -s $f ]] || continue
        log "---- tail -n 25 $f ----"
        tail -n 25 "$f" >&2
    done
}

fail() {
    log "ERROR: $*"
    show_logs
    log "stopping the partly started cluster"
    do_down >/dev/null 2>&1 || true
    log "ERROR: $* (see the logs above)"
    exit 1
}

# --- install -----------------------------------------------------------------------------

ensure_packages() {
    local c missing=()
    for c in munged mungekey slurmctld slurmd sbatch srun squeue scontrol scancel sinfo; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    ((${#missing[@]} == 0)) && return 0
    log "missing ${missing[*]}; installing slurm-wlm and munge with apt-get"
    command -v apt-get >/dev/null || die "apt-get not found; install slurm-wlm and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=120)
    if ! apt-cache show slurm-wlm munge >/dev/null 2>&1; then
        log "apt-get update"
        "${apt[@]}" update >&2 || die "apt-get update failed"
    fi
    if ! "${apt[@]}" install slurm-wlm munge >&2; then
        log "apt-get install failed; retrying after apt-get update"
        "${apt[@]}" update >&2 || die "apt-get update failed"
        "${apt[@]}" install slurm-wlm munge >&2 || die "apt-get install slurm-wlm munge failed"
    fi
    for c in munged slurmctld slurmd sbatch; do
        command -v "$c" >/dev/null || die "$c still missing after apt-get install"
    done
}

# --- configuration -----------------------------------------------------------------------

render_conf() {
    local cpus mem_mb headroom real defmem
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # the test suite sets OMP_NUM_THREADS=1, which nproc obeys
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    headroom=$((mem_mb / 10 > 1024 ? mem_mb / 10 : 1024))
    real=$((mem_mb - headroom))
    ((real >= 512)) || real=$((mem_mb / 2))
    defmem=$((real / cpus))
    cat <<EOF
# Generated by scripts/slurm-cluster.sh - single-node test cluster for tx. Do not edit.
ClusterName=tx
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=5
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
MaxJobCount=10000
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
ReturnToService=2
SlurmdParameters=config_overrides
DefMemPerCPU=$defmem
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

make_dirs() {
    mkdir -p "$DIR"/{state,spool,log,run,munge}
    chmod 0755 "$DIR" "$DIR"/{state,spool,log,run,munge}
    if [[ ! -s $DIR/munge/munge.key ]]; then
        log "creating munge key $DIR/munge/munge.key"
        mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown root:root "$DIR/munge/munge.key"
    chmod 0600 "$DIR/munge/munge.key"
}

# --- start / stop ------------------------------------------------------------------------

# launch LOGNAME CMD...: start a self-daemonising program detached from this shell: its
# own session, no stdin, and none of our pipes (fd 3 = caller's stdout, fd 9 = lock).
launch() {
    local name=$1
    shift
    env "$MARKER" setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 3>&- 9>&- ||
        fail "$name failed to start (exit $?)"
}

# wait_pidfile NAME: wait up to 15 s for the daemon's pid file to name a live process.
wait_pidfile() {
    local n=150
    while ((n-- > 0)); do
        pid_of "$1" >/dev/null && return 0
        sleep 0.1
    done
    fail "$1 did not start (no live process in $DIR/run/$1.pid)"
}

port_in_use() { # PORT: something listens on it (checked before starting the daemons)
    local hex
    hex=$(printf '%04X' "$1")
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

start_all() {
    local n state resumed=
    # munged: private key and socket, so a system munged (if any) does not interfere.
    launch munged munged --force \
        --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCK" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_pidfile munged
    munge -S "$MUNGE_SOCK" -n 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1 ||
        fail "munge credential round trip failed"

    if port_in_use "$CTLD_PORT"; then
        fail "port $CTLD_PORT is already in use (another slurmctld?); set TX_SLURM_CTLD_PORT"
    fi
    if port_in_use "$SLURMD_PORT"; then
        fail "port $SLURMD_PORT is already in use (another slurmd?); set TX_SLURMD_PORT"
    fi

    # -i: ignore unreadable state from an earlier run instead of refusing to start.
    launch slurmctld slurmctld -i
    wait_pidfile slurmctld
    n=$((TIMEOUT * 2))
    until timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; do
        ((n-- > 0)) || fail "slurmctld does not answer 'scontrol ping' after ${TIMEOUT}s"
        pid_of slurmctld >/dev/null || fail "slurmctld exited during startup"
        sleep 0.5
    done

    launch slurmd slurmd -N "$NODE"
    wait_pidfile slurmd
    n=$((TIMEOUT * 2))
    while :; do
        state=$(node_state)
        [[ $state =~ ^(idle|mixed|allocated)$ ]] && break
        if [[ $state =~ ^(drained|draining|down|fail|failing)$ && -z ${resumed:-} ]]; then
            # DRAIN/DOWN survives restarts in the saved state; this is a test cluster: resume.
            log "node $NODE is $state; resuming it"
            timeout 10 scontrol update NodeName="$NODE" State=RESUME >&2 || true
            resumed=1
        fi
        ((n-- > 0)) || fail "node $NODE is '$state', not idle, after ${TIMEOUT}s"
        pid_of slurmd >/dev/null || fail "slurmd exited during startup"
        pid_of slurmctld >/dev/null || fail "slurmctld exited during startup"
        sleep 0.5
    done
    log "node $NODE is $state"
}

do_down() {
    local ids p tree=()
    if pid_of slurmctld >/dev/null && [[ -f $CONF ]]; then
        ids=$(timeout 20 squeue -h -o '%A' 2>/dev/null | tr '\n' ' ') || ids=
        if [[ -n ${ids// /} ]]; then
            log "cancelling jobs: $ids"
            # shellcheck disable=SC2086
            timeout 20 scancel $ids 2>/dev/null || true
            for _ in $(seq 50); do # up to 5 s for jobs to leave RUNNING/COMPLETING
                [[ -z $(timeout 10 squeue -h -t running,completing -o '%A' 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    # Whatever is left of jobs (e.g. a script ignoring SIGTERM, or an orphaned child).
    mapfile -t tree < <(job_procs)
    if ((${#tree[@]})); then
        log "killing leftover job processes: ${tree[*]}"
        kill -KILL "${tree[@]}" 2>/dev/null || true
        for p in "${tree[@]}"; do wait_gone "$p" 5 || log "WARNING: pid $p survived SIGKILL"; done
    fi
    stop_daemon slurmd # before slurmctld: without a controller slurmd takes >10 s to exit
    stop_daemon slurmctld
    stop_daemon munged
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    # Step sockets and per-job files of killed steps would make the next slurmd log noise.
    [[ -d $DIR/spool ]] && find "$DIR/spool" -mindepth 1 -delete
    return 0
}

lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 600 9 || die "could not lock $DIR/.lock"
}

# --- commands ----------------------------------------------------------------------------

cmd_up() {
    exec 3>&1 1>&2 # stdout is reserved for the final export line
    [[ $(id -u) == 0 ]] || die "must run as root (slurmd runs jobs as the submitting user)"
    local t0=$SECONDS want
    ensure_packages
    lock
    want=$(render_conf)
    if healthy && [[ $want == "$(cat "$CONF")" ]]; then
        log "already up (node $NODE is $(node_state))"
    else
        if pid_of munged >/dev/null || pid_of slurmctld >/dev/null || pid_of slurmd >/dev/null; then
            log "cluster is not healthy or its config changed; restarting it"
            do_down
        fi
        make_dirs
        printf '%s\n' "$want" >"$CONF"
        chmod 0644 "$CONF"
        log "starting munged, slurmctld, slurmd (SLURM_CONF=$CONF)"
        start_all
        log "up in $((SECONDS - t0)) s"
    fi
    printf 'export SLURM_CONF=%s\n' "$CONF" >&3
}

cmd_down() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    lock
    do_down
    log "down"
}

cmd_status() {
    local d missing=()
    for d in munged slurmctld slurmd; do pid_of "$d" >/dev/null || missing+=("$d"); done
    if ((${#missing[@]} == 3)); then
        echo "down (no daemons running; SLURM_CONF=$CONF)"
        return 1
    fi
    if healthy; then
        echo "up (node $NODE is $(node_state); SLURM_CONF=$CONF)"
        return 0
    fi
    echo "unhealthy (not running: ${missing[*]:-none}; node state: $(node_state || true);" \
        "SLURM_CONF=$CONF); run: bash $0 down && bash $0 up"
    return 1
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
