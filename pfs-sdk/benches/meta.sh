#!/usr/bin/env bash
# Benchmark of libpfsd (not a test): durable create+close per second from
# 1 and 8 processes of one host on a direct-IO loop device over a sparse
# file. Needs root (losetup). With STRACE=1 the run is traced with
# `strace -c -f` and the syscall counts are printed after the figures.
# The image lives in a scratch directory under $META_DIR (/var/tmp: a disk;
# /dev/shm takes the device flushes out, as a loop device over tmpfs gets
# none).
# Usage: pfs-sdk/benches/meta.sh [seconds (3)] [threads per process (1)]
#        [GiB of the device (200)]
set -euo pipefail
seconds=${1:-3}
threads=${2:-1}
gib=${3:-200}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${META_DIR:-/var/tmp}/pfsd-meta.XXXXXX")
loop=
cleanup() {
    if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/sdk-bench-build.sh
. "$root/scripts/sdk-bench-build.sh"

build_bench_tools
mkdir -p "$work/devs"
img="$work/devs/img"
truncate -s "${gib}G" "$img"
"$pfs" --device-dir "$work/devs" mkfs img >/dev/null
# The journal's blocks are written once before the run, as a disk has
# them: a sparse file would make each commit that reaches a new block of
# the journal wait for the file system to allocate it.
for bda in $("$pfs" --device-dir "$work/devs" map /img/.pfs-journal | awk 'NR > 3 { print $7 }'); do
    dd if=/dev/zero of="$img" bs=4M count=1 seek=$((bda / 4194304)) conv=notrunc status=none
done
sync "$img"
loop=$(losetup --direct-io=on -f --show "$img")
pbd=$(basename "$loop")
mkdir -p /var/run/pfs
cc_bench meta_bench
# A chunk (10 GiB) holds 2048 inodes; each of the two runs gets 2/5 of them.
files=$((gib / 10 * 2048 * 2 / 5))
echo "device: PFS on $loop ($gib GiB, loop, direct IO, write cache: $(cat /sys/block/$pbd/queue/write_cache))"
if [ "${STRACE:-0}" = 1 ]; then
    strace -c -f -o "$work/strace" "$work/meta_bench" "$pbd" "$seconds" "$threads" "$files"
    head -25 "$work/strace"
else
    "$work/meta_bench" "$pbd" "$seconds" "$threads" "$files"
fi
