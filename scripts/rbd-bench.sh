#!/usr/bin/env bash
# rbd-bench.sh — PFS on a Ceph RBD image against `rbd bench` on the same cluster, in one run
# (a benchmark, not a test).
#
#   scripts/rbd-bench.sh [THREADS (1 8)] [SECONDS (5)]
#
# Starts a one-machine cluster (scripts/ceph-cluster.sh) in a scratch directory, or uses the one
# in $PFS_BENCH_CEPH_DIR, and makes two images in pool rbd, both with feature `layering` only (as
# docs/operators.md asks for PFS images; no exclusive lock, no object map):
#   pfs-<pid>  10 GiB (one chunk; more for many rounds of large copies), formatted with `pfs mkfs`;
#   raw-<pid>  1 GiB, for `rbd bench`, whose writes would clobber a filesystem; 1 GiB is the
#              span of the random IO on both sides (rbd bench picks offsets over its whole image,
#              sdk_bench over the first 1 GiB of a file).
# Both are written whole before any read is measured (a never-written RBD object reads as zeros
# without touching the disk). Then, for ROUNDS rounds, alternating:
#   1. 8 KiB random writes, then reads, for each thread count N of THREADS: libpfsd
#      (pfsd_pwrite/pfsd_pread by N threads on file /<pbd>/bench, pfs-sdk/benches/sdk_bench.c)
#      beside `rbd bench --io-threads N` (N requests in flight) doing as many operations;
#   2. `pfs cp` of a local file of CP_MIB MiB (random data) into the image beside `rbd bench`
#      writing as much sequentially in 4 MiB requests into a fresh image, with 2 requests in
#      flight and with 16 (rbd bench's default); cp keeps 8 in flight on an RBD image
#      (PFS_COPY_WRITERS, passed through, sets its writer threads).
# Every pair is printed with ours/rbd, then the median of each side over the rounds.
#
# What each side does: both reach the cluster through librbd with its cache off (ours always
# sets rbd_cache=false; rbd bench is given --rbd_cache=false), so every write of both is on the
# OSD's disk when acknowledged; neither flushes per write. libpfsd's random writes overwrite
# blocks of a file that are already written, so they commit nothing. `pfs cp` also reads its
# source (a local file, O_DIRECT), allocates and commits the file's blocks, flushes the image
# (rbd_flush) and renames the copy into place: it is durable when it returns, and the figure is
# the whole command, process start to exit. rbd bench's figure starts after the image is open;
# the row "whole cmds" sets cp beside rbd bench at depth 16 timed the same way as cp, from the
# command's start to its exit (connecting to the cluster and opening the image included).
#
# Knobs (environment): PFS_BENCH_CEPH_DIR (a running cluster's directory, as given to
# ceph-cluster.sh start), PFS_BENCH_ROUNDS [3], PFS_BENCH_CP_MIB [1024; 0 leaves the copies out],
# PFS_BENCH_OPS [randwrite randread randread-nolease: the libpfsd figures to take; empty for
# none]. Needs Ceph's daemons and client (apt-get install ceph-mon ceph-osd ceph-mgr
# ceph-common) and a C compiler. Leaves nothing behind: images removed, a cluster it started
# stopped, scratch files deleted.
set -euo pipefail
threads=${1:-1 8}
seconds=${2:-5}
rounds=${PFS_BENCH_ROUNDS:-3}
cp_mib=${PFS_BENCH_CP_MIB:-1024}
opnames=${PFS_BENCH_OPS-randwrite randread randread-nolease}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d /var/tmp/pfs-rbd-bench.XXXXXX)
started=""
images=()

cleanup() {
    set +e
    for i in "${images[@]}"; do rbd -c "${conf:-}" rm --no-progress "rbd/$i" >/dev/null 2>&1; done
    [ -n "$started" ] && bash "$here/ceph-cluster.sh" stop "$started"
    # The machine-wide files of the PFS image (host lock, share and live-mark files).
    [ -n "${pfsimg:-}" ] && rm -f /var/run/pfs/rbd:rbd:"$pfsimg"[-.]* /var/run/pfs/rbd:*:rbd:"$pfsimg".*
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/sdk-bench-build.sh
. "$here/sdk-bench-build.sh"

# --- build ---------------------------------------------------------------------------------------
build_bench_tools
cc_bench sdk_bench

# --- cluster and images --------------------------------------------------------------------------
if [ -n "${PFS_BENCH_CEPH_DIR:-}" ]; then
    cdir=$PFS_BENCH_CEPH_DIR
else
    cdir="$work/ceph"
    started=$cdir
    bash "$here/ceph-cluster.sh" start "$cdir" >/dev/null
fi
eval "$(bash "$here/ceph-cluster.sh" env "$cdir")"
conf=$PFS_RBD_CONF
rbd_() { rbd -c "$conf" "$@"; }
# `rbd bench` with librbd's cache off, as ours; prints its operations per second.
rbd_bench() {
    rbd -c "$conf" --rbd_cache=false bench "$@" 2>&1 |
        sed -n 's/.*ops\/sec: *\([0-9.]*\).*/\1/p' | tail -n 1
}
pfsimg=pfs-$$
rawimg=raw-$$
# Chunks of 10 GiB for the bench file, every round's copy and room to spare (sparse: only what
# is written takes room on the OSD).
chunks=$(((2048 + rounds * cp_mib) / 10240 + 1))
rbd_ create --size "$((chunks * 10))G" --image-feature layering "rbd/$pfsimg"
images+=("$pfsimg")
rbd_ create --size 1G --image-feature layering "rbd/$rawimg"
images+=("$rawimg")
pbd="rbd:rbd:$pfsimg"
mkdir -p /var/run/pfs
"$pfs" mkfs "$pbd" >/dev/null

rbd_bench --io-type write --io-pattern seq --io-size 4M --io-threads 16 --io-total 1G \
    "rbd/$rawimg" >/dev/null
# The first call writes the file's 1 GiB; a short read measures nothing kept.
"$work/sdk_bench" io "$pbd" randread 1 0.1 >/dev/null

# The source on disk before anything is measured (its writeback would run beside the rounds).
if [ "$cp_mib" -gt 0 ]; then head -c "$((cp_mib << 20))" /dev/urandom >"$work/src.bin" && sync "$work/src.bin"; fi

echo "PFS on Ceph RBD beside rbd bench; $(ceph -c "$conf" -v | cut -d' ' -f1-3), one OSD"
echo "(BlueStore on a sparse file), $(nproc) cores; $rounds rounds, $seconds s per libpfsd figure"
results="$work/results"
: >"$results"
printf '%-5s %-34s %10s %10s %6s\n' round work ours "rbd bench" ratio
pair() { # round, label, ours, rbd
    local ratio
    ratio=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.2f", a / b }')
    printf '%-5s %-34s %10s %10s %6s\n' "$1" "$2" "$3" "$4" "$ratio"
    printf '%s\t%s\t%s\n' "$2" "$3" "$4" >>"$results"
}

# Operations of each libpfsd figure, for the rbd bench run beside it (the same number, so both
# last about as long); rbd bench goes first in even rounds, with the count of the round before.
declare -A count
for r in $(seq 1 "$rounds"); do
    for n in $threads; do
        for op in $opnames; do
            key="$op-$n"
            type=${op#rand}
            type=${type%-nolease}
            rbd_run() {
                rbd_bench --io-type "$type" --io-pattern rand --io-size 8K --io-threads "$n" \
                    --io-total "$((count[$key] * 8192))" "rbd/$rawimg"
            }
            if [ $((r % 2)) = 0 ] && [ -n "${count[$key]:-}" ]; then
                rbd=$(rbd_run)
                read -r ours ops < <("$work/sdk_bench" io "$pbd" "$op" "$n" "$seconds")
            else
                read -r ours ops < <("$work/sdk_bench" io "$pbd" "$op" "$n" "$seconds")
                count[$key]=$ops
                rbd=$(rbd_run)
            fi
            count[$key]=$ops
            pair "$r" "8K $op IOPS, $n thr" "$ours" "${rbd%.*}"
        done
    done
    [ "$cp_mib" -gt 0 ] || continue
    # pfs cp into a new file (new blocks: RBD objects never written, as in a new image) beside
    # rbd bench into a new image, first or second in turn.
    cp_run() { # sets ours
        local t0 t1
        t0=$(date +%s.%N)
        "$pfs" cp "$work/src.bin" "/$pbd/copy-$r" >/dev/null
        t1=$(date +%s.%N)
        ours=$(awk -v m="$cp_mib" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }')
    }
    seq_run() { # queue depth; sets mibs (as rbd bench counts: from its image being open) and
        # whole (the rbd bench command from start to exit, connecting included, as pfs cp's)
        local img=seq-$$-$r-$1 ops t0 t1
        rbd_ create --size "${cp_mib}M" --image-feature layering "rbd/$img"
        images+=("$img")
        t0=$(date +%s.%N)
        ops=$(rbd_bench --io-type write --io-pattern seq --io-size 4M --io-threads "$1" \
            --io-total "$((cp_mib << 20))" "rbd/$img")
        t1=$(date +%s.%N)
        rbd_ rm --no-progress "rbd/$img" >/dev/null 2>&1
        mibs=$(awk -v o="$ops" 'BEGIN { printf "%.0f", o * 4 }')
        whole=$(awk -v m="$cp_mib" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }')
    }
    if [ $((r % 2)) = 0 ]; then
        seq_run 2 && q2=$mibs
        cp_run
    else
        cp_run
        seq_run 2 && q2=$mibs
    fi
    seq_run 16 && q16=$mibs && w16=$whole
    pair "$r" "cp $cp_mib MiB, MiB/s (vs q2)" "$ours" "$q2"
    pair "$r" "cp $cp_mib MiB, MiB/s (vs q16)" "$ours" "$q16"
    pair "$r" "cp $cp_mib MiB, whole cmds (vs q16)" "$ours" "$w16"
done

echo
echo "median over $rounds rounds: each side's median, the ratio of those, and the median of the"
echo "rounds' own ratios (paired: the two sides of a round ran one after the other)"
printf '%-34s %10s %10s %6s %6s\n' work ours "rbd bench" ratio paired
# Each label's figures, in the order first seen: medians of either side and of the ratios.
awk -F'\t' '
    function median(list,   v, m, i, j, t) {
        m = split(list, v, " ")
        for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
            t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
        }
        return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    { if (!($1 in a)) order[++k] = $1; a[$1] = a[$1] " " $2; b[$1] = b[$1] " " $3
      r[$1] = r[$1] " " $2 / $3 }
    END { for (i = 1; i <= k; i++) { w = order[i]; x = median(a[w]); y = median(b[w])
        printf "%-34s %10.0f %10.0f %6.2f %6.2f\n", w, x, y, x / y, median(r[w]) } }' "$results"
