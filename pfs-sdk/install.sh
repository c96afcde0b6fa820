#!/usr/bin/env bash
# Builds libpfsd (release) and installs it the way PolarDB expects:
#   PREFIX/include/pfsd_sdk.h, PREFIX/lib/libpfsd.so, PREFIX/lib/libpfsd.a,
#   PREFIX/lib/pkgconfig/pfsd.pc
# Usage: pfs-sdk/install.sh [PREFIX]   (default /usr/local/polarstore/pfsd)
# With the default prefix the loader is told about PREFIX/lib
# (/etc/ld.so.conf.d/pfsd.conf and ldconfig).
set -euo pipefail

default_prefix=/usr/local/polarstore/pfsd
prefix=${1:-$default_prefix}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

cargo build --release --locked -p pfs-sdk --manifest-path "$root/Cargo.toml"
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="$target_dir/release"

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 "$here/include/pfsd_sdk.h" "$prefix/include/pfsd_sdk.h"
# Install to a temporary name and rename, so programs running from the old
# library keep a consistent mapping.
install -m 0755 "$out/libpfsd.so" "$prefix/lib/.libpfsd.so.new"
# Debug symbols are not needed to run it (the library carries the SONAME
# libpfsd.so; see build.rs).
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$prefix/lib/.libpfsd.so.new"
fi
mv -f "$prefix/lib/.libpfsd.so.new" "$prefix/lib/libpfsd.so"
install -m 0644 "$out/libpfsd.a" "$prefix/lib/.libpfsd.a.new"
mv -f "$prefix/lib/.libpfsd.a.new" "$prefix/lib/libpfsd.a"

# A prefix the loader does not search gets an rpath in what pkg-config
# gives programs to link with.
rpath=""
if [ "$prefix" != "$default_prefix" ]; then
    rpath=" -Wl,-rpath,\${libdir}"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
cat > "$prefix/lib/pkgconfig/pfsd.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: pfsd
Description: PolarDB file-system SDK (pfs-rs, no daemon)
Version: $version
Libs: -L\${libdir}$rpath -lpfsd -lpthread
Libs.private: -ldl -lm
Cflags: -I\${includedir}
PC

if [ "$prefix" = "$default_prefix" ]; then
    echo "$prefix/lib" > /etc/ld.so.conf.d/pfsd.conf
    ldconfig
fi
echo "installed libpfsd into $prefix"
