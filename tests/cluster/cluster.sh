#!/usr/bin/env bash
# Start/stop a REAL two-node Slurm cluster on this one machine, for the tests.
#
#   bash tests/cluster/cluster.sh up       # start everything (idempotent), print exports
#   bash tests/cluster/cluster.sh down     # stop everything we started (idempotent)
#   bash tests/cluster/cluster.sh status   # daemons, netns, sinfo; exit 0 only when usable
#   eval "$(bash tests/cluster/cluster.sh env)"   # export SLURM_CONF=... for this shell
#
# Needs root and the packages from tests/cluster/install.sh (Debian 12: Slurm 22.05).
#
# Layout: everything lives in tests/.cluster/ (gitignored):
#   etc/       slurm.conf, slurmdbd.conf (generated on every `up`; no cgroup.conf,
#              nothing uses cgroups with linuxproc + task/none)
#   munge/     our own munge key, socket, seed, pid   (never /etc/munge)
#   mysql/     MariaDB datadir;  run/ pid files + MariaDB socket;  log/ all daemon logs
#   state/     slurmctld StateSaveLocation and one SlurmdSpoolDir per node
# Nothing is written to /etc/slurm or /etc/munge; the only change outside
# tests/.cluster is a marked block in /etc/hosts and one network namespace
# with a veth pair, both removed by `down`.
#
# Topology:
#   mft-n1  slurmd in the root netns, NodeAddr 10.213.0.1 (root end of the veth)
#   mft-n2  slurmd in netns "mft-test-n2", NodeAddr 10.213.0.2 (namespace end)
#   slurmctld listens in the root netns and is reached at 10.213.0.1 by both nodes;
#   slurmdbd and MariaDB only talk over 127.0.0.1. Non-default ports (base 16817)
#   so an existing Slurm/MariaDB on the machine is not disturbed.
#   Partitions: main (Default) and cpu, both with both nodes, each limited to
#   4 CPUs and 8000 MB per node; urgent (both nodes) preempts them; gpu, both
#   nodes whole (96 CPUs, 1000 GiB, gres gpu:8), for checking GPU directives
#   with --test-only / held jobs.
#
# Things learned the hard way (keep these in mind when editing):
# * No systemd: every daemon is started by hand and tracked by its pid file.
# * `ip netns exec` remounts /sys for the namespace, which hides
#   /sys/fs/cgroup and makes slurmd exit; `nsenter --net=/var/run/netns/NS`
#   only switches the network namespace, which is all we want.
# * No cgroups: ProctrackType=proctrack/linuxproc + TaskPlugin=task/none.
# * Node names must resolve (srun/slurmstepd look them up), hence /etc/hosts.
#   The netns shares the root's filesystem, so it sees the same /etc/hosts and
#   the same unix sockets (munge), but not the root's abstract sockets or ports.
# * Both slurmds share one hostname, so `-N <node>` is mandatory, and both can
#   use the same SlurmdPort because they live in different network namespaces.
# * slurmdbd must reach MariaDB at 127.0.0.1 ("localhost" makes the MySQL client
#   use a socket path instead of TCP). DbdHost=localhost is accepted by slurmdbd
#   as "this host" whatever the real hostname is.
# * slurmctld only runs on a host named in SlurmctldHost (slurm.conf(5): the
#   name `hostname -s` returns), so we use the real short hostname and give
#   the address (10.213.0.1, reachable from the netns) explicitly.
# * The machine has fewer cores than we declare: SlurmdParameters=config_overrides
GresTypes=gpu
#   makes slurmd report the configured CPUs/memory instead of draining the node.
# * With CR_*_Memory, a job without --mem gets the WHOLE node's memory unless
#   DefMemPerCPU is set, which would serialise all jobs; we set DefMemPerCPU.
# * We run our own munged (own key, own socket) so /etc/munge is untouched.
#   Slurm takes the socket from AuthInfo=socket=..., EXCEPT for connections
#   to slurmdbd (sacctmgr, sacct, slurmctld->dbd), which use
#   AccountingStoragePass=<socket>; without it they try /run/munge.
# * slurmdbd warns "Database settings not recommended values" below
#   innodb_buffer_pool_size=1G (256M is not enough); RSS stays small anyway.
# * slurmdbd.conf must be mode 600 and owned by SlurmUser (root here).
# * A requeued job is held PENDING (BeginTime) for ~2 minutes; tests release it
#   with `scontrol update JobId=<id> StartTime=now` (see slurm_env.py).
# * Harmless log noise: "mpi/pmix_v4: can not load PMIx library" (slurmd loads
#   every MPI plugin at start; MpiDefault=none is what jobs use) and the
#   "Could not open ... state file" lines on the very first start.
# * The daemons listen on 0.0.0.0 (slurmctld/slurmdbd/slurmd ports), but every
#   peer address in the configs is 127.0.0.1 or 10.213.0.x, so the traffic
#   stays on loopback and the veth. CommunicationParameters=NoInAddrAny does
#   NOT help: daemons then bind to what `hostname` resolves to (127.0.0.1) and
#   mft-n2 becomes unreachable.
# * GPUs as GRES without GPUs: GresTypes=gpu, Gres=gpu:8 on the node lines and
#   a gres.conf with AutoDetect=off naming eight ordinary files (gpus/gpu0..7)
#   as the devices. A gres.conf with Count=8 and no File leaves the nodes INVAL.
#   Nothing runs on the gpu partition: tests submit there with --test-only or
#   held, then cancel, so a real slurmctld checks --gres/--gpus-per-node.
# * The nodes declare 96 CPUs and 1000 GiB so the flagship recipe's plan
#   (2 nodes x 8 GPUs x 8 CPUs, 480 GB) fits the gpu partition; main and cpu
#   keep the old 4 CPUs / 8000 MB per node through MaxCPUsPerNode and
#   MaxMemPerNode, so jobs there are scheduled as before. urgent has no cap:
#   its --exclusive jobs take a whole node, preempting whatever runs there.
# * slurmctld keeps its state across down/up, so job ids keep increasing and
#   sacct never sees two jobs with the same id.
set -euo pipefail

# ---------------------------------------------------------------- constants
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/.." && pwd -P)/.cluster"        # tests/.cluster

CLUSTER_NAME="${MFT_CLUSTER_NAME:-mftlaunch}"
PORT_BASE="${MFT_CLUSTER_PORT_BASE:-16817}"
CTLD_PORT=$PORT_BASE                 # slurmctld
SLURMD_PORT=$((PORT_BASE + 1))       # both slurmds (separate netns)
DBD_PORT=$((PORT_BASE + 2))          # slurmdbd
DB_PORT=$((PORT_BASE + 3))           # mariadbd, 127.0.0.1 only

NETNS=mft-test-n2
VETH_ROOT=mftveth0
VETH_NS=mftveth1
ADDR_N1=10.213.0.1                   # /30: .1 root end, .2 namespace end
ADDR_N2=10.213.0.2
PREFIX=30
NODES=(mft-n1 mft-n2)
NODE_CPUS=96                         # declared, not real: see "GPUs as GRES" above
NODE_MEM=1024000                     # MB per node (1000 GiB)
NODE_GPUS=8                          # gres gpu:8 per node, ordinary files as devices
PART_CPUS=4                          # main/cpu: CPUs per node (oversubscribed on purpose, 2-core machine)
PART_MEM=8000                        # main/cpu: MB per node
DEF_MEM_PER_CPU=500                  # MB

HOSTS_BEGIN="# BEGIN mftlaunch-test-cluster"
HOSTS_END="# END mftlaunch-test-cluster"

ETC=$ROOT/etc
RUN=$ROOT/run
LOG=$ROOT/log
STATE=$ROOT/state
MUNGE=$ROOT/munge
DBDIR=$ROOT/mysql
export SLURM_CONF=$ETC/slurm.conf
MUNGE_SOCKET=$MUNGE/munge.socket
DB_SOCKET=$RUN/mariadb.sock

CONF_CHANGED=0
UP_TIMEOUT="${MFT_CLUSTER_UP_TIMEOUT:-90}"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }

need_tools() {
    local t missing=()
    for t in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd \
             sacctmgr sinfo srun scontrol ip nsenter; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run: bash tests/cluster/install.sh)"
}

# --------------------------------------------------------------- processes
# pid_alive PIDFILE COMM: the pid in PIDFILE runs and its comm starts with COMM
pid_alive() {
    local f=$1 comm=$2 pid
    [ -s "$f" ] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    # comm is truncated to 15 chars; compare the prefix
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "${comm:0:15}"* ]]
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2s
wait_for() {
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $end ]; then
            log "timed out after ${secs}s waiting for: $what"
            return 1
        fi
        sleep 0.2
    done
}

# stop_daemons NAME:PIDFILE:COMM ...: TERM them all at once, wait up to 20 s,
# then KILL what is left. Daemons in one call are stopped in parallel.
stop_daemons() {
    local spec name f comm pid pids=() i left
    for spec in "$@"; do
        IFS=: read -r name f comm <<<"$spec"
        if pid_alive "$f" "$comm"; then
            pid=$(tr -dc '0-9' <"$f")
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$f"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    for i in $(seq 1 100); do
        left=()
        for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && left+=("$pid"); done
        [ ${#left[@]} -eq 0 ] && return 0
        sleep 0.2
    done
    log "still running after 20s, sending KILL: ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null || true
}

show_log() {  # show_log FILE: last lines of a log on failure
    [ -f "$1" ] && { log "---- tail $1"; tail -n 25 "$1" >&2; }
    return 0
}

# ----------------------------------------------------------------- configs
write_configs() {
    local host
    host=$(hostname -s)
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/ctld" "$MUNGE" 
    chmod 755 "$MUNGE"   # clients need +x to reach the socket; the key itself is 400

    mkdir -p "$ROOT/gpus"
    local i gpu_files=()
    for i in $(seq 0 $((NODE_GPUS - 1))); do
        touch "$ROOT/gpus/gpu$i"
        gpu_files+=("$ROOT/gpus/gpu$i")
    done
    cat >"$ETC/gres.conf.tmp" <<EOF
# Generated by tests/cluster/cluster.sh -- ordinary files stand in for GPUs.
AutoDetect=off
NodeName=mft-n1,mft-n2 Name=gpu File=$(IFS=,; echo "${gpu_files[*]}")
EOF
    if cmp -s "$ETC/gres.conf.tmp" "$ETC/gres.conf"; then
        rm -f "$ETC/gres.conf.tmp"
    else
        mv -f "$ETC/gres.conf.tmp" "$ETC/gres.conf"
        CONF_CHANGED=1
    fi

    cat >"$ETC/slurm.conf.tmp" <<EOF
# Generated by tests/cluster/cluster.sh -- edits are overwritten on every "up".
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host($ADDR_N1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge

StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info

# no cgroups on this machine
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true

SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
SlurmdParameters=config_overrides
GresTypes=gpu

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Connections to slurmdbd do not use AuthInfo: the munge socket for them is
# given as AccountingStoragePass (documented for "an alternate MUNGE daemon").
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none

JobRequeue=1
# Preemption as a production site sets it up (docs/ADMIN.md): a job in partition "urgent"
# (PriorityTier 10) preempts jobs of main/cpu, which get SIGCONT+SIGTERM, GraceTime to save,
# then are requeued. main and cpu share a tier, so they never preempt each other.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
MaxArraySize=1001
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=120
MessageTimeout=10

NodeName=mft-n1 NodeAddr=$ADDR_N1 CPUs=$NODE_CPUS Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEM Gres=gpu:$NODE_GPUS Features=mftnode State=UNKNOWN
NodeName=mft-n2 NodeAddr=$ADDR_N2 CPUs=$NODE_CPUS Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEM Gres=gpu:$NODE_GPUS Features=mftnode State=UNKNOWN
PartitionName=main Nodes=mft-n1,mft-n2 Default=YES MaxTime=INFINITE MaxCPUsPerNode=$PART_CPUS MaxMemPerNode=$PART_MEM State=UP PreemptMode=REQUEUE GraceTime=60
PartitionName=cpu Nodes=mft-n1,mft-n2 Default=NO MaxTime=INFINITE MaxCPUsPerNode=$PART_CPUS MaxMemPerNode=$PART_MEM State=UP PreemptMode=REQUEUE GraceTime=60
PartitionName=urgent Nodes=mft-n1,mft-n2 Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
PartitionName=gpu Nodes=mft-n1,mft-n2 Default=NO MaxTime=2-00:00:00 State=UP PreemptMode=OFF
EOF
    if cmp -s "$ETC/slurm.conf.tmp" "$ETC/slurm.conf"; then
        rm -f "$ETC/slurm.conf.tmp"
    else
        mv -f "$ETC/slurm.conf.tmp" "$ETC/slurm.conf"
        CONF_CHANGED=1
    fi

    if [ ! -s "$ROOT/db-password" ]; then
        (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ROOT/db-password")
    fi
    (umask 077; cat >"$ETC/slurmdbd.conf" <<EOF
# Generated by tests/cluster/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$ROOT/db-password")
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$ETC/slurmdbd.conf"
}

# ------------------------------------------------------------------- munge
start_munge() {
    if pid_alive "$MUNGE/munged.pid" munged; then return 0; fi
    if [ ! -s "$MUNGE/munge.key" ]; then
        (umask 077; head -c 1024 /dev/urandom >"$MUNGE/munge.key")
    fi
    chmod 400 "$MUNGE/munge.key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "starting munged"
    # --force: tolerate a checkout whose parent dirs munged finds too permissive
    munged --force --key-file="$MUNGE/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$MUNGE/munged.pid" --log-file="$LOG/munged.log" \
        --seed-file="$MUNGE/munged.seed" \
        || { show_log "$LOG/munged.log"; die "munged failed"; }
    wait_for 10 "munge socket" test -S "$MUNGE_SOCKET" || die "munged socket missing"
}

# ----------------------------------------------------------------- mariadb
db() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_mariadb() {
    if pid_alive "$RUN/mariadbd.pid" mariadbd; then return 0; fi
    if [ ! -d "$DBDIR/mysql" ]; then
        log "initialising MariaDB datadir"
        rm -rf "$DBDIR"; mkdir -p "$DBDIR"
        mariadb-install-db --no-defaults --datadir="$DBDIR" --user=root \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG/mariadb-install.log" 2>&1 \
            || { show_log "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
    fi
    log "starting mariadbd on 127.0.0.1:$DB_PORT"
    # mariadbd does not daemonise; detach it from our session
    setsid nohup mariadbd --no-defaults --user=root --datadir="$DBDIR" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCKET" \
        --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadb.log" \
        --skip-name-resolve --innodb-buffer-pool-size=1G \
        --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        --max-allowed-packet=64M \
        </dev/null >>"$LOG/mariadb.log" 2>&1 &
    wait_for 30 "mariadb" db -e 'SELECT 1' \
        || { show_log "$LOG/mariadb.log"; die "mariadbd did not come up"; }
    local pw
    pw=$(cat "$ROOT/db-password")
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
           ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
           CREATE DATABASE IF NOT EXISTS slurm_acct_db;
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
           FLUSH PRIVILEGES;"
}

# ----------------------------------------------------------------- slurmdbd
start_slurmdbd() {
    if ! pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
        log "starting slurmdbd on 127.0.0.1:$DBD_PORT"
        slurmdbd || { show_log "$LOG/slurmdbd.log"; die "slurmdbd failed"; }
    fi
    wait_for 30 "slurmdbd" sacctmgr -n -P list cluster format=cluster \
        || { show_log "$LOG/slurmdbd.log"; die "slurmdbd not answering"; }
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
        log "registering cluster $CLUSTER_NAME"
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
    fi
}

# ----------------------------------------------------------------- network
netns_ok() {
    [ -e "/var/run/netns/$NETNS" ] \
        && ip -o -4 addr show dev "$VETH_ROOT" 2>/dev/null | grep -q " $ADDR_N1/$PREFIX " \
        && ip -n "$NETNS" -o -4 addr show dev "$VETH_NS" 2>/dev/null | grep -q " $ADDR_N2/$PREFIX " \
        && ip -n "$NETNS" link show lo 2>/dev/null | grep -q 'UP'
}

setup_netns() {
    if netns_ok; then return 0; fi
    log "creating netns $NETNS with veth $VETH_ROOT($ADDR_N1) <-> $VETH_NS($ADDR_N2)"
    # half-built leftovers: start over. A slurmd still living in an orphaned
    # namespace would be unreachable, so stop it too.
    stop_daemons "slurmd mft-n2:$RUN/slurmd-mft-n2.pid:slurmd"
    ip link del "$VETH_ROOT" 2>/dev/null || true
    ip netns del "$NETNS" 2>/dev/null || true
    ip netns add "$NETNS"
    ip link add "$VETH_ROOT" type veth peer name "$VETH_NS"
    ip link set "$VETH_NS" netns "$NETNS"
    ip addr add "$ADDR_N1/$PREFIX" dev "$VETH_ROOT"
    ip link set "$VETH_ROOT" up
    ip -n "$NETNS" addr add "$ADDR_N2/$PREFIX" dev "$VETH_NS"
    ip -n "$NETNS" link set "$VETH_NS" up
    ip -n "$NETNS" link set lo up
    # no default route in the namespace: its only peer is $ADDR_N1
    wait_for 10 "veth carrier" sh -c \
        "ip -n $NETNS link show $VETH_NS | grep -q LOWER_UP" || die "veth did not come up"
}

teardown_netns() {
    if [ -e "/var/run/netns/$NETNS" ] || ip link show "$VETH_ROOT" >/dev/null 2>&1; then
        log "removing netns $NETNS"
    fi
    ip link del "$VETH_ROOT" 2>/dev/null || true
    ip netns del "$NETNS" 2>/dev/null || true
}

# /etc/hosts may be a bind mount (containers): rewrite it in place, never rename.
hosts_strip() {
    awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '
        $0 == b {skip = 1; next}
        $0 == e {skip = 0; next}
        !skip {print}' /etc/hosts
}

hosts_add() {
    local want cur
    want=$(printf '%s\n%s mft-n1\n%s mft-n2\n%s' "$HOSTS_BEGIN" "$ADDR_N1" "$ADDR_N2" "$HOSTS_END")
    cur=$(awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '
        $0 == b {p = 1} p {print} $0 == e {p = 0}' /etc/hosts)
    [ "$cur" = "$want" ] && return 0
    local tmp
    tmp=$(mktemp)
    { hosts_strip; printf '%s\n' "$want"; } >"$tmp"
    cat "$tmp" >/etc/hosts
    rm -f "$tmp"
}

hosts_remove() {
    grep -qxF "$HOSTS_BEGIN" /etc/hosts || return 0
    local tmp
    tmp=$(mktemp)
    hosts_strip >"$tmp"
    cat "$tmp" >/etc/hosts
    rm -f "$tmp"
}

# ------------------------------------------------------------ slurm daemons
start_slurmctld() {
    if pid_alive "$RUN/slurmctld.pid" slurmctld; then
        if [ "$CONF_CHANGED" = 1 ]; then
            # running daemons from an older script version: push the new config
            # (port/address changes need `down` + `up` instead)
            log "slurm.conf changed: scontrol reconfigure"
            scontrol reconfigure || true
        fi
        return 0
    fi
    log "starting slurmctld on $ADDR_N1:$CTLD_PORT"
    slurmctld || { show_log "$LOG/slurmctld.log"; die "slurmctld failed"; }
    wait_for 30 "slurmctld" scontrol ping \
        || { show_log "$LOG/slurmctld.log"; die "slurmctld not answering"; }
}

start_slurmd() {  # start_slurmd NODE [nsenter-prefix...]
    local node=$1; shift
    mkdir -p "$STATE/slurmd-$node"
    if pid_alive "$RUN/slurmd-$node.pid" slurmd; then return 0; fi
    log "starting slurmd $node"
    "$@" slurmd -N "$node" || { show_log "$LOG/slurmd-$node.log"; die "slurmd $node failed"; }
}

nodes_idle() {
    # every node in state idle (allow mixed/allocated when jobs already run)
    local out
    out=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u) || return 1
    local n
    for n in "${NODES[@]}"; do
        grep -Eq "^$n (idle|mix|alloc)$" <<<"$out" || return 1
    done
}

print_env() {
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
    printf 'export MFT_TEST_CLUSTER_DIR=%q\n' "$ROOT"
}

# ---------------------------------------------------------------- commands
cmd_up() {
    need_root; need_tools
    local t0=$SECONDS
    # sockets have a ~107 byte limit
    [ ${#MUNGE_SOCKET} -lt 100 ] && [ ${#DB_SOCKET} -lt 100 ] \
        || die "checkout path too long for unix sockets: $ROOT"
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    setup_netns
    hosts_add
    start_slurmctld
    start_slurmd mft-n1
    start_slurmd mft-n2 nsenter --net="/var/run/netns/$NETNS"
    if ! wait_for "$UP_TIMEOUT" "both nodes idle" nodes_idle; then
        sinfo -N -l >&2 || true
        scontrol show node 2>/dev/null | grep -E 'NodeName|State|Reason' >&2 || true
        show_log "$LOG/slurmctld.log"; show_log "$LOG/slurmd-mft-n1.log"
        show_log "$LOG/slurmd-mft-n2.log"
        die "nodes did not become idle"
    fi
    local out
    if ! out=$(timeout 60 srun -N2 -n2 -t 2 hostname 2>&1); then
        printf '%s\n' "$out" >&2
        show_log "$LOG/slurmctld.log"
        die "srun -N2 hostname failed"
    fi
    log "srun -N2 ok: $(tr '\n' ' ' <<<"$out")"
    log "cluster up in $((SECONDS - t0))s (nodes: mft-n1=$ADDR_N1, mft-n2=$ADDR_N2 in netns $NETNS; partitions: main*, cpu, urgent, gpu with gres gpu:$NODE_GPUS)"
    print_env
}

cmd_down() {
    need_root
    # slurmctld + slurmds together (the controller cannot mark nodes down
    # in the moment it takes), then the accounting chain, then munge.
    stop_daemons "slurmctld:$RUN/slurmctld.pid:slurmctld" \
                 "slurmd mft-n1:$RUN/slurmd-mft-n1.pid:slurmd" \
                 "slurmd mft-n2:$RUN/slurmd-mft-n2.pid:slurmd"
    stop_daemons "slurmdbd:$RUN/slurmdbd.pid:slurmdbd"
    stop_daemons "mariadbd:$RUN/mariadbd.pid:mariadbd" "munged:$MUNGE/munged.pid:munged"
    teardown_netns
    hosts_remove
    log "cluster down (state and logs kept in $ROOT)"
}

cmd_status() {
    local rc=0 d
    for d in "munged:$MUNGE/munged.pid" "mariadbd:$RUN/mariadbd.pid" \
             "slurmdbd:$RUN/slurmdbd.pid" "slurmctld:$RUN/slurmctld.pid" \
             "slurmd:$RUN/slurmd-mft-n1.pid" "slurmd:$RUN/slurmd-mft-n2.pid"; do
        local comm=${d%%:*} f=${d#*:}
        if pid_alive "$f" "$comm"; then
            printf '%-10s %-22s running (pid %s)\n' "$comm" "$(basename "$f")" "$(tr -dc 0-9 <"$f")"
        else
            printf '%-10s %-22s STOPPED\n' "$comm" "$(basename "$f")"; rc=1
        fi
    done
    if netns_ok; then echo "netns      $NETNS ok ($ADDR_N1 <-> $ADDR_N2)"
    else echo "netns      $NETNS MISSING"; rc=1; fi
    if grep -qxF "$HOSTS_BEGIN" /etc/hosts; then echo "/etc/hosts block present"
    else echo "/etc/hosts block MISSING"; rc=1; fi
    if [ -f "$SLURM_CONF" ]; then
        sinfo -N -o '%N %P %t %c %m' 2>/dev/null || rc=1
    else
        rc=1
    fi
    return $rc
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) print_env ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
