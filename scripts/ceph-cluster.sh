#!/usr/bin/env bash
# ceph-cluster.sh — a one-machine Ceph cluster for trying and testing PFS on RBD.
#
#   ceph-cluster.sh start DIR   a monitor, a manager and one BlueStore OSD (on a sparse file in
#                               DIR), pool `rbd` created and initialised; writes DIR/ceph.conf and
#                               returns once images can be created
#   ceph-cluster.sh stop DIR    stops the daemons by their pids (safe to call twice)
#   ceph-cluster.sh env DIR     prints the environment a PFS client needs for the cluster
#                               (eval "$(ceph-cluster.sh env DIR)")
#
# Nothing is installed: the Debian packages ceph-mon ceph-osd ceph-mgr ceph-common (and
# librbd-dev for building against librbd, which PFS does not need) must be there; what is missing
# is named and the script exits 3. No kernel module is used: clients reach the cluster over TCP
# through librbd. Authentication is off (a test cluster): keep it off machines others can reach.
#
# Knobs (environment):
#   CEPH_PORT          the monitor's TCP port [a free one between 20000 and 40000]
#   CEPH_ADDR          the IPv4 address every daemon listens on [127.0.0.1]; another local
#                      address (a bridge's, say) lets clients in network namespaces reach it
#   CEPH_OSD_BYTES     size of the OSD's sparse block file [107374182400 = 100 GiB]
#   CEPH_START_TIMEOUT seconds to wait for the cluster to come up [120]
#
# Exit status: 0 done, 1 failed (logs in DIR/log), 2 usage, 3 something is not installed.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|env DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
D=$2
case $cmd in start | stop | env) ;; *) usage ;; esac

daemons=(mon.a osd.0 mgr.x)

# Pid of a daemon of this cluster, if it runs (the pid file's pid, checked against the process's
# command line so a pid reused by another process is never signalled).
daemon_pid() {
    local f="$D/run/$1.pid" pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$D/ceph.conf" || return 1
    echo "$pid"
}

stop_cluster() {
    [ -d "$D" ] || return 0
    D=$(cd "$D" && pwd)
    local name pid pids=()
    for name in "${daemons[@]}"; do
        if pid=$(daemon_pid "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    # Up to 20 s to exit, then SIGKILL.
    local i
    for i in $(seq 1 100); do
        local alive=()
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive+=("$pid")
        done
        [ ${#alive[@]} -eq 0 ] && break
        if [ "$i" -eq 100 ]; then
            for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
        fi
        sleep 0.2
    done
    for name in "${daemons[@]}"; do rm -f "$D/run/$name.pid"; done
}

if [ "$cmd" = stop ]; then
    stop_cluster
    exit 0
fi

if [ "$cmd" = env ]; then
    D=$(cd "$D" && pwd)
    [ -f "$D/ceph.conf" ] || {
        echo "$0: no cluster in $D (no ceph.conf)" >&2
        exit 1
    }
    echo "export CEPH_CONF=$D/ceph.conf"
    echo "export PFS_RBD_CONF=$D/ceph.conf"
    echo "export PFS_RBD_USER=admin"
    exit 0
fi

# --- start ---------------------------------------------------------------------------------------
missing=()
for b in ceph-mon ceph-osd ceph-mgr ceph rbd monmaptool; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "$0: not installed: ${missing[*]}" >&2
    echo "  apt-get install -y ceph-mon ceph-osd ceph-mgr ceph-common" >&2
    exit 3
fi

mkdir -p "$D"
D=$(cd "$D" && pwd)
if daemon_pid mon.a >/dev/null; then
    echo "$0: a cluster already runs in $D (stop it first)" >&2
    exit 1
fi
if [ -e "$D/mon" ]; then
    echo "$0: $D holds an old cluster; use an empty directory" >&2
    exit 1
fi
mkdir -p "$D/run" "$D/log" "$D/mon" "$D/osd0" "$D/mgr"

port_busy() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -q ":$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
port=${CEPH_PORT:-}
if [ -z "$port" ]; then
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        port_busy "$port" || break
    done
fi
timeout_s=${CEPH_START_TIMEOUT:-120}
addr=${CEPH_ADDR:-127.0.0.1}
[[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "$0: CEPH_ADDR must be an IPv4 address, not '$addr'" >&2
    exit 2
}
fsid=$(cat /proc/sys/kernel/random/uuid)

cat >"$D/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v1:$addr:$port
public addr = $addr
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = bluestore
# Outside the OSD's data directory, or mkfs fails with EEXIST.
bluestore block path = $D/osd0.img
bluestore block create = true
bluestore block size = ${CEPH_OSD_BYTES:-107374182400}
osd memory target = 1073741824
run dir = $D/run
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.\$pid.asok
log file = $D/log/\$name.log
mon data = $D/mon
osd data = $D/osd0
mgr data = $D/mgr
EOF

fail() {
    echo "$0: $*; logs in $D/log" >&2
    # The last lines of the daemons' error output, for whoever reads only this.
    tail -n 5 "$D/log/start.err" >&2 2>/dev/null || true
    stop_cluster
    exit 1
}
ceph_() { timeout 30 ceph -c "$D/ceph.conf" --connect-timeout 20 "$@"; }
# Retries a command until it succeeds or the start timeout passes.
until_ok() {
    local what=$1 deadline=$((SECONDS + timeout_s))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
        sleep 1
    done
}

monmaptool --create --add a "v1:$addr:$port" --fsid "$fsid" "$D/monmap" >/dev/null ||
    fail "monmaptool failed"
ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" >"$D/log/mkfs-mon.out" 2>&1 ||
    fail "ceph-mon --mkfs failed"
ceph-mon -c "$D/ceph.conf" -i a >>"$D/log/start.err" 2>&1 || fail "ceph-mon did not start"
until_ok "the monitor" ceph_ mon stat

# A client can meet the same race as the OSD below ("wrong fsid"): commands are tried again.
retry() {
    local try
    for try in 1 2 3 4 5; do
        "$@" && return 0
        sleep 1
    done
    return 1
}
osd_id=$(retry ceph_ osd create) || fail "ceph osd create failed"
[ "$osd_id" = 0 ] || fail "ceph osd create gave osd.$osd_id, not osd.0"
ceph-osd -c "$D/ceph.conf" -i 0 --mkfs >"$D/log/mkfs-osd.out" 2>&1 || fail "ceph-osd --mkfs failed"
# The OSD can send its first command before its monitor client has the monitor map (with auth
# off nothing waits for it); the monitor refuses it ("wrong fsid") and the OSD exits. Try again.
for try in 1 2 3 4 5; do
    ceph-osd -c "$D/ceph.conf" -i 0 >>"$D/log/start.err" 2>&1 && break
    [ "$try" -lt 5 ] || fail "ceph-osd did not start"
    sleep 1
done
ceph-mgr -c "$D/ceph.conf" -i x >>"$D/log/start.err" 2>&1 || fail "ceph-mgr did not start"

osd_up() { ceph_ osd dump | grep -q '^osd\.0 up'; }
until_ok "osd.0 to come up" osd_up
retry ceph_ osd pool create rbd 8 >/dev/null 2>&1 || fail "creating pool rbd failed"
pgs_active() {
    local s
    s=$(ceph_ pg stat) || return 1
    # "8 pgs: 8 active+clean; ..." — every PG active.
    [[ $s =~ ^([0-9]+)\ pgs:\ ([0-9]+)\ active ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
}
until_ok "the PGs of pool rbd to be active" pgs_active
until_ok "rbd pool init" timeout 60 rbd -c "$D/ceph.conf" pool init rbd
echo "ceph cluster up in $D (monitor $addr:$port); conf $D/ceph.conf"
