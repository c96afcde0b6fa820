//! Gives the shared library its SONAME, so programs linked against it
//! record the library's name, not the path it was linked from.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpfsd.so");
    println!("cargo:rerun-if-changed=build.rs");
}
