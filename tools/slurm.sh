#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages, without systemd.
#
# Usage: bash tools/slurm.sh start|stop|status|env
#
#   start   (root) install slurmctld, slurmd, slurm-client and munge when missing, write the
#           configuration, start munged, slurmctld and slurmd, wait until the node is idle.
#           A second start notices the running cluster and does nothing.
#   stop    (root) cancel the cluster's remaining jobs, then end the daemons that start started,
#           by the PIDs in their pid files (never by name). Idempotent.
#   status  print the daemons, the node and the queue; exit 0 when the cluster is up, 3 when not.
#   env     print 'export SLURM_CONF=...': eval "$(bash tools/slurm.sh env)" makes sinfo,
#           sbatch, squeue (and RADICAL-Pilot's Slurm launcher) use this cluster.
#
# Everything the cluster writes lives in one folder, $SCALEMS_SLURM_DIR (default
# /var/tmp/scalems-slurm: one cluster per machine, shared by every worktree):
#   slurm.conf               the configuration (SLURM_CONF points here; nothing is written to /etc/slurm)
#   jobcomp.txt              one line per finished job (JobCompType=jobcomp/filetxt): JobId, JobState, WorkDir, ...
#   log/                     slurmctld.log, slurmd.log
#   run/                     slurmctld.pid, slurmd.pid
#   munge/                   munged.pid, munged.log (owned by user munge)
#   state/ctld, state/slurmd StateSaveLocation, SlurmdSpoolDir
# munged uses its packaged key (/etc/munge/munge.key) and socket (/run/munge), where Slurm looks
# for them. A munged that was already running is used and left alone by stop.
set -euo pipefail

DIR="${SCALEMS_SLURM_DIR:-/var/tmp/scalems-slurm}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
PACKAGES=(slurmctld slurmd slurm-client munge)
NODE="$(hostname -s)"
START_TIMEOUT="${SCALEMS_SLURM_START_TIMEOUT:-60}"

say() { echo "slurm.sh: $*" >&2; }
die() { say "$*"; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "'$1' must run as root (it installs packages and starts daemons)."
}

# pid_of NAME PIDFILE: the PID in PIDFILE if that process is alive and is NAME (guards against PID reuse).
pid_of() {
    local name="$1" file="$2" pid state
    [ -s "$file" ] || return 1
    pid="$(tr -dc '0-9' 2>/dev/null <"$file")" || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [ "$state" != "Z" ] || return 1
    echo "$pid"
}

munge_works() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# The node's state as sinfo reports it ('' when slurmctld does not answer).
node_state() {
    command -v sinfo >/dev/null || return 0
    timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1 | tr -d '*~#!%$@^-' || true
}

node_up() {
    case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

have_packages() {
    local bin
    for bin in slurmctld slurmd sinfo sbatch srun munged munge; do
        command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || return 1
    done
}

install_packages() {
    have_packages && return 0
    say "installing ${PACKAGES[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting the daemons (there is no systemd, and
    # the init scripts would use /etc/slurm/slurm.conf): a policy-rc.d that denies every start,
    # only when there is none already, removed afterwards.
    local policy=/usr/sbin/policy-rc.d added=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added=1
    fi
    local status=0
    # apt-get update only when needed: no candidate version known, or the install fails (stale lists).
    if ! apt-cache policy slurmctld 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq || status=$?
    fi
    if [ "$status" -eq 0 ]; then
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null || {
            say "install failed; updating the package lists and trying again"
            apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
        } || status=$?
    fi
    [ -z "$added" ] || rm -f "$policy"
    [ "$status" -eq 0 ] || die "could not install ${PACKAGES[*]} (apt-get status $status)"
    have_packages || die "installed ${PACKAGES[*]}, but slurmctld/slurmd/sinfo/munged are still missing"
}

write_config() {
    mkdir -p "$DIR/log" "$DIR/run" "$DIR/state/ctld" "$DIR/state/slurmd"
    touch "$DIR/jobcomp.txt"
    chmod 755 "$DIR" "$DIR/log" "$DIR/run"
    chmod 644 "$DIR/jobcomp.txt"
    local cpus mem_mib
    cpus="$(nproc --all)"
    mem_mib="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)"
    cat >"$CONF.new" <<EOF
# Written by tools/slurm.sh: a single-node cluster on $NODE. Rewritten at each start.
ClusterName=scalems
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# pgid, not linuxproc: RP's task wrapper can die before its children, which are then
# re-parented to PID 1; linuxproc (parentage) loses them and the job hangs in COMPLETING
# with the task still running; pgid finds them by their process group. No cgroups here.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
MailProg=/bin/true
ReturnToService=2
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
    chmod 644 "$CONF"
}

start_munge() {
    if pid_of munged "$DIR/munge/munged.pid" >/dev/null; then
        return 0
    fi
    if munge_works; then
        say "using the munged that is already running (not started here; stop leaves it alone)"
        return 0
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 0700 /etc/munge
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0755 "$DIR/munge"
    runuser -u munge -- /usr/sbin/munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log"
    local i
    for i in $(seq 100); do
        munge_works && return 0
        sleep 0.1
    done
    die "munged did not come up; see $DIR/munge/munged.log"
}

start_daemon() {  # NAME
    local name="$1"
    if pid_of "$name" "$DIR/run/$name.pid" >/dev/null; then
        return 0
    fi
    rm -f "$DIR/run/$name.pid"
    "/usr/sbin/$name" || die "$name did not start; see $DIR/log/$name.log"
}

cmd_start() {
    need_root start
    if running; then
        say "already running (SLURM_CONF=$CONF)"
        return 0
    fi
    install_packages
    write_config
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    local deadline=$((SECONDS + START_TIMEOUT)) resumed=""
    until node_up; do
        case "$(node_state)" in
            down | drained | draining | drain)
                if [ -z "$resumed" ]; then
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "node $NODE is not idle after ${START_TIMEOUT} s (state: '$(node_state)'); logs in $DIR/log"
            tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    say "up: node $NODE $(node_state) (SLURM_CONF=$CONF)"
}

# The cluster is up: its daemons (munged: ours or another) are alive and the node answers.
running() {
    [ -s "$CONF" ] &&
        pid_of slurmctld "$DIR/run/slurmctld.pid" >/dev/null &&
        pid_of slurmd "$DIR/run/slurmd.pid" >/dev/null &&
        { pid_of munged "$DIR/munge/munged.pid" >/dev/null || munge_works; } &&
        node_up
}

stop_pid() {  # NAME PIDFILE
    local name="$1" file="$2" pid i
    if pid="$(pid_of "$name" "$file")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 200); do
            [ -d "/proc/$pid" ] && pid_of "$name" "$file" >/dev/null || break
            sleep 0.1
        done
        if pid_of "$name" "$file" >/dev/null; then
            say "$name ($pid) did not end after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name ($pid)"
    fi
    rm -f "$file"
}

cmd_stop() {
    need_root stop
    if pid_of slurmctld "$DIR/run/slurmctld.pid" >/dev/null && command -v squeue >/dev/null; then
        # Jobs die with their cluster: cancel them while slurmd can still end their processes.
        local jobs i
        jobs="$(timeout 10 squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %i 2>/dev/null || true)"
        if [ -n "$jobs" ]; then
            say "cancelling jobs still in the queue: $(echo $jobs)"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for i in $(seq 300); do
                [ -z "$(timeout 10 squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %i 2>/dev/null)" ] && break
                sleep 0.1
            done
        fi
    fi
    stop_pid slurmd "$DIR/run/slurmd.pid"
    stop_pid slurmctld "$DIR/run/slurmctld.pid"
    stop_pid munged "$DIR/munge/munged.pid"
}

cmd_status() {
    local name file pid up=0
    echo "SLURM_CONF=$CONF"
    for name in munged slurmctld slurmd; do
        file="$DIR/run/$name.pid"
        [ "$name" != munged ] || file="$DIR/munge/munged.pid"
        if pid="$(pid_of "$name" "$file")"; then
            echo "$name: running (pid $pid)"
        elif [ "$name" = munged ] && munge_works; then
            echo "munged: running (not started by slurm.sh)"
        else
            echo "$name: not running"
        fi
    done
    if running; then
        timeout 10 sinfo -N -o '%N %P %T %c %m' || true
        timeout 10 squeue || true
        echo "up"
    else
        echo "down"
        up=3
    fi
    return "$up"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *)
        echo "usage: bash tools/slurm.sh start|stop|status|env" >&2
        exit 2
        ;;
esac
