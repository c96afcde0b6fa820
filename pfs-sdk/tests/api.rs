//! The C API test program (`tests/c/api.c`): every function and the errno
//! cases of the contract, linked with the shared library and with the
//! static archive.

#![allow(clippy::unwrap_used)]

mod common;
use common::{Link, TestDev};

fn api(link: Link) {
    if !common::can_build() {
        return;
    }
    let dev = TestDev::new();
    dev.passes("api", link);
}

#[test]
fn api_shared_library() {
    api(Link::Shared);
}

#[test]
fn api_static_archive() {
    api(Link::Static);
}
