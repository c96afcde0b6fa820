# Sourced by the libpfsd benchmarks (pfs-sdk/benches/meta.sh and run.sh,
# scripts/rbd-bench.sh): builds what they run into their scratch directory.
# They set $root (the checkout) and $work (the scratch directory) first.

# Installs libpfsd under $work/prefix and builds the release `pfs` tool;
# sets $pfs to its path (in cargo's target directory, wherever that is).
build_bench_tools() {
    "$root/pfs-sdk/install.sh" "$work/prefix" >/dev/null
    cargo build --release --locked -q -p pfs-tool --manifest-path "$root/Cargo.toml"
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    pfs="$target_dir/release/pfs"
}

# cc_bench NAME: compiles pfs-sdk/benches/NAME.c against that libpfsd into
# $work/NAME.
cc_bench() {
    cc -O2 -Wall -I"$work/prefix/include" "$root/pfs-sdk/benches/$1.c" -o "$work/$1" \
        -L"$work/prefix/lib" -Wl,-rpath,"$work/prefix/lib" -lpfsd -lpthread
}
