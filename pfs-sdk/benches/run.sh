#!/usr/bin/env bash
# Benchmark of libpfsd (not a test): 8 KiB random pread/pwrite through the
# SDK on a direct-IO loop device next to the same IO on a second, raw
# direct-IO loop device (backed by the same filesystem), then metadata
# calls per second from 1 and 8 processes. Needs root (losetup).
# Usage: pfs-sdk/benches/run.sh [threads (8)] [seconds per figure (5)]
set -euo pipefail
threads=${1:-8}
seconds=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d /var/tmp/pfsd-bench.XXXXXX)
loops=()
cleanup() {
    for l in "${loops[@]}"; do losetup -d "$l" || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/sdk-bench-build.sh
. "$root/scripts/sdk-bench-build.sh"

build_bench_tools
truncate -s 11G "$work/pfs.img" "$work/raw.img"
pfsdev=$(losetup --direct-io=on -f --show "$work/pfs.img")
loops+=("$pfsdev")
rawdev=$(losetup --direct-io=on -f --show "$work/raw.img")
loops+=("$rawdev")
pbd=$(basename "$pfsdev")
mkdir -p /var/run/pfs
"$pfs" mkfs "$pbd" >/dev/null
cc_bench sdk_bench
echo "devices: PFS on $pfsdev, raw $rawdev (loop, direct IO, sparse files)"
"$work/sdk_bench" "$pbd" "$rawdev" "$threads" "$seconds"

# A forked child's first call on a 10-chunk device (a sparse file in a
# device directory): the metadata it would load is ten times a chunk's.
mkdir -p "$work/devs"
truncate -s 100G "$work/devs/forkbench"
"$pfs" --device-dir "$work/devs" mkfs forkbench >/dev/null
cc_bench fork_bench
echo
PFS_DEVICE_DIR="$work/devs" "$work/fork_bench" forkbench 50
