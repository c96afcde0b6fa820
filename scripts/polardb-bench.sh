#!/usr/bin/env bash
# polardb-bench.sh — pgbench tps of PolarDB for PostgreSQL 15 (a primary and a replica sharing
# their data, one machine) on up to four storages, alternated in one run:
#
#   ours    our libpfsd, no daemon, on a PFS-formatted loop device
#   ours-file  the same on the loop device's image file itself (PFS_DEVICE_DIR names a directory
#           with a link to it; the loop device stays attached, unused): PFS on a plain file, as
#           the harness's image is, without the loop driver between (the reference needs a
#           block device, so it has no such mode); the image is made with umask 0 so the servers
#           (user $PG_USER) can open it
#   ref     the reference SDK (PolarDB-FileSystem's libpfsd.a) and its pfsdaemon, same device setup
#   local   no PFS at all: the shared data in a local directory, PolarDB's "localfs" mode
#           (polar_vfs.localfs_mode = on, polar_datadir = 'file-dio://<dir>'), set up the way
#           PolarDB's own build.sh sets up a primary and replicas (polar-initdb.sh ... localfs)
#
# `ours` and `ref` are runs of the PolarDB harness (../shared/polardb/harness.sh, next to this
# repository: device, mkfs, daemon, initdb, primary + replica, pgbench, replica checks, clean).
# The harness only knows PFS, so this script runs `local` itself, with the harness's settings
# (polardb.conf.sample, then the same port/listen/max_connections/shared_buffers/logging lines),
# the same pgbench, and the same kind of checks (replica streaming, in recovery, replays up to the
# primary's LSN, row counts and balance sums equal, no relation files in the local base/ dirs,
# and relation files in the shared directory).
#
# Conditions (arguments, in the order given; default: tmpfs disk):
#   tmpfs        WORK (device image or shared directory, node dirs) on tmpfs ($TMPFS_DIR):
#                takes the device flush costs out
#   disk         WORK on disk ($DISK_DIR): keeps them
#   busy         tmpfs, with $BUSY_LOOPS CPU-bound shell loops running beside it
#   ioload       tmpfs, with an IO-heavy load beside it on $DISK_DIR (see IOLOAD_* below)
#   busy-disk / ioload-disk   the same on disk
#   build        (only when named) cargo build of pfs-tool and pfs-sdk, pfs-sdk/install.sh into
#                $OURS_SDK, the harness's `src` and `build` into $OURS_BUILD (nice -n $BUILD_NICE)
#   build-ref    (only when named) the reference: ../shared/polardb/build_reference.sh into
#                $REF_ROOT (skipped when $REF_ROOT/bin/pfsdaemon exists), the harness's
#                `sdk-install-ref` into $REF_SDK, and PolarDB from its own source tree
#                ($REF_SRC, extracted by the harness's `src`) built against it into $REF_BUILD
#                (a separate tree and prefix: the shared $HARNESS_ROOT/src and install stay ours)
#
# Each condition runs ROUNDS rounds; each round runs every mode of $MODES once, the order rotated
# by one from round to round (ours ref local, ref local ours, local ours ref, ...) so that drift
# of the machine falls on every mode alike. The load of a condition (busy loops, IO load) runs from
# before its first round to after its last.
#
# IO load (`ioload`): $IOLOAD_JOBS shell loops in $DISK_DIR/ioload, alternately of two kinds:
#   sequential   dd of $IOLOAD_MB MiB of zeros into a file with conv=fsync, again and again
#   sync         dd of 1000 4 KiB blocks with oflag=dsync (every write flushed), again and again
#
# Output: progress, a PASS/FAIL line per run (a run fails when the harness's or the local run's
# checks fail; its tps is then left out of the means), then the table: condition, mean tps of
# each mode (with every round's figure), ours/ref, ours/local, and the same for ours-file. Logs per run in
# $OUT/<condition>/r<round>-<mode>/ (harness output and the harness's logs, or the local run's
# logs), the table in $OUT/summary.txt. Exit status 0 only if every run passed.
# Cleanup: every run cleans up after itself (the harness's `clean`: servers, daemon, loop device);
# on any exit the script stops what it started (by pid), runs the harness's `clean` for the
# run in progress, stops a local run's servers and removes the scratch dirs.
#
# Knobs (environment; defaults in brackets). Run as root, like the harness.
#   HARNESS          the harness   [<repo>/../shared/polardb/harness.sh]
#   HARNESS_ROOT     the harness's root   [/var/tmp/polardb]
#   MODES            which storages, in the order of the first round   [ours ours-file ref local]
#   ROUNDS           rounds per condition   [2]
#   PGBENCH_TIME     seconds of each measured pgbench   [45]
#   PGBENCH_SCALE / PGBENCH_CLIENTS / PGBENCH_JOBS   [10 / 4 / 2]
#   OURS_BUILD       PolarDB built by the harness against our SDK   [$HARNESS_ROOT/install]
#   OURS_SDK         our SDK as pfs-sdk/install.sh installs it   [$HARNESS_ROOT/sdk-ours]
#   PFS_TOOL         our pfs tool   [${CARGO_TARGET_DIR:-<repo>/target}/release/pfs]
#   REF_BUILD        PolarDB built against the reference SDK   [$HARNESS_ROOT/install-ref]
#   REF_SDK          the reference SDK, tool and daemon (harness sdk-install-ref)   [$HARNESS_ROOT/sdk-ref]
#   REF_SRC          PolarDB source tree for build-ref   [$HARNESS_ROOT/src-ref]
#   REF_ROOT         where build_reference.sh builds the reference PFS   [/var/tmp/ref]
#   PFS_GIT_DIR / ZLOG_GIT_DIR   bare git dirs for build_reference.sh
#                    [/work/.mirror/ApsaraDB+PolarDB-FileSystem/repo, /work/.mirror/HardySimpson+zlog/repo]
#   POLARDB_GIT_DIR  bare PolarDB-for-PostgreSQL git dir, for the harness's `src`
#                    [/work/.mirror/We-Done+PolarDB-for-PostgreSQL/repo]
#   LOCAL_BUILD      PolarDB install used by `local` (it never calls libpfsd)   [$OURS_BUILD]
#   LOCAL_PROTOCOL   polar_datadir protocol of `local`: file-dio (O_DIRECT, as PolarDB's
#                    build.sh) or file (buffered)   [file-dio]
#   TMPFS_DIR        scratch on tmpfs   [/dev/shm/polardb-bench]
#   DISK_DIR         scratch on disk   [/var/tmp/polardb-bench]
#   BUSY_LOOPS       CPU loops of `busy`   [2]
#   IOLOAD_JOBS / IOLOAD_MB   loops and sequential file size of `ioload`   [2 / 256]
#   RUN_TIMEOUT      seconds a run may take before it is stopped   [PGBENCH_TIME + 900]
#   OUT              logs and summary   [$HARNESS_ROOT/bench]
#   BUILD_NICE       niceness of the builds   [10]
#   PBD, PFS_CLUSTER, PG_USER, PRIMARY_PORT, REPLICA_PORT, DEV_SIZE   passed to the harness
#                    (and the ports and user to `local`); other than polardb-failover.sh's
#                    defaults, so that both can run on one machine   [nvme45n1, disk, polar, 54350, 54351, 20G]
#
# Typical use:  scripts/polardb-bench.sh build build-ref tmpfs     # first time
#               PGBENCH_TIME=45 ROUNDS=2 scripts/polardb-bench.sh tmpfs disk busy ioload
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HARNESS_ROOT=${HARNESS_ROOT:-/var/tmp/polardb}
HARNESS=${HARNESS:-$REPO/../shared/polardb/harness.sh}
MODES=${MODES:-ours ours-file ref local}
ROUNDS=${ROUNDS:-2}
export PGBENCH_TIME=${PGBENCH_TIME:-45}
export PGBENCH_SCALE=${PGBENCH_SCALE:-10}
export PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-4}
export PGBENCH_JOBS=${PGBENCH_JOBS:-2}
OURS_BUILD=${OURS_BUILD:-$HARNESS_ROOT/install}
OURS_SDK=${OURS_SDK:-$HARNESS_ROOT/sdk-ours}
PFS_TOOL=${PFS_TOOL:-${CARGO_TARGET_DIR:-$REPO/target}/release/pfs}
REF_BUILD=${REF_BUILD:-$HARNESS_ROOT/install-ref}
REF_SDK=${REF_SDK:-$HARNESS_ROOT/sdk-ref}
REF_SRC=${REF_SRC:-$HARNESS_ROOT/src-ref}
REF_ROOT=${REF_ROOT:-/var/tmp/ref}
PFS_GIT_DIR=${PFS_GIT_DIR:-/work/.mirror/ApsaraDB+PolarDB-FileSystem/repo}
ZLOG_GIT_DIR=${ZLOG_GIT_DIR:-/work/.mirror/HardySimpson+zlog/repo}
export POLARDB_GIT_DIR=${POLARDB_GIT_DIR:-/work/.mirror/We-Done+PolarDB-for-PostgreSQL/repo}
LOCAL_BUILD=${LOCAL_BUILD:-$OURS_BUILD}
LOCAL_PROTOCOL=${LOCAL_PROTOCOL:-file-dio}
TMPFS_DIR=${TMPFS_DIR:-/dev/shm/polardb-bench}
DISK_DIR=${DISK_DIR:-/var/tmp/polardb-bench}
BUSY_LOOPS=${BUSY_LOOPS:-2}
IOLOAD_JOBS=${IOLOAD_JOBS:-2}
IOLOAD_MB=${IOLOAD_MB:-256}
RUN_TIMEOUT=${RUN_TIMEOUT:-$((PGBENCH_TIME + 900))}
OUT=${OUT:-$HARNESS_ROOT/bench}
BUILD_NICE=${BUILD_NICE:-10}
export PBD=${PBD:-nvme45n1}
export PFS_CLUSTER=${PFS_CLUSTER:-disk}
export PG_USER=${PG_USER:-polar}
export PRIMARY_PORT=${PRIMARY_PORT:-54350}
export REPLICA_PORT=${REPLICA_PORT:-54351}
export DEV_SIZE=${DEV_SIZE:-20G}
export HARNESS_TRUST_BUILD=1     # each install is checked below against the SDK it must link
export KEEP_RUNNING=0

cd / || exit 1   # the servers run as $PG_USER, who may not be able to enter the caller's directory

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------- what the EXIT trap undoes
LOAD_PIDS=""        # process groups of the busy loops / IO load (setsid: pid = pgid)
RUN_PID=""          # the harness run in progress (its own trap cleans; we clean again after it)
RUN_MODE=""         # ours|ref while a harness run is in progress
RUN_WORK=""         # its WORK, or the local run's scratch dir
RUN_DIR=""          # where the run's logs go
LOCAL_ACTIVE=0      # 1 while a local run has (or may have) servers
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if alive "$RUN_PID"; then
    log "stopping the run in progress ($RUN_PID)"
    kill -TERM "$RUN_PID" 2>/dev/null
    local i; for i in $(seq 1 90); do alive "$RUN_PID" || break; sleep 1; done
    alive "$RUN_PID" && kill -KILL "$RUN_PID" 2>/dev/null
  fi
  if [ -n "$RUN_MODE" ]; then harness "$RUN_MODE" "$RUN_WORK" clean > /dev/null 2>&1; fi
  if [ "$LOCAL_ACTIVE" = 1 ]; then local_stop "$RUN_WORK"; fi
  if [ -n "$RUN_WORK" ]; then
    [ -d "$RUN_WORK/logs" ] && [ -n "$RUN_DIR" ] && cp -a "$RUN_WORK/logs" "$RUN_DIR/logs-at-exit"
    rm -rf "${RUN_WORK:?}"
  fi
  stop_load
  rmdir "$TMPFS_DIR" "$DISK_DIR" 2>/dev/null
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- builds
build_ours() {
  log "cargo build --release -p pfs-tool -p pfs-sdk (nice -n $BUILD_NICE)"
  (cd "$REPO" && nice -n "$BUILD_NICE" cargo build --release --locked -p pfs-tool -p pfs-sdk) || return 1
  nice -n "$BUILD_NICE" "$REPO/pfs-sdk/install.sh" "$OURS_SDK" || return 1
  POLARDB_SRC=$HARNESS_ROOT/src "$HARNESS" src || return 1
  log "harness build of PolarDB against $OURS_SDK into $OURS_BUILD (nice -n $BUILD_NICE)"
  # the harness's default port: it is a configure flag, and a different one rebuilds everything
  env -u PRIMARY_PORT POLARDB_SRC="$HARNESS_ROOT/src" POLARDB_BUILD="$OURS_BUILD" PFS_SDK_PREFIX="$OURS_SDK" \
    PFS_TOOL="$PFS_TOOL" WORK="$HARNESS_ROOT/work" nice -n "$BUILD_NICE" "$HARNESS" build
}

build_ref() {
  if [ -x "$REF_ROOT/bin/pfsdaemon" ] && [ -f "$REF_ROOT/src/lib/libpfsd.a" ]; then
    log "reference PFS already built in $REF_ROOT"
  else
    log "build_reference.sh $REF_ROOT (nice -n $BUILD_NICE)"
    nice -n "$BUILD_NICE" "$REPO/../shared/polardb/build_reference.sh" "$REF_ROOT" "$PFS_GIT_DIR" "$ZLOG_GIT_DIR" \
      || return 1
  fi
  PFS_SDK_PREFIX=$REF_SDK REF_PFS_SRC=$REF_ROOT/src "$HARNESS" sdk-install-ref || return 1
  POLARDB_SRC=$REF_SRC "$HARNESS" src || return 1
  log "harness build of PolarDB ($REF_SRC) against $REF_SDK into $REF_BUILD (nice -n $BUILD_NICE)"
  env -u PRIMARY_PORT POLARDB_SRC="$REF_SRC" POLARDB_BUILD="$REF_BUILD" PFS_SDK_PREFIX="$REF_SDK" \
    WORK="$HARNESS_ROOT/bench-build-ref" nice -n "$BUILD_NICE" "$HARNESS" build
}

# ---------------------------------------------------------------- checks before running
# libpfsd_of <install>: where its pg_ctl takes libpfsd.so from ("" when linked statically).
libpfsd_of() { ldd "$1/bin/pg_ctl" 2>/dev/null | awk '$1 == "libpfsd.so" { print $3 }'; }

check_mode() {
  local lib
  case $1 in
    ours|ours-file)
      [ -x "$PFS_TOOL" ] || { echo "PFS_TOOL=$PFS_TOOL is not executable (run with 'build')"; return 1; }
      [ -x "$OURS_BUILD/bin/postgres" ] || { echo "no PolarDB in $OURS_BUILD (run with 'build')"; return 1; }
      lib=$(libpfsd_of "$OURS_BUILD")
      [ "$lib" = "$OURS_SDK/lib/libpfsd.so" ] \
        || { echo "$OURS_BUILD takes libpfsd from '${lib:-<static>}', not $OURS_SDK/lib (rebuild with 'build')"; return 1; } ;;
    ref)
      [ -x "$REF_BUILD/bin/postgres" ] || { echo "no PolarDB in $REF_BUILD (run with 'build-ref')"; return 1; }
      [ -x "$REF_SDK/bin/pfsdaemon" ] && [ -x "$REF_SDK/bin/pfs" ] \
        || { echo "no reference pfs/pfsdaemon in $REF_SDK/bin (run with 'build-ref')"; return 1; }
      lib=$(libpfsd_of "$REF_BUILD")
      [ -z "$lib" ] || { echo "$REF_BUILD takes libpfsd from $lib: not the reference's static libpfsd.a"; return 1; } ;;
    local)
      [ -x "$LOCAL_BUILD/bin/postgres" ] && [ -x "$LOCAL_BUILD/bin/polar-initdb.sh" ] \
        || { echo "no PolarDB in $LOCAL_BUILD"; return 1; } ;;
    *) echo "unknown mode $1 (ours, ours-file, ref, local)"; return 1 ;;
  esac
}

# ---------------------------------------------------------------- loads beside the benchmark
start_load() {
  local kind=$1 i
  case $kind in
    busy)
      for i in $(seq 1 "$BUSY_LOOPS"); do
        setsid bash -c 'while :; do :; done' < /dev/null > /dev/null 2>&1 &
        LOAD_PIDS="$LOAD_PIDS $!"
      done
      log "load: $BUSY_LOOPS CPU loops (pids$LOAD_PIDS)" ;;
    ioload)
      mkdir -p "$DISK_DIR/ioload"
      for i in $(seq 1 "$IOLOAD_JOBS"); do
        if [ $((i % 2)) = 1 ]; then
          setsid bash -c "while :; do dd if=/dev/zero of='$DISK_DIR/ioload/seq.$i' bs=1M count=$IOLOAD_MB conv=fsync status=none; done" \
            < /dev/null > /dev/null 2>&1 &
        else
          setsid bash -c "while :; do dd if=/dev/zero of='$DISK_DIR/ioload/sync.$i' bs=4k count=1000 oflag=dsync status=none; done" \
            < /dev/null > /dev/null 2>&1 &
        fi
        LOAD_PIDS="$LOAD_PIDS $!"
      done
      log "load: $IOLOAD_JOBS IO loops in $DISK_DIR/ioload (process groups$LOAD_PIDS)" ;;
  esac
}

stop_load() {
  local p
  for p in $LOAD_PIDS; do kill -TERM -- "-$p" 2>/dev/null; done
  for p in $LOAD_PIDS; do
    local i; for i in $(seq 1 20); do alive "$p" || break; sleep 0.5; done
    alive "$p" && kill -KILL -- "-$p" 2>/dev/null
  done
  [ -n "$LOAD_PIDS" ] && log "load stopped"
  LOAD_PIDS=""
  rm -rf "${DISK_DIR:?}/ioload"
}

# ---------------------------------------------------------------- ours / ref: the harness
# harness_env <ours|ref> <work>: the harness's environment for a mode, as arguments of env(1), in HENV.
harness_env() {
  if [ "$1" = ours ]; then
    HENV=(WORK="$2" POLARDB_BUILD="$OURS_BUILD" PFS_SDK_PREFIX="$OURS_SDK" PFS_TOOL="$PFS_TOOL" PFSD_START=)
  elif [ "$1" = ours-file ]; then
    HENV=(WORK="$2" POLARDB_BUILD="$OURS_BUILD" PFS_SDK_PREFIX="$OURS_SDK" PFS_TOOL="$PFS_TOOL" PFSD_START=
      PFS_DEVICE_DIR="$2/devdir")
  else
    # PFSD_START unset: the harness starts the reference's pfsdaemon
    HENV=(-u PFSD_START WORK="$2" POLARDB_BUILD="$REF_BUILD" PFS_SDK_PREFIX="$REF_SDK" PFS_TOOL="$REF_SDK/bin/pfs")
  fi
}
# harness <ours|ref> <work> <subcommand>
harness() { local HENV; harness_env "$1" "$2"; shift 2; env "${HENV[@]}" "$HARNESS" "$@"; }

# run_pfs <mode> <work> <dir>: one harness run, its output in <dir>/harness-run.log and its logs
# in <dir>/harness-logs. Returns the harness's status.
run_pfs() {
  local mode=$1 work=$2 dir=$3 rc HENV
  RUN_MODE=$mode RUN_WORK=$work RUN_DIR=$dir
  harness_env "$mode" "$work"
  if [ "$mode" = ours-file ]; then
    # the harness makes the image $work/pfs.img; the PBD's name in the device directory links to it
    mkdir -p "$work/devdir" && chmod 777 "$work/devdir" && ln -sfn ../pfs.img "$work/devdir/$PBD" || return 1
  fi
  # env execs timeout, which forwards a TERM to the harness (whose EXIT trap then cleans up)
  (umask 0; exec env "${HENV[@]}" timeout -k 60 "$RUN_TIMEOUT" "$HARNESS" run > "$dir/harness-run.log" 2>&1 < /dev/null) &
  RUN_PID=$!
  wait "$RUN_PID"; rc=$?
  RUN_PID=""
  [ $rc = 124 ] && echo "FAIL: run stopped after RUN_TIMEOUT=${RUN_TIMEOUT}s" >> "$dir/harness-run.log"
  # the harness cleans up after `run`; once more in case it was stopped before its trap ran
  harness "$mode" "$work" clean > "$dir/harness-clean.log" 2>&1
  RUN_MODE=""
  [ -d "$work/logs" ] && cp -a "$work/logs" "$dir/harness-logs"
  rm -rf "${work:?}"
  RUN_WORK="" RUN_DIR=""
  return $rc
}

# ---------------------------------------------------------------- local: no PFS
# The layout mirrors the harness's: $work/nodes/{primary,replica1}, $work/shared (the shared data),
# $work/logs, $work/home.
as_pg() {
  local work=$1; shift
  runuser -u "$PG_USER" -- env HOME="$work/home" PATH="$LOCAL_BUILD/bin:/usr/bin:/bin" PGHOST=127.0.0.1 "$@"
}
lsql() { local work=$1 port=$2; shift 2; as_pg "$work" timeout 120 "$LOCAL_BUILD/bin/psql" -X -q -At -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }

local_stop_node() {
  local work=$1 dir=$2 pid
  [ -f "$dir/postmaster.pid" ] || return 0
  pid=$(head -1 "$dir/postmaster.pid")
  alive "$pid" || return 0
  # immediate: the data is thrown away, and a fast stop of a primary whose replica is gone can
  # wait in its shutdown checkpoint
  as_pg "$work" "$LOCAL_BUILD/bin/pg_ctl" -D "$dir" stop -m immediate -w -t 30 > /dev/null 2>&1
  local i; for i in $(seq 1 30); do alive "$pid" || break; sleep 1; done
  if alive "$pid"; then log "postmaster $pid ($dir) still alive: SIGKILL"; kill -KILL "$pid"; sleep 1; fi
}

# local_stop <work>: stop both servers, keep the logs, remove node dirs and shared data.
local_stop() {
  local work=$1 f n
  [ -d "$work/nodes" ] || { LOCAL_ACTIVE=0; return 0; }
  local_stop_node "$work" "$work/nodes/replica1"
  local_stop_node "$work" "$work/nodes/primary"
  mkdir -p "$work/logs"
  for n in primary replica1; do
    for f in "$work/nodes/$n"/pg_log/*; do [ -f "$f" ] && cp -f "$f" "$work/logs/$n.$(basename "$f")"; done
  done
  rm -rf "${work:?}/nodes" "${work:?}/shared" "${work:?}/home"
  LOCAL_ACTIVE=0
}

local_conf() {
  local dir=$1 hostid=$2 port=$3 shared=$4
  cat "$LOCAL_BUILD/share/polardb.conf.sample" >> "$dir/postgresql.conf"
  cat >> "$dir/postgresql.conf" <<EOF

#------------------------------------------------------------------------------
# polardb-bench.sh: shared data in a local directory (no PFS), otherwise as the harness
#------------------------------------------------------------------------------
port = $port
listen_addresses = '127.0.0.1'
max_connections = 100
shared_buffers = 512MB
polar_hostid = $hostid
polar_enable_shared_storage_mode = on
polar_vfs.localfs_mode = on
polar_datadir = '$LOCAL_PROTOCOL://${shared%/}'
logging_collector = on
log_directory = 'pg_log'
log_line_prefix = '%m [%p] '
EOF
}

# local_run <work> <dir>: the harness's `run`, with the shared data in $work/shared.
# Prints PASS/FAIL/TPS lines like the harness; returns 0 only if every check passed.
local_run() {
  local work=$1 dir=$2 fails=0 bin=$LOCAL_BUILD/bin
  local nodes=$work/nodes shared=$work/shared/ logs=$work/logs
  local primary=$nodes/primary replica=$nodes/replica1
  lpass() { echo "PASS: $*"; }
  lfail() { echo "FAIL: $*"; fails=$((fails + 1)); }
  ldie() { echo "FAIL: $*"; echo "RESULT: FAIL"; return 1; }

  LOCAL_ACTIVE=1
  rm -rf "$nodes" "$shared" "$logs" "$work/home"
  mkdir -p "$nodes" "$shared" "$logs" "$work/home"
  chown "$PG_USER" "$nodes" "$shared" "$logs" "$work/home"
  log "local: $LOCAL_PROTOCOL://$shared, build $LOCAL_BUILD"

  as_pg "$work" "$bin/initdb" -k -A trust -U "$PG_USER" -D "$primary" > "$logs/initdb_primary.log" 2>&1 \
    || { tail -20 "$logs/initdb_primary.log"; ldie "initdb primary"; return 1; }
  as_pg "$work" "$bin/polar-initdb.sh" "$primary/" "$shared" primary localfs > "$logs/polar_initdb_primary.log" 2>&1 \
    || { tail -20 "$logs/polar_initdb_primary.log"; ldie "polar-initdb.sh primary localfs"; return 1; }
  local_conf "$primary" 1 "$PRIMARY_PORT" "$shared"
  as_pg "$work" "$bin/pg_ctl" -D "$primary" -l "$logs/primary.pg_ctl.log" -w -t 120 start > /dev/null 2>&1 \
    || { tail -20 "$logs/primary.pg_ctl.log"; ldie "primary did not start"; return 1; }
  lpass "primary up on port $PRIMARY_PORT ($(lsql "$work" "$PRIMARY_PORT" -c 'select version()' | head -1))"
  lsql "$work" "$PRIMARY_PORT" -c "select pg_create_physical_replication_slot('replica1')" > /dev/null \
    || { ldie "create slot"; return 1; }

  as_pg "$work" mkdir -m 700 "$replica"
  as_pg "$work" "$bin/polar-initdb.sh" "$replica/" "$shared" replica localfs > "$logs/polar_initdb_replica.log" 2>&1 \
    || { tail -20 "$logs/polar_initdb_replica.log"; ldie "polar-initdb.sh replica localfs"; return 1; }
  # polar-initdb.sh lists the shared base/ with `ls | awk '{print $9}'` (pfs ls's long format), which
  # gives nothing for a local directory: make the per-database dirs it meant to make.
  local d; for d in "$shared"base/*/; do as_pg "$work" mkdir -p "$replica/base/$(basename "$d")"; done
  cp "$primary"/*.conf "$replica/"
  cat >> "$replica/postgresql.conf" <<EOF
port = $REPLICA_PORT
polar_hostid = 2
primary_conninfo = 'host=127.0.0.1 port=$PRIMARY_PORT user=$PG_USER dbname=postgres application_name=replica1'
primary_slot_name = 'replica1'
EOF
  touch "$replica/replica.signal"
  chown -R "$PG_USER" "$replica"
  as_pg "$work" "$bin/pg_ctl" -D "$replica" -l "$logs/replica1.pg_ctl.log" -w -t 120 start > /dev/null 2>&1 \
    || { tail -20 "$logs/replica1.pg_ctl.log"; ldie "replica did not start"; return 1; }
  [ "$(lsql "$work" "$REPLICA_PORT" -c 'select pg_is_in_recovery()')" = t ] \
    && lpass "replica up on port $REPLICA_PORT, in recovery" || lfail "replica is not in recovery"
  local st; st=$(lsql "$work" "$PRIMARY_PORT" -c "select state from pg_stat_replication where application_name='replica1'")
  [ "$st" = streaming ] && lpass "replica streaming from primary" || lfail "replica replication state: '$st'"

  as_pg "$work" "$bin/pgbench" -i -s "$PGBENCH_SCALE" -p "$PRIMARY_PORT" postgres > "$logs/pgbench_init.log" 2>&1 \
    && lpass "pgbench -i -s $PGBENCH_SCALE" || { tail -20 "$logs/pgbench_init.log"; lfail "pgbench -i"; }
  log "local: pgbench -T $PGBENCH_TIME -c $PGBENCH_CLIENTS -j $PGBENCH_JOBS"
  if as_pg "$work" "$bin/pgbench" -T "$PGBENCH_TIME" -c "$PGBENCH_CLIENTS" -j "$PGBENCH_JOBS" -p "$PRIMARY_PORT" postgres \
       > "$logs/pgbench_run.log" 2>&1; then
    grep -E '^(number of transactions actually processed|number of failed|latency average|tps)' "$logs/pgbench_run.log"
    lpass "pgbench -T $PGBENCH_TIME -c $PGBENCH_CLIENTS"
  else
    tail -20 "$logs/pgbench_run.log"; lfail "pgbench run"
  fi

  lsql "$work" "$PRIMARY_PORT" -c "create table bench_after_pgbench as select g as id from generate_series(1, 1000) g" \
    || lfail "create table on primary"
  local lsn ok=0 i
  lsn=$(lsql "$work" "$PRIMARY_PORT" -c "select pg_current_wal_insert_lsn()")
  for i in $(seq 1 120); do
    [ "$(lsql "$work" "$REPLICA_PORT" -c "select pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" = t ] && { ok=1; break; }
    sleep 1
  done
  [ $ok = 1 ] && lpass "replica replayed up to primary LSN $lsn within ${i}s" || lfail "replica did not reach primary LSN $lsn"
  local n want=$((PGBENCH_SCALE * 100000))
  n=$(lsql "$work" "$REPLICA_PORT" -c "select count(*) from pgbench_accounts" 2>&1)
  [ "$n" = "$want" ] && lpass "replica: pgbench_accounts has $n rows" || lfail "replica: pgbench_accounts count '$n', want $want"
  n=$(lsql "$work" "$REPLICA_PORT" -c "select count(*) from bench_after_pgbench" 2>&1)
  [ "$n" = 1000 ] && lpass "replica: table created after pgbench is visible" || lfail "replica: bench_after_pgbench count '$n'"
  local q="select (select sum(abalance) from pgbench_accounts)||'/'||(select count(*) from pgbench_history)||'/'||(select sum(tbalance) from pgbench_tellers)"
  local sp sr; sp=$(lsql "$work" "$PRIMARY_PORT" -c "$q" 2>&1); sr=$(lsql "$work" "$REPLICA_PORT" -c "$q" 2>&1)
  [ -n "$sp" ] && [ "$sp" = "$sr" ] && lpass "replica matches primary: $sr" || lfail "replica differs: primary '$sp' replica '$sr'"
  # the postmaster logs this before its logging collector starts: in the pg_ctl log
  # (grep reads the files itself: `cat | grep -q` fails under pipefail when grep stops early)
  grep -qs "pfs in localfs mode" "$logs/primary.pg_ctl.log" "$primary"/pg_log/* \
    && lpass "server log: primary in localfs mode" \
    || lfail "no 'pfs in localfs mode' in the primary's log"
  local nloc nsh
  nloc=$(find "$primary/base" "$replica/base" -type f ! -name pg_internal.init | wc -l)
  nsh=$(find "$shared/base" -type f | wc -l)
  [ "$nloc" = 0 ] && [ "$nsh" -gt 0 ] && lpass "no relation files in the local base/ dirs, $nsh in $shared""base" \
    || lfail "$nloc relation files in the local base/ dirs, $nsh in the shared one"
  echo "SHARED_DU: $(du -sh "$shared" | cut -f1)"
  echo "TPS: $(grep -E '^tps' "$logs/pgbench_run.log" | head -1)"
  if [ "$fails" = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL ($fails checks failed)"; fi
  [ "$fails" = 0 ]
}

# run_local <work> <dir>: local_run with its output in <dir>/local-run.log and logs in <dir>/logs.
run_local() {
  local work=$1 dir=$2 rc
  RUN_WORK=$work RUN_DIR=$dir
  mkdir -p "$work"
  local_run "$work" "$dir" > "$dir/local-run.log" 2>&1 &
  RUN_PID=$!
  LOCAL_ACTIVE=1
  # bounded like a harness run: a hung server must not hang the benchmark
  local waited=0
  while alive "$RUN_PID" && [ $waited -lt "$RUN_TIMEOUT" ]; do sleep 1; waited=$((waited + 1)); done
  if alive "$RUN_PID"; then
    echo "FAIL: run stopped after RUN_TIMEOUT=${RUN_TIMEOUT}s" >> "$dir/local-run.log"
    kill -TERM "$RUN_PID" 2>/dev/null
  fi
  wait "$RUN_PID"; rc=$?
  RUN_PID=""
  local_stop "$work"
  [ -d "$work/logs" ] && cp -a "$work/logs" "$dir/logs"
  rm -rf "${work:?}"
  RUN_WORK="" RUN_DIR=""
  return $rc
}

# ---------------------------------------------------------------- a condition
declare -A TPS_OF     # "<condition> <mode>" -> the passing runs' tps, space separated
declare -A FAILS_OF   # "<condition> <mode>" -> how many runs failed
TOTAL_FAILS=0
ROTATION=0

condition() {
  local cond=$1 base load="" r m mode dir out rc tps result
  case $cond in
    tmpfs) base=$TMPFS_DIR ;;
    disk) base=$DISK_DIR ;;
    busy|ioload) base=$TMPFS_DIR load=$cond ;;
    busy-disk|ioload-disk) base=$DISK_DIR load=${cond%-disk} ;;
  esac
  rm -rf "${OUT:?}/$cond"; mkdir -p "$OUT/$cond"
  local -a modes; read -r -a modes <<< "$MODES"
  log "=== condition $cond: WORK under $base${load:+, load: $load}, $ROUNDS round(s) of: ${modes[*]}"
  [ -n "$load" ] && start_load "$load"
  for r in $(seq 1 "$ROUNDS"); do
    for m in $(seq 0 $((${#modes[@]} - 1))); do
      mode=${modes[$(( (m + ROTATION) % ${#modes[@]} ))]}
      dir=$OUT/$cond/r$r-$mode
      mkdir -p "$dir"
      log "$cond round $r: $mode (pgbench ${PGBENCH_TIME}s)"
      if [ "$mode" = local ]; then
        run_local "$base/$mode" "$dir"; rc=$?; out=$dir/local-run.log
      else
        run_pfs "$mode" "$base/$mode" "$dir"; rc=$?; out=$dir/harness-run.log
      fi
      tps=$(sed -n 's/^TPS: tps = \([0-9.]*\).*/\1/p' "$out" | head -1)
      result=$(grep -E '^RESULT' "$out" | tail -1)
      if [ $rc = 0 ] && [ -n "$tps" ] && [ "$result" = "RESULT: PASS" ]; then
        echo "PASS: [$cond r$r $mode] tps $tps"
        TPS_OF["$cond $mode"]+="$tps "
      else
        echo "FAIL: [$cond r$r $mode] exit $rc, ${result:-no RESULT line}, tps ${tps:--} (see $out):"
        grep -E '^FAIL' "$out" | head -5 | sed 's/^/    /'
        FAILS_OF["$cond $mode"]=$(( ${FAILS_OF["$cond $mode"]:-0} + 1 ))
        TOTAL_FAILS=$((TOTAL_FAILS + 1))
      fi
    done
    ROTATION=$((ROTATION + 1))
  done
  stop_load
  rmdir "$base" 2>/dev/null
}

# ---------------------------------------------------------------- the table
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; if (NF) printf "%.0f", s / NF }' <<< "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else printf "-" }'; }
cell() {
  local k=$1 m f
  m=$(mean "${TPS_OF[$k]:-}")
  f=${FAILS_OF[$k]:-0}
  printf '%s' "${m:--}"
  [ -n "${TPS_OF[$k]:-}" ] && printf ' (%s)' "$(awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? "/" : ""), $i }' <<< "${TPS_OF[$k]}")"
  [ "$f" != 0 ] && printf ' %s FAILED' "$f"
  return 0
}

table() {
  local cond o f r l
  echo "=== polardb-bench: pgbench -c $PGBENCH_CLIENTS -j $PGBENCH_JOBS scale $PGBENCH_SCALE, ${PGBENCH_TIME}s per run, $ROUNDS round(s), modes: $MODES"
  echo "    pfs-rs $(git -C "$REPO" describe --always --dirty 2>/dev/null); local: $LOCAL_PROTOCOL://; $(nproc) CPUs, $(uname -r); $(date '+%F %T')"
  echo "    tps: mean of the passing runs (each run's figure in brackets, in round order)"
  printf '%-12s %-22s %-22s %-22s %-22s %-9s %-10s %-9s %-10s\n' condition ours ours-file reference local \
    ours/ref ours/local file/ref file/local
  for cond in "${CONDS[@]}"; do
    o=$(mean "${TPS_OF["$cond ours"]:-}"); f=$(mean "${TPS_OF["$cond ours-file"]:-}")
    r=$(mean "${TPS_OF["$cond ref"]:-}"); l=$(mean "${TPS_OF["$cond local"]:-}")
    printf '%-12s %-22s %-22s %-22s %-22s %-9s %-10s %-9s %-10s\n' "$cond" "$(cell "$cond ours")" \
      "$(cell "$cond ours-file")" "$(cell "$cond ref")" "$(cell "$cond local")" \
      "$(ratio "$o" "$r")" "$(ratio "$o" "$l")" "$(ratio "$f" "$r")" "$(ratio "$f" "$l")"
  done
  [ "$TOTAL_FAILS" = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL ($TOTAL_FAILS runs failed)"
}

# ---------------------------------------------------------------- main
[ "$(id -u)" = 0 ] || { echo "run as root (the harness attaches a loop device)" >&2; exit 2; }
[ -x "$HARNESS" ] || { echo "no harness at $HARNESS (set HARNESS)" >&2; exit 2; }
[ $# -gt 0 ] || set -- tmpfs disk
CONDS=()
for arg in "$@"; do
  case $arg in
    build|build-ref) ;;
    tmpfs|disk|busy|ioload|busy-disk|ioload-disk) CONDS+=("$arg") ;;
    *) sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d'; exit 2 ;;
  esac
done
for arg in "$@"; do
  case $arg in
    build) build_ours || { echo "build failed" >&2; exit 1; } ;;
    build-ref) build_ref || { echo "build-ref failed" >&2; exit 1; } ;;
  esac
done
[ ${#CONDS[@]} -gt 0 ] || exit 0
for m in $MODES; do
  why=$(check_mode "$m") || { echo "$m: $why" >&2; exit 2; }
done
mkdir -p "$OUT"
log "modes: $MODES; ours: $OURS_BUILD + $OURS_SDK + $PFS_TOOL; ref: $REF_BUILD + $REF_SDK (pfsdaemon); local: $LOCAL_BUILD, $LOCAL_PROTOCOL://"
for cond in "${CONDS[@]}"; do condition "$cond"; done
echo
table | tee "$OUT/summary.txt"
[ "$TOTAL_FAILS" = 0 ]
