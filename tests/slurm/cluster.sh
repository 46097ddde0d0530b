#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the test suite (tests/test_slurm.py).
#
#   tests/slurm/cluster.sh start    install what is missing, start the daemons, wait for the node
#   tests/slurm/cluster.sh status   what runs, the node's state
#   tests/slurm/cluster.sh stop     stop the daemons this script started (nothing else)
#   tests/slurm/cluster.sh clean    stop, then delete the scratch directory (state, database, logs)
#
# Needs root and apt (Debian or Ubuntu): it installs slurmctld, slurmd, slurm-client, munge,
# slurmdbd and mariadb-server with --no-install-recommends when they are missing. Every file
# it writes (slurm.conf, slurmdbd.conf, state, accounting database, logs) lives in
# $RUNNER_SLURM_DIR (default /tmp/llm-sweep-runner-slurm); the system's /etc/slurm is not
# touched. Slurm's commands find this cluster through SLURM_CONF: `start` prints
# `SLURM_CONF=...` as its last line; `eval "$(tests/slurm/cluster.sh env)"` sets it in a shell.
#
# Why the configuration looks the way it does:
# - no systemd here: daemons are started directly, /run/munge and /run/mysqld created first;
# - no cgroup plugins: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none;
# - the node is described as it is (`slurmd -C`: its name, CPUs and RealMemory) so resource
#   checks against it are honest, with one CPU slot more than the machine has
#   (SlurmdParameters=config_overrides): the time-limit test's job only waits in it, for two
#   one-minute attempts, while the other tests' jobs use the real CPUs (tests/test_slurm.py);
#   DefMemPerCPU keeps a job without --mem from taking the whole node;
# - AuthInfo=cred_expire=10: a requeued job waits cred_expire+1 s before it may start again
#   (121 s by default); sched_interval/bf_interval=5 s start pending jobs quickly;
# - slurmdbd + MariaDB: sacct works (submitit polls job states with sacct; without it a job
#   that died without a result can be waited on forever);
# - ports away from Slurm's defaults, so a system Slurm on the same machine is not disturbed.
set -euo pipefail

DIR=${RUNNER_SLURM_DIR:-/tmp/llm-sweep-runner-slurm}
CLUSTER=runnertest
PARTITION=${RUNNER_SLURM_PARTITION:-cpu}
CTLD_PORT=${RUNNER_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
NODE_WAIT_S=${RUNNER_SLURM_WAIT_S:-90}

export SLURM_CONF=$DIR/slurm.conf

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

need_root() {
    [[ $(id -u) == 0 ]] || die "needs root (it installs packages and starts munged, slurmctld, slurmd)"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    log "installing ${missing[*]}"
    # policy-rc.d: the packages must not try to start their services (no init system here).
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >"$DIR/log/apt.log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$DIR/log/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >>"$DIR/log/apt.log" 2>&1 || {
            [[ -n $created_policy ]] && rm -f "$policy"
            die "apt-get install failed (see $DIR/log/apt.log)"
        }
    fi
    [[ -n $created_policy ]] && rm -f "$policy"
    return 0
}

ensure_hostname() {
    # slurmd names the node by the short hostname, and slurmctld must resolve it.
    NODE=$(hostname -s)
    if ! getent hosts "$NODE" >/dev/null; then
        log "adding $NODE to /etc/hosts (it did not resolve)"
        echo "127.0.0.1 $NODE" >>/etc/hosts
    fi
}

write_configs() {
    local hw
    hw=$(slurmd -C | head -1)
    [[ $hw == NodeName=* ]] || die "slurmd -C printed no node line"
    local name cpus memory
    name=$(grep -o 'NodeName=[^ ]*' <<<"$hw")
    cpus=$(grep -o 'CPUs=[0-9]*' <<<"$hw" | cut -d= -f2)
    memory=$(grep -o 'RealMemory=[0-9]*' <<<"$hw")
    # CPUs alone (no sockets/cores/threads): Slurm takes one core per CPU, consistent with
    # the extra slot (see the top of this file).
    hw="$name CPUs=$((cpus + 1)) $memory"
    mkdir -p "$DIR"/{state,spool,log,run}
    cat >"$DIR/slurm.conf.new" <<EOF
# Written by tests/slurm/cluster.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
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
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=15
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1024
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
$hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # Daemons left running by an earlier session with another slurm.conf (an older checkout)
    # are restarted: slurmctld and slurmd read the node's description only when they start.
    if [[ -f $DIR/slurm.conf ]] && ! cmp -s "$DIR/slurm.conf.new" "$DIR/slurm.conf"; then
        CONF_CHANGED=1
    fi
    mv "$DIR/slurm.conf.new" "$DIR/slurm.conf"
    cat >"$DIR/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh.
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
EOF
    chmod 600 "$DIR/slurmdbd.conf"
}

# A daemon this script started has its pid in $DIR/run/NAME.started; `stop` ends only those.
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS WHAT COMMAND...
    local limit=$1 what=$2 t=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((t++ < limit * 5)) || die "$what did not come up within ${limit} s (logs: $DIR/log)"
        sleep 0.2
    done
}

mark_started() { cp "$1" "$DIR/run/$2.started"; }

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0 # a munged is already serving this machine: use it, leave it running
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    [[ -f /etc/munge/munge.key ]] || { mungekey --create >/dev/null && chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    wait_for 20 munged sh -c 'munge -n </dev/null | unmunge'
    mark_started /run/munge/munged.pid munged
}

# MariaDB runs as the mysql user: its socket, pid file and log live in a directory it owns.
DB_RUN=$DIR/mariadb
mysql_up() { mariadb-admin --socket="$DB_RUN/mysqld.sock" ping; }

start_mariadb() {
    alive "$DIR/run/mariadb.started" && return 0
    mkdir -p /run/mysqld "$DB_RUN" && chown mysql:mysql /run/mysqld "$DB_RUN"
    chmod 755 "$DIR"
    if [[ ! -d $DIR/mysql/mysql ]]; then
        rm -rf "$DIR/mysql"
        mariadb-install-db --user=mysql --datadir="$DIR/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed (see $DIR/log/mariadb-install.log)"
    fi
    chown -R mysql:mysql "$DIR/mysql"
    # Small buffers: the accounting database holds a few hundred rows.
    rm -f "$DB_RUN/mariadb.pid"
    setsid mariadbd --user=mysql --datadir="$DIR/mysql" --socket="$DB_RUN/mysqld.sock" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$DB_RUN/mariadb.pid" \
        --log-error="$DB_RUN/mariadb.log" --innodb-buffer-pool-size=32M \
        --skip-log-bin </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb mysql_up
    wait_for 10 "mariadb pid file" test -s "$DB_RUN/mariadb.pid"
    mark_started "$DB_RUN/mariadb.pid" mariadb
    mariadb --socket="$DB_RUN/mysqld.sock" <<'EOF'
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurm_daemon() { # NAME COMMAND...
    local name=$1
    shift
    alive "$DIR/run/$name.started" && return 0
    rm -f "$DIR/run/$name.pid"
    "$@" || die "$name failed to start (see $DIR/log/$name.log)"
    wait_for 30 "$name pid file" test -s "$DIR/run/$name.pid"
    mark_started "$DIR/run/$name.pid" "$name"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null; }

node_usable() { [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]; }

cmd_start() {
    need_root
    mkdir -p "$DIR/log" "$DIR/run"
    local t0=$SECONDS
    install_packages
    ensure_hostname
    CONF_CHANGED=
    write_configs
    if [[ -n $CONF_CHANGED ]]; then
        log "slurm.conf changed: restarting slurmctld and slurmd"
        stop_group slurmd slurmctld
    fi
    start_munge
    start_mariadb
    start_slurm_daemon slurmdbd slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    # slurmctld registers the cluster with slurmdbd itself; add it first so sacct never
    # answers for an unknown cluster.
    sacctmgr -i -n add cluster "$CLUSTER" >/dev/null 2>&1 || true
    start_slurm_daemon slurmctld slurmctld -f "$SLURM_CONF"
    wait_for 30 slurmctld scontrol ping
    start_slurm_daemon slurmd slurmd -f "$SLURM_CONF"
    # A node left down or drained by an earlier session (the node-down test) comes back.
    local state
    state=$(node_state || true)
    if [[ $state =~ ^(down|drain|drng|fail) ]]; then
        scontrol update nodename="$NODE" state=resume 2>/dev/null || true
    fi
    wait_for "$NODE_WAIT_S" "node $NODE" node_usable
    log "cluster $CLUSTER up in $((SECONDS - t0)) s: node $NODE $(node_state), partition $PARTITION"
    echo "SLURM_CONF=$SLURM_CONF"
}

stop_group() { # NAME... : TERM them together, wait up to 10 s, then KILL what is left
    local name pids=() names=() t=0 pid
    for name in "$@"; do
        [[ -f $DIR/run/$name.started ]] || continue
        pid=$(cat "$DIR/run/$name.started")
        rm -f "$DIR/run/$name.started"
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid") names+=("$name")
    done
    ((${#pids[@]})) || return 0
    while ((t++ < 100)); do
        kill -0 "${pids[@]}" 2>/dev/null || break # all gone (kill -0 fails if any is gone)
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((t++ < 100)); do sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    log "stopped ${names[*]}"
}

cmd_stop() {
    # Jobs still running would outlive slurmd: cancel them first.
    if alive "$DIR/run/slurmctld.started"; then
        scancel --full --signal=KILL --state=RUNNING --partition="$PARTITION" 2>/dev/null || true
        scancel --partition="$PARTITION" 2>/dev/null || true
    fi
    stop_group slurmd slurmctld slurmdbd # the Slurm daemons first, then what they use
    stop_group mariadb munged
}

cmd_status() {
    local name
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$DIR/run/$name.started"; then
            echo "$name: running (pid $(cat "$DIR/run/$name.started"))"
        else
            echo "$name: not started by this script"
        fi
    done
    NODE=$(hostname -s)
    if [[ -f $SLURM_CONF ]] && scontrol ping >/dev/null 2>&1; then
        sinfo -N -o "%N %P %t %c %m"
    fi
    echo "SLURM_CONF=$SLURM_CONF"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$SLURM_CONF" ;;
clean)
    cmd_stop
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop|status|env|clean" >&2
    exit 2
    ;;
esac
