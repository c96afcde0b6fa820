//! Set-up shared by the unit tests of several modules.

use crate::device::MemDevice;
use crate::mkfs::{mkfs, MkfsOptions};
use crate::{Mode, Mount, MountOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
use std::sync::Arc;

/// A writer's mount (host 1) of a freshly made one-chunk memory device.
pub(crate) fn mem_writer() -> Arc<Mount> {
    let dev = Arc::new(MemDevice::new("mem", CHUNK_SIZE));
    let opts = MkfsOptions {
        log_size: MIN_LOG_SIZE,
        ..MkfsOptions::default()
    };
    mkfs(dev.as_ref(), &opts).unwrap();
    let opts = MountOptions {
        hostid: 1,
        ..MountOptions::default()
    };
    Arc::new(Mount::open_with(dev, Mode::ReadWrite, &opts).unwrap())
}
