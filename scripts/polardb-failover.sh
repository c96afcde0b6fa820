#!/usr/bin/env bash
# polardb-failover.sh — fail the primary of a PolarDB for PostgreSQL 15 cluster running on our
# libpfsd, promote the replica, and check that nothing was lost and the old primary wrote nothing.
#
# The cluster is the one of the PolarDB harness (../shared/polardb/harness.sh, next to this
# repository): a primary (PFS host id 1, port 54320) and a replica (host id 2, port 54321) on one
# machine, sharing one PFS-formatted loop device, no daemon. This script calls the harness to build,
# start (`run` with KEEP_RUNNING=1, which also runs a first pgbench on the primary: "tps before")
# and tear down (`clean`); it never starts or formats anything itself.
#
# Scenarios (arguments, run in the order given; default: kill stop):
#   kill    during a pgbench on the primary, every process of the primary is SIGKILLed: the
#           postmaster is stopped first (so it forks nothing meanwhile), then it and every process
#           below it or running in its data directory get the signal (each postmaster child calls
#           setsid(), so the postmaster's process group is not the primary).
#   stop    the same processes SIGSTOPped instead. The replica is promoted while the old primary is
#           stopped (necessarily for longer than the lease: the promotion waits the lease out),
#           pgbench runs on the new primary, then the old primary gets SIGCONT and must not write:
#           a transaction it had open must fail to COMMIT, a new INSERT and a CHECKPOINT through it
#           must fail, a pgbench on it must commit nothing, and the pgbench that was running on it
#           must get no transaction that began after SIGCONT acknowledged.
#   build   (only when named) cargo build of pfs-tool and pfs-sdk, pfs-sdk/install.sh into
#           $PFS_SDK_PREFIX, then the harness's `src` and `build` (nice -n $BUILD_NICE).
#
# Promotion is `pg_ctl promote` on the replica: its postmaster waits for the normal backends to
# exit, then calls pfsd_remount(..., PFS_RDWR | PFS_PAXOS_BYFORCE), which takes the writer lease
# over from host 1 (waiting out the lease and its margin if host 1's claim is not known dead), and
# the startup process finishes recovery. "promotion seconds" is measured from the kill/stop to the
# first INSERT the new primary acknowledged (polled every 0.2 s).
#
# Every pgbench after the harness's runs with -n, so pgbench_history keeps every transaction since
# the harness's run truncated it (right after `pgbench -i`, with every balance 0).
# Checks on the new primary, once the old one is down: pgbench's balance sums agree
# (sum(abalance) of pgbench_accounts = sum(bbalance) of pgbench_branches = sum(tbalance) of
# pgbench_tellers = sum(delta) of pgbench_history); amcheck, when the build has it (bt_index_check
# with heapallindexed on every pgbench index, verify_heapam on every pgbench table); the same again
# after a restart of the new primary, which rereads every page and pg_control from the device (a
# deposed writer's late page writes would show there); no row the old primary inserted is visible;
# then, with both servers stopped, `pfs fsck` of the device must be clean.
#
# Output: progress and PASS/FAIL lines, then a summary block per scenario (promotion seconds, tps
# before and after, checks ok/FAILED). Logs of each scenario (harness, pgbench, probes, server logs,
# fsck) are kept in $OUT/<scenario>. Exit status 0 only if every check of every scenario passed.
#
# Knobs (environment; defaults in brackets). Run as root, like the harness.
#   HARNESS          the harness   [<repo>/../shared/polardb/harness.sh]
#   HARNESS_ROOT     the harness's root   [/var/tmp/polardb]
#   PFS_SDK_PREFIX   our SDK as pfs-sdk/install.sh installs it   [$HARNESS_ROOT/sdk-ours]
#   POLARDB_BUILD    PolarDB built by the harness against that SDK   [$HARNESS_ROOT/install]
#   PFS_TOOL         our pfs tool   [${CARGO_TARGET_DIR:-<repo>/target}/release/pfs]
#   WORK             the harness's scratch dir (image, node dirs, logs)   [$HARNESS_ROOT/work]
#   POLARDB_GIT_DIR  bare PolarDB-for-PostgreSQL git dir, for `build` when there is no source yet
#   PFS_LEASE_MS     writer lease, exported to every process (tool, postmasters, backends)   [3000]
#   BEFORE_SECS      the harness's pgbench on the primary: tps before   [30]
#   FAULT_AT_SECS    seconds into the second pgbench on the primary at which the fault comes   [10]
#   AFTER_SECS       pgbench on the new primary: tps after   [30]
#   PROMOTE_TIMEOUT  seconds after the fault by which the new primary must accept a write   [120]
#   RESUME_SECS      (stop) seconds the old primary runs after SIGCONT before it is probed   [5]
#   PGBENCH_SCALE / PGBENCH_CLIENTS / PGBENCH_JOBS   for every pgbench   [10 / 4 / 2]
#   OUT              where the logs of each scenario go   [$HARNESS_ROOT/failover]
#   BUILD_NICE       niceness of the PolarDB build   [10]
#   PBD, PFS_CLUSTER, PG_USER, PRIMARY_PORT, REPLICA_PORT   passed to the harness
#                    [nvme42n1, disk, polar, 54320, 54321]
#
# Typical use:  scripts/polardb-failover.sh build kill stop     # first time
#               scripts/polardb-failover.sh                     # both scenarios on the built tree
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HARNESS_ROOT=${HARNESS_ROOT:-/var/tmp/polardb}
HARNESS=${HARNESS:-$REPO/../shared/polardb/harness.sh}
export PFS_SDK_PREFIX=${PFS_SDK_PREFIX:-$HARNESS_ROOT/sdk-ours}
export POLARDB_BUILD=${POLARDB_BUILD:-$HARNESS_ROOT/install}
export PFS_TOOL=${PFS_TOOL:-${CARGO_TARGET_DIR:-$REPO/target}/release/pfs}
export WORK=${WORK:-$HARNESS_ROOT/work}
export PFSD_START=""                       # our SDK runs without a daemon
export PFS_LEASE_MS=${PFS_LEASE_MS:-3000}
export PBD=${PBD:-nvme42n1}
export PFS_CLUSTER=${PFS_CLUSTER:-disk}
export PG_USER=${PG_USER:-polar}
export PRIMARY_PORT=${PRIMARY_PORT:-54320}
export REPLICA_PORT=${REPLICA_PORT:-54321}
export PGBENCH_SCALE=${PGBENCH_SCALE:-10}
export PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-4}
export PGBENCH_JOBS=${PGBENCH_JOBS:-2}
BEFORE_SECS=${BEFORE_SECS:-30}
FAULT_AT_SECS=${FAULT_AT_SECS:-10}
AFTER_SECS=${AFTER_SECS:-30}
PROMOTE_TIMEOUT=${PROMOTE_TIMEOUT:-120}
RESUME_SECS=${RESUME_SECS:-5}
OUT=${OUT:-$HARNESS_ROOT/failover}
BUILD_NICE=${BUILD_NICE:-10}

BIN=$POLARDB_BUILD/bin
# The harness's layout (its README: node dirs under $WORK/nodes).
PRIMARY_DIR=$WORK/nodes/primary
REPLICA_DIR=$WORK/nodes/replica1

cd / || exit 1   # pg_ctl runs as $PG_USER, who may not be able to enter the caller's directory

log() { printf '[failover %(%H:%M:%S)T] %s\n' -1 "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# PostgreSQL clients run as root, connecting as $PG_USER, each bounded in time (a server that hangs
# must not hang the script); pg_ctl refuses root, so it runs as $PG_USER.
tclient() {
  local limit=$1 prog=$2; shift 2
  timeout "$limit" env PGHOST=127.0.0.1 PGUSER="$PG_USER" PGDATABASE=postgres PGCONNECT_TIMEOUT="${CONNECT_TIMEOUT:-5}" \
    "$BIN/$prog" "$@"
}
client() { tclient 120 "$@"; }
sql() { local port=$1; shift; client psql -X -q -At -v ON_ERROR_STOP=1 -p "$port" -c "$@"; }
pgctl() { runuser -u "$PG_USER" -- env HOME="$WORK/home" "$BIN/pg_ctl" "$@"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# primary_pids <postmaster pid>: every process of the primary: the postmaster and all below it,
# and whatever else runs in the primary's data directory (postmaster children chdir there; they
# are not in the postmaster's process group, each calls setsid(), and a child orphaned by a
# dead postmaster is no longer below it).
primary_pids() {
  local dir
  dir=$(readlink -f "$PRIMARY_DIR")
  {
    ps -e -o pid=,ppid=,stat= | awk -v root="$1" '
      $3 !~ /^Z/ { kids[$2] = kids[$2] " " $1; live[$1] = 1 }
      END { q = root; while (q != "") { n = split(q, a, " "); q = "";
                                        for (i = 1; i <= n; i++) { if (live[a[i]]) print a[i]; q = q kids[a[i]] } } }'
    find /proc/[0-9]*/cwd -maxdepth 0 -lname "$dir" 2>/dev/null | cut -d/ -f3
  } | sort -un
}

# signal_primary <postmaster pid> KILL|STOP: the postmaster is stopped first, so it forks nothing
# while its children are signalled; repeated until no process of the primary is left running.
# Sets SIGNALLED (how many processes) and, for STOP, STOPPED_PIDS.
signal_primary() {
  local pm=$1 sig=$2 round pids todo all=""
  kill -STOP "$pm"
  for round in $(seq 1 20); do
    pids=$(primary_pids "$pm")
    if [ "$sig" = STOP ]; then
      # shellcheck disable=SC2086
      todo=$([ -n "$pids" ] && ps -o pid=,stat= -p "$(echo $pids | tr ' ' ,)" | awk '$2 !~ /^T/ { print $1 }')
    else
      todo=$pids
    fi
    all=$(printf '%s\n' $all $pids | sort -un)
    [ "$sig" = STOP ] && STOPPED_PIDS=$all
    [ -z "$todo" ] && break
    # shellcheck disable=SC2086
    kill -"$sig" $todo 2>/dev/null
    sleep 0.1
  done
  SIGNALLED=$(echo "$all" | grep -c .)
}

TOTAL_FAILS=0
SUMMARY=""
SCN=""
SCN_FAILS=()
SCN_PASSES=0
pass() { echo "PASS: [$SCN] $1: $2"; SCN_PASSES=$((SCN_PASSES + 1)); }
fail() { echo "FAIL: [$SCN] $1: $2"; SCN_FAILS+=("$1"); TOTAL_FAILS=$((TOTAL_FAILS + 1)); }

# What the EXIT trap must undo if the script stops half-way.
STOPPED_PIDS=""
OLD_BENCH=""
SESSION=""
cleanup() {
  # shellcheck disable=SC2086
  [ -n "$STOPPED_PIDS" ] && kill -CONT $STOPPED_PIDS 2>/dev/null
  alive "$OLD_BENCH" && kill "$OLD_BENCH" 2>/dev/null
  alive "$SESSION" && kill "$SESSION" 2>/dev/null
  if [ -n "$SCN" ]; then "$HARNESS" clean > /dev/null 2>&1; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
build() {
  log "cargo build --release -p pfs-tool -p pfs-sdk"
  (cd "$REPO" && cargo build --release -p pfs-tool -p pfs-sdk) || return 1
  "$REPO/pfs-sdk/install.sh" "$PFS_SDK_PREFIX" || return 1
  "$HARNESS" src || return 1
  log "harness build (nice -n $BUILD_NICE)"
  nice -n "$BUILD_NICE" "$HARNESS" build
}

# ---------------------------------------------------------------- checks on the new primary
# consistency <label>: balance sums and amcheck on the new primary (port $REPLICA_PORT).
consistency() {
  local label=$1 out a b t h n
  if out=$(sql "$REPLICA_PORT" "select (select sum(abalance) from pgbench_accounts)
        || ' ' || (select sum(bbalance) from pgbench_branches)
        || ' ' || (select sum(tbalance) from pgbench_tellers)
        || ' ' || (select coalesce(sum(delta), 0) from pgbench_history)
        || ' ' || (select count(*) from pgbench_history)" 2>&1); then
    read -r a b t h n <<< "$out"
    if [ -n "$h" ] && [ "$a" = "$b" ] && [ "$a" = "$t" ] && [ "$a" = "$h" ]; then
      pass "balance sums ($label)" "accounts = branches = tellers = history deltas = $a over $n history rows"
    else
      fail "balance sums ($label)" "accounts $a, branches $b, tellers $t, history deltas $h ($n rows)"
    fi
  else
    fail "balance sums ($label)" "query failed: $(echo "$out" | head -2 | tr '\n' ' ')"
  fi

  if [ "$(sql "$REPLICA_PORT" "select count(*) from pg_available_extensions where name = 'amcheck'" 2>/dev/null)" != 1 ]; then
    log "amcheck is not in this build: skipping the index and heap checks"
    return 0
  fi
  if ! out=$(sql "$REPLICA_PORT" "create extension if not exists amcheck" 2>&1); then
    fail "amcheck ($label)" "create extension failed: $out"
    return 0
  fi
  local idx bad=""
  for idx in $(sql "$REPLICA_PORT" "select i.indexrelid::regclass from pg_index i join pg_class c on c.oid = i.indrelid
                                     where c.relname like 'pgbench\_%' order by 1"); do
    out=$(sql "$REPLICA_PORT" "select bt_index_check('$idx'::regclass, true)" 2>&1) || bad="$bad $idx: $(echo "$out" | head -1);"
  done
  local tab rows
  for tab in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
    rows=$(sql "$REPLICA_PORT" "select count(*) from verify_heapam('$tab')" 2>&1)
    [ "$rows" = 0 ] || bad="$bad $tab: verify_heapam $(echo "$rows" | head -1);"
  done
  if [ -z "$bad" ]; then
    pass "amcheck ($label)" "bt_index_check(heapallindexed) on the pgbench indexes and verify_heapam on the 4 tables clean"
  else
    fail "amcheck ($label)" "$bad"
  fi
}

# connect_check <label>: a new session on the new primary (a new backend, which mounts the PBD at
# its first call) should not wait anything like a lease. Sets CONNECT (worst of 3, seconds).
connect_check() {
  local label=$1 i t0 t worst=0
  for i in 1 2 3; do
    t0=$(now)
    sql "$REPLICA_PORT" "select 1" > /dev/null 2>&1
    t=$(secs "$t0" "$(now)")
    worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
  done
  CONNECT=$worst
  if awk -v w="$worst" -v l="$PFS_LEASE_MS" 'BEGIN { exit !(w * 1000 < l) }'; then
    pass "new session ($label)" "connect + select 1 took at most ${worst}s"
  else
    fail "new session ($label)" "connect + select 1 took up to ${worst}s, at least the ${PFS_LEASE_MS} ms lease"
  fi
}

# ---------------------------------------------------------------- a scenario
scenario() {
  SCN=$1
  SCN_FAILS=()
  SCN_PASSES=0
  local dir=$OUT/$SCN promo="-" tps_before="-" tps_after="-" out
  CONNECT="-" RESTART="-" CONNECT_PROMOTED="-" OLD_WROTE=""
  rm -rf "$dir"; mkdir -p "$dir"
  log "=== scenario $SCN: harness run (pgbench ${BEFORE_SECS}s on the primary), cluster left up"
  KEEP_RUNNING=1 PGBENCH_TIME=$BEFORE_SECS "$HARNESS" run > "$dir/harness-run.log" 2>&1
  local rc=$?
  grep -E '^(PASS|FAIL|TPS|RESULT)' "$dir/harness-run.log" | sed 's/^/  harness: /'
  if [ $rc != 0 ] || ! [ -f "$PRIMARY_DIR/postmaster.pid" ] || ! [ -f "$REPLICA_DIR/postmaster.pid" ]; then
    fail "cluster" "harness run failed (exit $rc, see $dir/harness-run.log)"
    finish_scenario "$dir" "$promo" "$tps_before" "$tps_after"
    return
  fi
  tps_before=$(sed -n 's/^TPS: tps = \([0-9.]*\).*/\1/p' "$dir/harness-run.log")

  local pm
  pm=$(head -1 "$PRIMARY_DIR/postmaster.pid")
  if tr '\0' '\n' < "/proc/$pm/environ" | grep -qx "PFS_LEASE_MS=$PFS_LEASE_MS"; then
    pass "lease" "the primary's postmaster runs with PFS_LEASE_MS=$PFS_LEASE_MS"
  else
    fail "lease" "PFS_LEASE_MS=$PFS_LEASE_MS is not in the primary's environment"
  fi

  # A table for write probes, created before the fault so both servers have it.
  sql "$PRIMARY_PORT" "create table failover_probe (who text, what text, at timestamptz default clock_timestamp())" \
    || fail "probe table" "create table on the primary failed"
  local i seen=0
  for i in $(seq 1 120); do
    [ "$(sql "$REPLICA_PORT" "select to_regclass('failover_probe') is not null" 2>/dev/null)" = t ] && { seen=1; break; }
    sleep 0.5
  done
  [ $seen = 1 ] || fail "probe table" "the replica did not see failover_probe within 60 s"

  # The pgbench the fault interrupts: long enough to go on after a SIGCONT; -l logs each
  # transaction's end (epoch) and latency, so we can tell which began after the resume.
  log "pgbench on the primary; the fault comes after ${FAULT_AT_SECS}s"
  tclient $((FAULT_AT_SECS + 960)) pgbench -n -p "$PRIMARY_PORT" -c "$PGBENCH_CLIENTS" -j "$PGBENCH_JOBS" -T $((FAULT_AT_SECS + 900)) -P 1 \
    -l --log-prefix="$dir/old-pgbench-tx" > "$dir/old-pgbench.out" 2>&1 &
  OLD_BENCH=$!

  # stop: a session of the old primary with a transaction open across the pause.
  if [ "$SCN" = stop ]; then
    mkfifo "$dir/old-session.in"
    tclient 3600 psql -X -At -p "$PRIMARY_PORT" < "$dir/old-session.in" > "$dir/old-session.out" 2>&1 &
    SESSION=$!
    exec 7> "$dir/old-session.in"
    echo "begin; insert into failover_probe (who, what) values ('old-primary', 'open across the pause'); \\echo open-ok" >&7
  fi

  sleep "$FAULT_AT_SECS"
  if [ "$SCN" = stop ] && ! grep -q open-ok "$dir/old-session.out"; then
    fail "open transaction" "the old primary's session did not open its transaction: $(head -2 "$dir/old-session.out")"
  fi
  primary_pids "$pm" | xargs -r ps -o pid=,args= -p > "$dir/primary-processes.txt"
  local t_fault left
  t_fault=$(now)
  if [ "$SCN" = kill ]; then
    signal_primary "$pm" KILL
    log "SIGKILL to the $SIGNALLED processes of the primary"
    sleep 0.2
    left=$(primary_pids "$pm" | grep -c .)
    [ "$left" = 0 ] && pass "kill" "$SIGNALLED processes of the primary killed, none left" \
      || fail "kill" "$left processes of the primary still alive after SIGKILL"
  else
    signal_primary "$pm" STOP
    log "SIGSTOP to the $SIGNALLED processes of the primary"
    left=$(ps -o stat= -p "$(primary_pids "$pm" | paste -sd,)" | grep -vc '^ *T')
    [ "$left" = 0 ] && pass "stop" "$SIGNALLED processes of the primary stopped, none running" \
      || fail "stop" "$left processes of the primary still running after SIGSTOP"
  fi

  # Promote and wait for the first acknowledged write.
  log "pg_ctl promote on the replica"
  pgctl promote -D "$REPLICA_DIR" -W > "$dir/promote.log" 2>&1 || fail "promote" "pg_ctl promote failed: $(cat "$dir/promote.log")"
  local t_write="" elapsed
  while :; do
    if tclient 30 psql -X -q -At -v ON_ERROR_STOP=1 -p "$REPLICA_PORT" \
         -c "insert into failover_probe (who, what) values ('new-primary', 'first write')" >> "$dir/promote-probe.log" 2>&1; then
      t_write=$(now); break
    fi
    elapsed=$(secs "$t_fault" "$(now)")
    awk -v e="$elapsed" -v m="$PROMOTE_TIMEOUT" 'BEGIN { exit !(e > m) }' && break
    sleep 0.2
  done
  if [ -n "$t_write" ]; then
    promo=$(secs "$t_fault" "$t_write")
    pass "promotion" "the new primary accepted a write ${promo}s after the $SCN"
    log "pgbench on the new primary for ${AFTER_SECS}s"
    if tclient $((AFTER_SECS + 120)) pgbench -n -p "$REPLICA_PORT" -c "$PGBENCH_CLIENTS" -j "$PGBENCH_JOBS" -T "$AFTER_SECS" \
         > "$dir/new-pgbench.out" 2>&1; then
      tps_after=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/new-pgbench.out" | head -1)
      pass "pgbench on the new primary" "$(grep -E '^number of transactions actually processed' "$dir/new-pgbench.out"), tps $tps_after, $(grep -E '^initial connection time' "$dir/new-pgbench.out")"
    else
      fail "pgbench on the new primary" "$(grep -E 'error|abort|FATAL' "$dir/new-pgbench.out" | head -3 | tr '\n' ' ')"
    fi
  else
    fail "promotion" "no write accepted by the replica within ${PROMOTE_TIMEOUT}s of the $SCN; last attempt: $(tail -1 "$dir/promote-probe.log")"
    pgctl status -D "$REPLICA_DIR" > "$dir/replica-status.txt" 2>&1
  fi
  [ -n "$t_write" ] && connect_check "after promotion"
  CONNECT_PROMOTED=$CONNECT CONNECT="-"

  if [ "$SCN" = stop ]; then
    resume_old_primary "$dir" "$t_fault"
  fi

  # The old primary goes down for good before the checks (after SIGKILL there is nothing left).
  # A deposed primary must still stop when told to: an operator (or a cluster manager) should not
  # have to SIGKILL it.
  if alive "$pm"; then
    pgctl stop -D "$PRIMARY_DIR" -m immediate -w -t 30 > "$dir/old-stop.log" 2>&1
    sleep 1
    local left_pids
    left_pids=$(primary_pids "$pm")
    if [ -z "$left_pids" ]; then
      pass "old primary stops" "pg_ctl stop -m immediate stopped every process of the deposed primary"
    else
      # What they are stuck in, for the record, before they go.
      {
        ps -o pid,stat,wchan:32,args -p "$(echo "$left_pids" | paste -sd,)"
        for p in $left_pids; do
          echo "--- $p"; cat "/proc/$p/stack" 2>/dev/null
          command -v gdb > /dev/null && timeout 60 gdb -p "$p" -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(Thread|#)'
        done
      } > "$dir/old-leftover.txt"
      fail "old primary stops" "$(echo "$left_pids" | grep -c .) processes left 30 s after pg_ctl stop -m immediate (stacks in $dir/old-leftover.txt$(
          grep -m1 -o 'pfs_core::[A-Za-z_:]*' "$dir/old-leftover.txt" | sed 's/^/; stuck in /')): SIGKILL"
      signal_primary "$pm" KILL
    fi
  fi
  local w
  for w in $(seq 1 30); do alive "$OLD_BENCH" || break; sleep 1; done
  alive "$OLD_BENCH" && { log "the old primary's pgbench did not end: stopping it"; kill "$OLD_BENCH"; }
  wait "$OLD_BENCH" 2>/dev/null
  OLD_BENCH=""
  if [ "$SCN" = stop ]; then
    late_old_transactions "$dir"
  fi

  if [ -n "$t_write" ]; then
    consistency "live"
    log "restarting the new primary (it rereads pages and pg_control from the device)"
    local t_restart; t_restart=$(now)
    if pgctl restart -D "$REPLICA_DIR" -m fast -w -t 120 -l "$WORK/nodes/replica1.pg_ctl.log" > "$dir/new-restart.log" 2>&1; then
      RESTART=$(secs "$t_restart" "$(now)")
      pass "restart" "the new primary restarted as a primary (read-write mount without force) in ${RESTART}s"
      connect_check "after restart"
      consistency "after restart"
      out=$(sql "$REPLICA_PORT" "select count(*) from failover_probe where who = 'old-primary'" 2>&1)
      [ "$out" = 0 ] && pass "probe rows" "no row written through the old primary is visible on the new one" \
        || fail "probe rows" "rows of the old primary visible on the new one: $out"
    else
      fail "restart" "the new primary did not restart: $(tail -3 "$dir/new-restart.log" | tr '\n' ' ')"
    fi
    pgctl stop -D "$REPLICA_DIR" -m fast -w -t 60 > "$dir/new-stop.log" 2>&1 \
      || fail "stop" "the new primary did not stop cleanly: $(tail -2 "$dir/new-stop.log" | tr '\n' ' ')"
  fi

  # fsck with both servers down.
  if "$PFS_TOOL" -C "$PFS_CLUSTER" fsck "$PBD" > "$dir/fsck.log" 2>&1; then
    pass "fsck" "$(tail -1 "$dir/fsck.log")"
  else
    fail "fsck" "exit $?: $(grep -m3 -E 'problem|error|failed' "$dir/fsck.log" | tr '\n' ' ')"
  fi
  finish_scenario "$dir" "$promo" "$tps_before" "$tps_after"
}

# old_primary_refuses WHAT FILE REFUSED DONE WROTE SQL: runs SQL on the
# resumed old primary, its output kept in $dir/FILE. It must fail ("REFUSED
# (exit N): ..." passes); if it succeeds, the check fails with DONE and
# WROTE is added to what the old primary wrote.
old_primary_refuses() {
  local what=$1 file=$2 refused=$3 done=$4 wrote=$5 query=$6 out rc
  out=$(sql "$PRIMARY_PORT" "$query" 2>&1)
  rc=$?
  echo "$out" > "$dir/$file"
  if [ $rc = 0 ]; then
    fail "old primary: $what" "$done"
    OLD_WROTE+="$wrote; "
  else
    pass "old primary: $what" "$refused (exit $rc): $(echo "$out" | head -2 | tr '\n' ' ')"
  fi
}

# resume_old_primary <dir> <t_fault>: SIGCONT the old primary and try to write through it.
resume_old_primary() {
  local dir=$1 t_fault=$2 out rc
  T_CONT=$(now)
  # shellcheck disable=SC2086
  kill -CONT $STOPPED_PIDS
  STOPPED_PIDS=""
  local paused; paused=$(secs "$t_fault" "$T_CONT")
  log "SIGCONT to the old primary after ${paused}s stopped"
  if awk -v p="$paused" -v l="$PFS_LEASE_MS" 'BEGIN { exit !(p * 1000 > l) }'; then
    pass "pause" "the old primary was stopped ${paused}s, longer than the ${PFS_LEASE_MS} ms lease"
  else
    fail "pause" "the old primary was stopped only ${paused}s (lease ${PFS_LEASE_MS} ms)"
  fi
  sleep "$RESUME_SECS"

  # 1. the transaction that was open across the pause
  echo 'commit;' >&7
  echo '\echo commit-error=:ERROR :LAST_ERROR_MESSAGE' >&7
  exec 7>&-
  local w; for w in $(seq 1 30); do alive "$SESSION" || break; sleep 1; done
  alive "$SESSION" && kill "$SESSION"
  wait "$SESSION" 2>/dev/null; SESSION=""
  if grep -q '^commit-error=false' "$dir/old-session.out"; then
    fail "old primary: open transaction" "COMMIT after SIGCONT was acknowledged"
    OLD_WROTE+="COMMIT of a transaction open across the pause acknowledged; "
  else
    pass "old primary: open transaction" "COMMIT after SIGCONT failed: $(sed '1,/^open-ok/d' "$dir/old-session.out" | grep -v '^$' | head -2 | tr '\n' ' ')"
  fi

  # 2. a new session's INSERT (its backend may take a while to find out it cannot mount: wait 30 s)
  local CONNECT_TIMEOUT=30
  old_primary_refuses INSERT old-insert.out refused \
    "acknowledged after SIGCONT" "INSERT in a new session acknowledged" \
    "insert into failover_probe (who, what) values ('old-primary', 'insert after SIGCONT')"

  # 3. a CHECKPOINT: it would write the old primary's dirty pages and pg_control
  old_primary_refuses CHECKPOINT old-checkpoint.out failed \
    "completed after SIGCONT (its dirty pages and pg_control went to the device)" \
    "CHECKPOINT completed" checkpoint

  # 4. a short pgbench of its own
  tclient 60 pgbench -n -p "$PRIMARY_PORT" -c 2 -j 1 -T 5 > "$dir/old-pgbench-after.out" 2>&1
  local n; n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/old-pgbench-after.out")
  if [ "${n:-0}" = 0 ]; then
    pass "old primary: pgbench" "no transaction committed: $(grep -m1 -E 'error|FATAL|fatal|abort' "$dir/old-pgbench-after.out")"
  else
    fail "old primary: pgbench" "$n transactions committed through the old primary after SIGCONT"
    OLD_WROTE+="$n transactions of a new pgbench committed; "
  fi
  grep -h -E 'PANIC|FATAL|ERROR|pfs|mount|lease|Input/output' "$PRIMARY_DIR"/pg_log/* 2>/dev/null \
    | awk -v t="$(date -d "@${T_CONT%.*}" '+%Y-%m-%d %H:%M:%S')" '$1 " " substr($2, 1, 8) >= t' \
    > "$dir/old-primary-after-resume.log"
  log "old primary's log after SIGCONT ($(wc -l < "$dir/old-primary-after-resume.log") lines of errors/pfs messages), first ones:"
  head -5 "$dir/old-primary-after-resume.log" | cut -c1-220 | sed 's/^/    /'
}

# late_old_transactions <dir>: transactions of the interrupted pgbench that began after SIGCONT
# and were acknowledged by the old primary (from the -l per-transaction logs: end epoch, latency).
late_old_transactions() {
  local dir=$1 late all
  read -r late all < <(cat "$dir"/old-pgbench-tx.* 2>/dev/null | awk -v c="$T_CONT" '
      $3 ~ /^[0-9]+$/ { end = $5 + $6 / 1e6; if (end > c) all++; if (end - $3 / 1e6 > c) late++ }
      END { print late + 0, all + 0 }')
  if [ "$late" = 0 ]; then
    pass "old primary: running pgbench" "no transaction begun after SIGCONT acknowledged ($all in flight at the pause ended after it)"
  else
    fail "old primary: running pgbench" "$late transactions begun after SIGCONT acknowledged by the old primary ($all ended after it)"
    OLD_WROTE+="$late transactions of the running pgbench, begun after SIGCONT, acknowledged; "
  fi
}

finish_scenario() {
  local dir=$1 promo=$2 before=$3 after=$4 checks what
  log "scenario $SCN: harness clean"
  "$HARNESS" clean > "$dir/harness-clean.log" 2>&1
  [ -d "$WORK/logs" ] && cp -a "$WORK/logs" "$dir/harness-logs"
  if [ ${#SCN_FAILS[@]} = 0 ]; then
    checks="ok ($SCN_PASSES passed)"
  else
    checks="FAILED: $(printf '%s; ' "${SCN_FAILS[@]}")($SCN_PASSES passed)"
  fi
  case $SCN in
    kill) what="SIGKILL of every primary process during pgbench" ;;
    stop) what="SIGSTOP of every primary process during pgbench, promote, SIGCONT" ;;
  esac
  SUMMARY+="scenario:   $SCN ($what)
  promotion:  $promo s (fault -> first write accepted by the new primary)
  tps before: $before (old primary)   tps after: $after (new primary)
  new session on the new primary: $CONNECT_PROMOTED s after promotion, $CONNECT s after its restart (restart: $RESTART s)
"
  [ "$SCN" = stop ] && SUMMARY+="  old primary after SIGCONT: ${OLD_WROTE:-wrote nothing (every write refused)}
"
  SUMMARY+="  checks:     $checks
"
  SCN=""
}

# ---------------------------------------------------------------- main
[ "$(id -u)" = 0 ] || { echo "run as root (the harness attaches a loop device)" >&2; exit 2; }
[ -x "$HARNESS" ] || { echo "no harness at $HARNESS (set HARNESS)" >&2; exit 2; }
[ $# -gt 0 ] || set -- kill stop
for arg in "$@"; do
  case $arg in
    build|kill|stop) ;;
    *) sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d'; exit 2 ;;
  esac
done
for arg in "$@"; do
  if [ "$arg" = build ]; then
    build || { echo "build failed" >&2; exit 1; }
    continue
  fi
  [ -x "$PFS_TOOL" ] || { echo "PFS_TOOL=$PFS_TOOL is not executable (build first)" >&2; exit 2; }
  [ -x "$BIN/postgres" ] || { echo "no PolarDB in $POLARDB_BUILD (build first)" >&2; exit 2; }
  mkdir -p "$OUT"
  scenario "$arg"
done

if [ -n "$SUMMARY" ]; then
  echo
  echo "=== failover summary: PFS_LEASE_MS=$PFS_LEASE_MS, pgbench -c $PGBENCH_CLIENTS -j $PGBENCH_JOBS scale $PGBENCH_SCALE, before ${BEFORE_SECS}s / after ${AFTER_SECS}s; pfs-rs $(git -C "$REPO" describe --always --dirty 2>/dev/null)"
  printf '%s' "$SUMMARY"
  [ "$TOTAL_FAILS" = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL ($TOTAL_FAILS checks failed)"
fi
[ "$TOTAL_FAILS" = 0 ]
