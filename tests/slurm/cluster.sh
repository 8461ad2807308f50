#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the integration test (tests/test_slurm.py).
#
#   tests/slurm/cluster.sh start DIR   install Debian's slurm-wlm, slurmdbd, munge and MariaDB if
#                                      missing, start every daemon with a fresh state and wait
#                                      until the node is idle
#   tests/slurm/cluster.sh stop DIR    stop the daemons that `start DIR` started
#
# Everything a daemon writes (configs, keys, database, spool, logs, sockets) lives in DIR, and
# every daemon listens on 127.0.0.1 only, so nothing outside this machine and outside DIR is
# touched (only the packages are installed system-wide). Clients find the cluster through
# SLURM_CONF=DIR/slurm.conf and PATH=DIR/bin:$PATH (see write_srun_wrapper). Needs root
# (slurmd starts jobs as their user) and apt-get.
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
COMMANDS=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo munged mariadbd mariadb-install-db)
CLUSTER=rerank-audit
# Ports away from the defaults (6817-6819, 3306) so that a SLURM or MariaDB already on the
# machine is left alone.
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306

log() { echo "[cluster $(date +%T)] $*" >&2; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "gave up after ${seconds}s waiting for $what; logs in $DIR/log"
    tail -n 20 "$DIR"/log/*.log >&2 || true
    return 1
}

install_packages() {
    local missing=()
    for cmd in "${COMMANDS[@]}"; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

write_configs() {
    local cpus memory
    cpus=$(getconf _NPROCESSORS_ONLN) # not nproc: it honours OMP_NUM_THREADS, which the jobs do not
    # What slurmd detects, less 1 GiB so that the node never reports less than configured.
    memory=$(($(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') - 1024))
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$DIR/spool/slurmctld
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups: the machine may be a container without a delegated cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# sacct then shows the rule that the SLURM executor writes into each job's comment.
AccountingStoreFlags=job_comment
# The munge socket of connections to slurmdbd (AuthInfo covers only the others).
AccountingStoragePass=$DIR/munge/munge.sock
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"
}

write_srun_wrapper() {
    # snakemake-executor-plugin-slurm-jobstep runs its inner `srun` with every SLURM_* variable
    # removed, SLURM_CONF included; a real cluster's config sits at /etc/slurm (or is served
    # configless), this one's only in DIR, so the srun found first on PATH restores it.
    mkdir -p "$DIR/bin"
    printf '#!/bin/sh\nexport SLURM_CONF=%s\nexec %s "$@"\n' "$DIR/slurm.conf" "$(command -v srun)" >"$DIR/bin/srun"
    chmod +x "$DIR/bin/srun"
}

start_munge() {
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.sock" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 30 munge munge --socket="$DIR/munge/munge.sock" -n
}

start_mariadb() {
    local sock="$DIR/run/mariadb.sock"
    mariadb-install-db --no-defaults --user=root --datadir="$DIR/mariadb" \
        --auth-root-authentication-method=socket --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
    mariadbd --no-defaults --user=root --datadir="$DIR/mariadb" --socket="$sock" \
        --bind-address=127.0.0.1 --port=$DB_PORT --pid-file="$DIR/run/mariadb.pid" \
        --log-error="$DIR/log/mariadb.log" &
    wait_for 60 MariaDB mariadb-admin --no-defaults --socket="$sock" ping
    mariadb --no-defaults --socket="$sock" -u root -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start() {
    install_packages
    [[ -d $DIR/run ]] && stop 2>/dev/null # a cluster left running in DIR; then a fresh state
    rm -rf "$DIR"/{bin,log,run,munge,spool,mariadb}
    mkdir -p "$DIR"/{log,run,munge,spool/slurmctld,spool/slurmd}
    write_configs
    write_srun_wrapper
    export SLURM_CONF="$DIR/slurm.conf"
    start_munge
    start_mariadb
    slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    slurmctld
    slurmd -N localhost
    wait_for 120 "the node to be idle" bash -c '[[ "$(sinfo -h -N -o %T)" == idle ]]'
    log "one-node cluster up: export SLURM_CONF=$SLURM_CONF PATH=$DIR/bin:\$PATH"
}

stop_daemon() { # stop_daemon NAME: TERM the pid in DIR/run/NAME.pid and wait for it to exit
    local pidfile="$DIR/run/$1.pid" pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    export SLURM_CONF="$DIR/slurm.conf"
    # scancel waits for an unreachable controller: ask only a running one.
    if [[ -s $DIR/run/slurmctld.pid ]] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
        scancel --user="$(id -un)" || true
    fi
    for daemon in slurmd slurmctld slurmdbd mariadb munged; do stop_daemon "$daemon"; done
    log "stopped"
}

[[ $# -eq 2 && ($1 == start || $1 == stop) ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
DIR=$(realpath -m "$2")
"$1"
